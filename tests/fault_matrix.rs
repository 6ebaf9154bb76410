//! The fault matrix (issue 10, item 8): faults injected into the real processes, with the
//! property each cell must keep.
//!
//! | fault | property | test |
//! |---|---|---|
//! | proxy SIGKILL mid-overwrite | old version intact; no staging leftover after restart | `proxy_sigkill_mid_overwrite_keeps_the_old_version` |
//! | proxy SIGKILL mid-multipart | nothing visible; Complete or Abort after restart | `proxy_sigkill_mid_multipart_hides_the_upload_and_restart_completes_or_aborts_it` |
//! | trustee / holder SIGKILL, cache off | 503 for every GET and PUT; storage unchanged | `trustee_and_holder_sigkill_with_cache_off_is_503_and_stores_nothing` |
//! | trustee SIGKILL under load | correct bytes or 503; every served GET logged; log verifies | `trustee_sigkill_under_load_serves_correct_bytes_or_503_and_logs_every_served_get` |
//! | storage on a full disk | 5xx; old version intact; the proxy keeps serving | `full_disk_is_503_keeps_the_old_version_and_the_proxy_keeps_serving` |
//! | flipped / truncated stored bytes | no altered plaintext; a late failure is a short read | `tampered_large_objects_never_return_altered_plaintext` |
//!
//! Pinned elsewhere and not repeated here: a trustee SIGKILLed mid-release keeps every
//! acknowledged release and a verifying chain (`tests/trustee_kill.rs`); a gracefully stopped
//! trustee or holder, tampered objects up to 1 MiB and a client that cuts its upload short
//! (`tests/proxy_failures.rs`).
//!
//! The proxy and the trustees run as the real `treuhand` binary wherever the fault is a
//! SIGKILL of that process; otherwise in-process on 127.0.0.1:0. Everything speaks real TLS.
//! No assertion depends on timing: tests wait for states (a staging file exists, a count is
//! reached), bounded by a generous outer limit.
// Tests may unwrap/expect/panic: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use support::*;

use treuhand::proxy::config::TenantConfig;
use treuhand::tls::Role;
use treuhand::trustee::audit::verify_log;
use treuhand::trustee::client::TrusteeClient;

const MIB: usize = 1024 * 1024;

fn put_len(len: usize) -> (&'static str, String) {
    ("content-length", len.to_string())
}

/// Every file below `root` with its bytes, sorted: a snapshot to compare storage against.
fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = stored_files(root);
    files.sort();
    files
}

/// A copy of a tenant's credentials for a spawned task (`TestTenant` is not `Clone`).
fn owned(tenant: &TestTenant) -> TestTenant {
    TestTenant {
        id: tenant.id.clone(),
        access_key_id: tenant.access_key_id.clone(),
        secret_access_key: tenant.secret_access_key.clone(),
        share: tenant.share,
    }
}

/// The text between `<tag>` and `</tag>`.
fn xml_field(text: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{tag}>"))? + start;
    Some(text[start..end].to_owned())
}

fn etag_of(outcome: &Outcome) -> String {
    outcome
        .headers
        .get("etag")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

/// Backdates staging leftovers past any sweep safety age: the proxy restarts long after the
/// crash, so a sweep that spares recent (possibly in-flight) staging files must take these.
fn age_staging_files(leftovers: &[PathBuf]) {
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 24 * 3600);
    for path in leftovers {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
    }
}

/// After a restart, the startup sweep removes every (aged) staging leftover below `storage`.
async fn expect_swept(storage: &Path) {
    // The sweep runs before the proxy listens, so this holds as soon as it serves; the wait
    // only bounds a slow machine.
    wait_until("the startup sweep removes the staging leftovers", || {
        staging_files(storage).is_empty()
    })
    .await;
}

/// A proxy run as the real binary against in-process trustees, on a filesystem backend.
struct RealProxyStack {
    _dir: tempfile::TempDir,
    root: PathBuf,
    pki: Pki,
    _holders: Holders,
    config_path: PathBuf,
    demo: TestTenant,
}

