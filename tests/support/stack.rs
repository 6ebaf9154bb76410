//! The stack's share holders for the proxy tests: in-process trustees (started the one way,
//! [`crate::support::start_trustee`]) on 127.0.0.1 with real mTLS and SQLite stores. A
//! customer-run holder is the same server with its own config. Tenants are enrolled through the
//! real `treuhand tenant create` ceremony, so a test gets the proxy's registration and the
//! tenant's credentials.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use treuhand::proxy::config::TenantConfig;
use treuhand::tls::Role;
use treuhand::trustee::client::TrusteeClient;
use treuhand::trustee::config::Config;
use treuhand::trustee::policy::{Policy, SystemClock};

use crate::support::pki::Pki;
use crate::support::s3::TestTenant;
use crate::support::trustee::{RunningTrustee, start_trustee, trustee_config};

/// The proxy identity the tests' proxies present.
pub const PROXY_NAME: &str = "test-proxy";

struct Holder {
    config: Config,
    addr: SocketAddr,
    running: Option<RunningTrustee>,
}

/// A set of named trustees / holders.
#[derive(Clone)]
pub struct Holders {
    holders: Arc<Mutex<HashMap<String, Holder>>>,
    ca_pem: PathBuf,
    certs: PathBuf,
    proxy_tls: Arc<rustls::ClientConfig>,
    customer_tls: Arc<Mutex<HashMap<String, Arc<rustls::ClientConfig>>>>,
    ca: Arc<treuhand::tls::DevCa>,
}

async fn spawn(config: &Config, addr: SocketAddr) -> RunningTrustee {
    start_trustee(config, Arc::new(SystemClock), addr).await.2
}

impl Holders {
    /// Starts one trustee server per name.
    pub async fn start(pki: &Pki, names: &[&str]) -> Self {
        let ca = treuhand::tls::DevCa::load(&pki.ca_pem, &pki.dir.join("ca.key")).unwrap();
        let (pc, pk) = pki.client(Role::Proxy, PROXY_NAME, "holders-proxy-client");
        let proxy_tls = treuhand::tls::client_config(&pki.ca_pem, Some((&pc, &pk))).unwrap();
        let holders = Holders {
            holders: Arc::new(Mutex::new(HashMap::new())),
            ca_pem: pki.ca_pem.clone(),
            certs: pki.dir.clone(),
            proxy_tls,
            customer_tls: Arc::new(Mutex::new(HashMap::new())),
            ca: Arc::new(ca),
        };
        for name in names {
            let dir = pki.dir.parent().unwrap().join(format!("holder-{name}"));
            let cert = pki.server(&format!("holder-{name}"));
            let config = trustee_config(&dir, cert, &pki.ca_pem, dir.join("store.db"));
            // Bound on port 0 and kept: a restart (`set_down(.., false)`) binds the same address.
            let any_port = "127.0.0.1:0".parse().unwrap();
            let (addr, _, running) = start_trustee(&config, Arc::new(SystemClock), any_port).await;
            holders.holders.lock().unwrap().insert(
                (*name).into(),
                Holder {
                    config,
                    addr,
                    running: Some(running),
                },
            );
        }
        holders
    }

    pub fn url(&self, name: &str) -> String {
        let addr = self.holders.lock().unwrap().get(name).unwrap().addr;
        format!("https://127.0.0.1:{}", addr.port())
    }

    /// Stops (down = true) or restarts (false) a holder on the same address and store.
    pub async fn set_down(&self, name: &str, down: bool) {
        if down {
            let running = self
                .holders
                .lock()
                .unwrap()
                .get_mut(name)
                .unwrap()
                .running
                .take();
            if let Some(running) = running {
                running.stop().await;
            }
        } else {
            let (config, addr) = {
                let h = self.holders.lock().unwrap();
                let h = h.get(name).unwrap();
                (h.config.clone(), h.addr)
            };
            let running = spawn(&config, addr).await;
            self.holders.lock().unwrap().get_mut(name).unwrap().running = Some(running);
        }
    }

