//! Sweep planning: the sweep file ([`SweepConfig`]), the stack variants it asks for
//! ([`Variant`], one [`Scenario`] each, with a [`Threshold`] for treuhand), the order in which
//! repetitions run them, and the cells measured against each variant (each a [`LoadSpec`]).
//!
//! Pure: no I/O beyond reading the sweep file, no processes, no network.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::load::{LoadSpec, Op, Pacing};

/// A sweep: the cross product of these lists is measured. Every field has a default, so an
/// empty file (or none) runs the default sweep.
///
/// `scenarios` and `thresholds` stay the strings of the sweep file (so a sweep file, and the
/// manifest that echoes it, read as before); [`SweepConfig::validate`] parses them into
/// [`Scenario`] and [`Threshold`], and [`variants`] works on the parsed values.
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
    /// Other servers measured in front of the same bytes, as a reference (`nginx`); `bench
    /// run --baseline` adds to them. Each runs once per repetition, before the scenarios.
    pub baselines: Vec<Baseline>,
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
            sizes: vec![
                1024,
                64 * 1024,
                1024 * 1024,
                16 * 1024 * 1024,
                64 * 1024 * 1024,
                1024 * 1024 * 1024,
            ],
            concurrency: vec![1, 8],
            open_loop_rates: vec![500.0, 1800.0],
            thresholds: vec!["2-of-2".into(), "2-of-3".into(), "3-of-5".into()],
            trustee_rtt_ms: vec![0.0, 5.0, 35.0],
            keys: 4,
            ..Self::common()
        }
    }
}

impl SweepConfig {
    /// What the default and the quick sweep share.
    fn common() -> Self {
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
            baselines: Vec::new(),
            keys: 2,
            open_loop_max_in_flight: 64,
            skip_cpu_probe: false,
            seed: 1,
            repeats: 1,
        }
    }

    /// The `--quick` smoke sweep: a few cells, well under 60 s.
    pub fn quick() -> Self {
        Self::common()
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
        self.parsed_thresholds()?;
        self.parsed_scenarios()?;
        Ok(())
    }

    fn parsed_thresholds(&self) -> anyhow::Result<Vec<Threshold>> {
        self.thresholds
            .iter()
            .map(|t| Threshold::parse(t))
            .collect()
    }

    fn parsed_scenarios(&self) -> anyhow::Result<Vec<Scenario>> {
        self.scenarios.iter().map(|s| Scenario::parse(s)).collect()
    }
}

/// The most repetitions a sweep may ask for: more is almost surely a typo (a sweep already
/// takes minutes per pass).
pub const MAX_REPEATS: usize = 100;

/// A server other than treuhand that a sweep measures as a reference (sweep key `baselines`,
/// `bench run --baseline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Baseline {
    /// Debian's nginx, one worker, TLS with the stack's certificate: a file server with
    /// WebDAV PUT over the filesystem backend, a reverse proxy in front of an S3 backend.
    Nginx,
}

impl From<Baseline> for Scenario {
    fn from(baseline: Baseline) -> Self {
        match baseline {
            Baseline::Nginx => Self::Nginx,
        }
    }
}

/// What a variant measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scenario {
    /// The S3 backend itself, without any proxy.
    Direct,
    /// nginx in front of the same bytes (a [`Baseline`]).
    Nginx,
    /// The proxy with no encryption and no escrow (TLS pass-through).
    Passthrough,
    /// The proxy with escrow.
    Treuhand,
    /// An endpoint started elsewhere (`bench run --env`), under the label the user gave it.
    External(String),
}

impl Scenario {
    /// Parses a sweep file's scenario name (`External` is never parsed: it comes from
    /// `--label`).
    ///
    /// # Errors
    /// An unknown name, with the known ones.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        match text {
            "direct" => Ok(Self::Direct),
            "passthrough" => Ok(Self::Passthrough),
            "treuhand" => Ok(Self::Treuhand),
            "nginx" => anyhow::bail!(
                "nginx is a baseline, not a scenario: add baselines = [\"nginx\"] to the sweep \
                 file or pass --baseline nginx"
            ),
            _ => anyhow::bail!("unknown scenario '{text}': use direct, passthrough or treuhand"),
        }
    }

    /// The name in results, progress lines and object prefixes.
    pub fn name(&self) -> &str {
        match self {
            Self::Direct => "direct",
            Self::Nginx => "nginx",
            Self::Passthrough => "passthrough",
            Self::Treuhand => "treuhand",
            Self::External(label) => label,
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so progress lines can align it (`{:>11}`).
        f.pad(self.name())
    }
}

