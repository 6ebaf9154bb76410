//! nginx as a baseline (`bench run --baseline nginx`): finding Debian's nginx, the config it
//! runs with, and starting and stopping it inside a stack folder.
//!
//! nginx stands where an operator would put it instead of treuhand, in front of the same
//! bytes: over the filesystem backend it serves the objects as files and takes PUTs with its
//! WebDAV module; in front of an S3 backend (`--backend-env`) it is a TLS-terminating reverse
//! proxy that forwards the signed requests unchanged. It ignores SigV4 and SSE-C: it does
//! neither authentication nor encryption, which is the point of the comparison (what those
//! cost on top of serving bytes over TLS).
//!
//! Nothing here touches the system's nginx set-up: the config, pid file, error log and every
//! temp folder live in the stack folder, and nginx runs as the current user (as root only when
//! the bench runs as root, where a worker would otherwise switch to `nobody` and could not read
//! the stack folder).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to tell a user whose machine has no nginx.
pub const INSTALL_HINT: &str = "install it: sudo apt-get install nginx";

/// An nginx binary that has what the baseline needs.
#[derive(Debug, Clone)]
pub struct Binary {
    /// Its path.
    pub path: PathBuf,
    /// `nginx/1.22.1`, from `nginx -V`.
    pub version: String,
}

/// Finds nginx (`TREUHAND_NGINX`, else Debian's `/usr/sbin/nginx`, else `nginx` on `PATH`)
/// and checks with `nginx -V` that it has TLS and, to take PUTs over the filesystem backend
/// (`files`), the WebDAV module.
///
/// # Errors
/// No nginx, or one built without those modules, with what to install.
pub fn locate(files: bool) -> anyhow::Result<Binary> {
    locate_from(std::env::var_os("TREUHAND_NGINX").map(PathBuf::from), files)
}

/// [`locate`] with the value of `TREUHAND_NGINX` given.
fn locate_from(chosen: Option<PathBuf>, files: bool) -> anyhow::Result<Binary> {
    let path = match chosen {
        Some(path) => path,
        None => ["/usr/sbin/nginx".into()]
            .into_iter()
            .chain(
                std::env::var_os("PATH")
                    .iter()
                    .flat_map(std::env::split_paths)
                    .map(|dir| dir.join("nginx")),
            )
            .find(|p: &PathBuf| p.is_file())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--baseline nginx: nginx is not installed (not at /usr/sbin/nginx nor on \
                     PATH); {INSTALL_HINT}"
                )
            })?,
    };
    let output = std::process::Command::new(&path)
        .arg("-V")
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "--baseline nginx: cannot run {} ({e}); {INSTALL_HINT}",
                path.display()
            )
        })?;
    // nginx prints its version and build options on stderr.
    let text = String::from_utf8_lossy(&output.stderr);
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("nginx version: "))
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--baseline nginx: {} -V printed no version; {INSTALL_HINT}",
                path.display()
            )
        })?;
    for (module, needed) in [
        ("--with-http_ssl_module", true),
        ("--with-http_dav_module", files),
    ] {
        anyhow::ensure!(
            !needed || text.contains(module),
            "--baseline nginx: {} ({version}) was built without {module}; Debian's nginx has \
             it: {INSTALL_HINT}",
            path.display()
        );
    }
    Ok(Binary { path, version })
}

/// What nginx serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// The objects as files under `root` (`/BUCKET/KEY` is `root/BUCKET/KEY`), PUT and DELETE
    /// through WebDAV.
    Files {
        /// The folder holding one folder per bucket.
        root: PathBuf,
    },
    /// An S3 endpoint (`http://host:port`), proxied to.
    S3 {
        /// The endpoint URL, without a trailing slash.
        endpoint: String,
    },
}

/// Everything the config depends on.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    /// The folder for the config, pid file, error log and temp folders.
    pub prefix: &'a Path,
    /// Where to listen (loopback).
    pub listen: SocketAddr,
    /// The TLS certificate (PEM), the one the bench's proxy is given.
    pub cert: &'a Path,
    /// Its private key (PEM).
    pub key: &'a Path,
    /// What to serve.
    pub upstream: &'a Upstream,
    /// Whether nginx starts as root (then its worker stays root: see the module docs).
    pub as_root: bool,
}

