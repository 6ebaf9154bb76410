//! The customer's key lifecycle from the command line: `tenant rotate`, `tenant shred` and
//! `tenant handover`, with the real `treuhand` binary over real TLS against real trustee
//! processes. The profiles are written by hand, as a customer would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly on purpose

mod support;

use std::path::PathBuf;

use support::*;
use treuhand::crypto::oprf::{self, ObjectId, ObjectIdentity};
use treuhand::crypto::{KeyMetadata, ShareEnvelope, scheme};
use treuhand::proxy::config::TenantConfig;
use treuhand::tls::Role;
use treuhand::trustee::client::TrusteeClient;
use treuhand::trustee::wire::{KeyState, ShredReceipt};

const TENANT: &str = "acme";

/// A tenant `acme` created with `tenant create` against real trustee processes, and a
/// customer admin profile for it.
struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    pki: Pki,
    trustees: Vec<(String, TrusteeProcess)>,
    /// Trustees started but not part of the tenant (hand-over targets).
    idle: Vec<(String, TrusteeProcess)>,
    profile: PathBuf,
}

impl Setup {
    /// `names` hold shares (threshold `threshold`, the customer always one of them); `idle`
    /// trustees only run.
    async fn start(names: &[&str], idle: &[&str], threshold: u8) -> Self {
        Self::start_with(names, idle, threshold, false).await
    }

    /// As [`Setup::start`]; with `holder`, the customer's share is held by a customer-run
    /// holder process named `customer` (no SSE-C).
    async fn start_with(names: &[&str], idle: &[&str], threshold: u8, holder: bool) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        let pki = Pki::new(&dir);
        let mut trustees = Vec::new();
        for name in names {
            let config = write_trustee_toml(&pki, &dir.join(name), name);
            trustees.push((name.to_string(), TrusteeProcess::start(&config).await));
        }
        let mut idle_ones = Vec::new();
        for name in idle {
            let config = write_trustee_toml(&pki, &dir.join(name), name);
            idle_ones.push((name.to_string(), TrusteeProcess::start(&config).await));
        }
        if holder {
            let config = write_trustee_toml(&pki, &dir.join("customer"), "customer");
            idle_ones.push(("customer".to_owned(), TrusteeProcess::start(&config).await));
        }
        let (cert, key) = pki.client(Role::Customer, TENANT, "customer-acme");
        let mut args: Vec<String> = [
            "tenant",
            "create",
            "--tenant",
            TENANT,
            "--ca",
            pki.ca_pem.to_str().unwrap(),
            "--client-cert",
            cert.to_str().unwrap(),
            "--client-key",
            key.to_str().unwrap(),
            "--allow-proxy",
            "dev-proxy",
            "--allow-proxy",
            "test-proxy",
            "--access-key-id",
            "AKACME",
            "--secret-access-key",
            "operator-secret-1",
            "--registration-dir",
            dir.join("tenants").to_str().unwrap(),
            "--share-dir",
            dir.join("shares").to_str().unwrap(),
            "--threshold",
            &threshold.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (name, process) in &trustees {
            args.push("--trustee".into());
            args.push(format!("{name}={}", process.url));
        }
        if holder {
            args.push("--holder-url".into());
            args.push(idle_ones.last().unwrap().1.url.clone());
        }
        if usize::from(threshold) <= trustees.len() {
            args.push("--allow-trustees-alone".into());
        }
        let out = treuhand(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let mut profile = format!(
            "role = \"customer\"\ntenant = \"{TENANT}\"\nca = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\nshare_dir = \"{}\"\nregistration_dir = \"{}\"\n",
            pki.ca_pem.display(),
            cert.display(),
            key.display(),
            dir.join("shares").display(),
            dir.join("tenants").display(),
        );
        for (name, process) in &trustees {
            profile.push_str(&format!(
                "\n[[trustees]]\nname = \"{name}\"\nurl = \"{}\"\ntrustee_key = \"{}\"\n",
                process.url,
                dir.join(name).join("signing.pub").display()
            ));
        }
        if holder {
            profile.push_str(&format!(
                "\n[holder]\nname = \"customer\"\nurl = \"{}\"\ntrustee_key = \"{}\"\n",
                idle_ones.last().unwrap().1.url,
                dir.join("customer/signing.pub").display()
            ));
        }
        let path = dir.join("admin.toml");
        std::fs::write(&path, profile).unwrap();
        Self {
            _tmp: tmp,
            dir,
            pki,
            trustees,
            idle: idle_ones,
            profile: path,
        }
    }

    fn url(&self, name: &str) -> String {
        self.trustees
            .iter()
            .chain(&self.idle)
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.url.clone())
            .unwrap()
    }

