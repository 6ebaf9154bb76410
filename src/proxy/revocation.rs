//! Revocations pushed from every key holder: a shred, hand-over, policy change or revoked
//! grant at a trustee (or the customer's holder) drops the proxy's cached keys of that tenant
//! within about a second, however long the cache TTL is.
//!
//! For every distinct holder URL in the registrations a task long-polls the holder's
//! `GET /v1/revocations` ([`RevocationFeed`]) and, for each event, drops the cached keys of
//! the tenant it names ([`KeyService::forget_tenant`]). A `reset` answer (the holder restarted,
//! or this proxy missed events) drops the keys of every tenant served by that holder.
//!
//! While a holder's stream is down (not yet connected, an error, a timeout), the tenants it
//! serves have their cache TTL capped at the short fallback TTL
//! ([`KeyService::set_fallback_tenants`]): a shred the proxy did not hear about then still
//! reaches it within that time. A stream counts as up again only after its first answer was
//! applied, so events missed while it was down are dropped first. Reconnects back off from
//! 100 ms to 5 s.
//!
//! A holder whose [`crate::proxy::SourceFactory`] offers no feed (in-process test holders) is
//! not watched, and its tenants keep the configured TTL.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::config::TenantConfig;
use super::keys::KeyService;
use crate::trustee::client::TrusteeClient;
use crate::trustee::wire::{RevocationKind, RevocationsResponse};

/// How long one long-poll waits at the holder for an event.
pub const WAIT: Duration = Duration::from_secs(20);
/// The first reconnect delay after a failed poll; doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest reconnect delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Least time between two polls of one holder, so a holder that answers at once every time
/// (a bug, or a reset loop) cannot make the proxy spin.
const MIN_POLL_SPACING: Duration = Duration::from_millis(20);

/// One holder's revocation event stream.
#[async_trait::async_trait]
pub trait RevocationFeed: Send + Sync {
    /// The events of stream `epoch` after `after`, waiting up to `wait` for one
    /// (`GET /v1/revocations`). The first call passes an empty epoch and gets `reset`.
    ///
    /// # Errors
    /// Any [`crate::trustee::Error`]: the stream counts as down until a call succeeds.
    async fn next(
        &self,
        epoch: &str,
        after: u64,
        wait: Duration,
    ) -> Result<RevocationsResponse, crate::trustee::Error>;
}

#[async_trait::async_trait]
impl RevocationFeed for TrusteeClient {
    async fn next(
        &self,
        epoch: &str,
        after: u64,
        wait: Duration,
    ) -> Result<RevocationsResponse, crate::trustee::Error> {
        self.revocations(epoch, after, wait).await
    }
}

/// Which tenants each holder URL serves: every trustee of every key version and the
/// customer's holder, if the tenant has one.
pub fn holders_of(tenants: &[TenantConfig]) -> BTreeMap<String, BTreeSet<String>> {
    let mut served: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for t in tenants {
        let urls = t.trustees.iter().map(|tr| &tr.url).chain(&t.customer_url);
        for url in urls {
            served
                .entry(url.clone())
                .or_default()
                .insert(t.metadata.tenant.clone());
        }
    }
    served
}

/// One watched holder.
struct Watched {
    /// The tenants it serves (from the current registrations).
    tenants: BTreeSet<String>,
    /// True once an answer was applied, false after an error.
    up: bool,
    task: tokio::task::JoinHandle<()>,
}

