//! The customer's and the operator's admin commands, run as the real `treuhand` binary over
//! real TLS against real trustee processes: `tenant status`, `tenant policy`, `tenant grants`,
//! `operator grant request`, `receipt verify`, `audit pull`, and the admin profiles
//! `treuhand dev init` writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly on purpose

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use support::*;
use treuhand::tls::Role;
use treuhand::trustee::client::TrusteeClient;
use treuhand::trustee::wire::ShredRequest;

const TENANT: &str = "acme";
const PROXY: &str = "p1";

/// `treuhand ARGS`, its output captured.
async fn treuhand(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_treuhand"))
        .args(args)
        .env("TREUHAND_LOG", "warn")
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `treuhand ARGS --json`, asserts success and parses stdout.
async fn json_ok(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let output = treuhand(&all).await;
    assert!(output.status.success(), "{}", text(&output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&output)))
}

/// A trustee (`trustee`) and the customer's holder (`customer`, its own process), tenant
/// `acme` enrolled with both (2 of 2), and the customer's and the operator's profiles.
struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    pki: Pki,
    trustee: Option<TrusteeProcess>,
    holder: Option<TrusteeProcess>,
    trustee_config: PathBuf,

    customer_profile: PathBuf,
    operator_profile: PathBuf,
}

impl Setup {
    async fn start() -> Self {
        treuhand::tls::install_crypto_provider();
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let pki = Pki::new(&root);
        let trustee_config = write_trustee_toml(&pki, &root.join("trustee"), "trustee");
        let holder_config = write_trustee_toml(&pki, &root.join("holder"), "holder");
        let trustee = TrusteeProcess::start(&trustee_config).await;
        let holder = TrusteeProcess::start(&holder_config).await;
        let (cert, key) = pki.client(Role::Customer, TENANT, "customer-acme");
        pki.client(Role::Operator, "ops", "operator");
        let tls = treuhand::tls::client_config(&pki.ca_pem, Some((&cert, &key))).unwrap();
        let params = treuhand::tenant::CreateParams {
            tenant: TENANT.into(),
            key_version: 1,
            threshold: 2,
            trustees: vec![treuhand::tenant::TrusteeSpec {
                holder: "trustee".into(),
                url: trustee.url.clone(),
            }],
            customer_holder_url: Some(holder.url.clone()),
            access_key_id: "AKACME".into(),
            secret_access_key: "secret-acme-0123456789".into(),
            registration_dir: root.join("tenants"),
            share_dir: root.join("shares"),
        };
        let depositor =
            treuhand::tenant::deposit::TrusteeDepositor::from_tls(tls, vec![PROXY.into()]);
        treuhand::tenant::create_with(
            &params,
            treuhand::tenant::CreateOptions::default(),
            &depositor,
        )
        .await
        .unwrap();
        let mut setup = Self {
            customer_profile: root.join("acme.toml"),
            operator_profile: root.join("operator.toml"),
            _tmp: tmp,
            root,
            pki,
            trustee: Some(trustee),
            holder: Some(holder),
            trustee_config,
        };
        setup.write_profiles();
        setup
    }

    fn trustee_url(&self) -> String {
        self.trustee.as_ref().unwrap().url.clone()
    }

    fn holder_url(&self) -> String {
        self.holder.as_ref().unwrap().url.clone()
    }

    /// The profiles, for the trustees' current URLs (a restarted process has a new port).
    fn write_profiles(&mut self) {
        let customer = format!(
            "role = \"customer\"\ntenant = \"{TENANT}\"\nca = \"certs/ca.pem\"\n\
             client_cert = \"certs/customer-acme.pem\"\nclient_key = \"certs/customer-acme.key\"\n\
             share_dir = \"shares\"\nregistration_dir = \"tenants\"\n\n\
             [[trustees]]\nname = \"trustee\"\nurl = \"{}\"\ntrustee_key = \"trustee/signing.pub\"\n\n\
             [holder]\nname = \"customer\"\nurl = \"{}\"\ntrustee_key = \"holder/signing.pub\"\n",
            self.trustee_url(),
            self.holder_url()
        );
        std::fs::write(&self.customer_profile, customer).unwrap();
        let operator = format!(
            "role = \"operator\"\nca = \"certs/ca.pem\"\n\
             client_cert = \"certs/operator.pem\"\nclient_key = \"certs/operator.key\"\n\n\
             [[trustees]]\nname = \"trustee\"\nurl = \"{}\"\ntrustee_key = \"trustee/signing.pub\"\n",
            self.trustee_url()
        );
        std::fs::write(&self.operator_profile, operator).unwrap();
    }

