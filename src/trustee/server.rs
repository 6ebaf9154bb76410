//! The trustee's HTTPS front: hyper 1 on tokio-rustls with mandatory mTLS.
//!
//! Shape as in mini-redis: [`run`] takes a bound listener, the server state and a shutdown
//! future, so tests start it on `127.0.0.1:0`. The TLS handshake runs inside the spawned
//! per-connection task under a timeout, so a slow or silent client never blocks the accept
//! loop. The caller's identity comes from its verified client certificate
//! ([`crate::tls::peer_identity`]); requests never name their caller themselves.
//!
//! Every error becomes a JSON body `{error, reason, message}` with a precise status; no input
//! can panic a handler.
//!
//! `/v1/revocations` is a long poll (up to 30 s). At shutdown every open poll is answered at
//! once (empty), so stopping the server never waits for them.

// Handlers return `Result<Response, Response>` so `?` turns a bad parameter into its answer at
// once; the Err side is built once per failed request, so boxing it would buy nothing.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use super::Error;
use super::config::{Config, Limits, load_sealing_key, load_signing_key};
use super::engine::{MAX_REVOCATION_WAIT, Options, Trustee};
use super::policy::{Clock, Denial};
use super::store::SqliteStore;
use super::wire::{
    AuthorizeRequest, ErrorBody, EvaluateRequest, HandoverRequest, HealthResponse, MetadataUpdate,
    ReleaseRequest, ShredRequest,
};
use crate::tls::{PeerIdentity, peer_identity};

/// Everything [`run`] needs.
#[derive(Clone)]
pub struct Server {
    tls: Arc<rustls::ServerConfig>,
    trustee: Trustee,
    limits: Limits,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The TLS config holds the server's key: it stays out.
        let Self {
            trustee, limits, ..
        } = self;
        write!(
            f,
            "Server {{ trustee: {trustee:?}, limits: {limits:?}, .. }}"
        )
    }
}

impl Server {
    /// Assembles a server from parts.
    pub fn new(tls: Arc<rustls::ServerConfig>, trustee: Trustee, limits: Limits) -> Self {
        Self {
            tls,
            trustee,
            limits,
        }
    }

    /// Loads TLS files and keys, opens the store and starts the engine, as configured. Call it
    /// inside a tokio runtime (the grant-expiry tick is spawned on it).
    ///
    /// # Errors
    /// [`Error::Config`], [`Error::Tls`], [`Error::Store`].
    pub fn from_config(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        crate::tls::install_crypto_provider();
        let tls = crate::tls::server_config(
            &config.tls.cert,
            &config.tls.key,
            Some(&config.tls.client_ca),
        )?;
        let sealing = load_sealing_key(&config.keys.sealing_key)?;
        let signing = load_signing_key(&config.keys.signing_key)?;
        let store = SqliteStore::open(&config.store.path)?;
        let options = Options {
            max_batch: config.limits.max_batch,
            max_grant_secs: config.limits.max_grant_secs,
            denial_log: super::wire::RateLimit {
                per_second: config.limits.denial_log_per_second,
                burst: config.limits.denial_log_burst,
            },
            denial_log_callers: config.limits.denial_log_callers,
            ..Options::default()
        };
        let trustee = Trustee::start(Box::new(store), sealing, signing, clock, options)?;
        Ok(Self::new(tls, trustee, config.limits))
    }

    /// The engine handle.
    pub fn trustee(&self) -> &Trustee {
        &self.trustee
    }
}

/// Serves until `shutdown` completes, then stops accepting, lets open requests finish (up to
/// 10 s) and returns.
///
/// # Errors
/// None today; the `Result` leaves room for fatal listener errors.
pub async fn run(
    listener: TcpListener,
    server: Server,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let acceptor = TlsAcceptor::from(server.tls.clone());
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(server.limits.max_connections));
    let handshake_timeout = Duration::from_secs(server.limits.handshake_timeout_secs);
    let server = Arc::new(server);
    // Open long polls (`/v1/revocations`) end when this turns true, so a shutdown does not
    // wait for them.
    let (closing_tx, closing) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, remote)) =
            accepted.inspect_err(|e| tracing::warn!(error = %e, "accept failed"))
        else {
            // EMFILE and friends: back off briefly instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%remote, "connection limit reached; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        let server = server.clone();
        let closing = closing.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(tls) = tokio::time::timeout(handshake_timeout, acceptor.accept(stream))
                .await
                .inspect_err(|_| tracing::debug!(%remote, "TLS handshake timed out"))
                .ok()
                .and_then(|accepted| {
                    accepted
                        .inspect_err(
                            |e| tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                        )
                        .ok()
                })
            else {
                return;
            };
            let identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(peer_identity);
            let service = service_fn(move |request| {
                let server = server.clone();
                let identity = identity.clone();
                let closing = closing.clone();
                async move { Ok::<_, Infallible>(handle(&server, identity, request, closing).await) }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30));
            let connection = builder
                .serve_connection(TokioIo::new(tls), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    closing_tx.send_replace(true);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s; closing them");
    }
    Ok(())
}

