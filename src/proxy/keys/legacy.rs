//! The legacy path ([`crate::crypto::KeyScheme::ShamirTmk`]): rebuild the tenant master key
//! from released shares, verify it against the commitment and derive the tenant KEK. Kept so
//! that tenants registered before per-object keys keep reading and writing (format v1/v2) until
//! their key is rotated.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::cache::{CacheKey, Scope};
use super::{
    CustomerShare, KeyService, ReleaseContext, ReleaseError, TenantKeys, classify, customer_name,
    holders_to_ask, record_failure,
};
use crate::crypto::{envelope, shamir};
use crate::proxy::error::ProxyError;
use crate::secret::{Kek, Share};

type Released = (String, Result<Share, ReleaseError>);

/// [`KeyService::kek`] for a tenant whose scheme the caller checked.
pub(super) async fn kek(
    service: &KeyService,
    tenant: &TenantKeys,
    sse_c: Option<&[u8]>,
    context: &ReleaseContext,
) -> Result<Arc<Kek>, ProxyError> {
    let metadata = &tenant.metadata;
    let customer_share = match (&tenant.customer, sse_c) {
        (CustomerShare::SseC { .. }, None) => return Err(ProxyError::MissingShare),
        (CustomerShare::SseC { holder }, Some(raw)) => {
            let share = shamir::share_from_raw(metadata, holder, raw)
                .map_err(|_| ProxyError::MalformedShare("the SSE-C key must be 32 bytes"))?;
            shamir::check_share(metadata, &share).map_err(|_| ProxyError::WrongShare)?;
            Some(share)
        }
        // A holder tenant ignores SSE-C headers: its share comes from its holder.
        (CustomerShare::Holder(_), _) => None,
    };
    let cache_key = CacheKey {
        key: tenant.key_id.clone(),
        scope: Scope::Tenant,
        customer: customer_share
            .as_ref()
            .map(|s| shamir::fingerprint(&tenant.key_id, s).to_vec())
            .unwrap_or_default(),
    };
    let ticket = match service.cache.lookup(&cache_key) {
        Ok(kek) => return Ok(kek),
        Err(ticket) => ticket,
    };
    let kek = Arc::new(release(service, tenant, customer_share, context).await?);
    service.cache.insert(cache_key, kek.clone(), None, ticket);
    Ok(kek)
}

/// Asks every holder at once for its share; combines the first k, customer's first.
async fn release(
    service: &KeyService,
    tenant: &TenantKeys,
    customer_share: Option<Share>,
    context: &ReleaseContext,
) -> Result<Kek, ProxyError> {
    let metadata = &tenant.metadata;
    let need = usize::from(metadata.threshold);
    let customer_name = customer_name(tenant).to_owned();
    let mut asks: FuturesUnordered<_> = FuturesUnordered::new();
    for holder in holders_to_ask(tenant) {
        let tenant_id = tenant.key_id.tenant.clone();
        let version = tenant.key_id.version;
        let context = context.clone();
        let timeout = service.timeout;
        asks.push(async move {
            let started = Instant::now();
            let result = tokio::time::timeout(
                timeout,
                holder.source.release(&tenant_id, version, &context),
            )
            .await
            .unwrap_or_else(|_| Err(ReleaseError::Unreachable("timed out".into())));
            metrics::histogram!("treuhand_phase_seconds", "phase" => "trustee_round_trip")
                .record(started.elapsed().as_secs_f64());
            (holder.name, result)
        });
    }

    let mut shares: Vec<Share> = customer_share.into_iter().collect();
    let mut have_customer = !shares.is_empty();
    let mut failures: Vec<(String, ReleaseError)> = Vec::new();
    while !(have_customer && shares.len() >= need) {
        let Some((name, result)): Option<Released> = asks.next().await else {
            break;
        };
        match result {
            Ok(share) => {
                let registered = metadata.holder(&name).map(|h| h.x);
                if registered != Some(share.x()) || shamir::check_share(metadata, &share).is_err() {
                    tracing::error!(holder = %name, "holder released a share that does not match its fingerprint");
                    failures.push((
                        name,
                        ReleaseError::Protocol("released share does not match".into()),
                    ));
                    continue;
                }
                metrics::counter!("treuhand_releases_total", "holder" => name.clone(), "result" => "released")
                    .increment(1);
                if name == customer_name {
                    have_customer = true;
                }
                shares.push(share);
            }
            Err(e) => {
                record_failure(&name, &e);
                failures.push((name, e));
            }
        }
    }
    if !asks.is_empty() {
        // Let the slower holders' answers arrive in the background instead of cancelling
        // them: a cancelled request tears down its pooled keep-alive connection, and the next
        // release to that holder would pay a fresh mTLS handshake. Their shares are dropped
        // (and zeroized) unused.
        tokio::spawn(async move { while asks.next().await.is_some() {} });
    }
    if !(have_customer && shares.len() >= need) {
        return Err(classify(&customer_name, &failures));
    }
    // The customer's share first, then trustees: combine uses the first k.
    shares.sort_by_key(|s| u8::from(metadata.holder(&customer_name).map(|h| h.x) != Some(s.x())));
    let started = Instant::now();
    let refs: Vec<&Share> = shares.iter().take(need).collect();
    let tmk = shamir::combine(metadata, &refs).map_err(|e| {
        tracing::error!(error = %e, "combining released shares failed");
        ProxyError::BadGateway {
            message: "released shares do not combine to the committed key".into(),
            cause: Some(Box::new(e)),
        }
    })?;
    let kek = envelope::derive_kek(&tmk, &tenant.key_id).map_err(ProxyError::Crypto)?;
    metrics::histogram!("treuhand_phase_seconds", "phase" => "combine_verify")
        .record(started.elapsed().as_secs_f64());
    Ok(kek)
}
