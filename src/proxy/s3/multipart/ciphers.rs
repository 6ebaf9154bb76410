//! The in-memory cache of the ciphers of uploads in progress, so a Complete without SSE-C
//! headers (stock clients send none) still finds its key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::format;

/// How long an in-progress upload's cipher stays in memory.
const UPLOAD_CIPHER_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The ciphers of uploads in progress, by tenant and upload directory. Each tenant has its own
/// cap, and a tenant at its cap evicts its own oldest entry: one tenant's open uploads can
/// never push out another tenant's (before, one pool of 10,000 for all tenants did).
#[derive(Default)]
pub(crate) struct UploadCiphers {
    by_tenant: HashMap<String, HashMap<String, (Arc<format::ObjectCipher>, Instant)>>,
}

impl UploadCiphers {
    pub(super) fn insert(
        &mut self,
        tenant: &str,
        dir: &str,
        cipher: format::ObjectCipher,
        cap: usize,
    ) {
        if cap == 0 {
            return;
        }
        let uploads = self.by_tenant.entry(tenant.to_owned()).or_default();
        uploads.retain(|_, (_, t)| t.elapsed() < UPLOAD_CIPHER_TTL);
        while uploads.len() >= cap {
            // O(cap) per eviction; caps are in the thousands and eviction is the rare case.
            let Some(oldest) = uploads
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(d, _)| d.clone())
            else {
                break;
            };
            uploads.remove(&oldest);
        }
        uploads.insert(dir.to_owned(), (Arc::new(cipher), Instant::now()));
    }

    pub(super) fn get(&self, tenant: &str, dir: &str) -> Option<Arc<format::ObjectCipher>> {
        self.by_tenant
            .get(tenant)?
            .get(dir)
            .filter(|(_, t)| t.elapsed() < UPLOAD_CIPHER_TTL)
            .map(|(c, _)| c.clone())
    }

    pub(super) fn remove(&mut self, tenant: &str, dir: &str) {
        if let Some(uploads) = self.by_tenant.get_mut(tenant) {
            uploads.remove(dir);
            if uploads.is_empty() {
                self.by_tenant.remove(tenant);
            }
        }
    }
}
