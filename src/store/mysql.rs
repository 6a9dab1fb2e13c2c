//! The production store's dialect: the marketplace's MySQL/MariaDB database
//! through a `mysql` connection pool (pure Rust, no TLS). Sessions run at
//! READ COMMITTED; rows that decide a change are read with `FOR UPDATE`, and
//! claims use `FOR UPDATE SKIP LOCKED` so several processes never claim one job.
//!
//! One round trip per statement: no ping when a connection is taken from
//! the pool (a local, non-blocking look at its socket instead), no reset
//! when it is returned, so each connection keeps its prepared statements.
//! A connection found dead before anything of an operation could have been
//! committed is discarded and the operation runs once more on a fresh one.

use super::sql::{Backend, Conn, Dialect, Row, Value};
use super::{ColumnType, SqlStore, StoreError};
use ::mysql::consts::CapabilityFlags;
use ::mysql::prelude::*;
use ::mysql::{Opts, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, PooledConn};
use std::time::Duration;

/// Connection settings (from DB_* keys).
#[derive(Clone)]
pub struct MysqlSettings {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub pass: crate::config::Secret,
    pub db_name: String,
    pub max_connections: usize,
}

impl MysqlSettings {
    pub fn from_config(cfg: &crate::config::Config) -> MysqlSettings {
        MysqlSettings {
            host: cfg.db_host.clone(),
            port: cfg.db_port,
            user: cfg.db_user.clone(),
            pass: cfg.db_pass.clone(),
            db_name: cfg.db_name.clone(),
            max_connections: cfg.workers + 4,
        }
    }
}

/// The MySQL store.
pub type MysqlStore = SqlStore<Mysql>;

/// The MySQL backend: a connection pool.
pub struct Mysql {
    pool: Pool,
    max_connections: usize,
}

