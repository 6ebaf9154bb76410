//! Result rows, the CSV/JSON writers and the probes of the proxy process (CPU, RSS) and of
//! the host (CPU steadiness).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::load::{LoadResult, Op};

/// One cell of a sweep: its parameters and what was measured.
///
/// The parameters are set field by field (`..Row::default()` for the rest), then
/// [`Row::measured`] fills in the measurements.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Row {
    /// `direct`, `passthrough` or `treuhand`, plus any label.
    pub scenario: String,
    /// Operation.
    pub op: Op,
    /// Object size in bytes.
    pub object_size: u64,
    /// Workers or in-flight limit.
    pub concurrency: usize,
    /// `closed` or `open@<rate>`.
    pub pacing: String,
    /// Key-cache TTL in seconds (None where there is no proxy cache).
    pub cache_ttl_s: Option<f64>,
    /// `k-of-n`.
    pub threshold: String,
    /// Injected trustee round-trip delay in milliseconds.
    pub trustee_rtt_ms: f64,
    /// Which repetition of the sweep measured this row, 1-based. Results written before
    /// repetitions existed have none and read as 1.
    #[serde(default = "first_repeat")]
    pub repeat: usize,
    /// Successful requests.
    pub requests_ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// Measurement time in seconds.
    pub duration_s: f64,
    /// Successful requests per second.
    pub ops_per_s: f64,
    /// Payload MiB per second.
    pub mib_per_s: f64,
    /// Latency percentiles in milliseconds.
    pub p50_ms: f64,
    /// p90.
    pub p90_ms: f64,
    /// p99.
    pub p99_ms: f64,
    /// p99.9.
    pub p999_ms: f64,
    /// Maximum.
    pub max_ms: f64,
    /// Mean time per request in each proxy phase (from the proxy's /metrics), milliseconds.
    pub phases_ms: BTreeMap<String, f64>,
    /// CPU seconds used by the proxy process during the cell.
    pub proxy_cpu_s: Option<f64>,
    /// Peak resident set size of the proxy during the cell, MiB.
    pub proxy_peak_rss_mib: Option<f64>,
    /// Open loop only: p99 of the generator's own lateness in starting a request, ms. Large
    /// values mean the load generator, not the system under test, was saturated.
    #[serde(default)]
    pub gen_lag_p99_ms: Option<f64>,
    /// Latency CDF points (quantile, milliseconds), for plots.
    pub cdf: Vec<(f64, f64)>,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

fn first_repeat() -> usize {
    1
}

fn ms(histogram: &Histogram<u64>, q: f64) -> f64 {
    histogram.value_at_quantile(q) as f64 / 1000.0
}

