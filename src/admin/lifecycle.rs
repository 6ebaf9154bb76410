//! `treuhand tenant rotate` and `tenant shred`.
//!
//! Both read and rewrite the proxy registration (`<registration_dir>/<tenant>.toml`,
//! [`crate::tenant::registration`]); the proxy polls the directory and takes the change
//! without a restart. Step by step, what each writes and how a rerun behaves:
//! docs/lifecycle.md.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use super::args::AdminArgs;
use super::profile::{Profile, read_public_key};
use crate::crypto::{KeyId, KeyMetadata};
use crate::proxy::config::TenantConfig;
use crate::tenant::deposit::TrusteeDepositor;
use crate::tenant::{self, Ceremony, CreateOptions, TrusteeSpec, registration};
use crate::trustee::wire::{ShredReceipt, ShredRequest, SigV4Credential};

/// What `tenant rotate --json` prints.
#[derive(Debug, Serialize)]
pub struct Rotated {
    /// Tenant id.
    pub tenant: String,
    /// The new current key version.
    pub key_version: u32,
    /// The customer's new share: the raw 32-byte file for SSE-C tenants (what the SSE-C
    /// headers carry), the text envelope for tenants with their own holder.
    pub share_file: PathBuf,
}

/// `tenant rotate`: a new key version split like the current one (same holders, threshold,
/// strict and allow-trustees-alone), deposited at every trustee and the customer's holder,
/// the customer's share files written, and the registration updated (the new version
/// current, the old one first among the decrypt-only versions). Holders keep the tenant's
/// policy (the deposits carry none).
///
/// # Errors
/// Any failure, with what to do; a failed deposit says which holders got the new version.
pub async fn rotate(admin: &AdminArgs) -> anyhow::Result<()> {
    let (profile, output) = admin.load()?;
    let tenant = profile.tenant()?.to_owned();
    let registration_dir = profile.registration_dir()?;
    let share_dir = profile.share_dir()?;
    let mut config = registration::load(registration_dir, &tenant)?;
    let current = config.metadata.clone();
    if config.customer_holder != tenant::CUSTOMER_HOLDER {
        anyhow::bail!(
            "the registration names the customer's holder '{}'; `tenant rotate` deals the customer's share as '{}' (as `tenant create` does): rename it in the registration first",
            config.customer_holder,
            tenant::CUSTOMER_HOLDER
        );
    }
    // The same trustees in the same x order as the current version.
    let mut trustees = Vec::new();
    for holder in &current.holders {
        if holder.name == config.customer_holder {
            continue;
        }
        match config.trustees.iter().find(|t| t.holder == holder.name) {
            Some(t) => trustees.push(TrusteeSpec {
                holder: t.holder.clone(),
                url: t.url.clone(),
            }),
            None => output.note(format!(
                "warning: holder '{}' of key version {} has no URL in the registration; the new version is dealt without it",
                holder.name, current.key_version
            )),
        }
    }
    let version = next_version(&profile, &config, &output).await;
    let key = KeyId::new(&tenant, version)?;
    let sigv4 = if current.strict {
        Some(strict_credential(share_dir, &tenant)?)
    } else {
        None
    };
    let depositor = TrusteeDepositor::keeping_policy(profile.tls()?);
    let ceremony = Ceremony {
        key: &key,
        threshold: current.threshold,
        trustees: &trustees,
        customer_holder_url: config.customer_url.as_deref(),
        options: CreateOptions {
            strict: current.strict,
            allow_trustees_alone: current.allow_trustees_alone,
        },
        sigv4: sigv4.as_ref(),
        share_dir,
    };
    let dealt = match tenant::ceremony(&ceremony, &depositor).await {
        Ok(dealt) => dealt,
        Err(tenant::Error::Deposit { holder, message }) => {
            let order: Vec<&str> = trustees
                .iter()
                .map(|t| t.holder.as_str())
                .chain(
                    config
                        .customer_url
                        .as_ref()
                        .map(|_| tenant::CUSTOMER_HOLDER),
                )
                .collect();
            let got: Vec<&str> = order.iter().copied().take_while(|h| *h != holder).collect();
            anyhow::bail!(
                "depositing key version {version} at '{holder}' failed: {message}\n\
                 holders that hold key version {version} now: {}; the registration is unchanged (version {} stays current) and no share file was written.\n\
                 Rerunning `tenant rotate` makes key version {} (the holders report {version} as taken); the orphaned version {version} can be removed with `tenant shred --version {version}`",
                if got.is_empty() {
                    "none".to_owned()
                } else {
                    got.join(", ")
                },
                current.key_version,
                version + 1
            );
        }
        Err(e) => return Err(e.into()),
    };
    let old = std::mem::replace(&mut config.metadata, dealt.metadata);
    config.previous.insert(0, old);
    let path = registration::save(registration_dir, &config)?;
    let rotated = Rotated {
        tenant: tenant.clone(),
        key_version: version,
        share_file: dealt.share_raw.clone().unwrap_or(dealt.share_text.clone()),
    };
    output.emit(&rotated, |r| {
        println!(
            "tenant {} rotated: key version {} is current; {} stay readable (decrypt-only)",
            r.tenant,
            r.key_version,
            list_versions(&config.previous)
        );
        println!("  registration updated: {}", path.display());
        if let Some(raw) = &dealt.share_raw {
            println!(
                "  new customer share (raw, for SSE-C on writes): {}",
                raw.display()
            );
        }
        println!(
            "  new customer share (text envelope, keep it safe): {}",
            dealt.share_text.display()
        );
        println!(
            "  move the objects of the old version with `treuhand tenant rewrap --from {}`",
            current.key_version
        );
    })
}

