//! A small signed S3 client for the admin commands that go through S3 (`tenant rewrap`):
//! ListBuckets, ListObjectsV2 with continuation, HEAD and the in-place CopyObject. hyper 1
//! over rustls (ring), SigV4 with `UNSIGNED-PAYLOAD` (`crate::crypto::sigv4`), the date and
//! SSE-C checksum helpers of the bench load generator.

use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::bench::client::{amz_date, md5_base64};
use crate::crypto::sigv4::{self, SigningInput};
use crate::secret::SecretString;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Largest response body read (a ListObjectsV2 page of 1000 long keys fits easily).
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Bound of one request.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The SSE-C header prefixes: the object's own key, and a copy's source key.
const SSE: &str = "x-amz-server-side-encryption-customer-";
const COPY_SSE: &str = "x-amz-copy-source-server-side-encryption-customer-";

/// One answer.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// The body (bounded).
    pub body: Bytes,
}

impl Response {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The S3 error code and message of an error body, for messages.
    pub fn error_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let code = tag_values(&text, "Code").into_iter().next();
        let message = tag_values(&text, "Message").into_iter().next();
        match (code, message) {
            (Some(c), Some(m)) => format!("HTTP {} {c}: {m}", self.status),
            (Some(c), None) => format!("HTTP {} {c}", self.status),
            _ => format!("HTTP {}", self.status),
        }
    }

    fn success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A pooled, signed S3 client for one endpoint and credential.
pub struct S3Client {
    http: Client<Https, Full<Bytes>>,
    endpoint: String,
    host: String,
    region: String,
    access_key_id: String,
    secret: SecretString,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// One page of ListObjectsV2.
#[derive(Debug)]
pub struct Page {
    /// The keys.
    pub keys: Vec<String>,
    /// The token of the next page, if any.
    pub next: Option<String>,
}

impl S3Client {
    /// A client for `endpoint` (`https://host:port`) trusting `tls`'s roots.
    ///
    /// # Errors
    /// An endpoint that is not a URL with a host.
    pub fn new(
        endpoint: &str,
        region: &str,
        access_key_id: &str,
        secret: SecretString,
        tls: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<Self> {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let uri: http::Uri = endpoint
            .parse()
            .with_context(|| format!("the S3 endpoint {endpoint:?} is not a URL"))?;
        let host = uri
            .authority()
            .map(|a| a.to_string())
            .ok_or_else(|| anyhow::anyhow!("the S3 endpoint {endpoint:?} has no host"))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let mut tls = (*tls).clone();
        tls.alpn_protocols.clear();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            http: Client::builder(TokioExecutor::new()).build(https),
            endpoint,
            host,
            region: region.to_owned(),
            access_key_id: access_key_id.to_owned(),
            secret,
        })
    }

