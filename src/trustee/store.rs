//! Durable storage for the trustee: the [`Store`] trait and its embedded SQLite implementation.
//!
//! The engine ([`super::engine`]) is the only writer. It hands the store one batch of
//! [`Mutation`]s per group commit; [`Store::commit`] must make the whole batch durable
//! atomically before returning `Ok`, because only then are the callers answered. A replicated
//! database (PostgreSQL) can implement the same trait.
//!
//! SQLite runs in WAL mode with `synchronous = FULL`, so a commit has been fsynced when it
//! returns; a crash at any moment leaves either the whole batch or none of it. `secure_delete`
//! overwrites freed content with zeros, and [`Store::erase_freed`] checkpoints and truncates
//! the WAL after a shred, so the sealed share bytes leave the files.
//!
//! Shares, and the S3 credentials of strict tenants, are stored only sealed (see
//! [`crate::crypto::seal`]); this module never sees them in clear.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::de::DeserializeOwned;

use super::Error;
use super::audit::AuditEntry;
use super::wire::Grant;
use super::wire::Policy;
use crate::crypto::shamir::KeyMetadata;

/// One enrolled tenant key version.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    /// Tenant id.
    pub tenant: String,
    /// Key version.
    pub key_version: u32,
    /// The holder whose share this is.
    pub holder: String,
    /// Public metadata.
    pub metadata: KeyMetadata,
    /// The sealed share; `None` once shredded.
    pub sealed: Option<Vec<u8>>,
    /// When it was shredded (Unix ms).
    pub shredded_ms: Option<u64>,
    /// When it was deposited (Unix ms; for keys deposited before this was kept, the time of
    /// their deposit entry, or 0 if that cannot be found).
    pub deposited_ms: u64,
    /// When the share was first handed to the customer admin for a re-deal (Unix ms); from
    /// then on it is used for nothing but a repeated hand-over and the shred.
    pub handed_over_ms: Option<u64>,
}

/// Everything the engine keeps in memory, loaded at start.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Enrolled keys.
    pub keys: Vec<KeyRecord>,
    /// Policies by tenant.
    pub policies: Vec<(String, Policy)>,
    /// All grants.
    pub grants: Vec<Grant>,
    /// The last entry of each tenant's chain.
    pub heads: Vec<AuditEntry>,
    /// The sealed S3 credential of each strict tenant whose signatures this holder checks.
    pub credentials: Vec<(String, Vec<u8>)>,
    /// The chains were written before treuhand signed chain heads: the engine refuses to start
    /// until [`super::engine::migrate_audit`] has signed them.
    pub unsigned_heads: bool,
}

/// One change, applied inside a group commit.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Enroll a key (new row).
    InsertKey(KeyRecord),
    /// Set a tenant's policy.
    PutPolicy {
        /// Tenant id.
        tenant: String,
        /// The policy.
        policy: Policy,
    },
    /// Insert or update a grant.
    PutGrant(Grant),
    /// Destroy a share.
    Shred {
        /// Tenant id.
        tenant: String,
        /// Key version.
        key_version: u32,
        /// When.
        time_ms: u64,
    },
    /// Append an audit entry.
    Append(AuditEntry),
    /// Mark a share as handed over (`handover`).
    HandOver {
        /// Tenant id.
        tenant: String,
        /// Key version.
        key_version: u32,
        /// When.
        time_ms: u64,
    },
    /// Replace a key version's public metadata (after a hand-over).
    PutMetadata {
        /// Tenant id.
        tenant: String,
        /// Key version.
        key_version: u32,
        /// The new metadata.
        metadata: KeyMetadata,
    },
    /// Deposit (or replace) a strict tenant's sealed S3 credential.
    PutCredential {
        /// Tenant id.
        tenant: String,
        /// The credential, sealed like a share.
        sealed: Vec<u8>,
    },
}

/// A separate read path for audit downloads, so a long download never holds up the writer.
pub trait AuditReader: Send + 'static {
    /// All committed audit entries of a tenant, in order.
    ///
    /// # Errors
    /// [`Error::Store`].
    fn audit_entries(&mut self, tenant: &str) -> Result<Vec<AuditEntry>, Error>;
}

