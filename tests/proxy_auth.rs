//! Authentication edges, refused before s3s sees the request (`src/proxy/guard.rs`):
//! Signature Version 2 in the header, in the query and in a POST form, and presigned SigV4 URLs
//! valid for more than a week. Each request here is correctly signed with the tenant's real
//! secret, so a refusal is the proxy's policy and not a bad signature.
// Tests may unwrap/expect/panic: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use base64::Engine as _;
use support::*;

struct Setup {
    _dir: tempfile::TempDir,
    _holders: Holders,
    proxy: Proxy,
    tenant: TestTenant,
    raw: Raw,
    http: reqwest::Client,
}

/// One holder tenant (no SSE-C needed), its bucket, and a plain HTTPS client.
async fn setup() -> Setup {
    let stack = Stack::start(&["trustee", "holder"], &HOLDER_TENANT, |_| {}).await;
    let Stack {
        enrolled,
        proxy,
        raw,
    } = stack;
    let Enrolled {
        dir,
        pki,
        holders,
        tenants,
        ..
    } = enrolled;
    let tls = (*treuhand::tls::client_config(&pki.ca_pem, None).unwrap()).clone();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap();
    let [tenant] = exactly(tenants);
    Setup {
        _dir: dir,
        _holders: holders,
        proxy,
        tenant,
        raw,
        http,
    }
}

fn hmac_sha1_b64(secret: &str, data: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, data.as_bytes()))
}

/// GETs the bucket through a URL presigned at `at` for `expires` seconds.
async fn get_presigned_bucket(s: &Setup, at: time::OffsetDateTime, expires: u64) -> (u16, String) {
    let url = presign(
        &s.proxy.endpoint(),
        &s.tenant,
        &format!("/{BUCKET}"),
        at,
        expires,
    );
    status_and_body(s.http.get(url).send().await.unwrap()).await
}

