//! The env files of the dev stack: `DIR/dev.env` and `DIR/dev-holder.env` (written at set-up,
//! `export NAME=value` lines for the aws cli and boto3), and reading such files back, for the
//! bench harness and for an S3 backend's `rgw.env`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::storage::StorageConfig;

/// The region the dev stack tells clients to use.
pub const REGION: &str = "us-east-1";

/// One demo tenant's env file: who it is and the credentials a client needs.
pub struct TenantEnv {
    /// Tenant id, also its bucket.
    pub id: String,
    /// SigV4 access key id.
    pub access_key_id: String,
    /// SigV4 secret (TEST-ONLY; the env file is written with mode 0600).
    pub secret_access_key: String,
    /// The customer's raw share, for tenants whose share travels in SSE-C.
    pub share_file: Option<PathBuf>,
    /// File name under the dev directory (`dev.env`, `dev-holder.env`).
    pub env_file: String,
}

impl TenantEnv {
    /// Writes `DIR/<env_file>` for a proxy at `proxy` (mode 0600: it holds a SigV4 secret).
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn write(&self, dir: &Path, proxy: SocketAddr) -> anyhow::Result<()> {
        let endpoint = format!("https://{proxy}");
        let mut env = format!(
            "# treuhand dev stack, tenant {id} (TEST-ONLY credentials). Use: source {file}\n\
             export TREUHAND_ENDPOINT={endpoint}\n\
             export AWS_ENDPOINT_URL={endpoint}\n\
             export AWS_CA_BUNDLE={ca}\n\
             export AWS_ACCESS_KEY_ID={ak}\n\
             export AWS_SECRET_ACCESS_KEY={sk}\n\
             export AWS_DEFAULT_REGION={REGION}\n\
             export TREUHAND_BUCKET={id}\n",
            id = self.id,
            file = dir.join(&self.env_file).display(),
            ca = dir.join("certs").join("ca.pem").display(),
            ak = self.access_key_id,
            sk = self.secret_access_key,
        );
        if let Some(share) = &self.share_file {
            env.push_str(&format!("export TREUHAND_SHARE_FILE={}\n", share.display()));
        }
        crate::tls::write_secret_file(&dir.join(&self.env_file), &env)?;
        Ok(())
    }
}

/// The env files the dev set-up writes, one per demo tenant.
pub const ENV_FILES: [&str; 2] = ["dev.env", "dev-holder.env"];

/// Points the endpoint lines of every env file in `dir` at `proxy`, after the proxy had to
/// move to a fresh port (see [`super::stack::spawn_listening`]). Other lines stay as they are.
///
/// # Errors
/// If a file cannot be read or written.
pub fn move_endpoint(dir: &Path, proxy: SocketAddr) -> anyhow::Result<()> {
    for name in ENV_FILES {
        let path = dir.join(name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let text = zeroize::Zeroizing::new(text);
        let mut out = String::with_capacity(text.len());
        for line in text.lines() {
            match line.split_once('=') {
                Some((key @ ("export TREUHAND_ENDPOINT" | "export AWS_ENDPOINT_URL"), _)) => {
                    out.push_str(&format!("{key}=https://{proxy}"))
                }
                _ => out.push_str(line),
            }
            out.push('\n');
        }
        crate::tls::write_secret_file(&path, &out)?;
    }
    Ok(())
}

/// Parses a shell file of `export NAME=value` lines (as `treuhand dev` and `.ci/ceph.sh`
/// write them). Values lose surrounding quotes; lines without `=` are skipped.
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
    let vars = parse_env_file(path)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_parse_with_or_without_export_and_quotes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.env");
        std::fs::write(&path, "# comment\nexport A=1\nB='two'\n  export C=\"3\"\n").unwrap();
        let vars = parse_env_file(&path).unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two");
        assert_eq!(vars["C"], "3");
        assert_eq!(vars.len(), 3);
    }

    #[test]
    fn a_moved_proxy_is_written_into_the_endpoint_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let tenant = TenantEnv {
            id: "demo".into(),
            access_key_id: "AK".into(),
            secret_access_key: "secret".into(),
            share_file: None,
            env_file: "dev.env".into(),
        };
        tenant
            .write(dir.path(), "127.0.0.1:1".parse().unwrap())
            .unwrap();
        move_endpoint(dir.path(), "127.0.0.1:2".parse().unwrap()).unwrap();
        let vars = parse_env_file(&dir.path().join("dev.env")).unwrap();
        assert_eq!(vars["TREUHAND_ENDPOINT"], "https://127.0.0.1:2");
        assert_eq!(vars["AWS_ENDPOINT_URL"], "https://127.0.0.1:2");
        assert_eq!(vars["AWS_SECRET_ACCESS_KEY"], "secret");
    }
}
