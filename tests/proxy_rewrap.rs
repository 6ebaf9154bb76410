//! Rewrap (docs/rewrap.md): an in-place CopyObject of an object under an older key version
//! moves it to the current version by re-wrapping its DEK. Through the real S3 handlers over
//! TLS, with in-process key holders that evaluate real shares of two OPRF key versions.
// Tests may unwrap/expect/panic: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use md5::Digest as _;
use object_store::path::Path as OsPath;
use object_store::{ObjectStoreExt as _, PutPayload};
use support::*;
use treuhand::crypto::KeyId;
use treuhand::crypto::oprf::{self, Evaluation, KeyShare, ObjectId, ObjectIdentity};
use treuhand::crypto::scheme::{self, SplitOptions};
use treuhand::proxy::config::{ConfigError, TenantConfig, TrusteeRef};
use treuhand::proxy::keys::{ReleaseContext, ReleaseError, ShareSource};
use treuhand::secret::Share;
use treuhand::trustee::wire::EvaluateRequest;

const TRUSTEE_URL: &str = "https://t1.fake";
/// The customer's holder, for a holder tenant (no SSE-C headers).
const CUSTOMER_URL: &str = "https://customer.fake";

/// A key holder with a share of every key version, evaluating the one a request names.
struct FakeHolder {
    shares: HashMap<u32, KeyShare>,
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
        let share = self.shares.get(&key_version).ok_or(ReleaseError::Denied {
            reason: "unknown key version".into(),
        })?;
        Ok(oprf::evaluate(share, &identity).unwrap())
    }
}

