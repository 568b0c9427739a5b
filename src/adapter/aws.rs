//! The AWS SDK's configuration: region, endpoint and credentials from the standard AWS environment
//! (`AWS_REGION`, `AWS_ENDPOINT_URL`, the default credential chain: environment, profile files, web
//! identity, ECS and EC2 roles), over one HTTPS client of our choosing.
//!
//! Why our own HTTPS client: the SDK's default one is rustls on aws-lc, a C library built with CMake
//! that would add minutes to every cold build on our two cores. The smithy client with rustls on
//! ring speaks the same TLS to AWS and trusts the platform's CA certificates (rustls-native-certs),
//! so a container image needs its CA bundle (`ca-certificates`). The SDK's `sso` and
//! `credentials-process` features are off too: a service gets its credentials from its role.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_sqs::config::SharedHttpClient;
use aws_smithy_http_client::Builder;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// How long the SDK waits for a TCP and TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The SDK behaviour (retry, timeout and checksum defaults) we have tested against; pinned so that
/// an SDK upgrade does not change it unnoticed.
pub fn behavior_version() -> BehaviorVersion {
    BehaviorVersion::v2026_01_12()
}

/// The HTTP client every SDK client of ours uses: HTTPS on rustls with ring, and plain HTTP for
/// local endpoints such as a test server.
pub fn http_client() -> SharedHttpClient {
    Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Loads the configuration from the standard AWS environment. `attempt_timeout` bounds each HTTP
/// attempt; it must exceed the long-poll wait.
///
/// # Errors
/// No region is configured (the SDK would otherwise fail on every call).
pub async fn load(attempt_timeout: Duration) -> anyhow::Result<SdkConfig> {
    let config = aws_config::defaults(behavior_version())
        .http_client(http_client())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(attempt_timeout)
                .build(),
        )
        .load()
        .await;
    if config.region().is_none() {
        anyhow::bail!(
            "no AWS region is configured: set AWS_REGION (or a region in the AWS profile)"
        );
    }
    Ok(config)
}

/// One line for logs and `/healthz`: the error and its causes, e.g. `service error:
/// QueueDoesNotExist: The specified queue does not exist.` or `dispatch failure: io error: ...:
/// Connection refused (os error 111)`. (The SDK's `DisplayErrorContext` adds the raw response,
/// request id included, which is too long for a health reason and different every time.)
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        // Wrappers often repeat their source's text; keep each once.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("dispatch failure")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("io error: {0}")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn an_error_is_one_line_with_each_cause_once() {
        let e = Outer(Middle(std::io::Error::other("Connection refused")));
        assert_eq!(
            describe(&e),
            "dispatch failure: io error: Connection refused"
        );
    }
}