type Body = Full<Bytes>;

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn error_response(
    status: StatusCode,
    error: &str,
    reason: &str,
    message: impl Into<String>,
) -> Response<Body> {
    json_response(
        status,
        &ErrorBody {
            error: error.into(),
            reason: reason.into(),
            message: message.into(),
        },
    )
}

/// Maps a trustee error to its HTTP answer: the one place that does. The cause of a 500 goes
/// to the log only.
fn error_to_response(error: &Error) -> Response<Body> {
    use StatusCode as S;
    const UNKNOWN: &str = "no such tenant or key version is enrolled";
    const SHREDDED: &str = "this tenant key was shredded; its share will never be released again";
    const UNAVAILABLE: &str = "the audit log cannot be written durably; nothing was released";
    const INTERNAL: &str = "internal error; see the trustee log";
    const HANDED_OVER: &str = "this holder handed its share of this key version to the customer admin for a re-deal; it serves the version no more: ask the holder that took over";
    const NOT_OPRF: &str = "this tenant key version is a legacy (shamir-tmk-v1) key: it has no per-object evaluation; its objects are read through /v1 release until they are rewrapped";
    const NOT_CHECKED_HERE: &str = "this holder keeps no S3 credential for the tenant, so it does not check the tenant's signatures; ask the holder that does";
    let (status, class, reason, message) = match error {
        Error::Denied(denial) => (S::FORBIDDEN, "denied", denial.code(), denial.message()),
        Error::UnknownTenant => (S::NOT_FOUND, "not_found", "unknown_tenant", UNKNOWN),
        Error::NotFound(message) => (S::NOT_FOUND, "not_found", "not_found", message.as_str()),
        Error::Shredded => (S::GONE, "shredded", "shredded", SHREDDED),
        Error::HandedOver => (S::GONE, "handed_over", "handed_over", HANDED_OVER),
        Error::Invalid(message) => (
            S::BAD_REQUEST,
            "bad_request",
            "invalid_request",
            message.as_str(),
        ),
        Error::Conflict(message) => (S::CONFLICT, "conflict", "conflict", message.as_str()),
        Error::NotOprfKey => (S::CONFLICT, "conflict", "not_an_oprf_key", NOT_OPRF),
        Error::SignaturesNotCheckedHere => (
            S::CONFLICT,
            "conflict",
            "signatures_not_checked_here",
            NOT_CHECKED_HERE,
        ),
        Error::AuditUnavailable => (
            S::SERVICE_UNAVAILABLE,
            "unavailable",
            "audit_unavailable",
            UNAVAILABLE,
        ),
        other => {
            tracing::error!(error = %other, "internal error");
            (S::INTERNAL_SERVER_ERROR, "internal", "internal", INTERNAL)
        }
    };
    error_response(status, class, reason, message)
}

enum Route<'a> {
    Health,
    Ready,
    /// `/v1/revocations`: the proxies' long poll.
    Revocations,
    /// `/v1/tenants/{tenant}/...` or `/v2/tenants/{tenant}/...`: the tenant (not yet
    /// validated) and what under it.
    Tenant(&'a str, TenantRoute<'a>),
}

