//! What a subverted proxy gets from a strict tenant's holders with its own mTLS identity and
//! no live customer request: nothing that opens the tenant's objects.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use treuhand::tls::Role;
use treuhand::trustee::Error;
use treuhand::trustee::audit::AuditEvent;
use treuhand::trustee::client::TrusteeClient;
use treuhand::trustee::wire::{Justification, ReleaseRequest};

use support::stack::PROXY_NAME;
use support::strict::strict_stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_certificate_alone_gets_nothing_from_a_strict_tenants_holder() {
    let (enrolled, proxy, ak, secret) = strict_stack().await;
    let customer = support::TestTenant {
        id: "strict".into(),
        access_key_id: ak,
        secret_access_key: secret,
        share: None,
    };
    // The customer writes an object through the proxy (its holder checked the signature).
    let raw = support::Raw::new(&proxy, &enrolled.pki);
    raw.create_bucket(&customer, "bucket").await;
    let put = raw
        .put(
            &customer,
            "/bucket/secret.txt",
            &[],
            b"the customer's data".to_vec(),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let files = support::stored_files(&enrolled.root.join("storage/tenants/strict/objects"));
    let (_, stored) = files
        .iter()
        .find(|(_, bytes)| bytes.len() > 64)
        .expect("the object's ciphertext");
    let header = treuhand::format::peek_header(stored).unwrap();
    assert_eq!(header.version, 3);
    let object_id = header.object_id.expect("a v3 object id").0;

    // The proxy's own client identity, as a subverted proxy would use it.
    let (cert, key) = enrolled
        .pki
        .client(Role::Proxy, PROXY_NAME, "attack-proxy-client");
    let tls = treuhand::tls::client_config(&enrolled.pki.ca_pem, Some((&cert, &key))).unwrap();
    let at = |holder: &str| TrusteeClient::new(&enrolled.holders.url(holder), tls.clone()).unwrap();

    // 1. /v2 evaluate at the customer's holder without the customer's signature: refused and
    //    logged.
    let request = support::evaluate_request("attack-1", "bucket", "secret.txt", object_id);
    match at("holder").evaluate("strict", 1, &request).await {
        Err(Error::Denied(reason)) => assert_eq!(reason.to_string(), "signature_required"),
        other => panic!("expected a denial, got {other:?}"),
    }
    let audit = TrusteeClient::new(
        &enrolled.holders.url("holder"),
        enrolled.holders.customer_tls("strict"),
    )
    .unwrap()
    .audit("strict")
    .await
    .unwrap();
    let entry = audit
        .entries
        .iter()
        .find(|e| e.request_id.as_deref() == Some("attack-1"))
        .expect("the denial is in the holder's audit log");
    assert_eq!(entry.event, AuditEvent::Denial);
    assert_eq!(entry.actor, format!("proxy:{PROXY_NAME}"));

    // 2. /v1 release of the OPRF key: refused (nobody can obtain an OPRF share).
    let release = ReleaseRequest {
        justification: Justification::CustomerAccess,
        request_id: "attack-2".into(),
        object: None,
        reason: "attack".into(),
    };
    for holder in ["holder", "trustee"] {
        let refused = at(holder).release("strict", 1, &release).await;
        assert!(
            matches!(refused, Err(Error::Denied(_))),
            "{holder}: {refused:?}"
        );
    }

    // 3. The trustee (which does not check this tenant's signatures) evaluates for the
    //    proxy, but one answer of a 2-of-2 key opens nothing: the combination refuses it.
    let request = support::evaluate_request("attack-3", "bucket", "secret.txt", object_id);
    let evaluation = at("trustee").evaluate("strict", 1, &request).await.unwrap();
    let metadata = &enrolled.configs[0].metadata;
    let trustee_x = metadata
        .holders
        .iter()
        .find(|h| h.name == "trustee")
        .map(|h| h.x)
        .unwrap();
    let identity = treuhand::crypto::oprf::ObjectIdentity {
        tenant: "strict".into(),
        key_version: 1,
        bucket: "bucket".into(),
        key: "secret.txt".into(),
        id: treuhand::crypto::oprf::ObjectId(object_id),
    };
    let k_trustee = treuhand::crypto::scheme::holder_key(metadata, trustee_x).unwrap();
    let threshold = usize::from(metadata.threshold);
    assert_eq!(threshold, 2);
    assert!(
        treuhand::crypto::oprf::verify_and_combine(
            &identity,
            &[(trustee_x, k_trustee, evaluation)],
            threshold
        )
        .is_err(),
        "one holder's evaluation must not yield the object secret"
    );
    proxy.stop().await;
}
