//! Starting and stopping what a sweep measures: either an already running endpoint described
//! by a `dev.env`-style file, or (per variant) a stack of local processes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    if !endpoint.starts_with("https://") && !endpoint.starts_with("http://") {
        anyhow::bail!("TREUHAND_ENDPOINT must be an http(s) URL, not {endpoint}");
    }
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
    backend_env: Option<&Path>,
    label: &str,
) -> anyhow::Result<Vec<Row>> {
    std::fs::create_dir_all(out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
    let mut manifest = super::manifest_for(config, out);
    if !config.skip_cpu_probe {
        println!("probing CPU steadiness for 3 s (see manifest.json, cpu_stability)");
        let probe = tokio::task::spawn_blocking(|| {
            super::results::cpu_stability(std::time::Duration::from_secs(3))
        })
        .await?;
        if let Some(m) = manifest.as_object_mut() {
            m.insert("cpu_stability".into(), probe);
        }
    }
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
        (config.repeats * variants.len() * super::cells_per_variant(config)) as u64,
    ));
    overall.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} cells, {elapsed} elapsed, ~{eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let stacks = out.join("stacks");
    for (repeat, index, variant) in super::schedule(&variants, config.repeats) {
        let mut own = None;
        let endpoint = match (env, variant.scenario.as_str()) {
            (Some(path), _) => endpoint_from_env(&parse_env_file(path)?)?,
            (None, "direct") => match backend_env {
                Some(path) => direct_endpoint(&parse_env_file(path)?)?,
                None => {
                    if repeat == 1 {
                        super::say(
                            &overall,
                            "skipping scenario direct: the default stack stores on the filesystem, which has no S3 endpoint of its own (pass --backend-env rgw.env to compare against an S3 backend)",
                        );
                    }
                    overall.inc(super::cells_per_variant(config) as u64);
                    continue;
                }
            },
            (None, _) => {
                super::say(
                    &overall,
                    format!(
                        "starting stack {index}: {} ttl={:?} {} rtt={} ms{}",
                        variant.scenario,
                        variant.cache_ttl_s,
                        variant.threshold,
                        variant.trustee_rtt_ms,
                        super::repeat_label(repeat, config.repeats)
                    ),
                );
                let stack = start_own(
                    variant,
                    &stack_dir(&stacks, index, repeat, config.repeats),
                    backend_env,
                )
                .await?;
                let endpoint = stack.endpoint.clone();
                own = Some(stack);
                endpoint
            }
        };
        super::run_variant(
            config, variant, repeat, &endpoint, &progress, &overall, &mut rows,
        )
        .await?;
        if let Some(stack) = own.take() {
            let storage = stack.dir.join("storage");
            drop(stack);
            // The stored objects are only load (up to GiBs per variant with large sizes); the
            // configs, certificates and logs stay for inspection.
            if storage.is_dir()
                && let Err(e) = std::fs::remove_dir_all(&storage)
            {
                super::say(
                    &overall,
                    format!("could not remove {}: {e}", storage.display()),
                );
            }
        }
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

/// Where variant `index` of repetition `repeat` keeps its stack: `stacks/N` for a single
/// pass (as before repetitions existed), `stacks/repR/N` otherwise, so every repetition's logs
/// stay for inspection.
fn stack_dir(stacks: &Path, index: usize, repeat: usize, repeats: usize) -> PathBuf {
    if repeats > 1 {
        stacks.join(format!("rep{repeat}")).join(index.to_string())
    } else {
        stacks.join(index.to_string())
    }
}

/// A stack of child processes started for one variant; killed on drop.
pub struct OwnStack {
    children: Vec<tokio::process::Child>,
    /// What the cells target.
    pub endpoint: Endpoint,
    /// The stack's folder (configs, certificates, logs, filesystem storage).
    pub dir: PathBuf,
}

impl Drop for OwnStack {
    fn drop(&mut self) {
        for child in &mut self.children {
            // Best effort: kill_on_drop also covers this when the runtime shuts down.
            let _ = child.start_kill();
        }
    }
}

/// Parses a generated config. toml's own error message quotes the offending line, and a
/// generated proxy.toml can hold the storage backend's secret, so errors give the position only.
fn parse_toml(path: &Path, text: &str) -> anyhow::Result<toml::Table> {
    toml::from_str(text)
        .map_err(|e| anyhow::anyhow!(crate::logging::describe_toml_error(path, text, &e)))
}

fn read_toml(path: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    parse_toml(path, &text)
}

fn edit_toml(
    path: &Path,
    edit: impl FnOnce(&mut toml::Table) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut table = parse_toml(path, &text)?;
    edit(&mut table)?;
    std::fs::write(path, toml::to_string_pretty(&table)?)?;
    Ok(())
}

fn spawn(exe: &Path, args: &[&str], log: &Path) -> anyhow::Result<tokio::process::Child> {
    let log_file = std::fs::File::create(log)?;
    let child = tokio::process::Command::new(exe)
        .args(args)
        .env("TREUHAND_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {} {}: {e}", exe.display(), args.join(" ")))?;
    Ok(child)
}

async fn wait_for_port(addr: SocketAddr, what: &str, log: &Path) -> anyhow::Result<()> {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    anyhow::bail!(
        "{what} did not start listening on {addr} within 15 s; its log ({}):\n{tail}",
        log.display()
    )
}

/// Starts `treuhand <command> --config <config>` and waits until it listens on the address
/// the config's first `keys` entry names.
///
/// The ports were picked free by `dev init`, but other processes (parallel tests, a busy
/// machine's outgoing connections) can take one before the child binds it. A child that fails
/// with "Address already in use" is restarted on fresh free ports for every key in `keys`,
/// up to three times, instead of failing the whole sweep.
async fn spawn_listening(
    exe: &Path,
    command: &str,
    config: &Path,
    keys: &[&str],
    log: &Path,
    what: &str,
) -> anyhow::Result<(tokio::process::Child, SocketAddr)> {
    let config_arg = config.to_string_lossy().into_owned();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let table = read_toml(config)?;
        let addr = listen_addr(&table, keys.first().copied().unwrap_or("listen"))?;
        let mut child = spawn(exe, &[command, "--config", &config_arg], log)?;
        match wait_for_port(addr, what, log).await {
            Ok(()) => return Ok((child, addr)),
            Err(e) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                let log_text = std::fs::read_to_string(log).unwrap_or_default();
                if attempt >= 3 || !log_text.contains("Address already in use") {
                    return Err(e);
                }
                edit_toml(config, |t| {
                    for key in keys {
                        if t.contains_key(*key) {
                            let port = crate::dev::free_port()?;
                            t.insert(
                                (*key).to_owned(),
                                toml::Value::String(format!("127.0.0.1:{port}")),
                            );
                        }
                    }
                    Ok(())
                })?;
            }
        }
    }
}

