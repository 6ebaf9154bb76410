//! The Markdown summary of a results set, with ratios against the baselines of the same run.
//! Repetitions of a cell are shown as medians with their range.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::aggregate::{self, Cell, Spread};
use super::results::Row;

fn op(row: &Row) -> String {
    serde_json::to_value(row.op)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

/// A measured number with `decimals`: the median, and its min–max range when the cell was
/// measured more than once (a single pass prints exactly what it printed before repetitions).
fn figure(spread: Spread, repeats: usize, decimals: usize) -> String {
    if repeats > 1 {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            spread.median,
            spread.min,
            spread.max,
            d = decimals
        )
    } else {
        format!("{:.d$}", spread.median, d = decimals)
    }
}

/// The columns of the cell table; the repetitions column only for repeated runs, the nginx
/// ones only when nginx was measured (so older summaries render as they did).
fn header(repeated: bool, nginx: bool) -> String {
    let mut columns = vec![
        "scenario", "op", "size", "conc", "pacing", "ttl s", "k-of-n", "rtt ms",
    ];
    if repeated {
        columns.push("reps");
    }
    columns.extend([
        "ok",
        "err",
        "ops/s",
        "MiB/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "×passthrough tput",
        "+p50 ms vs passthrough",
    ]);
    if nginx {
        columns.extend(["×nginx tput", "p50 ×nginx"]);
    }
    columns.extend(["×direct tput", "proxy RSS MiB"]);
    format!(
        "| {} |\n|{}\n",
        columns.join(" | "),
        "---|".repeat(columns.len())
    )
}

