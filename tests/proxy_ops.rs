//! Every S3 operation through the proxy with real TLS, real SigV4 and the filesystem backend.
// Tests may unwrap/expect/panic: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use support::*;

const SEG: usize = 64 * 1024;

type Setup = Stack;

/// Holders `trustee` and `holder`; tenants `demo` (SSE-C) and `demo-holder` (holder-held).
async fn setup(ttl: u64) -> Setup {
    Stack::start(&["trustee", "holder"], &DEMO_AND_HOLDER, |c| {
        c.cache.ttl_secs = ttl
    })
    .await
}

#[tokio::test]
async fn sse_c_put_get_range_head_list_delete_round_trip() {
    let s = setup(60).await;
    let key = s.demo().share_b64().unwrap();
    let store = client(&s.proxy, &s.pki, s.demo(), Some(&key), BUCKET);
    let body = data(3 * SEG + 123, 7);
    let path = OsPath::from("dir/one.bin");
    store.put(&path, body.clone().into()).await.unwrap();

    let got = store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), body.as_slice());

    for range in [
        0..1u64,
        SEG as u64 - 1..SEG as u64 + 1,
        5..(3 * SEG + 123) as u64,
        (2 * SEG) as u64..(3 * SEG) as u64,
    ] {
        let got = store.get_range(&path, range.clone()).await.unwrap();
        assert_eq!(
            got.as_ref(),
            &body[range.start as usize..range.end as usize],
            "range {range:?}"
        );
    }

    let meta = store.head(&path).await.unwrap();
    assert_eq!(meta.size, body.len() as u64);

    put_object(&store, "dir/two.bin", Bytes::from_static(b"")).await;
    put_object(&store, "top.txt", Bytes::from_static(b"hello")).await;
    let listed: Vec<_> = store
        .list(Some(&OsPath::from("dir")))
        .try_collect()
        .await
        .unwrap();
    let mut names: Vec<(String, u64)> = listed
        .iter()
        .map(|m| (m.location.to_string(), m.size))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("dir/one.bin".into(), body.len() as u64),
            ("dir/two.bin".into(), 0)
        ]
    );
    let delimited = store.list_with_delimiter(None).await.unwrap();
    assert_eq!(delimited.common_prefixes, vec![OsPath::from("dir")]);
    assert_eq!(delimited.objects.len(), 1);
    assert_eq!(get_object(&store, "dir/two.bin").await.len(), 0);

    // The storage holds only ciphertext.
    for (p, bytes) in stored_files(&s.root.join("storage")) {
        assert!(
            !contains(&bytes, &body[..64]),
            "plaintext in {}",
            p.display()
        );
        assert!(!contains(&bytes, b"hello"), "plaintext in {}", p.display());
    }

    store.delete(&path).await.unwrap();
    assert!(matches!(
        store.get(&path).await,
        Err(object_store::Error::NotFound { .. })
    ));
    s.proxy.stop().await;
}

#[tokio::test]
async fn holder_tenant_needs_no_sse_c() {
    let s = setup(0).await;
    let store = client(&s.proxy, &s.pki, s.tenant("demo-holder"), None, BUCKET);
    let body = data(SEG + 1, 3);
    let path = OsPath::from("plain.bin");
    store.put(&path, body.clone().into()).await.unwrap();
    let got = store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), body.as_slice());
    assert!(
        s.holders.releases("holder", "demo-holder").await >= 2,
        "TTL 0 asks the holder every time"
    );
    s.proxy.stop().await;
}