/// A `k-of-n` escrow threshold: `n` holders (the customer and `n - 1` trustees), any `k` of
/// which release the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    /// Shares needed.
    pub k: u8,
    /// Holders in all.
    pub n: u8,
}

impl Threshold {
    /// The dev stack's set-up (the customer and one trustee), used where a variant has none.
    pub const TWO_OF_TWO: Self = Self { k: 2, n: 2 };

    /// Parses `k-of-n`.
    ///
    /// # Errors
    /// If it is not `k-of-n` with 2 ≤ k ≤ n ≤ 16.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let parsed = text
            .split_once("-of-")
            .and_then(|(k, n)| Some((k.parse::<u8>().ok()?, n.parse::<u8>().ok()?)));
        match parsed {
            Some((k, n)) if k >= 2 && k <= n && n <= 16 => Ok(Self { k, n }),
            _ => anyhow::bail!("threshold '{text}' must look like 2-of-3 (2 <= k <= n <= 16)"),
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&format!("{}-of-{}", self.k, self.n))
    }
}

/// Parses `k-of-n` into `(k, n)`.
///
/// # Errors
/// See [`Threshold::parse`].
pub fn parse_threshold(text: &str) -> anyhow::Result<(u8, u8)> {
    Threshold::parse(text).map(|t| (t.k, t.n))
}

/// One stack configuration in a sweep.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Scenario.
    pub scenario: Scenario,
    /// Cache TTL (treuhand only).
    pub cache_ttl_s: Option<f64>,
    /// Threshold (treuhand only).
    pub threshold: Option<Threshold>,
    /// Injected trustee RTT (treuhand only).
    pub trustee_rtt_ms: f64,
}

impl Variant {
    /// A variant without escrow parameters (a baseline, or an external endpoint).
    pub fn plain(scenario: Scenario) -> Self {
        Self {
            scenario,
            cache_ttl_s: None,
            threshold: None,
            trustee_rtt_ms: 0.0,
        }
    }

    /// The threshold as results show it: `k-of-n`, or `-` without escrow.
    pub fn threshold_label(&self) -> String {
        self.threshold
            .map_or_else(|| "-".to_owned(), |t| t.to_string())
    }
}

