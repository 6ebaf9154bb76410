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

use crate::crypto::DekContext;
use crate::format::{self, Layout};
use crate::proxy::error::ProxyError;
use crate::proxy::keys::{KeyService, ReleaseContext};
use crate::proxy::registry::{Registry, Tenant};
use crate::proxy::server::RequestId;
use crate::secret::Kek;

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

/// Who is asking, under which request id.
pub struct RequestContext {
    /// The tenant the signing access key belongs to.
    pub tenant: Arc<Tenant>,
    request_id: Option<RequestId>,
    /// Releases the tenant's key.
    keys: Arc<KeyService>,
}

impl RequestContext {
    /// The context of `req`, whose signature s3s has already verified.
    ///
    /// # Errors
    /// [`ProxyError::AccessDenied`] for anonymous requests and unknown access keys.
    pub fn of<T>(
        tenants: &Registry,
        keys: &Arc<KeyService>,
        req: &S3Request<T>,
    ) -> Result<Self, ProxyError> {
        // The access key maps to exactly one tenant.
        let creds = req
            .credentials
            .as_ref()
            .ok_or(ProxyError::AccessDenied("anonymous requests are refused"))?;
        let tenant = tenants
            .tenant(&creds.access_key)
            .ok_or(ProxyError::AccessDenied("unknown access key"))?;
        Ok(Self {
            tenant,
            request_id: req.extensions.get::<RequestId>().cloned(),
            keys: keys.clone(),
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

    /// Releases the tenant's key for operation `reason` on `bucket`/`key`.
    pub async fn kek(
        &self,
        customer: Option<&CustomerKey>,
        reason: &str,
        (bucket, key): (&str, &str),
    ) -> Result<Arc<Kek>, ProxyError> {
        let context = ReleaseContext {
            request_id: self
                .request_id
                .as_ref()
                .map(|r| r.0.clone())
                .unwrap_or_else(|| random_hex(8).unwrap_or_else(|_| "unknown".into())),
            object: Some((bucket.to_owned(), key.to_owned())),
            reason: reason.to_owned(),
            signed: None,
        };
        self.keys
            .kek(
                &self.tenant.keys,
                customer.map(CustomerKey::expose_secret),
                &context,
            )
            .await
    }

    /// The associated data binding an object's DEK to this tenant key and the object's name.
    pub fn dek_context<'a>(&'a self, bucket: &'a str, key: &'a str) -> DekContext<'a> {
        DekContext {
            key: &self.tenant.keys.key_id,
            bucket,
            object: key,
        }
    }

    /// A fresh object (new DEK) for `bucket`/`key`: its cipher and its header bytes.
    pub fn new_object(
        &self,
        kek: &Kek,
        (bucket, key): (&str, &str),
        layout: Layout,
        metadata: &format::Metadata,
    ) -> Result<(format::ObjectCipher, Vec<u8>), ProxyError> {
        let ctx = self.dek_context(bucket, key);
        Ok(format::new_object_with_metadata(
            kek, &ctx, layout, metadata,
        )?)
    }

    /// Opens the header at the start of `stored` for `bucket`/`key`: the cipher and the
    /// header's length. Fails closed.
    pub fn open_object(
        &self,
        kek: &Kek,
        (bucket, key): (&str, &str),
        stored: &[u8],
    ) -> Result<(format::ObjectCipher, usize), ProxyError> {
        let ctx = self.dek_context(bucket, key);
        Ok(format::open_object(kek, &ctx, stored)?)
    }
}