impl RealProxyStack {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let pki = Pki::new(&root);
        let holders = Holders::start(&pki, &["t1"]).await;
        // The ceremony writes root/tenants/demo.toml, which the proxy process loads.
        let (_, demo) = holders.enroll(&root, "demo", &["t1"], 2, None).await;
        let config = proxy_config(&pki, &root, 60);
        let config_path = root.join("proxy.toml");
        write_proxy_toml(&config_path, &config);
        Self {
            _dir: dir,
            root,
            pki,
            _holders: holders,
            config_path,
            demo,
        }
    }

    fn storage(&self) -> PathBuf {
        self.root.join("storage")
    }

    fn sse(&self) -> Vec<(&'static str, String)> {
        sse_c_headers(&self.demo.share_b64().unwrap())
    }

    async fn start(&self) -> (ProxyProcess, S3) {
        let proxy = ProxyProcess::start(&self.config_path).await;
        let s3 = S3::new(&proxy.endpoint(), &self.pki.ca_pem, b"http/1.1");
        (proxy, s3)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_sigkill_mid_overwrite_keeps_the_old_version() {
    let stack = RealProxyStack::new().await;
    let demo = &stack.demo;
    let (proxy, s3) = stack.start().await;
    s3.create_bucket(demo, "data").await;
    // Larger than the 8 MiB writer chunk, so both versions stream through a staged write.
    let old = data(12 * MIB, 1);
    let put = s3
        .call(demo, "PUT", "/data/big", &[], &stack.sse(), old.clone())
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let objects = stack.storage().join("tenants/demo/objects/data");
    let stored_old = std::fs::read(objects.join("fbig")).unwrap();
    assert!(staging_files(&stack.storage()).is_empty());

    // Overwrite with a 16 MiB body, of which the client sends 10 MiB and then stalls: the
    // proxy has opened its staged write (`fbig#<n>`) and is waiting for more.
    let (mut held, body) = HeldBody::new();
    let mut headers = stack.sse();
    headers.push(put_len(16 * MIB));
    let overwrite = {
        let s3 = s3.clone();
        let tenant = owned(demo);
        tokio::spawn(async move {
            s3.send(Some(&tenant), "PUT", "/data/big", &[], &headers, body)
                .await
                .map(|o| o.status)
        })
    };
    let new = data(10 * MIB, 2);
    for piece in new.chunks(MIB) {
        held.send(piece.to_vec()).await;
    }
    wait_until("the overwrite's staging file", || {
        !staging_files(&objects).is_empty()
    })
    .await;

    proxy.kill().await;
    let answer = tokio::time::timeout(PATIENCE, overwrite)
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer.is_err() || answer.as_ref().is_ok_and(|s| *s >= 500),
        "the killed overwrite must not succeed: {answer:?}"
    );
    drop(held);
    // The crash left the staged write behind, and the old version untouched.
    let leftovers = staging_files(&stack.storage());
    assert!(!leftovers.is_empty(), "the kill came mid-write");
    assert_eq!(std::fs::read(objects.join("fbig")).unwrap(), stored_old);
    age_staging_files(&leftovers);

    let (proxy, s3) = stack.start().await;
    let get = s3
        .call(demo, "GET", "/data/big", &[], &stack.sse(), vec![])
        .await;
    assert_eq!(get.status, 200, "{}", get.text());
    assert!(get.body_error.is_none(), "{:?}", get.body_error);
    assert!(get.body == old, "the old version reads back exactly");
    let list = s3
        .call(demo, "GET", "/data", &[("list-type", "2")], &[], vec![])
        .await;
    assert_eq!(xml_field(&list.text(), "KeyCount").as_deref(), Some("1"));
    assert_eq!(
        xml_field(&list.text(), "Size"),
        Some(old.len().to_string()),
        "{}",
        list.text()
    );
    expect_swept(&stack.storage()).await;
    // Still the old version after the restart's housekeeping.
    assert_eq!(std::fs::read(objects.join("fbig")).unwrap(), stored_old);
    proxy.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_sigkill_mid_multipart_hides_the_upload_and_restart_completes_or_aborts_it() {
    let stack = RealProxyStack::new().await;
    let demo = &stack.demo;
    let (proxy, s3) = stack.start().await;
    s3.create_bucket(demo, "data").await;
    let part1 = data(5 * MIB, 3);
    let mut uploads = Vec::new();
    let mut in_flight = Vec::new();
    for key in ["to-complete", "to-abort"] {
        let path = format!("/data/{key}");
        let create = s3
            .call(
                demo,
                "POST",
                &path,
                &[("uploads", "")],
                &stack.sse(),
                vec![],
            )
            .await;
        assert_eq!(create.status, 200, "{}", create.text());
        let upload_id = xml_field(&create.text(), "UploadId").unwrap();
        let part = s3
            .call(
                demo,
                "PUT",
                &path,
                &[("partNumber", "1"), ("uploadId", &upload_id)],
                &stack.sse(),
                part1.clone(),
            )
            .await;
        assert_eq!(part.status, 200, "{}", part.text());
        // Part 2: 12 MiB declared, 10 MiB sent, then the client stalls mid-part.
        let (mut held, body) = HeldBody::new();
        let mut headers = stack.sse();
        headers.push(put_len(12 * MIB));
        let task = {
            let s3 = s3.clone();
            let tenant = owned(demo);
            let upload_id = upload_id.clone();
            let path = path.clone();
            tokio::spawn(async move {
                s3.send(
                    Some(&tenant),
                    "PUT",
                    &path,
                    &[("partNumber", "2"), ("uploadId", &upload_id)],
                    &headers,
                    body,
                )
                .await
                .map(|o| o.status)
            })
        };
        for piece in data(10 * MIB, 4).chunks(MIB) {
            held.send(piece.to_vec()).await;
        }
        let upload_dir = stack
            .storage()
            .join(format!("tenants/demo/uploads/data/{upload_id}"));
        wait_until("part 2's staging file", || {
            !staging_files(&upload_dir).is_empty()
        })
        .await;
        uploads.push((path, upload_id, etag_of(&part)));
        in_flight.push((held, task));
    }

    proxy.kill().await;
    for (held, task) in in_flight {
        let answer = tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
        assert!(
            answer.is_err() || answer.as_ref().is_ok_and(|s| *s >= 500),
            "{answer:?}"
        );
        drop(held);
    }
    // Each in-flight part left its staged write (`tmp-<etag>#<n>` in the upload directory).
    let leftovers = staging_files(&stack.storage());
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    age_staging_files(&leftovers);

    let (proxy, s3) = stack.start().await;
    // Nothing of either upload is visible as an object.
    let list = s3
        .call(demo, "GET", "/data", &[("list-type", "2")], &[], vec![])
        .await;
    assert_eq!(list.status, 200, "{}", list.text());
    assert_eq!(
        xml_field(&list.text(), "KeyCount").as_deref(),
        Some("0"),
        "{}",
        list.text()
    );
    let list_v1 = s3.call(demo, "GET", "/data", &[], &[], vec![]).await;
    assert!(!list_v1.text().contains("<Key>"), "{}", list_v1.text());
    for (path, _, _) in &uploads {
        let get = s3.call(demo, "GET", path, &[], &stack.sse(), vec![]).await;
        assert_eq!(get.status, 404, "{path}: {}", get.text());
    }

    // Complete with the part acknowledged before the kill. The restarted proxy has no cipher
    // in memory for the upload, so the SSE-C headers come along (docs/proxy.md).
    let (path, upload_id, etag) = &uploads[0];
    let complete_body = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
    );
    let complete = s3
        .call(
            demo,
            "POST",
            path,
            &[("uploadId", upload_id)],
            &stack.sse(),
            complete_body.into_bytes(),
        )
        .await;
    assert_eq!(complete.status, 200, "{}", complete.text());
    assert!(!complete.text().contains("<Error>"), "{}", complete.text());
    let get = s3.call(demo, "GET", path, &[], &stack.sse(), vec![]).await;
    assert_eq!(get.status, 200, "{}", get.text());
    assert!(get.body == part1, "the completed object is exactly part 1");

    // Abort the other one: it is gone for every multipart call.
    let (path, upload_id, _) = &uploads[1];
    let abort = s3
        .call(
            demo,
            "DELETE",
            path,
            &[("uploadId", upload_id)],
            &[],
            vec![],
        )
        .await;
    assert_eq!(abort.status, 204, "{}", abort.text());
    let parts = s3
        .call(demo, "GET", path, &[("uploadId", upload_id)], &[], vec![])
        .await;
    assert_eq!(parts.status, 404, "{}", parts.text());
    let list = s3
        .call(demo, "GET", "/data", &[("list-type", "2")], &[], vec![])
        .await;
    assert_eq!(xml_field(&list.text(), "KeyCount").as_deref(), Some("1"));
    assert_eq!(
        xml_field(&list.text(), "Key").as_deref(),
        Some("to-complete")
    );
    // Neither Complete nor Abort sees the staged writes (listings hide `#` files): only the
    // sweep removes them.
    expect_swept(&stack.storage()).await;
    proxy.kill().await;
}

