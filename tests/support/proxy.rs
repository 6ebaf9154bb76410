//! One way to configure and start a proxy: [`proxy_config`] for every test proxy,
//! [`start_proxy`] in-process on 127.0.0.1:0, [`write_proxy_toml`] for the real binary
//! ([`crate::support::ProxyProcess`]).

use std::path::Path;
use std::sync::Arc;

use treuhand::proxy::config::{CacheConfig, ClientTls, ProxyConfig, ServerTls, TenantConfig};
use treuhand::storage::{Storage, StorageConfig};
use treuhand::tls::Role;

use crate::support::pki::Pki;
use crate::support::s3::REGION;

/// A proxy running in-process (or attached to one started elsewhere).
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    pub keys: Arc<treuhand::proxy::keys::KeyService>,
    /// The running tenant set (`None` for an attached proxy).
    pub tenants: Option<Arc<treuhand::proxy::registry::Registry>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    /// A handle for a proxy started elsewhere (no stop control).
    pub fn attach(addr: std::net::SocketAddr) -> Self {
        Self {
            addr,
            keys: Arc::new(treuhand::proxy::keys::KeyService::new(
                Default::default(),
                0,
                Default::default(),
            )),
            tenants: None,
            stop: None,
            task: None,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// A proxy config with TLS from `pki`, tenants and fs storage under `root`, and a key cache of
/// `ttl_secs`.
pub fn proxy_config(pki: &Pki, root: &Path, ttl_secs: u64) -> ProxyConfig {
    let (cert, key) = pki.server("proxy");
    let (ccert, ckey) = pki.client(Role::Proxy, "test-proxy", "proxy-client");
    ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: None,
        limits: Default::default(),
        tls: ServerTls { cert, key },
        trustee_client: ClientTls {
            ca: pki.ca_pem.clone(),
            cert: ccert,
            key: ckey,
        },
        tenants_dir: root.join("tenants"),
        region: REGION.into(),
        cache: CacheConfig {
            ttl_secs,
            max_entries: 16,
            ..CacheConfig::default()
        },
        release_timeout_ms: 2000,
        storage: StorageConfig::Fs {
            root: root.join("storage"),
            fsync: false,
        },
        danger_passthrough_no_encryption: false,
        // Tests upload tiny parts; S3's 5 MiB minimum (the default) is pinned by
        // proxy_multipart's `parts_below_the_default_minimum_are_entity_too_small`.
        multipart: treuhand::proxy::config::MultipartConfig {
            min_part_size: 1,
            ..Default::default()
        },
    }
}

/// Starts the proxy in-process on 127.0.0.1:0, under the connection limits `config.limits`.
pub async fn start_proxy(
    config: &ProxyConfig,
    tenants: &[TenantConfig],
    sources: &dyn treuhand::proxy::SourceFactory,
) -> Proxy {
    let storage = Storage::from_config(&config.storage).unwrap();
    let built = treuhand::proxy::build(config, tenants, storage, sources).unwrap();
    let tls = treuhand::tls::server_config(&config.tls.cert, &config.tls.key, None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(treuhand::proxy::server::serve_with_limits(
        listener,
        tls,
        built.service,
        config.limits,
        async move {
            let _ = rx.await;
        },
    ));
    Proxy {
        addr,
        keys: built.keys,
        tenants: Some(built.tenants),
        stop: Some(tx),
        task: Some(task),
    }
}

/// Writes `config` as a `proxy.toml` the real loader reads (`ProxyConfig` is not `Serialize`).
pub fn write_proxy_toml(path: &Path, config: &ProxyConfig) {
    let mut table = toml::Table::new();
    table.insert("listen".into(), config.listen.to_string().into());
    table.insert(
        "tenants_dir".into(),
        config.tenants_dir.display().to_string().into(),
    );
    table.insert("region".into(), config.region.clone().into());
    table.insert(
        "release_timeout_ms".into(),
        i64::try_from(config.release_timeout_ms).unwrap().into(),
    );
    table.insert("tls".into(), toml::Value::try_from(&config.tls).unwrap());
    table.insert(
        "trustee_client".into(),
        toml::Value::try_from(&config.trustee_client).unwrap(),
    );
    table.insert("cache".into(), toml::Value::try_from(config.cache).unwrap());
    table.insert(
        "storage".into(),
        toml::Value::try_from(&config.storage).unwrap(),
    );
    table.insert(
        "multipart".into(),
        toml::Value::try_from(config.multipart).unwrap(),
    );
    std::fs::write(path, toml::to_string(&table).unwrap()).unwrap();
}
