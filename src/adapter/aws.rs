//! The AWS SDK's configuration: region, endpoint and credentials from the standard AWS environment
//! (`AWS_REGION`, `AWS_ENDPOINT_URL`, the default credential chain: environment, profile files, web
//! identity, ECS and EC2 roles), over one HTTPS client of our choosing.
//!
//! Why our own HTTPS client: the SDK's default one is rustls on aws-lc, a C library built with CMake
//! that would add minutes to every cold build on our two cores. The smithy client with rustls on
//! ring speaks the same TLS to AWS and trusts the platform's CA certificates (rustls-native-certs),
//! so a container image needs its CA bundle (`ca-certificates`). The SDK's `sso` and
//! `credentials-process` features are off too: a service gets its credentials from its role.
//!
//! Also here, shared by the SQS and SNS implementations: how an SDK error reads in one line, and
//! whether it is the sender's fault.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_sqs::config::SharedHttpClient;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::Builder;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use crate::adapter::output::CallError;

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

/// One batch entry per item, each with its position as its entry id (how answers name them).
///
/// # Errors
/// An entry could not be built (a required field missing), as one line.
pub fn numbered<T, B, E: std::fmt::Display>(
    items: &[T],
    build: impl Fn(String, &T) -> Result<B, E>,
) -> Result<Vec<B>, String> {
    items
        .iter()
        .enumerate()
        .map(|(position, item)| build(position.to_string(), item).map_err(|e| e.to_string()))
        .collect()
}

/// The error codes of a call refused as a whole for what it carries (AWS error codes, without
/// the `AWS.SimpleQueueService.` or `com.amazonaws.sqs#` prefix). Any other error of a whole
/// call (transport, 5xx, throttling, a queue or topic that does not exist, access denied) means
/// the output is unavailable: the documents are not at fault, and retrying later may help.
const SENDER_FAULT_CODES: [&str; 6] = [
    "InvalidParameterValue",
    "InvalidParameter",
    "BatchRequestTooLong",
    "MessageTooLong",
    "InvalidMessageContents",
    "ValidationError",
];

/// Whether an error of a whole call is the sender's fault, by its AWS error code.
fn is_sender_fault(code: Option<&str>) -> bool {
    code.map(|c| c.rsplit(['.', '#']).next().unwrap_or(c))
        .is_some_and(|c| SENDER_FAULT_CODES.contains(&c))
}

/// A clean copy of an SDK error of a batch call for the output: its kind, and one line with its
/// cause chain.
pub fn call_error<E>(what: &str, error: &SdkError<E>) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let sender_fault = matches!(error, SdkError::ServiceError(_)) && is_sender_fault(error.code());
    CallError {
        sender_fault,
        reason: format!("{what}: {}", describe(error)),
    }
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

    #[test]
    fn only_what_the_call_carries_is_a_sender_fault() {
        for code in [
            "InvalidParameterValue",
            "AWS.SimpleQueueService.BatchRequestTooLong",
            "com.amazonaws.sqs#BatchRequestTooLong",
            "MessageTooLong",
            "InvalidMessageContents",
            "InvalidParameter",
        ] {
            assert!(is_sender_fault(Some(code)), "{code}");
        }
        for code in [
            "AWS.SimpleQueueService.NonExistentQueue",
            "QueueDoesNotExist",
            "NotFound",
            "AccessDenied",
            "AuthorizationError",
            "RequestThrottled",
            "Throttling",
            "InternalError",
            "ServiceUnavailable",
            "KMS.ThrottlingException",
        ] {
            assert!(!is_sender_fault(Some(code)), "{code}");
        }
        assert!(!is_sender_fault(None), "no code: a transport failure");
    }
}
