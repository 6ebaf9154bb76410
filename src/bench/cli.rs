//! Command-line arguments of `treuhand bench`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `treuhand bench`: measure what a trustee in the data path costs.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Run a sweep and write results.csv, results.json, manifest.json, summary.md and SVG plots.
    Run(RunArgs),
    /// Regenerate the plots and summary.md of an earlier run from its results.json.
    Report {
        /// The output folder of an earlier `bench run`.
        dir: PathBuf,
    },
}

/// Arguments of `treuhand bench run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Sweep file (TOML). Without it a default sweep runs; see docs/benchmarks.md for keys.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output folder (created if missing).
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// A small smoke sweep that finishes in well under a minute.
    #[arg(long)]
    pub quick: bool,
    /// Run the whole variant sequence N times, interleaved (overrides `repeats` of the sweep
    /// file); the summary shows medians with their range.
    #[arg(long, value_name = "N")]
    pub repeats: Option<usize>,
    /// Measure an already running endpoint described by an env file such as DIR/dev.env
    /// (written by `treuhand dev`), instead of starting an own stack.
    #[arg(long)]
    pub env: Option<PathBuf>,
    /// Store on an S3 backend instead of the filesystem, and measure that backend directly as
    /// the `direct` baseline: an env file with RGW_ENDPOINT, RGW_ACCESS_KEY_ID,
    /// RGW_SECRET_ACCESS_KEY, RGW_REGION (as `.ci/ceph.sh start DIR` writes to DIR/rgw.env).
    #[arg(long, value_name = "FILE")]
    pub backend_env: Option<PathBuf>,
    /// Scenario label for --env runs.
    #[arg(long, default_value = "treuhand")]
    pub label: String,
    /// Also measure this server in front of the same bytes, as scenario `nginx`, and report
    /// every cell as a ratio against it (adds to `baselines` of the sweep file; repeatable).
    /// nginx must be installed (Debian: apt-get install nginx).
    #[arg(long, value_enum, value_name = "SERVER")]
    pub baseline: Vec<super::Baseline>,
    /// Pin the load generator (this process) to one CPU and the system under test (proxy,
    /// trustees, nginx) to another: the first two CPUs this process may use. Needs two CPUs.
    #[arg(long)]
    pub pin: bool,
}

/// Runs a bench subcommand.
///
/// # Errors
/// Configuration or setup errors, with what to do.
pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Run(args) => {
            let mut config = match (&args.config, args.quick) {
                (Some(path), _) => super::SweepConfig::load(path)?,
                (None, true) => super::SweepConfig::quick(),
                (None, false) => super::SweepConfig::default(),
            };
            if let Some(repeats) = args.repeats {
                config.repeats = repeats;
                // The sweep file was valid on its own; the override is checked like the key.
                config
                    .validate()
                    .map_err(|e| anyhow::anyhow!("--repeats: {e}"))?;
            }
            for baseline in args.baseline {
                if !config.baselines.contains(&baseline) {
                    config.baselines.push(baseline);
                }
            }
            super::run_sweep(
                &config,
                &args.out,
                super::RunOptions {
                    env: args.env.as_deref(),
                    backend_env: args.backend_env.as_deref(),
                    label: &args.label,
                    pin: args.pin,
                },
            )
            .await?;
            Ok(())
        }
        BenchCommand::Report { dir } => super::report_dir(&dir),
    }
}
