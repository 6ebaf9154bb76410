//! The trustee client used by the proxy and the CLI: pooled keep-alive HTTPS with mTLS.
//!
//! Every call has a timeout. Errors map onto what the proxy answers: [`Error::Unreachable`]
//! (503), [`Error::Denied`] (403), [`Error::Shredded`] (410), [`Error::UnknownTenant`], and
//! [`Error::Protocol`] for anything that does not follow the API (502).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::Error;
use super::audit::AuditLog;
use super::policy::Denial;
use super::wire::Policy;
use super::wire::{
    AuthorizeRequest, AuthorizeResponse, EnrollRequest, EnrollResponse, ErrorBody, EvaluateRequest,
    EvaluateResponse, Grant, GrantRequest, HandoverRequest, HandoverResponse, HealthResponse,
    KeysResponse, MetadataUpdate, MetadataUpdated, ReleaseRequest, ReleaseResponse,
    RevocationsResponse, ShredReceipt, ShredRequest,
};
use crate::crypto::envelope::validate_tenant_id;
use crate::secret::{Share, ShareValue};

/// Default timeout of one call (connect, TLS, request and response).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response body the client reads (audit logs can be large).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// A client for one trustee.
#[derive(Clone)]
pub struct TrusteeClient {
    base: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for TrusteeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The HTTPS client holds this caller's TLS key: only the address and timeout show.
        let Self { base, timeout, .. } = self;
        write!(
            f,
            "TrusteeClient {{ base: {base:?}, timeout: {timeout:?} }}"
        )
    }
}

