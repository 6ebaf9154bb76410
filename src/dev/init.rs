//! `treuhand dev init`: writes the dev directory. Only what is absent is set up; an existing
//! `DIR/proxy.toml` means "already set up".
//!
//! - a TEST-ONLY dev PKI under `DIR/certs` (see `certs/README.md`);
//! - `DIR/trustee.toml` (the independent trustee) and `DIR/holder.toml` (the customer-run
//!   share holder: the same binary, the customer's config), each with keys and a store;
//! - `DIR/proxy.toml` with filesystem storage under `DIR/storage`, written from the real
//!   [`ProxyConfig`];
//! - two demo tenants enrolled through the real key ceremony (OPRF tenant keys): `demo`
//!   (customer share in SSE-C headers, raw share in `DIR/customer.share`) and `demo-holder`
//!   (strict: customer share served by the holder, which also checks the customer's SigV4
//!   signatures; its S3 credentials are only in the customer's files `DIR/dev-holder.env` and
//!   `DIR/demo-holder.s3-credentials`, not in the proxy's registration), each with a bucket
//!   named after the tenant;
//! - the env files (see [`super::env`]);
//! - a second, idle trustee `DIR/trustee-b.toml` and the admin profiles under `DIR/admin/`
//!   (see [`super::admin`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

pub use super::configs::{free_port, trustee_config, trustee_config_at};
use super::env::{REGION, TenantEnv};
use crate::proxy::config::{
    CacheConfig, ClientTls, LimitsConfig, MultipartConfig, ProxyConfig, ServerTls,
};
use crate::storage::StorageConfig;
use crate::tls::{DevCa, Role};
use crate::trustee::config::{Config as TrusteeConfig, TlsFiles};

/// The proxy identity of the dev proxy (its client certificate names `dev-proxy.proxy.treuhand`).
pub const DEV_PROXY: &str = "dev-proxy";

fn random_token(len: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; len];
    crate::crypto::envelope::fill_random(&mut buf)?;
    Ok(hex::encode(buf))
}

/// A one-trustee set-up in `dir`, for benchmarks and tests: a TEST-ONLY CA named `ca_name`
/// (`ca.pem`, `ca.key`), the trustee's server certificate (`trustee.pem`, `trustee.key`), its
/// keys, and a config listening on 127.0.0.1:0 with its store in `trustee.db`.
///
/// # Errors
/// If generating or writing any of them fails.
pub fn single_trustee(dir: &Path, ca_name: &str) -> anyhow::Result<(DevCa, TrusteeConfig)> {
    crate::tls::install_crypto_provider();
    let ca = DevCa::generate(ca_name)?;
    ca.write(dir)?;
    let (cert, key) = ca.issue_server("trustee", &[])?.write(dir, "trustee")?;
    crate::trustee::config::generate_keys(dir)?;
    let tls = TlsFiles {
        cert,
        key,
        client_ca: dir.join("ca.pem"),
    };
    let config = trustee_config_at("127.0.0.1:0".into(), tls, dir, "trustee.db");
    Ok((ca, config))
}

/// The dev proxy's `proxy.toml` (paths relative to the stack directory).
fn proxy_config(
    listen: SocketAddr,
    metrics_listen: SocketAddr,
    client: ClientTls,
    storage: StorageConfig,
) -> ProxyConfig {
    ProxyConfig {
        listen,
        metrics_listen: Some(metrics_listen),
        limits: LimitsConfig::default(),
        tls: ServerTls {
            cert: "certs/proxy.pem".into(),
            key: "certs/proxy.key".into(),
        },
        trustee_client: client,
        tenants_dir: "tenants".into(),
        region: REGION.into(),
        cache: CacheConfig {
            ttl_secs: 60,
            max_entries: 1024,
            fallback_ttl_secs: 1,
        },
        release_timeout_ms: 5000,
        storage,
        multipart: MultipartConfig::default(),
        danger_passthrough_no_encryption: false,
    }
}

/// Sets up DIR if it is not set up yet, and adds what a DIR set up by an older version lacks
/// (the second trustee and the admin profiles).
///
/// # Errors
/// Any failing step, with the path involved.
pub async fn init(dir: &Path, storage_config: StorageConfig) -> anyhow::Result<()> {
    crate::tls::install_crypto_provider();
    if !dir.join("proxy.toml").exists() {
        init_stack(dir, storage_config).await?;
    }
    super::admin::write_absent(dir)
}

