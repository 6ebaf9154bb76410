//! The customer's key ceremony: `treuhand tenant create`.
//!
//! Runs on the customer's machine. It generates the tenant's OPRF key locally
//! ([`scheme::split`], `oprf-ristretto255-v1`), splits it, deposits each non-customer share
//! with its trustee (and, for holder tenants, the customer's own share with the customer's
//! holder), writes the public tenant registration file the proxy loads, and writes the
//! customer share to files. The tenant key never leaves this process and is zeroized inside
//! the split; nobody holds it afterwards, and the operator receives only public metadata
//! (`K`, every `K_i`). New tenants are never legacy (`shamir-tmk-v1`) tenants.
//!
//! Two choices of the customer are recorded in the metadata every holder enrolls:
//! - a threshold the trustees reach without the customer's share is refused unless the
//!   customer passes `--allow-trustees-alone` ([`CreateOptions::allow_trustees_alone`]);
//! - a strict tenant ([`CreateOptions::strict`]) has an S3 secret access key that the
//!   customer generates here. It is deposited only with the holders that check the customer's
//!   signatures (the customer's own holder when there is one, otherwise every trustee) and
//!   written for the customer to `<share_dir>/<tenant>.s3-credentials`; the operator supplies
//!   only the access key id and never sees the secret. An operator-supplied secret for a
//!   strict tenant is refused (it would be a secret the operator knows).
//!
//! Registration with the proxy is a file: `<tenants_dir>/<tenant>.toml`
//! ([`crate::proxy::config::TenantConfig`]). The customer hands it to the operator (or writes
//! it directly into the proxy's `tenants_dir`); it contains no secret key material, only the
//! S3 access key id (and, for a standard tenant, the secret the operator issued), trustee
//! URLs and the key metadata.

pub mod cli;
pub mod deposit;
mod files;
pub mod registration;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use files::{export_raw, read_s3_credentials, share_paths, write_raw_share};

use crate::crypto::scheme::{self, SplitOptions};
use crate::crypto::{KeyId, KeyMetadata, ShareEnvelope};
use crate::proxy::config::{TenantConfig, TrusteeRef};
use crate::secret::{SecretString, Share};
use crate::trustee::wire::SigV4Credential;

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
    /// The trustees alone reach the threshold and the customer did not allow it.
    #[error(
        "the {trustees} trustee(s) alone reach the threshold of {threshold} shares without the customer's share: together they could derive every object key of this tenant without you. Raise --threshold to {needed} so that your share is always needed, or pass --allow-trustees-alone if you accept that the trustees together can read your data (e.g. to recover it if your share is lost); that choice is recorded in the key metadata and in every holder's audit log"
    )]
    TrusteesAlone {
        /// How many trustees the tenant has.
        trustees: usize,
        /// The requested threshold.
        threshold: u8,
        /// The smallest threshold that needs the customer.
        needed: usize,
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
    /// Strict tenants: the S3 credential, given only to the holders that check the customer's
    /// signatures ([`EnrollRequest::sigv4`](crate::trustee::wire::EnrollRequest::sigv4)).
    pub sigv4: Option<&'a SigV4Credential>,
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
    sigv4: Option<&SigV4Credential>,
) -> Result<(), Error> {
    let deposit = Deposit {
        url,
        metadata,
        holder,
        envelope,
        sigv4,
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
    /// The S3 access key id the operator issued for this tenant.
    pub access_key_id: String,
    /// The S3 secret access key the operator issued with it. Must be empty for a strict
    /// tenant, whose secret the ceremony generates ([`CreateOptions::strict`]).
    pub secret_access_key: SecretString,
    /// Where to write `<tenant>.toml` (the proxy's `tenants_dir`).
    pub registration_dir: PathBuf,
    /// Where to write the customer share (`<tenant>.share` raw, `<tenant>.share.txt` text).
    pub share_dir: PathBuf,
}

/// The customer's choices beyond the split, recorded in the key metadata.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateOptions {
    /// Strict tenant ([`KeyMetadata::strict`]): the ceremony generates the S3 secret access
    /// key; only the customer and the signature-checking holders get it.
    pub strict: bool,
    /// Accept a threshold that the trustees reach without the customer's share
    /// ([`KeyMetadata::allow_trustees_alone`]); refused without it.
    pub allow_trustees_alone: bool,
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
    /// Strict tenants: the customer's S3 credentials file (aws cli credentials INI form,
    /// profile named after the tenant, mode 0600).
    pub s3_credentials: Option<PathBuf>,
    /// Strict tenants: the generated S3 secret access key (also in `s3_credentials`), for a
    /// caller that sets up the customer's client directly (`treuhand dev init`).
    pub s3_secret: Option<SecretString>,
}

