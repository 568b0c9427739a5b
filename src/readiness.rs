//! Whether idminter may serve, in one place: the schema guard and the database watch write it; the
//! gRPC health service, the admin `/readyz`, the `idminter_ready` metric and every RPC read it.
//! It starts NOT_SERVING, so nothing reports SERVING before the guard has passed.

use std::sync::Arc;

use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::error::Error;

/// The service names whose health we report: the whole server and our service.
pub const SERVICE_NAMES: [&str; 2] = ["", "idminter.v1.IdMinter"];

/// The diagnosis while draining after SIGTERM: planned, so logged at INFO rather than ERROR.
pub const SHUTTING_DOWN: &str = "shutting down";

/// SERVING, or NOT_SERVING with the diagnosis that every caller sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Serving,
    NotServing(String),
}

/// The shared readiness state.
#[derive(Clone)]
pub struct Readiness {
    state: Arc<watch::Sender<State>>,
    reporter: HealthReporter,
}

impl Readiness {
    /// Starts NOT_SERVING, in the health reporter too (tonic-health starts `""` as SERVING).
    pub async fn new(reporter: HealthReporter) -> Self {
        let initial = State::NotServing("starting: the schema guard has not passed yet".to_owned());
        let readiness = Self {
            state: Arc::new(watch::Sender::new(initial)),
            reporter,
        };
        readiness.publish(ServingStatus::NotServing).await;
        readiness
    }

    /// Records a new state; logs and reports it only when it changed.
    pub async fn set(&self, new: State) {
        let changed = self.state.send_if_modified(|current| {
            // Once draining, stay NOT_SERVING: a database probe finishing late must not undo it.
            let draining = matches!(current, State::NotServing(why) if why == SHUTTING_DOWN);
            if *current == new || draining {
                false
            } else {
                *current = new.clone();
                true
            }
        });
        if !changed {
            return;
        }
        match &new {
            State::Serving => {
                tracing::info!("SERVING");
                self.publish(ServingStatus::Serving).await;
            }
            State::NotServing(why) if why == SHUTTING_DOWN => {
                tracing::info!(diagnosis = %why, "NOT_SERVING");
                self.publish(ServingStatus::NotServing).await;
            }
            State::NotServing(why) => {
                tracing::error!(diagnosis = %why, "NOT_SERVING");
                self.publish(ServingStatus::NotServing).await;
            }
        }
    }

    async fn publish(&self, status: ServingStatus) {
        let ready = if status == ServingStatus::Serving {
            1.0
        } else {
            0.0
        };
        metrics::gauge!(crate::metrics::READY).set(ready);
        for name in SERVICE_NAMES {
            self.reporter.set_service_status(name, status).await;
        }
    }

    pub fn current(&self) -> State {
        self.state.borrow().clone()
    }

    /// Fails with the diagnosis unless SERVING: the guard for every RPC.
    ///
    /// # Errors
    /// [`Error::Unavailable`] with the diagnosis.
    pub fn check(&self) -> Result<(), Error> {
        match &*self.state.borrow() {
            State::Serving => Ok(()),
            State::NotServing(why) => Err(Error::Unavailable(why.clone())),
        }
    }
}