/// The temp folders nginx creates at start even when unused; each is set to the stack folder,
/// or nginx would try Debian's `/var/lib/nginx/...` (and fail without root).
const TEMP_PATHS: [&str; 5] = [
    "client_body_temp_path",
    "proxy_temp_path",
    "fastcgi_temp_path",
    "uwsgi_temp_path",
    "scgi_temp_path",
];

/// Renders `nginx.conf`. Each setting says why it differs from Debian's defaults
/// (`/etc/nginx/nginx.conf` and the compiled-in ones), so the file can be read on its own.
pub fn render(settings: &Settings<'_>) -> String {
    let quoted = |path: &Path| quote(path);
    let mut conf = String::from(
        "# Written by `treuhand bench` (baseline nginx). Run:\n\
         #   nginx -p PREFIX -c PREFIX/nginx.conf -e PREFIX/error.log\n\n\
         # One worker, against one treuhand proxy process; the master only starts and\n\
         # stops it. In the foreground, so the bench owns the process.\n\
         daemon off;\n\
         master_process on;\n\
         worker_processes 1;\n",
    );
    if settings.as_root {
        conf.push_str(
            "# Started as root: without this the worker would run as nobody and could not read\n\
             # the stack folder.\n\
             user root;\n",
        );
    }
    conf.push_str(&format!(
        "pid {};\n\
         error_log {} warn;\n\
         # Up to 1024 load-generator connections at once (Debian's nginx.conf says 768).\n\
         worker_rlimit_nofile 16384;\n\
         events {{\n    worker_connections 4096;\n}}\n\n\
         http {{\n\
         \x20   # As Debian's nginx.conf. sendfile does not apply to TLS without kTLS.\n\
         \x20   sendfile on;\n\
         \x20   tcp_nopush on;\n\
         \x20   tcp_nodelay on;\n\
         \x20   default_type application/octet-stream;\n\
         \x20   # A write per request; the bench's proxy (log level warn) logs no request\n\
         \x20   # that succeeds.\n\
         \x20   access_log off;\n\
         \x20   # The generator keeps its connections for a whole cell, as with treuhand, whose\n\
         \x20   # proxy has no request limit per connection (nginx's default closes one after\n\
         \x20   # 1000 requests, and a reconnect costs a TLS handshake).\n\
         \x20   keepalive_timeout 65;\n\
         \x20   keepalive_requests 1000000;\n\
         \x20   # Objects up to the sweep's largest size (the default limit is 1 MiB).\n\
         \x20   client_max_body_size 0;\n\
         \x20   # Every temp folder in the stack folder (Debian's are under /var/lib/nginx).\n",
        quoted(&settings.prefix.join("nginx.pid")),
        quoted(&settings.prefix.join("error.log")),
    ));
    for temp in TEMP_PATHS {
        let name = temp.trim_end_matches("_path");
        conf.push_str(&format!(
            "    {temp} {};\n",
            quoted(&settings.prefix.join(name))
        ));
    }
    let location = match settings.upstream {
        Upstream::Files { root } => format!(
            "            # The objects as files, as the filesystem backend would hold them without\n\
             \x20           # treuhand; PUT writes the body to client_body_temp_path (same file\n\
             \x20           # system) and renames it into place, creating the key's folders.\n\
             \x20           root {};\n\
             \x20           dav_methods PUT DELETE;\n\
             \x20           create_full_put_path on;\n",
            quoted(root)
        ),
        Upstream::S3 { endpoint } => {
            let scheme = if endpoint.starts_with("https://") {
                "https"
            } else {
                "http"
            };
            format!(
                "            proxy_pass {scheme}://s3_backend;\n\
                 \x20           # Upstream keep-alive needs HTTP/1.1 and no Connection: close.\n\
                 \x20           proxy_http_version 1.1;\n\
                 \x20           proxy_set_header Connection \"\";\n\
                 \x20           # The client signed its request for the Host it sent; forwarded\n\
                 \x20           # unchanged, the backend checks the same signature.\n\
                 \x20           proxy_set_header Host $http_host;\n\
                 \x20           # Buffering as Debian's defaults: a PUT body over 8 KiB is spooled to\n\
                 \x20           # client_body_temp_path before it goes upstream, a response is read\n\
                 \x20           # ahead into memory (a temp file if the client lags). Turning either\n\
                 \x20           # off made nothing faster here (docs/benchmarks.md).\n"
            )
        }
    };
    if let Upstream::S3 { endpoint } = settings.upstream {
        let authority = endpoint
            .split_once("://")
            .map_or(endpoint.as_str(), |(_, rest)| rest)
            .trim_end_matches('/');
        conf.push_str(&format!(
            "\n    upstream s3_backend {{\n\
             \x20       server {authority};\n\
             \x20       # Idle connections kept per worker, as many as the generator may use.\n\
             \x20       keepalive 1024;\n\
             \x20       keepalive_requests 1000000;\n\
             \x20   }}\n"
        ));
    }
    conf.push_str(&format!(
        "\n    server {{\n\
         \x20       # HTTP/1.1 over TLS: the load generator speaks nothing else.\n\
         \x20       listen {} ssl;\n\
         \x20       ssl_certificate {};\n\
         \x20       ssl_certificate_key {};\n\
         \x20       ssl_protocols TLSv1.2 TLSv1.3;\n\
         \x20       location / {{\n{location}        }}\n\
         \x20   }}\n}}\n",
        settings.listen,
        quoted(settings.cert),
        quoted(settings.key)
    ));
    conf
}

