//! The HTTPS accept loop and the Prometheus endpoint.
//!
//! The TLS handshake runs inside the spawned per-connection task with a timeout, so a slow
//! client never blocks the accept loop. Shutdown is graceful: the loop stops accepting, and
//! open connections finish their current requests.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections beyond this are closed at once (file descriptors and memory stay bounded).
pub const MAX_CONNECTIONS: usize = 4096;

/// Serves `service` over TLS on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    service: s3s::service::S3Service,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
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
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = service.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
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
            let builder = ConnBuilder::new(TokioExecutor::new());
            let service = hyper::service::service_fn(move |req| with_request_id(&service, req));
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    // Give open requests a bounded time to finish.
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}

/// The id of one S3 request: in the logs (span `request`), in the `x-amz-request-id` response
/// header, and in every release request the proxy sends to trustees for it, so the customer can
/// match audit log entries to requests.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    fn generate() -> Self {
        let mut bytes = [0u8; 8];
        let id = match crate::crypto::envelope::fill_random(&mut bytes) {
            Ok(()) => hex::encode(bytes).to_uppercase(),
            Err(_) => "0000000000000000".to_owned(),
        };
        Self(id)
    }
}

fn with_request_id(
    service: &s3s::service::S3Service,
    mut req: http::Request<hyper::body::Incoming>,
) -> impl Future<Output = Result<s3s::HttpResponse, s3s::HttpError>> + use<> {
    use tracing::Instrument as _;
    let id = RequestId::generate();
    let span = tracing::info_span!("request", id = %id.0, method = %req.method());
    req.extensions_mut().insert(id.clone());
    let method = req.method().clone();
    let call = hyper::service::Service::call(service, req);
    let started = Instant::now();
    async move {
        let mut response = call.await?;
        // Until the response head is ready (streamed bodies continue afterwards). Compared
        // with a client's latency it shows how much time is spent outside the proxy's handler.
        metrics::histogram!("treuhand_request_seconds", "method" => method.to_string())
            .record(started.elapsed().as_secs_f64());
        if let Ok(value) = http::HeaderValue::from_str(&id.0) {
            response.headers_mut().insert("x-amz-request-id", value);
        }
        if !may_have_body(&method, response.status()) {
            *response.body_mut() = s3s::Body::empty();
        }
        Ok(response)
    }
    .instrument(span)
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
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
