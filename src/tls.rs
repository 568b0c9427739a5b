//! TLS with rustls (on ring; no OpenSSL): the gRPC listener's server side, with optional client
//! certificates (mTLS) and certificates re-read when their files change, and the client side of
//! the `https://` addresses that the client commands and the queue adapter dial.
//!
//! tonic's own `ServerTlsConfig` fixes the certificate when the server starts. Rotation without a
//! restart needs the configuration to be swappable, so the server accepts TCP connections itself,
//! does the handshake with tokio-rustls using the configuration current at that moment (held in
//! an [`ArcSwap`], replaced whole when the files change), and hands the established streams to
//! tonic's `serve_with_incoming`. Connections already open keep the certificate they were made
//! with; new ones get the new one. A handshake runs in a task of its own, under a timeout, so a
//! slow or silent client holds up no one else.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The files the server's TLS configuration is made of.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// The leaf's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// With it, clients must present a certificate signed by this CA (PEM).
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.cert.clone(), self.key.clone()];
        paths.extend(self.client_ca.clone());
        paths
    }

    /// Reads the files into a server configuration.
    ///
    /// # Errors
    /// A file cannot be read, holds no usable PEM, or the key does not match the certificate.
    pub fn load(&self) -> anyhow::Result<ServerConfig> {
        let read =
            |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
        let ca = match &self.client_ca {
            Some(p) => Some(read(p)?),
            None => None,
        };
        server_config(&read(&self.cert)?, &read(&self.key)?, ca.as_deref())
            .with_context(|| format!("TLS files {}, {}", self.cert.display(), self.key.display()))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration from PEM contents; HTTP/2 is announced by ALPN, as gRPC clients expect.
///
/// # Errors
/// No certificate or key in the PEM, a key that does not match the certificate, an unusable CA.
pub fn server_config(
    cert: &[u8],
    key: &[u8],
    client_ca: Option<&[u8]>,
) -> anyhow::Result<ServerConfig> {
    let certs = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .context("the certificate file is not PEM")?;
    anyhow::ensure!(
        !certs.is_empty(),
        "the certificate file holds no certificate"
    );
    let key = PrivateKeyDer::from_pem_slice(key).context("the key file holds no private key")?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca) {
                roots
                    .add(cert.context("the client CA file is not PEM")?)
                    .context("the client CA file holds an unusable certificate")?;
            }
            anyhow::ensure!(!roots.is_empty(), "the client CA file holds no certificate");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("the key does not fit the certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The server's TLS configuration, swapped whole when its files change.
#[derive(Clone)]
pub struct TlsServer {
    files: TlsFiles,
    config: Arc<ArcSwap<ServerConfig>>,
}

impl TlsServer {
    /// Loads the files.
    ///
    /// # Errors
    /// As [`TlsFiles::load`].
    pub fn load(files: TlsFiles) -> anyhow::Result<Self> {
        let config = Arc::new(ArcSwap::from_pointee(files.load()?));
        Ok(Self { files, config })
    }

    /// Re-reads the files whenever one changes, until `stop`. A set that does not load (say, the
    /// certificate was replaced before its key) is logged and the previous configuration stays.
    pub async fn watch(self, interval: Duration, stop: CancellationToken) {
        let Self { files, config } = self;
        let paths = files.paths();
        crate::reload::on_change(paths, interval, stop, move |contents| {
            let new = server_config(&contents[0], &contents[1], contents.get(2).map(Vec::as_slice))?;
            config.store(Arc::new(new));
            tracing::info!(cert = %files.cert.display(), "TLS certificate re-read: new connections use it");
            Ok(())
        })
        .await;
    }

    /// The connections of `listener` after their TLS handshake, for tonic's `serve_with_incoming`.
    /// Accepting stops when the stream is dropped (when the server shuts down), which closes the
    /// listener. Failed handshakes are logged at debug level (load balancers' TCP probes fail
    /// them all the time) and never reach the server.
    pub fn incoming(
        &self,
        listener: TcpListener,
    ) -> ReceiverStream<Result<TlsStream<TcpStream>, io::Error>> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let config = self.config.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = tx.closed() => return,
                    accepted = listener.accept() => accepted,
                };
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: give the process a moment.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // No Nagle delay: a small answer must not wait for the next packet.
                let _ = tcp.set_nodelay(true);
                let acceptor = TlsAcceptor::from(config.load_full());
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send(Ok(stream)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(rx)
    }
}

// === client side ===

/// An endpoint for a client of ours: `https://` addresses use TLS, trusting the CA in `ca_file`
/// when given, the system's roots otherwise.
///
/// # Errors
/// A malformed address, an unreadable CA file, or a CA file with a plaintext `http://` address.
pub fn client_endpoint(addr: &str, ca_file: Option<&Path>) -> anyhow::Result<Endpoint> {
    let endpoint = Endpoint::from_shared(addr.to_owned())
        .map_err(|e| anyhow::anyhow!("`{addr}` is not a valid URL: {e}"))?;
    let https = addr.starts_with("https://");
    match (https, ca_file) {
        (false, None) => Ok(endpoint),
        (false, Some(_)) => {
            anyhow::bail!("a TLS CA was given but `{addr}` is not an https:// address")
        }
        (true, ca_file) => {
            let tls = match ca_file {
                Some(path) => {
                    let pem = std::fs::read(path)
                        .with_context(|| format!("cannot read the CA file {}", path.display()))?;
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
                }
                None => ClientTlsConfig::new().with_native_roots(),
            };
            endpoint
                .tls_config(tls)
                .map_err(|e| anyhow::anyhow!("TLS for `{addr}`: {e}"))
        }
    }
}
