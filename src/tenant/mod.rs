//! The customer's key ceremony: `treuhand tenant create`.
//!
//! Runs on the customer's machine. It generates the tenant master key locally, splits it,
//! deposits each non-customer share with its trustee (and, for holder tenants, the customer's
//! own share with the customer's holder), writes the public tenant registration file the proxy
//! loads, and writes the customer share to files. The TMK never leaves this process and is
//! zeroized when the ceremony ends; the operator receives only public metadata.
//!
//! Registration with the proxy is a file: `<tenants_dir>/<tenant>.toml`
//! ([`crate::proxy::config::TenantConfig`]). The customer hands it to the operator (or writes
//! it directly into the proxy's `tenants_dir`); it contains no secret key material, only the
//! S3 access key pair the operator issues, trustee URLs and the key metadata.

pub mod cli;
pub mod deposit;

use std::path::{Path, PathBuf};

use crate::crypto::{KeyId, KeyMetadata, ShareEnvelope, envelope, shamir};
use crate::proxy::config::{TenantConfig, TrusteeRef};
use crate::secret::Share;

/// Errors of the ceremony.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Invalid parameters.
    #[error("invalid tenant parameters: {0}")]
    Invalid(String),
    /// A crypto step failed.
    #[error(transparent)]
    Crypto(#[from] crate::crypto::Error),
    /// A deposit failed; the message names the holder.
    #[error("depositing the share of '{holder}' failed: {message}")]
    Deposit {
        /// Holder name.
        holder: String,
        /// What went wrong.
        message: String,
    },
    /// Writing an output file failed.
    #[error("cannot write {path}: {message}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// One share to deposit: where, for which holder, and the share itself.
pub struct Deposit<'a> {
    /// Base URL of the holder service.
    pub url: &'a str,
    /// The tenant key's public metadata.
    pub metadata: &'a KeyMetadata,
    /// The holder name the share is registered under.
    pub holder: &'a str,
    /// The share, as a `treuhand-share-v1:` envelope.
    pub envelope: &'a str,
}

// Hand-written so the share never reaches a log through `{:?}`.
impl std::fmt::Debug for Deposit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Deposit({} at {}, [REDACTED])", self.holder, self.url)
    }
}

