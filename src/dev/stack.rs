//! The running dev stack (`treuhand dev`): the trustee, the holder, the second (idle) trustee
//! and the proxy as separate child processes of this binary on 127.0.0.1 (so each can be
//! stopped alone), a quick start, and a graceful stop of all of them on Ctrl-C.
//!
//! Also the one way this crate starts a server process from a config and waits until it
//! listens ([`spawn_listening`]), shared with the bench harness's stacks.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

pub use super::configs::{edit_toml, listen_addr, read_toml};

/// How to start one server process: `EXE COMMAND --config CONFIG`.
pub struct Launch<'a> {
    /// The treuhand binary.
    pub exe: &'a Path,
    /// `trustee` or `proxy`.
    pub command: &'a str,
    /// Its config file (TOML).
    pub config: &'a Path,
    /// The config's address keys, the one waited for first. When the process finds its
    /// address taken, each of them that the config has is moved to a fresh port and the
    /// process restarted (up to three starts in all). Empty: the address is the config's
    /// `listen` and is never moved.
    pub movable: &'a [&'a str],
    /// Where its stderr goes, quietly (`TREUHAND_LOG=warn`, no stdout); `None`: both stay on
    /// this process's terminal.
    pub log: Option<&'a Path>,
    /// Its name in messages.
    pub what: &'a str,
}

