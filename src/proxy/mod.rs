//! `treuhand proxy`: the operator-side S3 data path.
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | `proxy.toml` and the tenant registration files |
//! | [`keys`] | key release from trustees / the customer's holder, combine, bounded key cache |
//! | [`registry`] | the tenant set, swapped as a whole when `tenants_dir` changes or on `SIGHUP` |
//! | [`revocation`] | revocation streams from every key holder: drop a revoked tenant's cached keys at once |
//! | [`s3`] | the S3 operations (s3s), encrypting and decrypting with [`crate::format`]; one file per job |
//! | [`listing`] | one page of a bucket listing (markers, delimiter, `encoding-type=url`), pure |
//! | [`reaper`] | removes abandoned multipart staging (at startup and on a timer) |
//! | [`error`] | [`error::ProxyError`] and the one error → S3 status/code mapping |
//! | [`server`] | TLS accept loop (handshake in the connection task), connection limits, `/metrics` |
//! | [`guard`] | requests refused before s3s: SigV2, POST forms, presigned URLs over a week |
//! | [`strict`] | strict tenants: the customer's signature checked by its holder before s3s |
//! | [`cli`] | `treuhand proxy --config FILE` |
//!
//! SigV4 is verified by s3s against per-tenant access keys ([`Auth`]); anonymous requests are
//! refused with 403 `AccessDenied` by [`SignedOnly`], which s3s runs for every operation
//! because auth is always configured.
//! SigV2, browser form uploads and presigned URLs valid for more than a week are refused before
//! s3s sees them ([`guard`]). A strict tenant's requests are checked by its holder and
//! re-signed with the proxy's in-memory key before s3s sees them ([`strict`], docs/strict.md).

pub mod cli;
pub mod config;
pub mod error;
pub mod guard;
pub mod keys;
pub mod listing;
pub mod reaper;
pub mod registry;
pub mod revocation;
pub mod s3;
pub mod server;
pub mod sources;
pub mod strict;
pub mod sweep;

/// The S3 layer's path before it became a folder ([`s3`]); kept so callers of
/// `proxy::service::...` keep compiling.
pub use self::s3 as service;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use s3s::auth::{S3Auth, SecretKey};
use s3s::service::S3ServiceBuilder;

use self::config::{ConfigError, ProxyConfig, TenantConfig};
use self::keys::{CustomerShare, Holder, KeyService, ShareSource, TenantKeys};
use self::registry::Tenant;
use self::registry::{DirWatch, RegistrationDigest, Registry, ReloadSummary};
use self::revocation::{RevocationFeed, Revocations};
use self::s3::Proxy;
use crate::storage::Storage;

/// Per-tenant SigV4 credentials, read from the current tenant set on every request.
pub struct Auth {
    tenants: Arc<Registry>,
    /// The key strict tenants' requests are re-signed with once their holder accepted them.
    strict: Arc<strict::InternalKey>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("access_keys", &self.tenants.len())
            .finish()
    }
}

#[async_trait::async_trait]
impl S3Auth for Auth {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<SecretKey> {
        match self.tenants.secret(access_key) {
            Some(secret) => Ok(SecretKey::from(secret.as_str())),
            // Only `strict::Gate` signs with this key, after the tenant's holder said yes.
            None if self
                .tenants
                .tenant(access_key)
                .is_some_and(|t| t.keys.metadata.strict) =>
            {
                Ok(SecretKey::from(self.strict.expose_secret()))
            }
            None => Err(s3s::s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
        }
    }
}

/// Who may run an operation: anyone whose signature s3s verified ([`Auth`]); nobody else.
/// s3s' default check does the same but says "Signature is required"; S3 answers an
/// anonymous request with `AccessDenied` "Access Denied", on every operation and whether or
/// not the bucket exists (so an anonymous caller learns nothing about bucket names).
#[derive(Debug)]
pub struct SignedOnly;

#[async_trait::async_trait]
impl s3s::access::S3Access for SignedOnly {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        match cx.credentials() {
            Some(_) => Ok(()),
            None => Err(s3s::s3_error!(AccessDenied, "Access Denied")),
        }
    }
}

