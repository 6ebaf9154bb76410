//! Share sources backed by the trustee client (placeholder until the trustee branch lands).

use std::sync::Arc;

use super::config::{ConfigError, ProxyConfig};
use super::keys::ShareSource;

/// Builds trustee clients sharing one mTLS client configuration.
pub struct TrusteeSources {
    _tls: Arc<rustls::ClientConfig>,
}

impl TrusteeSources {
    /// Loads the proxy's mTLS client identity.
    ///
    /// # Errors
    /// [`ConfigError`] for unreadable TLS files.
    pub fn new(config: &ProxyConfig) -> Result<Self, ConfigError> {
        let c = &config.trustee_client;
        let tls = crate::tls::client_config(&c.ca, Some((&c.cert, &c.key)))
            .map_err(|e| ConfigError(format!("trustee client TLS: {e}")))?;
        Ok(Self { _tls: tls })
    }
}

impl super::SourceFactory for TrusteeSources {
    fn source(&self, _url: &str) -> Result<Arc<dyn ShareSource>, ConfigError> {
        Err(ConfigError(
            "the trustee client is not available in this build".into(),
        ))
    }
}
