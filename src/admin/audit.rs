//! `treuhand audit pull`: incremental audit verification against a kept checkpoint.
//!
//! For every holder of the profile the state file keeps the last verified point of the
//! tenant's chain there (sequence number and head hash) and the holder's pinned public key.
//! Each run downloads the log from that entry on (`GET .../audit?from=SEQ`: the kept entry is
//! fetched again so it can be compared), and checks, in this order:
//!
//! 1. the checkpoint is signed by the pinned key, for this tenant;
//! 2. it does not go back behind the kept point ("rolled back from N to M");
//! 3. the kept entry is still there ("removed") and unchanged ("forked or rewritten at seq N");
//! 4. the new entries chain onto it without a gap, every head signature verifies and the last
//!    entry is a signed head ([`crate::trustee::audit::check_segment`]);
//! 5. the checkpoint covers the last entry.
//!
//! Only then the holder's new point is kept and its new entries are appended to
//! `<state>.d/<holder>.jsonl`. A holder that fails keeps its old point, so the next run reports
//! it again. The state file is replaced atomically (temp file + rename).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::args::AdminArgs;
use super::profile::{HolderRef, Profile, read_public_key};
use crate::trustee::audit::{AuditEntry, AuditLog, GENESIS, check_segment};

/// The kept point of one holder's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderState {
    /// The holder's URL when it was last verified (informational).
    pub url: String,
    /// The pinned public key (hex) every checkpoint and head must verify with.
    pub trustee_key: String,
    /// Sequence number of the last verified entry (0: the log was empty).
    pub seq: u64,
    /// Its hash ([`GENESIS`] for an empty log).
    pub head: String,
    /// Time of the last verified checkpoint (Unix ms; 0 if none).
    pub checkpoint_time_ms: u64,
    /// When this point was verified (Unix ms).
    pub verified_ms: u64,
}

/// The state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The tenant whose chains are kept.
    pub tenant: String,
    /// Per holder name.
    pub holders: BTreeMap<String, HolderState>,
}

/// One holder's result in `audit pull --json`.
#[derive(Debug, Clone, Serialize)]
pub struct HolderPull {
    /// Holder name.
    pub holder: String,
    /// URL.
    pub url: String,
    /// Whether the new part verified.
    pub ok: bool,
    /// The kept point before this run (`null`: first run).
    pub from_seq: Option<u64>,
    /// The verified point now (the old one if it failed).
    pub seq: u64,
    /// Entries verified and appended in this run.
    pub new_entries: usize,
    /// The verified head hash.
    pub head: String,
    /// The checkpoint's time (Unix ms), if verified.
    pub checkpoint_time_ms: Option<u64>,
    /// The first broken point, if it failed.
    pub error: Option<String>,
}

/// `audit pull --json`.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    /// Tenant id.
    pub tenant: String,
    /// The state file.
    pub state: PathBuf,
    /// Per holder.
    pub holders: Vec<HolderPull>,
    /// Whether every holder verified.
    pub ok: bool,
}

/// Why a holder's log does not extend the kept point.
#[derive(Debug)]
struct Broken(String);

