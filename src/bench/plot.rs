//! SVG plots of a results set (plotters, SVG backend only).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::aggregate;
use super::results::Row;

fn op_name(row: &Row) -> String {
    serde_json::to_value(row.op)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn size_label(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{}GiB", b >> 30),
        b if b >= 1 << 20 => format!("{}MiB", b >> 20),
        b if b >= 1 << 10 => format!("{}KiB", b >> 10),
        b => format!("{b}B"),
    }
}

type Series = Vec<(String, Vec<(f64, f64)>)>;

fn line_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &Series,
    log_x: bool,
    markers: bool,
) -> anyhow::Result<()> {
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x_min, mut x_max, mut y_max) = (f64::MAX, f64::MIN, 0f64);
    for &(x, y) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_max = y_max.max(y);
    }
    if x_min > x_max {
        return Ok(());
    }
    if x_max <= x_min {
        x_max = x_min + 1.0;
    }
    let y_max = if y_max <= 0.0 { 1.0 } else { y_max * 1.1 };
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart.map_err(|e| anyhow::anyhow!("{e}"))?;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .draw()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for (i, (name, pts)) in series.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .label(name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                if markers {
                    // A line of one point (a sweep of one size) is invisible without them.
                    chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }};
    }
    if log_x {
        draw!(builder.build_cartesian_2d((x_min.max(1e-3)..x_max).log_scale(), 0f64..y_max));
    } else {
        draw!(builder.build_cartesian_2d(x_min..x_max, 0f64..y_max));
    }
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// Draws the lines of `points` that have more than one point, sorted by x, into `path`;
/// returns the path, or `None` (and writes nothing) when no line qualifies.
fn line_chart_of(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    points: BTreeMap<String, Vec<(f64, f64)>>,
    log_x: bool,
) -> anyhow::Result<Option<PathBuf>> {
    let series: Series = points
        .into_iter()
        .filter(|(_, p)| p.len() > 1)
        .map(|(k, mut p)| {
            p.sort_by(|a, b| a.0.total_cmp(&b.0));
            (k, p)
        })
        .collect();
    if series.is_empty() {
        return Ok(None);
    }
    line_chart(path, title, x_desc, y_desc, &series, log_x, false)?;
    Ok(Some(path.to_owned()))
}

/// Writes every plot the results support into `dir` and returns their paths:
/// latency CDFs per (operation, size), throughput against object size, escrow overhead
/// (p50 and p99) against trustee round trip, and throughput relative to nginx against object
/// size when nginx was measured.
///
/// Repeated cells are drawn once: throughput and overhead at the median over repetitions, a
/// CDF as measured by the repetition with the median p99 ([`aggregate::Cell::median_p99_row`]).
///
/// # Errors
/// File or drawing errors.
pub fn write_all(dir: &Path, rows: &[Row]) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    // Repetitions without a completed request have no latencies to draw; they are left out of
    // the medians here (the summary still counts their errors).
    let cells = aggregate::cells(rows.iter().filter(|r| r.requests_ok > 0));
    // Latency CDFs: one chart per (op, size), one line per scenario.
    let mut groups: BTreeMap<(String, u64), Series> = BTreeMap::new();
    for cell in &cells {
        let row = cell.median_p99_row();
        let label = format!(
            "{} c={} {} ttl={}",
            row.scenario,
            row.concurrency,
            row.pacing,
            row.cache_ttl_s.map_or("-".into(), |t| t.to_string())
        );
        let label = if row.trustee_rtt_ms > 0.0 {
            format!("{label} rtt={}ms", row.trustee_rtt_ms)
        } else {
            label
        };
        let pts = row.cdf.iter().map(|&(q, ms)| (ms.max(1e-3), q)).collect();
        groups
            .entry((op_name(row), row.object_size))
            .or_default()
            .push((label, pts));
    }
    for ((op, size), series) in &groups {
        let path = dir.join(format!("cdf-{op}-{}.svg", size_label(*size)));
        line_chart(
            &path,
            &format!("latency CDF: {op} {}", size_label(*size)),
            "latency (ms, log)",
            "quantile",
            series,
            true,
            false,
        )?;
        written.push(path);
    }
    // Throughput against object size, per (scenario, op), closed loop only.
    let mut tput: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for cell in cells.iter().filter(|c| c.params.pacing == "closed") {
        let row = cell.params;
        tput.entry(format!(
            "{} {} c={}",
            row.scenario,
            op_name(row),
            row.concurrency
        ))
        .or_default()
        .push((row.object_size as f64, cell.spread(|r| r.mib_per_s).median));
    }
    written.extend(line_chart_of(
        &dir.join("throughput-vs-size.svg"),
        "throughput against object size",
        "object size (bytes, log)",
        "MiB/s",
        tput,
        true,
    )?);
    // Escrow overhead against trustee RTT: p50/p99 of TTL-0 treuhand cells.
    let mut rtt: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for cell in cells.iter().filter(|c| c.params.cache_ttl_s == Some(0.0)) {
        let row = cell.params;
        let key = format!(
            "{} {} {}",
            op_name(row),
            size_label(row.object_size),
            row.threshold
        );
        rtt.entry(format!("{key} p50"))
            .or_default()
            .push((row.trustee_rtt_ms, cell.spread(|r| r.p50_ms).median));
        rtt.entry(format!("{key} p99"))
            .or_default()
            .push((row.trustee_rtt_ms, cell.spread(|r| r.p99_ms).median));
    }
    written.extend(line_chart_of(
        &dir.join("overhead-vs-rtt.svg"),
        "escrow latency against trustee round trip (TTL 0)",
        "trustee RTT (ms)",
        "latency (ms)",
        rtt,
        false,
    )?);
    written.extend(ratio_against_nginx(
        &dir.join("ratio-vs-nginx.svg"),
        &cells,
    )?);
    Ok(written)
}

