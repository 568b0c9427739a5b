//! Wiring `serve`: [`Application::build`] does everything that can fail, including binding both
//! listeners (so port 0 is resolved before serving), and [`Application::run_until_stopped`] serves
//! until the shutdown future fires: NOT_SERVING first, then drain in-flight calls, then return.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::auth::Auth;
use crate::config::ServeConfig;
use crate::grpc::IdMinterService;
use crate::readiness::{Readiness, SHUTTING_DOWN, State};
use crate::store::pooler::Statements;
use crate::store::replica::ReadReplica;
use crate::store::{self, Store};
use crate::tls::TlsServer;
use crate::{admin, guard, pb};

pub struct Application {
    config: ServeConfig,
    grpc_listener: TcpListener,
    admin_listener: TcpListener,
    auth: Auth,
    tls: Option<TlsServer>,
    /// The public resolver's listener, when `--http-addr` is given.
    http_listener: Option<TcpListener>,
}

impl Application {
    /// Reads the tokens file and the TLS files, and binds the listeners.
    ///
    /// # Errors
    /// A listen address is taken or invalid; the tokens or TLS files cannot be read or are
    /// malformed.
    pub async fn build(config: ServeConfig) -> anyhow::Result<Self> {
        let auth = match &config.auth_tokens {
            Some(path) => Auth::load(path)?,
            None => Auth::Disabled,
        };
        let tls = config.tls.clone().map(TlsServer::load).transpose()?;
        let grpc_listener = TcpListener::bind(config.grpc_addr).await?;
        let admin_listener = TcpListener::bind(config.admin_addr).await?;
        let http_listener = match config.http_addr {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        Ok(Self {
            config,
            grpc_listener,
            admin_listener,
            auth,
            tls,
            http_listener,
        })
    }

    /// The bound gRPC address (with the real port when configured with port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The bound admin HTTP address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The bound public resolver address, when it is on.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then drains.
    ///
    /// # Errors
    /// The gRPC server failed.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let grpc_addr = self.grpc_addr();
        let admin_addr = self.admin_addr();
        let http_addr = self.http_addr();
        let Self {
            config,
            grpc_listener,
            admin_listener,
            auth,
            tls,
            http_listener,
        } = self;

        let metrics = crate::metrics::install();
        metrics::gauge!(crate::metrics::AUTH_ENABLED).set(if auth.is_enabled() {
            1.0
        } else {
            0.0
        });
        let (reporter, health_service) = tonic_health::server::health_reporter();
        let readiness = Readiness::new(reporter.clone()).await;
        // Through a transaction-mode pooler, sqlx's statement cache would name statements that
        // live on whichever server connection the pooler lent (see store::pooler).
        let statements = if config.transaction_pooler {
            Statements::Unnamed
        } else {
            Statements::Prepared
        };
        let pool_options = |options: &sqlx::postgres::PgConnectOptions| {
            if config.transaction_pooler {
                options.clone().statement_cache_capacity(0)
            } else {
                options.clone()
            }
        };
        let pool = store::connect_lazy(pool_options(&config.database), &config.pool);
        let mut store = Store::with_id_cache(pool.clone(), config.id_cache_capacity)
            .with_statements(statements);

        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let mut read_pool = None;
        if let Some(options) = &config.read_database {
            let replica_pool = store::connect_lazy(pool_options(options), &config.pool);
            let replica = ReadReplica::new(replica_pool.clone());
            tasks.spawn(store::replica::watch(
                replica.clone(),
                options.clone(),
                config.db_check_interval,
                stop.clone(),
            ));
            store = store.with_read_replica(replica);
            read_pool = Some(replica_pool);
        }
        tasks.spawn(guard::watch(
            readiness.clone(),
            config.database.clone(),
            config.history_table.clone(),
            config.migrate,
            config.db_check_interval,
            stop.clone(),
        ));
        match (&auth, &config.auth_tokens) {
            (Auth::Enabled(set), Some(path)) => {
                tasks.spawn(crate::auth::tokens::watch(
                    path.clone(),
                    set.clone(),
                    config.reload_interval,
                    stop.clone(),
                ));
            }
            _ => tracing::warn!(
                "no --auth-tokens: every call is allowed, and recorded as `anonymous`"
            ),
        }
        if let Some(tls) = &tls {
            tasks.spawn(tls.clone().watch(config.reload_interval, stop.clone()));
        }
        // The admin listener outlives the drain, so /readyz can say "shutting down" meanwhile.
        let admin_stop = CancellationToken::new();
        let admin = tokio::spawn(admin::serve(
            admin_listener,
            admin::AdminState {
                readiness: Some(readiness.clone()),
                metrics,
                pool: Some(pool.clone()),
                health: None,
            },
            admin_stop.clone(),
        ));

        if let Some(listener) = http_listener {
            // Stops with the gRPC server (on `stop`), finishing the requests in flight.
            let state = crate::resolver::ResolverState {
                store: store.clone(),
                readiness: readiness.clone(),
                aliases: std::sync::Arc::new(config.aliases.clone()),
                auth: auth.clone(),
            };
            let stop = stop.clone();
            tasks.spawn(async move {
                if let Err(e) = crate::resolver::serve(listener, state, stop).await {
                    tracing::warn!(error = %e, "the HTTP resolver failed");
                }
            });
        }

        let service = crate::grpc::limit_concurrency(
            IdMinterService::new(
                store,
                readiness.clone(),
                config.aliases.clone(),
                config.max_batch,
                Some(config.request_timeout),
            )
            .into_server()
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes),
            config.concurrency_limit,
        );

        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;

