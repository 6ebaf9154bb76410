//! Per-object keys (OPRF tenants, format v3) through the real S3 handlers, with in-process
//! key holders that evaluate real shares of a `scheme::split` (the trustees' /v2 endpoint is
//! tested with the trustee): what is stored, what the proxy process holds afterwards, and how
//! it fails closed.
// Tests may unwrap/expect/panic: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::TryStreamExt as _;
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use support::*;
use treuhand::crypto::oprf::{self, Evaluation, KeyShare, ObjectId, ObjectIdentity};
use treuhand::crypto::scheme::{self, SplitOptions};
use treuhand::crypto::{DekContext, KeyId, KeyMetadata, envelope, shamir};
use treuhand::proxy::config::{ConfigError, TenantConfig, TrusteeRef};
use treuhand::proxy::keys::{Held, ReleaseContext, ReleaseError, ShareSource};
use treuhand::secret::{Kek, Share};
use treuhand::trustee::wire::EvaluateRequest;

/// How a fake holder answers.
#[derive(Clone, Copy)]
enum Answer {
    Honest,
    /// Evaluates with the share of another holder x (a valid proof for the wrong key).
    OtherShare(u8),
    Unreachable,
}

/// A key holder that evaluates one real share.
struct FakeHolder {
    share: KeyShare,
    other: Option<KeyShare>,
    answer: Answer,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl ShareSource for FakeHolder {
    async fn release(&self, _: &str, _: u32, _: &ReleaseContext) -> Result<Share, ReleaseError> {
        Err(ReleaseError::Denied {
            reason: "oprf_key_not_releasable".into(),
        })
    }

    async fn evaluate(
        &self,
        tenant: &str,
        key_version: u32,
        request: &EvaluateRequest,
    ) -> Result<Evaluation, ReleaseError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let id: [u8; 32] = STANDARD
            .decode(&request.object.id)
            .unwrap()
            .try_into()
            .unwrap();
        let identity = ObjectIdentity {
            tenant: tenant.into(),
            key_version,
            bucket: request.object.bucket.clone(),
            key: request.object.key.clone(),
            id: ObjectId(id),
        };
        match self.answer {
            Answer::Honest => Ok(oprf::evaluate(&self.share, &identity).unwrap()),
            Answer::OtherShare(_) => {
                Ok(oprf::evaluate(self.other.as_ref().unwrap(), &identity).unwrap())
            }
            Answer::Unreachable => Err(ReleaseError::Unreachable("connection refused".into())),
        }
    }
}

/// Sources by URL.
#[derive(Default)]
struct Fakes(HashMap<String, Arc<FakeHolder>>);

impl treuhand::proxy::SourceFactory for Fakes {
    fn source(&self, url: &str) -> Result<Arc<dyn ShareSource>, ConfigError> {
        let holder = self.0.get(url).ok_or_else(|| ConfigError(url.into()))?;
        Ok(holder.clone())
    }
}

/// An OPRF tenant `acme` (SSE-C) with trustees `t1`.. answering as given, threshold `k`.
fn oprf_tenant(
    version: u32,
    k: u8,
    answers: &[Answer],
    fakes: &mut Fakes,
) -> (TenantConfig, TestTenant) {
    let key = KeyId::new("acme", version).unwrap();
    let mut names = vec!["customer".to_owned()];
    names.extend((1..=answers.len()).map(|i| format!("t{i}")));
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (metadata, shares) = scheme::split(&key, k, &refs, SplitOptions::default()).unwrap();
    let key_share = |i: usize| scheme::key_share(&metadata, &shares[i]).unwrap();
    let mut trustees = Vec::new();
    for (i, answer) in answers.iter().enumerate() {
        let url = format!("https://t{}.v{version}.fake", i + 1);
        let other = match answer {
            Answer::OtherShare(x) => Some(key_share(usize::from(*x) - 1)),
            _ => None,
        };
        fakes.0.insert(
            url.clone(),
            Arc::new(FakeHolder {
                share: key_share(i + 1),
                other,
                answer: *answer,
                calls: AtomicUsize::new(0),
            }),
        );
        trustees.push(TrusteeRef {
            holder: format!("t{}", i + 1),
            url,
        });
    }
    registration(metadata, trustees, *shares[0].expose_secret())
}

