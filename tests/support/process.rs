//! Child processes of the real `treuhand` binary, their logs, waiting with a bound, and the
//! size-limited tmpfs of the full-disk cell.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// Outer bound for anything a test waits for. Generous: the machine is small and shared, and
/// it bounds a hang, it does not measure anything.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Waits for `what` to become true, polling; panics (naming `label`) after [`PATIENCE`].
pub async fn wait_until(label: &str, mut what: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !what() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for: {label}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Which output stream of a child announces that it is listening.
#[derive(Clone, Copy)]
enum Announces {
    Stdout,
    Stderr,
}

/// Starts `treuhand <subcommand> --config <config>` with `log_level`, reads the announcing
/// stream until `listening` finds what it looks for, and keeps draining that stream (a full
/// pipe would block the child's logging), echoing it under `label` if `echo`.
async fn start_binary<T: Send + 'static>(
    subcommand: &str,
    config: &Path,
    log_level: &str,
    announces: Announces,
    echo: bool,
    listening: impl Fn(&str) -> Option<T>,
) -> (Child, T) {
    let (stdout, stderr) = match announces {
        Announces::Stdout => (Stdio::piped(), Stdio::inherit()),
        Announces::Stderr => (Stdio::null(), Stdio::piped()),
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_treuhand"))
        .arg(subcommand)
        .arg("--config")
        .arg(config)
        .env("TREUHAND_LOG", log_level)
        .env("NO_COLOR", "1")
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stream: Box<dyn tokio::io::AsyncRead + Send + Unpin> = match announces {
        Announces::Stdout => Box::new(child.stdout.take().unwrap()),
        Announces::Stderr => Box::new(child.stderr.take().unwrap()),
    };
    let mut lines = BufReader::new(stream).lines();
    let label = subcommand.to_owned();
    let found = tokio::time::timeout(PATIENCE, async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("the {label} exited before listening"));
            if let Some(found) = listening(&line) {
                return found;
            }
            if echo {
                eprintln!("{label}: {line}");
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the {subcommand} did not start listening"));
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if echo {
                eprintln!("{label}: {line}");
            }
        }
    });
    (child, found)
}

/// SIGKILL: no shutdown code runs, as in a crash or an OOM kill.
async fn sigkill(child: &mut Child) {
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

/// A real `treuhand proxy` process.
pub struct ProxyProcess {
    pub child: Child,
    pub addr: std::net::SocketAddr,
}

impl ProxyProcess {
    /// Starts the binary on `config` and waits for its "proxy listening" log line.
    pub async fn start(config: &Path) -> Self {
        // The listening address is only logged; keep the log plain and at info.
        let (child, addr) = start_binary(
            "proxy",
            config,
            "info",
            Announces::Stderr,
            true,
            listening_addr,
        )
        .await;
        Self { child, addr }
    }

    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// SIGKILL: no shutdown code runs, as in a crash or an OOM kill.
    pub async fn kill(mut self) {
        sigkill(&mut self.child).await;
    }
}

/// The address in `proxy listening addr=Some(127.0.0.1:PORT)`, with or without ANSI colour.
fn listening_addr(line: &str) -> Option<std::net::SocketAddr> {
    let rest = &line[line.find("proxy listening")?..];
    let rest = &rest[rest.find("127.0.0.1:")?..];
    let end = rest["127.0.0.1:".len()..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(rest.len(), |i| i + "127.0.0.1:".len());
    rest[..end].parse().ok()
}

/// A real `treuhand trustee` process (a trustee or a customer-run holder: the same server).
pub struct TrusteeProcess {
    pub child: Child,
    pub url: String,
}

impl TrusteeProcess {
    /// Starts the binary on `config` and waits for the URL it prints.
    pub async fn start(config: &Path) -> Self {
        let (child, url) = start_binary(
            "trustee",
            config,
            "warn",
            Announces::Stdout,
            false,
            |line| {
                line.strip_prefix("treuhand trustee listening on ")
                    .map(|url| url.trim().to_owned())
            },
        )
        .await;
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        Self { child, url }
    }

    /// SIGKILL.
    pub async fn kill(mut self) {
        sigkill(&mut self.child).await;
    }
}

/// A size-limited tmpfs, unmounted on drop. Needs root (CAP_SYS_ADMIN).
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` at `path`; `Err` with the reason if the system refuses.
    pub fn mount(path: &Path, bytes: u64) -> Result<Self, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Self {
            path: path.to_owned(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// Names of every file below `root` whose name contains `#`: object_store's staging files
/// (`<key>#<n>`), which listings hide and no S3 call can reach.
pub fn staging_files(root: &Path) -> Vec<PathBuf> {
    crate::support::stored_files(root)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains('#'))
        })
        .collect()
}