/// One above every version the registration or any reachable holder knows, so a rerun after
/// a failed deposit never reuses a version some holder already holds.
async fn next_version(
    profile: &Profile,
    config: &TenantConfig,
    output: &super::output::Output,
) -> u32 {
    let mut highest = config.versions().map(|m| m.key_version).max().unwrap_or(0);
    let tenant = &config.metadata.tenant;
    for (name, url) in registered_holders(config) {
        let client = match profile.client(&url) {
            Ok(client) => client,
            Err(_) => continue,
        };
        match client.keys(tenant).await {
            Ok(keys) => {
                if let Some(v) = keys.keys.iter().map(|k| k.key_version).max() {
                    highest = highest.max(v);
                }
            }
            Err(e) => output.note(format!(
                "note: cannot list the key versions at '{name}' ({e}); choosing the next version from the registration"
            )),
        }
    }
    highest.saturating_add(1)
}

/// Every holder URL of the registration: its trustees and the customer's holder.
pub(super) fn registered_holders(config: &TenantConfig) -> Vec<(String, String)> {
    config
        .trustees
        .iter()
        .map(|t| (t.holder.clone(), t.url.clone()))
        .chain(
            config
                .customer_url
                .as_ref()
                .map(|u| (config.customer_holder.clone(), u.clone())),
        )
        .collect()
}

/// A strict tenant's S3 credential from `<share_dir>/<tenant>.s3-credentials`.
pub(super) fn strict_credential(share_dir: &Path, tenant: &str) -> anyhow::Result<SigV4Credential> {
    let path = share_dir.join(format!("{tenant}.s3-credentials"));
    Ok(tenant::read_s3_credentials(&path, tenant)?)
}

fn list_versions(versions: &[KeyMetadata]) -> String {
    if versions.is_empty() {
        return "no older versions".into();
    }
    let names: Vec<String> = versions
        .iter()
        .map(|m| format!("version {}", m.key_version))
        .collect();
    names.join(", ")
}

/// How one holder's shred ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShredStatus {
    /// Shredded; the receipt verifies against the holder's pinned key.
    Verified,
    /// Shredded and a receipt written, but the profile pins no key for this holder, so the
    /// receipt is unchecked.
    Unverified,
    /// The holder had shredded the version before (410); no receipt this time (the earlier
    /// run wrote it).
    AlreadyShredded,
    /// The holder does not hold the version at all.
    NotHeld,
    /// The call failed, or the receipt does not verify.
    Failed,
}

/// One holder's line of a shred.
#[derive(Debug, Clone, Serialize)]
pub struct HolderShred {
    /// Holder name.
    pub holder: String,
    /// Its URL.
    pub url: String,
    /// How it ended.
    pub status: ShredStatus,
    /// The receipt file, when one came back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<PathBuf>,
    /// What went wrong, for [`ShredStatus::Failed`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HolderShred {
    /// True when the holder no longer holds the version.
    pub fn done(&self) -> bool {
        self.status != ShredStatus::Failed
    }
}

