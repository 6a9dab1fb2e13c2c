//! Shared support for hone-build's integration tests.
//!
//! Every helper here is bounded in time: nothing waits forever, so a broken
//! service makes a test fail, never hang.
//!
//! - [`TestDb`] — a uniquely named database on a real MySQL/MariaDB server,
//!   dropped again when the guard drops (also when the test panics).
//!   Server from `HONE_TEST_MYSQL_HOST` / `_PORT` / `_USER` / `_PASS`
//!   (defaults `127.0.0.1` / `3306` / `root` / empty).
//! - [`sqlite_store`] — the embedded store in a directory.
//! - [`Service`] — the real `hone-build` binary in its own working directory,
//!   configured only through `HONE_BUILD_*` environment variables.
//! - [`Sim`] — the `perry-hub-sim` binary (a local Perry Hub); [`Sim::callback`]
//!   — a job's callback URL as the hub received it.
//! - [`http`] / [`try_http`] — an HTTP client (ureq); [`exchange`] /
//!   [`raw_request`] / [`read_until`] — the raw TCP client, for malformed
//!   requests, early ends and stalls.
//! - [`StoreKind`] and [`both_stores!`] — one test, run on each store.
//! - [`TcpProxy`] — a TCP proxy whose connections can be cut and restored
//!   (database or hub outages).
//! - [`wait_until`] — polling.
//!
//! Declare guards so that they drop in the right order: locals drop in
//! reverse order of declaration, so declare the `TestDb` first and the
//! `Service` using it last.

#![allow(dead_code)] // a support library: a few helpers serve no test today

use hone_build::config::Secret;
use hone_build::store::mysql::{MysqlSettings, MysqlStore};
use hone_build::store::sqlite::SqliteStore;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------

/// Polls `f` every 50 ms until it returns true or `timeout` passes.
/// Returns whether it became true.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// 64 random bits as 16 hex digits (std's randomly keyed hasher; no extra crate).
pub fn random_hex() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:016x}", h.finish())
}

/// A name unique in this machine's test runs: `<prefix>_<pid>_<counter>_<hex>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{n}_{}", std::process::id(), &random_hex()[..8])
}

/// A loopback port where nothing listens (for a moment at least): for a
/// hub that is down, or a process restarted on the same port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------
// Both stores
// ---------------------------------------------------------------------------

/// The store a test runs on: the embedded SQLite one, or a MySQL database
/// of its own ([`TestDb`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Mysql,
}

impl StoreKind {
    /// The store's name, as `Store::kind` and `/health` give it.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Mysql => "mysql",
        }
    }
}

/// Runs each named function as a test on both stores: `sqlite::<name>`
/// and `mysql::<name>`.
///
/// - `both_stores!(a, b)` calls `a(kind)` with the [`StoreKind`];
/// - `both_stores!(|kind| &Env::new(kind); a, b)` calls `a(<expression>)`,
///   the expression seeing the [`StoreKind`] under the name given and the
///   caller's module through `use super::*` (per-store set-up).
macro_rules! both_stores {
    (|$kind:ident| $arg:expr; $($name:ident),* $(,)?) => {
        $crate::common::both_stores!(@store sqlite Sqlite |$kind| $arg; $($name),*);
        $crate::common::both_stores!(@store mysql Mysql |$kind| $arg; $($name),*);
    };
    (@store $module:ident $variant:ident |$kind:ident| $arg:expr; $($name:ident),*) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $name() {
                    let $kind = $crate::common::StoreKind::$variant;
                    super::$name($arg)
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        $crate::common::both_stores!(|kind| kind; $($name),*);
    };
}
pub(crate) use both_stores;

/// A shared text buffer filled by a background reader thread.
pub type LogBuf = Arc<Mutex<String>>;

/// Reads `r` line by line into `buf` until EOF. `on_line` sees every line
/// first (used to spot the "listening on" line).
fn spawn_line_reader(
    r: impl Read + Send + 'static,
    buf: LogBuf,
    mut on_line: impl FnMut(&str) + Send + 'static,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    on_line(&text);
                    buf.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push_str(&text);
                }
            }
        }
    })
}