fn hdr<'a>(r: &'a RawResponse, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn bucket_operations_and_anonymous_refusal() {
    let s = setup(60).await;
    let list = s.raw.get(s.demo(), "/", &[]).await;
    assert_eq!(list.status, 200);
    assert_text_contains(&list, "<Name>data</Name>");
    // A re-create of one's own bucket is 200 in us-east-1 (the region the proxy answers).
    let again = s.raw.put(s.demo(), "/data", &[], vec![]).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(
        s.raw.request(s.demo(), "HEAD", "/data", &[]).await.status,
        200
    );
    assert_eq!(
        s.raw.request(s.demo(), "HEAD", "/nope", &[]).await.status,
        404
    );
    // Buckets are per tenant: the holder tenant's "data" is not the demo tenant's.
    s.raw.create_bucket(s.demo(), "second").await;
    let other = s
        .raw
        .request(s.tenant("demo-holder"), "HEAD", "/second", &[])
        .await;
    assert_eq!(other.status, 404);

    let key = s.demo().share_b64().unwrap();
    let put = s
        .raw
        .put(s.demo(), "/second/x", &sse_c_headers(&key), b"abc".to_vec())
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert!(!hdr(&put, "etag").is_empty());
    assert_eq!(
        hdr(&put, "x-amz-request-id").len(),
        16,
        "every response carries a request id"
    );
    let del = s.raw.request(s.demo(), "DELETE", "/second", &[]).await;
    assert_eq!(del.status, 409, "{}", del.text());
    assert!(del.text().contains("BucketNotEmpty"));
    // The object, then the emptied bucket, goes; then the bucket is not there.
    let steps = [
        ("DELETE", "/second/x", 204),
        ("DELETE", "/second", 204),
        ("HEAD", "/second", 404),
    ];
    for (method, path, status) in steps {
        let r = s.raw.request(s.demo(), method, path, &[]).await;
        assert_eq!(r.status, status, "{method} {path}");
    }

    // Anonymous requests are refused, whatever they ask for.
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/data"),
        ("PUT", "/data/anon"),
        ("GET", "/data/dir/one.bin"),
    ] {
        let r = s
            .raw
            .send(None, method, path, &[], &[], b"x".to_vec())
            .await
            .unwrap();
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
    }
    // A wrong secret key fails SigV4.
    let impostor = TestTenant {
        id: "demo".into(),
        access_key_id: s.demo().access_key_id.clone(),
        secret_access_key: "wrong-secret-0000".into(),
        share: None,
    };
    assert_eq!(s.raw.get(&impostor, "/", &[]).await.status, 403);
    s.proxy.stop().await;
}

#[tokio::test]
async fn missing_key_and_missing_bucket_get_distinct_404_codes() {
    // GET and HEAD look the bucket up only when the object is missing; the error must still
    // name the right thing.
    let s = setup(60).await;
    let key = s.demo().share_b64().unwrap();
    let h = sse_c_headers(&key);
    let no_key = s.raw.get(s.demo(), "/data/absent", &h).await;
    assert_eq!(no_key.status, 404);
    assert_text_contains(&no_key, "NoSuchKey");
    let no_bucket = s.raw.get(s.demo(), "/absent-bucket/k", &h).await;
    assert_eq!(no_bucket.status, 404);
    assert_text_contains(&no_bucket, "NoSuchBucket");
    let head = s
        .raw
        .request(s.demo(), "HEAD", "/absent-bucket/k", &h)
        .await;
    assert_eq!(head.status, 404);
    s.proxy.stop().await;
}

#[tokio::test]
async fn multipart_upload_complete_list_parts_abort() {
    let s = setup(60).await;
    let key = s.demo().share_b64().unwrap();
    let store = client(&s.proxy, &s.pki, s.demo(), Some(&key), BUCKET);
    let path = OsPath::from("mp/object.bin");
    let parts = [data(SEG + 10, 1), data(2 * SEG, 2), data(7, 3)];
    let mut upload = store.put_multipart(&path).await.unwrap();
    for p in &parts {
        upload.put_part(PutPayload::from(p.clone())).await.unwrap();
    }
    upload.complete().await.unwrap();
    let whole: Vec<u8> = parts.concat();
    let got = store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), whole.as_slice());
    assert_eq!(store.head(&path).await.unwrap().size, whole.len() as u64);
    let listed: Vec<_> = store
        .list(Some(&OsPath::from("mp")))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].size,
        whole.len() as u64,
        "listings show the plaintext size"
    );
    // Ranges across part (run) and segment boundaries.
    let edges = [
        SEG as u64 + 5..SEG as u64 + 20,
        SEG as u64..(3 * SEG + 12) as u64,
        0..whole.len() as u64,
    ];
    for r in edges {
        let got = store.get_range(&path, r.clone()).await.unwrap();
        assert_eq!(
            got.as_ref(),
            &whole[r.start as usize..r.end as usize],
            "{r:?}"
        );
    }

    // ListParts and AbortMultipartUpload through raw requests.
    let h = sse_c_headers(&key);
    let (raw, demo, path) = (&s.raw, s.demo(), "/data/mp/aborted");
    let create = raw.query(demo, "POST", path, &[("uploads", "")], &h).await;
    assert_eq!(create.status, 200, "{}", create.text());
    let id = xml_tag(&create.text(), "UploadId");
    let upload = [("uploadId", id.as_str())];
    let part_one = [("partNumber", "1"), ("uploadId", id.as_str())];
    let part = raw
        .send(Some(demo), "PUT", path, &part_one, &h, data(1000, 9))
        .await
        .unwrap();
    assert_eq!(part.status, 200, "{}", part.text());
    let listed = raw.query(demo, "GET", path, &upload, &h).await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_text_contains(&listed, "<PartNumber>1</PartNumber>");
    assert_text_contains(&listed, "<Size>1000</Size>");
    let abort = raw.query(demo, "DELETE", path, &upload, &h).await;
    assert_eq!(abort.status, 204, "{}", abort.text());
    let gone = raw.query(demo, "GET", path, &upload, &h).await;
    assert_eq!(gone.status, 404);
    assert!(matches!(
        store.get(&OsPath::from("mp/aborted")).await,
        Err(object_store::Error::NotFound { .. })
    ));
    // A completed upload leaves only its marker (ETag and key) for a repeated Complete.
    let staged: Vec<_> = stored_files(&s.root.join("storage/tenants/demo/uploads"))
        .into_iter()
        .filter(|(p, _)| !p.ends_with("completed"))
        .collect();
    assert!(
        staged.is_empty(),
        "staging left behind: {:?}",
        staged.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    s.proxy.stop().await;
}

