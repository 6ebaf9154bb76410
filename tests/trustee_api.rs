//! Trustee service end to end: real TLS on 127.0.0.1:0, certificates from the dev CA, the real
//! client. Time is a manual clock; nothing sleeps and nothing asserts timings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly on purpose

mod support;

use std::time::Duration;
use support::*;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use treuhand::crypto::shamir;
use treuhand::tls::{DevCa, Role};
use treuhand::trustee::Error;
use treuhand::trustee::audit::{AuditEvent, Checkpoint, verify_log, verify_receipt};
use treuhand::trustee::client::TrusteeClient;
use treuhand::trustee::policy::{Policy, RateLimit};
use treuhand::trustee::wire::{
    EnrollRequest, ErrorBody, GrantRequest, GrantScope, GrantState, Justification, ObjectRef,
    ReleaseRequest, ShredRequest,
};

fn release_request(justification: Justification, request_id: &str) -> ReleaseRequest {
    ReleaseRequest {
        justification,
        reason: "GET s3://photos/cat.jpg".into(),
        request_id: request_id.into(),
        object: Some(ObjectRef {
            bucket: "photos".into(),
            key: "cat.jpg".into(),
        }),
    }
}

fn denied_reason(result: Result<treuhand::secret::Share, Error>) -> String {
    match result {
        Err(Error::Denied(reason)) => reason.to_string(),
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test]
async fn client_without_certificate_is_refused_at_the_tls_layer() {
    let harness = Harness::start().await;
    let tls = treuhand::tls::client_config(&harness.dir.path().join("ca.pem"), None).unwrap();
    let client = TrusteeClient::new(&harness.url, tls).unwrap();
    let err = client.health().await.unwrap_err();
    assert!(matches!(err, Error::Unreachable(_)), "{err:?}");
    assert!(err.to_string().contains("CertificateRequired"), "{err}");
    harness.stop().await;
}

#[tokio::test]
async fn client_with_certificate_from_unknown_ca_is_refused_at_the_tls_layer() {
    let harness = Harness::start().await;
    let rogue_dir = tempfile::tempdir().unwrap();
    let rogue = DevCa::generate("rogue ca").unwrap();
    let (cert, key) = rogue
        .issue_client(Role::Proxy, "proxy-1")
        .unwrap()
        .write(rogue_dir.path(), "rogue")
        .unwrap();
    // Trusts the real server CA, but presents a certificate the trustee's CA never issued.
    let tls = treuhand::tls::client_config(&harness.dir.path().join("ca.pem"), Some((&cert, &key)))
        .unwrap();
    let client = TrusteeClient::new(&harness.url, tls).unwrap();
    let err = client.health().await.unwrap_err();
    assert!(matches!(err, Error::Unreachable(_)), "{err:?}");
    assert!(
        err.to_string().contains("UnknownCA") || err.to_string().contains("BadCertificate"),
        "{err}"
    );
    // The real CA's client works.
    harness
        .client(Role::Proxy, "proxy-1")
        .health()
        .await
        .unwrap();
    harness.stop().await;
}

#[tokio::test]
async fn allowed_proxy_gets_its_share_and_unlisted_proxy_is_denied() {
    let harness = Harness::start().await;
    let (metadata, shares) = enroll(&harness, "acme", &["proxy-1"]).await;
    let share = harness
        .client(Role::Proxy, "proxy-1")
        .release(
            "acme",
            1,
            &release_request(Justification::CustomerAccess, "r-1"),
        )
        .await
        .unwrap();
    assert_eq!(share, shares[1]);
    let tmk = shamir::combine(&metadata, &[&shares[0], &share]).unwrap();
    drop(tmk);

    let other = harness.client(Role::Proxy, "proxy-2");
    let reason = denied_reason(
        other
            .release(
                "acme",
                1,
                &release_request(Justification::CustomerAccess, "r-2"),
            )
            .await,
    );
    assert_eq!(reason, "proxy_not_allowed");
    // A customer certificate cannot ask for releases, even for its own tenant.
    let customer = harness.client(Role::Customer, "acme");
    let reason = denied_reason(
        customer
            .release(
                "acme",
                1,
                &release_request(Justification::CustomerAccess, "r-3"),
            )
            .await,
    );
    assert_eq!(reason, "wrong_role");
    // Legal requests are not allowed by the default justification list.
    let proxy = harness.client(Role::Proxy, "proxy-1");
    let reason = denied_reason(
        proxy
            .release(
                "acme",
                1,
                &release_request(Justification::LegalRequest, "r-4"),
            )
            .await,
    );
    assert_eq!(reason, "justification_not_allowed");

    let log = customer.audit("acme").await.unwrap();
    let summary = verify_log(&log, &harness.public_key).unwrap();
    assert_eq!(summary.releases, 1);
    // Only the listed proxy's denial is chained: proxy-2 and the customer may not ask, so
    // nothing of theirs enters acme's chain (tests/trustee_chain.rs has the details).
    assert_eq!(summary.denials, 1);
    let release = log
        .entries
        .iter()
        .find(|e| e.event == AuditEvent::Release)
        .unwrap();
    assert_eq!(release.actor, "proxy:proxy-1");
    assert_eq!(release.request_id.as_deref(), Some("r-1"));
    assert_eq!(
        release.object.as_ref().map(|o| o.key.as_str()),
        Some("cat.jpg")
    );
    // No secret material in the log.
    let text = serde_json::to_string(&log).unwrap();
    assert!(!text.contains(&base64_of(&shares[1])));
    assert!(!text.contains(&hex::encode(shares[1].expose_secret())));
    harness.stop().await;
}

fn base64_of(share: &treuhand::secret::Share) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(share.expose_secret())
}