    fn registration(&self) -> TenantConfig {
        let text = std::fs::read_to_string(self.dir.join("tenants/acme.toml")).unwrap();
        assert!(text.starts_with("# treuhand tenant registration"), "{text}");
        toml::from_str(&text).unwrap()
    }

    fn customer(&self, name: &str) -> TrusteeClient {
        TrusteeClient::new(
            &self.url(name),
            tls_for(&self.pki.ca, &self.pki.dir, Role::Customer, TENANT),
        )
        .unwrap()
    }

    fn proxy(&self, name: &str) -> TrusteeClient {
        TrusteeClient::new(
            &self.url(name),
            tls_for(&self.pki.ca, &self.pki.dir, Role::Proxy, "dev-proxy"),
        )
        .unwrap()
    }

    /// Runs `treuhand tenant <command> --profile P <args>`.
    async fn admin(&self, command: &[&str], args: &[&str]) -> std::process::Output {
        let mut all = vec!["tenant"];
        all.extend_from_slice(command);
        all.extend_from_slice(&["--profile", self.profile.to_str().unwrap()]);
        all.extend_from_slice(args);
        treuhand(&all).await
    }

    /// The customer's share of `version` from its text envelope.
    fn customer_share(&self, version: u32) -> ShareEnvelope {
        let (_, text) = treuhand::tenant::share_paths(&self.dir.join("shares"), TENANT, version);
        ShareEnvelope::parse(&std::fs::read_to_string(text).unwrap()).unwrap()
    }

    /// The KEK of one object of `version` from the customer's share and `holder`'s proven
    /// evaluation, as the proxy derives it.
    async fn object_kek(
        &self,
        metadata: &KeyMetadata,
        holder: &str,
    ) -> Result<[u8; 32], treuhand::trustee::Error> {
        let version = metadata.key_version;
        let request = evaluate_request(&format!("r-{holder}-{version}"), "b", "k", [5; 32]);
        let identity = ObjectIdentity {
            tenant: TENANT.into(),
            key_version: version,
            bucket: "b".into(),
            key: "k".into(),
            id: ObjectId([5; 32]),
        };
        let answer = self
            .proxy(holder)
            .evaluate(TENANT, version, &request)
            .await?;
        let x = metadata.holder(holder).unwrap().x;
        let customer = scheme::key_share(metadata, &self.customer_share(version).share).unwrap();
        let local = oprf::evaluate_local(&customer, &identity).unwrap();
        let k = scheme::holder_key(metadata, x).unwrap();
        let y = oprf::combine(&identity, &[local], &[(x, k, answer)], 2).unwrap();
        let kek = oprf::object_kek(&y, &identity).unwrap();
        Ok(*kek.expose_secret())
    }
}