/// Checks a downloaded segment against the kept point (pure). Returns the new point and the
/// new entries (without the kept one).
fn check_pull(
    tenant: &str,
    key: &[u8; 32],
    kept: Option<&HolderState>,
    log: AuditLog,
    now_ms: u64,
    url: &str,
) -> Result<(HolderState, Vec<AuditEntry>), Broken> {
    if log.tenant != tenant {
        return Err(Broken(format!(
            "the holder answered with the log of tenant {:?}, not {tenant:?}",
            log.tenant
        )));
    }
    let kept_seq = kept.map_or(0, |k| k.seq);
    let kept_head = kept.map_or(GENESIS, |k| k.head.as_str());
    // A holder that ignores `from` sends the whole chain: only the part from the kept entry on
    // is compared.
    let entries: Vec<AuditEntry> = log
        .entries
        .into_iter()
        .filter(|e| e.seq >= kept_seq.max(1))
        .collect();
    // 1. The checkpoint.
    let checkpoint = match &log.checkpoint {
        Some(c) => {
            if !c.verify_signature(key) {
                return Err(Broken(
                    "checkpoint: its signature does not verify with the pinned trustee key (forged or altered, or the trustee's key changed)".into(),
                ));
            }
            if c.tenant != tenant {
                return Err(Broken(format!(
                    "checkpoint: signed for tenant {:?}, not {tenant:?}",
                    c.tenant
                )));
            }
            Some(c.clone())
        }
        None if entries.is_empty() && kept_seq == 0 => None,
        None => {
            return Err(Broken(if kept_seq > 0 && entries.is_empty() {
                format!("rolled back from seq {kept_seq} to an empty log (no checkpoint)")
            } else {
                "checkpoint: missing, nothing vouches for the end of the log".into()
            }));
        }
    };
    // 2. Not behind the kept point.
    let cp_seq = checkpoint.as_ref().map_or(0, |c| c.seq);
    if cp_seq < kept_seq {
        return Err(Broken(format!(
            "rolled back from seq {kept_seq} to seq {cp_seq}: the holder's signed checkpoint is older than the last verified one"
        )));
    }
    // 3. The kept entry is still there and unchanged.
    let new: &[AuditEntry] = if kept_seq > 0 {
        match entries.first() {
            Some(first) if first.seq == kept_seq => {
                if first.hash != kept_head || first.compute_hash() != kept_head {
                    return Err(Broken(format!(
                        "forked or rewritten at seq {kept_seq}: the entry there is no longer the one verified before (kept head {kept_head}, now {})",
                        first.hash
                    )));
                }
                &entries[1..]
            }
            _ => {
                return Err(Broken(format!(
                    "entry seq {kept_seq} (the last verified) was removed: the log no longer has it"
                )));
            }
        }
    } else {
        &entries
    };
    // 4. The new entries chain onto it.
    let verified = check_segment(tenant, kept_seq + 1, kept_head, new, Some(key))
        .map_err(|b| Broken(b.what))?;
    let (seq, head) = match new.last() {
        Some(last) => (last.seq, verified.head),
        None => (kept_seq, kept_head.to_owned()),
    };
    // 5. The checkpoint covers the last entry.
    if let Some(c) = &checkpoint
        && (c.seq != seq || c.head != head)
    {
        return Err(Broken(format!(
            "checkpoint: it covers seq {} but the log ends at seq {seq} (or the head hash differs): entries were cut off or changed at the end (first missing: seq {})",
            c.seq,
            seq + 1
        )));
    }
    let state = HolderState {
        url: url.to_owned(),
        trustee_key: hex::encode(key),
        seq,
        head,
        checkpoint_time_ms: checkpoint.map_or(0, |c| c.time_ms),
        verified_ms: now_ms,
    };
    Ok((state, new.to_vec()))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn read_state(path: &Path, tenant: &str) -> anyhow::Result<Option<State>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(anyhow::anyhow!(
                "cannot read the state file {}: {e}",
                path.display()
            ));
        }
    };
    let state: State = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "the state file {} is not an audit pull state ({e}); restore it from a backup, or move it away to verify every log from the start",
            path.display()
        )
    })?;
    if state.tenant != tenant {
        anyhow::bail!(
            "the state file {} is for tenant {:?}, the profile for {tenant:?}: use one state file per tenant",
            path.display(),
            state.tenant
        );
    }
    Ok(Some(state))
}

/// Writes `contents` to `path` atomically: a temp file next to it, fsynced, then renamed.
fn write_atomically(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot write the state file {}: {e}", path.display())
    })
}

/// `<state>.d`, where each holder's verified entries are kept.
fn entries_dir(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".d");
    PathBuf::from(name)
}

