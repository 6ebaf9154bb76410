//! The ceremony against a recording fake depositor: what each holder receives, what the
//! proxy's registration and the customer's files contain.
// Tests may unwrap/expect/panic: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Mutex;

use super::*;
use crate::crypto::KeyScheme;

/// One recorded deposit (owned copies of what the depositor was given).
struct Recorded {
    url: String,
    holder: String,
    metadata: KeyMetadata,
    envelope: String,
    sigv4: Option<SigV4Credential>,
}

#[derive(Default)]
struct Recording(Mutex<Vec<Recorded>>);

#[async_trait::async_trait]
impl Depositor for Recording {
    async fn deposit(&self, deposit: Deposit<'_>) -> Result<(), String> {
        self.0.lock().unwrap().push(Recorded {
            url: deposit.url.to_owned(),
            holder: deposit.holder.to_owned(),
            metadata: deposit.metadata.clone(),
            envelope: deposit.envelope.to_owned(),
            sigv4: deposit.sigv4.cloned(),
        });
        Ok(())
    }
}

impl Recording {
    fn taken(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn params(dir: &Path, trustees: &[&str], threshold: u8, holder: bool) -> CreateParams {
    CreateParams {
        tenant: "acme".into(),
        key_version: 1,
        threshold,
        trustees: trustees
            .iter()
            .map(|t| TrusteeSpec {
                holder: (*t).into(),
                url: format!("https://{t}.example"),
            })
            .collect(),
        customer_holder_url: holder.then(|| "https://holder.example".into()),
        access_key_id: "AKACME".into(),
        secret_access_key: "operator-issued-secret".into(),
        registration_dir: dir.join("tenants"),
        share_dir: dir.join("shares"),
    }
}

fn strict_params(dir: &Path, trustees: &[&str], threshold: u8, holder: bool) -> CreateParams {
    CreateParams {
        secret_access_key: SecretString::default(),
        ..params(dir, trustees, threshold, holder)
    }
}

fn registration(created: &Created) -> (TenantConfig, String) {
    let text = std::fs::read_to_string(&created.registration).unwrap();
    (toml::from_str(&text).unwrap(), text)
}

#[tokio::test]
async fn a_new_tenant_is_an_oprf_key_and_every_share_checks_against_its_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let depositor = Recording::default();
    let created = create(&params(dir.path(), &["t1", "t2"], 3, false), &depositor)
        .await
        .unwrap();
    let metadata = &created.metadata;
    assert_eq!(metadata.scheme, KeyScheme::Oprf);
    metadata.validate().unwrap();
    assert!(!metadata.strict && !metadata.allow_trustees_alone);
    assert_eq!(metadata.public_key.len(), 64);
    assert!(metadata.commitment.is_empty());
    for holder in &metadata.holders {
        assert_eq!(holder.public_key.len(), 64, "{}", holder.name);
        assert!(holder.fingerprint.is_empty());
    }
    // Every trustee got its own share, as an envelope, checking against its K_i.
    let deposits = depositor.taken();
    assert_eq!(deposits.len(), 2);
    for (deposit, (name, x)) in deposits.iter().zip([("t1", 2u8), ("t2", 3)]) {
        assert_eq!(deposit.holder, name);
        assert_eq!(deposit.url, format!("https://{name}.example"));
        assert_eq!(&deposit.metadata, metadata);
        assert!(deposit.sigv4.is_none());
        let envelope = ShareEnvelope::parse(&deposit.envelope).unwrap();
        assert_eq!(envelope.share.x(), x);
        scheme::key_share(metadata, &envelope.share).unwrap();
    }
    // The customer's share: raw 32 bytes (SSE-C) and the text envelope, both its x = 1 share.
    let raw = std::fs::read(created.share_raw.as_ref().unwrap()).unwrap();
    let raw: [u8; 32] = raw.try_into().unwrap();
    let customer = Share::new(1, crate::secret::ShareValue::from_bytes(raw));
    scheme::key_share(metadata, &customer).unwrap();
    let text = std::fs::read_to_string(&created.share_text).unwrap();
    let envelope = ShareEnvelope::parse(text.trim()).unwrap();
    assert_eq!(envelope.share.expose_secret(), customer.expose_secret());
    // The registration: the same metadata and the operator's secret (a standard tenant).
    let (config, _) = registration(&created);
    assert_eq!(&config.metadata, metadata);
    assert_eq!(
        config.secret_access_key.unwrap().expose_secret(),
        "operator-issued-secret"
    );
    assert!(created.s3_credentials.is_none() && created.s3_secret.is_none());
}

#[tokio::test]
async fn a_holder_tenant_deposits_the_customers_share_with_its_holder_only() {
    let dir = tempfile::tempdir().unwrap();
    let depositor = Recording::default();
    let created = create(&params(dir.path(), &["t1"], 2, true), &depositor)
        .await
        .unwrap();
    let deposits = depositor.taken();
    let holders: Vec<_> = deposits.iter().map(|d| d.holder.as_str()).collect();
    assert_eq!(holders, ["t1", CUSTOMER_HOLDER]);
    assert_eq!(deposits[1].url, "https://holder.example");
    let envelope = ShareEnvelope::parse(&deposits[1].envelope).unwrap();
    assert_eq!(envelope.share.x(), 1);
    scheme::key_share(&created.metadata, &envelope.share).unwrap();
    assert!(created.share_raw.is_none());
}

#[tokio::test]
async fn tenant_create_refuses_a_threshold_the_trustees_reach_alone_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let depositor = Recording::default();
    let p = params(dir.path(), &["t1", "t2"], 2, false);
    let error = create(&p, &depositor).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::TrusteesAlone {
                trustees: 2,
                threshold: 2,
                needed: 3
            }
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("--allow-trustees-alone"), "{message}");
    assert!(message.contains("--threshold to 3"), "{message}");
    // Nothing was deposited, registered or written.
    assert!(depositor.taken().is_empty());
    assert!(!dir.path().join("tenants").exists());
    assert!(!dir.path().join("shares").exists());

    let allowed = CreateOptions {
        allow_trustees_alone: true,
        ..CreateOptions::default()
    };
    let created = create_with(&p, allowed, &depositor).await.unwrap();
    assert!(created.metadata.allow_trustees_alone);
    // Every holder enrolls metadata that records the choice (and writes it to its audit log).
    let deposits = depositor.taken();
    assert_eq!(deposits.len(), 2);
    assert!(deposits.iter().all(|d| d.metadata.allow_trustees_alone));
    let (config, _) = registration(&created);
    assert!(config.metadata.allow_trustees_alone);
    config.validate().unwrap();
}