/// The stack variants of a sweep: the [`Baseline`]s (each once, whatever the TTLs, thresholds
/// and RTTs: they have no escrow), then the scenarios: `direct` and `passthrough` once,
/// treuhand per (ttl, threshold, rtt). To keep the sweep tractable, thresholds and RTTs vary one at a
/// time around 2-of-2 / 0 ms.
///
/// A sweep that did not pass [`SweepConfig::validate`] skips the names it cannot parse.
pub fn variants(config: &SweepConfig) -> Vec<Variant> {
    let thresholds: Vec<Threshold> = config
        .thresholds
        .iter()
        .filter_map(|t| Threshold::parse(t).ok())
        .collect();
    let base_threshold = thresholds.first().copied().unwrap_or(Threshold::TWO_OF_TWO);
    let mut out: Vec<Variant> = Vec::new();
    for &baseline in &config.baselines {
        let scenario = Scenario::from(baseline);
        if out.iter().all(|v| v.scenario != scenario) {
            out.push(Variant::plain(scenario));
        }
    }
    for scenario in config
        .scenarios
        .iter()
        .filter_map(|s| Scenario::parse(s).ok())
    {
        if scenario != Scenario::Treuhand {
            out.push(Variant::plain(scenario));
            continue;
        }
        for &ttl in &config.cache_ttl_s {
            // The trustee round trip only matters when releases happen per request (TTL 0);
            // with a warm cache one RTT is enough.
            let rtts = if ttl == 0.0 {
                &config.trustee_rtt_ms[..]
            } else {
                &config.trustee_rtt_ms[..config.trustee_rtt_ms.len().min(1)]
            };
            let by_rtt = rtts.iter().map(|&rtt| (base_threshold, rtt));
            let by_threshold = thresholds.iter().skip(1).map(|&t| (t, 0.0));
            for (threshold, rtt) in by_rtt.chain(by_threshold) {
                out.push(Variant {
                    scenario: scenario.clone(),
                    cache_ttl_s: Some(ttl),
                    threshold: Some(threshold),
                    trustee_rtt_ms: rtt,
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

/// Objects above this size are measured at one concurrency level (the lowest configured) with
/// one key: a 1 GiB cell at concurrency 8 would write 8 GiB per variant and take minutes,
/// without saying more about streaming throughput than concurrency 1 does.
pub const LARGE_OBJECT: u64 = 64 * 1024 * 1024;

/// The load of every cell of a variant of `scenario`: each closed-loop (op, size,
/// concurrency), with large objects at the lowest concurrency only, then one open-loop GET of
/// the smallest size per rate. Each cell writes under its own prefix, `bench/SCENARIO/INDEX`.
pub fn cells(config: &SweepConfig, scenario: &Scenario) -> Vec<LoadSpec> {
    let lowest = config.concurrency.iter().copied().min().unwrap_or(1);
    let mut shapes = Vec::new();
    for &op in &config.ops {
        for &size in &config.sizes {
            for &concurrency in &config.concurrency {
                if size > LARGE_OBJECT && concurrency != lowest {
                    continue;
                }
                shapes.push((op, size, concurrency, Pacing::Closed));
            }
        }
    }
    let smallest = config.sizes.iter().copied().min().unwrap_or(1024);
    for &rate in &config.open_loop_rates {
        let in_flight = config.open_loop_max_in_flight.max(1);
        shapes.push((Op::Get, smallest, in_flight, Pacing::Open { rate }));
    }
    shapes
        .into_iter()
        .enumerate()
        .map(|(index, (op, object_size, concurrency, pacing))| LoadSpec {
            op,
            object_size,
            concurrency,
            pacing,
            duration: Duration::from_secs_f64(config.duration_s),
            max_requests: config.max_requests,
            // One object per PUT worker; one for a large object; otherwise the sweep's keys.
            keys: if op == Op::Put {
                concurrency.max(1)
            } else if object_size > LARGE_OBJECT {
                1
            } else {
                config.keys.max(1)
            },
            prefix: format!("bench/{scenario}/{index}"),
        })
        .collect()
}

/// Cells per variant, for the overall progress bar.
pub fn cells_per_variant(config: &SweepConfig) -> usize {
    cells(config, &Scenario::Treuhand).len()
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
    fn an_nginx_baseline_is_one_plain_variant_first_whatever_the_escrow_parameters() {
        let config = SweepConfig {
            baselines: vec![Baseline::Nginx, Baseline::Nginx],
            cache_ttl_s: vec![0.0, 300.0],
            trustee_rtt_ms: vec![0.0, 5.0],
            ..SweepConfig::quick()
        };
        let all = variants(&config);
        let nginx: Vec<&Variant> = all
            .iter()
            .filter(|v| v.scenario == Scenario::Nginx)
            .collect();
        assert_eq!(nginx.len(), 1, "{all:?}");
        assert_eq!(all[0].scenario, Scenario::Nginx);
        assert_eq!(
            (all[0].cache_ttl_s, all[0].threshold, all[0].trustee_rtt_ms),
            (None, None, 0.0)
        );
        assert_eq!(all.len(), variants(&SweepConfig::quick()).len() + 1);
        // Its cells are the scenarios' cells, under its own prefix.
        let cells = cells(&config, &Scenario::Nginx);
        assert_eq!(cells.len(), cells_per_variant(&config));
        assert!(cells[0].prefix.starts_with("bench/nginx/"));
    }

    #[test]
    fn nginx_as_a_scenario_points_to_the_baselines_key() {
        let err = Scenario::parse("nginx").unwrap_err().to_string();
        assert!(err.contains("baselines = [\"nginx\"]"), "{err}");
        let config: SweepConfig = toml::from_str("baselines = [\"nginx\"]").unwrap();
        assert_eq!(config.baselines, [Baseline::Nginx]);
        assert!(toml::from_str::<SweepConfig>("baselines = [\"apache\"]").is_err());
    }

    #[test]
    fn scenarios_and_thresholds_print_as_in_sweep_files_and_align() {
        assert_eq!(format!("{:>11}|", Scenario::Treuhand), "   treuhand|");
        assert_eq!(Scenario::External("mine".into()).to_string(), "mine");
        assert_eq!(
            format!("{:<7}|", Threshold::parse("3-of-5").unwrap()),
            "3-of-5 |"
        );
        assert!(Threshold::parse("1-of-2").is_err());
        assert!(Scenario::parse("nope").is_err());
    }
}
