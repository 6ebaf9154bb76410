//! Shared harness for the trustee integration tests: a dev CA in a tempdir, a trustee on
//! 127.0.0.1:0 with real mTLS, and clients for each role.
#![allow(dead_code)] // each test file uses a different subset of the helpers

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use treuhand::crypto::envelope::{KeyId, generate_tmk};
use treuhand::crypto::shamir::{self, KeyMetadata, ShareEnvelope};
use treuhand::secret::{Share, ShareValue};
use treuhand::tls::{DevCa, Role};
use treuhand::trustee::client::TrusteeClient;
use treuhand::trustee::config::{Config, KeyFiles, Limits, StoreConfig, TlsFiles, generate_keys};
use treuhand::trustee::policy::{ManualClock, Policy};
use treuhand::trustee::server::{Server, run};
use treuhand::trustee::wire::EnrollRequest;

pub const START_MS: u64 = 1_800_000_000_000;

/// Creates a dev CA, a server certificate, trustee keys and a config in `dir`.
pub fn write_setup(dir: &Path) -> (DevCa, Config) {
    treuhand::tls::install_crypto_provider();
    let ca = DevCa::generate("treuhand test ca").unwrap();
    ca.write(dir).unwrap();
    let (cert, key) = ca
        .issue_server("trustee", &[])
        .unwrap()
        .write(dir, "trustee")
        .unwrap();
    generate_keys(dir).unwrap();
    let config = Config {
        listen: "127.0.0.1:0".into(),
        tls: TlsFiles {
            cert,
            key,
            client_ca: dir.join("ca.pem"),
        },
        store: StoreConfig {
            path: dir.join("trustee.db"),
        },
        keys: KeyFiles {
            sealing_key: dir.join("sealing.key"),
            signing_key: dir.join("signing.key"),
        },
        limits: Limits::default(),
    };
    config.validate().unwrap();
    (ca, config)
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub ca: DevCa,
    pub config: Config,
    pub addr: SocketAddr,
    pub url: String,
    pub clock: Arc<ManualClock>,
    pub public_key: [u8; 32],
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a trustee whose configuration `adjust` may change first (limits).
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (ca, mut config) = write_setup(dir.path());
        adjust(&mut config);
        Self::launch(dir, ca, config).await
    }

    /// Starts a trustee on an existing directory (its store, keys and CA), e.g. after
    /// [`Harness::stop_and_keep`].
    pub async fn launch(dir: tempfile::TempDir, ca: DevCa, config: Config) -> Self {
        let clock = Arc::new(ManualClock::new(START_MS));
        let server = Server::from_config(&config, clock.clone()).unwrap();
        let public_key = server.trustee().public_key();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            run(listener, server, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            dir,
            ca,
            config,
            addr,
            url: format!("https://{addr}"),
            clock,
            public_key,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(self) {
        self.stop_and_keep().await;
    }

    /// Stops the server and hands back its directory, CA and configuration, so a test can
    /// edit the store and start another trustee on it.
    pub async fn stop_and_keep(mut self) -> (tempfile::TempDir, DevCa, Config) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        (self.dir, self.ca, self.config)
    }

    pub fn tls(&self, role: Role, name: &str) -> Arc<rustls::ClientConfig> {
        tls_for(&self.ca, self.dir.path(), role, name)
    }

    pub fn client(&self, role: Role, name: &str) -> TrusteeClient {
        TrusteeClient::new(&self.url, self.tls(role, name)).unwrap()
    }

    pub fn store_path(&self) -> PathBuf {
        self.config.store.path.clone()
    }
}

pub fn tls_for(ca: &DevCa, dir: &Path, role: Role, name: &str) -> Arc<rustls::ClientConfig> {
    let stem = format!("client-{name}-{role:?}");
    let (cert, key) = ca
        .issue_client(role, name)
        .unwrap()
        .write(dir, &stem)
        .unwrap();
    treuhand::tls::client_config(&dir.join("ca.pem"), Some((&cert, &key))).unwrap()
}

/// A fresh 2-of-2 tenant key: metadata plus the customer (x=1) and trustee (x=2) shares.
pub fn new_tenant_key(tenant: &str, version: u32) -> (KeyMetadata, Vec<Share>) {
    let tmk = generate_tmk().unwrap();
    shamir::split(
        &tmk,
        &KeyId::new(tenant, version).unwrap(),
        2,
        &["customer", "trustee"],
    )
    .unwrap()
}

pub fn envelope(metadata: &KeyMetadata, share: &Share) -> String {
    let copy = Share::new(share.x(), ShareValue::from_bytes(*share.expose_secret()));
    ShareEnvelope {
        key: metadata.key_id().unwrap(),
        share: copy,
    }
    .encode()
    .to_string()
}

pub fn policy_allowing(proxies: &[&str]) -> Policy {
    Policy {
        allowed_proxies: proxies.iter().map(|p| (*p).to_owned()).collect(),
        ..Policy::default()
    }
}

/// Enrolls the trustee share of a new tenant key with a policy allowing `proxies`.
pub async fn enroll(
    harness: &Harness,
    tenant: &str,
    proxies: &[&str],
) -> (KeyMetadata, Vec<Share>) {
    let (metadata, shares) = new_tenant_key(tenant, 1);
    let request = EnrollRequest {
        metadata: metadata.clone(),
        holder: "trustee".into(),
        share: envelope(&metadata, &shares[1]),
        policy: Some(policy_allowing(proxies)),
    };
    harness
        .client(Role::Customer, tenant)
        .enroll(tenant, &request)
        .await
        .unwrap();
    (metadata, shares)
}
