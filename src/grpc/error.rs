//! The one place where our errors become gRPC statuses, as the contract's table says. Internal
//! errors are logged with their cause chain and reach the caller as a generic message: never SQL,
//! never a stack of causes.

use tonic::{Code, Status};

use crate::error::Error;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument(v) => Status::invalid_argument(v.to_string()),
            Error::PredecessorNotMinted(p) => Status::failed_precondition(p.to_string()),
            Error::LifecycleRefused(r) => Status::failed_precondition(r.to_string()),
            Error::Unavailable(why) => Status::unavailable(why),
            Error::DeadlineExceeded => Status::new(Code::DeadlineExceeded, "deadline exceeded"),
            Error::Internal(_) => {
                tracing::error!(error = ?e, "internal error");
                Status::internal("internal error; the server's log has the details")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_error_never_shows_its_cause() {
        let e = Error::Internal(anyhow::anyhow!("syntax error at or near \"SELEC\""));
        let status = Status::from(e);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("SELEC"), "{}", status.message());
    }

    #[test]
    fn unavailability_keeps_its_one_line_cause() {
        let status = Status::from(Error::Unavailable(
            "database is empty: run `idminter migrate`".into(),
        ));
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.message(),
            "database is empty: run `idminter migrate`"
        );
    }
}