/// Builds the share source for a trustee or holder URL.
pub trait SourceFactory: Send + Sync {
    /// A share source talking to `url`.
    ///
    /// # Errors
    /// [`ConfigError`] if the URL or TLS setup is unusable.
    fn source(&self, url: &str) -> Result<Arc<dyn ShareSource>, ConfigError>;

    /// The revocation event stream of the holder at `url`, if it has one. Without one the
    /// holder's tenants are not watched ([`revocation`]) and keep the configured cache TTL.
    fn feed(&self, url: &str) -> Option<Arc<dyn RevocationFeed>> {
        let _ = url;
        None
    }
}

/// A built proxy: the S3 service plus handles tests and the CLI need.
pub struct Built {
    /// The S3 HTTP service, behind the strict-tenant gate.
    pub service: server::ProxyService,
    /// The key service (cache inspection in tests).
    pub keys: Arc<KeyService>,
    /// The tenant set, for [`reload`].
    pub tenants: Arc<Registry>,
}

/// Builds the S3 service from configuration and tenant registrations.
///
/// # Errors
/// [`ConfigError`].
pub fn build(
    config: &ProxyConfig,
    tenants: &[TenantConfig],
    storage: Storage,
    sources: &dyn SourceFactory,
) -> Result<Built, ConfigError> {
    let keys = Arc::new(
        KeyService::new(
            Duration::from_secs(config.cache.ttl_secs),
            config.cache.max_entries,
            Duration::from_millis(config.release_timeout_ms),
        )
        .with_fallback_ttl(Duration::from_secs(config.cache.fallback_ttl_secs)),
    );
    let registry = Arc::new(Registry::new(Vec::new()));
    registry.replace_digested(build_tenants(tenants, sources)?, digests(tenants));
    let proxy = Proxy::new(registry.clone(), storage, keys.clone())
        .with_passthrough(config.danger_passthrough_no_encryption)
        .with_multipart(config.multipart);
    let internal =
        Arc::new(strict::InternalKey::generate().map_err(|e| ConfigError(format!("random: {e}")))?);
    let gate = Arc::new(strict::Gate::new(
        registry.clone(),
        internal.clone(),
        Duration::from_millis(config.release_timeout_ms),
    ));
    let mut builder = S3ServiceBuilder::new(proxy);
    builder.set_auth(Auth {
        tenants: registry.clone(),
        strict: internal,
    });
    builder.set_access(SignedOnly);
    Ok(Built {
        service: server::ProxyService::new(builder.build(), gate),
        keys,
        tenants: registry,
    })
}

/// Replaces the running tenant set with `tenants`, all or nothing, and drops every cached key
/// (object KEKs, legacy tenant KEKs), so no key outlives its tenant's registration.
///
/// # Errors
/// [`ConfigError`] if any registration is unusable; the running set is then unchanged.
pub fn reload(
    registry: &Registry,
    keys: &KeyService,
    tenants: &[TenantConfig],
    sources: &dyn SourceFactory,
) -> Result<ReloadSummary, ConfigError> {
    let next = build_tenants(tenants, sources)?;
    let summary = registry.replace_digested(next, digests(tenants));
    keys.clear();
    Ok(summary)
}

/// As [`reload`], but drops only the cached keys of tenants that are gone or whose
/// registration changed (key versions, holders, URLs: [`registration_digest`]); the others
/// keep their warm keys. What the proxy does when it notices a change in `tenants_dir`.
///
/// # Errors
/// [`ConfigError`] if any registration is unusable; the running set is then unchanged.
pub fn reload_changed(
    registry: &Registry,
    keys: &KeyService,
    tenants: &[TenantConfig],
    sources: &dyn SourceFactory,
) -> Result<ReloadSummary, ConfigError> {
    let next = build_tenants(tenants, sources)?;
    let summary = registry.replace_digested(next, digests(tenants));
    for tenant in summary.removed.iter().chain(&summary.changed) {
        keys.forget_tenant(tenant);
    }
    Ok(summary)
}

