//! Share sources backed by [`crate::trustee::client::TrusteeClient`]: the trustees and the
//! customer-run holders (the same service), over mTLS with pooled keep-alive connections.

use std::sync::Arc;
use std::time::Duration;

use super::config::{ConfigError, ProxyConfig};
use super::keys::{ReleaseContext, ReleaseError, ShareSource};
use crate::crypto::oprf::Evaluation;
use crate::secret::Share;
use crate::trustee::client::TrusteeClient;
use crate::trustee::wire::{
    AuthorizeRequest, EvaluateRequest, Justification, ObjectRef, ReleaseRequest,
};

/// Builds trustee clients sharing one mTLS client configuration (the proxy's identity).
pub struct TrusteeSources {
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

impl TrusteeSources {
    /// Loads the proxy's mTLS client identity from the config.
    ///
    /// # Errors
    /// [`ConfigError`] for unreadable TLS files.
    pub fn new(config: &ProxyConfig) -> Result<Self, ConfigError> {
        let c = &config.trustee_client;
        let tls = crate::tls::client_config(&c.ca, Some((&c.cert, &c.key)))
            .map_err(|e| ConfigError(format!("trustee client TLS: {e}")))?;
        Ok(Self::from_tls(
            tls,
            Duration::from_millis(config.release_timeout_ms),
        ))
    }

    /// From an existing client TLS config.
    pub fn from_tls(tls: Arc<rustls::ClientConfig>, timeout: Duration) -> Self {
        Self { tls, timeout }
    }
}

impl super::SourceFactory for TrusteeSources {
    fn source(&self, url: &str) -> Result<Arc<dyn ShareSource>, ConfigError> {
        let client = TrusteeClient::new(url, self.tls.clone())
            .map_err(|e| ConfigError(e.to_string()))?
            .with_timeout(self.timeout);
        Ok(Arc::new(TrusteeSource { client }))
    }

    fn feed(&self, url: &str) -> Option<Arc<dyn super::revocation::RevocationFeed>> {
        // Its own client (and connection pool): the long poll holds a connection for up to
        // `WAIT`, and must outlast it.
        let client = TrusteeClient::new(url, self.tls.clone())
            .map_err(|e| tracing::warn!(holder = %url, error = %e, "no revocation stream for this holder URL"))
            .ok()?
            .with_timeout(super::revocation::WAIT + FEED_GRACE);
        Some(Arc::new(client))
    }
}

/// How much longer than the long-poll wait a revocation call may take before it counts as
/// failed (the stream is then down and the fallback TTL applies).
const FEED_GRACE: Duration = Duration::from_secs(5);

struct TrusteeSource {
    client: TrusteeClient,
}

#[async_trait::async_trait]
impl ShareSource for TrusteeSource {
    async fn release(
        &self,
        tenant: &str,
        key_version: u32,
        context: &ReleaseContext,
    ) -> Result<Share, ReleaseError> {
        let object = context.object.as_ref().map(|(bucket, key)| ObjectRef {
            bucket: bucket.clone(),
            // The trustee limits object references to 1024 bytes; S3 keys can be that long.
            key: truncate(key, crate::trustee::wire::MAX_OBJECT_REF_BYTES),
        });
        let request = ReleaseRequest {
            justification: Justification::CustomerAccess,
            reason: context.reason.clone(),
            request_id: context.request_id.clone(),
            object,
        };
        self.client
            .release(tenant, key_version, &request)
            .await
            .map_err(release_error)
    }

    async fn evaluate(
        &self,
        tenant: &str,
        key_version: u32,
        request: &EvaluateRequest,
    ) -> Result<Evaluation, ReleaseError> {
        self.client
            .evaluate(tenant, key_version, request)
            .await
            .map_err(release_error)
    }

    async fn authorize(
        &self,
        tenant: &str,
        request: &AuthorizeRequest,
    ) -> Result<(), ReleaseError> {
        self.client
            .authorize(tenant, request)
            .await
            .map(|_| ())
            .map_err(release_error)
    }
}

/// What a trustee client error means for a release or evaluation.
fn release_error(e: crate::trustee::Error) -> ReleaseError {
    use crate::trustee::Error as T;
    match e {
        T::Unreachable(m) => ReleaseError::Unreachable(m),
        T::Denied(denial) => ReleaseError::Denied {
            reason: denial.to_string(),
        },
        T::Shredded => ReleaseError::Shredded,
        T::UnknownTenant => ReleaseError::UnknownTenant,
        T::AuditUnavailable => ReleaseError::Unreachable("audit log unavailable".into()),
        other => ReleaseError::Protocol(other.to_string()),
    }
}

/// The longest prefix of `text` of at most `max` bytes, cut at a character boundary.
fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
