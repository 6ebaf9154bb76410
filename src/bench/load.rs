//! The load generator: closed-loop (N workers back to back) and open-loop (fixed arrival rate,
//! latency measured from the *intended* send time so coordinated omission cannot hide the tail).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::client::S3Client;

/// The S3 operation a cell measures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// PutObject of the full object size.
    Put,
    /// GetObject of the whole object (the default only so that a [`Row`] can be built field
    /// by field).
    ///
    /// [`Row`]: super::results::Row
    #[default]
    Get,
    /// GetObject of a 4 KiB range at a random offset.
    RangeGet,
}

/// How requests are issued.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Pacing {
    /// `concurrency` workers, each sending its next request when the last one finished.
    Closed,
    /// Requests start at a fixed rate regardless of completions.
    Open {
        /// Requests per second.
        rate: f64,
    },
}

impl Pacing {
    /// `closed` or `open@<rate>`, as results show it.
    pub fn label(&self) -> String {
        match self {
            Self::Closed => "closed".to_owned(),
            Self::Open { rate } => format!("open@{rate}"),
        }
    }
}

/// One measurement.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Operation.
    pub op: Op,
    /// Object size in bytes.
    pub object_size: u64,
    /// Workers (closed loop) or maximum in flight (open loop).
    pub concurrency: usize,
    /// Pacing.
    pub pacing: Pacing,
    /// How long to measure.
    pub duration: Duration,
    /// Stop early after this many requests (0 = no limit).
    pub max_requests: u64,
    /// Distinct object keys to spread GETs over.
    pub keys: usize,
    /// Key prefix (unique per cell).
    pub prefix: String,
}

/// What a measurement produced.
#[derive(Debug)]
pub struct LoadResult {
    /// Latencies in microseconds.
    pub histogram: Histogram<u64>,
    /// Requests that completed with a 2xx status.
    pub ok: u64,
    /// Requests that failed (transport error or non-2xx).
    pub errors: u64,
    /// Payload bytes moved (sent for PUT, received for GET).
    pub bytes: u64,
    /// Wall-clock time of the measurement.
    pub elapsed: Duration,
    /// First error seen, for the report.
    pub first_error: Option<String>,
    /// Open loop only: how late the generator started each request after its intended send
    /// time, in microseconds (its own scheduling delay, included in `histogram`).
    pub dispatch_lag: Option<Histogram<u64>>,
}

const RANGE_LEN: u64 = 4096;

/// Writes the objects GET cells read.
///
/// # Errors
/// If a PUT fails.
pub async fn prepare(client: &S3Client, spec: &LoadSpec, chunk: &Bytes) -> anyhow::Result<()> {
    for i in 0..spec.keys {
        let outcome = client
            .put(
                &format!("{}/{i}", spec.prefix),
                spec.object_size,
                chunk.clone(),
            )
            .await?;
        if !(200..300).contains(&outcome.status) {
            anyhow::bail!("preparing {}/{i}: HTTP {}", spec.prefix, outcome.status);
        }
    }
    Ok(())
}

struct Shared {
    histogram: Mutex<Histogram<u64>>,
    ok: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    issued: AtomicU64,
    first_error: Mutex<Option<String>>,
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    // 1 µs to 10 min at 3 significant digits.
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

async fn one_request(
    client: &S3Client,
    spec: &LoadSpec,
    n: u64,
    chunk: &Bytes,
    shared: &Shared,
    started: Instant,
) {
    let key = format!("{}/{}", spec.prefix, n % spec.keys.max(1) as u64);
    let result = match spec.op {
        Op::Put => client.put(&key, spec.object_size, chunk.clone()).await,
        Op::Get => client.get(&key, None).await,
        Op::RangeGet => {
            let span = spec.object_size.saturating_sub(RANGE_LEN).max(1);
            // A cheap deterministic spread of offsets; no RNG needed for load shaping.
            let start = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) % span;
            let end = (start + RANGE_LEN).min(spec.object_size) - 1;
            client.get(&key, Some((start, end))).await
        }
    };
    let micros = started.elapsed().as_micros().max(1) as u64;
    match result {
        Ok(outcome) if (200..300).contains(&outcome.status) => {
            shared.ok.fetch_add(1, Ordering::Relaxed);
            let moved = if spec.op == Op::Put {
                spec.object_size
            } else {
                outcome.bytes
            };
            shared.bytes.fetch_add(moved, Ordering::Relaxed);
            shared.histogram.lock().await.saturating_record(micros);
        }
        other => {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            let message = match other {
                Ok(outcome) => format!("HTTP {}", outcome.status),
                Err(e) => format!("{e:#}"),
            };
            shared.first_error.lock().await.get_or_insert(message);
        }
    }
}