/// Starts a server process and waits until it listens on the address its config names.
///
/// The ports of a generated config were free when they were picked, but other processes
/// (parallel tests, a busy machine's outgoing connections) can take one before the child binds
/// it. A child that fails because its address is taken (its log says "Address already in use",
/// or the address cannot be bound once it has exited) is restarted on fresh free ports for
/// every key in `movable`, instead of failing the whole stack.
///
/// # Errors
/// Start failures, with the child's log where there is one.
pub async fn spawn_listening(
    launch: &Launch<'_>,
) -> anyhow::Result<(tokio::process::Child, SocketAddr)> {
    let key = launch.movable.first().copied().unwrap_or("listen");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let addr = listen_addr(&read_toml(launch.config)?, key)?;
        let mut child = spawn(launch)?;
        let Err(e) = wait_listening(addr, &mut child, launch).await else {
            return Ok((child, addr));
        };
        let _ = child.start_kill();
        let _ = child.wait().await;
        let log_says_taken = launch
            .log
            .and_then(|log| std::fs::read_to_string(log).ok())
            .is_some_and(|text| text.contains("Address already in use"));
        let taken = log_says_taken || address_taken(addr);
        if attempt >= 3 || launch.movable.is_empty() || !taken {
            return Err(e);
        }
        edit_toml(launch.config, |t| {
            for key in launch.movable {
                if t.contains_key(*key) {
                    let port = super::configs::free_port()?;
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

fn spawn(launch: &Launch<'_>) -> anyhow::Result<tokio::process::Child> {
    let mut command = tokio::process::Command::new(launch.exe);
    command
        .arg(launch.command)
        .arg("--config")
        .arg(launch.config)
        .kill_on_drop(true);
    if let Some(log) = launch.log {
        command
            .env("TREUHAND_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log)?);
    }
    command.spawn().map_err(|e| {
        anyhow::anyhow!(
            "cannot start {} {} --config {}: {e}",
            launch.exe.display(),
            launch.command,
            launch.config.display()
        )
    })
}

async fn wait_listening(
    addr: SocketAddr,
    child: &mut tokio::process::Child,
    launch: &Launch<'_>,
) -> anyhow::Result<()> {
    let what = launch.what;
    let log = || match launch.log {
        Some(log) => format!(
            "; its log ({}):\n{}",
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        ),
        None => String::new(),
    };
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "{what} exited with {status} before listening on {addr}{}",
                log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!(
        "{what} did not start listening on {addr} within 15 s{}",
        log()
    )
}

/// Whether another socket holds `addr` (binding it fails with "address in use").
fn address_taken(addr: SocketAddr) -> bool {
    matches!(
        std::net::TcpListener::bind(addr),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse
    )
}

/// Runs the stack of a set-up DIR until Ctrl-C or until one of its processes exits.
pub(super) async fn run_stack(dir: &Path) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the treuhand binary")?;
    // Every address may move to a fresh port if another process took it since set-up: the
    // trustee's and the holder's are also in the tenant registrations, which follow them (the
    // proxy, started last, reads them), the proxy's are also in the env files.
    // The admin profiles (DIR/admin) name the trustees, the holder and the proxy too and
    // follow every move. The second trustee runs when its config exists (dev init writes it).
    let mut roles: Vec<(&str, &str, &[&str])> = vec![
        ("trustee", "trustee", &["listen"]),
        ("holder", "trustee", &["listen"]),
    ];
    if dir
        .join(format!("{}.toml", super::admin::TRUSTEE_B))
        .exists()
    {
        roles.push((super::admin::TRUSTEE_B, "trustee", &["listen"]));
    }
    roles.push(("proxy", "proxy", &["listen", "metrics_listen"]));
    let mut children = Vec::new();
    let mut addrs = Vec::new();
    for (name, command, movable) in roles {
        let config = dir.join(format!("{name}.toml"));
        let before = listen_addr(&read_toml(&config)?, "listen")?;
        let (child, addr) = spawn_listening(&Launch {
            exe: &exe,
            command,
            config: &config,
            movable,
            log: None,
            what: name,
        })
        .await
        .with_context(|| format!("cannot start the {name}"))?;
        if addr != before {
            if command == "proxy" {
                super::env::move_endpoint(dir, addr)?;
            } else {
                move_in_registrations(&dir.join("tenants"), before, addr)?;
            }
            super::admin::move_in_profiles(dir, before, addr)?;
        }
        addrs.push((name, addr, child.id()));
        children.push((name, child));
    }
    let proxy = read_toml(&dir.join("proxy.toml"))?;
    let metrics = listen_addr(&proxy, "metrics_listen")
        .map(|a| a.to_string())
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
    println!("treuhand dev: stopped every process of the stack");
    match failed {
        Some(name) => anyhow::bail!("the {name} process exited unexpectedly; see its log above"),
        None => Ok(()),
    }
}

/// Points every tenant registration in `tenants` that names a server at `from` to `to`
/// (a trustee or holder that moved to a fresh port). Registrations hold a SigV4 secret: they
/// are rewritten readable by their owner only, as `treuhand tenant create` writes them.
fn move_in_registrations(tenants: &Path, from: SocketAddr, to: SocketAddr) -> anyhow::Result<()> {
    let (from, to) = (format!("\"https://{from}\""), format!("\"https://{to}\""));
    for entry in std::fs::read_dir(tenants)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(&path)?);
        if text.contains(&from) {
            let moved = zeroize::Zeroizing::new(text.replace(&from, &to));
            crate::tls::write_secret_file(&path, &moved)?;
        }
    }
    Ok(())
}

/// Waits until the proxy exits. A trustee or holder that exits is reported and the rest of the
/// stack keeps running: stopping the trustee is part of the drills (a trustee outage fails
/// closed with 503; after a hand-over the old trustee is stopped for good).
async fn watch_children(children: &mut [(&'static str, tokio::process::Child)]) -> &'static str {
    let mut gone = vec![false; children.len()];
    loop {
        for ((name, child), gone) in children.iter_mut().zip(gone.iter_mut()) {
            if *gone {
                continue;
            }
            if let Ok(Some(status)) = child.try_wait() {
                if *name == "proxy" {
                    return name;
                }
                *gone = true;
                println!(
                    "treuhand dev: the {name} exited ({status}); the rest of the stack keeps running (requests that need it fail closed with 503)"
                );
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
            "trustee-b" => "second trustee, idle (the hand-over drill)",
            _ => "S3 endpoint",
        };
        println!(
            "  {name:<9} https://{addr}  pid {}  {what}",
            pid.map(|p| p.to_string()).unwrap_or_default()
        );
    }
    if !metrics.is_empty() {
        println!("  metrics   http://{metrics}/metrics");
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
        "  # tenant demo-holder (strict): plain S3 works; the customer's own holder checks every"
    );
    println!(
        "  # request's signature and evaluates its share per object. The proxy never has the S3"
    );
    println!("  # secret (also in {d}/demo-holder.s3-credentials, profile demo-holder).");
    println!("  source {d}/dev-holder.env");
    println!(
        "  aws s3 cp hello.txt s3://$TREUHAND_BUCKET/hello.txt --endpoint-url $TREUHAND_ENDPOINT"
    );
    println!("  aws s3 cp s3://$TREUHAND_BUCKET/hello.txt - --endpoint-url $TREUHAND_ENDPOINT");
    println!();
    println!(
        "  The stored objects under {d}/storage are ciphertext. Stop the trustee (kill its pid)"
    );
    println!("  and reads of objects whose keys are not cached (60 s) fail with 503.");
    println!();
    println!("  # the customer admin and the operator (profiles in {d}/admin)");
    println!("  treuhand tenant status --profile {d}/admin/demo.toml");
    println!("  treuhand tenant policy show --profile {d}/admin/demo-holder.toml");
    println!(
        "  treuhand operator grant request --profile {d}/admin/operator.toml --tenant demo --ticket T-1 --duration 2h --reason 'disk repair'"
    );
    println!("  treuhand tenant grants list --profile {d}/admin/demo.toml");
    println!(
        "  treuhand audit pull --profile {d}/admin/demo.toml --state {d}/admin/demo-audit.json"
    );
    println!();
    println!("Press Ctrl-C to stop them all.");
}
