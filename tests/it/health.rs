//! End-to-end tests of the real `hone-build` binary: `/health` on both
//! stores and through a database outage, routing errors, slow clients,
//! body limits, start-up errors, secrets in logs, SIGTERM.

use crate::common;

use common::{Service, TcpProxy, TestDb, http, raw_request, read_until, wait_until};
use serde_json::json;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn health(svc: &Service) -> common::Resp {
    http("GET", &svc.url("/health"), &[], None)
}

fn assert_json_type(r: &common::Resp) {
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/json"), "Content-Type {ct:?}");
}

/// `{"error": <message>, "code": <code>}` and nothing else; returns the message.
fn error_body(r: &common::Resp, status: u16, code: &str) -> String {
    assert_eq!(r.status, status, "{}", r.text());
    assert_json_type(r);
    let v = r.json();
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"));
    assert_eq!(obj.len(), 2, "exactly error and code: {v}");
    assert_eq!(v["code"], code, "{v}");
    let msg = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("error is a string: {v}"))
        .to_string();
    assert!(!msg.is_empty());
    msg
}

#[test]
fn health_on_embedded_store_with_defaults() {
    // No config file, no DB_HOST, DATA_DIR and UPLOADS_DIR at their defaults
    // (relative to the working directory).
    let svc = Service::builder()
        .unset("DATA_DIR")
        .unset("UPLOADS_DIR")
        .start();
    assert!(!svc.dir().join("build.conf").exists());
    let r = health(&svc);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_json_type(&r);
    assert_eq!(
        r.json(),
        json!({"status": "ok", "service": "hone-build", "version": env!("CARGO_PKG_VERSION"), "store": "sqlite"})
    );
    let file = svc.dir().join("data").join(common::SQLITE_FILE);
    assert!(file.is_file(), "{} exists", file.display());
    assert!(svc.log().contains("store: sqlite"), "{}", svc.log());
}

#[test]
fn health_follows_a_mysql_outage_without_restart() {
    let db = TestDb::new();
    let proxy = TcpProxy::start(&format!("{}:{}", db.host, db.port));
    let mut svc = Service::builder()
        .envs(db.service_env("127.0.0.1", proxy.port()))
        .start();
    let r = health(&svc);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), svc.log());
    assert_eq!(
        r.json(),
        json!({"status": "ok", "service": "hone-build", "version": env!("CARGO_PKG_VERSION"), "store": "mysql"})
    );

    proxy.cut();
    let mut last = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let r = health(&svc);
            let done = r.status == 503;
            last = Some(r);
            done
        }),
        "no 503 while the database is cut: {:?}",
        last.map(|r| r.text())
    );
    // Answered promptly, repeatedly, and the process stays up.
    let t = Instant::now();
    let r = health(&svc);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "503 took {:?}",
        t.elapsed()
    );
    assert_eq!(r.status, 503);
    assert_json_type(&r);
    let v = r.json();
    assert_eq!(v["status"], "unavailable", "{v}");
    assert_eq!(v["store"], "mysql", "{v}");
    assert!(
        svc.is_running(),
        "the service must survive a database outage"
    );
    error_body(&http("GET", &svc.url("/nope"), &[], None), 404, "NOT_FOUND");

    proxy.restore();
    assert!(
        wait_until(Duration::from_secs(15), || health(&svc).status == 200),
        "no 200 after the database came back; log:\n{}",
        svc.log()
    );
    assert_eq!(health(&svc).json()["status"], "ok");
    assert!(svc.is_running());
}

#[test]
fn mysql_down_at_start_migrates_when_it_comes_back() {
    let db = TestDb::new();
    let proxy = TcpProxy::start(&format!("{}:{}", db.host, db.port));
    proxy.cut();
    let mut svc = Service::builder()
        .envs(db.service_env("127.0.0.1", proxy.port()))
        .start();
    let r = health(&svc);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["status"], "unavailable");
    assert!(svc.is_running());
    assert!(db.rows("SHOW TABLES").is_empty(), "nothing migrated yet");

    proxy.restore();
    assert!(
        wait_until(Duration::from_secs(15), || health(&svc).status == 200),
        "no 200 after the database came back; log:\n{}",
        svc.log()
    );
    // The late migration created the schema.
    let cols = db.rows(&format!(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS
         WHERE TABLE_SCHEMA = '{}' AND TABLE_NAME = 'buildJobs' AND COLUMN_NAME = 'callbackToken'",
        db.name
    ));
    assert_eq!(
        cols.len(),
        1,
        "buildJobs.callbackToken exists after the late migration"
    );
}