    pub fn customer_tls(&self, tenant: &str) -> Arc<rustls::ClientConfig> {
        let mut map = self.customer_tls.lock().unwrap();
        map.entry(tenant.to_owned())
            .or_insert_with(|| {
                let (c, k) = self
                    .ca
                    .issue_client(Role::Customer, tenant)
                    .unwrap()
                    .write(&self.certs, &format!("customer-{tenant}"))
                    .unwrap();
                treuhand::tls::client_config(&self.ca_pem, Some((&c, &k))).unwrap()
            })
            .clone()
    }

    /// Suspends (deny every release with `tenant_suspended`) or resumes a tenant at a holder.
    pub async fn set_suspended(&self, holder: &str, tenant: &str, suspended: bool) {
        let client = TrusteeClient::new(&self.url(holder), self.customer_tls(tenant)).unwrap();
        let policy = Policy {
            allowed_proxies: vec![PROXY_NAME.into()],
            suspended,
            ..Policy::default()
        };
        client.set_policy(tenant, &policy).await.unwrap();
    }

    /// Number of releases a holder logged for a tenant (from its audit log).
    pub async fn releases(&self, holder: &str, tenant: &str) -> usize {
        let client = TrusteeClient::new(&self.url(holder), self.customer_tls(tenant)).unwrap();
        let log = client.audit(tenant).await.unwrap();
        log.entries
            .iter()
            .filter(|e| e.event == treuhand::trustee::audit::AuditEvent::Release)
            .count()
    }

    /// Request ids of the releases a holder logged for a tenant.
    pub async fn release_request_ids(&self, holder: &str, tenant: &str) -> Vec<String> {
        let client = TrusteeClient::new(&self.url(holder), self.customer_tls(tenant)).unwrap();
        let log = client.audit(tenant).await.unwrap();
        log.entries
            .iter()
            .filter(|e| e.event == treuhand::trustee::audit::AuditEvent::Release)
            .filter_map(|e| e.request_id.clone())
            .collect()
    }

    pub fn factory(&self) -> treuhand::proxy::sources::TrusteeSources {
        treuhand::proxy::sources::TrusteeSources::from_tls(
            self.proxy_tls.clone(),
            std::time::Duration::from_secs(2),
        )
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
            secret_access_key: format!("secret-{tenant}-0123456789").into(),
            registration_dir: dir.join("tenants"),
            share_dir: dir.join("shares"),
        };
        let depositor = treuhand::tenant::deposit::TrusteeDepositor::from_tls(
            self.customer_tls(tenant),
            vec![PROXY_NAME.into()],
        );
        ceremony(&params, &depositor).await
    }
}

/// Runs `treuhand tenant create` for `params`; returns the proxy's registration it wrote and
/// the tenant as a test sees it (credentials, raw customer share).
pub async fn ceremony(
    params: &treuhand::tenant::CreateParams,
    depositor: &treuhand::tenant::deposit::TrusteeDepositor,
) -> (TenantConfig, TestTenant) {
    // Some test tenants (`wide`: SSE-C, two trustees, 2-of-3) are deliberately reachable by
    // the trustees alone; they accept it explicitly, as a customer would.
    let options = treuhand::tenant::CreateOptions {
        allow_trustees_alone: params.trustees.len() >= usize::from(params.threshold),
        ..treuhand::tenant::CreateOptions::default()
    };
    let created = treuhand::tenant::create_with(params, options, depositor)
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
        id: params.tenant.clone(),
        access_key_id: params.access_key_id.clone(),
        secret_access_key: params.secret_access_key.expose_secret().to_owned(),
        share,
    };
    (config, test)
}

/// A tenant to enroll: its id, its trustees, the threshold and its customer-run holder (for a
/// holder tenant) or `None` (an SSE-C tenant).
pub type TenantSpec<'a> = (&'a str, &'a [&'a str], u8, Option<&'a str>);

