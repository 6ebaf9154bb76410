//! Fuzz targets of the proxy's S3 request parsing: Range and conditional headers, and the
//! aws-chunked body decoder reached through s3s.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use s3s::dto;

use crate::bench::client::amz_date;
use crate::format::{self, Layout, Metadata};
use crate::proxy::error::ProxyError;
use crate::proxy::service;

use super::format::check_range;
use super::{Input, vector_object};

/// The Range header (`s3s::dto::Range::parse`, then `resolve_range` as the proxy calls it),
/// the conditional headers (`ETagCondition`, HTTP dates, then `check_conditions`), and the
/// resolved range mapped onto a single-run object of that length as a GET does.
///
/// Input: flags, the object length (8 bytes), the last-modified time (4 bytes), then
/// newline-separated: Range, the object's ETag, If-Match, If-None-Match, If-Modified-Since,
/// If-Unmodified-Since (an empty field is an absent header).
pub fn range_conditions(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.byte();
    let raw_len = input.u64();
    let len = if flags & 1 != 0 {
        raw_len
    } else {
        raw_len % (1 << 24)
    };
    let last_modified = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(input.u32()));
    let mut fields = input.rest().split(|b| *b == b'\n');
    let mut next = || {
        fields
            .next()
            .filter(|f| !f.is_empty())
            .and_then(|f| std::str::from_utf8(f).ok())
    };
    let range = next().and_then(|s| dto::Range::parse(s).ok());
    let etag = next().unwrap_or("\"d41d8cd98f00b204e9800998ecf8427e\"");
    let if_match = next().and_then(|s| dto::ETagCondition::parse_http_header(s.as_bytes()).ok());
    let if_none_match =
        next().and_then(|s| dto::ETagCondition::parse_http_header(s.as_bytes()).ok());
    let date = |s: &str| dto::Timestamp::parse(dto::TimestampFormat::HttpDate, s).ok();
    let if_modified_since = next().and_then(date);
    let if_unmodified_since = next().and_then(date);
    let _ = service::check_conditions(
        etag,
        last_modified,
        if_match.as_ref(),
        if_none_match.as_ref(),
        if_modified_since.as_ref(),
        if_unmodified_since.as_ref(),
    );
    let resolved = match service::resolve_range(range.as_ref(), len) {
        Ok(Some(resolved)) => resolved,
        Ok(None) => {
            assert!(range.is_none());
            return;
        }
        Err(e) => {
            assert!(matches!(e, ProxyError::InvalidRange));
            return;
        }
    };
    assert!(
        resolved.start < resolved.end && resolved.end <= len,
        "resolved range {resolved:?} for length {len}"
    );
    // The GET path: the same range on an object of that plaintext length.
    let (cipher, header) = vector_object(Layout::Single, &Metadata::new());
    let header_len = header.len() as u64;
    let Some(total) = format::layout::checked_run_ciphertext_len(len, cipher.header().segment_size)
        .and_then(|run| run.checked_add(header_len))
    else {
        return;
    };
    let layout = cipher
        .single_layout(total)
        .expect("the length of a real object");
    assert_eq!(layout.plaintext_len(), len);
    check_range(&layout, resolved, header_len..total, None);
}

const CHUNKED_ACCESS_KEY: &str = "fuzzaccesskey";
const CHUNKED_SECRET_KEY: &str = "fuzz-secret-key-not-a-real-one";

/// An S3 back end that takes a PutObject body and answers with its length as the ETag.
struct DrainS3;

#[async_trait::async_trait]
impl s3s::S3 for DrainS3 {
    async fn put_object(
        &self,
        req: s3s::S3Request<dto::PutObjectInput>,
    ) -> s3s::S3Result<s3s::S3Response<dto::PutObjectOutput>> {
        use futures::StreamExt as _;
        let mut len = 0u64;
        if let Some(mut body) = req.input.body {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|_| s3s::s3_error!(IncompleteBody))?;
                len += chunk.len() as u64;
            }
        }
        Ok(s3s::S3Response::new(dto::PutObjectOutput {
            e_tag: Some(dto::ETag::Strong(len.to_string())),
            ..Default::default()
        }))
    }
}

fn chunked_service() -> &'static (tokio::runtime::Runtime, s3s::service::S3Service) {
    static SERVICE: OnceLock<(tokio::runtime::Runtime, s3s::service::S3Service)> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        let mut builder = s3s::service::S3ServiceBuilder::new(DrainS3);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(
            CHUNKED_ACCESS_KEY,
            CHUNKED_SECRET_KEY,
        ));
        (runtime, builder.build())
    })
}

/// The aws-chunked decoder. It is s3s's (`AwsChunkedStream`, private), reached through the
/// entry point the proxy uses: an `S3Service` with SigV4 auth, given a correctly signed PutObject
/// whose body is the fuzz input. A 200 must not have received more bytes than were sent, and in
/// a signed-chunk mode, whose chunk signatures the fuzzer cannot compute, no data at all.
///
/// Input: flags (mode, trailer), the declared decoded length (2 bytes), then the body.
pub fn aws_chunked(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.byte();
    let decoded_len = u64::from(input.u16());
    let body = bytes::Bytes::copy_from_slice(input.rest());
    let body_len = body.len() as u64;
    let modes = [
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    ];
    let mode = modes[usize::from(flags % 3)];
    let signed_chunks = flags % 3 != 0;
    let trailer = match (flags >> 2) % 3 {
        0 => Some("x-amz-checksum-crc32"),
        1 => Some("x-amz-checksum-sha256"),
        _ => None,
    };
    // s3s refuses signatures more than 15 minutes off the clock.
    let amz_date = amz_date(SystemTime::now());
    let decoded = decoded_len.to_string();
    let mut signed: Vec<(&str, &str)> = vec![
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", &decoded),
    ];
    if let Some(trailer) = trailer {
        signed.push(("x-amz-trailer", trailer));
    }
    let authorization = crate::crypto::sigv4::authorization_for_payload(
        &crate::crypto::sigv4::SigningInput {
            method: "PUT",
            host: "localhost",
            path: "/bucket/key",
            query: &[],
            headers: &signed,
            amz_date: &amz_date,
            region: "us-east-1",
        },
        mode,
        CHUNKED_ACCESS_KEY,
        CHUNKED_SECRET_KEY,
    );
    let mut request = http::Request::builder()
        .method("PUT")
        .uri("/bucket/key")
        .header("host", "localhost")
        .header("x-amz-date", &amz_date)
        .header("x-amz-content-sha256", mode)
        .header("content-length", body.len().to_string())
        .header("authorization", authorization);
    for (name, value) in &signed {
        request = request.header(*name, *value);
    }
    let request = request
        .body(s3s::Body::from(body))
        .expect("a well-formed request");
    let (runtime, service) = chunked_service();
    let Ok(response) = runtime.block_on(service.call(request)) else {
        return;
    };
    if response.status() == http::StatusCode::OK {
        let received: Option<u64> = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_matches('"').parse().ok());
        let received = received.expect("DrainS3 answers with the received length");
        // s3s 0.14.1 ends the stream at the end of the body even without the final zero-length
        // chunk, and never compares with x-amz-decoded-content-length (docs/fuzzing.md,
        // findings). So the checks here are what holds regardless: no byte the fuzzer could not
        // sign gets through in a signed-chunk mode, and nothing is invented.
        if signed_chunks {
            assert_eq!(received, 0, "{mode}: unsigned chunk data was accepted");
        }
        assert!(received <= body_len);
    }
}
