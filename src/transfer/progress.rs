//! Progress of a long import or export: an `indicatif` bar on a terminal (rows, rows/s, ETA from
//! the input's size), and otherwise a log line every few seconds, so that a job in a pipeline or
//! a container still says how far it got.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

/// How often progress is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Counters the working code bumps and the reporter reads.
#[derive(Debug, Default)]
pub struct Counters {
    /// Input bytes consumed (compressed bytes for `.gz` files).
    pub bytes: AtomicU64,
    /// Rows read (import) or written (export).
    pub rows: AtomicU64,
    /// Rows applied to the table (import's second phase).
    pub applied: AtomicU64,
}

/// The phase being reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading the input, out of `total` bytes when known.
    Reading { total: Option<u64> },
    /// Writing `total` rows into the table.
    Writing { total: u64 },
    /// Export: rows written so far.
    Exporting,
}

/// A running reporter; [`Reporter::phase`] switches what it shows, [`Reporter::finish`] stops it.
pub struct Reporter {
    counters: Arc<Counters>,
    phase: tokio::sync::watch::Sender<Phase>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Reporter {
    /// Starts reporting on stderr.
    pub fn start(counters: Arc<Counters>, phase: Phase) -> Self {
        let (tx, rx) = tokio::sync::watch::channel(phase);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(counters.clone(), rx, stop.clone()));
        Self {
            counters,
            phase: tx,
            stop,
            task,
        }
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    pub fn phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    /// Stops reporting and clears the bar.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn run(
    counters: Arc<Counters>,
    mut phase: tokio::sync::watch::Receiver<Phase>,
    stop: CancellationToken,
) {
    let terminal = std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let started = Instant::now();
    let mut current = *phase.borrow_and_update();
    let mut phase_started = Instant::now();
    let mut tick = tokio::time::interval(if terminal {
        Duration::from_millis(200)
    } else {
        LOG_EVERY
    });
    tick.tick().await; // the first tick is immediate: nothing to say yet
    if let Some(bar) = &bar {
        style(bar, current);
    }
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            changed = phase.changed() => {
                if changed.is_err() { break; }
                current = *phase.borrow_and_update();
                phase_started = Instant::now();
                if let Some(bar) = &bar { style(bar, current); }
                continue;
            }
            _ = tick.tick() => {}
        }
        let rows = counters.rows.load(Ordering::Relaxed);
        let bytes = counters.bytes.load(Ordering::Relaxed);
        let applied = counters.applied.load(Ordering::Relaxed);
        if let Some(bar) = &bar {
            match current {
                Phase::Reading { .. } => {
                    bar.set_position(bytes);
                    bar.set_message(format!("{rows} rows read"));
                }
                Phase::Writing { .. } => bar.set_position(applied),
                Phase::Exporting => bar.set_position(rows),
            }
            continue;
        }
        let elapsed = phase_started.elapsed().as_secs_f64().max(0.001);
        match current {
            Phase::Reading { total } => {
                let percent = total
                    .filter(|t| *t > 0)
                    .map(|t| format!(" ({:.0}% of the input)", bytes as f64 * 100.0 / t as f64))
                    .unwrap_or_default();
                tracing::info!(
                    "import: reading: {rows} rows{percent}, {:.0} rows/s",
                    rows as f64 / elapsed
                );
            }
            Phase::Writing { total } => tracing::info!(
                "import: writing: {applied} of {total} rows, {:.0} rows/s",
                applied as f64 / elapsed
            ),
            Phase::Exporting => tracing::info!(
                "export: {rows} rows written, {:.0} rows/s",
                rows as f64 / started.elapsed().as_secs_f64().max(0.001)
            ),
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

fn style(bar: &ProgressBar, phase: Phase) {
    let (template, length) = match phase {
        Phase::Reading { total: Some(total) } => (
            "reading  {wide_bar} {bytes}/{total_bytes} {msg} ({eta})",
            Some(total),
        ),
        Phase::Reading { total: None } => ("reading  {spinner} {bytes} {msg}", None),
        Phase::Writing { total } => (
            "writing  {wide_bar} {human_pos}/{human_len} rows, {per_sec} ({eta})",
            Some(total),
        ),
        Phase::Exporting => ("exporting {spinner} {human_pos} rows, {per_sec}", None),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_length(length.unwrap_or(0));
    if length.is_none() {
        bar.unset_length();
    }
    bar.set_position(0);
    bar.reset_eta();
}