/// `demo` (SSE-C) and `demo-holder` (held by the customer-run holder `holder`), both with the
/// trustee `trustee`: the tenants most proxy tests use.
pub const DEMO_AND_HOLDER: [TenantSpec<'static>; 2] = [
    ("demo", &["trustee"], 2, None),
    ("demo-holder", &["trustee"], 2, Some("holder")),
];

/// Only `demo-holder`, with `trustee` and the customer-run `holder` (no SSE-C needed).
pub const HOLDER_TENANT: [TenantSpec<'static>; 1] =
    [("demo-holder", &["trustee"], 2, Some("holder"))];

/// Holders and tenants enrolled with them, before any proxy: for a test that starts its own.
pub struct Enrolled {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub pki: Pki,
    pub holders: Holders,
    /// The proxy's registrations, in the order of the specs.
    pub configs: Vec<TenantConfig>,
    /// The tenants' credentials, in the order of the specs.
    pub tenants: Vec<TestTenant>,
}

impl Enrolled {
    /// Starts holders `holder_names` in a fresh tempdir and enrolls `tenants` with them.
    pub async fn start(holder_names: &[&str], tenants: &[TenantSpec<'_>]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let pki = Pki::new(&root);
        let holders = Holders::start(&pki, holder_names).await;
        let mut configs = Vec::new();
        let mut enrolled = Vec::new();
        for (id, trustees, threshold, holder) in tenants {
            let (config, tenant) = holders
                .enroll(&root, id, trustees, *threshold, *holder)
                .await;
            configs.push(config);
            enrolled.push(tenant);
        }
        Self {
            dir,
            root,
            pki,
            holders,
            configs,
            tenants: enrolled,
        }
    }
}

/// `items` as an array of exactly `N`.
pub fn exactly<T, const N: usize>(items: Vec<T>) -> [T; N] {
    let len = items.len();
    items
        .try_into()
        .unwrap_or_else(|_| panic!("expected {N} items, got {len}"))
}

/// The usual stack: share holders, tenants enrolled through the real ceremony (the
/// [`Enrolled`] part, reachable through `Deref`: `stack.root`, `stack.pki`, `stack.tenants`),
/// the proxy in-process on fs storage under `root`, a raw client, and a bucket [`BUCKET`] per
/// tenant.
pub struct Stack {
    pub enrolled: Enrolled,
    pub proxy: crate::support::Proxy,
    pub raw: crate::support::Raw,
}

impl std::ops::Deref for Stack {
    type Target = Enrolled;

    fn deref(&self) -> &Enrolled {
        &self.enrolled
    }
}

impl Stack {
    /// Starts holders `holder_names`, enrolls `tenants`, and starts the proxy on
    /// [`crate::support::proxy_config`] (key cache of 60 s) as `adjust` changes it.
    pub async fn start(
        holder_names: &[&str],
        tenants: &[TenantSpec<'_>],
        adjust: impl FnOnce(&mut treuhand::proxy::config::ProxyConfig),
    ) -> Self {
        let enrolled = Enrolled::start(holder_names, tenants).await;
        let mut config = crate::support::proxy_config(&enrolled.pki, &enrolled.root, 60);
        adjust(&mut config);
        let factory = enrolled.holders.factory();
        let proxy = crate::support::start_proxy(&config, &enrolled.configs, &factory).await;
        let raw = crate::support::Raw::new(&proxy, &enrolled.pki);
        for tenant in &enrolled.tenants {
            raw.create_bucket(tenant, crate::support::BUCKET).await;
        }
        Self {
            enrolled,
            proxy,
            raw,
        }
    }

    /// The enrolled tenant `id`.
    pub fn tenant(&self, id: &str) -> &TestTenant {
        let found = self.tenants.iter().find(|t| t.id == id);
        found.unwrap_or_else(|| panic!("no tenant {id} in this stack"))
    }

    /// The SSE-C tenant most tests use.
    pub fn demo(&self) -> &TestTenant {
        self.tenant("demo")
    }

    /// The stored ciphertext files of `tenant`'s objects.
    pub fn object_files(&self, tenant: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let objects = format!("storage/tenants/{tenant}/objects");
        crate::support::stored_files(&self.root.join(objects))
    }
}
