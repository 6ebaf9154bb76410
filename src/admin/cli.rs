//! The admin commands' clap definitions and their dispatch. The argument structs live here so
//! `--help` texts are in one place; each command's work lives in its own room.

use std::path::PathBuf;

use super::output::Output;

pub use super::args::AdminArgs;

/// The customer admin's lifecycle commands, under `treuhand tenant`.
#[derive(Debug, clap::Subcommand)]
pub enum CustomerCommand {
    /// Show the tenant's key versions (current, decrypt-only, shredded), holders and policy.
    Status {
        /// Profile and output format.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show or change the release policy at every holder.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// List, approve, deny or revoke the operator's emergency grants.
    #[command(subcommand)]
    Grants(GrantsCommand),
    /// Make a new key version (split and deposited as in `tenant create`). The proxy writes new
    /// objects under it without a restart; older versions stay readable.
    Rotate {
        /// Profile and output format.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Move every object of key version V to the current version by re-wrapping its data key
    /// (an in-place S3 CopyObject per object; bodies are not re-encrypted). Shows progress; can
    /// be stopped and rerun.
    Rewrap {
        /// Profile and output format.
        #[command(flatten)]
        admin: AdminArgs,
        /// The key version to move objects away from.
        #[arg(long, value_name = "V")]
        from: u32,
        /// Only these buckets (repeat); default: every bucket of the tenant.
        #[arg(long = "bucket", value_name = "NAME")]
        buckets: Vec<String>,
    },
    /// Shred key version V at every holder and write each signed receipt.
    Shred {
        /// Profile and output format.
        #[command(flatten)]
        admin: AdminArgs,
        /// The key version to shred.
        #[arg(long, value_name = "V")]
        version: u32,
        /// Where to write the receipts (one JSON file per holder).
        #[arg(long, value_name = "DIR")]
        receipt_dir: PathBuf,
    },
    /// Leave a trustee: re-deal its share to a new trustee without changing the tenant key,
    /// your share or any stored object; the old trustee then shreds and signs a receipt.
    Handover {
        /// Profile and output format.
        #[command(flatten)]
        admin: AdminArgs,
        /// The departing holder's name (e.g. `trustee`).
        #[arg(long, value_name = "HOLDER")]
        from: String,
        /// The new trustee as NAME=URL.
        #[arg(long, value_name = "NAME=URL")]
        to: String,
        /// Where to write the old trustee's shred receipts.
        #[arg(long, value_name = "DIR")]
        receipt_dir: PathBuf,
    },
}

/// `treuhand tenant policy ...`.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Show the policy each holder enforces.
    Show {
        /// Profile and output format.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Change the policy at every holder; fields not given stay as they are.
    Set {
        /// Profile and output format.
        #[command(flatten)]
        admin: AdminArgs,
        /// Proxy identities allowed to ask (replaces the list; repeat for several).
        #[arg(long = "allow-proxy", value_name = "NAME")]
        allow_proxies: Vec<String>,
        /// Allowed justifications (replaces the list; repeat): customer_access,
        /// operator_maintenance, legal_request, key_rotation.
        #[arg(long = "justification", value_name = "NAME")]
        justifications: Vec<String>,
        /// Rate limit as PER_SECOND or PER_SECOND/BURST.
        #[arg(long, value_name = "N[/BURST]")]
        rate: Option<String>,
        /// Suspend the tenant: every evaluation is refused (reaches every proxy within a
        /// second).
        #[arg(long, conflicts_with = "resume")]
        suspend: bool,
        /// Lift a suspension.
        #[arg(long)]
        resume: bool,
    },
}

/// `treuhand tenant grants ...`.
#[derive(Debug, clap::Subcommand)]
pub enum GrantsCommand {
    /// List the grants at every holder.
    List {
        /// Profile and output format.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Approve a pending grant.
    Approve {
        /// Profile and output format.
        #[command(flatten)]
        admin: AdminArgs,
        /// Grant id (`g-...`).
        id: String,
    },
    /// Deny a pending grant.
    Deny {
        /// Profile and output format.
        #[command(flatten)]
        admin: AdminArgs,
        /// Grant id (`g-...`).
        id: String,
    },
    /// End an approved grant at once.
    Revoke {
        /// Profile and output format.
        #[command(flatten)]
        admin: AdminArgs,
        /// Grant id (`g-...`).
        id: String,
    },
}

/// `treuhand operator ...`.
#[derive(Debug, clap::Subcommand)]
pub enum OperatorCommand {
    /// Emergency grants.
    #[command(subcommand)]
    Grant(OperatorGrantCommand),
    /// List a tenant's grants.
    #[command(subcommand)]
    Grants(OperatorGrantsCommand),
}

/// `treuhand operator grant ...`.
#[derive(Debug, clap::Subcommand)]
pub enum OperatorGrantCommand {
    /// File an emergency grant request at every trustee; the customer must approve it.
    Request {
        /// Profile and output format.
        #[command(flatten)]
        admin: AdminArgs,
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Your ticket id.
        #[arg(long)]
        ticket: String,
        /// How long the grant lasts once approved, e.g. `90m`, `2h`, `1d`, `3600s`.
        #[arg(long)]
        duration: String,
        /// Why (logged at every trustee).
        #[arg(long)]
        reason: String,
        /// Only this key version (default: every version).
        #[arg(long, value_name = "V")]
        key_version: Option<u32>,
    },
}

/// `treuhand operator grants ...`.
#[derive(Debug, clap::Subcommand)]
pub enum OperatorGrantsCommand {
    /// List a tenant's grants at every trustee.
    List {
        /// Profile and output format.
        #[command(flatten)]
        admin: AdminArgs,
        /// Tenant id.
        #[arg(long)]
        tenant: String,
    },
}

/// `treuhand receipt ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ReceiptCommand {
    /// Check a shred receipt's signature against the holder's public key.
    Verify {
        /// The receipt JSON (as `tenant shred` wrote it).
        #[arg(long, value_name = "FILE")]
        receipt: PathBuf,
        /// The holder's public key: 64 hex digits or a file holding them (signing.pub).
        #[arg(long, value_name = "PUB")]
        trustee_key: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a customer lifecycle command.
///
/// # Errors
/// Any failure, with what to do.
pub async fn run_customer(command: CustomerCommand) -> anyhow::Result<()> {
    match command {
        CustomerCommand::Status { admin } => super::status::status(&admin).await,
        CustomerCommand::Policy(PolicyCommand::Show { admin }) => {
            super::customer::policy_show(&admin).await
        }
        CustomerCommand::Policy(PolicyCommand::Set {
            admin,
            allow_proxies,
            justifications,
            rate,
            suspend,
            resume,
        }) => {
            let change = super::customer::PolicyChange {
                allow_proxies,
                justifications,
                rate,
                suspend,
                resume,
            };
            super::customer::policy_set(&admin, change).await
        }
        CustomerCommand::Grants(GrantsCommand::List { admin }) => {
            super::customer::grants_list(&admin).await
        }
        CustomerCommand::Grants(GrantsCommand::Approve { admin, id }) => {
            super::customer::grant_action(&admin, super::customer::GrantAction::Approve, &id).await
        }
        CustomerCommand::Grants(GrantsCommand::Deny { admin, id }) => {
            super::customer::grant_action(&admin, super::customer::GrantAction::Deny, &id).await
        }
        CustomerCommand::Grants(GrantsCommand::Revoke { admin, id }) => {
            super::customer::grant_action(&admin, super::customer::GrantAction::Revoke, &id).await
        }
        CustomerCommand::Rotate { admin } => super::lifecycle::rotate(&admin).await,
        CustomerCommand::Rewrap {
            admin,
            from,
            buckets,
        } => super::rewrap::run(&admin, from, &buckets).await,
        CustomerCommand::Shred {
            admin,
            version,
            receipt_dir,
        } => super::lifecycle::shred(&admin, version, &receipt_dir).await,
        CustomerCommand::Handover {
            admin,
            from,
            to,
            receipt_dir,
        } => super::handover::run(&admin, &from, &to, &receipt_dir).await,
    }
}

/// Runs an operator command.
///
/// # Errors
/// Any failure, with what to do.
pub async fn run_operator(command: OperatorCommand) -> anyhow::Result<()> {
    match command {
        OperatorCommand::Grant(OperatorGrantCommand::Request {
            admin,
            tenant,
            ticket,
            duration,
            reason,
            key_version,
        }) => {
            let request = super::operator::GrantRequestArgs {
                tenant,
                ticket,
                duration,
                reason,
                key_version,
            };
            super::operator::grant_request(&admin, request).await
        }
        OperatorCommand::Grants(OperatorGrantsCommand::List { admin, tenant }) => {
            super::operator::grants_list(&admin, &tenant).await
        }
    }
}

/// Runs a receipt command.
///
/// # Errors
/// A receipt that does not verify, or unreadable input.
pub fn run_receipt(command: ReceiptCommand) -> anyhow::Result<()> {
    match command {
        ReceiptCommand::Verify {
            receipt,
            trustee_key,
            json,
        } => super::receipt::verify(&receipt, &trustee_key, Output { json }),
    }
}
