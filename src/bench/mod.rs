//! `treuhand bench`: the escrow-latency harness for researchers.
//!
//! It drives signed S3 traffic (closed- and open-loop) from a Rust load generator, records HDR
//! latency histograms, and writes `results.csv`, `results.json`, a run manifest, SVG plots and
//! a Markdown summary. `bench report DIR` regenerates plots and summary from the results alone.
//!
//! - [`client`]: the signed S3 client (hyper + rustls, SigV4, SSE-C headers).
//! - [`load`]: closed/open-loop load with HDR histograms.
//! - [`results`]: rows, CSV/JSON, /proc probes, Prometheus phase parsing.
//! - [`aggregate`]: folds the repetitions of a cell into medians and ranges.
//! - [`plot`], [`report`]: SVG plots and the Markdown summary.
//! - [`relay`]: a delaying TCP relay that emulates a distant trustee.
//! - [`stack`]: starts the processes a sweep measures.

pub mod aggregate;
pub mod cli;
pub mod client;
pub mod load;
pub mod plot;
pub mod relay;
pub mod report;
pub mod results;
pub mod stack;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use load::{LoadSpec, Op, Pacing};
use results::{Params, Row};

/// A sweep: the cross product of these lists is measured. Every field has a default, so an
/// empty file (or none) runs the default sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SweepConfig {
    /// Seconds per cell.
    pub duration_s: f64,
    /// Stop a cell after this many requests (0 = time only).
    pub max_requests: u64,
    /// Object sizes in bytes.
    pub sizes: Vec<u64>,
    /// Concurrency levels (closed loop).
    pub concurrency: Vec<usize>,
    /// Operations.
    pub ops: Vec<Op>,
    /// Open-loop arrival rates (requests/s), run for GET of the smallest size, in addition to
    /// the closed-loop cells.
    pub open_loop_rates: Vec<f64>,
    /// Key-cache TTLs in seconds for the treuhand scenario (0 = a release per request).
    pub cache_ttl_s: Vec<f64>,
    /// Thresholds as `k-of-n` (n trustees incl. none for the customer; the customer share
    /// travels in SSE-C).
    pub thresholds: Vec<String>,
    /// Injected trustee round-trip delays in milliseconds.
    pub trustee_rtt_ms: Vec<f64>,
    /// Scenarios: `direct` (backend without proxy), `passthrough` (the proxy with no
    /// encryption and no escrow), `treuhand`.
    pub scenarios: Vec<String>,
    /// Objects per GET cell.
    pub keys: usize,
    /// Open-loop cells: most requests in flight at once (arrivals beyond it wait, and the wait
    /// counts as latency).
    pub open_loop_max_in_flight: usize,
    /// Skip the 3 s CPU steadiness probe recorded in the manifest (`cpu_stability`).
    pub skip_cpu_probe: bool,
    /// Seed recorded in the manifest (the load shape is deterministic).
    pub seed: u64,
    /// How often the whole variant sequence runs. Repetitions are interleaved (every variant
    /// once, then every variant again), so slow drift of the host hits all variants alike; the
    /// report shows medians with their range.
    pub repeats: usize,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            duration_s: 5.0,
            max_requests: 0,
            sizes: vec![
                1024,
                64 * 1024,
                1024 * 1024,
                16 * 1024 * 1024,
                64 * 1024 * 1024,
                1024 * 1024 * 1024,
            ],
            concurrency: vec![1, 8],
            ops: vec![Op::Put, Op::Get, Op::RangeGet],
            open_loop_rates: vec![500.0, 1800.0],
            cache_ttl_s: vec![0.0, 300.0],
            thresholds: vec!["2-of-2".into(), "2-of-3".into(), "3-of-5".into()],
            trustee_rtt_ms: vec![0.0, 5.0, 35.0],
            scenarios: vec!["direct".into(), "passthrough".into(), "treuhand".into()],
            keys: 4,
            open_loop_max_in_flight: 64,
            skip_cpu_probe: false,
            seed: 1,
            repeats: 1,
        }
    }
}

impl SweepConfig {
    /// The `--quick` smoke sweep: a few cells, well under 60 s.
    pub fn quick() -> Self {
        Self {
            duration_s: 0.5,
            max_requests: 0,
            sizes: vec![4096, 1024 * 1024],
            concurrency: vec![4],
            ops: vec![Op::Put, Op::Get, Op::RangeGet],
            open_loop_rates: vec![200.0],
            cache_ttl_s: vec![0.0, 300.0],
            thresholds: vec!["2-of-2".into()],
            trustee_rtt_ms: vec![0.0, 5.0],
            scenarios: vec!["direct".into(), "passthrough".into(), "treuhand".into()],
            keys: 2,
            open_loop_max_in_flight: 64,
            skip_cpu_probe: false,
            seed: 1,
            repeats: 1,
        }
    }

