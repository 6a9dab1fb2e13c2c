//! Reading build logs (issue 12): `GET /logs/:name/:version/:platform`
//! (plain, `?attempt=N`, `?follow=1` streamed) and `hone-build logs`, the
//! real binary against `perry-hub-sim` in real-hub mode, on both stores.
//!
//! Some tests add lines to a log straight through the store (the service
//! reads the store, so lines another process writes count the same): that
//! makes a followed build's output arrive when the test says, and as much
//! of it as a test needs.

use crate::common;
use common::{Service, StoreKind, both_stores, http, wait_until};
use hone_build::store::{LogStream, NewLogLine, Store};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

const TEXT: &str = "text/plain; charset=utf-8";

/// How long a job waits in the simulated hub's queue before it builds:
/// long enough for hone-build to subscribe first even on a loaded machine
/// (the hub replays nothing, so lines sent earlier are in no log).
const QUEUED: &str = "--build-delay-ms";
const QUEUED_MS: &str = "1500";

/// The follow tests' environment (the real-hub simulator, hone-build
/// following it, either store), with what reading logs needs besides.
struct Env(crate::follow::Env);

impl std::ops::Deref for Env {
    type Target = crate::follow::Env;
    fn deref(&self) -> &crate::follow::Env {
        &self.0
    }
}

impl std::ops::DerefMut for Env {
    fn deref_mut(&mut self) -> &mut crate::follow::Env {
        &mut self.0
    }
}

impl Env {
    fn start(kind: StoreKind, sim_args: &[&str], extra: &[(&str, &str)]) -> Env {
        Env(crate::follow::Env::start(kind, sim_args, extra))
    }

    /// The `HONE_BUILD_*` settings a command needs to reach the same store.
    fn command_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "HONE_BUILD_DATA_DIR".to_string(),
                self.workdir.join("data").display().to_string(),
            ),
            ("HONE_BUILD_LOG_LEVEL".to_string(), "warn".to_string()),
        ];
        if let Some(db) = &self.db {
            env.extend(db.service_env(&db.host, db.port));
        }
        env
    }

    /// Uploads `name` `version` for linux (accepted).
    fn upload(&self, name: &str, version: &str) {
        self.upload_ok(name, version, "linux");
    }

    fn overall(&self, name: &str, version: &str) -> String {
        self.status(name, version)["overall"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until the job of `name` `version` (linux) has a log attempt;
    /// its id and that attempt.
    #[track_caller]
    fn wait_attempt(&self, name: &str, version: &str) -> (i64, u32) {
        let store = self.store();
        let mut found = None;
        let ok = wait_until(Duration::from_secs(20), || {
            let jobs = store.version_jobs(name, version).unwrap_or_default();
            found = jobs
                .first()
                .filter(|j| j.log_attempt > 0)
                .map(|j| (j.id, j.log_attempt));
            found.is_some()
        });
        assert!(ok, "no log attempt for {name} {version}");
        found.unwrap()
    }

    fn log_rows(&self) -> i64 {
        let rows = self.rows("SELECT COUNT(*) FROM buildLogLines");
        rows[0][0].as_deref().unwrap().parse().unwrap()
    }
}

impl Drop for Env {
    /// A failed test shows what the service said last.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let running = self.svc.is_running();
            eprintln!(
                "hone-build (running: {running}) log tail:\n{}",
                common::tail_lines(&self.svc.log(), 60)
            );
        }
    }
}

/// Appends `lines` (stdout) to a log straight through the store.
fn append(store: &dyn Store, job: i64, attempt: u32, lines: &[String]) {
    let now = hone_build::app::now_millis();
    let lines: Vec<NewLogLine> = lines
        .iter()
        .map(|t| NewLogLine {
            at_ms: now,
            stream: LogStream::Stdout,
            text: t.clone(),
        })
        .collect();
    store
        .append_log(job, attempt, &lines, 64 << 20)
        .expect("append_log");
}

/// A streamed response read as it comes, over a raw socket.
struct Follow {
    sock: TcpStream,
    raw: Vec<u8>,
    head_end: Option<usize>,
}

impl Follow {
    fn open(svc: &Service, path: &str) -> Follow {
        let sock = TcpStream::connect(svc.addr()).expect("connect");
        Follow::send(sock, path)
    }