impl TrusteeClient {
    /// A client for the trustee at `base_url` (e.g. `https://trustee.example:8443`), using the
    /// given rustls config, which should present this caller's client certificate. Its ALPN
    /// list is replaced (HTTP/1.1 keep-alive). Connections are pooled and reused.
    ///
    /// # Errors
    /// [`Error::Config`] if the URL is not `https://host[:port]`.
    pub fn new(base_url: &str, tls: Arc<rustls::ClientConfig>) -> Result<Self, Error> {
        let base = base_url.trim_end_matches('/').to_owned();
        let uri: http::Uri = base
            .parse()
            .map_err(|_| Error::Config(format!("trustee URL {base_url:?} is not a URL")))?;
        if uri.scheme_str() != Some("https") || uri.host().is_none() || uri.path().len() > 1 {
            return Err(Error::Config(format!(
                "trustee URL {base_url:?} must look like https://host:port"
            )));
        }
        let mut tls = (*tls).clone();
        tls.alpn_protocols.clear();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(DEFAULT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build(connector);
        Ok(Self {
            base,
            client,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Replaces the per-call timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Result<T, ErrorBody>), Error> {
        let uri = format!("{}{path}", self.base);
        let mut builder = Request::builder().method(method).uri(uri);
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Error::Protocol(format!("cannot build request: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| Error::Unreachable(error_chain(&e)))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| Error::Unreachable(format!("reading the response failed: {e}")))?
                .to_bytes();
            Ok::<_, Error>((status, Zeroizing::new(bytes.to_vec())))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| Error::Unreachable(format!("no answer within {:?}", self.timeout)))??;
        if status.is_success() {
            let value = serde_json::from_slice(&bytes).map_err(|e| {
                Error::Protocol(format!("the {status} response does not parse: {e}"))
            })?;
            return Ok((status, Ok(value)));
        }
        let error: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
            error: "unknown".into(),
            reason: "unknown".into(),
            message: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
        });
        Ok((status, Err(error)))
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, Error> {
        let (status, result) = self.call(method, path, body).await?;
        result.map_err(|error| map_error(status, error))
    }

    /// Sends `body` as JSON.
    async fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T, Error> {
        let body = serde_json::to_vec(body)
            .map_err(|e| Error::Protocol(format!("cannot encode the request: {e}")))?;
        self.send(method, path, Some(body)).await
    }

    /// `/v1/tenants/{tenant}/{rest}`, after checking the tenant id.
    fn tenant_path(tenant: &str, rest: &str) -> Result<String, Error> {
        validate_tenant_id(tenant).map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(format!("/v1/tenants/{tenant}/{rest}"))
    }

    /// `POST /v2/tenants/{tenant}/keys/{version}/evaluate`: the holder's evaluation of its
    /// share on one object, with its proof. The caller checks the proof
    /// ([`crate::crypto::oprf::combine`]); this only checks the encoding.
    ///
    /// # Errors
    /// As [`Self::release`].
    pub async fn evaluate(
        &self,
        tenant: &str,
        key_version: u32,
        request: &EvaluateRequest,
    ) -> Result<crate::crypto::oprf::Evaluation, Error> {
        validate_tenant_id(tenant).map_err(|e| Error::Invalid(e.to_string()))?;
        let path = format!("/v2/tenants/{tenant}/keys/{key_version}/evaluate");
        let response: EvaluateResponse = self.send_json(Method::POST, &path, request).await?;
        let decode = |field: &str, text: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|_| Error::Protocol(format!("the evaluation's {field} is not base64")))
        };
        let element = decode("element", &response.element)?;
        let proof = decode("proof", &response.proof)?;
        crate::crypto::oprf::Evaluation::from_bytes(&element, &proof)
            .map_err(|e| Error::Protocol(format!("the evaluation is malformed: {e}")))
    }

    /// [`Self::evaluate`] without decoding: the holder's answer as sent, with its x and the
    /// sequence number of the audit entry that records the evaluation.
    ///
    /// # Errors
    /// As [`Self::release`].
    pub async fn evaluate_response(
        &self,
        tenant: &str,
        key_version: u32,
        request: &EvaluateRequest,
    ) -> Result<EvaluateResponse, Error> {
        validate_tenant_id(tenant).map_err(|e| Error::Invalid(e.to_string()))?;
        let path = format!("/v2/tenants/{tenant}/keys/{key_version}/evaluate");
        self.send_json(Method::POST, &path, request).await
    }

    /// `POST /v2/tenants/{tenant}/authorize`: has the holder check (and log) a strict
    /// tenant's signed request.
    ///
    /// # Errors
    /// As [`Self::release`].
    pub async fn authorize(
        &self,
        tenant: &str,
        request: &AuthorizeRequest,
    ) -> Result<AuthorizeResponse, Error> {
        validate_tenant_id(tenant).map_err(|e| Error::Invalid(e.to_string()))?;
        let path = format!("/v2/tenants/{tenant}/authorize");
        self.send_json(Method::POST, &path, request).await
    }

    /// Asks for the share of `tenant` / `key_version`. The response is checked: tenant and
    /// version echo the request, x is non-zero and the share is exactly 32 bytes.
    ///
    /// # Errors
    /// [`Error::Unreachable`], [`Error::Denied`], [`Error::Shredded`],
    /// [`Error::UnknownTenant`], [`Error::Protocol`], [`Error::Invalid`].
    pub async fn release(
        &self,
        tenant: &str,
        key_version: u32,
        request: &ReleaseRequest,
    ) -> Result<Share, Error> {
        let path = Self::tenant_path(tenant, &format!("keys/{key_version}/release"))?;
        let response: ReleaseResponse = self.send_json(Method::POST, &path, request).await?;
        if response.tenant != tenant || response.key_version != key_version {
            return Err(Error::Protocol(
                "the release answer is for a different tenant or key version".into(),
            ));
        }
        if response.x == 0 {
            return Err(Error::Protocol("the released share has x = 0".into()));
        }
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(response.share.as_bytes())
                .map_err(|_| Error::Protocol("the released share is not base64".into()))?,
        );
        let value = ShareValue::from_slice(&bytes)
            .ok_or_else(|| Error::Protocol("the released share is not 32 bytes".into()))?;
        Ok(Share::new(response.x, value))
    }

