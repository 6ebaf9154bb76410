//! Harness for the fault matrix (`tests/fault_matrix.rs`): the real `treuhand` binary as a
//! proxy or trustee process that a test can SIGKILL, a SigV4 client that keeps whatever part of
//! a body arrived before a failure, a body stream the test holds open, and a size-limited
//! tmpfs for the full-disk cell.
// Tests may unwrap/expect/panic: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use treuhand::proxy::config::ProxyConfig;

use crate::proxy_support::{REGION, TestTenant};

/// Outer bound for anything a test waits for. Generous: the machine is small and shared, and
/// it bounds a hang, it does not measure anything.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Waits for `what` to become true, polling; panics (naming `label`) after [`PATIENCE`].
pub async fn wait_until(label: &str, mut what: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !what() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for: {label}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
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
    std::fs::write(path, toml::to_string(&table).unwrap()).unwrap();
}

/// A real `treuhand proxy` process.
pub struct ProxyProcess {
    pub child: Child,
    pub addr: std::net::SocketAddr,
}

impl ProxyProcess {
    /// Starts the binary on `config` and waits for its "proxy listening" log line.
    pub async fn start(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_treuhand"))
            .arg("proxy")
            .arg("--config")
            .arg(config)
            // The listening address is only logged; keep the log plain and at info.
            .env("TREUHAND_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let addr = tokio::time::timeout(PATIENCE, async {
            loop {
                let line = lines
                    .next_line()
                    .await
                    .unwrap()
                    .expect("the proxy exited before listening");
                if let Some(addr) = listening_addr(&line) {
                    return addr;
                }
                eprintln!("proxy: {line}");
            }
        })
        .await
        .expect("the proxy did not start listening");
        // Keep draining the log: a full pipe would block the proxy's logging.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("proxy: {line}");
            }
        });
        Self { child, addr }
    }

    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// SIGKILL: no shutdown code runs, as in a crash or an OOM kill.
    pub async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

/// The address in `proxy listening addr=Some(127.0.0.1:PORT)`, with or without ANSI colour.
fn listening_addr(line: &str) -> Option<std::net::SocketAddr> {
    let rest = &line[line.find("proxy listening")?..];
    let rest = &rest[rest.find("127.0.0.1:")?..];
    let end = rest["127.0.0.1:".len()..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(rest.len(), |i| i + "127.0.0.1:".len());
    rest[..end].parse().ok()
}

/// A real `treuhand trustee` process (a trustee or a customer-run holder: the same server).
pub struct TrusteeProcess {
    pub child: Child,
    pub url: String,
}

impl TrusteeProcess {
    /// Starts the binary on `config` and waits for the URL it prints.
    pub async fn start(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_treuhand"))
            .arg("trustee")
            .arg("--config")
            .arg(config)
            .env("TREUHAND_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(PATIENCE, async {
            loop {
                let line = lines
                    .next_line()
                    .await
                    .unwrap()
                    .expect("the trustee exited before listening");
                if let Some(url) = line.strip_prefix("treuhand trustee listening on ") {
                    return url.trim().to_owned();
                }
            }
        })
        .await
        .expect("the trustee did not start listening");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, url }
    }

    /// SIGKILL.
    pub async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

/// A trustee config in `dir` (keys generated there), listening on `listen`, as TOML.
pub fn write_trustee_toml(pki: &crate::proxy_support::Pki, dir: &Path, name: &str) -> PathBuf {
    use treuhand::trustee::config::{Config, KeyFiles, Limits, StoreConfig, TlsFiles};
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key) = pki.server(&format!("trustee-{name}"));
    treuhand::trustee::config::generate_keys(dir).unwrap();
    let config = Config {
        listen: "127.0.0.1:0".into(),
        tls: TlsFiles {
            cert,
            key,
            client_ca: pki.ca_pem.clone(),
        },
        store: StoreConfig {
            path: dir.join("store.db"),
        },
        keys: KeyFiles {
            sealing_key: dir.join("sealing.key"),
            signing_key: dir.join("signing.key"),
        },
        limits: Limits::default(),
    };
    config.validate().unwrap();
    let path = dir.join("trustee.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    path
}

/// What came back: the status and headers, every body byte that arrived, and how the body
/// ended if it did not end cleanly.
#[derive(Debug)]
pub struct Outcome {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
    pub body_error: Option<String>,
}