#[tokio::test]
async fn copy_delete_objects_conditionals_and_ranges() {
    let s = setup(60).await;
    let key = s.demo().share_b64().unwrap();
    let store = client(&s.proxy, &s.pki, s.demo(), Some(&key), BUCKET);
    let body = data(SEG * 2 + 1, 5);
    put_object(&store, "src", body.clone()).await;
    store
        .copy(&OsPath::from("src"), &OsPath::from("dst"))
        .await
        .unwrap();
    assert_eq!(get_object(&store, "dst").await.as_ref(), body.as_slice());

    let h = sse_c_headers(&key);
    let get = s.raw.get(s.demo(), "/data/src", &h).await;
    assert_eq!(get.status, 200);
    assert_eq!(hdr(&get, "content-length"), body.len().to_string());
    let etag = hdr(&get, "etag").to_owned();
    assert!(!etag.is_empty());
    let mut cond = h.clone();
    cond.push(("if-none-match", etag.clone()));
    assert_eq!(s.raw.get(s.demo(), "/data/src", &cond).await.status, 304);
    let mut cond = h.clone();
    cond.push(("if-match", "\"0123\"".into()));
    assert_eq!(s.raw.get(s.demo(), "/data/src", &cond).await.status, 412);
    let mut cond = h.clone();
    cond.push(("if-match", etag.clone()));
    assert_eq!(s.raw.get(s.demo(), "/data/src", &cond).await.status, 200);

    let mut range = h.clone();
    range.push(("range", "bytes=-10".into()));
    let r = s.raw.get(s.demo(), "/data/src", &range).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &body[body.len() - 10..]);
    assert_eq!(
        hdr(&r, "content-range"),
        format!(
            "bytes {}-{}/{}",
            body.len() - 10,
            body.len() - 1,
            body.len()
        )
    );
    let mut range = h.clone();
    range.push(("range", format!("bytes={}-", body.len() + 5)));
    assert_eq!(s.raw.get(s.demo(), "/data/src", &range).await.status, 416);

    // DeleteObjects (bulk) through object_store.
    let paths =
        futures::stream::iter(vec![Ok(OsPath::from("src")), Ok(OsPath::from("dst"))]).boxed();
    let deleted: Vec<_> = store.delete_stream(paths).try_collect().await.unwrap();
    assert_eq!(deleted.len(), 2);
    assert!(
        store
            .list(None)
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .is_empty()
    );

    // Pagination with a delimiter.
    for k in ["a/1", "a/2", "b", "c", "d/1"] {
        put_object(&store, k, Bytes::from_static(b"x")).await;
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut q = vec![
            ("list-type", "2".to_owned()),
            ("max-keys", "2".to_owned()),
            ("delimiter", "/".to_owned()),
        ];
        if let Some(t) = &token {
            q.push(("continuation-token", t.clone()));
        }
        let qr: Vec<(&str, &str)> = q.iter().map(|(a, b)| (*a, b.as_str())).collect();
        let page = s.raw.query(s.demo(), "GET", "/data", &qr, &[]).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let text = page.text();
        for part in text.split("<Key>").skip(1) {
            seen.push(part.split("</Key>").next().unwrap().to_owned());
        }
        for part in text.split("<Prefix>").skip(1) {
            let p = part.split("</Prefix>").next().unwrap();
            if !p.is_empty() {
                seen.push(p.to_owned());
            }
        }
        match text.split("<NextContinuationToken>").nth(1) {
            Some(rest) => {
                token = Some(
                    rest.split("</NextContinuationToken>")
                        .next()
                        .unwrap()
                        .to_owned(),
                )
            }
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, vec!["a/", "b", "c", "d/"]);
    s.proxy.stop().await;
}