/// The stack proper: PKI, trustee, holder, demo tenants, proxy. `proxy.toml` is written last.
async fn init_stack(dir: &Path, storage_config: StorageConfig) -> anyhow::Result<()> {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs)?;
    let ca = DevCa::generate("treuhand dev CA (TEST-ONLY)")?;
    ca.write(&certs)?;
    for name in ["proxy", "trustee", "holder"] {
        ca.issue_server(name, &[])?.write(&certs, name)?;
    }
    let (proxy_client_cert, proxy_client_key) = ca
        .issue_client(Role::Proxy, DEV_PROXY)?
        .write(&certs, "proxy-client")?;

    // The trustee and the holder of the enrolment below listen on sockets bound here, before
    // their ports go into the configs, so no other process can take a port in between.
    let trustee_listener = bind_loopback().await?;
    let holder_listener = bind_loopback().await?;
    let trustee_port = trustee_listener.local_addr()?.port();
    let holder_port = holder_listener.local_addr()?.port();
    for (name, port) in [("trustee", trustee_port), ("holder", holder_port)] {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub)?;
        if !sub.join("sealing.key").exists() {
            crate::trustee::config::generate_keys(&sub)?;
        }
        let text = toml::to_string_pretty(&trustee_config(name, port))?;
        let header = if name == "holder" {
            "# The customer-run share holder (TEST-ONLY dev stack): the same `treuhand trustee`\n# binary, operated by the customer, holding the customer's share of tenant demo-holder.\n"
        } else {
            "# The independent trustee (TEST-ONLY dev stack).\n"
        };
        std::fs::write(dir.join(format!("{name}.toml")), format!("{header}{text}"))?;
    }

    // Enroll the demo tenants against in-process trustee and holder servers using the same
    // configs and stores the child processes will use.
    let trustee = start_inprocess(&dir.join("trustee.toml"), trustee_listener).await?;
    let holder = start_inprocess(&dir.join("holder.toml"), holder_listener).await?;
    let result = enroll_demo_tenants(dir, &ca, trustee_port, holder_port).await;
    trustee.stop().await;
    holder.stop().await;
    let tenants = result?;

    // The proxy and its metrics endpoint run later, as a child process: their ports can only
    // be chosen here, and `treuhand dev` moves them if they are taken by then.
    let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let proxy = proxy_config(
        loopback(free_port()?),
        loopback(free_port()?),
        ClientTls {
            ca: "certs/ca.pem".into(),
            cert: relative(dir, &proxy_client_cert),
            key: relative(dir, &proxy_client_key),
        },
        storage_config.clone(),
    );
    let mut resolved = storage_config;
    if let StorageConfig::Fs { root, .. } = &mut resolved {
        *root = dir.join(&*root);
    }
    crate::storage::Storage::ensure_bucket(&resolved).await?;
    let storage = crate::storage::Storage::from_config(&resolved)?;
    for tenant in &tenants {
        storage
            .put(
                &crate::proxy::service::bucket_marker_path(&tenant.id, &tenant.id),
                bytes::Bytes::new(),
            )
            .await?;
    }
    for tenant in &tenants {
        tenant.write(dir, proxy.listen)?;
    }
    // proxy.toml last: its presence marks a completed set-up.
    let text = toml::to_string_pretty(&proxy)?;
    std::fs::write(
        dir.join("proxy.toml"),
        format!(
            "# The treuhand proxy (TEST-ONLY dev stack). Run: treuhand proxy --config {}\n{text}",
            dir.join("proxy.toml").display()
        ),
    )?;
    Ok(())
}

async fn bind_loopback() -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on a loopback port")
}

fn relative(base: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(base)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_owned())
}

