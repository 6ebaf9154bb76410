//! Fail-closed behaviour of the proxy: bad shares, unreachable or refusing key holders,
//! thresholds, tampered storage, interrupted uploads and tenant isolation. Real trustees, real
//! TLS, filesystem backend.
// Tests may unwrap/expect/panic: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use base64::Engine as _;
use object_store::ObjectStoreExt;
use object_store::path::Path as OsPath;
use support::*;

type Setup = Stack;

/// Starts trustees `t1`, `t2`, `holder` and enrolls: `demo` (SSE-C, t1, 2-of-2),
/// `demo-holder` (holder, t1, 2-of-2), `wide` (SSE-C, t1+t2, 2-of-3), `other` (SSE-C, t1).
async fn setup(ttl: u64) -> Setup {
    let tenants: [TenantSpec; 4] = [
        ("demo", &["t1"], 2, None),
        ("demo-holder", &["t1"], 2, Some("holder")),
        ("wide", &["t1", "t2"], 2, None),
        ("other", &["t1"], 2, None),
    ];
    Stack::start(&["t1", "t2", "holder"], &tenants, |c| {
        c.cache.ttl_secs = ttl
    })
    .await
}

fn status_and_code(r: &RawResponse) -> (u16, String) {
    let code = xml_tags(&r.text(), "Code").into_iter().next();
    (r.status, code.unwrap_or_default())
}

#[tokio::test]
async fn missing_wrong_and_malformed_shares_get_precise_errors() {
    let s = setup(60).await;
    let demo = s.tenant("demo");
    let key = demo.share_b64().unwrap();
    let put = s
        .raw
        .put(demo, "/data/obj", &sse_c_headers(&key), b"secret".to_vec())
        .await;
    assert_eq!(put.status, 200);

    // Missing share: 400, for reads and for writes; nothing stored by the write.
    let r = s.raw.get(demo, "/data/obj", &[]).await;
    assert_eq!(
        status_and_code(&r),
        (400, "InvalidRequest".into()),
        "{}",
        r.text()
    );
    let r = s.raw.put(demo, "/data/new", &[], b"x".to_vec()).await;
    assert_eq!(status_and_code(&r), (400, "InvalidRequest".into()));

    // Wrong share (well-formed, not the customer's): 403, never data.
    let wrong = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let r = s.raw.get(demo, "/data/obj", &sse_c_headers(&wrong)).await;
    assert_eq!(
        status_and_code(&r),
        (403, "AccessDenied".into()),
        "{}",
        r.text()
    );
    assert!(!contains(&r.body, b"secret"));
    let r = s
        .raw
        .put(demo, "/data/new", &sse_c_headers(&wrong), b"x".to_vec())
        .await;
    assert_eq!(r.status, 403);

    // Another tenant's share: 403 as well.
    let other = s.tenant("other").share_b64().unwrap();
    let r = s.raw.get(demo, "/data/obj", &sse_c_headers(&other)).await;
    assert_eq!(r.status, 403);

    // Malformed: wrong length, not base64, MD5 mismatch, wrong algorithm: all 400.
    let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
    let mut bad_md5 = sse_c_headers(&key);
    bad_md5[2].1 = base64::engine::general_purpose::STANDARD.encode([0u8; 16]);
    let mut bad_alg = sse_c_headers(&key);
    bad_alg[0].1 = "DES".into();
    let not_b64 = vec![
        (
            "x-amz-server-side-encryption-customer-algorithm",
            "AES256".to_owned(),
        ),
        (
            "x-amz-server-side-encryption-customer-key",
            "***".to_owned(),
        ),
    ];
    for headers in [sse_c_headers(&short), bad_md5, bad_alg, not_b64] {
        let r = s.raw.get(demo, "/data/obj", &headers).await;
        assert_eq!(r.status, 400, "{headers:?}: {}", r.text());
        assert!(!contains(&r.body, b"secret"));
    }
    assert_eq!(
        s.object_files("demo").len(),
        1,
        "failed writes stored nothing"
    );

    // A wrong share never hits the key cache filled by the right one.
    let r = s.raw.get(demo, "/data/obj", &sse_c_headers(&key)).await;
    assert_eq!(r.body, b"secret");
    let r = s.raw.get(demo, "/data/obj", &sse_c_headers(&wrong)).await;
    assert_eq!(r.status, 403);
    s.proxy.stop().await;
}

