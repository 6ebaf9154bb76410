//! `treuhand tenant rewrap --from V`: drives an in-place CopyObject per object of version V.
//!
//! For every bucket (or the given ones) and every key (ListObjectsV2 with continuation): a
//! HEAD reads the proxy's `x-treuhand-key-version`; an object under V gets an in-place
//! CopyObject with metadata directive COPY, which the proxy turns into a rewrap (the same DEK
//! under the current version's key, a new header, the body untouched). SSE-C tenants send V's
//! share as the copy source's SSE-C key and the current share as the destination's; holder
//! tenants send none. Objects under any other version are skipped, so the command is
//! idempotent and can be stopped and rerun; an object that fails is reported and the run
//! goes on.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::args::AdminArgs;
use super::output::Output;
use super::profile::Profile;
use super::s3client::S3Client;
use crate::secret::SecretString;
use crate::tenant::{self, registration};

/// The response header naming an object's key version (see `proxy::s3`).
const KEY_VERSION: &str = "x-treuhand-key-version";

/// What `tenant rewrap --json` prints.
#[derive(Debug, Default, Serialize)]
pub struct Rewrapped {
    /// Tenant id.
    pub tenant: String,
    /// The version objects were moved away from.
    pub from: u32,
    /// The current version they were moved to.
    pub to: u32,
    /// Objects rewrapped by this run.
    pub rewrapped: u64,
    /// Objects under another version (nothing to do).
    pub skipped: u64,
    /// Objects that failed (each reported on stderr).
    pub failed: u64,
}