    /// Loads and validates a sweep file.
    ///
    /// # Errors
    /// Unreadable file, unknown keys, or out-of-range values, with the reason.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let config: Self =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks value ranges; [`SweepConfig::load`] calls it, and so does `bench run` after
    /// command-line overrides such as `--repeats`.
    ///
    /// # Errors
    /// The first out-of-range value, with the allowed range.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.duration_s > 0.0, "duration_s must be positive");
        anyhow::ensure!(
            (1..=MAX_REPEATS).contains(&self.repeats),
            "repeats must be 1..={MAX_REPEATS} (got {}): it is how often the whole sweep runs; \
             use 1 for a single pass, 3-5 for medians on a noisy machine",
            self.repeats
        );
        anyhow::ensure!(
            !self.sizes.is_empty() && self.sizes.iter().all(|&s| s > 0),
            "sizes must be non-empty and > 0"
        );
        anyhow::ensure!(
            self.sizes.iter().all(|&s| s <= 16 << 30),
            "sizes above 16 GiB are not supported"
        );
        anyhow::ensure!(
            self.concurrency.iter().all(|&c| (1..=1024).contains(&c)),
            "concurrency must be 1..=1024"
        );
        for t in &self.thresholds {
            parse_threshold(t)?;
        }
        for s in &self.scenarios {
            anyhow::ensure!(
                matches!(s.as_str(), "direct" | "passthrough" | "treuhand"),
                "unknown scenario '{s}': use direct, passthrough or treuhand"
            );
        }
        Ok(())
    }
}

/// The most repetitions a sweep may ask for: more is almost surely a typo (a sweep already
/// takes minutes per pass).
pub const MAX_REPEATS: usize = 100;

/// Parses `k-of-n`.
///
/// # Errors
/// If it is not `k-of-n` with 2 ≤ k ≤ n ≤ 16.
pub fn parse_threshold(text: &str) -> anyhow::Result<(u8, u8)> {
    let parsed = text
        .split_once("-of-")
        .and_then(|(k, n)| Some((k.parse::<u8>().ok()?, n.parse::<u8>().ok()?)));
    match parsed {
        Some((k, n)) if k >= 2 && k <= n && n <= 16 => Ok((k, n)),
        _ => anyhow::bail!("threshold '{text}' must look like 2-of-3 (2 <= k <= n <= 16)"),
    }
}

/// Everything a cell needs from a running stack.
#[derive(Clone)]
pub struct Endpoint {
    /// Where to send S3 requests.
    pub target: client::Target,
    /// rustls config trusting the endpoint.
    pub tls: Arc<rustls::ClientConfig>,
    /// The proxy's pid, for CPU and RSS.
    pub proxy_pid: Option<u32>,
    /// The proxy's Prometheus endpoint.
    pub metrics_url: Option<String>,
}

/// One stack configuration in a sweep.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Scenario.
    pub scenario: String,
    /// Cache TTL (treuhand only).
    pub cache_ttl_s: Option<f64>,
    /// Threshold (treuhand only).
    pub threshold: String,
    /// Injected trustee RTT (treuhand only).
    pub trustee_rtt_ms: f64,
}

/// The stack variants of a sweep: baselines once, treuhand per (ttl, threshold, rtt). To keep
/// the sweep tractable, thresholds and RTTs vary one at a time around 2-of-2 / 0 ms.
pub fn variants(config: &SweepConfig) -> Vec<Variant> {
    let mut out = Vec::new();
    for scenario in &config.scenarios {
        if scenario != "treuhand" {
            out.push(Variant {
                scenario: scenario.clone(),
                cache_ttl_s: None,
                threshold: "-".into(),
                trustee_rtt_ms: 0.0,
            });
            continue;
        }
        let base_threshold = config
            .thresholds
            .first()
            .cloned()
            .unwrap_or_else(|| "2-of-2".into());
        for &ttl in &config.cache_ttl_s {
            // The trustee round trip only matters when releases happen per request (TTL 0);
            // with a warm cache one RTT is enough.
            let rtts: Vec<f64> = if ttl == 0.0 {
                config.trustee_rtt_ms.clone()
            } else {
                config.trustee_rtt_ms.iter().copied().take(1).collect()
            };
            for rtt in rtts {
                out.push(Variant {
                    scenario: scenario.clone(),
                    cache_ttl_s: Some(ttl),
                    threshold: base_threshold.clone(),
                    trustee_rtt_ms: rtt,
                });
            }
            for threshold in config.thresholds.iter().skip(1) {
                out.push(Variant {
                    scenario: scenario.clone(),
                    cache_ttl_s: Some(ttl),
                    threshold: threshold.clone(),
                    trustee_rtt_ms: 0.0,
                });
            }
        }
    }
    out
}

