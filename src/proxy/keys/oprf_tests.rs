//! The per-object (OPRF) path, against fake holders that evaluate real shares of a
//! `scheme::split`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::crypto::oprf::{self, Evaluation, KeyShare, ObjectId, ObjectIdentity};
use crate::crypto::scheme::{self, SplitOptions};
use crate::trustee::wire::{EvaluateRequest, Justification};

/// How a fake holder answers.
#[derive(Clone)]
enum Answer {
    /// Evaluates its own share honestly.
    Honest,
    /// Evaluates another holder's share (a valid proof for the wrong key).
    OtherShare(u8),
    /// Evaluates honestly, then flips a bit of the proof.
    TamperedProof,
    /// Fails.
    Fail(ReleaseError),
}

/// A holder that evaluates the real shares of a split, and counts and keeps what it is asked.
struct Evaluator {
    shares: Arc<Vec<KeyShare>>,
    x: u8,
    answer: Answer,
    calls: AtomicUsize,
    last: Mutex<Option<EvaluateRequest>>,
}

impl Evaluator {
    fn share(&self, x: u8) -> &KeyShare {
        &self.shares[usize::from(x) - 1]
    }
}

#[async_trait::async_trait]
impl ShareSource for Evaluator {
    async fn release(&self, _: &str, _: u32, _: &ReleaseContext) -> Result<Share, ReleaseError> {
        Err(ReleaseError::Denied {
            reason: "oprf_key_not_releasable".into(),
        })
    }

    async fn evaluate(
        &self,
        tenant: &str,
        key_version: u32,
        request: &EvaluateRequest,
    ) -> Result<Evaluation, ReleaseError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        *self.last.lock().unwrap() = Some(request.clone());
        // The holder builds the identity itself from what it is told, as a trustee does.
        let mut id = [0u8; 32];
        id.copy_from_slice(&STANDARD.decode(&request.object.id).unwrap());
        let identity = ObjectIdentity {
            tenant: tenant.to_owned(),
            key_version,
            bucket: request.object.bucket.clone(),
            key: request.object.key.clone(),
            id: ObjectId(id),
        };
        match &self.answer {
            Answer::Honest => Ok(oprf::evaluate(self.share(self.x), &identity).unwrap()),
            Answer::OtherShare(x) => Ok(oprf::evaluate(self.share(*x), &identity).unwrap()),
            Answer::TamperedProof => {
                let e = oprf::evaluate(self.share(self.x), &identity).unwrap();
                let mut proof = e.proof.to_bytes();
                proof[40] ^= 1;
                Ok(Evaluation::from_bytes(e.element.compress().as_bytes(), &proof).unwrap())
            }
            Answer::Fail(e) => Err(e.clone()),
        }
    }
}

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// An OPRF tenant: the customer (x = 1) and one trustee per answer (`t0`, `t1`, ...), with the
/// threshold given. Returns the keys, the customer's raw share and the fake trustees.
struct Oprf {
    keys: TenantKeys,
    customer: [u8; 32],
    trustees: Vec<Arc<Evaluator>>,
    shares: Arc<Vec<KeyShare>>,
}

fn oprf_tenant(name: &str, threshold: u8, answers: Vec<Answer>, holder: Option<Answer>) -> Oprf {
    let key = KeyId::new(name, 1).unwrap();
    let mut names = vec!["customer".to_owned()];
    names.extend((0..answers.len()).map(|i| format!("t{i}")));
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (metadata, shares) =
        scheme::split(&key, threshold, &refs, SplitOptions::default()).unwrap();
    let key_shares: Arc<Vec<KeyShare>> = Arc::new(
        shares
            .iter()
            .map(|s| scheme::key_share(&metadata, s).unwrap())
            .collect(),
    );
    let fake = |x: u8, answer: Answer| {
        Arc::new(Evaluator {
            shares: key_shares.clone(),
            x,
            answer,
            calls: AtomicUsize::new(0),
            last: Mutex::new(None),
        })
    };
    let trustees: Vec<Arc<Evaluator>> = answers
        .into_iter()
        .enumerate()
        .map(|(i, a)| fake(u8::try_from(i).unwrap() + 2, a))
        .collect();
    let customer = match holder {
        None => CustomerShare::SseC {
            holder: "customer".into(),
        },
        Some(answer) => CustomerShare::Holder(Holder {
            name: "customer".into(),
            source: fake(1, answer),
        }),
    };
    let keys = TenantKeys {
        metadata,
        key_id: key,
        customer,
        trustees: trustees
            .iter()
            .enumerate()
            .map(|(i, t)| Holder {
                name: format!("t{i}"),
                source: t.clone(),
            })
            .collect(),
    };
    Oprf {
        keys,
        customer: *shares[0].expose_secret(),
        trustees,
        shares: key_shares,
    }
}

