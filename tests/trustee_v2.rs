//! Trustee API v2 end to end: per-object OPRF evaluation of a tenant key that is never
//! released, over real TLS on 127.0.0.1:0 with the real client. Time is a manual clock;
//! nothing sleeps and nothing asserts timings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly on purpose

mod support;

use support::*;

use treuhand::crypto::oprf;
use treuhand::crypto::scheme;
use treuhand::tls::Role;
use treuhand::trustee::Error;
use treuhand::trustee::audit::{AuditEntry, AuditEvent, AuditLog, verify_log};
use treuhand::trustee::wire::{
    ErrorBody, Justification, ObjectRef, Policy, ReleaseRequest, ShredRequest, SigV4Credential,
};

const CAT: [u8; 32] = [7; 32];

async fn audit_log(harness: &Harness, tenant: &str) -> AuditLog {
    let log = harness
        .client(Role::Customer, tenant)
        .audit(tenant)
        .await
        .unwrap();
    verify_log(&log, &harness.public_key).unwrap();
    log
}

fn entry_for<'a>(log: &'a AuditLog, request_id: &str) -> &'a AuditEntry {
    log.entries
        .iter()
        .find(|e| e.request_id.as_deref() == Some(request_id))
        .unwrap_or_else(|| panic!("no entry for {request_id}: {:#?}", log.entries))
}

fn object(bucket: &str, key: &str) -> Option<ObjectRef> {
    Some(ObjectRef {
        bucket: bucket.into(),
        key: key.into(),
    })
}

