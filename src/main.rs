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
    Proxy(treuhand::proxy::cli::Command),
    #[command(flatten)]
    Tenant(treuhand::tenant::cli::Command),
    #[command(flatten)]
    Dev(treuhand::dev::Command),
    #[command(flatten)]
    Trustee(treuhand::trustee::cli::Command),
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    treuhand::tls::install_crypto_provider();
    match cli.command {
        Command::Proxy(command) => treuhand::proxy::cli::run(command).await,
        Command::Tenant(command) => treuhand::tenant::cli::run(command).await,
        Command::Dev(command) => treuhand::dev::run(command).await,
        Command::Trustee(command) => treuhand::trustee::cli::run(command).await,
    }
}