/// Runs one measurement. `tick` is called after every completed request (progress bars).
///
/// # Errors
/// Only if the histogram cannot be created.
pub async fn run(
    client: &S3Client,
    spec: &LoadSpec,
    chunk: Bytes,
    tick: impl Fn() + Send + Sync + 'static,
) -> anyhow::Result<LoadResult> {
    let shared = Arc::new(Shared {
        histogram: Mutex::new(new_histogram()?),
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        issued: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });
    let tick = Arc::new(tick);
    let begin = Instant::now();
    let deadline = begin + spec.duration;
    let mut dispatch_lag = None;
    let limit = if spec.max_requests == 0 {
        u64::MAX
    } else {
        spec.max_requests
    };
    match spec.pacing {
        Pacing::Closed => {
            let mut workers = tokio::task::JoinSet::new();
            for _ in 0..spec.concurrency.max(1) {
                let (client, spec, chunk, shared, tick) = (
                    client.clone(),
                    spec.clone(),
                    chunk.clone(),
                    shared.clone(),
                    tick.clone(),
                );
                workers.spawn(async move {
                    while Instant::now() < deadline {
                        let n = shared.issued.fetch_add(1, Ordering::Relaxed);
                        if n >= limit {
                            break;
                        }
                        one_request(&client, &spec, n, &chunk, &shared, Instant::now()).await;
                        tick();
                    }
                });
            }
            while workers.join_next().await.is_some() {}
        }
        Pacing::Open { rate } => {
            let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
            let in_flight = Arc::new(tokio::sync::Semaphore::new(spec.concurrency.max(1)));
            let lag = Arc::new(std::sync::Mutex::new(new_histogram()?));
            let (client, spec, shared, tick, task_lag) = (
                client.clone(),
                spec.clone(),
                shared.clone(),
                tick.clone(),
                lag.clone(),
            );
            // The pacer is an OS thread sleeping on the kernel's high-resolution timer, not a
            // tokio sleep: tokio's timer wheel has 1 ms ticks and rounds every deadline up, which
            // added 0.5-1 ms of generator-made latency to every open-loop request (measured:
            // p50 1.55 ms at 300/s against 0.19 ms closed-loop through the same proxy).
            let pacer = tokio::task::spawn_blocking(move || {
                let runtime = tokio::runtime::Handle::current();
                let mut tasks = Vec::new();
                let mut n = 0u64;
                loop {
                    let intended = begin + interval.mul_f64(n as f64);
                    if intended >= deadline || n >= limit {
                        break;
                    }
                    let now = Instant::now();
                    if intended > now {
                        std::thread::sleep(intended - now);
                    }
                    let (client, spec, chunk, shared, tick, in_flight, lag) = (
                        client.clone(),
                        spec.clone(),
                        chunk.clone(),
                        shared.clone(),
                        tick.clone(),
                        in_flight.clone(),
                        task_lag.clone(),
                    );
                    tasks.push(runtime.spawn(async move {
                        // How late the generator itself is; reported so a reader can tell a
                        // saturated load generator from a slow system under test.
                        let late = intended.elapsed().as_micros().max(1) as u64;
                        if let Ok(mut lag) = lag.lock() {
                            lag.saturating_record(late);
                        }
                        // Waiting for a slot counts as latency: the clock started at `intended`.
                        let Ok(_permit) = in_flight.acquire_owned().await else {
                            return;
                        };
                        one_request(&client, &spec, n, &chunk, &shared, intended).await;
                        tick();
                    }));
                    n += 1;
                    if tasks.len() >= 4096 {
                        tasks.retain(|task| !task.is_finished());
                    }
                }
                tasks
            });
            for task in pacer.await? {
                // A panicked request task is a harness bug; the count of ok + errors shows it.
                let _ = task.await;
            }
            dispatch_lag = lag.lock().ok().map(|h| h.clone());
        }
    }
    let elapsed = begin.elapsed();
    let histogram = shared.histogram.lock().await.clone();
    let first_error = shared.first_error.lock().await.clone();
    Ok(LoadResult {
        histogram,
        ok: shared.ok.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
        bytes: shared.bytes.load(Ordering::Relaxed),
        elapsed,
        first_error,
        dispatch_lag,
    })
}