/// The `ADDR` in `... listening on http://ADDR ...`, with an unspecified
/// address (0.0.0.0) replaced by loopback.
fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on http://")? + "listening on http://".len()..];
    let addr = rest.split(|c: char| c.is_whitespace() || c == '/').next()?;
    let mut addr: SocketAddr = addr.parse().ok()?;
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    Some(addr)
}

// ---------------------------------------------------------------------------
// MySQL
// ---------------------------------------------------------------------------

/// The test MySQL server: `(host, port, user, pass)` from `HONE_TEST_MYSQL_*`.
pub fn mysql_server() -> (String, u16, String, String) {
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let port = var("HONE_TEST_MYSQL_PORT", "3306")
        .parse()
        .expect("HONE_TEST_MYSQL_PORT is a port number");
    (
        var("HONE_TEST_MYSQL_HOST", "127.0.0.1"),
        port,
        var("HONE_TEST_MYSQL_USER", "root"),
        var("HONE_TEST_MYSQL_PASS", ""),
    )
}

fn mysql_opts(
    host: &str,
    port: u16,
    user: &str,
    pass: &str,
    db: Option<&str>,
) -> ::mysql::OptsBuilder {
    ::mysql::OptsBuilder::new()
        .ip_or_hostname(Some(host))
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(pass))
        .db_name(db)
        .tcp_connect_timeout(Some(Duration::from_secs(5)))
        .read_timeout(Some(Duration::from_secs(30)))
        .write_timeout(Some(Duration::from_secs(30)))
}