#[tokio::test]
async fn suspended_tenant_is_denied_and_resume_restores_access() {
    let harness = Harness::start().await;
    enroll(&harness, "acme", &["proxy-1"]).await;
    let customer = harness.client(Role::Customer, "acme");
    let proxy = harness.client(Role::Proxy, "proxy-1");
    let mut policy = customer.policy("acme").await.unwrap();
    policy.suspended = true;
    customer.set_policy("acme", &policy).await.unwrap();
    let reason = denied_reason(
        proxy
            .release(
                "acme",
                1,
                &release_request(Justification::CustomerAccess, "r-1"),
            )
            .await,
    );
    assert_eq!(reason, "tenant_suspended");
    policy.suspended = false;
    customer.set_policy("acme", &policy).await.unwrap();
    proxy
        .release(
            "acme",
            1,
            &release_request(Justification::CustomerAccess, "r-2"),
        )
        .await
        .unwrap();
    // Another tenant's admin cannot change acme's policy.
    enroll(&harness, "globex", &[]).await;
    let err = harness
        .client(Role::Customer, "globex")
        .set_policy("acme", &policy)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Denied(ref reason) if reason == "not_tenant_admin"),
        "{err:?}"
    );
    harness.stop().await;
}

#[tokio::test]
async fn maintenance_release_needs_a_live_grant() {
    let harness = Harness::start().await;
    enroll(&harness, "acme", &["proxy-1"]).await;
    let proxy = harness.client(Role::Proxy, "proxy-1");
    let operator = harness.client(Role::Operator, "ops-alice");
    let customer = harness.client(Role::Customer, "acme");
    let maintenance = |id: &str| release_request(Justification::OperatorMaintenance, id);

    let reason = denied_reason(proxy.release("acme", 1, &maintenance("m-1")).await);
    assert_eq!(reason, "no_emergency_grant");

    let request = GrantRequest {
        ticket: "INC-4711".into(),
        scope: GrantScope {
            key_version: Some(1),
        },
        duration_secs: 2 * 3600,
        reason: "restore after disk failure".into(),
    };
    let grant = operator.request_grant("acme", &request).await.unwrap();
    assert_eq!(grant.state, GrantState::Pending);
    // Filed but not approved: still denied.
    assert_eq!(
        denied_reason(proxy.release("acme", 1, &maintenance("m-2")).await),
        "no_emergency_grant"
    );
    // Only the tenant's admin approves; the operator cannot approve its own grant.
    let err = operator.approve_grant("acme", &grant.id).await.unwrap_err();
    assert!(matches!(err, Error::Denied(_)), "{err:?}");
    let approved = customer.approve_grant("acme", &grant.id).await.unwrap();
    assert_eq!(approved.state, GrantState::Approved);

    harness.clock.advance(Duration::from_secs(3600));
    proxy.release("acme", 1, &maintenance("m-3")).await.unwrap();
    // The grant does not make customer_access special, and does not cover other tenants.
    harness.clock.advance(Duration::from_secs(3600));
    // Exactly at expiry the grant is no longer live.
    assert_eq!(
        denied_reason(proxy.release("acme", 1, &maintenance("m-4")).await),
        "no_emergency_grant"
    );

    let grants = operator.grants("acme").await.unwrap();
    assert_eq!(grants[0].state, GrantState::Expired);
    let log = customer.audit("acme").await.unwrap();
    verify_log(&log, &harness.public_key).unwrap();
    let under_grant: Vec<_> = log
        .entries
        .iter()
        .filter(|e| e.event == AuditEvent::Release)
        .collect();
    assert_eq!(under_grant.len(), 1);
    assert_eq!(under_grant[0].grant.as_deref(), Some(grant.id.as_str()));
    assert_eq!(under_grant[0].request_id.as_deref(), Some("m-3"));
    let events: Vec<AuditEvent> = log.entries.iter().map(|e| e.event).collect();
    for wanted in [
        AuditEvent::GrantRequested,
        AuditEvent::GrantApproved,
        AuditEvent::GrantExpired,
    ] {
        assert!(
            events.contains(&wanted),
            "{wanted:?} missing from {events:?}"
        );
    }
    harness.stop().await;
}

