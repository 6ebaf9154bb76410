//! What an S3 backend needs beyond object_store: the two requests object_store has no call
//! for (listing multipart uploads for the staging sweep, creating the bucket at startup),
//! signed by object_store's SigV4 signer and sent by one HTTP client set-up.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer, AwsCredential};
use object_store::client::HttpRequestBody;
use object_store::path::Path;

use super::config::StorageConfig;
use super::error::{Error, Result};
use super::meta::SweepReport;

/// An S3-compatible backend: object_store's client, and what our own requests need.
pub(super) struct S3Backend {
    store: Arc<AmazonS3>,
    /// `<endpoint>/<bucket>` (path style) or `<scheme>://<bucket>.<host>` (virtual host).
    bucket_url: String,
    /// `<endpoint>/<bucket>`.
    create_url: String,
    signer: Signer,
}

/// Signs requests of our own as object_store signs its own. No `Debug`: it holds the
/// backend's secret key.
struct Signer {
    credential: AwsCredential,
    region: String,
}

impl Signer {
    fn new(
        access_key_id: &str,
        secret_access_key: &crate::secret::SecretString,
        region: &str,
    ) -> Self {
        Self {
            credential: AwsCredential {
                key_id: access_key_id.to_owned(),
                secret_key: secret_access_key.expose_secret().to_owned(),
                token: None,
            },
            region: region.to_owned(),
        }
    }

    /// A SigV4-signed request of `url` with an empty body (no I/O: what gets sent is
    /// unit-tested without a network).
    fn sign(&self, method: http::Method, url: &str) -> Result<http::Request<HttpRequestBody>> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(url)
            .body(HttpRequestBody::from(Vec::new()))
            .map_err(|e| Error::io(format!("building a request of {url}"), e))?;
        AwsAuthorizer::new(&self.credential, "s3", &self.region)
            .try_authorize(&mut request, None)
            .map_err(|e| Error::io(format!("signing a request of {url}"), e))?;
        Ok(request)
    }

    /// Signs and sends a request with an empty body; the endpoint's answer, whatever its
    /// status.
    async fn send(&self, method: http::Method, url: &str) -> Result<reqwest::Response> {
        let signed = self.sign(method.clone(), url)?;
        let mut request = http_client()?.request(method, url);
        for (name, value) in signed.headers() {
            request = request.header(name, value);
        }
        request
            .send()
            .await
            .map_err(|e| Error::io(format!("requesting {url}"), e))
    }
}

/// The one HTTP client set-up of our own requests: rustls with ring (the process-wide provider
/// installed here, as at every TLS entry point), and a timeout, so that a backend that hangs
/// cannot hold the proxy's start for ever (object_store's own requests have the same default).
fn http_client() -> Result<reqwest::Client> {
    crate::tls::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Error::io("setting up the HTTP client", e))
}