/// State shared with the holder tasks.
struct Shared {
    keys: Arc<KeyService>,
    holders: Mutex<HashMap<String, Watched>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Watched>> {
        match self.holders.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Pushes the tenants of every holder whose stream is down to the key cache.
    fn publish(&self, holders: &HashMap<String, Watched>) {
        let capped: HashSet<String> = holders
            .values()
            .filter(|w| !w.up)
            .flat_map(|w| w.tenants.iter().cloned())
            .collect();
        self.keys.set_fallback_tenants(capped);
    }

    fn set_up(&self, url: &str, up: bool) {
        let mut holders = self.lock();
        if let Some(w) = holders.get_mut(url) {
            w.up = up;
        }
        self.publish(&holders);
        metrics::gauge!("treuhand_revocation_stream_up", "holder" => url.to_owned()).set(if up {
            1.0
        } else {
            0.0
        });
    }

    /// Drops the cached keys of every tenant `url` serves.
    fn reset(&self, url: &str) {
        let tenants: Vec<String> = self
            .lock()
            .get(url)
            .map(|w| w.tenants.iter().cloned().collect())
            .unwrap_or_default();
        for tenant in &tenants {
            self.keys.forget_tenant(tenant);
        }
        tracing::info!(holder = %url, tenants = tenants.len(), "revocation stream reset: cached keys of the holder's tenants dropped");
    }

    /// Applies one answer: a reset first, then each event.
    fn apply(&self, url: &str, answer: &RevocationsResponse) {
        if answer.reset {
            self.reset(url);
        }
        for event in &answer.events {
            let dropped = self.keys.forget_tenant(&event.tenant);
            let kind = match event.kind {
                RevocationKind::Shred => "shred",
                RevocationKind::Handover => "handover",
                RevocationKind::Policy => "policy",
                RevocationKind::Grant => "grant",
            };
            metrics::counter!("treuhand_revocation_events_total", "kind" => kind).increment(1);
            tracing::info!(
                holder = %url,
                tenant = %event.tenant,
                key_version = ?event.key_version,
                kind,
                seq = event.seq,
                dropped,
                "revocation: cached keys of the tenant dropped"
            );
        }
    }
}

/// The revocation watchers of one proxy: one task per holder URL. Dropping it stops them.
pub struct Revocations {
    shared: Arc<Shared>,
    wait: Duration,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("holders", &self.shared.lock().len())
            .field("wait", &self.wait)
            .finish()
    }
}

impl Revocations {
    /// Watchers that drop keys from `keys`; none run until [`Revocations::update`].
    pub fn new(keys: Arc<KeyService>) -> Self {
        Self {
            shared: Arc::new(Shared {
                keys,
                holders: Mutex::new(HashMap::new()),
            }),
            wait: WAIT,
        }
    }

    /// Replaces the long-poll wait (tests).
    #[must_use]
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Watches exactly the holders in `served` (URL → tenants it serves, see [`holders_of`]):
    /// starts a task for each new URL `feed` has a feed for, stops those of URLs that are
    /// gone, and updates which tenants each serves. Must run inside a Tokio runtime.
    pub fn update(
        &self,
        served: BTreeMap<String, BTreeSet<String>>,
        feed: &dyn Fn(&str) -> Option<Arc<dyn RevocationFeed>>,
    ) {
        let mut holders = self.shared.lock();
        holders.retain(|url, w| {
            let keep = served.contains_key(url);
            if !keep {
                w.task.abort();
                metrics::gauge!("treuhand_revocation_stream_up", "holder" => url.clone()).set(0.0);
                tracing::info!(holder = %url, "revocation stream closed: the holder is no longer registered");
            }
            keep
        });
        for (url, tenants) in served {
            if let Some(w) = holders.get_mut(&url) {
                w.tenants = tenants;
                continue;
            }
            let Some(feed) = feed(&url) else {
                continue;
            };
            let task = tokio::spawn(watch(
                Arc::downgrade(&self.shared),
                url.clone(),
                feed,
                self.wait,
            ));
            metrics::gauge!("treuhand_revocation_stream_up", "holder" => url.clone()).set(0.0);
            holders.insert(
                url,
                Watched {
                    tenants,
                    up: false,
                    task,
                },
            );
        }
        self.shared.publish(&holders);
    }

    /// Stops every watcher.
    pub fn stop(&self) {
        let mut holders = self.shared.lock();
        for (_, w) in holders.drain() {
            w.task.abort();
        }
        self.shared.publish(&holders);
    }

    /// URLs whose stream is up (tests, status).
    pub fn up(&self) -> Vec<String> {
        let holders = self.shared.lock();
        let mut up: Vec<String> = holders
            .iter()
            .filter(|(_, w)| w.up)
            .map(|(u, _)| u.clone())
            .collect();
        up.sort();
        up
    }
}

impl Drop for Revocations {
    fn drop(&mut self) {
        for w in self.shared.lock().values() {
            w.task.abort();
        }
    }
}