#[tokio::test]
async fn rate_limit_denies_beyond_the_burst_until_time_passes() {
    let harness = Harness::start().await;
    enroll(&harness, "acme", &["proxy-1"]).await;
    let customer = harness.client(Role::Customer, "acme");
    let policy = Policy {
        rate_limit: RateLimit {
            per_second: 1,
            burst: 2,
        },
        ..policy_allowing(&["proxy-1"])
    };
    customer.set_policy("acme", &policy).await.unwrap();
    let proxy = harness.client(Role::Proxy, "proxy-1");
    let request = release_request(Justification::CustomerAccess, "r");
    proxy.release("acme", 1, &request).await.unwrap();
    proxy.release("acme", 1, &request).await.unwrap();
    assert_eq!(
        denied_reason(proxy.release("acme", 1, &request).await),
        "rate_limited"
    );
    harness.clock.advance(Duration::from_secs(1));
    proxy.release("acme", 1, &request).await.unwrap();
    harness.stop().await;
}

fn file_contains(path: &std::path::Path, needle: &[u8]) -> bool {
    match std::fs::read(path) {
        Ok(bytes) => bytes.windows(needle.len()).any(|w| w == needle),
        Err(_) => false,
    }
}

#[tokio::test]
async fn shredded_tenant_answers_410_and_the_share_bytes_leave_the_store_file() {
    let harness = Harness::start().await;
    let (metadata, _) = enroll(&harness, "acme", &["proxy-1"]).await;
    let proxy = harness.client(Role::Proxy, "proxy-1");
    proxy
        .release(
            "acme",
            1,
            &release_request(Justification::CustomerAccess, "r-1"),
        )
        .await
        .unwrap();

    let store = harness.store_path();
    let sealed = {
        let conn = rusqlite::Connection::open(&store).unwrap();
        treuhand::trustee::store::sealed_share(&conn, "acme", 1)
            .unwrap()
            .unwrap()
    };
    let wal = store.with_extension("db-wal");
    assert!(
        file_contains(&store, &sealed) || file_contains(&wal, &sealed),
        "the sealed share should be on disk"
    );

    let customer = harness.client(Role::Customer, "acme");
    let receipt = customer
        .shred(
            "acme",
            1,
            &ShredRequest {
                request_id: Some("shred-1".into()),
            },
        )
        .await
        .unwrap();
    assert!(verify_receipt(&harness.public_key, &receipt));
    assert_eq!(
        receipt.share_fingerprint,
        metadata.holder("trustee").unwrap().fingerprint
    );

    let err = proxy
        .release(
            "acme",
            1,
            &release_request(Justification::CustomerAccess, "r-2"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Shredded), "{err:?}");
    let err = customer
        .shred("acme", 1, &ShredRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Shredded), "{err:?}");

    for file in [&store, &wal, &store.with_extension("db-shm")] {
        assert!(
            !file_contains(file, &sealed),
            "sealed share bytes still in {}",
            file.display()
        );
        assert!(
            !file_contains(file, &sealed[12..28]),
            "sealed share ciphertext still in {}",
            file.display()
        );
    }
    let log = customer.audit("acme").await.unwrap();
    verify_log(&log, &harness.public_key).unwrap();
    let shred = log
        .entries
        .iter()
        .find(|e| e.event == AuditEvent::Shred)
        .unwrap();
    assert_eq!(shred.seq, receipt.audit_seq);
    assert_eq!(shred.hash, receipt.audit_hash);
    harness.stop().await;
}