/// Creates the backend bucket of an S3 configuration with `create_bucket = true` (an existing
/// bucket of the same owner is fine). Other configurations: nothing to do.
pub(super) async fn ensure_bucket(config: &StorageConfig) -> Result<()> {
    match config {
        StorageConfig::S3 {
            create_bucket: true,
            ..
        } => match S3Backend::from_config(config)? {
            Some(s3) => s3.create_bucket().await,
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

impl S3Backend {
    /// The backend of an S3 configuration; `None` for the other backends.
    pub(super) fn from_config(config: &StorageConfig) -> Result<Option<Self>> {
        let StorageConfig::S3 {
            endpoint,
            region,
            bucket,
            access_key_id,
            secret_access_key,
            path_style,
            allow_http,
            create_bucket: _,
        } = config
        else {
            return Ok(None);
        };
        // object_store's client is a reqwest client too.
        crate::tls::install_crypto_provider();
        let store = AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_region(region)
            .with_bucket_name(bucket)
            .with_access_key_id(access_key_id)
            .with_secret_access_key(secret_access_key.expose_secret())
            .with_virtual_hosted_style_request(!*path_style)
            .with_allow_http(*allow_http)
            .build()
            .map_err(|e| Error::config("the S3 backend", e))?;
        let endpoint = endpoint.trim_end_matches('/');
        let bucket_url = if *path_style {
            format!("{endpoint}/{bucket}")
        } else {
            match endpoint.split_once("://") {
                Some((scheme, host)) => format!("{scheme}://{bucket}.{host}"),
                None => format!("{endpoint}/{bucket}"),
            }
        };
        Ok(Some(Self {
            store: Arc::new(store),
            bucket_url,
            // CreateBucket always goes path style: the virtual host of a bucket that does not
            // exist yet may not resolve.
            create_url: format!("{endpoint}/{bucket}"),
            signer: Signer::new(access_key_id, secret_access_key, region),
        }))
    }

    /// CreateBucket; an existing bucket of ours is fine.
    async fn create_bucket(&self) -> Result<()> {
        let response = self
            .signer
            .send(http::Method::PUT, &self.create_url)
            .await?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status.is_success() || body.contains("BucketAlreadyOwnedByYou") {
            Ok(())
        } else {
            Err(Error::Refused(format!(
                "creating bucket {}: {status} {body}",
                self.create_url
            )))
        }
    }

    /// object_store's client of the bucket.
    pub(super) fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// Aborts the multipart uploads below `tenants/` initiated more than `older_than` ago.
    pub(super) async fn sweep(&self, older_than: Duration) -> Result<SweepReport> {
        use object_store::multipart::MultipartStore as _;
        let now = SystemTime::now();
        let mut report = SweepReport::default();
        let mut marker: Option<(String, String)> = None;
        // Bounded: a backend that keeps answering "truncated" cannot keep the sweep forever.
        for _ in 0..10_000 {
            let mut query = vec![
                ("prefix", "tenants/".to_owned()),
                ("uploads", String::new()),
            ];
            if let Some((key, id)) = &marker {
                query.push(("key-marker", key.clone()));
                query.push(("upload-id-marker", id.clone()));
            }
            let body = self.list_uploads(&query).await?;
            for upload in xml_blocks(&body, "Upload") {
                let (Some(key), Some(id), Some(initiated)) = (
                    xml_text(upload, "Key"),
                    xml_text(upload, "UploadId"),
                    xml_text(upload, "Initiated").and_then(|t| parse_s3_time(&t)),
                ) else {
                    continue;
                };
                if now.duration_since(initiated).unwrap_or_default() < older_than {
                    report.kept += 1;
                    continue;
                }
                let Ok(path) = Path::parse(&key) else {
                    continue;
                };
                match self.store.abort_multipart(&path, &id).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => report.removed += 1,
                    Err(e) => {
                        tracing::warn!(error = %e, "aborting a leftover multipart upload failed")
                    }
                }
            }
            if xml_text(&body, "IsTruncated").as_deref() != Some("true") {
                return Ok(report);
            }
            match (
                xml_text(&body, "NextKeyMarker"),
                xml_text(&body, "NextUploadIdMarker"),
            ) {
                (Some(key), Some(id)) => marker = Some((key, id)),
                _ => return Ok(report),
            }
        }
        Ok(report)
    }

    /// One page of ListMultipartUploads with `query`: the body as text.
    async fn list_uploads(&self, query: &[(&str, String)]) -> Result<String> {
        let encoded: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", crate::crypto::sigv4::uri_encode(v, false)))
            .collect();
        let url = format!("{}?{}", self.bucket_url, encoded.join("&"));
        let response = self.signer.send(http::Method::GET, &url).await?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| Error::io("listing multipart uploads", e))?;
        if !status.is_success() {
            return Err(Error::Refused(format!(
                "listing multipart uploads: {status}"
            )));
        }
        Ok(body)
    }
}

/// The contents of every `<tag>...</tag>` element of `xml`, in order (S3's answers are flat
/// enough for this; no attributes, no nesting of the same tag).
fn xml_blocks<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|part| part.split_once(close.as_str()).map(|(inner, _)| inner))
        .collect()
}

