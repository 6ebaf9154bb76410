//! Running a sweep: for each scheduled variant, get an endpoint (an own stack, nginx, the
//! backend itself, or the one `--env` names), run its cells one after another, and write the
//! outputs.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::cell::{self, Endpoint};
use super::pin::{self, Pinning};
use super::plan::{self, Scenario, SweepConfig, Variant};
use super::results::{self, Row};
use super::{client, manifest, nginx, output, stack};

/// How `bench run` runs a sweep, besides the sweep itself.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions<'a> {
    /// Measure this running endpoint (an env file) instead of starting stacks.
    pub env: Option<&'a Path>,
    /// Store on this S3 backend (an `rgw.env`) instead of the filesystem.
    pub backend_env: Option<&'a Path>,
    /// The scenario name of `env`'s endpoint.
    pub label: &'a str,
    /// Pin the load generator and the system under test to one CPU each (see [`pin`]).
    pub pin: bool,
}

/// Runs a whole sweep and writes every output into `out`.
///
/// With `env`, every cell targets that running endpoint as scenario `label`; otherwise the
/// harness starts its own stack per variant.
///
/// # Errors
/// Setup failures (with what to do); individual request failures are counted, not fatal.
pub async fn run_sweep(
    config: &SweepConfig,
    out: &Path,
    options: RunOptions<'_>,
) -> anyhow::Result<Vec<Row>> {
    let RunOptions {
        env,
        backend_env,
        label,
        pin,
    } = options;
    let variants: Vec<Variant> = match env {
        Some(_) => {
            anyhow::ensure!(
                config.baselines.is_empty(),
                "--baseline starts nginx in front of the bench's own storage; it cannot measure \
                 an endpoint given with --env"
            );
            vec![Variant::plain(Scenario::External(label.to_owned()))]
        }
        None => plan::variants(config),
    };
    // Before anything starts: a missing nginx fails the run at once, not after minutes.
    let nginx = if variants.iter().any(|v| v.scenario == Scenario::Nginx) {
        Some(nginx::locate(backend_env.is_none())?)
    } else {
        None
    };
    let pinning = if pin { Some(Pinning::plan()?) } else { None };
    std::fs::create_dir_all(out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
    let mut manifest = manifest::manifest(config, out);
    if let Some(m) = manifest.as_object_mut() {
        m.insert(
            "nginx".into(),
            nginx
                .as_ref()
                .map_or(serde_json::Value::Null, |n| n.version.clone().into()),
        );
    }
    let mut observed = pin::Observed::default();
    if let Some(pinning) = pinning {
        // The generator's threads (and every thread it starts later, which inherits this).
        pin::pin_process(std::process::id(), pinning.client, "the load generator")?;
        observed.record("load generator", std::process::id());
        println!(
            "pinned: load generator on CPU {}, system under test on CPU {}",
            pinning.client, pinning.system
        );
    }
    if !config.skip_cpu_probe {
        println!("probing CPU steadiness for 3 s (see manifest.json, cpu_stability)");
        let probe = tokio::task::spawn_blocking(|| {
            results::cpu_stability(std::time::Duration::from_secs(3))
        })
        .await?;
        if let Some(m) = manifest.as_object_mut() {
            m.insert("cpu_stability".into(), probe);
        }
    }
    let progress = MultiProgress::new();
    let mut rows = Vec::new();
    let overall = progress.add(ProgressBar::new(
        (config.repeats * variants.len() * plan::cells_per_variant(config)) as u64,
    ));
    overall.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} cells, {elapsed} elapsed, ~{eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let stacks = out.join("stacks");
    for (repeat, index, variant) in plan::schedule(&variants, config.repeats) {
        let mut own = None;
        let endpoint = match (env, &variant.scenario) {
            (Some(path), _) => stack::endpoint_from_env(&stack::parse_env_file(path)?)?,
            (None, Scenario::Direct) => match backend_env {
                Some(path) => stack::direct_endpoint(&stack::parse_env_file(path)?)?,
                None => {
                    if repeat == 1 {
                        say(
                            &overall,
                            "skipping scenario direct: the default stack stores on the filesystem, which has no S3 endpoint of its own (pass --backend-env rgw.env to compare against an S3 backend)",
                        );
                    }
                    overall.inc(plan::cells_per_variant(config) as u64);
                    continue;
                }
            },
            (None, scenario) => {
                say(
                    &overall,
                    format!(
                        "starting stack {index}: {} ttl={:?} {} rtt={} ms{}",
                        variant.scenario,
                        variant.cache_ttl_s,
                        variant.threshold_label(),
                        variant.trustee_rtt_ms,
                        repeat_label(repeat, config.repeats)
                    ),
                );
                let dir = stack_dir(&stacks, index, repeat, config.repeats);
                let stack = match (scenario, &nginx) {
                    (Scenario::Nginx, Some(binary)) => {
                        stack::start_nginx(binary, &dir, backend_env, pinning).await?
                    }
                    _ => stack::start_own(variant, &dir, backend_env, pinning).await?,
                };
                if pinning.is_some() {
                    for (role, pid) in &stack.processes {
                        observed.record(role, *pid);
                    }
                }
                let endpoint = stack.endpoint.clone();
                own = Some(stack);
                endpoint
            }
        };
        run_variant(
            config, variant, repeat, &endpoint, &progress, &overall, &mut rows,
        )
        .await?;
        if let Some(stack) = own.take() {
            let storage = stack.dir.join("storage");
            stack.stop().await;
            // The stored objects are only load (up to GiBs per variant with large sizes); the
            // configs, certificates and logs stay for inspection.
            if storage.is_dir()
                && let Err(e) = std::fs::remove_dir_all(&storage)
            {
                say(
                    &overall,
                    format!("could not remove {}: {e}", storage.display()),
                );
            }
        }
    }
    overall.finish_and_clear();
    if let Some(m) = manifest.as_object_mut() {
        m.insert("pinning".into(), observed.manifest(pinning));
    }
    let plots = output::write_outputs(out, &rows, &manifest)?;
    println!(
        "wrote {} rows to {}/results.csv, results.json, manifest.json, summary.md and {} plot(s)",
        rows.len(),
        out.display(),
        plots.len()
    );
    Ok(rows)
}

/// Where variant `index` of repetition `repeat` keeps its stack: `stacks/N` for a single
/// pass (as before repetitions existed), `stacks/repR/N` otherwise, so every repetition's logs
/// stay for inspection.
fn stack_dir(stacks: &Path, index: usize, repeat: usize, repeats: usize) -> PathBuf {
    if repeats > 1 {
        stacks.join(format!("rep{repeat}")).join(index.to_string())
    } else {
        stacks.join(index.to_string())
    }
}

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
    if !endpoint.bucket_created {
        client.create_bucket().await?;
    }
    let chunk = Bytes::from(vec![0xA5u8; 1 << 20]);
    for spec in plan::cells(config, &variant.scenario) {
        let bar = progress.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("  {spinner} {msg} {pos} requests")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(format!(
            "{} {:?} {}B c={} {}{}",
            variant.scenario,
            spec.op,
            spec.object_size,
            spec.concurrency,
            spec.pacing.label(),
            repeat_label(repeat, config.repeats)
        ));
        let tick_bar = bar.clone();
        let row = cell::run(
            &client,
            endpoint,
            variant,
            repeat,
            &spec,
            &chunk,
            move || tick_bar.inc(1),
        )
        .await?;
        bar.finish_and_clear();
        overall.inc(1);
        say(
            overall,
            format!(
                "{:>11} {:>9} {:>10}B c={:<4} {:<12} ok={:<6} err={:<3} {:>9.1} ops/s {:>8.1} MiB/s p50={:.3}ms p99={:.3}ms{}{}",
                variant.scenario,
                format!("{:?}", spec.op),
                spec.object_size,
                spec.concurrency,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_mention_the_repetition_only_when_there_are_several() {
        assert_eq!(repeat_label(1, 1), "");
        assert_eq!(repeat_label(2, 3), " rep=2/3");
    }
}