fn listen_addr(table: &toml::Table, key: &str) -> anyhow::Result<SocketAddr> {
    table
        .get(key)
        .and_then(|v| v.as_str())
        .ok_or_else(|| anyhow::anyhow!("config has no {key}"))?
        .parse()
        .map_err(|e| anyhow::anyhow!("bad {key}: {e}"))
}

/// Starts trustee and proxy for one variant, from a fresh `treuhand dev init` set-up in `dir`
/// (filesystem storage, tenant `demo` with its share in SSE-C), adjusted to the variant:
/// cache TTL, a delaying relay in front of the trustee, or pass-through mode.
///
/// # Errors
/// Set-up or start failures, with the child's log.
pub async fn start_own(
    variant: &Variant,
    dir: &Path,
    backend_env: Option<&Path>,
) -> anyhow::Result<OwnStack> {
    let (threshold, holders) = if variant.threshold == "-" {
        (2, 2)
    } else {
        super::parse_threshold(&variant.threshold)?
    };
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let dir = std::fs::canonicalize(dir)?;
    crate::dev::init(&dir, crate::dev::storage_from_env_file(backend_env)?).await?;
    let exe = std::env::current_exe()?;
    let certs = dir.join("certs");
    let ca = crate::tls::DevCa::load(&certs.join("ca.pem"), &certs.join("ca.key"))?;
    // The dev set-up has one trustee; a k-of-n variant needs n - 1 (the customer is one holder).
    let mut trustee_names = vec!["trustee".to_owned()];
    for i in 2..holders {
        let name = format!("trustee-{i}");
        let sub = dir.join(&name);
        std::fs::create_dir_all(&sub)?;
        crate::trustee::config::generate_keys(&sub)?;
        ca.issue_server(&name, &[])?.write(&certs, &name)?;
        let config = crate::dev::trustee_config(&name, crate::dev::free_port()?);
        std::fs::write(
            dir.join(format!("{name}.toml")),
            toml::to_string_pretty(&config)?,
        )?;
        trustee_names.push(name);
    }
    let mut children = Vec::new();
    let mut trustee_urls = Vec::new();
    for name in &trustee_names {
        let config_path = dir.join(format!("{name}.toml"));
        let log = dir.join(format!("{name}.log"));
        let (child, addr) =
            spawn_listening(&exe, "trustee", &config_path, &["listen"], &log, name).await?;
        children.push(child);
        let addr = if variant.trustee_rtt_ms > 0.0 {
            super::relay::start(
                addr,
                std::time::Duration::from_secs_f64(variant.trustee_rtt_ms / 1000.0),
            )
            .await?
        } else {
            addr
        };
        trustee_urls.push(format!("https://{addr}"));
    }
    // A fresh tenant per variant, enrolled through the real ceremony with the variant's k-of-n.
    let (cert, key) = ca
        .issue_client(crate::tls::Role::Customer, "bench")?
        .write(&certs, "customer-bench")?;
    let tls = crate::tls::client_config(&certs.join("ca.pem"), Some((&cert, &key)))?;
    // The bench measures the cost of escrow, not the tenant's release limiter (2,000/s by
    // default), so the bench tenant's policy allows the maximum rate.
    let depositor =
        crate::tenant::deposit::TrusteeDepositor::from_tls(tls, vec![crate::dev::DEV_PROXY.into()])
            .with_rate_limit(crate::trustee::policy::RateLimit {
                per_second: 1_000_000,
                burst: 10_000_000,
            });
    let mut token = [0u8; 16];
    crate::crypto::envelope::fill_random(&mut token)?;
    let params = crate::tenant::CreateParams {
        tenant: "bench".into(),
        key_version: 1,
        threshold,
        trustees: trustee_names
            .iter()
            .zip(&trustee_urls)
            .map(|(holder, url)| crate::tenant::TrusteeSpec {
                holder: holder.clone(),
                url: url.clone(),
            })
            .collect(),
        customer_holder_url: None,
        access_key_id: format!("THBENCH{}", hex::encode_upper(&token[..4])),
        secret_access_key: hex::encode(&token[4..]),
        registration_dir: dir.join("tenants"),
        share_dir: dir.join("shares"),
    };
    let created = crate::tenant::create(&params, &depositor).await?;
    let share_raw = created
        .share_raw
        .ok_or_else(|| anyhow::anyhow!("the ceremony wrote no raw share"))?;
    let proxy_toml = dir.join("proxy.toml");
    edit_toml(&proxy_toml, |t| {
        if let Some(toml::Value::Table(cache)) = t.get_mut("cache") {
            let ttl = variant.cache_ttl_s.unwrap_or(0.0).round() as i64;
            cache.insert("ttl_secs".into(), toml::Value::Integer(ttl));
        }
        // All load comes from one address: the per-address connection limit (a slowloris
        // defence, default 256) would otherwise cap the generator below its 1024 workers.
        if let toml::Value::Table(limits) = t
            .entry("limits")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            limits.insert(
                "max_connections_per_address".into(),
                toml::Value::Integer(4096),
            );
        }
        if variant.scenario == "passthrough" {
            t.insert(
                "danger_passthrough_no_encryption".into(),
                toml::Value::Boolean(true),
            );
        }
        Ok(())
    })?;
    let proxy_log = dir.join("proxy.log");
    let (proxy, proxy_addr) = spawn_listening(
        &exe,
        "proxy",
        &proxy_toml,
        &["listen", "metrics_listen"],
        &proxy_log,
        "the proxy",
    )
    .await?;
    let proxy_table = read_toml(&proxy_toml)?;
    let metrics_addr = listen_addr(&proxy_table, "metrics_listen").ok();
    let proxy_pid = proxy.id();
    children.push(proxy);
    let mut vars = parse_env_file(&dir.join("dev.env"))?;
    // The port may have moved (see `spawn_listening`), so the endpoint comes from the config
    // the proxy really listens on, not from dev.env.
    vars.insert("TREUHAND_ENDPOINT".into(), format!("https://{proxy_addr}"));
    vars.insert("AWS_ACCESS_KEY_ID".into(), params.access_key_id.clone());
    vars.insert(
        "AWS_SECRET_ACCESS_KEY".into(),
        params.secret_access_key.clone(),
    );
    vars.insert("TREUHAND_BUCKET".into(), "bench".into());
    vars.insert(
        "TREUHAND_SHARE_FILE".into(),
        share_raw.to_string_lossy().into_owned(),
    );
    if let Some(pid) = proxy_pid {
        vars.insert("TREUHAND_PROXY_PID".into(), pid.to_string());
    }
    if let Some(addr) = metrics_addr {
        vars.insert("TREUHAND_METRICS".into(), format!("http://{addr}/metrics"));
    }
    let endpoint = endpoint_from_env(&vars)?;
    Ok(OwnStack {
        children,
        endpoint,
        dir: dir.to_owned(),
    })
}

/// The S3 backend itself (e.g. Ceph RGW from `.ci/ceph.sh`), measured without any proxy.
fn direct_endpoint(vars: &HashMap<String, String>) -> anyhow::Result<Endpoint> {
    let get = |k: &str| {
        vars.get(k)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("{k} is not set in the backend env file"))
    };
    let endpoint = get("RGW_ENDPOINT")?;
    Ok(Endpoint {
        target: client::Target {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            bucket: "bench-direct".into(),
            access_key: get("RGW_ACCESS_KEY_ID")?,
            secret_key: get("RGW_SECRET_ACCESS_KEY")?,
            region: vars
                .get("RGW_REGION")
                .cloned()
                .unwrap_or_else(|| "us-east-1".into()),
            sse_c: None,
        },
        tls: crate::tls::client_config_webpki_roots_free(),
        proxy_pid: None,
        metrics_url: None,
    })
}
