//! The HTTPS accept loop, connection limits, the request pre-filter and the Prometheus
//! endpoint.
//!
//! The TLS handshake runs inside the spawned per-connection task with a timeout, so a slow
//! client never blocks the accept loop. Shutdown is graceful: the loop stops accepting, and
//! open connections finish their current requests.
//!
//! Against clients that hold connections open without using them (slowloris), every
//! connection is bounded ([`LimitsConfig`]): a total and a per-address connection count, the
//! HTTP/1 header-read timeout (hyper's), HTTP/2 keep-alive pings (hyper's), and an idle
//! timeout enforced here for every protocol, because hyper has none for HTTP/2 nor for the
//! bytes it reads to tell HTTP/1 from HTTP/2.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::config::LimitsConfig;
use super::guard;

/// How long a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The default total connection limit ([`LimitsConfig::max_connections`]).
pub const MAX_CONNECTIONS: usize = 4096;

/// Serves `service` over TLS on `listener` with the default [`LimitsConfig`] until
/// `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    service: impl Into<ProxyService>,
    shutdown: impl Future<Output = ()>,
) {
    serve_with_limits(listener, tls, service, LimitsConfig::default(), shutdown).await;
}

/// Serves `service` over TLS on `listener` under `limits` until `shutdown` resolves.
pub async fn serve_with_limits(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    service: impl Into<ProxyService>,
    limits: LimitsConfig,
    shutdown: impl Future<Output = ()>,
) {
    let service: ProxyService = service.into();
    let acceptor = TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let per_address = Arc::new(AddressSlots::new(limits.max_connections_per_address));
    let idle_timeout = Duration::from_millis(limits.idle_timeout_ms);
    let builder = Arc::new(connection_builder(&limits));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Per address first, so one address at its limit does not use up total slots.
        let Some(address_slot) = per_address.try_acquire(peer.ip()) else {
            tracing::warn!(%peer, "per-address connection limit reached; closing");
            metrics::counter!("treuhand_connections_refused_total", "reason" => "per_address")
                .increment(1);
            continue;
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing");
            metrics::counter!("treuhand_connections_refused_total", "reason" => "total")
                .increment(1);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = service.clone();
        let watcher = graceful.watcher();
        let builder = builder.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _address_slot = address_slot;
            let started = Instant::now();
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            metrics::histogram!("treuhand_phase_seconds", "phase" => "tls_handshake")
                .record(started.elapsed().as_secs_f64());
            let activity = Arc::new(Activity::new());
            let requests = activity.clone();
            let service =
                hyper::service::service_fn(move |req| with_request_id(&service, req, &requests));
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                result = watcher.watch(conn.into_owned()) => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                // Dropping the connection closes it; no request is in flight, so no response
                // is cut short.
                () = activity.idle(idle_timeout) => {
                    tracing::debug!(%peer, "closing idle connection");
                }
            }
        });
    }
    // Give open requests a bounded time to finish.
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}

/// What the server runs for each request: the S3 service, behind the strict-tenant gate
/// when the proxy has one (see [`super::strict`]).
#[derive(Clone)]
pub struct ProxyService {
    s3: s3s::service::S3Service,
    strict: Option<Arc<super::strict::Gate>>,
}

impl ProxyService {
    /// `s3` behind `strict`.
    pub fn new(s3: s3s::service::S3Service, strict: Arc<super::strict::Gate>) -> Self {
        Self {
            s3,
            strict: Some(strict),
        }
    }
}

/// Without a gate: a strict tenant's requests then fail in s3s (no key checks them).
impl From<s3s::service::S3Service> for ProxyService {
    fn from(s3: s3s::service::S3Service) -> Self {
        Self { s3, strict: None }
    }
}

/// HTTP/2 flow-control windows the proxy grants a client for request bodies (per stream and
/// per connection). hyper's defaults are 1 MiB for each, so parallel uploads on one connection
/// (rclone multiplexes its multipart parts) share 1 MiB in flight; these let each of four
/// streams send 2 MiB before a WINDOW_UPDATE. Memory stays bounded: a connection buffers at
/// most its window (8 MiB), and the connection limits bound the connections.
pub const HTTP2_STREAM_WINDOW: u32 = 2 * 1024 * 1024;
/// See [`HTTP2_STREAM_WINDOW`].
pub const HTTP2_CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;