/// Durable trustee storage.
pub trait Store: Send + 'static {
    /// Opens an independent reader that sees committed data only.
    ///
    /// # Errors
    /// [`Error::Store`].
    fn reader(&self) -> Result<Box<dyn AuditReader>, Error>;

    /// Replaces each given chain head (same tenant and seq; only its `signature` differs) and
    /// marks the store as written with signed heads, atomically: the one-time migration of
    /// a store from before head signatures.
    ///
    /// # Errors
    /// [`Error::Store`], also when a head is not in the store.
    fn sign_legacy_heads(&mut self, heads: &[AuditEntry]) -> Result<(), Error>;

    /// Loads all state.
    ///
    /// # Errors
    /// [`Error::Store`].
    fn load(&mut self) -> Result<Snapshot, Error>;

    /// Applies a batch atomically and durably.
    ///
    /// # Errors
    /// [`Error::Store`]; then nothing of the batch is applied.
    fn commit(&mut self, batch: &[Mutation]) -> Result<(), Error>;

    /// Makes sure freed (shredded) content no longer sits in the store's files.
    ///
    /// # Errors
    /// [`Error::Store`].
    fn erase_freed(&mut self) -> Result<(), Error>;
}

fn db_err(e: rusqlite::Error) -> Error {
    Error::Database(e)
}

fn json_err(e: serde_json::Error) -> Error {
    Error::CorruptRecord(e)
}

/// The embedded SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: std::path::PathBuf,
    /// Dropping this stops the background checkpointer.
    _checkpointer: Option<std::sync::mpsc::Sender<()>>,
}

/// WAL frames (pages) after which the writer checkpoints itself: 16 MiB at 4 KiB pages.
const WAL_CHECKPOINT_PAGES: i64 = 4096;
/// The audit format recorded in SQLite's `user_version`: 0 for chains written before heads
/// were signed, 1 since. A new (empty) store starts at 1; a store with older chains stays at 0
/// until `treuhand trustee migrate-audit` signs their heads.
const AUDIT_FORMAT_SIGNED_HEADS: i64 = 1;

/// Size the WAL file is truncated to when SQLite reuses it.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// How often the background thread copies WAL frames into the database file.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs passive WAL checkpoints on a second connection, so the writer thread never stalls on
/// the database file's fsync. A passive checkpoint never blocks the writer; it copies what it
/// can and the writer restarts the WAL once everything was copied.
fn spawn_checkpointer(path: &Path) -> Option<std::sync::mpsc::Sender<()>> {
    let conn = match Connection::open(path).and_then(|conn| {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(conn)
    }) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "no background checkpointer; the writer checkpoints itself");
            return None;
        }
    };
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("trustee-checkpoint".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(CHECKPOINT_INTERVAL)
            {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::debug!(error = %e, "passive checkpoint failed; will retry");
                }
            }
        });
    spawned.ok().map(|_| stop)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS keys (
    tenant TEXT NOT NULL,
    key_version INTEGER NOT NULL,
    holder TEXT NOT NULL,
    metadata TEXT NOT NULL,
    sealed BLOB,
    shredded_ms INTEGER,
    deposited_ms INTEGER,
    handed_over_ms INTEGER,
    PRIMARY KEY (tenant, key_version)
);
CREATE TABLE IF NOT EXISTS policies (tenant TEXT PRIMARY KEY, policy TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS grants (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, grant_json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS credentials (tenant TEXT PRIMARY KEY, sealed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    tenant TEXT NOT NULL,
    seq INTEGER NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (tenant, seq)
) WITHOUT ROWID;
";

impl SqliteStore {
    /// Opens (or creates) the database file with durable settings.
    ///
    /// # Errors
    /// [`Error::Store`] naming the file.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let conn = Connection::open(path)
            .map_err(|e| Error::Store(format!("cannot open the store {}: {e}", path.display())))?;
        // The background checkpointer may hold the checkpoint lock for a moment.
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db_err)?;
        // WAL + FULL: a commit is fsynced before it returns, and a crash loses no committed
        // transaction. secure_delete zeroes freed content (shredded shares).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db_err)?;
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(db_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db_err)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        add_key_lifecycle_columns(&conn)?;
        let format = audit_format(&conn)?;
        if format > AUDIT_FORMAT_SIGNED_HEADS {
            return Err(Error::Store(format!(
                "the store {} was written by a newer treuhand (audit format {format}); this version reads formats up to {AUDIT_FORMAT_SIGNED_HEADS}",
                path.display()
            )));
        }
        if format < AUDIT_FORMAT_SIGNED_HEADS {
            // Nothing to migrate in a store without entries: new chains get signed heads.
            let empty: bool = conn
                .query_row("SELECT NOT EXISTS (SELECT 1 FROM audit)", [], |row| {
                    row.get(0)
                })
                .map_err(db_err)?;
            if empty {
                conn.pragma_update(None, "user_version", AUDIT_FORMAT_SIGNED_HEADS)
                    .map_err(db_err)?;
            }
        }
        let checkpointer = spawn_checkpointer(path);
        // The background thread copies WAL frames without blocking the writer, but under a
        // steady stream of commits it never reaches the WAL's end, and SQLite reuses the WAL
        // from its start only after a checkpoint that did. The bench found a 431 MB WAL next to
        // a 27 MB database after 60,000 releases. So the writer also checkpoints itself once
        // the WAL holds WAL_CHECKPOINT_PAGES frames; the background thread has copied most of
        // them by then, which keeps that pass short. Without a background thread, SQLite's
        // default (1,000 pages) applies.
        if checkpointer.is_some() {
            conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
                .map_err(db_err)?;
        }
        // After a burst the WAL file is cut back to this size when it is reused.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)
            .map_err(db_err)?;
        Ok(Self {
            conn,
            path: path.to_owned(),
            _checkpointer: checkpointer,
        })
    }
}

