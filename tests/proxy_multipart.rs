//! Multipart uploads through the proxy with real TLS, real SigV4 and the filesystem backend:
//! a re-uploaded part never reuses a nonce, part ETags are keyed digests of the plaintext, the
//! in-memory upload ciphers are capped per tenant, Complete checks the bucket, abandoned
//! staging is reaped, a repeated Complete answers the same ETag, the default minimum part size
//! holds, UploadPartCopy opens its source with the copy-source share, and ListMultipartUploads
//! lists uploads in progress only. (boto3 and aws cli: tests/e2e/test_multipart_conformance.py.)
// Tests may unwrap/expect/panic: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use support::*;

const SEG: usize = 64 * 1024;

type Setup = Stack;

/// One holder `trustee`, SSE-C tenants `demo` and `other`, at most `per_tenant_uploads` open
/// uploads per tenant.
async fn setup_with(per_tenant_uploads: usize) -> Setup {
    let tenants: [TenantSpec; 2] = [
        ("demo", &["trustee"], 2, None),
        ("other", &["trustee"], 2, None),
    ];
    Stack::start(&["trustee"], &tenants, |config| {
        config.multipart.max_uploads_per_tenant = per_tenant_uploads;
    })
    .await
}

async fn setup() -> Setup {
    setup_with(1000).await
}

