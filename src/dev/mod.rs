//! `treuhand dev [--dir DIR]` and `treuhand dev init DIR`: the one-command local stack.
//!
//! - [`init`](mod@init): writes the dev directory (PKI, configs, demo tenants), only what is absent;
//! - [`admin`]: the second, idle trustee and the admin profiles under `DIR/admin/`;
//! - [`configs`]: reading and editing the generated TOML, the dev trustee config, free ports;
//! - [`env`](mod@env): the env files (`DIR/dev.env`, `DIR/dev-holder.env`), and reading such files;
//! - [`stack`]: runs the set-up stack as child processes until Ctrl-C, and starts a server
//!   process from its config for the bench harness too.

pub mod admin;
pub mod configs;
pub mod env;
pub mod init;
pub mod stack;

use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub use env::storage_from_env_file;
pub use init::{DEV_PROXY, free_port, init, single_trustee, trustee_config, trustee_config_at};

/// The dev subcommand.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the whole stack locally: trustee, customer holder and proxy, with TEST-ONLY
    /// certificates. Sets everything up first if DIR is new.
    Dev(DevArgs),
}

/// `treuhand dev`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DevArgs {
    /// Directory for certificates, configs, stores and storage.
    #[arg(long, default_value = "treuhand-dev")]
    pub dir: PathBuf,
    /// Store ciphertext in an S3-compatible backend instead of DIR/storage: an env file with
    /// RGW_ENDPOINT, RGW_ACCESS_KEY_ID, RGW_SECRET_ACCESS_KEY and RGW_REGION (as written by
    /// `.ci/ceph.sh start`). Only used when DIR is set up.
    #[arg(long, value_name = "FILE")]
    pub backend_env: Option<PathBuf>,
    /// Only set up.
    #[command(subcommand)]
    pub command: Option<DevCommand>,
}

/// `treuhand dev <task>`.
#[derive(Debug, clap::Subcommand)]
pub enum DevCommand {
    /// Create the dev PKI, configs, demo tenants and env files in DIR, then exit.
    Init {
        /// The directory to set up.
        dir: PathBuf,
        /// See `treuhand dev --backend-env`.
        #[arg(long, value_name = "FILE")]
        backend_env: Option<PathBuf>,
    },
}

/// Runs `treuhand dev`.
///
/// # Errors
/// Set-up or child process failures, with what to fix.
pub async fn run(command: Command) -> anyhow::Result<()> {
    let Command::Dev(args) = command;
    match args.command {
        Some(DevCommand::Init { dir, backend_env }) => {
            let dir = absolute(&dir)?;
            init(&dir, storage_from_env_file(backend_env.as_deref())?).await?;
            println!("treuhand dev: set up {}", dir.display());
            println!("  run everything: treuhand dev --dir {}", dir.display());
            Ok(())
        }
        None => {
            let dir = absolute(&args.dir)?;
            init(&dir, storage_from_env_file(args.backend_env.as_deref())?).await?;
            stack::run_stack(&dir).await
        }
    }
}

fn absolute(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))
}
