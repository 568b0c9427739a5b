//! The process's shutdown trigger: a future that completes on SIGTERM or SIGINT, for `serve` and
//! `adapter` alike. Its own module (like mini-redis's `shutdown.rs`) so that the adapter need not
//! depend on the server's startup to stop: both take the trigger as an argument
//! (`run_until_stopped(shutdown)`) and tests pass their own.

/// Completes on SIGTERM or SIGINT (containers send SIGTERM; people press Ctrl-C).
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
