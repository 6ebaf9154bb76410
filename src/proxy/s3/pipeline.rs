//! The encrypt and decrypt streams between a request or response body and storage.
//!
//! Every response shows the plaintext view: Content-Length and ranges are plaintext sizes.

use std::future::Future;
use std::ops::Range;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use s3s::dto::StreamingBlob;

use super::request::{CustomerKey, RequestContext, md5_hex, phase, timed};
use crate::format::{self, Layout};
use crate::proxy::error::ProxyError;
use crate::storage::{self, Storage};

/// Plaintext is written to storage in pieces of about this size.
const WRITE_CHUNK: usize = 1024 * 1024;

/// A request body (or a decrypted object on its way to a copy) as a stream of pieces.
pub(crate) type BodyStream = futures::stream::BoxStream<'static, Result<Bytes, s3s::StdError>>;

/// The body of a request; an absent body is an empty one.
pub(crate) fn body_stream(body: Option<StreamingBlob>) -> BodyStream {
    match body {
        Some(body) => body.boxed(),
        None => futures::stream::empty().boxed(),
    }
}

/// The body length a request declared, where the body knows it: Content-Length, or for
/// aws-chunked uploads the `x-amz-decoded-content-length` that s3s turns into the decoded
/// stream's exact length.
pub(crate) fn declared_len(body: Option<&StreamingBlob>) -> Option<u64> {
    use s3s::stream::ByteStream as _;
    body.and_then(|b| b.remaining_length().exact())
        .and_then(|n| u64::try_from(n).ok())
}

/// s3s 0.14.1 ends an aws-chunked stream at the end of the transport body even when the final
/// zero-length chunk never came, without comparing with `x-amz-decoded-content-length`. A
/// signed streaming upload cut short at a chunk boundary would then be stored short with a 200.
/// Called before the writer completes, so a short body leaves nothing visible.
pub(crate) fn check_complete(declared: Option<u64>, received: u64) -> Result<(), ProxyError> {
    match declared {
        Some(declared) if declared != received => {
            Err(ProxyError::IncompleteBody { declared, received })
        }
        _ => Ok(()),
    }
}

/// What an opened object looks like to the handlers.
pub(crate) struct Opened {
    pub(crate) cipher: format::ObjectCipher,
    /// The stored bytes from offset 0 that [`open`] read: the header at least, the whole
    /// object when it was small enough for the read-ahead.
    prefix: Bytes,
    footer: Option<Vec<u8>>,
    pub(crate) meta: storage::Meta,
    pub(crate) plaintext_len: u64,
    pub(crate) etag: String,
}

impl Opened {
    /// The stored header's bytes, exactly as read (what a rewrap replaces).
    pub(crate) fn header_bytes(&self) -> Result<&[u8], ProxyError> {
        self.prefix
            .get(..self.cipher.header_len())
            .ok_or(ProxyError::Integrity)
    }

    /// The tenant key version the object's (authenticated) header names.
    pub(crate) fn key_version(&self) -> u32 {
        self.cipher.header().key.version
    }

    /// Whether the object was stored by a multipart upload (it has a footer of parts).
    pub(crate) fn is_multipart(&self) -> bool {
        self.footer.is_some()
    }

    /// The plaintext range of each part in order (one range for a single-run object), from
    /// the authenticated layout: what GetObject's `partNumber` selects from.
    pub(crate) fn part_ranges(&self) -> Result<Vec<Range<u64>>, ProxyError> {
        Ok(self.layout()?.part_ranges().collect())
    }

    fn layout(&self) -> Result<format::ObjectLayout<'_>, ProxyError> {
        Ok(match &self.footer {
            None => self.cipher.single_layout(self.meta.size)?,
            Some(footer) => self.cipher.multipart_layout(footer, self.meta.size)?,
        })
    }
}