async fn enroll_demo_tenants(
    dir: &Path,
    ca: &DevCa,
    trustee_port: u16,
    holder_port: u16,
) -> anyhow::Result<Vec<TenantEnv>> {
    let certs = dir.join("certs");
    let mut out = Vec::new();
    // `demo` is a standard SSE-C tenant (the operator issues its S3 secret); `demo-holder` is
    // strict: its S3 secret is generated by the ceremony, deposited only with the customer's
    // holder (which checks its signatures) and kept in the customer's files of DIR
    // (`demo-holder.s3-credentials`, `dev-holder.env`), never in the proxy's registration.
    for (tenant, holder, env_file) in [
        ("demo", false, "dev.env"),
        ("demo-holder", true, "dev-holder.env"),
    ] {
        let strict = holder;
        let (cert, key) = ca
            .issue_client(Role::Customer, tenant)?
            .write(&certs, &format!("customer-{tenant}"))?;
        let tls = crate::tls::client_config(&certs.join("ca.pem"), Some((&cert, &key)))?;
        let depositor =
            crate::tenant::deposit::TrusteeDepositor::from_tls(tls, vec![DEV_PROXY.into()]);
        let access_key_id = format!("TH{}", random_token(8)?.to_uppercase());
        let operator_secret = if strict {
            String::new()
        } else {
            random_token(20)?
        };
        let params = crate::tenant::CreateParams {
            tenant: tenant.into(),
            key_version: 1,
            threshold: 2,
            trustees: vec![crate::tenant::TrusteeSpec {
                holder: "trustee".into(),
                url: format!("https://127.0.0.1:{trustee_port}"),
            }],
            customer_holder_url: holder.then(|| format!("https://127.0.0.1:{holder_port}")),
            access_key_id: access_key_id.clone(),
            secret_access_key: operator_secret.clone().into(),
            registration_dir: dir.join("tenants"),
            share_dir: dir.join("shares"),
        };
        let options = crate::tenant::CreateOptions {
            strict,
            allow_trustees_alone: false,
        };
        let created = crate::tenant::create_with(&params, options, &depositor)
            .await
            .with_context(|| format!("enrolling the demo tenant {tenant}"))?;
        let share_file = match &created.share_raw {
            Some(raw) => {
                let target = dir.join("customer.share");
                std::fs::copy(raw, &target)?;
                Some(target)
            }
            None => None,
        };
        if let Some(credentials) = &created.s3_credentials {
            std::fs::copy(credentials, dir.join(format!("{tenant}.s3-credentials")))?;
        }
        let secret_access_key = match &created.s3_secret {
            Some(secret) => secret.expose_secret().to_owned(),
            None => operator_secret,
        };
        out.push(TenantEnv {
            id: tenant.into(),
            access_key_id,
            secret_access_key,
            share_file,
            env_file: env_file.into(),
        });
    }
    Ok(out)
}

struct InProcess {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl InProcess {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Serves the trustee of `config_path` on `listener` (bound by the caller on the port the
/// config names) until stopped.
async fn start_inprocess(
    config_path: &Path,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<InProcess> {
    let config = TrusteeConfig::load(config_path)?;
    let server = crate::trustee::server::Server::from_config(
        &config,
        Arc::new(crate::trustee::policy::SystemClock),
    )?;
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = crate::trustee::server::run(listener, server, async {
            let _ = rx.await;
        })
        .await;
    });
    Ok(InProcess { stop, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_proxy_config_loads_with_the_same_settings() {
        let dir = tempfile::tempdir().unwrap();
        let config = proxy_config(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            ClientTls {
                ca: "certs/ca.pem".into(),
                cert: "certs/proxy-client.pem".into(),
                key: "certs/proxy-client.key".into(),
            },
            StorageConfig::Fs {
                root: "storage".into(),
                fsync: false,
            },
        );
        let path = dir.path().join("proxy.toml");
        std::fs::write(&path, toml::to_string_pretty(&config).unwrap()).unwrap();
        let loaded = ProxyConfig::load(&path).unwrap();
        assert_eq!(loaded.listen, config.listen);
        assert_eq!(loaded.metrics_listen, config.metrics_listen);
        assert_eq!(loaded.tls.cert, dir.path().join("certs/proxy.pem"));
        assert_eq!(loaded.tenants_dir, dir.path().join("tenants"));
        assert_eq!(loaded.region, REGION);
        assert_eq!(loaded.release_timeout_ms, 5000);
        assert_eq!(loaded.cache.ttl_secs, 60);
        assert_eq!(loaded.limits, LimitsConfig::default());
        assert!(!loaded.danger_passthrough_no_encryption);
        assert!(
            matches!(loaded.storage, StorageConfig::Fs { root, fsync: false } if root == dir.path().join("storage"))
        );
    }
}
