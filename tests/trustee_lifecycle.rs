//! The key lifecycle at a trustee, end to end over real mTLS on 127.0.0.1:0 with the real
//! client: listing key versions, denying and revoking grants, the hand-over of a share to the
//! customer admin, metadata updates after a re-deal, the proxies' revocation stream, and
//! incremental audit downloads. Time is a manual clock; nothing asserts timings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly on purpose

mod support;

use std::time::Duration;

use support::*;

use treuhand::crypto::envelope::KeyId;
use treuhand::crypto::scheme;
use treuhand::crypto::shamir::{KeyMetadata, ShareEnvelope};
use treuhand::secret::Share;
use treuhand::tls::Role;
use treuhand::trustee::Error;
use treuhand::trustee::audit::{AuditEvent, verify_log};
use treuhand::trustee::client::TrusteeClient;
use treuhand::trustee::wire::{
    ErrorBody, GrantRequest, GrantScope, GrantState, HandoverRequest, Justification, KeyState,
    MetadataUpdate, ReleaseRequest, RevocationKind, ShredRequest,
};

const CAT: [u8; 32] = [7; 32];

fn maintenance(request_id: &str) -> ReleaseRequest {
    ReleaseRequest {
        justification: Justification::OperatorMaintenance,
        reason: "restore".into(),
        request_id: request_id.into(),
        object: None,
    }
}

fn grant_request() -> GrantRequest {
    GrantRequest {
        ticket: "INC-4711".into(),
        scope: GrantScope {
            key_version: Some(1),
        },
        duration_secs: 2 * 3600,
        reason: "restore after disk failure".into(),
    }
}

fn handover_to(to: &str) -> HandoverRequest {
    HandoverRequest {
        to: to.into(),
        request_id: Some("h-1".into()),
    }
}

