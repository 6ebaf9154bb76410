//! `treuhand dev init`: the set-up a newcomer gets, checked end to end. The configs it writes
//! are loaded by the real loaders, the trustee, the holder and the proxy are started in-process
//! from them, and both demo tenants (`demo`: SSE-C; `demo-holder`: strict, its S3 secret only
//! in the customer's files) round-trip an object with the credentials of their env files.
// Tests may unwrap/expect/panic: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::*;

use base64::Engine as _;
use treuhand::proxy::config::ProxyConfig;
use treuhand::storage::StorageConfig;

#[tokio::test]
async fn dev_init_writes_a_working_stack() {
    treuhand::tls::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = std::fs::canonicalize(&dir).unwrap();
    treuhand::dev::init(
        &dir,
        StorageConfig::Fs {
            root: "storage".into(),
            fsync: false,
        },
    )
    .await
    .unwrap();
    for f in [
        "certs/ca.pem",
        "trustee.toml",
        "holder.toml",
        "proxy.toml",
        "dev.env",
        "dev-holder.env",
        "customer.share",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert_eq!(std::fs::read(dir.join("customer.share")).unwrap().len(), 32);
    let demo = env_file(&dir.join("dev.env"));
    let holder = env_file(&dir.join("dev-holder.env"));
    for vars in [&demo, &holder] {
        // What the e2e clients read (tests/e2e/s3clients.py, ENV_VARS).
        let names = "TREUHAND_ENDPOINT AWS_CA_BUNDLE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY \
                     AWS_DEFAULT_REGION TREUHAND_BUCKET";
        for k in names.split_whitespace() {
            assert!(vars.contains_key(k), "{k} missing");
        }
    }
    assert_eq!(
        demo["TREUHAND_SHARE_FILE"],
        dir.join("customer.share").display().to_string()
    );
    assert!(!holder.contains_key("TREUHAND_SHARE_FILE"));
    // Both demo tenants are OPRF tenants; demo-holder is strict: its S3 secret is in the
    // customer's files only (env file and credentials file), never in the proxy's
    // registration, while demo stays a standard SSE-C tenant.
    let registration = |tenant: &str| -> (treuhand::proxy::config::TenantConfig, String) {
        let text = std::fs::read_to_string(dir.join(format!("tenants/{tenant}.toml"))).unwrap();
        (toml::from_str(&text).unwrap(), text)
    };
    let (demo_config, _) = registration("demo");
    assert_eq!(
        demo_config.metadata.scheme,
        treuhand::crypto::KeyScheme::Oprf
    );
    assert!(!demo_config.metadata.strict);
    assert_eq!(
        demo_config.secret_access_key.unwrap().expose_secret(),
        demo["AWS_SECRET_ACCESS_KEY"]
    );
    let (holder_config, holder_text) = registration("demo-holder");
    assert_eq!(
        holder_config.metadata.scheme,
        treuhand::crypto::KeyScheme::Oprf
    );
    assert!(holder_config.metadata.strict);
    assert!(holder_config.secret_access_key.is_none());
    assert!(!holder_text.contains(&holder["AWS_SECRET_ACCESS_KEY"]));
    let credentials = std::fs::read_to_string(dir.join("demo-holder.s3-credentials")).unwrap();
    assert!(credentials.contains(&format!(
        "aws_access_key_id = {}\n",
        holder["AWS_ACCESS_KEY_ID"]
    )));
    assert!(credentials.contains(&format!(
        "aws_secret_access_key = {}\n",
        holder["AWS_SECRET_ACCESS_KEY"]
    )));
    assert!(
        !std::fs::read_to_string(dir.join("proxy.toml"))
            .unwrap()
            .contains(&holder["AWS_SECRET_ACCESS_KEY"])
    );
    // A second init leaves everything as it is.
    let before = std::fs::read_to_string(dir.join("dev.env")).unwrap();
    treuhand::dev::init(&dir, StorageConfig::Memory)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("dev.env")).unwrap(),
        before
    );

    // Run the stack from the written configs.
    let stop_trustee = start_trustee_at(&dir.join("trustee.toml")).await;
    let stop_holder = start_trustee_at(&dir.join("holder.toml")).await;
    let config = ProxyConfig::load(&dir.join("proxy.toml")).unwrap();
    let sources = treuhand::proxy::sources::TrusteeSources::new(&config).unwrap();
    let s3 = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let proxy = tokio::spawn(async move {
        treuhand::proxy::run(
            config,
            treuhand::proxy::Listeners { s3, metrics: None },
            &sources,
            async {
                let _ = rx.await;
            },
        )
        .await
        .unwrap();
    });

    let port: u16 = demo["TREUHAND_ENDPOINT"]
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let handle = support::Proxy::attach(format!("127.0.0.1:{port}").parse().unwrap());
    let pki = Pki {
        dir: dir.join("certs"),
        ca: treuhand::tls::DevCa::load(&dir.join("certs/ca.pem"), &dir.join("certs/ca.key"))
            .unwrap(),
        ca_pem: dir.join("certs/ca.pem"),
    };
    let raw = Raw::new(&handle, &pki);
    let share = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(dir.join("customer.share")).unwrap());
    for (vars, sse) in [(&demo, Some(share)), (&holder, None)] {
        let tenant = TestTenant {
            id: vars["TREUHAND_BUCKET"].clone(),
            access_key_id: vars["AWS_ACCESS_KEY_ID"].clone(),
            secret_access_key: vars["AWS_SECRET_ACCESS_KEY"].clone(),
            share: None,
        };
        let headers = sse.as_deref().map(sse_c_headers).unwrap_or_default();
        let path = format!("/{}/hello.txt", vars["TREUHAND_BUCKET"]);
        let put = raw
            .put(&tenant, &path, &headers, b"hello, trustee".to_vec())
            .await;
        assert_eq!(put.status, 200, "{}", put.text());
        let get = raw.get(&tenant, &path, &headers).await;
        assert_eq!(get.body, b"hello, trustee");
    }
    let _ = tx.send(());
    proxy.await.unwrap();
    stop_trustee.stop().await;
    stop_holder.stop().await;
}