/// Renders one MySQL value as text (`None` for NULL), so that rows can be
/// compared and printed regardless of the protocol that fetched them.
pub fn mysql_value_text(v: &::mysql::Value) -> Option<String> {
    use ::mysql::Value as V;
    match v {
        V::NULL => None,
        V::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        V::Int(i) => Some(i.to_string()),
        V::UInt(u) => Some(u.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// Every row of `sql` (text protocol), each value rendered by [`mysql_value_text`].
pub fn mysql_rows(
    conn: &mut impl ::mysql::prelude::Queryable,
    sql: &str,
) -> Vec<Vec<Option<String>>> {
    let rows: Vec<::mysql::Row> = conn.query(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter()
        .map(|r| r.unwrap().iter().map(mysql_value_text).collect())
        .collect()
}

/// A database of its own on the test server (`hb_t_<pid>_<counter>_<hex>`),
/// dropped (with any users made by [`TestDb::add_user`]) when this drops.
pub struct TestDb {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub pass: String,
    pub name: String,
    pool: ::mysql::Pool,
    users: Mutex<Vec<String>>,
}

impl TestDb {
    /// Creates the database. Panics (with a hint) when the server does not answer.
    pub fn new() -> TestDb {
        use ::mysql::prelude::Queryable;
        let (host, port, user, pass) = mysql_server();
        let name = unique_name("hb_t");
        let mut admin = ::mysql::Conn::new(mysql_opts(&host, port, &user, &pass, None))
            .unwrap_or_else(|e| {
                panic!(
                    "cannot connect to the test MySQL server {user}@{host}:{port} ({e}); \
                     start it or set HONE_TEST_MYSQL_HOST/PORT/USER/PASS"
                )
            });
        admin
            .query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .expect("CREATE DATABASE");
        let constraints = ::mysql::PoolConstraints::new(0, 4).expect("valid pool size");
        let opts = mysql_opts(&host, port, &user, &pass, Some(&name))
            .pool_opts(::mysql::PoolOpts::default().with_constraints(constraints));
        let pool = ::mysql::Pool::new(opts).expect("pool on the test database");
        TestDb {
            host,
            port,
            user,
            pass,
            name,
            pool,
            users: Mutex::new(Vec::new()),
        }
    }

    /// A connection to the test database.
    pub fn conn(&self) -> ::mysql::PooledConn {
        self.pool
            .try_get_conn(Duration::from_secs(10))
            .expect("connection to the test database")
    }

    /// Runs statements (no result).
    pub fn exec(&self, sql: &str) {
        use ::mysql::prelude::Queryable;
        self.conn()
            .query_drop(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Every row of a query, values as text (see [`mysql_rows`]).
    pub fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        mysql_rows(&mut self.conn(), sql)
    }

    /// Settings for a store on this database (through `host:port`, which may
    /// be a [`TcpProxy`] in front of the server).
    pub fn settings_via(&self, host: &str, port: u16) -> MysqlSettings {
        MysqlSettings {
            host: host.to_string(),
            port,
            user: self.user.clone(),
            pass: Secret::new(self.pass.clone()),
            db_name: self.name.clone(),
            max_connections: 8,
        }
    }

    /// A fresh `MysqlStore` (its own pool) on this database. Not migrated.
    pub fn store(&self) -> MysqlStore {
        MysqlStore::open(&self.settings_via(&self.host, self.port)).expect("open MysqlStore")
    }

    /// The `HONE_BUILD_DB_*` settings for a [`Service`] using this database
    /// through `host:port` (pass `self.host`/`self.port` for a direct link).
    pub fn service_env(&self, host: &str, port: u16) -> Vec<(String, String)> {
        [
            ("DB_HOST", host.to_string()),
            ("DB_PORT", port.to_string()),
            ("DB_USER", self.user.clone()),
            ("DB_PASS", self.pass.clone()),
            ("DB_NAME", self.name.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("HONE_BUILD_{k}"), v))
        .collect()
    }

    /// Creates a server user with `password` and all privileges on this
    /// database only; it is dropped with the database. Returns its name.
    pub fn add_user(&self, password: &str) -> String {
        let user = unique_name("hbu").chars().take(32).collect::<String>();
        for host in ["%", "localhost", "127.0.0.1"] {
            self.exec(&format!(
                "CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'"
            ));
            self.users
                .lock()
                .unwrap()
                .push(format!("'{user}'@'{host}'"));
            self.exec(&format!(
                "GRANT ALL PRIVILEGES ON `{}`.* TO '{user}'@'{host}'",
                self.name
            ));
        }
        user
    }
}

impl Default for TestDb {
    fn default() -> Self {
        TestDb::new()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        use ::mysql::prelude::Queryable;
        let admin = ::mysql::Conn::new(mysql_opts(
            &self.host, self.port, &self.user, &self.pass, None,
        ));
        match admin {
            Ok(mut c) => {
                if let Err(e) = c.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name)) {
                    eprintln!("warning: cannot drop test database {}: {e}", self.name);
                }
                for u in self.users.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                    let _ = c.query_drop(format!("DROP USER IF EXISTS {u}"));
                }
            }
            Err(e) => eprintln!("warning: cannot drop test database {}: {e}", self.name),
        }
    }
}

// ---------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------

/// The file the service's embedded store uses in a DATA_DIR.
pub const SQLITE_FILE: &str = "hone-build.sqlite3";

/// An `SqliteStore` on `dir/hone-build.sqlite3` (the service's file name). Not migrated.
pub fn sqlite_store(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join(SQLITE_FILE)).expect("open SqliteStore")
}

/// Renders every row of `sql` on an SQLite connection as text (`None` for NULL).
pub fn sqlite_rows(conn: &rusqlite::Connection, sql: &str) -> Vec<Vec<Option<String>>> {
    use rusqlite::types::ValueRef;
    let mut st = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let n = st.column_count();
    let rows = st
        .query_map([], |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        ValueRef::Null => None,
                        ValueRef::Integer(v) => Some(v.to_string()),
                        ValueRef::Real(v) => Some(v.to_string()),
                        ValueRef::Text(t) | ValueRef::Blob(t) => {
                            Some(String::from_utf8_lossy(t).into_owned())
                        }
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.collect::<rusqlite::Result<_>>()
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

// ---------------------------------------------------------------------------
// The hone-build service
// ---------------------------------------------------------------------------

/// How to start a [`Service`]. Defaults: a fresh temporary working directory,
/// `PORT=0`, `LOG_LEVEL=debug`, DATA_DIR/UPLOADS_DIR/PACKAGES_DIR as
/// `data`, `uploads`, `packages` inside the working directory (absolute
/// paths), `PERRY_HUB_URL=http://127.0.0.1:9` (nothing listens there: set
/// it to a [`Sim`]'s URL), `PERRY_HUB_WS_URL=off` (set it to a real-hub
/// [`Sim`]'s [`Sim::ws_url`] to follow builds), embedded store. Inherited `HONE_BUILD_*` and
/// `RUST_LOG` variables are removed, so only what the builder sets applies.
pub struct ServiceBuilder {
    /// Environment variables to set (`Some`) or leave unset (`None`).
    env: BTreeMap<String, Option<String>>,
    dir: Option<PathBuf>,
    args: Vec<String>,
    /// A command the binary is run through (`prlimit --nofile=256 <bin> ...`).
    wrapper: Vec<String>,
}

impl ServiceBuilder {
    /// Runs the binary through `command` (its arguments first, then the
    /// binary and its own), e.g. `wrap(&["prlimit", "--nofile=256"])`.
    pub fn wrap(mut self, command: &[&str]) -> Self {
        self.wrapper = command.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Sets configuration key `KEY` (as `HONE_BUILD_KEY`).
    pub fn set(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env
            .insert(format!("HONE_BUILD_{key}"), Some(value.into()));
        self
    }

    /// Leaves `HONE_BUILD_KEY` unset, also when it is one of the builder's
    /// defaults (for example `unset("LOG_LEVEL")` to get the built-in default).
    pub fn unset(mut self, key: &str) -> Self {
        self.env.insert(format!("HONE_BUILD_{key}"), None);
        self
    }

    /// Sets a raw environment variable.
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.insert(name.to_string(), Some(value.into()));
        self
    }

    /// Sets several raw environment variables (e.g. [`TestDb::service_env`]).
    pub fn envs(mut self, pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env
            .extend(pairs.into_iter().map(|(k, v)| (k, Some(v))));
        self
    }

    /// Runs in this working directory instead of a fresh temporary one (it
    /// is not removed; reuse it to restart a service on the same files).
    pub fn dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// A command-line argument (`--config FILE`, a subcommand, ...).
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    /// Starts the process without waiting for it to listen (for start-up
    /// failures and subcommands; see [`Service::wait_exit`]).
    pub fn spawn(self) -> Service {
        let (temp, dir) = match self.dir {
            Some(d) => (None, d),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("hone-build-test")
                    .tempdir()
                    .expect("tempdir");
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_hone-build"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_hone-build")),
        };
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("HONE_BUILD_") || k == "RUST_LOG" {
                cmd.env_remove(k.as_ref());
            }
        }
        let defaults = [
            ("PORT", "0".to_string()),
            ("LOG_LEVEL", "debug".to_string()),
            ("DATA_DIR", dir.join("data").display().to_string()),
            ("UPLOADS_DIR", dir.join("uploads").display().to_string()),
            ("PACKAGES_DIR", dir.join("packages").display().to_string()),
            // Never the real hub by accident: the discard port refuses connections.
            ("PERRY_HUB_URL", "http://127.0.0.1:9".to_string()),
            // A patched hub that calls back (the `--callbacks` simulator):
            // jobs wait for `POST /artifact`. Tests of following set the
            // simulator's WebSocket instead.
            ("PERRY_HUB_WS_URL", "off".to_string()),
        ];
        let mut env: BTreeMap<String, String> = defaults
            .into_iter()
            .map(|(k, v)| (format!("HONE_BUILD_{k}"), v))
            .collect();
        for (k, v) in self.env {
            match v {
                Some(v) => env.insert(k, v),
                None => env.remove(&k),
            };
        }
        cmd.envs(&env)
            .args(&self.args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn hone-build");
        let log: LogBuf = Arc::default();
        let stdout: LogBuf = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let err_reader =
            spawn_line_reader(child.stderr.take().unwrap(), Arc::clone(&log), move |l| {
                if let Some(a) = parse_listening(l).filter(|_| l.contains("hone-build")) {
                    let _ = tx.send(a);
                }
            });
        let out_reader =
            spawn_line_reader(child.stdout.take().unwrap(), Arc::clone(&stdout), |_| {});
        Service {
            child,
            _temp: temp,
            dir,
            log,
            stdout,
            addr: None,
            listening: Some(rx),
            readers: vec![err_reader, out_reader],
        }
    }

    /// Starts the process and waits (at most 20 s) until it logs
    /// `listening on http://ADDR`. Panics with the captured log otherwise.
    pub fn start(self) -> Service {
        let mut s = self.spawn();
        s.wait_listening(Duration::from_secs(20));
        s
    }
}

/// A running (or exited) `hone-build` process. Dropping it kills the process.
pub struct Service {
    child: Child,
    _temp: Option<tempfile::TempDir>,
    dir: PathBuf,
    log: LogBuf,
    stdout: LogBuf,
    addr: Option<SocketAddr>,
    listening: Option<std::sync::mpsc::Receiver<SocketAddr>>,
    readers: Vec<JoinHandle<()>>,
}

impl Service {
    /// A builder with the defaults described at [`ServiceBuilder`].
    pub fn builder() -> ServiceBuilder {
        ServiceBuilder {
            env: BTreeMap::new(),
            dir: None,
            args: Vec::new(),
            wrapper: Vec::new(),
        }
    }

    /// Waits until the process logs its address. Panics (with the log) when
    /// it exits first or `timeout` passes.
    pub fn wait_listening(&mut self, timeout: Duration) -> SocketAddr {
        if let Some(a) = self.addr {
            return a;
        }
        let rx = self.listening.take().expect("wait_listening after spawn");
        let deadline = Instant::now() + timeout;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(a) => {
                    self.addr = Some(a);
                    return a;
                }
                Err(_) if Instant::now() >= deadline => {
                    panic!(
                        "hone-build did not listen within {timeout:?}; log:\n{}",
                        self.log()
                    )
                }
                Err(_) => {
                    if let Ok(Some(st)) = self.child.try_wait() {
                        std::thread::sleep(Duration::from_millis(100)); // let the reader finish
                        panic!(
                            "hone-build exited ({st}) before listening; log:\n{}",
                            self.log()
                        );
                    }
                }
            }
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
            .expect("service not started (use start(), or wait_listening())")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// `base() + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// The working directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything the process wrote to stderr so far (its log).
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Still running?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (through the `kill` command: test code only; the service
    /// itself never runs commands).
    pub fn terminate(&mut self) {
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -TERM failed: {st}");
    }

    /// Waits at most `timeout` for the process to exit; then also waits
    /// (briefly) for its output to be fully captured. `None`: still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                let until = Instant::now() + Duration::from_secs(2);
                while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(10));
                }
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// perry-hub-sim
// ---------------------------------------------------------------------------

/// A job's callback, as the hub received it in an accepted submission.
#[derive(Debug, Clone)]
pub struct Callback {
    /// The hub's job id.
    pub hub_job_id: String,
    /// `/artifact/<id>?token=<token>` (path and query of the callback URL).
    pub path_query: String,
    pub id: String,
    pub token: String,
}

/// A running `perry-hub-sim`. Dropping it kills the process.
pub struct Sim {
    child: Option<Child>,
    args: Vec<String>,
    addr: SocketAddr,
    log: LogBuf,
}

impl Sim {
    /// Starts the simulator on a free port with these extra arguments
    /// (e.g. `["--build-delay-ms", "50"]`), as a patched hub that calls back
    /// (`--callbacks`).
    pub fn start(args: &[&str]) -> Sim {
        Sim::start_on(0, args)
    }

    /// Starts it in its default real-hub mode (WebSocket, downloads); its
    /// WebSocket address is [`Sim::ws_url`].
    pub fn start_real(args: &[&str]) -> Sim {
        Sim::launch(0, args.iter().map(|s| s.to_string()).collect())
    }

    /// `ws://127.0.0.1:PORT/ws` of the simulator's WebSocket server.
    pub fn ws_url(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if let Some(at) = log.find("websocket on ws://") {
                let rest = &log[at + "websocket on ".len()..];
                return rest.split_whitespace().next().unwrap_or("").to_string();
            }
            assert!(Instant::now() < deadline, "no websocket line: {log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it (with `--callbacks`) on `port` (0: any), retrying for a few
    /// seconds while the port is still taken (a restart right after a kill).
    pub fn start_on(port: u16, args: &[&str]) -> Sim {
        let args = ["--callbacks"].iter().chain(args).map(|s| s.to_string());
        Sim::launch(port, args.collect())
    }

    fn launch(port: u16, args: Vec<String>) -> Sim {
        let log: LogBuf = Arc::default();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Sim::spawn(port, &args, &log) {
                Ok((child, addr)) => {
                    return Sim {
                        child: Some(child),
                        args,
                        addr,
                        log,
                    };
                }
                Err(e) if Instant::now() >= deadline => panic!("perry-hub-sim did not start: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    fn spawn(port: u16, args: &[String], log: &LogBuf) -> Result<(Child, SocketAddr), String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_perry-hub-sim"))
            .arg("--port")
            .arg(port.to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn perry-hub-sim: {e}"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        spawn_line_reader(child.stdout.take().unwrap(), Arc::clone(log), move |l| {
            if let Some(a) = parse_listening(l) {
                let _ = tx.send(a);
            }
        });
        spawn_line_reader(child.stderr.take().unwrap(), Arc::clone(log), |_| {});
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(a) = rx.recv_timeout(Duration::from_millis(100)) {
                return Ok((child, a));
            }
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!("exited with {st}"));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("did not print its address within 10 s".into());
            }
        }
    }

    /// `http://127.0.0.1:PORT` (use as PERRY_HUB_URL).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The simulator's stdout and stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `POST /_sim/config` with a JSON object of knobs; returns the full config.
    pub fn set(&self, knobs: serde_json::Value) -> serde_json::Value {
        let body = knobs.to_string();
        let r = http(
            "POST",
            &format!("{}/_sim/config", self.url()),
            &[],
            Some(body.as_bytes()),
        );
        assert_eq!(r.status, 200, "sim config {knobs}: {}", r.text());
        r.json()
    }

    fn get_list(&self, what: &str) -> Vec<serde_json::Value> {
        let r = http("GET", &format!("{}/_sim/{what}", self.url()), &[], None);
        assert_eq!(r.status, 200, "sim {what}: {}", r.text());
        match r.json() {
            serde_json::Value::Array(a) => a,
            other => panic!("sim {what}: not an array: {other}"),
        }
    }

    /// Every `POST /api/v1/build` the simulator received.
    pub fn submissions(&self) -> Vec<serde_json::Value> {
        self.get_list("submissions")
    }

    /// Every artifact delivery attempt.
    pub fn deliveries(&self) -> Vec<serde_json::Value> {
        self.get_list("deliveries")
    }

    /// `POST /_sim/reset`.
    pub fn reset(&self) {
        let r = http("POST", &format!("{}/_sim/reset", self.url()), &[], None);
        assert_eq!(r.status, 200, "sim reset: {}", r.text());
    }

    /// `POST /_sim/deliver/<job>`: the delivery record(s).
    pub fn deliver(&self, job_id: &str) -> serde_json::Value {
        let r = http(
            "POST",
            &format!("{}/_sim/deliver/{job_id}", self.url()),
            &[],
            None,
        );
        assert_eq!(r.status, 200, "sim deliver {job_id}: {}", r.text());
        r.json()
    }

    /// The callback of the accepted submission of `name` `version` for
    /// `platform` (panics when there is none).
    #[track_caller]
    pub fn callback(&self, name: &str, version: &str, platform: &str) -> Callback {
        let subs = self.submissions();
        let s = subs
            .iter()
            .find(|s| {
                // The workers' forms of the name and version (`my.plugin` →
                // `my-plugin`, `1.0.0-beta.1` → `1.0.0`) can collide; the
                // bundle id carries the real name.
                s["status"] == 200
                    && s["manifest"]["bundle_id"] == format!("codes.hone.plugin.{name}")
                    && s["manifest"]["version"] == hone_build::hub::hub_version(version)
                    && s["manifest"]["targets"] == serde_json::json!([platform])
            })
            .unwrap_or_else(|| panic!("no accepted submission of {name} {version} {platform}"));
        let url = s["artifact_upload_url"].as_str().expect("callback URL");
        let path_query = &url[url.find("/artifact/").expect("callback path")..];
        let (path, token) = path_query
            .split_once("?token=")
            .expect("token in callback URL");
        Callback {
            hub_job_id: s["job_id"].as_str().expect("hub job id").to_string(),
            path_query: path_query.to_string(),
            id: path["/artifact/".len()..].to_string(),
            token: token.to_string(),
        }
    }

    /// Kills the simulator (the hub goes away); [`Sim::restart`] brings it back.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same arguments (state is fresh).
    pub fn restart(&mut self) {
        self.kill();
        let new = Sim::launch(self.addr.port(), self.args.clone());
        *self = new;
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// HTTP clients
// ---------------------------------------------------------------------------

/// A response: status, headers (names lower-case), body.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.text()))
    }
}