fn err(e: ::mysql::Error) -> StoreError {
    use ::mysql::Error as E;
    match &e {
        E::IoError(_) | E::CodecError(_) | E::DriverError(_) => {
            StoreError::Unavailable(e.to_string())
        }
        // Too many connections, lock wait timeout, deadlock, server shutting down.
        E::MySqlError(m) if matches!(m.code, 1040 | 1205 | 1213 | 1053) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

/// The error says the connection is gone (or its state unknown).
fn is_lost(e: &::mysql::Error) -> bool {
    matches!(
        e,
        ::mysql::Error::IoError(_) | ::mysql::Error::CodecError(_) | ::mysql::Error::DriverError(_)
    )
}

const CREATE_TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS plugins (
        id INT AUTO_INCREMENT PRIMARY KEY,
        name VARCHAR(128) NOT NULL,
        displayName VARCHAR(255) NULL,
        description TEXT NULL,
        publishedAt BIGINT NOT NULL,
        updatedAt BIGINT NOT NULL,
        UNIQUE KEY uq_plugins_name (name)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE IF NOT EXISTS pluginVersions (
        id INT AUTO_INCREMENT PRIMARY KEY,
        pluginId INT NOT NULL,
        version VARCHAR(64) NOT NULL,
        platforms JSON NULL,
        downloadUrl VARCHAR(512) NULL,
        sizeBytes BIGINT NULL,
        sha256 VARCHAR(64) NULL,
        publishedAt BIGINT NOT NULL,
        UNIQUE KEY uq_pluginVersions (pluginId, version)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE IF NOT EXISTS buildJobs (
        id INT AUTO_INCREMENT PRIMARY KEY,
        pluginId INT NOT NULL,
        version VARCHAR(64) NOT NULL,
        platform VARCHAR(32) NOT NULL,
        hubJobId VARCHAR(128) NULL,
        status VARCHAR(16) NOT NULL,
        errorMessage TEXT NULL,
        createdAt BIGINT NOT NULL,
        completedAt BIGINT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    // hone-build's own (docs/database.md, "Build logs").
    "CREATE TABLE IF NOT EXISTS buildLogLines (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        jobId INT NOT NULL,
        attempt INT NOT NULL,
        at BIGINT NOT NULL,
        stream VARCHAR(16) NOT NULL,
        line TEXT NOT NULL,
        KEY idx_buildLogLines_attempt (jobId, attempt, id),
        KEY idx_buildLogLines_at (at)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE IF NOT EXISTS buildLogs (
        jobId INT NOT NULL,
        attempt INT NOT NULL,
        bytes BIGINT NOT NULL,
        droppedLines BIGINT NOT NULL,
        droppedBytes BIGINT NOT NULL,
        updatedAt BIGINT NOT NULL,
        PRIMARY KEY (jobId, attempt)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
];

impl SqlStore<Mysql> {
    /// Creates the pool; no connection is made until first use, so the
    /// service starts (and answers `/health` 503) while the database is down.
    pub fn open(s: &MysqlSettings) -> Result<MysqlStore, StoreError> {
        let max = s.max_connections.max(1);
        let constraints = PoolConstraints::new(0, max)
            .ok_or_else(|| StoreError::Other("bad pool size".into()))?;
        let pool_opts = PoolOpts::default()
            .with_constraints(constraints)
            // No ping when a connection is taken (see `Mysql::connect`)...
            .with_check_health(false)
            // ...and no reset when it is returned: the session (READ
            // COMMITTED) and the prepared statements stay.
            .with_reset_connection(false);
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some(s.host.clone()))
            .tcp_port(s.port)
            .user(Some(s.user.clone()))
            .pass(Some(s.pass.expose().to_string()))
            .db_name(Some(s.db_name.clone()))
            // Connect where DB_HOST/DB_PORT say. With the default (true) the driver,
            // having reached a loopback address, reconnects through the Unix socket
            // the server reports, bypassing DB_PORT (a tunnel or forwarded port may
            // then end up on another, local server).
            .prefer_socket(false)
            .tcp_connect_timeout(Some(Duration::from_secs(3)))
            .read_timeout(Some(Duration::from_secs(15)))
            .write_timeout(Some(Duration::from_secs(15)))
            .init(vec![
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            ])
            // Affected rows = rows matched, as SQLite counts them.
            .additional_capabilities(CapabilityFlags::CLIENT_FOUND_ROWS)
            .stmt_cache_size(Some(128))
            .pool_opts(pool_opts);
        let pool = Pool::new(Opts::from(opts)).map_err(err)?;
        Ok(SqlStore::new(Mysql {
            pool,
            max_connections: max,
        }))
    }
}

/// Whether the connection's socket is still open, without a round trip: a
/// closed connection has its end-of-file (or an error, or the server's
/// goodbye packet) waiting to be read; a live idle one has nothing.
fn looks_alive(c: &PooledConn) -> bool {
    use std::os::fd::{AsRawFd, BorrowedFd};
    let raw = c.as_raw_fd();
    // SAFETY: `c` owns this open descriptor and outlives `fd`, which is
    // only used inside this function.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    let sock = socket2::SockRef::from(&fd);
    if sock.set_nonblocking(true).is_err() {
        return false;
    }
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    let peeked = sock.peek(&mut buf);
    let restored = sock.set_nonblocking(false).is_ok();
    restored && matches!(peeked, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Takes the connection out of the pool for good: its socket is shut down
/// first, so the reset the pool then attempts fails at once and the pool
/// forgets it (no I/O waits on a dead peer).
fn discard(mut c: PooledConn) {
    use std::os::fd::{AsRawFd, BorrowedFd};
    let raw = c.as_raw_fd();
    // SAFETY: as in `looks_alive`.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    let _ = socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Both);
    c.reset_connection(true);
    drop(c);
}

impl Dialect for Mysql {
    const KIND: &'static str = "mysql";
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const FOR_UPDATE_SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
    const CREATE_TABLES: &'static [&'static str] = CREATE_TABLES;
    const LIST_JOB_COLUMNS: &'static str = "SELECT COLUMN_NAME FROM information_schema.COLUMNS
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'buildJobs'";
    const LIST_JOB_INDEXES: &'static str =
        "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'buildJobs'";
    const LIST_COLUMN_WIDTHS: Option<&'static str> = Some(
        "SELECT TABLE_NAME, COLUMN_NAME, CHARACTER_MAXIMUM_LENGTH FROM information_schema.COLUMNS
         WHERE TABLE_SCHEMA = DATABASE()
           AND TABLE_NAME IN ('plugins', 'pluginVersions', 'buildJobs')
           AND DATA_TYPE IN ('varchar', 'char') AND CHARACTER_MAXIMUM_LENGTH IS NOT NULL",
    );

    fn upsert(_key: &str) -> String {
        "ON DUPLICATE KEY UPDATE".to_string()
    }

    /// Not `INSERT IGNORE`: on a row inserted meanwhile by another
    /// transaction it would take a shared lock (a deadlock when two then ask
    /// for the exclusive one); `ON DUPLICATE KEY UPDATE` takes the exclusive one.
    fn insert_keep_existing(key: &str) -> String {
        let first = key.split(',').next().unwrap_or(key).trim();
        format!("ON DUPLICATE KEY UPDATE {first} = {first}")
    }

    fn concat(parts: &[&str]) -> String {
        format!("CONCAT({})", parts.join(", "))
    }

    fn byte_length(expr: &str) -> String {
        format!("LENGTH({expr})")
    }

    fn column_type(ty: ColumnType) -> String {
        match ty {
            ColumnType::Int => "INT".into(),
            ColumnType::BigInt => "BIGINT".into(),
            ColumnType::VarChar(n) => format!("VARCHAR({n})"),
        }
    }
}

impl Backend for Mysql {
    type Conn<'a> = MysqlConn;

    fn connect(&self) -> Result<MysqlConn, StoreError> {
        // Idle connections the server (or a network cut) closed are dropped
        // here, before anything is sent on them.
        for _ in 0..=self.max_connections {
            let c = self
                .pool
                .try_get_conn(Duration::from_secs(10))
                .map_err(err)?;
            if looks_alive(&c) {
                return Ok(MysqlConn {
                    conn: Some(c),
                    in_tx: false,
                    lost: false,
                    committed_maybe: false,
                });
            }
            log::info!("mysql: dropping a pooled connection the server closed");
            discard(c);
        }
        Err(StoreError::Unavailable(
            "no live database connection".into(),
        ))
    }
}

/// A pooled connection, for one store operation.
pub struct MysqlConn {
    conn: Option<PooledConn>,
    in_tx: bool,
    /// The connection failed (its state is unknown).
    lost: bool,
    /// Something may have been committed: a statement outside a
    /// transaction, or a COMMIT, was sent.
    committed_maybe: bool,
}

fn to_params(params: &[Value]) -> Params {
    Params::Positional(
        params
            .iter()
            .map(|v| match v {
                Value::Null => ::mysql::Value::NULL,
                Value::Int(i) => ::mysql::Value::Int(*i),
                Value::Text(s) => ::mysql::Value::Bytes(s.clone().into_bytes()),
            })
            .collect(),
    )
}

fn from_mysql(v: ::mysql::Value) -> Result<Value, StoreError> {
    match v {
        ::mysql::Value::NULL => Ok(Value::Null),
        ::mysql::Value::Int(i) => Ok(Value::Int(i)),
        ::mysql::Value::UInt(u) => i64::try_from(u)
            .map(Value::Int)
            .map_err(|_| StoreError::Other(format!("value {u} out of range"))),
        ::mysql::Value::Bytes(b) => String::from_utf8(b)
            .map(Value::Text)
            .map_err(|_| StoreError::Other("a text column is not UTF-8".into())),
        other => Err(StoreError::Other(format!(
            "unexpected column value {other:?}"
        ))),
    }
}

impl MysqlConn {
    /// Runs one request on the connection, noting a lost connection. With
    /// no parameters the text protocol is used (one round trip, nothing to
    /// prepare); otherwise the statement is prepared once per connection.
    fn call<T>(
        &mut self,
        f: impl FnOnce(&mut PooledConn) -> Result<T, ::mysql::Error>,
    ) -> Result<T, ::mysql::Error> {
        if !self.in_tx {
            self.committed_maybe = true;
        }
        let c = self.conn.as_mut().expect("connection present until drop");
        f(c).inspect_err(|e| self.lost |= is_lost(e))
    }

    fn write(&mut self, sql: &str, params: &[Value]) -> Result<&mut PooledConn, StoreError> {
        let p = to_params(params);
        self.call(|c| match p {
            Params::Positional(v) if v.is_empty() => c.query_drop(sql),
            p => c.exec_drop(sql, p),
        })
        .map_err(err)?;
        Ok(self.conn.as_mut().expect("connection present until drop"))
    }
}

impl Conn for MysqlConn {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        Ok(self.write(sql, params)?.affected_rows())
    }

    fn insert(&mut self, sql: &str, params: &[Value]) -> Result<i64, StoreError> {
        let id = self.write(sql, params)?.last_insert_id();
        i64::try_from(id).map_err(|_| StoreError::Other(format!("insert id {id} out of range")))
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        // A read commits nothing.
        let before = self.committed_maybe;
        let p = to_params(params);
        let rows = self.call(|c| match p {
            Params::Positional(v) if v.is_empty() => c.query(sql),
            p => c.exec(sql, p),
        });
        // Also when it failed: a read lost with its connection may be run
        // again on a fresh one.
        self.committed_maybe = before;
        let rows: Vec<::mysql::Row> = rows.map_err(err)?;
        rows.into_iter()
            .map(|r| {
                r.unwrap()
                    .into_iter()
                    .map(from_mysql)
                    .collect::<Result<_, _>>()
                    .map(Row)
            })
            .collect()
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        self.in_tx = true;
        self.call(|c| c.query_drop("START TRANSACTION"))
            .map_err(err)
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.committed_maybe = true;
        self.call(|c| c.query_drop("COMMIT")).map_err(|e| {
            if is_lost(&e) {
                // The COMMIT may have reached the server: the outcome is unknown.
                StoreError::CommitUnknown(e.to_string())
            } else {
                err(e)
            }
        })?;
        self.in_tx = false;
        Ok(())
    }

    fn rollback(&mut self) -> Result<(), StoreError> {
        self.call(|c| c.query_drop("ROLLBACK")).map_err(err)?;
        self.in_tx = false;
        Ok(())
    }

    fn retry_on_fresh(&self, _e: &StoreError) -> bool {
        self.lost && !self.committed_maybe
    }
}

impl Drop for MysqlConn {
    /// Back to the pool only in a clean state: an open transaction is
    /// rolled back; a connection that failed, or cannot roll back, is dropped.
    fn drop(&mut self) {
        let Some(mut c) = self.conn.take() else {
            return;
        };
        if !self.lost && self.in_tx && c.query_drop("ROLLBACK").is_err() {
            self.lost = true;
        }
        if self.lost {
            discard(c);
        }
    }
}
