//! The TLS pass-through benchmark baseline (`danger_passthrough_no_encryption`): PUT, GET and
//! HEAD move the bytes unencrypted and ask no trustee. Never on by default. Metadata is
//! ignored: only the raw bytes are stored.

use futures::{SinkExt, StreamExt};
use s3s::dto;

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

/// GetObject: the stored bytes of the requested range, streamed.
pub(crate) fn get(
    storage: &Storage,
    path: String,
    meta: &storage::Meta,
    range: Option<&dto::Range>,
) -> Result<dto::GetObjectOutput, ProxyError> {
    let bytes = ByteRange::resolve(range, meta.size)?;
    let storage = storage.clone();
    let failure = BodyFailure {
        log: "pass-through read failed",
        client: "backend read failed",
    };
    let read = bytes.range.clone();
    let body = spawn_body(bytes.len(), failure, |mut tx| async move {
        let mut stream = storage.stream_range(&path, read).await?;
        while let Some(chunk) = stream.next().await {
            if tx.send(Ok(chunk?)).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    });
    Ok(dto::GetObjectOutput {
        content_length: bytes.content_length(),
        content_range: bytes.content_range(),
        last_modified: Some(timestamp(meta.last_modified)),
        body: Some(body),
        ..Default::default()
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