/// One HTTP request with a fresh agent: 4xx/5xx are responses, not errors;
/// 15 s overall time limit. Err only for transport failures.
pub fn try_http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Resp, ureq::Error> {
    try_http_timeout(method, url, headers, body, Duration::from_secs(15))
}

/// [`try_http`] with another overall time limit.
pub fn try_http_timeout(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Resp, ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .timeout_connect(Some(Duration::from_secs(5)))
        .max_idle_connections(0)
        .build()
        .into();
    let mut b = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut resp = match body {
        Some(bytes) => agent.run(b.body(bytes.to_vec()).expect("valid request"))?,
        None => agent.run(b.body(()).expect("valid request"))?,
    };
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_vec()?;
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// [`try_http`], panicking on a transport failure.
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
    try_http(method, url, headers, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// What a raw client does after sending its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// Nothing: read the answer.
    Normal,
    /// Half-closes (FIN) right after its bytes: a body that ends early.
    HalfClose,
    /// Stays silent with the connection open (the server must time out).
    Stall,
}

/// The first response on a connection, parsed (`status` 0: none).
#[derive(Debug, Default)]
pub struct Answer {
    pub status: u16,
    /// Names lower-case.
    pub headers: Vec<(String, String)>,
    /// The first response's body (by its Content-Length).
    pub body: String,
    /// Everything received (possibly several responses), lossy UTF-8.
    pub raw: String,
    /// The server closed the connection (within the time read).
    pub closed: bool,
}

impl Answer {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the first response in `raw` (an [`Answer`] with status 0 when
/// there is no complete head).
pub fn parse_answer(raw: String) -> Answer {
    let Some(end) = raw.find("\r\n\r\n") else {
        return Answer {
            raw,
            ..Answer::default()
        };
    };
    let mut lines = raw[..end].split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(rest.len());
    let body = rest.get(..len.min(rest.len())).unwrap_or(rest).to_string();
    Answer {
        status,
        headers,
        body,
        raw,
        closed: false,
    }
}

/// Is `got` one complete response (head plus Content-Length body)?
pub fn response_complete(got: &[u8]) -> bool {
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    got.len() >= end + 4 + len
}

/// Reads from `s` until `done(bytes so far)`, EOF (or a reset), or
/// `timeout`. Returns the bytes and whether the connection ended.
pub fn read_until(
    s: &mut TcpStream,
    timeout: Duration,
    mut got: Vec<u8>,
    done: impl Fn(&[u8]) -> bool,
) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + timeout;
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if done(&got) {
                    return (got, false);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (got, true),
        }
    }
    (got, false)
}

/// Sends `bytes` as-is on a new connection, applies `wire`, reads the
/// first response (at most `timeout`); then, when `linger` is non-zero,
/// keeps reading for that long (or until the server closes).
pub fn exchange(
    addr: SocketAddr,
    bytes: &[u8],
    wire: Wire,
    timeout: Duration,
    linger: Duration,
) -> Answer {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer (and close) before taking everything.
    let _ = s.write_all(bytes);
    if wire == Wire::HalfClose {
        let _ = s.shutdown(Shutdown::Write);
    }
    let (mut got, mut closed) = read_until(&mut s, timeout, Vec::new(), response_complete);
    if !closed && !linger.is_zero() {
        (got, closed) = read_until(&mut s, linger, got, |_| false);
    }
    let mut a = parse_answer(String::from_utf8_lossy(&got).into_owned());
    a.closed = closed;
    a
}

/// Sends `bytes` as-is over a new TCP connection and returns what comes
/// back (lossy UTF-8): everything until the server closes the connection,
/// a complete response (headers plus Content-Length body) has arrived, or
/// 5 s pass.
pub fn raw_request(addr: SocketAddr, bytes: &[u8]) -> String {
    exchange(
        addr,
        bytes,
        Wire::Normal,
        Duration::from_secs(5),
        Duration::ZERO,
    )
    .raw
}

/// Reads from `s` until EOF, a complete response, or `timeout`.
pub fn read_response(s: &mut TcpStream, timeout: Duration) -> String {
    let (got, _) = read_until(s, timeout, Vec::new(), response_complete);
    String::from_utf8_lossy(&got).into_owned()
}

// ---------------------------------------------------------------------------
// TCP proxy
// ---------------------------------------------------------------------------

/// A TCP proxy on `127.0.0.1:<any>` forwarding to `target`. [`TcpProxy::cut`]
/// closes every current connection and closes new ones at once (an outage);
/// [`TcpProxy::restore`] forwards again. Its threads stop when it drops.
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<ProxyShared>,
    acceptor: Option<JoinHandle<()>>,
}

