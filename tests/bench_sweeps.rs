//! The committed sweep files stay loadable, bad sweeps are refused with a reason, a tiny
//! repeated sweep runs its repetitions interleaved, and a sweep with the nginx baseline reports
//! nginx rows and ratios (CI installs nginx and sets TREUHAND_REQUIRE_NGINX=1, so that test
//! fails there rather than skips).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use treuhand::bench::{SweepConfig, aggregate, parse_threshold, results, variants};

#[test]
fn committed_sweep_files_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/sweeps");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config =
                SweepConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                !variants(&config).is_empty(),
                "{} has no variants",
                path.display()
            );
            count += 1;
        }
    }
    assert!(count >= 3);
}

#[test]
fn bad_sweeps_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (text, needle) in [
        ("scenarios = [\"nope\"]", "unknown scenario"),
        ("thresholds = [\"1-of-2\"]", "must look like"),
        ("sizes = []", "sizes"),
        ("colour = 1", "unknown field"),
        ("repeats = 0", "repeats must be 1..=100"),
        ("repeats = 101", "repeats must be 1..=100"),
        ("baselines = [\"apache\"]", "unknown variant"),
        ("scenarios = [\"nginx\"]", "baselines = [\"nginx\"]"),
    ] {
        let path = dir.path().join("s.toml");
        std::fs::write(&path, text).unwrap();
        let err = SweepConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains(needle), "{text}: {err}");
    }
    assert_eq!(parse_threshold("3-of-5").unwrap(), (3, 5));
}

#[test]
fn rtt_varies_only_without_a_cache() {
    let config = SweepConfig {
        scenarios: vec!["treuhand".into()],
        cache_ttl_s: vec![0.0, 60.0],
        trustee_rtt_ms: vec![0.0, 5.0, 35.0],
        thresholds: vec!["2-of-2".into(), "3-of-5".into()],
        ..SweepConfig::default()
    };
    let v = variants(&config);
    // ttl 0: 3 RTTs + 1 extra threshold; ttl 60: 1 RTT + 1 extra threshold.
    assert_eq!(v.len(), 6);
    assert!(
        v.iter()
            .filter(|x| x.cache_ttl_s == Some(60.0))
            .all(|x| x.trustee_rtt_ms == 0.0)
    );
}

#[test]
fn objects_above_64_mib_run_at_the_lowest_concurrency_only() {
    let config = SweepConfig {
        sizes: vec![4096, 1 << 30],
        concurrency: vec![1, 8],
        ops: vec![
            treuhand::bench::load::Op::Put,
            treuhand::bench::load::Op::Get,
        ],
        open_loop_rates: vec![1800.0],
        ..SweepConfig::default()
    };
    // 2 ops × (4 KiB at c=1 and c=8, 1 GiB at c=1) + 1 open-loop cell.
    assert_eq!(treuhand::bench::cells_per_variant(&config), 7);
    // The default sweep reaches 1 GiB.
    assert!(SweepConfig::default().sizes.contains(&(1 << 30)));
}

fn treuhand(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_treuhand"))
        .args(args)
        .env("TREUHAND_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn repeats_0_on_the_command_line_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = treuhand(&[
        "bench",
        "run",
        "--quick",
        "--repeats",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("--repeats: repeats must be 1..=100 (got 0)"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing should have run");
}

/// Runs the real harness (a stack per variant, child processes of the treuhand binary) on a
/// sweep of 2 variants × 2 cells, a few requests each, with `--repeats 2`.
#[test]
fn a_repeated_sweep_writes_every_row_per_repetition_interleaved() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("tiny.toml");
    std::fs::write(
        &sweep,
        r#"
duration_s = 0.2
max_requests = 10
sizes = [4096]
concurrency = [1]
ops = ["put", "get"]
open_loop_rates = []
cache_ttl_s = [300.0]
thresholds = ["2-of-2"]
trustee_rtt_ms = [0.0]
scenarios = ["passthrough", "treuhand"]
keys = 1
skip_cpu_probe = true
"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let output = treuhand(&[
        "bench",
        "run",
        "--config",
        sweep.to_str().unwrap(),
        "--repeats",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let rows = results::read(&out).unwrap();
    // 2 variants × 2 cells, twice.
    assert_eq!(rows.len(), 8, "{rows:#?}");
    let (first, second) = rows.split_at(4);
    assert!(first.iter().all(|r| r.repeat == 1));
    assert!(second.iter().all(|r| r.repeat == 2));
    // Interleaved: repetition 2 repeats the whole variant sequence of repetition 1, in order
    // (passthrough, treuhand, passthrough, treuhand), not each variant twice in a row.
    let scenarios: Vec<&str> = rows.iter().map(|r| r.scenario.as_str()).collect();
    assert_eq!(
        scenarios,
        [
            "passthrough",
            "passthrough",
            "treuhand",
            "treuhand",
            "passthrough",
            "passthrough",
            "treuhand",
            "treuhand"
        ]
    );
    for (a, b) in first.iter().zip(second) {
        assert!(aggregate::same_cell(a, b), "{a:?} vs {b:?}");
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["repeats"], 2);
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let repeat_column = csv
        .lines()
        .next()
        .unwrap()
        .split(',')
        .position(|c| c == "repeat")
        .unwrap();
    let repeats: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(repeat_column).unwrap())
        .collect();
    assert_eq!(repeats, ["1", "1", "1", "1", "2", "2", "2", "2"]);
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("Repetitions: 2, interleaved"), "{summary}");
    // Each repetition kept its own stack folder.
    assert!(out.join("stacks/rep1/0").is_dir() && out.join("stacks/rep2/1").is_dir());
}