/// The holder name of the customer in every tenant created here.
pub const CUSTOMER_HOLDER: &str = "customer";

/// Runs the ceremony for a standard tenant whose threshold needs the customer
/// ([`CreateOptions::default`]).
///
/// # Errors
/// See [`create_with`].
pub async fn create(params: &CreateParams, depositor: &dyn Depositor) -> Result<Created, Error> {
    create_with(params, CreateOptions::default(), depositor).await
}

/// Runs the ceremony.
///
/// # Errors
/// [`Error::TrusteesAlone`] when the trustees reach the threshold without the customer and
/// `options.allow_trustees_alone` is not set; [`Error::Invalid`] (also for a secret passed
/// for a strict tenant); [`Error::Deposit`] naming the holder; [`Error::Write`]. Nothing is
/// registered with the proxy unless every deposit succeeded.
pub async fn create_with(
    params: &CreateParams,
    options: CreateOptions,
    depositor: &dyn Depositor,
) -> Result<Created, Error> {
    if params.trustees.is_empty() {
        return Err(Error::Invalid("at least one trustee is needed".into()));
    }
    if options.strict && !params.secret_access_key.expose_secret().is_empty() {
        return Err(Error::Invalid(
            "a strict tenant's S3 secret access key is generated by the customer at the ceremony and never known to the operator: pass only the access key id, no secret access key".into(),
        ));
    }
    let key = KeyId::new(&params.tenant, params.key_version)?;
    let sigv4 = if options.strict {
        Some(SigV4Credential {
            access_key_id: params.access_key_id.clone(),
            secret_access_key: files::generate_s3_secret()?,
        })
    } else {
        None
    };
    let dealt = ceremony(
        &Ceremony {
            key: &key,
            threshold: params.threshold,
            trustees: &params.trustees,
            customer_holder_url: params.customer_holder_url.as_deref(),
            options,
            sigv4: sigv4.as_ref(),
            share_dir: &params.share_dir,
        },
        depositor,
    )
    .await?;
    let metadata = dealt.metadata;
    let (share_raw, share_text) = (dealt.share_raw, dealt.share_text);
    let s3_credentials = match &sigv4 {
        Some(credential) => {
            let path = params
                .share_dir
                .join(format!("{}.s3-credentials", params.tenant));
            files::write_s3_credentials(&path, &params.tenant, credential)?;
            Some(path)
        }
        None => None,
    };
    let registration = TenantConfig {
        access_key_id: params.access_key_id.clone(),
        // A strict tenant's registration never carries its secret: the proxy cannot check
        // (or forge) the customer's signatures, the signature-checking holder does.
        secret_access_key: (!options.strict).then(|| params.secret_access_key.clone()),
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
        previous: Vec::new(),
    };
    let path = registration::save(&params.registration_dir, &registration)?;
    Ok(Created {
        metadata,
        registration: path,
        share_raw,
        share_text,
        s3_credentials,
        s3_secret: sigv4
            .as_ref()
            .map(|c| SecretString::from(c.secret_access_key.as_str())),
    })
}