    /// Enrolls a share (customer admin).
    ///
    /// # Errors
    /// As [`TrusteeClient::release`], plus [`Error::Conflict`].
    pub async fn enroll(
        &self,
        tenant: &str,
        request: &EnrollRequest,
    ) -> Result<EnrollResponse, Error> {
        let path = Self::tenant_path(tenant, "keys")?;
        self.send_json(Method::POST, &path, request).await
    }

    /// Sets the tenant's policy (customer admin).
    ///
    /// # Errors
    /// As [`TrusteeClient::release`].
    pub async fn set_policy(&self, tenant: &str, policy: &Policy) -> Result<Policy, Error> {
        let path = Self::tenant_path(tenant, "policy")?;
        self.send_json(Method::PUT, &path, policy).await
    }

    /// Reads the tenant's policy (customer admin).
    ///
    /// # Errors
    /// As [`TrusteeClient::release`].
    pub async fn policy(&self, tenant: &str) -> Result<Policy, Error> {
        self.send(Method::GET, &Self::tenant_path(tenant, "policy")?, None)
            .await
    }

    /// Files an emergency grant request (operator).
    ///
    /// # Errors
    /// As [`TrusteeClient::release`].
    pub async fn request_grant(
        &self,
        tenant: &str,
        request: &GrantRequest,
    ) -> Result<Grant, Error> {
        let path = Self::tenant_path(tenant, "grants")?;
        self.send_json(Method::POST, &path, request).await
    }

    /// Approves a pending grant (customer admin).
    ///
    /// # Errors
    /// As [`TrusteeClient::release`], plus [`Error::NotFound`] and [`Error::Conflict`].
    pub async fn approve_grant(&self, tenant: &str, grant_id: &str) -> Result<Grant, Error> {
        self.grant_action(tenant, grant_id, "approve").await
    }

    /// Lists the tenant's grants (customer admin or operator).
    ///
    /// # Errors
    /// As [`TrusteeClient::release`].
    pub async fn grants(&self, tenant: &str) -> Result<Vec<Grant>, Error> {
        self.send(Method::GET, &Self::tenant_path(tenant, "grants")?, None)
            .await
    }

    /// Shreds the tenant's share of `key_version` and returns the signed receipt.
    ///
    /// # Errors
    /// As [`TrusteeClient::release`].
    pub async fn shred(
        &self,
        tenant: &str,
        key_version: u32,
        request: &ShredRequest,
    ) -> Result<ShredReceipt, Error> {
        let path = Self::tenant_path(tenant, &format!("keys/{key_version}/shred"))?;
        self.send_json(Method::POST, &path, request).await
    }

    /// Downloads the tenant's audit log with the latest signed checkpoint (customer admin).
    ///
    /// # Errors
    /// As [`TrusteeClient::release`].
    pub async fn audit(&self, tenant: &str) -> Result<AuditLog, Error> {
        self.send(Method::GET, &Self::tenant_path(tenant, "audit")?, None)
            .await
    }

    /// Denies a pending grant (customer admin).
    ///
    /// # Errors
    /// As [`TrusteeClient::approve_grant`].
    pub async fn deny_grant(&self, tenant: &str, grant_id: &str) -> Result<Grant, Error> {
        self.grant_action(tenant, grant_id, "deny").await
    }

    /// Revokes an approved grant at once (customer admin).
    ///
    /// # Errors
    /// As [`TrusteeClient::approve_grant`].
    pub async fn revoke_grant(&self, tenant: &str, grant_id: &str) -> Result<Grant, Error> {
        self.grant_action(tenant, grant_id, "revoke").await
    }

