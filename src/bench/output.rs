//! The output writers: `results.csv`, `results.json`, `manifest.json`, the SVG plots and
//! `summary.md` of a run, and their regeneration from `results.json` (`bench report`).

use std::path::{Path, PathBuf};

use super::results::Row;
use super::{plot, report, results};

/// Writes results, manifest, plots and summary into `out`.
///
/// # Errors
/// I/O or drawing errors.
pub fn write_outputs(
    out: &Path,
    rows: &[Row],
    manifest: &serde_json::Value,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    results::write(out, rows)?;
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_vec_pretty(manifest)?,
    )?;
    write_report(out, rows, manifest)
}

/// The plots and `summary.md`, which depend on the results and the manifest alone.
fn write_report(
    dir: &Path,
    rows: &[Row],
    manifest: &serde_json::Value,
) -> anyhow::Result<Vec<PathBuf>> {
    let plots = plot::write_all(dir, rows)?;
    std::fs::write(dir.join("summary.md"), report::markdown(rows, manifest))?;
    Ok(plots)
}

/// `treuhand bench report DIR`: regenerate plots and summary from `results.json` alone.
///
/// # Errors
/// Missing or malformed results.
pub fn report_dir(dir: &Path) -> anyhow::Result<()> {
    let rows = results::read(dir)?;
    let manifest_path = dir.join("manifest.json");
    let manifest: serde_json::Value = std::fs::read(&manifest_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    let plots = write_report(dir, &rows, &manifest)?;
    println!(
        "wrote {} and {} plot(s) from {} rows",
        dir.join("summary.md").display(),
        plots.len(),
        rows.len()
    );
    Ok(())
}