#[tokio::test]
async fn metrics_endpoint_reports_phases_cache_and_releases() {
    let _ = treuhand::proxy::server::prometheus();
    let s = setup(60).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(treuhand::proxy::server::serve_metrics(
        listener,
        async move {
            let _ = rx.await;
        },
    ));
    let key = s.demo().share_b64().unwrap();
    let h = sse_c_headers(&key);
    assert_eq!(
        s.raw
            .put(s.demo(), "/data/m", &h, b"m".to_vec())
            .await
            .status,
        200
    );
    assert_eq!(s.raw.get(s.demo(), "/data/m", &h).await.status, 200);
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "treuhand_phase_seconds_bucket{phase=\"tls_handshake\"",
        "phase=\"trustee_round_trip\"",
        "phase=\"combine_verify\"",
        "phase=\"crypto\"",
        "phase=\"backend_io\"",
        "treuhand_key_cache_total{result=\"hit\"}",
        "treuhand_key_cache_total{result=\"miss\"}",
        "treuhand_releases_total{",
        "treuhand_request_seconds_bucket{method=\"GET\"",
        "treuhand_request_seconds_bucket{method=\"PUT\"",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    // Never a secret in metrics: no share bytes.
    assert!(!text.contains(&key));
    let _ = tx.send(());
    task.await.unwrap();
    s.proxy.stop().await;
}

#[tokio::test]
async fn list_objects_v1_pages_by_marker_and_url_encoding_keeps_plus_and_percent() {
    let s = setup(60).await;
    let key = s.demo().share_b64().unwrap();
    let h = sse_c_headers(&key);
    let names = ["l/100%", "l/a b", "l/a+b", "l/d/1", "l/d/2", "l/z"];
    for name in names {
        let put = s
            .raw
            .put(s.demo(), &format!("/data/{name}"), &h, b"v".to_vec())
            .await;
        assert_eq!(put.status, 200, "{name}: {}", put.text());
    }
    let list = |query: Vec<(&'static str, String)>| {
        let raw = &s.raw;
        let demo = s.demo();
        async move {
            let q: Vec<(&str, &str)> = query.iter().map(|(a, b)| (*a, b.as_str())).collect();
            raw.query(demo, "GET", "/data", &q, &[]).await
        }
    };

    // v1 (no list-type) with encoding-type=url: what botocore asks for on its own and then
    // decodes with `+` as a space. Raw names would come back as "l/a b" twice and "l/100%" broken.
    let page = list(vec![
        ("prefix", "l/".into()),
        ("encoding-type", "url".into()),
    ])
    .await;
    assert_eq!(page.status, 200, "{}", page.text());
    let text = page.text();
    assert_eq!(
        xml_tags(&text, "Key"),
        ["l/100%25", "l/a%20b", "l/a%2Bb", "l/d/1", "l/d/2", "l/z"]
    );
    assert_eq!(xml_tags(&text, "EncodingType"), ["url"]);

    // Without it, names are sent as they are.
    let plain = list(vec![("prefix", "l/".into())]).await;
    assert_eq!(
        xml_tags(&plain.text(), "Key"),
        ["l/100%", "l/a b", "l/a+b", "l/d/1", "l/d/2", "l/z"]
    );

    // Paging by marker with a delimiter: NextMarker resumes after the last key or prefix.
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q = vec![
            ("prefix", "l/".to_owned()),
            ("delimiter", "/".to_owned()),
            ("max-keys", "2".to_owned()),
        ];
        if let Some(m) = &marker {
            q.push(("marker", m.clone()));
        }
        let page = list(q).await;
        assert_eq!(page.status, 200, "{}", page.text());
        pages += 1;
        let text = page.text();
        seen.extend(xml_tags(&text, "Key"));
        seen.extend(
            xml_tags(&text, "Prefix")
                .into_iter()
                .filter(|p| p.as_str() != "l/"),
        );
        if xml_tags(&text, "IsTruncated") != ["true"] {
            break;
        }
        marker = xml_tags(&text, "NextMarker").into_iter().next();
        assert!(
            marker.is_some(),
            "a truncated v1 page needs NextMarker: {text}"
        );
    }
    seen.sort();
    assert_eq!(seen, ["l/100%", "l/a b", "l/a+b", "l/d/", "l/z"]);
    assert_eq!(pages, 3);

    // v2 encodes the same way.
    let v2 = list(vec![
        ("list-type", "2".into()),
        ("prefix", "l/a".into()),
        ("encoding-type", "url".into()),
    ])
    .await;
    assert_eq!(xml_tags(&v2.text(), "Key"), ["l/a%20b", "l/a%2Bb"]);

    // Any other encoding type is a 400, as on S3.
    let bad = list(vec![("encoding-type", "base64".into())]).await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_text_contains(&bad, "InvalidArgument");
    s.proxy.stop().await;
}