#[tokio::test]
async fn trustee_down_is_503_then_works_again() {
    let s = setup(0).await;
    let demo = s.tenant("demo");
    let h = sse_c_headers(&demo.share_b64().unwrap());
    assert_eq!(
        s.raw.put(demo, "/data/a", &h, b"one".to_vec()).await.status,
        200
    );

    s.holders.set_down("t1", true).await;
    let r = s.raw.get(demo, "/data/a", &h).await;
    assert_eq!(
        status_and_code(&r),
        (503, "ServiceUnavailable".into()),
        "{}",
        r.text()
    );
    assert!(!contains(&r.body, b"one"));
    let r = s.raw.put(demo, "/data/b", &h, b"two".to_vec()).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        s.object_files("demo").len(),
        1,
        "nothing stored while the trustee is down"
    );

    s.holders.set_down("t1", false).await;
    let r = s.raw.get(demo, "/data/a", &h).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"one");
    s.proxy.stop().await;
}

#[tokio::test]
async fn holder_down_is_503_for_holder_tenants_and_denial_is_403() {
    let s = setup(0).await;
    let t = s.tenant("demo-holder");
    assert_eq!(
        s.raw.put(t, "/data/a", &[], b"held".to_vec()).await.status,
        200
    );
    assert_eq!(s.raw.get(t, "/data/a", &[]).await.body, b"held");

    s.holders.set_down("holder", true).await;
    let r = s.raw.get(t, "/data/a", &[]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(!contains(&r.body, b"held"));
    s.holders.set_down("holder", false).await;
    assert_eq!(s.raw.get(t, "/data/a", &[]).await.status, 200);

    // The customer's holder refuses: 403 with its reason code.
    s.holders.set_suspended("holder", "demo-holder", true).await;
    let r = s.raw.get(t, "/data/a", &[]).await;
    assert_eq!(
        status_and_code(&r),
        (403, "AccessDenied".into()),
        "{}",
        r.text()
    );
    assert_text_contains(&r, "tenant_suspended");
    // The trustee refuses: 403 too.
    s.holders
        .set_suspended("holder", "demo-holder", false)
        .await;
    s.holders.set_suspended("t1", "demo-holder", true).await;
    let r = s.raw.get(t, "/data/a", &[]).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("tenant_suspended"));
    assert!(s.holders.releases("holder", "demo-holder").await >= 2);
    s.proxy.stop().await;
}

#[tokio::test]
async fn two_of_three_keeps_working_with_one_trustee_down() {
    let s = setup(0).await;
    let t = s.tenant("wide");
    let h = sse_c_headers(&t.share_b64().unwrap());
    assert_eq!(
        s.raw.put(t, "/data/a", &h, b"wide".to_vec()).await.status,
        200
    );
    for down in ["t1", "t2"] {
        s.holders.set_down(down, true).await;
        let r = s.raw.get(t, "/data/a", &h).await;
        assert_eq!(r.status, 200, "with {down} down: {}", r.text());
        assert_eq!(r.body, b"wide");
        s.holders.set_down(down, false).await;
    }
    s.holders.set_down("t1", true).await;
    s.holders.set_down("t2", true).await;
    assert_eq!(s.raw.get(t, "/data/a", &h).await.status, 503);
    s.holders.set_down("t1", false).await;
    s.holders.set_down("t2", false).await;
    s.proxy.stop().await;
}

#[tokio::test]
async fn key_cache_serves_within_ttl_and_ttl_zero_always_asks() {
    let s = setup(60).await;
    let demo = s.tenant("demo");
    let h = sse_c_headers(&demo.share_b64().unwrap());
    assert_eq!(
        s.raw.put(demo, "/data/a", &h, b"c".to_vec()).await.status,
        200
    );
    assert_eq!(s.proxy.keys.cached(), 1);
    s.holders.set_down("t1", true).await;
    // Within the TTL the cached key serves the right share, and only the right share.
    assert_eq!(s.raw.get(demo, "/data/a", &h).await.body, b"c");
    s.proxy.keys.clear();
    assert_eq!(s.raw.get(demo, "/data/a", &h).await.status, 503);
    s.holders.set_down("t1", false).await;
    s.proxy.stop().await;
}

