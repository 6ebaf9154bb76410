//! Command-line entry points: `treuhand trustee …` and `treuhand audit …`.
//!
//! `main` flattens [`Command`] into its own subcommand list and calls [`run`].

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use super::audit::{AuditLog, verify_log};
use super::client::TrusteeClient;
use super::config::{Config, generate_keys, read_public_key};
use super::engine::migrate_audit;
use super::policy::SystemClock;
use super::server::{Server, run as serve};
use super::store::SqliteStore;

/// The trustee's subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the trustee service (or, with the customer's config, the customer's own share holder).
    ///
    /// The trustee keeps Shamir shares of tenant keys, releases them to proxies under each
    /// tenant's policy, and writes every deposit, release, denial, grant and shred to a
    /// hash-chained audit log the tenant can download and verify. Clients authenticate with
    /// certificates (mTLS) naming them as `<name>.<role>.treuhand`.
    Trustee(TrusteeArgs),
    /// Work with trustee audit logs.
    Audit(AuditArgs),
}

/// `treuhand trustee`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct TrusteeArgs {
    /// The trustee's TOML configuration file (listen address, TLS files, store, keys).
    /// See docs/trustee.md for a commented example.
    #[arg(
        long,
        value_name = "FILE",
        env = "TREUHAND_TRUSTEE_CONFIG",
        required = true
    )]
    pub config: Option<PathBuf>,
    /// Other trustee tasks.
    #[command(subcommand)]
    pub command: Option<TrusteeCommand>,
}