async fn treuhand(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_treuhand"))
        .args(args)
        .env("RUST_LOG", "off")
        .env_remove("TREUHAND_TENANT_SECRET_ACCESS_KEY")
        .output()
        .await
        .unwrap()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &std::process::Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

async fn states(client: &TrusteeClient) -> Vec<(u32, KeyState)> {
    client
        .keys(TENANT)
        .await
        .unwrap()
        .keys
        .iter()
        .map(|k| (k.key_version, k.state))
        .collect()
}

#[tokio::test]
async fn rotate_makes_a_new_version_and_keeps_the_old_one_readable_in_the_registration() {
    let setup = Setup::start(&["trustee"], &[], 2).await;
    let before = setup.registration();
    let out = setup.admin(&["rotate"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let after = setup.registration();
    assert_eq!(after.metadata.key_version, 2);
    assert_eq!(after.previous.len(), 1);
    assert_eq!(
        after.previous[0], before.metadata,
        "version 1 stays, unchanged"
    );
    assert_eq!(after.metadata.threshold, before.metadata.threshold);
    assert_ne!(after.metadata.public_key, before.metadata.public_key);
    assert_eq!(after.metadata.holder("trustee").unwrap().x, 2);
    after.validate().unwrap();
    // The new share files are there, the old ones untouched; both versions are held.
    let shares = setup.dir.join("shares");
    assert!(shares.join("acme.v2.share").is_file());
    assert!(shares.join("acme.v2.share.txt").is_file());
    assert!(shares.join("acme.share").is_file());
    let trustee = setup.customer("trustee");
    assert_eq!(
        states(&trustee).await,
        vec![(1, KeyState::Active), (2, KeyState::Active)]
    );
    // The policy the customer set at create is kept (the rotation's deposit carries none).
    let policy = trustee.policy(TENANT).await.unwrap();
    assert_eq!(policy.allowed_proxies, ["dev-proxy", "test-proxy"]);
    // Both versions answer evaluations the proxy can combine with the customer's shares.
    setup
        .object_kek(&after.previous[0], "trustee")
        .await
        .unwrap();
    setup.object_kek(&after.metadata, "trustee").await.unwrap();
}

#[tokio::test]
async fn rotate_json_names_the_new_share_file() {
    let setup = Setup::start(&["trustee"], &[], 2).await;
    let value = json(&setup.admin(&["rotate"], &["--json"]).await);
    let object = value.as_object().unwrap();
    let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["key_version", "share_file", "tenant"]);
    assert_eq!(value["tenant"], TENANT);
    assert_eq!(value["key_version"], 2);
    let file = PathBuf::from(value["share_file"].as_str().unwrap());
    assert_eq!(file, setup.dir.join("shares/acme.v2.share"));
    // An SSE-C tenant's share file is the raw 32 bytes the headers carry.
    assert_eq!(std::fs::read(&file).unwrap().len(), 32);
    // A second rotation makes version 3 and keeps both older ones, newest first.
    let value = json(&setup.admin(&["rotate"], &["--json"]).await);
    assert_eq!(value["key_version"], 3);
    let versions: Vec<u32> = setup
        .registration()
        .versions()
        .map(|m| m.key_version)
        .collect();
    assert_eq!(versions, [3, 2, 1]);
}

#[tokio::test]
async fn shred_writes_a_verifiable_receipt_per_holder_and_removes_the_version() {
    let setup = Setup::start(&["trustee"], &[], 2).await;
    let out = setup.admin(&["rotate"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let receipts = setup.dir.join("receipts");
    let out = setup
        .admin(
            &["shred"],
            &[
                "--version",
                "1",
                "--receipt-dir",
                receipts.to_str().unwrap(),
            ],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let file = receipts.join("acme-v1-trustee.receipt.json");
    let receipt: ShredReceipt =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        (receipt.key_version, receipt.holder.as_str()),
        (1, "trustee")
    );
    let key = treuhand::admin::profile::read_public_key(
        setup.dir.join("trustee/signing.pub").to_str().unwrap(),
    )
    .unwrap();
    assert!(treuhand::trustee::audit::verify_receipt(&key, &receipt));
    // The version is gone from the registration, the holder and the customer's files.
    let registration = setup.registration();
    assert_eq!(registration.metadata.key_version, 2);
    assert!(registration.previous.is_empty());
    assert!(!setup.dir.join("shares/acme.share").exists());
    assert!(!setup.dir.join("shares/acme.share.txt").exists());
    assert!(setup.dir.join("shares/acme.v2.share").exists());
    assert_eq!(
        states(&setup.customer("trustee")).await,
        vec![(1, KeyState::Shredded), (2, KeyState::Active)]
    );
    assert!(
        setup
            .object_kek(&setup.registration().metadata, "trustee")
            .await
            .is_ok()
    );
    // A rerun finds it shredded and says so; still a success.
    let out = setup
        .admin(
            &["shred"],
            &[
                "--version",
                "1",
                "--receipt-dir",
                receipts.to_str().unwrap(),
                "--json",
            ],
        )
        .await;
    let value = json(&out);
    assert_eq!(value["holders"][0]["status"], "already_shredded");
}

#[tokio::test]
async fn handover_moves_the_share_without_changing_any_object_key() {
    let setup = Setup::start(&["trustee"], &["trustee-b"], 2).await;
    let out = setup.admin(&["rotate"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let before = setup.registration();
    let mut keks = Vec::new();
    for metadata in before.versions() {
        keks.push(setup.object_kek(metadata, "trustee").await.unwrap());
    }
    let customer_shares: Vec<_> = [1, 2]
        .iter()
        .map(|v| std::fs::read(setup.dir.join(format!("shares/{}", share_name(*v)))).unwrap())
        .collect();
    let receipts = setup.dir.join("receipts");
    let to = format!("trustee-b={}", setup.url("trustee-b"));
    let out = setup
        .admin(
            &["handover"],
            &[
                "--from",
                "trustee",
                "--to",
                &to,
                "--receipt-dir",
                receipts.to_str().unwrap(),
                "--json",
            ],
        )
        .await;
    let value = json(&out);
    assert_eq!(value["to"], "trustee-b");
    assert_eq!(value["pin_new_trustee_key"], true);
    let after = setup.registration();
    after.validate().unwrap();
    assert_eq!(after.trustees.len(), 1);
    assert_eq!(after.trustees[0].holder, "trustee-b");
    assert_eq!(after.trustees[0].url, setup.url("trustee-b"));
    for (old, new) in before.versions().zip(after.versions()) {
        assert_eq!(old.key_version, new.key_version);
        assert_eq!(
            old.public_key, new.public_key,
            "the tenant key is unchanged"
        );
        assert_eq!(old.holder("customer"), new.holder("customer"));
        assert!(new.holder("trustee").is_none());
        assert_eq!(new.holder("trustee-b").unwrap().x, 3);
    }
    // Every object's key is the same through the new trustee and the customer's unchanged
    // share.
    for (metadata, kek) in after.versions().zip(&keks) {
        assert_eq!(&setup.object_kek(metadata, "trustee-b").await.unwrap(), kek);
    }
    for (v, bytes) in [1, 2].iter().zip(&customer_shares) {
        let now = std::fs::read(setup.dir.join(format!("shares/{}", share_name(*v)))).unwrap();
        assert_eq!(&now, bytes, "the customer's share is unchanged");
    }
    // The old trustee shredded both versions, signed receipts, and answers nothing usable.
    let old = setup.customer("trustee");
    assert_eq!(
        states(&old).await,
        vec![(1, KeyState::Shredded), (2, KeyState::Shredded)]
    );
    for version in [1, 2] {
        assert!(
            receipts
                .join(format!("acme-v{version}-trustee.receipt.json"))
                .is_file()
        );
        let request = evaluate_request("r-after", "b", "k", [5; 32]);
        assert!(
            setup
                .proxy("trustee")
                .evaluate(TENANT, version, &request)
                .await
                .is_err()
        );
    }
    // The profile names the new trustee.
    let profile = treuhand::admin::profile::Profile::load(&setup.profile).unwrap();
    let names: Vec<&str> = profile.trustees.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["trustee-b"]);
    // A rerun finds nothing left to hand over and deals nothing new.
    let out = setup
        .admin(
            &["handover"],
            &[
                "--from",
                "trustee",
                "--to",
                &to,
                "--receipt-dir",
                receipts.to_str().unwrap(),
            ],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        states(&setup.customer("trustee-b")).await,
        vec![(1, KeyState::Active), (2, KeyState::Active)]
    );
    assert_eq!(setup.registration().metadata, after.metadata);
}

fn share_name(version: u32) -> String {
    if version == 1 {
        "acme.share.txt".into()
    } else {
        format!("acme.v{version}.share.txt")
    }
}

#[tokio::test]
async fn handover_refuses_a_threshold_above_two_with_the_alternative() {
    let setup = Setup::start(&["trustee-a", "trustee-b"], &["trustee-c"], 3).await;
    let receipts = setup.dir.join("receipts");
    let to = format!("trustee-c={}", setup.url("trustee-c"));
    let before = setup.registration();
    let out = setup
        .admin(
            &["handover"],
            &[
                "--from",
                "trustee-a",
                "--to",
                &to,
                "--receipt-dir",
                receipts.to_str().unwrap(),
            ],
        )
        .await;
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(text.contains("threshold 3"), "{text}");
    for step in ["tenant rotate", "tenant rewrap", "tenant shred"] {
        assert!(text.contains(step), "{step} missing: {text}");
    }
    // Nothing was touched: the departing trustee still holds its share, nothing was dealt.
    assert_eq!(
        states(&setup.customer("trustee-a")).await,
        vec![(1, KeyState::Active)]
    );
    assert!(setup.customer("trustee-c").keys(TENANT).await.is_err());
    assert_eq!(setup.registration().metadata, before.metadata);
}

/// The SSE-C headers of a raw share, under `prefix`.
fn sse(prefix: &str, share: &[u8; 32]) -> Vec<(String, String)> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![
        (format!("{prefix}algorithm"), "AES256".to_owned()),
        (format!("{prefix}key"), b64.encode(share)),
        (
            format!("{prefix}key-md5"),
            treuhand::bench::client::md5_base64(share),
        ),
    ]
}

fn raw_share(dir: &std::path::Path, version: u32) -> [u8; 32] {
    let (raw, _) = treuhand::tenant::share_paths(&dir.join("shares"), TENANT, version);
    std::fs::read(raw).unwrap().try_into().unwrap()
}

/// The stored bytes of `data/key` in the proxy's (filesystem) storage.
async fn stored(config: &treuhand::proxy::config::ProxyConfig, key: &str) -> Vec<u8> {
    let storage = treuhand::storage::Storage::from_config(&config.storage).unwrap();
    let path = treuhand::proxy::s3::paths::TenantPaths::new(TENANT).object("data", key);
    let size = storage.head(&path).await.unwrap().size;
    storage.read_range(&path, 0..size).await.unwrap().to_vec()
}

fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

#[tokio::test]
async fn rewrap_moves_every_object_of_the_old_version_and_keeps_the_body_bytes() {
    const SSE: &str = "x-amz-server-side-encryption-customer-";
    let setup = Setup::start(&["trustee"], &[], 2).await;
    let config = proxy_config(&setup.pki, &setup.dir, 3600);
    let proxy_toml = setup.dir.join("proxy.toml");
    write_proxy_toml(&proxy_toml, &config);
    let process = ProxyProcess::start(&proxy_toml).await;
    let tenant = TestTenant {
        id: TENANT.into(),
        access_key_id: "AKACME".into(),
        secret_access_key: "operator-secret-1".into(),
        share: None,
    };
    let v1 = raw_share(&setup.dir, 1);
    let raw = Raw::new(&Proxy::attach(process.addr), &setup.pki);
    raw.create_bucket(&tenant, "data").await;
    let body = |i: u8| vec![i; 100_000];
    let keys = ["a", "dir/b c", "z&1"];
    for (i, key) in keys.iter().enumerate() {
        let path = format!("/data/{key}");
        let headers = sse(SSE, &v1);
        let h: Vec<(&str, String)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let r = raw.put(&tenant, &path, &h, body(i as u8)).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let mut before = Vec::new();
    for key in keys {
        before.push(stored(&config, key).await);
    }
    let out = setup.admin(&["rotate"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // A fresh proxy process reads the rotated registration (no reliance on its polling here).
    process.kill().await;
    let process = ProxyProcess::start(&proxy_toml).await;
    let raw = Raw::new(&Proxy::attach(process.addr), &setup.pki);
    let v2 = raw_share(&setup.dir, 2);
    // One object written under version 2 already: skipped.
    let headers = sse(SSE, &v2);
    let h2: Vec<(&str, String)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let r = raw.put(&tenant, "/data/new", &h2, b"new".to_vec()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut profile = std::fs::read_to_string(&setup.profile).unwrap();
    profile = profile.replacen(
        "\n[[trustees]]",
        &format!(
            "\n[s3]\nendpoint = \"{}\"\naccess_key_id = \"AKACME\"\nsecret_access_key = \"operator-secret-1\"\n\n[[trustees]]",
            process.endpoint()
        ),
        1,
    );
    std::fs::write(&setup.profile, profile).unwrap();
    let value = json(&setup.admin(&["rewrap"], &["--from", "1", "--json"]).await);
    assert_eq!(value["from"], 1);
    assert_eq!(value["to"], 2);
    assert_eq!(value["rewrapped"], 3);
    assert_eq!(value["skipped"], 1);
    assert_eq!(value["failed"], 0);
    for (i, key) in keys.iter().enumerate() {
        let path = format!("/data/{key}");
        let r = raw.get(&tenant, &path, &h2).await;
        assert_eq!(r.status, 200, "{key}: {}", r.text());
        assert_eq!(
            r.headers
                .get("x-treuhand-key-version")
                .unwrap()
                .to_str()
                .unwrap(),
            "2"
        );
        assert_eq!(r.body, body(i as u8));
        // The body ciphertext is the same bytes: only the header changed.
        let after = stored(&config, key).await;
        assert!(
            common_suffix(&before[i], &after) >= 100_000,
            "{key}: body re-encrypted"
        );
    }
    // A rerun has nothing left to do.
    let value = json(&setup.admin(&["rewrap"], &["--from", "1", "--json"]).await);
    assert_eq!(
        (value["rewrapped"].as_u64(), value["skipped"].as_u64()),
        (Some(0), Some(4))
    );
    process.kill().await;
}

#[tokio::test]
async fn handover_of_a_holder_tenant_gives_the_customers_holder_the_new_metadata() {
    let setup = Setup::start_with(&["trustee"], &["trustee-b"], 2, true).await;
    let before = setup.registration();
    assert!(before.customer_url.is_some());
    let kek = setup.object_kek(&before.metadata, "trustee").await.unwrap();
    // Rotation deposits the customer's new share at its holder, too.
    let value = json(&setup.admin(&["rotate"], &["--json"]).await);
    assert_eq!(
        PathBuf::from(value["share_file"].as_str().unwrap()),
        setup.dir.join("shares/acme.v2.share.txt"),
        "a holder tenant's share file is the text envelope"
    );
    let holder = setup.customer("customer");
    assert_eq!(
        states(&holder).await,
        vec![(1, KeyState::Active), (2, KeyState::Active)]
    );
    let receipts = setup.dir.join("receipts");
    let to = format!("trustee-b={}", setup.url("trustee-b"));
    let out = setup
        .admin(
            &["handover"],
            &[
                "--from",
                "trustee",
                "--to",
                &to,
                "--receipt-dir",
                receipts.to_str().unwrap(),
            ],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let after = setup.registration();
    // The customer's holder keeps the same metadata as the registration for every version.
    let keys = holder.keys(TENANT).await.unwrap();
    for status in &keys.keys {
        let registered = after
            .versions()
            .find(|m| m.key_version == status.key_version)
            .unwrap();
        assert_eq!(&status.metadata, registered);
        assert!(status.metadata.holder("trustee-b").is_some());
    }
    let v1 = after.versions().find(|m| m.key_version == 1).unwrap();
    assert_eq!(setup.object_kek(v1, "trustee-b").await.unwrap(), kek);
    // Shredding a version reaches the customer's holder as well, with its receipt.
    let out = setup
        .admin(
            &["shred"],
            &[
                "--version",
                "1",
                "--receipt-dir",
                receipts.to_str().unwrap(),
            ],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    for holder in ["trustee-b", "customer"] {
        assert!(
            receipts
                .join(format!("acme-v1-{holder}.receipt.json"))
                .is_file(),
            "{holder}"
        );
    }
    assert!(!setup.dir.join("shares/acme.share.txt").exists());
}

/// SIGKILL of the proxy and of the driver in the middle of `tenant rewrap`: every object still
/// reads back whole, under exactly one of the two versions (the header is replaced in one step),
/// and a rerun finishes the job.
#[tokio::test]
async fn a_rewrap_killed_midway_loses_no_object_and_a_rerun_finishes() {
    const SSE: &str = "x-amz-server-side-encryption-customer-";
    const OBJECTS: usize = 100;
    let setup = Setup::start(&["trustee"], &[], 2).await;
    let config = proxy_config(&setup.pki, &setup.dir, 3600);
    let proxy_toml = setup.dir.join("proxy.toml");
    write_proxy_toml(&proxy_toml, &config);
    let process = ProxyProcess::start(&proxy_toml).await;
    let tenant = TestTenant {
        id: TENANT.into(),
        access_key_id: "AKACME".into(),
        secret_access_key: "operator-secret-1".into(),
        share: None,
    };
    let headers = |share: &[u8; 32]| -> Vec<(String, String)> { sse(SSE, share) };
    let borrow = |h: &[(String, String)]| -> Vec<(String, String)> { h.to_vec() };
    let v1 = raw_share(&setup.dir, 1);
    let raw = Raw::new(&Proxy::attach(process.addr), &setup.pki);
    raw.create_bucket(&tenant, "data").await;
    let body = |i: usize| -> Vec<u8> { format!("object {i} ").repeat(400).into_bytes() };
    let h1 = borrow(&headers(&v1));
    let h1: Vec<(&str, String)> = h1.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    for i in 0..OBJECTS {
        let r = raw
            .put(&tenant, &format!("/data/o{i:03}"), &h1, body(i))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let mut before = Vec::new();
    for i in 0..OBJECTS {
        before.push(stored(&config, &format!("o{i:03}")).await);
    }
    let out = setup.admin(&["rotate"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    process.kill().await;
    let process = ProxyProcess::start(&proxy_toml).await;
    let mut profile = std::fs::read_to_string(&setup.profile).unwrap();
    profile = profile.replacen(
        "\n[[trustees]]",
        &format!(
            "\n[s3]\nendpoint = \"{}\"\naccess_key_id = \"AKACME\"\nsecret_access_key = \"operator-secret-1\"\n\n[[trustees]]",
            process.endpoint()
        ),
        1,
    );
    std::fs::write(&setup.profile, profile).unwrap();

    // Start the driver and kill proxy and driver once some objects have moved.
    let mut driver = tokio::process::Command::new(env!("CARGO_BIN_EXE_treuhand"))
        .args(["tenant", "rewrap", "--profile"])
        .arg(&setup.profile)
        .args(["--from", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let moved = |after: &[Vec<u8>]| before.iter().zip(after).filter(|(b, a)| b != a).count();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let mut now = Vec::new();
        for i in 0..OBJECTS {
            now.push(stored(&config, &format!("o{i:03}")).await);
        }
        let n = moved(&now);
        if n >= 5 || std::time::Instant::now() > deadline {
            eprintln!("killing proxy and driver after {n} of {OBJECTS} objects moved");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    process.kill().await;
    driver.start_kill().unwrap();
    let _ = driver.wait().await;

    let process = ProxyProcess::start(&proxy_toml).await;
    let raw = Raw::new(&Proxy::attach(process.addr), &setup.pki);
    let v2 = raw_share(&setup.dir, 2);
    let h2 = borrow(&headers(&v2));
    let h2: Vec<(&str, String)> = h2.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let mut under_v2 = 0;
    for (i, stored_before) in before.iter().enumerate() {
        let path = format!("/data/o{i:03}");
        let r = raw.get(&tenant, &path, &h2).await;
        let r = if r.status == 200 {
            under_v2 += 1;
            r
        } else {
            raw.get(&tenant, &path, &h1).await
        };
        assert_eq!(r.status, 200, "o{i:03} lost: {}", r.text());
        assert_eq!(r.body, body(i), "o{i:03}");
        let now = stored(&config, &format!("o{i:03}")).await;
        assert!(
            common_suffix(stored_before, &now) >= body(i).len(),
            "o{i:03}: body changed"
        );
    }
    assert!(under_v2 > 0, "nothing was rewrapped before the kill");

    // A rerun finishes: everything under version 2 afterwards.
    let mut profile = std::fs::read_to_string(&setup.profile).unwrap();
    let old = profile
        .lines()
        .find(|l| l.starts_with("endpoint = "))
        .unwrap()
        .to_owned();
    profile = profile.replace(&old, &format!("endpoint = \"{}\"", process.endpoint()));
    std::fs::write(&setup.profile, profile).unwrap();
    let value = json(&setup.admin(&["rewrap"], &["--from", "1", "--json"]).await);
    assert_eq!(value["failed"], 0, "{value}");
    assert_eq!(
        value["rewrapped"].as_u64().unwrap() + value["skipped"].as_u64().unwrap(),
        OBJECTS as u64,
        "{value}"
    );
    for i in 0..OBJECTS {
        let r = raw.get(&tenant, &format!("/data/o{i:03}"), &h2).await;
        assert_eq!(r.status, 200, "o{i:03}: {}", r.text());
        assert_eq!(r.body, body(i));
    }
    process.kill().await;
}
