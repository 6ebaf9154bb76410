//! What every admin command does with the holders of a profile: ask each at once, and report
//! a holder that did not answer by name (never hidden). Plus the small formatters the reports
//! share.

use anyhow::Context as _;
use serde::Serialize;

use super::profile::{HolderRef, Profile};
use crate::trustee::Error as TrusteeError;
use crate::trustee::client::TrusteeClient;

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
    pub(crate) fn new(holder: &HolderRef, error: &anyhow::Error) -> Self {
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
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_800_000_000_000), "2027-01-15 08:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
    }
}
