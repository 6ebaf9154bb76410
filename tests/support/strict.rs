//! A strict tenant (`tenant create --strict`) enrolled through the real ceremony, with its
//! customer-run holder and one trustee, and the proxy in front: `tests/strict.rs` and
//! `tests/strict_attack.rs`.

use crate::support::stack::{Enrolled, PROXY_NAME};

/// Enrolls the strict tenant `strict` (customer-run holder `holder`, trustee `trustee`,
/// 2-of-2) through the real ceremony and starts the proxy. Returns the stack parts and the
/// tenant's (access key id, secret).
pub async fn strict_stack() -> (Enrolled, crate::support::Proxy, String, String) {
    let mut enrolled = Enrolled::start(&["trustee", "holder"], &[]).await;
    let holders = &enrolled.holders;
    let params = treuhand::tenant::CreateParams {
        tenant: "strict".into(),
        key_version: 1,
        threshold: 2,
        trustees: vec![treuhand::tenant::TrusteeSpec {
            holder: "trustee".into(),
            url: holders.url("trustee"),
        }],
        customer_holder_url: Some(holders.url("holder")),
        access_key_id: "AKSTRICT".into(),
        secret_access_key: String::new().into(),
        registration_dir: enrolled.root.join("tenants"),
        share_dir: enrolled.root.join("shares"),
    };
    let depositor = treuhand::tenant::deposit::TrusteeDepositor::from_tls(
        holders.customer_tls("strict"),
        vec![PROXY_NAME.into()],
    );
    let options = treuhand::tenant::CreateOptions {
        strict: true,
        ..Default::default()
    };
    let created = treuhand::tenant::create_with(&params, options, &depositor)
        .await
        .unwrap();
    let secret = created
        .s3_secret
        .as_ref()
        .unwrap()
        .expose_secret()
        .to_owned();
    let text = std::fs::read_to_string(&created.registration).unwrap();
    let config: treuhand::proxy::config::TenantConfig = toml::from_str(&text).unwrap();
    assert!(
        config.secret_access_key.is_none(),
        "the proxy never gets it"
    );
    enrolled.configs.push(config);
    let proxy_config = crate::support::proxy_config(&enrolled.pki, &enrolled.root, 60);
    let factory = enrolled.holders.factory();
    let proxy = crate::support::start_proxy(&proxy_config, &enrolled.configs, &factory).await;
    (enrolled, proxy, "AKSTRICT".into(), secret)
}