/// The order in which a sweep runs its variants: `(repeat, variant index, variant)`, repeat
/// 1-based.
/// Interleaved (1: every variant, 2: every variant again, ...) rather than each variant
/// `repeats` times in a row, so slow drift of a shared host (another tenant's job starting, a
/// thermal limit) spreads over all variants instead of landing on a few of them.
pub fn schedule<T>(variants: &[T], repeats: usize) -> Vec<(usize, usize, &T)> {
    (1..=repeats)
        .flat_map(|repeat| {
            variants
                .iter()
                .enumerate()
                .map(move |(index, variant)| (repeat, index, variant))
        })
        .collect()
}

fn manifest(config: &SweepConfig, out: &Path) -> serde_json::Value {
    let git = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines().find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
    });
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().map(str::to_owned));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_owned());
    let started = client::amz_date(std::time::SystemTime::now());
    // The toolchain on PATH; a binary built elsewhere may differ, hence the build profile too.
    let rustc = std::process::Command::new("rustc")
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    serde_json::json!({
        "started": started,
        "git_commit": git,
        "treuhand_version": env!("CARGO_PKG_VERSION"),
        "machine": format!("{} x {}, {}", cores, cpu.unwrap_or_default(), mem.unwrap_or_default()),
        "kernel": kernel,
        "rustc": rustc,
        "build_profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "dependencies": locked_versions(),
        "config": config,
        "seed": config.seed,
        "repeats": config.repeats,
        "out": out,
    })
}

/// The crates that shape the measured numbers, with the versions locked in the `Cargo.lock` this
/// binary was built from.
fn locked_versions() -> BTreeMap<&'static str, String> {
    const CRATES: &[&str] = &[
        "tokio",
        "hyper",
        "hyper-util",
        "rustls",
        "ring",
        "s3s",
        "object_store",
        "vsss-rs",
        "rusqlite",
        "hdrhistogram",
    ];
    let lock = include_str!("../../Cargo.lock");
    let mut versions = BTreeMap::new();
    let mut name: Option<&str> = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"'));
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take())
            && let Some(wanted) = CRATES.iter().find(|c| **c == n)
        {
            // A crate locked twice (two major versions) lists both.
            versions
                .entry(*wanted)
                .and_modify(|all: &mut String| {
                    all.push_str(", ");
                    all.push_str(v.trim_matches('"'));
                })
                .or_insert_with(|| v.trim_matches('"').to_owned());
        }
    }
    versions
}

fn scrape(url: &str) -> Option<String> {
    // The metrics endpoint is plain HTTP on loopback; a blocking std client keeps this simple.
    use std::io::{Read as _, Write as _};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(
        body.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or(body),
    )
}

/// The Prometheus histogram with per-phase labels that the proxy exports.
pub const PHASE_METRIC: &str = "treuhand_phase_seconds";

