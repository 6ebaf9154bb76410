//! Strict tenants at the holder that checks signatures: an evaluation, or any other request,
//! needs the customer's own SigV4 signature for the object and method, which only the
//! customer and this holder can make; every refusal is chained with what it was for. The
//! requests are signed as a client would sign them (`treuhand::crypto::sigv4`). Time is the
//! harness's manual clock; nothing sleeps and nothing asserts timings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly on purpose

mod support;

use std::time::Duration;

use support::*;

use treuhand::crypto::sigv4::{self, SigningInput};
use treuhand::tls::Role;
use treuhand::trustee::Error;
use treuhand::trustee::audit::{AuditEntry, AuditEvent, AuditLog, verify_log};
use treuhand::trustee::wire::{AuthorizeRequest, ObjectRef, SigV4Credential, SignedRequest};

const ACCESS_KEY: &str = "AKIDSTRICTACME";
const SECRET_KEY: &str = "strict/acme/secret-known-to-the-customer-and-its-holder";
const HOST: &str = "s3.treuhand.test:9000";
/// The harness clock's start (`START_MS`, 2027-01-15 08:00:00 UTC) as an `x-amz-date`.
const AMZ_DATE: &str = "20270115T080000Z";
const CAT: [u8; 32] = [7; 32];

fn credential() -> SigV4Credential {
    SigV4Credential {
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: SECRET_KEY.into(),
    }
}

fn input<'a>(method: &'a str, path: &'a str) -> SigningInput<'a> {
    SigningInput {
        method,
        host: HOST,
        path,
        query: &[],
        headers: &[],
        amz_date: AMZ_DATE,
        region: "us-east-1",
    }
}

/// A header-signed request (`UNSIGNED-PAYLOAD`) as the proxy forwards it.
fn signed_with(method: &str, path: &str, access_key: &str, secret_key: &str) -> SignedRequest {
    let authorization = sigv4::authorization(&input(method, path), access_key, secret_key);
    SignedRequest {
        method: method.into(),
        path: path.into(),
        query: String::new(),
        headers: vec![
            ("host".into(), HOST.into()),
            (
                "x-amz-content-sha256".into(),
                sigv4::UNSIGNED_PAYLOAD.into(),
            ),
            ("x-amz-date".into(), AMZ_DATE.into()),
        ],
        authorization: Some(authorization),
    }
}

fn signed(method: &str, path: &str) -> SignedRequest {
    signed_with(method, path, ACCESS_KEY, SECRET_KEY)
}

/// A presigned URL's request (15 minutes).
fn presigned(method: &str, path: &str) -> SignedRequest {
    SignedRequest {
        method: method.into(),
        path: path.into(),
        query: sigv4::presigned_query(&input(method, path), 900, ACCESS_KEY, SECRET_KEY),
        headers: vec![("host".into(), HOST.into())],
        authorization: None,
    }
}

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

