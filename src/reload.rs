//! Files re-read when they change: the tokens file, and the TLS certificate, key and client CA.
//!
//! The files are read every interval and compared with what was last seen, byte for byte. Polling
//! the content rather than watching for events covers every way a file is replaced: an editor's
//! rename, `cp` over it, and the symlink swap by which Kubernetes updates a mounted Secret (which
//! changes no modification time of the path the program opened). The files are small, so a read a
//! second costs nothing.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Calls `reload` with the contents of `paths` (in order) each time one of them changes, until
/// `stop`. The first contents seen are taken as already loaded. An unreadable file or a failed
/// `reload` is logged once per change; the caller keeps what it had.
pub async fn on_change<F>(
    paths: Vec<PathBuf>,
    interval: Duration,
    stop: CancellationToken,
    mut reload: F,
) where
    F: FnMut(&[Vec<u8>]) -> anyhow::Result<()> + Send,
{
    let mut last = read_all(&paths).ok();
    let mut last_error: Option<String> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let contents = match read_all(&paths) {
            Ok(contents) => contents,
            Err(e) => {
                // A Secret being swapped can be missing for a moment: report it once, retry.
                if last_error.as_ref() != Some(&e) {
                    tracing::warn!(error = %e, "cannot re-read a watched file; keeping what was loaded");
                    last_error = Some(e);
                }
                continue;
            }
        };
        if last.as_ref() == Some(&contents) {
            continue;
        }
        match reload(&contents) {
            Ok(()) => last_error = None,
            Err(e) => {
                let e = format!("{e:#}");
                tracing::error!(error = %e, "a changed file was refused; keeping what was loaded");
                last_error = Some(e);
            }
        }
        last = Some(contents);
    }
}

fn read_all(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, String> {
    paths
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
        .collect()
}
