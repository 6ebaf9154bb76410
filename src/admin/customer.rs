//! `treuhand tenant status`, `policy show|set` and `grants list|approve|deny|revoke`: the
//! customer admin's view and control of the policy at every holder.
//!
//! Every command asks each holder of the profile on its own: a holder that cannot be reached
//! is reported by name, never hidden. Reading commands fail only when no holder answered;
//! changing commands fail (non-zero exit) when any holder did not take the change, naming it,
//! because a policy or a grant that holds at one holder only is not what the customer asked for.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::cli::AdminArgs;
use super::profile::{HolderRef, Profile};
use crate::crypto::shamir::KeyMetadata;
use crate::proxy::config::TenantConfig;
use crate::trustee::Error as TrusteeError;
use crate::trustee::client::TrusteeClient;
use crate::trustee::wire::{Grant, GrantState, Justification, KeyState, KeysResponse, Policy};

/// What `policy set` changes; fields not given stay as they are.
#[derive(Debug, Clone, Default)]
pub struct PolicyChange {
    /// New allowed proxies (empty: unchanged).
    pub allow_proxies: Vec<String>,
    /// New allowed justifications by wire name (empty: unchanged).
    pub justifications: Vec<String>,
    /// `N` or `N/BURST`.
    pub rate: Option<String>,
    /// Suspend.
    pub suspend: bool,
    /// Resume.
    pub resume: bool,
}

/// What to do with a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantAction {
    /// Approve a pending grant.
    Approve,
    /// Deny a pending grant.
    Deny,
    /// End an approved grant.
    Revoke,
}

impl GrantAction {
    fn verb(self) -> &'static str {
        match self {
            GrantAction::Approve => "approved",
            GrantAction::Deny => "denied",
            GrantAction::Revoke => "revoked",
        }
    }
}

/// A holder's answer, or why there is none, in the JSON of every command.
#[derive(Debug, Clone, Serialize)]
pub struct HolderError {
    /// Holder name.
    pub holder: String,
    /// Its URL.
    pub url: String,
    /// `unreachable`, `denied`, `unknown_tenant`, `not_found`, `conflict`, `error`.
    pub error: String,
    /// Human text.
    pub message: String,
}

impl HolderError {
    pub(super) fn new(holder: &HolderRef, error: &anyhow::Error) -> Self {
        let kind = match error.downcast_ref::<TrusteeError>() {
            Some(TrusteeError::Unreachable(_)) => "unreachable",
            Some(TrusteeError::Denied(_)) => "denied",
            Some(TrusteeError::UnknownTenant) => "unknown_tenant",
            Some(TrusteeError::NotFound(_)) => "not_found",
            Some(TrusteeError::Conflict(_)) => "conflict",
            _ => "error",
        };
        Self {
            holder: holder.name.clone(),
            url: holder.url.clone(),
            error: kind.to_owned(),
            message: format!("{error:#}"),
        }
    }
}

/// A client for one holder of the profile, or the error that stops it.
pub(super) fn client_for(profile: &Profile, holder: &HolderRef) -> anyhow::Result<TrusteeClient> {
    profile
        .client(&holder.url)
        .with_context(|| format!("holder {} ({})", holder.name, holder.url))
}