/// Real trustee (and holder) processes with an in-process proxy whose key cache is off.
struct RealTrusteeStack {
    _dir: tempfile::TempDir,
    root: PathBuf,
    pki: Pki,
    proxy: Proxy,
    s3: S3,
    demo: TestTenant,
    held: TestTenant,
    trustee_config: PathBuf,
    holder_config: PathBuf,
    public_key: [u8; 32],
}

/// Runs the real key ceremony against real processes.
async fn enroll(
    pki: &Pki,
    root: &Path,
    tenant: &str,
    trustee_url: &str,
    holder_url: Option<&str>,
) -> (TenantConfig, TestTenant) {
    let (cert, key) = pki.client(Role::Customer, tenant, &format!("customer-{tenant}"));
    let tls = treuhand::tls::client_config(&pki.ca_pem, Some((&cert, &key))).unwrap();
    let params = treuhand::tenant::CreateParams {
        tenant: tenant.into(),
        key_version: 1,
        threshold: 2,
        trustees: vec![treuhand::tenant::TrusteeSpec {
            holder: "t1".into(),
            url: trustee_url.into(),
        }],
        customer_holder_url: holder_url.map(str::to_owned),
        access_key_id: format!("AK{}", tenant.to_uppercase()),
        secret_access_key: format!("secret-{tenant}-0123456789").into(),
        registration_dir: root.join("tenants"),
        share_dir: root.join("shares"),
    };
    let depositor =
        treuhand::tenant::deposit::TrusteeDepositor::from_tls(tls, vec![PROXY_NAME.into()]);
    ceremony(&params, &depositor).await
}

