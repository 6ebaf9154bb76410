//! The one test support folder: every integration test file says `mod support;` and takes
//! what it needs from here. One file per job:
//!
//! - `pki`: a TEST-ONLY dev CA in a tempdir and the certificates it issues;
//! - `trustee`: one way to configure and start a trustee, in-process ([`Harness`]) or as a
//!   child process ([`TrusteeProcess`]), and the tenant-key fixtures the trustee tests enroll;
//! - `proxy`: one way to configure and start a proxy, in-process ([`start_proxy`]) or as a
//!   child process ([`ProxyProcess`]);
//! - `stack`: share holders (trustees) with tenants enrolled through the real key ceremony;
//! - `s3`: the S3 clients (object_store, [`Raw`], the fault matrix's [`S3`]), all signing with
//!   the project's own SigV4 signer (`treuhand::crypto::sigv4`);
//! - `process`: child processes, their logs, waiting, and the tmpfs of the full-disk cell.
// Tests may unwrap/expect/panic: a failure is a test failure. Each test file uses a different
// subset of the helpers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unused_imports
)]

pub mod pki;
pub mod process;
pub mod proxy;
pub mod s3;
pub mod stack;
pub mod strict;
pub mod trustee;

pub use pki::*;
pub use process::*;
pub use proxy::*;
pub use s3::*;
pub use stack::*;
pub use trustee::*;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Every stored file under `root` (none if `root` does not exist yet), with its bytes.
pub fn stored_files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    walk(root, false)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// Every file below `root`, sorted; panics if a folder cannot be read (a scan that reads
/// nothing must not pass).
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    walk(root, true)
}

fn walk(root: &Path, strict: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if strict => panic!("cannot read {}: {e}", dir.display()),
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// True if `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Deterministic test data.
pub fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect()
}

/// The `export NAME=value` lines of an env file `treuhand dev init` writes.
pub fn env_file(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
