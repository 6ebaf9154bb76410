//! Crash safety: SIGKILL the real `treuhand trustee` process in the middle of a release loop,
//! restart it on the same store, verify the chain and check that every release acknowledged
//! before the kill is in the log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly on purpose

mod support;

use std::sync::{Arc, Mutex};
use support::*;

use treuhand::tls::Role;
use treuhand::trustee::audit::verify_log;
use treuhand::trustee::client::TrusteeClient;
use treuhand::trustee::config::read_public_key;
use treuhand::trustee::wire::{Justification, ReleaseRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_releases_loses_no_acknowledged_release() {
    let dir = tempfile::tempdir().unwrap();
    let config = save_trustee_toml(dir.path(), &write_setup(dir.path()).1);
    let ca =
        treuhand::tls::DevCa::load(&dir.path().join("ca.pem"), &dir.path().join("ca.key")).unwrap();
    let public_key = read_public_key(dir.path().join("signing.pub").to_str().unwrap()).unwrap();
    let proxy_tls = tls_for(&ca, dir.path(), Role::Proxy, "proxy-1");
    let customer_tls = tls_for(&ca, dir.path(), Role::Customer, "acme");

    let trustee = TrusteeProcess::start(&config).await;
    let url = trustee.url.clone();
    let (metadata, shares) = new_tenant_key("acme", 1);
    let enroll = enroll_request(&metadata, &shares, &["proxy-1"]);
    TrusteeClient::new(&url, customer_tls.clone())
        .unwrap()
        .enroll("acme", &enroll)
        .await
        .unwrap();

    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let (enough_tx, mut enough_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut workers = Vec::new();
    for worker in 0..8 {
        let client = TrusteeClient::new(&url, proxy_tls.clone()).unwrap();
        let acknowledged = acknowledged.clone();
        let enough_tx = enough_tx.clone();
        workers.push(tokio::spawn(async move {
            for i in 0.. {
                let request_id = format!("w{worker}-{i}");
                let request = ReleaseRequest {
                    justification: Justification::CustomerAccess,
                    reason: String::new(),
                    request_id: request_id.clone(),
                    object: None,
                };
                match client.release("acme", 1, &request).await {
                    Ok(_) => {
                        let count = {
                            let mut acked = acknowledged.lock().unwrap();
                            acked.push(request_id);
                            acked.len()
                        };
                        if count == 400 {
                            let _ = enough_tx.try_send(());
                        }
                    }
                    // After the kill every call fails; stop this worker.
                    Err(_) => break,
                }
            }
        }));
    }
    drop(enough_tx);
    enough_rx.recv().await.unwrap();
    // SIGKILL while the workers are still releasing.
    trustee.kill().await;
    for worker in workers {
        worker.await.unwrap();
    }
    let acknowledged: Vec<String> = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 400);

    let restarted = TrusteeProcess::start(&config).await;
    let url = restarted.url.clone();
    let customer = TrusteeClient::new(&url, customer_tls).unwrap();
    let log = customer.audit("acme").await.unwrap();
    let summary = verify_log(&log, &public_key).unwrap();
    let logged = release_request_ids(&log);
    for request_id in &acknowledged {
        assert!(
            logged.contains(request_id.as_str()),
            "acknowledged release {request_id} is missing from the log"
        );
    }
    // Unacknowledged releases may be logged (committed, answer lost); never the reverse.
    assert!(summary.releases >= acknowledged.len());
    // The restarted trustee keeps working and extends the same chain.
    let proxy = TrusteeClient::new(&url, proxy_tls).unwrap();
    let request = ReleaseRequest {
        justification: Justification::CustomerAccess,
        reason: String::new(),
        request_id: "after".into(),
        object: None,
    };
    proxy.release("acme", 1, &request).await.unwrap();
    let log = customer.audit("acme").await.unwrap();
    verify_log(&log, &public_key).unwrap();
}
