//! Key rotation as the running proxy sees it: the registration in `tenants_dir` is rewritten
//! (as `treuhand tenant rotate` / `shred` do: temp file plus rename) and the proxy, started
//! with `proxy::run` in-process over real TLS with a real trustee, picks it up by itself — no
//! restart, no SIGHUP. New writes use the new version, old objects stay readable, a retired
//! share is refused naming the current version, and a removed version is refused.
// Tests may unwrap/expect/panic: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::*;
use treuhand::proxy::config::TenantConfig;

/// The tenant these tests rotate: SSE-C, one trustee, 2-of-2.
const DEMO: [TenantSpec<'static>; 1] = [("demo", &["trustee"], 2, None)];

/// A proxy started the way the binary starts it (`proxy::run`), so it follows `tenants_dir`.
struct Running {
    enrolled: Enrolled,
    /// Its registration as the test last wrote it.
    registration: TenantConfig,
    tenant: TestTenant,
    raw: Raw,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Enrolls `demo`, starts the proxy with a key cache of `ttl_secs` and creates the bucket.
    async fn start(ttl_secs: u64) -> Self {
        let enrolled = Enrolled::start(&["trustee"], &DEMO).await;
        let config = proxy_config(&enrolled.pki, &enrolled.root, ttl_secs);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let factory = enrolled.holders.factory();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let listeners = treuhand::proxy::Listeners {
                s3: listener,
                metrics: None,
            };
            treuhand::proxy::run(config, listeners, &factory, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        let raw = Raw::new(&Proxy::attach(addr), &enrolled.pki);
        let registration = enrolled.configs[0].clone();
        let tenant = copy_tenant(&enrolled.tenants[0], None);
        raw.create_bucket(&tenant, BUCKET).await;
        Self {
            enrolled,
            registration,
            tenant,
            raw,
            stop: Some(stop),
            task,
        }
    }

    /// Rotates `demo` as `treuhand tenant rotate` will: a new key version from the real
    /// ceremony (`crypto::scheme::split`, its trustee share deposited at the trustee), the
    /// old current version pushed to the front of `previous`, the registration rewritten
    /// atomically. Returns the tenant with the new version's share.
    async fn rotate(&mut self) -> TestTenant {
        let version = self.registration.metadata.key_version + 1;
        let scratch = self.enrolled.root.join(format!("rotate-v{version}"));
        let holders = &self.enrolled.holders;
        let params = treuhand::tenant::CreateParams {
            tenant: "demo".into(),
            key_version: version,
            threshold: 2,
            trustees: vec![treuhand::tenant::TrusteeSpec {
                holder: "trustee".into(),
                url: holders.url("trustee"),
            }],
            customer_holder_url: None,
            access_key_id: self.tenant.access_key_id.clone(),
            secret_access_key: self.tenant.secret_access_key.clone().into(),
            registration_dir: scratch.join("tenants"),
            share_dir: scratch.join("shares"),
        };
        let depositor = treuhand::tenant::deposit::TrusteeDepositor::from_tls(
            holders.customer_tls("demo"),
            vec![PROXY_NAME.into()],
        );
        let (created, rotated) = ceremony(&params, &depositor).await;
        let mut next = self.registration.clone();
        let old = std::mem::replace(&mut next.metadata, created.metadata);
        next.previous.insert(0, old);
        self.write_registration(next);
        rotated
    }

    /// Rewrites `tenants/demo.toml` atomically (temp file plus rename).
    fn write_registration(&mut self, registration: TenantConfig) {
        let dir = self.enrolled.root.join("tenants");
        let temp = dir.join("demo.toml.tmp");
        std::fs::write(&temp, toml::to_string(&registration).unwrap()).unwrap();
        std::fs::rename(&temp, dir.join("demo.toml")).unwrap();
        self.registration = registration;
    }

    async fn put(&self, tenant: &TestTenant, key: &str, body: &[u8]) -> Response {
        let headers = sse_c_headers(&tenant.share_b64().unwrap());
        let path = format!("/{BUCKET}/{key}");
        self.raw.put(tenant, &path, &headers, body.to_vec()).await
    }

    async fn get(&self, tenant: &TestTenant, key: &str) -> Response {
        let headers = sse_c_headers(&tenant.share_b64().unwrap());
        self.raw
            .get(tenant, &format!("/{BUCKET}/{key}"), &headers)
            .await
    }

    /// Polls PUTs with `tenant`'s share until one is stored: the proxy has loaded the version
    /// that share belongs to. Returns the object key written.
    async fn wait_for_writes_with(&self, tenant: &TestTenant) -> String {
        let started = Instant::now();
        for i in 0.. {
            let key = format!("probe-{i}");
            let put = self.put(tenant, &key, b"probe").await;
            if put.status == 200 {
                eprintln!(
                    "the proxy picked up the new registration after {:?}",
                    started.elapsed()
                );
                return key;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the proxy never picked up the new registration: {} {}",
                put.status,
                put.text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        unreachable!()
    }

    /// The key version each stored object of `demo` names, by stored file.
    fn stored_versions(&self) -> Vec<u32> {
        let objects = self.enrolled.root.join("storage/tenants/demo/objects");
        let mut versions: Vec<u32> = stored_files(&objects)
            .iter()
            .filter_map(|(_, bytes)| treuhand::format::peek_header(bytes).ok())
            .map(|info| info.key_version)
            .collect();
        versions.sort_unstable();
        versions
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

/// `tenant` with another raw share (or the same).
fn copy_tenant(tenant: &TestTenant, share: Option<[u8; 32]>) -> TestTenant {
    TestTenant {
        id: tenant.id.clone(),
        access_key_id: tenant.access_key_id.clone(),
        secret_access_key: tenant.secret_access_key.clone(),
        share: share.or(tenant.share),
    }
}

#[tokio::test]
async fn after_a_rotation_new_writes_use_the_new_version_and_old_objects_stay_readable() {
    let mut s = Running::start(3600).await;
    let v1 = copy_tenant(&s.tenant, None);
    let put = s.put(&v1, "old", b"written under version 1").await;
    assert_eq!(put.status, 200, "{}", put.text());
    // A warm cache: the old object's key is cached for an hour.
    assert_eq!(s.get(&v1, "old").await.status, 200);

    let v2 = s.rotate().await;
    assert_ne!(v1.share, v2.share, "a new version has a new customer share");
    let probe = s.wait_for_writes_with(&v2).await;
    let put = s.put(&v2, "new", b"written under version 2").await;
    assert_eq!(put.status, 200, "{}", put.text());

    // Every new object is under version 2; the old one stays under version 1.
    let versions = s.stored_versions();
    assert_eq!(
        versions.iter().filter(|v| **v == 1).count(),
        1,
        "{versions:?}"
    );
    assert!(
        versions.iter().filter(|v| **v == 2).count() >= 2,
        "{versions:?}"
    );
    assert!(versions.iter().all(|v| *v == 1 || *v == 2), "{versions:?}");

    let old = s.get(&v1, "old").await;
    assert_eq!(
        (old.status, old.body.as_slice()),
        (200, b"written under version 1".as_slice()),
        "{}",
        old.text()
    );
    let new = s.get(&v2, "new").await;
    assert_eq!(
        (new.status, new.body.as_slice()),
        (200, b"written under version 2".as_slice()),
        "{}",
        new.text()
    );
    assert_eq!(s.get(&v2, &probe).await.body, b"probe");
    s.stop().await;
}

#[tokio::test]
async fn a_put_with_a_retired_share_is_refused_naming_the_current_version() {
    let mut s = Running::start(3600).await;
    let v1 = copy_tenant(&s.tenant, None);
    let before = s.put(&v1, "before", b"v1").await;
    assert_eq!(before.status, 200, "{}", before.text());
    let v2 = s.rotate().await;
    s.wait_for_writes_with(&v2).await;
    let stored = s.stored_versions();

    let refused = s.put(&v1, "after", b"with the retired share").await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    let text = refused.text();
    assert_text_contains(&refused, "InvalidArgument");
    assert!(
        text.contains("customer share of key version 1, which is retired for writes"),
        "{text}"
    );
    assert!(text.contains("the current key version is 2"), "{text}");
    assert!(text.contains("demo.v2.share"), "{text}");
    assert!(
        !text.contains(&v1.share_b64().unwrap()),
        "the share is never echoed"
    );
    assert_eq!(s.stored_versions(), stored, "nothing was stored");
    // A multipart upload is a write too.
    let headers = sse_c_headers(&v1.share_b64().unwrap());
    let create = s
        .raw
        .send(
            Some(&v1),
            "POST",
            &format!("/{BUCKET}/multi"),
            &[("uploads", "")],
            &headers,
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(create.status, 400, "{}", create.text());
    assert!(
        create.text().contains("retired for writes"),
        "{}",
        create.text()
    );

    // A share of no version stays a plain refusal.
    let mut other = [0x42; 32];
    other[31] = 0; // a canonical scalar: a well-formed share of no version
    let stranger = copy_tenant(&v1, Some(other));
    let wrong = s.put(&stranger, "after", b"x").await;
    assert_eq!(wrong.status, 403, "{}", wrong.text());
    assert!(!wrong.text().contains("retired"), "{}", wrong.text());
    // The retired share still reads what it wrote.
    let read = s.get(&v1, "before").await;
    assert_eq!((read.status, read.body.as_slice()), (200, b"v1".as_slice()));
    s.stop().await;
}

#[tokio::test]
async fn a_removed_version_is_refused_after_the_reload() {
    let mut s = Running::start(3600).await;
    let v1 = copy_tenant(&s.tenant, None);
    let put = s.put(&v1, "old", b"version 1").await;
    assert_eq!(put.status, 200, "{}", put.text());
    let v2 = s.rotate().await;
    s.wait_for_writes_with(&v2).await;
    // Readable (and its key warm in the cache) while version 1 is registered.
    assert_eq!(s.get(&v1, "old").await.status, 200);
    assert_eq!(s.get(&v1, "old").await.status, 200);

    // `tenant shred --version 1` removes it from `previous`.
    let mut next = s.registration.clone();
    next.previous.retain(|m| m.key_version != 1);
    s.write_registration(next);
    let started = Instant::now();
    let refused = loop {
        let r = s.get(&v1, "old").await;
        if r.status != 200 {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "version 1 is still served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "a removed version was refused after {:?}",
        started.elapsed()
    );
    let text = refused.text();
    assert_eq!(refused.status, 500, "{text}");
    assert!(
        text.contains("key version 1 of tenant demo, which is not registered"),
        "{text}"
    );
    assert!(!contains(&refused.body, b"version 1\n"), "no plaintext");
    // The current version is untouched.
    let put = s.put(&v2, "still", b"v2").await;
    assert_eq!(put.status, 200, "{}", put.text());
    s.stop().await;
}

#[tokio::test]
async fn a_shred_at_the_trustee_reaches_a_warm_cache_within_a_second() {
    // An hour's TTL: only the revocation stream (or, while it is down, the one-second
    // fallback TTL) can stop the cached key from being served.
    let s = Running::start(3600).await;
    let v1 = copy_tenant(&s.tenant, None);
    let put = s.put(&v1, "doomed", b"shred me").await;
    assert_eq!(put.status, 200, "{}", put.text());
    let evaluations = s.enrolled.holders.releases("trustee", "demo").await;
    for _ in 0..3 {
        assert_eq!(s.get(&v1, "doomed").await.status, 200);
    }
    // The PUT cached the object's key; a reset when the revocation stream first connected may
    // have dropped it, so at most one read asked the trustee.
    let asked = s.enrolled.holders.releases("trustee", "demo").await - evaluations;
    assert!(
        asked <= 1,
        "the reads are served from the warm cache ({asked} evaluations)"
    );

    let customer = treuhand::trustee::client::TrusteeClient::new(
        &s.enrolled.holders.url("trustee"),
        s.enrolled.holders.customer_tls("demo"),
    )
    .unwrap();
    let request = treuhand::trustee::wire::ShredRequest { request_id: None };
    customer.shred("demo", 1, &request).await.unwrap();
    let shredded = Instant::now();
    let refused = loop {
        let r = s.get(&v1, "doomed").await;
        if r.status != 200 {
            break r;
        }
        assert!(
            shredded.elapsed() < Duration::from_secs(30),
            "the shredded key is still served from the cache"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!(
        "shred-to-refusal delay with a warm cache (TTL 3600 s): {:?}",
        shredded.elapsed()
    );
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.text().contains("key_shredded"),
        "{}",
        refused.text()
    );
    s.stop().await;
}
