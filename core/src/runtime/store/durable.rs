//! The durable backend: global keys in a redb database file, read once at the start. Then one
//! writer thread commits what the reactor sends it, several batches to a transaction when they
//! queue up (each commit waits for the disk), and reports each commit back. After a failed commit
//! it writes nothing more (the library wants the file reopened after an I/O error).

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use redb::{Database, ReadableTable, TableDefinition};

use super::StoreError;
use crate::audit::AuditEntry;
use crate::state::{Entry, Namespace, Table, EARLIER_RUN};

/// Global keys: key → postcard of `(value_json, expires_at_ms)`.
const GLOBAL: TableDefinition<&str, &[u8]> = TableDefinition::new("global_v1");
/// The audit log: entry id → the entry as JSON.
const AUDIT: TableDefinition<u64, &str> = TableDefinition::new("audit_v1");

/// The read cache: the table in memory serves reads, the database only writes and the start.
const CACHE_BYTES: usize = 4 << 20;

/// The database library's errors are large and only ever shown as text.
type DbResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A change to the global keys on disk.
#[derive(Debug)]
pub(super) enum Write {
    Put {
        key: String,
        value_json: String,
        expires_at_ms: Option<u64>,
    },
    Remove(String),
    /// An audit entry, and the id below which older entries are no longer kept.
    Audit {
        id: u64,
        entry_json: String,
        keep_from: u64,
    },
}

/// Writes the reactor hands over together, numbered in order.
pub(super) struct Batch {
    pub seq: u64,
    pub writes: Vec<Write>,
}

/// The writer's report: every batch up to `through` is committed, or, with `error`, is not and
/// never will be.
#[derive(Debug)]
pub struct Committed {
    pub(super) through: u64,
    pub(super) error: Option<String>,
}

pub(super) struct Durable {
    path: PathBuf,
    batches: Option<Sender<Batch>>,
    writer: Option<JoinHandle<()>>,
}

impl Durable {
    /// Opens the database at `path` (created 0600 if absent), reads its global keys into `table`,
    /// and starts the writer thread, which calls `report` after each commit.
    pub fn open(
        path: &Path,
        table: &mut Table,
        audit: &mut Vec<AuditEntry>,
        report: impl Fn(Committed) + Send + 'static,
    ) -> Result<Durable, StoreError> {
        let failed = |reason: String| StoreError::Open { path: path.to_path_buf(), reason };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| failed(e.to_string()))?;
        let db = contained(|| {
            let mut db = Database::builder().set_cache_size(CACHE_BYTES).create_file(file)?;
            db.check_integrity()?;
            DbResult::Ok(db)
        })
        .map_err(failed)?;
        load(&db, path, table)?;
        *audit =
            contained(|| read_audit(&db)).map_err(|reason| StoreError::Read { path: path.to_path_buf(), reason })?;
        let (batches, inbox) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("clove-state".into())
            .spawn(move || write_batches(&db, &inbox, report))
            .map_err(|e| failed(format!("starting the writer thread: {e}")))?;
        Ok(Durable { path: path.to_path_buf(), batches: Some(batches), writer: Some(writer) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands a batch to the writer thread.
    pub fn send(&self, batch: Batch) -> Result<(), StoreError> {
        let gone = || StoreError::Failed { path: self.path.clone(), reason: "its writer thread has stopped".into() };
        self.batches.as_ref().ok_or_else(gone)?.send(batch).map_err(|_| gone())
    }

    /// Lets the writer commit what it was sent, then stops it.
    pub fn close(&mut self) {
        self.batches = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        self.close();
    }
}

/// Reads every global key of the database into `table`, checking that each value is JSON.
fn load(db: &Database, path: &Path, table: &mut Table) -> Result<(), StoreError> {
    let rows = contained(|| read_global(db)).map_err(|reason| StoreError::Read { path: path.to_path_buf(), reason })?;
    for (key, bytes) in rows {
        let corrupt = |reason: String| StoreError::Corrupt { path: path.to_path_buf(), key: key.clone(), reason };
        let (value_json, expires_at_ms): (String, Option<u64>) =
            crate::protocol::decode(&bytes).map_err(|e| corrupt(e.to_string()))?;
        serde_json::from_str::<serde::de::IgnoredAny>(&value_json).map_err(|e| corrupt(e.to_string()))?;
        table.restore(Namespace::Global, key, Some(Entry { value_json, expires_at_ms, writer: EARLIER_RUN }));
    }
    Ok(())
}

/// Runs a database call, turning a panic into an error: the library asserts on some damaged files
/// (a truncated one, for instance), and a bad file must not bring the host down.
fn contained<T, E: std::fmt::Display>(call: impl FnOnce() -> Result<T, E>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(panic) => {
            let message =
                panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
            Err(format!("the file is damaged ({})", message.unwrap_or_else(|| "the database library gave up".into())))
        }
    }
}

/// The writer thread: commits whatever batches are waiting as one transaction, until the reactor
/// hangs up. After a failure it only reports.
fn write_batches(db: &Database, inbox: &Receiver<Batch>, report: impl Fn(Committed)) {
    let mut error = None;
    while let Ok(first) = inbox.recv() {
        let mut group = vec![first];
        group.extend(inbox.try_iter());
        let through = group.last().map_or(0, |b| b.seq);
        if error.is_none() {
            error = contained(|| commit(db, &group)).err();
        }
        report(Committed { through, error: error.clone() });
    }
}

/// The audit entries of earlier runs, oldest first; one that does not parse is left out.
fn read_audit(db: &Database) -> DbResult<Vec<AuditEntry>> {
    let txn = db.begin_read()?;
    let audit = match txn.open_table(AUDIT) {
        Ok(audit) => audit,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut entries = Vec::new();
    for row in audit.iter()? {
        let (_, json) = row?;
        entries.extend(serde_json::from_str::<AuditEntry>(json.value()).ok());
    }
    Ok(entries)
}

/// Every global key and its encoded value.
fn read_global(db: &Database) -> DbResult<Vec<(String, Vec<u8>)>> {
    let txn = db.begin_read()?;
    let global = match txn.open_table(GLOBAL) {
        Ok(global) => global,
        // A new database: nothing written yet.
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut rows = Vec::new();
    for row in global.iter()? {
        let (key, value) = row?;
        rows.push((key.value().to_string(), value.value().to_vec()));
    }
    Ok(rows)
}

fn commit(db: &Database, group: &[Batch]) -> DbResult<()> {
    let txn = db.begin_write()?;
    {
        let mut global = txn.open_table(GLOBAL)?;
        let mut audit = txn.open_table(AUDIT)?;
        for write in group.iter().flat_map(|b| &b.writes) {
            match write {
                Write::Put { key, value_json, expires_at_ms } => {
                    let value = crate::protocol::encode(&(value_json, expires_at_ms));
                    global.insert(key.as_str(), value.as_slice())?;
                }
                Write::Remove(key) => {
                    global.remove(key.as_str())?;
                }
                Write::Audit { id, entry_json, keep_from } => {
                    audit.insert(id, entry_json.as_str())?;
                    audit.retain_in::<u64, _>(..*keep_from, |_, _| false)?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}
