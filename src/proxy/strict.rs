//! Strict tenants on the proxy's side: the proxy cannot check a strict tenant's SigV4
//! signature (it never knows the secret), so it forwards the signed request to the tenant's
//! signature-checking holder and lets the request through only on that holder's yes.
//!
//! CONTRACT (issue 12): the strict helper implements the detection, forwarding and stripping
//! here and in `guard.rs`; `s3::request::RequestContext::of` takes the tenant from a
//! [`StrictAuth`] extension when there is one, and passes `signed` with every evaluation.
//!
//! How an accepted request reaches s3s: not anonymous. s3s 0.14.1 decodes an aws-chunked
//! body (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`, what boto3 and the aws cli send over HTTPS)
//! only inside its SigV4 check, and its decoder is private, so a request whose signature was
//! stripped would reach the S3 layer with the chunk framing still in the body. Instead the
//! gate *re-signs* the accepted request, same canonical request, date and scope, with a
//! random key of this process ([`InternalKey`], never written anywhere), and the proxy's
//! `Auth` answers that key for strict access key ids. s3s then checks the signature, the
//! date and the payload mode as for any tenant, decodes the body, and reports the tenant's
//! access key as the request's credentials. A request that did not pass the gate cannot
//! carry a signature under the internal key, so s3s refuses it: the gate fails closed even
//! where it failed to recognize a strict request.

use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use super::guard::{self, Refusal};
use super::keys::{CustomerShare, Holder, ReleaseError};
use super::registry::{Registry, Tenant};
use crate::trustee::signature;
use crate::trustee::wire::{AuthorizeRequest, SignedRequest};

/// Put into a request's extensions once the tenant's holder has accepted its signature.
#[derive(Debug, Clone)]
pub struct StrictAuth {
    /// The access key id the request was signed with (it names the tenant).
    pub access_key_id: String,
    /// The request as signed, forwarded with every evaluation for it.
    pub signed: Arc<SignedRequest>,
}

/// The proxy's own SigV4 secret for strict tenants' accepted requests: 32 random bytes
/// (hex), made at startup, kept in memory only. Secret.
pub struct InternalKey(Zeroizing<String>);

impl InternalKey {
    /// A fresh random key.
    ///
    /// # Errors
    /// When the system random generator fails.
    pub fn generate() -> Result<Self, crate::crypto::Error> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        crate::crypto::envelope::fill_random(bytes.as_mut())?;
        Ok(Self(Zeroizing::new(hex::encode(bytes.as_ref()))))
    }

    /// The secret text, for s3s (`Auth`) and the re-signing.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for InternalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InternalKey([REDACTED])")
    }
}

/// The strict-tenant gate the server runs before s3s.
#[derive(Debug)]
pub struct Gate {
    registry: Arc<Registry>,
    key: Arc<InternalKey>,
    timeout: Duration,
}

impl Gate {
    /// A gate for the tenants of `registry`, re-signing with `key`, waiting at most
    /// `timeout` for each holder.
    pub fn new(registry: Arc<Registry>, key: Arc<InternalKey>, timeout: Duration) -> Self {
        Self {
            registry,
            key,
            timeout,
        }
    }

    /// Admits a request: untouched unless it is signed with a strict tenant's access key;
    /// then its payload mode is checked, the tenant's signature-checking holder must accept
    /// it, and it is re-signed with the internal key and marked with [`StrictAuth`].
    ///
    /// # Errors
    /// A [`Refusal`]: 400 for a payload mode the holder cannot vouch for, 403 when the
    /// holder refuses (or the request is ambiguous or cannot be forwarded), 503 when no
    /// holder that checks signatures answers.
    pub async fn admit(
        &self,
        parts: &mut http::request::Parts,
        request_id: &str,
    ) -> Result<(), Refusal> {
        let keys = guard::sigv4_access_keys(parts);
        let strict: Vec<Arc<Tenant>> = keys
            .iter()
            .filter_map(|ak| self.registry.tenant(ak))
            .filter(|t| t.keys.metadata.strict)
            .collect();
        let Some(tenant) = strict.first() else {
            return Ok(());
        };
        if keys.len() != 1 {
            tracing::debug!("strict tenant request names more than one credential");
            return Err(Refusal::STRICT_DENIED);
        }
        guard::check_strict_payload(parts)?;
        let signed = signed_request(parts).ok_or(Refusal::STRICT_DENIED)?;
        let request = AuthorizeRequest {
            request_id: request_id.to_owned(),
            signed,
        };
        self.authorize(tenant, &request).await?;
        let AuthorizeRequest { signed, .. } = request;
        resign(parts, &signed, self.key.expose_secret())?;
        parts.extensions.insert(StrictAuth {
            access_key_id: tenant.access_key_id.clone(),
            signed: Arc::new(signed),
        });
        Ok(())
    }