    /// Sends one signed request with an empty body. `path` is already percent-encoded.
    async fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(String, String)],
    ) -> anyhow::Result<Response> {
        let date = amz_date(SystemTime::now());
        let signed: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let auth = sigv4::authorization(
            &SigningInput {
                method,
                host: &self.host,
                path,
                query,
                headers: &signed,
                amz_date: &date,
                region: &self.region,
            },
            &self.access_key_id,
            self.secret.expose_secret(),
        );
        let mut uri = format!("{}{path}", self.endpoint);
        if !query.is_empty() {
            let parts: Vec<String> = query
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        sigv4::uri_encode(k, false),
                        sigv4::uri_encode(v, false)
                    )
                })
                .collect();
            uri = format!("{uri}?{}", parts.join("&"));
        }
        let mut builder = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", &self.host)
            .header("x-amz-date", date)
            .header("x-amz-content-sha256", sigv4::UNSIGNED_PAYLOAD)
            .header("authorization", auth);
        for (k, v) in headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let request = builder.body(Full::new(Bytes::new()))?;
        let exchange = async {
            let response = self.http.request(request).await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("reading the response: {e}"))?
                .to_bytes();
            Ok::<_, anyhow::Error>(Response {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| anyhow::anyhow!("no answer from {} within {TIMEOUT:?}", self.endpoint))?
    }

    /// Every bucket of the caller (ListBuckets).
    ///
    /// # Errors
    /// Transport errors or an S3 error.
    pub async fn list_buckets(&self) -> anyhow::Result<Vec<String>> {
        let response = self.send("GET", "/", &[], &[]).await?;
        if !response.success() {
            anyhow::bail!("ListBuckets: {}", response.error_text());
        }
        let text = String::from_utf8_lossy(&response.body);
        Ok(tag_values(&text, "Name"))
    }

    /// One page of ListObjectsV2 of `bucket`, after `token`.
    ///
    /// # Errors
    /// Transport errors or an S3 error.
    pub async fn list_objects(&self, bucket: &str, token: Option<&str>) -> anyhow::Result<Page> {
        let mut query = vec![("list-type", "2")];
        if let Some(token) = token {
            query.push(("continuation-token", token));
        }
        let path = format!("/{}", sigv4::uri_encode(bucket, false));
        let response = self.send("GET", &path, &query, &[]).await?;
        if !response.success() {
            anyhow::bail!("ListObjectsV2 of {bucket}: {}", response.error_text());
        }
        let text = String::from_utf8_lossy(&response.body);
        let truncated = tag_values(&text, "IsTruncated")
            .first()
            .is_some_and(|v| v == "true");
        let next = tag_values(&text, "NextContinuationToken")
            .into_iter()
            .next();
        Ok(Page {
            keys: tag_values(&text, "Key"),
            next: if truncated { next } else { None },
        })
    }

    /// HEAD of an object, with SSE-C headers carrying `share` if given.
    ///
    /// # Errors
    /// Transport errors only; the status is the caller's.
    pub async fn head(
        &self,
        bucket: &str,
        key: &str,
        share: Option<&[u8; 32]>,
    ) -> anyhow::Result<Response> {
        let mut headers = Vec::new();
        if let Some(share) = share {
            sse_headers(&mut headers, SSE, share);
        }
        self.send("HEAD", &object_path(bucket, key), &[], &headers)
            .await
    }

    /// The in-place CopyObject that rewraps an object (metadata directive COPY): for SSE-C
    /// tenants `source` is the old version's share and `dest` the current one's.
    ///
    /// # Errors
    /// Transport errors only; the status is the caller's.
    pub async fn copy_in_place(
        &self,
        bucket: &str,
        key: &str,
        source: Option<&[u8; 32]>,
        dest: Option<&[u8; 32]>,
    ) -> anyhow::Result<Response> {
        let mut headers = vec![
            (
                "x-amz-copy-source".to_owned(),
                format!(
                    "/{}/{}",
                    sigv4::uri_encode(bucket, false),
                    sigv4::uri_encode(key, true)
                ),
            ),
            ("x-amz-metadata-directive".to_owned(), "COPY".to_owned()),
        ];
        if let Some(share) = source {
            sse_headers(&mut headers, COPY_SSE, share);
        }
        if let Some(share) = dest {
            sse_headers(&mut headers, SSE, share);
        }
        self.send("PUT", &object_path(bucket, key), &[], &headers)
            .await
    }
}

fn object_path(bucket: &str, key: &str) -> String {
    format!(
        "/{}/{}",
        sigv4::uri_encode(bucket, false),
        sigv4::uri_encode(key, true)
    )
}

/// The three SSE-C headers under `prefix` for a 32-byte share.
fn sse_headers(headers: &mut Vec<(String, String)>, prefix: &str, share: &[u8; 32]) {
    headers.push((format!("{prefix}algorithm"), "AES256".to_owned()));
    headers.push((
        format!("{prefix}key"),
        base64::engine::general_purpose::STANDARD.encode(share),
    ));
    headers.push((format!("{prefix}key-md5"), md5_base64(share)));
}

/// The text of every `<tag>...</tag>` element in `xml`, unescaped. Enough for the flat S3
/// listings (no nesting of the same tag, no CDATA); malformed input gives fewer values, never
/// a panic.
pub fn tag_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        out.push(unescape(&after[..end]));
        rest = &after[end + close.len()..];
    }
    out
}

/// XML entity unescaping: the five named entities and numeric references.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let Some(semi) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_keys_are_found_and_unescaped() {
        let xml = "<ListBucketResult><Name>b</Name><IsTruncated>true</IsTruncated><Contents><Key>a&amp;b&#x2F;c &lt;1&gt;</Key></Contents><Contents><Key>z</Key></Contents><NextContinuationToken>t&#61;</NextContinuationToken></ListBucketResult>";
        assert_eq!(tag_values(xml, "Key"), vec!["a&b/c <1>", "z"]);
        assert_eq!(tag_values(xml, "NextContinuationToken"), vec!["t="]);
        assert_eq!(tag_values(xml, "IsTruncated"), vec!["true"]);
    }

    #[test]
    fn malformed_xml_gives_fewer_values_not_a_panic() {
        assert!(tag_values("<Key>unterminated", "Key").is_empty());
        assert_eq!(tag_values("<Key>a&bogus;&</Key>", "Key"), vec!["a&bogus;&"]);
        assert_eq!(tag_values("<Key>&#xD800;</Key>", "Key"), vec!["&#xD800;"]);
    }
}
