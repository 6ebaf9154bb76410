//! Share holders for the tests (trustees and customer-run holders).
//!
//! STAND-IN until the trustee branch is merged: in-process holders that behave like the
//! trustee's release endpoint (up/down, deny). Tenants are enrolled through the real
//! `treuhand::tenant::create` ceremony.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use treuhand::crypto::{KeyMetadata, ShareEnvelope};
use treuhand::proxy::config::{ConfigError, TenantConfig};
use treuhand::proxy::keys::{ReleaseContext, ReleaseError, ShareSource};
use treuhand::secret::{Share, ShareValue};

use super::{Pki, TestTenant};

#[derive(Default)]
struct FakeHolder {
    shares: Mutex<HashMap<(String, u32), [u8; 33]>>,
    down: AtomicBool,
    deny: Mutex<Option<String>>,
    releases: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl ShareSource for FakeHolder {
    async fn release(
        &self,
        tenant: &str,
        key_version: u32,
        context: &ReleaseContext,
    ) -> Result<Share, ReleaseError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ReleaseError::Unreachable("connection refused".into()));
        }
        if let Some(reason) = self.deny.lock().unwrap().clone() {
            return Err(ReleaseError::Denied { reason });
        }
        self.releases
            .lock()
            .unwrap()
            .push(context.request_id.clone());
        let shares = self.shares.lock().unwrap();
        let raw = shares
            .get(&(tenant.to_owned(), key_version))
            .ok_or(ReleaseError::UnknownTenant)?;
        let mut y = [0u8; 32];
        y.copy_from_slice(&raw[1..]);
        Ok(Share::new(raw[0], ShareValue::from_bytes(y)))
    }
}

/// A set of named holders.
#[derive(Clone, Default)]
pub struct Holders {
    holders: Arc<Mutex<HashMap<String, Arc<FakeHolder>>>>,
}

struct Factory(Holders);

impl treuhand::proxy::SourceFactory for Factory {
    fn source(&self, url: &str) -> Result<Arc<dyn ShareSource>, ConfigError> {
        let name = url
            .strip_prefix("fake://")
            .ok_or_else(|| ConfigError(format!("bad url {url}")))?;
        let holders = self.0.holders.lock().unwrap();
        let h = holders
            .get(name)
            .ok_or_else(|| ConfigError(format!("unknown holder {name}")))?;
        Ok(h.clone() as Arc<dyn ShareSource>)
    }
}

struct Depositor(Holders);

#[async_trait::async_trait]
impl treuhand::tenant::Depositor for Depositor {
    async fn deposit(
        &self,
        url: &str,
        metadata: &KeyMetadata,
        _holder: &str,
        envelope: &str,
    ) -> Result<(), String> {
        let name = url.strip_prefix("fake://").ok_or("bad url")?;
        let parsed = ShareEnvelope::parse(envelope).map_err(|e| e.to_string())?;
        let mut raw = [0u8; 33];
        raw[0] = parsed.share.x();
        raw[1..].copy_from_slice(parsed.share.expose_secret());
        let holders = self.0.holders.lock().unwrap();
        let h = holders.get(name).ok_or("unknown holder")?;
        h.shares
            .lock()
            .unwrap()
            .insert((metadata.tenant.clone(), metadata.key_version), raw);
        Ok(())
    }
}

impl Holders {
    /// Starts holders with these names.
    pub async fn start(_pki: &Pki, names: &[&str]) -> Self {
        let h = Holders::default();
        for n in names {
            h.holders
                .lock()
                .unwrap()
                .insert((*n).to_owned(), Arc::new(FakeHolder::default()));
        }
        h
    }

    pub fn url(&self, name: &str) -> String {
        format!("fake://{name}")
    }

    fn get(&self, name: &str) -> Arc<FakeHolder> {
        self.holders.lock().unwrap().get(name).unwrap().clone()
    }

    /// Stops (down = true) or restarts (false) a holder.
    pub async fn set_down(&self, name: &str, down: bool) {
        self.get(name).down.store(down, Ordering::SeqCst);
    }

    /// Number of releases a holder served.
    pub fn releases(&self, name: &str) -> usize {
        self.get(name).releases.lock().unwrap().len()
    }

    pub fn factory(&self) -> impl treuhand::proxy::SourceFactory + use<> {
        Factory(self.clone())
    }

    /// Runs the real key ceremony for a tenant and returns its registration and credentials.
    pub async fn enroll(
        &self,
        dir: &Path,
        tenant: &str,
        trustees: &[&str],
        threshold: u8,
        customer_holder: Option<&str>,
    ) -> (TenantConfig, TestTenant) {
        let params = treuhand::tenant::CreateParams {
            tenant: tenant.into(),
            key_version: 1,
            threshold,
            trustees: trustees
                .iter()
                .map(|t| treuhand::tenant::TrusteeSpec {
                    holder: (*t).into(),
                    url: self.url(t),
                })
                .collect(),
            customer_holder_url: customer_holder.map(|h| self.url(h)),
            access_key_id: format!("AK{}", tenant.to_uppercase().replace('-', "")),
            secret_access_key: format!("secret-{tenant}-0123456789"),
            registration_dir: dir.join("tenants"),
            share_dir: dir.join("shares"),
        };
        let created = treuhand::tenant::create(&params, &Depositor(self.clone()))
            .await
            .unwrap();
        let text = std::fs::read_to_string(&created.registration).unwrap();
        let config: TenantConfig = toml::from_str(&text).unwrap();
        let share = created.share_raw.as_ref().map(|p| {
            let bytes = std::fs::read(p).unwrap();
            let mut out = [0u8; 32];
            out.copy_from_slice(&bytes);
            out
        });
        let test = TestTenant {
            id: tenant.into(),
            access_key_id: params.access_key_id.clone(),
            secret_access_key: params.secret_access_key.clone(),
            share,
        };
        (config, test)
    }
}