/// Runs every cell of `config` against `endpoint` for one variant in repetition `repeat`
/// (1-based), appending rows.
///
/// # Errors
/// If preparing objects fails (the endpoint is down or refuses the credentials).
pub async fn run_variant(
    config: &SweepConfig,
    variant: &Variant,
    repeat: usize,
    endpoint: &Endpoint,
    progress: &MultiProgress,
    overall: &ProgressBar,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let client = client::S3Client::new(endpoint.target.clone(), endpoint.tls.clone(), 1024)?;
    client.create_bucket().await?;
    let chunk = Bytes::from(vec![0xA5u8; 1 << 20]);
    let mut cells: Vec<(Op, u64, usize, Pacing)> = Vec::new();
    for (op, size, concurrency) in closed_cells(config) {
        cells.push((op, size, concurrency, Pacing::Closed));
    }
    let smallest = config.sizes.iter().copied().min().unwrap_or(1024);
    for &rate in &config.open_loop_rates {
        cells.push((
            Op::Get,
            smallest,
            config.open_loop_max_in_flight.max(1),
            Pacing::Open { rate },
        ));
    }
    for (index, (op, size, concurrency, pacing)) in cells.into_iter().enumerate() {
        let pacing_label = match pacing {
            Pacing::Closed => "closed".to_owned(),
            Pacing::Open { rate } => format!("open@{rate}"),
        };
        let spec = LoadSpec {
            op,
            object_size: size,
            concurrency,
            pacing,
            duration: Duration::from_secs_f64(config.duration_s),
            max_requests: config.max_requests,
            keys: if op == Op::Put {
                concurrency.max(1)
            } else if size > LARGE_OBJECT {
                1
            } else {
                config.keys.max(1)
            },
            prefix: format!("bench/{}/{index}", variant.scenario),
        };
        let bar = progress.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("  {spinner} {msg} {pos} requests")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(format!(
            "{} {:?} {}B c={} {}{}",
            variant.scenario,
            op,
            size,
            concurrency,
            pacing_label,
            repeat_label(repeat, config.repeats)
        ));
        if op != Op::Put {
            load::prepare(&client, &spec, &chunk).await?;
        }
        if size <= 1 << 20 {
            // Warm-up (not recorded): opens the pooled connections and fills caches, so the
            // first TLS handshakes do not land in a small-object cell's tail.
            let warm = LoadSpec {
                duration: spec.duration.min(Duration::from_secs(2)) / 2,
                max_requests: 0,
                ..spec.clone()
            };
            load::run(&client, &warm, chunk.clone(), || {}).await?;
            if let Pacing::Open { .. } = pacing {
                // Opens as many connections as the cell may keep in flight (and, through the
                // proxy, as many trustee connections). Without this an open-loop burst made
                // the generator open new TLS connections mid-cell, and the handshakes turned a
                // short hiccup into a 50 ms tail (docs/benchmarks.md, "open-loop tail").
                let fill = LoadSpec {
                    pacing: Pacing::Closed,
                    duration: Duration::from_secs(2),
                    max_requests: concurrency as u64 * 4,
                    ..spec.clone()
                };
                load::run(&client, &fill, chunk.clone(), || {}).await?;
            }
        }
        let before_metrics = endpoint.metrics_url.as_deref().and_then(scrape);
        let before_stats = endpoint.proxy_pid.and_then(results::process_stats);
        if let Some(pid) = endpoint.proxy_pid {
            results::reset_peak_rss(pid);
        }
        let tick_bar = bar.clone();
        let load = load::run(&client, &spec, chunk.clone(), move || tick_bar.inc(1)).await?;
        bar.finish_and_clear();
        let mut row = Row::from_load(
            Params {
                scenario: variant.scenario.clone(),
                op,
                object_size: size,
                concurrency,
                pacing: pacing_label,
                cache_ttl_s: variant.cache_ttl_s,
                threshold: variant.threshold.clone(),
                trustee_rtt_ms: variant.trustee_rtt_ms,
                repeat,
            },
            &load,
        );
        if let (Some(pid), Some(before)) = (endpoint.proxy_pid, before_stats)
            && let Some(after) = results::process_stats(pid)
        {
            row.proxy_cpu_s = Some(after.cpu_s - before.cpu_s);
            row.proxy_peak_rss_mib = Some(after.peak_rss_mib);
        }
        if let (Some(before), Some(after)) = (
            before_metrics,
            endpoint.metrics_url.as_deref().and_then(scrape),
        ) {
            let (b, a) = (
                results::phase_sums(&before, PHASE_METRIC),
                results::phase_sums(&after, PHASE_METRIC),
            );
            for (phase, (sum, count)) in a {
                let (sum0, count0) = b.get(&phase).copied().unwrap_or_default();
                if count > count0 {
                    // Mean per request of the cell: phase time delta over requests completed.
                    row.phases_ms
                        .insert(phase, (sum - sum0) * 1000.0 / row.requests_ok.max(1) as f64);
                }
            }
        }
        overall.inc(1);
        say(
            overall,
            format!(
                "{:>11} {:>9} {:>10}B c={:<4} {:<12} ok={:<6} err={:<3} {:>9.1} ops/s {:>8.1} MiB/s p50={:.3}ms p99={:.3}ms{}{}",
                variant.scenario,
                format!("{op:?}"),
                size,
                concurrency,
                row.pacing,
                row.requests_ok,
                row.errors,
                row.ops_per_s,
                row.mib_per_s,
                row.p50_ms,
                row.p99_ms,
                row.gen_lag_p99_ms
                    .map(|lag| format!(" gen-lag p99={lag:.3}ms"))
                    .unwrap_or_default(),
                repeat_label(repeat, config.repeats)
            ),
        );
        rows.push(row);
    }
    Ok(())
}

