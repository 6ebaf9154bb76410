//! `treuhand tenant status`, `policy show|set` and `grants list|approve|deny|revoke`: the
//! customer admin's view and control of the policy at every holder.
//!
//! Every command asks each holder of the profile on its own: a holder that cannot be reached
//! is reported by name, never hidden. Reading commands fail only when no holder answered;
//! changing commands fail (non-zero exit) when any holder did not take the change, naming it,
//! because a policy or a grant that holds at one holder only is not what the customer asked for.

use serde::Serialize;

use super::args::AdminArgs;
use super::holders::{HolderError, each_holder, format_duration, utc};
use super::profile::{HolderRef, Profile};
use crate::trustee::Error as TrusteeError;
use crate::trustee::wire::{Grant, GrantState, Justification, Policy};

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
}
