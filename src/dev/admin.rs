//! The dev stack's admin side: a second, idle trustee (`DIR/trustee-b.toml`, for the hand-over
//! drill) and the admin profiles `DIR/admin/demo.toml`, `DIR/admin/demo-holder.toml` (the two
//! demo tenants' customer admins) and `DIR/admin/operator.toml` (the operator).
//!
//! Everything is read back from the set-up DIR (CA, configs, env and credential files), so a
//! DIR set up before these files existed gets them on the next `treuhand dev`. Only absent
//! files are written. Profiles use paths relative to `DIR/admin/`, so DIR can move; they hold
//! the tenants' S3 secrets and are written mode 0600.

use std::path::Path;

use anyhow::Context as _;

use super::configs::{free_port, listen_addr, read_toml, trustee_config};
use super::env::{REGION, parse_env_file};
use crate::admin::profile::{HolderRef, Profile, Role as ProfileRole, S3Profile};
use crate::tls::{DevCa, Role};

/// The second trustee's name (its config, certificate stem and key directory).
pub const TRUSTEE_B: &str = "trustee-b";
/// The operator identity of the dev stack (`operator.operator.treuhand`).
pub const DEV_OPERATOR: &str = "operator";

/// Writes the second trustee and the admin profiles, each only if absent.
///
/// # Errors
/// Unreadable set-up files or failed writes, with the path.
pub fn write_absent(dir: &Path) -> anyhow::Result<()> {
    let certs = dir.join("certs");
    let ca = DevCa::load(&certs.join("ca.pem"), &certs.join("ca.key"))
        .context("loading the dev CA to issue the admin certificates")?;
    write_trustee_b(dir, &ca)?;
    let admin = dir.join("admin");
    std::fs::create_dir_all(&admin)
        .with_context(|| format!("cannot create {}", admin.display()))?;
    if !certs.join(format!("{DEV_OPERATOR}.pem")).exists() {
        ca.issue_client(Role::Operator, DEV_OPERATOR)?
            .write(&certs, DEV_OPERATOR)?;
    }
    let url = |config: &str| -> anyhow::Result<String> {
        let addr = listen_addr(&read_toml(&dir.join(config))?, "listen")?;
        Ok(format!("https://{addr}"))
    };
    let trustee = HolderRef {
        name: "trustee".into(),
        url: url("trustee.toml")?,
        trustee_key: Some("../trustee/signing.pub".into()),
    };
    let trustee_b = HolderRef {
        name: TRUSTEE_B.into(),
        url: url("trustee-b.toml")?,
        trustee_key: Some(format!("../{TRUSTEE_B}/signing.pub")),
    };
    let proxy = url("proxy.toml")?;

    let demo = admin.join("demo.toml");
    if !demo.exists() {
        let env = parse_env_file(&dir.join("dev.env"))?;
        let get = |k: &str| {
            env.get(k)
                .cloned()
                .with_context(|| format!("{} has no {k}", dir.join("dev.env").display()))
        };
        let profile = customer_profile(
            "demo",
            vec![trustee.clone()],
            None,
            S3Profile {
                endpoint: proxy.clone(),
                region: REGION.into(),
                access_key_id: get("AWS_ACCESS_KEY_ID")?,
                secret_access_key: get("AWS_SECRET_ACCESS_KEY")?.into(),
                ca: None,
            },
        );
        write_profile(
            &demo,
            &profile,
            "# Customer admin of tenant demo (TEST-ONLY dev stack; its share travels in SSE-C headers).\n# Try: treuhand tenant status --profile admin/demo.toml\n",
        )?;
    }

    let demo_holder = admin.join("demo-holder.toml");
    if !demo_holder.exists() {
        let (access_key_id, secret) = strict_credentials(&dir.join("demo-holder.s3-credentials"))?;
        let holder_name = registration_customer_holder(&dir.join("tenants/demo-holder.toml"))?;
        let holder = HolderRef {
            name: holder_name,
            url: url("holder.toml")?,
            trustee_key: Some("../holder/signing.pub".into()),
        };
        let profile = customer_profile(
            "demo-holder",
            vec![trustee.clone()],
            Some(holder),
            S3Profile {
                endpoint: proxy.clone(),
                region: REGION.into(),
                access_key_id,
                secret_access_key: secret.into(),
                ca: None,
            },
        );
        write_profile(
            &demo_holder,
            &profile,
            "# Customer admin of the strict tenant demo-holder, which runs its own share holder\n# (TEST-ONLY dev stack). Try: treuhand tenant status --profile admin/demo-holder.toml\n",
        )?;
    }

    let operator = admin.join("operator.toml");
    if !operator.exists() {
        let profile = Profile {
            role: ProfileRole::Operator,
            tenant: None,
            ca: "../certs/ca.pem".into(),
            client_cert: format!("../certs/{DEV_OPERATOR}.pem").into(),
            client_key: format!("../certs/{DEV_OPERATOR}.key").into(),
            trustees: vec![trustee, trustee_b],
            holder: None,
            share_dir: None,
            registration_dir: None,
            s3: None,
        };
        write_profile(
            &operator,
            &profile,
            "# The operator (TEST-ONLY dev stack): files emergency grant requests at every trustee it\n# works with (a trustee that does not serve the tenant is skipped).\n# Try: treuhand operator grants list --tenant demo --profile admin/operator.toml\n",
        )?;
    }
    Ok(())
}