/// The series of the nginx comparison: per closed-loop variant other than nginx (scenario, op,
/// concurrency, and the escrow parameters where there are any), its ops/s over nginx's at each
/// object size, from medians (the summary's `×nginx tput`).
fn nginx_ratio_series(cells: &[aggregate::Cell<'_>]) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for cell in cells
        .iter()
        .filter(|c| c.params.pacing == "closed" && c.params.scenario != "nginx")
    {
        let Some(ratio) = aggregate::baseline(cells, cell, "nginx")
            .and_then(|nginx| aggregate::compare(cell, nginx).throughput)
        else {
            continue;
        };
        let row = cell.params;
        let mut label = format!("{} {} c={}", row.scenario, op_name(row), row.concurrency);
        if let Some(ttl) = row.cache_ttl_s {
            label.push_str(&format!(" ttl={ttl} {}", row.threshold));
        }
        if row.trustee_rtt_ms > 0.0 {
            label.push_str(&format!(" rtt={}ms", row.trustee_rtt_ms));
        }
        series
            .entry(label)
            .or_default()
            .push((row.object_size as f64, ratio));
    }
    series
}

/// Draws [`nginx_ratio_series`] (with points, so a sweep of one size shows too); nothing
/// without nginx cells.
fn ratio_against_nginx(
    path: &Path,
    cells: &[aggregate::Cell<'_>],
) -> anyhow::Result<Option<PathBuf>> {
    let series: Series = nginx_ratio_series(cells)
        .into_iter()
        .map(|(label, mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            (label, points)
        })
        .collect();
    if series.is_empty() {
        return Ok(None);
    }
    line_chart(
        path,
        "throughput relative to nginx (1.0 = nginx; same op, size, concurrency)",
        "object size (bytes, log)",
        "ops/s over nginx's ops/s",
        &series,
        true,
        true,
    )?;
    Ok(Some(path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::aggregate::tests::row;

    #[test]
    fn the_nginx_plot_has_a_ratio_per_variant_and_size_and_none_for_nginx() {
        let mut rows = vec![
            row("nginx", 1, 200.0, 0.5, 1.0),
            row("passthrough", 1, 100.0, 1.0, 2.0),
            row("treuhand", 1, 50.0, 2.0, 4.0),
        ];
        let mut big = rows.clone();
        for r in &mut big {
            r.object_size = 1 << 20;
            r.ops_per_s /= 10.0;
        }
        big[2].ops_per_s = 25.0;
        rows.extend(big);
        let cells = aggregate::cells(&rows);
        let series = nginx_ratio_series(&cells);
        assert_eq!(
            series.keys().collect::<Vec<_>>(),
            ["passthrough get c=8", "treuhand get c=8 ttl=0 2-of-2"]
        );
        assert_eq!(
            series["treuhand get c=8 ttl=0 2-of-2"],
            [(4096.0, 0.25), (1048576.0, 1.25)]
        );
        let dir = tempfile::tempdir().unwrap();
        let written = write_all(dir.path(), &rows).unwrap();
        let plot = dir.path().join("ratio-vs-nginx.svg");
        assert!(written.contains(&plot), "{written:?}");
        assert!(std::fs::read_to_string(plot).unwrap().contains("<svg"));
    }

    #[test]
    fn without_nginx_there_is_no_nginx_plot() {
        let rows = [row("passthrough", 1, 100.0, 1.0, 2.0)];
        let dir = tempfile::tempdir().unwrap();
        let written = write_all(dir.path(), &rows).unwrap();
        assert!(
            !dir.path().join("ratio-vs-nginx.svg").exists(),
            "{written:?}"
        );
    }
}
