//! Resource limits on untrusted connections and on metrics labels: slowloris (half-sent
//! headers, silent connections, one address taking every slot) and Prometheus label sets that
//! clients cannot grow. Outcomes only (closed or served), with generous outer timeouts; no
//! timing assertions.
// Tests may unwrap/expect/panic: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use support::*;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use treuhand::proxy::config::{LimitsConfig, ProxyConfig};

/// Far beyond every configured timeout in these tests: only a connection that is never closed
/// reaches it.
const OUTER: Duration = Duration::from_secs(30);
/// A timeout no test waits for.
const NEVER_MS: u64 = 600_000;

struct Setup {
    _dir: tempfile::TempDir,
    _holders: Holders,
    pki: Pki,
    addr: SocketAddr,
    tenant: TestTenant,
    /// Stops the proxy when the test ends.
    _proxy: Proxy,
}

async fn setup(limits: LimitsConfig) -> Setup {
    let e = Enrolled::start(&["trustee", "holder"], &HOLDER_TENANT).await;
    let (dir, root, pki, holders) = (e.dir, e.root, e.pki, e.holders);
    let [cfg] = exactly(e.configs);
    let [tenant] = exactly(e.tenants);
    let mut config = proxy_config(&pki, &root, 60);
    config.limits = limits;
    let proxy = start_proxy(&config, &[cfg], &holders.factory()).await;
    Setup {
        _dir: dir,
        _holders: holders,
        pki,
        addr: proxy.addr,
        tenant,
        _proxy: proxy,
    }
}

fn limits(header_read_timeout_ms: u64, idle_timeout_ms: u64) -> LimitsConfig {
    LimitsConfig {
        header_read_timeout_ms,
        idle_timeout_ms,
        ..LimitsConfig::default()
    }
}

/// A TLS connection to the proxy from `local` (127.0.0.1 or another loopback address).
async fn connect(
    s: &Setup,
    local: IpAddr,
    alpn: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut tls = (*treuhand::tls::client_config(&s.pki.ca_pem, None).unwrap()).clone();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(local, 0))?;
    let tcp = socket.connect(s.addr).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
}

