//! Shared harness for the proxy integration tests: a TEST-ONLY PKI, share holders, the proxy
//! on 127.0.0.1:0 with real TLS, an object_store S3 client and a tiny SigV4 signer for raw
//! requests.
// Tests may unwrap/expect/panic: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

pub mod holders;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use object_store::ObjectStore;
use treuhand::proxy::config::{CacheConfig, ClientTls, ProxyConfig, ServerTls, TenantConfig};
use treuhand::storage::{Storage, StorageConfig};
use treuhand::tls::DevCa;

pub const REGION: &str = "us-east-1";
pub const BUCKET: &str = "data";

/// One tenant as a test sees it.
pub struct TestTenant {
    pub id: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Raw 32-byte customer share (SSE-C tenants).
    pub share: Option<[u8; 32]>,
}

impl TestTenant {
    pub fn share_b64(&self) -> Option<String> {
        self.share
            .map(|s| base64::engine::general_purpose::STANDARD.encode(s))
    }
}

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

pub struct Pki {
    pub dir: PathBuf,
    pub ca: DevCa,
    pub ca_pem: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Self {
        treuhand::tls::install_crypto_provider();
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        let ca = DevCa::generate("treuhand TEST-ONLY CA").unwrap();
        ca.write(&certs).unwrap();
        Self {
            dir: certs.clone(),
            ca,
            ca_pem: certs.join("ca.pem"),
        }
    }

    pub fn server(&self, stem: &str) -> (PathBuf, PathBuf) {
        self.ca
            .issue_server(stem, &[])
            .unwrap()
            .write(&self.dir, stem)
            .unwrap()
    }

    pub fn client(&self, role: treuhand::tls::Role, name: &str, stem: &str) -> (PathBuf, PathBuf) {
        self.ca
            .issue_client(role, name)
            .unwrap()
            .write(&self.dir, stem)
            .unwrap()
    }
}

pub fn proxy_config(pki: &Pki, root: &Path, ttl_secs: u64) -> ProxyConfig {
    let (cert, key) = pki.server("proxy");
    let (ccert, ckey) = pki.client(treuhand::tls::Role::Proxy, "test-proxy", "proxy-client");
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
        },
        release_timeout_ms: 2000,
        storage: StorageConfig::Fs {
            root: root.join("storage"),
            fsync: false,
        },
        danger_passthrough_no_encryption: false,
        multipart: Default::default(),
    }
}