/// Opens the stored object at `path` (`bucket`/`key`, of which the caller has `meta` from a
/// stat) for operation `reason`: header, layout, plaintext length. Fails closed. An object of
/// at most `read_ahead` bytes is read whole, in the same backend call that reads the header;
/// the key is found from that header's public fields (format v3: the object's own key), so
/// finding it costs no extra read.
pub(crate) async fn open(
    storage: &Storage,
    (request, customer, reason): (&RequestContext, Option<&CustomerKey>, &str),
    (bucket, key, path): (&str, &str, &str),
    meta: storage::Meta,
    read_ahead: u64,
) -> Result<Opened, ProxyError> {
    let first = if meta.size <= read_ahead {
        meta.size
    } else {
        meta.size.min(format::MAX_HEADER_LEN as u64)
    };
    let prefix = match timed("backend_io", storage.read_range(path, 0..first)).await {
        Err(storage::Error::NotFound) => return Err(ProxyError::NoSuchKey),
        other => other?,
    };
    open_read(
        storage,
        (request, customer, reason),
        (bucket, key, path),
        (meta, prefix),
    )
    .await
}

/// [`open`] for a caller that has read the object's `meta` and its first bytes (`prefix`, the
/// header at least, or the whole object) already, in one call ([`Storage::read_start`]).
pub(crate) async fn open_read(
    storage: &Storage,
    (request, customer, reason): (&RequestContext, Option<&CustomerKey>, &str),
    (bucket, key, path): (&str, &str, &str),
    (meta, prefix): (storage::Meta, Bytes),
) -> Result<Opened, ProxyError> {
    let kek = request
        .read_key(customer, reason, (bucket, key), &prefix)
        .await?;
    let crypto_started = std::time::Instant::now();
    let (cipher, header_len) = request.open_object(&kek, (bucket, key), &prefix)?;
    let etag = md5_hex(prefix.get(..header_len).ok_or(ProxyError::Integrity)?);
    phase("crypto", crypto_started);
    let (footer, plaintext_len) = match cipher.header().layout {
        Layout::Single => (None, cipher.single_layout(meta.size)?.plaintext_len()),
        Layout::Multipart | Layout::MultipartKeyed => {
            let size = meta.size;
            let tail = storage
                .read_range(path, size.saturating_sub(4)..size)
                .await?;
            let footer_len = format::footer_len_from_tail(&tail)? as u64;
            let start = size.checked_sub(footer_len).ok_or(ProxyError::Integrity)?;
            let footer = storage.read_range(path, start..size).await?.to_vec();
            let len = cipher.multipart_layout(&footer, size)?.plaintext_len();
            (Some(footer), len)
        }
    };
    Ok(Opened {
        cipher,
        prefix,
        footer,
        meta,
        plaintext_len,
        etag,
    })
}

/// Decrypts a (small) plaintext range of an opened object into memory.
pub(crate) async fn decrypt_buffered(
    storage: &Storage,
    path: &str,
    opened: &Opened,
    range: Range<u64>,
) -> Result<Vec<u8>, ProxyError> {
    let (ct_range, mut decryptor) = opened.layout()?.decryptor(range)?;
    let ciphertext = match usize::try_from(ct_range.start)
        .ok()
        .zip(usize::try_from(ct_range.end).ok())
        .filter(|(start, end)| start <= end && *end <= opened.prefix.len())
    {
        // Read ahead by `open`: no second backend call, and no copy.
        Some((start, end)) => opened.prefix.slice(start..end),
        None => timed("backend_io", storage.read_range(path, ct_range)).await?,
    };
    let started = std::time::Instant::now();
    let mut out = Vec::with_capacity(ciphertext.len());
    decryptor.push(&ciphertext, &mut out)?;
    decryptor.finish()?;
    phase("crypto", started);
    Ok(out)
}

/// The sending side of a [`Body`].
pub(crate) type BodySender = futures::channel::mpsc::Sender<Result<Bytes, std::io::Error>>;

/// What a failed body task logs and what the client's stream ends with.
pub(crate) struct BodyFailure {
    /// The log line.
    pub(crate) log: &'static str,
    /// The I/O error the response body ends with (the response has started: no status).
    pub(crate) client: &'static str,
}