async fn downloaded_log(harness: &Harness) -> treuhand::trustee::audit::AuditLog {
    let customer_access = |id: &str| release_request(Justification::CustomerAccess, id);
    enroll_with_releases(harness, "proxy-1", customer_access).await;
    harness
        .client(Role::Customer, "acme")
        .audit("acme")
        .await
        .unwrap()
}

#[tokio::test]
async fn audit_verify_catches_edit_deletion_reordering_and_forged_checkpoint() {
    let harness = Harness::start().await;
    let log = downloaded_log(&harness).await;
    let key = harness.public_key;
    let summary = verify_log(&log, &key).unwrap();
    assert_eq!(summary.entries, 6); // deposit, policy, 4 releases

    let mut edited = log.clone();
    edited.entries[3].actor = "proxy:someone-else".into();
    let err = verify_log(&edited, &key).unwrap_err();
    assert_eq!(err.index, Some(3));
    assert!(
        err.what.contains("entry #4") && err.what.contains("edited"),
        "{err}"
    );

    let mut deleted = log.clone();
    deleted.entries.remove(2);
    let err = verify_log(&deleted, &key).unwrap_err();
    assert_eq!(err.index, Some(2));
    assert!(err.what.contains("deleted"), "{err}");

    let mut reordered = log.clone();
    reordered.entries.swap(3, 4);
    let err = verify_log(&reordered, &key).unwrap_err();
    assert_eq!(err.index, Some(3));

    // Reordered and renumbered: the prev link catches it.
    let mut renumbered = log.clone();
    renumbered.entries.swap(3, 4);
    renumbered.entries[3].seq = 4;
    renumbered.entries[4].seq = 5;
    let err = verify_log(&renumbered, &key).unwrap_err();
    assert_eq!(err.index, Some(3));

    // A checkpoint signed by someone else.
    let mut forged = log.clone();
    let forger = treuhand::crypto::sign::SigningKey::from_seed(&[42; 32]).unwrap();
    let last = forged.entries.last().unwrap().clone();
    forged.checkpoint = Some(Checkpoint::sign(&forger, "acme", last.seq, &last.hash, 1));
    let err = verify_log(&forged, &key).unwrap_err();
    assert_eq!(err.index, None);
    assert!(err.what.contains("signature"), "{err}");

    // A genuine checkpoint whose covered seq was altered.
    let mut altered = log.clone();
    if let Some(checkpoint) = altered.checkpoint.as_mut() {
        checkpoint.seq -= 1;
    }
    assert!(verify_log(&altered, &key).is_err());

    // Cutting off the tail: the checkpoint no longer matches.
    let mut truncated = log.clone();
    truncated.entries.pop();
    let err = verify_log(&truncated, &key).unwrap_err();
    assert_eq!(err.index, None);

    // The CLI says the same and exits non-zero.
    let dir = harness.dir.path();
    let good = dir.join("audit.json");
    let bad = dir.join("audit-edited.json");
    std::fs::write(&good, serde_json::to_vec(&log).unwrap()).unwrap();
    std::fs::write(&bad, serde_json::to_vec(&edited).unwrap()).unwrap();
    let pub_file = dir.join("signing.pub");
    let run = |file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_treuhand"))
            .args(["audit", "verify", "--log"])
            .arg(file)
            .arg("--trustee-key")
            .arg(&pub_file)
            .output()
            .unwrap()
    };
    let ok = run(&good);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("OK"));
    let broken = run(&bad);
    assert!(!broken.status.success());
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(stderr.contains("entry #4"), "{stderr}");
    harness.stop().await;
}

