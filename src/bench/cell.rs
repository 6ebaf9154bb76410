//! One cell's run: warm the connections, drive the load, and turn what was measured (latency
//! histogram, the proxy's CPU and RSS, its per-phase metrics) into a result [`Row`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::client;
use super::load::{self, LoadSpec, Op, Pacing};
use super::plan::Variant;
use super::results::{self, Row};

/// Everything a cell needs from a running stack.
#[derive(Clone)]
pub struct Endpoint {
    /// Where to send S3 requests.
    pub target: client::Target,
    /// rustls config trusting the endpoint.
    pub tls: Arc<rustls::ClientConfig>,
    /// The pid of the process that serves (the proxy, nginx's worker), for CPU and RSS.
    pub proxy_pid: Option<u32>,
    /// The proxy's Prometheus endpoint.
    pub metrics_url: Option<String>,
    /// The bucket exists already (nginx over files: a folder the harness made), so the cells
    /// do not send a CreateBucket.
    pub bucket_created: bool,
}

/// The Prometheus histogram with per-phase labels that the proxy exports.
pub const PHASE_METRIC: &str = "treuhand_phase_seconds";

/// Runs one cell against `endpoint` and returns its row (repetition `repeat`). `tick` is
/// called once per completed request.
///
/// # Errors
/// If preparing the cell's objects or warming up fails (the endpoint is down or refuses the
/// credentials); individual request failures are counted in the row.
pub async fn run(
    client: &client::S3Client,
    endpoint: &Endpoint,
    variant: &Variant,
    repeat: usize,
    spec: &LoadSpec,
    chunk: &Bytes,
    tick: impl Fn() + Send + Sync + 'static,
) -> anyhow::Result<Row> {
    if spec.op != Op::Put {
        load::prepare(client, spec, chunk).await?;
    }
    if spec.object_size <= 1 << 20 {
        warm_up(client, spec, chunk).await?;
    }
    let before_metrics = endpoint.metrics_url.as_deref().and_then(scrape);
    let before_stats = endpoint.proxy_pid.and_then(results::process_stats);
    if let Some(pid) = endpoint.proxy_pid {
        results::reset_peak_rss(pid);
    }
    let load = load::run(client, spec, chunk.clone(), tick).await?;
    let mut row = Row {
        scenario: variant.scenario.name().to_owned(),
        op: spec.op,
        object_size: spec.object_size,
        concurrency: spec.concurrency,
        pacing: spec.pacing.label(),
        cache_ttl_s: variant.cache_ttl_s,
        threshold: variant.threshold_label(),
        trustee_rtt_ms: variant.trustee_rtt_ms,
        repeat,
        ..Row::default()
    }
    .measured(&load);
    if let (Some(pid), Some(before)) = (endpoint.proxy_pid, before_stats)
        && let Some(after) = results::process_stats(pid)
    {
        row.proxy_cpu_s = Some(after.cpu_s - before.cpu_s);
        row.proxy_peak_rss_mib = Some(after.peak_rss_mib);
    }
    if let (Some(before), Some(after)) = (
        before_metrics,
        endpoint.metrics_url.as_deref().and_then(scrape),
    ) {
        let (b, a) = (
            results::phase_sums(&before, PHASE_METRIC),
            results::phase_sums(&after, PHASE_METRIC),
        );
        for (phase, (sum, count)) in a {
            let (sum0, count0) = b.get(&phase).copied().unwrap_or_default();
            if count > count0 {
                // Mean per request of the cell: phase time delta over requests completed.
                row.phases_ms
                    .insert(phase, (sum - sum0) * 1000.0 / row.requests_ok.max(1) as f64);
            }
        }
    }
    Ok(row)
}

/// Warm-up (not recorded): opens the pooled connections and fills caches, so the first TLS
/// handshakes do not land in a small-object cell's tail.
async fn warm_up(client: &client::S3Client, spec: &LoadSpec, chunk: &Bytes) -> anyhow::Result<()> {
    let warm = LoadSpec {
        duration: spec.duration.min(Duration::from_secs(2)) / 2,
        max_requests: 0,
        ..spec.clone()
    };
    load::run(client, &warm, chunk.clone(), || {}).await?;
    if let Pacing::Open { .. } = spec.pacing {
        // Opens as many connections as the cell may keep in flight (and, through the proxy,
        // as many trustee connections). Without this an open-loop burst made the generator
        // open new TLS connections mid-cell, and the handshakes turned a short hiccup into a
        // 50 ms tail (docs/benchmarks.md, "open-loop tail").
        let fill = LoadSpec {
            pacing: Pacing::Closed,
            duration: Duration::from_secs(2),
            max_requests: spec.concurrency as u64 * 4,
            ..spec.clone()
        };
        load::run(client, &fill, chunk.clone(), || {}).await?;
    }
    Ok(())
}

fn scrape(url: &str) -> Option<String> {
    // The metrics endpoint is plain HTTP on loopback; a blocking std client keeps this simple.
    use std::io::{Read as _, Write as _};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(
        body.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or(body),
    )
}