/// A 1-variant-per-scenario sweep of PUT and GET of 4 KiB, a few requests each.
const NGINX_SWEEP: &str = r#"
duration_s = 0.2
max_requests = 20
sizes = [4096]
concurrency = [2]
ops = ["put", "get", "range_get"]
open_loop_rates = []
cache_ttl_s = [300.0]
thresholds = ["2-of-2"]
trustee_rtt_ms = [0.0]
scenarios = ["passthrough"]
keys = 2
skip_cpu_probe = true
"#;

#[test]
fn baseline_nginx_without_nginx_fails_at_once_with_the_install_command() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("tiny.toml");
    std::fs::write(&sweep, NGINX_SWEEP).unwrap();
    let out = dir.path().join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_treuhand"))
        .args(["bench", "run", "--baseline", "nginx", "--config"])
        .arg(&sweep)
        .arg("--out")
        .arg(&out)
        .env("TREUHAND_NGINX", dir.path().join("no-nginx-here"))
        .env("TREUHAND_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("install it: sudo apt-get install nginx"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing should have run");
}

/// Runs the real harness with `--baseline nginx` (and `--pin` where there are two CPUs):
/// Debian's nginx next to the pass-through proxy, over the filesystem backend.
#[test]
fn a_sweep_with_the_nginx_baseline_reports_nginx_rows_and_ratios() {
    if treuhand::bench::nginx::locate(true).is_err() {
        assert!(
            std::env::var_os("TREUHAND_REQUIRE_NGINX").is_none(),
            "TREUHAND_REQUIRE_NGINX is set but nginx is missing: apt-get install nginx"
        );
        eprintln!("skipped: nginx is not installed (sudo apt-get install nginx)");
        return;
    }
    let pin = std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("tiny.toml");
    std::fs::write(&sweep, NGINX_SWEEP).unwrap();
    let out = dir.path().join("out");
    let mut args = vec![
        "bench",
        "run",
        "--baseline",
        "nginx",
        "--config",
        sweep.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if pin {
        args.push("--pin");
    }
    let output = treuhand(&args);
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let rows = results::read(&out).unwrap();
    // nginx runs first, then passthrough; 3 cells each.
    let scenarios: Vec<&str> = rows.iter().map(|r| r.scenario.as_str()).collect();
    assert_eq!(
        scenarios,
        [
            "nginx",
            "nginx",
            "nginx",
            "passthrough",
            "passthrough",
            "passthrough"
        ]
    );
    for row in &rows {
        assert!(
            row.requests_ok > 0 && row.errors == 0,
            "{} {:?}: {} ok, {} errors, first {:?}",
            row.scenario,
            row.op,
            row.requests_ok,
            row.errors,
            row.first_error
        );
    }
    // nginx's worker is the process measured for CPU time and RSS.
    assert!(rows[0].proxy_peak_rss_mib.is_some(), "{:?}", rows[0]);
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        summary.contains("| ×nginx tput | p50 ×nginx |"),
        "{summary}"
    );
    let passthrough_get = summary
        .lines()
        .find(|l| l.starts_with("| passthrough | get |"))
        .unwrap();
    let ratio = passthrough_get.split(" | ").nth(17).unwrap();
    assert!(
        ratio.parse::<f64>().is_ok_and(|r| r > 0.0),
        "{passthrough_get}"
    );
    assert!(out.join("ratio-vs-nginx.svg").is_file());
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().filter(|l| l.starts_with("nginx,")).count(), 3);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert!(
        manifest["nginx"].as_str().unwrap().starts_with("nginx/"),
        "{manifest}"
    );
    assert_eq!(
        manifest["config"]["baselines"],
        serde_json::json!(["nginx"])
    );
    // nginx's own files stayed in the stack folder.
    let nginx_dir = out.join("stacks/0/nginx");
    assert!(nginx_dir.join("nginx.conf").is_file() && nginx_dir.join("error.log").is_file());
    if pin {
        let pinning = &manifest["pinning"];
        assert_eq!(pinning["enabled"], true, "{pinning}");
        let (client, system) = (
            pinning["client_cpu"].to_string(),
            pinning["system_cpu"].to_string(),
        );
        assert_ne!(client, system);
        let observed = &pinning["observed"];
        assert_eq!(observed["load generator"], serde_json::json!([client]));
        for role in ["nginx master", "nginx worker", "proxy", "trustee"] {
            assert_eq!(
                observed[role],
                serde_json::json!([system]),
                "{role}: {pinning}"
            );
        }
    }
}