impl SqliteStore {
    /// A TRUNCATE checkpoint, retried while the background checkpointer holds the lock
    /// (SQLite then reports `busy = 1` instead of an error).
    fn truncate_wal(&mut self) -> Result<(), Error> {
        for _ in 0..50 {
            let busy: i64 = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
                .map_err(db_err)?;
            if busy == 0 {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err(Error::Store(
            "the WAL could not be truncated: checkpoint stayed busy".into(),
        ))
    }
}

/// Stores created before key hand-overs lack the `deposited_ms` and `handed_over_ms` columns:
/// adds them, and takes each key's deposit time from its deposit entry in the audit chain.
fn add_key_lifecycle_columns(conn: &Connection) -> Result<(), Error> {
    let columns = rows(
        conn,
        "SELECT name FROM pragma_table_info('keys')",
        [],
        |row| row.get::<_, String>(0),
    )?;
    if !columns.iter().any(|c| c == "handed_over_ms") {
        conn.execute_batch("ALTER TABLE keys ADD COLUMN handed_over_ms INTEGER")
            .map_err(db_err)?;
    }
    if !columns.iter().any(|c| c == "deposited_ms") {
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE keys ADD COLUMN deposited_ms INTEGER;
             UPDATE keys SET deposited_ms = COALESCE((
                 SELECT json_extract(a.entry, '$.time_ms') FROM audit a
                 WHERE a.tenant = keys.tenant
                   AND json_extract(a.entry, '$.event') = 'deposit'
                   AND json_extract(a.entry, '$.key_version') = keys.key_version
                 ORDER BY a.seq LIMIT 1), 0);
             COMMIT;",
        )
        .map_err(db_err)?;
    }
    Ok(())
}

fn audit_format(conn: &Connection) -> Result<i64, Error> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(db_err)
}

/// Every row `sql` (with `params`) selects, mapped by `map`.
fn rows<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, Error> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let rows = stmt.query_map(params, map).map_err(db_err)?;
    rows.collect::<Result<_, _>>().map_err(db_err)
}

/// Every row of a one-column query whose column holds the JSON of a `T`.
fn json_rows<T: DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<T>, Error> {
    rows(conn, sql, params, |row| row.get::<_, String>(0))?
        .iter()
        .map(|json| serde_json::from_str(json).map_err(json_err))
        .collect()
}

