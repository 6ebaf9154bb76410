//! `treuhand tenant status`: the tenant's key versions (current, decrypt-only, shredded), its
//! holders and the policy each enforces, from the registration and every holder's answers.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::args::AdminArgs;
use super::customer::describe_policy;
use super::holders::each_holder;
use super::profile::{HolderRef, Profile};
use crate::crypto::shamir::KeyMetadata;
use crate::proxy::config::TenantConfig;
use crate::trustee::wire::{KeyState, KeysResponse, Policy};

/// Reads `<registration_dir>/<tenant>.toml`, if the profile names a registration directory
/// and the file exists.
fn read_registration(profile: &Profile, tenant: &str) -> anyhow::Result<Option<TenantConfig>> {
    let Some(dir) = profile.registration_dir.as_deref() else {
        return Ok(None);
    };
    let path = dir.join(format!("{tenant}.toml"));
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(load_registration(&path)?))
}

fn load_registration(path: &Path) -> anyhow::Result<TenantConfig> {
    // The registration may hold the tenant's SigV4 secret: the text is zeroized, and a parse
    // error gives the position only.
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the registration {}", path.display()))?,
    );
    toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!(crate::logging::describe_toml_error(path, &text, &e)))
}

/// The state of one key version in `tenant status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// New objects are written under it.
    Current,
    /// Readable, not written (an older version still registered).
    DecryptOnly,
    /// A holder destroyed its share, or the registration no longer lists it.
    Shredded,
}

/// One holder of one key version in `tenant status`.
#[derive(Debug, Clone, Serialize)]
pub struct VersionHolder {
    /// Holder name in the key metadata.
    pub name: String,
    /// Its x coordinate.
    pub x: u8,
    /// Its URL (registration, else profile), if known.
    pub url: Option<String>,
    /// What the holder itself reports for this version: `active`, `shredded`, `handed_over`;
    /// `unknown` (it answered but does not know the version), `unreachable`, or `not_asked`
    /// (the profile does not name it).
    pub state: String,
}

/// One key version in `tenant status`.
#[derive(Debug, Clone, Serialize)]
pub struct VersionStatus {
    /// Key version.
    pub key_version: u32,
    /// Current, decrypt-only or shredded.
    pub state: VersionState,
    /// Whether the proxy registration lists it.
    pub registered: bool,
    /// Key scheme (`oprf-ristretto255-v1`, `shamir-tmk-v1`).
    pub scheme: String,
    /// Shares needed.
    pub threshold: u8,
    /// Strict tenant.
    pub strict: bool,
    /// Its holders.
    pub holders: Vec<VersionHolder>,
}

/// One holder of the profile in `tenant status`.
#[derive(Debug, Clone, Serialize)]
pub struct HolderStatus {
    /// Holder name.
    pub name: String,
    /// URL.
    pub url: String,
    /// Whether it answered.
    pub reachable: bool,
    /// Why not, if it did not.
    pub error: Option<String>,
    /// The policy it enforces (if it answered).
    pub policy: Option<Policy>,
}

/// `tenant status --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Tenant id.
    pub tenant: String,
    /// The current version, per the registration (or the newest a holder knows).
    pub current_version: Option<u32>,
    /// Every key version, newest first.
    pub versions: Vec<VersionStatus>,
    /// Every holder of the profile.
    pub holders: Vec<HolderStatus>,
    /// Whether every holder that answered enforces the same policy.
    pub policy_consistent: bool,
}

fn key_state_name(state: KeyState) -> &'static str {
    match state {
        KeyState::Active => "active",
        KeyState::Shredded => "shredded",
        KeyState::HandedOver => "handed_over",
    }
}

