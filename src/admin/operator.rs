//! `treuhand operator grant request` and `operator grants list`.
//!
//! An emergency grant lives at each trustee on its own (its own id at each), so a request is
//! filed at every trustee of the operator's profile. A trustee that does not serve the tenant
//! (it answers "unknown tenant") is skipped: an operator's profile lists every trustee it works
//! with, and tenants use different ones.

use serde::Serialize;

use super::args::AdminArgs;
use super::customer::{self, HolderGrant};
use super::holders::{HolderError, each_holder, format_duration};
use crate::trustee::Error as TrusteeError;
use crate::trustee::wire::{GrantRequest, GrantScope};

/// The arguments of `operator grant request`.
#[derive(Debug, Clone)]
pub struct GrantRequestArgs {
    /// Tenant id.
    pub tenant: String,
    /// Ticket id.
    pub ticket: String,
    /// Duration text (`2h`).
    pub duration: String,
    /// Reason.
    pub reason: String,
    /// Key version scope.
    pub key_version: Option<u32>,
}

/// Parses a duration: a whole number with a unit `s`, `m`, `h` or `d` (`90m`, `2h`, `1d`,
/// `3600s`); a bare number is seconds.
///
/// # Errors
/// Anything else, or zero.
pub fn parse_duration(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let bad = || {
        anyhow::anyhow!(
            "--duration {text:?}: give a whole number with a unit s, m, h or d, e.g. 90m, 2h, 1d, 3600s"
        )
    };
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(factor).ok_or_else(bad)?;
    if secs == 0 {
        anyhow::bail!("--duration must be longer than zero");
    }
    Ok(secs)
}

/// `operator grant request --json`: the first filed grant's fields at the top (so a single
/// trustee gives a plain grant object with `id`), and every trustee's grant in `grants`.
#[derive(Debug, Clone, Serialize)]
pub struct GrantRequested {
    /// The id at the first trustee that filed it (ids are per trustee: see `grants`).
    pub id: String,
    /// Tenant id.
    pub tenant: String,
    /// Ticket id.
    pub ticket: String,
    /// State (`pending` until the customer approves).
    pub state: crate::trustee::wire::GrantState,
    /// Duration once approved, in seconds.
    pub duration_secs: u64,
    /// Key version scope (`null`: every version).
    pub key_version: Option<u32>,
    /// When it expires (Unix ms; `null` until approved).
    pub expires_ms: Option<u64>,
    /// The grant at every trustee that filed it, with that trustee's id.
    pub grants: Vec<HolderGrant>,
    /// Trustees that skipped it because they do not serve the tenant.
    pub skipped: Vec<HolderError>,
    /// Trustees that failed.
    pub failed: Vec<HolderError>,
}

/// `operator grant request`.
///
/// # Errors
/// No trustee filed it, or a trustee that serves the tenant failed (named).
pub async fn grant_request(admin: &AdminArgs, request: GrantRequestArgs) -> anyhow::Result<()> {
    let (profile, output) = admin.load()?;
    let duration_secs = parse_duration(&request.duration)?;
    if profile.trustees.is_empty() {
        anyhow::bail!("the profile names no [[trustees]]: add the trustees to file the grant at");
    }
    let body = GrantRequest {
        ticket: request.ticket.clone(),
        scope: GrantScope {
            key_version: request.key_version,
        },
        duration_secs,
        reason: request.reason.clone(),
    };
    let tenant = request.tenant.clone();
    let answers = each_holder(&profile, profile.trustees.iter(), |c| {
        let t = tenant.clone();
        let b = body.clone();
        async move { c.request_grant(&t, &b).await }
    })
    .await;
    let mut grants = Vec::new();
    let mut skipped = Vec::new();
    let mut failed = Vec::new();
    for (h, answer) in answers {
        match answer {
            Ok(grant) => grants.push(HolderGrant {
                holder: h.name.clone(),
                url: h.url.clone(),
                grant,
            }),
            Err(e) if matches!(e.downcast_ref(), Some(TrusteeError::UnknownTenant)) => {
                skipped.push(HolderError::new(h, &e));
            }
            Err(e) => failed.push(HolderError::new(h, &e)),
        }
    }
    for s in &skipped {
        output.note(format!(
            "note: trustee {} ({}) does not serve tenant {}; skipped",
            s.holder, s.url, request.tenant
        ));
    }
    let Some(first) = grants.first().map(|g| g.grant.clone()) else {
        let reasons: Vec<String> = failed
            .iter()
            .chain(&skipped)
            .map(|f| format!("{} ({}): {}", f.holder, f.url, f.message))
            .collect();
        anyhow::bail!("no trustee filed the grant request: {}", reasons.join("; "));
    };
    let report = GrantRequested {
        id: first.id.clone(),
        tenant: first.tenant.clone(),
        ticket: first.ticket.clone(),
        state: first.state,
        duration_secs: first.duration_secs,
        key_version: first.scope.key_version,
        expires_ms: first.expires_ms,
        grants,
        skipped,
        failed,
    };
    output.emit(&report, |r| {
        for g in &r.grants {
            println!(
                "grant {} filed at {} ({}) for tenant {}, ticket {}, {} once approved: pending",
                g.grant.id,
                g.holder,
                g.url,
                r.tenant,
                r.ticket,
                format_duration(r.duration_secs)
            );
        }
        for f in &r.failed {
            println!("NOT filed at {} ({}): {}", f.holder, f.url, f.message);
        }
        println!(
            "the customer admin approves it with `treuhand tenant grants approve ID` (one id per trustee)"
        );
    })?;
    if !report.failed.is_empty() {
        let names: Vec<String> = report
            .failed
            .iter()
            .map(|f| format!("{} ({})", f.holder, f.message))
            .collect();
        anyhow::bail!(
            "the grant request was not filed at every trustee of the tenant: {}",
            names.join("; ")
        );
    }
    Ok(())
}

/// `operator grants list`.
///
/// # Errors
/// No trustee answered.
pub async fn grants_list(admin: &AdminArgs, tenant: &str) -> anyhow::Result<()> {
    let (profile, output) = admin.load()?;
    let mut list = customer::list_grants(&profile, profile.trustees.iter(), tenant).await;
    // A trustee that does not serve the tenant has no grants for it: not an error.
    let (unknown, errors): (Vec<HolderError>, Vec<HolderError>) = list
        .errors
        .into_iter()
        .partition(|e| e.error == "unknown_tenant");
    list.errors = errors;
    for u in &unknown {
        output.note(format!(
            "note: trustee {} ({}) does not serve tenant {tenant}",
            u.holder, u.url
        ));
    }
    output.emit(&list, customer::print_grants)?;
    if !profile.trustees.is_empty() && unknown.len() == profile.trustees.len() {
        anyhow::bail!("no trustee of the profile serves tenant {tenant}");
    }
    if !profile.trustees.is_empty() && list.errors.len() + unknown.len() == profile.trustees.len() {
        anyhow::bail!("no trustee of the profile answered (see above)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit_and_refuse_the_rest() {
        assert_eq!(parse_duration("90m").unwrap(), 5400);
        assert_eq!(parse_duration("2h").unwrap(), 7200);
        assert_eq!(parse_duration("1d").unwrap(), 86_400);
        assert_eq!(parse_duration("3600s").unwrap(), 3600);
        assert_eq!(parse_duration("120").unwrap(), 120);
        for bad in ["", "h", "2w", "1.5h", "0m", "-1h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