/// Deposits one share with a holder service (trustee or customer-run holder).
#[async_trait::async_trait]
pub trait Depositor: Send + Sync {
    /// Deposits the share of `deposit`; the error is a message for the operator.
    async fn deposit(&self, deposit: Deposit<'_>) -> Result<(), String>;
}

/// Deposits `envelope` for `holder` at `url`, naming the holder in the error.
async fn deposit_with(
    depositor: &dyn Depositor,
    url: &str,
    metadata: &KeyMetadata,
    holder: &str,
    envelope: &str,
) -> Result<(), Error> {
    let deposit = Deposit {
        url,
        metadata,
        holder,
        envelope,
    };
    depositor
        .deposit(deposit)
        .await
        .map_err(|message| Error::Deposit {
            holder: holder.to_owned(),
            message,
        })
}

/// One trustee of the new tenant.
#[derive(Debug, Clone)]
pub struct TrusteeSpec {
    /// Holder name (e.g. `trustee-a`).
    pub holder: String,
    /// Base URL of the trustee.
    pub url: String,
}

/// Parameters of `treuhand tenant create`.
#[derive(Clone, Debug)]
pub struct CreateParams {
    /// Tenant id.
    pub tenant: String,
    /// Key version (1 for a new tenant).
    pub key_version: u32,
    /// Threshold k (default: 2).
    pub threshold: u8,
    /// Trustees, in x order after the customer (x = 1 is the customer).
    pub trustees: Vec<TrusteeSpec>,
    /// URL of the customer's own holder, or `None` for SSE-C.
    pub customer_holder_url: Option<String>,
    /// The S3 access key pair the operator issued for this tenant.
    pub access_key_id: String,
    /// See `access_key_id`.
    pub secret_access_key: crate::secret::SecretString,
    /// Where to write `<tenant>.toml` (the proxy's `tenants_dir`).
    pub registration_dir: PathBuf,
    /// Where to write the customer share (`<tenant>.share` raw, `<tenant>.share.txt` text).
    pub share_dir: PathBuf,
}

/// What the ceremony produced.
#[derive(Debug, Clone)]
pub struct Created {
    /// Public metadata.
    pub metadata: KeyMetadata,
    /// The registration file.
    pub registration: PathBuf,
    /// Raw 32-byte customer share (for SSE-C), if written.
    pub share_raw: Option<PathBuf>,
    /// Text envelope of the customer share.
    pub share_text: PathBuf,
}

/// The holder name of the customer in every tenant created here.
pub const CUSTOMER_HOLDER: &str = "customer";

/// Runs the ceremony.
///
/// # Errors
/// [`Error`]; on a deposit failure nothing is registered with the proxy.
pub async fn create(params: &CreateParams, depositor: &dyn Depositor) -> Result<Created, Error> {
    if params.trustees.is_empty() {
        return Err(Error::Invalid("at least one trustee is needed".into()));
    }
    let key = KeyId::new(&params.tenant, params.key_version)?;
    let mut names: Vec<&str> = vec![CUSTOMER_HOLDER];
    names.extend(params.trustees.iter().map(|t| t.holder.as_str()));
    let tmk = envelope::generate_tmk()?;
    let (metadata, shares) = shamir::split(&tmk, &key, params.threshold, &names)?;
    drop(tmk);
    let mut shares = shares.into_iter();
    let customer_share = shares
        .next()
        .ok_or(Error::Invalid("split returned no shares".into()))?;
    for (trustee, share) in params.trustees.iter().zip(shares) {
        let text = ShareEnvelope {
            key: key.clone(),
            share,
        }
        .encode();
        deposit_with(depositor, &trustee.url, &metadata, &trustee.holder, &text).await?;
    }
    let customer_text = ShareEnvelope {
        key: key.clone(),
        share: copy_share(&customer_share),
    }
    .encode();
    if let Some(url) = &params.customer_holder_url {
        deposit_with(depositor, url, &metadata, CUSTOMER_HOLDER, &customer_text).await?;
    }
    std::fs::create_dir_all(&params.share_dir).map_err(|e| write_error(&params.share_dir, e))?;
    let share_text = params
        .share_dir
        .join(format!("{}.share.txt", params.tenant));
    crate::tls::write_secret_file(&share_text, &format!("{}\n", customer_text.as_str())).map_err(
        |e| Error::Write {
            path: share_text.clone(),
            message: e.to_string(),
        },
    )?;
    let share_raw = if params.customer_holder_url.is_none() {
        let path = params.share_dir.join(format!("{}.share", params.tenant));
        write_raw_share(&path, &customer_share)?;
        Some(path)
    } else {
        None
    };
    let registration = TenantConfig {
        access_key_id: params.access_key_id.clone(),
        secret_access_key: Some(params.secret_access_key.clone()),
        customer_holder: CUSTOMER_HOLDER.into(),
        customer_url: params.customer_holder_url.clone(),
        trustees: params
            .trustees
            .iter()
            .map(|t| TrusteeRef {
                holder: t.holder.clone(),
                url: t.url.clone(),
            })
            .collect(),
        metadata: metadata.clone(),
    };
    registration
        .validate()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    std::fs::create_dir_all(&params.registration_dir)
        .map_err(|e| write_error(&params.registration_dir, e))?;
    let path = params
        .registration_dir
        .join(format!("{}.toml", params.tenant));
    let text = toml::to_string_pretty(&registration).map_err(|e| Error::Invalid(e.to_string()))?;
    let text = format!(
        "# treuhand tenant registration for the proxy (public metadata; written by `treuhand tenant create`)\n{text}"
    );
    crate::tls::write_secret_file(&path, &text).map_err(|e| Error::Write {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok(Created {
        metadata,
        registration: path,
        share_raw,
        share_text,
    })
}

fn copy_share(share: &Share) -> Share {
    Share::new(
        share.x(),
        crate::secret::ShareValue::from_bytes(*share.expose_secret()),
    )
}

fn write_error(path: &Path, e: std::io::Error) -> Error {
    Error::Write {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Writes the raw 32-byte y value (what SSE-C headers carry) with mode 0600.
///
/// # Errors
/// [`Error::Write`].
pub fn write_raw_share(path: &Path, share: &Share) -> Result<(), Error> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| write_error(path, e))?;
    file.write_all(share.expose_secret())
        .map_err(|e| write_error(path, e))?;
    Ok(())
}

/// Converts a text envelope file into the raw 32-byte SSE-C key file.
///
/// # Errors
/// [`Error::Invalid`] for a malformed envelope, [`Error::Write`].
pub fn export_raw(envelope_path: &Path, out: &Path) -> Result<(), Error> {
    let text =
        zeroize::Zeroizing::new(std::fs::read_to_string(envelope_path).map_err(|e| {
            Error::Invalid(format!("cannot read {}: {e}", envelope_path.display()))
        })?);
    let envelope = ShareEnvelope::parse(&text)?;
    write_raw_share(out, &envelope.share)
}
