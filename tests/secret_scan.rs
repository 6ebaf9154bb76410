//! No secret reaches a log or a state file, at any log level.
//!
//! The real `treuhand` binary runs the dev stack (`treuhand dev init`, then the trustee, the
//! customer's holder and the proxy as separate processes, exactly as `treuhand dev` starts them)
//! with `RUST_LOG=trace`, each process logging to its own file. The test drives SSE-C PUT/GET,
//! CopyObject with copy-source SSE-C headers, a multipart upload, presigned GETs, holder-tenant
//! traffic, a browser-style POST form carrying the share, a request with a wrong SigV4
//! signature, and a broken registration (on a SIGHUP reload and at startup).
//! Then it scans every file under the test directory (logs, stores, storage, configs), except
//! the few files whose job is to hold a secret (listed in [`allowed_holders`]), for every secret
//! in raw, lower and upper hex, base64 and base64url form, with and without padding.
//!
//! The secrets: both customer shares (and the holder tenant's text envelope), the trustee's
//! shares, each tenant master key and KEK, both tenants' SigV4 secrets, the signature the proxy
//! computes for the forged request, the broken registration's secret and the trustee's and the
//! holder's sealing and signing keys.
//!
//! The other tests pin the pieces: `Debug` of each config type and the text of config parse
//! errors never contain the secret they were given.
// Tests may unwrap/expect/panic: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

const BIN: &str = env!("CARGO_BIN_EXE_treuhand");

/// The processes of the stack; killed on drop so a failing test leaves nothing running.
struct Stack {
    children: Vec<(&'static str, Child)>,
}

impl Stack {
    fn pid(&self, name: &str) -> u32 {
        self.children
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| c.id())
            .unwrap()
    }

