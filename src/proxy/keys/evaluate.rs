//! The per-object path ([`crate::crypto::KeyScheme::Oprf`]): every holder evaluates its share
//! of the tenant key on the object's `H(x)` and proves it did; the proxy checks each proof
//! against the holder's registered `K_i`, combines `Y = k·H(x)` in the exponent and derives the
//! object's KEK `HKDF(Y, x)`. Nobody, the proxy included, ever holds the tenant key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use curve25519_dalek::RistrettoPoint;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::cache::{Cache, CacheKey};
use super::{
    CustomerShare, KeyService, ReleaseContext, ReleaseError, TenantKeys, classify, customer_name,
    holders_to_ask, record_failure,
};
use crate::crypto::oprf::{
    self, Evaluation, LocalEvaluation, ObjectIdentity, ObjectPoint, OprfError, RegisteredKey,
};
use crate::crypto::{Error as CryptoError, KeyMetadata};
use crate::proxy::error::ProxyError;
use crate::secret::{Kek, ShareValue};
use crate::trustee::wire::{EvaluateRequest, EvaluatedObject, Justification};

type Evaluated = (String, Result<Evaluation, ReleaseError>);

/// [`KeyService::object_kek`] for a tenant and identity the caller checked.
pub(super) async fn object_kek(
    service: &KeyService,
    tenant: &TenantKeys,
    sse_c: Option<&[u8]>,
    identity: &ObjectIdentity,
    context: &ReleaseContext,
) -> Result<Arc<Kek>, ProxyError> {
    let metadata = &tenant.metadata;
    // A holder tenant ignores SSE-C headers: its part comes from its holder.
    let sse_c = match (&tenant.customer, sse_c) {
        (CustomerShare::SseC { .. }, None) => return Err(ProxyError::MissingShare),
        (CustomerShare::SseC { holder }, Some(raw)) => Some((holder, raw)),
        (CustomerShare::Holder(_), _) => None,
    };
    let encoded = identity.encode().map_err(|e| oprf_internal(&e))?;
    let cache_key = CacheKey {
        key: tenant.key_id.clone(),
        scope: Cache::object_scope(&encoded),
        customer: sse_c
            .map(|(_, raw)| service.cache.share_digest(raw))
            .unwrap_or_default(),
    };
    // The lookup comes before the share's check against K_c (a scalar multiplication, the
    // largest cost of a cached GET in the profile, docs/benchmarks.md): a hit needs none,
    // because an entry is inserted only after its share passed the check below, and the cache
    // key carries the keyed digest of exactly those share bytes. Any other bytes (a wrong,
    // malformed or absent share) miss, and are checked and refused before a holder is asked.
    let ticket = match service.cache.lookup(&cache_key) {
        Ok(kek) => return Ok(kek),
        Err(ticket) => ticket,
    };
    let customer_share = sse_c
        .map(|(holder, raw)| {
            customer_key_share(metadata, holder, raw, |x| {
                service.registered.key(metadata, x).ok().map(|k| *k.point())
            })
        })
        .transpose()?;
    // P is hashed once for the local evaluation and the holders' proofs.
    let point = identity.object_point().map_err(|e| oprf_internal(&e))?;
    // The customer's evaluation replaces its share at once: the share is dropped (zeroized)
    // here, before any holder is asked. When every registered holder must answer (as many
    // holders as the threshold), the combination's holder set is known now, and the share's
    // Lagrange weight is applied here, which saves a scalar multiplication in the combine.
    let local = customer_share
        .map(|share| {
            if metadata.holders.len() == usize::from(metadata.threshold) {
                let everyone: Vec<u8> = metadata.holders.iter().map(|h| h.x).collect();
                oprf::evaluate_local_weighted(&share, &point, &everyone)
            } else {
                Ok(oprf::evaluate_local_at(&share, &point))
            }
        })
        .transpose()
        .map_err(|e| oprf_internal(&e))?;
    let kek = Arc::new(evaluate(service, tenant, local, identity, &point, context).await?);
    service
        .cache
        .insert(cache_key, kek.clone(), Some(identity.clone()), ticket);
    Ok(kek)
}

