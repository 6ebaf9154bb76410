//! Running a sweep: for each scheduled variant, get an endpoint (an own stack, the backend
//! itself, or the one `--env` names), run its cells one after another, and write the outputs.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::cell::{self, Endpoint};
use super::plan::{self, Scenario, SweepConfig, Variant};
use super::results::{self, Row};
use super::{client, manifest, output, stack};

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
    env: Option<&Path>,
    backend_env: Option<&Path>,
    label: &str,
) -> anyhow::Result<Vec<Row>> {
    std::fs::create_dir_all(out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
    let mut manifest = manifest::manifest(config, out);
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
    let variants: Vec<Variant> = match env {
        Some(_) => vec![Variant::plain(Scenario::External(label.to_owned()))],
        None => plan::variants(config),
    };
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
            (None, _) => {
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
                let stack = stack::start_own(
                    variant,
                    &stack_dir(&stacks, index, repeat, config.repeats),
                    backend_env,
                )
                .await?;
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
            drop(stack);
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
    client.create_bucket().await?;
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
