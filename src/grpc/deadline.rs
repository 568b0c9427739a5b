//! Deadlines. tonic enforces a caller's `grpc-timeout` itself but answers CANCELLED; the contract
//! says DEADLINE_EXCEEDED. So each call runs under the earlier of the caller's deadline and the
//! server's request timeout, and gives up a moment before tonic's own timer would fire. Both
//! count from the request's arrival, which [`Arrival`] records in the outermost layer (tonic's
//! timer starts there too, before the body is decoded). Dropping the call's future rolls back its
//! transaction: a call that runs out of time mints nothing, unless time runs out during the commit
//! itself, which then either completed or did not.

use std::future::Future;
use std::time::{Duration, Instant};

use tonic::metadata::MetadataMap;

use crate::error::Error;

/// How much earlier than the caller's deadline we stop, so that our answer wins the race with
/// tonic's timer (which starts a moment before ours and answers CANCELLED).
const MARGIN: Duration = Duration::from_millis(20);

/// When a request arrived, recorded by the outermost layer as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct Arrival(pub Instant);

/// Parses a `grpc-timeout` header value: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// When this call must be answered: the earlier of the caller's deadline (less the margin) and
/// the server's timeout, counted from the request's arrival (or from now, without an [`Arrival`]).
pub fn deadline<T>(
    request: &tonic::Request<T>,
    server_timeout: Option<Duration>,
) -> Option<Instant> {
    let arrival = request
        .extensions()
        .get::<Arrival>()
        .map_or_else(Instant::now, |a| a.0);
    budget(request.metadata(), server_timeout).map(|b| arrival + b)
}

/// The time a call may take: the earlier of the caller's timeout (less the margin) and the
/// server's timeout.
fn budget(metadata: &MetadataMap, server_timeout: Option<Duration>) -> Option<Duration> {
    let caller = metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map(|d| d.saturating_sub(MARGIN));
    match (caller, server_timeout) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Runs `work` until `deadline`.
///
/// # Errors
/// [`Error::DeadlineExceeded`] when the deadline passes first; otherwise `work`'s own error.
pub async fn within<T>(
    deadline: Option<Instant>,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match deadline {
        None => work.await,
        Some(deadline) => tokio::time::timeout_at(deadline.into(), work)
            .await
            .unwrap_or(Err(Error::DeadlineExceeded)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values_parse_in_every_unit() {
        for (text, expected) in [
            ("1H", Duration::from_secs(3600)),
            ("2M", Duration::from_secs(120)),
            ("3S", Duration::from_secs(3)),
            ("250m", Duration::from_millis(250)),
            ("7u", Duration::from_micros(7)),
            ("99999999n", Duration::from_nanos(99_999_999)),
        ] {
            assert_eq!(parse_grpc_timeout(text), Some(expected), "{text}");
        }
        for bad in ["", "S", "10", "123456789S", "10x", "-1S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_earlier_of_caller_and_server_deadline_wins() {
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", "1S".parse().unwrap());
        assert_eq!(
            budget(&metadata, Some(Duration::from_secs(30))),
            Some(Duration::from_millis(980))
        );
        assert_eq!(
            budget(&metadata, Some(Duration::from_millis(10))),
            Some(Duration::from_millis(10))
        );
        assert_eq!(budget(&MetadataMap::new(), None), None);
    }

    #[tokio::test(start_paused = true)]
    async fn work_that_outlives_its_budget_is_a_deadline_exceeded() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        };
        let result = within(Some(Instant::now() + Duration::from_secs(1)), slow).await;
        assert!(matches!(result, Err(Error::DeadlineExceeded)));
    }
}