/// The per-connection HTTP builder: HTTP/1 and HTTP/2 (told apart by hyper-util from the first
/// bytes), with hyper's timers. The settings, and nginx's for comparison, are in
/// docs/proxy.md ("Connection tuning").
fn connection_builder(limits: &LimitsConfig) -> ConnBuilder<TokioExecutor> {
    let mut builder = ConnBuilder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms));
    builder
        .http2()
        .timer(TokioTimer::new())
        .initial_stream_window_size(HTTP2_STREAM_WINDOW)
        .initial_connection_window_size(HTTP2_CONNECTION_WINDOW)
        .keep_alive_interval(Duration::from_millis(limits.http2_keep_alive_interval_ms))
        .keep_alive_timeout(Duration::from_millis(limits.http2_keep_alive_timeout_ms));
    builder
}

/// Open connections per client address. Keyed by IPv4 address, or by IPv6 /64 (one host
/// commonly has a whole /64; an IPv4-mapped IPv6 address counts as its IPv4 address).
struct AddressSlots {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl AddressSlots {
    fn new(max: usize) -> Self {
        Self {
            max,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
            },
        }
    }

    fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let key = Self::key(ip);
        // A poisoned lock only means another task panicked between two plain integer updates;
        // the map is still consistent.
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            slots: self.clone(),
            key,
        })
    }
}

/// One open connection of an address; gives the slot back on drop.
struct AddressSlot {
    slots: Arc<AddressSlots>,
    key: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                // Keeps the map as small as the set of connected addresses.
                open.remove(&self.key);
            }
        }
    }
}

/// Requests in flight on one connection and when the last one ended.
struct Activity {
    epoch: tokio::time::Instant,
    /// Milliseconds after `epoch` when a request last started or ended.
    last_change_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: tokio::time::Instant::now(),
            last_change_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let elapsed = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_change_ms.fetch_max(elapsed, Ordering::Relaxed);
    }

    fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    /// Resolves once no request has been in flight for `timeout`.
    ///
    /// Only requests count, not bytes: HTTP/2 keep-alive pings and their answers would
    /// otherwise keep an unused connection open for ever. A request counts until its
    /// response body is sent or dropped, so a long download or a slow trustee release is
    /// never cut. A client that sends a request's headers slowly has no request in flight
    /// yet, which is the point.
    async fn idle(&self, timeout: Duration) {
        loop {
            let last = self.epoch
                + Duration::from_millis(self.last_change_ms.load(Ordering::Relaxed))
                + timeout;
            if last > tokio::time::Instant::now() {
                tokio::time::sleep_until(last).await;
            } else if self.in_flight.load(Ordering::Relaxed) == 0 {
                return;
            } else {
                // Busy, not idle; the request's end resets the clock. Look again later.
                tokio::time::sleep(timeout).await;
            }
        }
    }
}

/// A request in flight; ends (and restarts the idle clock) on drop.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in flight until it is sent or dropped.
struct TrackedBody {
    inner: s3s::Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = <s3s::Body as hyper::body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The id of one S3 request: in the logs (span `request`), in the `x-amz-request-id` response
/// header, and in every release request the proxy sends to trustees for it, so the customer can
/// match audit log entries to requests.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    /// A fresh id: 16 upper-case hex digits, unique within the process and unpredictable from
    /// outside it. Ids only need to be distinct and not reveal the request count, not to be
    /// secret, so they are SipHash (keyed randomly once per process by std's `RandomState`)
    /// of a counter, not a read of the OS's random source on every request (a syscall each,
    /// visible in the small-GET profile).
    fn generate() -> Self {
        use std::hash::BuildHasher as _;
        static KEY: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = KEY.get_or_init(std::hash::RandomState::new).hash_one(n);
        Self(format!("{id:016X}"))
    }
}

