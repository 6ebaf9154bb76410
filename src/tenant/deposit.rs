//! Deposits shares with trustees (and the customer's holder) through the trustee client.

use std::path::Path;
use std::sync::Arc;

use super::Deposit;
use crate::trustee::client::TrusteeClient;
use crate::trustee::policy::Policy;
use crate::trustee::wire::EnrollRequest;

/// Deposits through [`TrusteeClient`] with the customer admin's mTLS identity.
pub struct TrusteeDepositor {
    tls: Arc<rustls::ClientConfig>,
    allowed_proxies: Vec<String>,
    rate_limit: Option<crate::trustee::policy::RateLimit>,
    /// Send no policy: the holder keeps the tenant's existing one (`tenant rotate`).
    keep_policy: bool,
}

impl TrusteeDepositor {
    /// Loads the customer admin's mTLS identity; `allowed_proxies` go into the tenant policy.
    ///
    /// # Errors
    /// TLS loading errors.
    pub fn new(
        ca: &Path,
        cert: &Path,
        key: &Path,
        allowed_proxies: Vec<String>,
    ) -> Result<Self, crate::tls::Error> {
        Ok(Self::from_tls(
            crate::tls::client_config(ca, Some((cert, key)))?,
            allowed_proxies,
        ))
    }

    /// From an existing client TLS config.
    pub fn from_tls(tls: Arc<rustls::ClientConfig>, allowed_proxies: Vec<String>) -> Self {
        Self {
            tls,
            allowed_proxies,
            rate_limit: None,
            keep_policy: false,
        }
    }

    /// A depositor for a further key version of an existing tenant: it sends no policy, so
    /// every holder keeps the policy the customer set (an enrollment without one keeps it).
    pub fn keeping_policy(tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            tls,
            allowed_proxies: Vec::new(),
            rate_limit: None,
            keep_policy: true,
        }
    }

    /// Sets the initial release rate limit of the deposited policy (default: the trustee's).
    pub fn with_rate_limit(mut self, rate_limit: crate::trustee::policy::RateLimit) -> Self {
        self.rate_limit = Some(rate_limit);
        self
    }
}

#[async_trait::async_trait]
impl super::Depositor for TrusteeDepositor {
    async fn deposit(&self, deposit: Deposit<'_>) -> Result<(), String> {
        let client =
            TrusteeClient::new(deposit.url, self.tls.clone()).map_err(|e| e.to_string())?;
        let request = EnrollRequest {
            metadata: deposit.metadata.clone(),
            holder: deposit.holder.to_owned(),
            share: deposit.envelope.to_owned(),
            policy: (!self.keep_policy).then(|| Policy {
                allowed_proxies: self.allowed_proxies.clone(),
                rate_limit: self
                    .rate_limit
                    .unwrap_or_else(|| Policy::default().rate_limit),
                ..Policy::default()
            }),
            sigv4: deposit.sigv4.cloned(),
        };
        client
            .enroll(&deposit.metadata.tenant, &request)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}
