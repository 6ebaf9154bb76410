//! The revocation stream (`GET /v1/revocations`): an in-memory ring of the events that make a
//! proxy's cached key material stale (shred, hand-over, policy change, grant revoke/deny), long
//! polled by the proxies.
//!
//! The writer thread publishes a batch's events only after the batch committed, so a proxy
//! never hears of a change that is not durable. Each event carries the proxy names the
//! tenant's policy allowed before or after the change, decided at publish time, so a proxy
//! sees only the tenants it could ever be served; a proxy that was just removed from the policy
//! still hears about its own removal.
//!
//! The ring lives in memory only: a new trustee process has a new random epoch, and a caller
//! with another epoch (or one that fell behind the ring) gets `reset: true` and resyncs. The
//! long poll waits on a `watch` channel of the last sequence number, never holding the ring's
//! lock across an await.

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use super::Trustee;
use crate::tls::{PeerIdentity, Role};
use crate::trustee::Error;
use crate::trustee::policy::Denial;
use crate::trustee::wire::{RevocationEvent, RevocationKind, RevocationsResponse};

/// Events kept in memory; a caller further behind gets a reset.
pub(super) const RING_CAPACITY: usize = 4096;
/// Longest wait of one long poll.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// An event the writer thread collects during a batch, published once the batch committed.
#[derive(Debug, Clone)]
pub(super) struct PendingEvent {
    pub(super) tenant: String,
    pub(super) key_version: Option<u32>,
    pub(super) kind: RevocationKind,
    /// Proxy names that may see it (allowed by the tenant's policy before or after).
    pub(super) proxies: BTreeSet<String>,
}

struct Stored {
    event: RevocationEvent,
    proxies: BTreeSet<String>,
}

#[derive(Default)]
struct Ring {
    events: VecDeque<Stored>,
    last_seq: u64,
}

/// The stream of one trustee process: its epoch, the ring and the wake-up channel.
pub(super) struct Revocations {
    epoch: String,
    ring: Mutex<Ring>,
    last: watch::Sender<u64>,
}

/// What one look at the ring gives a caller.
enum Look {
    /// The caller must resync from `seq`.
    Reset(u64),
    /// Events for the caller after its position (possibly none), and the last seq.
    Events(u64, Vec<RevocationEvent>),
}

impl Revocations {
    /// A new stream with a random epoch (32 hex digits).
    pub(super) fn new() -> Result<Self, Error> {
        let mut bytes = [0u8; 16];
        crate::crypto::envelope::fill_random(&mut bytes)?;
        let (last, _) = watch::channel(0);
        Ok(Self {
            epoch: hex::encode(bytes),
            ring: Mutex::new(Ring::default()),
            last,
        })
    }

    /// Appends committed events and wakes every waiting poll.
    pub(super) fn publish(&self, pending: Vec<PendingEvent>) {
        if pending.is_empty() {
            return;
        }
        let last_seq = {
            let Ok(mut ring) = self.ring.lock() else {
                // A panic while holding the lock; nothing in it can be trusted to be in
                // order, so the stream stops growing and callers time out into short TTLs.
                tracing::error!("revocation ring lock poisoned; event dropped");
                return;
            };
            for event in pending {
                ring.last_seq += 1;
                let seq = ring.last_seq;
                ring.events.push_back(Stored {
                    event: RevocationEvent {
                        seq,
                        tenant: event.tenant,
                        key_version: event.key_version,
                        kind: event.kind,
                    },
                    proxies: event.proxies,
                });
                while ring.events.len() > RING_CAPACITY {
                    ring.events.pop_front();
                }
            }
            ring.last_seq
        };
        self.last.send_replace(last_seq);
    }

    fn look(&self, proxy: &str, epoch: &str, after: u64) -> Look {
        let Ok(ring) = self.ring.lock() else {
            return Look::Reset(0);
        };
        if epoch != self.epoch || after > ring.last_seq {
            return Look::Reset(ring.last_seq);
        }
        // Events after `after` must all still be kept: the oldest kept one must be at most
        // `after + 1` (or nothing was published after `after`).
        let oldest = ring
            .events
            .front()
            .map_or(ring.last_seq + 1, |e| e.event.seq);
        if after.saturating_add(1) < oldest && after < ring.last_seq {
            return Look::Reset(ring.last_seq);
        }
        let events = ring
            .events
            .iter()
            .filter(|e| e.event.seq > after && e.proxies.contains(proxy))
            .map(|e| e.event.clone())
            .collect();
        Look::Events(ring.last_seq, events)
    }
}