/// The `method` label of `treuhand_request_seconds`: one of a fixed set, because clients may
/// send any token as a method and each distinct label value is a new series kept for the
/// life of the process (20,000 invented methods made one scrape 1.47 GB).
#[must_use]
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::PUT => "PUT",
        http::Method::POST => "POST",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn with_request_id(
    service: &ProxyService,
    mut req: http::Request<hyper::body::Incoming>,
    activity: &Arc<Activity>,
) -> impl Future<Output = Result<http::Response<TrackedBody>, s3s::HttpError>> + use<> {
    use tracing::Instrument as _;
    let in_flight = activity.start_request();
    let id = RequestId::generate();
    let method = req.method().clone();
    let span = tracing::info_span!("request", id = %id.0, method = method_label(&method));
    req.extensions_mut().insert(id.clone());
    // Refused requests never reach s3s (see `guard`); a strict tenant's requests reach it
    // only once the tenant's holder accepted them (see `strict`).
    let (mut parts, body) = req.into_parts();
    let continue_unsent = ContinueUnsent::of(&parts, hyper::body::Body::size_hint(&body).exact());
    let checked = guard::check(&parts);
    let service = service.clone();
    let started = Instant::now();
    async move {
        let admitted = match (checked, &service.strict) {
            (Err(refusal), _) => Err(refusal),
            (Ok(()), Some(gate)) => gate.admit(&mut parts, &id.0).await,
            (Ok(()), None) => Ok(()),
        };
        let mut response = match admitted {
            Ok(()) => {
                hyper::service::Service::call(&service.s3, http::Request::from_parts(parts, body))
                    .await?
            }
            Err(refusal) => {
                tracing::debug!(code = refusal.code(), "request refused before s3s");
                metrics::counter!("treuhand_requests_refused_total", "reason" => refusal.reason())
                    .increment(1);
                refusal_response(&refusal, &id)
            }
        };
        // Until the response head is ready (streamed bodies continue afterwards). Compared
        // with a client's latency it shows how much time is spent outside the proxy's handler.
        metrics::histogram!("treuhand_request_seconds", "method" => method_label(&method))
            .record(started.elapsed().as_secs_f64());
        if let Ok(value) = http::HeaderValue::from_str(&id.0) {
            response.headers_mut().insert("x-amz-request-id", value);
        }
        if continue_unsent.closes_after(response.status()) {
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        if let Some(status) = head_status(&method, response.status(), response.headers()) {
            *response.status_mut() = status;
        }
        if !may_have_body(&method, response.status()) {
            *response.body_mut() = s3s::Body::empty();
        }
        Ok(response.map(|inner| TrackedBody {
            inner,
            _in_flight: in_flight,
        }))
    }
    .instrument(span)
}

fn refusal_response(refusal: &guard::Refusal, id: &RequestId) -> s3s::HttpResponse {
    let mut response = http::Response::new(s3s::Body::from(refusal.to_xml(&id.0)));
    *response.status_mut() = refusal.status();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    response
}

/// An HTTP/1.1 request that waits for `100 Continue` before it sends its body, and whether
/// the proxy may answer it without ever sending the `100 Continue`: hyper sends it only when the
/// handler reads the body, so never for an empty body (`Content-Length: 0`), and not for a
/// request refused before its body is read. Two clients break on such an answer if the
/// connection is kept:
/// - a client that timed out waiting (botocore gives up after a second) has sent the body
///   anyway, while hyper assumed none would come; its bytes became the start of the next
///   request (seen in CI: the method `xPUT`, answered `SignatureDoesNotMatch`);
/// - botocore (boto/botocore#3010) mis-reads the next `100 Continue` exchange on a connection
///   whose previous expect-request got its final answer directly: it skips the status line of
///   the final response, so the aws cli's UploadPart saw no ETag (`KeyError: 'ETag'`, seen in
///   CI after an empty-file PUT on the same connection).
///
/// RFC 9110 §10.1.1 lets a server close instead of reading the body; such answers therefore
/// carry `Connection: close`, and the client's next request opens a fresh connection.
#[derive(Clone, Copy)]
struct ContinueUnsent {
    awaits_continue: bool,
    empty_body: bool,
}

impl ContinueUnsent {
    /// The request's head, and its body length if known (`Content-Length`, or 0 for no body).
    fn of(parts: &http::request::Parts, body_len: Option<u64>) -> Self {
        let awaits_continue = parts.version == http::Version::HTTP_11
            && parts
                .headers
                .get(http::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let empty_body = body_len == Some(0);
        Self {
            awaits_continue,
            empty_body,
        }
    }

    /// Whether the answer with `status` must close the connection.
    fn closes_after(self, status: http::StatusCode) -> bool {
        self.awaits_continue && (self.empty_body || !status.is_success())
    }
}

/// The status a HEAD answer should have where s3s' differs: s3s serializes HeadObject with a
/// fixed 200, while S3 answers a HEAD with a Range or `partNumber` as the GET would, 206 with
/// the Content-Range (which the handler has set).
fn head_status(
    method: &http::Method,
    status: http::StatusCode,
    headers: &http::HeaderMap,
) -> Option<http::StatusCode> {
    (method == http::Method::HEAD
        && status == http::StatusCode::OK
        && headers.contains_key(http::header::CONTENT_RANGE))
    .then_some(http::StatusCode::PARTIAL_CONTENT)
}

/// Responses to HEAD, and 204 and 304 responses, have no body (RFC 9110 §6.4.1). s3s
/// attaches an S3 error document to some of them (a HEAD 404, the 304 of a conditional GET).
/// hyper drops it on HTTP/1.1 but sends it on HTTP/2, where the DATA frame is a protocol
/// error: Go clients (rclone) and curl failed those requests. Headers such as Content-Length
/// stay, as HEAD semantics want.
fn may_have_body(method: &http::Method, status: http::StatusCode) -> bool {
    method != http::Method::HEAD
        && status != http::StatusCode::NO_CONTENT
        && status != http::StatusCode::NOT_MODIFIED
}

static PROMETHEUS: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
    std::sync::OnceLock::new();

/// Installs the process-wide Prometheus recorder once (metrics are process-global by design
/// of the `metrics` crate) and returns its handle.
pub fn prometheus() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let builder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5, 5.0,
                ])
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .clone()
}

