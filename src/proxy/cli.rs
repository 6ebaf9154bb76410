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
        /// Staging files of unfinished writes (left by a killed proxy) older than this many
        /// seconds are removed at startup and then every `--staging-sweep-interval-secs`.
        /// Keep it above the longest write a slow client makes: a younger staging file may be a
        /// write in flight of another proxy sharing the storage.
        #[arg(long, env = "TREUHAND_STAGING_SWEEP_AGE_SECS", default_value_t = super::sweep::DEFAULT_MIN_AGE.as_secs())]
        staging_sweep_age_secs: u64,
        /// Seconds between two staging sweeps after the startup one.
        #[arg(long, env = "TREUHAND_STAGING_SWEEP_INTERVAL_SECS", default_value_t = super::sweep::DEFAULT_INTERVAL.as_secs())]
        staging_sweep_interval_secs: u64,
    },
}

/// Runs the subcommand until Ctrl-C / SIGTERM.
///
/// # Errors
/// Configuration, TLS or bind errors, with a message saying what to fix.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Proxy {
            config,
            staging_sweep_age_secs,
            staging_sweep_interval_secs,
        } => {
            let config = super::config::ProxyConfig::load(&config)?;
            let sweep = super::sweep::SweepConfig {
                min_age: std::time::Duration::from_secs(staging_sweep_age_secs),
                interval: std::time::Duration::from_secs(staging_sweep_interval_secs),
            };
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
            // The startup sweep finishes before the proxy serves, so a restart after a crash
            // is clean once the listener answers; a failing sweep only costs disk space.
            let storage = crate::storage::Storage::from_config(&config.storage)?;
            if let Err(e) = super::sweep::sweep_once(&storage, sweep.min_age).await {
                tracing::warn!(error = %e, "startup staging sweep failed");
            }
            let sweeper = super::sweep::spawn(storage, sweep);
            let result = super::run(
                config,
                super::Listeners { s3, metrics },
                &sources,
                crate::shutdown_signal(),
            )
            .await;
            reaper.abort();
            sweeper.abort();
            result?;
            Ok(())
        }
    }
}
