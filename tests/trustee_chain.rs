//! The trustee's audit chain under attack: callers that may not ask cannot write into another
//! tenant's chain, denial floods do not grow the store, and a store edited by hand (entries
//! removed, hashes recomputed) no longer verifies, because every head is signed as it is
//! appended. Real TLS on 127.0.0.1:0; time is a manual clock; nothing asserts timings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly on purpose

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::*;

use treuhand::tls::Role;
use treuhand::trustee::Error;
use treuhand::trustee::audit::{
    AuditEntry, AuditEvent, AuditLog, Checkpoint, GENESIS, verify_head, verify_log,
};
use treuhand::trustee::config::load_signing_key;
use treuhand::trustee::policy::ManualClock;
use treuhand::trustee::server::Server;
use treuhand::trustee::wire::{Justification, ReleaseRequest, ShredRequest};

/// Free text that only a caller allowed to ask may put into a chain.
const INJECTED: &str = "INJECTED-free-text-from-a-caller-that-may-not-ask";

fn request(justification: Justification, request_id: &str, reason: &str) -> ReleaseRequest {
    ReleaseRequest {
        justification,
        reason: reason.into(),
        request_id: request_id.into(),
        object: None,
    }
}

fn denied_reason(result: Result<treuhand::secret::Share, Error>) -> String {
    match result {
        Err(Error::Denied(reason)) => reason.to_string(),
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn file_contains(path: &Path, needle: &[u8]) -> bool {
    match std::fs::read(path) {
        Ok(bytes) => bytes.windows(needle.len()).any(|w| w == needle),
        Err(_) => false,
    }
}

fn open_db(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    // The stopped trustee's background checkpointer may still hold the lock for a moment.
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

fn stored_entries(path: &Path, tenant: &str) -> Vec<AuditEntry> {
    let conn = open_db(path);
    let mut stmt = conn
        .prepare("SELECT entry FROM audit WHERE tenant = ?1 ORDER BY seq")
        .unwrap();
    stmt.query_map([tenant], |row| row.get::<_, String>(0))
        .unwrap()
        .map(|json| serde_json::from_str(&json.unwrap()).unwrap())
        .collect()
}

fn replace_chain(path: &Path, tenant: &str, entries: &[AuditEntry]) {
    let mut conn = open_db(path);
    let tx = conn.transaction().unwrap();
    tx.execute("DELETE FROM audit WHERE tenant = ?1", [tenant])
        .unwrap();
    for entry in entries {
        tx.execute(
            "INSERT INTO audit (tenant, seq, entry) VALUES (?1, ?2, ?3)",
            rusqlite::params![
                entry.tenant,
                entry.seq as i64,
                serde_json::to_string(entry).unwrap()
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// What an editor without the signing key can do: renumber and relink every entry after an
/// edit, so that every `seq`, `prev` and `hash` holds again.
fn relink(entries: &mut [AuditEntry]) {
    let mut prev = GENESIS.to_owned();
    for (index, entry) in entries.iter_mut().enumerate() {
        entry.seq = index as u64 + 1;
        entry.prev = prev;
        entry.hash = entry.compute_hash();
        prev = entry.hash.clone();
    }
}

/// Acme enrolled (proxy-a allowed) with four releases, each in its own group commit.
async fn acme_with_releases(harness: &Harness) {
    let customer_access = |id: &str| request(Justification::CustomerAccess, id, "GET");
    enroll_with_releases(harness, "proxy-a", customer_access).await;
}

/// A stopped trustee whose store holds acme's chain with four releases: its directory, CA and
/// configuration, to edit the store and start another trustee on it.
async fn stopped_with_acme_releases() -> (
    tempfile::TempDir,
    treuhand::tls::DevCa,
    treuhand::trustee::config::Config,
) {
    let harness = Harness::start().await;
    acme_with_releases(&harness).await;
    harness.stop_and_keep().await
}

/// Verifies `entries` of `acme` as a customer would, with a genuine checkpoint over their head
/// signed by the trustee's own key; returns that log and the break verifying it must find.
fn checkpointed_log_break(
    config: &treuhand::trustee::config::Config,
    entries: Vec<treuhand::trustee::audit::AuditEntry>,
) -> (AuditLog, treuhand::trustee::audit::BrokenLink) {
    let signing = load_signing_key(&config.keys.signing_key).unwrap();
    let head = entries.last().unwrap().clone();
    let checkpoint = Checkpoint::sign(&signing, "acme", head.seq, &head.hash, START_MS);
    let log = AuditLog {
        tenant: "acme".into(),
        trustee_key: hex::encode(signing.public_key()),
        entries,
        checkpoint: Some(checkpoint),
    };
    let broken = verify_log(&log, &signing.public_key()).unwrap_err();
    (log, broken)
}

#[tokio::test]
async fn callers_that_may_not_ask_cannot_add_anything_to_another_tenants_chain() {
    let harness = Harness::start().await;
    enroll(&harness, "acme", &["proxy-a"]).await;
    enroll(&harness, "globex", &["proxy-g"]).await;
    let acme_admin = harness.client(Role::Customer, "acme");
    let globex_admin = harness.client(Role::Customer, "globex");
    let acme_before = acme_admin.audit("acme").await.unwrap().entries.len();
    let globex_before = globex_admin.audit("globex").await.unwrap().entries.len();

    // Every certificate holder that may not ask for acme's share: another tenant's admin,
    // acme's own admin (customers never ask for releases), an operator, and a proxy that is
    // allowed for globex but not for acme.
    let strangers = [
        (Role::Customer, "globex", "wrong_role"),
        (Role::Customer, "acme", "wrong_role"),
        (Role::Operator, "ops", "wrong_role"),
        (Role::Proxy, "proxy-g", "proxy_not_allowed"),
    ];
    let justifications = [
        Justification::CustomerAccess,
        Justification::OperatorMaintenance,
        Justification::LegalRequest,
    ];
    let ask_all = |round: &'static str| {
        let harness = &harness;
        async move {
            for (role, name, code) in strangers {
                let client = harness.client(role, name);
                for justification in justifications {
                    let id = format!("stranger-{round}-{name}");
                    let reason = denied_reason(
                        client
                            .release("acme", 1, &request(justification, &id, INJECTED))
                            .await,
                    );
                    assert_eq!(reason, code, "{round}: {role:?} {name}");
                }
            }
        }
    };
    ask_all("plain").await;
    // A suspended tenant: a listed proxy would get tenant_suspended (chained); strangers still
    // get their own denial and write nothing.
    let mut policy = acme_admin.policy("acme").await.unwrap();
    policy.suspended = true;
    acme_admin.set_policy("acme", &policy).await.unwrap();
    ask_all("suspended").await;
    policy.suspended = false;
    acme_admin.set_policy("acme", &policy).await.unwrap();

    // The listed proxy's own denial is still a durable fact, with its reason.
    let allowed = harness.client(Role::Proxy, "proxy-a");
    assert_eq!(
        denied_reason(
            allowed
                .release(
                    "acme",
                    1,
                    &request(Justification::LegalRequest, "listed-1", "court order 17")
                )
                .await
        ),
        "justification_not_allowed"
    );

    // After a shred, strangers are refused before the shred is even looked at.
    acme_admin
        .shred("acme", 1, &ShredRequest::default())
        .await
        .unwrap();
    ask_all("shredded").await;

    let acme = acme_admin.audit("acme").await.unwrap();
    verify_log(&acme, &harness.public_key).unwrap();
    let added: Vec<(AuditEvent, &str)> = acme.entries[acme_before..]
        .iter()
        .map(|e| (e.event, e.actor.as_str()))
        .collect();
    assert_eq!(
        added,
        vec![
            (AuditEvent::PolicySet, "customer:acme"),
            (AuditEvent::PolicySet, "customer:acme"),
            (AuditEvent::Denial, "proxy:proxy-a"),
            (AuditEvent::Shred, "customer:acme"),
        ]
    );
    let listed = &acme.entries[acme_before + 2];
    assert_eq!(listed.reason.as_deref(), Some("court order 17"));
    let globex = globex_admin.audit("globex").await.unwrap();
    assert_eq!(globex.entries.len(), globex_before);
    for log in [&acme, &globex] {
        let text = serde_json::to_string(log).unwrap();
        assert!(
            !text.contains(INJECTED),
            "free text in {}'s log",
            log.tenant
        );
        assert!(
            !text.contains("stranger-"),
            "request id in {}'s log",
            log.tenant
        );
    }
    let (dir, _, config) = harness.stop_and_keep().await;
    let store = config.store.path.clone();
    for file in [
        store.clone(),
        store.with_extension("db-wal"),
        store.with_extension("db-shm"),
    ] {
        assert!(
            !file_contains(&file, INJECTED.as_bytes()),
            "free text in {}",
            file.display()
        );
    }
    drop(dir);
}

#[tokio::test]
async fn denials_beyond_the_per_caller_limit_are_answered_but_not_stored() {
    let harness = Harness::start_with(|config| {
        config.limits.denial_log_per_second = 1;
        config.limits.denial_log_burst = 5;
    })
    .await;
    enroll(&harness, "acme", &["proxy-a", "proxy-b"]).await;
    let admin = harness.client(Role::Customer, "acme");
    let before = admin.audit("acme").await.unwrap().entries.len();
    let flood = harness.client(Role::Proxy, "proxy-a");
    let legal = |id: String| request(Justification::LegalRequest, &id, "flood");
    // Every denial is answered, with its real reason, whether it is chained or not.
    for i in 0..25 {
        assert_eq!(
            denied_reason(flood.release("acme", 1, &legal(format!("f-{i}"))).await),
            "justification_not_allowed"
        );
    }
    // The limit is per caller: another proxy's denial is still chained.
    let other = harness.client(Role::Proxy, "proxy-b");
    assert_eq!(
        denied_reason(other.release("acme", 1, &legal("b-1".into())).await),
        "justification_not_allowed"
    );
    let denials_by = |log: &AuditLog, actor: &str| {
        log.entries
            .iter()
            .filter(|e| e.event == AuditEvent::Denial && e.actor == actor)
            .count()
    };
    let log = admin.audit("acme").await.unwrap();
    verify_log(&log, &harness.public_key).unwrap();
    assert_eq!(denials_by(&log, "proxy:proxy-a"), 5);
    assert_eq!(denials_by(&log, "proxy:proxy-b"), 1);
    assert_eq!(log.entries.len(), before + 6);

    // Once the budget refills, the next chained denial says how many were not chained.
    harness.clock.advance(Duration::from_secs(1));
    assert_eq!(
        denied_reason(flood.release("acme", 1, &legal("f-late".into())).await),
        "justification_not_allowed"
    );
    let log = admin.audit("acme").await.unwrap();
    verify_log(&log, &harness.public_key).unwrap();
    let last = log.entries.last().unwrap();
    assert_eq!(last.request_id.as_deref(), Some("f-late"));
    let detail = last.detail.as_deref().unwrap_or_default();
    assert!(detail.contains("20 earlier denials"), "{detail}");
    harness.stop().await;
}

#[tokio::test]
async fn a_store_with_an_entry_deleted_and_the_hashes_recomputed_fails_verification() {
    let (dir, _ca, config) = stopped_with_acme_releases().await;
    let store = config.store.path.clone();

    let mut entries = stored_entries(&store, "acme");
    assert_eq!(entries.len(), 6); // deposit, policy, 4 releases
    // Drop the first release and make every seq, prev and hash hold again.
    assert_eq!(entries[2].event, AuditEvent::Release);
    entries.remove(2);
    relink(&mut entries);
    replace_chain(&store, "acme", &entries);

    // The engine-side check: a trustee refuses to start on (and so to extend or vouch for) a
    // chain whose head signature no longer matches.
    let err = Server::from_config(&config, Arc::new(ManualClock::new(START_MS))).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("acme"), "{message}");
    assert!(message.contains("seq 5"), "{message}");

    // The customer's check: even with a genuine checkpoint over the new head (what a trustee
    // that only checked links signed before), `verify_log` names the first rewritten entry.
    let (log, err) = checkpointed_log_break(&config, entries);
    assert_eq!(err.index, Some(2), "{err}");
    assert!(
        err.what.contains("entry #3") && err.what.contains("signature"),
        "{err}"
    );
    // The CLI says the same and exits non-zero.
    let file = dir.path().join("edited.json");
    std::fs::write(&file, serde_json::to_vec(&log).unwrap()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_treuhand"))
        .args(["audit", "verify", "--log"])
        .arg(&file)
        .arg("--trustee-key")
        .arg(dir.path().join("signing.pub"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("entry #3"), "{stderr}");
}

#[tokio::test]
async fn an_untouched_store_verifies_after_a_restart_and_its_chain_goes_on() {
    let (dir, ca, config) = stopped_with_acme_releases().await;
    // Each release was its own group commit, so each is a signed head.
    let stored = stored_entries(&config.store.path, "acme");
    let signing = load_signing_key(&config.keys.signing_key).unwrap();
    for entry in &stored[2..] {
        assert!(
            verify_head(&signing.public_key(), entry),
            "seq {} is not a signed head",
            entry.seq
        );
    }

    let harness = Harness::launch(dir, ca, config).await;
    harness
        .client(Role::Proxy, "proxy-a")
        .release(
            "acme",
            1,
            &request(Justification::CustomerAccess, "after-restart", "GET"),
        )
        .await
        .unwrap();
    let log = harness
        .client(Role::Customer, "acme")
        .audit("acme")
        .await
        .unwrap();
    let summary = verify_log(&log, &harness.public_key).unwrap();
    assert_eq!(summary.entries, 7);
    assert_eq!(summary.releases, 5);
    harness.stop().await;
}

#[tokio::test]
async fn stripping_the_head_signatures_after_an_edit_does_not_help() {
    let (_dir, _ca, config) = stopped_with_acme_releases().await;
    let store = config.store.path.clone();
    let mut entries = stored_entries(&store, "acme");
    entries.remove(3);
    for entry in &mut entries {
        entry.signature = None;
    }
    relink(&mut entries);
    replace_chain(&store, "acme", &entries);

    let err = Server::from_config(&config, Arc::new(ManualClock::new(START_MS))).unwrap_err();
    assert!(err.to_string().contains("seq 5"), "{err}");
    let (_, err) = checkpointed_log_break(&config, entries);
    assert_eq!(err.index, Some(4), "{err}");
    assert!(err.what.contains("no head signature"), "{err}");
}

fn run_cli(args: &[&str], config: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_treuhand"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_store_from_before_head_signatures_is_refused_until_migrated_once() {
    let harness = Harness::start().await;
    acme_with_releases(&harness).await;
    enroll(&harness, "globex", &["proxy-g"]).await;
    let (dir, ca, config) = harness.stop_and_keep().await;
    let store = config.store.path.clone();
    // What an older treuhand left: the same chains without head signatures, user_version 0.
    for tenant in ["acme", "globex"] {
        let mut entries = stored_entries(&store, tenant);
        for entry in &mut entries {
            entry.signature = None;
        }
        replace_chain(&store, tenant, &entries);
    }
    open_db(&store)
        .pragma_update(None, "user_version", 0)
        .unwrap();
    let config_file = dir.path().join("trustee.toml");
    std::fs::write(&config_file, toml::to_string(&config).unwrap()).unwrap();

    let err = Server::from_config(&config, Arc::new(ManualClock::new(START_MS))).unwrap_err();
    assert!(err.to_string().contains("migrate-audit"), "{err}");

    // A chain whose links are broken is not signed: nothing is.
    let intact = stored_entries(&store, "acme");
    let mut broken = intact.clone();
    broken[1].actor = "customer:someone-else".into();
    replace_chain(&store, "acme", &broken);
    let output = run_cli(&["trustee", "migrate-audit"], &config_file);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("acme") && stderr.contains("entry #2"),
        "{stderr}"
    );
    replace_chain(&store, "acme", &intact);

    let output = run_cli(&["trustee", "migrate-audit"], &config_file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("signed the heads of 2 audit chains"),
        "{stdout}"
    );
    let output = run_cli(&["trustee", "migrate-audit"], &config_file);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("nothing to do"));

    let harness = Harness::launch(dir, ca, config).await;
    for tenant in ["acme", "globex"] {
        let log = harness
            .client(Role::Customer, tenant)
            .audit(tenant)
            .await
            .unwrap();
        verify_log(&log, &harness.public_key).unwrap();
    }
    harness.stop().await;
}