fn registration(
    metadata: KeyMetadata,
    trustees: Vec<TrusteeRef>,
    share: [u8; 32],
) -> (TenantConfig, TestTenant) {
    let config = TenantConfig {
        access_key_id: "AKACME".into(),
        secret_access_key: Some("secret-acme-0123456789".to_owned().into()),
        customer_holder: "customer".into(),
        customer_url: None,
        trustees,
        metadata,
        previous: Vec::new(),
    };
    let tenant = TestTenant {
        id: "acme".into(),
        access_key_id: "AKACME".into(),
        secret_access_key: "secret-acme-0123456789".into(),
        share: Some(share),
    };
    (config, tenant)
}

struct Setup {
    dir: tempfile::TempDir,
    pki: Pki,
    proxy: Proxy,
    raw: Raw,
    tenant: TestTenant,
    fakes: Arc<Fakes>,
}

impl Setup {
    async fn start(k: u8, answers: &[Answer]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let mut fakes = Fakes::default();
        let (config, tenant) = oprf_tenant(1, k, answers, &mut fakes);
        let proxy_config = proxy_config(&pki, dir.path(), 60);
        let proxy = start_proxy(&proxy_config, &[config], &fakes).await;
        let raw = Raw::new(&proxy, &pki);
        raw.create_bucket(&tenant, BUCKET).await;
        Self {
            dir,
            pki,
            proxy,
            raw,
            tenant,
            fakes: Arc::new(fakes),
        }
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        sse_c_headers(&self.tenant.share_b64().unwrap())
    }

    /// The stored object files of `acme`, by object key.
    fn stored(&self) -> Vec<(String, Vec<u8>)> {
        let root = self.dir.path().join("storage/tenants/acme/objects");
        stored_files(&root)
            .into_iter()
            .map(|(path, bytes)| (path.to_string_lossy().into_owned(), bytes))
            .collect()
    }

    fn calls(&self) -> usize {
        let fakes = self.fakes.0.values();
        fakes.map(|f| f.calls.load(Ordering::SeqCst)).sum()
    }
}

/// The plaintext of a stored single-run object if `kek` opens it as `bucket`/`key`.
fn open_with(kek: &Kek, identity: &ObjectIdentity, stored: &[u8]) -> Option<Vec<u8>> {
    let key = KeyId::new(&identity.tenant, identity.key_version).unwrap();
    let ctx = DekContext {
        key: &key,
        bucket: &identity.bucket,
        object: &identity.key,
    };
    let (cipher, _) = treuhand::format::open_object(kek, &ctx, stored).ok()?;
    let layout = cipher.single_layout(stored.len() as u64).ok()?;
    let len = layout.plaintext_len();
    let (range, mut decryptor) = layout.decryptor(0..len).ok()?;
    let mut out = Vec::new();
    decryptor
        .push(&stored[range.start as usize..range.end as usize], &mut out)
        .ok()?;
    decryptor.finish().ok()?;
    Some(out)
}

