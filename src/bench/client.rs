//! A minimal signed S3 client for the load generator: hyper 1 over rustls (ring), pooled
//! keep-alive connections, SigV4 with `UNSIGNED-PAYLOAD`, optional SSE-C share headers.

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::crypto::sigv4::{self, SigningInput};

type Body = BoxBody<Bytes, std::io::Error>;
type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Where and as whom the load generator sends requests.
#[derive(Clone)]
pub struct Target {
    /// `https://host:port` or `http://host:port`, no trailing slash.
    pub endpoint: String,
    /// Bucket to use.
    pub bucket: String,
    /// SigV4 access key id.
    pub access_key: String,
    /// SigV4 secret (kept out of `Debug`).
    pub secret_key: String,
    /// SigV4 region.
    pub region: String,
    /// Raw 32-byte customer share sent as SSE-C, if the tenant uses SSE-C.
    pub sse_c: Option<[u8; 32]>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("access_key", &self.access_key)
            .field("secret_key", &"[REDACTED]")
            .field("sse_c", &self.sse_c.map(|_| "[REDACTED]"))
            .finish()
    }
}

/// Outcome of one request.
#[derive(Debug)]
pub struct Outcome {
    /// HTTP status.
    pub status: u16,
    /// Response body bytes received.
    pub bytes: u64,
}

/// A pooled, signed S3 client.
#[derive(Clone)]
pub struct S3Client {
    http: Client<Https, Body>,
    target: Arc<Target>,
    host: String,
}

