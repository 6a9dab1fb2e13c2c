//! The embedded store's dialect: the same tables in one SQLite file under
//! DATA_DIR. One connection behind a mutex; write transactions are
//! `BEGIN IMMEDIATE` (the database's write lock, taken at once), so rows
//! need no locking clauses.

use super::sql::{Backend, Conn, Dialect, Row, Value};
use super::{ColumnType, SqlStore, StoreError};
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// The SQLite store.
pub type SqliteStore = SqlStore<Sqlite>;

/// The SQLite backend: one connection.
pub struct Sqlite {
    conn: Mutex<Connection>,
    /// The database file and its (device, inode) when opened: a file
    /// deleted or replaced under the running service is noticed (every
    /// operation answers `Unavailable`) instead of writing on into an
    /// unlinked file that is lost at the next start.
    path: std::path::PathBuf,
    identity: (u64, u64),
    /// Logged once, not on every operation.
    reported: std::sync::atomic::AtomicBool,
}

fn identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
}

fn err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

const CREATE_TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS plugins (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    displayName TEXT NULL,
    description TEXT NULL,
    publishedAt INTEGER NOT NULL,
    updatedAt INTEGER NOT NULL
)",
    "CREATE TABLE IF NOT EXISTS pluginVersions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pluginId INTEGER NOT NULL,
    version TEXT NOT NULL,
    platforms TEXT NULL,
    downloadUrl TEXT NULL,
    sizeBytes INTEGER NULL,
    sha256 TEXT NULL,
    publishedAt INTEGER NOT NULL,
    UNIQUE (pluginId, version)
)",
    "CREATE TABLE IF NOT EXISTS buildJobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pluginId INTEGER NOT NULL,
    version TEXT NOT NULL,
    platform TEXT NOT NULL,
    hubJobId TEXT NULL,
    status TEXT NOT NULL,
    errorMessage TEXT NULL,
    createdAt INTEGER NOT NULL,
    completedAt INTEGER NULL
)",
    // hone-build's own (docs/database.md, "Build logs"). AUTOINCREMENT: a
    // line's id is never reused, even after the newest lines were removed,
    // so a reader's `after_seq` never skips a later line.
    "CREATE TABLE IF NOT EXISTS buildLogLines (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    jobId INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    at INTEGER NOT NULL,
    stream TEXT NOT NULL,
    line TEXT NOT NULL
)",
    "CREATE INDEX IF NOT EXISTS idx_buildLogLines_attempt ON buildLogLines (jobId, attempt, id)",
    "CREATE INDEX IF NOT EXISTS idx_buildLogLines_at ON buildLogLines (at)",
    "CREATE TABLE IF NOT EXISTS buildLogs (
    jobId INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    droppedLines INTEGER NOT NULL,
    droppedBytes INTEGER NOT NULL,
    updatedAt INTEGER NOT NULL,
    PRIMARY KEY (jobId, attempt)
)",
];

impl SqlStore<Sqlite> {
    /// Opens (creating) the database file; its directory is created too.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Other(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.set_prepared_statement_cache_capacity(128);
        let identity = identity(path)
            .map_err(|e| StoreError::Other(format!("reading {}: {e}", path.display())))?;
        Ok(SqlStore::new(Sqlite {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            identity,
            reported: Default::default(),
        }))
    }
}

impl Dialect for Sqlite {
    const KIND: &'static str = "sqlite";
    const FOR_UPDATE: &'static str = "";
    const FOR_UPDATE_SKIP_LOCKED: &'static str = "";
    const CREATE_TABLES: &'static [&'static str] = CREATE_TABLES;
    const LIST_JOB_COLUMNS: &'static str = "SELECT name FROM pragma_table_info('buildJobs')";
    const LIST_JOB_INDEXES: &'static str =
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'buildJobs'";
    const LIST_COLUMN_WIDTHS: Option<&'static str> = None;

    fn upsert(key: &str) -> String {
        format!("ON CONFLICT ({key}) DO UPDATE SET")
    }

    fn insert_keep_existing(key: &str) -> String {
        format!("ON CONFLICT ({key}) DO NOTHING")
    }

    fn concat(parts: &[&str]) -> String {
        format!("({})", parts.join(" || "))
    }

    /// `LENGTH` of text counts characters in SQLite; of a blob, bytes.
    fn byte_length(expr: &str) -> String {
        format!("LENGTH(CAST({expr} AS BLOB))")
    }

    fn column_type(ty: ColumnType) -> String {
        match ty {
            ColumnType::Int | ColumnType::BigInt => "INTEGER".into(),
            ColumnType::VarChar(_) => "TEXT".into(),
        }
    }
}

impl Backend for Sqlite {
    type Conn<'a> = SqliteConn<'a>;

    fn connect(&self) -> Result<SqliteConn<'_>, StoreError> {
        if identity(&self.path).ok() != Some(self.identity) {
            if !self
                .reported
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                log::error!(
                    "the database file {} was deleted or replaced while the service runs: \
                 nothing is recorded until it is restored or hone-build restarts",
                    self.path.display()
                );
            }
            let file = self.path.file_name().unwrap_or_default().to_string_lossy();
            return Err(StoreError::Unavailable(format!(
                "the database file {file} (in DATA_DIR) was deleted or replaced while the \
                 service runs; restore it or restart hone-build"
            )));
        }
        Ok(SqliteConn {
            conn: self.conn.lock().unwrap_or_else(|p| p.into_inner()),
            in_tx: false,
        })
    }
}

/// The connection, held for one store operation.
pub struct SqliteConn<'a> {
    conn: MutexGuard<'a, Connection>,
    in_tx: bool,
}

fn bind(params: &[Value]) -> impl rusqlite::Params + '_ {
    rusqlite::params_from_iter(params.iter().map(|v| match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Int(i) => rusqlite::types::Value::Integer(*i),
        Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
    }))
}

fn from_sqlite(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Text(f.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            Value::Text(String::from_utf8_lossy(t).into_owned())
        }
    }
}

impl SqliteConn<'_> {
    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.conn.execute_batch(sql).map_err(err)
    }
}

impl Conn for SqliteConn<'_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        let mut st = self.conn.prepare_cached(sql).map_err(err)?;
        let n = st.execute(bind(params)).map_err(err)?;
        Ok(n as u64)
    }

    fn insert(&mut self, sql: &str, params: &[Value]) -> Result<i64, StoreError> {
        self.execute(sql, params)?;
        Ok(self.conn.last_insert_rowid())
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let mut st = self.conn.prepare_cached(sql).map_err(err)?;
        let n = st.column_count();
        let mut rows = st.query(bind(params)).map_err(err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(err)? {
            let row = (0..n)
                .map(|i| r.get_ref(i).map(from_sqlite))
                .collect::<rusqlite::Result<_>>()
                .map_err(err)?;
            out.push(Row(row));
        }
        Ok(out)
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        self.batch("BEGIN IMMEDIATE")?;
        self.in_tx = true;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.batch("COMMIT")?;
        self.in_tx = false;
        Ok(())
    }

    fn rollback(&mut self) -> Result<(), StoreError> {
        self.in_tx = false;
        self.batch("ROLLBACK")
    }

    /// A local file: a failure is not a lost connection.
    fn retry_on_fresh(&self, _e: &StoreError) -> bool {
        false
    }
}

impl Drop for SqliteConn<'_> {
    /// An operation that failed inside its transaction leaves nothing.
    fn drop(&mut self) {
        if self.in_tx {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}
