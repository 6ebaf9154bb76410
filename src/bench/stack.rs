//! Starting and stopping what a sweep measures: either an already running endpoint described
//! by a `dev.env`-style file, the S3 backend itself, or (per variant) a stack of local
//! processes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::cell::Endpoint;
use super::client;
use super::nginx::{self, Nginx, Upstream};
use super::pin::{self, Pinning};
use super::plan::{Scenario, Threshold, Variant};
pub use crate::dev::env::parse_env_file;
use crate::dev::stack::{Launch, edit_toml, listen_addr, read_toml, spawn_listening};
use base64::Engine as _;

/// Builds an [`Endpoint`] from an env file (`TREUHAND_ENDPOINT`, `AWS_*`, `TREUHAND_BUCKET`,
/// optional `TREUHAND_SHARE_FILE`, optional `TREUHAND_METRICS`/`TREUHAND_PROXY_PID`).
///
/// # Errors
/// Missing variables, unreadable CA or share file, with the name of what is missing.
pub fn endpoint_from_env(vars: &HashMap<String, String>) -> anyhow::Result<Endpoint> {
    let get = |k: &str| var(vars, k, "env file");
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
        target: target_from_env(
            vars,
            "env file",
            TREUHAND_NAMES,
            get("TREUHAND_BUCKET")?,
            sse_c,
        )?,
        tls,
        proxy_pid: vars.get("TREUHAND_PROXY_PID").and_then(|p| p.parse().ok()),
        metrics_url: vars.get("TREUHAND_METRICS").cloned(),
        bucket_created: false,
    })
}

/// The variables naming an S3 endpoint, its credentials and its region, in that order.
type EnvNames = [&'static str; 4];

/// `treuhand dev`'s env files.
const TREUHAND_NAMES: EnvNames = [
    "TREUHAND_ENDPOINT",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
];

/// `.ci/ceph.sh`'s `rgw.env`.
const RGW_NAMES: EnvNames = [
    "RGW_ENDPOINT",
    "RGW_ACCESS_KEY_ID",
    "RGW_SECRET_ACCESS_KEY",
    "RGW_REGION",
];

fn var(vars: &HashMap<String, String>, name: &str, file: &str) -> anyhow::Result<String> {
    vars.get(name)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("{name} is not set in the {file}"))
}

/// The S3 target that `names` describe in `vars` (the region defaults to us-east-1).
fn target_from_env(
    vars: &HashMap<String, String>,
    file: &str,
    [endpoint, access_key, secret_key, region]: EnvNames,
    bucket: String,
    sse_c: Option<[u8; 32]>,
) -> anyhow::Result<client::Target> {
    Ok(client::Target {
        endpoint: var(vars, endpoint, file)?.trim_end_matches('/').to_owned(),
        bucket,
        access_key: var(vars, access_key, file)?,
        secret_key: var(vars, secret_key, file)?,
        region: vars
            .get(region)
            .cloned()
            .unwrap_or_else(|| "us-east-1".into()),
        sse_c,
    })
}

/// A stack of child processes started for one variant; stopped by [`OwnStack::stop`], killed
/// on drop.
pub struct OwnStack {
    children: Vec<tokio::process::Child>,
    nginx: Option<Nginx>,
    /// Every process of the stack by role (`proxy`, `trustee`, `nginx worker`, ...), for the
    /// pinning record.
    pub processes: Vec<(String, u32)>,
    /// What the cells target.
    pub endpoint: Endpoint,
    /// The stack's folder (configs, certificates, logs, filesystem storage).
    pub dir: PathBuf,
}

impl OwnStack {
    /// Stops the stack: nginx through its master (so its worker ends too), the rest on drop.
    pub async fn stop(mut self) {
        if let Some(mut nginx) = self.nginx.take() {
            nginx.stop().await;
        }
    }
}

impl Drop for OwnStack {
    fn drop(&mut self) {
        for child in &mut self.children {
            // Best effort: kill_on_drop also covers this when the runtime shuts down.
            let _ = child.start_kill();
        }
    }
}