/// The SSE-C bytes as the customer's OPRF key share, checked against its registered `K_c`:
/// the one parser of a customer share. `registered` gives `K_c` for the customer's x (the
/// request path passes the keys parsed once per process, [`RegisteredKeys`]; the rare
/// "which older version is this share of" question decodes the metadata directly), so both
/// callers check the same things in the same order and refuse with the same errors.
pub(super) fn customer_key_share(
    metadata: &KeyMetadata,
    holder: &str,
    raw: &[u8],
    registered: impl FnOnce(u8) -> Option<RistrettoPoint>,
) -> Result<oprf::KeyShare, ProxyError> {
    let x = metadata
        .holder(holder)
        .map(|h| h.x)
        .ok_or_else(|| ProxyError::KeyMismatch("the customer holder is not registered".into()))?;
    let registered = registered(x).ok_or(ProxyError::WrongShare)?;
    let value = ShareValue::from_slice(raw)
        .ok_or(ProxyError::MalformedShare("the SSE-C key must be 32 bytes"))?;
    let share = oprf::KeyShare::from_bytes(x, value.expose_secret())
        .map_err(|_| ProxyError::MalformedShare("the SSE-C key is not a valid key share"))?;
    // Public keys: comparing them in variable time reveals nothing about the share.
    if share.public_key() != registered {
        return Err(ProxyError::WrongShare);
    }
    Ok(share)
}

/// The holders' registered public keys (`K_i`, and the customer's `K_c`), parsed once: by
/// their encoding in the metadata, so a re-registered key is simply another entry. Public
/// values; bounded (cleared when full, then refilled by the next requests).
#[derive(Debug, Default)]
pub(super) struct RegisteredKeys(std::sync::Mutex<HashMap<String, RegisteredKey>>);

/// Most registered keys kept; a proxy serves a few tenants with a few holders each.
const MAX_REGISTERED_KEYS: usize = 4096;