fn read_entries(conn: &Connection, tenant: &str) -> Result<Vec<AuditEntry>, Error> {
    json_rows(
        conn,
        "SELECT entry FROM audit WHERE tenant = ?1 ORDER BY seq",
        [tenant],
    )
}

/// A read-only SQLite connection for audit downloads (WAL readers never block the writer).
#[derive(Debug)]
struct SqliteReader {
    conn: Connection,
}

impl AuditReader for SqliteReader {
    fn audit_entries(&mut self, tenant: &str) -> Result<Vec<AuditEntry>, Error> {
        read_entries(&self.conn, tenant)
    }
}

impl Store for SqliteStore {
    fn reader(&self) -> Result<Box<dyn AuditReader>, Error> {
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(db_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db_err)?;
        Ok(Box::new(SqliteReader { conn }))
    }

    fn load(&mut self) -> Result<Snapshot, Error> {
        let keys = rows(
            &self.conn,
            "SELECT tenant, key_version, holder, metadata, sealed, shredded_ms, deposited_ms, handed_over_ms FROM keys",
            [],
            |row| {
                Ok((
                    (
                        row.get::<_, String>(0)?,
                        row.get::<_, u32>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, Option<Vec<u8>>>(4)?,
                    ),
                    (
                        row.get::<_, Option<i64>>(5)?,
                        row.get::<_, Option<i64>>(6)?,
                        row.get::<_, Option<i64>>(7)?,
                    ),
                ))
            },
        )?;
        let ms = |ms: i64| u64::try_from(ms).unwrap_or(0);
        let mut snapshot = Snapshot::default();
        for (
            (tenant, key_version, holder, metadata, sealed),
            (shredded_ms, deposited_ms, handed_over_ms),
        ) in keys
        {
            snapshot.keys.push(KeyRecord {
                tenant,
                key_version,
                holder,
                metadata: serde_json::from_str(&metadata).map_err(json_err)?,
                sealed,
                shredded_ms: shredded_ms.map(ms),
                deposited_ms: deposited_ms.map(ms).unwrap_or(0),
                handed_over_ms: handed_over_ms.map(ms),
            });
        }
        let policies = rows(
            &self.conn,
            "SELECT tenant, policy FROM policies",
            [],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
        )?;
        for (tenant, policy) in policies {
            snapshot
                .policies
                .push((tenant, serde_json::from_str(&policy).map_err(json_err)?));
        }
        snapshot.credentials = rows(
            &self.conn,
            "SELECT tenant, sealed FROM credentials",
            [],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?)),
        )?;
        snapshot.grants = json_rows(&self.conn, "SELECT grant_json FROM grants", [])?;
        snapshot.heads = json_rows(
            &self.conn,
            "SELECT a.entry FROM audit a WHERE a.seq = (SELECT MAX(b.seq) FROM audit b WHERE b.tenant = a.tenant)",
            [],
        )?;
        snapshot.unsigned_heads = audit_format(&self.conn)? < AUDIT_FORMAT_SIGNED_HEADS;
        Ok(snapshot)
    }

    fn sign_legacy_heads(&mut self, heads: &[AuditEntry]) -> Result<(), Error> {
        let tx = self.conn.transaction().map_err(db_err)?;
        for head in heads {
            let json = serde_json::to_string(head).map_err(json_err)?;
            let seq =
                i64::try_from(head.seq).map_err(|_| Error::Store("sequence overflow".into()))?;
            let changed = tx
                .execute(
                    "UPDATE audit SET entry = ?3 WHERE tenant = ?1 AND seq = ?2",
                    params![head.tenant, seq, json],
                )
                .map_err(db_err)?;
            if changed != 1 {
                return Err(Error::Store(format!(
                    "the head of tenant {} (seq {}) is not in the store",
                    head.tenant, head.seq
                )));
            }
        }
        // user_version lives in the database header, so it commits with the heads.
        tx.pragma_update(None, "user_version", AUDIT_FORMAT_SIGNED_HEADS)
            .map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    fn commit(&mut self, batch: &[Mutation]) -> Result<(), Error> {
        // Cached statements: parsing the SQL on every commit was 11% of the writer thread's
        // CPU under a release per request (perf, docs/benchmarks.md).
        let tx = self.conn.transaction().map_err(db_err)?;
        for mutation in batch {
            match mutation {
                Mutation::InsertKey(record) => {
                    let metadata = serde_json::to_string(&record.metadata).map_err(json_err)?;
                    let deposited_ms = i64::try_from(record.deposited_ms).unwrap_or(i64::MAX);
                    tx.prepare_cached("INSERT INTO keys (tenant, key_version, holder, metadata, sealed, shredded_ms, deposited_ms, handed_over_ms) VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, NULL)")
                    .and_then(|mut statement| statement.execute(params![record.tenant, record.key_version, record.holder, metadata, record.sealed, deposited_ms]))
                    .map_err(db_err)?;
                }
                Mutation::PutPolicy { tenant, policy } => {
                    let policy = serde_json::to_string(policy).map_err(json_err)?;
                    tx.prepare_cached("INSERT INTO policies (tenant, policy) VALUES (?1, ?2) ON CONFLICT(tenant) DO UPDATE SET policy = excluded.policy")
                    .and_then(|mut statement| statement.execute(params![tenant, policy]))
                    .map_err(db_err)?;
                }
                Mutation::PutGrant(grant) => {
                    let json = serde_json::to_string(grant).map_err(json_err)?;
                    tx.prepare_cached("INSERT INTO grants (id, tenant, grant_json) VALUES (?1, ?2, ?3) ON CONFLICT(id) DO UPDATE SET grant_json = excluded.grant_json")
                    .and_then(|mut statement| statement.execute(params![grant.id, grant.tenant, json]))
                    .map_err(db_err)?;
                }
                Mutation::Shred {
                    tenant,
                    key_version,
                    time_ms,
                } => {
                    let time_ms = i64::try_from(*time_ms).unwrap_or(i64::MAX);
                    tx.prepare_cached("UPDATE keys SET sealed = NULL, shredded_ms = ?3 WHERE tenant = ?1 AND key_version = ?2")
                    .and_then(|mut statement| statement.execute(params![tenant, key_version, time_ms]))
                    .map_err(db_err)?;
                }
                Mutation::HandOver {
                    tenant,
                    key_version,
                    time_ms,
                } => {
                    let time_ms = i64::try_from(*time_ms).unwrap_or(i64::MAX);
                    tx.prepare_cached("UPDATE keys SET handed_over_ms = ?3 WHERE tenant = ?1 AND key_version = ?2")
                    .and_then(|mut statement| statement.execute(params![tenant, key_version, time_ms]))
                    .map_err(db_err)?;
                }
                Mutation::PutMetadata {
                    tenant,
                    key_version,
                    metadata,
                } => {
                    let metadata = serde_json::to_string(metadata).map_err(json_err)?;
                    tx.prepare_cached(
                        "UPDATE keys SET metadata = ?3 WHERE tenant = ?1 AND key_version = ?2",
                    )
                    .and_then(|mut statement| {
                        statement.execute(params![tenant, key_version, metadata])
                    })
                    .map_err(db_err)?;
                }
                Mutation::PutCredential { tenant, sealed } => {
                    tx.prepare_cached("INSERT INTO credentials (tenant, sealed) VALUES (?1, ?2) ON CONFLICT(tenant) DO UPDATE SET sealed = excluded.sealed")
                    .and_then(|mut statement| statement.execute(params![tenant, sealed]))
                    .map_err(db_err)?;
                }
                Mutation::Append(entry) => {
                    let json = serde_json::to_string(entry).map_err(json_err)?;
                    let seq = i64::try_from(entry.seq)
                        .map_err(|_| Error::Store("sequence overflow".into()))?;
                    tx.prepare_cached("INSERT INTO audit (tenant, seq, entry) VALUES (?1, ?2, ?3)")
                        .and_then(|mut statement| {
                            statement.execute(params![entry.tenant, seq, json])
                        })
                        .map_err(db_err)?;
                }
            }
        }
        tx.commit().map_err(db_err)
    }

    fn erase_freed(&mut self) -> Result<(), Error> {
        // Copy every WAL frame into the main file (where secure_delete already zeroed the old
        // cell) and truncate the WAL to zero bytes, so no old page with the sealed share is
        // left in either file. VACUUM also rebuilds the file without free pages.
        self.truncate_wal()?;
        self.conn.execute_batch("VACUUM").map_err(db_err)?;
        self.truncate_wal()
    }
}

