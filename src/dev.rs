//! `treuhand dev [--dir DIR]` and `treuhand dev init DIR`: the one-command local stack.
//!
//! Set-up (only what is absent; an existing `DIR/proxy.toml` means "already set up"):
//!
//! - a TEST-ONLY dev PKI under `DIR/certs` (see `certs/README.md`);
//! - `DIR/trustee.toml` (the independent trustee) and `DIR/holder.toml` (the customer-run
//!   share holder: the same binary, the customer's config), each with keys and a store;
//! - `DIR/proxy.toml` with filesystem storage under `DIR/storage`;
//! - two demo tenants enrolled through the real key ceremony: `demo` (customer share in SSE-C
//!   headers, raw share in `DIR/customer.share`) and `demo-holder` (customer share served by
//!   the holder), each with a bucket named after the tenant;
//! - `DIR/dev.env` and `DIR/dev-holder.env` with `export` lines for the aws cli / boto3.
//!
//! Run: starts the trustee, the holder and the proxy as separate child processes of this
//! binary on 127.0.0.1 (so each can be stopped alone), prints a quick start, and stops them all
//! on Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::proxy::config::{CacheConfig, ClientTls, ServerTls};
use crate::storage::StorageConfig;
use crate::tls::{DevCa, Role};
use crate::trustee::config::{Config as TrusteeConfig, KeyFiles, Limits, StoreConfig, TlsFiles};

/// The proxy identity of the dev proxy (its client certificate names `dev-proxy.proxy.treuhand`).
pub const DEV_PROXY: &str = "dev-proxy";
const REGION: &str = "us-east-1";

/// The dev subcommand.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the whole stack locally: trustee, customer holder and proxy, with TEST-ONLY
    /// certificates. Sets everything up first if DIR is new.
    Dev(DevArgs),
}

/// `treuhand dev`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DevArgs {
    /// Directory for certificates, configs, stores and storage.
    #[arg(long, default_value = "treuhand-dev")]
    pub dir: PathBuf,
    /// Store ciphertext in an S3-compatible backend instead of DIR/storage: an env file with
    /// RGW_ENDPOINT, RGW_ACCESS_KEY_ID, RGW_SECRET_ACCESS_KEY and RGW_REGION (as written by
    /// `.ci/ceph.sh start`). Only used when DIR is set up.
    #[arg(long, value_name = "FILE")]
    pub backend_env: Option<PathBuf>,
    /// Only set up.
    #[command(subcommand)]
    pub command: Option<DevCommand>,
}

/// `treuhand dev <task>`.
#[derive(Debug, clap::Subcommand)]
pub enum DevCommand {
    /// Create the dev PKI, configs, demo tenants and env files in DIR, then exit.
    Init {
        /// The directory to set up.
        dir: PathBuf,
        /// See `treuhand dev --backend-env`.
        #[arg(long, value_name = "FILE")]
        backend_env: Option<PathBuf>,
    },
}

/// Runs `treuhand dev`.
///
/// # Errors
/// Set-up or child process failures, with what to fix.
pub async fn run(command: Command) -> anyhow::Result<()> {
    let Command::Dev(args) = command;
    match args.command {
        Some(DevCommand::Init { dir, backend_env }) => {
            let dir = absolute(&dir)?;
            init(&dir, storage_from_env_file(backend_env.as_deref())?).await?;
            println!("treuhand dev: set up {}", dir.display());
            println!("  run everything: treuhand dev --dir {}", dir.display());
            Ok(())
        }
        None => {
            let dir = absolute(&args.dir)?;
            init(&dir, storage_from_env_file(args.backend_env.as_deref())?).await?;
            run_stack(&dir).await
        }
    }
}

