//! `treuhand tenant handover`: the 2018 exit. Re-deals a departing holder's share to a new
//! trustee without changing the tenant key, the customer's share or any stored object.
//!
//! Per live key version (current and decrypt-only) that the departing holder holds:
//! 1. the departing holder hands its share to this customer admin (`handover`, logged there;
//!    it answers no evaluation of the version afterwards);
//! 2. the customer's share comes from its text envelope in `share_dir`;
//! 3. [`scheme::redeal`] evaluates the sharing polynomial at a fresh x for the new trustee
//!    (threshold 2 only) and builds the new public metadata;
//! 4. the new trustee enrolls the new share with the new metadata and the current policy;
//! 5. every other holder of the version takes the new metadata (`update_metadata`);
//! 6. the registration names the new trustee for that version (written after each version, so
//!    a proxy reads the version again as soon as possible).
//!
//! Then the profile's trustee list names the new trustee, and the departing holder shreds
//! every handed-over version and signs receipts. A rerun resumes: a version whose
//! registration already names the new trustee is done; a version the new trustee already
//! holds reuses the metadata it reports (no second, different x is dealt).

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::args::AdminArgs;
use super::lifecycle::{HolderShred, registered_holders, shred_at, strict_credential};
use crate::crypto::{KeyMetadata, KeyScheme, ShareEnvelope, scheme};
use crate::proxy::config::{TenantConfig, TrusteeRef};
use crate::tenant::{self, registration};
use crate::trustee::wire::{EnrollRequest, HandoverRequest, KeyState, MetadataUpdate, Policy};

/// What `tenant handover --json` prints.
#[derive(Debug, Serialize)]
pub struct HandedOver {
    /// Tenant id.
    pub tenant: String,
    /// The departing holder.
    pub from: String,
    /// The new trustee's name.
    pub to: String,
    /// Its URL.
    pub url: String,
    /// The versions now held by the new trustee.
    pub versions: Vec<VersionHandover>,
    /// The departing holder's shreds.
    pub shreds: Vec<HolderShred>,
    /// True when the profile pins no key for the new trustee yet.
    pub pin_new_trustee_key: bool,
}

/// One handed-over version.
#[derive(Debug, Serialize)]
pub struct VersionHandover {
    /// Key version.
    pub key_version: u32,
    /// The new trustee's x.
    pub x: u8,
    /// Whether this run dealt it (false: an earlier run had).
    pub dealt_now: bool,
}