#[tokio::test]
async fn a_subverted_proxy_knows_only_the_keys_of_objects_it_handled() {
    let s = Setup::start(2, &[Answer::Honest]).await;
    let bodies: [(&str, &[u8]); 3] = [
        ("a", b"object A, read again later"),
        ("b", b"object B, read again later"),
        ("c", b"object C, written and never read again"),
    ];
    for (key, body) in bodies {
        let path = format!("/{BUCKET}/{key}");
        let put = s
            .raw
            .put(&s.tenant, &path, &s.headers(), body.to_vec())
            .await;
        assert_eq!(put.status, 200, "{}", put.text());
    }
    // Every object is format v3 with its own random id.
    let stored = s.stored();
    assert_eq!(stored.len(), 3);
    let mut ids = std::collections::HashSet::new();
    for (_, bytes) in &stored {
        let info = treuhand::format::peek_header(bytes).unwrap();
        assert_eq!((info.version, info.key_version), (3, 1));
        ids.insert(info.object_id.unwrap().0);
    }
    assert_eq!(ids.len(), 3);

    // The process is taken over now: what it kept from the writes is gone (a restart), and
    // from here on it handles GETs of A and B only.
    s.proxy.keys.clear();
    for (key, body) in &bodies[..2] {
        let r = s
            .raw
            .get(&s.tenant, &format!("/{BUCKET}/{key}"), &s.headers())
            .await;
        assert_eq!((r.status, r.body.as_ref()), (200, *body), "{}", r.text());
    }

    // Everything the process holds, handed to a decryptor.
    let held = s.proxy.keys.holdings();
    assert_eq!(held.len(), 2, "one key per object handled");
    let mut opened: Vec<Vec<u8>> = Vec::new();
    for (_, bytes) in &stored {
        for h in &held {
            match h {
                Held::Object(identity, kek) => {
                    if let Some(plaintext) = open_with(kek, identity, bytes) {
                        opened.push(plaintext);
                    }
                }
                other => panic!("an OPRF tenant's proxy holds a tenant key: {other:?}"),
            }
        }
    }
    opened.sort();
    let expected: Vec<Vec<u8>> = bodies[..2].iter().map(|(_, b)| b.to_vec()).collect();
    assert_eq!(opened, expected, "A and B open, C does not");
    // C's bytes stay closed to everything the process holds.
    let c = stored.iter().filter(|(_, bytes)| {
        held.iter().all(|h| match h {
            Held::Object(identity, kek) => open_with(kek, identity, bytes).is_none(),
            _ => false,
        })
    });
    let c: Vec<_> = c.collect();
    assert_eq!(c.len(), 1);
    assert!(!contains(&c[0].1, bodies[2].1), "stored encrypted");
}

#[tokio::test]
async fn oprf_objects_round_trip_single_copy_and_multipart_and_a_cached_key_needs_the_share() {
    let s = Setup::start(2, &[Answer::Honest]).await;
    let key = s.tenant.share_b64().unwrap();
    let store = client(&s.proxy, &s.pki, &s.tenant, Some(&key), BUCKET);
    let body = data(200_000, 5);
    put_object(store.as_ref(), "one", body.clone()).await;
    assert_eq!(
        get_object(store.as_ref(), "one").await.as_ref(),
        body.as_slice()
    );
    store
        .copy(&OsPath::from("one"), &OsPath::from("two"))
        .await
        .unwrap();
    assert_eq!(
        get_object(store.as_ref(), "two").await.as_ref(),
        body.as_slice()
    );
    let parts = [data(70_000, 1), data(130_000, 2), data(7, 3)];
    let mut upload = store.put_multipart(&OsPath::from("mp")).await.unwrap();
    for p in &parts {
        upload.put_part(PutPayload::from(p.clone())).await.unwrap();
    }
    upload.complete().await.unwrap();
    assert_eq!(
        get_object(store.as_ref(), "mp").await.as_ref(),
        parts.concat().as_slice()
    );
    let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
    assert_eq!(listed.len(), 3);
    for (_, bytes) in s.stored() {
        assert_eq!(treuhand::format::peek_header(&bytes).unwrap().version, 3);
    }
    // A warm key: another share is refused before the cache, and no holder is asked.
    let asked = s.calls();
    let wrong = STANDARD.encode([7u8; 32]);
    let r = s
        .raw
        .get(&s.tenant, &format!("/{BUCKET}/one"), &sse_c_headers(&wrong))
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = s.raw.get(&s.tenant, &format!("/{BUCKET}/one"), &[]).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(s.calls(), asked);
}

