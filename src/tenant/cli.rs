//! `treuhand tenant create` and `treuhand tenant export-raw`.

use std::path::PathBuf;

use super::{CreateOptions, CreateParams, TrusteeSpec};
use crate::secret::SecretString;

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
        /// command line is visible to every user of the machine). Required for a standard
        /// tenant; refused with --strict, whose secret the ceremony generates.
        // hide_env_values: clap would otherwise print the secret in `--help`.
        #[arg(
            long,
            env = "TREUHAND_TENANT_SECRET_ACCESS_KEY",
            hide_env_values = true
        )]
        secret_access_key: Option<crate::secret::SecretString>,
        /// Strict tenant: every request must carry your own SigV4 signature, checked by your
        /// holder (or, without --holder-url, by every trustee). The S3 secret access key is
        /// generated here, deposited only with those holders and written to
        /// SHARE_DIR/<tenant>.s3-credentials; the operator supplies only --access-key-id and
        /// its proxy never knows the secret.
        #[arg(long)]
        strict: bool,
        /// Accept a threshold that the trustees reach without your share: together they could
        /// then derive every object key without you. Refused without this flag; recorded in
        /// the key metadata and in every holder's audit log.
        #[arg(long)]
        allow_trustees_alone: bool,
        /// Directory for the proxy registration file (the proxy's tenants_dir).
        #[arg(long)]
        registration_dir: PathBuf,
        /// Directory for the customer share files.
        #[arg(long, default_value = ".")]
        share_dir: PathBuf,
    },
    /// The customer admin's lifecycle commands (status, policy, grants, rotate, rewrap, shred,
    /// handover).
    #[command(flatten)]
    Admin(crate::admin::cli::CustomerCommand),
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
            strict,
            allow_trustees_alone,
            registration_dir,
            share_dir,
        } => {
            let secret_access_key = secret_for(strict, secret_access_key)?;
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
            let options = CreateOptions {
                strict,
                allow_trustees_alone,
            };
            let created = super::create_with(&params, options, &depositor).await?;
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
            if let Some(credentials) = &created.s3_credentials {
                println!(
                    "  strict tenant: your S3 credentials (profile {}, never give the secret to the operator): {}",
                    created.metadata.tenant,
                    credentials.display()
                );
            }
            if created.metadata.allow_trustees_alone {
                println!(
                    "  warning: the trustees alone reach the threshold (--allow-trustees-alone)"
                );
            }
            Ok(())
        }
        TenantCommand::Admin(command) => crate::admin::cli::run_customer(command).await,
        TenantCommand::ExportRaw { input, out } => {
            super::export_raw(&input, &out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
    }
}

/// The secret the registration gets: the operator's for a standard tenant (required), none
/// for a strict tenant. A secret passed for a strict tenant is refused, not ignored: it would
/// be one the operator knows, and the customer should notice the mistake (e.g. a leftover
/// `TREUHAND_TENANT_SECRET_ACCESS_KEY`).
fn secret_for(strict: bool, secret: Option<SecretString>) -> anyhow::Result<SecretString> {
    match (strict, secret) {
        (false, Some(secret)) => Ok(secret),
        (false, None) => Err(anyhow::anyhow!(
            "--secret-access-key (or TREUHAND_TENANT_SECRET_ACCESS_KEY) is required: the S3 secret the operator issued for this tenant; or pass --strict to have the secret generated here, known only to you and your signature-checking holder"
        )),
        (true, None) => Ok(SecretString::default()),
        (true, Some(_)) => Err(anyhow::anyhow!(
            "--strict generates the tenant's S3 secret access key here; the operator must not know it: drop --secret-access-key and unset TREUHAND_TENANT_SECRET_ACCESS_KEY, and pass only the operator's --access-key-id"
        )),
    }
}