    /// SIGTERM each process (graceful shutdown flushes its last log lines) and wait for it.
    fn stop(mut self) {
        for (_, child) in &mut self.children {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        for (name, child) in &mut self.children {
            let status = child.wait().unwrap();
            assert!(
                status.success() || status.code().is_none(),
                "{name}: {status}"
            );
        }
        self.children.clear();
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `treuhand ARGS` with every log at trace, stderr to `log`.
fn treuhand(args: &[&str], log: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("RUST_LOG", "trace")
        .env_remove("TREUHAND_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
        .stderr(std::fs::File::create(log).unwrap());
    command
}

fn listen_of(config: &Path) -> SocketAddr {
    let value: toml::Value = toml::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    value["listen"].as_str().unwrap().parse().unwrap()
}

fn wait_for_port(addr: SocketAddr, child: &mut Child, name: &str) {
    for _ in 0..600 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{name} exited with {status} before listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{name} did not listen on {addr}");
}

/// Every encoding a secret could leak in.
fn encodings(raw: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("raw", raw.to_vec()),
        ("hex", hex::encode(raw).into_bytes()),
        ("HEX", hex::encode_upper(raw).into_bytes()),
        ("base64", STANDARD.encode(raw).into_bytes()),
        ("base64-nopad", STANDARD_NO_PAD.encode(raw).into_bytes()),
        ("base64url", URL_SAFE.encode(raw).into_bytes()),
        ("base64url-nopad", URL_SAFE_NO_PAD.encode(raw).into_bytes()),
    ]
}

/// The files whose job is to hold a secret, relative to the dev directory. Everything else
/// (every log, the trustee and holder stores with their WAL files, the ciphertext storage,
/// proxy.toml, trustee.toml, holder.toml, certificates) is scanned.
fn allowed_holders() -> Vec<&'static str> {
    vec![
        // The demo customer's raw share: the file the aws cli sends as the SSE-C key.
        "customer.share",
        // The key ceremony's output for the customers: raw and text shares.
        "shares/demo.share",
        "shares/demo.share.txt",
        "shares/demo-holder.share.txt",
        // The tenants' SigV4 credentials for the aws cli (mode 0600).
        "dev.env",
        "dev-holder.env",
        // The strict tenant's S3 credentials, which its customer generated at the ceremony.
        "demo-holder.s3-credentials",
        "shares/demo-holder.s3-credentials",
        // The customer admins' profiles carry their tenant's S3 credentials (`[s3]`, mode 0600).
        "admin/demo.toml",
        "admin/demo-holder.toml",
        // The standard tenant's registration: the proxy needs its SigV4 secret to verify
        // signatures. Not `demo-holder`'s: a strict tenant's secret is never the proxy's, so
        // its registration is scanned like any other file.
        "tenants/demo.toml",
        // The trustee's and the holder's own keys (sealing shares at rest, signing the chain).
        "trustee/sealing.key",
        "trustee/signing.key",
        "holder/sealing.key",
        "holder/signing.key",
    ]
}

fn read_hex_key(path: &Path) -> Vec<u8> {
    hex::decode(std::fs::read_to_string(path).unwrap().trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_at_trace_writes_no_secret_to_any_log_or_state_file() {
    treuhand::tls::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let dir = root.join("dev");
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    let init_log = logs.join("init.log");
    let status = treuhand(&["dev", "init", dir.to_str().unwrap()], &init_log)
        .status()
        .unwrap();
    assert!(status.success(), "dev init: {status}");

    let mut stack = Stack {
        children: Vec::new(),
    };
    for (name, args) in [
        ("trustee", ["trustee", "--config", "trustee.toml"]),
        ("holder", ["trustee", "--config", "holder.toml"]),
        ("proxy", ["proxy", "--config", "proxy.toml"]),
    ] {
        let config = dir.join(args[2]);
        let mut command = treuhand(
            &[args[0], args[1], config.to_str().unwrap()],
            &logs.join(format!("{name}.log")),
        );
        let mut child = command.spawn().unwrap();
        wait_for_port(listen_of(&config), &mut child, name);
        stack.children.push((name, child));
    }

    let demo_vars = env_file(&dir.join("dev.env"));
    let holder_vars = env_file(&dir.join("dev-holder.env"));
    let tenant = |vars: &HashMap<String, String>| TestTenant {
        id: vars["TREUHAND_BUCKET"].clone(),
        access_key_id: vars["AWS_ACCESS_KEY_ID"].clone(),
        secret_access_key: vars["AWS_SECRET_ACCESS_KEY"].clone(),
        share: None,
    };
    let demo = tenant(&demo_vars);
    let holder = tenant(&holder_vars);
    let share: [u8; 32] = std::fs::read(dir.join("customer.share"))
        .unwrap()
        .try_into()
        .unwrap();
    let share_b64 = STANDARD.encode(share);
    let holder_share_text =
        std::fs::read_to_string(dir.join("shares/demo-holder.share.txt")).unwrap();
    let holder_share = treuhand::crypto::ShareEnvelope::parse(&holder_share_text).unwrap();

    let endpoint = demo_vars["TREUHAND_ENDPOINT"].clone();
    let proxy_addr: SocketAddr = endpoint.trim_start_matches("https://").parse().unwrap();
    let handle = support::Proxy::attach(proxy_addr);
    let ca_pem = dir.join("certs/ca.pem");
    let pki = Pki {
        dir: dir.join("certs"),
        ca: treuhand::tls::DevCa::load(&ca_pem, &dir.join("certs/ca.key")).unwrap(),
        ca_pem: ca_pem.clone(),
    };
    let raw = Raw::new(&handle, &pki);
    let sse = sse_c_headers(&share_b64);

    // SSE-C PUT and GET.
    let body = b"secret scan: hello".to_vec();
    let put = raw.put(&demo, "/demo/a.txt", &sse, body.clone()).await;
    assert_eq!(put.status, 200, "{}", put.text());
    let get = raw.get(&demo, "/demo/a.txt", &sse).await;
    assert_eq!(get.status, 200, "{}", get.text());
    assert_eq!(get.body, body);

    // CopyObject with copy-source SSE-C headers.
    let mut copy = sse.clone();
    for (name, value) in &sse {
        let source = name.replace(
            "x-amz-server-side-encryption",
            "x-amz-copy-source-server-side-encryption",
        );
        copy.push((Box::leak(source.into_boxed_str()), value.clone()));
    }
    copy.push(("x-amz-copy-source", "/demo/a.txt".to_owned()));
    let copied = raw.put(&demo, "/demo/b.txt", &copy, vec![]).await;
    assert_eq!(copied.status, 200, "{}", copied.text());

    // A multipart upload, SSE-C on every step.
    let create = raw
        .query(&demo, "POST", "/demo/mp.bin", &[("uploads", "")], &sse)
        .await;
    assert_eq!(create.status, 200, "{}", create.text());
    let id = xml_tag(&create.text(), "UploadId");
    let part = raw
        .send(
            Some(&demo),
            "PUT",
            "/demo/mp.bin",
            &[("partNumber", "1"), ("uploadId", &id)],
            &sse,
            support::data(3000, 7),
        )
        .await
        .unwrap();
    assert_eq!(part.status, 200, "{}", part.text());
    let etag = part.headers["etag"].to_str().unwrap().to_owned();
    let complete = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
    );
    let done = raw
        .send(
            Some(&demo),
            "POST",
            "/demo/mp.bin",
            &[("uploadId", &id)],
            &sse,
            complete.into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(done.status, 200, "{}", done.text());
    let back = raw.get(&demo, "/demo/mp.bin", &sse).await;
    assert_eq!(back.body, support::data(3000, 7));

    // Holder-tenant traffic: the proxy fetches the customer share from the holder.
    let put = raw
        .put(&holder, "/demo-holder/h.txt", &[], body.clone())
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let get = raw.get(&holder, "/demo-holder/h.txt", &[]).await;
    assert_eq!(get.body, body);

    // Presigned GETs: the holder tenant's, and the demo tenant's with SSE-C headers.
    use object_store::signer::Signer as _;
    let http = https_client(&ca_pem, b"http/1.1", reqwest::Client::builder());
    for (tenant, bucket, key, headers) in [
        (&holder, "demo-holder", "h.txt", Vec::new()),
        (&demo, "demo", "a.txt", sse.clone()),
    ] {
        let url = s3_builder(&endpoint, &ca_pem, tenant, bucket)
            .build()
            .unwrap()
            .signed_url(
                http::Method::GET,
                &object_store::path::Path::from(key),
                Duration::from_secs(300),
            )
            .await
            .unwrap();
        let mut request = http.get(url.as_str());
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "presigned {bucket}/{key}");
        assert_eq!(response.bytes().await.unwrap().as_ref(), body.as_slice());
    }

    // A request signed with a wrong secret. The signature the proxy computes for it (with the
    // right secret) would authenticate the same request if it leaked.
    let amz_date = amz_date_now();
    let host = proxy_addr.to_string();
    let signed_headers: Vec<(&str, &str)> = sse.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let input = treuhand::crypto::sigv4::SigningInput {
        method: "GET",
        host: &host,
        path: "/demo/a.txt",
        query: &[],
        headers: &signed_headers,
        amz_date: &amz_date,
        region: support::REGION,
    };
    let wrong_secret = "not-the-secret-of-demo-0123456789";
    let forged = treuhand::crypto::sigv4::authorization(&input, &demo.access_key_id, wrong_secret);
    let correct = treuhand::crypto::sigv4::authorization(
        &input,
        &demo.access_key_id,
        &demo.secret_access_key,
    );
    let correct_signature = correct.rsplit("Signature=").next().unwrap().to_owned();
    assert_eq!(correct_signature.len(), 64);
    let mut request = http
        .get(format!("{endpoint}/demo/a.txt"))
        .header("x-amz-date", &amz_date)
        .header(
            "x-amz-content-sha256",
            treuhand::crypto::sigv4::UNSIGNED_PAYLOAD,
        )
        .header("authorization", &forged);
    for (name, value) in &sse {
        request = request.header(*name, value);
    }
    let refused = request.send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 403);

    // A browser-style POST upload whose form fields carry the share (s3s parses the form to
    // check its policy signature, whatever the answer is).
    let fields = [
        ("key", "form.txt"),
        ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
        (
            "x-amz-server-side-encryption-customer-key",
            share_b64.as_str(),
        ),
        ("policy", "e30="),
        ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
    ];
    let posted = post_form(&http, format!("{endpoint}/demo"), &fields, "", "body").await;
    assert!(!posted.status().is_success(), "an unsigned form is refused");

    // A broken registration holding a SigV4 secret, picked up by a SIGHUP reload: the reload
    // fails and says where, without the line.
    let broken_secret = "BrokenRegistrationSecret-5f1c9a7e";
    let broken = dir.join("tenants/zz-broken.toml");
    let broken_text =
        format!("access_key_id = \"THBROKEN\"\nsecret_access_key = \"{broken_secret}\" oops\n");
    std::fs::write(&broken, &broken_text).unwrap();
    let _ = Command::new("kill")
        .arg("-HUP")
        .arg(stack.pid("proxy").to_string())
        .status()
        .unwrap();
    let proxy_log = logs.join("proxy.log");
    let mut reported = false;
    for _ in 0..600 {
        let text = std::fs::read_to_string(&proxy_log).unwrap_or_default();
        if text.contains("tenant reload failed") {
            reported = true;
            assert!(text.contains("zz-broken.toml"), "the error names the file");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reported, "the proxy did not report the failed reload");
    std::fs::remove_file(&broken).unwrap();

    // The object keys of `demo`'s stored objects and the trustee's evaluations behind them,
    // fetched and derived the way the proxy does (per-object keys: no share of an OPRF tenant
    // key is ever released, and there is no tenant key to derive): none may be in a log either.
    // `demo-holder` is strict: its trustee evaluates only for the customer's signed requests.
    let config = treuhand::proxy::config::ProxyConfig::load(&dir.join("proxy.toml")).unwrap();
    let tls = treuhand::tls::client_config(
        &config.trustee_client.ca,
        Some((&config.trustee_client.cert, &config.trustee_client.key)),
    )
    .unwrap();
    let mut derived: Vec<(String, Vec<u8>)> = Vec::new();
    let registrations = config.load_tenants().unwrap();
    let registration = registrations
        .iter()
        .find(|r| r.metadata.tenant == "demo")
        .unwrap();
    let metadata = &registration.metadata;
    let trustee = &registration.trustees[0];
    let trustee_x = metadata.holder(&trustee.holder).unwrap().x;
    let trustee_key = treuhand::crypto::scheme::holder_key(metadata, trustee_x).unwrap();
    let customer = treuhand::crypto::scheme::key_share(
        metadata,
        &treuhand::crypto::shamir::share_from_raw(metadata, &registration.customer_holder, &share)
            .unwrap(),
    )
    .unwrap();
    let client = treuhand::trustee::client::TrusteeClient::new(&trustee.url, tls.clone()).unwrap();
    let objects = support::stored_files(&dir.join("storage/tenants/demo/objects"));
    for (path, stored) in &objects {
        let info = treuhand::format::peek_header(stored).unwrap();
        // Stored as `<bucket>/<encoded key>`: the key is the one the test wrote.
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let key = treuhand::storage::decode_key(&name).unwrap_or(name);
        let identity = treuhand::crypto::oprf::ObjectIdentity {
            tenant: "demo".into(),
            key_version: info.key_version,
            bucket: "demo".into(),
            key: key.clone(),
            id: info.object_id.unwrap(),
        };
        let evaluation = client
            .evaluate(
                "demo",
                info.key_version,
                &treuhand::trustee::wire::EvaluateRequest {
                    justification: treuhand::trustee::wire::Justification::CustomerAccess,
                    request_id: "secret-scan".into(),
                    object: treuhand::trustee::wire::EvaluatedObject {
                        bucket: "demo".into(),
                        key: key.clone(),
                        id: STANDARD.encode(identity.id.0),
                    },
                    reason: String::new(),
                    signed: None,
                },
            )
            .await
            .unwrap();
        let local = treuhand::crypto::oprf::evaluate_local(&customer, &identity).unwrap();
        let y = treuhand::crypto::oprf::combine(
            &identity,
            &[local],
            &[(trustee_x, trustee_key, evaluation)],
            usize::from(metadata.threshold),
        )
        .unwrap();
        let kek = treuhand::crypto::oprf::object_kek(&y, &identity).unwrap();
        // The key the proxy used: it opens the stored header.
        let key_id = metadata.key_id().unwrap();
        let context = treuhand::crypto::DekContext {
            key: &key_id,
            bucket: "demo",
            object: &key,
        };
        treuhand::format::open_object(&kek, &context, stored).unwrap();
        derived.push((
            format!("demo {key} trustee evaluation"),
            evaluation.element.compress().to_bytes().to_vec(),
        ));
        derived.push((
            format!("demo {key} object KEK"),
            kek.expose_secret().to_vec(),
        ));
    }
    assert!(!objects.is_empty() && derived.len() == 2 * objects.len());

    stack.stop();

    // The same broken registration at startup: the proxy refuses to start and says where.
    std::fs::write(&broken, &broken_text).unwrap();
    let startup_log = logs.join("proxy-startup.log");
    let status = treuhand(
        &[
            "proxy",
            "--config",
            dir.join("proxy.toml").to_str().unwrap(),
        ],
        &startup_log,
    )
    .status()
    .unwrap();
    assert!(!status.success());
    let startup = std::fs::read_to_string(&startup_log).unwrap();
    assert!(startup.contains("zz-broken.toml: line 2"), "{startup}");
    std::fs::remove_file(&broken).unwrap();

    // The registrations as the proxy loads them print no secret either.
    let config = treuhand::proxy::config::ProxyConfig::load(&dir.join("proxy.toml")).unwrap();
    let printed = format!("{config:?} {:?}", config.load_tenants().unwrap());
    for secret in [&demo.secret_access_key, &holder.secret_access_key] {
        assert!(!printed.contains(secret.as_str()), "{printed}");
    }

    // Every secret of the stack, with a name for the report.
    let mut secrets: Vec<(String, Vec<u8>)> = vec![
        ("demo customer share".into(), share.to_vec()),
        (
            "demo-holder customer share".into(),
            holder_share.share.expose_secret().to_vec(),
        ),
        (
            "demo-holder customer share envelope".into(),
            holder_share_text.trim().as_bytes().to_vec(),
        ),
        (
            "demo SigV4 secret".into(),
            demo.secret_access_key.clone().into_bytes(),
        ),
        (
            "demo-holder SigV4 secret".into(),
            holder.secret_access_key.clone().into_bytes(),
        ),
        (
            "correct signature of the refused request".into(),
            correct_signature.clone().into_bytes(),
        ),
        (
            "correct signature of the refused request (bytes)".into(),
            hex::decode(&correct_signature).unwrap(),
        ),
        (
            "broken registration's secret".into(),
            broken_secret.as_bytes().to_vec(),
        ),
    ];
    secrets.extend(derived);
    for who in ["trustee", "holder"] {
        for key in ["sealing", "signing"] {
            secrets.push((
                format!("{who} {key} key"),
                read_hex_key(&dir.join(format!("{who}/{key}.key"))),
            ));
        }
    }

    let allowed: Vec<PathBuf> = allowed_holders().iter().map(|p| dir.join(p)).collect();
    let files = files_under(&root);
    let scanned: Vec<&PathBuf> = files.iter().filter(|f| !allowed.contains(f)).collect();
    for must in [
        "logs/init.log",
        "logs/trustee.log",
        "logs/holder.log",
        "logs/proxy.log",
        "logs/proxy-startup.log",
    ] {
        assert!(
            scanned.contains(&&root.join(must)),
            "{must} is missing from the scan"
        );
    }
    // The logs really are at trace (a scan of empty logs would prove nothing).
    let proxy_text = std::fs::read_to_string(&proxy_log).unwrap();
    assert!(
        proxy_text.contains("TRACE"),
        "the proxy did not log at trace"
    );
    let mut leaks = Vec::new();
    for file in &scanned {
        let bytes = std::fs::read(file).unwrap();
        for (name, secret) in &secrets {
            for (encoding, needle) in encodings(secret) {
                if contains(&bytes, &needle) {
                    leaks.push(format!(
                        "{}: {name} ({encoding})",
                        file.strip_prefix(&root).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "secrets found:\n{}", leaks.join("\n"));
}

/// A registration whose secret sits on a line with a TOML syntax error.
const BROKEN_REGISTRATION: &str = "access_key_id = \"THTEST\"\n\
    secret_access_key = \"LeakedIfPrinted-0123456789\" trailing\n";

/// Loads the tenants of a minimal proxy.toml in `dir` (tenants in `dir/tenants`) and returns
/// the error it must give.
fn load_tenants_error(dir: &Path) -> String {
    let proxy_toml = dir.join("proxy.toml");
    std::fs::write(
        &proxy_toml,
        "listen = \"127.0.0.1:0\"\ntenants_dir = \"tenants\"\n\
         [tls]\ncert = \"c.pem\"\nkey = \"c.key\"\n\
         [trustee_client]\nca = \"ca.pem\"\ncert = \"p.pem\"\nkey = \"p.key\"\n",
    )
    .unwrap();
    let config = treuhand::proxy::config::ProxyConfig::load(&proxy_toml).unwrap();
    config.load_tenants().unwrap_err().to_string()
}

#[test]
fn registration_parse_error_names_position_not_the_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let tenants = tmp.path().join("tenants");
    std::fs::create_dir_all(&tenants).unwrap();
    std::fs::write(tenants.join("t.toml"), BROKEN_REGISTRATION).unwrap();
    let err = load_tenants_error(tmp.path());
    assert!(!err.contains("LeakedIfPrinted"), "{err}");
    assert!(err.contains("t.toml"), "{err}");
    assert!(err.contains("line 2"), "{err}");
}

/// A value of the wrong type is echoed by serde's messages ("invalid type: integer `…`").
#[test]
fn registration_type_error_does_not_echo_the_value() {
    let tmp = tempfile::tempdir().unwrap();
    let tenants = tmp.path().join("tenants");
    std::fs::create_dir_all(&tenants).unwrap();
    std::fs::write(
        tenants.join("t.toml"),
        "access_key_id = \"THTEST\"\nsecret_access_key = 918273645546372819\n",
    )
    .unwrap();
    let err = load_tenants_error(tmp.path());
    assert!(!err.contains("918273645546372819"), "{err}");
    assert!(err.contains("line 2"), "{err}");
}

const S3_STORAGE_SECRET: &str = "StorageSecretKey-abcdef0123456789";

fn proxy_toml_with_s3_storage(trailer: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\ntenants_dir = \"tenants\"\n\
         [tls]\ncert = \"c.pem\"\nkey = \"c.key\"\n\
         [trustee_client]\nca = \"ca.pem\"\ncert = \"p.pem\"\nkey = \"p.key\"\n\
         [storage]\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:1\"\nbucket = \"b\"\n\
         access_key_id = \"AK\"\nsecret_access_key = \"{S3_STORAGE_SECRET}\"{trailer}\n"
    )
}

#[test]
fn proxy_config_debug_redacts_the_storage_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("proxy.toml");
    std::fs::write(&path, proxy_toml_with_s3_storage("")).unwrap();
    let config = treuhand::proxy::config::ProxyConfig::load(&path).unwrap();
    let printed = format!("{config:?} {:?} {config:#?}", config.storage);
    assert!(!printed.contains(S3_STORAGE_SECRET), "{printed}");
    assert!(printed.contains("REDACTED"), "{printed}");
}

#[test]
fn proxy_config_parse_error_does_not_print_the_storage_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("proxy.toml");
    std::fs::write(&path, proxy_toml_with_s3_storage(" ,")).unwrap();
    let err = treuhand::proxy::config::ProxyConfig::load(&path)
        .unwrap_err()
        .to_string();
    assert!(!err.contains(S3_STORAGE_SECRET), "{err}");
    assert!(err.contains("line 15"), "{err}");
}

#[test]
fn tenant_create_help_does_not_print_the_secret_from_the_environment() {
    // clap prints `[env: NAME=value]` in --help unless told not to; the tenant's SigV4 secret
    // is meant to come from that variable, so a `--help` on a shared terminal would show it.
    let secret = "s3cr3t-from-the-environment-7f3a";
    let output = Command::new(env!("CARGO_BIN_EXE_treuhand"))
        .args(["tenant", "create", "--help"])
        .env("TREUHAND_TENANT_SECRET_ACCESS_KEY", secret)
        .output()
        .expect("run treuhand tenant create --help");
    assert!(output.status.success(), "--help failed: {output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("TREUHAND_TENANT_SECRET_ACCESS_KEY"),
        "help no longer names the variable: {text}"
    );
    assert!(!text.contains(secret), "help printed the secret: {text}");
}