    fn send(mut sock: TcpStream, path: &str) -> Follow {
        write!(sock, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        Follow {
            sock,
            raw: Vec::new(),
            head_end: None,
        }
    }

    /// Reads until `done(self)` or `timeout`; false on timeout or EOF first.
    fn read_until(&mut self, timeout: Duration, done: impl Fn(&Follow) -> bool) -> bool {
        let end = Instant::now() + timeout;
        let mut buf = [0u8; 8192];
        while !done(self) {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            match self.sock.read(&mut buf) {
                Ok(0) => return done(self),
                Ok(n) => self.raw.extend_from_slice(&buf[..n]),
                Err(_) => return done(self),
            }
            if self.head_end.is_none() {
                self.head_end = self
                    .raw
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|i| i + 4);
            }
        }
        true
    }

    fn head(&mut self) -> String {
        assert!(
            self.read_until(Duration::from_secs(10), |f| f.head_end.is_some()),
            "no response head: {:?}",
            String::from_utf8_lossy(&self.raw)
        );
        String::from_utf8_lossy(&self.raw[..self.head_end.unwrap()]).into_owned()
    }

    fn status(&mut self) -> u16 {
        let head = self.head();
        head[9..12].parse().unwrap()
    }

    /// The body so far, chunked coding removed; and whether the last chunk
    /// has arrived.
    fn body(&self) -> (String, bool) {
        let Some(start) = self.head_end else {
            return (String::new(), false);
        };
        let mut rest = &self.raw[start..];
        let mut out = Vec::new();
        loop {
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                return (String::from_utf8_lossy(&out).into_owned(), false);
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16).unwrap();
            if size == 0 {
                return (String::from_utf8_lossy(&out).into_owned(), true);
            }
            if rest.len() < eol + 2 + size + 2 {
                return (String::from_utf8_lossy(&out).into_owned(), false);
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
    }

    #[track_caller]
    fn wait_for(&mut self, text: &str, timeout: Duration) -> String {
        let ok = self.read_until(timeout, |f| f.body().0.contains(text));
        let body = self.body().0;
        assert!(ok, "'{text}' not streamed within {timeout:?}; got:\n{body}");
        body
    }

    #[track_caller]
    fn wait_end(&mut self, timeout: Duration) -> String {
        let ok = self.read_until(timeout, |f| f.body().1);
        let body = self.body().0;
        assert!(ok, "stream did not end within {timeout:?}; got:\n{body}");
        body
    }
}

fn json_error(r: &common::Resp) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_string()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

both_stores!(
    follow_streams_lines_as_they_come_and_ends_with_the_build,
    plain_log_after_the_build_and_attempts_of_a_resubmitted_job,
    bad_requests_are_refused_and_write_nothing,
    followers_are_bounded_and_do_not_hold_workers,
    a_follower_that_never_reads_is_cut_off_and_frees_its_slot,
    stopping_the_service_ends_followers,
    the_logs_command_prints_the_log,
    a_tail_is_the_end_of_the_log_and_can_be_followed,
);

/// `?tail=N`: the last N lines after one saying how many earlier ones are
/// left out (all of a shorter log, as without it); with `follow=1` the
/// tail, then the lines as they come (`tail -n N -f`).
fn a_tail_is_the_end_of_the_log_and_can_be_followed(kind: StoreKind) {
    let env = Env::start(kind, &["--build-delay-ms", "600000"], &[]);
    env.upload("logs-tail", "1.0.0");
    let (job, attempt) = env.wait_attempt("logs-tail", "1.0.0");
    let store = env.store();
    let url = env.svc.url("/logs/logs-tail/1.0.0/linux");
    // hone-build's own lines of the submission first (then it writes
    // nothing while the hub queues the job).
    settled_log(&url);
    let lines: Vec<String> = (0..50).map(|i| format!("tail line {i}")).collect();
    append(store.as_ref(), job, attempt, &lines);
    let whole = settled_log(&url);
    let whole: Vec<&str> = whole.lines().collect();
    assert!(whole.len() > 50, "{whole:?}");
    let r = http("GET", &format!("{url}?tail=5"), &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some(TEXT));
    assert_eq!(r.header("X-Log-Attempt"), Some("1"));
    let tail = r.text();
    let tail: Vec<&str> = tail.lines().collect();
    assert_eq!(tail.len(), 6, "{tail:?}");
    assert_eq!(
        tail[0],
        format!(
            "[\u{2026} {} earlier line(s) not shown here: see the whole log \u{2026}]",
            whole.len() - 5
        )
    );
    assert_eq!(tail[1..], whole[whole.len() - 5..]);
    assert!(tail[5].ends_with("stdout | tail line 49"), "{tail:?}");
    // A tail as long as the log, or longer: the whole log.
    for n in [whole.len(), whole.len() + 1, 10_000] {
        let r = http("GET", &format!("{url}?tail={n}"), &[], None);
        assert_eq!(r.text().lines().collect::<Vec<_>>(), whole, "tail={n}");
    }
    // Followed: the tail, then what comes.
    let mut f = Follow::open(&env.svc, "/logs/logs-tail/1.0.0/linux?tail=2&follow=1");
    assert!(f.head().starts_with("HTTP/1.1 200"));
    f.wait_for("tail line 49", Duration::from_secs(5));
    append(store.as_ref(), job, attempt, &["after the tail".into()]);
    let body = f.wait_for("after the tail", Duration::from_secs(5));
    let got: Vec<&str> = body.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(got.len(), 4, "marker, two lines, the new one: {body}");
    assert!(got[0].contains("earlier line(s) not shown here"), "{body}");
    assert!(got[1].ends_with("tail line 48"), "{body}");
    assert!(got[2].ends_with("tail line 49"), "{body}");
    assert!(got[3].ends_with("stdout | after the tail"), "{body}");
    assert!(!f.body().1, "still following while the build runs");
}

/// `?follow=1` sends each line once it is stored, while the build runs,
/// and ends with the build (a last line saying how).
fn follow_streams_lines_as_they_come_and_ends_with_the_build(kind: StoreKind) {
    // Queued at the hub for 4 s, then five stages 300 ms apart.
    let env = Env::start(
        kind,
        &["--build-delay-ms", "4000", "--stage-delay-ms", "300"],
        &[],
    );
    env.upload("logs-follow", "1.0.0");
    let (job, attempt) = env.wait_attempt("logs-follow", "1.0.0");
    let mut f = Follow::open(&env.svc, "/logs/logs-follow/1.0.0/linux?follow=1");
    let head = f.head();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains(TEXT)
            && head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let store = env.store();
    append(
        store.as_ref(),
        job,
        attempt,
        &["first line from the test".into()],
    );
    f.wait_for("first line from the test", Duration::from_secs(3));
    assert_eq!(
        env.overall("logs-follow", "1.0.0"),
        "building",
        "read before the build ended"
    );
    append(store.as_ref(), job, attempt, &["second line".into()]);
    let body = f.wait_for("second line", Duration::from_secs(3));
    assert!(!body.contains("build completed"), "{body}");
    assert!(!f.body().1, "the stream is still open while the build runs");
    let body = f.wait_end(Duration::from_secs(30));
    assert_eq!(env.overall("logs-follow", "1.0.0"), "completed");
    let first = body.find("first line from the test").unwrap();
    let second = body.find("second line").unwrap();
    assert!(first < second, "{body}");
    let last = body.lines().last().unwrap_or_default();
    assert!(
        last.contains("hone-build") && last.ends_with("build completed"),
        "last line: {last}\n{body}"
    );
    // The lines the hub relayed are in the followed log too.
    assert!(body.contains("Compiling"), "the compiler's lines: {body}");
    // The access line is written once, when the stream ended (it reaches
    // the captured output a moment later).
    let count = || {
        env.svc
            .log()
            .lines()
            .filter(|l| l.contains("GET /logs/logs-follow/1.0.0/linux?follow=1 200"))
            .count()
    };
    wait_until(Duration::from_secs(5), || count() > 0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(), 1, "{}", env.svc.log());
}

/// Without `follow`: the whole log of the latest attempt, or `?attempt=N`
/// of a job submitted again (a compile failure, then `hone-build retry`).
fn plain_log_after_the_build_and_attempts_of_a_resubmitted_job(kind: StoreKind) {
    let env = Env::start(
        kind,
        &[
            QUEUED,
            QUEUED_MS,
            "--stage-delay-ms",
            "20",
            "--compile-failure",
        ],
        &[],
    );
    env.upload("logs-plain", "1.0.0");
    env.wait_overall("logs-plain", "1.0.0", "failed", Duration::from_secs(30));
    let url = env.svc.url("/logs/logs-plain/1.0.0/linux");
    settled_log(&url);
    let r = http("GET", &url, &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some(TEXT));
    assert_eq!(r.header("X-Log-Attempt"), Some("1"));
    let first = r.text();
    assert!(
        first.contains("stderr | src/index.ts(3,5): error TS2304"),
        "{first}"
    );
    // The marketplace's platform id names the same build.
    let by_id = http(
        "GET",
        &env.svc.url("/logs/logs-plain/1.0.0/linux-x64"),
        &[],
        None,
    );
    assert_eq!(by_id.status, 200);
    assert_eq!(by_id.text(), first);

    env.sim.set(serde_json::json!({"compile_failure": false}));
    let (code, _, err) = run_command(&env, &["retry", "logs-plain", "1.0.0"]);
    assert_eq!(code, 0, "{err}");
    env.wait_overall("logs-plain", "1.0.0", "completed", Duration::from_secs(30));
    let r = http("GET", &url, &[], None);
    assert_eq!(r.header("X-Log-Attempt"), Some("2"));
    assert!(r.text().contains("stdout | Wrote"), "{}", r.text());
    assert!(!r.text().contains("TS2304"), "{}", r.text());
    let r = http("GET", &format!("{url}?attempt=1"), &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Log-Attempt"), Some("1"));
    assert_eq!(r.text(), first);
    let r = http("GET", &format!("{url}?attempt=3"), &[], None);
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(json_error(&r).contains("no attempt 3"), "{}", r.text());
    // HTTP/1.0 has no chunked coding: the body ends with the connection.
    let mut sock = TcpStream::connect(env.svc.addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.write_all(b"GET /logs/logs-plain/1.0.0/linux?attempt=1&follow=1 HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    sock.read_to_string(&mut raw)
        .expect("read to the end of the connection");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.0 200"), "{raw}");
    assert!(head.contains("Connection: close"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert!(body.starts_with(&first), "{body}");
    assert!(body.trim_end().ends_with("(attempt 2)"), "{body}");
    // HEAD: the head alone; the follower's slot is given back at once.
    let r = http("HEAD", &format!("{url}?follow=1"), &[], None);
    assert_eq!(r.status, 200);
    assert!(r.text().is_empty());
    // Following an attempt whose build is over: its lines, then the end.
    let mut f = Follow::open(&env.svc, "/logs/logs-plain/1.0.0/linux?attempt=1&follow=1");
    let body = f.wait_end(Duration::from_secs(5));
    assert!(body.starts_with(&first), "{body}");
    assert!(
        body.trim_end()
            .ends_with("attempt 1 ended: the build was submitted again (attempt 2)"),
        "{body}"
    );
}

/// The log at `url` once it stops changing (hone-build may write its last
/// events for a build just after `/status` says it completed).
fn settled_log(url: &str) -> String {
    let mut last = http("GET", url, &[], None).text();
    loop {
        std::thread::sleep(Duration::from_millis(700));
        let now = http("GET", url, &[], None).text();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Runs `hone-build ARGS` on the service's store; (exit code, stdout, stderr).
fn run_command(env: &Env, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hone-build"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HONE_BUILD_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(&env.workdir).envs(env.command_env());
    let out = cmd.args(args).output().expect("run hone-build");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Each bad request: its status, its message, and nothing written.
fn bad_requests_are_refused_and_write_nothing(kind: StoreKind) {
    let env = Env::start(kind, &[QUEUED, QUEUED_MS, "--stage-delay-ms", "20"], &[]);
    env.upload("logs-bad", "1.0.0");
    env.wait_overall("logs-bad", "1.0.0", "completed", Duration::from_secs(30));
    // The service writes nothing more for this build once it completed.
    settled_log(&env.svc.url("/logs/logs-bad/1.0.0/linux"));
    let rows = env.log_rows();
    let jobs = format!(
        "{:?}",
        env.store().version_jobs("logs-bad", "1.0.0").unwrap()
    );
    let cases: &[(&str, u16, &str)] = &[
        (
            "/logs/logs-bad/1.0.0/linux?attempt=0",
            400,
            "attempt must be a whole number from 1",
        ),
        (
            "/logs/logs-bad/1.0.0/linux?attempt=abc",
            400,
            "attempt must be a whole number from 1",
        ),
        (
            "/logs/logs-bad/1.0.0/linux?attempt=-1",
            400,
            "attempt must be a whole number from 1",
        ),
        (
            "/logs/logs-bad/1.0.0/linux?attempt=99999999999",
            400,
            "attempt must be a whole number from 1",
        ),
        (
            "/logs/logs-bad/1.0.0/linux?follow=maybe",
            400,
            "follow must be 1 or 0",
        ),
        (
            "/logs/logs-bad/1.0.0/linux?attempt=1&attempt=1",
            400,
            "given more than once",
        ),
        (
            "/logs/logs-bad/1.0.0/linux?tail=0",
            400,
            "tail must be a whole number from 1 to 10000 (got '0')",
        ),
        (
            "/logs/logs-bad/1.0.0/linux?tail=10001",
            400,
            "tail must be a whole number from 1 to 10000",
        ),
        (
            "/logs/logs-bad/1.0.0/linux?tail=%2B5",
            400,
            "tail must be a whole number from 1 to 10000 (got '+5')",
        ),
        (
            "/logs/logs-bad/1.0.0/linux?tail=many&follow=1",
            400,
            "tail must be a whole number",
        ),
        (
            "/logs/logs-bad/1.0.0/linux?tail=",
            400,
            "tail must be a whole number",
        ),
        (
            "/logs/logs-bad/1.0.0/linux?tail=5&tail=5",
            400,
            "given more than once",
        ),
        ("/logs/logs-bad/1.0.0/linux?attempt=2", 404, "no attempt 2"),
        (
            "/logs/logs-bad/1.0.0/linux?attempt=2&follow=1",
            404,
            "no attempt 2",
        ),
        ("/logs/logs-bad/1.0.0/plan9", 404, "no platform 'plan9'"),
        (
            "/logs/logs-bad/1.0.0/macos",
            404,
            "no build of logs-bad 1.0.0 for macos",
        ),
        (
            "/logs/logs-bad/9.9.9/linux",
            404,
            "no builds for logs-bad 9.9.9",
        ),
        (
            "/logs/nobody/1.0.0/linux?follow=1",
            404,
            "no builds for nobody 1.0.0",
        ),
        ("/logs/..%2Fx/1.0.0/linux", 400, "name"),
        ("/logs/logs-bad/1.0.0", 404, "no route"),
    ];
    for (path, status, message) in cases {
        let r = http("GET", &env.svc.url(path), &[], None);
        assert_eq!(r.status, *status, "{path}: {}", r.text());
        assert_eq!(r.header("Content-Type"), Some("application/json"), "{path}");
        assert!(json_error(&r).contains(message), "{path}: {}", r.text());
    }
    let r = http(
        "POST",
        &env.svc.url("/logs/logs-bad/1.0.0/linux"),
        &[("Content-Length", "0")],
        Some(b""),
    );
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(env.log_rows(), rows, "a refused request wrote log lines");
    let after = format!(
        "{:?}",
        env.store().version_jobs("logs-bad", "1.0.0").unwrap()
    );
    assert_eq!(after, jobs, "a refused request changed the job");
    // Unknown query parameters are ignored, like elsewhere.
    let r = http(
        "GET",
        &env.svc.url("/logs/logs-bad/1.0.0/linux?x=1"),
        &[],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// At most LOG_FOLLOWERS_MAX followers; past that 503 with Retry-After.
/// Followers are written by their connections' threads: with WORKERS=1
/// (two light workers) and every follower slot streaming, `/health` and
/// `/status` still answer at once.
fn followers_are_bounded_and_do_not_hold_workers(kind: StoreKind) {
    let env = Env::start(
        kind,
        &["--build-delay-ms", "600000"],
        &[("LOG_FOLLOWERS_MAX", "4"), ("WORKERS", "1")],
    );
    env.upload("logs-bound", "1.0.0");
    let (job, attempt) = env.wait_attempt("logs-bound", "1.0.0");
    let path = "/logs/logs-bound/1.0.0/linux?follow=1";
    let mut followers: Vec<Follow> = (0..4).map(|_| Follow::open(&env.svc, path)).collect();
    for f in &mut followers {
        assert_eq!(f.status(), 200);
    }
    append(env.store().as_ref(), job, attempt, &["to everyone".into()]);
    for f in &mut followers {
        f.wait_for("to everyone", Duration::from_secs(3));
    }
    let mut fifth = Follow::open(&env.svc, path);
    let head = fifth.head();
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(head.contains("Retry-After: 5"), "{head}");
    let ok = fifth.read_until(Duration::from_secs(5), |f| f.raw.ends_with(b"}"));
    let body = String::from_utf8_lossy(&fifth.raw[fifth.head_end.unwrap()..]).into_owned();
    assert!(ok && body.contains("LOG_FOLLOWERS_MAX"), "{body}");
    // A plain read is no follower: still answered.
    let r = http(
        "GET",
        &env.svc.url("/logs/logs-bound/1.0.0/linux"),
        &[],
        None,
    );
    assert_eq!(r.status, 200);
    for _ in 0..5 {
        let t = Instant::now();
        let r = http("GET", &env.svc.url("/health"), &[], None);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "/health took {:?}",
            t.elapsed()
        );
        let r = http("GET", &env.svc.url("/status/logs-bound/1.0.0"), &[], None);
        assert_eq!(r.status, 200);
    }
    // The followers still stream.
    append(env.store().as_ref(), job, attempt, &["still here".into()]);
    for f in &mut followers {
        f.wait_for("still here", Duration::from_secs(3));
    }
    let metrics = http("GET", &env.svc.url("/metrics"), &[], None).text();
    assert!(
        metrics.contains("route=\"logs\",status=\"503\""),
        "{metrics}"
    );
    // A client that leaves while nothing is written gives its slot back
    // within seconds, not at the next line (which may never come).
    drop(followers.pop());
    let t = Instant::now();
    let freed = wait_until(Duration::from_secs(10), || {
        Follow::open(&env.svc, path).status() == 200
    });
    assert!(freed, "the slot of a follower that left was not given back");
    eprintln!(
        "a follower that left freed its slot after {:?}",
        t.elapsed()
    );
}

/// A follower whose client stops reading is cut off once a piece cannot be
/// written within the write timeout, and its slot is free again.
fn a_follower_that_never_reads_is_cut_off_and_frees_its_slot(kind: StoreKind) {
    let env = Env::start(
        kind,
        &["--build-delay-ms", "600000"],
        &[("LOG_FOLLOWERS_MAX", "1"), ("READ_TIMEOUT_SECS", "2")],
    );
    env.upload("logs-stall", "1.0.0");
    let (job, attempt) = env.wait_attempt("logs-stall", "1.0.0");
    let path = "/logs/logs-stall/1.0.0/linux?follow=1";
    // A client with a small receive buffer that never reads.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&env.svc.addr().into()).unwrap();
    let stalled = TcpStream::from(sock);
    // It reads the head of its answer (so it surely holds the slot), then
    // nothing more.
    let mut stalled = Follow::send(stalled, path);
    assert_eq!(stalled.status(), 200);
    let mut probe = Follow::open(&env.svc, path);
    assert_eq!(
        probe.status(),
        503,
        "the stalled follower holds the only slot"
    );
    // Lines keep coming, far more than the socket buffers hold.
    let store = env.store();
    let line = "x".repeat(4000);
    let t = Instant::now();
    let mut freed = false;
    while t.elapsed() < Duration::from_secs(40) {
        append(store.as_ref(), job, attempt, &vec![line.clone(); 64]);
        let mut probe = Follow::open(&env.svc, path);
        if probe.status() == 200 {
            freed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        freed,
        "the stalled follower's slot was not freed; log:\n{}",
        common::tail_lines(&env.svc.log(), 30)
    );
    let took = t.elapsed();
    eprintln!("the stalled follower was cut off after {took:?}");
    assert!(took < Duration::from_secs(30), "cut off after {took:?}");
    // Its access line is written when it is cut off (it reaches the
    // captured output a moment later).
    let logged = wait_until(Duration::from_secs(5), || {
        env.svc
            .log()
            .lines()
            .any(|l| l.contains(&format!("GET {path} 200")))
    });
    assert!(logged, "{}", common::tail_lines(&env.svc.log(), 30));
    drop(stalled);
}

/// SIGTERM ends every follower at once with a line saying so; the service
/// exits well within SHUTDOWN_GRACE_SECS.
fn stopping_the_service_ends_followers(kind: StoreKind) {
    let mut env = Env::start(
        kind,
        &["--build-delay-ms", "600000"],
        &[("SHUTDOWN_GRACE_SECS", "20")],
    );
    env.upload("logs-stop", "1.0.0");
    env.wait_attempt("logs-stop", "1.0.0");
    let mut f = Follow::open(&env.svc, "/logs/logs-stop/1.0.0/linux?follow=1");
    assert_eq!(f.status(), 200);
    let t = Instant::now();
    env.svc.terminate();
    let body = f.wait_end(Duration::from_secs(5));
    assert!(
        body.trim_end()
            .ends_with("hone-build is stopping: follow again to see the rest"),
        "{body}"
    );
    let st = env.svc.wait_exit(Duration::from_secs(10));
    assert!(st.is_some_and(|s| s.success()), "{st:?}");
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "stopped after {:?}",
        t.elapsed()
    );
}

/// `hone-build logs NAME VERSION PLATFORM [--attempt N] [--tail N] [--follow]`.
fn the_logs_command_prints_the_log(kind: StoreKind) {
    let env = Env::start(kind, &[QUEUED, QUEUED_MS, "--stage-delay-ms", "20"], &[]);
    env.upload("logs-cli", "1.0.0");
    env.wait_overall("logs-cli", "1.0.0", "completed", Duration::from_secs(30));
    let run = |args: &[&str]| run_command(&env, args);
    let served = settled_log(&env.svc.url("/logs/logs-cli/1.0.0/linux"));
    let (code, out, err) = run(&["logs", "logs-cli", "1.0.0", "linux"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Compiling"), "{out}");
    assert_eq!(out, served, "the command prints what the route serves");
    let (code, out2, err) = run(&["logs", "logs-cli", "1.0.0", "linux-x64", "--attempt", "1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out2, out);
    let (code, out3, err) = run(&["logs", "logs-cli", "1.0.0", "linux", "--follow"]);
    assert_eq!(code, 0, "{err}");
    assert!(out3.starts_with(&out), "{out3}");
    assert!(out3.trim_end().ends_with("build completed"), "{out3}");
    // --tail N: what `?tail=N` serves.
    let tail = http(
        "GET",
        &env.svc.url("/logs/logs-cli/1.0.0/linux?tail=3"),
        &[],
        None,
    )
    .text();
    let (code, out4, err) = run(&["logs", "logs-cli", "1.0.0", "linux", "--tail", "3"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out4, tail);
    assert_eq!(out4.lines().count(), 4, "{out4}");
    let (code, out5, err) = run(&["logs", "logs-cli", "1.0.0", "linux", "-n", "3", "-f"]);
    assert_eq!(code, 0, "{err}");
    assert!(out5.starts_with(&out4), "{out5}");
    assert!(out5.trim_end().ends_with("build completed"), "{out5}");
    for (args, status, message) in [
        (
            &["logs", "logs-cli", "1.0.0", "linux", "--attempt", "0"][..],
            2,
            "attempt must be a whole number",
        ),
        (
            &["logs", "logs-cli", "1.0.0", "linux", "--attempt"][..],
            2,
            "--attempt needs a number",
        ),
        (
            &["logs", "logs-cli", "1.0.0", "plan9"][..],
            2,
            "unknown platform 'plan9'",
        ),
        (
            &["logs", "logs-cli", "1.0.0", "linux", "--tail"][..],
            2,
            "--tail needs a number",
        ),
        (
            &["logs", "logs-cli", "1.0.0", "linux", "--tail=0"][..],
            2,
            "tail must be a whole number from 1 to 10000",
        ),
        (
            &["logs", "logs-cli", "1.0.0", "linux", "--lines", "3"][..],
            2,
            "unknown option '--lines'",
        ),
        (
            &["logs", "logs-cli", "1.0.0", "linux", "--attempt=2"][..],
            1,
            "no attempt 2",
        ),
        (
            &["logs", "nobody", "1.0.0", "linux"][..],
            1,
            "no builds for nobody 1.0.0",
        ),
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, status, "{args:?}: {out}{err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
}