fn denied(result: Result<impl std::fmt::Debug, Error>) -> String {
    match result {
        Err(Error::Denied(reason)) => reason.to_string(),
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test]
async fn evaluate_logs_the_object_and_its_answer_verifies() {
    let harness = Harness::start().await;
    let (metadata, shares) = enroll_oprf(&harness, "acme", &["proxy-1"], None).await;
    let proxy = harness.client(Role::Proxy, "proxy-1");

    let request = evaluate_request("e-1", "photos", "cat.jpg", CAT);
    let identity = identity_of("acme", &request);
    let (answer, audit_seq) = evaluate_decoded(&proxy, "acme", &request).await.unwrap();
    // The proof checks against the trustee's registered K_i inside combine.
    let y = combine_with_customer(&metadata, &shares, &identity, answer);

    // Both holders answering (the customer's holder as it would, and a second evaluation of
    // the same object by the trustee) give the same Y.
    let again = evaluate_request("e-2", "photos", "cat.jpg", CAT);
    let (second, _) = evaluate_decoded(&proxy, "acme", &again).await.unwrap();
    let customer = scheme::key_share(&metadata, &shares[0]).unwrap();
    let customer_answer = oprf::evaluate(&customer, &identity).unwrap();
    let both = oprf::verify_and_combine(
        &identity,
        &[
            (
                1,
                scheme::holder_key(&metadata, 1).unwrap(),
                customer_answer,
            ),
            (2, scheme::holder_key(&metadata, 2).unwrap(), second),
        ],
        2,
    )
    .unwrap();
    assert!(y == both, "the combined Y differs between evaluations");
    // Another object id of the same key is another object.
    let other = evaluate_request("e-3", "photos", "cat.jpg", [8; 32]);
    let (other_answer, _) = evaluate_decoded(&proxy, "acme", &other).await.unwrap();
    let other_y = combine_with_customer(
        &metadata,
        &shares,
        &identity_of("acme", &other),
        other_answer,
    );
    assert!(y != other_y, "two object ids gave the same Y");

    let log = audit_log(&harness, "acme").await;
    let entry = entry_for(&log, "e-1");
    assert_eq!(entry.event, AuditEvent::Evaluate);
    assert_eq!(entry.seq, audit_seq, "the answer names its entry");
    assert_eq!(entry.actor, "proxy:proxy-1");
    assert_eq!(entry.justification, Some(Justification::CustomerAccess));
    assert_eq!(entry.object, object("photos", "cat.jpg"));
    assert_eq!(entry.object_id.as_deref(), Some(hex::encode(CAT).as_str()));
    assert_eq!(entry.reason.as_deref(), Some("GetObject"));
    assert_eq!(
        entry_for(&log, "e-3").object_id.as_deref(),
        Some(hex::encode([8u8; 32]).as_str())
    );
    let summary = verify_log(&log, &harness.public_key).unwrap();
    assert_eq!((summary.evaluations, summary.releases), (3, 0));
    // The deposit records the scheme and the customer's choices.
    let deposit = log
        .entries
        .iter()
        .find(|e| e.event == AuditEvent::Deposit)
        .unwrap();
    let detail = deposit.detail.as_deref().unwrap();
    for part in [
        "scheme=oprf-ristretto255-v1",
        "strict=false",
        "allow_trustees_alone=false",
        "checks_signatures=false",
    ] {
        assert!(detail.contains(part), "{detail}");
    }
    harness.stop().await;
}

#[tokio::test]
async fn evaluate_for_a_disallowed_proxy_is_denied_and_logged_with_the_object() {
    let harness = Harness::start().await;
    enroll_oprf(&harness, "acme", &["proxy-1"], None).await;
    let request = evaluate_request("e-1", "photos", "cat.jpg", CAT);
    let reason = denied(
        harness
            .client(Role::Proxy, "proxy-2")
            .evaluate("acme", 1, &request)
            .await,
    );
    assert_eq!(reason, "proxy_not_allowed");
    // A certificate of another role is refused too, but does not write into the chain.
    let reason = denied(
        harness
            .client(Role::Customer, "acme")
            .evaluate(
                "acme",
                1,
                &evaluate_request("e-2", "photos", "cat.jpg", CAT),
            )
            .await,
    );
    assert_eq!(reason, "wrong_role");
    // A suspended tenant's evaluations are refused and chained with their object as well.
    let customer = harness.client(Role::Customer, "acme");
    let suspended = Policy {
        suspended: true,
        ..policy_allowing(&["proxy-1"])
    };
    customer.set_policy("acme", &suspended).await.unwrap();
    let reason = denied(
        harness
            .client(Role::Proxy, "proxy-1")
            .evaluate(
                "acme",
                1,
                &evaluate_request("e-3", "photos", "dog.jpg", [9; 32]),
            )
            .await,
    );
    assert_eq!(reason, "tenant_suspended");
    // After a shred, the refusal is chained with its object too.
    customer
        .shred("acme", 1, &ShredRequest::default())
        .await
        .unwrap();
    let err = harness
        .client(Role::Proxy, "proxy-1")
        .evaluate(
            "acme",
            1,
            &evaluate_request("e-4", "photos", "owl.jpg", [4; 32]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Shredded), "{err:?}");

    let log = audit_log(&harness, "acme").await;
    let entry = entry_for(&log, "e-4");
    assert_eq!(
        (entry.event, entry.outcome.as_str()),
        (AuditEvent::Denial, "shredded")
    );
    assert_eq!(entry.object, object("photos", "owl.jpg"));
    assert_eq!(
        entry.object_id.as_deref(),
        Some(hex::encode([4u8; 32]).as_str())
    );
    let entry = entry_for(&log, "e-1");
    assert_eq!(
        (entry.event, entry.outcome.as_str(), entry.actor.as_str()),
        (AuditEvent::Denial, "proxy_not_allowed", "proxy:proxy-2")
    );
    assert_eq!(entry.object, object("photos", "cat.jpg"));
    assert_eq!(entry.object_id.as_deref(), Some(hex::encode(CAT).as_str()));
    assert_eq!(entry.reason, None, "a refused caller's free text stays out");
    assert!(
        log.entries
            .iter()
            .all(|e| e.request_id.as_deref() != Some("e-2")),
        "a customer certificate wrote into the chain"
    );
    let entry = entry_for(&log, "e-3");
    assert_eq!(entry.outcome, "tenant_suspended");
    assert_eq!(entry.object, object("photos", "dog.jpg"));
    assert_eq!(
        entry.object_id.as_deref(),
        Some(hex::encode([9u8; 32]).as_str())
    );
    harness.stop().await;
}

#[tokio::test]
async fn release_of_an_oprf_key_is_refused_and_audited() {
    let harness = Harness::start().await;
    enroll_oprf(&harness, "acme", &["proxy-1"], None).await;
    let proxy = harness.client(Role::Proxy, "proxy-1");
    let release = ReleaseRequest {
        justification: Justification::CustomerAccess,
        reason: "GET s3://photos/cat.jpg".into(),
        request_id: "r-1".into(),
        object: object("photos", "cat.jpg"),
    };
    assert_eq!(
        denied(proxy.release("acme", 1, &release).await),
        "oprf_key_not_releasable"
    );
    let log = audit_log(&harness, "acme").await;
    let entry = entry_for(&log, "r-1");
    assert_eq!(
        (entry.event, entry.outcome.as_str()),
        (AuditEvent::Denial, "oprf_key_not_releasable")
    );
    assert_eq!(entry.object, object("photos", "cat.jpg"));

    // A legacy tenant key still releases, and has no per-object evaluation.
    enroll(&harness, "legacy", &["proxy-1"]).await;
    proxy.release("legacy", 1, &release).await.unwrap();
    let err = proxy
        .evaluate(
            "legacy",
            1,
            &evaluate_request("e-1", "photos", "cat.jpg", CAT),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotOprfKey), "{err:?}");
    let log = audit_log(&harness, "legacy").await;
    assert_eq!(entry_for(&log, "e-1").outcome, "not_an_oprf_key");
    harness.stop().await;
}