/// Reads an `rgw.env`-style file of `export NAME=value` lines into an S3 storage config;
/// without a file, filesystem storage under `DIR/storage`.
///
/// # Errors
/// An unreadable file or missing variables.
pub fn storage_from_env_file(env_file: Option<&Path>) -> anyhow::Result<StorageConfig> {
    let Some(path) = env_file else {
        return Ok(StorageConfig::Fs {
            root: "storage".into(),
            fsync: false,
        });
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut vars = std::collections::HashMap::new();
    for line in text.lines() {
        let line = line.trim().trim_start_matches("export ").trim();
        if let Some((k, v)) = line.split_once('=') {
            vars.insert(
                k.trim().to_owned(),
                v.trim().trim_matches('"').trim_matches('\'').to_owned(),
            );
        }
    }
    let get = |k: &str| {
        vars.get(k)
            .cloned()
            .with_context(|| format!("{} has no {k}", path.display()))
    };
    let endpoint = get("RGW_ENDPOINT")?;
    Ok(StorageConfig::S3 {
        allow_http: endpoint.starts_with("http://"),
        endpoint,
        region: get("RGW_REGION").unwrap_or_else(|_| REGION.into()),
        bucket: "treuhand-dev".into(),
        access_key_id: get("RGW_ACCESS_KEY_ID")?,
        secret_access_key: get("RGW_SECRET_ACCESS_KEY")?.into(),
        path_style: true,
        create_bucket: true,
    })
}

fn absolute(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))
}

/// A currently free loopback port.
///
/// # Errors
/// If binding fails.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn random_token(len: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; len];
    crate::crypto::envelope::fill_random(&mut buf)?;
    Ok(hex::encode(buf))
}

/// The trustee config the dev stack uses for `name` (paths relative to the stack directory).
pub fn trustee_config(name: &str, port: u16) -> TrusteeConfig {
    TrusteeConfig {
        listen: format!("127.0.0.1:{port}"),
        tls: TlsFiles {
            cert: format!("certs/{name}.pem").into(),
            key: format!("certs/{name}.key").into(),
            client_ca: "certs/ca.pem".into(),
        },
        store: StoreConfig {
            path: format!("{name}/store.db").into(),
        },
        keys: KeyFiles {
            sealing_key: format!("{name}/sealing.key").into(),
            signing_key: format!("{name}/signing.key").into(),
        },
        limits: Limits::default(),
    }
}

#[derive(serde::Serialize)]
struct ProxyToml {
    listen: SocketAddr,
    metrics_listen: SocketAddr,
    tenants_dir: PathBuf,
    region: String,
    release_timeout_ms: u64,
    tls: ServerTls,
    trustee_client: ClientTls,
    cache: CacheConfig,
    storage: StorageConfig,
}

