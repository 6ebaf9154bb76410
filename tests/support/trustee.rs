//! One way to configure and start a trustee: [`trustee_config`] builds every trustee's
//! configuration, [`start_trustee`] runs one in-process, [`Harness`] wraps that with a manual
//! clock for the trustee tests, and [`crate::support::TrusteeProcess`] runs the real binary.
//! Also the tenant-key fixtures the trustee tests enroll.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use treuhand::crypto::envelope::{KeyId, generate_tmk};
use treuhand::crypto::oprf::{self, Evaluation, ObjectId, ObjectIdentity, ObjectSecret};
use treuhand::crypto::shamir::{self, KeyMetadata, ShareEnvelope};
use treuhand::secret::{Share, ShareValue};
use treuhand::tls::{DevCa, Role};
use treuhand::trustee::audit::AuditEvent;
use treuhand::trustee::client::TrusteeClient;
use treuhand::trustee::config::{Config, KeyFiles, Limits, StoreConfig, TlsFiles, generate_keys};
use treuhand::trustee::policy::{Clock, ManualClock, Policy, SystemClock};
use treuhand::trustee::server::{Server, run};
use treuhand::trustee::wire::{
    EnrollRequest, EvaluateRequest, EvaluatedObject, Justification, SigV4Credential,
};

use crate::support::pki::{Pki, tls_for};

/// The manual clock's start: a fixed instant, so audit timestamps are reproducible.
pub const START_MS: u64 = 1_800_000_000_000;

/// A validated trustee configuration: keys generated in `dir` (`sealing.key`, `signing.key`),
/// the store at `store`, listening on 127.0.0.1:0.
pub fn trustee_config(
    dir: &Path,
    (cert, key): (PathBuf, PathBuf),
    ca_pem: &Path,
    store: PathBuf,
) -> Config {
    std::fs::create_dir_all(dir).unwrap();
    generate_keys(dir).unwrap();
    let client_ca = ca_pem.to_owned();
    let keys = KeyFiles {
        sealing_key: dir.join("sealing.key"),
        signing_key: dir.join("signing.key"),
    };
    let config = Config {
        listen: "127.0.0.1:0".into(),
        tls: TlsFiles {
            cert,
            key,
            client_ca,
        },
        store: StoreConfig { path: store },
        keys,
        limits: Limits::default(),
    };
    config.validate().unwrap();
    config
}

/// Writes `config` as `<dir>/trustee.toml`, the file `treuhand trustee --config` reads.
pub fn save_trustee_toml(dir: &Path, config: &Config) -> PathBuf {
    let path = dir.join("trustee.toml");
    std::fs::write(&path, toml::to_string(config).unwrap()).unwrap();
    path
}

/// A trustee named `name` in `dir` (keys and store there, certificate from `pki`), written as
/// `<dir>/trustee.toml` for [`crate::support::TrusteeProcess`].
pub fn write_trustee_toml(pki: &Pki, dir: &Path, name: &str) -> PathBuf {
    let cert = pki.server(&format!("trustee-{name}"));
    let config = trustee_config(dir, cert, &pki.ca_pem, dir.join("store.db"));
    save_trustee_toml(dir, &config)
}

/// Creates a dev CA, a server certificate, trustee keys and a config in `dir`.
pub fn write_setup(dir: &Path) -> (DevCa, Config) {
    treuhand::tls::install_crypto_provider();
    let ca = DevCa::generate("treuhand test ca").unwrap();
    ca.write(dir).unwrap();
    let cert = ca
        .issue_server("trustee", &[])
        .unwrap()
        .write(dir, "trustee")
        .unwrap();
    let config = trustee_config(dir, cert, &dir.join("ca.pem"), dir.join("trustee.db"));
    (ca, config)
}