fn denied(result: Result<impl std::fmt::Debug, Error>) -> String {
    match result {
        Err(Error::Denied(reason)) => reason.to_string(),
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn conflict(result: Result<impl std::fmt::Debug, Error>) -> String {
    match result {
        Err(Error::Conflict(message)) => message,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn invalid(result: Result<impl std::fmt::Debug, Error>) -> String {
    match result {
        Err(Error::Invalid(message)) => message,
        other => panic!("expected a 400, got {other:?}"),
    }
}

/// A client whose calls may last as long as a long poll.
fn patient(harness: &Harness, role: Role, name: &str) -> TrusteeClient {
    harness
        .client(role, name)
        .with_timeout(Duration::from_secs(60))
}

/// The error body of a raw request that must fail with `status`.
async fn raw_error(
    harness: &Harness,
    caller: (Role, &str),
    method: &str,
    path: &str,
    status: u16,
) -> ErrorBody {
    let (got, body) = raw_request(harness, caller, method, path, None, Vec::new()).await;
    assert_eq!(got.as_u16(), status, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn keys_lists_versions_with_their_state() {
    let harness = Harness::start().await;
    let customer = harness.client(Role::Customer, "acme");
    let (metadata, shares) = enroll_oprf(&harness, "acme", &["proxy-1"], None).await;
    harness.clock.advance(Duration::from_secs(60));
    for version in [2, 3] {
        let (metadata, shares) = new_oprf_tenant_key("acme", version, false);
        let mut request = enroll_request(&metadata, &shares, &["proxy-1"]);
        request.policy = None;
        customer.enroll("acme", &request).await.unwrap();
    }
    customer
        .shred("acme", 1, &ShredRequest::default())
        .await
        .unwrap();
    customer
        .handover("acme", 2, &handover_to("trustee-b"))
        .await
        .unwrap();

    // The operator sees the same listing as the customer admin.
    let listing = harness
        .client(Role::Operator, "ops-alice")
        .keys("acme")
        .await
        .unwrap();
    assert_eq!(listing, customer.keys("acme").await.unwrap());
    assert_eq!(listing.tenant, "acme");
    let states: Vec<(u32, KeyState)> = listing
        .keys
        .iter()
        .map(|k| (k.key_version, k.state))
        .collect();
    assert_eq!(
        states,
        [
            (1, KeyState::Shredded),
            (2, KeyState::HandedOver),
            (3, KeyState::Active)
        ]
    );
    let first = &listing.keys[0];
    assert_eq!((first.holder.as_str(), first.x), ("trustee", 2));
    assert_eq!(first.deposited_ms, START_MS);
    assert_eq!(listing.keys[1].deposited_ms, START_MS + 60_000);
    assert_eq!(first.metadata, metadata);
    drop(shares);

    // Nobody else lists a tenant's keys, and an unknown tenant is 404.
    let other = harness.client(Role::Customer, "beta").keys("acme").await;
    assert_eq!(denied(other), "not_tenant_admin");
    let proxy = harness.client(Role::Proxy, "proxy-1").keys("acme").await;
    assert_eq!(denied(proxy), "wrong_role");
    let unknown = harness.client(Role::Operator, "ops").keys("nobody").await;
    assert!(matches!(unknown, Err(Error::UnknownTenant)), "{unknown:?}");
    harness.stop().await;
}

#[tokio::test]
async fn a_revoked_grant_stops_maintenance_releases_at_once() {
    let harness = Harness::start().await;
    enroll(&harness, "acme", &["proxy-1"]).await;
    let proxy = harness.client(Role::Proxy, "proxy-1");
    let operator = harness.client(Role::Operator, "ops-alice");
    let customer = harness.client(Role::Customer, "acme");
    let grant = operator
        .request_grant("acme", &grant_request())
        .await
        .unwrap();
    customer.approve_grant("acme", &grant.id).await.unwrap();
    proxy.release("acme", 1, &maintenance("m-1")).await.unwrap();

    // The operator cannot end the customer's grant; the customer admin can, at once.
    let by_operator = operator.revoke_grant("acme", &grant.id).await;
    assert_eq!(denied(by_operator), "wrong_role");
    let revoked = customer.revoke_grant("acme", &grant.id).await.unwrap();
    assert_eq!(revoked.state, GrantState::Revoked);
    assert_eq!(revoked.expires_ms, Some(START_MS));
    // No clock movement: the grant would still be live by its expiry, but it is not.
    let after = proxy.release("acme", 1, &maintenance("m-2")).await;
    assert_eq!(denied(after), "no_emergency_grant");

    // A revoked grant stays revoked: not again, not approved, not expired later.
    let again = conflict(customer.revoke_grant("acme", &grant.id).await);
    assert!(again.contains("is revoked"), "{again}");
    assert!(again.contains("already ended"), "{again}");
    harness.clock.advance(Duration::from_secs(3 * 3600));
    let grants = operator.grants("acme").await.unwrap();
    assert_eq!(grants[0].state, GrantState::Revoked);
    let unknown = customer.revoke_grant("acme", "g-0000000000000000").await;
    assert!(matches!(unknown, Err(Error::NotFound(_))), "{unknown:?}");

    let log = customer.audit("acme").await.unwrap();
    verify_log(&log, &harness.public_key).unwrap();
    let revocation = log
        .entries
        .iter()
        .find(|e| e.event == AuditEvent::GrantRevoked)
        .unwrap();
    assert_eq!(revocation.grant.as_deref(), Some(grant.id.as_str()));
    assert_eq!(revocation.actor, "customer:acme");
    assert!(
        !log.entries
            .iter()
            .any(|e| e.event == AuditEvent::GrantExpired),
        "a revoked grant does not expire as well"
    );
    harness.stop().await;
}

#[tokio::test]
async fn a_pending_grant_can_be_denied_but_not_revoked() {
    let harness = Harness::start().await;
    enroll(&harness, "acme", &["proxy-1"]).await;
    let operator = harness.client(Role::Operator, "ops-alice");
    let customer = harness.client(Role::Customer, "acme");
    let grant = operator
        .request_grant("acme", &grant_request())
        .await
        .unwrap();

    let revoke = conflict(customer.revoke_grant("acme", &grant.id).await);
    assert!(revoke.contains("is pending"), "{revoke}");
    assert!(revoke.contains("deny a pending grant instead"), "{revoke}");
    let other_tenant = harness.client(Role::Customer, "beta");
    assert_eq!(
        denied(other_tenant.deny_grant("acme", &grant.id).await),
        "not_tenant_admin"
    );
    let denied_grant = customer.deny_grant("acme", &grant.id).await.unwrap();
    assert_eq!(denied_grant.state, GrantState::Denied);
    // Denied is final: it cannot be approved or denied again.
    let approve = conflict(customer.approve_grant("acme", &grant.id).await);
    assert!(approve.contains("is denied"), "{approve}");
    conflict(customer.deny_grant("acme", &grant.id).await);
    assert_eq!(
        operator.grants("acme").await.unwrap()[0].state,
        GrantState::Denied
    );

    // An approved grant is revoked, not denied.
    let second = operator
        .request_grant("acme", &grant_request())
        .await
        .unwrap();
    customer.approve_grant("acme", &second.id).await.unwrap();
    let deny = conflict(customer.deny_grant("acme", &second.id).await);
    assert!(deny.contains("revoke an approved grant instead"), "{deny}");

    let log = customer.audit("acme").await.unwrap();
    let entry = log
        .entries
        .iter()
        .find(|e| e.event == AuditEvent::GrantDenied)
        .unwrap();
    assert_eq!(entry.grant.as_deref(), Some(grant.id.as_str()));
    harness.stop().await;
}

#[tokio::test]
async fn handover_gives_the_share_to_the_customer_admin_only_and_logs_it() {
    let harness = Harness::start().await;
    let (metadata, shares) = enroll_oprf(&harness, "acme", &["proxy-1"], None).await;
    let customer = harness.client(Role::Customer, "acme");

    // Never to a proxy, the operator or another tenant's admin; nothing is logged for them.
    for (role, name, reason) in [
        (Role::Proxy, "proxy-1", "wrong_role"),
        (Role::Operator, "ops-alice", "wrong_role"),
        (Role::Customer, "beta", "not_tenant_admin"),
    ] {
        let result = harness
            .client(role, name)
            .handover("acme", 1, &handover_to("trustee-b"))
            .await;
        assert_eq!(denied(result), reason, "{name}");
    }
    let before = customer.audit("acme").await.unwrap().entries.len();

    let answer = customer
        .handover("acme", 1, &handover_to("trustee-b"))
        .await
        .unwrap();
    assert_eq!((answer.holder.as_str(), answer.x), ("trustee", 2));
    let envelope = ShareEnvelope::parse(&answer.share).unwrap();
    assert_eq!(envelope.key, KeyId::new("acme", 1).unwrap());
    assert_eq!(envelope.share.x(), 2);
    assert_eq!(
        envelope.share.expose_secret(),
        shares[1].expose_secret(),
        "the holder's own share comes back"
    );
    // It is the share behind the registered K_2.
    scheme::key_share(&metadata, &envelope.share).unwrap();

    // Again (the customer may have crashed mid-hand-over): the same share, logged again.
    let again = customer
        .handover("acme", 1, &handover_to("trustee-b"))
        .await
        .unwrap();
    assert_eq!(again.share, answer.share);
    assert!(again.audit_seq > answer.audit_seq);

    let log = customer.audit("acme").await.unwrap();
    verify_log(&log, &harness.public_key).unwrap();
    let handovers: Vec<_> = log.entries[before..]
        .iter()
        .filter(|e| e.event == AuditEvent::Handover)
        .collect();
    assert_eq!(handovers.len(), 2);
    assert_eq!(handovers[0].seq, answer.audit_seq);
    assert_eq!(handovers[0].actor, "customer:acme");
    let detail = handovers[0].detail.as_deref().unwrap();
    assert!(detail.contains("to=trustee-b"), "{detail}");
    // No share material in the log.
    let text = serde_json::to_string(&log).unwrap();
    assert!(
        !text.contains(&answer.share),
        "the share leaked into the log"
    );

    // A bad target name is refused before anything happens.
    let bad = invalid(customer.handover("acme", 1, &handover_to("")).await);
    assert!(bad.contains("to must name"), "{bad}");
    harness.stop().await;
}

#[tokio::test]
async fn a_legacy_key_is_not_handed_over() {
    let harness = Harness::start().await;
    enroll(&harness, "acme", &["proxy-1"]).await;
    let customer = harness.client(Role::Customer, "acme");
    let message = conflict(
        customer
            .handover("acme", 1, &handover_to("trustee-b"))
            .await,
    );
    assert!(message.contains("legacy"), "{message}");
    assert!(message.contains("rotate"), "{message}");
    let unknown = customer
        .handover("acme", 9, &handover_to("trustee-b"))
        .await;
    assert!(matches!(unknown, Err(Error::UnknownTenant)), "{unknown:?}");
    harness.stop().await;
}

#[tokio::test]
async fn a_handed_over_key_evaluates_nothing() {
    let harness = Harness::start().await;
    enroll_oprf(&harness, "acme", &["proxy-1"], None).await;
    let proxy = harness.client(Role::Proxy, "proxy-1");
    let customer = harness.client(Role::Customer, "acme");
    evaluate_decoded(
        &proxy,
        "acme",
        &evaluate_request("e-1", "photos", "cat", CAT),
    )
    .await
    .unwrap();
    customer
        .handover("acme", 1, &handover_to("trustee-b"))
        .await
        .unwrap();

    // The client reads the 410 as "this holder no longer serves the key".
    let after = proxy
        .evaluate_response("acme", 1, &evaluate_request("e-2", "photos", "cat", CAT))
        .await;
    assert!(matches!(after, Err(Error::Shredded)), "{after:?}");
    let body = serde_json::to_vec(&evaluate_request("e-3", "photos", "cat", CAT)).unwrap();
    let (status, raw) = raw_request(
        &harness,
        (Role::Proxy, "proxy-1"),
        "POST",
        "/v2/tenants/acme/keys/1/evaluate",
        Some("application/json"),
        body,
    )
    .await;
    assert_eq!(status.as_u16(), 410);
    let error: ErrorBody = serde_json::from_slice(&raw).unwrap();
    assert_eq!(error.reason, "handed_over");

    // The version can still be shredded, with a receipt, and then it is shredded.
    let receipt = customer
        .shred("acme", 1, &ShredRequest::default())
        .await
        .unwrap();
    assert!(treuhand::trustee::audit::verify_receipt(
        &harness.public_key,
        &receipt
    ));
    let listing = customer.keys("acme").await.unwrap();
    assert_eq!(listing.keys[0].state, KeyState::Shredded);
    let shredded = customer
        .handover("acme", 1, &handover_to("trustee-b"))
        .await;
    assert!(matches!(shredded, Err(Error::Shredded)), "{shredded:?}");

    let log = customer.audit("acme").await.unwrap();
    verify_log(&log, &harness.public_key).unwrap();
    let refused: Vec<_> = log
        .entries
        .iter()
        .filter(|e| e.event == AuditEvent::Denial)
        .map(|e| e.outcome.as_str())
        .collect();
    assert_eq!(refused, ["handed_over", "handed_over"]);
    harness.stop().await;
}

/// A 2-of-3 OPRF key whose holders are `customer` (x=1), `trustee` (x=2, the harness) and
/// `trustee-a` (x=3), and the metadata after `trustee-a` is replaced by `trustee-b` at x=4.
fn redealt_key() -> (KeyMetadata, Vec<Share>, KeyMetadata) {
    let (metadata, shares) = scheme::split(
        &KeyId::new("acme", 1).unwrap(),
        2,
        &["customer", "trustee", "trustee-a"],
        scheme::SplitOptions {
            strict: false,
            allow_trustees_alone: false,
        },
    )
    .unwrap();
    // K_4 = f(4)·G from K_1 and K_2 in the exponent: L_1(4) = -2, L_2(4) = 3.
    let k1 = scheme::holder_key(&metadata, 1).unwrap();
    let k2 = scheme::holder_key(&metadata, 2).unwrap();
    let three = curve25519_dalek::scalar::Scalar::from(3u8);
    let two = curve25519_dalek::scalar::Scalar::from(2u8);
    let k4 = k2 * three - k1 * two;
    let mut redealt = metadata.clone();
    redealt.holders.retain(|h| h.name != "trustee-a");
    let mut new = metadata.holders[2].clone();
    new.name = "trustee-b".into();
    new.x = 4;
    new.public_key = scheme::encode_point(&k4);
    redealt.holders.push(new);
    redealt.validate().unwrap();
    (metadata, shares, redealt)
}

#[tokio::test]
async fn a_metadata_update_must_keep_this_holders_key_and_the_tenant_key() {
    let harness = Harness::start().await;
    let (metadata, shares, redealt) = redealt_key();
    let customer = harness.client(Role::Customer, "acme");
    let request = enroll_request(&metadata, &shares, &["proxy-1"]);
    customer.enroll("acme", &request).await.unwrap();
    let update = |metadata: &KeyMetadata| MetadataUpdate {
        metadata: metadata.clone(),
    };

    // Another split's metadata: another tenant key and another K_2.
    let (foreign, _) = new_oprf_tenant_key("acme", 1, false);
    let message = invalid(customer.update_metadata("acme", 1, &update(&foreign)).await);
    assert!(message.contains("differs"), "{message}");
    // This holder left out (renamed).
    let mut renamed = redealt.clone();
    renamed.holders[1].name = "trustee-x".into();
    let message = invalid(customer.update_metadata("acme", 1, &update(&renamed)).await);
    assert!(
        message.contains("\"trustee\" (this holder) is not listed"),
        "{message}"
    );
    // This holder under another x or public key (the swapped names stay consistent in K).
    let mut swapped = redealt.clone();
    swapped.holders[0].name = "trustee".into();
    swapped.holders[1].name = "customer".into();
    let message = invalid(customer.update_metadata("acme", 1, &update(&swapped)).await);
    assert!(
        message.contains("has x = 1 but its share has x = 2"),
        "{message}"
    );
    // A different threshold, strictness, version or an inconsistent set of keys.
    let mut strict = redealt.clone();
    strict.strict = true;
    let message = invalid(customer.update_metadata("acme", 1, &update(&strict)).await);
    assert!(message.contains("strict differs"), "{message}");
    let mut broken = redealt.clone();
    broken.holders[2].public_key = metadata.holders[2].public_key.clone();
    broken.holders[2].x = 4;
    invalid(customer.update_metadata("acme", 1, &update(&broken)).await);
    let mut other_version = redealt.clone();
    other_version.key_version = 2;
    let message = invalid(
        customer
            .update_metadata("acme", 1, &update(&other_version))
            .await,
    );
    assert!(message.contains("key_version is 2"), "{message}");
    let unknown = customer.update_metadata("acme", 2, &update(&redealt)).await;
    assert!(matches!(unknown, Err(Error::UnknownTenant)), "{unknown:?}");
    // Only the tenant's admin.
    let proxy = harness.client(Role::Proxy, "proxy-1");
    assert_eq!(
        denied(proxy.update_metadata("acme", 1, &update(&redealt)).await),
        "wrong_role"
    );
    // Nothing changed so far.
    assert_eq!(
        customer.keys("acme").await.unwrap().keys[0].metadata,
        metadata
    );

    let updated = customer
        .update_metadata("acme", 1, &update(&redealt))
        .await
        .unwrap();
    assert_eq!((updated.tenant.as_str(), updated.key_version), ("acme", 1));
    assert_eq!(
        customer.keys("acme").await.unwrap().keys[0].metadata,
        redealt
    );
    let log = customer.audit("acme").await.unwrap();
    verify_log(&log, &harness.public_key).unwrap();
    let entry = log
        .entries
        .iter()
        .find(|e| e.event == AuditEvent::MetadataUpdated)
        .unwrap();
    assert_eq!(entry.seq, updated.audit_seq);
    let detail = entry.detail.as_deref().unwrap();
    assert!(
        detail.contains("customer(x=1),trustee(x=2),trustee-b(x=4)"),
        "{detail}"
    );
    // The holder still evaluates under the new metadata.
    evaluate_decoded(
        &proxy,
        "acme",
        &evaluate_request("e-1", "photos", "cat", CAT),
    )
    .await
    .unwrap();
    harness.stop().await;
}

/// A trustee started in-process with its engine handle at hand (to see waiting long polls).
struct Bare {
    dir: tempfile::TempDir,
    ca: treuhand::tls::DevCa,
    url: String,
    server: treuhand::trustee::server::Server,
    running: RunningTrustee,
}

impl Bare {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (ca, config) = write_setup(dir.path());
        let clock = std::sync::Arc::new(treuhand::trustee::policy::ManualClock::new(START_MS));
        let any_port = "127.0.0.1:0".parse().unwrap();
        let (addr, server, running) = start_trustee(&config, clock, any_port).await;
        Self {
            dir,
            ca,
            url: format!("https://{addr}"),
            server,
            running,
        }
    }

    fn client(&self, role: Role, name: &str) -> TrusteeClient {
        let tls = tls_for(&self.ca, self.dir.path(), role, name);
        TrusteeClient::new(&self.url, tls)
            .unwrap()
            .with_timeout(Duration::from_secs(60))
    }

    async fn until_polls_wait(&self, polls: usize) {
        let trustee = self.server.trustee().clone();
        wait_until("the long polls wait at the trustee", || {
            trustee.revocation_waiters() == polls
        })
        .await;
    }
}

#[tokio::test]
async fn a_proxy_long_polling_revocations_sees_a_shred_within_the_wait() {
    let trustee = Bare::start().await;
    let customer = trustee.client(Role::Customer, "acme");
    let (metadata, shares) = new_oprf_tenant_key("acme", 1, false);
    customer
        .enroll("acme", &enroll_request(&metadata, &shares, &["proxy-1"]))
        .await
        .unwrap();
    let proxy = trustee.client(Role::Proxy, "proxy-1");

    // First contact: no epoch yet, so a reset naming the stream and its position.
    let start = proxy.revocations("", 0, Duration::ZERO).await.unwrap();
    assert!(start.reset);
    assert!(!start.epoch.is_empty());
    assert!(start.epoch.bytes().all(|b| b.is_ascii_alphanumeric()));
    let position = start.seq;

    let poll = {
        let proxy = proxy.clone();
        let epoch = start.epoch.clone();
        tokio::spawn(async move {
            proxy
                .revocations(&epoch, position, Duration::from_secs(30))
                .await
        })
    };
    // The poll is waiting (nothing to answer yet) when the shred comes.
    trustee.until_polls_wait(1).await;
    customer
        .shred("acme", 1, &ShredRequest::default())
        .await
        .unwrap();
    let answer = poll.await.unwrap().unwrap();
    assert!(!answer.reset);
    assert_eq!(answer.epoch, start.epoch);
    assert_eq!(answer.events.len(), 1, "{answer:?}");
    let event = &answer.events[0];
    assert_eq!(event.tenant, "acme");
    assert_eq!(event.key_version, Some(1));
    assert_eq!(event.kind, RevocationKind::Shred);
    assert_eq!(answer.seq, event.seq);

    // Polling on from there with no wait: nothing new.
    let next = proxy
        .revocations(&answer.epoch, answer.seq, Duration::ZERO)
        .await
        .unwrap();
    assert!(!next.reset && next.events.is_empty());
    assert_eq!(next.seq, answer.seq);
    trustee.running.stop().await;
}

#[tokio::test]
async fn only_proxies_poll_revocations_and_the_parameters_must_be_there() {
    let harness = Harness::start().await;
    let customer_poll = harness
        .client(Role::Customer, "acme")
        .revocations("", 0, Duration::ZERO)
        .await;
    assert_eq!(denied(customer_poll), "wrong_role");
    for path in [
        "/v1/revocations?after=0&wait_ms=0",
        "/v1/revocations?epoch=&wait_ms=0",
        "/v1/revocations?epoch=&after=0",
        "/v1/revocations?epoch=&after=x&wait_ms=0",
        "/v1/revocations?epoch=a-b&after=0&wait_ms=0",
        "/v1/revocations?epoch=&after=0&after=1&wait_ms=0",
    ] {
        let error = raw_error(&harness, (Role::Proxy, "proxy-1"), "GET", path, 400).await;
        assert_eq!(error.reason, "invalid_query", "{path}");
    }
    harness.stop().await;
}

#[tokio::test]
async fn revocation_events_follow_policy_handover_and_grants() {
    let harness = Harness::start().await;
    enroll_oprf(&harness, "acme", &["proxy-1"], None).await;
    let proxy = patient(&harness, Role::Proxy, "proxy-1");
    let customer = harness.client(Role::Customer, "acme");
    let operator = harness.client(Role::Operator, "ops-alice");
    let start = proxy.revocations("", 0, Duration::ZERO).await.unwrap();

    let grant = operator
        .request_grant("acme", &grant_request())
        .await
        .unwrap();
    customer.deny_grant("acme", &grant.id).await.unwrap();
    customer
        .handover("acme", 1, &handover_to("trustee-b"))
        .await
        .unwrap();
    // The proxy is removed from the policy: it still hears of its removal.
    customer
        .set_policy("acme", &policy_allowing(&["proxy-2"]))
        .await
        .unwrap();
    // After that, it hears nothing of the tenant.
    customer
        .set_policy("acme", &policy_allowing(&["proxy-2", "proxy-3"]))
        .await
        .unwrap();

    let answer = proxy
        .revocations(&start.epoch, start.seq, Duration::ZERO)
        .await
        .unwrap();
    let kinds: Vec<(RevocationKind, Option<u32>)> = answer
        .events
        .iter()
        .map(|e| (e.kind, e.key_version))
        .collect();
    assert_eq!(
        kinds,
        [
            (RevocationKind::Grant, Some(1)),
            (RevocationKind::Handover, Some(1)),
            (RevocationKind::Policy, None),
        ]
    );
    assert_eq!(answer.seq, start.seq + 4, "the stream moved on by four");
    let newcomer = patient(&harness, Role::Proxy, "proxy-3")
        .revocations(&start.epoch, start.seq, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(newcomer.events.len(), 1);
    assert_eq!(newcomer.events[0].seq, start.seq + 4);
    harness.stop().await;
}

#[tokio::test]
async fn a_proxy_not_allowed_by_the_policy_sees_no_events_of_that_tenant() {
    let harness = Harness::start().await;
    enroll_oprf(&harness, "acme", &["proxy-1"], None).await;
    enroll_oprf(&harness, "beta", &["proxy-2"], None).await;
    let outsider = patient(&harness, Role::Proxy, "proxy-2");
    let start = outsider.revocations("", 0, Duration::ZERO).await.unwrap();

    let poll = {
        let outsider = outsider.clone();
        let epoch = start.epoch.clone();
        tokio::spawn(async move {
            outsider
                .revocations(&epoch, start.seq, Duration::from_secs(30))
                .await
        })
    };
    harness
        .client(Role::Customer, "acme")
        .shred("acme", 1, &ShredRequest::default())
        .await
        .unwrap();
    harness
        .client(Role::Customer, "beta")
        .shred("beta", 1, &ShredRequest::default())
        .await
        .unwrap();
    // The poll skips acme's shred and answers with beta's.
    let answer = poll.await.unwrap().unwrap();
    assert_eq!(answer.events.len(), 1, "{answer:?}");
    assert_eq!(answer.events[0].tenant, "beta");
    let everything = outsider
        .revocations(&start.epoch, start.seq, Duration::ZERO)
        .await
        .unwrap();
    assert!(everything.events.iter().all(|e| e.tenant == "beta"));
    assert_eq!(everything.seq, start.seq + 2);
    harness.stop().await;
}

#[tokio::test]
async fn a_stale_epoch_gets_a_reset() {
    let harness = Harness::start().await;
    enroll_oprf(&harness, "acme", &["proxy-1"], None).await;
    let proxy = patient(&harness, Role::Proxy, "proxy-1");
    let start = proxy.revocations("", 0, Duration::ZERO).await.unwrap();
    harness
        .client(Role::Customer, "acme")
        .shred("acme", 1, &ShredRequest::default())
        .await
        .unwrap();

    // Another process's epoch (a restarted trustee): reset at the current position, no events,
    // and at once even with a long wait.
    let stale = proxy
        .revocations("0123abcd", 0, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(stale.reset);
    assert!(stale.events.is_empty());
    assert_eq!(stale.epoch, start.epoch);
    assert_eq!(stale.seq, start.seq + 1);
    // A position ahead of the stream is as stale.
    let ahead = proxy
        .revocations(&start.epoch, stale.seq + 5, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(ahead.reset);

    // A restart starts a new stream.
    let (dir, ca, config) = harness.stop_and_keep().await;
    let harness = Harness::launch(dir, ca, config).await;
    let proxy = patient(&harness, Role::Proxy, "proxy-1");
    let restarted = proxy
        .revocations(&start.epoch, stale.seq, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(restarted.reset);
    assert_ne!(restarted.epoch, start.epoch);
    harness.stop().await;
}

#[tokio::test]
async fn stopping_the_trustee_ends_open_long_polls() {
    let trustee = Bare::start().await;
    let proxy = trustee.client(Role::Proxy, "proxy-1");
    let start = proxy.revocations("", 0, Duration::ZERO).await.unwrap();
    let poll = tokio::spawn(async move {
        proxy
            .revocations(&start.epoch, start.seq, Duration::from_secs(30))
            .await
    });
    trustee.until_polls_wait(1).await;

    // The stop does not wait out the poll's 30 s: the poll is answered (with nothing) at
    // shutdown. The bound only keeps a hang from running forever.
    tokio::time::timeout(Duration::from_secs(25), trustee.running.stop())
        .await
        .expect("the trustee stopped despite an open long poll");
    let answer = poll.await.unwrap().unwrap();
    assert!(!answer.reset);
    assert!(answer.events.is_empty());
    assert_eq!(answer.seq, start.seq);
}

#[tokio::test]
async fn audit_from_returns_only_the_new_entries_and_they_chain_onto_the_old_head() {
    let harness = Harness::start().await;
    enroll_oprf(&harness, "acme", &["proxy-1"], None).await;
    let customer = harness.client(Role::Customer, "acme");
    let proxy = harness.client(Role::Proxy, "proxy-1");
    let first = customer.audit("acme").await.unwrap();
    verify_log(&first, &harness.public_key).unwrap();
    let head = first.entries.last().unwrap().clone();

    for i in 0..3 {
        let request = evaluate_request(&format!("e-{i}"), "photos", "cat", CAT);
        evaluate_decoded(&proxy, "acme", &request).await.unwrap();
    }
    let new = customer.audit_from("acme", head.seq + 1).await.unwrap();
    assert_eq!(new.entries.len(), 3);
    assert_eq!(new.entries[0].seq, head.seq + 1);
    assert_eq!(
        new.entries[0].prev, head.hash,
        "the new part links to the old head"
    );
    for pair in new.entries.windows(2) {
        assert_eq!(pair[1].prev, pair[0].hash);
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    let checkpoint = new.checkpoint.clone().unwrap();
    assert!(checkpoint.verify_signature(&harness.public_key));
    assert_eq!(checkpoint.seq, head.seq + 3);
    assert_eq!(&checkpoint.head, &new.entries[2].hash);

    // Old plus new is the whole log, and verifies as one.
    let mut whole = first.clone();
    whole.entries.extend(new.entries.clone());
    whole.checkpoint = new.checkpoint.clone();
    verify_log(&whole, &harness.public_key).unwrap();
    assert_eq!(whole.entries, customer.audit("acme").await.unwrap().entries);

    // Nothing new: no entries, still a checkpoint over the head.
    let none = customer.audit_from("acme", head.seq + 4).await.unwrap();
    assert!(none.entries.is_empty());
    assert_eq!(none.checkpoint.unwrap().seq, head.seq + 3);
    // from=1 is everything.
    assert_eq!(
        customer.audit_from("acme", 1).await.unwrap().entries.len(),
        whole.entries.len()
    );
    for path in [
        "/v1/tenants/acme/audit?from=x",
        "/v1/tenants/acme/audit?from=-1",
        "/v1/tenants/acme/audit?from=",
    ] {
        let error = raw_error(&harness, (Role::Customer, "acme"), "GET", path, 400).await;
        assert_eq!(error.reason, "invalid_query", "{path}");
    }
    harness.stop().await;
}