/// ` rep=2/3` in progress lines, and nothing for a single pass (so its output stays as it was).
pub fn repeat_label(repeat: usize, repeats: usize) -> String {
    if repeats > 1 {
        format!(" rep={repeat}/{repeats}")
    } else {
        String::new()
    }
}

/// Prints a line above the progress bar, or plainly when output is not a terminal (CI logs),
/// where indicatif hides its bars and their messages.
pub fn say(bar: &ProgressBar, line: impl AsRef<str>) {
    if bar.is_hidden() {
        println!("{}", line.as_ref());
    } else {
        bar.println(line);
    }
}

/// Cells per variant, for the overall progress bar.
pub fn cells_per_variant(config: &SweepConfig) -> usize {
    closed_cells(config).len() + config.open_loop_rates.len()
}

/// Objects above this size are measured at one concurrency level (the lowest configured) with
/// one key: a 1 GiB cell at concurrency 8 would write 8 GiB per variant and take minutes,
/// without saying more about streaming throughput than concurrency 1 does.
pub const LARGE_OBJECT: u64 = 64 * 1024 * 1024;

/// The closed-loop cells of one variant: every (op, size, concurrency), with large objects at
/// the lowest concurrency only.
fn closed_cells(config: &SweepConfig) -> Vec<(Op, u64, usize)> {
    let lowest = config.concurrency.iter().copied().min().unwrap_or(1);
    let mut cells = Vec::new();
    for &op in &config.ops {
        for &size in &config.sizes {
            for &concurrency in &config.concurrency {
                if size > LARGE_OBJECT && concurrency != lowest {
                    continue;
                }
                cells.push((op, size, concurrency));
            }
        }
    }
    cells
}

/// Writes results, manifest, plots and summary into `out`.
///
/// # Errors
/// I/O or drawing errors.
pub fn write_outputs(
    out: &Path,
    rows: &[Row],
    manifest: &serde_json::Value,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    results::write(out, rows)?;
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_vec_pretty(manifest)?,
    )?;
    let plots = plot::write_all(out, rows)?;
    std::fs::write(out.join("summary.md"), report::markdown(rows, manifest))?;
    Ok(plots)
}

/// `treuhand bench report DIR`: regenerate plots and summary from `results.json` alone.
///
/// # Errors
/// Missing or malformed results.
pub fn report_dir(dir: &Path) -> anyhow::Result<()> {
    let rows = results::read(dir)?;
    let manifest_path = dir.join("manifest.json");
    let manifest: serde_json::Value = std::fs::read(&manifest_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    let plots = plot::write_all(dir, &rows)?;
    std::fs::write(dir.join("summary.md"), report::markdown(&rows, &manifest))?;
    println!(
        "wrote {} and {} plot(s) from {} rows",
        dir.join("summary.md").display(),
        plots.len(),
        rows.len()
    );
    Ok(())
}

pub use stack::run_sweep;
#[doc(hidden)]
pub fn manifest_for(config: &SweepConfig, out: &Path) -> serde_json::Value {
    manifest(config, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_outside_1_to_100_are_rejected_with_the_allowed_range() {
        for bad in [0, MAX_REPEATS + 1, usize::MAX] {
            let config = SweepConfig {
                repeats: bad,
                ..SweepConfig::quick()
            };
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("repeats must be 1..=100"), "{bad}: {err}");
        }
        for good in [1, 3, MAX_REPEATS] {
            let config = SweepConfig {
                repeats: good,
                ..SweepConfig::quick()
            };
            config.validate().unwrap();
        }
    }

    #[test]
    fn the_built_in_sweeps_run_once() {
        assert_eq!(SweepConfig::default().repeats, 1);
        assert_eq!(SweepConfig::quick().repeats, 1);
    }

    #[test]
    fn schedule_interleaves_repetitions_abab() {
        let order: Vec<(usize, usize, char)> = schedule(&['a', 'b', 'c'], 2)
            .into_iter()
            .map(|(repeat, index, v)| (repeat, index, *v))
            .collect();
        assert_eq!(
            order,
            [
                (1, 0, 'a'),
                (1, 1, 'b'),
                (1, 2, 'c'),
                (2, 0, 'a'),
                (2, 1, 'b'),
                (2, 2, 'c')
            ]
        );
        assert_eq!(schedule(&['a'], 1), [(1, 0, &'a')]);
    }

    #[test]
    fn progress_lines_mention_the_repetition_only_when_there_are_several() {
        assert_eq!(repeat_label(1, 1), "");
        assert_eq!(repeat_label(2, 3), " rep=2/3");
    }
}
