//! The proxy with a real S3 server as its backend: Ceph RGW from `.ci/ceph.sh`.
//!
//! Runs when `RGW_ENDPOINT` is set (CI sources `DIR/rgw.env`); otherwise it is skipped with a
//! loud message. Proves that what RGW stores is ciphertext and that objects round-trip.
// Tests may unwrap/expect/panic: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use futures::TryStreamExt;
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use support::*;
use treuhand::storage::{Storage, StorageConfig};

#[tokio::test]
async fn rgw_backend_stores_only_ciphertext_and_round_trips() {
    let Ok(endpoint) = std::env::var("RGW_ENDPOINT") else {
        eprintln!();
        eprintln!("************************************************************************");
        eprintln!("* SKIPPED proxy_rgw: RGW_ENDPOINT is not set.                          *");
        eprintln!("* Run `.ci/ceph.sh start DIR && source DIR/rgw.env` to test against    *");
        eprintln!("* a real Ceph RGW backend (CI does).                                   *");
        eprintln!("************************************************************************");
        return;
    };
    let access = std::env::var("RGW_ACCESS_KEY_ID").expect("RGW_ACCESS_KEY_ID");
    let secret = std::env::var("RGW_SECRET_ACCESS_KEY").expect("RGW_SECRET_ACCESS_KEY");
    let region = std::env::var("RGW_REGION").unwrap_or_else(|_| "us-east-1".into());
    let mut suffix = [0u8; 4];
    treuhand::crypto::envelope::fill_random(&mut suffix).unwrap();
    let backend_bucket = format!("treuhand-test-{}", hex::encode(suffix));
    let storage_config = StorageConfig::S3 {
        endpoint: endpoint.clone(),
        region: region.clone(),
        bucket: backend_bucket.clone(),
        access_key_id: access.clone(),
        secret_access_key: secret.clone().into(),
        path_style: true,
        allow_http: endpoint.starts_with("http://"),
        create_bucket: true,
    };
    Storage::ensure_bucket(&storage_config).await.unwrap();

    let e = Enrolled::start(&["trustee", "holder"], &DEMO_AND_HOLDER).await;
    let (_dir, root, pki, holders) = (e.dir, e.root, e.pki, e.holders);
    let [demo_cfg, holder_cfg] = exactly(e.configs);
    let [demo, holder_tenant] = exactly(e.tenants);
    let mut config = proxy_config(&pki, &root, 60);
    config.storage = storage_config.clone();
    let proxy = start_proxy(&config, &[demo_cfg, holder_cfg], &holders.factory()).await;
    let raw = Raw::new(&proxy, &pki);
    raw.create_bucket(&demo, BUCKET).await;
    raw.create_bucket(&holder_tenant, BUCKET).await;

    let key = demo.share_b64().unwrap();
    let sse = client(&proxy, &pki, &demo, Some(&key), BUCKET);
    let plain = client(&proxy, &pki, &holder_tenant, None, BUCKET);
    let small = data(100_000, 1);
    // 12 MiB: goes to RGW as a backend multipart upload with 8 MiB parts.
    let large = data(12 * 1024 * 1024 + 3, 2);
    put_object(&sse, "small", small.clone()).await;
    put_object(&sse, "large", large.clone()).await;
    put_object(&plain, "held", small.clone()).await;
    // A client-side multipart upload as well.
    let mut upload = sse.put_multipart(&OsPath::from("mp")).await.unwrap();
    upload
        .put_part(PutPayload::from(large[..6 * 1024 * 1024].to_vec()))
        .await
        .unwrap();
    upload
        .put_part(PutPayload::from(large[6 * 1024 * 1024..].to_vec()))
        .await
        .unwrap();
    upload.complete().await.unwrap();

    assert_eq!(get_object(&sse, "small").await.as_ref(), small.as_slice());
    assert_eq!(get_object(&sse, "large").await.as_ref(), large.as_slice());
    assert_eq!(get_object(&sse, "mp").await.as_ref(), large.as_slice());
    assert_eq!(get_object(&plain, "held").await.as_ref(), small.as_slice());
    let r = 8 * 1024 * 1024 - 10..8 * 1024 * 1024 + 70_000;
    assert_eq!(
        sse.get_range(&OsPath::from("large"), r.clone())
            .await
            .unwrap()
            .as_ref(),
        &large[r.start as usize..r.end as usize]
    );

    // Read everything RGW holds in the backend bucket directly: only ciphertext.
    let backend = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&endpoint)
        .with_region(&region)
        .with_bucket_name(&backend_bucket)
        .with_access_key_id(&access)
        .with_secret_access_key(&secret)
        .with_allow_http(endpoint.starts_with("http://"))
        .build()
        .unwrap();
    let listed: Vec<_> = backend.list(None).try_collect().await.unwrap();
    assert!(listed.len() >= 4, "{listed:?}");
    for meta in &listed {
        let bytes = backend
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        for needle in [
            &small[..64],
            &large[1024..1088],
            &large[9 * 1024 * 1024..9 * 1024 * 1024 + 64],
        ] {
            assert!(
                !contains(&bytes, needle),
                "plaintext in rgw object {}",
                meta.location
            );
        }
    }
    // Clean up the backend bucket's objects.
    for meta in listed {
        backend.delete(&meta.location).await.unwrap();
    }
    proxy.stop().await;
}