/// The holders by URL.
struct Fakes(HashMap<&'static str, Arc<FakeHolder>>);

impl treuhand::proxy::SourceFactory for Fakes {
    fn source(&self, url: &str) -> Result<Arc<dyn ShareSource>, ConfigError> {
        let holder = self.0.get(url).ok_or_else(|| ConfigError(url.into()))?;
        Ok(holder.clone())
    }
}

/// Tenant `acme`, SSE-C, two OPRF key versions (2-of-2: customer and `t1`). Objects are
/// written while version 1 is current; then version 2 becomes current, with version 1
/// decrypt-only in `previous`.
struct Setup {
    dir: tempfile::TempDir,
    pki: Pki,
    proxy: Proxy,
    raw: Raw,
    tenant: TestTenant,
    /// Base64 customer shares of versions 1 and 2.
    shares: [String; 2],
    v2: TenantConfig,
    fakes: Fakes,
    /// The customer's share is at a holder: requests carry no SSE-C headers.
    holder_tenant: bool,
}

impl Setup {
    async fn start() -> Self {
        Self::start_with(false).await
    }

    async fn start_with(holder_tenant: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let mut metadata = Vec::new();
        let mut customer = Vec::new();
        let mut holder = HashMap::new();
        let mut customer_holder = HashMap::new();
        for version in [1, 2] {
            let key = KeyId::new("acme", version).unwrap();
            let (m, shares) =
                scheme::split(&key, 2, &["customer", "t1"], SplitOptions::default()).unwrap();
            holder.insert(version, scheme::key_share(&m, &shares[1]).unwrap());
            customer_holder.insert(version, scheme::key_share(&m, &shares[0]).unwrap());
            customer.push(STANDARD.encode(shares[0].expose_secret()));
            metadata.push(m);
        }
        let config = |current: usize, previous: Vec<usize>| TenantConfig {
            access_key_id: "AKACME".into(),
            secret_access_key: Some("secret-acme-0123456789".to_owned().into()),
            customer_holder: "customer".into(),
            customer_url: holder_tenant.then(|| CUSTOMER_URL.to_owned()),
            trustees: vec![TrusteeRef {
                holder: "t1".into(),
                url: TRUSTEE_URL.into(),
            }],
            metadata: metadata[current].clone(),
            previous: previous.into_iter().map(|i| metadata[i].clone()).collect(),
        };
        let (v1, v2) = (config(0, vec![]), config(1, vec![0]));
        let fakes = Fakes(HashMap::from([
            (TRUSTEE_URL, Arc::new(FakeHolder { shares: holder })),
            (
                CUSTOMER_URL,
                Arc::new(FakeHolder {
                    shares: customer_holder,
                }),
            ),
        ]));
        let proxy = start_proxy(&proxy_config(&pki, dir.path(), 60), &[v1], &fakes).await;
        let raw = Raw::new(&proxy, &pki);
        let tenant = TestTenant {
            id: "acme".into(),
            access_key_id: "AKACME".into(),
            secret_access_key: "secret-acme-0123456789".into(),
            share: None,
        };
        raw.create_bucket(&tenant, BUCKET).await;
        Self {
            dir,
            pki,
            proxy,
            raw,
            tenant,
            shares: [customer[0].clone(), customer[1].clone()],
            v2,
            fakes,
            holder_tenant,
        }
    }

    /// Version 2 becomes current (what `tenant rotate` does to the registration).
    fn rotate(&self) {
        let registry = self.proxy.tenants.as_ref().unwrap();
        treuhand::proxy::reload(
            registry,
            &self.proxy.keys,
            std::slice::from_ref(&self.v2),
            &self.fakes,
        )
        .unwrap();
    }

    fn sse(&self, version: usize) -> Vec<(&'static str, String)> {
        if self.holder_tenant {
            return Vec::new();
        }
        sse_c_headers(&self.shares[version - 1])
    }

    async fn put(&self, key: &str, body: Vec<u8>) {
        let r = self
            .raw
            .put(&self.tenant, &path(key), &self.sse(1), body)
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }

    /// The rewrap request: an in-place copy with the old share as the copy source's SSE-C
    /// key and `new` as the destination's.
    async fn rewrap(&self, key: &str, old: &str, new: &str) -> Response {
        let mut headers = vec![("x-amz-copy-source", path(key))];
        for (name, value) in sse_c_headers(old) {
            let name = name.replace("x-amz-", "x-amz-copy-source-");
            headers.push((Box::leak(name.into_boxed_str()), value));
        }
        headers.extend(sse_c_headers(new));
        self.raw
            .put(&self.tenant, &path(key), &headers, Vec::new())
            .await
    }

    async fn get(&self, key: &str, version: usize, extra: &[(&'static str, String)]) -> Response {
        let mut headers = self.sse(version);
        headers.extend_from_slice(extra);
        self.raw.get(&self.tenant, &path(key), &headers).await
    }

    fn file(&self, key: &str) -> std::path::PathBuf {
        self.dir
            .path()
            .join("storage/tenants/acme/objects")
            .join(BUCKET)
            .join(treuhand::storage::encode_key(key))
    }

    fn stored(&self, key: &str) -> Vec<u8> {
        std::fs::read(self.file(key)).unwrap()
    }
}

fn path(key: &str) -> String {
    format!("/{BUCKET}/{key}")
}

/// The stored object's key version and header length, from its public fields.
fn header_of(stored: &[u8]) -> (u32, usize) {
    let info = treuhand::format::peek_header(stored).unwrap();
    (
        info.key_version,
        treuhand::format::header_len_hint(stored).unwrap(),
    )
}

fn key_version(r: &Response) -> Option<String> {
    r.headers
        .get("x-treuhand-key-version")
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn rewrap_changes_only_the_header_and_the_body_bytes_stay_identical() {
    let s = Setup::start().await;
    let body = data(300_000, 7);
    s.put("big", body.clone()).await;
    let before = s.stored("big");
    let inode = std::fs::metadata(s.file("big")).unwrap().ino();
    s.rotate();

    let r = s.rewrap("big", &s.shares[0], &s.shares[1]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let after = s.stored("big");
    let ((v_old, old_len), (v_new, new_len)) = (header_of(&before), header_of(&after));
    assert_eq!((v_old, v_new), (1, 2));
    // v3 to v3: the same header length, overwritten in place in the same file.
    assert_eq!(old_len, new_len);
    assert_eq!(std::fs::metadata(s.file("big")).unwrap().ino(), inode);
    assert_eq!(before.len(), after.len());
    assert_eq!(before[old_len..], after[new_len..], "every body byte kept");
    assert_ne!(before[..old_len], after[..new_len]);

    // The copy's ETag is the new header's, as GET and HEAD report it.
    let etag = format!("\"{}\"", hex::encode(md5::Md5::digest(&after[..new_len])));
    assert_eq!(xml_tag(&r.text(), "ETag").replace("&quot;", "\""), etag);
    let head = s
        .raw
        .request(&s.tenant, "HEAD", &path("big"), &s.sse(2))
        .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.headers["etag"].to_str().unwrap(), etag);
    let get = s.get("big", 2, &[]).await;
    assert_eq!((get.status, get.body == body), (200, true));
}

#[tokio::test]
async fn a_rewrapped_object_reads_back_under_the_new_share_only() {
    let s = Setup::start().await;
    s.put("a", b"rewrap me".to_vec()).await;
    s.rotate();
    // Before: the old share reads it (version 1 is decrypt-only), the new one does not.
    assert_eq!(s.get("a", 1, &[]).await.body, b"rewrap me");
    assert_ne!(s.get("a", 2, &[]).await.status, 200);

    let r = s.rewrap("a", &s.shares[0], &s.shares[1]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s.get("a", 2, &[]).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"rewrap me"[..]));
    let r = s.get("a", 1, &[]).await;
    assert_ne!(r.status, 200, "{}", r.text());
    assert!(!contains(&r.body, b"rewrap me"));
    // Nothing in storage names version 1 any more.
    assert_eq!(header_of(&s.stored("a")).0, 2);
}

#[tokio::test]
async fn rewrap_of_a_multipart_object_keeps_every_part_readable() {
    let s = Setup::start().await;
    let store = client(&s.proxy, &s.pki, &s.tenant, Some(&s.shares[0]), BUCKET);
    let parts = [data(5 * 1024 * 1024, 1), data(130_000, 2), data(7, 3)];
    let mut upload = store.put_multipart(&OsPath::from("mp")).await.unwrap();
    for p in &parts {
        upload.put_part(PutPayload::from(p.clone())).await.unwrap();
    }
    upload.complete().await.unwrap();
    let whole = parts.concat();
    let before = s.stored("mp");
    s.rotate();

    let r = s.rewrap("mp", &s.shares[0], &s.shares[1]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let after = s.stored("mp");
    let ((_, old_len), (v, new_len)) = (header_of(&before), header_of(&after));
    assert_eq!(v, 2);
    assert_eq!(before[old_len..], after[new_len..], "runs and footer kept");

    let store = client(&s.proxy, &s.pki, &s.tenant, Some(&s.shares[1]), BUCKET);
    assert_eq!(
        get_object(store.as_ref(), "mp").await.as_ref(),
        whole.as_slice()
    );
    let p1 = parts[0].len();
    for (start, end) in [(0, 10), (p1 - 5, p1 + 5), (whole.len() - 3, whole.len())] {
        let range = ("range", format!("bytes={start}-{}", end - 1));
        let r = s.get("mp", 2, &[range]).await;
        assert_eq!(r.status, 206, "{}", r.text());
        assert_eq!(r.body, whole[start..end]);
    }
}

#[tokio::test]
async fn a_rewrap_with_the_wrong_old_share_changes_nothing() {
    let s = Setup::start().await;
    s.put("a", b"stays".to_vec()).await;
    s.rotate();
    let before = s.stored("a");
    let stranger = STANDARD.encode([7u8; 32]);
    for (old, new) in [
        // The new share as the old one, a stranger's share, and the old one twice.
        (&s.shares[1], &s.shares[1]),
        (&stranger, &s.shares[1]),
        (&s.shares[0], &s.shares[0]),
        (&s.shares[0], &stranger),
    ] {
        let r = s.rewrap("a", old, new).await;
        assert!((400..500).contains(&r.status), "{} {}", r.status, r.text());
        assert_eq!(s.stored("a"), before, "nothing written");
    }
    // Without the copy source's key: refused too.
    let mut headers = vec![("x-amz-copy-source", path("a"))];
    headers.extend(s.sse(2));
    let r = s.raw.put(&s.tenant, &path("a"), &headers, Vec::new()).await;
    assert!((400..500).contains(&r.status), "{} {}", r.status, r.text());
    assert_eq!(s.stored("a"), before);
}

#[tokio::test]
async fn get_and_head_name_the_key_version() {
    let s = Setup::start().await;
    s.put("a", b"x".to_vec()).await;
    let head = s
        .raw
        .request(&s.tenant, "HEAD", &path("a"), &s.sse(1))
        .await;
    assert_eq!(key_version(&head).as_deref(), Some("1"));
    s.rotate();
    assert_eq!(key_version(&s.get("a", 1, &[]).await).as_deref(), Some("1"));
    let r = s.rewrap("a", &s.shares[0], &s.shares[1]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(key_version(&s.get("a", 2, &[]).await).as_deref(), Some("2"));
    let head = s
        .raw
        .request(&s.tenant, "HEAD", &path("a"), &s.sse(2))
        .await;
    assert_eq!(key_version(&head).as_deref(), Some("2"));
    // An in-place copy of a current object is an ordinary copy, as before.
    let mut headers = vec![("x-amz-copy-source", path("a"))];
    for (name, value) in s.sse(2) {
        let name = name.replace("x-amz-", "x-amz-copy-source-");
        headers.push((Box::leak(name.into_boxed_str()), value));
    }
    headers.extend(s.sse(2));
    let r = s.raw.put(&s.tenant, &path("a"), &headers, Vec::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s.get("a", 2, &[]).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"x"[..]));
    assert_eq!(key_version(&r).as_deref(), Some("2"));
}

#[tokio::test]
async fn a_holder_tenant_rewraps_with_no_headers() {
    let s = Setup::start_with(true).await;
    let body = data(100_000, 3);
    s.put("h", body.clone()).await;
    let before = s.stored("h");
    s.rotate();
    let head = s.raw.request(&s.tenant, "HEAD", &path("h"), &[]).await;
    assert_eq!(key_version(&head).as_deref(), Some("1"));
    let headers = vec![("x-amz-copy-source", path("h"))];
    let r = s.raw.put(&s.tenant, &path("h"), &headers, Vec::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let after = s.stored("h");
    let ((_, old_len), (v, new_len)) = (header_of(&before), header_of(&after));
    assert_eq!(v, 2);
    assert_eq!(before[old_len..], after[new_len..]);
    let r = s.get("h", 2, &[]).await;
    assert_eq!((r.status, r.body == body), (200, true));
    assert_eq!(key_version(&r).as_deref(), Some("2"));
}
