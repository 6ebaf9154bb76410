//! One request's context: who is asking (the tenant), under which request id, the parsed SSE-C
//! customer key and the encryption headers echoed back, and the phase timers.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use md5::Digest as _;
use s3s::S3Request;
use s3s::dto;
use zeroize::Zeroizing;

use crate::crypto::oprf::{ObjectId, ObjectIdentity};
use crate::crypto::{DekContext, KeyScheme};
use crate::format::{self, Layout};
use crate::proxy::error::ProxyError;
use crate::proxy::keys::{KeyService, ReleaseContext, TenantKeys};
use crate::proxy::registry::{Registry, Tenant};
use crate::proxy::server::RequestId;
use crate::proxy::strict::StrictAuth;
use crate::secret::Kek;
use crate::trustee::wire::SignedRequest;

/// Records how long one phase of a request took (`treuhand_phase_seconds{phase}`).
pub(crate) fn phase(name: &'static str, started: Instant) {
    metrics::histogram!("treuhand_phase_seconds", "phase" => name)
        .record(started.elapsed().as_secs_f64());
}

/// Awaits `work`, recording its duration as phase `name`.
pub(crate) async fn timed<T>(name: &'static str, work: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = work.await;
    phase(name, started);
    out
}

/// Hex MD5 of `data`: the ETag of an object (over its header bytes).
pub(crate) fn md5_hex(data: &[u8]) -> String {
    hex::encode(md5::Md5::digest(data))
}

/// `bytes` random bytes in hex (upload ids, staging names, layout 1 part ETags).
pub(crate) fn random_hex(bytes: usize) -> Result<String, ProxyError> {
    let mut buf = vec![0u8; bytes];
    crate::crypto::envelope::fill_random(&mut buf).map_err(ProxyError::Crypto)?;
    Ok(hex::encode(buf))
}

/// Parses the SSE-C headers into the raw share bytes.
pub(crate) fn sse_c(
    algorithm: Option<&str>,
    key: Option<&str>,
    key_md5: Option<&str>,
) -> Result<Option<Zeroizing<Vec<u8>>>, ProxyError> {
    let Some(key) = key else {
        if algorithm.is_some() {
            return Err(ProxyError::MalformedShare(
                "SSE-C algorithm given without a key",
            ));
        }
        return Ok(None);
    };
    if algorithm != Some("AES256") {
        return Err(ProxyError::MalformedShare(
            "the SSE-C algorithm must be AES256",
        ));
    }
    let raw = Zeroizing::new(
        STANDARD
            .decode(key.trim())
            .map_err(|_| ProxyError::MalformedShare("the SSE-C key is not base64"))?,
    );
    if raw.len() != 32 {
        return Err(ProxyError::MalformedShare("the SSE-C key must be 32 bytes"));
    }
    if let Some(md5) = key_md5 {
        let expected = STANDARD.encode(md5::Md5::digest(raw.as_slice()));
        if md5.trim() != expected {
            return Err(ProxyError::MalformedShare(
                "the SSE-C key MD5 does not match the key",
            ));
        }
    }
    Ok(Some(raw))
}

/// The customer's share as sent in the SSE-C key header: 32 raw bytes, zeroized on drop.
pub struct CustomerKey(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerKey([REDACTED])")
    }
}

impl CustomerKey {
    /// The key from the three SSE-C headers; `None` when the request sent no key.
    ///
    /// # Errors
    /// [`ProxyError::MalformedShare`] for headers that are not a well-formed 32-byte key.
    pub fn parse(
        algorithm: Option<&str>,
        key: Option<&str>,
        key_md5: Option<&str>,
    ) -> Result<Option<Self>, ProxyError> {
        Ok(sse_c(algorithm, key, key_md5)?.map(Self))
    }

    /// The raw share bytes.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }
}

/// [`CustomerKey::parse`] of any input type with the SSE-C fields (they share field names).
macro_rules! customer_key {
    ($input:expr) => {
        $crate::proxy::s3::request::CustomerKey::parse(
            $input.sse_customer_algorithm.as_deref(),
            $input.sse_customer_key.as_deref(),
            $input.sse_customer_key_md5.as_deref(),
        )
    };
}
pub(crate) use customer_key;

