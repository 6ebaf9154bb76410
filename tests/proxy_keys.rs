//! Keys at S3's length limit and listings paged through many keys, through the proxy with real
//! TLS and SigV4, on the filesystem and the memory backends.
// Tests may unwrap/expect/panic: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::*;
use treuhand::storage::{Storage, StorageConfig, encode_key};

type Setup = Stack;

/// One holder `trustee`, the SSE-C tenant `demo`, on fs storage or on `storage`.
async fn setup(storage: Option<StorageConfig>) -> Setup {
    let tenants: [TenantSpec; 1] = [("demo", &["trustee"], 2, None)];
    Stack::start(&["trustee"], &tenants, |config| {
        if let Some(storage) = storage {
            config.storage = storage;
        }
    })
    .await
}

/// Keys S3 accepts but a filesystem cannot name as one file.
fn long_keys() -> Vec<String> {
    vec![
        // 1,024 bytes, one segment.
        "k".repeat(1024),
        // 300 x é: 600 bytes of UTF-8, one segment.
        "é".repeat(300),
        // Many short components.
        format!("{}end", "s/".repeat(500)),
        // A long segment below a directory, and a long directory.
        format!("dir/{}", "b".repeat(1000)),
        format!("{}/x", "é".repeat(400)),
    ]
}

async fn long_keys_answer_every_operation(s: &Setup) {
    let share = s.demo().share_b64().unwrap();
    let h = sse_c_headers(&share);
    for (i, key) in long_keys().into_iter().enumerate() {
        assert!(key.len() <= 1024, "{}", key.len());
        let path = format!("/{BUCKET}/{key}");
        let body = data(1000 + i, i as u8);
        let put = s.raw.put(s.demo(), &path, &h, body.clone()).await;
        assert_eq!(put.status, 200, "PUT {} bytes: {}", key.len(), put.text());

        let get = s.raw.get(s.demo(), &path, &h).await;
        assert_eq!(get.status, 200, "GET {} bytes: {}", key.len(), get.text());
        assert_eq!(get.body, body);

        let head = s.raw.request(s.demo(), "HEAD", &path, &h).await;
        assert_eq!(head.status, 200);
        assert_eq!(
            head.headers["content-length"].to_str().unwrap(),
            body.len().to_string()
        );

        // Listed under its exact key, with a prefix inside the long segment too.
        let prefix: String = key.chars().take(5).collect();
        let list = s
            .raw
            .query(
                s.demo(),
                "GET",
                &format!("/{BUCKET}"),
                &[("list-type", "2"), ("prefix", prefix.as_str())],
                &[],
            )
            .await;
        assert_eq!(list.status, 200, "{}", list.text());
        assert_eq!(xml_tags(&list.text(), "Key"), std::slice::from_ref(&key));
        assert_eq!(xml_tags(&list.text(), "Size"), [body.len().to_string()]);

        let delete = s.raw.request(s.demo(), "DELETE", &path, &[]).await;
        assert_eq!(delete.status, 204, "{}", delete.text());
        let gone = s.raw.get(s.demo(), &path, &h).await;
        assert_eq!(gone.status, 404, "{}", gone.text());
    }

    // One byte over S3's limit is the client's error, not a retryable 503.
    let too_long = format!("/{BUCKET}/{}", "k".repeat(1025));
    let put = s.raw.put(s.demo(), &too_long, &h, b"v".to_vec()).await;
    assert_eq!(put.status, 400, "{}", put.text());
    assert_text_contains(&put, "KeyTooLongError");

    let list = s.raw.get(s.demo(), &format!("/{BUCKET}"), &[]).await;
    assert!(xml_tags(&list.text(), "Key").is_empty(), "{}", list.text());
}