        let http_addr = http_addr.map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(
            %grpc_addr,
            %admin_addr,
            %http_addr,
            history_table = %config.history_table,
            tls = tls.is_some(),
            auth = auth.is_enabled(),
            "listening"
        );

        let draining = {
            let readiness = readiness.clone();
            let mut reporter = reporter.clone();
            let stop = stop.clone();
            async move {
                shutdown.await;
                tracing::info!("shutdown requested: NOT_SERVING, draining in-flight calls");
                stop.cancel();
                readiness
                    .set(State::NotServing(SHUTTING_DOWN.to_owned()))
                    .await;
                // Health Watch streams never end by themselves and would hold the drain open:
                // clearing the statuses ends them, after they have seen NOT_SERVING.
                for name in crate::readiness::SERVICE_NAMES {
                    reporter.clear_service_status(name).await;
                }
            }
        };

        // Authentication in two halves around the metrics, so that refused calls are counted with
        // their principal (see `auth::layer`).
        let router = Server::builder()
            .layer(crate::auth::Authenticate::new(auth))
            .layer(crate::grpc::RpcMetricsLayer)
            .layer(crate::auth::Enforce)
            .layer(crate::grpc::codec::ClientFaultsLayer)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(service);
        let server: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
            match tls {
                Some(tls) => Box::pin(
                    router.serve_with_incoming_shutdown(tls.incoming(grpc_listener), draining),
                ),
                None => Box::pin(router.serve_with_incoming_shutdown(
                    // No Nagle delay: a small answer must not wait for the next packet.
                    TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
                    draining,
                )),
            };

        let drained = tokio::select! {
            result = server => Some(result),
            () = async {
                stop.cancelled().await;
                tokio::time::sleep(config.shutdown_timeout).await;
            } => None,
        };
        stop.cancel();
        tasks.close();
        tasks.wait().await;
        admin_stop.cancel();
        if let Ok(Err(e)) = admin.await {
            tracing::warn!(error = %e, "the admin listener failed");
        }
        // Calls abandoned by the shutdown timeout may still hold connections: don't wait for them.
        let closing = async {
            pool.close().await;
            if let Some(read_pool) = &read_pool {
                read_pool.close().await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(1), closing)
            .await
            .is_err()
        {
            tracing::warn!("closed the pool with connections still in use");
        }
        match drained {
            Some(result) => result?,
            None => {
                tracing::warn!(timeout = ?config.shutdown_timeout, "in-flight calls did not finish in time")
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}
