//! Proxy errors and the one mapping from an error to an S3 status and code.
//!
//! Errors know where they came from (as in pingora): the client (4xx), a trustee or storage
//! (502/503), or the proxy itself (500). Messages never carry secret material; the cause chain
//! goes to the log, not to the client.

use s3s::{S3Error, S3ErrorCode};

use crate::storage;

/// The cause of an error from another layer (a key holder's release error, a combine failure),
/// kept for the log's cause chain. Never shown to the client, and never secret: release errors
/// carry reason codes and transport messages, no share material.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong while serving one request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// An SSE-C tenant sent no customer share.
    #[error("this tenant's objects need the customer share in the SSE-C headers")]
    MissingShare,
    /// SSE-C headers that are not a well-formed 32-byte share.
    #[error("malformed customer share: {0}")]
    MalformedShare(&'static str),
    /// The customer share does not belong to this tenant key.
    #[error("the customer share does not match this tenant's key")]
    WrongShare,
    /// A write (PUT, CreateMultipartUpload, the destination of a copy) sent the customer
    /// share of an older, decrypt-only key version: new objects go under the current version
    /// only. Public facts only (version numbers and the share file's name), never the share.
    #[error(
        "this SSE-C key is the customer share of key version {retired}, which is retired for writes; the current key version is {current}: send the share `treuhand tenant rotate` wrote ({share_file})"
    )]
    RetiredShare {
        /// The version the sent share belongs to.
        retired: u32,
        /// The current version.
        current: u32,
        /// The file name of the current version's raw share (`<tenant>.v<N>.share`).
        share_file: String,
    },
    /// A trustee or holder could not be reached; nothing was served or stored.
    #[error("key holder unreachable: {message}")]
    Unavailable {
        /// Which holder, for the client.
        message: String,
        /// What the holder's transport reported (for the log).
        #[source]
        cause: Option<Cause>,
    },
    /// A trustee or the customer's holder refused the release.
    #[error("key release denied: {message}")]
    Denied {
        /// Which holder and its reason code, for the client.
        message: String,
        /// The holder's refusal (for the log).
        #[source]
        cause: Option<Cause>,
    },
    /// The request is not signed by a known tenant (s3s checked the signature; the access key
    /// names no tenant, or there was none).
    #[error("access denied: {0}")]
    AccessDenied(&'static str),
    /// The request body could not be read (the client went away, a broken aws-chunked
    /// stream).
    #[error("reading the request body failed")]
    BodyRead(#[source] s3s::StdError),
    /// A trustee or holder answered outside the protocol, or released an invalid share.
    #[error("key holder protocol error: {message}")]
    BadGateway {
        /// Which holder and what went wrong, for the client.
        message: String,
        /// The underlying failure (for the log).
        #[source]
        cause: Option<Cause>,
    },
    /// The stored object failed authentication (tampered, truncated, moved).
    #[error("the stored object failed authentication")]
    Integrity,
    /// No such bucket.
    #[error("the bucket does not exist")]
    NoSuchBucket,
    /// No such object.
    #[error("the object does not exist")]
    NoSuchKey,
    /// CreateBucket with a name S3 refuses.
    #[error("invalid bucket name: {0}")]
    InvalidBucketName(&'static str),
    /// DeleteBucket on a non-empty bucket.
    #[error("the bucket is not empty")]
    BucketNotEmpty,
    /// Unknown multipart upload.
    #[error("the multipart upload does not exist")]
    NoSuchUpload,
    /// CompleteMultipartUpload with a missing or mismatching part.
    #[error("invalid part: {0}")]
    InvalidPart(String),
    /// Parts not in ascending order.
    #[error("parts must be listed in ascending order")]
    InvalidPartOrder,
    /// A part other than the last is smaller than S3's minimum part size (5 MiB).
    #[error("part {part} has {size} bytes; every part but the last needs at least {min} bytes")]
    EntityTooSmall {
        /// The part number.
        part: u32,
        /// Its plaintext size.
        size: u64,
        /// The minimum.
        min: u64,
    },
    /// GetObject/HeadObject `partNumber` beyond the object's parts.
    #[error("the object has {parts} part(s); part {requested} does not exist")]
    InvalidPartNumber {
        /// The requested part.
        requested: i32,
        /// How many parts the object has.
        parts: u32,
    },
    /// A request body that is not the XML the operation takes (DeleteObjects over 1,000
    /// keys, among others).
    #[error("malformed XML: {0}")]
    MalformedXml(String),
    /// GetBucketPolicy: treuhand buckets never have a policy.
    #[error("the bucket policy does not exist")]
    NoSuchBucketPolicy,
    /// Range outside the object.
    #[error("the requested range is not satisfiable")]
    InvalidRange,
    /// If-Match / If-Unmodified-Since failed.
    #[error("a precondition failed")]
    PreconditionFailed,
    /// If-None-Match / If-Modified-Since: not modified. The 304 carries the object's ETag and
    /// Last-Modified, as S3's does (RFC 9110 §15.4.5: the headers a 200 would have sent).
    #[error("not modified")]
    NotModified {
        /// The object's ETag (unquoted hex).
        etag: String,
        /// The object's modification time.
        last_modified: std::time::SystemTime,
    },
    /// The request is not acceptable for another reason.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A request parameter has a value S3 does not accept.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The request body ended before the length the client declared (Content-Length or, for
    /// aws-chunked uploads, `x-amz-decoded-content-length`).
    #[error("the body has {received} bytes, the request declared {declared}")]
    IncompleteBody {
        /// Bytes declared by the client.
        declared: u64,
        /// Bytes received.
        received: u64,
    },
    /// Object metadata (standard headers plus `x-amz-meta-*`) larger than the object format
    /// can seal into a header.
    #[error("the object metadata is too large: {len} bytes encoded, at most {max}")]
    MetadataTooLarge {
        /// Encoded length of the request's metadata.
        len: usize,
        /// The format's limit.
        max: usize,
    },
    /// Not supported by this proxy.
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
    /// The storage backend failed.
    #[error("storage backend error")]
    Storage(#[source] storage::Error),
    /// The object format refused an operation for a reason that is not the client's or the
    /// stored object's (for example an API misuse).
    #[error("internal error in the object format")]
    Format(#[source] crate::format::Error),
    /// The crypto layer failed (the RNG, a key derivation).
    #[error("internal cryptographic error")]
    Crypto(#[source] crate::crypto::Error),
    /// The stored object or the request needs a tenant key other than the registered one (a
    /// format v3 object of a legacy tenant key, another key version). Nothing is decrypted.
    #[error("the object cannot be opened with the registered tenant key: {0}")]
    KeyMismatch(String),
}

impl From<storage::Error> for ProxyError {
    fn from(e: storage::Error) -> Self {
        match e {
            storage::Error::InvalidPath(msg) => {
                ProxyError::InvalidRequest(format!("unsupported object key: {msg}"))
            }
            other => ProxyError::Storage(other),
        }
    }
}

impl From<crate::format::Error> for ProxyError {
    fn from(e: crate::format::Error) -> Self {
        use crate::format::Error as F;
        match e {
            F::DecryptionFailed => ProxyError::Integrity,
            F::NotAnObject | F::HeaderTruncated { .. } => ProxyError::Integrity,
            F::InvalidRange { .. } => ProxyError::InvalidRange,
            F::InvalidParts(msg) => ProxyError::InvalidPart(msg.to_owned()),
            F::TooLarge => ProxyError::InvalidRequest("the object is too large".into()),
            F::MetadataTooLarge { len, max } => ProxyError::MetadataTooLarge { len, max },
            other => ProxyError::Format(other),
        }
    }
}

/// The one mapping of proxy errors to S3 errors (status, code, message).
pub fn to_s3_error(error: &ProxyError) -> S3Error {
    use http::StatusCode;
    let (code, status) = match error {
        ProxyError::MissingShare
        | ProxyError::MalformedShare(_)
        | ProxyError::BodyRead(_)
        | ProxyError::InvalidRequest(_) => (S3ErrorCode::InvalidRequest, StatusCode::BAD_REQUEST),
        ProxyError::InvalidArgument(_) | ProxyError::RetiredShare { .. } => {
            (S3ErrorCode::InvalidArgument, StatusCode::BAD_REQUEST)
        }
        ProxyError::IncompleteBody { .. } => (S3ErrorCode::IncompleteBody, StatusCode::BAD_REQUEST),
        ProxyError::MetadataTooLarge { .. } => {
            (S3ErrorCode::MetadataTooLarge, StatusCode::BAD_REQUEST)
        }
        ProxyError::WrongShare | ProxyError::Denied { .. } | ProxyError::AccessDenied(_) => {
            (S3ErrorCode::AccessDenied, StatusCode::FORBIDDEN)
        }
        ProxyError::Unavailable { .. } => (
            S3ErrorCode::ServiceUnavailable,
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        ProxyError::BadGateway { .. } => (
            S3ErrorCode::Custom("BadGateway".into()),
            StatusCode::BAD_GATEWAY,
        ),
        ProxyError::Integrity => (
            S3ErrorCode::Custom("ObjectIntegrityError".into()),
            StatusCode::BAD_GATEWAY,
        ),
        ProxyError::NoSuchBucket => (S3ErrorCode::NoSuchBucket, StatusCode::NOT_FOUND),
        ProxyError::NoSuchKey => (S3ErrorCode::NoSuchKey, StatusCode::NOT_FOUND),
        ProxyError::InvalidBucketName(_) => {
            (S3ErrorCode::InvalidBucketName, StatusCode::BAD_REQUEST)
        }
        ProxyError::BucketNotEmpty => (S3ErrorCode::BucketNotEmpty, StatusCode::CONFLICT),
        ProxyError::NoSuchUpload => (S3ErrorCode::NoSuchUpload, StatusCode::NOT_FOUND),
        ProxyError::InvalidPart(_) => (S3ErrorCode::InvalidPart, StatusCode::BAD_REQUEST),
        ProxyError::InvalidPartOrder => (S3ErrorCode::InvalidPartOrder, StatusCode::BAD_REQUEST),
        ProxyError::EntityTooSmall { .. } => (S3ErrorCode::EntityTooSmall, StatusCode::BAD_REQUEST),
        ProxyError::InvalidPartNumber { .. } => (
            S3ErrorCode::Custom("InvalidPartNumber".into()),
            StatusCode::RANGE_NOT_SATISFIABLE,
        ),
        ProxyError::MalformedXml(_) => (S3ErrorCode::MalformedXML, StatusCode::BAD_REQUEST),
        ProxyError::NoSuchBucketPolicy => (S3ErrorCode::NoSuchBucketPolicy, StatusCode::NOT_FOUND),
        ProxyError::InvalidRange => (S3ErrorCode::InvalidRange, StatusCode::RANGE_NOT_SATISFIABLE),
        ProxyError::PreconditionFailed => (
            S3ErrorCode::PreconditionFailed,
            StatusCode::PRECONDITION_FAILED,
        ),
        ProxyError::NotModified { .. } => (S3ErrorCode::NotModified, StatusCode::NOT_MODIFIED),
        ProxyError::NotImplemented(_) => (S3ErrorCode::NotImplemented, StatusCode::NOT_IMPLEMENTED),
        ProxyError::Storage(_) => (
            S3ErrorCode::ServiceUnavailable,
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        ProxyError::Format(_) | ProxyError::Crypto(_) | ProxyError::KeyMismatch(_) => (
            S3ErrorCode::InternalError,
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    };
    let mut s3 = S3Error::with_message(code, error.to_string());
    s3.set_status_code(status);
    if let ProxyError::NotModified {
        etag,
        last_modified,
    } = error
    {
        s3.set_headers(not_modified_headers(etag, *last_modified));
    }
    s3
}

/// The ETag and Last-Modified of a 304 (s3s sends an error's headers instead of its own).
fn not_modified_headers(etag: &str, last_modified: std::time::SystemTime) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    if let Ok(value) = http::HeaderValue::try_from(format!("\"{etag}\"")) {
        headers.insert(http::header::ETAG, value);
    }
    let mut date = Vec::new();
    let time = s3s::dto::Timestamp::from(last_modified);
    if time
        .format(s3s::dto::TimestampFormat::HttpDate, &mut date)
        .is_ok()
        && let Ok(value) = http::HeaderValue::from_bytes(&date)
    {
        headers.insert(http::header::LAST_MODIFIED, value);
    }
    headers
}

impl From<ProxyError> for S3Error {
    fn from(e: ProxyError) -> Self {
        match &e {
            ProxyError::Storage(_)
            | ProxyError::Format(_)
            | ProxyError::Crypto(_)
            | ProxyError::KeyMismatch(_)
            | ProxyError::Integrity
            | ProxyError::BadGateway { .. } => {
                tracing::error!(error = ?e, "request failed");
            }
            ProxyError::Unavailable { .. }
            | ProxyError::Denied { .. }
            | ProxyError::AccessDenied(_) => {
                tracing::warn!(error = %e, "request failed")
            }
            _ => tracing::debug!(error = %e, "request failed"),
        }
        to_s3_error(&e)
    }
}