#[tokio::test]
async fn malformed_evaluate_requests_get_precise_400s() {
    let harness = Harness::start().await;
    enroll_oprf(&harness, "acme", &["proxy-1"], None).await;
    let json = Some("application/json");
    let path = "/v2/tenants/acme/keys/1/evaluate";
    let id = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="; // 32 bytes of 7
    let body = |request_id: &str, bucket: &str, key: &str, id: &str| {
        serde_json::json!({
            "justification": "customer_access",
            "request_id": request_id,
            "object": {"bucket": bucket, "key": key, "id": id},
        })
        .to_string()
        .into_bytes()
    };
    let long = "k".repeat(1025);
    // (method, path, body, status, reason, a word the message must contain)
    type Case<'a> = (&'a str, &'a str, Vec<u8>, u16, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        ("POST", path, body("e", "b", "k", "not base64!"), 400, "invalid_field", "object.id"),
        ("POST", path, body("e", "b", "k", "BwcH"), 400, "invalid_field", "exactly 32 bytes"),
        ("POST", path, body("e", "", "k", id), 400, "invalid_field", "object.bucket"),
        ("POST", path, body("e", &long, "k", id), 400, "invalid_field", "object.bucket"),
        ("POST", path, body("e", "b", &long, id), 400, "invalid_field", "object.key"),
        ("POST", path, body("", "b", "k", id), 400, "invalid_field", "request_id"),
        ("POST", path, body("a b", "b", "k", id), 400, "invalid_field", "request_id"),
        (
            "POST",
            path,
            br#"{"justification":"customer_access","request_id":"e"}"#.to_vec(),
            400,
            "invalid_field",
            "object",
        ),
        (
            "POST",
            path,
            br#"{"justification":"customer_access","request_id":"e","object":{"bucket":"b","key":"k","id":"x"},"share":"x"}"#.to_vec(),
            400,
            "invalid_field",
            "share",
        ),
        ("POST", path, b"{\"justification\":".to_vec(), 400, "malformed_json", "JSON"),
        (
            "POST",
            "/v2/tenants/acme/keys/one/evaluate",
            body("e", "b", "k", id),
            400,
            "invalid_key_version",
            "key version",
        ),
        ("POST", "/v2/tenants/ACME!/keys/1/evaluate", body("e", "b", "k", id), 400, "invalid_tenant", ""),
        ("GET", path, Vec::new(), 405, "method_not_allowed", "POST"),
        ("GET", "/v2/tenants/acme/authorize", Vec::new(), 405, "method_not_allowed", "POST"),
        ("POST", "/v2/tenants/acme/keys/1/release", body("e", "b", "k", id), 404, "no_such_route", ""),
        ("POST", "/v1/tenants/acme/keys/1/evaluate", body("e", "b", "k", id), 404, "no_such_route", ""),
        ("POST", "/v2/tenants/nobody/keys/1/evaluate", body("e", "b", "k", id), 404, "unknown_tenant", ""),
        ("POST", "/v2/tenants/acme/keys/2/evaluate", body("e", "b", "k", id), 404, "unknown_tenant", ""),
    ];
    for (method, path, body, status, reason, word) in cases {
        let content_type = if body.is_empty() { None } else { json };
        let (got_status, bytes) = raw_request(
            &harness,
            (Role::Proxy, "proxy-1"),
            method,
            path,
            content_type,
            body,
        )
        .await;
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
        assert!(
            got.message.contains(word),
            "{method} {path}: {}",
            got.message
        );
    }
    // The bounds themselves are accepted: a 1024-byte bucket and key.
    let edge = "b".repeat(1024);
    let (status, bytes) = raw_request(
        &harness,
        (Role::Proxy, "proxy-1"),
        "POST",
        path,
        json,
        body("e-edge", &edge, &edge, id),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    harness.stop().await;
}

