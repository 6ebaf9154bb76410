//! S3 clients for the tests, all signing with the project's own SigV4 signer
//! ([`treuhand::crypto::sigv4`]), the one signer in the tree: an object_store client
//! ([`client`]), [`Raw`] for hand-made requests, and [`S3`], the fault matrix's client that
//! keeps whatever part of a body arrived before a failure.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use object_store::{ObjectStore, PutPayload};
use treuhand::crypto::sigv4::{self, SigningInput, UNSIGNED_PAYLOAD};

use crate::support::pki::Pki;
use crate::support::proxy::Proxy;

/// Extra request headers, `(name, value)`.
pub type Headers<'a> = &'a [(&'a str, String)];

pub const REGION: &str = "us-east-1";
pub const BUCKET: &str = "data";

/// One tenant as a test sees it.
pub struct TestTenant {
    pub id: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Raw 32-byte customer share (SSE-C tenants).
    pub share: Option<[u8; 32]>,
}

impl TestTenant {
    pub fn share_b64(&self) -> Option<String> {
        self.share
            .map(|s| base64::engine::general_purpose::STANDARD.encode(s))
    }
}

/// An object_store S3 client for one tenant and bucket.
pub fn client(
    proxy: &Proxy,
    pki: &Pki,
    tenant: &TestTenant,
    share_b64: Option<&str>,
    bucket: &str,
) -> Arc<dyn ObjectStore> {
    let mut builder = s3_builder(&proxy.endpoint(), &pki.ca_pem, tenant, bucket).with_retry(
        object_store::RetryConfig {
            max_retries: 0,
            ..Default::default()
        },
    );
    if let Some(key) = share_b64 {
        builder = builder.with_ssec_encryption(key);
    }
    Arc::new(builder.build().unwrap())
}

/// The whole object `key`, read through an object_store client.
pub async fn get_object<S: ObjectStore + ?Sized>(store: &S, key: &str) -> Bytes {
    use object_store::ObjectStoreExt as _;
    let path = object_store::path::Path::from(key);
    store.get(&path).await.unwrap().bytes().await.unwrap()
}

/// Stores `body` as the object `key` through an object_store client.
pub async fn put_object<S: ObjectStore + ?Sized>(
    store: &S,
    key: &str,
    body: impl Into<PutPayload>,
) {
    use object_store::ObjectStoreExt as _;
    let path = object_store::path::Path::from(key);
    store.put(&path, body.into()).await.unwrap();
}

/// An object_store S3 builder for `tenant` at `endpoint`, trusting `ca_pem`, path-style.
pub fn s3_builder(
    endpoint: &str,
    ca_pem: &Path,
    tenant: &TestTenant,
    bucket: &str,
) -> object_store::aws::AmazonS3Builder {
    let cert = std::fs::read(ca_pem).unwrap();
    let options = object_store::ClientOptions::new()
        .with_root_certificate(object_store::Certificate::from_pem(&cert).unwrap());
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_region(REGION)
        .with_bucket_name(bucket)
        .with_access_key_id(&tenant.access_key_id)
        .with_secret_access_key(&tenant.secret_access_key)
        .with_virtual_hosted_style_request(false)
        .with_client_options(options)
}

/// Now as SigV4's `YYYYMMDDTHHMMSSZ`.
pub fn amz_date_now() -> String {
    treuhand::bench::client::amz_date(std::time::SystemTime::now())
}

/// A presigned SigV4 URL for `GET path` at `endpoint` (`https://host:port`), signed for
/// `tenant` at `at` and valid for `expires` seconds, by the project's signer.
pub fn presign(
    endpoint: &str,
    tenant: &TestTenant,
    path: &str,
    at: time::OffsetDateTime,
    expires: u64,
) -> String {
    let amz_date = treuhand::bench::client::amz_date(at.into());
    let input = SigningInput {
        method: "GET",
        host: endpoint.trim_start_matches("https://"),
        path,
        query: &[],
        headers: &[],
        amz_date: &amz_date,
        region: REGION,
    };
    let (access, secret) = (&tenant.access_key_id, &tenant.secret_access_key);
    let query = sigv4::presigned_query(&input, expires, access, secret);
    format!("{endpoint}{path}?{query}")
}

/// A request ready to send: its URL and every header but `host` (which the HTTP client sets
/// from the URL).
pub struct SignedRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// Builds a request to `endpoint` (`https://host:port`), signed for `tenant` with the project's
/// signer, or anonymous for `None`. `path` and `query` are unencoded. The payload mode is the
/// caller's `x-amz-content-sha256` header if it names one (aws-chunked tests), else
/// `UNSIGNED-PAYLOAD`. Every header the caller names is signed.
pub fn sign_request(
    endpoint: &str,
    tenant: Option<&TestTenant>,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    headers: &[(&str, String)],
) -> SignedRequest {
    let amz_date = amz_date_now();
    let encoded_path = sigv4::uri_encode(path, true);
    let payload = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-content-sha256"))
        .map_or(UNSIGNED_PAYLOAD.to_owned(), |(_, v)| v.trim().to_owned());
    let extra: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("x-amz-content-sha256"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut send = vec![
        ("x-amz-date".to_owned(), amz_date.clone()),
        ("x-amz-content-sha256".to_owned(), payload.clone()),
    ];
    send.extend(extra.iter().cloned());
    if let Some(tenant) = tenant {
        let extra: Vec<(&str, &str)> = extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let input = SigningInput {
            method,
            host: endpoint.trim_start_matches("https://"),
            path: &encoded_path,
            query,
            headers: &extra,
            amz_date: &amz_date,
            region: REGION,
        };
        let authorization = sigv4::authorization_for_payload(
            &input,
            &payload,
            &tenant.access_key_id,
            &tenant.secret_access_key,
        );
        send.push(("authorization".to_owned(), authorization));
    }
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (sigv4::uri_encode(k, false), sigv4::uri_encode(v, false)))
        .collect();
    pairs.sort();
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let url = if query.is_empty() {
        format!("{endpoint}{encoded_path}")
    } else {
        format!("{endpoint}{encoded_path}?{}", query.join("&"))
    };
    SignedRequest { url, headers: send }
}

/// A reqwest client over real TLS trusting `ca_pem`, speaking `alpn` (`b"http/1.1"`, what
/// boto3 and the aws cli speak, or `b"h2"`, what Go clients such as rclone negotiate).
pub fn https_client(
    ca_pem: &Path,
    alpn: &[u8],
    builder: reqwest::ClientBuilder,
) -> reqwest::Client {
    let mut tls = (*treuhand::tls::client_config(ca_pem, None).unwrap()).clone();
    tls.alpn_protocols = vec![alpn.to_vec()];
    builder.tls_backend_preconfigured(tls).build().unwrap()
}

/// What came back: the status and headers, every body byte that arrived, and how the body
/// ended if it did not end cleanly.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub version: reqwest::Version,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
    /// Reading the body failed (for example an HTTP/2 protocol error).
    pub body_error: Option<String>,
}

/// [`Raw`]'s answer.
pub type RawResponse = Response;
/// [`S3`]'s answer.
pub type Outcome = Response;

impl Response {
    /// Reads the body chunk by chunk, so a body cut short still shows what arrived.
    async fn read(mut response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let version = response.version();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        let mut body_error = None;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    body_error = Some(format!("{e:?}"));
                    break;
                }
            }
        }
        Self {
            status,
            version,
            headers,
            body,
            body_error,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn request_id(&self) -> String {
        self.headers
            .get("x-amz-request-id")
            .expect("every proxy response carries x-amz-request-id")
            .to_str()
            .unwrap()
            .to_owned()
    }

    pub fn content_length(&self) -> Option<u64> {
        self.headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }
}