impl Setup {
    async fn create(&self, tenant: &TestTenant, key: &str) -> String {
        let h = sse_c_headers(&tenant.share_b64().unwrap());
        let r = self
            .raw
            .query(
                tenant,
                "POST",
                &format!("/{BUCKET}/{key}"),
                &[("uploads", "")],
                &h,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        xml_tag(&r.text(), "UploadId")
    }

    /// Uploads a part and returns its ETag (with quotes, as sent).
    async fn part(
        &self,
        tenant: &TestTenant,
        key: &str,
        id: &str,
        number: u32,
        body: Vec<u8>,
    ) -> String {
        let h = sse_c_headers(&tenant.share_b64().unwrap());
        let n = number.to_string();
        let r = self
            .raw
            .send(
                Some(tenant),
                "PUT",
                &format!("/{BUCKET}/{key}"),
                &[("partNumber", &n), ("uploadId", id)],
                &h,
                body,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.headers.get("etag").unwrap().to_str().unwrap().to_owned()
    }

    /// Completes with the given (part, ETag) list; `with_share` sends the SSE-C headers.
    async fn complete(
        &self,
        tenant: &TestTenant,
        key: &str,
        id: &str,
        parts: &[(u32, &str)],
        with_share: bool,
    ) -> RawResponse {
        let h = if with_share {
            sse_c_headers(&tenant.share_b64().unwrap())
        } else {
            Vec::new()
        };
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (n, e) in parts {
            xml.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        self.raw
            .send(
                Some(tenant),
                "POST",
                &format!("/{BUCKET}/{key}"),
                &[("uploadId", id)],
                &h,
                xml.into_bytes(),
            )
            .await
            .unwrap()
    }

    async fn get(&self, tenant: &TestTenant, key: &str) -> RawResponse {
        let h = sse_c_headers(&tenant.share_b64().unwrap());
        self.raw.get(tenant, &format!("/{BUCKET}/{key}"), &h).await
    }

    /// The staged files of one upload of `demo`.
    fn staged(&self, id: &str) -> Vec<(PathBuf, Vec<u8>)> {
        stored_files(
            &self
                .root
                .join(format!("storage/tenants/demo/uploads/{BUCKET}/{id}")),
        )
        .into_iter()
        .filter(|(p, _)| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("p00001"))
        })
        .collect()
    }
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

#[tokio::test]
async fn reuploaded_part_is_encrypted_under_fresh_nonces_and_completes_with_the_last_etag() {
    let s = setup().await;
    let key = "mp/again.bin";
    let id = s.create(s.demo(), key).await;
    let first = data(2 * SEG + 100, 1);
    let second = data(2 * SEG + 100, 2);
    let etag_first = s.part(s.demo(), key, &id, 1, first.clone()).await;
    let staged_first = s.staged(&id);
    assert_eq!(staged_first.len(), 1, "one staged attempt");
    let etag_second = s.part(s.demo(), key, &id, 1, second.clone()).await;
    let staged_second = s.staged(&id);
    assert_eq!(staged_second.len(), 1, "the earlier attempt is replaced");
    assert_ne!(etag_first, etag_second, "different bytes, different ETags");
    let (c1, c2) = (&staged_first[0].1, &staged_second[0].1);
    assert_eq!(c1.len(), c2.len());
    // Same key and nonces would make the ciphertexts' XOR the plaintexts' XOR (and leak GCM's
    // authentication key). Compare the first segment's body (tags excluded).
    assert!(
        xor(&c1[..SEG], &c2[..SEG]) != xor(&first[..SEG], &second[..SEG]),
        "a re-uploaded part reused the first attempt's keystream"
    );
    // The first ETag names an attempt that no longer exists.
    let stale = s
        .complete(s.demo(), key, &id, &[(1, &etag_first)], true)
        .await;
    assert_eq!(stale.status, 400, "{}", stale.text());
    assert_text_contains(&stale, "InvalidPart");
    let done = s
        .complete(s.demo(), key, &id, &[(1, &etag_second)], true)
        .await;
    assert_eq!(done.status, 200, "{}", done.text());
    let got = s.get(s.demo(), key).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert!(got.body == second, "the object is the last attempt");
    s.proxy.stop().await;
}

#[tokio::test]
async fn identical_part_bytes_sent_twice_get_one_etag_and_complete_with_the_first() {
    let s = setup().await;
    let key = "mp/same.bin";
    let id = s.create(s.demo(), key).await;
    let body = data(SEG + 7, 3);
    let etag_first = s.part(s.demo(), key, &id, 1, body.clone()).await;
    let staged_first = s.staged(&id);
    let etag_again = s.part(s.demo(), key, &id, 1, body.clone()).await;
    let staged_again = s.staged(&id);
    assert_eq!(etag_first, etag_again, "S3 gives identical bytes one ETag");
    assert!(
        staged_first[0].1 != staged_again[0].1,
        "identical bytes are still encrypted afresh"
    );
    let tail = data(10, 4);
    let etag_tail = s.part(s.demo(), key, &id, 2, tail.clone()).await;
    // The part ETag is not the MD5 of the part (no guess can be confirmed from it).
    let md5 = {
        use md5::Digest as _;
        hex::encode(md5::Md5::digest(&body))
    };
    assert!(!etag_first.contains(&md5));
    let done = s
        .complete(
            s.demo(),
            key,
            &id,
            &[(1, &etag_first), (2, &etag_tail)],
            true,
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.text());
    let got = s.get(s.demo(), key).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert!(got.body == [body, tail].concat());
    s.proxy.stop().await;
}

#[tokio::test]
async fn one_tenant_filling_its_upload_cap_does_not_break_another_tenants_complete() {
    let s = setup_with(3).await;
    // Tenant demo opens more uploads than its cap; its oldest in-memory ciphers are evicted.
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(s.create(s.demo(), &format!("mp/flood-{i}")).await);
    }
    // Tenant other starts an upload after the flood and completes it without SSE-C headers
    // (stock clients do), which needs its cipher from memory.
    let key = "mp/other.bin";
    let id = s.create(s.tenant("other"), key).await;
    let body = data(1000, 5);
    let etag = s.part(s.tenant("other"), key, &id, 1, body.clone()).await;
    let done = s
        .complete(s.tenant("other"), key, &id, &[(1, &etag)], false)
        .await;
    assert_eq!(done.status, 200, "{}", done.text());
    let got = s.get(s.tenant("other"), key).await;
    assert!(got.body == body);
    // demo's newest upload still completes without SSE-C, its oldest needs the share again.
    let newest = ids.last().unwrap();
    let e = s.part(s.demo(), "mp/flood-4", newest, 1, data(5, 6)).await;
    let done = s
        .complete(s.demo(), "mp/flood-4", newest, &[(1, &e)], false)
        .await;
    assert_eq!(done.status, 200, "{}", done.text());
    let e = s.part(s.demo(), "mp/flood-0", &ids[0], 1, data(5, 7)).await;
    let evicted = s
        .complete(s.demo(), "mp/flood-0", &ids[0], &[(1, &e)], false)
        .await;
    assert_eq!(evicted.status, 400, "{}", evicted.text());
    let done = s
        .complete(s.demo(), "mp/flood-0", &ids[0], &[(1, &e)], true)
        .await;
    assert_eq!(done.status, 200, "{}", done.text());
    s.proxy.stop().await;
}

#[tokio::test]
async fn complete_into_a_deleted_bucket_answers_no_such_bucket() {
    let s = setup().await;
    let key = "mp/orphan.bin";
    let id = s.create(s.demo(), key).await;
    let etag = s.part(s.demo(), key, &id, 1, data(100, 8)).await;
    let deleted = s
        .raw
        .request(s.demo(), "DELETE", &format!("/{BUCKET}"), &[])
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    let done = s.complete(s.demo(), key, &id, &[(1, &etag)], true).await;
    assert_eq!(done.status, 404, "{}", done.text());
    assert_text_contains(&done, "NoSuchBucket");
    let objects = stored_files(&s.root.join("storage/tenants/demo/objects"));
    assert!(
        objects.is_empty(),
        "an object was created in a deleted bucket: {:?}",
        objects.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    s.proxy.stop().await;
}

fn upload_dirs(root: &Path) -> Vec<String> {
    let dir = root.join(format!("storage/tenants/demo/uploads/{BUCKET}"));
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test]
async fn reaper_removes_uploads_older_than_the_age_and_keeps_fresh_ones() {
    let s = setup().await;
    let old = s.create(s.demo(), "mp/old.bin").await;
    s.part(s.demo(), "mp/old.bin", &old, 1, data(100, 9)).await;
    let storage = treuhand::storage::Storage::from_config(&treuhand::storage::StorageConfig::Fs {
        root: s.root.join("storage"),
        fsync: false,
    })
    .unwrap();
    let age = Duration::from_secs(7 * 24 * 3600);
    let tenants = vec!["demo".to_owned(), "other".to_owned()];
    // A clock eight days ahead: the upload made now is abandoned by then.
    let later = SystemTime::now() + Duration::from_secs(8 * 24 * 3600);
    // Nothing is old yet at the real time.
    let summary =
        treuhand::proxy::reaper::reap_abandoned_uploads(&storage, &tenants, SystemTime::now(), age)
            .await
            .unwrap();
    assert_eq!(summary.uploads, 0);
    assert_eq!(upload_dirs(&s.root), vec![old.clone()]);
    let summary = treuhand::proxy::reaper::reap_abandoned_uploads(&storage, &tenants, later, age)
        .await
        .unwrap();
    assert_eq!(summary.uploads, 1);
    assert!(upload_dirs(&s.root).is_empty() || upload_dirs(&s.root) == Vec::<String>::new());
    let staged = stored_files(&s.root.join("storage/tenants/demo/uploads"));
    assert!(
        staged.is_empty(),
        "{:?}",
        staged.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    // A fresh upload stays, and the reaped one is gone for S3 too.
    let fresh = s.create(s.demo(), "mp/fresh.bin").await;
    let summary =
        treuhand::proxy::reaper::reap_abandoned_uploads(&storage, &tenants, SystemTime::now(), age)
            .await
            .unwrap();
    assert_eq!(summary.uploads, 0);
    let etag = s
        .part(s.demo(), "mp/fresh.bin", &fresh, 1, data(10, 1))
        .await;
    let done = s
        .complete(s.demo(), "mp/fresh.bin", &fresh, &[(1, &etag)], true)
        .await;
    assert_eq!(done.status, 200, "{}", done.text());
    let gone = s
        .complete(s.demo(), "mp/old.bin", &old, &[(1, &etag)], true)
        .await;
    assert_eq!(gone.status, 404, "{}", gone.text());
    assert_text_contains(&gone, "NoSuchUpload");
    s.proxy.stop().await;
}

fn fs_storage(root: &Path) -> treuhand::storage::Storage {
    treuhand::storage::Storage::from_config(&treuhand::storage::StorageConfig::Fs {
        root: root.join("storage"),
        fsync: false,
    })
    .unwrap()
}

#[tokio::test]
async fn a_second_complete_answers_the_same_etag_until_the_reaper_removes_its_marker() {
    let s = setup().await;
    let key = "mp/twice.bin";
    let id = s.create(s.demo(), key).await;
    let body = data(SEG + 9, 11);
    let etag = s.part(s.demo(), key, &id, 1, body.clone()).await;
    let first = s.complete(s.demo(), key, &id, &[(1, &etag)], true).await;
    assert_eq!(first.status, 200, "{}", first.text());
    // Stock clients repeat a Complete whose answer they lost, with or without SSE-C headers.
    for with_share in [true, false] {
        let again = s
            .complete(s.demo(), key, &id, &[(1, &etag)], with_share)
            .await;
        assert_eq!(again.status, 200, "{}", again.text());
        for tag in ["ETag", "Bucket", "Key", "Location"] {
            assert_eq!(
                xml_tag(&again.text(), tag),
                xml_tag(&first.text(), tag),
                "{tag}"
            );
        }
    }
    // What stays of the upload is the marker: the ETag and the key, no header, no key material.
    let dir = s
        .root
        .join(format!("storage/tenants/demo/uploads/{BUCKET}/{id}"));
    let left = stored_files(&dir);
    assert_eq!(
        left.len(),
        1,
        "{:?}",
        left.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    let etag_hex = xml_tag(&first.text(), "ETag")
        .replace("&quot;", "")
        .replace('"', "");
    assert_eq!(
        String::from_utf8(left[0].1.clone()).unwrap(),
        format!("treuhand-completed-v1\n{etag_hex}\n{key}")
    );
    // The marker names its key: the id completes nothing else, and other calls see no upload.
    let other = s
        .complete(s.demo(), "mp/other.bin", &id, &[(1, &etag)], true)
        .await;
    assert_eq!(other.status, 404, "{}", other.text());
    assert_text_contains(&other, "NoSuchUpload");
    let part = s
        .raw
        .send(
            Some(s.demo()),
            "PUT",
            &format!("/{BUCKET}/{key}"),
            &[("partNumber", "2"), ("uploadId", &id)],
            &sse_c_headers(&s.demo().share_b64().unwrap()),
            data(10, 1),
        )
        .await
        .unwrap();
    assert_eq!(part.status, 404, "{}", part.text());
    // An id that never existed.
    let never = "0123456789abcdef0123456789abcdef";
    let unknown = s.complete(s.demo(), key, never, &[(1, &etag)], true).await;
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    assert_text_contains(&unknown, "NoSuchUpload");
    // The reaper removes the marker once it is as old as an abandoned upload.
    let age = Duration::from_secs(7 * 24 * 3600);
    let later = SystemTime::now() + Duration::from_secs(8 * 24 * 3600);
    let tenants = vec!["demo".to_owned()];
    let reaped =
        treuhand::proxy::reaper::reap_abandoned_uploads(&fs_storage(&s.root), &tenants, later, age)
            .await
            .unwrap();
    assert_eq!((reaped.completed, reaped.uploads), (1, 0));
    let gone = s.complete(s.demo(), key, &id, &[(1, &etag)], true).await;
    assert_eq!(gone.status, 404, "{}", gone.text());
    assert_text_contains(&gone, "NoSuchUpload");
    let got = s.get(s.demo(), key).await;
    assert!(got.body == body, "the object stays");
    s.proxy.stop().await;
}

#[tokio::test]
async fn parts_below_the_default_minimum_are_entity_too_small() {
    // S3's 5 MiB, the default (the harness lowers it for the other tests).
    let tenants: [TenantSpec; 1] = [("demo", &["trustee"], 2, None)];
    let s = Stack::start(&["trustee"], &tenants, |config| {
        config.multipart = treuhand::proxy::config::MultipartConfig::default();
    })
    .await;
    assert_eq!(
        treuhand::proxy::config::MultipartConfig::default().min_part_size,
        5 * 1024 * 1024
    );
    let key = "mp/small.bin";
    let id = s.create(s.demo(), key).await;
    let small = s
        .part(s.demo(), key, &id, 1, data(5 * 1024 * 1024 - 1, 1))
        .await;
    let last = s.part(s.demo(), key, &id, 2, data(10, 2)).await;
    let refused = s
        .complete(s.demo(), key, &id, &[(1, &small), (2, &last)], true)
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert_text_contains(&refused, "EntityTooSmall");
    // A single small part is the last part: allowed. So is a first part of exactly 5 MiB.
    let full = s
        .part(s.demo(), key, &id, 1, data(5 * 1024 * 1024, 3))
        .await;
    let done = s
        .complete(s.demo(), key, &id, &[(1, &full), (2, &last)], true)
        .await;
    assert_eq!(done.status, 200, "{}", done.text());
    let one = "mp/one.bin";
    let id = s.create(s.demo(), one).await;
    let only = s.part(s.demo(), one, &id, 1, data(10, 4)).await;
    let done = s.complete(s.demo(), one, &id, &[(1, &only)], true).await;
    assert_eq!(done.status, 200, "{}", done.text());
    s.proxy.stop().await;
}

/// The copy-source variants of the SSE-C headers of `tenant`'s share.
fn copy_source_sse(tenant: &TestTenant) -> Vec<(&'static str, String)> {
    sse_c_headers(&tenant.share_b64().unwrap())
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

#[tokio::test]
async fn upload_part_copy_needs_the_source_share_and_stages_a_freshly_encrypted_part() {
    let s = setup().await;
    let source = data(3 * SEG + 17, 12);
    let h = sse_c_headers(&s.demo().share_b64().unwrap());
    let put = s
        .raw
        .put(s.demo(), &format!("/{BUCKET}/src.bin"), &h, source.clone())
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let key = "mp/copied.bin";
    let id = s.create(s.demo(), key).await;
    let copy = |number: &'static str, range: Option<&'static str>, source_share: bool| {
        let mut headers = h.clone();
        headers.push(("x-amz-copy-source", format!("/{BUCKET}/src.bin")));
        if let Some(range) = range {
            headers.push(("x-amz-copy-source-range", range.to_owned()));
        }
        if source_share {
            headers.extend(copy_source_sse(s.demo()));
        }
        let id = id.clone();
        let raw = &s.raw;
        let tenant = s.demo();
        async move {
            raw.send(
                Some(tenant),
                "PUT",
                &format!("/{BUCKET}/{key}"),
                &[("partNumber", number), ("uploadId", &id)],
                &headers,
                Vec::new(),
            )
            .await
            .unwrap()
        }
    };
    // The source is opened with the copy-source share, which an SSE-C tenant must send.
    let without = copy("1", None, false).await;
    assert_eq!(without.status, 400, "{}", without.text());
    let whole = copy("1", None, true).await;
    assert_eq!(whole.status, 200, "{}", whole.text());
    let ranged = copy("2", Some("bytes=10-99"), true).await;
    assert_eq!(ranged.status, 200, "{}", ranged.text());
    let beyond = copy("3", Some("bytes=0-999999"), true).await;
    assert_eq!(beyond.status, 416, "{}", beyond.text());
    assert_text_contains(&beyond, "InvalidRange");
    let malformed = copy("3", Some("bytes=5-"), true).await;
    assert_eq!(malformed.status, 400, "{}", malformed.text());
    assert_text_contains(&malformed, "InvalidArgument");
    // The staged part is ciphertext under the upload's key, not the source's bytes.
    let staged = s.staged(&id);
    assert_eq!(staged.len(), 1);
    assert!(!contains(&staged[0].1, &source[..64]));
    let etags = [
        xml_tag(&whole.text(), "ETag").replace("&quot;", "\""),
        xml_tag(&ranged.text(), "ETag").replace("&quot;", "\""),
    ];
    let done = s
        .complete(s.demo(), key, &id, &[(1, &etags[0]), (2, &etags[1])], true)
        .await;
    assert_eq!(done.status, 200, "{}", done.text());
    let got = s.get(s.demo(), key).await;
    assert!(got.body == [&source[..], &source[10..100]].concat());
    s.proxy.stop().await;
}

#[tokio::test]
async fn list_multipart_uploads_shows_uploads_in_progress_only_and_skips_damaged_staging() {
    let s = setup().await;
    let done = s.create(s.demo(), "mp/done.bin").await;
    let open = s.create(s.demo(), "mp/open.bin").await;
    let damaged = s.create(s.demo(), "mp/damaged.bin").await;
    let etag = s.part(s.demo(), "mp/done.bin", &done, 1, data(10, 1)).await;
    let completed = s
        .complete(s.demo(), "mp/done.bin", &done, &[(1, &etag)], true)
        .await;
    assert_eq!(completed.status, 200, "{}", completed.text());
    let header = s.root.join(format!(
        "storage/tenants/demo/uploads/{BUCKET}/{damaged}/header"
    ));
    std::fs::write(&header, b"\xff\xff\xff\xffnot a staged header").unwrap();
    // No SSE-C headers: listing uploads releases no key.
    let listed = s
        .raw
        .query(
            s.demo(),
            "GET",
            &format!("/{BUCKET}"),
            &[("uploads", "")],
            &[],
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(xml_tags(&listed.text(), "UploadId"), vec![open]);
    assert_eq!(
        xml_tags(&listed.text(), "Key"),
        vec!["mp/open.bin".to_owned()]
    );
    let missing = s
        .raw
        .query(s.demo(), "GET", "/no-such-bucket", &[("uploads", "")], &[])
        .await;
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert_text_contains(&missing, "NoSuchBucket");
    s.proxy.stop().await;
}