    fn customer(&self) -> &str {
        self.customer_profile.to_str().unwrap()
    }

    fn operator(&self) -> &str {
        self.operator_profile.to_str().unwrap()
    }

    fn client(&self, url: &str) -> TrusteeClient {
        let tls = treuhand::tls::client_config(
            &self.pki.ca_pem,
            Some((
                &self.root.join("certs/customer-acme.pem"),
                &self.root.join("certs/customer-acme.key"),
            )),
        )
        .unwrap();
        TrusteeClient::new(url, tls).unwrap()
    }

    /// The trustee's store files (the SQLite database and its WAL).
    fn trustee_store_files(&self) -> Vec<PathBuf> {
        let store = self.root.join("trustee/store.db");
        ["", "-wal", "-shm"]
            .iter()
            .map(|s| PathBuf::from(format!("{}{s}", store.display())))
            .collect()
    }

    async fn kill_trustee(&mut self) {
        self.trustee.take().unwrap().kill().await;
    }

    async fn restart_trustee(&mut self) {
        self.trustee = Some(TrusteeProcess::start(&self.trustee_config).await);
        self.write_profiles();
    }
}

fn copy_files(files: &[PathBuf], to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in files {
        let target = to.join(f.file_name().unwrap());
        let _ = std::fs::remove_file(&target);
        if f.exists() {
            std::fs::copy(f, &target).unwrap();
        }
    }
}

