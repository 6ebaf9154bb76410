//! The engine without HTTP: fail-closed behaviour when the audit log cannot be written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly on purpose

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use support::*;

use treuhand::crypto::seal::SealingKey;
use treuhand::crypto::sign::SigningKey;
use treuhand::tls::{PeerIdentity, Role};
use treuhand::trustee::Error;
use treuhand::trustee::audit::{AuditEntry, AuditEvent, verify_log};
use treuhand::trustee::policy::ManualClock;
use treuhand::trustee::service::{Options, Trustee};
use treuhand::trustee::store::{AuditReader, Mutation, Snapshot, SqliteStore, Store};
use treuhand::trustee::wire::{Justification, ReleaseRequest};

/// A store whose commits fail while `broken` is set (a full disk, a failed fsync).
struct FlakyStore {
    inner: SqliteStore,
    broken: Arc<AtomicBool>,
}

impl Store for FlakyStore {
    fn reader(&self) -> Result<Box<dyn AuditReader>, Error> {
        self.inner.reader()
    }
    fn load(&mut self) -> Result<Snapshot, Error> {
        self.inner.load()
    }
    fn commit(&mut self, batch: &[Mutation]) -> Result<(), Error> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(Error::Store("disk I/O error (simulated)".into()));
        }
        self.inner.commit(batch)
    }
    fn erase_freed(&mut self) -> Result<(), Error> {
        self.inner.erase_freed()
    }
    fn sign_legacy_heads(&mut self, heads: &[AuditEntry]) -> Result<(), Error> {
        self.inner.sign_legacy_heads(heads)
    }
}

fn identity(role: Role, name: &str) -> PeerIdentity {
    PeerIdentity {
        role,
        name: name.into(),
    }
}

#[tokio::test]
async fn release_fails_closed_when_the_audit_entry_cannot_be_committed() {
    let dir = tempfile::tempdir().unwrap();
    let broken = Arc::new(AtomicBool::new(false));
    let (metadata, shares) = new_tenant_key("acme", 1);
    let (trustee, public_key) = flaky_engine(dir.path(), broken.clone(), &metadata, &shares).await;
    let request = |id: &str| ReleaseRequest {
        justification: Justification::CustomerAccess,
        reason: String::new(),
        request_id: id.into(),
        object: None,
    };
    let proxy = identity(Role::Proxy, "proxy-1");

    broken.store(true, Ordering::SeqCst);
    let err = trustee
        .release(proxy.clone(), "acme".into(), 1, request("lost"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AuditUnavailable), "{err:?}");
    // Chained denials are fail-closed too: no answer without a durable entry.
    let legal = ReleaseRequest {
        justification: Justification::LegalRequest,
        ..request("x")
    };
    let err = trustee
        .release(proxy.clone(), "acme".into(), 1, legal)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AuditUnavailable), "{err:?}");
    // A caller that may not ask writes nothing, so its denial needs no commit.
    let err = trustee
        .release(
            identity(Role::Proxy, "proxy-2"),
            "acme".into(),
            1,
            request("y"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Denied(ref reason) if reason == "proxy_not_allowed"),
        "{err:?}"
    );

    broken.store(false, Ordering::SeqCst);
    let share = trustee
        .release(proxy, "acme".into(), 1, request("kept"))
        .await
        .unwrap();
    assert_eq!(share.x, 2);
    // The failed batch left no trace and no gap: the in-memory chain head was reloaded.
    let log = trustee
        .audit(identity(Role::Customer, "acme"), "acme".into())
        .await
        .unwrap();
    verify_log(&log, &public_key).unwrap();
    let ids: Vec<_> = log
        .entries
        .iter()
        .filter(|e| e.event == AuditEvent::Release || e.event == AuditEvent::Denial)
        .filter_map(|e| e.request_id.clone())
        .collect();
    assert_eq!(ids, vec!["kept".to_owned()]);
}

/// An engine over a store that fails while `broken` is set, with `acme`'s key (`metadata`,
/// `shares`) enrolled, allowing `proxy-1`; returns the engine and its public key.
async fn flaky_engine(
    dir: &std::path::Path,
    broken: Arc<AtomicBool>,
    metadata: &treuhand::crypto::shamir::KeyMetadata,
    shares: &[treuhand::secret::Share],
) -> (Trustee, [u8; 32]) {
    let store = FlakyStore {
        inner: SqliteStore::open(&dir.join("t.db")).unwrap(),
        broken,
    };
    let signing = SigningKey::from_seed(&[1; 32]).unwrap();
    let public_key = signing.public_key();
    let trustee = Trustee::start(
        Box::new(store),
        SealingKey::new(&[2; 32]).unwrap(),
        signing,
        Arc::new(ManualClock::new(START_MS)),
        Options::default(),
    )
    .unwrap();
    trustee
        .enroll(
            identity(Role::Customer, "acme"),
            "acme".into(),
            enroll_request(metadata, shares, &["proxy-1"]),
        )
        .await
        .unwrap();
    (trustee, public_key)
}