fn append_entries(dir: &Path, holder: &str, entries: &[AuditEntry]) -> anyhow::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let safe: String = holder
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{safe}.jsonl"));
    let mut text = String::new();
    for e in entries {
        text.push_str(&serde_json::to_string(e)?);
        text.push('\n');
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

async fn pull_one(
    profile: &Profile,
    tenant: &str,
    holder: &HolderRef,
    key: [u8; 32],
    kept: Option<&HolderState>,
) -> Result<(HolderState, Vec<AuditEntry>), Broken> {
    if let Some(kept) = kept
        && kept.trustee_key != hex::encode(key)
    {
        return Err(Broken(format!(
            "the profile's trustee_key for {} is not the key pinned in the state file ({}): if the holder really changed its key, verify its log from the start with a new state file",
            holder.name, kept.trustee_key
        )));
    }
    let client = profile
        .client(&holder.url)
        .map_err(|e| Broken(format!("{e:#}")))?;
    let from = kept.map_or(1, |k| k.seq.max(1));
    let log = client
        .audit_from(tenant, from)
        .await
        .map_err(|e| Broken(format!("cannot download the log: {e}")))?;
    check_pull(tenant, &key, kept, log, now_ms(), &holder.url)
}

/// `audit pull`.
///
/// # Errors
/// A log that does not extend the last verified checkpoint (rolled back, forked, an entry
/// removed), naming the first broken point; or any failure to fetch it.
pub async fn pull(admin: &AdminArgs, state: &Path) -> anyhow::Result<()> {
    let (profile, output) = admin.load()?;
    let tenant = profile.tenant()?.to_owned();
    let holders: Vec<HolderRef> = profile.holders().cloned().collect();
    if holders.is_empty() {
        anyhow::bail!("the profile names no holders ([[trustees]], [holder]) to pull from");
    }
    let mut keys = Vec::new();
    for h in &holders {
        let Some(spec) = h.trustee_key.as_deref() else {
            anyhow::bail!(
                "holder {} has no trustee_key in the profile: audit pull verifies every log with the holder's public key, obtained out of band (its signing.pub). Add `trustee_key = \"...\"` under it",
                h.name
            );
        };
        keys.push(
            read_public_key(spec).with_context(|| format!("trustee_key of holder {}", h.name))?,
        );
    }
    let previous = read_state(state, &tenant)?;
    let first_run = previous.is_none();
    let mut next = previous.clone().unwrap_or_else(|| State {
        tenant: tenant.clone(),
        holders: BTreeMap::new(),
    });
    let dir = entries_dir(state);
    let mut report = PullReport {
        tenant: tenant.clone(),
        state: state.to_owned(),
        holders: Vec::new(),
        ok: true,
    };
    let results = futures::future::join_all(holders.iter().zip(&keys).map(|(h, key)| {
        let kept = previous.as_ref().and_then(|s| s.holders.get(&h.name));
        pull_one(&profile, &tenant, h, *key, kept)
    }))
    .await;
    for (h, result) in holders.iter().zip(results) {
        let kept = previous.as_ref().and_then(|s| s.holders.get(&h.name));
        match result {
            Ok((point, new)) => {
                append_entries(&dir, &h.name, &new)?;
                report.holders.push(HolderPull {
                    holder: h.name.clone(),
                    url: h.url.clone(),
                    ok: true,
                    from_seq: kept.map(|k| k.seq),
                    seq: point.seq,
                    new_entries: new.len(),
                    head: point.head.clone(),
                    checkpoint_time_ms: Some(point.checkpoint_time_ms),
                    error: None,
                });
                next.holders.insert(h.name.clone(), point);
            }
            Err(Broken(what)) => {
                report.ok = false;
                report.holders.push(HolderPull {
                    holder: h.name.clone(),
                    url: h.url.clone(),
                    ok: false,
                    from_seq: kept.map(|k| k.seq),
                    seq: kept.map_or(0, |k| k.seq),
                    new_entries: 0,
                    head: kept.map_or_else(|| GENESIS.to_owned(), |k| k.head.clone()),
                    checkpoint_time_ms: None,
                    error: Some(what),
                });
            }
        }
    }
    if previous.as_ref() != Some(&next) {
        let text = serde_json::to_vec_pretty(&next)?;
        write_atomically(state, &text)?;
    }
    output.emit(&report, |r| {
        for h in &r.holders {
            if h.ok {
                let from = match h.from_seq {
                    None => "first run: whole log".to_owned(),
                    Some(seq) => format!("from seq {seq}"),
                };
                println!(
                    "OK      {:<12} {}  {from}, {} new, verified up to seq {}",
                    h.holder, h.url, h.new_entries, h.seq
                );
            } else {
                println!(
                    "BROKEN  {:<12} {}  {}",
                    h.holder,
                    h.url,
                    h.error.as_deref().unwrap_or("")
                );
            }
        }
        if first_run && r.ok {
            println!(
                "state kept in {} (keep it for the next run)",
                r.state.display()
            );
        }
    })?;
    if !report.ok {
        let broken: Vec<String> = report
            .holders
            .iter()
            .filter(|h| !h.ok)
            .map(|h| {
                format!(
                    "{} ({}): {}",
                    h.holder,
                    h.url,
                    h.error.as_deref().unwrap_or("")
                )
            })
            .collect();
        anyhow::bail!(
            "audit pull FAILED for tenant {tenant}: {}. The state keeps the last verified point for these holders; investigate before trusting their logs",
            broken.join("; ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::sign::SigningKey;
    use crate::trustee::audit::{AuditEvent, Checkpoint, sign_head};

    fn chain(n: u64, key: &SigningKey) -> Vec<AuditEntry> {
        let mut prev = GENESIS.to_owned();
        let mut out = Vec::new();
        for seq in 1..=n {
            let mut e = AuditEntry {
                seq,
                time_ms: seq,
                tenant: "acme".into(),
                key_version: Some(1),
                actor: "proxy:p".into(),
                event: AuditEvent::Evaluate,
                justification: None,
                request_id: None,
                outcome: "ok".into(),
                grant: None,
                reason: None,
                object: None,
                object_id: None,
                detail: None,
                prev: prev.clone(),
                hash: String::new(),
                signature: None,
            };
            e.hash = e.compute_hash();
            sign_head(key, &mut e);
            prev = e.hash.clone();
            out.push(e);
        }
        out
    }

    fn log_from(entries: &[AuditEntry], from: u64, key: &SigningKey) -> AuditLog {
        let last = entries.last().unwrap();
        AuditLog {
            tenant: "acme".into(),
            trustee_key: hex::encode(key.public_key()),
            entries: entries.iter().filter(|e| e.seq >= from).cloned().collect(),
            checkpoint: Some(Checkpoint::sign(key, "acme", last.seq, &last.hash, 9)),
        }
    }

    fn kept(entries: &[AuditEntry], seq: u64, key: &SigningKey) -> HolderState {
        HolderState {
            url: "u".into(),
            trustee_key: hex::encode(key.public_key()),
            seq,
            head: entries[seq as usize - 1].hash.clone(),
            checkpoint_time_ms: 1,
            verified_ms: 1,
        }
    }

    #[test]
    fn a_log_that_grew_verifies_from_the_kept_point() {
        let key = SigningKey::from_seed(&[1; 32]).unwrap();
        let entries = chain(6, &key);
        let first = check_pull(
            "acme",
            &key.public_key(),
            None,
            log_from(&entries[..3], 1, &key),
            1,
            "u",
        )
        .unwrap();
        assert_eq!((first.0.seq, first.1.len()), (3, 3));
        let (point, new) = check_pull(
            "acme",
            &key.public_key(),
            Some(&first.0),
            log_from(&entries, 3, &key),
            2,
            "u",
        )
        .unwrap();
        assert_eq!((point.seq, new.len()), (6, 3));
        assert_eq!(point.head, entries[5].hash);
    }

    #[test]
    fn rollback_fork_and_removal_are_named() {
        let key = SigningKey::from_seed(&[1; 32]).unwrap();
        let pk = key.public_key();
        let entries = chain(6, &key);
        let at5 = kept(&entries, 5, &key);
        let err = check_pull(
            "acme",
            &pk,
            Some(&at5),
            log_from(&entries[..3], 5, &key),
            1,
            "u",
        )
        .unwrap_err();
        assert!(
            err.0.contains("rolled back from seq 5 to seq 3"),
            "{}",
            err.0
        );

        let other = SigningKey::from_seed(&[1; 32]).unwrap();
        let mut forked = chain(6, &other);
        forked[4].actor = "proxy:evil".into();
        forked[4].hash = forked[4].compute_hash();
        sign_head(&other, &mut forked[4]);
        let err = check_pull(
            "acme",
            &pk,
            Some(&at5),
            log_from(&forked[..5], 5, &key),
            1,
            "u",
        )
        .unwrap_err();
        assert!(err.0.contains("forked or rewritten at seq 5"), "{}", err.0);

        let at3 = kept(&entries, 3, &key);
        let mut gap = log_from(&entries, 3, &key);
        gap.entries.retain(|e| e.seq != 4);
        let err = check_pull("acme", &pk, Some(&at3), gap, 1, "u").unwrap_err();
        assert!(
            err.0.contains("seq 4") && err.0.contains("deleted"),
            "{}",
            err.0
        );

        let mut gone = log_from(&entries, 3, &key);
        gone.entries.retain(|e| e.seq != 3);
        let err = check_pull("acme", &pk, Some(&at3), gone, 1, "u").unwrap_err();
        assert!(
            err.0.contains("seq 3") && err.0.contains("removed"),
            "{}",
            err.0
        );
    }

    #[test]
    fn a_checkpoint_from_another_key_is_refused() {
        let key = SigningKey::from_seed(&[1; 32]).unwrap();
        let forger = SigningKey::from_seed(&[2; 32]).unwrap();
        let entries = chain(2, &key);
        let err = check_pull(
            "acme",
            &key.public_key(),
            None,
            log_from(&entries, 1, &forger),
            1,
            "u",
        )
        .unwrap_err();
        assert!(err.0.contains("checkpoint"), "{}", err.0);
    }
}