struct ProxyShared {
    target: SocketAddr,
    stop: AtomicBool,
    cut: AtomicBool,
    /// Both ends of every forwarded connection (to shut them down on cut/drop).
    conns: Mutex<Vec<TcpStream>>,
}

impl ProxyShared {
    fn close_all(&self) {
        for s in self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl TcpProxy {
    /// Starts forwarding to `target` (a `host:port` that resolves).
    pub fn start(target: &str) -> TcpProxy {
        use std::net::ToSocketAddrs;
        let target = target
            .to_socket_addrs()
            .expect("resolve proxy target")
            .next()
            .expect("proxy target address");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(ProxyShared {
            target,
            stop: AtomicBool::new(false),
            cut: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let sh = Arc::clone(&shared);
        let acceptor = std::thread::spawn(move || {
            while !sh.stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((client, _)) => {
                        if sh.cut.load(Ordering::Acquire) {
                            let _ = client.shutdown(Shutdown::Both);
                            continue;
                        }
                        let _ = client.set_nonblocking(false);
                        TcpProxy::forward(&sh, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TcpProxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    fn forward(sh: &Arc<ProxyShared>, client: TcpStream) {
        let Ok(server) = TcpStream::connect_timeout(&sh.target, Duration::from_secs(3)) else {
            let _ = client.shutdown(Shutdown::Both);
            return;
        };
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
            return;
        };
        {
            let mut conns = sh.conns.lock().unwrap_or_else(|p| p.into_inner());
            if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
                conns.push(a);
                conns.push(b);
            }
        }
        let pump = |mut from: TcpStream, mut to: TcpStream| {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from, &mut to);
                let _ = to.shutdown(Shutdown::Both);
                let _ = from.shutdown(Shutdown::Both);
            });
        };
        pump(client, s2);
        pump(server, c2);
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// An outage: closes every open connection, and new ones right away.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::Release);
        self.shared.close_all();
    }

    /// Ends the outage: new connections are forwarded again.
    pub fn restore(&self) {
        self.shared.cut.store(false, Ordering::Release);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.close_all();
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------
// A stand-in for Perry Hub that misbehaves
// ---------------------------------------------------------------------------

/// A stand-in for Perry Hub on loopback: it reads each request (head, then
/// the body until the client pauses for 300 ms), waits `delay`, and sends
/// `answer`; with no answer it holds the connection open and never says
/// anything (a hub that accepts and hangs). Counts the connections.
pub struct FakeHub {
    url: String,
    connections: Arc<AtomicU32>,
}

impl FakeHub {
    pub fn start(delay: Duration, answer: Option<String>) -> FakeHub {
        FakeHub::start_on(0, delay, answer)
    }

    /// [`FakeHub::start`] on 127.0.0.1:`port` (0: any free port).
    pub fn start_on(port: u16, delay: Duration, answer: Option<String>) -> FakeHub {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind fake hub");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicU32::new(0));
        let count = Arc::clone(&connections);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let answer = answer.clone();
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut got = Vec::new();
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        got.extend_from_slice(&buf[..n]);
                        if got.windows(4).any(|w| w == b"\r\n\r\n") {
                            let _ = conn.set_read_timeout(Some(Duration::from_millis(300)));
                        }
                    }
                    match answer {
                        Some(a) => {
                            std::thread::sleep(delay);
                            let _ = conn.write_all(a.as_bytes());
                        }
                        // Held open until the client gives up.
                        None => {
                            let _ = conn.set_read_timeout(None);
                            let _ = conn.read(&mut buf);
                        }
                    }
                });
            }
        });
        FakeHub { url, connections }
    }

    /// An HTTP/1.1 answer with a JSON body, closing the connection.
    pub fn json(status: u16, body: &str) -> String {
        format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u32 {
        self.connections.load(Ordering::SeqCst)
    }
}