fn denied(result: Result<impl std::fmt::Debug, Error>) -> String {
    match result {
        Err(Error::Denied(reason)) => reason.to_string(),
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn cat() -> Option<ObjectRef> {
    Some(ObjectRef {
        bucket: "photos".into(),
        key: "cat.jpg".into(),
    })
}

#[tokio::test]
async fn strict_evaluate_without_the_customers_signature_is_refused_and_logged() {
    let harness = Harness::start().await;
    enroll_oprf(&harness, "acme", &["proxy-1"], Some(credential())).await;
    // The proxy's own certificate, asking for an object without a live customer request.
    let proxy = harness.client(Role::Proxy, "proxy-1");
    let request = evaluate_request("e-1", "photos", "cat.jpg", CAT);
    assert_eq!(
        denied(proxy.evaluate("acme", 1, &request).await),
        "signature_required"
    );
    let log = audit_log(&harness, "acme").await;
    let entry = entry_for(&log, "e-1");
    assert_eq!(
        (entry.event, entry.outcome.as_str(), entry.actor.as_str()),
        (AuditEvent::Denial, "signature_required", "proxy:proxy-1")
    );
    assert_eq!(entry.object, cat());
    assert_eq!(entry.object_id.as_deref(), Some(hex::encode(CAT).as_str()));

    // A strict tenant whose signatures another holder checks is evaluated here without one.
    let (metadata, shares) = new_oprf_tenant_key("other", 1, true);
    harness
        .client(Role::Customer, "other")
        .enroll("other", &enroll_request(&metadata, &shares, &["proxy-1"]))
        .await
        .unwrap();
    proxy
        .evaluate(
            "other",
            1,
            &evaluate_request("e-2", "photos", "cat.jpg", CAT),
        )
        .await
        .unwrap();
    harness.stop().await;
}

#[tokio::test]
async fn strict_evaluate_with_a_signature_for_another_object_is_refused() {
    let harness = Harness::start().await;
    enroll_oprf(&harness, "acme", &["proxy-1"], Some(credential())).await;
    let proxy = harness.client(Role::Proxy, "proxy-1");
    let ask = |request_id: &str, signed: SignedRequest| {
        let mut request = evaluate_request(request_id, "photos", "cat.jpg", CAT);
        request.signed = Some(signed);
        request
    };
    // The customer signed a request for another key of the bucket.
    let request = ask("e-scope", signed("GET", "/photos/dog.jpg"));
    assert_eq!(
        denied(proxy.evaluate("acme", 1, &request).await),
        "signature_scope"
    );
    // Signed with a secret that is not the tenant's (the operator guessing), or with another
    // access key.
    let request = ask(
        "e-forged",
        signed_with("GET", "/photos/cat.jpg", ACCESS_KEY, "guess"),
    );
    assert_eq!(
        denied(proxy.evaluate("acme", 1, &request).await),
        "signature_mismatch"
    );
    let request = ask(
        "e-other-key",
        signed_with("GET", "/photos/cat.jpg", "AKIDOPERATOR", SECRET_KEY),
    );
    assert_eq!(
        denied(proxy.evaluate("acme", 1, &request).await),
        "signature_wrong_access_key"
    );
    // The customer's own signature for this object, replayed after its window.
    harness.clock.advance(Duration::from_secs(16 * 60));
    let request = ask("e-late", signed("GET", "/photos/cat.jpg"));
    assert_eq!(
        denied(proxy.evaluate("acme", 1, &request).await),
        "signature_expired"
    );

    let log = audit_log(&harness, "acme").await;
    for (request_id, outcome) in [
        ("e-scope", "signature_scope"),
        ("e-forged", "signature_mismatch"),
        ("e-other-key", "signature_wrong_access_key"),
        ("e-late", "signature_expired"),
    ] {
        let entry = entry_for(&log, request_id);
        assert_eq!(
            (entry.event, entry.outcome.as_str()),
            (AuditEvent::Denial, outcome)
        );
        assert_eq!(entry.object, cat(), "{request_id}");
    }
    // The scope denial says what the signature did cover.
    let detail = entry_for(&log, "e-scope")
        .detail
        .clone()
        .unwrap_or_default();
    assert!(detail.contains("dog.jpg"), "{detail}");
    // No signature, no secret in any entry.
    let json = serde_json::to_string(&log).unwrap();
    assert!(!json.contains(SECRET_KEY));
    assert!(!json.contains("Signature="));
    harness.stop().await;
}

#[tokio::test]
async fn strict_evaluate_with_the_customers_signature_answers() {
    let harness = Harness::start().await;
    let (metadata, shares) = enroll_oprf(&harness, "acme", &["proxy-1"], Some(credential())).await;
    let proxy = harness.client(Role::Proxy, "proxy-1");
    let mut request = evaluate_request("e-1", "photos", "cat.jpg", CAT);
    request.signed = Some(signed("GET", "/photos/cat.jpg"));
    let (answer, seq) = evaluate_decoded(&proxy, "acme", &request).await.unwrap();
    let identity = identity_of("acme", &request);
    let y = combine_with_customer(&metadata, &shares, &identity, answer);
    // A presigned URL for the object works as well, and gives the same object key.
    let mut request = evaluate_request("e-2", "photos", "cat.jpg", CAT);
    request.signed = Some(presigned("GET", "/photos/cat.jpg"));
    let (answer, _) = evaluate_decoded(&proxy, "acme", &request).await.unwrap();
    assert!(y == combine_with_customer(&metadata, &shares, &identity, answer));

    let log = audit_log(&harness, "acme").await;
    let entry = entry_for(&log, "e-1");
    assert_eq!((entry.event, entry.seq), (AuditEvent::Evaluate, seq));
    assert_eq!(entry.object, cat());
    let detail = entry.detail.clone().unwrap_or_default();
    assert!(
        detail.contains(ACCESS_KEY) && detail.contains("GET"),
        "{detail}"
    );

    // The sealed credential survives a restart.
    let (dir, ca, config) = harness.stop_and_keep().await;
    let harness = Harness::launch(dir, ca, config).await;
    let mut request = evaluate_request("e-3", "photos", "cat.jpg", CAT);
    request.signed = Some(signed("GET", "/photos/cat.jpg"));
    harness
        .client(Role::Proxy, "proxy-1")
        .evaluate("acme", 1, &request)
        .await
        .unwrap();
    request.signed = None;
    request.request_id = "e-4".into();
    assert_eq!(
        denied(
            harness
                .client(Role::Proxy, "proxy-1")
                .evaluate("acme", 1, &request)
                .await
        ),
        "signature_required"
    );
    harness.stop().await;
}

#[tokio::test]
async fn authorize_checks_and_logs_the_signature() {
    let harness = Harness::start().await;
    enroll_oprf(&harness, "acme", &["proxy-1"], Some(credential())).await;
    let proxy = harness.client(Role::Proxy, "proxy-1");
    let authorize = |request_id: &str, signed: SignedRequest| AuthorizeRequest {
        request_id: request_id.into(),
        signed,
    };
    // A DELETE and a LIST, as the customer signed them.
    let answer = proxy
        .authorize(
            "acme",
            &authorize("a-delete", signed("DELETE", "/photos/cat.jpg")),
        )
        .await
        .unwrap();
    assert_eq!(answer.access_key_id, ACCESS_KEY);
    proxy
        .authorize("acme", &authorize("a-list", presigned("GET", "/photos")))
        .await
        .unwrap();
    // The operator's own attempt: a DELETE it signed without the secret.
    let forged = signed_with("DELETE", "/photos/cat.jpg", ACCESS_KEY, "guess");
    assert_eq!(
        denied(
            proxy
                .authorize("acme", &authorize("a-forged", forged))
                .await
        ),
        "signature_mismatch"
    );
    // A proxy the tenant does not allow.
    assert_eq!(
        denied(
            harness
                .client(Role::Proxy, "proxy-2")
                .authorize("acme", &authorize("a-stranger", signed("GET", "/photos")))
                .await
        ),
        "proxy_not_allowed"
    );
    // A holder without the tenant's credential does not check signatures.
    enroll_oprf(&harness, "plain", &["proxy-1"], None).await;
    let err = proxy
        .authorize("plain", &authorize("a-plain", signed("GET", "/photos")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SignaturesNotCheckedHere), "{err:?}");

    let log = audit_log(&harness, "acme").await;
    let entry = entry_for(&log, "a-delete");
    assert_eq!(entry.event, AuditEvent::Authorize);
    assert_eq!(entry.seq, answer.audit_seq);
    assert_eq!(entry.object, cat());
    let detail = entry.detail.clone().unwrap_or_default();
    assert!(
        detail.contains("DELETE") && detail.contains(ACCESS_KEY),
        "{detail}"
    );
    let list = entry_for(&log, "a-list");
    assert_eq!(list.event, AuditEvent::Authorize);
    assert!(
        list.detail
            .clone()
            .unwrap_or_default()
            .contains("bucket=photos")
    );
    for (request_id, outcome) in [
        ("a-forged", "signature_mismatch"),
        ("a-stranger", "proxy_not_allowed"),
    ] {
        let entry = entry_for(&log, request_id);
        assert_eq!(
            (entry.event, entry.outcome.as_str()),
            (AuditEvent::Denial, outcome)
        );
        let detail = entry.detail.clone().unwrap_or_default();
        assert!(detail.contains("/photos"), "{detail}");
    }
    harness.stop().await;
}