/// Sets up DIR if it is not set up yet.
///
/// # Errors
/// Any failing step, with the path involved.
pub async fn init(dir: &Path, storage_config: StorageConfig) -> anyhow::Result<()> {
    if dir.join("proxy.toml").exists() {
        return Ok(());
    }
    crate::tls::install_crypto_provider();
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

    let trustee_port = free_port()?;
    let holder_port = free_port()?;
    let proxy_port = free_port()?;
    let metrics_port = free_port()?;
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
    let trustee = start_inprocess(&dir.join("trustee.toml")).await?;
    let holder = start_inprocess(&dir.join("holder.toml")).await?;
    let result = enroll_demo_tenants(dir, &ca, trustee_port, holder_port).await;
    trustee.stop().await;
    holder.stop().await;
    let tenants = result?;

    let proxy = ProxyToml {
        listen: SocketAddr::from(([127, 0, 0, 1], proxy_port)),
        metrics_listen: SocketAddr::from(([127, 0, 0, 1], metrics_port)),
        tenants_dir: "tenants".into(),
        region: REGION.into(),
        release_timeout_ms: 5000,
        tls: ServerTls {
            cert: "certs/proxy.pem".into(),
            key: "certs/proxy.key".into(),
        },
        trustee_client: ClientTls {
            ca: "certs/ca.pem".into(),
            cert: relative(dir, &proxy_client_cert),
            key: relative(dir, &proxy_client_key),
        },
        cache: CacheConfig {
            ttl_secs: 60,
            max_entries: 1024,
        },
        storage: storage_config.clone(),
    };
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
    let endpoint = format!("https://127.0.0.1:{proxy_port}");
    for tenant in &tenants {
        let mut env = format!(
            "# treuhand dev stack, tenant {id} (TEST-ONLY credentials). Use: source {file}\n\
             export TREUHAND_ENDPOINT={endpoint}\n\
             export AWS_ENDPOINT_URL={endpoint}\n\
             export AWS_CA_BUNDLE={ca}\n\
             export AWS_ACCESS_KEY_ID={ak}\n\
             export AWS_SECRET_ACCESS_KEY={sk}\n\
             export AWS_DEFAULT_REGION={REGION}\n\
             export TREUHAND_BUCKET={id}\n",
            id = tenant.id,
            file = dir.join(&tenant.env_file).display(),
            ca = certs.join("ca.pem").display(),
            ak = tenant.access_key_id,
            sk = tenant.secret_access_key,
        );
        if let Some(share) = &tenant.share_file {
            env.push_str(&format!("export TREUHAND_SHARE_FILE={}\n", share.display()));
        }
        crate::tls::write_secret_file(&dir.join(&tenant.env_file), &env)?;
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

fn relative(base: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(base)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_owned())
}

struct DemoTenant {
    id: String,
    access_key_id: String,
    secret_access_key: String,
    share_file: Option<PathBuf>,
    env_file: String,
}

async fn enroll_demo_tenants(
    dir: &Path,
    ca: &DevCa,
    trustee_port: u16,
    holder_port: u16,
) -> anyhow::Result<Vec<DemoTenant>> {
    let certs = dir.join("certs");
    let mut out = Vec::new();
    for (tenant, holder, env_file) in [
        ("demo", false, "dev.env"),
        ("demo-holder", true, "dev-holder.env"),
    ] {
        let (cert, key) = ca
            .issue_client(Role::Customer, tenant)?
            .write(&certs, &format!("customer-{tenant}"))?;
        let tls = crate::tls::client_config(&certs.join("ca.pem"), Some((&cert, &key)))?;
        let depositor =
            crate::tenant::deposit::TrusteeDepositor::from_tls(tls, vec![DEV_PROXY.into()]);
        let access_key_id = format!("TH{}", random_token(8)?.to_uppercase());
        let secret_access_key = random_token(20)?;
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
            secret_access_key: secret_access_key.clone(),
            registration_dir: dir.join("tenants"),
            share_dir: dir.join("shares"),
        };
        let created = crate::tenant::create(&params, &depositor)
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
        out.push(DemoTenant {
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

async fn start_inprocess(config_path: &Path) -> anyhow::Result<InProcess> {
    let config = TrusteeConfig::load(config_path)?;
    let server = crate::trustee::server::Server::from_config(
        &config,
        Arc::new(crate::trustee::policy::SystemClock),
    )?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr()?)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = crate::trustee::server::run(listener, server, async {
            let _ = rx.await;
        })
        .await;
    });
    Ok(InProcess { stop, task })
}

async fn wait_for_port(
    addr: SocketAddr,
    child: &mut tokio::process::Child,
    name: &str,
) -> anyhow::Result<()> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("{name} exited with {status} before listening on {addr}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{name} did not listen on {addr} within 10 s")
}

fn listen_of(path: &Path) -> anyhow::Result<SocketAddr> {
    let text = std::fs::read_to_string(path)?;
    // proxy.toml may hold the storage backend's secret: line and column only on an error.
    let value: toml::Value = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!(crate::logging::describe_toml_error(path, &text, &e)))?;
    let listen = value
        .get("listen")
        .and_then(|v| v.as_str())
        .context("config has no listen address")?;
    Ok(listen.parse()?)
}