#[tokio::test]
async fn tampered_objects_fail_without_plaintext() {
    let s = setup(60).await;
    let demo = s.tenant("demo");
    let key = demo.share_b64().unwrap();
    let store = client(&s.proxy, &s.pki, demo, Some(&key), BUCKET);
    let body = data(200_000, 11);
    for name in ["body", "header", "truncated", "swapped-a", "swapped-b"] {
        put_object(&store, name, body.clone()).await;
    }
    let files = s.object_files("demo");
    let find = |name: &str| {
        files
            .iter()
            .find(|(p, _)| p.file_name().unwrap() == format!("f{name}").as_str())
            .unwrap()
            .clone()
    };

    let (p, mut bytes) = find("body");
    let last = bytes.len() - 100;
    bytes[last] ^= 1;
    std::fs::write(&p, &bytes).unwrap();
    let (p, mut bytes) = find("header");
    bytes[20] ^= 0x80;
    std::fs::write(&p, &bytes).unwrap();
    let (p, bytes) = find("truncated");
    std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
    // Swap two objects' ciphertext: the DEK is bound to the object key.
    let (pa, a) = find("swapped-a");
    let (pb, b) = find("swapped-b");
    std::fs::write(&pa, &b).unwrap();
    std::fs::write(&pb, &a).unwrap();

    // Objects up to 1 MiB are authenticated completely before the response starts: every kind
    // of tampering is a clean error status, with no plaintext at all.
    for name in ["body", "header", "truncated", "swapped-a"] {
        let result = store.get(&OsPath::from(name)).await;
        assert!(result.is_err(), "{name}: tampered object was served");
        let r = s
            .raw
            .get(demo, &format!("/data/{name}"), &sse_c_headers(&key))
            .await;
        assert_eq!(r.status, 502, "{name}: {}", r.text());
        assert_text_contains(&r, "ObjectIntegrityError");
        assert!(!contains(&r.body, &body[..32]));
    }
    // A large object streams: a flipped bit near its end aborts the body mid-way, so the
    // client never receives a complete (or unauthenticated) object.
    let large = data(3 * 1024 * 1024, 12);
    put_object(&store, "large", large.clone()).await;
    let files = s.object_files("demo");
    let (p, mut bytes) = files
        .iter()
        .find(|(p, _)| p.file_name().unwrap() == "flarge")
        .unwrap()
        .clone();
    let at = bytes.len() - 1000;
    bytes[at] ^= 1;
    std::fs::write(&p, &bytes).unwrap();
    let got = match store.get(&OsPath::from("large")).await {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    assert!(got.is_err(), "tampered large object was served completely");
    // Ranges that do not touch the damaged segment still work (each segment stands alone).
    let ok = store
        .get_range(&OsPath::from("large"), 0..100_000)
        .await
        .unwrap();
    assert_eq!(ok.as_ref(), &large[..100_000]);
    s.proxy.stop().await;
}

#[tokio::test]
async fn interrupted_upload_leaves_no_object() {
    let s = setup(60).await;
    let demo = s.tenant("demo");
    let key = demo.share_b64().unwrap();
    // Upload 3 MiB of a declared 10 MiB body, then fail the body stream: the connection is cut.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(data(1024 * 1024, 1)),
        Ok(data(1024 * 1024, 2)),
        Ok(data(1024 * 1024, 3)),
        Err(std::io::Error::other("client crashed")),
    ];
    let tls = treuhand::tls::client_config(&s.pki.ca_pem, None).unwrap();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured((*tls).clone())
        .build()
        .unwrap();
    let ok = s
        .raw
        .put(
            demo,
            "/data/complete",
            &sse_c_headers(&key),
            b"fine".to_vec(),
        )
        .await;
    assert_eq!(ok.status, 200);
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    // A signed PUT (UNSIGNED-PAYLOAD, declared Content-Length) whose body stream fails.
    let endpoint = s.proxy.endpoint();
    let result = interrupted_put(&http, &endpoint, "/data/cut", demo, &key, body).await;
    assert!(
        result.is_err() || result.as_ref().is_ok_and(|s| *s >= 400),
        "{result:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let names: Vec<String> = s
        .object_files("demo")
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["fcomplete".to_owned()],
        "only the completed object exists"
    );
    s.proxy.stop().await;
}

/// A SigV4-signed PUT with UNSIGNED-PAYLOAD and an explicit Content-Length whose body fails.
async fn interrupted_put(
    http: &reqwest::Client,
    endpoint: &str,
    path: &str,
    tenant: &TestTenant,
    key_b64: &str,
    body: reqwest::Body,
) -> Result<u16, reqwest::Error> {
    let mut headers = sse_c_headers(key_b64);
    headers.push(("content-length", (10 * 1024 * 1024).to_string()));
    let signed = sign_request(endpoint, Some(tenant), "PUT", path, &[], &headers);
    let mut request = http.put(signed.url).body(body);
    for (k, v) in signed.headers {
        request = request.header(k, v);
    }
    request.send().await.map(|r| r.status().as_u16())
}