/// Runs `call` against every holder in `holders` at once and returns the answers in order.
pub(super) async fn each_holder<'a, T, F, Fut>(
    profile: &Profile,
    holders: impl Iterator<Item = &'a HolderRef>,
    call: F,
) -> Vec<(&'a HolderRef, anyhow::Result<T>)>
where
    F: Fn(TrusteeClient) -> Fut,
    Fut: std::future::Future<Output = Result<T, TrusteeError>>,
{
    let holders: Vec<&HolderRef> = holders.collect();
    let calls = holders.iter().map(|holder| {
        let client = client_for(profile, holder);
        let call = &call;
        async move {
            match client {
                Ok(client) => call(client).await.map_err(anyhow::Error::new),
                Err(e) => Err(e),
            }
        }
    });
    let results = futures::future::join_all(calls).await;
    holders.into_iter().zip(results).collect()
}

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

/// One line describing a policy.
pub(super) fn describe_policy(p: &Policy) -> String {
    let proxies = if p.allowed_proxies.is_empty() {
        "(none)".to_owned()
    } else {
        p.allowed_proxies.join(",")
    };
    let justifications: Vec<&str> = p
        .allowed_justifications
        .iter()
        .map(|j| j.as_str())
        .collect();
    format!(
        "{}proxies {proxies}; justifications {}; rate {}/s burst {}",
        if p.suspended { "SUSPENDED; " } else { "" },
        justifications.join(","),
        p.rate_limit.per_second,
        p.rate_limit.burst
    )
}

/// One holder's policy in `policy show|set --json`.
#[derive(Debug, Clone, Serialize)]
pub struct HolderPolicy {
    /// Holder name.
    pub holder: String,
    /// URL.
    pub url: String,
    /// Its policy (after the change, for `set`), if it answered.
    pub policy: Option<Policy>,
    /// Why not, if it did not.
    pub error: Option<HolderError>,
}

/// `policy show|set --json`.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    /// Tenant id.
    pub tenant: String,
    /// Per holder.
    pub holders: Vec<HolderPolicy>,
    /// Whether every holder answered with the same policy.
    pub consistent: bool,
}

fn policy_report(tenant: &str, answers: Vec<(&HolderRef, anyhow::Result<Policy>)>) -> PolicyReport {
    let holders: Vec<HolderPolicy> = answers
        .into_iter()
        .map(|(h, r)| match r {
            Ok(p) => HolderPolicy {
                holder: h.name.clone(),
                url: h.url.clone(),
                policy: Some(p),
                error: None,
            },
            Err(e) => HolderPolicy {
                holder: h.name.clone(),
                url: h.url.clone(),
                policy: None,
                error: Some(HolderError::new(h, &e)),
            },
        })
        .collect();
    let policies: Vec<&Policy> = holders.iter().filter_map(|h| h.policy.as_ref()).collect();
    let consistent = policies.len() == holders.len() && policies.windows(2).all(|w| w[0] == w[1]);
    PolicyReport {
        tenant: tenant.to_owned(),
        holders,
        consistent,
    }
}

fn print_policy_report(report: &PolicyReport) {
    for h in &report.holders {
        match (&h.policy, &h.error) {
            (Some(p), _) => println!("{:<12} {}  {}", h.holder, h.url, describe_policy(p)),
            (None, Some(e)) => println!("{:<12} {}  FAILED: {}", h.holder, h.url, e.message),
            (None, None) => {}
        }
    }
}

/// `tenant policy show`.
///
/// # Errors
/// No holder answered.
pub async fn policy_show(admin: &AdminArgs) -> anyhow::Result<()> {
    let (profile, output) = admin.load()?;
    let tenant = profile.tenant()?.to_owned();
    let t = tenant.clone();
    let answers = each_holder(&profile, profile.holders(), |c| {
        let t = t.clone();
        async move { c.policy(&t).await }
    })
    .await;
    let report = policy_report(&tenant, answers);
    output.emit(&report, print_policy_report)?;
    if report.holders.iter().all(|h| h.policy.is_none()) {
        anyhow::bail!("no holder of the profile answered (see above)");
    }
    if !report.consistent && !output.json {
        output.note(
            "warning: the holders do not all enforce the same policy; `treuhand tenant policy set` aligns them",
        );
    }
    Ok(())
}

