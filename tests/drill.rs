//! The trusteeship's whole life as one drill, with the real binaries over real TLS on the
//! configs `treuhand dev init` writes, and the commands as the README names them:
//!
//! create (dev init), write, rotate, rewrap (bodies byte-identical in storage), shred the old
//! version, hand over to a second trustee, stop the old trustee for good, read everything
//! back; then shred the current version and see GETs refused within about a second although
//! the proxy's key cache TTL is an hour (the revocation stream, not the TTL, ends it).
// Tests may unwrap/expect/panic: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use support::*;

const BUCKET_NAME: &str = "drill";

/// Runs `treuhand ARGS`, returning stdout; panics with both streams if it fails.
fn treuhand(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_treuhand"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "treuhand {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}"
    );
    eprintln!("$ treuhand {}\n{stdout}{stderr}", args.join(" "));
    stdout
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn share_b64(path: &Path) -> String {
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap())
}

/// The stored ciphertext of every object, by path, split into (header, body).
fn stored(root: &Path) -> BTreeMap<PathBuf, (Vec<u8>, Vec<u8>)> {
    stored_files(root)
        .into_iter()
        .filter_map(|(path, bytes)| {
            let len = treuhand::format::header_len_hint(&bytes)?;
            let (header, body) = bytes.split_at(len);
            Some((path, (header.to_vec(), body.to_vec())))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_trusteeship_drill() {
    treuhand::tls::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(tmp.path()).unwrap().join("dev");
    let d = dir.to_str().unwrap().to_owned();
    treuhand(&["dev", "init", &d]);
    // An hour of key cache: only the revocation stream can end a shredded key's use in time.
    let proxy_toml = dir.join("proxy.toml");
    let mut proxy: toml::Table =
        toml::from_str(&std::fs::read_to_string(&proxy_toml).unwrap()).unwrap();
    let mut cache = toml::Table::new();
    cache.insert("ttl_secs".into(), 3600.into());
    cache.insert("max_entries".into(), 1024.into());
    proxy.insert("cache".into(), cache.into());
    std::fs::write(&proxy_toml, toml::to_string(&proxy).unwrap()).unwrap();

    let trustee = TrusteeProcess::start(&dir.join("trustee.toml")).await;
    let holder = TrusteeProcess::start(&dir.join("holder.toml")).await;
    let trustee_b = TrusteeProcess::start(&dir.join("trustee-b.toml")).await;
    let proxy = ProxyProcess::start(&proxy_toml).await;
    let _ = &holder;

    let env = env_file(&dir.join("dev.env"));
    let demo = TestTenant {
        id: "demo".into(),
        access_key_id: env["AWS_ACCESS_KEY_ID"].clone(),
        secret_access_key: env["AWS_SECRET_ACCESS_KEY"].clone(),
        share: None,
    };
    let pki = Pki {
        dir: dir.join("certs"),
        ca: treuhand::tls::DevCa::load(&dir.join("certs/ca.pem"), &dir.join("certs/ca.key"))
            .unwrap(),
        ca_pem: dir.join("certs/ca.pem"),
    };
    let s3 = Raw::new(&support::Proxy::attach(proxy.addr), &pki);
    let profile = dir.join("admin/demo.toml");
    let profile = profile.to_str().unwrap();
    let receipts = dir.join("receipts");
    let receipts = receipts.to_str().unwrap();
    let v1 = share_b64(&dir.join("shares/demo.share"));

    // Write under version 1.
    s3.create_bucket(&demo, BUCKET_NAME).await;
    let objects: Vec<(String, Vec<u8>)> = vec![
        ("a.txt".into(), data(1000, 1)),
        ("b/big.bin".into(), data(1024 * 1024 + 17, 2)),
        ("c with space".into(), data(65_536, 3)),
    ];
    for (key, body) in &objects {
        let path = format!("/{BUCKET_NAME}/{key}");
        let r = s3
            .put(&demo, &path, &sse_c_headers(&v1), body.clone())
            .await;
        assert_eq!(r.status, 200, "PUT {key}: {}", r.text());
    }
    let storage = dir.join("storage");
    let before = stored(&storage);
    assert!(before.len() >= objects.len(), "{before:?}");

    // Rotate: version 2, picked up by the running proxy without a restart.
    let rotated = json(&treuhand(&[
        "tenant",
        "rotate",
        "--profile",
        profile,
        "--json",
    ]));
    assert_eq!(rotated["tenant"], "demo");
    assert_eq!(rotated["key_version"], 2);
    let v2 = share_b64(Path::new(rotated["share_file"].as_str().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = s3
            .put(
                &demo,
                &format!("/{BUCKET_NAME}/new-under-v2"),
                &sse_c_headers(&v2),
                b"written under version 2".to_vec(),
            )
            .await;
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy never took version 2: {}",
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A write with the retired share names the current version.
    let r = s3
        .put(
            &demo,
            &format!("/{BUCKET_NAME}/stale"),
            &sse_c_headers(&v1),
            b"x".to_vec(),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("current key version is 2"),
        "{}",
        r.text()
    );

    // Rewrap version 1 to version 2: headers change, body bytes do not.
    let rewrapped = json(&treuhand(&[
        "tenant",
        "rewrap",
        "--profile",
        profile,
        "--from",
        "1",
        "--json",
    ]));
    assert_eq!(rewrapped["rewrapped"], objects.len() as u64, "{rewrapped}");
    assert_eq!(rewrapped["failed"], 0, "{rewrapped}");
    let after = stored(&storage);
    for (path, (header, body)) in &before {
        let (new_header, new_body) = after.get(path).expect("object still stored");
        assert_eq!(new_body, body, "{}: body bytes changed", path.display());
        assert_ne!(
            new_header,
            header,
            "{}: header not rewrapped",
            path.display()
        );
    }
    // A rerun finds nothing left to do.
    let again = json(&treuhand(&[
        "tenant",
        "rewrap",
        "--profile",
        profile,
        "--from",
        "1",
        "--json",
    ]));
    assert_eq!(again["rewrapped"], 0, "{again}");

    // Shred version 1 everywhere; each receipt verifies against its holder's key.
    treuhand(&[
        "tenant",
        "shred",
        "--profile",
        profile,
        "--version",
        "1",
        "--receipt-dir",
        receipts,
    ]);
    let trustee_pub = dir.join("trustee/signing.pub");
    let receipt = Path::new(receipts).join("demo-v1-trustee.receipt.json");
    treuhand(&[
        "receipt",
        "verify",
        "--receipt",
        receipt.to_str().unwrap(),
        "--trustee-key",
        trustee_pub.to_str().unwrap(),
    ]);

    // Leave the trustee: hand its share over to trustee-b, then stop it for good.
    let to = format!("trustee-b={}", trustee_b.url);
    treuhand(&[
        "tenant",
        "handover",
        "--profile",
        profile,
        "--from",
        "trustee",
        "--to",
        &to,
        "--receipt-dir",
        receipts,
    ]);
    trustee.kill().await;
    let after_handover = stored(&storage);
    assert_eq!(
        after_handover.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (path, stored) in &after {
        // The hand-over changes no stored byte: the tenant key is the same.
        assert_eq!(after_handover.get(path), Some(stored), "{}", path.display());
    }

    // Everything reads back through the new trustee (the registration follows by itself).
    let mut all = objects.clone();
    all.push(("new-under-v2".into(), b"written under version 2".to_vec()));
    let deadline = Instant::now() + Duration::from_secs(30);
    for (key, body) in &all {
        loop {
            let r = s3
                .get(&demo, &format!("/{BUCKET_NAME}/{key}"), &sse_c_headers(&v2))
                .await;
            if r.status == 200 {
                assert_eq!(&r.body[..], &body[..], "{key}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "GET {key}: {} {}",
                r.status,
                r.text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Shred the current version: a warm cache (TTL one hour) stops serving it at once.
    let warm = format!("/{BUCKET_NAME}/a.txt");
    assert_eq!(s3.get(&demo, &warm, &sse_c_headers(&v2)).await.status, 200);
    treuhand(&[
        "tenant",
        "shred",
        "--profile",
        profile,
        "--version",
        "2",
        "--receipt-dir",
        receipts,
    ]);
    let shredded_at = Instant::now();
    let delay = loop {
        let r = s3.get(&demo, &warm, &sse_c_headers(&v2)).await;
        if r.status != 200 {
            assert!(
                r.status == 403 || r.status == 500 || r.status == 503,
                "{}",
                r.status
            );
            break shredded_at.elapsed();
        }
        assert!(
            shredded_at.elapsed() < Duration::from_secs(60),
            "a shredded key was still served after a minute"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!("shred-to-refusal delay: {} ms", delay.as_millis());
    proxy.kill().await;
}