/// One key version's split and deposits ([`ceremony`]), shared by `tenant create` and
/// `tenant rotate`.
#[derive(Debug)]
pub struct Ceremony<'a> {
    /// The tenant and the version to make.
    pub key: &'a KeyId,
    /// Threshold k.
    pub threshold: u8,
    /// The trustees, in x order after the customer (x = 1 is the customer).
    pub trustees: &'a [TrusteeSpec],
    /// The customer's holder, or `None` for SSE-C.
    pub customer_holder_url: Option<&'a str>,
    /// Strict / allow-trustees-alone, recorded in the metadata.
    pub options: CreateOptions,
    /// Strict tenants: the S3 credential for the signature-checking holders.
    pub sigv4: Option<&'a SigV4Credential>,
    /// Where the customer's share files go ([`share_paths`]).
    pub share_dir: &'a Path,
}

/// What [`ceremony`] dealt and wrote.
#[derive(Debug, Clone)]
pub struct Dealt {
    /// The new version's public metadata.
    pub metadata: KeyMetadata,
    /// The raw customer share (SSE-C tenants).
    pub share_raw: Option<PathBuf>,
    /// The customer share's text envelope.
    pub share_text: PathBuf,
}

/// Generates and splits a fresh OPRF key for `c.key` (customer x = 1, the trustees after it),
/// deposits each trustee's share (with the S3 credential when the trustees check the
/// customer's signatures) and, for holder tenants, the customer's share at its holder (with
/// the credential), then writes the customer's share files ([`share_paths`]). Files are
/// written only after every deposit succeeded; the registration is the caller's.
///
/// # Errors
/// As [`create_with`]; a failed deposit names the holder, and the holders before it in the
/// order (trustees, then the customer's holder) hold the new version.
pub async fn ceremony(c: &Ceremony<'_>, depositor: &dyn Depositor) -> Result<Dealt, Error> {
    if c.trustees.is_empty() {
        return Err(Error::Invalid("at least one trustee is needed".into()));
    }
    let key = c.key;
    let mut names: Vec<&str> = vec![CUSTOMER_HOLDER];
    names.extend(c.trustees.iter().map(|t| t.holder.as_str()));
    let (metadata, shares) = scheme::split(
        key,
        c.threshold,
        &names,
        SplitOptions {
            strict: c.options.strict,
            allow_trustees_alone: c.options.allow_trustees_alone,
        },
    )?;
    if metadata.trustees_alone_reach_threshold(CUSTOMER_HOLDER) && !c.options.allow_trustees_alone {
        return Err(Error::TrusteesAlone {
            trustees: c.trustees.len(),
            threshold: c.threshold,
            needed: c.trustees.len() + 1,
        });
    }
    // The holders that check the customer's signatures get the credential: the customer's
    // own holder when there is one (the trustees then never learn it), otherwise every
    // trustee.
    let trustees_check = c.customer_holder_url.is_none();
    let mut shares = shares.into_iter();
    let customer_share = shares
        .next()
        .ok_or(Error::Invalid("split returned no shares".into()))?;
    for (trustee, share) in c.trustees.iter().zip(shares) {
        let text = ShareEnvelope {
            key: key.clone(),
            share,
        }
        .encode();
        let checking = c.sigv4.filter(|_| trustees_check);
        deposit_with(
            depositor,
            &trustee.url,
            &metadata,
            &trustee.holder,
            &text,
            checking,
        )
        .await?;
    }
    let customer_text = ShareEnvelope {
        key: key.clone(),
        share: copy_share(&customer_share),
    }
    .encode();
    if let Some(url) = c.customer_holder_url {
        deposit_with(
            depositor,
            url,
            &metadata,
            CUSTOMER_HOLDER,
            &customer_text,
            c.sigv4,
        )
        .await?;
    }
    std::fs::create_dir_all(c.share_dir).map_err(|e| write_error(c.share_dir, e))?;
    let (raw_path, share_text) = share_paths(c.share_dir, &key.tenant, key.version);
    crate::tls::write_secret_file(&share_text, &format!("{}\n", customer_text.as_str())).map_err(
        |e| Error::Write {
            path: share_text.clone(),
            message: e.to_string(),
        },
    )?;
    let share_raw = if c.customer_holder_url.is_none() {
        write_raw_share(&raw_path, &customer_share)?;
        Some(raw_path)
    } else {
        None
    };
    Ok(Dealt {
        metadata,
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
