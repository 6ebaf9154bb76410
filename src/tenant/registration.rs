//! The proxy registration file `<registration_dir>/<tenant>.toml`
//! ([`TenantConfig`]): read it, and write it atomically so a proxy that polls the directory
//! never reads half a file (a temporary file in the same directory, mode 0600, then a rename).

use std::path::{Path, PathBuf};

use super::Error;
use crate::proxy::config::TenantConfig;

/// The comment every registration file starts with.
const HEADER: &str = "# treuhand tenant registration for the proxy (public metadata; written by `treuhand tenant create`, updated by `tenant rotate`, `shred` and `handover`)";

/// Where the registration of `tenant` lives.
pub fn path(registration_dir: &Path, tenant: &str) -> PathBuf {
    registration_dir.join(format!("{tenant}.toml"))
}

/// Reads and validates `<registration_dir>/<tenant>.toml`.
///
/// # Errors
/// [`Error::Invalid`] naming the file: unreadable, not TOML, or inconsistent.
pub fn load(registration_dir: &Path, tenant: &str) -> Result<TenantConfig, Error> {
    let file = path(registration_dir, tenant);
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(&file).map_err(|e| {
        Error::Invalid(format!(
            "cannot read the registration {} ({e}); `tenant create` writes it into the profile's registration_dir",
            file.display()
        ))
    })?);
    let config: TenantConfig = toml::from_str(&text)
        .map_err(|e| Error::Invalid(crate::logging::describe_toml_error(&file, &text, &e)))?;
    if config.metadata.tenant != tenant {
        return Err(Error::Invalid(format!(
            "{} registers tenant {}, not {tenant}",
            file.display(),
            config.metadata.tenant
        )));
    }
    config
        .validate()
        .map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))?;
    Ok(config)
}

/// Validates `config` and writes it as `<registration_dir>/<tenant>.toml`: a temporary file
/// in the same directory (mode 0600: a standard tenant's registration holds the operator's S3
/// secret), then a rename over the old file, so a reader sees the old or the new file whole.
///
/// # Errors
/// [`Error::Invalid`] for an inconsistent registration (nothing is written), [`Error::Write`].
pub fn save(registration_dir: &Path, config: &TenantConfig) -> Result<PathBuf, Error> {
    config
        .validate()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    std::fs::create_dir_all(registration_dir)
        .map_err(|e| super::write_error(registration_dir, e))?;
    let tenant = &config.metadata.tenant;
    let file = path(registration_dir, tenant);
    let text = toml::to_string_pretty(config).map_err(|e| Error::Invalid(e.to_string()))?;
    let text = zeroize::Zeroizing::new(format!("{HEADER}\n{text}"));
    // Dot-prefixed and not ending in `.toml`, so the proxy's directory scan skips it.
    let temp = registration_dir.join(format!(".{tenant}.toml.{}.tmp", std::process::id()));
    let written = crate::tls::write_secret_file(&temp, &text)
        .map_err(|e| Error::Write {
            path: temp.clone(),
            message: e.to_string(),
        })
        .and_then(|()| std::fs::rename(&temp, &file).map_err(|e| super::write_error(&file, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    // The rename is durable once the directory is.
    if let Ok(dir) = std::fs::File::open(registration_dir) {
        let _ = dir.sync_all();
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyId;
    use crate::crypto::scheme::{self, SplitOptions};
    use crate::proxy::config::TrusteeRef;

    fn registration(version: u32) -> TenantConfig {
        let (metadata, _) = scheme::split(
            &KeyId::new("acme", version).unwrap(),
            2,
            &["customer", "trustee"],
            SplitOptions::default(),
        )
        .unwrap();
        TenantConfig {
            access_key_id: "AKACME".into(),
            secret_access_key: Some("operator-secret".into()),
            customer_holder: "customer".into(),
            customer_url: None,
            trustees: vec![TrusteeRef {
                holder: "trustee".into(),
                url: "https://127.0.0.1:7443".into(),
            }],
            metadata,
            previous: Vec::new(),
        }
    }

    #[test]
    fn a_saved_registration_loads_back_whole_with_its_header_and_no_temp_file_left() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mut config = registration(2);
        config.previous.push(registration(1).metadata);
        let file = save(dir.path(), &config).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with(HEADER), "{text}");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = load(dir.path(), "acme").unwrap();
        assert_eq!(loaded.metadata, config.metadata);
        assert_eq!(loaded.previous, config.previous);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["acme.toml"]);
    }

    #[test]
    fn an_inconsistent_registration_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = registration(1);
        // A decrypt-only version newer than the current one.
        config.previous.push(registration(2).metadata);
        assert!(matches!(save(dir.path(), &config), Err(Error::Invalid(_))));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Loading a registration of another tenant under this name is refused.
        save(dir.path(), &registration(1)).unwrap();
        std::fs::rename(dir.path().join("acme.toml"), dir.path().join("other.toml")).unwrap();
        assert!(load(dir.path(), "other").is_err());
    }
}