/// The digest of what in a registration decides the tenant's keys: every key version's
/// metadata, the customer holder and its URL, the trustees and their URLs. The S3 credentials
/// are not in it (they decide who may sign, not which keys are right).
pub fn registration_digest(t: &TenantConfig) -> RegistrationDigest {
    let relevant = serde_json::json!({
        "customer_holder": t.customer_holder,
        "customer_url": t.customer_url,
        "trustees": t.trustees,
        "metadata": t.metadata,
        "previous": t.previous,
    });
    let mut out = [0u8; 32];
    // Serializing plain public data cannot fail; an empty encoding would still be a digest.
    let bytes = serde_json::to_vec(&relevant).unwrap_or_default();
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref());
    out
}

fn digests(tenants: &[TenantConfig]) -> std::collections::HashMap<String, RegistrationDigest> {
    tenants
        .iter()
        .map(|t| (t.metadata.tenant.clone(), registration_digest(t)))
        .collect()
}

/// The service-side tenants (with their SigV4 secrets) for the registrations.
fn build_tenants(
    tenants: &[TenantConfig],
    sources: &dyn SourceFactory,
) -> Result<Vec<(Tenant, Option<String>)>, ConfigError> {
    let mut built = Vec::new();
    for t in tenants {
        t.validate()?;
        if built.iter().any(|(b, _): &(Tenant, Option<String>)| {
            b.id == t.metadata.tenant || b.access_key_id == t.access_key_id
        }) {
            return Err(ConfigError(format!(
                "tenant {}: duplicate tenant or access key id",
                t.metadata.tenant
            )));
        }
        let customer = match &t.customer_url {
            None => CustomerShare::SseC {
                holder: t.customer_holder.clone(),
            },
            Some(url) => CustomerShare::Holder(Holder {
                name: t.customer_holder.clone(),
                source: sources.source(url)?,
            }),
        };
        let mut versions = t
            .versions()
            .map(|metadata| {
                let key_id = metadata.key_id().map_err(|e| ConfigError(e.to_string()))?;
                let trustees = t
                    .trustees_of(metadata)
                    .map(|tr| {
                        Ok(Holder {
                            name: tr.holder.clone(),
                            source: sources.source(&tr.url)?,
                        })
                    })
                    .collect::<Result<Vec<_>, ConfigError>>()?;
                Ok(TenantKeys {
                    metadata: metadata.clone(),
                    key_id,
                    customer: customer.clone(),
                    trustees,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?
            .into_iter();
        let Some(current) = versions.next() else {
            return Err(ConfigError(format!(
                "tenant {}: no key version",
                t.metadata.tenant
            )));
        };
        let tenant = Tenant {
            id: t.metadata.tenant.clone(),
            access_key_id: t.access_key_id.clone(),
            keys: current,
            older: versions.collect(),
        };
        built.push((
            tenant,
            t.secret_access_key
                .as_ref()
                .map(|s| s.expose_secret().to_owned()),
        ));
    }
    Ok(built)
}

/// What a reload is for: how much of the key cache it drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// The operator sent `SIGHUP`: every cached key goes (an explicit flush).
    Sighup,
    /// `tenants_dir` changed: only the keys of changed or removed tenants go.
    DirChanged,
}

/// The background jobs that follow the registrations: the tenant set, and the revocation
/// watchers of its holders.
struct Follow<'a> {
    config: &'a ProxyConfig,
    built: &'a Built,
    sources: &'a dyn SourceFactory,
    revocations: &'a Revocations,
}

impl Follow<'_> {
    /// Re-reads `tenants_dir` and applies it, logging what changed or why nothing did.
    fn reload(&self, trigger: Trigger) {
        let label = match trigger {
            Trigger::Sighup => "SIGHUP",
            Trigger::DirChanged => "tenants_dir changed",
        };
        let result = self.config.load_tenants().and_then(|tenants| {
            let summary = match trigger {
                Trigger::Sighup => reload(
                    &self.built.tenants,
                    &self.built.keys,
                    &tenants,
                    self.sources,
                ),
                Trigger::DirChanged => reload_changed(
                    &self.built.tenants,
                    &self.built.keys,
                    &tenants,
                    self.sources,
                ),
            }?;
            self.watch_holders(&tenants);
            Ok(summary)
        });
        match result {
            Ok(summary) => tracing::info!(
                added = ?summary.added,
                removed = ?summary.removed,
                changed = ?summary.changed,
                kept = summary.kept,
                "{label}: tenants reloaded; {}",
                match trigger {
                    Trigger::Sighup => "every cached key dropped",
                    Trigger::DirChanged => "cached keys of changed and removed tenants dropped",
                }
            ),
            // `tenant reload failed` is what operators (and tests) look for.
            Err(e) => tracing::error!(
                error = %e,
                "{label}: tenant reload failed; the running tenants are unchanged"
            ),
        }
    }

    /// Watches the revocation streams of exactly the holders of `tenants`.
    fn watch_holders(&self, tenants: &[TenantConfig]) {
        self.revocations
            .update(revocation::holders_of(tenants), &|url| {
                self.sources.feed(url)
            });
    }

    /// Reloads on every `SIGHUP`. Pends forever (also where signals are unavailable).
    async fn on_sighup(&self) {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reloads follow tenants_dir only");
            return std::future::pending().await;
        };
        while hangups.recv().await.is_some() {
            self.reload(Trigger::Sighup);
        }
        std::future::pending().await
    }

    /// Reloads when `tenants_dir` changed, checked about once a second (`treuhand tenant
    /// rotate`, `shred` and `handover` rewrite a registration and expect it to take effect
    /// without a restart). A change that does not parse is logged once, and the next change
    /// is tried again. Pends forever.
    async fn on_change(&self, mut watch: DirWatch) {
        let mut tick = tokio::time::interval(DIR_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if watch.changed() {
                self.reload(Trigger::DirChanged);
            }
        }
    }
}