/// Starts trustee and proxy for one variant, from a fresh `treuhand dev init` set-up in `dir`
/// (filesystem storage, tenant `demo` with its share in SSE-C), adjusted to the variant:
/// cache TTL, a delaying relay in front of the trustee, or pass-through mode. With `pin`, the
/// trustees and the proxy run on the system CPU.
///
/// # Errors
/// Set-up or start failures, with the child's log.
pub async fn start_own(
    variant: &Variant,
    dir: &Path,
    backend_env: Option<&Path>,
    pin: Option<Pinning>,
) -> anyhow::Result<OwnStack> {
    let Threshold {
        k: threshold,
        n: holders,
    } = variant.threshold.unwrap_or(Threshold::TWO_OF_TWO);
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
    let mut processes = Vec::new();
    let mut trustee_urls = Vec::new();
    for name in &trustee_names {
        let config_path = dir.join(format!("{name}.toml"));
        let log = dir.join(format!("{name}.log"));
        let (child, addr) = spawn_listening(&Launch {
            exe: &exe,
            command: "trustee",
            config: &config_path,
            movable: &["listen"],
            log: Some(&log),
            what: name,
        })
        .await?;
        if let Some(pid) = child.id() {
            if let Some(pin) = pin {
                pin::pin_process(pid, pin.system, name)?;
            }
            processes.push(("trustee".to_owned(), pid));
        }
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
        secret_access_key: hex::encode(&token[4..]).into(),
        registration_dir: dir.join("tenants"),
        share_dir: dir.join("shares"),
    };
    // A bench may sweep thresholds the trustees reach alone (3-of-4, ...): it measures cost,
    // and its synthetic tenant accepts that explicitly.
    let options = crate::tenant::CreateOptions {
        allow_trustees_alone: params.trustees.len() >= usize::from(params.threshold),
        ..crate::tenant::CreateOptions::default()
    };
    let created = crate::tenant::create_with(&params, options, &depositor).await?;
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
        if variant.scenario == Scenario::Passthrough {
            t.insert(
                "danger_passthrough_no_encryption".into(),
                toml::Value::Boolean(true),
            );
        }
        Ok(())
    })?;
    let proxy_log = dir.join("proxy.log");
    let (proxy, proxy_addr) = spawn_listening(&Launch {
        exe: &exe,
        command: "proxy",
        config: &proxy_toml,
        movable: &["listen", "metrics_listen"],
        log: Some(&proxy_log),
        what: "the proxy",
    })
    .await?;
    let proxy_table = read_toml(&proxy_toml)?;
    let metrics_addr = listen_addr(&proxy_table, "metrics_listen").ok();
    let proxy_pid = proxy.id();
    if let Some(pid) = proxy_pid {
        if let Some(pin) = pin {
            pin::pin_process(pid, pin.system, "the proxy")?;
        }
        processes.push(("proxy".to_owned(), pid));
    }
    children.push(proxy);
    let mut vars = parse_env_file(&dir.join("dev.env"))?;
    // The port may have moved (see `spawn_listening`), so the endpoint comes from the config
    // the proxy really listens on, not from dev.env.
    vars.insert("TREUHAND_ENDPOINT".into(), format!("https://{proxy_addr}"));
    vars.insert("AWS_ACCESS_KEY_ID".into(), params.access_key_id.clone());
    vars.insert(
        "AWS_SECRET_ACCESS_KEY".into(),
        params.secret_access_key.expose_secret().to_owned(),
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
        nginx: None,
        processes,
        endpoint,
        dir: dir.to_owned(),
    })
}

/// Starts nginx for the `nginx` baseline in `dir`: a TLS certificate issued exactly as `treuhand
/// dev init` issues the proxy's (`certs/proxy.pem`, by a fresh dev CA), and nginx serving the
/// folder `dir/storage` (one folder per bucket; the cells' bucket `bench` made here) or, with
/// `backend_env`, proxying to that S3 backend (bucket `bench-nginx`, created through nginx with
/// the backend's credentials). With `pin`, nginx runs on the system CPU.
///
/// # Errors
/// Set-up or start failures, with nginx's error log.
pub async fn start_nginx(
    binary: &nginx::Binary,
    dir: &Path,
    backend_env: Option<&Path>,
    pin: Option<Pinning>,
) -> anyhow::Result<OwnStack> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let dir = std::fs::canonicalize(dir)?;
    crate::tls::install_crypto_provider();
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs)?;
    let ca = crate::tls::DevCa::generate("treuhand dev CA (TEST-ONLY)")?;
    ca.write(&certs)?;
    let (cert, key) = ca.issue_server("proxy", &[])?.write(&certs, "proxy")?;
    let (upstream, mut target) = match backend_env {
        None => {
            let root = dir.join("storage");
            std::fs::create_dir_all(root.join("bench"))?;
            // nginx checks neither signature nor SSE-C headers. The generator still signs and
            // sends a (random) SSE-C key as it does to treuhand, so that, pinned to its one
            // CPU, it does the same work per request for every scenario. (Not in front of S3:
            // the backend would act on SSE-C.)
            let mut share = [0u8; 32];
            crate::crypto::envelope::fill_random(&mut share)?;
            let target = client::Target {
                endpoint: String::new(),
                bucket: "bench".into(),
                access_key: "NGINXIGNORESAUTH".into(),
                secret_key: "nginx-ignores-auth".into(),
                region: crate::dev::env::REGION.into(),
                sse_c: Some(share),
            };
            (Upstream::Files { root }, target)
        }
        Some(path) => {
            let vars = parse_env_file(path)?;
            let target = target_from_env(
                &vars,
                "backend env file",
                RGW_NAMES,
                "bench-nginx".into(),
                None,
            )?;
            let endpoint = target.endpoint.clone();
            (Upstream::S3 { endpoint }, target)
        }
    };
    let server = nginx::start(
        binary,
        &dir.join("nginx"),
        &cert,
        &key,
        &upstream,
        pin.map(|p| p.system),
    )
    .await?;
    target.endpoint = format!("https://{}", server.addr);
    let endpoint = Endpoint {
        target,
        tls: crate::tls::client_config(&certs.join("ca.pem"), None)?,
        proxy_pid: Some(server.worker),
        metrics_url: None,
        bucket_created: matches!(upstream, Upstream::Files { .. }),
    };
    Ok(OwnStack {
        children: Vec::new(),
        processes: vec![
            ("nginx master".to_owned(), server.master),
            ("nginx worker".to_owned(), server.worker),
        ],
        nginx: Some(server),
        endpoint,
        dir,
    })
}

/// The S3 backend itself (e.g. Ceph RGW from `.ci/ceph.sh`), measured without any proxy.
///
/// # Errors
/// Missing variables, with their names.
pub fn direct_endpoint(vars: &HashMap<String, String>) -> anyhow::Result<Endpoint> {
    Ok(Endpoint {
        target: target_from_env(
            vars,
            "backend env file",
            RGW_NAMES,
            "bench-direct".into(),
            None,
        )?,
        tls: crate::tls::client_config_webpki_roots_free(),
        proxy_pid: None,
        metrics_url: None,
        bucket_created: false,
    })
}