/// Issue #11 item 24: a database that does not answer at start was logged
/// every 2 s forever, without saying which one. The retries back off
/// (2 s doubling to 60 s) and each line names DB_HOST and DB_PORT; the
/// service still recovers as soon as the database answers.
#[test]
fn an_unreachable_database_at_start_is_named_and_retried_with_backoff() {
    let db = TestDb::new();
    let proxy = TcpProxy::start(&format!("{}:{}", db.host, db.port));
    proxy.cut();
    let svc = Service::builder()
        .envs(db.service_env("127.0.0.1", proxy.port()))
        .set("LOG_LEVEL", "info")
        .start();
    std::thread::sleep(Duration::from_secs(9));
    let log = svc.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("migrat"))
        .collect();
    assert!(!lines.is_empty(), "the outage is logged:\n{log}");
    let named = format!("DB_HOST=127.0.0.1 DB_PORT={}", proxy.port());
    for l in &lines {
        assert!(
            l.contains(&named),
            "the line names the database ({named}): {l}"
        );
    }
    assert!(
        lines.len() <= 4,
        "{} lines in 9 s: no backoff:\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert!(
        lines.iter().any(|l| l.contains("retrying in")),
        "says when it tries again:\n{}",
        lines.join("\n")
    );
    proxy.restore();
    assert!(
        wait_until(Duration::from_secs(5), || health(&svc).status == 200),
        "no 200 after the database came back; log:\n{}",
        svc.log()
    );
}

#[test]
fn unknown_route_404_and_wrong_method_405() {
    let svc = Service::builder().start();
    let msg = error_body(
        &http("GET", &svc.url("/no/such/route"), &[], None),
        404,
        "NOT_FOUND",
    );
    assert!(
        msg.contains("/no/such/route"),
        "message names the path: {msg}"
    );

    let r = http("POST", &svc.url("/health"), &[], Some(b"{}"));
    let msg = error_body(&r, 405, "METHOD_NOT_ALLOWED");
    assert!(msg.contains("POST") && msg.contains("/health"), "{msg}");
    assert!(
        r.header("allow").unwrap_or_default().contains("GET"),
        "Allow header: {:?}",
        r.headers
    );

    let r = http("DELETE", &svc.url("/metrics"), &[], None);
    error_body(&r, 405, "METHOD_NOT_ALLOWED");
}

/// Opens a connection and sends `bytes`, leaving it open.
fn stall(addr: std::net::SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.write_all(bytes).expect("send");
    s
}

#[test]
fn stalled_clients_do_not_delay_health() {
    // READ_TIMEOUT_SECS stays at its default (30 s): this proves isolation,
    // not the timeout.
    let svc = Service::builder().start();
    let addr = svc.addr();
    let mut stalled = Vec::new();
    for _ in 0..50 {
        stalled.push(stall(
            addr,
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Le",
        ));
    }
    for i in 0..20 {
        let head = format!(
            "POST /upload?name=p{i}&version=1.0.0 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789"
        );
        stalled.push(stall(addr, head.as_bytes()));
    }
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        let t = Instant::now();
        let r = health(&svc);
        let took = t.elapsed();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            took < Duration::from_secs(1),
            "/health took {took:?} with 70 stalled clients"
        );
    }
    let t = Instant::now();
    let r = http("GET", &svc.url("/metrics"), &[], None);
    assert_eq!(r.status, 200);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "/metrics took {:?}",
        t.elapsed()
    );
    drop(stalled);
}

