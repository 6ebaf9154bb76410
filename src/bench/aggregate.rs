//! Folds the repetitions of a sweep: rows that differ only in `repeat` are one cell, and each
//! measured number of a cell is summarised by its median and its min–max range.
//!
//! Medians rather than means because a noisy host produces a few repetitions with a 5× tail:
//! one such outlier moves a mean of three but not a median. The summary and the plots read
//! results only through this module, so both aggregate the same way.

use super::results::Row;

/// The median and range of one number over the repetitions of a cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The middle value; for an even count the mean of the two middle values.
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

/// Median and range of `values`; `None` for no values. NaNs sort last (`f64::total_cmp`).
pub fn spread(values: &[f64]) -> Option<Spread> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (&min, &max) = (sorted.first()?, sorted.last()?);
    let mid = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 {
        // One value comes back bit for bit, so a single pass reports exactly what it measured.
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    };
    Some(Spread { median, min, max })
}

/// One cell of a sweep (a set of parameters) with every repetition that measured it.
#[derive(Debug, Clone)]
pub struct Cell<'a> {
    /// The first repetition, for the parameters the repetitions share.
    pub params: &'a Row,
    /// Every repetition, in results order (for a run, ascending `repeat`).
    pub rows: Vec<&'a Row>,
}

impl<'a> Cell<'a> {
    /// How many repetitions measured this cell.
    pub fn repeats(&self) -> usize {
        self.rows.len()
    }

    /// Median and range of `value` over the repetitions.
    pub fn spread(&self, value: impl Fn(&Row) -> f64) -> Spread {
        let values: Vec<f64> = self.rows.iter().map(|r| value(r)).collect();
        spread(&values).unwrap_or_else(|| {
            // Unreachable (a cell has at least one row), but the parameters row is a safe answer.
            let v = value(self.params);
            Spread {
                median: v,
                min: v,
                max: v,
            }
        })
    }

    /// Median and range of an optional `value` over the repetitions that have it.
    pub fn spread_opt(&self, value: impl Fn(&Row) -> Option<f64>) -> Option<Spread> {
        let values: Vec<f64> = self.rows.iter().filter_map(|r| value(r)).collect();
        spread(&values)
    }

    /// Failed requests over all repetitions: a median would hide a repetition that failed.
    pub fn errors(&self) -> u64 {
        self.rows.iter().map(|r| r.errors).sum()
    }

    /// The repetition whose p99 is the median one (for an even count, the lower of the two
    /// middle ones), whose whole latency CDF stands for the cell in plots. A median per quantile
    /// would draw a curve no repetition measured.
    pub fn median_p99_row(&self) -> &'a Row {
        let mut by_p99 = self.rows.clone();
        by_p99.sort_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms));
        by_p99
            .get(by_p99.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(self.params)
    }
}

/// Whether two rows measure the same cell, i.e. differ at most in `repeat` and measurements.
pub fn same_cell(a: &Row, b: &Row) -> bool {
    a.scenario == b.scenario
        && a.op == b.op
        && a.object_size == b.object_size
        && a.concurrency == b.concurrency
        && a.pacing == b.pacing
        && a.cache_ttl_s == b.cache_ttl_s
        && a.threshold == b.threshold
        && a.trustee_rtt_ms == b.trustee_rtt_ms
}

/// Groups rows into cells, in the order each cell first appears: for a run, the order of its
/// first repetition, so a single pass keeps the row order it always had.
pub fn cells<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Vec<Cell<'a>> {
    let mut cells: Vec<Cell<'a>> = Vec::new();
    for row in rows {
        match cells.iter_mut().find(|c| same_cell(c.params, row)) {
            Some(cell) => cell.rows.push(row),
            None => cells.push(Cell {
                params: row,
                rows: vec![row],
            }),
        }
    }
    cells
}

/// The cell of scenario `scenario` that `cell` is compared with: same op, size, concurrency and
/// pacing (a baseline has one cell per such set: it has no TTL, threshold or RTT).
pub fn baseline<'a, 'r>(
    cells: &'a [Cell<'r>],
    cell: &Cell<'_>,
    scenario: &str,
) -> Option<&'a Cell<'r>> {
    let row = cell.params;
    cells.iter().find(|b| {
        let b = b.params;
        b.scenario == scenario
            && b.op == row.op
            && b.object_size == row.object_size
            && b.concurrency == row.concurrency
            && b.pacing == row.pacing
    })
}

