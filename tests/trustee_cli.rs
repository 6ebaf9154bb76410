//! The `treuhand trustee` and `treuhand audit` command lines: helpful errors, keygen,
//! check-config.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly on purpose

mod support;

use std::process::{Command, Output};
use support::*;

fn treuhand(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_treuhand"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

/// Asserts that the command's stderr contains `text`, showing all of it if not.
fn assert_stderr_contains(output: &Output, text: &str) {
    assert!(stderr(output).contains(text), "{}", stderr(output));
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let output = treuhand(&["trustee", "--config", "/nonexistent/trustee.toml"]);
    assert!(!output.status.success());
    assert_stderr_contains(
        &output,
        "cannot read the configuration file /nonexistent/trustee.toml",
    );
}

#[test]
fn config_naming_a_missing_key_file_says_how_to_create_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut config) = write_setup(dir.path());
    config.keys.sealing_key = dir.path().join("missing.key");
    let path = save_trustee_toml(dir.path(), &config);
    let output = treuhand(&["trustee", "--config", path.to_str().unwrap()]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("keys.sealing_key") && text.contains("treuhand trustee keygen"),
        "{text}"
    );
}

#[test]
fn keygen_then_check_config_succeeds_and_keygen_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = write_setup(dir.path());
    let path = save_trustee_toml(dir.path(), &config);
    let output = treuhand(&[
        "trustee",
        "check-config",
        "--config",
        path.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !config.store.path.exists(),
        "check-config must not create the store"
    );

    let keys = dir.path().join("fresh");
    let output = treuhand(&["trustee", "keygen", "--dir", keys.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(keys.join("signing.pub").is_file());
    let output = treuhand(&["trustee", "keygen", "--dir", keys.to_str().unwrap()]);
    assert!(!output.status.success());
    assert_stderr_contains(&output, "refusing to overwrite");
}

#[test]
fn audit_verify_rejects_a_bad_key_and_a_non_log() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("log.json");
    std::fs::write(&file, br#"{"not": "a log"}"#).unwrap();
    let log = file.to_str().unwrap();
    let output = treuhand(&["audit", "verify", "--log", log, "--trustee-key", "abc"]);
    assert!(!output.status.success());
    assert_stderr_contains(&output, "64 hex digits");
    let key = "00".repeat(32);
    let output = treuhand(&["audit", "verify", "--log", log, "--trustee-key", &key]);
    assert!(!output.status.success());
    assert_stderr_contains(&output, "not a treuhand audit log");
}

/// `treuhand tenant create` for tenant `acme` with the customer admin identity of a fresh
/// TEST-ONLY PKI in `dir`, the trustees at unreachable URLs (the tests below end before any
/// deposit), and `extra` arguments.
fn tenant_create(dir: &std::path::Path, extra: &[&str], secret_env: Option<&str>) -> Output {
    let pki = Pki::new(dir);
    let (cert, key) = pki.client(treuhand::tls::Role::Customer, "acme", "customer-acme");
    let registration = dir.join("tenants");
    let shares = dir.join("shares");
    let mut args = vec![
        "tenant",
        "create",
        "--tenant",
        "acme",
        "--ca",
        pki.ca_pem.to_str().unwrap(),
        "--client-cert",
        cert.to_str().unwrap(),
        "--client-key",
        key.to_str().unwrap(),
        "--allow-proxy",
        "dev-proxy",
        "--access-key-id",
        "AKACME",
        "--registration-dir",
        registration.to_str().unwrap(),
        "--share-dir",
        shares.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut command = Command::new(env!("CARGO_BIN_EXE_treuhand"));
    command
        .args(&args)
        .env("RUST_LOG", "off")
        .env_remove("TREUHAND_TENANT_SECRET_ACCESS_KEY");
    if let Some(secret) = secret_env {
        command.env("TREUHAND_TENANT_SECRET_ACCESS_KEY", secret);
    }
    command.output().unwrap()
}

#[test]
fn tenant_create_refuses_trustees_alone_and_says_what_the_flag_means() {
    let dir = tempfile::tempdir().unwrap();
    let trustees = [
        "--trustee",
        "t1=https://127.0.0.1:9",
        "--trustee",
        "t2=https://127.0.0.1:9",
        "--threshold",
        "2",
    ];
    let output = tenant_create(dir.path(), &trustees, Some("operator-secret-1"));
    assert!(!output.status.success());
    assert_stderr_contains(&output, "trustee(s) alone reach the threshold");
    assert_stderr_contains(&output, "--threshold to 3");
    assert_stderr_contains(&output, "--allow-trustees-alone");
    assert!(!dir.path().join("tenants").exists());
    assert!(!dir.path().join("shares").exists());
}

#[test]
fn tenant_create_strict_refuses_an_operator_secret_and_standard_needs_one() {
    let dir = tempfile::tempdir().unwrap();
    let trustee = ["--trustee", "t1=https://127.0.0.1:9"];
    // A secret for a strict tenant, from the environment or the command line: refused.
    let strict = [trustee[0], trustee[1], "--strict"];
    let output = tenant_create(dir.path(), &strict, Some("operator-secret-1"));
    assert!(!output.status.success());
    assert_stderr_contains(
        &output,
        "--strict generates the tenant's S3 secret access key",
    );
    assert!(!stderr(&output).contains("operator-secret-1"));
    let with_flag = [&strict[..], &["--secret-access-key", "operator-secret-2"]].concat();
    let output = tenant_create(dir.path(), &with_flag, None);
    assert!(!output.status.success());
    assert_stderr_contains(&output, "drop --secret-access-key");
    // A standard tenant without a secret: told to pass one, or to choose --strict.
    let output = tenant_create(dir.path(), &trustee, None);
    assert!(!output.status.success());
    assert_stderr_contains(&output, "--secret-access-key");
    assert_stderr_contains(&output, "--strict");
    assert!(!dir.path().join("tenants").exists());
}