/// Pins a started trustee's port in its config, so a restart serves the URL the tenant
/// registrations name.
fn pin_port(config: &Path, url: &str) {
    let port = url.rsplit(':').next().unwrap();
    let text = std::fs::read_to_string(config).unwrap();
    let pinned = text.replace("\"127.0.0.1:0\"", &format!("\"127.0.0.1:{port}\""));
    assert_ne!(pinned, text, "the listen address is in the config");
    std::fs::write(config, pinned).unwrap();
}

impl RealTrusteeStack {
    async fn new() -> (Self, TrusteeProcess, TrusteeProcess) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let pki = Pki::new(&root);
        let trustee_config = write_trustee_toml(&pki, &root.join("trustee"), "t1");
        let holder_config = write_trustee_toml(&pki, &root.join("holder"), "holder");
        let trustee = TrusteeProcess::start(&trustee_config).await;
        let holder = TrusteeProcess::start(&holder_config).await;
        pin_port(&trustee_config, &trustee.url);
        pin_port(&holder_config, &holder.url);
        let public_key = treuhand::trustee::config::read_public_key(
            root.join("trustee/signing.pub").to_str().unwrap(),
        )
        .unwrap();
        let (demo_config, demo) = enroll(&pki, &root, "demo", &trustee.url, None).await;
        let (held_config, held) =
            enroll(&pki, &root, "held", &trustee.url, Some(&holder.url)).await;
        // Cache off: every request asks the key holders.
        let config = proxy_config(&pki, &root, 0);
        let sources = treuhand::proxy::sources::TrusteeSources::new(&config).unwrap();
        let proxy = start_proxy(&config, &[demo_config, held_config], &sources).await;
        let s3 = S3::new(&proxy.endpoint(), &pki.ca_pem, b"http/1.1");
        for t in [&demo, &held] {
            let r = s3.call(t, "PUT", "/data", &[], &[], vec![]).await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
        (
            Self {
                _dir: dir,
                root,
                pki,
                proxy,
                s3,
                demo,
                held,
                trustee_config,
                holder_config,
                public_key,
            },
            trustee,
            holder,
        )
    }

    fn sse(tenant: &TestTenant) -> Vec<(&'static str, String)> {
        tenant
            .share_b64()
            .map(|s| sse_c_headers(&s))
            .unwrap_or_default()
    }

    fn customer(&self, tenant: &str, url: &str) -> TrusteeClient {
        let (cert, key) = self
            .pki
            .client(Role::Customer, tenant, &format!("audit-{tenant}"));
        let tls = treuhand::tls::client_config(&self.pki.ca_pem, Some((&cert, &key))).unwrap();
        TrusteeClient::new(url, tls).unwrap()
    }
}