/// How a cell compares with its baseline cell, from the medians over repetitions (the median
/// ops/s of the cell over the median ops/s of the baseline, not a median of per-repetition
/// ratios: repetitions of different variants are not pairs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// Throughput (ops/s) of the cell over the baseline's; `None` if the baseline did none.
    pub throughput: Option<f64>,
    /// p50 latency of the cell over the baseline's; `None` if the baseline's is zero.
    pub p50: Option<f64>,
    /// p50 latency of the cell minus the baseline's, milliseconds.
    pub p50_added_ms: f64,
}

/// Compares `cell` with `base` (see [`Comparison`]).
pub fn compare(cell: &Cell<'_>, base: &Cell<'_>) -> Comparison {
    let quotient = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    let (ops, base_ops) = (
        cell.spread(|r| r.ops_per_s).median,
        base.spread(|r| r.ops_per_s).median,
    );
    let (p50, base_p50) = (
        cell.spread(|r| r.p50_ms).median,
        base.spread(|r| r.p50_ms).median,
    );
    Comparison {
        throughput: quotient(ops, base_ops),
        p50: quotient(p50, base_p50),
        p50_added_ms: p50 - base_p50,
    }
}

/// Whether any cell was measured more than once (the report then shows ranges).
pub fn repeated(cells: &[Cell<'_>]) -> bool {
    cells.iter().any(|c| c.repeats() > 1)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bench::load::Op;
    use std::collections::BTreeMap;

    /// A row with the given parameters and measurements, the rest zero.
    pub(crate) fn row(scenario: &str, repeat: usize, ops_per_s: f64, p50: f64, p99: f64) -> Row {
        Row {
            scenario: scenario.into(),
            op: Op::Get,
            object_size: 4096,
            concurrency: 8,
            pacing: "closed".into(),
            cache_ttl_s: (scenario == "treuhand").then_some(0.0),
            threshold: if scenario == "treuhand" {
                "2-of-2".into()
            } else {
                "-".into()
            },
            trustee_rtt_ms: 0.0,
            repeat,
            requests_ok: (ops_per_s * 5.0) as u64,
            errors: 0,
            duration_s: 5.0,
            ops_per_s,
            mib_per_s: ops_per_s * 4096.0 / 1048576.0,
            p50_ms: p50,
            p90_ms: p50 * 2.0,
            p99_ms: p99,
            p999_ms: p99 * 2.0,
            max_ms: p99 * 4.0,
            phases_ms: BTreeMap::new(),
            proxy_cpu_s: None,
            proxy_peak_rss_mib: None,
            gen_lag_p99_ms: None,
            cdf: vec![(0.5, p50), (0.99, p99)],
            first_error: None,
        }
    }

    /// The rows of a sweep of passthrough and treuhand in the order a run writes them:
    /// repetition `i` (1-based) measured `(ops/s, p50, p99)` = `passthrough[i - 1]`, then
    /// `treuhand[i - 1]`.
    pub(crate) fn interleaved(
        passthrough: &[(f64, f64, f64)],
        treuhand: &[(f64, f64, f64)],
    ) -> Vec<Row> {
        passthrough
            .iter()
            .zip(treuhand)
            .enumerate()
            .flat_map(|(i, (&(po, p50, p99), &(to, t50, t99)))| {
                [
                    row("passthrough", i + 1, po, p50, p99),
                    row("treuhand", i + 1, to, t50, t99),
                ]
            })
            .collect()
    }

    #[test]
    fn comparisons_divide_medians_and_find_the_baseline_of_the_same_parameters() {
        let mut rows = Vec::new();
        // nginx: ops/s 200, 100, 400 (median 200); p50 1, 2, 0.5 (median 1).
        for (repeat, ops, p50) in [(1, 200.0, 1.0), (2, 100.0, 2.0), (3, 400.0, 0.5)] {
            rows.push(row("nginx", repeat, ops, p50, p50 * 2.0));
        }
        // treuhand: ops/s 150, 90, 160 (median 150); p50 1.2, 3, 1.5 (median 1.5).
        for (repeat, ops, p50) in [(1, 150.0, 1.2), (2, 90.0, 3.0), (3, 160.0, 1.5)] {
            rows.push(row("treuhand", repeat, ops, p50, p50 * 2.0));
        }
        // Another size: its own baseline is missing.
        let mut big = row("treuhand", 1, 5.0, 9.0, 9.0);
        big.object_size = 1 << 20;
        rows.push(big);
        let cells = cells(&rows);
        let nginx = baseline(&cells, &cells[1], "nginx").unwrap();
        assert_eq!(nginx.params.scenario, "nginx");
        let c = compare(&cells[1], nginx);
        assert_eq!(c.throughput, Some(0.75));
        assert_eq!(c.p50, Some(1.5));
        assert_eq!(c.p50_added_ms, 0.5);
        assert!(baseline(&cells, &cells[2], "nginx").is_none());
        // A baseline that completed nothing gives no ratio rather than infinity.
        let mut idle = row("nginx", 1, 0.0, 0.0, 0.0);
        idle.object_size = 1 << 20;
        let lone = [idle, rows[6].clone()];
        let cells = super::cells(&lone);
        let c = compare(&cells[1], &cells[0]);
        assert_eq!((c.throughput, c.p50), (None, None));
    }

    #[test]
    fn median_of_an_odd_count_is_the_middle_value() {
        let s = spread(&[9.0, 1.0, 5.0]).unwrap();
        assert_eq!(s.median, 5.0);
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_two_middle_values() {
        let s = spread(&[4.0, 1.0, 10.0, 2.0]).unwrap();
        assert_eq!(s.median, 3.0);
    }

    #[test]
    fn range_is_min_to_max_whatever_the_order() {
        let s = spread(&[3.5, 7.25, 0.5, 2.0]).unwrap();
        assert_eq!((s.min, s.max), (0.5, 7.25));
        assert_eq!(spread(&[]), None);
    }

    #[test]
    fn a_single_value_is_its_own_median_and_range() {
        let v = 0.1 + 0.2; // not exactly representable: must come back bit for bit
        let s = spread(&[v]).unwrap();
        assert_eq!(s.median.to_bits(), v.to_bits());
        assert_eq!((s.min, s.max), (v, v));
    }

    #[test]
    fn rows_differing_only_in_repeat_form_one_cell_in_first_seen_order() {
        let rows = interleaved(
            &[(100.0, 1.0, 2.0), (120.0, 1.1, 2.2)],
            &[(50.0, 2.0, 4.0), (40.0, 2.5, 5.0)],
        );
        let cells = cells(&rows);
        assert_eq!(cells.len(), 2);
        assert_eq!(cells[0].params.scenario, "passthrough");
        assert_eq!(cells[1].params.scenario, "treuhand");
        assert_eq!(cells[1].repeats(), 2);
        assert_eq!(cells[1].spread(|r| r.ops_per_s).median, 45.0);
        assert!(repeated(&cells));
    }

    #[test]
    fn rows_of_a_single_pass_stay_one_cell_each_and_unrepeated() {
        let mut other_size = row("treuhand", 1, 50.0, 2.0, 4.0);
        other_size.object_size = 1 << 20;
        let rows = vec![row("treuhand", 1, 50.0, 2.0, 4.0), other_size];
        let cells = cells(&rows);
        assert_eq!(cells.len(), 2);
        assert!(!repeated(&cells));
        assert!(std::ptr::eq(cells[1].params, &rows[1]));
    }

    #[test]
    fn errors_add_up_over_repetitions() {
        let mut a = row("treuhand", 1, 50.0, 2.0, 4.0);
        let mut b = row("treuhand", 2, 50.0, 2.0, 4.0);
        let c = row("treuhand", 3, 50.0, 2.0, 4.0);
        a.errors = 3;
        b.errors = 0;
        let rows = [a, b, c];
        assert_eq!(cells(&rows)[0].errors(), 3);
    }

    #[test]
    fn the_cdf_repetition_is_the_one_with_the_median_p99() {
        let rows = [
            row("treuhand", 1, 50.0, 2.0, 40.0),
            row("treuhand", 2, 50.0, 2.0, 5.0),
            row("treuhand", 3, 50.0, 2.0, 9.0),
            row("treuhand", 4, 50.0, 2.0, 7.0),
        ];
        // p99s sorted: 5, 7, 9, 40; the lower middle one is repetition 4's.
        assert_eq!(cells(&rows)[0].median_p99_row().repeat, 4);
        assert_eq!(cells(&rows[..3])[0].median_p99_row().repeat, 3);
    }
}