/// Asserts that the server closes `stream` (end of stream or a reset) within [`OUTER`];
/// `what` says what stayed open if it did not.
async fn assert_closed_by_server(
    mut stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    what: &str,
) {
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(OUTER, stream.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "{what}");
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// An HTTP client whose connections come from `local`.
fn http_from(s: &Setup, local: IpAddr) -> reqwest::Client {
    let tls = (*treuhand::tls::client_config(&s.pki.ca_pem, None).unwrap()).clone();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .local_address(local)
        .build()
        .unwrap()
}

/// A SigV4-signed ListObjects of the tenant's bucket from `local`; the HTTP status.
async fn list_from(s: &Setup, local: IpAddr) -> Result<u16, reqwest::Error> {
    let url = presigned_list(s);
    let response = http_from(s, local).get(url).send().await?;
    Ok(response.status().as_u16())
}

/// A presigned SigV4 URL (valid for 10 minutes) listing the tenant's bucket.
fn presigned_list(s: &Setup) -> String {
    presigned_get(s, &format!("/{BUCKET}"))
}

/// A presigned SigV4 URL (valid for 10 minutes) for `GET path`.
fn presigned_get(s: &Setup, path: &str) -> String {
    let endpoint = format!("https://127.0.0.1:{}", s.addr.port());
    presign(
        &endpoint,
        &s.tenant,
        path,
        time::OffsetDateTime::now_utc(),
        600,
    )
}

async fn create_bucket(s: &Setup) {
    let proxy = Proxy::attach(s.addr);
    Raw::new(&proxy, &s.pki)
        .create_bucket(&s.tenant, BUCKET)
        .await;
}

#[tokio::test]
async fn half_sent_header_is_closed_after_the_header_read_timeout() {
    let s = setup(limits(300, NEVER_MS)).await;
    let mut stream = connect(&s, loopback(1), b"http/1.1").await.unwrap();
    stream
        .write_all(b"GET /data HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    stream.flush().await.unwrap();
    assert_closed_by_server(stream, "a connection with half a header stayed open").await;
}

#[tokio::test]
async fn silent_connection_is_closed_after_the_idle_timeout() {
    let s = setup(limits(NEVER_MS, 300)).await;
    // Nothing at all after the TLS handshake: hyper is still reading the first bytes to tell
    // HTTP/1 from HTTP/2, where its own header timeout does not apply.
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let stream = connect(&s, loopback(1), alpn).await.unwrap();
        assert_closed_by_server(stream, "a silent connection stayed open").await;
    }
}

#[tokio::test]
async fn idle_http2_connection_is_closed_after_the_idle_timeout() {
    let s = setup(limits(NEVER_MS, 300)).await;
    let mut stream = connect(&s, loopback(1), b"h2").await.unwrap();
    // The HTTP/2 preface and an empty SETTINGS frame, then no request: the server answers with
    // its own SETTINGS, so this connection is alive at the HTTP/2 level but unused.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    stream
        .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    stream.flush().await.unwrap();
    assert_closed_by_server(stream, "an unused HTTP/2 connection stayed open").await;
}

#[tokio::test]
async fn a_connection_in_use_is_not_closed_as_idle() {
    // The idle timeout is short, but requests keep the connection busy: several requests on
    // one keep-alive connection are all served.
    let s = setup(limits(NEVER_MS, 300)).await;
    create_bucket(&s).await;
    let http = http_from(&s, loopback(1));
    for _ in 0..3 {
        let status = http.get(presigned_list(&s)).send().await.unwrap().status();
        assert_eq!(status.as_u16(), 200);
    }
}

#[tokio::test]
async fn a_slowly_read_download_is_not_cut_by_the_idle_timeout() {
    // The response body outlives the idle timeout several times over while the client pauses;
    // the request counts as in flight until its body is sent, so the download completes.
    let s = setup(limits(NEVER_MS, 200)).await;
    create_bucket(&s).await;
    let proxy = Proxy::attach(s.addr);
    let body = data(16 << 20, 3);
    let put = Raw::new(&proxy, &s.pki)
        .put(&s.tenant, &format!("/{BUCKET}/big"), &[], body.clone())
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let http = http_from(&s, loopback(1));
    let mut response = http
        .get(presigned_get(&s, &format!("/{BUCKET}/big")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut received = Vec::new();
    let mut pauses = 0;
    while let Some(chunk) = response.chunk().await.unwrap() {
        received.extend_from_slice(&chunk);
        if pauses < 3 {
            pauses += 1;
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
    }
    assert_eq!(received.len(), body.len());
    assert!(received == body, "the download was altered");
}

#[tokio::test]
async fn connections_over_the_per_address_limit_are_refused_but_others_are_served() {
    let s = setup(LimitsConfig {
        max_connections_per_address: 3,
        ..limits(NEVER_MS, NEVER_MS)
    })
    .await;
    create_bucket(&s).await;
    // Let the connection the bucket was created on go away (reqwest's pool is dropped).
    let attacker = loopback(1);
    let mut held = Vec::new();
    // Retry while the set-up connection is still counted; a served handshake means a slot.
    let deadline = tokio::time::Instant::now() + OUTER;
    while held.len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "could not open 3 connections"
        );
        match connect(&s, attacker, b"http/1.1").await {
            Ok(stream) => held.push(stream),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    // The fourth connection from the same address is closed before the TLS handshake ends.
    let fourth = tokio::time::timeout(OUTER, connect(&s, attacker, b"http/1.1"))
        .await
        .expect("the fourth connection was neither served nor closed");
    assert!(
        fourth.is_err(),
        "a fourth connection from one address was accepted"
    );
    // Another address is served meanwhile.
    assert_eq!(list_from(&s, loopback(2)).await.unwrap(), 200);
    // Once the attacker lets one connection go, its address gets a slot again.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + OUTER;
    loop {
        if let Ok(200) = list_from(&s, attacker).await {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a released slot was never given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn limits_section_is_optional_and_zero_limits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = "listen = \"127.0.0.1:0\"\ntenants_dir = \"tenants\"\n\
                [tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
                [trustee_client]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n";
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, base).unwrap();
    let config = ProxyConfig::load(&path).unwrap();
    assert_eq!(config.limits, LimitsConfig::default());
    assert_eq!(config.limits.max_connections, 4096);
    assert_eq!(config.limits.max_connections_per_address, 256);

    std::fs::write(
        &path,
        format!("{base}[limits]\nheader_read_timeout_ms = 5000\nmax_connections_per_address = 8\n"),
    )
    .unwrap();
    let config = ProxyConfig::load(&path).unwrap();
    assert_eq!(config.limits.header_read_timeout_ms, 5000);
    assert_eq!(config.limits.max_connections_per_address, 8);
    assert_eq!(
        config.limits.idle_timeout_ms,
        LimitsConfig::default().idle_timeout_ms
    );

    std::fs::write(&path, format!("{base}[limits]\nidle_timeout_ms = 0\n")).unwrap();
    let error = ProxyConfig::load(&path).unwrap_err().to_string();
    assert!(error.contains("idle_timeout_ms"), "{error}");
}

/// Every `name="value"` label of `metric` in a Prometheus text rendering.
fn label_values(rendered: &str, metric: &str, name: &str) -> std::collections::BTreeSet<String> {
    let needle = format!("{name}=\"");
    rendered
        .lines()
        .filter(|line| line.starts_with(metric))
        .filter_map(|line| {
            let start = line.find(&needle)? + needle.len();
            let end = line[start..].find('"')? + start;
            Some(line[start..end].to_owned())
        })
        .collect()
}

#[tokio::test]
async fn invented_methods_never_become_metric_labels() {
    let handle = treuhand::proxy::server::prometheus().expect("recorder installed");
    let s = setup(LimitsConfig::default()).await;
    create_bucket(&s).await;
    let http = http_from(&s, loopback(1));
    for i in 0..50 {
        let method = reqwest::Method::from_bytes(format!("INVENTED{i:04}").as_bytes()).unwrap();
        let url = format!("https://127.0.0.1:{}/{BUCKET}", s.addr.port());
        // Whatever the answer, it must not grow the label set.
        let _ = http.request(method, url).send().await.unwrap();
    }
    let status = http.get(presigned_list(&s)).send().await.unwrap().status();
    assert_eq!(status.as_u16(), 200);
    let rendered = handle.render();
    assert!(
        !rendered.contains("INVENTED"),
        "an invented method is a label"
    );
    let methods = label_values(&rendered, "treuhand_request_seconds", "method");
    let allowed = ["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "other"];
    assert!(
        methods.contains("GET") && methods.contains("other"),
        "{methods:?}"
    );
    for method in &methods {
        assert!(allowed.contains(&method.as_str()), "label method={method}");
    }
}

/// Every holder denies every release and evaluation with a reason it makes up (a customer-run
/// holder is the tenant's own program, so its answers are tenant-supplied strings).
struct InventiveDenials(std::sync::atomic::AtomicUsize);

impl InventiveDenials {
    fn deny(&self) -> treuhand::proxy::keys::ReleaseError {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        treuhand::proxy::keys::ReleaseError::Denied {
            reason: format!("invented-reason-{n}"),
        }
    }
}

#[async_trait::async_trait]
impl treuhand::proxy::keys::ShareSource for InventiveDenials {
    async fn release(
        &self,
        _tenant: &str,
        _key_version: u32,
        _context: &treuhand::proxy::keys::ReleaseContext,
    ) -> Result<treuhand::secret::Share, treuhand::proxy::keys::ReleaseError> {
        Err(self.deny())
    }

    async fn evaluate(
        &self,
        _tenant: &str,
        _key_version: u32,
        _request: &treuhand::trustee::wire::EvaluateRequest,
    ) -> Result<treuhand::crypto::oprf::Evaluation, treuhand::proxy::keys::ReleaseError> {
        Err(self.deny())
    }
}

struct InventiveFactory(Arc<InventiveDenials>);

impl treuhand::proxy::SourceFactory for InventiveFactory {
    fn source(
        &self,
        _url: &str,
    ) -> Result<Arc<dyn treuhand::proxy::keys::ShareSource>, treuhand::proxy::config::ConfigError>
    {
        Ok(self.0.clone())
    }
}

#[tokio::test]
async fn holder_denial_reasons_never_become_metric_labels() {
    let handle = treuhand::proxy::server::prometheus().expect("recorder installed");
    let e = Enrolled::start(&["trustee", "holder"], &HOLDER_TENANT).await;
    let (_dir, root, pki, _holders) = (e.dir, e.root, e.pki, e.holders);
    let [cfg] = exactly(e.configs);
    let [tenant] = exactly(e.tenants);
    let config = proxy_config(&pki, &root, 0);
    let factory = InventiveFactory(Arc::new(InventiveDenials(Default::default())));
    let proxy = start_proxy(&config, &[cfg], &factory).await;
    let raw = Raw::new(&proxy, &pki);
    raw.create_bucket(&tenant, BUCKET).await;
    for i in 0..10 {
        let r = raw
            .put(&tenant, &format!("/{BUCKET}/k{i}"), &[], b"x".to_vec())
            .await;
        assert_eq!(r.status, 403, "{}", r.text());
    }
    let rendered = handle.render();
    assert!(
        !rendered.contains("invented-reason"),
        "a holder's reason text is a label"
    );
    let results = label_values(&rendered, "treuhand_releases_total", "result");
    assert!(results.contains("denied"), "{results:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn metrics_endpoint_closes_a_half_sent_request() {
    // The header timeout of `/metrics` is fixed (10 s); the outer timeout is three times that.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stop) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(treuhand::proxy::server::serve_metrics(
        listener,
        async move {
            let _ = stop.await;
        },
    ));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(
        treuhand::proxy::server::METRICS_HEADER_READ_TIMEOUT * 3,
        stream.read_to_end(&mut sink),
    )
    .await
    .is_ok();
    assert!(closed, "a half-sent /metrics request stayed open");
}
