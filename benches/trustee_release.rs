//! End-to-end throughput and latency of the trustee's key paths, in one run against one
//! trustee: `release` (a legacy tenant's share, `/v1`), `evaluate` (a per-object OPRF
//! evaluation, `/v2`) and `evaluate-strict` (the same for a strict tenant whose signatures this
//! trustee checks: one SigV4 verification more per request). mTLS keep-alive over loopback,
//! durable audit log on (SQLite WAL, synchronous=FULL, group commit).
//!
//! Run: `cargo bench --bench trustee_release` (release profile). Knobs (environment):
//! `TREUHAND_BENCH_CONCURRENCY` (in-flight requests, one pooled connection each; a comma list,
//! each value measured for every operation; default `1,64`),
//! `TREUHAND_BENCH_OPS` (a comma list of `release`, `evaluate`, `evaluate-strict`; default all),
//! `TREUHAND_BENCH_SECS` (default 10 s measured per operation and concurrency, after 2 s
//! warm-up),
//! `TREUHAND_BENCH_DIR` (where the store lives; default a temp dir, i.e. /tmp),
//! `TREUHAND_BENCH_MAX_BATCH` (most requests per group commit, default 1024; 1 = no group
//! commit, one fsync per request).
//! Server and clients share one tokio runtime with 2 worker threads (the machine has 2 cores)
//! plus the trustee's writer thread.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a harness, not product code

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use treuhand::crypto::envelope::{KeyId, generate_tmk};
use treuhand::crypto::scheme::{self, SplitOptions};
use treuhand::crypto::shamir::{self, KeyMetadata, ShareEnvelope};
use treuhand::crypto::sigv4::{self, SigningInput};
use treuhand::secret::{Share, ShareValue};
use treuhand::tls::Role;
use treuhand::trustee::client::TrusteeClient;
use treuhand::trustee::policy::{Policy, RateLimit, SystemClock};
use treuhand::trustee::server::{Server, run};
use treuhand::trustee::wire::{
    EnrollRequest, EvaluateRequest, EvaluatedObject, Justification, ReleaseRequest,
    SigV4Credential, SignedRequest,
};

const ACCESS_KEY: &str = "AKIDBENCH";
const SECRET_KEY: &str = "bench-secret-access-key";
const HOST: &str = "s3.bench:9000";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Release,
    Evaluate,
    EvaluateStrict,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Release => "release",
            Op::Evaluate => "evaluate",
            Op::EvaluateStrict => "evaluate-strict",
        }
    }
}

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

/// `YYYYMMDDTHHMMSSZ` of the system clock (civil date from days, Hinnant's algorithm).
fn amz_date_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The customer's signed GET of `/bench/object`, as the proxy would forward it.
fn signed_get() -> SignedRequest {
    let amz_date = amz_date_now();
    let input = SigningInput {
        method: "GET",
        host: HOST,
        path: "/bench/object",
        query: &[],
        headers: &[],
        amz_date: &amz_date,
        region: "us-east-1",
    };
    SignedRequest {
        method: "GET".into(),
        path: "/bench/object".into(),
        query: String::new(),
        headers: vec![
            ("host".into(), HOST.into()),
            (
                "x-amz-content-sha256".into(),
                sigv4::UNSIGNED_PAYLOAD.into(),
            ),
            ("x-amz-date".into(), amz_date.clone()),
        ],
        authorization: Some(sigv4::authorization(&input, ACCESS_KEY, SECRET_KEY)),
    }
}

fn enroll_request(
    metadata: &KeyMetadata,
    share: &Share,
    sigv4: Option<SigV4Credential>,
) -> EnrollRequest {
    let share = Share::new(share.x(), ShareValue::from_bytes(*share.expose_secret()));
    EnrollRequest {
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
        sigv4,
    }
}