/// `DIR/trustee-b.toml`: an idle second trustee with its own certificate, keys and store.
fn write_trustee_b(dir: &Path, ca: &DevCa) -> anyhow::Result<()> {
    let config = dir.join(format!("{TRUSTEE_B}.toml"));
    if config.exists() {
        return Ok(());
    }
    let certs = dir.join("certs");
    ca.issue_server(TRUSTEE_B, &[])?.write(&certs, TRUSTEE_B)?;
    let sub = dir.join(TRUSTEE_B);
    std::fs::create_dir_all(&sub)?;
    if !sub.join("sealing.key").exists() {
        crate::trustee::config::generate_keys(&sub)?;
    }
    let text = toml::to_string_pretty(&trustee_config(TRUSTEE_B, free_port()?))?;
    std::fs::write(
        &config,
        format!(
            "# A second, independent trustee (TEST-ONLY dev stack), idle: it holds no share until a\n# customer hands a departing trustee's share over to it (`treuhand tenant handover`).\n{text}"
        ),
    )
    .with_context(|| format!("cannot write {}", config.display()))?;
    Ok(())
}

fn customer_profile(
    tenant: &str,
    trustees: Vec<HolderRef>,
    holder: Option<HolderRef>,
    s3: S3Profile,
) -> Profile {
    Profile {
        role: ProfileRole::Customer,
        tenant: Some(tenant.into()),
        ca: "../certs/ca.pem".into(),
        client_cert: format!("../certs/customer-{tenant}.pem").into(),
        client_key: format!("../certs/customer-{tenant}.key").into(),
        trustees,
        holder,
        share_dir: Some("../shares".into()),
        registration_dir: Some("../tenants".into()),
        s3: Some(s3),
    }
}

fn write_profile(path: &Path, profile: &Profile, header: &str) -> anyhow::Result<()> {
    let text = zeroize::Zeroizing::new(format!("{header}{}", toml::to_string_pretty(profile)?));
    crate::tls::write_secret_file(path, &text)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The access key id and secret of a strict tenant's credentials file (aws cli INI form).
fn strict_credentials(path: &Path) -> anyhow::Result<(String, String)> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
    );
    let value = |key: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_owned())
            .with_context(|| format!("{} has no {key}", path.display()))
    };
    Ok((value("aws_access_key_id")?, value("aws_secret_access_key")?))
}

fn registration_customer_holder(path: &Path) -> anyhow::Result<String> {
    let table = read_toml(path)?;
    Ok(table
        .get("customer_holder")
        .and_then(|v| v.as_str())
        .unwrap_or(crate::tenant::CUSTOMER_HOLDER)
        .to_owned())
}

/// Points every admin profile under `DIR/admin` that names `https://from` at `https://to`
/// (a trustee, the holder or the proxy moved to a fresh port). Profiles hold S3 secrets:
/// rewritten mode 0600.
///
/// # Errors
/// Unreadable or unwritable profiles.
pub fn move_in_profiles(
    dir: &Path,
    from: std::net::SocketAddr,
    to: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let admin = dir.join("admin");
    let Ok(entries) = std::fs::read_dir(&admin) else {
        return Ok(());
    };
    let (from, to) = (format!("\"https://{from}\""), format!("\"https://{to}\""));
    for entry in entries {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_server_is_followed_by_every_profile_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let admin = dir.path().join("admin");
        std::fs::create_dir_all(&admin).unwrap();
        let profile = customer_profile(
            "demo",
            vec![HolderRef {
                name: "trustee".into(),
                url: "https://127.0.0.1:1".into(),
                trustee_key: None,
            }],
            None,
            S3Profile {
                endpoint: "https://127.0.0.1:3".into(),
                region: REGION.into(),
                access_key_id: "AK".into(),
                secret_access_key: "secret-0123".into(),
                ca: None,
            },
        );
        write_profile(&admin.join("demo.toml"), &profile, "# test\n").unwrap();
        move_in_profiles(
            dir.path(),
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        )
        .unwrap();
        move_in_profiles(
            dir.path(),
            "127.0.0.1:3".parse().unwrap(),
            "127.0.0.1:4".parse().unwrap(),
        )
        .unwrap();
        let loaded = Profile::load(&admin.join("demo.toml")).unwrap();
        assert_eq!(loaded.trustees[0].url, "https://127.0.0.1:2");
        let s3 = loaded.s3.unwrap();
        assert_eq!(s3.endpoint, "https://127.0.0.1:4");
        assert_eq!(s3.secret_access_key.expose_secret(), "secret-0123");
    }
}
