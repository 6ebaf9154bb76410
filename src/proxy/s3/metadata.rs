//! Object metadata between S3 requests and the object header.
//!
//! Content-Type, Content-Encoding, Content-Disposition, Content-Language, Cache-Control, Expires
//! and the `x-amz-meta-*` user metadata travel sealed inside the object header (format v2,
//! docs/format.md §6), never in plaintext next to the ciphertext.
//!
//! User metadata values are stored as s3s hands them over: it decodes RFC 2047 encoded words
//! (`=?UTF-8?B?...?=`) on the way in and encodes non-ASCII values that way on the way out, which
//! is how S3 returns non-US-ASCII metadata.

use s3s::dto;

use crate::format;
use crate::proxy::error::ProxyError;

/// The standard headers stored with an object, by their format v2 metadata names.
pub(crate) const CACHE_CONTROL: &str = "cache-control";
pub(crate) const CONTENT_DISPOSITION: &str = "content-disposition";
pub(crate) const CONTENT_ENCODING: &str = "content-encoding";
pub(crate) const CONTENT_LANGUAGE: &str = "content-language";
pub(crate) const CONTENT_TYPE: &str = "content-type";
/// Stored as the IMF-fixdate S3 answers with (s3s parses the request's HTTP date).
pub(crate) const EXPIRES: &str = "expires";
/// User metadata is stored under its full header name, so it can never collide with the
/// standard headers above.
const USER_METADATA_PREFIX: &str = "x-amz-meta-";

/// The metadata a PutObject, CreateMultipartUpload or CopyObject (REPLACE) request carries, as
/// it is sealed into the header. Rejects metadata the format cannot hold before any key is
/// released.
pub(crate) fn sealed_metadata(
    standard: [(&'static str, Option<&str>); 5],
    expires: Option<&dto::Timestamp>,
    user: Option<&dto::Metadata>,
) -> Result<format::Metadata, ProxyError> {
    let mut out = format::Metadata::new();
    for (name, value) in standard {
        let value = match (name, value) {
            (CONTENT_ENCODING, Some(value)) => without_aws_chunked(value),
            (_, value) => value.map(str::to_owned),
        };
        if let Some(value) = value {
            out.insert(name, &value);
        }
    }
    if let Some(expires) = expires {
        let mut date = Vec::new();
        expires
            .format(dto::TimestampFormat::HttpDate, &mut date)
            .map_err(|_| ProxyError::InvalidArgument("Expires is not a valid HTTP date".into()))?;
        out.insert(EXPIRES, &String::from_utf8_lossy(&date));
    }
    for (name, value) in user.into_iter().flatten() {
        out.insert(&format!("{USER_METADATA_PREFIX}{name}"), value);
    }
    out.check_size()?;
    Ok(out)
}

/// Content-Encoding without `aws-chunked`, the transfer encoding of a streaming-signed upload
/// (boto3 and the aws cli send it over HTTPS), which s3s has already decoded: S3 does not store
/// it either. `None` when nothing else is left.
fn without_aws_chunked(value: &str) -> Option<String> {
    let rest: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!rest.is_empty()).then(|| rest.join(", "))
}

/// [`sealed_metadata`] for any input type with the standard fields (they share field names).
macro_rules! request_metadata {
    ($input:expr) => {{
        use $crate::proxy::s3::metadata as m;
        m::sealed_metadata(
            [
                (m::CACHE_CONTROL, $input.cache_control.as_deref()),
                (
                    m::CONTENT_DISPOSITION,
                    $input.content_disposition.as_deref(),
                ),
                (m::CONTENT_ENCODING, $input.content_encoding.as_deref()),
                (m::CONTENT_LANGUAGE, $input.content_language.as_deref()),
                (m::CONTENT_TYPE, $input.content_type.as_deref()),
            ],
            $input.expires.as_ref(),
            $input.metadata.as_ref(),
        )
    }};
}
pub(crate) use request_metadata;

/// The stored metadata as GetObject and HeadObject return it.
pub(crate) struct ResponseMetadata {
    pub(crate) cache_control: Option<String>,
    pub(crate) content_disposition: Option<String>,
    pub(crate) content_encoding: Option<String>,
    pub(crate) content_language: Option<String>,
    /// Defaults to application/octet-stream, as S3 does for objects stored without a type.
    pub(crate) content_type: String,
    pub(crate) expires: Option<dto::Timestamp>,
    pub(crate) metadata: Option<dto::Metadata>,
}

impl ResponseMetadata {
    pub(crate) fn of(stored: &format::Metadata) -> Self {
        let get = |name: &str| stored.get(name).map(str::to_owned);
        let user: dto::Metadata = stored
            .iter()
            .filter_map(|(name, value)| {
                name.strip_prefix(USER_METADATA_PREFIX)
                    .map(|n| (n.to_owned(), value.to_owned()))
            })
            .collect();
        Self {
            cache_control: get(CACHE_CONTROL),
            content_disposition: get(CONTENT_DISPOSITION),
            content_encoding: get(CONTENT_ENCODING),
            content_language: get(CONTENT_LANGUAGE),
            content_type: get(CONTENT_TYPE).unwrap_or_else(|| "application/octet-stream".into()),
            // Written by `sealed_metadata` in the same format; anything else is left out.
            expires: stored
                .get(EXPIRES)
                .and_then(|d| dto::Timestamp::parse(dto::TimestampFormat::HttpDate, d).ok()),
            metadata: (!user.is_empty()).then_some(user),
        }
    }
}

/// An ETag as the S3 types carry it.
pub(crate) fn etag(value: String) -> dto::ETag {
    dto::ETag::Strong(value)
}

/// A time as the S3 types carry it.
pub(crate) fn timestamp(t: std::time::SystemTime) -> dto::Timestamp {
    dto::Timestamp::from(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_chunked_is_not_stored_as_a_content_encoding() {
        assert_eq!(without_aws_chunked("aws-chunked"), None);
        assert_eq!(without_aws_chunked("aws-chunked,gzip"), Some("gzip".into()));
        assert_eq!(
            without_aws_chunked("gzip, aws-chunked"),
            Some("gzip".into())
        );
        assert_eq!(without_aws_chunked("gzip"), Some("gzip".into()));
    }
}