/// Starts the proxy in-process on 127.0.0.1:0.
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
    let task = tokio::spawn(treuhand::proxy::server::serve(
        listener,
        tls,
        built.service,
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

/// An object_store S3 client for one tenant and bucket.
pub fn client(
    proxy: &Proxy,
    pki: &Pki,
    tenant: &TestTenant,
    share_b64: Option<&str>,
    bucket: &str,
) -> Arc<dyn ObjectStore> {
    let cert = std::fs::read(&pki.ca_pem).unwrap();
    let options = object_store::ClientOptions::new()
        .with_root_certificate(object_store::Certificate::from_pem(&cert).unwrap());
    let mut builder = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(proxy.endpoint())
        .with_region(REGION)
        .with_bucket_name(bucket)
        .with_access_key_id(&tenant.access_key_id)
        .with_secret_access_key(&tenant.secret_access_key)
        .with_virtual_hosted_style_request(false)
        .with_client_options(options)
        .with_retry(object_store::RetryConfig {
            max_retries: 0,
            ..Default::default()
        });
    if let Some(key) = share_b64 {
        builder = builder.with_ssec_encryption(key);
    }
    Arc::new(builder.build().unwrap())
}

/// A raw HTTPS client with a minimal SigV4 signer (UNSIGNED-PAYLOAD).
pub struct Raw {
    http: reqwest::Client,
    endpoint: String,
}

pub struct RawResponse {
    pub status: u16,
    pub version: reqwest::Version,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
    /// Reading the body failed (for example an HTTP/2 protocol error).
    pub body_error: Option<String>,
}

impl RawResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&k, data).as_ref().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Raw {
    /// An HTTP/1.1 client (what boto3 and the aws cli speak).
    pub fn new(proxy: &Proxy, pki: &Pki) -> Self {
        Self::with_alpn(proxy, pki, &[b"http/1.1"])
    }

    /// An HTTP/2 client (what Go clients such as rclone negotiate).
    pub fn new_h2(proxy: &Proxy, pki: &Pki) -> Self {
        Self::with_alpn(proxy, pki, &[b"h2"])
    }

    fn with_alpn(proxy: &Proxy, pki: &Pki, alpn: &[&[u8]]) -> Self {
        let mut tls = (*treuhand::tls::client_config(&pki.ca_pem, None).unwrap()).clone();
        tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .unwrap();
        Self {
            http,
            endpoint: proxy.endpoint(),
        }
    }

    /// Sends a request; `tenant = None` sends it unsigned (anonymous).
    pub async fn send(
        &self,
        tenant: Option<&TestTenant>,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> RawResponse {
        let now = time::OffsetDateTime::now_utc();
        let date = format!(
            "{:04}{:02}{:02}",
            now.year(),
            u8::from(now.month()),
            now.day()
        );
        let amz_date = format!(
            "{date}T{:02}{:02}{:02}Z",
            now.hour(),
            now.minute(),
            now.second()
        );
        let host = self.endpoint.trim_start_matches("https://").to_owned();
        let canonical_uri = uri_encode(path, true);
        let mut q: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
            .collect();
        q.sort();
        let canonical_query = q
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let mut all: Vec<(String, String)> = vec![
            ("host".into(), host.clone()),
            ("x-amz-date".into(), amz_date.clone()),
        ];
        // A caller may name its own payload mode (aws-chunked tests); UNSIGNED-PAYLOAD otherwise.
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("x-amz-content-sha256"))
        {
            all.push(("x-amz-content-sha256".into(), "UNSIGNED-PAYLOAD".into()));
        }
        for (k, v) in headers {
            all.push((k.to_ascii_lowercase(), v.trim().to_owned()));
        }
        all.sort();
        let url = if canonical_query.is_empty() {
            format!("{}{canonical_uri}", self.endpoint)
        } else {
            format!("{}{canonical_uri}?{canonical_query}", self.endpoint)
        };
        let mut request = self.http.request(method.parse().unwrap(), &url);
        for (k, v) in &all {
            if k != "host" {
                request = request.header(k.as_str(), v.as_str());
            }
        }
        if let Some(t) = tenant {
            let payload_mode = all
                .iter()
                .find(|(k, _)| k == "x-amz-content-sha256")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let signed_headers = all
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(";");
            let canonical_headers: String = all.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
            let canonical_request = format!(
                "{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_mode}"
            );
            let scope = format!("{date}/{REGION}/s3/aws4_request");
            let to_sign = format!(
                "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
                sha256_hex(canonical_request.as_bytes())
            );
            let k_date = hmac(
                format!("AWS4{}", t.secret_access_key).as_bytes(),
                date.as_bytes(),
            );
            let k_region = hmac(&k_date, REGION.as_bytes());
            let k_service = hmac(&k_region, b"s3");
            let k_signing = hmac(&k_service, b"aws4_request");
            let signature = hex::encode(hmac(&k_signing, to_sign.as_bytes()));
            request = request.header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                    t.access_key_id
                ),
            );
        }
        let response = request.body(body).send().await.unwrap();
        let status = response.status().as_u16();
        let version = response.version();
        let headers = response.headers().clone();
        let (body, body_error) = match response.bytes().await {
            Ok(b) => (b.to_vec(), None),
            Err(e) => (Vec::new(), Some(format!("{e:?}"))),
        };
        RawResponse {
            status,
            version,
            headers,
            body,
            body_error,
        }
    }

    pub async fn create_bucket(&self, tenant: &TestTenant, bucket: &str) {
        let r = self
            .send(
                Some(tenant),
                "PUT",
                &format!("/{bucket}"),
                &[],
                &[],
                Vec::new(),
            )
            .await;
        assert_eq!(r.status, 200, "create bucket: {}", r.text());
    }
}

/// SSE-C headers for a raw request.
pub fn sse_c_headers(key_b64: &str) -> Vec<(&'static str, String)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(key_b64)
        .unwrap_or_default();
    let md5 = {
        use md5::Digest as _;
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&raw))
    };
    vec![
        (
            "x-amz-server-side-encryption-customer-algorithm",
            "AES256".into(),
        ),
        (
            "x-amz-server-side-encryption-customer-key",
            key_b64.to_owned(),
        ),
        ("x-amz-server-side-encryption-customer-key-md5", md5),
    ]
}

/// Every stored file under `root`, with its bytes.
pub fn stored_files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out
}

/// True if `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Deterministic test data.
pub fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect()
}