/// Requests answered at once with an error (here 401: no secret) whose
/// large bodies never arrive must not hold the worker threads that answered
/// them: an authorised upload is still served promptly, and the clients get
/// their answer with `Connection: close`. (The drain of an unread body used
/// to block each worker for READ_TIMEOUT_SECS.)
#[test]
fn stalled_bodies_of_rejected_requests_do_not_pin_workers() {
    let secret = "stall-secret-1";
    let svc = Service::builder()
        .set("UPLOAD_SECRET", secret)
        .set("BIND", "127.0.0.1")
        .set("WORKERS", "2")
        .start();
    let addr = svc.addr();
    let mut stalled = Vec::new();
    for i in 0..40 {
        let head = format!(
            "POST /upload?name=s{i}&version=1.0.0 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789"
        );
        stalled.push(stall(addr, head.as_bytes()));
    }
    std::thread::sleep(Duration::from_millis(300));
    let body = crate::fixtures::tarball_sized(7, 3000);
    let auth = format!("Bearer {secret}");
    let t = Instant::now();
    let r = http(
        "POST",
        &svc.url("/upload?name=ok-plugin&version=1.0.0&platforms=linux"),
        &[("Authorization", &auth)],
        Some(&body),
    );
    let took = t.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        took < Duration::from_secs(3),
        "upload took {took:?} behind 40 stalled bodies"
    );
    // Each stalled client got its answer and a closing connection.
    let mut answered = 0;
    for s in stalled.iter_mut() {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 2048];
        if let Ok(n) = std::io::Read::read(s, &mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
            // 401, or 503 when the small body lane (WORKERS=2) was full.
            let status_ok = text.starts_with("http/1.1 401") || text.starts_with("http/1.1 503");
            if status_ok && text.contains("connection: close") {
                answered += 1;
            }
        }
    }
    assert_eq!(
        answered,
        stalled.len(),
        "every stalled client answered 401/503 with Connection: close"
    );
}

/// Waits (at most `limit`) for the server to close `s` or answer 408;
/// returns how long it took and what it sent.
fn wait_closed(s: &mut TcpStream, limit: Duration) -> (Duration, String) {
    let start = Instant::now();
    let is_408 = |got: &[u8]| got.starts_with(b"HTTP/1.1 408");
    let (got, closed) = read_until(s, limit, Vec::new(), is_408);
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(
        closed || is_408(&got),
        "connection still open after {limit:?}; received {text:?}"
    );
    (took, text)
}

#[test]
fn read_timeout_cuts_off_stalled_clients() {
    let svc = Service::builder().set("READ_TIMEOUT_SECS", "2").start();
    let addr = svc.addr();
    let mut half_head = stall(addr, b"GET /health HTTP/1.1\r\nHost: x\r\nAcc");
    let mut half_body = stall(
        addr,
        b"POST /upload?name=p&version=1.0.0 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789",
    );
    for (what, s) in [
        ("half a request head", &mut half_head),
        ("half a body", &mut half_body),
    ] {
        let (took, got) = wait_closed(s, Duration::from_secs(8));
        assert!(
            took <= Duration::from_secs(5),
            "{what}: closed after {took:?}"
        );
        assert!(
            got.is_empty() || got.starts_with("HTTP/1.1 408"),
            "{what}: unexpected answer {got:?}"
        );
    }
    // Closed by the timeout, not at once: the first was waited on ~2 s.
    assert_eq!(health(&svc).status, 200);
}

