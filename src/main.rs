//! The `treuhand` binary: parse arguments, set up logging, run one subcommand.

use clap::{Parser, Subcommand};

/// treuhand: a key-escrow proxy. Objects are encrypted before they reach storage, under a
/// tenant key that exists only as Shamir shares held by the customer and independent trustees.
#[derive(Debug, Parser)]
#[command(name = "treuhand", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Proxy(treuhand::proxy::cli::Command),
    #[command(flatten)]
    Tenant(treuhand::tenant::cli::Command),
    #[command(flatten)]
    Dev(treuhand::dev::Command),
    #[command(flatten)]
    Trustee(treuhand::trustee::cli::Command),
    /// The operator's commands: emergency grant requests and listings.
    #[command(subcommand)]
    Operator(treuhand::admin::cli::OperatorCommand),
    /// Shred receipts.
    #[command(subcommand)]
    Receipt(treuhand::admin::cli::ReceiptCommand),
    /// Benchmark harness for researchers: sweeps, percentiles, CSV/JSON, SVG plots.
    #[command(subcommand)]
    Bench(treuhand::bench::cli::BenchCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    treuhand::tls::install_crypto_provider();
    // One set-up for every subcommand: the dependency ceilings always apply (see the module).
    treuhand::logging::init();
    match Cli::parse().command {
        Command::Proxy(command) => treuhand::proxy::cli::run(command).await,
        Command::Tenant(command) => treuhand::tenant::cli::run(command).await,
        Command::Dev(command) => treuhand::dev::run(command).await,
        Command::Trustee(command) => treuhand::trustee::cli::run(command).await,
        Command::Operator(command) => treuhand::admin::cli::run_operator(command).await,
        Command::Receipt(command) => treuhand::admin::cli::run_receipt(command),
        Command::Bench(command) => treuhand::bench::cli::run(command).await,
    }
}