#[tokio::test]
async fn head_and_304_over_http2_send_no_body_even_for_errors() {
    // Go clients (rclone) and curl negotiate HTTP/2 and treat a DATA frame on a HEAD response
    // as a protocol error; an S3 error document must not be sent as one.
    let s = setup(60).await;
    let h2 = Raw::new_h2(&s.proxy, &s.pki);
    let key = s.demo().share_b64().unwrap();
    let h = sse_c_headers(&key);
    let put = h2.put(s.demo(), "/data/h2", &h, data(70_000, 3)).await;
    assert_eq!(put.version, reqwest::Version::HTTP_2);
    assert_eq!(put.status, 200, "{}", put.text());
    for (path, status) in [("/data/h2", 200), ("/data/absent", 404), ("/absent/k", 404)] {
        let head = h2.request(s.demo(), "HEAD", path, &h).await;
        assert_eq!(head.version, reqwest::Version::HTTP_2);
        assert_eq!(head.status, status, "{path}");
        assert_eq!(head.body_error, None, "{path}");
        assert!(head.body.is_empty(), "{path}");
    }
    let head = h2.request(s.demo(), "HEAD", "/data/h2", &h).await;
    assert_eq!(hdr(&head, "content-length"), "70000");
    let get = h2.get(s.demo(), "/data/h2", &h).await;
    assert_eq!(get.body, data(70_000, 3));
    // A conditional GET answered 304 carries no body either.
    let mut conditional = h.clone();
    conditional.push(("if-none-match", hdr(&get, "etag").to_owned()));
    let not_modified = h2.get(s.demo(), "/data/h2", &conditional).await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.body_error, None);
    assert!(not_modified.body.is_empty());
    s.proxy.stop().await;
}

#[tokio::test]
async fn holder_tenant_responses_say_aws_kms_and_sse_c_ones_do_not() {
    // Clients skip their "ETag == MD5 of what I sent" check on SSE-KMS responses (s3cmd, the
    // AWS SDK for Java); treuhand's ETag is not the plaintext MD5.
    let s = setup(60).await;
    let put = s
        .raw
        .put(s.tenant("demo-holder"), "/data/kms", &[], b"x".to_vec())
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(hdr(&put, "x-amz-server-side-encryption"), "aws:kms");
    for method in ["GET", "HEAD"] {
        let r = s
            .raw
            .request(s.tenant("demo-holder"), method, "/data/kms", &[])
            .await;
        assert_eq!(
            hdr(&r, "x-amz-server-side-encryption"),
            "aws:kms",
            "{method}"
        );
    }
    let key = s.demo().share_b64().unwrap();
    let h = sse_c_headers(&key);
    let put = s.raw.put(s.demo(), "/data/ssec", &h, b"x".to_vec()).await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert!(put.headers.get("x-amz-server-side-encryption").is_none());
    assert_eq!(
        hdr(&put, "x-amz-server-side-encryption-customer-algorithm"),
        "AES256"
    );
    s.proxy.stop().await;
}

