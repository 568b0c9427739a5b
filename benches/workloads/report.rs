//! The results: a table on stdout, and the same as JSON for `--json FILE`.

use serde_json::{Value, json};

use crate::load::Sample;
use crate::workload::Workload;

/// One workload's results on both sides.
pub struct Row {
    pub workload: Workload,
    /// How the service was reached, when not plaintext without tokens: `TLS+tokens`.
    pub variant: Option<&'static str>,
    pub clients: usize,
    pub service: Option<Sample>,
    pub floor: Option<Sample>,
    /// The server's peak resident set during this workload (or the whole run, see `rss_scope`).
    pub server_peak_rss: Option<u64>,
    /// CPU the server used, in cores, while the service side ran (warm-up included).
    pub server_cpu_cores: Option<f64>,
    /// The share of identifiers the server's cache answered (warm-up included).
    pub cache_hit_rate: Option<f64>,
    /// CPU the whole machine used, in cores, while each side ran.
    pub machine_cpu_cores_service: Option<f64>,
    pub machine_cpu_cores_floor: Option<f64>,
}

impl Row {
    pub fn ratio(&self) -> Option<f64> {
        match (&self.service, &self.floor) {
            (Some(s), Some(f)) if f.ids > 0 => Some(s.ids_per_second() / f.ids_per_second()),
            _ => None,
        }
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rate(sample: &Option<Sample>) -> String {
    sample
        .as_ref()
        .map_or("-".to_owned(), |s| thousands(s.ids_per_second()))
}

fn latency(sample: &Option<Sample>) -> String {
    sample.as_ref().map_or("-".to_owned(), |s| {
        format!("{:.2} / {:.2}", ms(s.quantile(0.5)), ms(s.quantile(0.99)))
    })
}

fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The table, as Markdown (it reads in a terminal and pastes into BENCHMARKS.md).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| workload | ids/call | clients | service ids/s | floor ids/s | ratio | service p50 / p99 ms | floor p50 / p99 ms | server peak RSS | server CPU | cache hits |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.variant.map_or_else(
                || r.workload.name().to_owned(),
                |v| format!("{} ({v})", r.workload.name())
            ),
            r.workload.ids_per_call(),
            r.clients,
            rate(&r.service),
            rate(&r.floor),
            r.ratio().map_or("-".to_owned(), |x| format!("{x:.2}")),
            latency(&r.service),
            latency(&r.floor),
            r.server_peak_rss
                .map_or("-".to_owned(), |b| format!("{:.0} MB", b as f64 / 1e6)),
            r.server_cpu_cores
                .map_or("-".to_owned(), |c| format!("{c:.2} cores")),
            r.cache_hit_rate
                .map_or("-".to_owned(), |h| format!("{:.0}%", h * 100.0)),
        ));
    }
    out
}

fn sample_json(sample: &Option<Sample>) -> Value {
    match sample {
        None => Value::Null,
        Some(s) => json!({
            "ids_per_second": s.ids_per_second(),
            "calls": s.calls,
            "ids": s.ids,
            "seconds": s.seconds,
            "latency_ms": {
                "p50": ms(s.quantile(0.5)),
                "p90": ms(s.quantile(0.9)),
                "p99": ms(s.quantile(0.99)),
                "max": ms(s.quantile(1.0)),
            },
        }),
    }
}

pub fn rows_json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                json!({
                    "workload": r.workload.name(),
                    "variant": r.variant,
                    "ids_per_call": r.workload.ids_per_call(),
                    "clients": r.clients,
                    "service": sample_json(&r.service),
                    "floor": sample_json(&r.floor),
                    "ratio": r.ratio(),
                    "server_peak_rss_bytes": r.server_peak_rss,
                    "server_cpu_cores": r.server_cpu_cores,
                    "cache_hit_rate": r.cache_hit_rate,
                    "machine_cpu_cores": {
                        "service": r.machine_cpu_cores_service,
                        "floor": r.machine_cpu_cores_floor,
                    },
                })
            })
            .collect(),
    )
}