async fn bench() {
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
    let customer = TrusteeClient::new(&url, client_tls(Role::Customer, "bench")).unwrap();
    customer
        .enroll("bench", &enroll_request(&metadata, &shares[1], None))
        .await
        .unwrap();
    for (tenant, strict) in [("bench-oprf", false), ("bench-strict", true)] {
        let (metadata, shares) = scheme::split(
            &KeyId::new(tenant, 1).unwrap(),
            2,
            &["customer", "trustee"],
            SplitOptions {
                strict,
                allow_trustees_alone: false,
            },
        )
        .unwrap();
        let sigv4 = strict.then(|| SigV4Credential {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET_KEY.into(),
        });
        TrusteeClient::new(&url, client_tls(Role::Customer, tenant))
            .unwrap()
            .enroll(tenant, &enroll_request(&metadata, &shares[1], sigv4))
            .await
            .unwrap();
    }
    let client = TrusteeClient::new(&url, client_tls(Role::Proxy, "bench-proxy")).unwrap();

    let concurrencies: Vec<usize> = std::env::var("TREUHAND_BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,64".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let ops: Vec<Op> = std::env::var("TREUHAND_BENCH_OPS")
        .unwrap_or_else(|_| "release,evaluate,evaluate-strict".into())
        .split(',')
        .filter_map(|name| {
            [Op::Release, Op::Evaluate, Op::EvaluateStrict]
                .into_iter()
                .find(|op| op.name() == name.trim())
        })
        .collect();
    for &concurrency in &concurrencies {
        for &op in &ops {
            measure(&client, op, concurrency, seconds, config.limits.max_batch).await;
        }
    }
    let _ = stop_tx.send(());
    server_task.await.unwrap().unwrap();
}

/// Runs `op` with `concurrency` requests in flight for the warm-up and `seconds`, and prints
/// the throughput and latency percentiles of the measured part.
async fn measure(
    client: &TrusteeClient,
    op: Op,
    concurrency: usize,
    seconds: u64,
    max_batch: usize,
) {
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
            // One signature per worker: valid for the whole run (15-minute window), and
            // verified afresh by the trustee on every request.
            let signed = (op == Op::EvaluateStrict).then(signed_get);
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                i += 1;
                let request_id = format!("{}-{worker}-{i}", op.name());
                let ok = match op {
                    Op::Release => {
                        let request = ReleaseRequest {
                            justification: Justification::CustomerAccess,
                            reason: String::new(),
                            request_id,
                            object: None,
                        };
                        client.release("bench", 1, &request).await.is_ok()
                    }
                    Op::Evaluate | Op::EvaluateStrict => {
                        // A new object each time, as writes of new objects ask.
                        let mut id = [0u8; 32];
                        id[..8].copy_from_slice(&(worker as u64).to_be_bytes());
                        id[8..16].copy_from_slice(&i.to_be_bytes());
                        let request = EvaluateRequest {
                            justification: Justification::CustomerAccess,
                            request_id,
                            object: EvaluatedObject {
                                bucket: "bench".into(),
                                key: "object".into(),
                                id: base64::engine::general_purpose::STANDARD.encode(id),
                            },
                            reason: String::new(),
                            signed: signed.clone(),
                        };
                        let tenant = if op == Op::Evaluate {
                            "bench-oprf"
                        } else {
                            "bench-strict"
                        };
                        client.evaluate(tenant, 1, &request).await.is_ok()
                    }
                };
                let done = Instant::now();
                if now >= measure_from && done <= deadline {
                    if ok {
                        latencies.push(u32::try_from((done - now).as_micros()).unwrap_or(u32::MAX));
                    } else {
                        errors += 1;
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
        "trustee {}: concurrency {concurrency}, max_batch {max_batch}, {seconds} s measured: {} answers ({errors} errors) = {rate:.0}/s; \
         latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        op.name(),
        all.len(),
        percentile(&all, 0.50),
        percentile(&all, 0.90),
        percentile(&all, 0.99),
        percentile(&all, 0.999),
        percentile(&all, 1.0),
    );
}