fn identity(tenant: &Oprf, key: &str, id: u8) -> ObjectIdentity {
    ObjectIdentity {
        tenant: tenant.keys.key_id.tenant.clone(),
        key_version: tenant.keys.key_id.version,
        bucket: "b".into(),
        key: key.into(),
        id: ObjectId([id; 32]),
    }
}

fn context() -> ReleaseContext {
    ReleaseContext {
        request_id: "r1".into(),
        object: None,
        reason: "GetObject".into(),
        signed: None,
    }
}

/// The KEK every holder answering honestly gives (computed without the proxy).
fn expected_kek(tenant: &Oprf, identity: &ObjectIdentity) -> Kek {
    let answers: Vec<_> = tenant
        .shares
        .iter()
        .map(|s| {
            (
                s.index(),
                s.public_key(),
                oprf::evaluate(s, identity).unwrap(),
            )
        })
        .collect();
    let t = usize::from(tenant.keys.metadata.threshold);
    let y = oprf::verify_and_combine(identity, &answers[..t], t).unwrap();
    oprf::object_kek(&y, identity).unwrap()
}

fn calls(tenant: &Oprf) -> usize {
    tenant
        .trustees
        .iter()
        .map(|t| t.calls.load(Ordering::SeqCst))
        .sum()
}

#[tokio::test]
async fn a_holder_answering_a_wrong_element_is_named_and_nothing_is_decrypted() {
    let service = KeyService::new(Duration::from_secs(60), 16, Duration::from_secs(1));
    // 3-of-3: the proxy needs both trustees, so a bad answer cannot be outvoted.
    for (bad, label) in [
        (Answer::OtherShare(2), "another holder's evaluation"),
        (Answer::TamperedProof, "a tampered proof"),
    ] {
        let tenant = oprf_tenant("acme", 3, vec![Answer::Honest, bad], None);
        let object = identity(&tenant, "k", 1);
        let result = service
            .object_kek(&tenant.keys, Some(&tenant.customer), &object, &context())
            .await;
        match result {
            Err(ProxyError::BadGateway { message, .. }) => {
                assert!(message.contains("t1"), "{label}: {message}");
                assert!(!message.contains("t0"), "{label}: {message}");
            }
            other => panic!("{label}: expected a 502 naming t1, got {:?}", other.err()),
        }
        assert_eq!(service.cached(), 0, "{label}: no key was derived or kept");
        assert!(service.holdings().is_empty());
    }
}