fn restore_files(files: &[PathBuf], from: &Path) {
    for f in files {
        let _ = std::fs::remove_file(f);
        let saved = from.join(f.file_name().unwrap());
        if saved.exists() {
            std::fs::copy(&saved, f).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_versions_holders_and_policy() {
    let mut setup = Setup::start().await;
    let status = json_ok(&["tenant", "status", "--profile", setup.customer()]).await;
    assert_eq!(status["tenant"], TENANT);
    assert_eq!(status["current_version"], 1);
    let versions = status["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{status}");
    let v1 = &versions[0];
    assert_eq!(v1["key_version"], 1);
    assert_eq!(v1["state"], "current");
    assert_eq!(v1["scheme"], "oprf-ristretto255-v1");
    assert_eq!(v1["threshold"], 2);
    let holders = v1["holders"].as_array().unwrap();
    let names: Vec<&str> = holders
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"trustee") && names.contains(&"customer"),
        "{v1}"
    );
    for h in holders {
        assert_eq!(h["state"], "active", "{h}");
        assert!(h["x"].as_u64().unwrap() > 0);
    }
    for h in status["holders"].as_array().unwrap() {
        assert_eq!(h["reachable"], true, "{h}");
        assert_eq!(h["policy"]["allowed_proxies"], serde_json::json!([PROXY]));
        assert_eq!(h["policy"]["suspended"], false);
    }
    assert_eq!(status["policy_consistent"], true);

    // Human output names the version, its state and the policy.
    let output = treuhand(&["tenant", "status", "--profile", setup.customer()]).await;
    assert!(output.status.success(), "{}", text(&output));
    let human = String::from_utf8_lossy(&output.stdout);
    assert!(human.contains("v1") && human.contains("current"), "{human}");
    assert!(human.contains("proxies p1"), "{human}");

    // The customer's holder down: shown as unreachable, the command still answers.
    setup.holder.take().unwrap().kill().await;
    let status = json_ok(&["tenant", "status", "--profile", setup.customer()]).await;
    let holder = status["holders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "customer")
        .unwrap()
        .clone();
    assert_eq!(holder["reachable"], false, "{status}");
    let customer_of_v1 = status["versions"][0]["holders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "customer")
        .unwrap()
        .clone();
    assert_eq!(customer_of_v1["state"], "unreachable");
    // Nobody answering is a failure.
    setup.kill_trustee().await;
    let output = treuhand(&["tenant", "status", "--profile", setup.customer()]).await;
    assert!(!output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("no holder"), "{}", text(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_set_suspend_reaches_every_holder_and_resume_lifts_it() {
    let mut setup = Setup::start().await;
    let urls = [setup.trustee_url(), setup.holder_url()];
    let report = json_ok(&[
        "tenant",
        "policy",
        "set",
        "--suspend",
        "--rate",
        "50/80",
        "--profile",
        setup.customer(),
    ])
    .await;
    assert_eq!(report["consistent"], true, "{report}");
    for url in &urls {
        let policy = setup.client(url).policy(TENANT).await.unwrap();
        assert!(policy.suspended, "{url}");
        assert_eq!(policy.allowed_proxies, [PROXY], "unchanged fields stay");
        assert_eq!(
            (policy.rate_limit.per_second, policy.rate_limit.burst),
            (50, 80)
        );
    }
    let shown = json_ok(&["tenant", "policy", "show", "--profile", setup.customer()]).await;
    for h in shown["holders"].as_array().unwrap() {
        assert_eq!(h["policy"]["suspended"], true, "{h}");
    }

    json_ok(&[
        "tenant",
        "policy",
        "set",
        "--resume",
        "--profile",
        setup.customer(),
    ])
    .await;
    for url in &urls {
        let policy = setup.client(url).policy(TENANT).await.unwrap();
        assert!(!policy.suspended, "{url}");
    }

    // A holder that cannot take the change is named and the exit code is non-zero.
    setup.holder.take().unwrap().kill().await;
    let output = treuhand(&[
        "tenant",
        "policy",
        "set",
        "--allow-proxy",
        "p2",
        "--profile",
        setup.customer(),
    ])
    .await;
    assert!(!output.status.success(), "{}", text(&output));
    let all = text(&output);
    assert!(
        all.contains("NOT set at every holder") && all.contains("customer"),
        "{all}"
    );
    // The reachable trustee took it.
    let policy = setup
        .client(&setup.trustee_url())
        .policy(TENANT)
        .await
        .unwrap();
    assert_eq!(policy.allowed_proxies, ["p2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_grant_can_be_approved_then_revoked_by_the_customer() {
    let setup = Setup::start().await;
    let filed = json_ok(&[
        "operator",
        "grant",
        "request",
        "--tenant",
        TENANT,
        "--ticket",
        "T-42",
        "--duration",
        "2h",
        "--reason",
        "disk repair",
        "--profile",
        setup.operator(),
    ])
    .await;
    let id = filed["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("g-"), "{filed}");
    assert_eq!(filed["tenant"], TENANT);
    assert_eq!(filed["ticket"], "T-42");
    assert_eq!(filed["state"], "pending");
    assert_eq!(filed["duration_secs"], 7200);
    assert_eq!(filed["grants"].as_array().unwrap().len(), 1);

    let listed = json_ok(&[
        "operator",
        "grants",
        "list",
        "--tenant",
        TENANT,
        "--profile",
        setup.operator(),
    ])
    .await;
    assert_eq!(listed["grants"][0]["id"], id.as_str());
    assert_eq!(listed["grants"][0]["holder"], "trustee");

    let approved = json_ok(&[
        "tenant",
        "grants",
        "approve",
        &id,
        "--profile",
        setup.customer(),
    ])
    .await;
    assert_eq!(approved["done"][0]["state"], "approved", "{approved}");
    assert!(approved["done"][0]["expires_ms"].as_u64().is_some());

    let revoked = json_ok(&[
        "tenant",
        "grants",
        "revoke",
        &id,
        "--profile",
        setup.customer(),
    ])
    .await;
    assert_eq!(revoked["done"][0]["state"], "revoked", "{revoked}");
    let listed = json_ok(&["tenant", "grants", "list", "--profile", setup.customer()]).await;
    let grant = listed["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(grant["state"], "revoked");
    // The revocation is in the trustee's audit log.
    let log = setup
        .client(&setup.trustee_url())
        .audit(TENANT)
        .await
        .unwrap();
    assert!(log.entries.iter().any(|e| e.event
        == treuhand::trustee::audit::AuditEvent::GrantRevoked
        && e.grant.as_deref() == Some(id.as_str())));

    // An id no holder knows is an error that says where to find ids.
    let output = treuhand(&[
        "tenant",
        "grants",
        "deny",
        "g-0000000000000000",
        "--profile",
        setup.customer(),
    ])
    .await;
    assert!(!output.status.success());
    assert!(text(&output).contains("grants list"), "{}", text(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipt_verify_accepts_a_real_receipt_and_refuses_a_tampered_one() {
    let setup = Setup::start().await;
    let receipt = setup
        .client(&setup.trustee_url())
        .shred(TENANT, 1, &ShredRequest::default())
        .await
        .unwrap();
    let file = setup.root.join("receipt.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&receipt).unwrap()).unwrap();
    let key = setup.root.join("trustee/signing.pub");
    let (file_s, key_s) = (file.to_str().unwrap(), key.to_str().unwrap());

    let output = treuhand(&[
        "receipt",
        "verify",
        "--receipt",
        file_s,
        "--trustee-key",
        key_s,
    ])
    .await;
    assert!(output.status.success(), "{}", text(&output));
    let human = String::from_utf8_lossy(&output.stdout);
    assert!(human.starts_with("OK"), "{human}");
    assert!(human.contains("tenant acme key version 1"), "{human}");
    let verified = json_ok(&[
        "receipt",
        "verify",
        "--receipt",
        file_s,
        "--trustee-key",
        key_s,
    ])
    .await;
    assert_eq!(verified["ok"], true);
    assert_eq!(verified["holder"], "trustee");

    // Another holder's key does not verify it.
    let other = setup.root.join("holder/signing.pub");
    let output = treuhand(&[
        "receipt",
        "verify",
        "--receipt",
        file_s,
        "--trustee-key",
        other.to_str().unwrap(),
    ])
    .await;
    assert!(!output.status.success());
    assert!(text(&output).contains("INVALID"), "{}", text(&output));

    // A tampered receipt (another key version) does not verify.
    let mut tampered = receipt.clone();
    tampered.key_version = 2;
    let bad = setup.root.join("tampered.json");
    std::fs::write(&bad, serde_json::to_vec(&tampered).unwrap()).unwrap();
    let output = treuhand(&[
        "receipt",
        "verify",
        "--receipt",
        bad.to_str().unwrap(),
        "--trustee-key",
        key_s,
    ])
    .await;
    assert!(!output.status.success());
    assert!(text(&output).contains("INVALID"), "{}", text(&output));

    // Not a receipt at all.
    std::fs::write(&bad, "{\"kind\": 1}").unwrap();
    let output = treuhand(&[
        "receipt",
        "verify",
        "--receipt",
        bad.to_str().unwrap(),
        "--trustee-key",
        key_s,
    ])
    .await;
    assert!(!output.status.success());
    assert!(
        text(&output).contains("not a treuhand shred receipt"),
        "{}",
        text(&output)
    );
}

/// `audit pull` for the customer's profile with state `state`.
async fn pull(setup: &Setup, state: &Path) -> Output {
    treuhand(&[
        "audit",
        "pull",
        "--profile",
        setup.customer(),
        "--state",
        state.to_str().unwrap(),
        "--json",
    ])
    .await
}

fn pulled(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(output)))
}

fn holder<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["holders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["holder"] == name)
        .unwrap()
}

/// Adds audit entries at every holder (each policy change is one).
async fn add_entries(setup: &Setup, n: usize) {
    for i in 0..n {
        let rate = format!("{}", 100 + i);
        json_ok(&[
            "tenant",
            "policy",
            "set",
            "--rate",
            &rate,
            "--profile",
            setup.customer(),
        ])
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_pull_verifies_incrementally_and_keeps_state() {
    let setup = Setup::start().await;
    let state = setup.root.join("audit/state.json");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();

    let first = pull(&setup, &state).await;
    assert!(first.status.success(), "{}", text(&first));
    let first = pulled(&first);
    let t1 = holder(&first, "trustee").clone();
    assert_eq!(t1["ok"], true);
    assert!(t1["from_seq"].is_null(), "first run verifies the whole log");
    let seq1 = t1["seq"].as_u64().unwrap();
    assert!(seq1 >= 2, "deposit and policy at least: {t1}");
    assert_eq!(t1["new_entries"].as_u64().unwrap(), seq1);
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(kept["tenant"], TENANT);
    assert_eq!(kept["holders"]["trustee"]["seq"], seq1);
    assert_eq!(kept["holders"]["trustee"]["head"], t1["head"]);
    assert!(kept["holders"]["customer"]["seq"].as_u64().unwrap() >= 2);
    let lines = |name: &str| {
        std::fs::read_to_string(setup.root.join(format!("audit/state.json.d/{name}.jsonl")))
            .unwrap()
            .lines()
            .count() as u64
    };
    assert_eq!(lines("trustee"), seq1);

    add_entries(&setup, 2).await;
    let second = pull(&setup, &state).await;
    assert!(second.status.success(), "{}", text(&second));
    let second = pulled(&second);
    let t2 = holder(&second, "trustee");
    assert_eq!(t2["from_seq"], seq1);
    assert_eq!(t2["new_entries"], 2);
    assert_eq!(t2["seq"], seq1 + 2);
    assert_eq!(lines("trustee"), seq1 + 2);

    // Nothing new: nothing appended, still OK.
    let third = pull(&setup, &state).await;
    assert!(third.status.success(), "{}", text(&third));
    assert_eq!(holder(&pulled(&third), "trustee")["new_entries"], 0);
    assert_eq!(lines("trustee"), seq1 + 2);

    // A tampered kept head is reported as a fork at that seq, and the state is kept.
    let mut edited = kept.clone();
    edited["holders"]["trustee"]["seq"] = serde_json::json!(seq1 + 2);
    edited["holders"]["trustee"]["head"] = serde_json::json!("ab".repeat(32));
    edited["holders"]["customer"] =
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&state).unwrap())
            .unwrap()["holders"]["customer"]
            .clone();
    std::fs::write(&state, serde_json::to_vec(&edited).unwrap()).unwrap();
    let forked = pull(&setup, &state).await;
    assert!(!forked.status.success(), "{}", text(&forked));
    assert!(
        text(&forked).contains(&format!("forked or rewritten at seq {}", seq1 + 2)),
        "{}",
        text(&forked)
    );

    // A profile without a holder's key is refused before anything is fetched.
    let profile = std::fs::read_to_string(&setup.customer_profile).unwrap();
    let without = setup.root.join("nokey.toml");
    std::fs::write(
        &without,
        profile.replace("trustee_key = \"holder/signing.pub\"\n", ""),
    )
    .unwrap();
    let output = treuhand(&[
        "audit",
        "pull",
        "--profile",
        without.to_str().unwrap(),
        "--state",
        setup.root.join("other.json").to_str().unwrap(),
    ])
    .await;
    assert!(!output.status.success());
    assert!(
        text(&output).contains("holder customer has no trustee_key"),
        "{}",
        text(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_pull_reports_a_rolled_back_log() {
    let mut setup = Setup::start().await;
    let state = setup.root.join("state.json");
    let backup = setup.root.join("backup");
    // The trustee's store as it is now, saved while the trustee is down.
    setup.kill_trustee().await;
    let files = setup.trustee_store_files();
    copy_files(&files, &backup);
    setup.restart_trustee().await;

    add_entries(&setup, 2).await;
    let output = pull(&setup, &state).await;
    assert!(output.status.success(), "{}", text(&output));
    let seq = holder(&pulled(&output), "trustee")["seq"].as_u64().unwrap();

    // The trustee's operator restores the older store: the log is rolled back by 2 entries.
    setup.kill_trustee().await;
    restore_files(&files, &backup);
    setup.restart_trustee().await;
    let output = pull(&setup, &state).await;
    assert!(!output.status.success(), "{}", text(&output));
    let all = text(&output);
    assert!(
        all.contains(&format!("rolled back from seq {seq} to seq {}", seq - 2)),
        "{all}"
    );
    let report = pulled(&output);
    assert_eq!(holder(&report, "trustee")["ok"], false);
    assert_eq!(
        holder(&report, "customer")["ok"],
        true,
        "the other holder is fine"
    );
    // The state still holds the last verified point, so the next run reports it again.
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(kept["holders"]["trustee"]["seq"], seq);
    let again = pull(&setup, &state).await;
    assert!(!again.status.success());
}

/// A trustee that serves `body` (JSON) to every request over mTLS-capable TLS: a trustee
/// whose own chain check was bypassed, serving a log with an entry cut out.
async fn serve_tampered(setup: &Setup, body: String) -> String {
    let (cert, key) = setup.pki.server("tampering");
    let mut config = (*treuhand::tls::server_config(&cert, &key, None).unwrap()).clone();
    config.alpn_protocols.clear();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let body = body.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !contains(&request, b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_pull_reports_a_removed_entry() {
    let mut setup = Setup::start().await;
    let state = setup.root.join("state.json");
    let output = pull(&setup, &state).await;
    assert!(output.status.success(), "{}", text(&output));
    let seq = holder(&pulled(&output), "trustee")["seq"].as_u64().unwrap();
    add_entries(&setup, 3).await;

    // A real trustee refuses to sign a checkpoint over a chain with a gap (it checks the
    // whole chain first), so deleting a row of its store is not enough: the tampering trustee
    // here serves the real, signed log with the first new entry cut out.
    let mut log = setup
        .client(&setup.trustee_url())
        .audit_from(TENANT, seq)
        .await
        .unwrap();
    let before = log.entries.len();
    log.entries.retain(|e| e.seq != seq + 1);
    assert_eq!(log.entries.len(), before - 1);
    let url = serve_tampered(&setup, serde_json::to_string(&log).unwrap()).await;
    let profile = std::fs::read_to_string(&setup.customer_profile).unwrap();
    std::fs::write(
        &setup.customer_profile,
        profile.replace(&setup.trustee_url(), &url),
    )
    .unwrap();

    let output = pull(&setup, &state).await;
    assert!(!output.status.success(), "{}", text(&output));
    let all = text(&output);
    assert!(
        all.contains(&format!(
            "entry seq {} (the first missing) was deleted",
            seq + 1
        )),
        "{all}"
    );
    let report = pulled(&output);
    assert_eq!(holder(&report, "trustee")["ok"], false);
    // The state keeps the last verified point for it.
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(kept["holders"]["trustee"]["seq"], seq);
    setup.kill_trustee().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_init_writes_admin_profiles_that_work() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(tmp.path()).unwrap().join("dev");
    let output = treuhand(&["dev", "init", dir.to_str().unwrap()]).await;
    assert!(output.status.success(), "{}", text(&output));
    for f in [
        "admin/demo.toml",
        "admin/demo-holder.toml",
        "admin/operator.toml",
        "trustee-b.toml",
        "trustee-b/signing.pub",
        "certs/trustee-b.pem",
        "certs/operator.pem",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let profile =
        treuhand::admin::profile::Profile::load(&dir.join("admin/demo-holder.toml")).unwrap();
    let holder_env = env_file(&dir.join("dev-holder.env"));
    let s3 = profile.s3.as_ref().unwrap();
    assert_eq!(s3.access_key_id, holder_env["AWS_ACCESS_KEY_ID"]);
    assert_eq!(
        s3.secret_access_key.expose_secret(),
        holder_env["AWS_SECRET_ACCESS_KEY"]
    );
    assert_eq!(s3.endpoint, holder_env["TREUHAND_ENDPOINT"]);
    assert_eq!(profile.holder.as_ref().unwrap().name, "customer");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("admin/demo-holder.toml"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "profiles hold S3 secrets");

    // `treuhand dev` runs the stack, the second trustee included.
    let mut stack = tokio::process::Command::new(env!("CARGO_BIN_EXE_treuhand"))
        .args(["dev", "--dir", dir.to_str().unwrap()])
        .env("TREUHAND_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = stack.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut banner = String::new();
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            banner.push_str(&line);
            banner.push('\n');
            if line.contains("Press Ctrl-C") {
                return;
            }
        }
        panic!("treuhand dev exited:\n{banner}");
    })
    .await
    .expect("treuhand dev did not come up");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    assert!(banner.contains("trustee-b"), "{banner}");
    assert!(banner.contains("admin/demo.toml"), "{banner}");

    let demo = dir.join("admin/demo.toml");
    let status = json_ok(&["tenant", "status", "--profile", demo.to_str().unwrap()]).await;
    assert_eq!(status["tenant"], "demo");
    assert_eq!(status["versions"][0]["state"], "current", "{status}");
    assert_eq!(status["holders"][0]["reachable"], true, "{status}");
    let holder = dir.join("admin/demo-holder.toml");
    let status = json_ok(&["tenant", "status", "--profile", holder.to_str().unwrap()]).await;
    assert!(
        status["holders"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["reachable"] == true),
        "{status}"
    );
    let state = dir.join("admin/audit.json");
    json_ok(&[
        "audit",
        "pull",
        "--profile",
        holder.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ])
    .await;
    let operator = dir.join("admin/operator.toml");
    let listed = json_ok(&[
        "operator",
        "grants",
        "list",
        "--tenant",
        "demo",
        "--profile",
        operator.to_str().unwrap(),
    ])
    .await;
    assert_eq!(listed["errors"], serde_json::json!([]), "{listed}");

    // The second trustee listens (idle).
    let b = treuhand::dev::stack::listen_addr(
        &treuhand::dev::stack::read_toml(&dir.join("trustee-b.toml")).unwrap(),
        "listen",
    )
    .unwrap();
    assert!(tokio::net::TcpStream::connect(b).await.is_ok());

    let pid = stack.id().unwrap();
    let _ = tokio::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .await;
    let status = tokio::time::timeout(Duration::from_secs(60), stack.wait())
        .await
        .expect("treuhand dev did not stop")
        .unwrap();
    assert!(status.success(), "{status}");
}