async fn status_and_body(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

fn assert_refused_as_sigv2(status: u16, body: &str) {
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
    assert!(body.contains("Signature Version 4"), "{body}");
}

/// A stored object is visible to a SigV4 GET.
async fn stored(s: &Setup, key: &str) -> bool {
    let r = s.raw.get(&s.tenant, &format!("/{BUCKET}/{key}"), &[]).await;
    r.status == 200
}

/// A request signed the SigV2 way (`AWS key:signature`, HMAC-SHA1 over the method, the date
/// and the path), dated 2001: the reproduction in the issue, a date s3s never checked.
fn sigv2_request(s: &Setup, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    let date = "Mon, 01 Jan 2001 00:00:00 GMT";
    let string_to_sign = format!("{method}\n\n\n{date}\n{path}");
    let signature = hmac_sha1_b64(&s.tenant.secret_access_key, &string_to_sign);
    let authorization = format!("AWS {}:{signature}", s.tenant.access_key_id);
    let url = format!("{}{path}", s.proxy.endpoint());
    let request = s.http.request(method, url).header("date", date);
    request.header("authorization", authorization)
}

#[tokio::test]
async fn sigv2_header_auth_is_refused_even_when_correctly_signed() {
    let s = setup().await;
    let response = sigv2_request(&s, reqwest::Method::GET, &format!("/{BUCKET}"))
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_body(response).await;
    assert_refused_as_sigv2(status, &body);
}

#[tokio::test]
async fn sigv2_signed_put_is_refused_and_stores_nothing() {
    let s = setup().await;
    let response = sigv2_request(&s, reqwest::Method::PUT, &format!("/{BUCKET}/v2.txt"))
        .body("replayable body")
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_body(response).await;
    assert_refused_as_sigv2(status, &body);
    assert!(!stored(&s, "v2.txt").await, "a SigV2 PUT stored an object");
}

#[tokio::test]
async fn sigv2_presigned_url_is_refused() {
    let s = setup().await;
    let expires = (time::OffsetDateTime::now_utc().unix_timestamp() + 600).to_string();
    let signature = hmac_sha1_b64(
        &s.tenant.secret_access_key,
        &format!("GET\n\n\n{expires}\n/{BUCKET}"),
    );
    let url = format!(
        "{}/{BUCKET}?AWSAccessKeyId={}&Expires={expires}&Signature={}",
        s.proxy.endpoint(),
        s.tenant.access_key_id,
        treuhand::crypto::sigv4::uri_encode(&signature, false)
    );
    let (status, body) = status_and_body(s.http.get(url).send().await.unwrap()).await;
    assert_refused_as_sigv2(status, &body);
}

#[tokio::test]
async fn sigv2_post_form_upload_is_refused_and_stores_nothing() {
    let s = setup().await;
    let policy = base64::engine::general_purpose::STANDARD.encode(format!(
        "{{\"expiration\":\"2099-01-01T00:00:00.000Z\",\"conditions\":[{{\"bucket\":\"{BUCKET}\"}},\
         [\"starts-with\",\"$key\",\"\"]]}}"
    ));
    let signature = hmac_sha1_b64(&s.tenant.secret_access_key, &policy);
    let fields = [
        ("key", "form.txt"),
        ("AWSAccessKeyId", s.tenant.access_key_id.as_str()),
        ("policy", policy.as_str()),
        ("signature", signature.as_str()),
    ];
    let url = format!("{}/{BUCKET}", s.proxy.endpoint());
    let file_headers = "Content-Type: text/plain\r\n";
    let response = post_form(&s.http, url, &fields, file_headers, "form body").await;
    let (status, body) = status_and_body(response).await;
    assert_eq!(status, 501, "{body}");
    assert!(body.contains("<Code>NotImplemented</Code>"), "{body}");
    assert!(
        !stored(&s, "form.txt").await,
        "a POST form stored an object"
    );
}

#[tokio::test]
async fn presigned_url_valid_for_up_to_a_week_is_served() {
    let s = setup().await;
    let url = presign(
        &s.proxy.endpoint(),
        &s.tenant,
        &format!("/{BUCKET}"),
        time::OffsetDateTime::now_utc(),
        604_800,
    );
    let (status, body) = status_and_body(s.http.get(url).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn presigned_url_valid_for_more_than_a_week_is_refused() {
    let s = setup().await;
    let now = time::OffsetDateTime::now_utc();
    let from_2020 = time::OffsetDateTime::from_unix_timestamp(1_591_012_800).unwrap();
    for (at, expires) in [
        (now, 604_801),
        (now, 4_294_967_295),
        // A URL from 2020 with a 12-year expiry (the second reproduction).
        (from_2020, 12 * 365 * 86_400),
    ] {
        let (status, body) = get_presigned_bucket(&s, at, expires).await;
        assert_eq!(status, 400, "expires {expires}: {body}");
        assert!(
            body.contains("<Code>AuthorizationQueryParametersError</Code>"),
            "{body}"
        );
        assert!(body.contains("604800"), "{body}");
    }
}

#[tokio::test]
async fn expired_presigned_url_is_access_denied() {
    let s = setup().await;
    let two_hours_ago = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
    let from_2020 = time::OffsetDateTime::from_unix_timestamp(1_591_012_800).unwrap();
    for (at, expires) in [(two_hours_ago, 60), (from_2020, 604_800)] {
        let (status, body) = get_presigned_bucket(&s, at, expires).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
        assert!(body.contains("Request has expired"), "{body}");
    }
}

/// A presigned GET of the bucket for `tenant` (any access key and secret), valid now.
async fn get_presigned_as(s: &Setup, tenant: &TestTenant) -> (u16, String) {
    let url = presign(
        &s.proxy.endpoint(),
        tenant,
        &format!("/{BUCKET}"),
        time::OffsetDateTime::now_utc(),
        300,
    );
    status_and_body(s.http.get(url).send().await.unwrap()).await
}

#[tokio::test]
async fn presigned_url_signed_with_a_wrong_secret_is_signature_does_not_match() {
    let s = setup().await;
    let forged = TestTenant {
        id: s.tenant.id.clone(),
        access_key_id: s.tenant.access_key_id.clone(),
        secret_access_key: "not-the-tenant-secret".into(),
        share: None,
    };
    let (status, body) = get_presigned_as(&s, &forged).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("<Code>SignatureDoesNotMatch</Code>"),
        "{body}"
    );
}

#[tokio::test]
async fn presigned_url_for_an_unknown_access_key_is_invalid_access_key_id() {
    let s = setup().await;
    let stranger = TestTenant {
        id: "nobody".into(),
        access_key_id: "AKIANOSUCHTENANT0000".into(),
        secret_access_key: "whatever".into(),
        share: None,
    };
    let (status, body) = get_presigned_as(&s, &stranger).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("<Code>InvalidAccessKeyId</Code>"), "{body}");
    assert!(
        body.contains("does not exist in our records"),
        "S3's message: {body}"
    );
}

#[tokio::test]
async fn unsigned_requests_are_access_denied_on_every_operation() {
    let s = setup().await;
    let kept = format!("/{BUCKET}/kept");
    let put = s.raw.put(&s.tenant, &kept, &[], b"kept".to_vec()).await;
    assert_eq!(put.status, 200);
    let endpoint = s.proxy.endpoint();
    let requests: [(&str, String); 14] = [
        ("GET", "/".into()),
        ("PUT", "/anon-bucket".into()),
        ("DELETE", format!("/{BUCKET}")),
        ("GET", format!("/{BUCKET}?list-type=2")),
        ("GET", format!("/{BUCKET}?uploads")),
        ("GET", format!("/{BUCKET}?location")),
        ("POST", format!("/{BUCKET}?delete")),
        ("GET", format!("/{BUCKET}/kept")),
        ("PUT", format!("/{BUCKET}/kept")),
        ("DELETE", format!("/{BUCKET}/kept")),
        ("POST", format!("/{BUCKET}/kept?uploads")),
        ("PUT", format!("/{BUCKET}/kept?partNumber=1&uploadId=x")),
        ("DELETE", format!("/{BUCKET}/kept?uploadId=x")),
        ("GET", "/no-such-bucket/k".into()),
    ];
    for (method, path) in requests {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let request = s.http.request(method.clone(), format!("{endpoint}{path}"));
        let (status, body) = status_and_body(request.body("x").send().await.unwrap()).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert!(
            body.contains("<Code>AccessDenied</Code><Message>Access Denied</Message>"),
            "{method} {path}: {body}"
        );
    }
    for path in [format!("/{BUCKET}"), format!("/{BUCKET}/kept")] {
        let head = s
            .http
            .head(format!("{endpoint}{path}"))
            .send()
            .await
            .unwrap();
        let (status, body) = status_and_body(head).await;
        assert_eq!((status, body.as_str()), (403, ""), "HEAD {path}");
    }
    assert!(
        stored(&s, "kept").await,
        "an unsigned request changed the bucket"
    );
}
