//! The Markdown summary of a results set, with ratios against the baselines of the same run.

use std::fmt::Write as _;

use super::results::Row;

fn op(row: &Row) -> String {
    serde_json::to_value(row.op)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The baseline row for `row`: same op, size, concurrency and pacing, given scenario.
fn baseline<'a>(rows: &'a [Row], row: &Row, scenario: &str) -> Option<&'a Row> {
    rows.iter().find(|b| {
        b.scenario == scenario
            && b.op == row.op
            && b.object_size == row.object_size
            && b.concurrency == row.concurrency
            && b.pacing == row.pacing
    })
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

/// Renders `summary.md`: one table of all cells, with throughput ratio and added p50 latency
/// against TLS pass-through and the direct backend where those baselines were measured.
pub fn markdown(rows: &[Row], manifest: &serde_json::Value) -> String {
    let mut out = String::from("# treuhand bench summary\n\n");
    let _ = writeln!(
        out,
        "Run: `{}`\n",
        manifest
            .get("started")
            .and_then(|v| v.as_str())
            .unwrap_or("?")
    );
    let _ = writeln!(
        out,
        "Machine: {}\n",
        manifest
            .get("machine")
            .and_then(|v| v.as_str())
            .unwrap_or("?")
    );
    out.push_str(
        "| scenario | op | size | conc | pacing | ttl s | k-of-n | rtt ms | ok | err | ops/s | MiB/s | p50 ms | p99 ms | p99.9 ms | ×passthrough tput | +p50 ms vs passthrough | ×direct tput | proxy RSS MiB |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for row in rows {
        let pass = baseline(rows, row, "passthrough");
        let direct = baseline(rows, row, "direct");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {} |",
            row.scenario,
            op(row),
            row.object_size,
            row.concurrency,
            row.pacing,
            row.cache_ttl_s.map_or("-".into(), |t| t.to_string()),
            row.threshold,
            row.trustee_rtt_ms,
            row.requests_ok,
            row.errors,
            row.ops_per_s,
            row.mib_per_s,
            row.p50_ms,
            row.p99_ms,
            row.p999_ms,
            pass.map_or("-".into(), |b| ratio(row.ops_per_s, b.ops_per_s)),
            pass.map_or("-".into(), |b| format!("{:+.3}", row.p50_ms - b.p50_ms)),
            direct.map_or("-".into(), |b| ratio(row.ops_per_s, b.ops_per_s)),
            row.proxy_peak_rss_mib
                .map_or("-".into(), |v| format!("{v:.1}")),
        );
    }
    let errors: Vec<&Row> = rows.iter().filter(|r| r.errors > 0).collect();
    if !errors.is_empty() {
        out.push_str("\n## Errors\n\n");
        for row in errors {
            let _ = writeln!(
                out,
                "- {} {} {}: {} errors, first: {}",
                row.scenario,
                op(row),
                row.object_size,
                row.errors,
                row.first_error.as_deref().unwrap_or("?")
            );
        }
    }
    let phases: Vec<&Row> = rows.iter().filter(|r| !r.phases_ms.is_empty()).collect();
    if !phases.is_empty() {
        out.push_str("\n## Mean time per request by proxy phase (ms)\n\n");
        for row in phases {
            let parts: Vec<String> = row
                .phases_ms
                .iter()
                .map(|(k, v)| format!("{k} {v:.3}"))
                .collect();
            let _ = writeln!(
                out,
                "- {} {} {} c={}: {}",
                row.scenario,
                op(row),
                row.object_size,
                row.concurrency,
                parts.join(", ")
            );
        }
    }
    out
}
