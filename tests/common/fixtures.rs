//! Secrets made by the tests: temporary folders, certificate authorities and certificates (rcgen),
//! tokens files, and clients that use them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

// === TempDir ===

/// A folder of its own under the system's temporary folder, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("idminter-{what}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("create a temporary folder");
        Self(path)
    }

    /// Writes `contents` to `name` in this folder (replacing it whole, as a rename would) and
    /// returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        let staging = self.0.join(format!(".{name}.new"));
        std::fs::write(&staging, contents).expect("write a temporary file");
        std::fs::rename(&staging, &path).expect("move a temporary file into place");
        path
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// === certificates ===

/// A certificate authority made for one test.
pub struct TestCa {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, PEM.
pub struct CertifiedKey {
    pub cert: String,
    pub key: String,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `hosts` (names or IP addresses), valid from yesterday for a year.
    pub fn server(&self, hosts: &[&str]) -> CertifiedKey {
        let now = OffsetDateTime::now_utc();
        self.server_valid(hosts, now - Duration::days(1), now + Duration::days(365))
    }

    /// A server certificate that expired yesterday.
    pub fn expired_server(&self, hosts: &[&str]) -> CertifiedKey {
        let now = OffsetDateTime::now_utc();
        self.server_valid(hosts, now - Duration::days(30), now - Duration::days(1))
    }

    fn server_valid(
        &self,
        hosts: &[&str],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> CertifiedKey {
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let mut params = CertificateParams::new(hosts).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "idminter test server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = not_before;
        params.not_after = not_after;
        self.sign(&params)
    }

    /// A client certificate (for mutual TLS) naming `name`.
    pub fn client(&self, name: &str) -> CertifiedKey {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(&params)
    }

    fn sign(&self, params: &CertificateParams) -> CertifiedKey {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        CertifiedKey {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A server's TLS files in `dir`: `server.pem`, `server.key`, `ca.pem` (the CA that signed them).
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl ServerTls {
    pub fn write(dir: &TempDir, ca: &TestCa, server: &CertifiedKey) -> Self {
        Self {
            cert: dir.write("server.pem", &server.cert),
            key: dir.write("server.key", &server.key),
            ca: dir.write("ca.pem", &ca.pem),
        }
    }

    pub fn files(&self) -> idminter::tls::TlsFiles {
        idminter::tls::TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            client_ca: None,
        }
    }
}

/// Connects to `https://127.0.0.1:PORT` trusting `ca_pem` (and presenting `identity`, for mutual
/// TLS), on a fresh connection.
///
/// # Errors
/// The connection or the TLS handshake failed (the error's chain says why).
pub async fn tls_channel(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<&CertifiedKey>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(&id.cert, &id.key));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
}

/// True when `error` names `reason` (a rustls certificate error such as `NotValidForName`), however
/// it is spelled (`NotValidForName`, `certificate not valid for name`).
pub fn says(error: &str, reason: &str) -> bool {
    let squash = |s: &str| {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .collect::<String>()
            .to_lowercase()
    };
    squash(error).contains(&squash(reason))
}

// === tokens ===

/// A tokens-file line for `token`.
pub fn token_line(name: &str, scopes: &str, token: &str) -> String {
    format!(
        "{name} {scopes} {}\n",
        idminter::auth::tokens::hash_hex(token)
    )
}

/// A request carrying `authorization: Bearer TOKEN`.
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

pub fn exists(path: &Path) -> bool {
    path.exists()
}

/// Runs `idminter ARGS` to completion with environment variables set: (exit code, stdout, stderr).
pub fn idminter_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_idminter"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("run idminter");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
