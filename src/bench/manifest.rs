//! The run manifest: the machine, toolchain, build, locked dependency versions and sweep of a
//! run, so a reader can judge and reproduce its numbers.

use std::collections::BTreeMap;
use std::path::Path;

use super::plan::SweepConfig;

/// The run manifest (`manifest.json`): when and where the sweep ran, with which build and
/// dependencies, and the sweep itself.
pub fn manifest(config: &SweepConfig, out: &Path) -> serde_json::Value {
    let git = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines().find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
    });
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().map(str::to_owned));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_owned());
    let started = super::client::amz_date(std::time::SystemTime::now());
    // The toolchain on PATH; a binary built elsewhere may differ, hence the build profile too.
    let rustc = std::process::Command::new("rustc")
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    serde_json::json!({
        "started": started,
        "git_commit": git,
        "treuhand_version": env!("CARGO_PKG_VERSION"),
        "machine": format!("{} x {}, {}", cores, cpu.unwrap_or_default(), mem.unwrap_or_default()),
        "kernel": kernel,
        "rustc": rustc,
        "build_profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "dependencies": locked_versions(),
        "config": config,
        "seed": config.seed,
        "repeats": config.repeats,
        "out": out,
    })
}

/// The crates that shape the measured numbers, with the versions locked in the `Cargo.lock` this
/// binary was built from.
fn locked_versions() -> BTreeMap<&'static str, String> {
    const CRATES: &[&str] = &[
        "tokio",
        "hyper",
        "hyper-util",
        "rustls",
        "ring",
        "s3s",
        "object_store",
        "vsss-rs",
        "rusqlite",
        "hdrhistogram",
    ];
    let lock = include_str!("../../Cargo.lock");
    let mut versions = BTreeMap::new();
    let mut name: Option<&str> = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"'));
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take())
            && let Some(wanted) = CRATES.iter().find(|c| **c == n)
        {
            // A crate locked twice (two major versions) lists both.
            versions
                .entry(*wanted)
                .and_modify(|all: &mut String| {
                    all.push_str(", ");
                    all.push_str(v.trim_matches('"'));
                })
                .or_insert_with(|| v.trim_matches('"').to_owned());
        }
    }
    versions
}
