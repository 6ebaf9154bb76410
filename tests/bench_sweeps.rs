//! The committed sweep files stay loadable, and bad sweeps are refused with a reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use treuhand::bench::{SweepConfig, parse_threshold, variants};

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
