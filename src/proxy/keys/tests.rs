//! The legacy (tenant KEK) path.

use super::*;
use crate::crypto::{envelope, shamir};
use crate::secret::ShareValue;

struct Fixed(Result<[u8; 33], ReleaseError>);

#[async_trait::async_trait]
impl ShareSource for Fixed {
    async fn release(&self, _: &str, _: u32, _: &ReleaseContext) -> Result<Share, ReleaseError> {
        let raw = self.0.clone()?;
        let mut y = [0u8; 32];
        y.copy_from_slice(&raw[1..]);
        Ok(Share::new(raw[0], ShareValue::from_bytes(y)))
    }
}

fn raw(share: &Share) -> [u8; 33] {
    let mut out = [0u8; 33];
    out[0] = share.x();
    out[1..].copy_from_slice(share.expose_secret());
    out
}

fn tenant(name: &str, trustees: Vec<Result<[u8; 33], ReleaseError>>) -> (TenantKeys, [u8; 32]) {
    let tmk = envelope::generate_tmk().unwrap();
    let key = KeyId::new(name, 1).unwrap();
    let mut names = vec!["customer".to_owned()];
    names.extend((0..trustees.len().max(1)).map(|i| format!("t{i}")));
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (metadata, shares) = shamir::split(&tmk, &key, 2, &refs).unwrap();
    let holders = trustees
        .into_iter()
        .enumerate()
        .map(|(i, r)| Holder {
            name: format!("t{i}"),
            source: Arc::new(Fixed(r.map(|_| raw(&shares[i + 1])))),
        })
        .collect();
    let customer = *shares[0].expose_secret();
    let keys = TenantKeys {
        metadata,
        key_id: key,
        customer: CustomerShare::SseC {
            holder: "customer".into(),
        },
        trustees: holders,
    };
    (keys, customer)
}

/// Whether an error is the one a case expects.
type Expected = fn(&ProxyError) -> bool;

fn context() -> ReleaseContext {
    ReleaseContext {
        request_id: "r1".into(),
        object: None,
        reason: "test".into(),
        signed: None,
    }
}

#[tokio::test]
async fn cache_is_bounded_and_keyed_by_the_customer_share() {
    let service = KeyService::new(Duration::from_secs(60), 2, Duration::from_secs(1));
    let mut tenants = Vec::new();
    for name in ["a", "b", "c"] {
        tenants.push(tenant(name, vec![Ok([0; 33])]));
    }
    for (keys, share) in &tenants {
        service.kek(keys, Some(share), &context()).await.unwrap();
    }
    assert_eq!(service.cached(), 2, "max_entries bounds the cache");
    let (keys, _) = &tenants[2];
    // A share of another key, no share, a share of the wrong length.
    let refused: [(Option<&[u8]>, Expected); 3] = [
        (Some(&[9; 32]), |e| matches!(e, ProxyError::WrongShare)),
        (None, |e| matches!(e, ProxyError::MissingShare)),
        (Some(&[9; 16]), |e| {
            matches!(e, ProxyError::MalformedShare(_))
        }),
    ];
    for (share, expected) in refused {
        let result = service.kek(keys, share, &context()).await;
        assert!(result.as_ref().is_err_and(expected), "{:?}", result.err());
    }
}

#[tokio::test]
async fn ttl_zero_never_caches_and_failures_are_classified() {
    let service = KeyService::new(Duration::ZERO, 10, Duration::from_secs(1));
    let (keys, share) = tenant("a", vec![Ok([0; 33])]);
    service.kek(&keys, Some(&share), &context()).await.unwrap();
    assert_eq!(service.cached(), 0);

    // What a holder's failure becomes for the client.
    let failures: [(&str, ReleaseError, Expected); 3] = [
        ("b", ReleaseError::Unreachable("down".into()), |e| {
            matches!(e, ProxyError::Unavailable { .. })
        }),
        (
            "c",
            ReleaseError::Denied {
                reason: "tenant_suspended".into(),
            },
            |e| matches!(e, ProxyError::Denied { message, .. } if message.contains("tenant_suspended")),
        ),
        ("d", ReleaseError::Protocol("x".into()), |e| {
            matches!(e, ProxyError::BadGateway { .. })
        }),
    ];
    for (name, failure, expected) in failures {
        let (keys, share) = tenant(name, vec![Err(failure)]);
        let result = service.kek(&keys, Some(&share), &context()).await;
        assert!(
            result.as_ref().is_err_and(expected),
            "{name}: {:?}",
            result.err()
        );
    }
    // 2-of-3: one trustee down, the other answers.
    let (keys, share) = tenant(
        "e",
        vec![Err(ReleaseError::Unreachable("down".into())), Ok([0; 33])],
    );
    service.kek(&keys, Some(&share), &context()).await.unwrap();
}
