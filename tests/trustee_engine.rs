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
    let store = FlakyStore {
        inner: SqliteStore::open(&dir.path().join("t.db")).unwrap(),
        broken: broken.clone(),
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
    let (metadata, shares) = new_tenant_key("acme", 1);
    let enroll = enroll_request(&metadata, &shares, &["proxy-1"]);
    trustee
        .enroll(identity(Role::Customer, "acme"), "acme".into(), enroll)
        .await
        .unwrap();
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