#[test]
fn still_accepts_after_idling_longer_than_the_read_timeout() {
    // The listening socket carries READ_TIMEOUT_SECS as SO_RCVTIMEO (accepted
    // sockets inherit it), which also makes an idle accept() fail with EAGAIN:
    // the listener must survive that.
    let mut svc = Service::builder().set("READ_TIMEOUT_SECS", "1").start();
    assert_eq!(health(&svc).status, 200);
    std::thread::sleep(Duration::from_millis(2500));
    let r = common::try_http("GET", &svc.url("/health"), &[], None);
    assert!(
        matches!(&r, Ok(r) if r.status == 200),
        "{r:?}; log:\n{}",
        svc.log()
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(health(&svc).status, 200);
    assert!(svc.is_running());
}

#[test]
fn read_timeout_is_not_immediate() {
    let svc = Service::builder().set("READ_TIMEOUT_SECS", "2").start();
    let mut s = stall(svc.addr(), b"GET /health HTTP/1.1\r\nHost: x\r\n");
    let (took, _) = wait_closed(&mut s, Duration::from_secs(8));
    assert!(
        took >= Duration::from_millis(1500),
        "closed after only {took:?}, before READ_TIMEOUT_SECS"
    );
}

#[test]
fn huge_declared_length_is_413_up_front() {
    let svc = Service::builder().start();
    let t = Instant::now();
    let got = raw_request(
        svc.addr(),
        b"POST /upload?name=big&version=1.0.0 HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\n",
    );
    assert!(got.starts_with("HTTP/1.1 413"), "{got:?}");
    assert!(got.contains("PAYLOAD_TOO_LARGE"), "{got:?}");
    assert!(
        got.contains("MAX_BODY_BYTES"),
        "the message names the limit: {got:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );

    // A smaller limit, still decided from Content-Length before any byte of
    // body. (Above 1 KiB: tiny_http reads smaller bodies before any handler runs.)
    let svc2 = Service::builder().set("MAX_BODY_BYTES", "2000").start();
    let got = raw_request(
        svc2.addr(),
        b"POST /upload?name=big&version=1.0.0 HTTP/1.1\r\nHost: x\r\nContent-Length: 2001\r\n\r\n",
    );
    assert!(got.starts_with("HTTP/1.1 413"), "{got:?}");
    assert!(got.contains("(2000 bytes)"), "names the limit: {got:?}");

    for s in [&svc, &svc2] {
        assert_eq!(health(s).status, 200, "still serving");
    }
    let mut svc = svc;
    assert!(svc.is_running(), "log:\n{}", svc.log());
}

#[test]
fn huge_declared_length_on_a_route_that_does_not_read_it() {
    // Answered without reading the body (405): tiny_http drains the unread
    // body afterwards; unpatched, it allocated the declared length and aborted.
    let mut svc = Service::builder().set("READ_TIMEOUT_SECS", "2").start();
    let got = raw_request(
        svc.addr(),
        b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\n",
    );
    assert!(got.starts_with("HTTP/1.1 405"), "{got:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(svc.is_running(), "the process died; log:\n{}", svc.log());
    assert_eq!(health(&svc).status, 200);
}

#[test]
fn invalid_port_stops_startup_naming_key_and_source() {
    let mut svc = Service::builder().set("PORT", "abc").spawn();
    let st = svc.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(st.code(), Some(2), "log:\n{}", svc.log());
    let log = svc.log();
    assert!(
        log.contains("PORT") && log.contains("HONE_BUILD_PORT"),
        "names key and source: {log}"
    );
    assert!(log.contains("abc"), "{log}");

    // The same from build.conf: the message names the file and line.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("build.conf"),
        "# settings\nWORKERS=4\nPORT=80x\n",
    )
    .unwrap();
    let mut svc = Service::builder().dir(dir.path()).unset("PORT").spawn();
    let st = svc.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(st.code(), Some(2), "log:\n{}", svc.log());
    let log = svc.log();
    assert!(
        log.contains("PORT") && log.contains("build.conf:3"),
        "names key, file and line: {log}"
    );
}

#[test]
fn public_bind_without_upload_secret_refuses_to_start() {
    let mut svc = Service::builder().set("BIND", "0.0.0.0").spawn();
    let st = svc.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(!st.success(), "must not start");
    assert_eq!(st.code(), Some(2));
    let log = svc.log();
    assert!(
        log.contains("UPLOAD_SECRET") && log.contains("BIND"),
        "says why: {log}"
    );
    assert!(!log.contains("listening on"), "{log}");
}

#[test]
fn config_file_values_with_equals_and_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("site.conf"),
        "# hone-build\n\nPUBLIC_URL = https://build.example/cb?x=a=b  \nFROBNICATE=yes\nWORKERS=3\n",
    )
    .unwrap();
    let svc = Service::builder()
        .dir(dir.path())
        .arg("--config")
        .arg("site.conf")
        .start();
    assert_eq!(health(&svc).status, 200);
    let log = svc.log();
    assert!(
        log.contains("FROBNICATE") && log.contains("site.conf:4"),
        "warning names key and line: {log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("FROBNICATE")),
        "the unknown key is a warning: {log}"
    );
    assert!(
        log.contains("config PUBLIC_URL=https://build.example/cb?x=a=b\n"),
        "value after the first '=': {log}"
    );
    assert!(log.contains("config WORKERS=3"), "{log}");
    assert!(log.contains("config: site.conf"), "{log}");
}