impl Row {
    /// This row's parameters with the measurements of `load`.
    #[must_use]
    pub fn measured(self, load: &LoadResult) -> Self {
        let h = &load.histogram;
        let secs = load.elapsed.as_secs_f64().max(1e-9);
        let cdf = [
            0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999, 1.0,
        ]
        .iter()
        .map(|&q| (q, ms(h, q)))
        .collect();
        Row {
            requests_ok: load.ok,
            errors: load.errors,
            duration_s: secs,
            ops_per_s: load.ok as f64 / secs,
            mib_per_s: load.bytes as f64 / secs / (1024.0 * 1024.0),
            p50_ms: ms(h, 0.5),
            p90_ms: ms(h, 0.9),
            p99_ms: ms(h, 0.99),
            p999_ms: ms(h, 0.999),
            max_ms: h.max() as f64 / 1000.0,
            phases_ms: BTreeMap::new(),
            proxy_cpu_s: None,
            proxy_peak_rss_mib: None,
            gen_lag_p99_ms: load.dispatch_lag.as_ref().map(|lag| ms(lag, 0.99)),
            cdf,
            first_error: load.first_error.clone(),
            ..self
        }
    }
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

fn opt(value: Option<f64>) -> String {
    value.map(|v| format!("{v:.4}")).unwrap_or_default()
}

/// Writes `results.csv` (one row per cell; one column per phase) and `results.json`.
///
/// # Errors
/// I/O errors.
pub fn write(dir: &Path, rows: &[Row]) -> anyhow::Result<()> {
    std::fs::write(dir.join("results.json"), serde_json::to_vec_pretty(rows)?)?;
    let phases: BTreeSet<&String> = rows.iter().flat_map(|r| r.phases_ms.keys()).collect();
    let mut csv = String::from(
        "scenario,op,object_size,concurrency,pacing,cache_ttl_s,threshold,trustee_rtt_ms,repeat,requests_ok,errors,\
         duration_s,ops_per_s,mib_per_s,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,proxy_cpu_s,proxy_peak_rss_mib,gen_lag_p99_ms",
    );
    for phase in &phases {
        csv.push_str(&format!(",phase_{phase}_ms"));
    }
    csv.push('\n');
    for r in rows {
        let op = serde_json::to_value(r.op)?
            .as_str()
            .unwrap_or_default()
            .to_owned();
        csv.push_str(&format!(
            "{},{op},{},{},{},{},{},{},{},{},{},{:.3},{:.2},{:.3},{:.4},{:.4},{:.4},{:.4},{:.4},{},{},{}",
            csv_field(&r.scenario),
            r.object_size,
            r.concurrency,
            csv_field(&r.pacing),
            opt(r.cache_ttl_s),
            csv_field(&r.threshold),
            r.trustee_rtt_ms,
            r.repeat,
            r.requests_ok,
            r.errors,
            r.duration_s,
            r.ops_per_s,
            r.mib_per_s,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.p999_ms,
            r.max_ms,
            opt(r.proxy_cpu_s),
            opt(r.proxy_peak_rss_mib),
            opt(r.gen_lag_p99_ms),
        ));
        for phase in &phases {
            csv.push_str(&format!(",{}", opt(r.phases_ms.get(*phase).copied())));
        }
        csv.push('\n');
    }
    std::fs::write(dir.join("results.csv"), csv)?;
    Ok(())
}

/// Reads `results.json` back (for `bench report`).
///
/// # Errors
/// I/O or JSON errors, with the file named.
pub fn read(dir: &Path) -> anyhow::Result<Vec<Row>> {
    let path = dir.join("results.json");
    let bytes =
        std::fs::read(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a results file: {e}", path.display()))
}

/// CPU time (user + system) and peak RSS of a process, from /proc.
#[derive(Debug, Clone, Copy)]
pub struct ProcessStats {
    /// CPU seconds so far.
    pub cpu_s: f64,
    /// Peak RSS (VmHWM) in MiB since start or the last [`reset_peak_rss`].
    pub peak_rss_mib: f64,
}

/// Reads /proc/PID/stat and /proc/PID/status. `None` if the process is gone.
pub fn process_stats(pid: u32) -> Option<ProcessStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" that closes the command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    // USER_HZ is 100 on every Linux x86-64 and arm64 build.
    Some(ProcessStats {
        cpu_s: ticks / 100.0,
        peak_rss_mib: hwm_kib / 1024.0,
    })
}

/// Resets a process's peak RSS counter (Linux `clear_refs` value 5), so a cell measures its own.
pub fn reset_peak_rss(pid: u32) {
    // Best effort: without permission the peak simply covers the process lifetime.
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// Parses Prometheus text and returns `(sum, count)` per `phase` label of the histogram `name`.
pub fn phase_sums(metrics: &str, name: &str) -> BTreeMap<String, (f64, f64)> {
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in metrics.lines() {
        let (is_sum, rest) = if let Some(rest) = line.strip_prefix(&format!("{name}_sum")) {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix(&format!("{name}_count")) {
            (false, rest)
        } else {
            continue;
        };
        let Some(labels) = rest.strip_prefix('{').and_then(|r| r.split_once('}')) else {
            continue;
        };
        let Some(phase) = labels.0.split(',').find_map(|kv| kv.strip_prefix("phase=")) else {
            continue;
        };
        let Ok(value) = labels.1.trim().parse::<f64>() else {
            continue;
        };
        let entry = out.entry(phase.trim_matches('"').to_owned()).or_default();
        if is_sum {
            entry.0 += value
        } else {
            entry.1 += value
        }
    }
    out
}

/// How steady this machine's CPU is while nothing else runs: a thread does fixed chunks of
/// work (about 50 µs each, with 200 µs pauses so it does not provoke throttling itself) for
/// `duration` and reports how long the chunks took. On the project's VM this found episodes
/// every 0.4–2 s in which the same chunk ran 5–17× slower for 20–100 ms; every request that
/// arrives in one queues, so such episodes, not treuhand, set the open-loop p99 there. The
/// numbers go into the manifest so a reader can judge a run's tail latencies.
pub fn cpu_stability(duration: std::time::Duration) -> serde_json::Value {
    use std::time::Instant;
    let end = Instant::now() + duration;
    let mut chunks_us: Vec<f64> = Vec::new();
    let mut sink = 0u64;
    while Instant::now() < end {
        let started = Instant::now();
        for i in 0..100_000u64 {
            sink = sink.wrapping_add(std::hint::black_box(i.wrapping_mul(i)));
        }
        chunks_us.push(started.elapsed().as_secs_f64() * 1e6);
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    std::hint::black_box(sink);
    if chunks_us.is_empty() {
        return serde_json::Value::Null;
    }
    let mut sorted = chunks_us.clone();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    let median = at(0.5);
    let slow_us: f64 = chunks_us.iter().filter(|&&c| c > 3.0 * median).sum();
    serde_json::json!({
        "probe_s": duration.as_secs_f64(),
        "chunks": sorted.len(),
        "chunk_median_us": median,
        "chunk_p99_us": at(0.99),
        "chunk_max_us": at(1.0),
        "slowest_over_median": at(1.0) / median.max(1e-9),
        "share_of_time_in_chunks_over_3x_median": slow_us / (duration.as_secs_f64() * 1e6),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_sums_parse_prometheus_histograms() {
        let text = "# TYPE x histogram\nx_bucket{phase=\"crypto\",le=\"0.1\"} 3\nx_sum{phase=\"crypto\"} 0.25\nx_count{phase=\"crypto\"} 5\nx_sum{phase=\"backend\"} 1\nx_count{phase=\"backend\"} 2\n";
        let sums = phase_sums(text, "x");
        assert_eq!(sums["crypto"], (0.25, 5.0));
        assert_eq!(sums["backend"], (1.0, 2.0));
    }

    #[test]
    fn csv_and_json_carry_the_repeat_after_the_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let row = crate::bench::aggregate::tests::row("treuhand", 2, 50.0, 2.0, 4.0);
        write(dir.path(), &[row]).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("results.csv")).unwrap();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let values: Vec<&str> = lines.next().unwrap().split(',').collect();
        let at = header.iter().position(|c| *c == "repeat").unwrap();
        assert_eq!(header[at - 1], "trustee_rtt_ms");
        assert_eq!(header[at + 1], "requests_ok");
        assert_eq!(values[at], "2");
        assert_eq!(read(dir.path()).unwrap()[0].repeat, 2);
    }

    #[test]
    fn results_written_before_repetitions_read_as_repetition_1() {
        let dir = tempfile::tempdir().unwrap();
        let row = crate::bench::aggregate::tests::row("treuhand", 1, 50.0, 2.0, 4.0);
        let mut json = serde_json::to_value([row]).unwrap();
        json[0].as_object_mut().unwrap().remove("repeat").unwrap();
        std::fs::write(dir.path().join("results.json"), json.to_string()).unwrap();
        assert_eq!(read(dir.path()).unwrap()[0].repeat, 1);
    }

    #[test]
    fn own_process_stats_are_readable() {
        let stats = process_stats(std::process::id()).unwrap();
        assert!(stats.peak_rss_mib > 0.0);
    }

    #[test]
    fn cpu_stability_reports_every_field_without_judging_the_numbers() {
        let probe = super::cpu_stability(std::time::Duration::from_millis(30));
        for field in [
            "chunks",
            "chunk_median_us",
            "chunk_p99_us",
            "chunk_max_us",
            "slowest_over_median",
            "share_of_time_in_chunks_over_3x_median",
        ] {
            assert!(probe[field].is_number(), "{field} missing in {probe}");
        }
        assert!(probe["chunk_max_us"].as_f64() >= probe["chunk_median_us"].as_f64());
    }
}