/// Parses `N` or `N/BURST`. `N` alone sets a burst of 2·N (the default's ratio).
///
/// # Errors
/// Anything else.
pub fn parse_rate(text: &str) -> anyhow::Result<crate::trustee::wire::RateLimit> {
    let bad = || {
        anyhow::anyhow!(
            "--rate {text:?}: give releases per second, optionally with a burst: e.g. 100 or 100/500"
        )
    };
    let (per, burst) = match text.split_once('/') {
        Some((per, burst)) => (
            per.trim().parse::<u32>().map_err(|_| bad())?,
            burst.trim().parse::<u32>().map_err(|_| bad())?,
        ),
        None => {
            let per = text.trim().parse::<u32>().map_err(|_| bad())?;
            (per, per.saturating_mul(2))
        }
    };
    Ok(crate::trustee::wire::RateLimit {
        per_second: per,
        burst,
    })
}

/// Applies `change` to `policy`.
///
/// # Errors
/// An unknown justification, a bad rate, or a resulting policy out of bounds.
pub fn apply_change(mut policy: Policy, change: &PolicyChange) -> anyhow::Result<Policy> {
    if !change.allow_proxies.is_empty() {
        policy.allowed_proxies = change.allow_proxies.clone();
    }
    if !change.justifications.is_empty() {
        policy.allowed_justifications = change
            .justifications
            .iter()
            .map(|j| {
                serde_json::from_value::<Justification>(serde_json::Value::String(j.clone()))
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "--justification {j:?} is not one of customer_access, operator_maintenance, legal_request, key_rotation"
                        )
                    })
            })
            .collect::<anyhow::Result<_>>()?;
    }
    if let Some(rate) = &change.rate {
        policy.rate_limit = parse_rate(rate)?;
    }
    if change.suspend {
        policy.suspended = true;
    }
    if change.resume {
        policy.suspended = false;
    }
    policy
        .validate()
        .map_err(|e| anyhow::anyhow!("the new policy is invalid: {e}"))?;
    Ok(policy)
}

/// `tenant policy set`.
///
/// # Errors
/// Any holder that did not take the new policy (named), or an invalid change.
pub async fn policy_set(admin: &AdminArgs, change: PolicyChange) -> anyhow::Result<()> {
    let (profile, output) = admin.load()?;
    let tenant = profile.tenant()?.to_owned();
    if change.allow_proxies.is_empty()
        && change.justifications.is_empty()
        && change.rate.is_none()
        && !change.suspend
        && !change.resume
    {
        anyhow::bail!(
            "nothing to change: give --allow-proxy, --justification, --rate, --suspend or --resume"
        );
    }
    // Read every holder's policy; the first answer is the base the change applies to, so
    // every holder ends with the same policy even if they differed before.
    let t = tenant.clone();
    let current = each_holder(&profile, profile.holders(), |c| {
        let t = t.clone();
        async move { c.policy(&t).await }
    })
    .await;
    let Some(base) = current.iter().find_map(|(_, r)| r.as_ref().ok()).cloned() else {
        let report = policy_report(&tenant, current);
        output.emit(&report, print_policy_report)?;
        anyhow::bail!("no holder answered with the current policy; nothing was changed");
    };
    if current
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .any(|p| *p != base)
    {
        output.note("note: the holders enforced different policies; all now get the same one");
    }
    let new = apply_change(base, &change)?;
    let set = each_holder(&profile, profile.holders(), |c| {
        let t = tenant.clone();
        let p = new.clone();
        async move { c.set_policy(&t, &p).await }
    })
    .await;
    let report = policy_report(&tenant, set);
    output.emit(&report, |r| {
        print_policy_report(r);
    })?;
    let failed: Vec<String> = report
        .holders
        .iter()
        .filter_map(|h| {
            h.error
                .as_ref()
                .map(|e| format!("{} ({}): {}", h.holder, h.url, e.message))
        })
        .collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "the policy was NOT set at every holder; these did not take it: {}. Rerun `treuhand tenant policy set` with the same arguments once they are reachable",
            failed.join("; ")
        );
    }
    if !output.json {
        println!("policy set at every holder ({})", report.holders.len());
    }
    Ok(())
}