/// A trustee running in-process; stopping it waits for its server task.
pub struct RunningTrustee {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningTrustee {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

/// Starts a trustee in-process from `config` on `addr` (port 0 for any free port); returns the
/// bound address and a handle on the server (its public key).
pub async fn start_trustee(
    config: &Config,
    clock: Arc<dyn Clock>,
    addr: SocketAddr,
) -> (SocketAddr, Server, RunningTrustee) {
    let server = Server::from_config(config, clock).unwrap();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = server.clone();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        run(listener, server, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (addr, handle, RunningTrustee { stop, task })
}

/// Starts a trustee in-process from the `trustee.toml` at `path`, on the address it names.
pub async fn start_trustee_at(path: &Path) -> RunningTrustee {
    let config = Config::load(path).unwrap();
    let addr = config.listen_addr().unwrap();
    start_trustee(&config, Arc::new(SystemClock), addr).await.2
}

/// An in-process trustee on 127.0.0.1:0 with a manual clock, for the trustee tests.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub ca: DevCa,
    pub config: Config,
    pub addr: SocketAddr,
    pub url: String,
    pub clock: Arc<ManualClock>,
    pub public_key: [u8; 32],
    running: Option<RunningTrustee>,
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
        let any_port = "127.0.0.1:0".parse().unwrap();
        let (addr, server, running) = start_trustee(&config, clock.clone(), any_port).await;
        Self {
            dir,
            ca,
            config,
            addr,
            url: format!("https://{addr}"),
            clock,
            public_key: server.trustee().public_key(),
            running: Some(running),
        }
    }

    pub async fn stop(self) {
        self.stop_and_keep().await;
    }