/// A path as an nginx string: in double quotes, so spaces are safe. [`check_path`] has refused
/// the characters quoting does not make literal.
fn quote(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// Refuses a path nginx would not read literally even quoted: `$` starts a variable in `root`,
/// and `"`, `\` or a control character would end or escape the string.
fn check_path(path: &Path) -> anyhow::Result<()> {
    let text = path.to_string_lossy();
    anyhow::ensure!(
        !text.contains(['$', '"', '\\']) && !text.chars().any(char::is_control),
        "--baseline nginx: the path {} has a character nginx's config cannot hold ($, \", \\ \
         or a control character); choose another --out",
        path.display()
    );
    Ok(())
}

/// Whether this process runs as root (effective uid 0), from `/proc/self/status`.
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|uids| uids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// A running nginx; stopped by [`Nginx::stop`], or (less gently) on drop.
pub struct Nginx {
    child: Option<tokio::process::Child>,
    binary: PathBuf,
    conf: PathBuf,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The master's pid.
    pub master: u32,
    /// The worker's pid: the process that serves (its CPU time and RSS are the cell's).
    pub worker: u32,
}

/// Starts nginx with the config for `upstream` in `prefix`, on a free loopback port, on
/// `cpu` only if given, and waits until it accepts connections and its worker runs.
///
/// # Errors
/// nginx failing to start (with its error log), three times in a row if its port was taken.
pub async fn start(
    binary: &Binary,
    prefix: &Path,
    cert: &Path,
    key: &Path,
    upstream: &Upstream,
    cpu: Option<usize>,
) -> anyhow::Result<Nginx> {
    std::fs::create_dir_all(prefix)?;
    check_path(prefix)?;
    check_path(cert)?;
    check_path(key)?;
    if let Upstream::Files { root } = upstream {
        check_path(root)?;
    }
    let conf = prefix.join("nginx.conf");
    let log = prefix.join("error.log");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let listen = SocketAddr::from(([127, 0, 0, 1], crate::dev::free_port()?));
        let settings = Settings {
            prefix,
            listen,
            cert,
            key,
            upstream,
            as_root: running_as_root(),
        };
        std::fs::write(&conf, render(&settings))?;
        let _ = std::fs::remove_file(&log);
        let mut command = match cpu {
            Some(cpu) => super::pin::command_on(cpu, &binary.path),
            None => tokio::process::Command::new(&binary.path),
        };
        command
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(&log)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(prefix.join("stderr.log"))?)
            .kill_on_drop(true);
        let child = command.spawn().map_err(|e| {
            anyhow::anyhow!(
                "cannot start {}: {e}; {INSTALL_HINT}",
                binary.path.display()
            )
        })?;
        let master = child.id().unwrap_or(0);
        let mut nginx = Nginx {
            child: Some(child),
            binary: binary.path.clone(),
            conf: conf.clone(),
            addr: listen,
            master,
            worker: 0,
        };
        match nginx.wait_ready().await {
            Ok(()) => return Ok(nginx),
            Err(e) => {
                nginx.stop().await;
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if attempt < 3 && text.contains("Address already in use") {
                    continue;
                }
                let stderr = std::fs::read_to_string(prefix.join("stderr.log")).unwrap_or_default();
                anyhow::bail!("{e}; its error log ({}):\n{text}{stderr}", log.display());
            }
        }
    }
}

