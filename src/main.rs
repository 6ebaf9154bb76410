//! `treuhand`: one binary, one subcommand per process. Kept thin: parse, set up logging, run.

use clap::Parser;

/// treuhand: an S3 key-escrow proxy whose tenant keys exist only as Shamir shares held by the
/// customer and independent trustees.
#[derive(Debug, Parser)]
#[command(name = "treuhand", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    #[command(flatten)]
    Trustee(treuhand::trustee::cli::Command),
    /// Benchmark harness for researchers: sweeps, percentiles, CSV/JSON, SVG plots.
    #[command(subcommand)]
    Bench(treuhand::bench::cli::BenchCommand),
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TREUHAND_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // try_init: a second initialisation (tests) is not an error worth dying for.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    treuhand::tls::install_crypto_provider();
    match cli.command {
        Command::Trustee(command) => treuhand::trustee::cli::run(command).await,
        Command::Bench(command) => treuhand::bench::cli::run(command).await,
    }
}