/// [`flaky_engine`] with a fresh OPRF key for `acme`; also returns the key's metadata and
/// shares.
async fn oprf_engine(
    dir: &std::path::Path,
    broken: Arc<AtomicBool>,
) -> (
    Trustee,
    [u8; 32],
    treuhand::crypto::shamir::KeyMetadata,
    Vec<treuhand::secret::Share>,
) {
    let (metadata, shares) = new_oprf_tenant_key("acme", 1, false);
    let (trustee, public_key) = flaky_engine(dir, broken, &metadata, &shares).await;
    (trustee, public_key, metadata, shares)
}

/// `count` evaluations of distinct objects, all submitted at once (so group commits hold
/// several of them), each with its request and result.
async fn concurrent_evaluations(
    trustee: &Trustee,
    count: u8,
) -> Vec<(
    treuhand::trustee::wire::EvaluateRequest,
    Result<treuhand::trustee::wire::EvaluateResponse, Error>,
)> {
    let mut tasks = Vec::new();
    for i in 0..count {
        let request = evaluate_request(&format!("e-{i}"), "photos", &format!("{i}.jpg"), [i; 32]);
        let trustee = trustee.clone();
        tasks.push(tokio::spawn(async move {
            let result = trustee
                .evaluate(
                    identity(Role::Proxy, "proxy-1"),
                    "acme".into(),
                    1,
                    request.clone(),
                )
                .await;
            (request, result)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_evaluations_are_each_answered_with_their_own_durable_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (trustee, public_key, metadata, shares) =
        oprf_engine(dir.path(), Arc::new(AtomicBool::new(false))).await;
    let results = concurrent_evaluations(&trustee, 48).await;
    let log = trustee
        .audit(identity(Role::Customer, "acme"), "acme".into())
        .await
        .unwrap();
    verify_log(&log, &public_key).unwrap();
    let mut seqs = std::collections::BTreeSet::new();
    for (request, result) in results {
        let response = result.unwrap();
        // The answer names its own entry, which records this request and object.
        let entry = &log.entries[usize::try_from(response.audit_seq).unwrap() - 1];
        assert_eq!(entry.seq, response.audit_seq);
        assert_eq!(entry.event, AuditEvent::Evaluate);
        assert_eq!(
            entry.request_id.as_deref(),
            Some(request.request_id.as_str())
        );
        assert_eq!(entry.outcome, "ok");
        assert!(
            seqs.insert(response.audit_seq),
            "seq {} twice",
            response.audit_seq
        );
        // And the answer is a correct evaluation for this object.
        use base64::Engine as _;
        let decode = |text: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap()
        };
        let answer = treuhand::crypto::oprf::Evaluation::from_bytes(
            &decode(&response.element),
            &decode(&response.proof),
        )
        .unwrap();
        let identity = identity_of("acme", &request);
        combine_with_customer(&metadata, &shares, &identity, answer);
    }
    assert_eq!(seqs.len(), 48);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluations_fail_closed_when_their_batch_cannot_be_committed() {
    let dir = tempfile::tempdir().unwrap();
    let broken = Arc::new(AtomicBool::new(false));
    let (trustee, public_key, _, _) = oprf_engine(dir.path(), broken.clone()).await;
    broken.store(true, Ordering::SeqCst);
    // Every evaluation of every failed batch is refused: the share was opened and the answer
    // computed during the commit, but nothing is answered without the entry.
    for (request, result) in concurrent_evaluations(&trustee, 24).await {
        let err = result.unwrap_err();
        assert!(
            matches!(err, Error::AuditUnavailable),
            "{}: {err:?}",
            request.request_id
        );
    }
    broken.store(false, Ordering::SeqCst);
    let kept = evaluate_request("kept", "photos", "kept.jpg", [99; 32]);
    let response = trustee
        .evaluate(identity(Role::Proxy, "proxy-1"), "acme".into(), 1, kept)
        .await
        .unwrap();
    let log = trustee
        .audit(identity(Role::Customer, "acme"), "acme".into())
        .await
        .unwrap();
    verify_log(&log, &public_key).unwrap();
    let evaluations: Vec<_> = log
        .entries
        .iter()
        .filter(|e| e.event == AuditEvent::Evaluate)
        .collect();
    assert_eq!(evaluations.len(), 1, "{evaluations:#?}");
    assert_eq!(evaluations[0].request_id.as_deref(), Some("kept"));
    assert_eq!(evaluations[0].seq, response.audit_seq);
}
