//! UploadPartCopy: a part whose plaintext is (a byte range of) another stored object. The
//! source is opened and decrypted exactly as CopyObject does ([`pipeline::open`],
//! [`pipeline::decrypt_stream`]); the plaintext is then staged as UploadPart stages a body
//! ([`Proxy::stage_part`]), under a fresh attempt key of the upload. The aws cli copies every
//! object over its 8 MiB `multipart_threshold` this way (`aws s3 cp s3://a s3://b`).

use std::ops::Range;
use std::time::SystemTime;

use s3s::dto;

use super::part_number;
use crate::proxy::error::ProxyError;
use crate::proxy::s3::conditions::check_copy_source;
use crate::proxy::s3::metadata::{etag, timestamp};
use crate::proxy::s3::pipeline::{self, body_stream};
use crate::proxy::s3::request::{CustomerKey, customer_key, echoed};
use crate::proxy::s3::{Op, Out};

/// The byte range of `x-amz-copy-source-range`: `bytes=first-last`, both inclusive, as S3
/// takes it (no suffix or open ranges, one range only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CopyRange {
    first: u64,
    last: u64,
}

impl CopyRange {
    /// Parses the header's value.
    ///
    /// # Errors
    /// [`ProxyError::InvalidArgument`] for anything but `bytes=<first>-<last>` with
    /// `first <= last`, as S3 answers.
    pub(super) fn parse(value: &str) -> Result<Self, ProxyError> {
        let invalid = || {
            ProxyError::InvalidArgument(
                "x-amz-copy-source-range must be bytes=first-last (zero-based, inclusive)".into(),
            )
        };
        let spec = value.trim().strip_prefix("bytes=").ok_or_else(invalid)?;
        let (first, last) = spec.split_once('-').ok_or_else(invalid)?;
        let number = |s: &str| {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            s.parse::<u64>().map_err(|_| invalid())
        };
        let (first, last) = (number(first)?, number(last)?);
        if first > last {
            return Err(invalid());
        }
        Ok(Self { first, last })
    }

    /// The plaintext range of a source of `len` bytes.
    ///
    /// # Errors
    /// [`ProxyError::InvalidRange`] for a range that ends beyond the source.
    pub(super) fn resolve(self, len: u64) -> Result<Range<u64>, ProxyError> {
        if self.last >= len {
            return Err(ProxyError::InvalidRange);
        }
        Ok(self.first..self.last + 1)
    }
}

pub(in crate::proxy::s3) async fn upload_part_copy(
    op: Op<'_, dto::UploadPartCopyInput>,
) -> Out<dto::UploadPartCopyOutput> {
    let Op(proxy, request, input) = op;
    let paths = request.paths();
    let (src_bucket, src_key) = match &input.copy_source {
        dto::CopySource::Bucket {
            bucket,
            key,
            version_id: None,
        } => (bucket.to_string(), key.to_string()),
        _ => {
            return Err(ProxyError::NotImplemented(
                "copy sources other than bucket/key",
            ));
        }
    };
    // Everything the request alone decides is checked before any key is released.
    let dest_customer = customer_key!(input)?;
    let src_customer = CustomerKey::parse(
        input.copy_source_sse_customer_algorithm.as_deref(),
        input.copy_source_sse_customer_key.as_deref(),
        input.copy_source_sse_customer_key_md5.as_deref(),
    )?;
    let part = part_number(input.part_number)?;
    let range = input
        .copy_source_range
        .as_deref()
        .map(CopyRange::parse)
        .transpose()?;
    let object = (input.bucket.as_str(), input.key.as_str());
    let upload = proxy.upload(&request, object, &input.upload_id).await?;
    // Source existence next (NoSuchKey / NoSuchBucket), before bothering the trustee.
    let src_path = paths.object(&src_bucket, &src_key);
    let src_meta = proxy.stat_object(paths, &src_bucket, &src_path).await?;
    let opened = pipeline::open(
        &proxy.storage,
        (&request, src_customer.as_ref(), "UploadPartCopy source"),
        (&src_bucket, &src_key, &src_path),
        src_meta,
        0,
    )
    .await?;
    check_copy_source!(&input, &opened)?;
    let range = match range {
        Some(r) => r.resolve(opened.plaintext_len)?,
        None => 0..opened.plaintext_len,
    };
    let cipher = proxy
        .upload_cipher(
            &request,
            dest_customer.as_ref(),
            "UploadPartCopy",
            object,
            &upload,
        )
        .await?;
    let len = range.end - range.start;
    let plaintext = if range.is_empty() {
        // An empty source: nothing to decrypt (the decryptor refuses an empty range).
        None
    } else {
        Some(pipeline::decrypt_stream(
            &proxy.storage,
            src_path,
            opened,
            range,
        ))
    };
    let body = (body_stream(plaintext), Some(len));
    let etag_value = proxy
        .stage_part(&upload, &cipher, part, body)
        .await
        // The "body" is the decrypted source: failing to read it means the source failed
        // authentication part way.
        .map_err(|e| match e {
            ProxyError::BodyRead(_) => ProxyError::Integrity,
            other => other,
        })?;
    let result = dto::CopyPartResult {
        e_tag: Some(etag(etag_value)),
        last_modified: Some(timestamp(SystemTime::now())),
        ..Default::default()
    };
    Ok(echoed!(
        request.echo(dest_customer.as_ref()),
        dto::UploadPartCopyOutput {
            copy_part_result: Some(result),
        }
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests
    use super::*;

    #[test]
    fn copy_source_ranges_are_first_to_last_inclusive() {
        let r = CopyRange::parse("bytes=0-9").unwrap();
        assert_eq!(r.resolve(10).unwrap(), 0..10);
        assert_eq!(
            CopyRange::parse("bytes=5-5").unwrap().resolve(6).unwrap(),
            5..6
        );
    }

    #[test]
    fn malformed_copy_source_ranges_are_invalid_arguments() {
        for bad in [
            "x",
            "bytes=0",
            "bytes=hello-world",
            "bytes=0-bar",
            "bytes=hello-",
            "bytes=0-2,3-5",
            "bytes=-5",
            "bytes=5-",
            "bytes=9-3",
            "bytes=+1-2",
        ] {
            assert!(
                matches!(CopyRange::parse(bad), Err(ProxyError::InvalidArgument(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_copy_source_range_beyond_the_source_is_an_invalid_range() {
        let r = CopyRange::parse("bytes=0-21").unwrap();
        assert!(matches!(r.resolve(5), Err(ProxyError::InvalidRange)));
        assert!(matches!(r.resolve(21), Err(ProxyError::InvalidRange)));
        assert_eq!(r.resolve(22).unwrap(), 0..22);
    }
}