#[tokio::test]
async fn oprf_enrollment_with_a_wrong_share_is_refused_naming_the_holder() {
    let harness = Harness::start().await;
    let (metadata, shares) = new_oprf_tenant_key("acme", 1, false);
    let (_, others) = new_oprf_tenant_key("acme", 1, false);
    // The share of another split, deposited for the trustee.
    let mut request = enroll_request(&metadata, &others, &["proxy-1"]);
    let customer = harness.client(Role::Customer, "acme");
    let err = customer.enroll("acme", &request).await.unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(m) if m.contains("\"trustee\"") || m.contains("trustee")),
        "{err:?}"
    );
    // An S3 credential is only for strict tenants.
    request = enroll_request(&metadata, &shares, &["proxy-1"]);
    request.sigv4 = Some(SigV4Credential {
        access_key_id: "AKIDACME".into(),
        secret_access_key: "s3cr3t-never-stored".into(),
    });
    let err = customer.enroll("acme", &request).await.unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(m) if m.contains("strict")),
        "{err:?}"
    );
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
    // The right share enrolls.
    request.sigv4 = None;
    customer.enroll("acme", &request).await.unwrap();
    harness.stop().await;
}

#[tokio::test]
async fn a_strict_tenants_s3_secret_is_sealed_at_rest() {
    let harness = Harness::start().await;
    let secret = "wJalrXUtnFEMI-strict-secret-EXAMPLEKEY";
    let credential = SigV4Credential {
        access_key_id: "AKIDSTRICT".into(),
        secret_access_key: secret.into(),
    };
    enroll_oprf(&harness, "acme", &["proxy-1"], Some(credential)).await;
    let log = audit_log(&harness, "acme").await;
    let deposit = log
        .entries
        .iter()
        .find(|e| e.event == AuditEvent::Deposit)
        .unwrap();
    let detail = deposit.detail.as_deref().unwrap();
    assert!(detail.contains("strict=true"), "{detail}");
    assert!(detail.contains("checks_signatures=true"), "{detail}");
    assert!(detail.contains("AKIDSTRICT"), "{detail}");
    let store = harness.store_path();
    let (_dir, _ca, _config) = harness.stop_and_keep().await;
    let conn = rusqlite::Connection::open(&store).unwrap();
    let stored: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM credentials WHERE tenant = 'acme'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(stored, 1, "the credential is kept");
    drop(conn);
    let mut files = vec![std::fs::read(&store).unwrap()];
    if let Ok(wal) = std::fs::read(store.with_extension("db-wal")) {
        files.push(wal);
    }
    for bytes in files {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the S3 secret is in the store in clear"
        );
    }
}