    async fn grant_action(
        &self,
        tenant: &str,
        grant_id: &str,
        action: &str,
    ) -> Result<Grant, Error> {
        if grant_id.is_empty()
            || !grant_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(Error::Invalid(
                "grant ids are letters, digits and '-'".into(),
            ));
        }
        let path = Self::tenant_path(tenant, &format!("grants/{grant_id}/{action}"))?;
        self.send(Method::POST, &path, None).await
    }

    /// The key versions this holder knows for the tenant, with their state (customer admin or
    /// operator).
    ///
    /// # Errors
    /// As [`TrusteeClient::release`].
    pub async fn keys(&self, tenant: &str) -> Result<KeysResponse, Error> {
        self.send(Method::GET, &Self::tenant_path(tenant, "keys")?, None)
            .await
    }

    /// Hands this holder's share of `key_version` to the customer admin for a re-deal
    /// (customer admin only; logged). The holder stops evaluating the version.
    ///
    /// # Errors
    /// As [`TrusteeClient::release`].
    pub async fn handover(
        &self,
        tenant: &str,
        key_version: u32,
        request: &HandoverRequest,
    ) -> Result<HandoverResponse, Error> {
        let path = Self::tenant_path(tenant, &format!("keys/{key_version}/handover"))?;
        self.send_json(Method::POST, &path, request).await
    }

    /// Replaces the public metadata of `key_version` after a hand-over (customer admin).
    ///
    /// # Errors
    /// As [`TrusteeClient::release`].
    pub async fn update_metadata(
        &self,
        tenant: &str,
        key_version: u32,
        update: &MetadataUpdate,
    ) -> Result<MetadataUpdated, Error> {
        let path = Self::tenant_path(tenant, &format!("keys/{key_version}/metadata"))?;
        self.send_json(Method::PUT, &path, update).await
    }

    /// The audit entries from sequence number `from` on (all with `from` = 1), with the
    /// latest signed checkpoint (customer admin).
    ///
    /// # Errors
    /// As [`TrusteeClient::release`].
    pub async fn audit_from(&self, tenant: &str, from: u64) -> Result<AuditLog, Error> {
        let path = Self::tenant_path(tenant, &format!("audit?from={from}"))?;
        self.send(Method::GET, &path, None).await
    }

    /// Long-polls the revocation events after `after` of stream `epoch` (proxy). Build the
    /// client with a timeout longer than `wait`.
    ///
    /// # Errors
    /// As [`TrusteeClient::release`].
    pub async fn revocations(
        &self,
        epoch: &str,
        after: u64,
        wait: Duration,
    ) -> Result<RevocationsResponse, Error> {
        if !epoch.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::Invalid("epochs are letters and digits".into()));
        }
        let path = format!(
            "/v1/revocations?epoch={epoch}&after={after}&wait_ms={}",
            wait.as_millis()
        );
        self.send(Method::GET, &path, None).await
    }

    /// Liveness (`/v1/health`); returns the trustee's public key.
    ///
    /// # Errors
    /// [`Error::Unreachable`], [`Error::Protocol`].
    pub async fn health(&self) -> Result<HealthResponse, Error> {
        self.send(Method::GET, "/v1/health", None).await
    }

    /// Readiness (`/v1/ready`): the store is usable.
    ///
    /// # Errors
    /// [`Error::Unreachable`] when not ready.
    pub async fn ready(&self) -> Result<HealthResponse, Error> {
        self.send(Method::GET, "/v1/ready", None).await
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn map_error(status: StatusCode, body: ErrorBody) -> Error {
    match status {
        StatusCode::FORBIDDEN => Error::Denied(Denial::from_code(&body.reason)),
        StatusCode::GONE => Error::Shredded,
        StatusCode::NOT_FOUND if body.reason == "unknown_tenant" => Error::UnknownTenant,
        StatusCode::NOT_FOUND if body.reason == "not_found" => Error::NotFound(body.message),
        StatusCode::CONFLICT if body.reason == "not_an_oprf_key" => Error::NotOprfKey,
        StatusCode::CONFLICT if body.reason == "signatures_not_checked_here" => {
            Error::SignaturesNotCheckedHere
        }
        StatusCode::CONFLICT => Error::Conflict(body.message),
        StatusCode::SERVICE_UNAVAILABLE => {
            Error::Unreachable(format!("trustee unavailable: {}", body.message))
        }
        StatusCode::BAD_REQUEST
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            Error::Invalid(format!("{}: {}", body.reason, body.message))
        }
        other => Error::Protocol(format!(
            "unexpected status {other}: {} {}",
            body.reason, body.message
        )),
    }
}