    /// Asks the holders that check the tenant's signatures, in order, until one answers.
    async fn authorize(&self, tenant: &Tenant, request: &AuthorizeRequest) -> Result<(), Refusal> {
        let holders: Vec<&Holder> = match &tenant.keys.customer {
            CustomerShare::Holder(holder) => vec![holder],
            CustomerShare::SseC { .. } => tenant.keys.trustees.iter().collect(),
        };
        for holder in holders {
            let answer =
                tokio::time::timeout(self.timeout, holder.source.authorize(&tenant.id, request))
                    .await;
            match answer {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(ReleaseError::Denied { reason })) => {
                    tracing::info!(tenant = %tenant.id, holder = %holder.name, %reason,
                        "strict tenant request refused by its holder");
                    return Err(denial_refusal(
                        &reason,
                        request.signed.authorization.is_none(),
                    ));
                }
                Ok(Err(ReleaseError::Shredded | ReleaseError::UnknownTenant)) => {
                    tracing::info!(tenant = %tenant.id, holder = %holder.name,
                        "strict tenant unknown to its holder");
                    return Err(Refusal::STRICT_DENIED);
                }
                Ok(Err(e)) => {
                    tracing::warn!(tenant = %tenant.id, holder = %holder.name, error = %e,
                        "signature check failed; trying the next holder");
                }
                Err(_) => {
                    tracing::warn!(tenant = %tenant.id, holder = %holder.name,
                        "signature check timed out; trying the next holder");
                }
            }
        }
        Err(Refusal::STRICT_UNAVAILABLE)
    }
}

/// The answer to a strict tenant's request its holder refused with `reason` (a
/// `trustee::policy::Denial` code): what S3 answers for the same fault, so clients see the
/// codes they know (an expired presigned URL is `AccessDenied` "Request has expired", a bad
/// signature `SignatureDoesNotMatch`). Every other reason stays a plain `AccessDenied`.
fn denial_refusal(reason: &str, presigned: bool) -> Refusal {
    match reason {
        "signature_expired" if presigned => Refusal::STRICT_EXPIRED,
        "signature_expired" => Refusal::STRICT_SKEWED,
        "signature_mismatch" => Refusal::STRICT_MISMATCH,
        _ => Refusal::STRICT_DENIED,
    }
}

/// The request as the customer signed it: method, raw path and query, the headers its
/// `SignedHeaders` names (all values of each, in order), and the `Authorization` header.
/// `None` when there is no SigV4 signature to forward.
pub fn signed_request(parts: &http::request::Parts) -> Option<SignedRequest> {
    let authorization = match parts.headers.get(http::header::AUTHORIZATION) {
        Some(value) => Some(value.to_str().ok()?.to_owned()),
        None => None,
    };
    let query = parts.uri.query().unwrap_or_default();
    let names = match &authorization {
        Some(header) => header
            .split(',')
            .find_map(|part| part.trim().strip_prefix("SignedHeaders="))?
            .to_owned(),
        None => query.split('&').find_map(|pair| {
            let value = pair.strip_prefix("X-Amz-SignedHeaders=")?;
            String::from_utf8(crate::crypto::sigv4::percent_decode(value)).ok()
        })?,
    };
    let mut headers = Vec::new();
    for name in names.split(';') {
        let mut values = parts.headers.get_all(name).iter().peekable();
        if name == "host" && values.peek().is_none() {
            // HTTP/2: the authority stands for the Host header, as s3s takes it.
            if let Some(authority) = parts.uri.authority() {
                headers.push(("host".to_owned(), authority.as_str().to_owned()));
            }
            continue;
        }
        for value in values {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers.push((name.to_owned(), value));
        }
    }
    Some(SignedRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: query.to_owned(),
        headers,
        authorization,
    })
}