#[tokio::test]
async fn tenants_cannot_read_each_other() {
    let s = setup(60).await;
    let demo = s.tenant("demo");
    let other = s.tenant("other");
    let demo_key = demo.share_b64().unwrap();
    let other_key = other.share_b64().unwrap();
    let secret = b"demo's confidential data".to_vec();
    assert_eq!(
        s.raw
            .put(demo, "/data/doc", &sse_c_headers(&demo_key), secret.clone())
            .await
            .status,
        200
    );
    // Through the API: other's bucket namespace does not contain demo's object.
    let r = s
        .raw
        .get(other, "/data/doc", &sse_c_headers(&other_key))
        .await;
    assert_eq!(r.status, 404);
    // Even with demo's share in hand, other's credentials only reach other's namespace.
    let r = s
        .raw
        .get(other, "/data/doc", &sse_c_headers(&demo_key))
        .await;
    assert!(r.status == 403 || r.status == 404, "{}", r.status);
    // The operator copies demo's ciphertext into other's namespace: other cannot decrypt it.
    let (src, bytes) = s.object_files("demo").into_iter().next().unwrap();
    let dest = s
        .root
        .join("storage/tenants/other/objects/data")
        .join(src.file_name().unwrap());
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(&dest, bytes).unwrap();
    let r = s
        .raw
        .get(other, "/data/doc", &sse_c_headers(&other_key))
        .await;
    assert!(r.status >= 500, "{}", r.status);
    assert!(!contains(&r.body, &secret));
    s.proxy.stop().await;
}

/// An aws-chunked body (what boto3 and the aws cli send over HTTPS by default) that declares
/// `len` decoded bytes and carries `chunks`, with the final zero-length chunk and trailer only
/// when `finished`.
fn aws_chunked(chunks: &[&[u8]], finished: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for chunk in chunks {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    if finished {
        let all: Vec<u8> = chunks.concat();
        let crc = base64::engine::general_purpose::STANDARD.encode(crc32(&all).to_be_bytes());
        body.extend_from_slice(format!("0\r\nx-amz-checksum-crc32:{crc}\r\n\r\n").as_bytes());
    }
    body
}

/// CRC-32 (IEEE), bitwise: the trailer checksum boto3 sends by default.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn aws_chunked_headers(key: &str, decoded_len: usize) -> Vec<(&'static str, String)> {
    let mut headers = sse_c_headers(key);
    headers.push(("content-encoding", "aws-chunked".into()));
    headers.push((
        "x-amz-content-sha256",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER".into(),
    ));
    headers.push(("x-amz-decoded-content-length", decoded_len.to_string()));
    headers.push(("x-amz-trailer", "x-amz-checksum-crc32".into()));
    headers
}

#[tokio::test]
async fn aws_chunked_upload_cut_before_its_final_chunk_is_refused_and_stores_nothing() {
    // s3s ends an aws-chunked stream at the end of the transport body even without the final
    // chunk; before the check in put_object/upload_part this stored 64 of 100 bytes with a 200
    // (found by the aws_chunked fuzz target).
    let s = setup(60).await;
    let demo = s.tenant("demo");
    let key = demo.share_b64().unwrap();
    let first = data(64, 7);
    let rest = data(36, 8);
    let whole = s
        .raw
        .put(
            demo,
            "/data/chunked-whole",
            &aws_chunked_headers(&key, 100),
            aws_chunked(&[&first, &rest], true),
        )
        .await;
    assert_eq!(whole.status, 200, "{}", whole.text());
    let cut = s
        .raw
        .put(
            demo,
            "/data/chunked-cut",
            &aws_chunked_headers(&key, 100),
            aws_chunked(&[&first], false),
        )
        .await;
    assert_eq!(
        status_and_code(&cut),
        (400, "IncompleteBody".to_owned()),
        "{}",
        cut.text()
    );
    let get = s
        .raw
        .get(demo, "/data/chunked-cut", &sse_c_headers(&key))
        .await;
    assert_eq!(get.status, 404, "nothing of the cut upload is visible");
    // A part upload cut the same way is refused too, and Complete cannot use it.
    let created = s
        .raw
        .query(
            demo,
            "POST",
            "/data/chunked-mp",
            &[("uploads", "")],
            &sse_c_headers(&key),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text());
    let upload_id = xml_tag(&created.text(), "UploadId");
    let part = s
        .raw
        .send(
            Some(demo),
            "PUT",
            "/data/chunked-mp",
            &[("partNumber", "1"), ("uploadId", &upload_id)],
            &aws_chunked_headers(&key, 100),
            aws_chunked(&[&first], false),
        )
        .await
        .unwrap();
    assert_eq!(
        status_and_code(&part),
        (400, "IncompleteBody".to_owned()),
        "{}",
        part.text()
    );
    let parts = s
        .raw
        .query(
            demo,
            "GET",
            "/data/chunked-mp",
            &[("uploadId", &upload_id)],
            &sse_c_headers(&key),
        )
        .await;
    assert_eq!(parts.status, 200, "{}", parts.text());
    assert!(!parts.text().contains("<Part>"), "{}", parts.text());
    s.proxy.stop().await;
}