/// The encryption headers a response echoes, as S3 does.
///
/// SSE-C tenants get the SSE-C headers back. A tenant whose share comes from its holder gets
/// `x-amz-server-side-encryption: aws:kms`, what S3 tells clients for SSE-KMS objects: the
/// object is encrypted under a managed key and its ETag is not the MD5 of the plaintext. s3cmd
/// and the AWS SDK for Java skip their upload MD5 check on it; without it, s3cmd retried every
/// upload and gave up ("MD5 sums of sent and received files don't match").
#[derive(Debug, Default)]
pub struct SseEcho {
    /// `x-amz-server-side-encryption-customer-algorithm`.
    pub algorithm: Option<String>,
    /// `x-amz-server-side-encryption-customer-key-MD5` (the MD5 of the key, not a secret).
    pub key_md5: Option<String>,
    /// `x-amz-server-side-encryption`.
    pub server_side_encryption: Option<dto::ServerSideEncryption>,
}

impl SseEcho {
    /// The echo for `tenant`, which sent `customer` (or no key).
    pub fn new(tenant: &Tenant, customer: Option<&CustomerKey>) -> Self {
        Self {
            algorithm: customer.map(|_| "AES256".to_owned()),
            key_md5: customer.map(|k| STANDARD.encode(md5::Md5::digest(k.expose_secret()))),
            server_side_encryption: (!tenant.needs_sse_c()).then(|| {
                dto::ServerSideEncryption::from_static(dto::ServerSideEncryption::AWS_KMS)
            }),
        }
    }
}

/// An S3 output struct with the echo headers of `$echo` (an [`SseEcho`]) and the given fields;
/// every output type with the three SSE fields names them alike.
macro_rules! echoed {
    ($echo:expr, $($output:ident)::+ { $($field:ident: $value:expr),* $(,)? }) => {{
        let echo: $crate::proxy::s3::request::SseEcho = $echo;
        $($output)::+ {
            $($field: $value,)*
            sse_customer_algorithm: echo.algorithm,
            sse_customer_key_md5: echo.key_md5,
            server_side_encryption: echo.server_side_encryption,
            ..Default::default()
        }
    }};
}
pub(crate) use echoed;

/// The key a new object is written under ([`RequestContext::write_key`]).
pub struct WriteKey {
    kek: Arc<Kek>,
    /// The object's id, for a per-object key (format v3).
    object_id: Option<ObjectId>,
}

/// The key that opens one stored object ([`RequestContext::read_key`]): its KEK and the tenant
/// key version the object's header names (the current version or a decrypt-only older one).
pub struct ReadKey {
    /// The object's KEK (per-object for v3, the tenant KEK for v1/v2).
    pub kek: Arc<Kek>,
    /// The key version it belongs to.
    pub key_id: crate::crypto::KeyId,
}

/// Who is asking, under which request id.
pub struct RequestContext {
    /// The tenant the signing access key belongs to.
    pub tenant: Arc<Tenant>,
    request_id: Option<RequestId>,
    /// Releases the tenant's key.
    keys: Arc<KeyService>,
    /// A strict tenant's signed request, forwarded with every evaluation for this request.
    signed: Option<Arc<SignedRequest>>,
}

impl RequestContext {
    /// The context of `req`, whose signature s3s (or, for a strict tenant, the tenant's
    /// signature-checking holder: [`StrictAuth`]) has already verified.
    ///
    /// # Errors
    /// [`ProxyError::AccessDenied`] for anonymous requests, unknown access keys, and a strict
    /// tenant's access key on a request its holder has not checked.
    pub fn of<T>(
        tenants: &Registry,
        keys: &Arc<KeyService>,
        req: &S3Request<T>,
    ) -> Result<Self, ProxyError> {
        let request_id = req.extensions.get::<RequestId>().cloned();
        // A strict tenant's request: its holder checked the signature; the access key it was
        // made with names the tenant, and the signed request goes with every evaluation.
        if let Some(strict) = req.extensions.get::<StrictAuth>() {
            let tenant = tenants
                .tenant(&strict.access_key_id)
                .filter(|t| t.keys.metadata.strict)
                .ok_or(ProxyError::AccessDenied("unknown access key"))?;
            return Ok(Self {
                tenant,
                request_id,
                keys: keys.clone(),
                signed: Some(strict.signed.clone()),
            });
        }
        // The access key maps to exactly one tenant.
        let creds = req
            .credentials
            .as_ref()
            .ok_or(ProxyError::AccessDenied("anonymous requests are refused"))?;
        let tenant = tenants
            .tenant(&creds.access_key)
            .ok_or(ProxyError::AccessDenied("unknown access key"))?;
        if tenant.keys.metadata.strict {
            // s3s cannot have checked it (the proxy has no secret for a strict tenant); only
            // the tenant's holder can, and it has not.
            return Err(ProxyError::AccessDenied(
                "a strict tenant's requests must be checked by its signature-checking holder",
            ));
        }
        Ok(Self {
            tenant,
            request_id,
            keys: keys.clone(),
            signed: None,
        })
    }

