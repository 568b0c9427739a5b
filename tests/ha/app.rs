//! An idminter server started in-process through the production `Application`, on any database
//! options (the tests' own clusters, pgbouncer or a moved address), with clients.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use idminter::config::ServeConfig;
use idminter::pb;
use idminter::pb::id_minter_client::IdMinterClient;
use idminter::startup::Application;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::oneshot;
use tonic::Status;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

use crate::cluster::within;
use crate::helpers::{ServingStatus, channel, health_check, http_get};

pub struct App {
    pub admin_addr: SocketAddr,
    pub client: IdMinterClient<Channel>,
    pub health: HealthClient<Channel>,
    stop: Option<oneshot::Sender<()>>,
}

impl App {
    /// A server on `database`, configured by `configure`; it may not be SERVING yet.
    pub async fn start(
        database: PgConnectOptions,
        configure: impl FnOnce(&mut ServeConfig),
    ) -> Self {
        let mut config = ServeConfig::local(database);
        config.db_check_interval = Duration::from_millis(200);
        config.pool.acquire_timeout = Duration::from_secs(1);
        configure(&mut config);
        let app = Application::build(config).await.expect("build the app");
        let (grpc_addr, admin_addr) = (app.grpc_addr(), app.admin_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let channel = channel(grpc_addr).await;
        Self {
            admin_addr,
            client: IdMinterClient::new(channel.clone()),
            health: HealthClient::new(channel),
            stop: Some(stop),
        }
    }

    /// A SERVING server on `database`.
    pub async fn serving(
        database: PgConnectOptions,
        configure: impl FnOnce(&mut ServeConfig),
    ) -> Self {
        let app = Self::start(database, configure).await;
        app.wait_for(Duration::from_secs(30), ServingStatus::Serving)
            .await;
        app
    }

    /// Polls health until it reports `status`, failing after `bound`.
    pub async fn wait_for(&self, bound: Duration, status: ServingStatus) {
        within(bound, &format!("health {status:?}"), || async {
            health_check(&self.health, "").await.ok() == Some(status)
        })
        .await;
    }

    pub async fn health_status(&self) -> ServingStatus {
        health_check(&self.health, "").await.expect("health check")
    }

    pub async fn mint(&self, items: Vec<pb::MintItem>) -> Result<pb::MintIdsResponse, Status> {
        self.client
            .clone()
            .mint_ids(pb::MintIdsRequest { items })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn lookup(
        &self,
        ids: Vec<pb::SourceIdentifier>,
    ) -> Result<pb::LookupIdsResponse, Status> {
        self.client
            .clone()
            .lookup_ids(pb::LookupIdsRequest {
                source_identifiers: ids,
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn resolve(&self, ids: &[&str]) -> Result<pb::ResolveCanonicalIdsResponse, Status> {
        let canonical_ids = ids.iter().map(|s| (*s).to_owned()).collect();
        self.client
            .clone()
            .resolve_canonical_ids(pb::ResolveCanonicalIdsRequest { canonical_ids })
            .await
            .map(|r| r.into_inner())
    }

    /// The value of an unlabelled metric, if exported.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = http_get(self.admin_addr, "/metrics").await;
        body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            let (metric, value) = l.split_once(' ')?;
            (metric == name).then(|| value.trim().parse().ok())?
        })
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
    }
}

/// The IDs a MintIds answer gave, in order.
pub fn ids(response: &pb::MintIdsResponse) -> Vec<String> {
    response
        .ids
        .iter()
        .map(|m| m.canonical_id.clone())
        .collect()
}