/// Asserts that the body of `response` contains `needle`, showing the body if not.
pub fn assert_text_contains(response: &Response, needle: &str) {
    let text = response.text();
    assert!(text.contains(needle), "{text}");
}

/// An HTTP client for one endpoint that signs with [`sign_request`].
#[derive(Clone)]
pub struct Signing {
    http: reqwest::Client,
    endpoint: String,
}

impl Signing {
    /// Sends a request, signed for `tenant` (`None`: unsigned). An error means no response head
    /// arrived (connection refused or reset before the status line).
    pub async fn send(
        &self,
        tenant: Option<&TestTenant>,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: impl Into<reqwest::Body>,
    ) -> Result<Response, reqwest::Error> {
        let signed = sign_request(&self.endpoint, tenant, method, path, query, headers);
        let mut request = self.http.request(method.parse().unwrap(), &signed.url);
        for (k, v) in &signed.headers {
            request = request.header(k.as_str(), v.as_str());
        }
        Ok(Response::read(request.body(body).send().await?).await)
    }
}

/// A raw HTTPS client for hand-made S3 requests: [`Signing::send`] (through `Deref`; `tenant =
/// None` sends it unsigned) and short forms that panic when no response arrives.
pub struct Raw(Signing);

impl std::ops::Deref for Raw {
    type Target = Signing;

    fn deref(&self) -> &Signing {
        &self.0
    }
}

impl Raw {
    /// An HTTP/1.1 client (what boto3 and the aws cli speak).
    pub fn new(proxy: &Proxy, pki: &Pki) -> Self {
        Self::with_alpn(proxy, pki, b"http/1.1")
    }

    /// An HTTP/2 client (what Go clients such as rclone negotiate).
    pub fn new_h2(proxy: &Proxy, pki: &Pki) -> Self {
        Self::with_alpn(proxy, pki, b"h2")
    }

    fn with_alpn(proxy: &Proxy, pki: &Pki, alpn: &[u8]) -> Self {
        Self(Signing {
            http: https_client(&pki.ca_pem, alpn, reqwest::Client::builder()),
            endpoint: proxy.endpoint(),
        })
    }

    // The short forms below sign for `t`, with headers `h`.

    /// A signed GET of `path`.
    pub async fn get(&self, t: &TestTenant, path: &str, h: Headers<'_>) -> RawResponse {
        self.request(t, "GET", path, h).await
    }

