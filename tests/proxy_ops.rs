//! Every S3 operation through the proxy with real TLS, real SigV4 and the filesystem backend.
// Tests may unwrap/expect/panic: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod proxy_support;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use proxy_support::holders::Holders;
use proxy_support::*;

const SEG: usize = 64 * 1024;

struct Setup {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    pki: Pki,
    holders: Holders,
    proxy: Proxy,
    demo: TestTenant,
    holder_tenant: TestTenant,
    raw: Raw,
}

async fn setup(ttl: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let pki = Pki::new(&root);
    let holders = Holders::start(&pki, &["trustee", "holder"]).await;
    let (demo_cfg, demo) = holders.enroll(&root, "demo", &["trustee"], 2, None).await;
    let (holder_cfg, holder_tenant) = holders
        .enroll(&root, "demo-holder", &["trustee"], 2, Some("holder"))
        .await;
    let config = proxy_config(&pki, &root, ttl);
    let proxy = start_proxy(&config, &[demo_cfg, holder_cfg], &holders.factory()).await;
    let raw = Raw::new(&proxy, &pki);
    raw.create_bucket(&demo, BUCKET).await;
    raw.create_bucket(&holder_tenant, BUCKET).await;
    Setup {
        _dir: dir,
        root,
        pki,
        holders,
        proxy,
        demo,
        holder_tenant,
        raw,
    }
}

#[tokio::test]
async fn sse_c_put_get_range_head_list_delete_round_trip() {
    let s = setup(60).await;
    let key = s.demo.share_b64().unwrap();
    let store = client(&s.proxy, &s.pki, &s.demo, Some(&key), BUCKET);
    let body = data(3 * SEG + 123, 7);
    let path = OsPath::from("dir/one.bin");
    store
        .put(&path, PutPayload::from(body.clone()))
        .await
        .unwrap();

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

    store
        .put(
            &OsPath::from("dir/two.bin"),
            PutPayload::from(Bytes::from_static(b"")),
        )
        .await
        .unwrap();
    store
        .put(
            &OsPath::from("top.txt"),
            PutPayload::from(Bytes::from_static(b"hello")),
        )
        .await
        .unwrap();
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
    assert_eq!(
        store
            .get(&OsPath::from("dir/two.bin"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len(),
        0
    );

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
    let store = client(&s.proxy, &s.pki, &s.holder_tenant, None, BUCKET);
    let body = data(SEG + 1, 3);
    let path = OsPath::from("plain.bin");
    store
        .put(&path, PutPayload::from(body.clone()))
        .await
        .unwrap();
    let got = store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), body.as_slice());
    assert!(
        s.holders.releases("holder", "demo-holder").await >= 2,
        "TTL 0 asks the holder every time"
    );
    s.proxy.stop().await;
}