/// One grant at one holder.
#[derive(Debug, Clone, Serialize)]
pub struct HolderGrant {
    /// Holder name.
    pub holder: String,
    /// URL.
    pub url: String,
    /// The grant as the holder reports it.
    #[serde(flatten)]
    pub grant: Grant,
}

/// `grants list --json`.
#[derive(Debug, Clone, Serialize)]
pub struct GrantList {
    /// Tenant id.
    pub tenant: String,
    /// Every grant at every holder that answered.
    pub grants: Vec<HolderGrant>,
    /// Holders that did not answer.
    pub errors: Vec<HolderError>,
}

fn grant_state_name(state: GrantState) -> &'static str {
    match state {
        GrantState::Pending => "pending",
        GrantState::Approved => "approved",
        GrantState::Expired => "expired",
        GrantState::Denied => "denied",
        GrantState::Revoked => "revoked",
    }
}

/// Lists the grants of `tenant` at `holders`.
pub(super) async fn list_grants<'a>(
    profile: &Profile,
    holders: impl Iterator<Item = &'a HolderRef>,
    tenant: &str,
) -> GrantList {
    let t = tenant.to_owned();
    let answers = each_holder(profile, holders, |c| {
        let t = t.clone();
        async move { c.grants(&t).await }
    })
    .await;
    let mut list = GrantList {
        tenant: tenant.to_owned(),
        grants: Vec::new(),
        errors: Vec::new(),
    };
    for (h, answer) in answers {
        match answer {
            Ok(grants) => list.grants.extend(grants.into_iter().map(|g| HolderGrant {
                holder: h.name.clone(),
                url: h.url.clone(),
                grant: g,
            })),
            Err(e) => list.errors.push(HolderError::new(h, &e)),
        }
    }
    list
}

/// Prints a grant list as a table.
pub(super) fn print_grants(list: &GrantList) {
    if list.grants.is_empty() {
        println!("no grants for tenant {}", list.tenant);
    } else {
        println!(
            "{:<12} {:<20} {:<9} {:<16} {:<9} {:<22} reason",
            "holder", "id", "state", "ticket", "duration", "expires (UTC)"
        );
    }
    for g in &list.grants {
        let expires = g.grant.expires_ms.map_or_else(|| "-".to_owned(), utc);
        println!(
            "{:<12} {:<20} {:<9} {:<16} {:<9} {:<22} {}",
            g.holder,
            g.grant.id,
            grant_state_name(g.grant.state),
            g.grant.ticket,
            format_duration(g.grant.duration_secs),
            expires,
            g.grant.reason
        );
    }
    for e in &list.errors {
        println!("{:<12} {}  FAILED: {}", e.holder, e.url, e.message);
    }
}

/// `tenant grants list`.
///
/// # Errors
/// No holder answered.
pub async fn grants_list(admin: &AdminArgs) -> anyhow::Result<()> {
    let (profile, output) = admin.load()?;
    let tenant = profile.tenant()?.to_owned();
    let list = list_grants(&profile, profile.holders(), &tenant).await;
    let holders = profile.holders().count();
    output.emit(&list, print_grants)?;
    if list.errors.len() == holders {
        anyhow::bail!("no holder of the profile answered (see above)");
    }
    Ok(())
}

/// `grants approve|deny|revoke --json`.
#[derive(Debug, Clone, Serialize)]
pub struct GrantActionReport {
    /// The grant id.
    pub id: String,
    /// `approved`, `denied` or `revoked`.
    pub action: String,
    /// The grant at every holder that took the action.
    pub done: Vec<HolderGrant>,
    /// Holders that know the id but refused or could not be reached.
    pub failed: Vec<HolderError>,
}