fn scheme_name(metadata: &KeyMetadata) -> String {
    serde_json::to_value(metadata.scheme)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Builds the status from the registration and the holders' answers (pure).
fn build_status(
    tenant: &str,
    registration: Option<&TenantConfig>,
    profile_holders: &[HolderRef],
    keys: &[(&HolderRef, Option<&KeysResponse>)],
    policies: Vec<HolderStatus>,
) -> Status {
    let mut versions: BTreeSet<u32> = BTreeSet::new();
    if let Some(reg) = registration {
        versions.extend(reg.versions().map(|m| m.key_version));
    }
    for (_, answer) in keys {
        if let Some(answer) = answer {
            versions.extend(answer.keys.iter().map(|k| k.key_version));
        }
    }
    let current = registration
        .map(|r| r.metadata.key_version)
        .or_else(|| versions.iter().next_back().copied());
    let mut out = Vec::new();
    for &version in versions.iter().rev() {
        let registered = registration
            .and_then(|r| r.versions().find(|m| m.key_version == version))
            .cloned();
        let reported: Vec<(&HolderRef, &crate::trustee::wire::KeyStatus)> = keys
            .iter()
            .filter_map(|(h, a)| a.map(|a| (*h, a)))
            .flat_map(|(h, a)| {
                a.keys
                    .iter()
                    .filter(move |k| k.key_version == version)
                    .map(move |k| (h, k))
            })
            .collect();
        let Some(metadata) = registered
            .clone()
            .or_else(|| reported.first().map(|(_, k)| k.metadata.clone()))
        else {
            continue;
        };
        let any_shredded = reported.iter().any(|(_, k)| k.state == KeyState::Shredded);
        let state = if any_shredded || registered.is_none() {
            VersionState::Shredded
        } else if Some(version) == current {
            VersionState::Current
        } else {
            VersionState::DecryptOnly
        };
        let holders = metadata
            .holders
            .iter()
            .map(|h| {
                let reg_url = registration.and_then(|r| {
                    if h.name == r.customer_holder {
                        r.customer_url.clone()
                    } else {
                        r.trustees
                            .iter()
                            .find(|t| t.holder == h.name)
                            .map(|t| t.url.clone())
                    }
                });
                let asked = profile_holders.iter().find(|p| p.name == h.name);
                let answered = keys.iter().find(|(p, _)| p.name == h.name);
                let state = match (asked, answered) {
                    (None, _) | (_, None) => "not_asked".to_owned(),
                    (Some(_), Some((_, None))) => "unreachable".to_owned(),
                    (Some(_), Some((_, Some(answer)))) => answer
                        .keys
                        .iter()
                        .find(|k| k.key_version == version && k.holder == h.name)
                        .map_or("unknown", |k| key_state_name(k.state))
                        .to_owned(),
                };
                VersionHolder {
                    name: h.name.clone(),
                    x: h.x,
                    url: reg_url.or_else(|| asked.map(|a| a.url.clone())),
                    state,
                }
            })
            .collect();
        out.push(VersionStatus {
            key_version: version,
            state,
            registered: registered.is_some(),
            scheme: scheme_name(&metadata),
            threshold: metadata.threshold,
            strict: metadata.strict,
            holders,
        });
    }
    let answered: Vec<&Policy> = policies.iter().filter_map(|p| p.policy.as_ref()).collect();
    let policy_consistent = answered.windows(2).all(|w| w[0] == w[1]);
    Status {
        tenant: tenant.to_owned(),
        current_version: current,
        versions: out,
        holders: policies,
        policy_consistent,
    }
}

/// `tenant status`.
///
/// # Errors
/// No holder answered, or the profile or registration is unusable.
pub async fn status(admin: &AdminArgs) -> anyhow::Result<()> {
    let (profile, output) = admin.load()?;
    let tenant = profile.tenant()?.to_owned();
    let registration = read_registration(&profile, &tenant)?;
    if registration.is_none() {
        output.note(format!(
            "note: no registration {tenant}.toml under the profile's registration_dir: versions come from the holders only"
        ));
    }
    let t = tenant.clone();
    let keys = each_holder(&profile, profile.holders(), |c| {
        let t = t.clone();
        async move { c.keys(&t).await }
    })
    .await;
    let t = tenant.clone();
    let policies = each_holder(&profile, profile.holders(), |c| {
        let t = t.clone();
        async move { c.policy(&t).await }
    })
    .await;
    let mut holder_status = Vec::new();
    let mut any_answered = false;
    for ((holder, key_answer), (_, policy)) in keys.iter().zip(policies) {
        // A holder that answers the policy but not the key listing (an older trustee) is
        // still reachable.
        let error = match (&policy, key_answer) {
            (Ok(_), _) => None,
            (Err(e), _) => Some(format!("{e:#}")),
        };
        if policy.is_ok() || key_answer.is_ok() {
            any_answered = true;
        }
        if let Err(e) = key_answer {
            output.note(format!(
                "warning: holder {} ({}) did not list its key versions: {e:#}",
                holder.name, holder.url
            ));
        }
        holder_status.push(HolderStatus {
            name: holder.name.clone(),
            url: holder.url.clone(),
            reachable: error.is_none() || key_answer.is_ok(),
            error,
            policy: policy.ok(),
        });
    }
    let key_views: Vec<(&HolderRef, Option<&KeysResponse>)> =
        keys.iter().map(|(h, a)| (*h, a.as_ref().ok())).collect();
    let profile_holders: Vec<HolderRef> = profile.holders().cloned().collect();
    let status = build_status(
        &tenant,
        registration.as_ref(),
        &profile_holders,
        &key_views,
        holder_status,
    );
    output.emit(&status, print_status)?;
    if !any_answered {
        anyhow::bail!(
            "no holder of the profile answered (see above): check that they run and that the profile's URLs and certificates are right"
        );
    }
    Ok(())
}

fn print_status(status: &Status) {
    println!("tenant {}", status.tenant);
    println!();
    println!("key versions:");
    if status.versions.is_empty() {
        println!("  (none known)");
    }
    for v in &status.versions {
        let state = match v.state {
            VersionState::Current => "current",
            VersionState::DecryptOnly => "decrypt-only",
            VersionState::Shredded => "shredded",
        };
        println!(
            "  v{:<4} {state:<13} {}  threshold {} of {}{}",
            v.key_version,
            v.scheme,
            v.threshold,
            v.holders.len(),
            if v.strict { "  strict" } else { "" }
        );
        for h in &v.holders {
            println!(
                "         {:<12} x={:<3} {:<10} {}",
                h.name,
                h.x,
                h.state,
                h.url.as_deref().unwrap_or("-")
            );
        }
    }
    println!();
    println!("holders and policy:");
    for h in &status.holders {
        match (&h.policy, &h.error) {
            (Some(p), _) => println!("  {:<12} {}  {}", h.name, h.url, describe_policy(p)),
            (None, Some(e)) if h.reachable => {
                println!("  {:<12} {}  policy unreadable: {e}", h.name, h.url)
            }
            (None, e) => println!(
                "  {:<12} {}  UNREACHABLE: {}",
                h.name,
                h.url,
                e.as_deref().unwrap_or("no answer")
            ),
        }
    }
    if !status.policy_consistent {
        println!();
        println!(
            "warning: the holders enforce different policies; run `treuhand tenant policy set` to align them"
        );
    }
}