enum TenantRoute<'a> {
    /// `keys`: enroll (POST) or list (GET).
    Keys,
    Release(&'a str),
    Shred(&'a str),
    Handover(&'a str),
    Metadata(&'a str),
    Policy,
    Grants,
    Approve(&'a str),
    Deny(&'a str),
    Revoke(&'a str),
    Audit,
    /// `/v2`: a per-object OPRF evaluation.
    Evaluate(&'a str),
    /// `/v2`: a strict tenant's signed request, checked and logged.
    Authorize,
}

impl Route<'_> {
    fn allowed(&self) -> &'static [Method] {
        match self {
            Route::Health
            | Route::Ready
            | Route::Revocations
            | Route::Tenant(_, TenantRoute::Audit) => &[Method::GET],
            Route::Tenant(_, TenantRoute::Policy) => &[Method::GET, Method::PUT],
            Route::Tenant(_, TenantRoute::Metadata(_)) => &[Method::PUT],
            Route::Tenant(_, TenantRoute::Grants | TenantRoute::Keys) => {
                &[Method::GET, Method::POST]
            }
            Route::Tenant(
                _,
                TenantRoute::Release(_)
                | TenantRoute::Shred(_)
                | TenantRoute::Handover(_)
                | TenantRoute::Approve(_)
                | TenantRoute::Deny(_)
                | TenantRoute::Revoke(_)
                | TenantRoute::Evaluate(_)
                | TenantRoute::Authorize,
            ) => &[Method::POST],
        }
    }
}

fn route(path: &str) -> Option<Route<'_>> {
    if let Some(rest) = path.strip_prefix("/v2/") {
        let parts: Vec<&str> = rest.split('/').collect();
        return Some(match parts.as_slice() {
            ["tenants", tenant, "keys", version, "evaluate"] => {
                Route::Tenant(tenant, TenantRoute::Evaluate(version))
            }
            ["tenants", tenant, "authorize"] => Route::Tenant(tenant, TenantRoute::Authorize),
            _ => return None,
        });
    }
    let rest = path.strip_prefix("/v1/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    Some(match parts.as_slice() {
        ["health"] => Route::Health,
        ["ready"] => Route::Ready,
        ["revocations"] => Route::Revocations,
        ["tenants", tenant, under @ ..] => Route::Tenant(
            tenant,
            match under {
                ["keys"] => TenantRoute::Keys,
                ["keys", version, "release"] => TenantRoute::Release(version),
                ["keys", version, "shred"] => TenantRoute::Shred(version),
                ["keys", version, "handover"] => TenantRoute::Handover(version),
                ["keys", version, "metadata"] => TenantRoute::Metadata(version),
                ["policy"] => TenantRoute::Policy,
                ["grants"] => TenantRoute::Grants,
                ["grants", id, "approve"] => TenantRoute::Approve(id),
                ["grants", id, "deny"] => TenantRoute::Deny(id),
                ["grants", id, "revoke"] => TenantRoute::Revoke(id),
                ["audit"] => TenantRoute::Audit,
                _ => return None,
            },
        ),
        _ => return None,
    })
}

fn bad_request(reason: &str, message: impl Into<String>) -> Response<Body> {
    error_response(StatusCode::BAD_REQUEST, "bad_request", reason, message)
}

fn tenant_param(tenant: &str) -> Result<String, Response<Body>> {
    crate::crypto::envelope::validate_tenant_id(tenant)
        .map(|()| tenant.to_owned())
        .map_err(|e| bad_request("invalid_tenant", e.to_string()))
}

fn version_param(version: &str) -> Result<u32, Response<Body>> {
    version.parse::<u32>().map_err(|_| {
        bad_request(
            "invalid_key_version",
            "the key version in the URL must be a decimal number (0..=4294967295)",
        )
    })
}

/// The query string's `name=value` pairs. Values are used as sent (every parameter of this
/// API is digits or letters, so nothing needs decoding); a repeated name is refused.
fn query_params(query: Option<&str>) -> Result<Vec<(&str, &str)>, Response<Body>> {
    let mut params: Vec<(&str, &str)> = Vec::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if params.iter().any(|(seen, _)| *seen == name) {
            return Err(bad_request(
                "invalid_query",
                format!("the query parameter {name:?} is given twice"),
            ));
        }
        params.push((name, value));
    }
    Ok(params)
}

/// The named parameter as a decimal `u64`; `None` when absent.
fn u64_param(params: &[(&str, &str)], name: &str) -> Result<Option<u64>, Response<Body>> {
    let Some((_, value)) = params.iter().find(|(n, _)| *n == name) else {
        return Ok(None);
    };
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u64>() {
        Ok(number) if digits => Ok(Some(number)),
        _ => Err(bad_request(
            "invalid_query",
            format!(
                "the query parameter {name} must be a decimal number (0..=18446744073709551615)"
            ),
        )),
    }
}

/// Reads and parses a JSON body with the size limit and a content type check. An empty body
/// gives `None` when `optional`.
async fn json_body<T: DeserializeOwned>(
    request: Request<Incoming>,
    limit: usize,
    optional: bool,
) -> Result<Option<T>, Response<Body>> {
    let too_large = || {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "body_too_large",
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes().to_vec());
    let body = match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(_) => {
            return Err(bad_request(
                "body_read_failed",
                "the request body could not be read",
            ));
        }
    };
    if body.is_empty() && optional {
        return Ok(None);
    }
    let is_json = content_type.as_deref().is_some_and(|ct| {
        let media = ct.split(|b| *b == b';').next().unwrap_or_default();
        media.trim_ascii().eq_ignore_ascii_case(b"application/json")
    });
    if !is_json {
        return Err(error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "content_type_not_json",
            "send the body as JSON with Content-Type: application/json",
        ));
    }
    match serde_json::from_slice::<T>(&body) {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.is_data() => Err(bad_request(
            "invalid_field",
            format!("the JSON does not match the expected shape: {e}"),
        )),
        Err(e) => Err(bad_request(
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// Reads a JSON body that must be there ([`json_body`]; an empty one is malformed JSON).
async fn required_body<T: DeserializeOwned>(
    request: Request<Incoming>,
    limit: usize,
) -> Result<T, Response<Body>> {
    json_body(request, limit, false)
        .await?
        .ok_or_else(|| bad_request("malformed_json", "the body is not valid JSON: it is empty"))
}

async fn handle(
    server: &Server,
    identity: Option<PeerIdentity>,
    request: Request<Incoming>,
    closing: watch::Receiver<bool>,
) -> Response<Body> {
    match dispatch(server, identity, request, closing).await {
        Ok(response) | Err(response) => response,
    }
}

/// The answer to an engine call: 200 with the value as JSON, or the error's answer.
fn ok<T: Serialize>(result: Result<T, Error>) -> Result<Response<Body>, Response<Body>> {
    answer(StatusCode::OK, result)
}

/// As [`ok`], with 201 Created.
fn created<T: Serialize>(result: Result<T, Error>) -> Result<Response<Body>, Response<Body>> {
    answer(StatusCode::CREATED, result)
}

fn answer<T: Serialize>(
    status: StatusCode,
    result: Result<T, Error>,
) -> Result<Response<Body>, Response<Body>> {
    result
        .map(|value| json_response(status, &value))
        .map_err(|error| error_to_response(&error))
}

async fn dispatch(
    server: &Server,
    identity: Option<PeerIdentity>,
    request: Request<Incoming>,
    closing: watch::Receiver<bool>,
) -> Result<Response<Body>, Response<Body>> {
    let path = request.uri().path().to_owned();
    let Some(route) = route(&path) else {
        return Err(error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "no_such_route",
            format!("no API route {path}; see docs/trustee-api.md"),
        ));
    };
    let method = request.method().clone();
    if !route.allowed().contains(&method) {
        let allow = route
            .allowed()
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let mut response = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method_not_allowed",
            format!("{method} is not allowed here; use {allow}"),
        );
        if let Ok(value) = HeaderValue::from_str(&allow) {
            response.headers_mut().insert(header::ALLOW, value);
        }
        return Err(response);
    }
    let trustee = &server.trustee;
    let public_key = hex::encode(trustee.public_key());
    let (tenant, under) = match route {
        Route::Tenant(tenant, under) => (tenant, under),
        Route::Revocations => {
            let Some(caller) = identity else {
                return Err(error_to_response(&Error::Denied(Denial::UnknownIdentity)));
            };
            return revocations(trustee, caller, request.uri().query(), closing).await;
        }
        Route::Health | Route::Ready => {
            // Liveness is answering at all; readiness also needs a usable store.
            let ready = matches!(route, Route::Health) || trustee.ready().await;
            let (status, text) = if ready {
                (StatusCode::OK, "ok")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            };
            let health = HealthResponse {
                status: text.into(),
                trustee_key: public_key,
            };
            return Ok(json_response(status, &health));
        }
    };
    let Some(caller) = identity else {
        return Err(error_to_response(&Error::Denied(Denial::UnknownIdentity)));
    };
    let tenant = tenant_param(tenant)?;
    let limit = server.limits.max_body_bytes;
    let get = method == Method::GET;
    match under {
        TenantRoute::Release(version) => {
            let version = version_param(version)?;
            let body: ReleaseRequest = required_body(request, limit).await?;
            body.validate()
                .map_err(|m| bad_request("invalid_field", m))?;
            ok(trustee.release(caller, tenant, version, body).await)
        }
        TenantRoute::Evaluate(version) => {
            let version = version_param(version)?;
            let body: EvaluateRequest = required_body(request, limit).await?;
            body.validate()
                .map_err(|m| bad_request("invalid_field", m))?;
            ok(trustee.evaluate(caller, tenant, version, body).await)
        }
        TenantRoute::Authorize => {
            let body: AuthorizeRequest = required_body(request, limit).await?;
            body.validate()
                .map_err(|m| bad_request("invalid_field", m))?;
            ok(trustee.authorize(caller, tenant, body).await)
        }
        TenantRoute::Keys if get => ok(trustee.keys(caller, tenant).await),
        TenantRoute::Keys => {
            let body = required_body(request, limit).await?;
            created(trustee.enroll(caller, tenant, body).await)
        }
        TenantRoute::Handover(version) => {
            let version = version_param(version)?;
            let body: HandoverRequest = required_body(request, limit).await?;
            ok(trustee.handover(caller, tenant, version, body).await)
        }
        TenantRoute::Metadata(version) => {
            let version = version_param(version)?;
            let body: MetadataUpdate = required_body(request, limit).await?;
            ok(trustee.update_metadata(caller, tenant, version, body).await)
        }
        TenantRoute::Shred(version) => {
            let version = version_param(version)?;
            let body: Option<ShredRequest> = json_body(request, limit, true).await?;
            ok(trustee
                .shred(caller, tenant, version, body.unwrap_or_default())
                .await)
        }
        TenantRoute::Policy if get => ok(trustee.policy(caller, tenant).await),
        TenantRoute::Grants if get => ok(trustee.grants(caller, tenant).await),
        TenantRoute::Policy => {
            let body = required_body(request, limit).await?;
            ok(trustee.set_policy(caller, tenant, body).await)
        }
        TenantRoute::Grants => {
            let body = required_body(request, limit).await?;
            created(trustee.request_grant(caller, tenant, body).await)
        }
        TenantRoute::Approve(id) => ok(trustee.approve_grant(caller, tenant, id.to_owned()).await),
        TenantRoute::Deny(id) => ok(trustee.deny_grant(caller, tenant, id.to_owned()).await),
        TenantRoute::Revoke(id) => ok(trustee.revoke_grant(caller, tenant, id.to_owned()).await),
        TenantRoute::Audit => {
            let params = query_params(request.uri().query())?;
            let from = u64_param(&params, "from")?.unwrap_or(0);
            ok(trustee.audit_from(caller, tenant, from).await)
        }
    }
}

/// `GET /v1/revocations?epoch=E&after=N&wait_ms=W`: every parameter must be there (`epoch`
/// may be empty: a caller without a stream yet); `wait_ms` is capped at 30 s.
async fn revocations(
    trustee: &Trustee,
    caller: PeerIdentity,
    query: Option<&str>,
    mut closing: watch::Receiver<bool>,
) -> Result<Response<Body>, Response<Body>> {
    let params = query_params(query)?;
    let missing = |name: &str| {
        bad_request(
            "invalid_query",
            format!("the query parameter {name} is missing: use ?epoch=E&after=N&wait_ms=W"),
        )
    };
    let epoch = params
        .iter()
        .find(|(name, _)| *name == "epoch")
        .map(|(_, value)| *value)
        .ok_or_else(|| missing("epoch"))?;
    if epoch.len() > 64 || !epoch.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(bad_request(
            "invalid_query",
            "the query parameter epoch must be at most 64 letters and digits (empty for none)",
        ));
    }
    let after = u64_param(&params, "after")?.ok_or_else(|| missing("after"))?;
    let wait_ms = u64_param(&params, "wait_ms")?.ok_or_else(|| missing("wait_ms"))?;
    let wait = Duration::from_millis(wait_ms).min(MAX_REVOCATION_WAIT);
    let closing = async move {
        // An error means the server is gone: end the poll as well.
        let _ = closing.wait_for(|closing| *closing).await;
    };
    ok(trustee
        .revocations(caller, epoch.to_owned(), after, wait, closing)
        .await)
}