#[tokio::test]
async fn enrollment_is_validated() {
    let harness = Harness::start().await;
    let (metadata, shares) = new_tenant_key("acme", 1);
    let customer = harness.client(Role::Customer, "acme");
    let request = |holder: &str, share: String| EnrollRequest {
        metadata: metadata.clone(),
        holder: holder.into(),
        share,
        policy: None,
        sigv4: None,
    };
    // The customer's share deposited as the trustee's: wrong x.
    let err = customer
        .enroll("acme", &request("trustee", envelope(&metadata, &shares[0])))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid(ref m) if m.contains("x = 1")),
        "{err:?}"
    );
    // A share of another key.
    let (other_metadata, other_shares) = new_tenant_key("acme", 1);
    let err = customer
        .enroll(
            "acme",
            &request("trustee", envelope(&other_metadata, &other_shares[1])),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid(ref m) if m.contains("fingerprint")),
        "{err:?}"
    );
    // Garbage.
    let err = customer
        .enroll("acme", &request("trustee", "treuhand-share-v1:AAAA".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    let err = customer
        .enroll("acme", &request("nobody", envelope(&metadata, &shares[1])))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    // Another tenant's admin, and a proxy, may not enroll for acme.
    let err = harness
        .client(Role::Customer, "globex")
        .enroll("acme", &request("trustee", envelope(&metadata, &shares[1])))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Denied(ref reason) if reason == "not_tenant_admin"),
        "{err:?}"
    );
    let err = harness
        .client(Role::Proxy, "acme")
        .enroll("acme", &request("trustee", envelope(&metadata, &shares[1])))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Denied(ref reason) if reason == "wrong_role"),
        "{err:?}"
    );
    // The right one works once; a second deposit of the same version conflicts.
    customer
        .enroll("acme", &request("trustee", envelope(&metadata, &shares[1])))
        .await
        .unwrap();
    let err = customer
        .enroll("acme", &request("trustee", envelope(&metadata, &shares[1])))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    harness.stop().await;
}

#[tokio::test]
async fn customer_run_share_holder_releases_the_customer_share() {
    // The customer runs the same binary with its own store and keys, holding its own share.
    let trustee = Harness::start().await;
    let holder = Harness::start().await;
    let (metadata, shares) = new_tenant_key("acme", 1);
    for (harness, name, share) in [
        (&trustee, "trustee", &shares[1]),
        (&holder, "customer", &shares[0]),
    ] {
        let request = EnrollRequest {
            metadata: metadata.clone(),
            holder: name.into(),
            share: envelope(&metadata, share),
            policy: Some(policy_allowing(&["proxy-1"])),
            sigv4: None,
        };
        harness
            .client(Role::Customer, "acme")
            .enroll("acme", &request)
            .await
            .unwrap();
    }
    let request = release_request(Justification::CustomerAccess, "r-1");
    let from_trustee = trustee
        .client(Role::Proxy, "proxy-1")
        .release("acme", 1, &request)
        .await
        .unwrap();
    let from_holder = holder
        .client(Role::Proxy, "proxy-1")
        .release("acme", 1, &request)
        .await
        .unwrap();
    assert_eq!(from_holder.x(), 1);
    shamir::combine(&metadata, &[&from_holder, &from_trustee]).unwrap();
    trustee.stop().await;
    holder.stop().await;
}