/// `tenant handover`.
///
/// # Errors
/// Any failure, with what to do; a rerun resumes.
pub async fn run(
    admin: &AdminArgs,
    from: &str,
    to: &str,
    receipt_dir: &Path,
) -> anyhow::Result<()> {
    let (mut profile, output) = admin.load()?;
    let tenant = profile.tenant()?.to_owned();
    let (new_name, new_url) = to
        .split_once('=')
        .filter(|(n, u)| !n.is_empty() && u.starts_with("https://"))
        .ok_or_else(|| anyhow::anyhow!("--to must be NAME=https://host:port, got {to:?}"))?;
    let registration_dir = profile.registration_dir()?.to_owned();
    let share_dir = profile.share_dir()?.to_owned();
    let mut config = registration::load(&registration_dir, &tenant)?;
    if from == config.customer_holder {
        anyhow::bail!(
            "'{from}' is your own holder: a hand-over moves a trustee's share; your share stays yours"
        );
    }
    std::fs::create_dir_all(receipt_dir)
        .with_context(|| format!("cannot create {}", receipt_dir.display()))?;
    // The departing holder's URL: from the registration, or (on a rerun after the registration
    // dropped it) from the profile, which keeps it until its shreds are done.
    let from_url = config
        .trustees
        .iter()
        .find(|t| t.holder == from)
        .map(|t| t.url.clone())
        .or_else(|| {
            profile
                .trustees
                .iter()
                .find(|t| t.name == from)
                .map(|t| t.url.clone())
        });
    let Some(from_url) = from_url else {
        if config.versions().all(|m| m.holder(from).is_none())
            && config.trustees.iter().any(|t| t.holder == new_name)
        {
            output.note(format!(
                "nothing left to hand over: no live key version names '{from}' and the profile no longer lists it (an earlier run finished)"
            ));
            return Ok(());
        }
        anyhow::bail!("'{from}' is not a trustee of the registration or the profile");
    };
    // Refuse up front what cannot be re-dealt, before any holder is touched.
    let pending: Vec<u32> = config
        .versions()
        .filter(|m| m.holder(from).is_some())
        .map(|m| m.key_version)
        .collect();
    for metadata in config.versions().filter(|m| m.holder(from).is_some()) {
        if metadata.scheme != KeyScheme::Oprf {
            return Err(scheme::RedealError::Legacy {
                version: metadata.key_version,
            }
            .into());
        }
        if metadata.threshold != 2 {
            return Err(scheme::RedealError::ThresholdAboveTwo {
                version: metadata.key_version,
                threshold: metadata.threshold,
                others: metadata.threshold.saturating_sub(1),
            }
            .into());
        }
    }
    let departing = profile.client(&from_url)?;
    let incoming = profile.client(new_url)?;
    let sigv4 = match config.metadata.strict && config.customer_url.is_none() {
        true => Some(strict_credential(&share_dir, &tenant)?),
        false => None,
    };
    // What the new trustee already holds (a rerun after it enrolled).
    let held: Vec<(u32, KeyMetadata)> = match incoming.keys(&tenant).await {
        Ok(keys) => keys
            .keys
            .into_iter()
            .filter(|k| k.state == KeyState::Active)
            .map(|k| (k.key_version, k.metadata))
            .collect(),
        Err(crate::trustee::Error::UnknownTenant) => Vec::new(),
        Err(e) => anyhow::bail!("cannot reach the new trustee at {new_url}: {e}"),
    };
    let mut versions = Vec::new();
    let mut policy: Option<Policy> = None;
    for version in pending {
        let metadata = config
            .versions()
            .find(|m| m.key_version == version)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("key version {version} vanished"))?;
        let (next, dealt_now) = match held.iter().find(|(v, _)| *v == version) {
            Some((_, theirs)) if theirs.holder(new_name).is_some() => {
                output.note(format!(
                    "key version {version}: '{new_name}' already holds it (an earlier run); reusing its metadata"
                ));
                (theirs.clone(), false)
            }
            Some(_) => anyhow::bail!(
                "the trustee at {new_url} already holds key version {version} of {tenant} under another name than '{new_name}'"
            ),
            None => {
                let policy = match &policy {
                    Some(p) => p.clone(),
                    None => {
                        let p = current_policy(&profile, &config, &from_url).await?;
                        policy = Some(p.clone());
                        p
                    }
                };
                let next = deal(
                    &departing,
                    &incoming,
                    (&tenant, &metadata),
                    (from, new_name),
                    &share_dir,
                    policy,
                    sigv4.clone(),
                )
                .await?;
                (next, true)
            }
        };
        // Every other holder of the version takes the new metadata (idempotent).
        for (name, url) in registered_holders(&config) {
            if name == from || name == new_name || metadata.holder(&name).is_none() {
                continue;
            }
            profile
                .client(&url)?
                .update_metadata(&tenant, version, &MetadataUpdate {
                    metadata: next.clone(),
                })
                .await
                .with_context(|| {
                    format!(
                        "key version {version}: '{name}' did not take the new metadata; rerun `tenant handover` (it resumes)"
                    )
                })?;
        }
        let x = next.holder(new_name).map_or(0, |h| h.x);
        replace_version(&mut config, next);
        if !config.trustees.iter().any(|t| t.holder == new_name) {
            config.trustees.push(TrusteeRef {
                holder: new_name.to_owned(),
                url: new_url.to_owned(),
            });
        }
        drop_unused_trustees(&mut config, from);
        registration::save(&registration_dir, &config)?;
        output.note(format!(
            "key version {version}: handed over from '{from}' to '{new_name}' (x = {x}); registration updated"
        ));
        versions.push(VersionHandover {
            key_version: version,
            x,
            dealt_now,
        });
    }
    // The departing holder shreds every version it held (also those an earlier run handed
    // over), with its own pinned key for the receipts.
    let shred_profile = profile.clone();
    let mut shreds = Vec::new();
    let held_there: Vec<u32> = match departing.keys(&tenant).await {
        Ok(keys) => keys
            .keys
            .iter()
            .filter(|k| k.state != KeyState::Shredded)
            .map(|k| k.key_version)
            .collect(),
        Err(_) => versions.iter().map(|v| v.key_version).collect(),
    };
    for version in held_there {
        shreds.push(
            shred_at(
                &shred_profile,
                &tenant,
                version,
                (from, &from_url),
                receipt_dir,
            )
            .await,
        );
    }
    let failed: Vec<String> = shreds
        .iter()
        .filter(|s| !s.done())
        .map(|s| format!("{} ({})", s.holder, s.error.as_deref().unwrap_or("failed")))
        .collect();
    // The profile names the new trustee; the departing one leaves it once its shreds are done
    // (a rerun still finds its URL and pinned key until then).
    let known = profile
        .trustees
        .iter()
        .find(|t| t.name == new_name)
        .and_then(|t| t.trustee_key.clone());
    let pin_new = known.is_none();
    let keep_departing = !failed.is_empty();
    let before = profile.trustees.clone();
    profile
        .trustees
        .retain(|t| t.name != new_name && (keep_departing || t.name != from));
    profile.trustees.push(super::profile::HolderRef {
        name: new_name.to_owned(),
        url: new_url.to_owned(),
        trustee_key: known,
    });
    if profile.trustees != before {
        profile.save(&admin.profile)?;
    }
    let result = HandedOver {
        tenant: tenant.clone(),
        from: from.to_owned(),
        to: new_name.to_owned(),
        url: new_url.to_owned(),
        versions,
        shreds,
        pin_new_trustee_key: pin_new,
    };
    output.emit(&result, |r| {
        println!(
            "tenant {}: '{}' handed over to '{}' ({})",
            r.tenant, r.from, r.to, r.url
        );
        for v in &r.versions {
            println!(
                "  key version {}: new trustee x = {}{}",
                v.key_version,
                v.x,
                if v.dealt_now { "" } else { " (dealt by an earlier run)" }
            );
        }
        for s in &r.shreds {
            match &s.receipt {
                Some(file) => println!("  '{}' shredded: receipt {}", s.holder, file.display()),
                None => println!("  '{}' shred: {:?}", s.holder, s.status),
            }
        }
        println!(
            "  registration and profile ({}) name '{}' now; the tenant key, your share and every object are unchanged",
            admin.profile.display(),
            r.to
        );
        if r.pin_new_trustee_key {
            println!(
                "  pin the new trustee's public key: set trustee_key for '{}' in the profile (its signing.pub, obtained out of band)",
                r.to
            );
        }
    })?;
    if !failed.is_empty() {
        anyhow::bail!(
            "the hand-over is done but the departing holder did not shred everywhere: {}; rerun `tenant handover` or `tenant shred` for it",
            failed.join(", ")
        );
    }
    Ok(())
}