/// How long a client of `/metrics` may take to send its request headers (and how long an idle
/// keep-alive connection to it stays open).
pub const METRICS_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `GET /metrics` (plain HTTP) on `listener` until `shutdown` resolves.
pub async fn serve_metrics(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let Some(handle) = prometheus() else {
        tracing::warn!("another metrics recorder is installed; /metrics is disabled");
        return;
    };
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(_) => continue,
            },
            () = &mut shutdown => break,
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let handle = handle.clone();
                    async move {
                        if req.uri().path() == "/metrics" {
                            http::Response::builder()
                                .header("content-type", "text/plain; version=0.0.4")
                                .body(http_body_util::Full::new(bytes::Bytes::from(
                                    handle.render(),
                                )))
                        } else {
                            http::Response::builder()
                                .status(404)
                                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                                    b"not found\n",
                                )))
                        }
                    }
                });
            // The scraper sends its request at once; a peer that does not is closed, so
            // half-open connections cannot pile up on this port either.
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(METRICS_HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expect_request_answered_without_100_continue_closes_the_connection() {
        let of = |version, expect: Option<&str>, len: u64| {
            let mut b = http::Request::builder().method("PUT").version(version);
            if let Some(v) = expect {
                b = b.header(http::header::EXPECT, v);
            }
            ContinueUnsent::of(&b.body(()).unwrap().into_parts().0, Some(len))
        };
        let (v11, h2) = (http::Version::HTTP_11, http::Version::HTTP_2);
        let (ok, refused) = (http::StatusCode::OK, http::StatusCode::NOT_FOUND);
        // The body was read (so 100 Continue went out): keep the connection.
        assert!(!of(v11, Some("100-continue"), 5).closes_after(ok));
        // Refused before the body, or an empty body: close.
        assert!(of(v11, Some("100-continue"), 5).closes_after(refused));
        assert!(of(v11, Some("100-Continue"), 0).closes_after(ok));
        // No expectation, or HTTP/2 (no 100 Continue dance): keep.
        assert!(!of(v11, None, 0).closes_after(refused));
        assert!(!of(h2, Some("100-continue"), 0).closes_after(refused));
    }

    #[test]
    fn request_ids_are_sixteen_hex_digits_and_distinct() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| RequestId::generate().0).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| {
            id.len() == 16
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        }));
        // Not a visible counter: consecutive ids differ in more than their last digits.
        let (a, b) = (RequestId::generate().0, RequestId::generate().0);
        assert_ne!(a[..8], b[..8]);
    }

    #[test]
    fn a_head_with_a_content_range_answers_206_like_the_get() {
        let mut ranged = http::HeaderMap::new();
        ranged.insert(
            http::header::CONTENT_RANGE,
            http::HeaderValue::from_static("bytes 0-9/100"),
        );
        let plain = http::HeaderMap::new();
        let (head, get, ok) = (http::Method::HEAD, http::Method::GET, http::StatusCode::OK);
        assert_eq!(
            head_status(&head, ok, &ranged),
            Some(http::StatusCode::PARTIAL_CONTENT)
        );
        assert_eq!(head_status(&head, ok, &plain), None);
        assert_eq!(head_status(&get, ok, &ranged), None, "GETs are s3s' own");
        let missing = http::StatusCode::NOT_FOUND;
        assert_eq!(head_status(&head, missing, &ranged), None);
    }
}
