//! `treuhand proxy --config FILE`.

use std::path::PathBuf;

/// The proxy subcommand.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the S3 proxy (operator side).
    ///
    /// Stops gracefully on Ctrl-C or SIGTERM. On SIGHUP it re-reads the tenant registrations
    /// in `tenants_dir` (add, change or remove a tenant without a restart): all of them or, if
    /// one is broken, none, with the reason in the log. Cached tenant keys are dropped.
    Proxy {
        /// Path of proxy.toml.
        #[arg(long, env = "TREUHAND_PROXY_CONFIG")]
        config: PathBuf,
    },
}

/// Runs the subcommand until Ctrl-C / SIGTERM.
///
/// # Errors
/// Configuration, TLS or bind errors, with a message saying what to fix.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Proxy { config } => {
            let config = super::config::ProxyConfig::load(&config)?;
            let s3 = tokio::net::TcpListener::bind(config.listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
            let metrics = match config.metrics_listen {
                Some(addr) => Some(
                    tokio::net::TcpListener::bind(addr)
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?,
                ),
                None => None,
            };
            let sources = super::sources::TrusteeSources::new(&config)?;
            // Abandoned multipart staging is reaped at startup and on a timer.
            let reaper = super::reaper::spawn(&config)?;
            let result = super::run(
                config,
                super::Listeners { s3, metrics },
                &sources,
                crate::shutdown_signal(),
            )
            .await;
            reaper.abort();
            result?;
            Ok(())
        }
    }
}