/// `tenant rewrap`.
///
/// # Errors
/// Unusable profile or registration, a listing that fails, or any object that failed (after
/// the run, with the count).
pub async fn run(admin: &AdminArgs, from: u32, buckets: &[String]) -> anyhow::Result<()> {
    let (profile, output) = admin.load()?;
    let tenant = profile.tenant()?.to_owned();
    let config = registration::load(profile.registration_dir()?, &tenant)?;
    let to = config.metadata.key_version;
    if from == to {
        anyhow::bail!(
            "key version {from} is the current version: nothing to move it to. Rotate first (`treuhand tenant rotate`), then rewrap --from {from}"
        );
    }
    if !config.previous.iter().any(|m| m.key_version == from) {
        anyhow::bail!(
            "key version {from} is not a decrypt-only version of the registration (those are: {}); a shredded version's objects cannot be read any more",
            config
                .previous
                .iter()
                .map(|m| m.key_version.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // SSE-C tenants: V's share opens the old header, the current share the new one.
    let shares = if config.customer_url.is_none() {
        let share_dir = profile.share_dir()?;
        Some((
            raw_share(share_dir, &tenant, from)?,
            raw_share(share_dir, &tenant, to)?,
        ))
    } else {
        None
    };
    let client = s3_client(&profile, &tenant, config.metadata.strict)?;
    let buckets = if buckets.is_empty() {
        client.list_buckets().await?
    } else {
        buckets.to_vec()
    };
    let mut result = Rewrapped {
        tenant: tenant.clone(),
        from,
        to,
        ..Rewrapped::default()
    };
    let mut progress = Progress::new(output);
    let old = shares.as_ref().map(|(old, _)| &**old);
    let new = shares.as_ref().map(|(_, new)| &**new);
    for bucket in &buckets {
        let mut token: Option<String> = None;
        loop {
            let page = client.list_objects(bucket, token.as_deref()).await?;
            for key in &page.keys {
                match rewrap_one(&client, bucket, key, from, old, new).await {
                    Ok(true) => result.rewrapped += 1,
                    Ok(false) => result.skipped += 1,
                    Err(e) => {
                        result.failed += 1;
                        output.note(format!("failed: {bucket}/{key}: {e:#}"));
                    }
                }
                progress.tick(&result, false);
            }
            match page.next {
                Some(next) => token = Some(next),
                None => break,
            }
        }
    }
    progress.tick(&result, true);
    output.emit(&result, |r| {
        println!(
            "tenant {}: {} object(s) moved from key version {} to {}, {} skipped (under another version), {} failed",
            r.tenant, r.rewrapped, r.from, r.to, r.skipped, r.failed
        );
        if r.failed == 0 {
            println!(
                "  when every bucket is done, `treuhand tenant shred --version {}` destroys the old version",
                r.from
            );
        }
    })?;
    if result.failed > 0 {
        anyhow::bail!(
            "{} object(s) could not be rewrapped (listed above); rerun `tenant rewrap --from {from}`: rewrapped objects are skipped",
            result.failed
        );
    }
    Ok(())
}

/// One object: `Ok(true)` rewrapped, `Ok(false)` under another version.
async fn rewrap_one(
    client: &S3Client,
    bucket: &str,
    key: &str,
    from: u32,
    old: Option<&[u8; 32]>,
    new: Option<&[u8; 32]>,
) -> anyhow::Result<bool> {
    let head = client.head(bucket, key, old).await?;
    let version = if (200..300).contains(&head.status) {
        head.header(KEY_VERSION).map(str::to_owned)
    } else if old.is_some() && new.is_some() && matches!(head.status, 400 | 403) {
        // An SSE-C HEAD with V's share is refused for an object of another version (the share
        // does not match its key); ask with the current share before calling it a failure.
        let again = client.head(bucket, key, new).await?;
        if !(200..300).contains(&again.status) {
            anyhow::bail!("HEAD: {}", head.error_text());
        }
        again.header(KEY_VERSION).map(str::to_owned)
    } else {
        anyhow::bail!("HEAD: {}", head.error_text());
    };
    let Some(version) = version else {
        // No key version: an object stored without encryption (passthrough) or a proxy
        // without the header; nothing a rewrap can change.
        return Ok(false);
    };
    let version: u32 = version
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("the proxy answered {KEY_VERSION}: {version:?}"))?;
    if version != from {
        return Ok(false);
    }
    let copied = client.copy_in_place(bucket, key, old, new).await?;
    if !(200..300).contains(&copied.status) {
        anyhow::bail!("CopyObject: {}", copied.error_text());
    }
    Ok(true)
}

/// The raw SSE-C share of `version` from the share directory.
fn raw_share(
    share_dir: &std::path::Path,
    tenant: &str,
    version: u32,
) -> anyhow::Result<zeroize::Zeroizing<[u8; 32]>> {
    let (raw, _) = tenant::share_paths(share_dir, tenant, version);
    let bytes = zeroize::Zeroizing::new(std::fs::read(&raw).map_err(|e| {
        anyhow::anyhow!(
            "cannot read your raw share of key version {version} ({}: {e}); an SSE-C tenant's rewrap sends it as the copy source's key",
            raw.display()
        )
    })?);
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        anyhow::bail!("{} is not a 32-byte raw share", raw.display());
    }
    out.copy_from_slice(&bytes);
    Ok(out)
}

/// The S3 client of the profile's `[s3]` section. A strict tenant whose profile has no S3
/// secret signs with the customer's own credentials (`<share_dir>/<tenant>.s3-credentials`).
fn s3_client(profile: &Profile, tenant: &str, strict: bool) -> anyhow::Result<S3Client> {
    let s3 = profile.s3.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "the profile has no [s3] section: add endpoint, region, access_key_id and secret_access_key of the proxy (the rewrap goes through S3)"
        )
    })?;
    let (access_key_id, secret) = if s3.secret_access_key.expose_secret().is_empty() {
        if !strict {
            anyhow::bail!("the profile's [s3] secret_access_key is empty");
        }
        let credential = super::lifecycle::strict_credential(profile.share_dir()?, tenant)?;
        (
            credential.access_key_id.clone(),
            SecretString::from(credential.secret_access_key.as_str()),
        )
    } else {
        (s3.access_key_id.clone(), s3.secret_access_key.clone())
    };
    crate::tls::install_crypto_provider();
    let ca = s3.ca.as_deref().unwrap_or(&profile.ca);
    let tls = crate::tls::client_config(ca, None)?;
    S3Client::new(&s3.endpoint, &s3.region, &access_key_id, secret, tls)
}

/// Progress on stderr about once a second.
struct Progress {
    output: Output,
    last: Instant,
}

impl Progress {
    fn new(output: Output) -> Self {
        Self {
            output,
            last: Instant::now(),
        }
    }

    fn tick(&mut self, r: &Rewrapped, last: bool) {
        if !last && self.last.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last = Instant::now();
        self.output.note(format!(
            "rewrapped {}/{} objects ({} skipped, {} failed)",
            r.rewrapped,
            r.rewrapped + r.skipped + r.failed,
            r.skipped,
            r.failed
        ));
    }
}