#[tokio::test]
async fn tenant_reload_adds_and_removes_tenants_all_or_nothing_and_drops_cached_keys() {
    let e = Enrolled::start(&["trustee", "holder"], &DEMO_AND_HOLDER).await;
    let (_dir, root, pki, holders) = (e.dir, e.root, e.pki, e.holders);
    let [demo_cfg, holder_cfg] = exactly(e.configs);
    let [demo, holder_tenant] = exactly(e.tenants);
    // A registration's Debug output never shows its SigV4 secret.
    assert!(!format!("{demo_cfg:?}").contains(&demo.secret_access_key));
    let config = proxy_config(&pki, &root, 60);
    let proxy = start_proxy(&config, std::slice::from_ref(&demo_cfg), &holders.factory()).await;
    let registry = proxy.tenants.clone().unwrap();
    let raw = Raw::new(&proxy, &pki);
    raw.create_bucket(&demo, BUCKET).await;
    let key = demo.share_b64().unwrap();
    let h = sse_c_headers(&key);
    let put = raw.put(&demo, "/data/kept", &h, b"kept".to_vec()).await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert!(proxy.keys.cached() >= 1);

    // Not registered yet: the signature cannot even be checked.
    let unknown = raw.put(&holder_tenant, "/data", &[], vec![]).await;
    assert_eq!(unknown.status, 403, "{}", unknown.text());
    assert_text_contains(&unknown, "InvalidAccessKeyId");

    // Add it.
    let both = [demo_cfg.clone(), holder_cfg.clone()];
    let summary =
        treuhand::proxy::reload(&registry, &proxy.keys, &both, &holders.factory()).unwrap();
    assert_eq!(summary.added, ["demo-holder"]);
    assert!(summary.removed.is_empty());
    assert_eq!(summary.kept, 1);
    assert_eq!(proxy.keys.cached(), 0, "a reload drops cached tenant keys");
    raw.create_bucket(&holder_tenant, BUCKET).await;

    // A broken set (the same tenant twice) is refused as a whole: both tenants keep working.
    let broken = [demo_cfg.clone(), holder_cfg.clone(), demo_cfg.clone()];
    assert!(treuhand::proxy::reload(&registry, &proxy.keys, &broken, &holders.factory()).is_err());
    assert_eq!(registry.len(), 2);
    let head = raw.request(&holder_tenant, "HEAD", "/data", &[]).await;
    assert_eq!(head.status, 200);

    // Remove demo: its requests are refused, its objects stay, and re-adding it serves them.
    let summary = treuhand::proxy::reload(
        &registry,
        &proxy.keys,
        std::slice::from_ref(&holder_cfg),
        &holders.factory(),
    )
    .unwrap();
    assert_eq!(summary.removed, ["demo"]);
    let gone = raw.get(&demo, "/data/kept", &h).await;
    assert_eq!(gone.status, 403);
    treuhand::proxy::reload(&registry, &proxy.keys, &both, &holders.factory()).unwrap();
    let back = raw.get(&demo, "/data/kept", &h).await;
    assert_eq!(back.status, 200, "{}", back.text());
    assert_eq!(back.body, b"kept");
    proxy.stop().await;
}

/// SSE-C headers for the copy source (`x-amz-copy-source-server-side-encryption-customer-*`).
fn copy_source_sse_c_headers(key_b64: &str) -> Vec<(&'static str, String)> {
    sse_c_headers(key_b64)
        .into_iter()
        .map(|(name, value)| {
            let name = match name {
                "x-amz-server-side-encryption-customer-algorithm" => {
                    "x-amz-copy-source-server-side-encryption-customer-algorithm"
                }
                "x-amz-server-side-encryption-customer-key" => {
                    "x-amz-copy-source-server-side-encryption-customer-key"
                }
                _ => "x-amz-copy-source-server-side-encryption-customer-key-md5",
            };
            (name, value)
        })
        .collect()
}