    /// A signed PUT of `body` to `path`.
    pub async fn put(&self, t: &TestTenant, path: &str, h: Headers<'_>, body: Vec<u8>) -> Response {
        self.0
            .send(Some(t), "PUT", path, &[], h, body)
            .await
            .unwrap()
    }

    /// A signed request without query or body (HEAD, DELETE, GET).
    pub async fn request(
        &self,
        t: &TestTenant,
        method: &str,
        path: &str,
        h: Headers<'_>,
    ) -> Response {
        self.query(t, method, path, &[], h).await
    }

    /// A signed request with `query` and no body (multipart and listing calls).
    pub async fn query(
        &self,
        t: &TestTenant,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        h: Headers<'_>,
    ) -> RawResponse {
        let sent = self.0.send(Some(t), method, path, query, h, Vec::new());
        sent.await.unwrap()
    }

    pub async fn create_bucket(&self, tenant: &TestTenant, bucket: &str) {
        let path = format!("/{bucket}");
        let r = self
            .0
            .send(Some(tenant), "PUT", &path, &[], &[], Vec::new())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "create bucket: {}", r.text());
    }
}

/// A signed client (UNSIGNED-PAYLOAD) over real TLS that reads bodies chunk by chunk, so a body
/// cut short still shows what arrived.
#[derive(Clone)]
pub struct S3(Signing);

impl std::ops::Deref for S3 {
    type Target = Signing;

    fn deref(&self) -> &Signing {
        &self.0
    }
}

impl S3 {
    /// `alpn`: `b"http/1.1"` or `b"h2"`.
    pub fn new(endpoint: &str, ca_pem: &Path, alpn: &[u8]) -> Self {
        // HTTP/2: the protocol's initial 64 KiB stream window instead of hyper's 2 MiB, so the
        // server can send no more than about one segment before this client reads the response.
        // Without it a whole streamed body can be in flight, and a reset that follows it may
        // reach hyper before the response head was handed to the test.
        let builder = reqwest::Client::builder().http2_initial_stream_window_size(65_535);
        Self(Signing {
            http: https_client(ca_pem, alpn, builder),
            endpoint: endpoint.to_owned(),
        })
    }

    /// Creates `bucket` for `tenant`; panics unless the proxy answers 200.
    pub async fn create_bucket(&self, tenant: &TestTenant, bucket: &str) {
        let r = self
            .call(tenant, "PUT", &format!("/{bucket}"), &[], &[], Vec::new())
            .await;
        assert_eq!(r.status, 200, "create bucket: {}", r.text());
    }

    /// [`Signing::send`] with a body in memory; panics if no response arrived.
    pub async fn call(
        &self,
        tenant: &TestTenant,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Outcome {
        self.0
            .send(Some(tenant), method, path, query, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: no response: {e:?}"))
    }
}

/// A request body the test feeds by hand and can leave hanging mid-way (a client that is still
/// sending when the proxy dies).
pub struct HeldBody {
    tx: futures::channel::mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl HeldBody {
    pub fn new() -> (Self, reqwest::Body) {
        let (tx, rx) = futures::channel::mpsc::channel(1);
        (Self { tx }, reqwest::Body::wrap_stream(rx))
    }

    /// Queues `data`; returns once the request has taken it.
    pub async fn send(&mut self, data: Vec<u8>) {
        use futures::SinkExt as _;
        self.tx.send(Ok(Bytes::from(data))).await.unwrap();
    }
}

/// POSTs a browser-style form upload to `url`: the `fields` in order, then the file part
/// (`file_headers` are its extra header lines, each ending in CRLF) holding `file_body`.
pub async fn post_form(
    http: &reqwest::Client,
    url: String,
    fields: &[(&str, &str)],
    file_headers: &str,
    file_body: &str,
) -> reqwest::Response {
    let boundary = "treuhand-form-boundary";
    let mut form = String::new();
    for (name, value) in fields {
        form.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    form.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\
         {file_headers}\r\n{file_body}\r\n--{boundary}--\r\n"
    ));
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let request = http.post(url).header("content-type", content_type);
    request.body(form).send().await.unwrap()
}

/// The text of every `<name>` element in an XML answer.
pub fn xml_tags(text: &str, name: &str) -> Vec<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    text.split(open.as_str())
        .skip(1)
        .filter_map(|part| part.split(close.as_str()).next().map(str::to_owned))
        .collect()
}

/// The text of the first `<name>` element in an XML answer; panics if there is none.
pub fn xml_tag(text: &str, name: &str) -> String {
    xml_tags(text, name)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no <{name}> in {text}"))
}

/// SSE-C headers for a raw request.
pub fn sse_c_headers(key_b64: &str) -> Vec<(&'static str, String)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(key_b64)
        .unwrap_or_default();
    let md5 = {
        use md5::Digest as _;
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&raw))
    };
    vec![
        (
            "x-amz-server-side-encryption-customer-algorithm",
            "AES256".into(),
        ),
        (
            "x-amz-server-side-encryption-customer-key",
            key_b64.to_owned(),
        ),
        ("x-amz-server-side-encryption-customer-key-md5", md5),
    ]
}