/// Steps 1-4 for one version: the departing share, the customer's share, the re-deal, and the
/// deposit at the new trustee. Returns the new metadata.
async fn deal(
    departing: &crate::trustee::client::TrusteeClient,
    incoming: &crate::trustee::client::TrusteeClient,
    (tenant, metadata): (&str, &KeyMetadata),
    (from, new_name): (&str, &str),
    share_dir: &Path,
    policy: Policy,
    sigv4: Option<crate::trustee::wire::SigV4Credential>,
) -> anyhow::Result<KeyMetadata> {
    let version = metadata.key_version;
    let (_, text_path) = tenant::share_paths(share_dir, tenant, version);
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(&text_path).with_context(|| {
        format!(
            "cannot read your share of key version {version} ({}); the re-deal needs it",
            text_path.display()
        )
    })?);
    let customer = ShareEnvelope::parse(&text)?;
    if customer.key != metadata.key_id()? {
        anyhow::bail!(
            "{} holds a share of another key than version {version} of {tenant}",
            text_path.display()
        );
    }
    let answer = departing
        .handover(
            tenant,
            version,
            &HandoverRequest {
                to: new_name.to_owned(),
                request_id: Some(format!("handover-{tenant}-v{version}-{from}")),
            },
        )
        .await
        .with_context(|| format!("key version {version}: '{from}' did not hand its share over"))?;
    let departed = ShareEnvelope::parse(&answer.share)?;
    drop(answer);
    if departed.key != customer.key {
        anyhow::bail!("key version {version}: '{from}' handed over a share of another key");
    }
    let (next, share) = scheme::redeal(metadata, &customer.share, &departed.share, from, new_name)?;
    let envelope = ShareEnvelope {
        key: customer.key.clone(),
        share,
    }
    .encode();
    let request = EnrollRequest {
        metadata: next.clone(),
        holder: new_name.to_owned(),
        share: envelope.to_string(),
        policy: Some(policy),
        sigv4,
    };
    incoming
        .enroll(tenant, &request)
        .await
        .with_context(|| {
            format!("key version {version}: the new trustee '{new_name}' did not take its share; rerun `tenant handover` (the departing holder hands the same share over again)")
        })?;
    Ok(next)
}

/// The tenant's policy as a holder enforces it: the departing holder's first, else any other.
async fn current_policy(
    profile: &super::profile::Profile,
    config: &TenantConfig,
    from_url: &str,
) -> anyhow::Result<Policy> {
    let mut urls = vec![from_url.to_owned()];
    urls.extend(registered_holders(config).into_iter().map(|(_, u)| u));
    let mut last = None;
    for url in urls {
        match profile.client(&url)?.policy(&config.metadata.tenant).await {
            Ok(policy) => return Ok(policy),
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow::anyhow!(
        "no holder told the tenant's policy (the new trustee must enforce the same one): {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// Puts `next` where its version is in the registration.
fn replace_version(config: &mut TenantConfig, next: KeyMetadata) {
    if config.metadata.key_version == next.key_version {
        config.metadata = next;
    } else if let Some(slot) = config
        .previous
        .iter_mut()
        .find(|m| m.key_version == next.key_version)
    {
        *slot = next;
    }
}

/// Drops the departing trustee from `trustees` once no version names it.
fn drop_unused_trustees(config: &mut TenantConfig, from: &str) {
    let still = std::iter::once(&config.metadata)
        .chain(&config.previous)
        .any(|m| m.holder(from).is_some());
    if !still {
        config.trustees.retain(|t| t.holder != from);
    }
}
