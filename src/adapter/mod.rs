//! The queue adapter (`idminter adapter`): a thin, stateless consumer between an SQS input queue
//! and the next stage of a pipeline. It receives documents, has every source identifier in them
//! minted by one MintIds call per received batch, writes the canonical IDs into the documents,
//! publishes them to an SQS queue or SNS topic, and only then deletes the input messages.
//!
//! - [`args`]: the flags and the plain config;
//! - [`document`]: finding and writing identifiers in JSON (pure, no I/O);
//! - [`minter`]: the [`minter::MintIds`] boundary and its gRPC client (deduplication, splitting,
//!   error kinds);
//! - [`queue`] and [`output`]: the [`queue::Queue`] and [`output::Sink`] boundaries, and the
//!   output's batching policy; [`sqs`], [`sns`], [`aws`]: their AWS implementations;
//! - [`worker`]: the loop, with poison isolation, backoff and visibility extension; it sees the
//!   network only through the three traits, and is tested against in-memory implementations of
//!   them (`memory`, tests only) as well as, in `tests/adapter`, against moto and a real minter;
//! - [`monitor`], [`backoff`]: `/healthz` reasons, metrics, retry waits.

pub mod args;
pub mod aws;
pub mod backoff;
pub mod document;
#[cfg(test)]
mod memory;
pub mod minter;
pub mod monitor;
pub mod output;
pub mod queue;
pub mod sns;
pub mod sqs;
pub mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use args::{AdapterArgs, AdapterConfig, OutputTarget};

use crate::admin::{self, AdminState};
use minter::Minter;
use monitor::Monitor;
use output::{Output, Sink};
use queue::Queue;
use sns::SnsTopic;
use sqs::{SqsOutput, SqsQueue};
use worker::Worker;

/// How often the oldest-message age is recomputed, so that it grows while a batch is stuck.
const AGE_REFRESH: Duration = Duration::from_secs(1);

/// How much longer than the long-poll wait one SQS or SNS HTTP attempt may take.
const ATTEMPT_MARGIN: Duration = Duration::from_secs(10);

/// Runs the adapter until SIGTERM or SIGINT.
///
/// # Errors
/// Invalid flags, no AWS region, or the admin address cannot be bound.
pub async fn run(args: AdapterArgs) -> anyhow::Result<ExitCode> {
    let adapter = Adapter::build(AdapterConfig::try_from(args)?).await?;
    adapter.run_until_stopped(crate::shutdown::signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// The adapter, with everything that can fail at start done.
pub struct Adapter {
    config: AdapterConfig,
    admin_listener: TcpListener,
    sdk: aws_config::SdkConfig,
    minter: Minter,
}

impl Adapter {
    /// Binds the admin listener and loads the AWS configuration. Connects to nothing yet: the
    /// minter and the queues may still be down, which the adapter then reports on `/healthz`.
    ///
    /// # Errors
    /// The admin address cannot be bound, no AWS region is configured, or the minter address is
    /// not a URL.
    pub async fn build(config: AdapterConfig) -> anyhow::Result<Self> {
        let admin_listener = TcpListener::bind(config.admin_addr)
            .await
            .with_context(|| format!("bind the admin address {}", config.admin_addr))?;
        let sdk =
            aws::load(Duration::from_secs(u64::from(config.wait_seconds)) + ATTEMPT_MARGIN).await?;
        let minter = Minter::connect_lazy(
            &config.minter_addr,
            crate::adapter::minter::Credentials {
                token: config.minter_token.as_deref(),
                tls_ca: config.minter_tls_ca.as_deref(),
            },
            config.mint_max_batch,
            config.mint_timeout,
        )?
        .with_redirects(config.redirects);
        Ok(Self {
            config,
            admin_listener,
            sdk,
            minter,
        })
    }

    /// The bound admin address (with the real port when configured with port 0).
    ///
    /// # Errors
    /// The OS cannot tell the listener's address.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin_listener.local_addr()
    }

    /// Runs until `shutdown` completes: then stops receiving, finishes the batch in work (or
    /// hands it back to the queue if it waits on an unavailable dependency) and returns.
    ///
    /// # Errors
    /// The admin listener's address cannot be read.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let admin_addr = self.admin_addr()?;
        let Self {
            config,
            admin_listener,
            sdk,
            minter,
        } = self;

        let (monitor, health) = Monitor::new();
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn({
            let state = AdminState {
                readiness: None,
                metrics: crate::metrics::install(),
                pool: None,
                health: Some(health),
            };
            let stop = stop.clone();
            async move {
                if let Err(e) = admin::serve(admin_listener, state, stop).await {
                    tracing::error!(error = %e, "the admin listener failed");
                }
            }
        });

        let queue: Arc<dyn Queue> = Arc::new(SqsQueue::new(
            aws_sdk_sqs::Client::new(&sdk),
            config.queue_url.clone(),
        ));
        let mut output = Output::new(sink(&config.output, &sdk));
        tasks.spawn(poll_depth(
            queue.clone(),
            monitor.clone(),
            config.depth_interval,
            stop.clone(),
        ));
        tasks.spawn(refresh_age(monitor.clone(), stop.clone()));

        tracing::info!(
            %admin_addr,
            queue_url = %config.queue_url,
            output = %output.name(),
            minter_addr = %config.minter_addr,
            "adapter started"
        );

        let signal = {
            let stop = stop.clone();
            tokio::spawn(async move {
                shutdown.await;
                tracing::info!("shutdown requested: no more receives; finishing the batch in work");
                stop.cancel();
            })
        };

        // Once, before the first batch: documents larger than this are refused unsent.
        tokio::select! {
            () = stop.cancelled() => {}
            () = output.read_limit() => {}
        }

        let worker = Worker {
            queue,
            output,
            minter: Arc::new(minter),
            monitor,
            max_messages: config.max_messages,
            wait: Duration::from_secs(u64::from(config.wait_seconds)),
            visibility: config.visibility_timeout,
            max_backoff: config.max_backoff,
        };
        worker.run_until_stopped(&stop).await;

        stop.cancel();
        signal.abort();
        tasks.close();
        tasks.wait().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The output `target` names, over AWS.
fn sink(target: &OutputTarget, sdk: &aws_config::SdkConfig) -> Arc<dyn Sink> {
    match target {
        OutputTarget::Queue(url) => {
            Arc::new(SqsOutput::new(aws_sdk_sqs::Client::new(sdk), url.clone()))
        }
        OutputTarget::Topic(arn) => {
            Arc::new(SnsTopic::new(aws_sdk_sns::Client::new(sdk), arn.clone()))
        }
    }
}

/// Reads the queue's depth every `interval` (the contract asks for at least every 30 s).
async fn poll_depth(
    queue: Arc<dyn Queue>,
    monitor: Monitor,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let depth = tokio::select! {
            () = stop.cancelled() => return,
            depth = queue.depth() => depth,
        };
        match depth {
            Ok(depth) => monitor.queue_depth(depth),
            Err(reason) => tracing::warn!(%reason, "could not read the input queue's depth"),
        }
    }
}

async fn refresh_age(monitor: Monitor, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(AGE_REFRESH);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => monitor.refresh_age(),
        }
    }
}