async fn raw(
    harness: &Harness,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (http::StatusCode, Bytes) {
    let mut tls = (*harness.tls(Role::Proxy, "proxy-1")).clone();
    tls.alpn_protocols.clear();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", harness.url));
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    let response = client
        .request(builder.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, bytes)
}

#[tokio::test]
async fn bad_requests_get_precise_4xx_answers() {
    let harness = Harness::start().await;
    enroll(&harness, "acme", &["proxy-1"]).await;
    let json = Some("application/json");
    let release = "/v1/tenants/acme/keys/1/release";
    let valid = br#"{"justification":"customer_access","reason":"","request_id":"r-1"}"#.to_vec();

    // (method, path, content type, body, expected status, expected reason code)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "POST",
            release,
            json,
            b"{\"justification\":".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "POST",
            release,
            json,
            b"not json at all".to_vec(),
            400,
            "malformed_json",
        ),
        ("POST", release, json, Vec::new(), 400, "malformed_json"),
        (
            "POST",
            release,
            json,
            br#"{"justification":"because","request_id":"r"}"#.to_vec(),
            400,
            "invalid_field",
        ),
        (
            "POST",
            release,
            json,
            br#"{"justification":"customer_access"}"#.to_vec(),
            400,
            "invalid_field",
        ),
        (
            "POST",
            release,
            json,
            br#"{"justification":"customer_access","request_id":"r","extra":1}"#.to_vec(),
            400,
            "invalid_field",
        ),
        (
            "POST",
            release,
            json,
            format!(
                r#"{{"justification":"customer_access","request_id":"r","reason":"{}"}}"#,
                "x".repeat(1025)
            )
            .into_bytes(),
            400,
            "invalid_field",
        ),
        (
            "POST",
            release,
            json,
            br#"{"justification":"customer_access","request_id":""}"#.to_vec(),
            400,
            "invalid_field",
        ),
        (
            "POST",
            release,
            json,
            vec![b' '; 70 * 1024],
            413,
            "body_too_large",
        ),
        (
            "POST",
            release,
            Some("text/plain"),
            valid.clone(),
            415,
            "content_type_not_json",
        ),
        (
            "POST",
            release,
            None,
            valid.clone(),
            415,
            "content_type_not_json",
        ),
        (
            "POST",
            release,
            Some("application/x-www-form-urlencoded"),
            valid.clone(),
            415,
            "content_type_not_json",
        ),
        (
            "POST",
            "/v1/tenants/nobody/keys/1/release",
            json,
            valid.clone(),
            404,
            "unknown_tenant",
        ),
        (
            "POST",
            "/v1/tenants/acme/keys/2/release",
            json,
            valid.clone(),
            404,
            "unknown_tenant",
        ),
        (
            "POST",
            "/v1/tenants/ACME!/keys/1/release",
            json,
            valid.clone(),
            400,
            "invalid_tenant",
        ),
        (
            "POST",
            "/v1/tenants/acme/keys/one/release",
            json,
            valid.clone(),
            400,
            "invalid_key_version",
        ),
        (
            "POST",
            "/v1/tenants/acme/keys/99999999999/release",
            json,
            valid.clone(),
            400,
            "invalid_key_version",
        ),
        ("GET", release, None, Vec::new(), 405, "method_not_allowed"),
        (
            "POST",
            "/v1/nothing",
            json,
            valid.clone(),
            404,
            "no_such_route",
        ),
        ("GET", "/v2/health", None, Vec::new(), 404, "no_such_route"),
        (
            "GET",
            "/v1/tenants/nobody/audit",
            None,
            Vec::new(),
            403,
            "wrong_role",
        ),
    ];
    for (method, path, content_type, body, status, reason) in cases {
        let (got_status, bytes) = raw(&harness, method, path, content_type, body).await;
        let got: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{method} {path}: not an error body: {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert_eq!(
            (got_status.as_u16(), got.reason.as_str()),
            (status, reason),
            "{method} {path}: {}",
            got.message
        );
    }
    // The valid request still works afterwards: nothing panicked.
    let (status, _) = raw(
        &harness,
        "POST",
        release,
        Some("application/json; charset=utf-8"),
        valid,
    )
    .await;
    assert_eq!(status, 200);
    harness.stop().await;
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let harness = Harness::start().await;
    let client = harness.client(Role::Operator, "ops");
    assert_eq!(
        client.health().await.unwrap().trustee_key,
        hex::encode(harness.public_key)
    );
    assert_eq!(client.ready().await.unwrap().status, "ok");
    harness.stop().await;
}