/// Renders `summary.md`: one table of all cells, with throughput ratio and added p50 latency
/// against TLS pass-through, throughput and p50 ratios against nginx, and the throughput ratio
/// against the direct backend, where those baselines were measured.
/// Repetitions of a cell are folded into medians with their range (see [`aggregate`]); ratios
/// compare medians.
pub fn markdown(rows: &[Row], manifest: &serde_json::Value) -> String {
    let cells = aggregate::cells(rows);
    let repeated = aggregate::repeated(&cells);
    let nginx = cells.iter().any(|c| c.params.scenario == "nginx");
    let mut out = String::from("# treuhand bench summary\n\n");
    let manifest_text = |key: &str| manifest.get(key).and_then(|v| v.as_str()).unwrap_or("?");
    let _ = writeln!(out, "Run: `{}`\n", manifest_text("started"));
    let _ = writeln!(out, "Machine: {}\n", manifest_text("machine"));
    if let Some(pinning) = manifest.get("pinning").filter(|p| p["enabled"] == true) {
        let _ = writeln!(
            out,
            "Pinned: load generator on CPU {}, system under test (proxy, trustees, nginx) on \
             CPU {}.\n",
            pinning["client_cpu"], pinning["system_cpu"]
        );
    }
    if repeated {
        let most = cells.iter().map(Cell::repeats).max().unwrap_or(1);
        let _ = writeln!(
            out,
            "Repetitions: {most}, interleaved (every variant once, then every variant again). \
             Each figure is the median over the repetitions with the min–max range in \
             parentheses; `ok` is the median, `err` the total of all repetitions; the ratios \
             compare medians.\n"
        );
    }
    if nginx {
        let _ = writeln!(
            out,
            "nginx ({}): one worker, TLS with the same kind of certificate, in front of the same \
             bytes (docs/benchmarks.md, \"nginx as the baseline\"). `×nginx tput` is the cell's \
             ops/s over nginx's, `p50 ×nginx` its p50 over nginx's, each against the nginx cell \
             of the same op, size, concurrency and pacing.\n",
            manifest_text("nginx")
        );
    }
    out.push_str(&header(repeated, nginx));
    for cell in &cells {
        let row = cell.params;
        let n = cell.repeats();
        let against = |scenario: &str| {
            aggregate::baseline(&cells, cell, scenario).map(|b| aggregate::compare(cell, b))
        };
        let (pass, direct) = (against("passthrough"), against("direct"));
        let reps = if repeated {
            format!(" {n} |")
        } else {
            String::new()
        };
        let nginx_columns = if nginx {
            let vs = against("nginx");
            format!(
                " {} | {} |",
                ratio(vs.and_then(|c| c.throughput)),
                ratio(vs.and_then(|c| c.p50))
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |{reps} {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |{nginx_columns} {} | {} |",
            row.scenario,
            op(row),
            row.object_size,
            row.concurrency,
            row.pacing,
            row.cache_ttl_s.map_or("-".into(), |t| t.to_string()),
            row.threshold,
            row.trustee_rtt_ms,
            cell.spread(|r| r.requests_ok as f64).median,
            cell.errors(),
            figure(cell.spread(|r| r.ops_per_s), n, 1),
            figure(cell.spread(|r| r.mib_per_s), n, 1),
            figure(cell.spread(|r| r.p50_ms), n, 3),
            figure(cell.spread(|r| r.p99_ms), n, 3),
            figure(cell.spread(|r| r.p999_ms), n, 3),
            ratio(pass.and_then(|c| c.throughput)),
            pass.map_or("-".into(), |c| format!("{:+.3}", c.p50_added_ms)),
            ratio(direct.and_then(|c| c.throughput)),
            cell.spread_opt(|r| r.proxy_peak_rss_mib)
                .map_or("-".into(), |v| figure(v, n, 1)),
        );
    }
    // Errors per repetition: which one failed matters when the others did not.
    let errors: Vec<&Row> = rows.iter().filter(|r| r.errors > 0).collect();
    if !errors.is_empty() {
        out.push_str("\n## Errors\n\n");
        for row in errors {
            let _ = writeln!(
                out,
                "- {} {} {}{}: {} errors, first: {}",
                row.scenario,
                op(row),
                row.object_size,
                if repeated {
                    format!(" (repetition {})", row.repeat)
                } else {
                    String::new()
                },
                row.errors,
                row.first_error.as_deref().unwrap_or("?")
            );
        }
    }
    let phases: Vec<&Cell<'_>> = cells
        .iter()
        .filter(|c| c.rows.iter().any(|r| !r.phases_ms.is_empty()))
        .collect();
    if !phases.is_empty() {
        if repeated {
            out.push_str(
                "\n## Mean time per request by proxy phase (ms, median over repetitions)\n\n",
            );
        } else {
            out.push_str("\n## Mean time per request by proxy phase (ms)\n\n");
        }
        for cell in phases {
            let row = cell.params;
            let names: BTreeSet<&String> =
                cell.rows.iter().flat_map(|r| r.phases_ms.keys()).collect();
            let parts: Vec<String> = names
                .into_iter()
                .filter_map(|name| {
                    cell.spread_opt(|r| r.phases_ms.get(name).copied())
                        .map(|s| format!("{name} {:.3}", s.median))
                })
                .collect();
            // The variant belongs in the label: cells of different TTLs, thresholds or trustee
            // RTTs would otherwise print identical lines.
            let variant = match row.cache_ttl_s {
                Some(ttl) => format!(" ttl={ttl} {} rtt={}ms", row.threshold, row.trustee_rtt_ms),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "- {} {} {} c={} {}{variant}: {}",
                row.scenario,
                op(row),
                row.object_size,
                row.concurrency,
                row.pacing,
                parts.join(", ")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::aggregate::tests::{interleaved, row};

    fn table_line<'a>(summary: &'a str, scenario: &str) -> &'a str {
        summary
            .lines()
            .find(|l| l.starts_with(&format!("| {scenario} |")))
            .unwrap()
    }

    #[test]
    fn a_single_pass_renders_as_before_repetitions_existed() {
        let rows = interleaved(&[(100.0, 1.0, 2.0)], &[(50.0, 2.0, 4.0)]);
        let summary = markdown(&rows, &serde_json::json!({}));
        assert!(summary.contains(
            "| scenario | op | size | conc | pacing | ttl s | k-of-n | rtt ms | ok | err | ops/s | MiB/s | p50 ms | p99 ms | p99.9 ms | ×passthrough tput | +p50 ms vs passthrough | ×direct tput | proxy RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        ));
        assert_eq!(
            table_line(&summary, "treuhand"),
            "| treuhand | get | 4096 | 8 | closed | 0 | 2-of-2 | 0 | 250 | 0 | 50.0 | 0.2 | 2.000 | 4.000 | 8.000 | 0.50 | +1.000 | - | - |"
        );
        assert!(!summary.contains("Repetitions"), "{summary}");
        assert!(
            !summary.contains('–'),
            "a range in a single pass: {summary}"
        );
    }

    #[test]
    fn repeated_cells_show_median_and_range_and_ratios_from_medians() {
        // Throughput ratios per repetition are 1.0, 0.2 and 0.75 (median 0.75) and the means
        // give 0.52; only the ratio of the medians, 100 / 200, is 0.50.
        let rows = interleaved(
            &[(100.0, 1.0, 2.0), (300.0, 1.2, 2.0), (200.0, 1.1, 2.0)],
            &[(100.0, 2.0, 4.0), (60.0, 3.0, 9.0), (150.0, 2.5, 5.0)],
        );
        let summary = markdown(&rows, &serde_json::json!({}));
        assert!(summary.contains("Repetitions: 3, interleaved"), "{summary}");
        assert!(
            summary.contains("| rtt ms | reps | ok | err |"),
            "{summary}"
        );
        let line = table_line(&summary, "treuhand");
        let cols: Vec<&str> = line.split(" | ").collect();
        assert_eq!(cols[8], "3", "reps: {line}");
        assert_eq!(cols[11], "100.0 (60.0–150.0)", "ops/s: {line}");
        assert_eq!(cols[13], "2.500 (2.000–3.000)", "p50: {line}");
        assert_eq!(cols[14], "5.000 (4.000–9.000)", "p99: {line}");
        assert_eq!(cols[16], "0.50", "×passthrough from medians: {line}");
        assert_eq!(cols[17], "+1.400", "+p50 from medians (2.5 - 1.1): {line}");
        assert_eq!(
            summary.matches("| treuhand |").count(),
            1,
            "one line per cell: {summary}"
        );
    }

    #[test]
    fn an_nginx_run_adds_ratio_columns_against_the_nginx_cell() {
        let mut rows = interleaved(&[(100.0, 1.0, 2.0)], &[(50.0, 2.0, 4.0)]);
        rows.push(row("nginx", 1, 200.0, 0.5, 1.0));
        let manifest = serde_json::json!({"nginx": "nginx/1.22.1"});
        let summary = markdown(&rows, &manifest);
        assert!(
            summary.contains(
                "| +p50 ms vs passthrough | ×nginx tput | p50 ×nginx | ×direct tput | proxy RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
            ),
            "{summary}"
        );
        assert!(
            summary.contains("nginx (nginx/1.22.1): one worker"),
            "{summary}"
        );
        // treuhand: 50 / 200 ops/s, p50 2.0 / 0.5 ms; passthrough: 100 / 200, 1.0 / 0.5.
        assert_eq!(
            table_line(&summary, "treuhand"),
            "| treuhand | get | 4096 | 8 | closed | 0 | 2-of-2 | 0 | 250 | 0 | 50.0 | 0.2 | 2.000 | 4.000 | 8.000 | 0.50 | +1.000 | 0.25 | 4.00 | - | - |"
        );
        let pass: Vec<&str> = table_line(&summary, "passthrough").split(" | ").collect();
        assert_eq!((pass[17], pass[18]), ("0.50", "2.00"));
        let own: Vec<&str> = table_line(&summary, "nginx").split(" | ").collect();
        assert_eq!((own[17], own[18]), ("1.00", "1.00"));
        // A cell without an nginx cell of its parameters shows no ratio.
        let mut other = row("treuhand", 1, 50.0, 2.0, 4.0);
        other.concurrency = 1;
        let summary = markdown(&[other, row("nginx", 1, 200.0, 0.5, 1.0)], &manifest);
        let line: Vec<&str> = table_line(&summary, "treuhand").split(" | ").collect();
        assert_eq!((line[17], line[18]), ("-", "-"));
    }

    #[test]
    fn a_pinned_run_says_where_generator_and_system_ran() {
        let rows = interleaved(&[(100.0, 1.0, 2.0)], &[(50.0, 2.0, 4.0)]);
        let manifest =
            serde_json::json!({"pinning": {"enabled": true, "client_cpu": 0, "system_cpu": 1}});
        let summary = markdown(&rows, &manifest);
        assert!(
            summary.contains("Pinned: load generator on CPU 0, system under test"),
            "{summary}"
        );
        let unpinned = markdown(&rows, &serde_json::json!({"pinning": {"enabled": false}}));
        assert!(!unpinned.contains("Pinned"), "{unpinned}");
    }

    #[test]
    fn phase_lines_name_the_variant_so_ttls_and_rtts_stay_apart() {
        let mut cold = row("treuhand", 1, 50.0, 2.0, 4.0);
        cold.phases_ms.insert("key_release".into(), 1.5);
        let mut warm = cold.clone();
        warm.cache_ttl_s = Some(300.0);
        warm.phases_ms.insert("key_release".into(), 0.0);
        let mut far = cold.clone();
        far.trustee_rtt_ms = 35.0;
        let summary = markdown(&[cold, warm, far], &serde_json::json!({}));
        for label in [
            "- treuhand get 4096 c=8 closed ttl=0 2-of-2 rtt=0ms: ",
            "- treuhand get 4096 c=8 closed ttl=300 2-of-2 rtt=0ms: ",
            "- treuhand get 4096 c=8 closed ttl=0 2-of-2 rtt=35ms: ",
        ] {
            assert_eq!(summary.matches(label).count(), 1, "{label}\n{summary}");
        }
    }

    #[test]
    fn errors_name_the_repetition_that_failed() {
        let mut failed = row("treuhand", 2, 50.0, 2.0, 4.0);
        failed.errors = 7;
        failed.first_error = Some("503".into());
        let rows = vec![row("treuhand", 1, 50.0, 2.0, 4.0), failed];
        let summary = markdown(&rows, &serde_json::json!({}));
        assert!(
            summary.contains("- treuhand get 4096 (repetition 2): 7 errors, first: 503"),
            "{summary}"
        );
        assert_eq!(
            table_line(&summary, "treuhand").split(" | ").nth(10),
            Some("7")
        );
    }
}