/// `tenant grants approve|deny|revoke`.
///
/// # Errors
/// No holder knows the id, or a holder that may know it did not take the action (named).
pub async fn grant_action(admin: &AdminArgs, action: GrantAction, id: &str) -> anyhow::Result<()> {
    let (profile, output) = admin.load()?;
    let tenant = profile.tenant()?.to_owned();
    let answers = each_holder(&profile, profile.holders(), |c| {
        let t = tenant.clone();
        let id = id.to_owned();
        async move {
            match action {
                GrantAction::Approve => c.approve_grant(&t, &id).await,
                GrantAction::Deny => c.deny_grant(&t, &id).await,
                GrantAction::Revoke => c.revoke_grant(&t, &id).await,
            }
        }
    })
    .await;
    let mut report = GrantActionReport {
        id: id.to_owned(),
        action: action.verb().to_owned(),
        done: Vec::new(),
        failed: Vec::new(),
    };
    for (h, answer) in answers {
        match answer {
            Ok(grant) => report.done.push(HolderGrant {
                holder: h.name.clone(),
                url: h.url.clone(),
                grant,
            }),
            // Grant ids are per holder: one that does not know this id is not a failure.
            Err(e) if matches!(e.downcast_ref(), Some(TrusteeError::NotFound(_))) => {}
            Err(e) => report.failed.push(HolderError::new(h, &e)),
        }
    }
    output.emit(&report, |r| {
        for d in &r.done {
            println!(
                "grant {} {} at {} ({}): now {}",
                r.id,
                r.action,
                d.holder,
                d.url,
                grant_state_name(d.grant.state)
            );
        }
        for f in &r.failed {
            println!(
                "grant {} at {} ({}): FAILED: {}",
                r.id, f.holder, f.url, f.message
            );
        }
    })?;
    if !report.failed.is_empty() {
        let names: Vec<String> = report
            .failed
            .iter()
            .map(|f| format!("{} ({})", f.holder, f.message))
            .collect();
        anyhow::bail!(
            "grant {id} was not {} at: {}",
            action.verb(),
            names.join("; ")
        );
    }
    if report.done.is_empty() {
        anyhow::bail!(
            "no holder of the profile knows grant {id} for tenant {tenant}: `treuhand tenant grants list` shows the ids (they are per holder)"
        );
    }
    Ok(())
}

/// A duration in the largest whole unit (`2h`, `90m`, `45s`).
pub(super) fn format_duration(secs: u64) -> String {
    if secs > 0 && secs.is_multiple_of(86_400) {
        format!("{}d", secs / 86_400)
    } else if secs > 0 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs > 0 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` (UTC).
pub(super) fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_and_without_a_burst() {
        let r = parse_rate("100").unwrap();
        assert_eq!((r.per_second, r.burst), (100, 200));
        let r = parse_rate("100/500").unwrap();
        assert_eq!((r.per_second, r.burst), (100, 500));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("1/x").is_err());
    }

    #[test]
    fn a_change_keeps_what_it_does_not_name() {
        let base = Policy {
            allowed_proxies: vec!["p1".into()],
            ..Policy::default()
        };
        let change = PolicyChange {
            suspend: true,
            ..PolicyChange::default()
        };
        let new = apply_change(base.clone(), &change).unwrap();
        assert!(new.suspended);
        assert_eq!(new.allowed_proxies, base.allowed_proxies);
        let change = PolicyChange {
            justifications: vec!["legal_request".into()],
            allow_proxies: vec!["a".into(), "b".into()],
            resume: true,
            ..PolicyChange::default()
        };
        let new = apply_change(new, &change).unwrap();
        assert!(!new.suspended);
        assert_eq!(new.allowed_proxies, ["a", "b"]);
        assert_eq!(new.allowed_justifications, [Justification::LegalRequest]);
        let bad = PolicyChange {
            justifications: vec!["because".into()],
            ..PolicyChange::default()
        };
        assert!(apply_change(Policy::default(), &bad).is_err());
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_800_000_000_000), "2027-01-15 08:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
    }
}
