//! `treuhand tenant create` and `treuhand tenant export-raw`.

use std::path::PathBuf;

use super::{CreateParams, TrusteeSpec};

/// The tenant subcommands (run by the customer).
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Customer-side tenant key management.
    #[command(subcommand)]
    Tenant(TenantCommand),
}

/// `treuhand tenant ...`.
// Parsed once at startup; boxing the big variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub enum TenantCommand {
    /// Key ceremony: generate and split the tenant key, deposit trustee shares, register the
    /// tenant with the proxy, write the customer share.
    Create {
        /// Tenant id (a-z, 0-9, '-').
        #[arg(long)]
        tenant: String,
        /// A trustee as NAME=URL; repeat for several trustees.
        #[arg(long = "trustee", required = true)]
        trustees: Vec<String>,
        /// Shares needed to recover the key (the customer's share is always one of them).
        #[arg(long, default_value_t = 2)]
        threshold: u8,
        /// URL of the customer-run share holder; without it the share travels in SSE-C headers.
        #[arg(long)]
        holder_url: Option<String>,
        /// CA certificate that signs the trustees' server certificates.
        #[arg(long)]
        ca: PathBuf,
        /// The customer admin's client certificate (`<tenant>.customer.treuhand`).
        #[arg(long)]
        client_cert: PathBuf,
        /// The customer admin's client key.
        #[arg(long)]
        client_key: PathBuf,
        /// Proxy identity allowed to ask for releases (`<name>` of `<name>.proxy.treuhand`);
        /// repeat for several.
        #[arg(long = "allow-proxy", required = true)]
        allow_proxies: Vec<String>,
        /// S3 access key id issued by the operator.
        #[arg(long)]
        access_key_id: String,
        /// S3 secret access key issued by the operator (prefer the environment variable: a
        /// command line is visible to every user of the machine).
        // hide_env_values: clap would otherwise print the secret in `--help`.
        #[arg(
            long,
            env = "TREUHAND_TENANT_SECRET_ACCESS_KEY",
            hide_env_values = true
        )]
        secret_access_key: crate::secret::SecretString,
        /// Directory for the proxy registration file (the proxy's tenants_dir).
        #[arg(long)]
        registration_dir: PathBuf,
        /// Directory for the customer share files.
        #[arg(long, default_value = ".")]
        share_dir: PathBuf,
    },
    /// Convert a `treuhand-share-v1:` text envelope into the raw 32-byte SSE-C key file.
    ExportRaw {
        /// The text envelope file.
        #[arg(long = "in")]
        input: PathBuf,
        /// The raw share file to write (mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs a tenant subcommand.
///
/// # Errors
/// Ceremony errors with a message naming the failing step.
pub async fn run(command: Command) -> anyhow::Result<()> {
    let Command::Tenant(command) = command;
    match command {
        TenantCommand::Create {
            tenant,
            trustees,
            threshold,
            holder_url,
            ca,
            client_cert,
            client_key,
            allow_proxies,
            access_key_id,
            secret_access_key,
            registration_dir,
            share_dir,
        } => {
            let trustees = trustees
                .iter()
                .map(|t| {
                    let (holder, url) = t
                        .split_once('=')
                        .ok_or_else(|| anyhow::anyhow!("--trustee must be NAME=URL, got {t}"))?;
                    Ok(TrusteeSpec {
                        holder: holder.to_owned(),
                        url: url.to_owned(),
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let params = CreateParams {
                tenant,
                key_version: 1,
                threshold,
                trustees,
                customer_holder_url: holder_url,
                access_key_id,
                secret_access_key,
                registration_dir,
                share_dir,
            };
            let depositor = super::deposit::TrusteeDepositor::new(
                &ca,
                &client_cert,
                &client_key,
                allow_proxies,
            )?;
            let created = super::create(&params, &depositor).await?;
            println!("tenant {} created (key version 1)", created.metadata.tenant);
            println!(
                "  registration for the proxy: {}",
                created.registration.display()
            );
            if let Some(raw) = &created.share_raw {
                println!("  customer share (raw, for SSE-C): {}", raw.display());
            }
            println!(
                "  customer share (text envelope, keep it safe): {}",
                created.share_text.display()
            );
            Ok(())
        }
        TenantCommand::ExportRaw { input, out } => {
            super::export_raw(&input, &out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
    }
}