#[tokio::test]
async fn a_wrong_element_or_an_outage_stores_and_serves_nothing() {
    // 3-of-3: both trustees are needed; t2 answers with t1's share.
    let s = Setup::start(3, &[Answer::Honest, Answer::OtherShare(2)]).await;
    let r = s
        .raw
        .put(
            &s.tenant,
            &format!("/{BUCKET}/x"),
            &s.headers(),
            b"secret".to_vec(),
        )
        .await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_text_contains(&r, "t2");
    assert!(s.stored().is_empty(), "nothing written");
    assert!(s.proxy.keys.holdings().is_empty(), "no key derived");

    let s = Setup::start(2, &[Answer::Unreachable]).await;
    let r = s
        .raw
        .put(
            &s.tenant,
            &format!("/{BUCKET}/x"),
            &s.headers(),
            b"secret".to_vec(),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(s.stored().is_empty(), "nothing written");
}

#[tokio::test]
async fn an_object_under_another_key_version_or_scheme_is_a_clear_500() {
    let s = Setup::start(2, &[Answer::Honest]).await;
    let path = format!("/{BUCKET}/v1");
    let put = s
        .raw
        .put(&s.tenant, &path, &s.headers(), b"secret".to_vec())
        .await;
    assert_eq!(put.status, 200);
    let registry = s.proxy.tenants.as_ref().unwrap();

    // Key version 2 registered (an OPRF key): the v1 object names its version.
    let mut fakes = Fakes::default();
    let (v2, v2_tenant) = oprf_tenant(2, 2, &[Answer::Honest], &mut fakes);
    treuhand::proxy::reload(registry, &s.proxy.keys, &[v2], &fakes).unwrap();
    let r = s
        .raw
        .get(
            &v2_tenant,
            &path,
            &sse_c_headers(&v2_tenant.share_b64().unwrap()),
        )
        .await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_text_contains(&r, "key version 1");
    assert!(!contains(&r.body, b"secret"));

    // A legacy key registered under version 1: a v3 object is not its to open.
    let tmk = envelope::generate_tmk().unwrap();
    let key = KeyId::new("acme", 1).unwrap();
    let (metadata, shares) = shamir::split(&tmk, &key, 2, &["customer", "t1"]).unwrap();
    let trustee = TrusteeRef {
        holder: "t1".into(),
        url: "https://legacy.fake".into(),
    };
    let (legacy, legacy_tenant) = registration(metadata, vec![trustee], *shares[0].expose_secret());
    let mut fakes = Fakes::default();
    fakes.0.insert(
        "https://legacy.fake".into(),
        // Never asked: the scheme check comes first.
        Arc::new(FakeHolder {
            share: KeyShare::from_bytes(2, &[1; 32]).unwrap(),
            other: None,
            answer: Answer::Unreachable,
            calls: AtomicUsize::new(0),
        }),
    );
    treuhand::proxy::reload(registry, &s.proxy.keys, &[legacy], &fakes).unwrap();
    let headers = sse_c_headers(&legacy_tenant.share_b64().unwrap());
    let r = s.raw.get(&legacy_tenant, &path, &headers).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_text_contains(&r, "format v3");
    assert!(!contains(&r.body, b"secret"));
}

#[tokio::test]
async fn tenants_from_tenant_create_write_v3_and_every_holder_logs_the_object_it_evaluated() {
    let s = Stack::start(&["trustee", "holder"], &DEMO_AND_HOLDER, |c| {
        c.cache.ttl_secs = 0
    })
    .await;
    for (tenant, holders, headers) in [
        (
            s.demo(),
            &["trustee"][..],
            sse_c_headers(&s.demo().share_b64().unwrap()),
        ),
        (
            s.tenant("demo-holder"),
            &["trustee", "holder"][..],
            Vec::new(),
        ),
    ] {
        let path = format!("/{BUCKET}/obj");
        let put = s
            .raw
            .put(tenant, &path, &headers, b"per-object".to_vec())
            .await;
        assert_eq!(put.status, 200, "{}", put.text());
        let get = s.raw.get(tenant, &path, &headers).await;
        assert_eq!(get.body, b"per-object", "{}", get.text());
        let files = s.object_files(&tenant.id);
        let [(_, stored)] = exactly(files);
        let info = treuhand::format::peek_header(&stored).unwrap();
        assert_eq!(info.version, 3);
        let id = hex::encode(info.object_id.unwrap().0);
        // The PUT and the GET, each logged with the object and its id, at every holder asked.
        for holder in holders {
            let log = s.holders.audit(holder, &tenant.id).await;
            let evaluations: Vec<_> = log
                .entries
                .iter()
                .filter(|e| e.event == treuhand::trustee::audit::AuditEvent::Evaluate)
                .collect();
            assert_eq!(evaluations.len(), 2, "{holder}");
            for e in evaluations {
                let object = e.object.as_ref().unwrap();
                assert_eq!(
                    (object.bucket.as_str(), object.key.as_str()),
                    (BUCKET, "obj")
                );
                assert_eq!(e.object_id.as_deref(), Some(id.as_str()), "{holder}");
            }
        }
    }
    s.proxy.stop().await;
}