/// The unescaped text of the first `<tag>` element of `xml`.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let raw = xml_blocks(xml, tag).into_iter().next()?;
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// `2026-12-03T08:29:54.000Z` (S3's timestamps) as a time; `None` if it is anything else.
fn parse_s3_time(text: &str) -> Option<std::time::SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (date, time_of_day) = text.split_once('T')?;
    let mut date_parts = date.split('-').map(|p| p.parse::<i32>().ok());
    let (year, month, day) = (
        date_parts.next()??,
        date_parts.next()??,
        date_parts.next()??,
    );
    let seconds_text = time_of_day.split('.').next()?;
    let mut time_parts = seconds_text.split(':').map(|p| p.parse::<u8>().ok());
    let (hour, minute, second) = (
        time_parts.next()??,
        time_parts.next()??,
        time_parts.next()??,
    );
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()?;
    let time_of_day = time::Time::from_hms(hour, minute, second).ok()?;
    let at = time::PrimitiveDateTime::new(date, time_of_day).assume_utc();
    Some(std::time::SystemTime::from(at))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests
    use super::*;
    use crate::storage::Storage;
    use bytes::Bytes;

    /// A fake S3 endpoint on 127.0.0.1:0 that lists `uploads_xml` for `?uploads` and answers
    /// 204 to everything else; returns its address and the requests it saw.
    async fn fake_s3(
        uploads_xml: String,
    ) -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let requests = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let requests = requests.clone();
                let xml = uploads_xml.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let line = format!("{} {}", req.method(), req.uri());
                            requests.lock().unwrap().push(line);
                            let (status, body) = if req.method() == http::Method::GET {
                                (200, Bytes::from(xml.clone()))
                            } else {
                                (204, Bytes::new())
                            };
                            async move {
                                Ok::<_, std::convert::Infallible>(
                                    http::Response::builder()
                                        .status(status)
                                        .body(http_body_util::Full::new(body))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, seen)
    }

    #[tokio::test]
    async fn s3_sweep_aborts_multipart_uploads_older_than_the_age_only() {
        crate::tls::install_crypto_provider();
        let now = time::OffsetDateTime::now_utc();
        // `2026-12-03T9:04:05.123Z`: S3's form, but for the hour's padding, which the parser
        // does not need.
        let fresh = format!("{}T{}Z", now.date(), now.time());
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListMultipartUploadsResult>\
             <Bucket>b</Bucket><IsTruncated>false</IsTruncated>\
             <Upload><Key>tenants/t/objects/b/fold</Key><UploadId>old-1</UploadId>\
             <Initiated>2020-01-02T03:04:05.000Z</Initiated></Upload>\
             <Upload><Key>tenants/t/objects/b/fnew</Key><UploadId>new-1</UploadId>\
             <Initiated>{fresh}</Initiated></Upload></ListMultipartUploadsResult>"
        );
        let (addr, seen) = fake_s3(xml).await;
        let storage =
            Storage::from_config(&StorageConfig::s3_for_tests(format!("http://{addr}"))).unwrap();
        let report = storage
            .sweep_staging(std::time::Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(
            report,
            SweepReport {
                removed: 1,
                kept: 1
            }
        );
        let seen = seen.lock().unwrap().clone();
        assert!(
            seen.iter().any(|r| r.starts_with("GET /b?")
                && r.contains("uploads")
                && r.contains("prefix=tenants%2F")),
            "{seen:?}"
        );
        let deletes: Vec<&String> = seen.iter().filter(|r| r.starts_with("DELETE")).collect();
        assert_eq!(
            deletes,
            ["DELETE /b/tenants/t/objects/b/fold?uploadId=old-1"],
            "{seen:?}"
        );
    }

    #[test]
    fn s3_timestamps_parse_and_garbage_does_not() {
        let t = parse_s3_time("2020-01-02T03:04:05.000Z").unwrap();
        let secs = t
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(secs, 1_577_934_245);
        for bad in [
            "",
            "2020-01-02",
            "2020-13-02T03:04:05Z",
            "x-01-02T03:04:05Z",
        ] {
            assert_eq!(parse_s3_time(bad), None, "{bad}");
        }
    }

    fn signer() -> Signer {
        Signer::new(
            "AKIDEXAMPLE",
            &"wJalrXUtnFEMI-SECRET".into(),
            "eu-central-1",
        )
    }

    #[test]
    fn signed_requests_verify_under_the_projects_own_sigv4_and_carry_no_secret() {
        let request = signer()
            .sign(http::Method::PUT, "http://127.0.0.1:7480/backend-bucket")
            .unwrap();
        let header = |name: &str| request.headers()[name].to_str().unwrap().to_owned();
        let amz_date = header("x-amz-date");
        // The same signature, computed by the bench's independent signer.
        let expected = crate::crypto::sigv4::authorization_for_payload(
            &crate::crypto::sigv4::SigningInput {
                amz_date: &amz_date,
                region: "eu-central-1",
                host: "127.0.0.1:7480",
                method: "PUT",
                path: "/backend-bucket",
                query: &[],
                headers: &[],
            },
            &header("x-amz-content-sha256"),
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI-SECRET",
        );
        assert_eq!(header("authorization"), expected);
        assert!(!format!("{:?}", request.headers()).contains("SECRET"));
    }

    #[tokio::test]
    async fn ensure_bucket_sends_one_signed_put_of_the_bucket_and_nothing_when_not_asked() {
        let (addr, seen) = fake_s3(String::new()).await;
        let mut config = StorageConfig::s3_for_tests(format!("http://{addr}/"));
        if let StorageConfig::S3 { path_style, .. } = &mut config {
            *path_style = false;
        }
        ensure_bucket(&config).await.unwrap();
        assert!(seen.lock().unwrap().is_empty());
        if let StorageConfig::S3 { create_bucket, .. } = &mut config {
            *create_bucket = true;
        }
        ensure_bucket(&config).await.unwrap();
        assert_eq!(*seen.lock().unwrap(), ["PUT /b"]);
    }
}