/// How often the proxy looks at `tenants_dir`.
const DIR_POLL: Duration = Duration::from_secs(1);

/// Everything [`run`] needs besides the config.
pub struct Listeners {
    /// The S3 HTTPS listener.
    pub s3: tokio::net::TcpListener,
    /// The `/metrics` listener, if any.
    pub metrics: Option<tokio::net::TcpListener>,
}

/// Runs the proxy until `shutdown` resolves.
///
/// # Errors
/// [`ConfigError`] for bad configuration, TLS files or storage.
pub async fn run(
    config: ProxyConfig,
    listeners: Listeners,
    sources: &dyn SourceFactory,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ConfigError> {
    // Taken before the registrations are read, so a change during the read is seen.
    let watch = DirWatch::new(&config.tenants_dir);
    let tenants = config.load_tenants()?;
    let storage = Storage::from_config(&config.storage).map_err(|e| ConfigError(e.to_string()))?;
    Storage::ensure_bucket(&config.storage)
        .await
        .map_err(|e| ConfigError(e.to_string()))?;
    let built = build(&config, &tenants, storage, sources)?;
    let tls = crate::tls::server_config(&config.tls.cert, &config.tls.key, None)
        .map_err(|e| ConfigError(format!("S3 endpoint TLS: {e}")))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let metrics_task = listeners.metrics.map(|listener| {
        let mut rx = stop_rx.clone();
        tokio::spawn(server::serve_metrics(listener, async move {
            let _ = rx.wait_for(|v| *v).await;
        }))
    });
    // Make sure the recorder exists even without a metrics listener (cheap, idempotent).
    let _ = server::prometheus();
    let addr: Option<SocketAddr> = listeners.s3.local_addr().ok();
    tracing::info!(?addr, tenants = tenants.len(), "proxy listening");
    let serve = server::serve_with_limits(
        listeners.s3,
        tls,
        built.service.clone(),
        config.limits,
        async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        },
    );
    let revocations = Revocations::new(built.keys.clone());
    let follow = Follow {
        config: &config,
        built: &built,
        sources,
        revocations: &revocations,
    };
    follow.watch_holders(&tenants);
    // A change in tenants_dir, or SIGHUP, reloads. The reload loops never end on their own,
    // so the select ends when serving ends (after shutdown).
    tokio::select! {
        () = serve => {}
        () = follow.on_sighup() => {}
        () = follow.on_change(watch) => {}
    }
    revocations.stop();
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    Ok(())
}