#[tokio::test]
async fn keys_up_to_1024_bytes_answer_every_operation_on_the_filesystem_backend() {
    let s = setup(None).await;
    long_keys_answer_every_operation(&s).await;
    // Nothing is left behind, not even the directories of the cut segments.
    let left: Vec<_> = stored_files(&s.root.join("storage"))
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.to_string_lossy().contains("/objects/"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    s.proxy.stop().await;
}

#[tokio::test]
async fn keys_up_to_1024_bytes_answer_every_operation_on_the_memory_backend() {
    let s = setup(Some(StorageConfig::Memory)).await;
    long_keys_answer_every_operation(&s).await;
    s.proxy.stop().await;
}

/// Lists the bucket page by page with ListObjectsV2 (`v2`) or ListObjects (v1), returning the
/// keys and common prefixes in the order the pages gave them, and the number of pages.
async fn list_all(s: &Setup, delimiter: Option<&str>, v2: bool) -> (Vec<String>, usize) {
    let mut seen = Vec::new();
    let mut resume: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q: Vec<(&str, String)> = vec![("max-keys", "1000".into())];
        if v2 {
            q.push(("list-type", "2".into()));
        }
        if let Some(d) = delimiter {
            q.push(("delimiter", d.into()));
        }
        if let Some(r) = &resume {
            q.push((if v2 { "continuation-token" } else { "marker" }, r.clone()));
        }
        let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = s
            .raw
            .query(s.demo(), "GET", &format!("/{BUCKET}"), &q, &[])
            .await;
        assert_eq!(page.status, 200, "{}", page.text());
        pages += 1;
        let text = page.text();
        // Objects and common prefixes arrive as two lists; merged they are in key order.
        let mut on_page = xml_tags(&text, "Key");
        on_page.extend(
            text.split("<CommonPrefixes>")
                .skip(1)
                .flat_map(|part| xml_tags(part, "Prefix").into_iter().take(1)),
        );
        assert!(on_page.len() <= 1000);
        on_page.sort();
        seen.extend(on_page);
        if xml_tags(&text, "IsTruncated") != ["true"] {
            return (seen, pages);
        }
        let next = if v2 {
            xml_tags(&text, "NextContinuationToken")
        } else {
            xml_tags(&text, "NextMarker")
        };
        // v1 without a delimiter sends no NextMarker (as S3): resume after the last key.
        let last_key = (!v2 && delimiter.is_none())
            .then(|| seen.last().cloned())
            .flatten();
        resume = Some(
            next.into_iter()
                .next()
                .or(last_key)
                .expect("a truncated page says where to resume"),
        );
    }
}

#[tokio::test]
async fn paging_2500_keys_by_1000_returns_every_key_and_prefix_once_in_order() {
    let s = setup(None).await;
    // Objects written straight into the backend (a listing reads names and headers only), in
    // an order unlike key order, with keys whose stored paths sort differently from the keys
    // (escapes, `c` pieces of long segments, files beside directories of the same name).
    let storage = Storage::from_config(&StorageConfig::Fs {
        root: s.root.join("storage"),
        fsync: false,
    })
    .unwrap();
    let mut keys: Vec<String> = (0..2500)
        .map(|i| match i % 10 {
            0 => format!("dir{}/k{i:04}", i % 3),
            1 => format!("a b{i:04}"),
            2 => format!("{}{i:04}", "é".repeat(200)),
            3 => format!("k{i:04}/"),
            _ => format!("k{i:04}"),
        })
        .collect();
    keys.push("dir1".into());
    keys.push("dir1/".into());
    for key in keys.iter().rev() {
        let path = format!(
            "tenants/{}/objects/{BUCKET}/{}",
            s.demo().id,
            encode_key(key)
        );
        storage
            .put(&path, bytes::Bytes::from_static(b"not a real header"))
            .await
            .unwrap();
    }
    keys.sort();

    for v2 in [true, false] {
        let (seen, pages) = list_all(&s, None, v2).await;
        assert_eq!(seen, keys, "v2 = {v2}");
        assert_eq!(pages, 3);

        let (seen, _) = list_all(&s, Some("/"), v2).await;
        let mut expected: Vec<String> = keys
            .iter()
            .map(|k| match k.find('/') {
                Some(i) => k[..=i].to_owned(),
                None => k.clone(),
            })
            .collect();
        expected.dedup();
        assert_eq!(seen, expected, "v2 = {v2}");
    }
    s.proxy.stop().await;
}