async fn run_stack(dir: &Path) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the treuhand binary")?;
    let roles: [(&str, Vec<String>, PathBuf); 3] = [
        (
            "trustee",
            vec!["trustee".into(), "--config".into()],
            dir.join("trustee.toml"),
        ),
        (
            "holder",
            vec!["trustee".into(), "--config".into()],
            dir.join("holder.toml"),
        ),
        (
            "proxy",
            vec!["proxy".into(), "--config".into()],
            dir.join("proxy.toml"),
        ),
    ];
    let mut children = Vec::new();
    let mut addrs = Vec::new();
    for (name, args, config) in roles {
        let addr = listen_of(&config)?;
        let mut child = tokio::process::Command::new(&exe)
            .args(&args)
            .arg(&config)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start the {name}"))?;
        wait_for_port(addr, &mut child, name).await?;
        addrs.push((name, addr, child.id()));
        children.push((name, child));
    }
    let proxy_toml = std::fs::read_to_string(dir.join("proxy.toml"))?;
    let metrics = toml::from_str::<toml::Value>(&proxy_toml)
        .map_err(|e| {
            let path = dir.join("proxy.toml");
            anyhow::anyhow!(crate::logging::describe_toml_error(&path, &proxy_toml, &e))
        })?
        .get("metrics_listen")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    print_quick_start(dir, &addrs, &metrics);

    let mut failed = None;
    tokio::select! {
        () = crate::shutdown_signal() => {}
        name = watch_children(&mut children) => failed = Some(name),
    }
    for (name, child) in &mut children {
        if let Some(pid) = child.id() {
            // SIGTERM first so each process shuts down gracefully.
            let _ = tokio::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        match tokio::time::timeout(Duration::from_secs(12), child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(role = %name, "did not stop in time; killing");
                let _ = child.kill().await;
            }
        }
    }
    println!("treuhand dev: stopped trustee, holder and proxy");
    match failed {
        Some(name) => anyhow::bail!("the {name} process exited unexpectedly; see its log above"),
        None => Ok(()),
    }
}

async fn watch_children(children: &mut [(&'static str, tokio::process::Child)]) -> &'static str {
    loop {
        for (name, child) in children.iter_mut() {
            if let Ok(Some(_)) = child.try_wait() {
                return name;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn print_quick_start(dir: &Path, addrs: &[(&str, SocketAddr, Option<u32>)], metrics: &str) {
    let d = dir.display();
    println!();
    println!("treuhand dev stack is running (TEST-ONLY certificates in {d}/certs)");
    for (name, addr, pid) in addrs {
        let what = match *name {
            "trustee" => "independent trustee",
            "holder" => "customer-run share holder (tenant demo-holder)",
            _ => "S3 endpoint",
        };
        println!(
            "  {name:<8} https://{addr}  pid {}  {what}",
            pid.map(|p| p.to_string()).unwrap_or_default()
        );
    }
    if !metrics.is_empty() {
        println!("  metrics  http://{metrics}/metrics");
    }
    println!();
    println!("Quick start (in another shell):");
    println!();
    println!("  # tenant demo: the customer share travels in SSE-C headers");
    println!("  source {d}/dev.env");
    println!("  echo 'hello, trustee' > hello.txt");
    println!(
        "  aws s3 cp hello.txt s3://$TREUHAND_BUCKET/hello.txt --endpoint-url $TREUHAND_ENDPOINT --sse-c AES256 --sse-c-key fileb://$TREUHAND_SHARE_FILE"
    );
    println!(
        "  aws s3 cp s3://$TREUHAND_BUCKET/hello.txt - --endpoint-url $TREUHAND_ENDPOINT --sse-c AES256 --sse-c-key fileb://$TREUHAND_SHARE_FILE"
    );
    println!("  aws s3 ls s3://$TREUHAND_BUCKET --endpoint-url $TREUHAND_ENDPOINT");
    println!();
    println!(
        "  # tenant demo-holder: the customer's own holder releases its share, plain S3 works"
    );
    println!("  source {d}/dev-holder.env");
    println!(
        "  aws s3 cp hello.txt s3://$TREUHAND_BUCKET/hello.txt --endpoint-url $TREUHAND_ENDPOINT"
    );
    println!("  aws s3 cp s3://$TREUHAND_BUCKET/hello.txt - --endpoint-url $TREUHAND_ENDPOINT");
    println!();
    println!(
        "  The stored objects under {d}/storage are ciphertext. Stop the trustee (kill its pid)"
    );
    println!("  and reads fail with 503 once the key cache (60 s) expires.");
    println!();
    println!("Press Ctrl-C to stop all three.");
}
