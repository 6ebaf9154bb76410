//! The dev stack's config files: reading and editing the generated TOML, the dev trustee's
//! config, and free loopback ports. Shared by `init`, `admin` and `stack` (and the bench's
//! stacks), so none of them needs another's internals.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;

use crate::trustee::config::{Config as TrusteeConfig, KeyFiles, Limits, StoreConfig, TlsFiles};

/// Parses a generated config. toml's own error message quotes the offending line, and a
/// generated proxy.toml can hold the storage backend's secret, so errors give the position only.
fn parse_toml(path: &Path, text: &str) -> anyhow::Result<toml::Table> {
    toml::from_str(text)
        .map_err(|e| anyhow::anyhow!(crate::logging::describe_toml_error(path, text, &e)))
}

/// Reads a generated config as a table (see `parse_toml` for its errors).
///
/// # Errors
/// An unreadable or malformed file.
pub fn read_toml(path: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    parse_toml(path, &text)
}

/// Rewrites a generated config through `edit`.
///
/// # Errors
/// An unreadable or malformed file, or `edit`'s error.
pub fn edit_toml(
    path: &Path,
    edit: impl FnOnce(&mut toml::Table) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut table = read_toml(path)?;
    edit(&mut table)?;
    std::fs::write(path, toml::to_string_pretty(&table)?)?;
    Ok(())
}

/// The socket address under `key` in a config table.
///
/// # Errors
/// If the key is missing or not an address.
pub fn listen_addr(table: &toml::Table, key: &str) -> anyhow::Result<SocketAddr> {
    table
        .get(key)
        .and_then(|v| v.as_str())
        .ok_or_else(|| anyhow::anyhow!("config has no {key}"))?
        .parse()
        .map_err(|e| anyhow::anyhow!("bad {key}: {e}"))
}

/// A currently free loopback port. Whoever uses it must bind it later, so another process can
/// take it in between: callers that start a server from a config written with it retry on a
/// fresh port when that happens (`dev::stack::spawn_listening`).
///
/// # Errors
/// If binding fails.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The trustee config the dev stack uses for `name` (paths relative to the stack directory).
pub fn trustee_config(name: &str, port: u16) -> TrusteeConfig {
    trustee_config_at(
        format!("127.0.0.1:{port}"),
        TlsFiles {
            cert: format!("certs/{name}.pem").into(),
            key: format!("certs/{name}.key").into(),
            client_ca: "certs/ca.pem".into(),
        },
        Path::new(name),
        "store.db",
    )
}

/// A trustee config listening on `listen`, whose keys (`sealing.key` and `signing.key`, as
/// `trustee::config::generate_keys` writes them) and store (`store`) lie in `dir`, with the
/// default limits.
pub fn trustee_config_at(listen: String, tls: TlsFiles, dir: &Path, store: &str) -> TrusteeConfig {
    TrusteeConfig {
        listen,
        tls,
        store: StoreConfig {
            path: dir.join(store),
        },
        keys: KeyFiles {
            sealing_key: dir.join("sealing.key"),
            signing_key: dir.join("signing.key"),
        },
        limits: Limits::default(),
    }
}