impl Outcome {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn request_id(&self) -> String {
        self.headers
            .get("x-amz-request-id")
            .expect("every proxy response carries x-amz-request-id")
            .to_str()
            .unwrap()
            .to_owned()
    }

    pub fn content_length(&self) -> Option<u64> {
        self.headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }
}

/// A SigV4 client (UNSIGNED-PAYLOAD) over real TLS that reads bodies chunk by chunk, so a body
/// cut short still shows what arrived.
#[derive(Clone)]
pub struct S3 {
    http: reqwest::Client,
    endpoint: String,
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&k, data).as_ref().to_vec()
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

impl S3 {
    /// `alpn`: `b"http/1.1"` or `b"h2"`.
    pub fn new(endpoint: &str, ca_pem: &Path, alpn: &[u8]) -> Self {
        let mut tls = (*treuhand::tls::client_config(ca_pem, None).unwrap()).clone();
        tls.alpn_protocols = vec![alpn.to_vec()];
        // HTTP/2: the protocol's initial 64 KiB stream window instead of hyper's 2 MiB, so the
        // server can send no more than about one segment before this client reads the response.
        // Without it a whole streamed body can be in flight, and a reset that follows it may
        // reach hyper before the response head was handed to the test.
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .http2_initial_stream_window_size(65_535)
            .build()
            .unwrap();
        Self {
            http,
            endpoint: endpoint.to_owned(),
        }
    }

    /// Sends a signed request. An error means no response head arrived (connection refused or
    /// reset before the status line).
    pub async fn send(
        &self,
        tenant: &TestTenant,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: reqwest::Body,
    ) -> Result<Outcome, reqwest::Error> {
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
            ("host".into(), host),
            ("x-amz-content-sha256".into(), "UNSIGNED-PAYLOAD".into()),
            ("x-amz-date".into(), amz_date.clone()),
        ];
        for (k, v) in headers {
            all.push((k.to_ascii_lowercase(), v.trim().to_owned()));
        }
        all.sort();
        let signed_headers = all
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let canonical_headers: String = all.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let canonical_request = format!(
            "{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\nUNSIGNED-PAYLOAD"
        );
        let scope = format!("{date}/{REGION}/s3/aws4_request");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(ring::digest::digest(
                &ring::digest::SHA256,
                canonical_request.as_bytes()
            ))
        );
        let k = hmac(
            format!("AWS4{}", tenant.secret_access_key).as_bytes(),
            date.as_bytes(),
        );
        let k = hmac(&k, REGION.as_bytes());
        let k = hmac(&k, b"s3");
        let k = hmac(&k, b"aws4_request");
        let signature = hex::encode(hmac(&k, to_sign.as_bytes()));
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
        request = request.header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                tenant.access_key_id
            ),
        );
        let mut response = request.body(body).send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        let mut body_error = None;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    body_error = Some(format!("{e:?}"));
                    break;
                }
            }
        }
        Ok(Outcome {
            status,
            headers,
            body,
            body_error,
        })
    }

    /// [`Self::send`] with a body in memory; panics if no response arrived.
    pub async fn call(
        &self,
        tenant: &TestTenant,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Outcome {
        self.send(tenant, method, path, query, headers, body.into())
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: no response: {e:?}"))
    }
}

/// A request body the test feeds by hand and can leave hanging mid-way (a client that is still
/// sending when the proxy dies).
pub struct HeldBody {
    tx: futures::channel::mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl HeldBody {
    pub fn new() -> (Self, reqwest::Body) {
        let (tx, rx) = futures::channel::mpsc::channel(1);
        (Self { tx }, reqwest::Body::wrap_stream(rx))
    }

    /// Queues `data`; returns once the request has taken it.
    pub async fn send(&mut self, data: Vec<u8>) {
        use futures::SinkExt as _;
        self.tx.send(Ok(Bytes::from(data))).await.unwrap();
    }
}

/// Names of every file below `root` whose name contains `#`: object_store's staging files
/// (`<key>#<n>`), which listings hide and no S3 call can reach.
pub fn staging_files(root: &Path) -> Vec<PathBuf> {
    crate::proxy_support::stored_files(root)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains('#'))
        })
        .collect()
}

/// A size-limited tmpfs, unmounted on drop. Needs root (CAP_SYS_ADMIN).
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` at `path`; `Err` with the reason if the system refuses.
    pub fn mount(path: &Path, bytes: u64) -> Result<Self, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Self {
            path: path.to_owned(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}