#[tokio::test]
async fn the_object_key_cache_is_per_object_and_needs_the_right_share() {
    let service = KeyService::new(Duration::from_secs(60), 16, Duration::from_secs(1));
    let tenant = oprf_tenant("acme", 2, vec![Answer::Honest], None);
    let (a, b) = (identity(&tenant, "a", 1), identity(&tenant, "b", 2));
    let share = Some(&tenant.customer[..]);

    let kek_a = service
        .object_kek(&tenant.keys, share, &a, &context())
        .await
        .unwrap();
    assert_eq!(*kek_a, expected_kek(&tenant, &a));
    assert_eq!(calls(&tenant), 1);
    // The same object again: from the cache, no holder asked.
    let again = service
        .object_kek(&tenant.keys, share, &a, &context())
        .await
        .unwrap();
    assert_eq!(*again, *kek_a);
    assert_eq!(calls(&tenant), 1);
    // Another object (here: the same name, another id) has its own key and its own entry.
    let a2 = identity(&tenant, "a", 9);
    let kek_a2 = service
        .object_kek(&tenant.keys, share, &a2, &context())
        .await
        .unwrap();
    assert_ne!(*kek_a2, *kek_a);
    let kek_b = service
        .object_kek(&tenant.keys, share, &b, &context())
        .await
        .unwrap();
    assert_eq!(*kek_b, expected_kek(&tenant, &b));
    assert_eq!((calls(&tenant), service.cached()), (3, 3));

    // A cached object with a wrong share, no share or a malformed one: never served from the
    // cache (its digest names no entry), refused by the share check, and no holder is asked.
    let other = oprf_tenant("acme", 2, vec![Answer::Honest], None);
    let non_canonical = [0xff; 32];
    type Expected = fn(&ProxyError) -> bool;
    let refused: [(Option<&[u8]>, Expected); 4] = [
        (Some(&other.customer), |e| {
            matches!(e, ProxyError::WrongShare)
        }),
        (None, |e| matches!(e, ProxyError::MissingShare)),
        (Some(&non_canonical), |e| {
            matches!(e, ProxyError::MalformedShare(_))
        }),
        (Some(&[1; 16]), |e| {
            matches!(e, ProxyError::MalformedShare(_))
        }),
    ];
    for (share, expected) in refused {
        let result = service
            .object_kek(&tenant.keys, share, &a, &context())
            .await;
        assert!(result.as_ref().is_err_and(expected), "{:?}", result.err());
    }
    assert_eq!(calls(&tenant), 3);

    // What the process holds: exactly the objects it handled, each with its own key.
    let mut held: Vec<(String, u8)> = service
        .holdings()
        .into_iter()
        .map(|h| match h {
            Held::Object(identity, kek) => {
                assert_eq!(*kek, expected_kek(&tenant, &identity));
                (identity.key, identity.id.0[0])
            }
            Held::Tenant(..) => panic!("an OPRF tenant has no tenant key"),
        })
        .collect();
    held.sort();
    assert_eq!(held, [("a".into(), 1), ("a".into(), 9), ("b".into(), 2)]);

    // The bound holds for object keys too.
    let small = KeyService::new(Duration::from_secs(60), 2, Duration::from_secs(1));
    for id in 1..=3 {
        let object = identity(&tenant, "k", id);
        small
            .object_kek(&tenant.keys, share, &object, &context())
            .await
            .unwrap();
    }
    assert_eq!(small.cached(), 2);
}

#[tokio::test]
async fn a_trustee_outage_fails_closed_with_503_for_an_oprf_tenant() {
    let service = KeyService::new(Duration::from_secs(60), 16, Duration::from_secs(1));
    let down = Answer::Fail(ReleaseError::Unreachable("connection refused".into()));
    let tenant = oprf_tenant("acme", 2, vec![down], None);
    let object = identity(&tenant, "k", 1);
    let result = service
        .object_kek(&tenant.keys, Some(&tenant.customer), &object, &context())
        .await;
    assert!(
        matches!(&result, Err(ProxyError::Unavailable { message, .. }) if message.contains("t0")),
        "{:?}",
        result.err()
    );
    assert_eq!(service.cached(), 0);
    // With a second trustee that answers, one outage is tolerated (3 holders, threshold 2):
    // the registered threshold, customer included, is what counts.
    let down = Answer::Fail(ReleaseError::Unreachable("connection refused".into()));
    let tenant = oprf_tenant("acme", 2, vec![down, Answer::Honest], None);
    let object = identity(&tenant, "k", 1);
    let kek = service
        .object_kek(&tenant.keys, Some(&tenant.customer), &object, &context())
        .await
        .unwrap();
    assert_eq!(*kek, expected_kek(&tenant, &object));
}