    /// The paths of this tenant's objects, buckets and uploads.
    pub fn paths(&self) -> super::paths::TenantPaths<'_> {
        super::paths::TenantPaths::new(&self.tenant.id)
    }

    /// The encryption headers to echo for `customer`.
    pub fn echo(&self, customer: Option<&CustomerKey>) -> SseEcho {
        SseEcho::new(&self.tenant, customer)
    }

    /// What the proxy tells a key holder about this request's operation `reason` on
    /// `bucket`/`key`.
    fn release_context(&self, reason: &str, (bucket, key): (&str, &str)) -> ReleaseContext {
        ReleaseContext {
            request_id: self
                .request_id
                .as_ref()
                .map(|r| r.0.clone())
                .unwrap_or_else(|| random_hex(8).unwrap_or_else(|_| "unknown".into())),
            object: Some((bucket.to_owned(), key.to_owned())),
            reason: reason.to_owned(),
            signed: self.signed.clone(),
        }
    }

    /// The identity of object `id` stored as `bucket`/`key` under the tenant key `keys`.
    fn identity(keys: &TenantKeys, (bucket, key): (&str, &str), id: ObjectId) -> ObjectIdentity {
        ObjectIdentity {
            tenant: keys.key_id.tenant.clone(),
            key_version: keys.key_id.version,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            id,
        }
    }

    /// The key a new object at `bucket`/`key` is written under: for an OPRF tenant key the
    /// KEK of a fresh object id (format v3), for a legacy one the tenant KEK (v1/v2). Always
    /// the current key version; older versions are decrypt-only.
    ///
    /// # Errors
    /// The key service's errors; [`ProxyError::RetiredShare`] instead of
    /// [`ProxyError::WrongShare`] when the SSE-C share is the customer share of a registered
    /// older version (a client not yet switched to the share `tenant rotate` wrote).
    pub async fn write_key(
        &self,
        customer: Option<&CustomerKey>,
        reason: &str,
        object: (&str, &str),
    ) -> Result<WriteKey, ProxyError> {
        match self.current_write_key(customer, reason, object).await {
            // Only a refused share costs a look at the older versions: the right share pays
            // nothing extra.
            Err(ProxyError::WrongShare) => Err(customer
                .and_then(|share| self.retired_share(share.expose_secret()))
                .unwrap_or(ProxyError::WrongShare)),
            other => other,
        }
    }

    /// [`ProxyError::RetiredShare`] if `raw` is the customer share of a decrypt-only version.
    fn retired_share(&self, raw: &[u8]) -> Option<ProxyError> {
        let retired = self
            .tenant
            .older
            .iter()
            .find(|keys| crate::proxy::keys::is_customer_share_of(keys, raw))?;
        let current = self.tenant.current_version();
        let (raw_path, _) =
            crate::tenant::share_paths(std::path::Path::new(""), &self.tenant.id, current);
        Some(ProxyError::RetiredShare {
            retired: retired.key_id.version,
            current,
            share_file: raw_path.display().to_string(),
        })
    }

    async fn current_write_key(
        &self,
        customer: Option<&CustomerKey>,
        reason: &str,
        object: (&str, &str),
    ) -> Result<WriteKey, ProxyError> {
        let keys = &self.tenant.keys;
        let context = self.release_context(reason, object);
        let share = customer.map(CustomerKey::expose_secret);
        match keys.metadata.scheme {
            KeyScheme::Oprf => {
                let id = ObjectId::random()
                    .map_err(|_| ProxyError::Crypto(crate::crypto::Error::Random))?;
                let identity = Self::identity(keys, object, id);
                let kek = self
                    .keys
                    .object_kek(keys, share, &identity, &context)
                    .await?;
                Ok(WriteKey {
                    kek,
                    object_id: Some(id),
                })
            }
            KeyScheme::ShamirTmk => Ok(WriteKey {
                kek: self.keys.kek(keys, share, &context).await?,
                object_id: None,
            }),
        }
    }

    /// The key that opens the stored object at `bucket`/`key` whose first bytes are `prefix`
    /// (at least [`format::HEADER_PROBE_LEN`] of them, or the whole object): read from the
    /// header's public fields, which `open_object` authenticates afterwards. The header names
    /// the key version: the current one or a registered decrypt-only older one.
    ///
    /// # Errors
    /// [`ProxyError::KeyMismatch`] (500, nothing decrypted) for an object under a key version
    /// the registration does not list (shredded, or never registered), or a v3 object of a
    /// legacy tenant key; [`ProxyError::Integrity`] for bytes that are not a header; the key
    /// service's errors.
    pub async fn read_key(
        &self,
        customer: Option<&CustomerKey>,
        reason: &str,
        object: (&str, &str),
        prefix: &[u8],
    ) -> Result<ReadKey, ProxyError> {
        let info = format::peek_header(prefix)?;
        let current = &self.tenant.keys;
        if info.tenant != current.key_id.tenant {
            // Another tenant's header: moved or forged bytes, which open_object would refuse.
            return Err(ProxyError::Integrity);
        }
        let Some(keys) = self.tenant.keys_for(info.key_version) else {
            return Err(ProxyError::KeyMismatch(format!(
                "the object was written under key version {} of tenant {}, which is not registered (the current key is version {}; a shredded version's objects cannot be read)",
                info.key_version, current.key_id.tenant, current.key_id.version
            )));
        };
        let context = self.release_context(reason, object);
        let share = customer.map(CustomerKey::expose_secret);
        let kek = match (info.object_id, keys.metadata.scheme) {
            (Some(id), KeyScheme::Oprf) => {
                let identity = Self::identity(keys, object, id);
                self.keys
                    .object_kek(keys, share, &identity, &context)
                    .await?
            }
            (Some(_), KeyScheme::ShamirTmk) => {
                return Err(ProxyError::KeyMismatch(format!(
                    "the object is format v{} (per-object keys), but key version {} of tenant {} is a legacy tenant key",
                    info.version, keys.key_id.version, keys.key_id.tenant
                )));
            }
            (None, KeyScheme::Oprf) => {
                return Err(ProxyError::KeyMismatch(format!(
                    "the object is format v{} (tenant key), but key version {} of tenant {} is a per-object (OPRF) key",
                    info.version, keys.key_id.version, keys.key_id.tenant
                )));
            }
            (None, KeyScheme::ShamirTmk) => self.keys.kek(keys, share, &context).await?,
        };
        Ok(ReadKey {
            kek,
            key_id: keys.key_id.clone(),
        })
    }

    /// Finds the key of the stored object whose first bytes are `stored` (see
    /// [`Self::read_key`]) and opens its header: the cipher and the header's length.
    pub async fn open_stored(
        &self,
        customer: Option<&CustomerKey>,
        reason: &str,
        object: (&str, &str),
        stored: &[u8],
    ) -> Result<(format::ObjectCipher, usize), ProxyError> {
        let key = self.read_key(customer, reason, object, stored).await?;
        self.open_object(&key, object, stored)
    }

    /// The associated data binding a new object's DEK to the current tenant key and the
    /// object's name.
    pub fn dek_context<'a>(&'a self, bucket: &'a str, key: &'a str) -> DekContext<'a> {
        DekContext {
            key: &self.tenant.keys.key_id,
            bucket,
            object: key,
        }
    }

    /// A fresh object (new DEK) for `bucket`/`key` under `key` (format v3 when it is a
    /// per-object key): its cipher and its header bytes.
    pub fn new_object(
        &self,
        key: &WriteKey,
        (bucket, object): (&str, &str),
        layout: Layout,
        metadata: &format::Metadata,
    ) -> Result<(format::ObjectCipher, Vec<u8>), ProxyError> {
        let ctx = self.dek_context(bucket, object);
        Ok(match key.object_id {
            Some(id) => format::new_object_v3(&key.kek, &ctx, id, layout, metadata)?,
            None => format::new_object_with_metadata(&key.kek, &ctx, layout, metadata)?,
        })
    }

    /// A new header for the opened object `cipher` at `bucket`/`key` under `key` (the current
    /// version's write key, [`Self::write_key`]): the same DEK, nonce prefix, layout and
    /// sealed metadata, so the stored body stays valid (docs/format.md §9).
    pub fn rewrap(
        &self,
        key: &WriteKey,
        (bucket, object): (&str, &str),
        cipher: &format::ObjectCipher,
    ) -> Result<format::Rewrapped, ProxyError> {
        let ctx = self.dek_context(bucket, object);
        Ok(cipher.rewrap(&key.kek, &ctx, key.object_id)?)
    }

    /// Opens the header at the start of `stored` for `bucket`/`key` with `key` (from
    /// [`Self::read_key`]): the cipher and the header's length. Fails closed.
    pub fn open_object(
        &self,
        key: &ReadKey,
        (bucket, object): (&str, &str),
        stored: &[u8],
    ) -> Result<(format::ObjectCipher, usize), ProxyError> {
        let ctx = DekContext {
            key: &key.key_id,
            bucket,
            object,
        };
        Ok(format::open_object(&key.kek, &ctx, stored)?)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::crypto::KeyId;
    use crate::crypto::scheme::{self, SplitOptions};
    use crate::proxy::keys::{CustomerShare, TenantKeys};

    fn tenant(id: &str, strict: bool) -> (Tenant, Option<String>) {
        let key_id = KeyId::new(id, 1).unwrap();
        let options = SplitOptions {
            strict,
            ..SplitOptions::default()
        };
        let (metadata, _) = scheme::split(&key_id, 2, &["customer", "t1"], options).unwrap();
        let tenant = Tenant {
            id: id.into(),
            access_key_id: format!("AK{id}"),
            keys: TenantKeys {
                metadata,
                key_id,
                customer: CustomerShare::SseC {
                    holder: "customer".into(),
                },
                trustees: Vec::new(),
            },
            older: Vec::new(),
        };
        (tenant, (!strict).then(|| format!("secret-{id}-0123")))
    }

    fn request(access_key: Option<&str>, strict: Option<&str>) -> S3Request<()> {
        let mut extensions = http::Extensions::new();
        if let Some(access_key_id) = strict {
            extensions.insert(StrictAuth {
                access_key_id: access_key_id.into(),
                signed: Arc::new(SignedRequest {
                    method: "GET".into(),
                    path: "/b/k".into(),
                    query: String::new(),
                    headers: vec![("host".into(), "s3.local".into())],
                    authorization: Some("AWS4-HMAC-SHA256 ...".into()),
                }),
            });
        }
        S3Request {
            input: (),
            method: http::Method::GET,
            uri: http::Uri::from_static("/b/k"),
            headers: http::HeaderMap::new(),
            extensions,
            credentials: access_key.map(|a| s3s::auth::Credentials {
                access_key: a.into(),
                secret_key: "x".into(),
            }),
            region: None,
            service: None,
            trailing_headers: None,
        }
    }

    #[test]
    fn a_strict_tenant_is_served_only_after_its_holder_checked_the_signature() {
        let registry = Registry::new(vec![tenant("strict", true), tenant("plain", false)]);
        let keys = Arc::new(KeyService::new(Duration::ZERO, 0, Duration::from_secs(1)));
        let context = |req: &S3Request<()>| RequestContext::of(&registry, &keys, req);

        // Checked by its holder: the tenant of the access key it was signed with, and the
        // signed request goes with every evaluation.
        let checked = context(&request(None, Some("AKstrict"))).unwrap();
        assert_eq!(checked.tenant.id, "strict");
        let forwarded = checked.release_context("GetObject", ("b", "k")).signed;
        assert_eq!(forwarded.unwrap().path, "/b/k");
        // Its access key without the holder's check (s3s cannot check it): refused.
        assert!(matches!(
            context(&request(Some("AKstrict"), None)),
            Err(ProxyError::AccessDenied(_))
        ));
        // A holder's check never makes a standard tenant's request, nor an unknown key.
        for access_key in ["AKplain", "AKnobody"] {
            assert!(matches!(
                context(&request(None, Some(access_key))),
                Err(ProxyError::AccessDenied(_))
            ));
        }
        // A standard tenant as before, with nothing to forward.
        let plain = context(&request(Some("AKplain"), None)).unwrap();
        assert_eq!(plain.tenant.id, "plain");
        assert!(
            plain
                .release_context("GetObject", ("b", "k"))
                .signed
                .is_none()
        );
        assert!(matches!(
            context(&request(None, None)),
            Err(ProxyError::AccessDenied(_))
        ));
    }
}
