//! `treuhand dev`: the one-command local stack (work in progress).

/// The dev subcommand.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the whole stack locally (TEST-ONLY PKI).
    Dev,
}

/// Runs the dev stack.
///
/// # Errors
/// Set-up failures.
pub async fn run(_command: Command) -> anyhow::Result<()> {
    anyhow::bail!("not yet implemented")
}