#[test]
fn secrets_never_reach_the_log() {
    const DB_PASS: &str = "dbpass-Zq81xK";
    const UPLOAD: &str = "upload-Wm37vP";
    const LICENSE: &str = "license-Hy52nR";
    let db = TestDb::new();
    let user = db.add_user(DB_PASS);
    // Wrong password first (errors are where secrets leak), then the right one.
    for (pass, want_health) in [("wrong-Kd09sT", 503), (DB_PASS, 200)] {
        let mut env = db.service_env(&db.host, db.port);
        env.retain(|(k, _)| !k.ends_with("DB_USER") && !k.ends_with("DB_PASS"));
        let svc = Service::builder()
            .envs(env)
            .set("DB_USER", user.clone())
            .set("DB_PASS", pass)
            .set("UPLOAD_SECRET", UPLOAD)
            .set("PERRY_HUB_LICENSE_KEY", LICENSE)
            .set("BIND", "127.0.0.1")
            .set("LOG_LEVEL", "trace")
            .start();
        assert_eq!(health(&svc).status, want_health, "{}", svc.log());
        let auth = format!("Bearer {UPLOAD}");
        let tarball = crate::fixtures::tarball_sized(8, 300);
        let mut bodies = Vec::new();
        for (method, path, headers, body) in [
            ("GET", format!("/health?token={UPLOAD}"), vec![], None),
            (
                "POST",
                format!("/upload?name=s&version=1.0.0&token={UPLOAD}"),
                vec![],
                Some(&tarball[..]),
            ),
            (
                "POST",
                "/upload?name=s&version=2.0.0".to_string(),
                vec![("Authorization", auth.as_str())],
                Some(&tarball[..]),
            ),
            (
                "POST",
                "/upload?name=s&version=3.0.0&token=wrong".to_string(),
                vec![],
                Some(&tarball[..]),
            ),
            (
                "POST",
                format!("/artifact/s-1.0.0-linux?token={UPLOAD}"),
                vec![],
                Some(&b"AAAA"[..]),
            ),
            ("GET", "/status/s/1.0.0".to_string(), vec![], None),
            (
                "GET",
                format!("/nope?key={LICENSE}&password={DB_PASS}"),
                vec![],
                None,
            ),
            ("GET", "/metrics".to_string(), vec![], None),
        ] {
            let r = http(method, &svc.url(&path), &headers, body);
            bodies.push(format!("{method} {path} -> {} {}", r.status, r.text()));
        }
        // Access lines are written after the answer: wait for the last one.
        wait_until(Duration::from_secs(10), || {
            svc.log().contains("GET /metrics ")
        });
        let log = svc.log();
        assert!(
            log.contains("GET /health?token=REDACTED"),
            "requests are logged, tokens redacted:\n{log}"
        );
        assert!(
            log.contains("TRACE") || log.contains("DEBUG"),
            "verbose logging is on:\n{log}"
        );
        for secret in [DB_PASS, UPLOAD, LICENSE] {
            assert!(!log.contains(secret), "secret {secret} in the log:\n{log}");
            for b in &bodies {
                let (_, resp) = b.split_once(" -> ").unwrap();
                assert!(!resp.contains(secret), "secret {secret} in a response: {b}");
            }
        }
    }
}

#[test]
fn sigterm_stops_cleanly() {
    let mut svc = Service::builder().start();
    assert_eq!(health(&svc).status, 200);
    svc.terminate();
    let st = svc
        .wait_exit(Duration::from_secs(15))
        .expect("exits after SIGTERM");
    assert_eq!(st.code(), Some(0), "log:\n{}", svc.log());
    assert!(svc.log().contains("stopped"), "{}", svc.log());
    assert!(common::try_http("GET", &format!("http://{}/health", svc.addr()), &[], None).is_err());
}

