//! An idminter server started in-process through the production `Application` (the shared
//! [`InProcessServer`]), on any database options (the tests' own clusters, pgbouncer or a moved
//! address), with the ha tests' own waits.

#![allow(dead_code)]

use std::ops::Deref;
use std::time::Duration;

use idminter::config::ServeConfig;
use idminter::pb;
use sqlx::postgres::PgConnectOptions;

use crate::cluster::within;
use crate::helpers::{InProcessServer, ServingStatus, health_check, http_get};

/// A server on the tests' own clusters (see [`InProcessServer`], whose fields and calls it
/// offers), checking its database more often than the default.
pub struct App(InProcessServer);

impl Deref for App {
    type Target = InProcessServer;

    fn deref(&self) -> &InProcessServer {
        &self.0
    }
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
        Self(InProcessServer::start(config).await)
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

    /// The value of an unlabelled metric, if exported.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = http_get(self.admin_addr, "/metrics").await;
        body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            let (metric, value) = l.split_once(' ')?;
            (metric == name).then(|| value.trim().parse().ok())?
        })
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