/// `treuhand trustee <task>`.
#[derive(Debug, clap::Subcommand)]
pub enum TrusteeCommand {
    /// Create a new sealing key and signing key (and signing.pub, the public key to give to
    /// customers) in DIR. Refuses to overwrite existing keys.
    Keygen {
        /// Directory for sealing.key, signing.key and signing.pub.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Sign, once, the chain heads of a store written before treuhand signed them (the trustee
    /// refuses to start on such a store). Checks every chain's links first. Run it once, at the
    /// upgrade, with the trustee stopped: it vouches for whatever the store holds now.
    MigrateAudit {
        /// The trustee's configuration file (store path and signing key).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a configuration file (paths, keys, TLS files) and exit.
    CheckConfig {
        /// The configuration file to check.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

/// `treuhand audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// `treuhand audit <task>`.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Verify a downloaded audit log: every hash link, the sequence, and the trustee's signed
    /// checkpoint. Names the first broken link and exits non-zero if anything is wrong.
    Verify {
        /// The audit log JSON, as downloaded with `treuhand audit download`.
        #[arg(long, value_name = "FILE")]
        log: PathBuf,
        /// The trustee's public key: 64 hex digits or a file holding them (signing.pub).
        /// Obtain it from the trustee out of band, not from the log itself.
        #[arg(long, value_name = "PUB")]
        trustee_key: String,
    },
    /// Download what is new in the tenant's audit log at every holder of the profile, check
    /// that it extends the last verified checkpoint kept in the state file, and keep the new
    /// checkpoint. A log rolled back, forked or with a removed entry is reported with the first
    /// broken point and a non-zero exit code. Run it on a schedule (docs/admin.md).
    Pull {
        /// Profile and output format.
        #[command(flatten)]
        admin: crate::admin::cli::AdminArgs,
        /// The state file (created on the first run; keep it).
        #[arg(long, value_name = "FILE")]
        state: PathBuf,
    },
    /// Download a tenant's audit log (needs the tenant's customer admin certificate).
    Download {
        /// Trustee URL, e.g. `https://trustee.example:8443`.
        #[arg(long, value_name = "URL")]
        trustee: String,
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// CA certificate that signed the trustee's server certificate (PEM).
        #[arg(long, value_name = "FILE")]
        ca: PathBuf,
        /// The customer admin's client certificate (PEM).
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// The customer admin's private key (PEM).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Where to write the log JSON.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// Runs a trustee or audit subcommand.
///
/// # Errors
/// Any failure, with context for the user.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Trustee(args) => run_trustee(args).await,
        Command::Audit(args) => run_audit(args).await,
    }
}

async fn run_trustee(args: TrusteeArgs) -> anyhow::Result<()> {
    match args.command {
        Some(TrusteeCommand::Keygen { dir }) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let public = generate_keys(&dir)?;
            println!(
                "wrote {0}/sealing.key, {0}/signing.key and {0}/signing.pub",
                dir.display()
            );
            println!("trustee public key (give it to customers to verify audit logs): {public}");
            Ok(())
        }
        Some(TrusteeCommand::MigrateAudit { config }) => {
            let config = Config::load(&config)?;
            let signing = super::config::load_signing_key(&config.keys.signing_key)?;
            let mut store = SqliteStore::open(&config.store.path)?;
            let signed = migrate_audit(&mut store, &signing)?;
            if signed == 0 {
                println!(
                    "nothing to do: the audit chains in {} already have signed heads",
                    config.store.path.display()
                );
            } else {
                println!(
                    "signed the heads of {signed} audit chains in {}",
                    config.store.path.display()
                );
            }
            Ok(())
        }
        Some(TrusteeCommand::CheckConfig { config }) => {
            // Load everything the server would load, but do not open (or create) the store.
            let config = Config::load(&config)?;
            crate::tls::install_crypto_provider();
            crate::tls::server_config(
                &config.tls.cert,
                &config.tls.key,
                Some(&config.tls.client_ca),
            )?;
            super::config::load_sealing_key(&config.keys.sealing_key)?;
            let signing = super::config::load_signing_key(&config.keys.signing_key)?;
            println!(
                "configuration OK; trustee public key {}",
                hex::encode(signing.public_key())
            );
            Ok(())
        }
        None => {
            let path = args.config.context("--config FILE is required")?;
            let config = Config::load(&path)?;
            let addr = config.listen_addr()?;
            let server = Server::from_config(&config, Arc::new(SystemClock))?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let local = listener.local_addr()?;
            // Scripts and tests read this line to find the port when listen uses port 0.
            println!("treuhand trustee listening on https://{local}");
            tracing::info!(%local, public_key = %hex::encode(server.trustee().public_key()), "trustee started");
            serve(listener, server, shutdown_signal()).await?;
            tracing::info!("trustee stopped");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

async fn run_audit(args: AuditArgs) -> anyhow::Result<()> {
    match args.command {
        AuditCommand::Verify { log, trustee_key } => {
            let key = read_public_key(&trustee_key)?;
            let text = std::fs::read_to_string(&log)
                .with_context(|| format!("cannot read {}", log.display()))?;
            let parsed: AuditLog = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a treuhand audit log (JSON)", log.display()))?;
            // verify_log walks the chain with audit::check_chain, the same check the trustee
            // runs before it signs a checkpoint, and adds the checkpoint.
            match verify_log(&parsed, &key) {
                Ok(summary) => {
                    println!(
                        "OK: tenant {}, {} entries, head {}; {} releases ({} under emergency grants), {} evaluations, {} denials",
                        parsed.tenant,
                        summary.entries,
                        summary.head,
                        summary.releases,
                        summary.grant_releases,
                        summary.evaluations,
                        summary.denials
                    );
                    Ok(())
                }
                Err(broken) => {
                    anyhow::bail!("audit log {} does NOT verify: {broken}", log.display())
                }
            }
        }
        AuditCommand::Pull { admin, state } => crate::admin::audit::pull(&admin, &state).await,
        AuditCommand::Download {
            trustee,
            tenant,
            ca,
            cert,
            key,
            out,
        } => {
            crate::tls::install_crypto_provider();
            let tls = crate::tls::client_config(&ca, Some((&cert, &key)))?;
            let client = TrusteeClient::new(&trustee, tls)?;
            let log = client.audit(&tenant).await?;
            let json = serde_json::to_vec_pretty(&log)?;
            std::fs::write(&out, json)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("wrote {} entries to {}", log.entries.len(), out.display());
            Ok(())
        }
    }
}