/// Every data-path request of a tenant (GET, HEAD, small and streamed PUT, overwrite, copy,
/// multipart create) answers 503 and changes nothing in storage.
async fn assert_all_503(stack: &RealTrusteeStack, tenant: &TestTenant, secret: &[u8]) {
    let before = snapshot(&stack.root.join("storage"));
    let sse = RealTrusteeStack::sse(tenant);
    let s3 = &stack.s3;
    // CopyObject names the source's share with the copy-source variants of the headers.
    let mut copy_headers = sse.clone();
    copy_headers.push(("x-amz-copy-source", "/data/a".into()));
    for (name, value) in &sse {
        let name = match *name {
            "x-amz-server-side-encryption-customer-algorithm" => {
                "x-amz-copy-source-server-side-encryption-customer-algorithm"
            }
            "x-amz-server-side-encryption-customer-key" => {
                "x-amz-copy-source-server-side-encryption-customer-key"
            }
            _ => "x-amz-copy-source-server-side-encryption-customer-key-md5",
        };
        copy_headers.push((name, value.clone()));
    }
    // (method, path, query, headers, body)
    type Request<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        Vec<(&'a str, String)>,
        Vec<u8>,
    );
    let cases: Vec<Request> = vec![
        ("GET", "/data/a", vec![], sse.clone(), vec![]),
        ("HEAD", "/data/a", vec![], sse.clone(), vec![]),
        (
            "GET",
            "/data/a",
            vec![],
            {
                let mut h = sse.clone();
                h.push(("range", "bytes=0-9".into()));
                h
            },
            vec![],
        ),
        ("PUT", "/data/a", vec![], sse.clone(), b"overwrite".to_vec()),
        ("PUT", "/data/new", vec![], sse.clone(), b"new".to_vec()),
        ("PUT", "/data/copy", vec![], copy_headers, vec![]),
        (
            "POST",
            "/data/mp",
            vec![("uploads", "")],
            sse.clone(),
            vec![],
        ),
    ];
    for (method, path, query, headers, body) in cases {
        let r = s3.call(tenant, method, path, &query, &headers, body).await;
        assert_eq!(r.status, 503, "{} {method} {path}: {}", tenant.id, r.text());
        assert!(!contains(&r.body, secret));
    }
    // A large streamed PUT: the answer comes before the proxy takes any of the body, so the
    // client sends none (a client that kept writing would see the connection close instead).
    let (held, body) = HeldBody::new();
    let mut headers = sse.clone();
    headers.push(put_len(16 * MIB));
    let r = tokio::time::timeout(
        PATIENCE,
        s3.send(Some(tenant), "PUT", "/data/large", &[], &headers, body),
    )
    .await
    .expect("the proxy answers before the body")
    .unwrap();
    assert_eq!(r.status, 503, "{} large PUT: {}", tenant.id, r.text());
    drop(held);
    assert!(
        snapshot(&stack.root.join("storage")) == before,
        "{}: storage changed while the key holders were down",
        tenant.id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trustee_and_holder_sigkill_with_cache_off_is_503_and_stores_nothing() {
    let (stack, trustee, holder) = RealTrusteeStack::new().await;
    let secret = b"the confidential payload".to_vec();
    for t in [&stack.demo, &stack.held] {
        let r = stack
            .s3
            .call(
                t,
                "PUT",
                "/data/a",
                &[],
                &RealTrusteeStack::sse(t),
                secret.clone(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }

    // The trustee dies: both tenants need its share.
    trustee.kill().await;
    for t in [&stack.demo, &stack.held] {
        assert_all_503(&stack, t, &secret).await;
    }

    // Back on the same address and store: both tenants work again.
    let trustee = TrusteeProcess::start(&stack.trustee_config).await;
    for t in [&stack.demo, &stack.held] {
        let r = stack
            .s3
            .call(t, "GET", "/data/a", &[], &RealTrusteeStack::sse(t), vec![])
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.body, secret);
    }

    // The customer's holder dies: its tenant fails closed, the SSE-C tenant is unaffected.
    holder.kill().await;
    assert_all_503(&stack, &stack.held, &secret).await;
    let r = stack
        .s3
        .call(
            &stack.demo,
            "GET",
            "/data/a",
            &[],
            &RealTrusteeStack::sse(&stack.demo),
            vec![],
        )
        .await;
    assert_eq!(r.body, secret);
    let holder = TrusteeProcess::start(&stack.holder_config).await;
    let r = stack
        .s3
        .call(&stack.held, "GET", "/data/a", &[], &[], vec![])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, secret);
    trustee.kill().await;
    holder.kill().await;
    stack.proxy.stop().await;
}

/// One GET under load, as the client saw it.
struct Served {
    request_id: String,
    status: u16,
    correct: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trustee_sigkill_under_load_serves_correct_bytes_or_503_and_logs_every_served_get() {
    let (stack, trustee, holder) = RealTrusteeStack::new().await;
    holder.kill().await; // only the SSE-C tenant is used here
    let demo = &stack.demo;
    let sse = RealTrusteeStack::sse(demo);
    // Buffered (up to 1 MiB) and streamed responses.
    let objects: Vec<(String, Vec<u8>)> = [1_000, 300_000, 3 * MIB]
        .iter()
        .enumerate()
        .map(|(i, len)| (format!("/data/o{i}"), data(*len, i as u8)))
        .collect();
    for (path, body) in &objects {
        let r = stack
            .s3
            .call(demo, "PUT", path, &[], &sse, body.clone())
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let objects = Arc::new(objects);
    let served = Arc::new(Mutex::new(Vec::<Served>::new()));
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (enough_tx, mut enough_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut workers = Vec::new();
    for worker in 0..4 {
        let s3 = stack.s3.clone();
        let tenant = owned(demo);
        let (sse, objects, served, killed, enough_tx) = (
            sse.clone(),
            objects.clone(),
            served.clone(),
            killed.clone(),
            enough_tx.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut failures_after_kill = 0;
            for i in worker.. {
                let (path, expected) = &objects[i % objects.len()];
                let r = s3.call(&tenant, "GET", path, &[], &sse, vec![]).await;
                let ok = r.status == 200;
                let count = {
                    let mut served = served.lock().unwrap();
                    served.push(Served {
                        request_id: r.request_id(),
                        status: r.status,
                        correct: r.body_error.is_none() && r.body == *expected,
                    });
                    served.len()
                };
                if count == 60 {
                    let _ = enough_tx.try_send(());
                }
                // Keep going until this worker has seen the outage a few times.
                if !ok && killed.load(std::sync::atomic::Ordering::SeqCst) {
                    failures_after_kill += 1;
                    if failures_after_kill == 3 {
                        break;
                    }
                }
            }
        }));
    }
    drop(enough_tx);
    tokio::time::timeout(PATIENCE, enough_rx.recv())
        .await
        .unwrap()
        .unwrap();
    // SIGKILL while the workers are mid-request.
    trustee.kill().await;
    killed.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in workers {
        tokio::time::timeout(PATIENCE, w).await.unwrap().unwrap();
    }
    let served = std::mem::take(&mut *served.lock().unwrap());
    let ok: Vec<&Served> = served.iter().filter(|s| s.status == 200).collect();
    eprintln!(
        "under load: {} GETs, {} served, {} answered 503",
        served.len(),
        ok.len(),
        served.iter().filter(|s| s.status == 503).count()
    );
    assert!(ok.len() >= 60, "{} GETs served before the kill", ok.len());
    for s in &served {
        assert!(
            (s.status == 200 && s.correct) || s.status == 503,
            "request {}: status {} correct {}",
            s.request_id,
            s.status,
            s.correct
        );
    }
    assert!(served.iter().any(|s| s.status == 503));

    // Restart the trustee on its store: the log verifies and holds every served GET's release.
    let trustee = TrusteeProcess::start(&stack.trustee_config).await;
    let log = stack
        .customer("demo", &trustee.url)
        .audit("demo")
        .await
        .unwrap();
    verify_log(&log, &stack.public_key).unwrap();
    // A key answer: a share release (legacy tenant key) or an evaluation (OPRF).
    let logged: std::collections::HashSet<&str> = log
        .entries
        .iter()
        .filter(|e| is_key_answer(&e.event))
        .filter_map(|e| e.request_id.as_deref())
        .collect();
    for s in &ok {
        assert!(
            logged.contains(s.request_id.as_str()),
            "served GET {} has no key answer in the audit log",
            s.request_id
        );
    }
    trustee.kill().await;
    stack.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_is_503_keeps_the_old_version_and_the_proxy_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    // A real full disk: an 8 MiB tmpfs under the storage root. Mounting needs root; without it
    // this cell cannot run here, and says so instead of faking a full disk.
    let disk = match Tmpfs::mount(&root.join("disk"), 8 * MIB as u64) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SKIPPED full_disk: cannot mount a tmpfs (needs root): {e}");
            return;
        }
    };
    let pki = Pki::new(&root);
    let holders = Holders::start(&pki, &["t1"]).await;
    let (tenant_config, demo) = holders.enroll(&root, "demo", &["t1"], 2, None).await;
    let mut config = proxy_config(&pki, &root, 60);
    let storage_root = disk.path.join("storage");
    config.storage = treuhand::storage::StorageConfig::Fs {
        root: storage_root.clone(),
        fsync: false,
    };
    let proxy = start_proxy(&config, &[tenant_config], &holders.factory()).await;
    let s3 = S3::new(&proxy.endpoint(), &pki.ca_pem, b"http/1.1");
    let sse = sse_c_headers(&demo.share_b64().unwrap());
    s3.create_bucket(&demo, "data").await;
    let old = data(200_000, 5);
    let r = s3
        .call(&demo, "PUT", "/data/old", &[], &sse, old.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let old_file = storage_root.join("tenants/demo/objects/data/fold");
    let stored_old = std::fs::read(&old_file).unwrap();

    // Fill the disk to the last block.
    let filler = disk.path.join("filler");
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            match f.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // Whatever a partial write left: fill byte by byte.
        while f.write_all(&[0]).is_ok() {}
    }

    // Writes fail with a server error. The bodies fit one writer chunk (8 MiB), so the proxy
    // reads them whole before the store fails and the client always gets the answer.
    for (path, body) in [
        ("/data/old", data(500_000, 6)),
        ("/data/new", data(3 * MIB, 7)),
        ("/data/tiny", b"x".to_vec()),
    ] {
        let r = s3.call(&demo, "PUT", path, &[], &sse, body).await;
        assert_eq!(r.status, 503, "PUT {path} on a full disk: {}", r.text());
        assert_text_contains(&r, "ServiceUnavailable");
    }
    // A streamed overwrite (over the 8 MiB writer chunk, so through a staged backend write).
    // The backend's part writes fail in the background; the proxy finds out at the latest
    // when it completes the write, after the whole 12 MiB body: a clean 503.
    let r = s3
        .call(&demo, "PUT", "/data/old", &[], &sse, data(12 * MIB, 9))
        .await;
    assert_eq!(r.status, 503, "streamed PUT on a full disk: {}", r.text());
    // The failed streamed write's staging file is removed in the background.
    wait_until("the failed write's staging file is removed", || {
        staging_files(&storage_root).is_empty()
    })
    .await;
    // The old version is intact and still served, and so is everything else that reads.
    assert_eq!(std::fs::read(&old_file).unwrap(), stored_old);
    let get = s3.call(&demo, "GET", "/data/old", &[], &sse, vec![]).await;
    assert_eq!(get.status, 200, "{}", get.text());
    assert!(get.body == old);
    let list = s3
        .call(&demo, "GET", "/data", &[("list-type", "2")], &[], vec![])
        .await;
    assert_eq!(list.status, 200);
    assert_eq!(xml_field(&list.text(), "KeyCount").as_deref(), Some("1"));
    let missing = s3.call(&demo, "GET", "/data/new", &[], &sse, vec![]).await;
    assert_eq!(missing.status, 404);

    // Space again: the same proxy takes writes without a restart.
    std::fs::remove_file(&filler).unwrap();
    let new = data(3 * MIB, 8);
    let r = s3
        .call(&demo, "PUT", "/data/new", &[], &sse, new.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let get = s3.call(&demo, "GET", "/data/new", &[], &sse, vec![]).await;
    assert!(get.status == 200 && get.body == new);
    assert!(
        staging_files(&storage_root).is_empty(),
        "failed writes left staging files: {:?}",
        staging_files(&storage_root)
    );
    proxy.stop().await;
    drop(disk);
}

/// Where segment `index` of a single-layout object starts in its stored bytes.
fn segment_offset(stored: &[u8], index: usize) -> usize {
    let header_len = treuhand::format::header::header_len_hint(stored).unwrap();
    header_len + index * (treuhand::format::DEFAULT_SEGMENT_SIZE as usize + 16)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_large_objects_never_return_altered_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let pki = Pki::new(&root);
    let holders = Holders::start(&pki, &["t1"]).await;
    let (tenant_config, demo) = holders.enroll(&root, "demo", &["t1"], 2, None).await;
    let config = proxy_config(&pki, &root, 60);
    let proxy = start_proxy(&config, &[tenant_config], &holders.factory()).await;
    let sse = sse_c_headers(&demo.share_b64().unwrap());
    let h1 = S3::new(&proxy.endpoint(), &pki.ca_pem, b"http/1.1");
    let h2 = S3::new(&proxy.endpoint(), &pki.ca_pem, b"h2");
    h1.create_bucket(&demo, "data").await;
    // 3 MiB + 1000: 48 full segments and a short final one; streamed on GET (over 1 MiB).
    let plaintext = data(3 * MIB + 1000, 13);
    let segment = treuhand::format::DEFAULT_SEGMENT_SIZE as usize;
    let stride = segment + 16;
    let objects = root.join("storage/tenants/demo/objects/data");

    // (name, how the stored bytes are damaged, the segment where decryption must stop; None:
    // the damage is found before the response starts).
    type Damage = fn(&mut Vec<u8>);
    let cases: [(&str, Damage, Option<usize>); 7] = [
        ("header", |b| b[20] ^= 0x01, None),
        (
            "segment-0",
            |b| {
                let at = segment_offset(b, 0) + 100;
                b[at] ^= 0x01;
            },
            Some(0),
        ),
        (
            "segment-20",
            |b| {
                let at = segment_offset(b, 20) + 5000;
                b[at] ^= 0x80;
            },
            Some(20),
        ),
        (
            "tag-30",
            |b| {
                // The last byte of segment 30's tag.
                let at = segment_offset(b, 31) - 1;
                b[at] ^= 0x01;
            },
            Some(30),
        ),
        (
            "cut-tail",
            |b| {
                let len = b.len() - 500;
                b.truncate(len);
            },
            Some(48),
        ),
        (
            "cut-segments",
            |b| {
                // Drop the final segment and part of the one before: the stored size still
                // describes a valid layout, whose final segment is not the real one.
                let len = b.len() - 1016 - 30_000;
                b.truncate(len);
            },
            Some(47),
        ),
        (
            "cut-at-boundary",
            |b| {
                // Drop the final segment whole: no layout has a stored size that ends on a
                // segment boundary, so this is found before the response starts.
                let len = segment_offset(b, 48);
                b.truncate(len);
            },
            None,
        ),
    ];
    for (name, damage, stops_at) in cases {
        let path = format!("/data/{name}");
        let r = h1
            .call(&demo, "PUT", &path, &[], &sse, plaintext.clone())
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let file = objects.join(format!("f{name}"));
        let mut stored = std::fs::read(&file).unwrap();
        assert_eq!(
            segment_offset(&stored, 49) - stride + 1000 + 16,
            stored.len(),
            "the layout this test assumes"
        );
        damage(&mut stored);
        std::fs::write(&file, &stored).unwrap();

        for (version, client) in [("HTTP/1.1", &h1), ("HTTP/2", &h2)] {
            let context = format!("{name} over {version}");
            let sent = client
                .send(Some(&demo), "GET", &path, &[], &sse, Vec::new())
                .await;
            let got = match (sent, stops_at) {
                (Ok(got), _) => got,
                // Segment 0 fails right after the status line was queued: the reset (HTTP/2)
                // or the closed connection (HTTP/1.1) can reach the client library before it
                // hands out the response head. Either way no byte of plaintext arrived.
                (Err(e), Some(0)) => {
                    eprintln!("{context}: no response head, only: {e}");
                    continue;
                }
                (Err(e), _) => panic!("{context}: no response: {e:?}"),
            };
            match stops_at {
                None => {
                    assert_eq!(got.status, 502, "{context}: {}", got.text());
                    assert!(got.text().contains("ObjectIntegrityError"), "{context}");
                    assert!(!contains(&got.body, &plaintext[..64]), "{context}");
                }
                Some(bad) => {
                    // The status line and Content-Length went out before the damaged
                    // segment was read: the client sees 200 and then a body cut short.
                    assert_eq!(got.status, 200, "{context}");
                    let announced = got.content_length().unwrap() as usize;
                    let error = got.body_error.as_deref().unwrap_or_else(|| {
                        panic!(
                            "{context}: the body ended cleanly with {} of {announced} bytes",
                            got.body.len()
                        )
                    });
                    eprintln!(
                        "{context}: 200, {} of {announced} bytes, then: {error}",
                        got.body.len()
                    );
                    // HTTP/2: the stream is reset; HTTP/1.1: the connection closes early.
                    if version == "HTTP/2" {
                        assert!(error.contains("INTERNAL_ERROR"), "{context}: {error}");
                    }
                    assert!(got.body.len() < announced, "{context}: a short read");
                    // Only whole authenticated segments before the damaged one arrived, and
                    // every byte that did is the original plaintext.
                    assert!(
                        got.body.len() <= bad * segment,
                        "{context}: {} bytes arrived, the damage is in segment {bad}",
                        got.body.len()
                    );
                    assert!(
                        got.body == plaintext[..got.body.len()],
                        "{context}: altered plaintext"
                    );
                }
            }
        }
    }
    // A Range GET that stays clear of the damage still works (each segment stands alone).
    let mut range = sse.clone();
    range.push(("range", format!("bytes=0-{}", 10 * segment - 1)));
    let got = h1
        .call(&demo, "GET", "/data/segment-20", &[], &range, vec![])
        .await;
    assert_eq!(got.status, 206);
    assert!(got.body == plaintext[..10 * segment]);
    // The proxy keeps serving intact objects on the same connections.
    let r = h1
        .call(&demo, "PUT", "/data/intact", &[], &sse, plaintext.clone())
        .await;
    assert_eq!(r.status, 200);
    for client in [&h1, &h2] {
        let got = client
            .call(&demo, "GET", "/data/intact", &[], &sse, vec![])
            .await;
        assert_eq!(got.status, 200);
        assert!(got.body_error.is_none() && got.body == plaintext);
    }
    proxy.stop().await;
}