/// Replaces the customer's signature with one under `secret` over the same canonical request.
fn resign(
    parts: &mut http::request::Parts,
    signed: &SignedRequest,
    secret: &str,
) -> Result<(), Refusal> {
    let signature = signature::signature_with(signed, secret).map_err(|e| {
        tracing::debug!(reason = e.reason(), "accepted request cannot be re-signed");
        Refusal::STRICT_DENIED
    })?;
    match &signed.authorization {
        Some(header) => {
            let (head, _) = header
                .rsplit_once("Signature=")
                .ok_or(Refusal::STRICT_DENIED)?;
            let value = http::HeaderValue::from_str(&format!("{head}Signature={}", *signature))
                .map_err(|_| Refusal::STRICT_DENIED)?;
            parts.headers.insert(http::header::AUTHORIZATION, value);
        }
        None => {
            let query: Vec<String> = signed
                .query
                .split('&')
                .map(|pair| {
                    if pair.starts_with("X-Amz-Signature=") {
                        format!("X-Amz-Signature={}", *signature)
                    } else {
                        pair.to_owned()
                    }
                })
                .collect();
            let path_and_query = format!("{}?{}", signed.path, query.join("&"));
            let mut uri = std::mem::take(&mut parts.uri).into_parts();
            uri.path_and_query = Some(
                http::uri::PathAndQuery::try_from(path_and_query)
                    .map_err(|_| Refusal::STRICT_DENIED)?,
            );
            parts.uri = http::Uri::from_parts(uri).map_err(|_| Refusal::STRICT_DENIED)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::*;
    use crate::crypto::envelope::KeyId;
    use crate::crypto::scheme::{self, SplitOptions};
    use crate::crypto::sigv4::{self, SigningInput};
    use crate::proxy::keys::{ReleaseContext, ShareSource, TenantKeys};
    use crate::secret::Share;
    use crate::trustee::wire::SigV4Credential;

    const STRICT_AK: &str = "AKSTRICT";
    const PLAIN_AK: &str = "AKPLAIN";
    const SECRET: &str = "customer-secret";

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// A holder that checks signatures with [`signature::verify`] (as the trustee engine
    /// does), or is down, and counts the requests it saw.
    struct FakeHolder {
        up: bool,
        seen: Mutex<Vec<AuthorizeRequest>>,
    }

    #[async_trait::async_trait]
    impl ShareSource for FakeHolder {
        async fn release(
            &self,
            _tenant: &str,
            _key_version: u32,
            _context: &ReleaseContext,
        ) -> Result<Share, ReleaseError> {
            Err(ReleaseError::Protocol("not in this test".into()))
        }

        async fn authorize(
            &self,
            _tenant: &str,
            request: &AuthorizeRequest,
        ) -> Result<(), ReleaseError> {
            if let Ok(mut seen) = self.seen.lock() {
                seen.push(request.clone());
            }
            if !self.up {
                return Err(ReleaseError::Unreachable("down".into()));
            }
            let credential = SigV4Credential {
                access_key_id: STRICT_AK.into(),
                secret_access_key: SECRET.into(),
            };
            signature::verify(&request.signed, &credential, now())
                .map(|_| ())
                .map_err(|e| ReleaseError::Denied {
                    reason: e.reason().into(),
                })
        }
    }

    fn holder(name: &str, up: bool) -> (Holder, Arc<FakeHolder>) {
        let fake = Arc::new(FakeHolder {
            up,
            seen: Mutex::new(Vec::new()),
        });
        let holder = Holder {
            name: name.into(),
            source: fake.clone(),
        };
        (holder, fake)
    }

    fn tenant(
        id: &str,
        ak: &str,
        strict: bool,
        customer: CustomerShare,
        trustees: Vec<Holder>,
    ) -> Tenant {
        let key_id = KeyId::new(id, 1).expect("key id");
        let options = SplitOptions {
            strict,
            allow_trustees_alone: true,
        };
        let (metadata, _) =
            scheme::split(&key_id, 2, &["customer", "t0", "t1"], options).expect("split");
        Tenant {
            id: id.into(),
            access_key_id: ak.into(),
            keys: TenantKeys {
                metadata,
                key_id,
                customer,
                trustees,
            },
            older: Vec::new(),
        }
    }

    fn gate(tenants: Vec<Tenant>) -> (Gate, Arc<InternalKey>) {
        let registry = Registry::new(tenants.into_iter().map(|t| (t, None)).collect());
        let key = Arc::new(InternalKey::generate().expect("random"));
        let gate = Gate::new(Arc::new(registry), key.clone(), Duration::from_secs(5));
        (gate, key)
    }

    fn sse_c() -> CustomerShare {
        CustomerShare::SseC {
            holder: "customer".into(),
        }
    }

    fn amz_date() -> String {
        crate::bench::client::amz_date(SystemTime::now())
    }

    const HOST: &str = "s3.example:8443";

    fn header_signed(ak: &str, payload: &str, body_len: usize) -> http::request::Parts {
        let date = amz_date();
        let extra = [("content-length", body_len.to_string())];
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let input = SigningInput {
            method: "PUT",
            host: HOST,
            path: "/bucket/a%20key",
            query: &[],
            headers: &extra,
            amz_date: &date,
            region: "us-east-1",
        };
        let auth = sigv4::authorization_for_payload(&input, payload, ak, SECRET);
        http::Request::builder()
            .method("PUT")
            .uri("/bucket/a%20key")
            .header("host", HOST)
            .header("x-amz-date", &date)
            .header("x-amz-content-sha256", payload)
            .header("content-length", body_len.to_string())
            .header("authorization", auth)
            .body(())
            .unwrap_or_default()
            .into_parts()
            .0
    }

    fn presigned(ak: &str) -> http::request::Parts {
        presigned_at(ak, SystemTime::now())
    }

    fn presigned_at(ak: &str, at: SystemTime) -> http::request::Parts {
        let date = crate::bench::client::amz_date(at);
        let input = SigningInput {
            method: "GET",
            host: HOST,
            path: "/bucket/k",
            query: &[],
            headers: &[],
            amz_date: &date,
            region: "us-east-1",
        };
        let query = sigv4::presigned_query(&input, 300, ak, SECRET);
        http::Request::builder()
            .method("GET")
            .uri(format!("/bucket/k?{query}"))
            .header("host", HOST)
            .body(())
            .unwrap_or_default()
            .into_parts()
            .0
    }

    fn verifies_under(parts: &http::request::Parts, key: &InternalKey) -> bool {
        let Some(signed) = signed_request(parts) else {
            return false;
        };
        let credential = SigV4Credential {
            access_key_id: STRICT_AK.into(),
            secret_access_key: key.expose_secret().into(),
        };
        signature::verify(&signed, &credential, now()).is_ok()
    }

    #[tokio::test]
    async fn other_tenants_requests_pass_untouched() {
        let (t0, fake) = holder("t0", true);
        let (gate, _) = gate(vec![tenant("plain", PLAIN_AK, false, sse_c(), vec![t0])]);
        let mut parts = header_signed(PLAIN_AK, "UNSIGNED-PAYLOAD", 3);
        let before = parts.headers.clone();
        assert_eq!(gate.admit(&mut parts, "r1").await, Ok(()));
        assert_eq!(parts.headers, before);
        assert!(parts.extensions.get::<StrictAuth>().is_none());
        assert!(fake.seen.lock().map(|s| s.is_empty()).unwrap_or(false));
    }

    #[tokio::test]
    async fn an_accepted_header_signed_request_is_resigned_and_marked() {
        let (t0, fake) = holder("t0", true);
        let (gate, key) = gate(vec![tenant("s", STRICT_AK, true, sse_c(), vec![t0])]);
        let mut parts = header_signed(STRICT_AK, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", 3);
        let original = signed_request(&parts).expect("signed");
        assert_eq!(gate.admit(&mut parts, "r1").await, Ok(()));
        let auth = parts.extensions.get::<StrictAuth>().expect("marked");
        assert_eq!(auth.access_key_id, STRICT_AK);
        assert_eq!(
            *auth.signed, original,
            "the holder saw the request as signed"
        );
        assert_eq!(
            fake.seen.lock().map(|s| s[0].signed.clone()).ok(),
            Some(original)
        );
        assert!(
            verifies_under(&parts, &key),
            "s3s can check the new signature"
        );
        assert!(!verifies_under(
            &header_signed(STRICT_AK, "UNSIGNED-PAYLOAD", 3),
            &key
        ));
    }

    #[tokio::test]
    async fn an_accepted_presigned_url_is_resigned() {
        let (customer, _) = holder("customer", true);
        let (gate, key) = gate(vec![tenant(
            "s",
            STRICT_AK,
            true,
            CustomerShare::Holder(customer),
            Vec::new(),
        )]);
        let mut parts = presigned(STRICT_AK);
        assert_eq!(gate.admit(&mut parts, "r1").await, Ok(()));
        assert!(parts.extensions.get::<StrictAuth>().is_some());
        assert!(verifies_under(&parts, &key));
    }

    #[tokio::test]
    async fn a_bad_signature_is_denied_with_403() {
        let (t0, _) = holder("t0", true);
        let (gate, _) = gate(vec![tenant("s", STRICT_AK, true, sse_c(), vec![t0])]);
        let mut parts = header_signed(STRICT_AK, "UNSIGNED-PAYLOAD", 3);
        parts.uri = http::Uri::from_static("/bucket/another-key");
        let refusal = gate.admit(&mut parts, "r1").await.expect_err("denied");
        assert_eq!(refusal, Refusal::STRICT_MISMATCH);
        assert_eq!(refusal.code(), "SignatureDoesNotMatch");
        assert_eq!(refusal.status(), http::StatusCode::FORBIDDEN);
        assert!(parts.extensions.get::<StrictAuth>().is_none());
    }

    #[tokio::test]
    async fn an_expired_presigned_url_is_access_denied_request_has_expired() {
        let (customer, _) = holder("customer", true);
        let (gate, _) = gate(vec![tenant(
            "s",
            STRICT_AK,
            true,
            CustomerShare::Holder(customer),
            Vec::new(),
        )]);
        // Signed an hour ago for 300 seconds.
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let mut parts = presigned_at(STRICT_AK, an_hour_ago);
        let refusal = gate.admit(&mut parts, "r1").await.expect_err("expired");
        assert_eq!(refusal, Refusal::STRICT_EXPIRED);
        assert_eq!(
            (refusal.status(), refusal.code(), refusal.message()),
            (
                http::StatusCode::FORBIDDEN,
                "AccessDenied",
                "Request has expired"
            )
        );
    }

    #[test]
    fn holder_denials_map_to_the_codes_s3_answers() {
        let cases = [
            ("signature_expired", true, "AccessDenied"),
            ("signature_expired", false, "RequestTimeTooSkewed"),
            ("signature_mismatch", true, "SignatureDoesNotMatch"),
            ("signature_mismatch", false, "SignatureDoesNotMatch"),
            ("signature_malformed", true, "AccessDenied"),
            ("tenant_suspended", false, "AccessDenied"),
        ];
        for (reason, presigned, code) in cases {
            let refusal = denial_refusal(reason, presigned);
            assert_eq!(refusal.code(), code, "{reason} presigned={presigned}");
            assert_eq!(refusal.status(), http::StatusCode::FORBIDDEN);
        }
    }

    #[tokio::test]
    async fn signed_payloads_are_refused_before_any_holder_is_asked() {
        let (t0, fake) = holder("t0", true);
        let (gate, _) = gate(vec![tenant("s", STRICT_AK, true, sse_c(), vec![t0])]);
        let mut parts = header_signed(STRICT_AK, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", 3);
        let refusal = gate.admit(&mut parts, "r1").await.expect_err("refused");
        assert_eq!(refusal.status(), http::StatusCode::BAD_REQUEST);
        assert!(fake.seen.lock().map(|s| s.is_empty()).unwrap_or(false));
    }

    #[tokio::test]
    async fn trustees_are_asked_in_order_until_one_answers() {
        let (t0, down) = holder("t0", false);
        let (t1, up) = holder("t1", true);
        let (gate, _) = gate(vec![tenant("s", STRICT_AK, true, sse_c(), vec![t0, t1])]);
        let mut parts = header_signed(STRICT_AK, "UNSIGNED-PAYLOAD", 3);
        assert_eq!(gate.admit(&mut parts, "r1").await, Ok(()));
        let count = |f: &FakeHolder| f.seen.lock().map(|s| s.len()).unwrap_or(0);
        assert_eq!((count(&down), count(&up)), (1, 1));
    }

    #[tokio::test]
    async fn an_unreachable_customer_holder_fails_closed_with_503() {
        let (customer, _) = holder("customer", false);
        let (t0, trustee) = holder("t0", true);
        let (gate, _) = gate(vec![tenant(
            "s",
            STRICT_AK,
            true,
            CustomerShare::Holder(customer),
            vec![t0],
        )]);
        let mut parts = header_signed(STRICT_AK, "UNSIGNED-PAYLOAD", 3);
        let refusal = gate.admit(&mut parts, "r1").await.expect_err("unavailable");
        assert_eq!(refusal, Refusal::STRICT_UNAVAILABLE);
        assert_eq!(refusal.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        // The trustees do not check a tenant's signatures when its customer runs a holder.
        assert!(trustee.seen.lock().map(|s| s.is_empty()).unwrap_or(false));
    }

    #[tokio::test]
    async fn a_request_naming_two_credentials_is_denied() {
        let (t0, _) = holder("t0", true);
        let (gate, _) = gate(vec![tenant("s", STRICT_AK, true, sse_c(), vec![t0])]);
        let mut parts = presigned(STRICT_AK);
        let header = header_signed(PLAIN_AK, "UNSIGNED-PAYLOAD", 0);
        if let Some(auth) = header.headers.get("authorization") {
            parts.headers.insert("authorization", auth.clone());
        }
        let refusal = gate.admit(&mut parts, "r1").await.expect_err("ambiguous");
        assert_eq!(refusal, Refusal::STRICT_DENIED);
    }

    #[test]
    fn the_forwarded_request_has_the_signed_headers_and_the_http2_authority_as_host() {
        let mut parts = header_signed(STRICT_AK, "UNSIGNED-PAYLOAD", 3);
        parts.headers.remove("host");
        parts
            .headers
            .insert("x-unsigned", http::HeaderValue::from_static("no"));
        parts.uri = http::Uri::from_static("https://s3.example:8443/bucket/a%20key?x=1");
        let signed = signed_request(&parts).expect("signed");
        let names: Vec<&str> = signed.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "content-length",
                "host",
                "x-amz-content-sha256",
                "x-amz-date"
            ]
        );
        assert_eq!(signed.headers[1].1, HOST);
        assert_eq!(
            (signed.path.as_str(), signed.query.as_str()),
            ("/bucket/a%20key", "x=1")
        );
        assert!(signed.authorization.is_some());
    }

    #[test]
    fn the_internal_key_never_shows_in_debug() {
        let key = InternalKey::generate().expect("random");
        assert!(!format!("{key:?}").contains(key.expose_secret()));
    }
}
