//! Closed-loop load: C clients, each sending its next call as soon as the last is answered, for a
//! warm-up and then a measured window. A call counts when it completes inside the window, so the
//! calls cut by either edge cancel out on average; its latency is from send to answer, the batch
//! being built beforehand.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use sqlx::PgPool;

use crate::data::Source;
use crate::floor;
use crate::service::ServiceClient;
use crate::workload::Workload;

/// Who answers the calls.
pub enum Client {
    Service(ServiceClient),
    Floor(PgPool),
}

impl Client {
    async fn call(
        &mut self,
        workload: Workload,
        source: &Source,
        rng: &mut SmallRng,
    ) -> anyhow::Result<(usize, Duration)> {
        let batch = workload.batch(source, rng);
        let n = batch.len();
        let started = Instant::now();
        match self {
            Client::Service(client) => client.call(workload, batch).await?,
            Client::Floor(pool) => floor::call(pool, workload, batch).await?,
        }
        Ok((n, started.elapsed()))
    }
}

/// What one side of one workload did in the measured window.
#[derive(Debug, Clone)]
pub struct Sample {
    pub calls: usize,
    pub ids: usize,
    pub seconds: f64,
    /// Sorted.
    pub latencies: Vec<Duration>,
}

impl Sample {
    pub fn ids_per_second(&self) -> f64 {
        self.ids as f64 / self.seconds
    }

    /// The latency below which `q` (0 to 1) of the calls fall.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank =
            ((self.latencies.len() as f64 * q).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1]
    }
}

/// Runs `clients` against `workload` for `warmup`, then measures for `window`.
///
/// # Errors
/// The first failed call, which ends the run.
pub async fn run(
    clients: Vec<Client>,
    workload: Workload,
    source: Arc<Source>,
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<Sample> {
    let start = Instant::now() + Duration::from_millis(10);
    let measured_from = start + warmup;
    let end = measured_from + window;
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in clients {
        let source = source.clone();
        tasks.spawn(async move {
            let mut rng = SmallRng::from_rng(&mut rand::rng());
            let mut done = Vec::new();
            while Instant::now() < end {
                let (n, latency) = client.call(workload, &source, &mut rng).await?;
                let now = Instant::now();
                if now >= measured_from && now <= end {
                    done.push((n, latency));
                }
            }
            anyhow::Ok(done)
        });
    }
    let mut sample = Sample {
        calls: 0,
        ids: 0,
        seconds: window.as_secs_f64(),
        latencies: Vec::new(),
    };
    while let Some(result) = tasks.join_next().await {
        for (n, latency) in result?? {
            sample.calls += 1;
            sample.ids += n;
            sample.latencies.push(latency);
        }
    }
    sample.latencies.sort_unstable();
    Ok(sample)
}