#[tokio::test]
async fn a_strict_tenant_deposits_its_credential_only_with_the_customers_holder() {
    let dir = tempfile::tempdir().unwrap();
    let depositor = Recording::default();
    let strict = CreateOptions {
        strict: true,
        ..CreateOptions::default()
    };
    let created = create_with(
        &strict_params(dir.path(), &["t1"], 2, true),
        strict,
        &depositor,
    )
    .await
    .unwrap();
    assert!(created.metadata.strict);
    let secret = created.s3_secret.clone().unwrap();
    assert_eq!(secret.expose_secret().len(), 40);
    let deposits = depositor.taken();
    assert_eq!(deposits.len(), 2);
    // The trustee, which cannot check signatures here, never learns the secret.
    assert_eq!(deposits[0].holder, "t1");
    assert!(deposits[0].sigv4.is_none());
    assert_eq!(deposits[1].holder, CUSTOMER_HOLDER);
    let credential = deposits[1].sigv4.as_ref().unwrap();
    assert_eq!(credential.access_key_id, "AKACME");
    assert_eq!(credential.secret_access_key, secret.expose_secret());
    assert!(deposits.iter().all(|d| d.metadata.strict));
    // The proxy's registration has no secret (and validates as a strict registration).
    let (config, text) = registration(&created);
    assert!(config.secret_access_key.is_none());
    assert!(!text.contains(secret.expose_secret()));
    assert!(!text.contains("secret_access_key"));
    config.validate().unwrap();
    // The customer's copy, in the aws cli credentials form, readable by the customer only.
    let path = created.s3_credentials.as_ref().unwrap();
    assert_eq!(path, &dir.path().join("shares/acme.s3-credentials"));
    let ini = std::fs::read_to_string(path).unwrap();
    assert!(ini.contains("[acme]\n"), "{ini}");
    assert!(ini.contains("aws_access_key_id = AKACME\n"), "{ini}");
    assert!(
        ini.contains(&format!(
            "aws_secret_access_key = {}\n",
            secret.expose_secret()
        )),
        "{ini}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn a_strict_sse_c_tenant_deposits_its_credential_with_every_trustee() {
    let dir = tempfile::tempdir().unwrap();
    let depositor = Recording::default();
    let strict = CreateOptions {
        strict: true,
        ..CreateOptions::default()
    };
    let created = create_with(
        &strict_params(dir.path(), &["t1", "t2"], 3, false),
        strict,
        &depositor,
    )
    .await
    .unwrap();
    let secret = created.s3_secret.clone().unwrap();
    let deposits = depositor.taken();
    assert_eq!(deposits.len(), 2);
    for deposit in &deposits {
        let credential = deposit.sigv4.as_ref().unwrap();
        assert_eq!(credential.secret_access_key, secret.expose_secret());
    }
    assert!(registration(&created).0.secret_access_key.is_none());
    // Each strict ceremony generates its own secret.
    let other = create_with(
        &CreateParams {
            tenant: "other".into(),
            ..strict_params(dir.path(), &["t1", "t2"], 3, false)
        },
        strict,
        &depositor,
    )
    .await
    .unwrap();
    assert_ne!(other.s3_secret.unwrap(), secret);
}

#[tokio::test]
async fn an_operator_secret_for_a_strict_tenant_is_refused_before_any_deposit() {
    let dir = tempfile::tempdir().unwrap();
    let depositor = Recording::default();
    let strict = CreateOptions {
        strict: true,
        ..CreateOptions::default()
    };
    let error = create_with(&params(dir.path(), &["t1"], 2, true), strict, &depositor)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Invalid(_)), "{error}");
    assert!(error.to_string().contains("strict"), "{error}");
    assert!(!error.to_string().contains("operator-issued-secret"));
    assert!(depositor.taken().is_empty());
    assert!(!dir.path().join("tenants").exists());
}