/// Shreds `version` at one holder, writes the receipt to
/// `<receipt_dir>/<tenant>-v<V>-<holder>.receipt.json` and checks it against the profile's
/// pinned key for that holder.
pub(super) async fn shred_at(
    profile: &Profile,
    tenant: &str,
    version: u32,
    (holder, url): (&str, &str),
    receipt_dir: &Path,
) -> HolderShred {
    let mut line = HolderShred {
        holder: holder.to_owned(),
        url: url.to_owned(),
        status: ShredStatus::Failed,
        receipt: None,
        error: None,
    };
    let result = async {
        let client = profile.client(url)?;
        let request = ShredRequest {
            request_id: Some(format!("shred-{tenant}-v{version}-{holder}")),
        };
        Ok::<_, anyhow::Error>(client.shred(tenant, version, &request).await)
    }
    .await;
    match result {
        Ok(Ok(receipt)) => {
            let file = receipt_dir.join(format!("{tenant}-v{version}-{holder}.receipt.json"));
            let written = serde_json::to_string_pretty(&receipt)
                .map_err(anyhow::Error::from)
                .and_then(|text| {
                    std::fs::write(&file, format!("{text}\n"))
                        .with_context(|| format!("cannot write {}", file.display()))
                });
            if let Err(e) = written {
                line.error = Some(format!("{e:#}"));
                return line;
            }
            line.receipt = Some(file);
            match check_receipt(profile, tenant, version, (holder, url), &receipt) {
                Ok(true) => line.status = ShredStatus::Verified,
                Ok(false) => line.status = ShredStatus::Unverified,
                Err(e) => line.error = Some(e),
            }
        }
        Ok(Err(crate::trustee::Error::Shredded)) => line.status = ShredStatus::AlreadyShredded,
        Ok(Err(crate::trustee::Error::UnknownTenant)) => line.status = ShredStatus::NotHeld,
        Ok(Err(e)) => line.error = Some(e.to_string()),
        Err(e) => line.error = Some(format!("{e:#}")),
    }
    line
}

/// Checks a receipt against what was asked and the holder's pinned key: `Ok(true)` verified,
/// `Ok(false)` when the profile pins no key for the holder, `Err` when it does not verify.
fn check_receipt(
    profile: &Profile,
    tenant: &str,
    version: u32,
    (holder, url): (&str, &str),
    receipt: &ShredReceipt,
) -> Result<bool, String> {
    if receipt.tenant != tenant || receipt.key_version != version {
        return Err(format!(
            "the receipt is for tenant {} version {}, not {tenant} version {version}",
            receipt.tenant, receipt.key_version
        ));
    }
    let pinned = profile
        .holders()
        .find(|h| h.url.trim_end_matches('/') == url.trim_end_matches('/') || h.name == holder)
        .and_then(|h| h.trustee_key.as_deref());
    let Some(spec) = pinned else {
        return Ok(false);
    };
    let key = read_public_key(spec).map_err(|e| format!("the pinned trustee_key: {e:#}"))?;
    if crate::trustee::audit::verify_receipt(&key, receipt) {
        Ok(true)
    } else {
        Err(
            "the receipt's signature does not verify against the holder's pinned trustee_key"
                .into(),
        )
    }
}

/// What `tenant shred --json` prints.
#[derive(Debug, Serialize)]
pub struct Shredded {
    /// Tenant id.
    pub tenant: String,
    /// The shredded version.
    pub key_version: u32,
    /// One line per holder.
    pub holders: Vec<HolderShred>,
    /// Whether the registration was rewritten (the version removed from the decrypt-only
    /// versions; the current version stays, unusable).
    pub registration_updated: bool,
    /// The customer's own share files of the version that were deleted.
    pub deleted_share_files: Vec<PathBuf>,
}