impl RegisteredKeys {
    /// The registered key of holder `x`.
    fn key(&self, metadata: &KeyMetadata, x: u8) -> Result<RegisteredKey, ReleaseError> {
        let holder =
            metadata.holders.iter().find(|h| h.x == x).ok_or_else(|| {
                ReleaseError::Protocol("holder is not in the key metadata".into())
            })?;
        let mut keys = match self.0.lock() {
            Ok(guard) => guard,
            // Only complete entries are ever inserted: the map is whole.
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(key) = keys.get(&holder.public_key) {
            return Ok(*key);
        }
        let unusable = || ReleaseError::Protocol("holder has no registered public key".into());
        let mut bytes = [0u8; oprf::ELEMENT_LEN];
        hex::decode_to_slice(&holder.public_key, &mut bytes).map_err(|_| unusable())?;
        let key = RegisteredKey::from_bytes(&bytes).map_err(|_| unusable())?;
        if keys.len() >= MAX_REGISTERED_KEYS {
            keys.clear();
        }
        keys.insert(holder.public_key.clone(), key);
        Ok(key)
    }
}

/// Asks every holder at once and combines the first answers that reach the registered
/// threshold together with the customer's part.
async fn evaluate(
    service: &KeyService,
    tenant: &TenantKeys,
    local: Option<LocalEvaluation>,
    identity: &ObjectIdentity,
    point: &ObjectPoint,
    context: &ReleaseContext,
) -> Result<Kek, ProxyError> {
    let metadata = &tenant.metadata;
    let need = usize::from(metadata.threshold);
    let customer_name = customer_name(tenant).to_owned();
    let request = Arc::new(EvaluateRequest {
        justification: Justification::CustomerAccess,
        request_id: context.request_id.clone(),
        object: EvaluatedObject {
            bucket: identity.bucket.clone(),
            key: identity.key.clone(),
            id: STANDARD.encode(identity.id.0),
        },
        reason: context.reason.clone(),
        signed: context.signed.as_deref().cloned(),
    });
    let mut asks: FuturesUnordered<_> = FuturesUnordered::new();
    for holder in holders_to_ask(tenant) {
        let tenant_id = tenant.key_id.tenant.clone();
        let version = tenant.key_id.version;
        let request = request.clone();
        let timeout = service.timeout;
        asks.push(async move {
            let started = Instant::now();
            let result = tokio::time::timeout(
                timeout,
                holder.source.evaluate(&tenant_id, version, &request),
            )
            .await
            .unwrap_or_else(|_| Err(ReleaseError::Unreachable("timed out".into())));
            metrics::histogram!("treuhand_phase_seconds", "phase" => "trustee_round_trip")
                .record(started.elapsed().as_secs_f64());
            (holder.name, result)
        });
    }

    let mut have_customer = local.is_some();
    let locals: Vec<LocalEvaluation> = local.into_iter().collect();
    let mut remote: Vec<(u8, RegisteredKey, Evaluation)> = Vec::new();
    let mut names: Vec<(u8, String)> = Vec::new();
    let mut failures: Vec<(String, ReleaseError)> = Vec::new();
    while !(have_customer && locals.len() + remote.len() >= need) {
        let Some((name, result)): Option<Evaluated> = asks.next().await else {
            break;
        };
        match result.and_then(|evaluation| registered(service, metadata, &name, evaluation)) {
            Ok((x, public, evaluation)) => {
                metrics::counter!("treuhand_releases_total", "holder" => name.clone(), "result" => "evaluated")
                    .increment(1);
                if name == customer_name {
                    have_customer = true;
                }
                remote.push((x, public, evaluation));
                names.push((x, name));
            }
            Err(e) => {
                record_failure(&name, &e);
                failures.push((name, e));
            }
        }
    }
    if !asks.is_empty() {
        // As for releases: let the slower answers arrive in the background, so their pooled
        // keep-alive connections survive. Evaluations are public values; they are dropped.
        tokio::spawn(async move { while asks.next().await.is_some() {} });
    }
    if !(have_customer && locals.len() + remote.len() >= need) {
        return Err(classify(&customer_name, &failures));
    }
    let started = Instant::now();
    // The REGISTERED threshold, never a count from the answers: with fewer answers than the
    // real threshold the interpolation would give a wrong Y that no check here could notice.
    let secret = oprf::combine_at(point, &locals, &remote, need).map_err(|e| match e {
        OprfError::BadEvaluation { index } => {
            let holder = names
                .iter()
                .find(|(x, _)| *x == index)
                .map_or_else(|| format!("holder {index}"), |(_, n)| n.clone());
            tracing::error!(holder = %holder, "a key holder's evaluation does not verify against its registered public key");
            ProxyError::BadGateway {
                message: format!("{holder} answered an evaluation that does not verify; no key was derived"),
                cause: Some(Box::new(e)),
            }
        }
        other => oprf_internal(&other),
    })?;
    let kek = oprf::object_kek(&secret, identity).map_err(|e| oprf_internal(&e))?;
    metrics::histogram!("treuhand_phase_seconds", "phase" => "combine_verify")
        .record(started.elapsed().as_secs_f64());
    Ok(kek)
}

/// The holder's registered x and `K_i` with its answer; an unregistered holder is a protocol
/// error (a registration mistake, not the holder's).
fn registered(
    service: &KeyService,
    metadata: &KeyMetadata,
    name: &str,
    evaluation: Evaluation,
) -> Result<(u8, RegisteredKey, Evaluation), ReleaseError> {
    let x = metadata
        .holder(name)
        .map(|h| h.x)
        .ok_or_else(|| ReleaseError::Protocol("holder is not in the key metadata".into()))?;
    Ok((x, service.registered.key(metadata, x)?, evaluation))
}

/// An OPRF failure that no holder or client caused (the identity encoding, the KDF).
fn oprf_internal(e: &OprfError) -> ProxyError {
    tracing::error!(error = %e, "deriving an object key failed");
    ProxyError::Crypto(CryptoError::Internal("object key derivation"))
}