/// The Size and ETag of `key` in a ListObjectsV2 response.
async fn listed(s: &Setup, key: &str) -> (u64, String) {
    let listed = s
        .raw
        .query(
            s.demo(),
            "GET",
            "/data",
            &[("list-type", "2"), ("prefix", key)],
            &[],
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    let text = listed.text();
    let sizes = xml_tags(&text, "Size");
    assert_eq!(sizes.len(), 1, "{text}");
    let etags = xml_tags(&text, "ETag");
    assert_eq!(etags.len(), 1, "{text}");
    (sizes[0].parse().unwrap(), etags[0].replace("&quot;", "\""))
}

#[tokio::test]
async fn put_with_content_type_and_user_metadata_returns_them_on_get_and_head() {
    let s = setup(60).await;
    let key = s.demo().share_b64().unwrap();
    let mut h = sse_c_headers(&key);
    h.extend([
        ("content-type", "text/html; charset=utf-8".to_owned()),
        ("content-encoding", "identity".to_owned()),
        ("content-disposition", "inline".to_owned()),
        ("content-language", "de".to_owned()),
        ("cache-control", "max-age=60".to_owned()),
        ("x-amz-meta-mtime", "1700000000.123456789".to_owned()),
        ("x-amz-meta-Secret-Note", "confidential-needle".to_owned()),
    ]);
    let body = data(2 * SEG + 5, 4);
    let put = s
        .raw
        .put(s.demo(), "/data/web/index.html", &h, body.clone())
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let read = sse_c_headers(&key);
    for method in ["GET", "HEAD"] {
        let r = s
            .raw
            .request(s.demo(), method, "/data/web/index.html", &read)
            .await;
        assert_eq!(r.status, 200, "{method}: {}", r.text());
        assert_eq!(
            hdr(&r, "content-type"),
            "text/html; charset=utf-8",
            "{method}"
        );
        assert_eq!(hdr(&r, "content-encoding"), "identity", "{method}");
        assert_eq!(hdr(&r, "content-disposition"), "inline", "{method}");
        assert_eq!(hdr(&r, "content-language"), "de", "{method}");
        assert_eq!(hdr(&r, "cache-control"), "max-age=60", "{method}");
        assert_eq!(
            hdr(&r, "x-amz-meta-mtime"),
            "1700000000.123456789",
            "{method}"
        );
        assert_eq!(
            hdr(&r, "x-amz-meta-secret-note"),
            "confidential-needle",
            "{method}"
        );
        assert_eq!(hdr(&r, "etag"), hdr(&put, "etag"), "{method}");
        if method == "GET" {
            assert_eq!(r.body, body);
        }
    }
    // A v2 object is listed with its plaintext size, like a v1 one.
    // The listing's ETag is the MD5 of the whole v2 header, as GET and HEAD report it.
    assert_eq!(
        listed(&s, "web/index.html").await,
        (body.len() as u64, hdr(&put, "etag").to_owned())
    );
    // The metadata is sealed: nothing of it is visible in the stored bytes.
    for (path, bytes) in stored_files(&s.root.join("storage/tenants/demo/objects")) {
        for needle in [
            &b"confidential-needle"[..],
            b"text/html",
            b"max-age",
            b"mtime",
        ] {
            assert!(
                !contains(&bytes, needle),
                "{} holds plaintext metadata",
                path.display()
            );
        }
    }
    // Without metadata, the default type is still application/octet-stream.
    let plain = s.raw.put(s.demo(), "/data/plain", &read, data(10, 1)).await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    let head = s.raw.request(s.demo(), "HEAD", "/data/plain", &read).await;
    assert_eq!(hdr(&head, "content-type"), "application/octet-stream");
    assert_eq!(hdr(&head, "x-amz-meta-mtime"), "");
    s.proxy.stop().await;
}

#[tokio::test]
async fn copy_object_copies_metadata_by_default_and_replace_takes_the_requests() {
    let s = setup(60).await;
    let key = s.demo().share_b64().unwrap();
    let mut h = sse_c_headers(&key);
    h.extend([
        ("content-type", "image/png".to_owned()),
        ("x-amz-meta-origin", "camera".to_owned()),
    ]);
    let put = s
        .raw
        .put(s.demo(), "/data/src.png", &h, data(SEG + 3, 2))
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let mut copy = sse_c_headers(&key);
    copy.extend(copy_source_sse_c_headers(&key));
    copy.push(("x-amz-copy-source", "/data/src.png".to_owned()));
    let mut replace = copy.clone();
    replace.extend([
        ("x-amz-metadata-directive", "REPLACE".to_owned()),
        ("content-type", "text/plain".to_owned()),
        ("x-amz-meta-edited", "yes".to_owned()),
    ]);
    let mut explicit_copy = copy.clone();
    explicit_copy.extend([
        ("x-amz-metadata-directive", "COPY".to_owned()),
        // Ignored under COPY, as in S3.
        ("content-type", "text/plain".to_owned()),
    ]);
    let read = sse_c_headers(&key);
    for (dest, headers, want_type, origin, edited) in [
        ("/data/default-copy", &copy, "image/png", "camera", ""),
        (
            "/data/explicit-copy",
            &explicit_copy,
            "image/png",
            "camera",
            "",
        ),
        ("/data/replaced", &replace, "text/plain", "", "yes"),
    ] {
        let r = s.raw.put(s.demo(), dest, headers, vec![]).await;
        assert_eq!(r.status, 200, "{dest}: {}", r.text());
        let head = s.raw.request(s.demo(), "HEAD", dest, &read).await;
        assert_eq!(head.status, 200, "{dest}");
        assert_eq!(hdr(&head, "content-type"), want_type, "{dest}");
        assert_eq!(hdr(&head, "x-amz-meta-origin"), origin, "{dest}");
        assert_eq!(hdr(&head, "x-amz-meta-edited"), edited, "{dest}");
        assert_eq!(
            hdr(&head, "content-length"),
            (SEG + 3).to_string(),
            "{dest}"
        );
    }
    let mut bogus = copy.clone();
    bogus.push(("x-amz-metadata-directive", "MERGE".to_owned()));
    let r = s.raw.put(s.demo(), "/data/bogus", &bogus, vec![]).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_text_contains(&r, "InvalidArgument");
    s.proxy.stop().await;
}

#[tokio::test]
async fn multipart_create_with_metadata_is_returned_after_complete_and_listed_by_plaintext_size() {
    let s = setup(60).await;
    let key = s.demo().share_b64().unwrap();
    let h = sse_c_headers(&key);
    let mut create_headers = h.clone();
    create_headers.extend([
        ("content-type", "video/mp4".to_owned()),
        ("x-amz-meta-mtime", "1234.5".to_owned()),
    ]);
    let create = s
        .raw
        .query(
            s.demo(),
            "POST",
            "/data/mp/meta.mp4",
            &[("uploads", "")],
            &create_headers,
        )
        .await;
    assert_eq!(create.status, 200, "{}", create.text());
    let id = xml_tags(&create.text(), "UploadId").remove(0);
    let parts = [data(SEG + 10, 6), data(99, 7)];
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (i, part) in parts.iter().enumerate() {
        let number = (i + 1).to_string();
        let r = s
            .raw
            .send(
                Some(s.demo()),
                "PUT",
                "/data/mp/meta.mp4",
                &[("partNumber", &number), ("uploadId", &id)],
                &h,
                part.clone(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        xml.push_str(&format!(
            "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
            hdr(&r, "etag")
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    let complete = s
        .raw
        .send(
            Some(s.demo()),
            "POST",
            "/data/mp/meta.mp4",
            &[("uploadId", &id)],
            &h,
            xml.into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(complete.status, 200, "{}", complete.text());
    let whole = parts.concat();
    let get = s.raw.get(s.demo(), "/data/mp/meta.mp4", &h).await;
    assert_eq!(get.status, 200, "{}", get.text());
    assert_eq!(get.body, whole);
    assert_eq!(hdr(&get, "content-type"), "video/mp4");
    assert_eq!(hdr(&get, "x-amz-meta-mtime"), "1234.5");
    assert_eq!(
        listed(&s, "mp/meta.mp4").await,
        (whole.len() as u64, hdr(&get, "etag").to_owned())
    );
    s.proxy.stop().await;
}

#[tokio::test]
async fn too_large_metadata_is_rejected_with_400_metadata_too_large() {
    let s = setup(60).await;
    let key = s.demo().share_b64().unwrap();
    let mut h = sse_c_headers(&key);
    h.push(("x-amz-meta-big", "x".repeat(format_max_metadata())));
    let put = s.raw.put(s.demo(), "/data/big-meta", &h, data(10, 1)).await;
    assert_eq!(put.status, 400, "{}", put.text());
    assert_text_contains(&put, "MetadataTooLarge");
    // The proxy's own limit answered, not a generic header-size limit in front of it.
    assert_text_contains(&put, "at most 8192");
    let create = s
        .raw
        .query(s.demo(), "POST", "/data/big-meta", &[("uploads", "")], &h)
        .await;
    assert_eq!(create.status, 400, "{}", create.text());
    assert_text_contains(&create, "MetadataTooLarge");
    // Nothing was stored.
    let head = s
        .raw
        .request(s.demo(), "HEAD", "/data/big-meta", &sse_c_headers(&key))
        .await;
    assert_eq!(head.status, 404);
    s.proxy.stop().await;
}

fn format_max_metadata() -> usize {
    treuhand::format::MAX_METADATA
}

#[tokio::test]
async fn a_refused_request_that_awaited_100_continue_closes_the_connection() {
    // Refused before its body is read: a client that sent the body anyway (it timed out
    // waiting for 100 Continue) must not have those bytes read as the next request.
    let s = setup(60).await;
    let expect = [("expect", "100-continue".to_owned())];
    let refused = s
        .raw
        .put(s.demo(), "/absent-bucket/k", &expect, b"x".to_vec())
        .await;
    assert_eq!(refused.status, 404, "{}", refused.text());
    assert_eq!(hdr(&refused, "connection"), "close");
    // Without the expectation the connection stays open (nothing can be left on it).
    let plain = s
        .raw
        .put(s.demo(), "/absent-bucket/k", &[], b"x".to_vec())
        .await;
    assert_eq!(plain.status, 404);
    assert_ne!(hdr(&plain, "connection"), "close");
}

#[tokio::test]
async fn an_empty_put_that_awaited_100_continue_closes_the_connection() {
    // hyper sends no 100 Continue for an empty body; botocore then mis-reads the next
    // 100 Continue exchange on the same connection (boto/botocore#3010), so the proxy closes it.
    let s = setup(60).await;
    let key = s.demo().share_b64().unwrap();
    let mut expect = sse_c_headers(&key);
    expect.push(("expect", "100-continue".to_owned()));
    let stored = s
        .raw
        .put(s.demo(), "/data/empty", &expect, Vec::new())
        .await;
    assert_eq!(stored.status, 200, "{}", stored.text());
    assert_eq!(hdr(&stored, "connection"), "close");
    let with_body = s
        .raw
        .put(s.demo(), "/data/full", &expect, b"x".to_vec())
        .await;
    assert_eq!(with_body.status, 200, "{}", with_body.text());
    assert_ne!(hdr(&with_body, "connection"), "close");
}