/// tiny_http runs one thread per connection: at most 1024 connections are
/// served at once (vendor/tiny_http/HONE-PATCH.md, patch 10), so a client
/// opening more cannot grow the service's threads without bound. The
/// connections past the cap are answered 503 (Retry-After) and closed at
/// once, counted in a rate-limited log line; when the held ones close,
/// the service serves again without a restart.
#[test]
fn connections_past_the_cap_are_closed_and_threads_stay_bounded() {
    const CAP: usize = 1024;
    // The whole cap for one client address (the tests connect from one).
    let svc = Service::builder()
        .set("MAX_CONNECTIONS_PER_CLIENT_PERCENT", "100")
        .start();
    let addr = svc.addr();
    let threads = || {
        std::fs::read_dir(format!("/proc/{}/task", svc.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(health(&svc).status, 200);
    // Its fixed threads: worker lanes, the background loop, the accept loop.
    let before = threads();
    assert!(before > 4, "{before} threads: /proc not readable?");
    // Idle connections that never send a byte hold a slot each until the
    // head deadline (READ_TIMEOUT_SECS, 30 s by default).
    let mut held = Vec::new();
    for i in 0..CAP + 40 {
        match TcpStream::connect(addr) {
            Ok(s) => held.push(s),
            Err(e) => panic!("connect {i}: {e} (the test needs ~1100 file descriptors)"),
        }
    }
    // The connections past the cap are answered 503 with Retry-After and
    // closed by the service at once (issue #11 item 3; they used to be
    // closed without an answer). A connection the service kept open would
    // time out here instead.
    let mut closed = 0;
    for s in held.iter_mut().rev().take(40) {
        let (got, ended) = common::read_until(s, Duration::from_secs(2), Vec::new(), |_| false);
        let text = String::from_utf8_lossy(&got);
        if ended && text.starts_with("HTTP/1.1 503") && text.contains("Retry-After") {
            closed += 1;
        }
    }
    assert!(
        closed >= 30,
        "only {closed} of the 40 connections past the cap were answered 503 and closed"
    );
    // One log line counts the refusals (not one WARN per refusal). It is
    // written after the refused client got its answer, and reaches us
    // through the harness's stderr reader: wait for it rather than race it
    // (CI at 498d141 read the log before the line arrived).
    let refusal_count = || {
        svc.log()
            .lines()
            .filter(|l| l.contains("refused") && l.contains("connection(s)"))
            .count()
    };
    wait_until(Duration::from_secs(10), || refusal_count() >= 1);
    let refusal_lines = refusal_count();
    assert!(
        (1..=3).contains(&refusal_lines),
        "{refusal_lines} log lines about refused connections"
    );
    let during = threads();
    assert!(
        during <= before + CAP + 8,
        "threads grew from {before} to {during} with {} connections",
        CAP + 40
    );
    drop(held);
    assert!(
        wait_until(Duration::from_secs(10), || {
            common::try_http("GET", &svc.url("/health"), &[], None).is_ok_and(|r| r.status == 200)
        }),
        "/health answers again once the connections are gone"
    );
}

/// The `/status` of a version whose builds all completed can no longer
/// change: it is answered from memory, also while the database is away;
/// a version still building is always read from the database.
#[test]
fn status_of_a_completed_version_is_served_from_memory() {
    use crate::fixtures::{Fill, tarball};
    let db = TestDb::new();
    let proxy = TcpProxy::start(&format!("{}:{}", db.host, db.port));
    let sim = common::Sim::start(&["--build-delay-ms", "20"]);
    let svc = Service::builder()
        .envs(db.service_env("127.0.0.1", proxy.port()))
        .set("PERRY_HUB_URL", sim.url())
        .set("PERRY_HUB_LICENSE_KEY", "sim-license")
        .start();
    let upload = |version: &str| {
        let r = http(
            "POST",
            &svc.url(&format!(
                "/upload?name=frozen&version={version}&platforms=linux"
            )),
            &[],
            Some(&tarball(version, Fill::Unique)),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    };
    upload("1.0.0");
    let status = |v: &str| http("GET", &svc.url(&format!("/status/frozen/{v}")), &[], None);
    assert!(
        wait_until(
            Duration::from_secs(20),
            || status("1.0.0").json()["overall"] == "completed"
        ),
        "not completed: {}\n{}",
        status("1.0.0").text(),
        svc.log()
    );
    let completed = status("1.0.0").text();
    // A second version that stays building (its artifact is never sent).
    sim.set(json!({"never_callback": true}));
    upload("2.0.0");
    assert_eq!(status("2.0.0").json()["overall"], "building");

    proxy.cut();
    assert!(
        wait_until(Duration::from_secs(10), || health(&svc).status == 503),
        "the database is away"
    );
    let r = status("1.0.0");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), completed, "the same answer, from memory");
    assert_json_type(&r);
    error_body(&status("2.0.0"), 503, "UNAVAILABLE");
    proxy.restore();
    assert!(wait_until(Duration::from_secs(15), || status("2.0.0")
        .status
        == 200));
}
