//! Conditional requests (If-Match and friends, RFC 9110 §13.2.2) and byte ranges (RFC 9110
//! §14), including the part a GetObject `partNumber` selects.

use std::ops::Range;
use std::time::SystemTime;

use s3s::dto::{self, Timestamp};

use crate::proxy::error::ProxyError;

/// The conditional request headers of a read.
pub(crate) struct Conditions<'a> {
    pub(crate) if_match: Option<&'a dto::ETagCondition>,
    pub(crate) if_none_match: Option<&'a dto::ETagCondition>,
    pub(crate) if_modified_since: Option<&'a Timestamp>,
    pub(crate) if_unmodified_since: Option<&'a Timestamp>,
}

/// [`Conditions`] of any input type with the four fields (GetObject and HeadObject share the
/// names).
macro_rules! conditions {
    ($input:expr) => {
        $crate::proxy::s3::conditions::Conditions {
            if_match: $input.if_match.as_ref(),
            if_none_match: $input.if_none_match.as_ref(),
            if_modified_since: $input.if_modified_since.as_ref(),
            if_unmodified_since: $input.if_unmodified_since.as_ref(),
        }
    };
}
pub(crate) use conditions;

/// The copy-source conditions (`x-amz-copy-source-if-*`) of CopyObject or UploadPartCopy
/// (`input`), checked against the opened source (`opened`): a source that is "not modified"
/// fails the copy's precondition (412), as on S3, since a copy has no 304.
macro_rules! check_copy_source {
    ($input:expr, $opened:expr) => {
        $crate::proxy::s3::conditions::Conditions {
            if_match: $input.copy_source_if_match.as_ref(),
            if_none_match: $input.copy_source_if_none_match.as_ref(),
            if_modified_since: $input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: $input.copy_source_if_unmodified_since.as_ref(),
        }
        .check(&$opened.etag, $opened.meta.last_modified)
        .map_err(|e| match e {
            $crate::proxy::error::ProxyError::NotModified { .. } => {
                $crate::proxy::error::ProxyError::PreconditionFailed
            }
            other => other,
        })
    };
}
pub(crate) use check_copy_source;

impl Conditions<'_> {
    /// Evaluates the conditions against an object's ETag and modification time.
    pub(crate) fn check(
        &self,
        etag_value: &str,
        last_modified: SystemTime,
    ) -> Result<(), ProxyError> {
        check_conditions(
            etag_value,
            last_modified,
            self.if_match,
            self.if_none_match,
            self.if_modified_since,
            self.if_unmodified_since,
        )
    }
}

fn system_time(t: &Timestamp) -> SystemTime {
    let odt: time::OffsetDateTime = t.clone().into();
    SystemTime::from(odt)
}

/// Evaluates If-Match, If-None-Match, If-Modified-Since and If-Unmodified-Since in the order
/// of RFC 9110 §13.2.2: If-Match (else If-Unmodified-Since) first, failing with 412; then
/// If-None-Match (else If-Modified-Since), answering 304 (these are reads: GET and HEAD). A
/// date condition is ignored when its ETag counterpart is present.
pub(crate) fn check_conditions(
    etag_value: &str,
    last_modified: SystemTime,
    if_match: Option<&dto::ETagCondition>,
    if_none_match: Option<&dto::ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> Result<(), ProxyError> {
    let matches = |c: &dto::ETagCondition| match c {
        dto::ETagCondition::Any => true,
        dto::ETagCondition::ETag(e) => e.value() == etag_value,
    };
    // Compare at whole seconds: HTTP dates have no sub-second precision.
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    if let Some(c) = if_match {
        if !matches(c) {
            return Err(ProxyError::PreconditionFailed);
        }
    } else if let Some(t) = if_unmodified_since
        && secs(last_modified) > secs(system_time(t))
    {
        return Err(ProxyError::PreconditionFailed);
    }
    if let Some(c) = if_none_match {
        if matches(c) {
            return Err(not_modified(etag_value, last_modified));
        }
    } else if let Some(t) = if_modified_since
        && secs(last_modified) <= secs(system_time(t))
    {
        return Err(not_modified(etag_value, last_modified));
    }
    Ok(())
}

fn not_modified(etag: &str, last_modified: SystemTime) -> ProxyError {
    ProxyError::NotModified {
        etag: etag.to_owned(),
        last_modified,
    }
}

/// The requested range of an object of `len` bytes; `None` without a Range header.
pub(crate) fn resolve_range(
    range: Option<&dto::Range>,
    len: u64,
) -> Result<Option<Range<u64>>, ProxyError> {
    match range {
        None => Ok(None),
        // s3s resolves a suffix range on an empty object to 0..0; RFC 9110 §14.1.3 calls it
        // unsatisfiable, and a 206 would claim `bytes 0-0/0` (found by fuzzing).
        Some(r) => match r.check(len) {
            Ok(resolved) if !resolved.is_empty() => Ok(Some(resolved)),
            _ => Err(ProxyError::InvalidRange),
        },
    }
}

/// The bytes a GET or HEAD answers with: the requested range, or the whole object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ByteRange {
    /// The bytes served.
    pub(crate) range: Range<u64>,
    /// The object's length.
    total: u64,
    /// A Range header asked for these bytes (a 206 with Content-Range).
    partial: bool,
}

impl ByteRange {
    /// Resolves the Range header `range` (if any) against an object of `total` bytes.
    ///
    /// # Errors
    /// [`ProxyError::InvalidRange`] for a range that selects nothing.
    pub(crate) fn resolve(range: Option<&dto::Range>, total: u64) -> Result<Self, ProxyError> {
        let resolved = resolve_range(range, total)?;
        Ok(Self {
            partial: resolved.is_some(),
            range: resolved.unwrap_or(0..total),
            total,
        })
    }

    /// The bytes of one part (`partNumber`) of an object of `total` bytes: a 206 with
    /// Content-Range as S3 answers, except for an empty part, which no Content-Range can name.
    pub(crate) fn part(range: Range<u64>, total: u64) -> Self {
        Self {
            partial: !range.is_empty(),
            range,
            total,
        }
    }

    /// Number of bytes served.
    pub(crate) fn len(&self) -> u64 {
        self.range.end - self.range.start
    }

    /// The Content-Length header's value.
    pub(crate) fn content_length(&self) -> Option<i64> {
        Some(i64::try_from(self.len()).unwrap_or(i64::MAX))
    }

    /// The Content-Range header's value, for a range request.
    pub(crate) fn content_range(&self) -> Option<String> {
        self.partial.then(|| {
            format!(
                "bytes {}-{}/{}",
                self.range.start,
                self.range.end.saturating_sub(1),
                self.total
            )
        })
    }
}
