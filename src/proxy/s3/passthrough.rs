//! The TLS pass-through benchmark baseline (`danger_passthrough_no_encryption`): PUT, GET and
//! HEAD move the bytes unencrypted and ask no trustee. Never on by default. Metadata is
//! ignored: only the raw bytes are stored.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use s3s::dto::{self, StreamingBlob};

use super::conditions::ByteRange;
use super::metadata::{etag, timestamp};
use super::pipeline::{BodyFailure, BodyStream, spawn_body};
use super::request::{md5_hex, timed};
use crate::proxy::error::ProxyError;
use crate::storage::{self, Storage};

/// PutObject: the body goes to storage as it is.
pub(crate) async fn put(
    storage: &Storage,
    path: &str,
    mut body: BodyStream,
) -> Result<dto::PutObjectOutput, ProxyError> {
    let mut writer = storage.writer(path)?;
    let mut len = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(ProxyError::BodyRead)?;
        len += chunk.len() as u64;
        timed("backend_io", writer.write(&chunk)).await?;
    }
    writer.complete().await?;
    Ok(dto::PutObjectOutput {
        e_tag: Some(etag(md5_hex(format!("{path}:{len}").as_bytes()))),
        ..Default::default()
    })
}

/// GetObject: the stored bytes of the requested range: from `read` if the object was read
/// whole with its size (small objects, as the encrypting path reads them), else streamed.
pub(crate) fn get(
    storage: &Storage,
    path: String,
    (meta, read): (&storage::Meta, Bytes),
    range: Option<&dto::Range>,
) -> Result<dto::GetObjectOutput, ProxyError> {
    let bytes = ByteRange::resolve(range, meta.size)?;
    let whole = usize::try_from(meta.size).is_ok_and(|size| size == read.len());
    let body = match (
        usize::try_from(bytes.range.start),
        usize::try_from(bytes.range.end),
    ) {
        (Ok(start), Ok(end)) if whole && start <= end && end <= read.len() => {
            Some(StreamingBlob::from(s3s::Body::from(read.slice(start..end))))
        }
        _ => None,
    };
    let body = match body {
        Some(body) => body,
        None => stream(storage, path, &bytes),
    };
    Ok(dto::GetObjectOutput {
        content_length: bytes.content_length(),
        content_range: bytes.content_range(),
        last_modified: Some(timestamp(meta.last_modified)),
        body: Some(body),
        ..Default::default()
    })
}

/// The stored bytes of `bytes`, streamed from the backend.
fn stream(storage: &Storage, path: String, bytes: &ByteRange) -> StreamingBlob {
    let storage = storage.clone();
    let failure = BodyFailure {
        log: "pass-through read failed",
        client: "backend read failed",
    };
    let read = bytes.range.clone();
    spawn_body(bytes.len(), failure, |mut tx| async move {
        let mut stream = storage.stream_range(&path, read).await?;
        while let Some(chunk) = stream.next().await {
            if tx.send(Ok(chunk?)).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    })
}

/// HeadObject: the stored size and time.
pub(crate) fn head(meta: &storage::Meta) -> dto::HeadObjectOutput {
    dto::HeadObjectOutput {
        content_length: Some(i64::try_from(meta.size).unwrap_or(i64::MAX)),
        last_modified: Some(timestamp(meta.last_modified)),
        ..Default::default()
    }
}