/// A response body of exactly `remaining` bytes, fed by `produce` in a task of its own. If
/// `produce` fails, the body ends with an error, so a client never takes a cut body for a
/// whole one.
pub(crate) fn spawn_body<F>(
    remaining: u64,
    failure: BodyFailure,
    produce: impl FnOnce(BodySender) -> F,
) -> StreamingBlob
where
    F: Future<Output = Result<(), ProxyError>> + Send + 'static,
{
    let (tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let mut on_error = tx.clone();
    let work = produce(tx);
    tokio::spawn(async move {
        if let Err(e) = work.await {
            tracing::error!(error = %e, "{}", failure.log);
            let _ = on_error
                .send(Err(std::io::Error::other(failure.client)))
                .await;
        }
    });
    StreamingBlob::new(Body { rx, remaining })
}

/// Streams the decrypted plaintext range of an opened object.
pub(crate) fn decrypt_stream(
    storage: &Storage,
    path: String,
    opened: Opened,
    range: Range<u64>,
) -> StreamingBlob {
    let storage = storage.clone();
    let failure = BodyFailure {
        log: "streaming decryption failed; aborting the response",
        client: "stored object failed authentication",
    };
    spawn_body(range.end - range.start, failure, |mut tx| async move {
        let (ct_range, mut decryptor) = opened.layout()?.decryptor(range)?;
        let mut stream = storage.stream_range(&path, ct_range).await?;
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            let started = std::time::Instant::now();
            decryptor.push(&chunk, &mut out)?;
            phase("crypto", started);
            if !out.is_empty() {
                let piece = Bytes::from(std::mem::take(&mut out));
                if tx.send(Ok(piece)).await.is_err() {
                    return Ok(()); // client went away
                }
            }
        }
        decryptor.finish()?;
        Ok(())
    })
}

/// Encrypts a body stream with `encryptor` into `writer`, showing every plaintext chunk to
/// `observe` (the part ETag digest). Returns the plaintext length.
pub(crate) async fn encrypt_with(
    mut encryptor: format::Encryptor<'_>,
    mut body: BodyStream,
    writer: &mut storage::Writer,
    mut observe: impl FnMut(&[u8]),
) -> Result<u64, ProxyError> {
    let mut out = Vec::with_capacity(WRITE_CHUNK + format::DEFAULT_SEGMENT_SIZE as usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(ProxyError::BodyRead)?;
        observe(&chunk);
        let started = std::time::Instant::now();
        encryptor.push(&chunk, &mut out)?;
        phase("crypto", started);
        if out.len() >= WRITE_CHUNK {
            timed("backend_io", writer.write(&out)).await?;
            out.clear();
        }
    }
    let len = encryptor.finish(&mut out)?;
    writer.write(&out).await?;
    Ok(len)
}

/// Stores a single-run object at `path`: `header`, then `body` encrypted as run 0 of `cipher`.
/// A body of other than the `declared` length stores nothing. Returns the plaintext length.
pub(crate) async fn store_single(
    storage: &Storage,
    path: &str,
    (cipher, header): (&format::ObjectCipher, &[u8]),
    body: BodyStream,
    declared: Option<u64>,
) -> Result<u64, ProxyError> {
    let mut writer = storage.writer(path)?;
    writer.write(header).await?;
    // On any error the writer is dropped, which aborts it: nothing becomes visible.
    let len = encrypt_with(cipher.encryptor(0), body, &mut writer, |_| {}).await?;
    check_complete(declared, len)?;
    timed("backend_io", writer.complete()).await?;
    Ok(len)
}

/// The response body of a GET: decrypted pieces from the decryption task, with an exact
/// length so hyper frames it with Content-Length.
struct Body {
    rx: futures::channel::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    remaining: u64,
}

impl futures::Stream for Body {
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        match self.rx.poll_next_unpin(cx) {
            std::task::Poll::Ready(Some(Ok(b))) => {
                self.remaining = self.remaining.saturating_sub(b.len() as u64);
                std::task::Poll::Ready(Some(Ok(b)))
            }
            std::task::Poll::Ready(Some(Err(e))) => std::task::Poll::Ready(Some(Err(Box::new(e)))),
            std::task::Poll::Ready(None) => std::task::Poll::Ready(None),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl s3s::stream::ByteStream for Body {
    fn remaining_length(&self) -> s3s::stream::RemainingLength {
        let n = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        s3s::stream::RemainingLength::new_exact(n)
    }
}