#[tokio::test]
async fn a_holder_tenant_needs_its_customer_holder_and_forwards_the_signed_request() {
    let service = KeyService::new(Duration::ZERO, 16, Duration::from_secs(1));
    let signed = Arc::new(SignedRequest {
        method: "GET".into(),
        path: "/b/k".into(),
        query: String::new(),
        headers: vec![("host".into(), "s3.local".into())],
        authorization: Some("AWS4-HMAC-SHA256 Credential=AK/...".into()),
    });
    let ctx = ReleaseContext {
        signed: Some(signed.clone()),
        ..context()
    };
    // 2-of-2, customer's own holder: an SSE-C header is ignored, the holder is asked.
    let tenant = oprf_tenant("acme", 2, vec![Answer::Honest], Some(Answer::Honest));
    let object = identity(&tenant, "k", 4);
    let kek = service
        .object_kek(&tenant.keys, Some(&[7; 32]), &object, &ctx)
        .await
        .unwrap();
    assert_eq!(*kek, expected_kek(&tenant, &object));
    let asked = tenant.trustees[0].last.lock().unwrap().clone().unwrap();
    assert_eq!(asked.signed.as_ref(), Some(&*signed));
    assert_eq!(asked.justification, Justification::CustomerAccess);
    assert_eq!(asked.request_id, "r1");
    assert_eq!(asked.reason, "GetObject");
    assert_eq!(asked.object.id, STANDARD.encode([4; 32]));

    // The customer's holder refuses: its refusal is the answer, whatever the trustees say.
    let refuse = Answer::Fail(ReleaseError::Denied {
        reason: "customer_policy".into(),
    });
    let tenant = oprf_tenant("acme", 2, vec![Answer::Honest], Some(refuse));
    let result = service.object_kek(&tenant.keys, None, &object, &ctx).await;
    assert!(
        matches!(&result, Err(ProxyError::Denied { message, .. }) if message.contains("customer_policy")),
        "{:?}",
        result.err()
    );
}

#[tokio::test]
async fn each_path_refuses_the_other_schemes_tenant_key() {
    let service = KeyService::new(Duration::from_secs(60), 16, Duration::from_secs(1));
    let tenant = oprf_tenant("acme", 2, vec![Answer::Honest], None);
    let result = service
        .kek(&tenant.keys, Some(&tenant.customer), &context())
        .await;
    assert!(matches!(result, Err(ProxyError::KeyMismatch(_))));
    // An identity under another key version than the registered one.
    let mut object = identity(&tenant, "k", 1);
    object.key_version = 2;
    let result = service
        .object_kek(&tenant.keys, Some(&tenant.customer), &object, &context())
        .await;
    assert!(
        matches!(&result, Err(ProxyError::KeyMismatch(m)) if m.contains("version 2")),
        "{:?}",
        result.err()
    );
    assert_eq!(calls(&tenant), 0);
}

#[tokio::test]
async fn holder_keys_parsed_once_follow_a_re_registered_key_version() {
    // No key cache: every call derives, with the holders' keys from the process-wide parse.
    let service = KeyService::new(Duration::ZERO, 16, Duration::from_secs(1));
    // Two registrations of the same tenant key version with different keys (as after a
    // re-deal), then 2-of-3 (the holder set is not known in advance) and 3-of-3 (it is).
    for (threshold, answers) in [
        (2, vec![Answer::Honest]),
        (2, vec![Answer::Honest]),
        (2, vec![Answer::Honest, Answer::Honest]),
        (3, vec![Answer::Honest, Answer::Honest]),
    ] {
        let trustees = answers.len();
        let tenant = oprf_tenant("acme", threshold, answers, None);
        let object = identity(&tenant, "a", 1);
        for _ in 0..2 {
            let kek = service
                .object_kek(&tenant.keys, Some(&tenant.customer), &object, &context())
                .await
                .unwrap();
            assert_eq!(*kek, expected_kek(&tenant, &object));
        }
        // The other registration's customer share is refused for this one.
        let honest = (0..trustees).map(|_| Answer::Honest).collect();
        let other = oprf_tenant("acme", threshold, honest, None);
        let refused = service
            .object_kek(&tenant.keys, Some(&other.customer), &object, &context())
            .await;
        assert!(
            matches!(refused, Err(ProxyError::WrongShare)),
            "{refused:?}"
        );
    }
}