/// Formats `SystemTime` as SigV4's `YYYYMMDDTHHMMSSZ` (UTC) without a date library.
pub fn amz_date(now: SystemTime) -> String {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl S3Client {
    /// Builds a client trusting the given rustls config (the dev CA for the local stack).
    ///
    /// # Errors
    /// If the endpoint is not a URL with a host.
    pub fn new(
        target: Target,
        tls: Arc<rustls::ClientConfig>,
        pool: usize,
    ) -> anyhow::Result<Self> {
        let uri: hyper::Uri = target.endpoint.parse()?;
        let host = uri
            .authority()
            .map(|a| a.to_string())
            .ok_or_else(|| anyhow::anyhow!("endpoint has no host"))?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        // hyper-rustls sets ALPN itself and refuses a config that already has it.
        let mut tls = (*tls).clone();
        tls.alpn_protocols.clear();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(pool)
            .build(https);
        Ok(Self {
            http,
            target: Arc::new(target),
            host,
        })
    }

    fn request(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        extra: &[(&str, String)],
        body: Body,
    ) -> anyhow::Result<hyper::Request<Body>> {
        let path = format!("/{}/{}", self.target.bucket, sigv4::uri_encode(key, true));
        let path = if key.is_empty() {
            format!("/{}", self.target.bucket)
        } else {
            path
        };
        let mut headers: Vec<(&str, String)> = extra.to_vec();
        let sse;
        if let Some(share) = &self.target.sse_c {
            let md5 = md5_base64(share);
            sse = [
                (
                    "x-amz-server-side-encryption-customer-algorithm",
                    "AES256".to_owned(),
                ),
                (
                    "x-amz-server-side-encryption-customer-key",
                    base64::engine::general_purpose::STANDARD.encode(share),
                ),
                ("x-amz-server-side-encryption-customer-key-md5", md5),
            ];
            if method != "PUT" || !key.is_empty() {
                headers.extend(sse.iter().cloned());
            }
        }
        let date = amz_date(SystemTime::now());
        let signed: Vec<(&str, &str)> = headers
            .iter()
            .filter(|(k, _)| k.starts_with("x-amz-") || *k == "range" || *k == "content-length")
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        let auth = sigv4::authorization(
            &SigningInput {
                method,
                host: &self.host,
                path: &path,
                query,
                headers: &signed,
                amz_date: &date,
                region: &self.target.region,
            },
            &self.target.access_key,
            &self.target.secret_key,
        );
        let query_string: Vec<String> = query
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    sigv4::uri_encode(k, false),
                    sigv4::uri_encode(v, false)
                )
            })
            .collect();
        let uri = if query.is_empty() {
            format!("{}{path}", self.target.endpoint)
        } else {
            format!("{}{path}?{}", self.target.endpoint, query_string.join("&"))
        };
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", &self.host)
            .header("x-amz-date", date)
            .header("x-amz-content-sha256", sigv4::UNSIGNED_PAYLOAD)
            .header("authorization", auth);
        for (k, v) in &headers {
            builder = builder.header(*k, v);
        }
        Ok(builder.body(body)?)
    }

    async fn send(&self, request: hyper::Request<Body>) -> anyhow::Result<Outcome> {
        let response = self.http.request(request).await?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut bytes = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                bytes += data.len() as u64;
            }
        }
        Ok(Outcome { status, bytes })
    }

    /// Creates the bucket; an "already exists/owned" answer counts as success.
    ///
    /// # Errors
    /// Transport errors or an unexpected status.
    pub async fn create_bucket(&self) -> anyhow::Result<()> {
        let request = self.request("PUT", "", &[], &[("content-length", "0".into())], empty())?;
        let outcome = self.send(request).await?;
        if outcome.status == 200 || outcome.status == 409 {
            Ok(())
        } else {
            anyhow::bail!(
                "create bucket {}: HTTP {}",
                self.target.bucket,
                outcome.status
            )
        }
    }

    /// PUT an object whose body repeats `chunk` to `size` bytes, streamed (never whole in RAM).
    ///
    /// # Errors
    /// Transport errors.
    pub async fn put(&self, key: &str, size: u64, chunk: Bytes) -> anyhow::Result<Outcome> {
        let body = repeat_body(size, chunk);
        let request = self.request(
            "PUT",
            key,
            &[],
            &[("content-length", size.to_string())],
            body,
        )?;
        self.send(request).await
    }

    /// GET an object, optionally a byte range `[start, end]` (inclusive, as in HTTP).
    ///
    /// # Errors
    /// Transport errors.
    pub async fn get(&self, key: &str, range: Option<(u64, u64)>) -> anyhow::Result<Outcome> {
        let extra: Vec<(&str, String)> = range
            .map(|(a, b)| ("range", format!("bytes={a}-{b}")))
            .into_iter()
            .collect();
        let request = self.request("GET", key, &[], &extra, empty())?;
        self.send(request).await
    }
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

fn repeat_body(size: u64, chunk: Bytes) -> Body {
    let chunk_len = chunk.len().max(1) as u64;
    let frames = futures::stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        async move {
            if sent >= size {
                return None;
            }
            let take = (size - sent).min(chunk_len) as usize;
            Some((
                Ok::<_, std::io::Error>(Frame::data(chunk.slice(..take))),
                sent + take as u64,
            ))
        }
    });
    BodyExt::boxed(StreamBody::new(frames))
}

/// Base64 of the MD5 of `data`, as SSE-C headers require. MD5 is mandated by the S3 protocol
/// here as an integrity check of the transmitted key, not used for security.
pub fn md5_base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5(data))
}

fn md5(input: &[u8]) -> [u8; 16] {
    use md5::Digest as _;
    md5::Md5::digest(input).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_rfc_1321_vectors() {
        assert_eq!(hex::encode(md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex::encode(md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        let long =
            b"12345678901234567890123456789012345678901234567890123456789012345678901234567890";
        assert_eq!(hex::encode(md5(long)), "57edf4a22be3c955ac49da2e2107b67a");
    }

    #[test]
    fn amz_date_formats_utc() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_369_353_600);
        assert_eq!(amz_date(t), "20130524T000000Z");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400 + 3661);
        assert_eq!(amz_date(t), "20000229T010101Z");
    }
}
