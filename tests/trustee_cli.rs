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