/// Reads one key record directly (tests and tools).
///
/// # Errors
/// [`Error::Store`].
pub fn sealed_share(
    conn: &Connection,
    tenant: &str,
    key_version: u32,
) -> Result<Option<Vec<u8>>, Error> {
    conn.query_row(
        "SELECT sealed FROM keys WHERE tenant = ?1 AND key_version = ?2",
        params![tenant, key_version],
        |row| row.get::<_, Option<Vec<u8>>>(0),
    )
    .optional()
    .map_err(db_err)
    .map(Option::flatten)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trustee::audit::{AuditEntry, AuditEvent, GENESIS};

    fn entry(seq: u64) -> AuditEntry {
        AuditEntry {
            seq,
            time_ms: 1,
            tenant: "acme".into(),
            key_version: Some(1),
            actor: "proxy:p".into(),
            event: AuditEvent::Release,
            justification: None,
            request_id: Some(format!("{seq:016X}")),
            outcome: "ok".into(),
            grant: None,
            reason: None,
            object: None,
            object_id: None,
            detail: Some("x".repeat(400)),
            prev: GENESIS.into(),
            hash: GENESIS.into(),
            signature: None,
        }
    }

    #[test]
    fn a_store_from_before_hand_overs_gains_the_columns_and_its_deposit_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE keys (tenant TEXT NOT NULL, key_version INTEGER NOT NULL, holder TEXT NOT NULL, metadata TEXT NOT NULL, sealed BLOB, shredded_ms INTEGER, PRIMARY KEY (tenant, key_version));
                 CREATE TABLE audit (tenant TEXT NOT NULL, seq INTEGER NOT NULL, entry TEXT NOT NULL, PRIMARY KEY (tenant, seq)) WITHOUT ROWID;",
            )
            .unwrap();
            let metadata = r#"{"tenant":"acme","key_version":1,"threshold":2,"holders":[]}"#;
            conn.execute(
                "INSERT INTO keys VALUES ('acme', 1, 'trustee', ?1, x'00', NULL)",
                [metadata],
            )
            .unwrap();
            let mut deposit = entry(1);
            deposit.event = AuditEvent::Deposit;
            deposit.time_ms = 1234;
            conn.execute(
                "INSERT INTO audit VALUES ('acme', 1, ?1)",
                [serde_json::to_string(&deposit).unwrap()],
            )
            .unwrap();
        }
        let mut store = SqliteStore::open(&path).unwrap();
        let snapshot = store.load().unwrap();
        assert_eq!(snapshot.keys.len(), 1);
        assert_eq!(snapshot.keys[0].deposited_ms, 1234);
        assert_eq!(snapshot.keys[0].handed_over_ms, None);
        store
            .commit(&[Mutation::HandOver {
                tenant: "acme".into(),
                key_version: 1,
                time_ms: 5678,
            }])
            .unwrap();
        drop(store);
        // Opening again changes nothing more.
        let mut store = SqliteStore::open(&path).unwrap();
        let snapshot = store.load().unwrap();
        assert_eq!(snapshot.keys[0].deposited_ms, 1234);
        assert_eq!(snapshot.keys[0].handed_over_ms, Some(5678));
    }

    #[test]
    fn wal_stays_bounded_under_a_steady_stream_of_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut store = SqliteStore::open(&path).unwrap();
        // One commit per release, as under load with no batching: about 2 WAL frames each.
        // Without the writer's own checkpoint the WAL grew to 127 MB here.
        for seq in 1..=12_000 {
            store.commit(&[Mutation::Append(entry(seq))]).unwrap();
        }
        let wal = std::fs::metadata(dir.path().join("t.db-wal"))
            .unwrap()
            .len();
        assert!(
            wal <= 2 * (WAL_CHECKPOINT_PAGES as u64) * 4096 + 1024 * 1024,
            "WAL is {wal} bytes"
        );
    }
}
