//! The flags of `idminter adapter` (each also read from the environment variable named in its help)
//! and [`AdapterConfig`], the plain, validated values the adapter runs with. AWS region, endpoint
//! and credentials are not flags: they come from the standard AWS environment.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgGroup, Args};

/// Where identified documents go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    /// An SQS queue (SendMessageBatch).
    Queue(String),
    /// An SNS topic (PublishBatch).
    Topic(String),
}

/// Flags of `idminter adapter`.
#[derive(Debug, Clone, Args)]
#[command(group(
    ArgGroup::new("output")
        .required(true)
        .args(["output_queue_url", "output_topic_arn"])
))]
pub struct AdapterArgs {
    /// The SQS queue URL the documents come from.
    #[arg(long, env = "IDMINTER_ADAPTER_QUEUE_URL")]
    pub queue_url: String,
    /// The SQS queue URL identified documents are sent to (or use --output-topic-arn).
    #[arg(long, env = "IDMINTER_ADAPTER_OUTPUT_QUEUE_URL")]
    pub output_queue_url: Option<String>,
    /// The SNS topic ARN identified documents are published to (or use --output-queue-url).
    #[arg(long, env = "IDMINTER_ADAPTER_OUTPUT_TOPIC_ARN")]
    pub output_topic_arn: Option<String>,
    /// The minter's gRPC URL.
    #[arg(
        long,
        env = "IDMINTER_ADAPTER_MINTER_ADDR",
        default_value = crate::config::DEFAULT_SERVER_URL
    )]
    pub minter_addr: String,
    /// The token sent to a minter that checks tokens (it needs the `mint` scope).
    #[arg(long, env = "IDMINTER_ADAPTER_MINTER_TOKEN", hide_env_values = true)]
    pub minter_token: Option<String>,
    /// The CA certificate (PEM) that signed an https:// minter's certificate; default: the
    /// system's roots.
    #[arg(long, env = "IDMINTER_ADAPTER_MINTER_TLS_CA")]
    pub minter_tls_ca: Option<std::path::PathBuf>,
    /// The admin HTTP listen address (/metrics, /healthz).
    #[arg(
        long,
        env = "IDMINTER_ADAPTER_ADMIN_ADDR",
        default_value = "0.0.0.0:9091"
    )]
    pub admin_addr: SocketAddr,
    /// The most messages one receive asks for (SQS allows 1 to 10).
    #[arg(long, env = "IDMINTER_ADAPTER_MAX_MESSAGES", default_value_t = 10,
          value_parser = clap::value_parser!(u8).range(1..=10))]
    pub max_messages: u8,
    /// How long one receive waits for messages (long polling; SQS allows 0 to 20 seconds).
    #[arg(long, env = "IDMINTER_ADAPTER_WAIT_SECONDS", default_value_t = 20,
          value_parser = clap::value_parser!(u8).range(0..=20))]
    pub wait_seconds: u8,
    /// How long received messages stay hidden from other consumers, in whole seconds (e.g. 300s);
    /// extended while a batch is still in work. Default: the queue's own visibility timeout.
    #[arg(long, env = "IDMINTER_ADAPTER_VISIBILITY_TIMEOUT", value_parser = parse_visibility_timeout)]
    pub visibility_timeout: Option<Duration>,
    /// The most items one MintIds call carries: the minter's --max-batch. A batch with more
    /// identifiers is split into several calls.
    #[arg(long, env = "IDMINTER_ADAPTER_MINT_MAX_BATCH", default_value_t = crate::config::DEFAULT_MAX_BATCH,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub mint_max_batch: u32,
    /// How long one MintIds call may take before it counts as the minter being unavailable.
    #[arg(long, env = "IDMINTER_ADAPTER_MINT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub mint_timeout: Duration,
    /// The longest wait between retries while the minter, the output or the input queue is
    /// unavailable (the wait doubles from 200ms up to this).
    #[arg(long, env = "IDMINTER_ADAPTER_MAX_BACKOFF", default_value = "30s", value_parser = humantime::parse_duration)]
    pub max_backoff: Duration,
    /// How often the input queue's depth (ApproximateNumberOfMessages) is read; at most 30s.
    #[arg(long, env = "IDMINTER_ADAPTER_DEPTH_INTERVAL", default_value = "15s", value_parser = parse_depth_interval)]
    pub depth_interval: Duration,
    /// What to write for a redirected canonical ID: `follow` writes the ID it was merged into
    /// (the record joins that one), `ignore` the ID the identifier has.
    #[arg(long, env = "IDMINTER_ADAPTER_REDIRECTS", default_value = "follow")]
    pub redirects: Redirects,
}

/// What the adapter writes as `canonicalId` for an identifier whose ID is redirected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Redirects {
    /// The redirect target: the record joins the one it was merged into.
    #[default]
    Follow,
    /// The identifier's own (minted) ID.
    Ignore,
}