impl Nginx {
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        for _ in 0..300 {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                anyhow::bail!(
                    "nginx exited with {status} before listening on {}",
                    self.addr
                );
            }
            if self.worker == 0 {
                self.worker = child_of(self.master).unwrap_or(0);
            }
            if self.worker != 0 && tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!(
            "nginx did not start its worker on {} within 15 s",
            self.addr
        )
    }

    /// Stops nginx: a fast shutdown through its master (`nginx -s stop`), which also ends the
    /// worker; killing the master alone would leave the worker serving.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            let _ = tokio::process::Command::new(&self.binary)
                .arg("-c")
                .arg(&self.conf)
                .args(["-s", "stop"])
                .stderr(std::process::Stdio::null())
                .status()
                .await;
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
                // The master did not get to end its worker (no pid file yet, or it hung).
                if self.worker != 0 {
                    let _ = tokio::process::Command::new("kill")
                        .args(["-KILL", &self.worker.to_string()])
                        .status()
                        .await;
                }
            }
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Only on an error path (a failed cell drops the stack without `stop`): the same fast
        // shutdown, blocking for the few milliseconds `nginx -s stop` takes.
        if let Some(mut child) = self.child.take()
            && matches!(child.try_wait(), Ok(None))
        {
            let _ = std::process::Command::new(&self.binary)
                .arg("-c")
                .arg(&self.conf)
                .args(["-s", "stop"])
                .stderr(std::process::Stdio::null())
                .status();
            let _ = child.start_kill();
        }
    }
}

