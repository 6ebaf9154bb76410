//! Starting and stopping what a sweep measures: either an already running endpoint described
//! by a `dev.env`-style file, or (per variant) a stack of local processes.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::{Endpoint, SweepConfig, Variant, client, results::Row};

/// Parses a shell file of `export NAME=value` lines (as `treuhand dev` writes them).
///
/// # Errors
/// If the file cannot be read.
pub fn parse_env_file(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let line = line.trim().strip_prefix("export ").unwrap_or(line.trim());
            let (k, v) = line.split_once('=')?;
            Some((
                k.trim().to_owned(),
                v.trim().trim_matches(['"', '\'']).to_owned(),
            ))
        })
        .collect())
}

/// Builds an [`Endpoint`] from an env file (`TREUHAND_ENDPOINT`, `AWS_*`, `TREUHAND_BUCKET`,
/// optional `TREUHAND_SHARE_FILE`, optional `TREUHAND_METRICS`/`TREUHAND_PROXY_PID`).
///
/// # Errors
/// Missing variables, unreadable CA or share file, with the name of what is missing.
pub fn endpoint_from_env(vars: &HashMap<String, String>) -> anyhow::Result<Endpoint> {
    let get = |k: &str| {
        vars.get(k)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("{k} is not set in the env file"))
    };
    let sse_c = match vars.get("TREUHAND_SHARE_FILE") {
        Some(path) => {
            let raw = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read share file {path}: {e}"))?;
            let raw = if raw.len() == 32 {
                raw
            } else {
                base64::engine::general_purpose::STANDARD
                    .decode(raw.trim_ascii())
                    .map_err(|_| {
                        anyhow::anyhow!("{path} is neither 32 raw bytes nor base64 of them")
                    })?
            };
            Some(
                <[u8; 32]>::try_from(raw.as_slice())
                    .map_err(|_| anyhow::anyhow!("{path} must hold a 32-byte share"))?,
            )
        }
        None => None,
    };
    let endpoint = get("TREUHAND_ENDPOINT")?;
    let tls = match vars.get("AWS_CA_BUNDLE") {
        Some(ca) => crate::tls::client_config(Path::new(ca), None)?,
        None if endpoint.starts_with("http://") => crate::tls::client_config_webpki_roots_free(),
        None => anyhow::bail!("AWS_CA_BUNDLE is not set: the harness needs the CA of {endpoint}"),
    };
    Ok(Endpoint {
        target: client::Target {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            bucket: get("TREUHAND_BUCKET")?,
            access_key: get("AWS_ACCESS_KEY_ID")?,
            secret_key: get("AWS_SECRET_ACCESS_KEY")?,
            region: vars
                .get("AWS_DEFAULT_REGION")
                .cloned()
                .unwrap_or_else(|| "us-east-1".into()),
            sse_c,
        },
        tls,
        proxy_pid: vars.get("TREUHAND_PROXY_PID").and_then(|p| p.parse().ok()),
        metrics_url: vars.get("TREUHAND_METRICS").cloned(),
    })
}

/// Runs a whole sweep and writes every output into `out`.
///
/// With `env`, every cell targets that running endpoint as scenario `label`; otherwise the
/// harness starts its own stack per variant.
///
/// # Errors
/// Setup failures (with what to do); individual request failures are counted, not fatal.
pub async fn run_sweep(
    config: &SweepConfig,
    out: &Path,
    env: Option<&Path>,
    label: &str,
) -> anyhow::Result<Vec<Row>> {
    std::fs::create_dir_all(out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
    let manifest = super::manifest_for(config, out);
    let progress = MultiProgress::new();
    let mut rows = Vec::new();
    let variants: Vec<Variant> = match env {
        Some(_) => vec![Variant {
            scenario: label.to_owned(),
            cache_ttl_s: None,
            threshold: "-".into(),
            trustee_rtt_ms: 0.0,
        }],
        None => super::variants(config),
    };
    let overall = progress.add(ProgressBar::new(
        (variants.len() * super::cells_per_variant(config)) as u64,
    ));
    overall.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} cells, {elapsed} elapsed, ~{eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for variant in &variants {
        let endpoint = match env {
            Some(path) => endpoint_from_env(&parse_env_file(path)?)?,
            None => anyhow::bail!(
                "starting an own stack is not available in this build; start one with `treuhand dev` and pass --env DIR/dev.env"
            ),
        };
        super::run_variant(config, variant, &endpoint, &progress, &overall, &mut rows).await?;
    }
    overall.finish_and_clear();
    let plots = super::write_outputs(out, &rows, &manifest)?;
    println!(
        "wrote {} rows to {}/results.csv, results.json, manifest.json, summary.md and {} plot(s)",
        rows.len(),
        out.display(),
        plots.len()
    );
    Ok(rows)
}