/// Everything the adapter needs, as plain values.
#[derive(Debug, Clone)]
pub struct AdapterConfig {
    pub queue_url: String,
    pub output: OutputTarget,
    pub minter_addr: String,
    pub minter_token: Option<String>,
    pub minter_tls_ca: Option<std::path::PathBuf>,
    pub admin_addr: SocketAddr,
    pub max_messages: u8,
    pub wait_seconds: u8,
    pub visibility_timeout: Option<Duration>,
    pub mint_max_batch: usize,
    pub mint_timeout: Duration,
    pub max_backoff: Duration,
    pub depth_interval: Duration,
    pub redirects: Redirects,
}

impl TryFrom<AdapterArgs> for AdapterConfig {
    type Error = anyhow::Error;

    fn try_from(args: AdapterArgs) -> anyhow::Result<Self> {
        // Destructured in full, so that a new flag that is not wired up fails to compile.
        let AdapterArgs {
            queue_url,
            output_queue_url,
            output_topic_arn,
            minter_addr,
            minter_token,
            minter_tls_ca,
            admin_addr,
            max_messages,
            wait_seconds,
            visibility_timeout,
            mint_max_batch,
            mint_timeout,
            max_backoff,
            depth_interval,
            redirects,
        } = args;
        let output = match (output_queue_url, output_topic_arn) {
            (Some(url), None) => OutputTarget::Queue(url),
            (None, Some(arn)) => OutputTarget::Topic(arn),
            // clap's group already says this; kept for configs built without clap.
            _ => anyhow::bail!("give exactly one of --output-queue-url and --output-topic-arn"),
        };
        if output == OutputTarget::Queue(queue_url.clone()) {
            anyhow::bail!("the output queue is the input queue: documents would go round forever");
        }
        if mint_timeout.is_zero() || max_backoff.is_zero() {
            anyhow::bail!("--mint-timeout and --max-backoff must be longer than zero");
        }
        Ok(Self {
            queue_url,
            output,
            minter_addr,
            minter_token,
            minter_tls_ca,
            admin_addr,
            max_messages,
            wait_seconds,
            visibility_timeout,
            mint_max_batch: mint_max_batch as usize,
            mint_timeout,
            max_backoff,
            depth_interval,
            redirects,
        })
    }
}

/// SQS counts visibility in whole seconds, from 0 to 12 hours; 0 would hand every message to the
/// next consumer at once, so 1 second is the least we accept.
fn parse_visibility_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.subsec_nanos() != 0 || d < Duration::from_secs(1) || d > Duration::from_secs(43_200) {
        return Err(format!(
            "`{s}` is not a whole number of seconds from 1s to 12h"
        ));
    }
    Ok(d)
}

/// The contract promises a depth reading at least every 30 seconds.
fn parse_depth_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() || d > Duration::from_secs(30) {
        return Err(format!("`{s}` is not between 1ms and 30s"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<AdapterArgs, clap::Error> {
        let cli = Cli::try_parse_from(["idminter", "adapter"].iter().chain(args))?;
        match cli.command {
            Command::Adapter(a) => Ok(a),
            other => panic!("not the adapter: {other:?}"),
        }
    }

    const IN: &str = "http://127.0.0.1:1/123456789012/in";

    #[test]
    fn exactly_one_output_is_required() {
        assert!(parse(&["--queue-url", IN]).is_err(), "no output");
        assert!(
            parse(&[
                "--queue-url",
                IN,
                "--output-queue-url",
                "q",
                "--output-topic-arn",
                "t"
            ])
            .is_err(),
            "two outputs"
        );
        let args = parse(&["--queue-url", IN, "--output-topic-arn", "arn:t"]).unwrap();
        let config = AdapterConfig::try_from(args).unwrap();
        assert_eq!(config.output, OutputTarget::Topic("arn:t".to_owned()));
    }

    #[test]
    fn the_defaults_are_the_contracts() {
        let args = parse(&["--queue-url", IN, "--output-queue-url", "out"]).unwrap();
        let config = AdapterConfig::try_from(args).unwrap();
        assert_eq!(config.max_messages, 10);
        assert_eq!(config.wait_seconds, 20);
        assert_eq!(config.visibility_timeout, None, "the queue's own");
        assert_eq!(config.mint_max_batch, 10_000, "serve's default --max-batch");
        assert!(config.depth_interval <= Duration::from_secs(30));
    }

    #[test]
    fn out_of_range_values_are_usage_errors() {
        for (flag, value) in [
            ("--max-messages", "0"),
            ("--max-messages", "11"),
            ("--wait-seconds", "21"),
            ("--visibility-timeout", "0s"),
            ("--visibility-timeout", "1500ms"),
            ("--visibility-timeout", "13h"),
            ("--depth-interval", "31s"),
            ("--mint-max-batch", "0"),
        ] {
            let result = parse(&["--queue-url", IN, "--output-queue-url", "o", flag, value]);
            assert!(result.is_err(), "{flag} {value} was accepted");
        }
    }

    #[test]
    fn the_output_queue_may_not_be_the_input_queue() {
        let args = parse(&["--queue-url", IN, "--output-queue-url", IN]).unwrap();
        let err = AdapterConfig::try_from(args).unwrap_err().to_string();
        assert!(err.contains("round forever"), "{err}");
    }
}