impl Trustee {
    /// Long-polls the revocation events after `after` of stream `epoch` for the calling proxy:
    /// answers at once when there are some (or the caller must reset), otherwise when one
    /// arrives, after `wait` (at most [`MAX_WAIT`]), or when `closing` completes (the server
    /// shuts down), with no events.
    ///
    /// # Errors
    /// [`Error::Denied`] (`wrong_role`) for a caller that is not a proxy.
    pub async fn revocations(
        &self,
        caller: PeerIdentity,
        epoch: String,
        after: u64,
        wait: Duration,
        closing: impl Future<Output = ()>,
    ) -> Result<RevocationsResponse, Error> {
        if caller.role != Role::Proxy {
            return Err(Error::Denied(Denial::WrongRole));
        }
        let stream = &self.revocations;
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        let mut woken = stream.last.subscribe();
        let mut after = after;
        tokio::pin!(closing);
        loop {
            // Marked seen before looking, so an event published after the look wakes us.
            woken.borrow_and_update();
            let answer = |seq, reset, events| RevocationsResponse {
                epoch: stream.epoch.clone(),
                seq,
                reset,
                events,
            };
            let last = match stream.look(&caller.name, &epoch, after) {
                Look::Reset(seq) => return Ok(answer(seq, true, Vec::new())),
                Look::Events(seq, events) if !events.is_empty() => {
                    return Ok(answer(seq, false, events));
                }
                Look::Events(seq, _) => seq,
            };
            // Nothing for this caller up to `last`: wait for what comes after it.
            after = last;
            let timed_out = tokio::select! {
                changed = woken.changed() => changed.is_err(),
                () = tokio::time::sleep_until(deadline) => true,
                () = &mut closing => true,
            };
            if timed_out {
                return Ok(answer(last, false, Vec::new()));
            }
        }
    }

    /// The epoch of this process's revocation stream.
    pub fn revocation_epoch(&self) -> &str {
        &self.revocations.epoch
    }

    /// How many revocation long polls are waiting now (for metrics and tests).
    pub fn revocation_waiters(&self) -> usize {
        self.revocations.last.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event(tenant: &str, proxies: &[&str]) -> PendingEvent {
        PendingEvent {
            tenant: tenant.into(),
            key_version: Some(1),
            kind: RevocationKind::Shred,
            proxies: proxies.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn a_caller_behind_the_ring_is_reset_and_one_at_its_edge_is_not() {
        let stream = Revocations::new().unwrap();
        let epoch = stream.epoch.clone();
        stream.publish(
            (0..RING_CAPACITY + 10)
                .map(|_| event("acme", &["p"]))
                .collect(),
        );
        // Kept: seq 11..=4106. After 10 the next one (11) is kept; after 9 it is not.
        assert!(
            matches!(stream.look("p", &epoch, 10), Look::Events(_, e) if e.len() == RING_CAPACITY)
        );
        assert!(matches!(stream.look("p", &epoch, 9), Look::Reset(4106)));
        assert!(matches!(stream.look("p", "", 4106), Look::Reset(4106)));
        assert!(matches!(stream.look("p", &epoch, 4107), Look::Reset(4106)));
        assert!(matches!(stream.look("p", &epoch, 4106), Look::Events(4106, e) if e.is_empty()));
    }

    #[test]
    fn events_reach_only_the_proxies_they_name() {
        let stream = Revocations::new().unwrap();
        let epoch = stream.epoch.clone();
        stream.publish(vec![event("acme", &["p"]), event("beta", &["q"])]);
        let Look::Events(2, events) = stream.look("q", &epoch, 0) else {
            panic!("no events")
        };
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].tenant, "beta");
        assert_eq!(events[0].seq, 2);
        assert!(stream.epoch.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