/// A child process of `parent` (nginx's worker: the master has no other), from `/proc`.
fn child_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The field after the state, behind the ")" that closes the command name.
        let ppid: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == parent).then_some(pid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings<'a>(upstream: &'a Upstream, as_root: bool) -> Settings<'a> {
        Settings {
            prefix: Path::new("/stack/nginx"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            cert: Path::new("/stack/certs/proxy.pem"),
            key: Path::new("/stack/certs/proxy.key"),
            upstream,
            as_root,
        }
    }

    fn directives(conf: &str) -> Vec<String> {
        conf.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_files_config_serves_the_storage_root_with_webdav_put_and_one_worker() {
        let upstream = Upstream::Files {
            root: "/stack/storage".into(),
        };
        let d = directives(&render(&settings(&upstream, false)));
        for wanted in [
            "daemon off;",
            "worker_processes 1;",
            "pid \"/stack/nginx/nginx.pid\";",
            "error_log \"/stack/nginx/error.log\" warn;",
            "access_log off;",
            "keepalive_requests 1000000;",
            "client_max_body_size 0;",
            "client_body_temp_path \"/stack/nginx/client_body_temp\";",
            "proxy_temp_path \"/stack/nginx/proxy_temp\";",
            "listen 127.0.0.1:8443 ssl;",
            "ssl_certificate \"/stack/certs/proxy.pem\";",
            "ssl_certificate_key \"/stack/certs/proxy.key\";",
            "root \"/stack/storage\";",
            "dav_methods PUT DELETE;",
            "create_full_put_path on;",
        ] {
            assert!(d.iter().any(|l| l == wanted), "{wanted} missing:\n{d:#?}");
        }
        assert!(!d.iter().any(|l| l.starts_with("user ")), "{d:#?}");
        assert!(!d.iter().any(|l| l.contains("proxy_pass")), "{d:#?}");
        // No path outside the stack folder: nothing under /var/log or /var/lib.
        assert!(!d.iter().any(|l| l.contains("/var/")), "{d:#?}");
    }

    #[test]
    fn the_s3_config_forwards_the_signed_host_and_streams_over_keepalive() {
        let upstream = Upstream::S3 {
            endpoint: "http://127.0.0.1:7480".into(),
        };
        let d = directives(&render(&settings(&upstream, false)));
        for wanted in [
            "server 127.0.0.1:7480;",
            "keepalive 1024;",
            "proxy_pass http://s3_backend;",
            "proxy_http_version 1.1;",
            "proxy_set_header Connection \"\";",
            "proxy_set_header Host $http_host;",
        ] {
            assert!(d.iter().any(|l| l == wanted), "{wanted} missing:\n{d:#?}");
        }
        assert!(!d.iter().any(|l| l.contains("buffering")), "{d:#?}");
        assert!(!d.iter().any(|l| l.starts_with("dav_methods")), "{d:#?}");
    }

    #[test]
    fn a_root_start_keeps_the_worker_root_so_it_can_read_the_stack_folder() {
        let upstream = Upstream::Files {
            root: "/stack/storage".into(),
        };
        let d = directives(&render(&settings(&upstream, true)));
        assert!(d.iter().any(|l| l == "user root;"), "{d:#?}");
    }

    #[test]
    fn braces_balance_in_both_configs() {
        for upstream in [
            Upstream::Files { root: "/r".into() },
            Upstream::S3 {
                endpoint: "https://h:1/".into(),
            },
        ] {
            let conf = render(&settings(&upstream, false));
            assert_eq!(
                conf.matches('{').count(),
                conf.matches('}').count(),
                "{conf}"
            );
        }
    }

    #[test]
    fn paths_are_quoted_and_those_nginx_cannot_hold_are_refused() {
        assert_eq!(quote(Path::new("/a b/c")), "\"/a b/c\"");
        check_path(Path::new("/tmp/out dir/stacks/0")).unwrap();
        for bad in ["/tmp/$HOME", "/tmp/a\"b", "/tmp/a\\b", "/tmp/a\nb"] {
            let err = check_path(Path::new(bad)).unwrap_err().to_string();
            assert!(err.contains("choose another --out"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_missing_nginx_is_refused_with_the_install_command() {
        let err = locate_from(Some("/nonexistent/nginx".into()), true).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(INSTALL_HINT), "{message}");
        assert!(message.contains("/nonexistent/nginx"), "{message}");
    }

    /// `nginx -t` accepts both rendered configs, with real certificates. Skipped (with a
    /// reason) without nginx, unless TREUHAND_REQUIRE_NGINX is set, as in CI.
    #[test]
    fn nginx_accepts_both_rendered_configs() {
        let binary = match locate(true) {
            Ok(binary) => binary,
            Err(e) if std::env::var_os("TREUHAND_REQUIRE_NGINX").is_none() => {
                eprintln!("skipped: {e}");
                return;
            }
            Err(e) => panic!("TREUHAND_REQUIRE_NGINX is set: {e}"),
        };
        let dir = tempfile::tempdir().unwrap();
        crate::tls::install_crypto_provider();
        let ca = crate::tls::DevCa::generate("test CA").unwrap();
        let (cert, key) = ca
            .issue_server("proxy", &[])
            .unwrap()
            .write(dir.path(), "proxy")
            .unwrap();
        for upstream in [
            Upstream::Files {
                root: dir.path().join("storage"),
            },
            Upstream::S3 {
                endpoint: "http://127.0.0.1:7480".into(),
            },
        ] {
            let prefix = dir.path().join("nginx");
            std::fs::create_dir_all(&prefix).unwrap();
            let conf = prefix.join("nginx.conf");
            let settings = Settings {
                prefix: &prefix,
                listen: SocketAddr::from(([127, 0, 0, 1], 1)),
                cert: &cert,
                key: &key,
                upstream: &upstream,
                as_root: running_as_root(),
            };
            std::fs::write(&conf, render(&settings)).unwrap();
            let output = std::process::Command::new(&binary.path)
                .arg("-t")
                .arg("-p")
                .arg(&prefix)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(prefix.join("error.log"))
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{upstream:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}
