//! End-to-end release throughput and latency of the trustee: mTLS keep-alive over loopback,
//! durable audit log on (SQLite WAL, synchronous=FULL, group commit).
//!
//! Run: `cargo bench --bench trustee_release` (release profile). Knobs (environment):
//! `TREUHAND_BENCH_CONCURRENCY` (default 32 in-flight requests, one pooled connection each),
//! `TREUHAND_BENCH_SECS` (default 10 s measured, after 2 s warm-up),
//! `TREUHAND_BENCH_DIR` (where the store lives; default a temp dir, i.e. /tmp),
//! `TREUHAND_BENCH_MAX_BATCH` (most requests per group commit, default 1024; 1 = no group
//! commit, one fsync per request).
//! Server and clients share one tokio runtime with 2 worker threads (the machine has 2 cores)
//! plus the trustee's writer thread.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a harness, not product code

use std::sync::Arc;
use std::time::{Duration, Instant};

use treuhand::crypto::envelope::{KeyId, generate_tmk};
use treuhand::crypto::shamir::{self, ShareEnvelope};
use treuhand::secret::{Share, ShareValue};
use treuhand::tls::Role;
use treuhand::trustee::client::TrusteeClient;
use treuhand::trustee::policy::{Policy, RateLimit, SystemClock};
use treuhand::trustee::server::{Server, run};
use treuhand::trustee::wire::{EnrollRequest, Justification, ReleaseRequest};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs bench targets without it,
    // and a 12-second load test does not belong in the test suite.
    if !std::env::args().any(|a| a == "--bench") {
        println!("trustee_release: run with `cargo bench --bench trustee_release`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let concurrency: usize = env_or("TREUHAND_BENCH_CONCURRENCY", 32);
    let seconds: u64 = env_or("TREUHAND_BENCH_SECS", 10);
    let dir = match std::env::var("TREUHAND_BENCH_DIR") {
        Ok(base) => tempfile::tempdir_in(base).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    };
    let path = dir.path();
    let (ca, mut config) = treuhand::dev::single_trustee(path, "bench ca").unwrap();
    config.limits.max_batch = env_or("TREUHAND_BENCH_MAX_BATCH", 1024);
    let server = Server::from_config(&config, Arc::new(SystemClock)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(run(listener, server, async {
        let _ = stop_rx.await;
    }));

    let client_tls = |role: Role, name: &str| {
        let (cert, key) = ca
            .issue_client(role, name)
            .unwrap()
            .write(path, name)
            .unwrap();
        treuhand::tls::client_config(&path.join("ca.pem"), Some((&cert, &key))).unwrap()
    };
    let tmk = generate_tmk().unwrap();
    let (metadata, shares) = shamir::split(
        &tmk,
        &KeyId::new("bench", 1).unwrap(),
        2,
        &["customer", "trustee"],
    )
    .unwrap();
    let share = Share::new(
        shares[1].x(),
        ShareValue::from_bytes(*shares[1].expose_secret()),
    );
    let enroll = EnrollRequest {
        metadata: metadata.clone(),
        holder: "trustee".into(),
        share: ShareEnvelope {
            key: metadata.key_id().unwrap(),
            share,
        }
        .encode()
        .to_string(),
        policy: Some(Policy {
            allowed_proxies: vec!["bench-proxy".into()],
            rate_limit: RateLimit {
                per_second: 1_000_000,
                burst: 10_000_000,
            },
            ..Policy::default()
        }),
        sigv4: None,
    };
    TrusteeClient::new(&url, client_tls(Role::Customer, "bench"))
        .unwrap()
        .enroll("bench", &enroll)
        .await
        .unwrap();
    let client = TrusteeClient::new(&url, client_tls(Role::Proxy, "bench-proxy")).unwrap();

    let warmup = Duration::from_secs(2);
    let measured = Duration::from_secs(seconds);
    let start = Instant::now();
    let measure_from = start + warmup;
    let deadline = measure_from + measured;
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            let mut i = 0u64;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                i += 1;
                let request = ReleaseRequest {
                    justification: Justification::CustomerAccess,
                    reason: String::new(),
                    request_id: format!("b{worker}-{i}"),
                    object: None,
                };
                let result = client.release("bench", 1, &request).await;
                let done = Instant::now();
                if now >= measure_from && done <= deadline {
                    match result {
                        Ok(_) => latencies
                            .push(u32::try_from((done - now).as_micros()).unwrap_or(u32::MAX)),
                        Err(_) => errors += 1,
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, task_errors) = task.await.unwrap();
        all.extend(latencies);
        errors += task_errors;
    }
    all.sort_unstable();
    let rate = all.len() as f64 / measured.as_secs_f64();
    println!(
        "trustee release: concurrency {concurrency}, max_batch {}, {seconds} s measured: {} releases ({errors} errors) = {rate:.0}/s; \
         latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        config.limits.max_batch,
        all.len(),
        percentile(&all, 0.50),
        percentile(&all, 0.90),
        percentile(&all, 0.99),
        percentile(&all, 0.999),
        percentile(&all, 1.0),
    );
    let _ = stop_tx.send(());
    server_task.await.unwrap().unwrap();
}
