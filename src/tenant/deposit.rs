//! Deposits shares with trustees through the trustee client (placeholder until it lands).

use std::path::Path;
use std::sync::Arc;

use crate::crypto::KeyMetadata;

/// Deposits through `trustee::client::TrusteeClient` with the customer admin's mTLS identity.
pub struct TrusteeDepositor {
    _tls: Arc<rustls::ClientConfig>,
}

impl TrusteeDepositor {
    /// Loads the customer admin's mTLS identity.
    ///
    /// # Errors
    /// TLS loading errors.
    pub fn new(ca: &Path, cert: &Path, key: &Path) -> Result<Self, crate::tls::Error> {
        Ok(Self {
            _tls: crate::tls::client_config(ca, Some((cert, key)))?,
        })
    }
}

#[async_trait::async_trait]
impl super::Depositor for TrusteeDepositor {
    async fn deposit(
        &self,
        _url: &str,
        _metadata: &KeyMetadata,
        _holder: &str,
        _envelope: &str,
    ) -> Result<(), String> {
        Err("the trustee client is not available in this build".into())
    }
}