/// `tenant shred --version V --receipt-dir DIR`.
///
/// # Errors
/// Any holder that failed (listed), or unreadable inputs.
pub async fn shred(admin: &AdminArgs, version: u32, receipt_dir: &Path) -> anyhow::Result<()> {
    let (profile, output) = admin.load()?;
    let tenant = profile.tenant()?.to_owned();
    let registration_dir = profile.registration_dir()?;
    let share_dir = profile.share_dir()?;
    let mut config = registration::load(registration_dir, &tenant)?;
    std::fs::create_dir_all(receipt_dir)
        .with_context(|| format!("cannot create {}", receipt_dir.display()))?;
    let holders: Vec<(String, String)> = match config.versions().find(|m| m.key_version == version)
    {
        Some(metadata) => config
            .trustees_of(metadata)
            .map(|t| (t.holder.clone(), t.url.clone()))
            .chain(
                config
                    .customer_url
                    .as_ref()
                    .map(|u| (config.customer_holder.clone(), u.clone())),
            )
            .collect(),
        None => {
            output.note(format!(
                "note: key version {version} is not in the registration; shredding it at the profile's holders"
            ));
            profile
                .holders()
                .map(|h| (h.name.clone(), h.url.clone()))
                .collect()
        }
    };
    if holders.is_empty() {
        anyhow::bail!("no holder of key version {version} is known (registration or profile)");
    }
    let mut lines = Vec::new();
    for (name, url) in &holders {
        let line = shred_at(&profile, &tenant, version, (name, url), receipt_dir).await;
        match line.status {
            ShredStatus::Unverified => output.note(format!(
                "warning: '{name}' shredded key version {version} and signed a receipt, but the profile pins no trustee_key for it: the receipt is unchecked. Pin the holder's signing.pub in the profile and run `treuhand receipt verify --receipt {} --trustee-key PUB`",
                line.receipt.as_deref().map(Path::display).map(|d| d.to_string()).unwrap_or_default()
            )),
            ShredStatus::AlreadyShredded => output.note(format!(
                "note: '{name}' had shredded key version {version} before (no new receipt; an earlier run wrote it)"
            )),
            ShredStatus::NotHeld => output.note(format!(
                "note: '{name}' holds nothing of key version {version}"
            )),
            _ => {}
        }
        lines.push(line);
    }
    let failed_names: Vec<String> = lines
        .iter()
        .filter(|l| !l.done())
        .map(|l| format!("{} ({})", l.holder, l.error.as_deref().unwrap_or("failed")))
        .collect();
    let mut registration_updated = false;
    let mut deleted = Vec::new();
    if failed_names.is_empty() {
        let before = config.previous.len();
        config.previous.retain(|m| m.key_version != version);
        if config.previous.len() != before {
            registration::save(registration_dir, &config)?;
            registration_updated = true;
        }
        if config.metadata.key_version == version {
            output.note(format!(
                "warning: key version {version} is the current version: the tenant can neither read nor write until it rotates (`treuhand tenant rotate`)"
            ));
        }
        let (raw, text) = tenant::share_paths(share_dir, &tenant, version);
        for file in [raw, text] {
            match std::fs::remove_file(&file) {
                Ok(()) => deleted.push(file),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => anyhow::bail!(
                    "every holder shredded key version {version}, but your own share file {} could not be deleted ({e}): delete it by hand",
                    file.display()
                ),
            }
        }
    }
    let result = Shredded {
        tenant: tenant.clone(),
        key_version: version,
        holders: lines,
        registration_updated,
        deleted_share_files: deleted,
    };
    output.emit(&result, |r| {
        println!("tenant {} key version {}:", r.tenant, r.key_version);
        for line in &r.holders {
            let what = match line.status {
                ShredStatus::Verified => "shredded, receipt verified",
                ShredStatus::Unverified => "shredded, receipt NOT verified (no pinned key)",
                ShredStatus::AlreadyShredded => "already shredded",
                ShredStatus::NotHeld => "holds nothing of this version",
                ShredStatus::Failed => "FAILED",
            };
            match &line.receipt {
                Some(file) => println!("  {}: {what} ({})", line.holder, file.display()),
                None => println!("  {}: {what}", line.holder),
            }
        }
        if r.registration_updated {
            println!("  removed from the registration's decrypt-only versions");
        }
        for file in &r.deleted_share_files {
            println!("  deleted your share file {}", file.display());
        }
    })?;
    if !failed_names.is_empty() {
        anyhow::bail!(
            "key version {version} is not shredded everywhere: {}. The registration and your share files are unchanged; rerun `tenant shred` once the holders answer (holders that shredded already count as done)",
            failed_names.join(", ")
        );
    }
    Ok(())
}