    /// Stops the server and hands back its directory, CA and configuration, so a test can
    /// edit the store and start another trustee on it.
    pub async fn stop_and_keep(mut self) -> (tempfile::TempDir, DevCa, Config) {
        if let Some(running) = self.running.take() {
            running.stop().await;
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

/// The request ids of the releases (or, for an OPRF key, evaluations) in an audit log.
pub fn release_request_ids(
    log: &treuhand::trustee::audit::AuditLog,
) -> std::collections::HashSet<&str> {
    let releases = log
        .entries
        .iter()
        .filter(|e| matches!(e.event, AuditEvent::Release | AuditEvent::Evaluate));
    releases.filter_map(|e| e.request_id.as_deref()).collect()
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

/// `share` in its text envelope, as a customer deposits it.
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

/// The request that enrolls the trustee share (x=2) of `shares` with a policy allowing
/// `proxies`.
pub fn enroll_request(metadata: &KeyMetadata, shares: &[Share], proxies: &[&str]) -> EnrollRequest {
    EnrollRequest {
        metadata: metadata.clone(),
        holder: "trustee".into(),
        share: envelope(metadata, &shares[1]),
        policy: Some(policy_allowing(proxies)),
        sigv4: None,
    }
}

/// Enrolls `acme` allowing `proxy` and makes four releases through it, each in its own group
/// commit; `request` builds the request of release `r-<i>`.
pub async fn enroll_with_releases(
    harness: &Harness,
    proxy: &str,
    request: impl Fn(&str) -> treuhand::trustee::wire::ReleaseRequest,
) {
    enroll(harness, "acme", &[proxy]).await;
    let client = harness.client(Role::Proxy, proxy);
    for i in 0..4 {
        let release = request(&format!("r-{i}"));
        client.release("acme", 1, &release).await.unwrap();
    }
}

/// Enrolls the trustee share of a new tenant key with a policy allowing `proxies`.
pub async fn enroll(
    harness: &Harness,
    tenant: &str,
    proxies: &[&str],
) -> (KeyMetadata, Vec<Share>) {
    let (metadata, shares) = new_tenant_key(tenant, 1);
    let request = enroll_request(&metadata, &shares, proxies);
    harness
        .client(Role::Customer, tenant)
        .enroll(tenant, &request)
        .await
        .unwrap();
    (metadata, shares)
}

/// A fresh 2-of-2 OPRF tenant key from the key ceremony (`crypto::scheme::split`): metadata
/// plus the customer (x=1) and trustee (x=2) shares.
pub fn new_oprf_tenant_key(tenant: &str, version: u32, strict: bool) -> (KeyMetadata, Vec<Share>) {
    treuhand::crypto::scheme::split(
        &KeyId::new(tenant, version).unwrap(),
        2,
        &["customer", "trustee"],
        treuhand::crypto::scheme::SplitOptions {
            strict,
            allow_trustees_alone: false,
        },
    )
    .unwrap()
}

/// Enrolls the trustee share of a new OPRF tenant key with a policy allowing `proxies`; with
/// `sigv4` the tenant is strict and this trustee checks its signatures.
pub async fn enroll_oprf(
    harness: &Harness,
    tenant: &str,
    proxies: &[&str],
    sigv4: Option<SigV4Credential>,
) -> (KeyMetadata, Vec<Share>) {
    let (metadata, shares) = new_oprf_tenant_key(tenant, 1, sigv4.is_some());
    let mut request = enroll_request(&metadata, &shares, proxies);
    request.sigv4 = sigv4;
    harness
        .client(Role::Customer, tenant)
        .enroll(tenant, &request)
        .await
        .unwrap();
    (metadata, shares)
}

/// A `customer_access` evaluation request for `bucket`/`key` with object id `id`.
pub fn evaluate_request(
    request_id: &str,
    bucket: &str,
    key: &str,
    id: [u8; 32],
) -> EvaluateRequest {
    use base64::Engine as _;
    EvaluateRequest {
        justification: Justification::CustomerAccess,
        request_id: request_id.into(),
        object: EvaluatedObject {
            bucket: bucket.into(),
            key: key.into(),
            id: base64::engine::general_purpose::STANDARD.encode(id),
        },
        reason: "GetObject".into(),
        signed: None,
    }
}

/// The identity the trustee hashes for `request` of `tenant` key version 1.
pub fn identity_of(tenant: &str, request: &EvaluateRequest) -> ObjectIdentity {
    let id = request.object.object_id().unwrap();
    ObjectIdentity {
        tenant: tenant.into(),
        key_version: 1,
        bucket: request.object.bucket.clone(),
        key: request.object.key.clone(),
        id: ObjectId(id),
    }
}

/// The trustee's answer to `request`, decoded (element and proof) with its audit seq.
pub async fn evaluate_decoded(
    client: &TrusteeClient,
    tenant: &str,
    request: &EvaluateRequest,
) -> Result<(Evaluation, u64), treuhand::trustee::Error> {
    use base64::Engine as _;
    let response = client.evaluate_response(tenant, 1, request).await?;
    assert_eq!(response.x, 2, "the trustee holds x = 2");
    let decode = |text: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap()
    };
    let evaluation =
        Evaluation::from_bytes(&decode(&response.element), &decode(&response.proof)).unwrap();
    Ok((evaluation, response.audit_seq))
}

/// `Y` of the object of `request` from the trustee's proven answer and the customer's own
/// share (`evaluate_local`), as the proxy combines them for an SSE-C tenant.
pub fn combine_with_customer(
    metadata: &KeyMetadata,
    shares: &[Share],
    identity: &ObjectIdentity,
    answer: Evaluation,
) -> ObjectSecret {
    let customer = treuhand::crypto::scheme::key_share(metadata, &shares[0]).unwrap();
    let local = oprf::evaluate_local(&customer, identity).unwrap();
    let trustee_key = treuhand::crypto::scheme::holder_key(metadata, 2).unwrap();
    oprf::combine(identity, &[local], &[(2, trustee_key, answer)], 2).unwrap()
}

/// One raw HTTPS request to `harness` as `role`/`name`: the status and the body.
pub async fn raw_request(
    harness: &Harness,
    (role, name): (Role, &str),
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (http::StatusCode, bytes::Bytes) {
    use http_body_util::BodyExt as _;
    let mut tls = (*harness.tls(role, name)).clone();
    tls.alpn_protocols.clear();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", harness.url));
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    let response = client
        .request(
            builder
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, bytes)
}