/// One holder's watcher: polls until aborted (or the [`Revocations`] is gone).
async fn watch(
    shared: std::sync::Weak<Shared>,
    url: String,
    feed: Arc<dyn RevocationFeed>,
    wait: Duration,
) {
    let mut epoch = String::new();
    let mut after = 0u64;
    let mut backoff = MIN_BACKOFF;
    let mut up = false;
    loop {
        let started = Instant::now();
        let answer = feed.next(&epoch, after, wait).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match answer {
            Ok(answer) => {
                // Missed events (or a reset) are applied before the stream counts as up, so
                // the configured TTL never covers a key revoked while it was down.
                shared.apply(&url, &answer);
                if !up {
                    up = true;
                    shared.set_up(&url, true);
                    tracing::info!(holder = %url, "revocation stream connected");
                }
                epoch = answer.epoch;
                after = answer.seq;
                backoff = MIN_BACKOFF;
                drop(shared);
                if let Some(rest) = MIN_POLL_SPACING.checked_sub(started.elapsed()) {
                    tokio::time::sleep(rest).await;
                }
            }
            Err(e) => {
                if up {
                    up = false;
                    shared.set_up(&url, false);
                    tracing::info!(holder = %url, error = %e, "revocation stream lost; cached keys of its tenants now live at most the fallback TTL");
                } else {
                    tracing::debug!(holder = %url, error = %e, "revocation stream not connected");
                }
                drop(shared);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trustee::wire::RevocationEvent;
    use tokio::sync::mpsc;

    type Answer = Result<RevocationsResponse, crate::trustee::Error>;

    /// A feed that answers what the test sends, and waits while it sends nothing.
    struct ChannelFeed(tokio::sync::Mutex<mpsc::UnboundedReceiver<Answer>>);

    #[async_trait::async_trait]
    impl RevocationFeed for ChannelFeed {
        async fn next(&self, _: &str, _: u64, _: Duration) -> Answer {
            match self.0.lock().await.recv().await {
                Some(answer) => answer,
                None => std::future::pending().await,
            }
        }
    }

    fn feed() -> (mpsc::UnboundedSender<Answer>, Arc<dyn RevocationFeed>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Arc::new(ChannelFeed(tokio::sync::Mutex::new(rx))))
    }

    fn answer(reset: bool, events: &[(&str, RevocationKind)]) -> Answer {
        Ok(RevocationsResponse {
            epoch: "e1".into(),
            seq: events.len() as u64,
            reset,
            events: events
                .iter()
                .enumerate()
                .map(|(i, (tenant, kind))| RevocationEvent {
                    seq: i as u64 + 1,
                    tenant: (*tenant).into(),
                    key_version: Some(1),
                    kind: *kind,
                })
                .collect(),
        })
    }

    fn served(pairs: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        pairs
            .iter()
            .map(|(url, tenants)| {
                (
                    (*url).to_owned(),
                    tenants.iter().map(|t| (*t).to_owned()).collect(),
                )
            })
            .collect()
    }

    /// Waits (up to 10 s, no timing assertion) until `done` holds.
    async fn eventually(what: &str, done: impl Fn() -> bool) {
        for _ in 0..1000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never happened: {what}");
    }

    /// A key service with an hour's TTL and `fallback`, caching version 1 of each tenant.
    fn keys(fallback: Duration, tenants: &[&str]) -> Arc<KeyService> {
        let keys = Arc::new(
            KeyService::new(Duration::from_secs(3600), 64, Duration::from_secs(1))
                .with_fallback_ttl(fallback),
        );
        for t in tenants {
            keys.cache_for_test(t, 1);
        }
        keys
    }

    /// Watches holder `h1` serving `acme` and `globex` and brings its stream up.
    async fn watching(keys: &Arc<KeyService>) -> (Revocations, mpsc::UnboundedSender<Answer>) {
        let (tx, feed) = feed();
        let revocations = Revocations::new(keys.clone());
        revocations.update(served(&[("https://h1", &["acme", "globex"])]), &|_| {
            Some(feed.clone())
        });
        tx.send(answer(false, &[])).unwrap();
        eventually("stream up", || revocations.up() == ["https://h1"]).await;
        (revocations, tx)
    }

    #[tokio::test]
    async fn a_shred_event_drops_the_tenants_cached_keys() {
        let keys = keys(Duration::from_secs(1), &[]);
        let (_revocations, tx) = watching(&keys).await;
        keys.cache_for_test("acme", 1);
        keys.cache_for_test("acme", 2);
        keys.cache_for_test("globex", 1);
        assert!(keys.serves_for_test("acme", 1));
        tx.send(answer(false, &[("acme", RevocationKind::Shred)]))
            .unwrap();
        eventually("acme's keys dropped", || {
            !keys.serves_for_test("acme", 1) && !keys.serves_for_test("acme", 2)
        })
        .await;
        assert_eq!(keys.cached(), 1, "only acme's keys went");
        assert!(keys.serves_for_test("globex", 1));
    }

    #[tokio::test]
    async fn a_reset_drops_every_tenant_of_that_holder() {
        let keys = keys(Duration::from_secs(1), &[]);
        let (_revocations, tx) = watching(&keys).await;
        for t in ["acme", "globex", "initech"] {
            keys.cache_for_test(t, 1);
        }
        tx.send(answer(true, &[])).unwrap();
        eventually("the holder's tenants dropped", || keys.cached() == 1).await;
        assert!(!keys.serves_for_test("acme", 1));
        assert!(!keys.serves_for_test("globex", 1));
        assert!(
            keys.serves_for_test("initech", 1),
            "a tenant of another holder stays"
        );
    }

    #[tokio::test]
    async fn a_lost_stream_caps_the_ttl_at_the_fallback() {
        // A zero fallback: while the stream is down, nothing cached is served at all (and an
        // entry past it is dropped), so the test needs no clock.
        let keys = keys(Duration::ZERO, &["initech"]);
        let (tx, feed) = feed();
        let revocations = Revocations::new(keys.clone());
        revocations.update(served(&[("https://h1", &["acme"])]), &|_| {
            Some(feed.clone())
        });
        // Not connected yet: capped.
        keys.cache_for_test("acme", 1);
        assert!(!keys.serves_for_test("acme", 1));
        assert!(
            keys.serves_for_test("initech", 1),
            "a tenant of no watched holder keeps the configured TTL"
        );
        tx.send(answer(false, &[])).unwrap();
        eventually("stream up", || revocations.up() == ["https://h1"]).await;
        keys.cache_for_test("acme", 1);
        assert!(
            keys.serves_for_test("acme", 1),
            "the configured TTL once up"
        );
        // The stream breaks: capped again.
        tx.send(Err(crate::trustee::Error::Unreachable("reset".into())))
            .unwrap();
        eventually("capped while down", || !keys.serves_for_test("acme", 1)).await;
        assert!(revocations.up().is_empty());
        keys.cache_for_test("acme", 1);
        assert!(!keys.serves_for_test("acme", 1));
        // Back: the configured TTL again.
        tx.send(answer(false, &[])).unwrap();
        eventually("up again", || revocations.up() == ["https://h1"]).await;
        keys.cache_for_test("acme", 1);
        assert!(keys.serves_for_test("acme", 1));
        // A holder that is no longer registered is no longer watched.
        revocations.update(BTreeMap::new(), &|_| Some(feed.clone()));
        assert!(revocations.up().is_empty());
    }

    #[test]
    fn every_trustee_and_the_customer_holder_of_a_tenant_are_watched() {
        use crate::crypto::KeyId;
        use crate::crypto::scheme::{self, SplitOptions};
        use crate::proxy::config::TrusteeRef;
        let key = KeyId::new("acme", 1).unwrap();
        let (metadata, _) =
            scheme::split(&key, 3, &["customer", "t1", "t2"], SplitOptions::default()).unwrap();
        let registration = TenantConfig {
            access_key_id: "AKACME".into(),
            secret_access_key: Some("secret-acme-0123".to_owned().into()),
            customer_holder: "customer".into(),
            customer_url: Some("https://holder".into()),
            trustees: ["t1", "t2"]
                .iter()
                .map(|t| TrusteeRef {
                    holder: (*t).into(),
                    url: format!("https://{t}"),
                })
                .collect(),
            metadata,
            previous: Vec::new(),
        };
        let served = holders_of(&[registration]);
        let urls: Vec<&str> = served.keys().map(String::as_str).collect();
        assert_eq!(urls, ["https://holder", "https://t1", "https://t2"]);
        assert!(served.values().all(|t| t.contains("acme")));
    }
}
