//! Operating hone-build (docs/operations.md): the command line, graceful
//! shutdown, `/metrics`, and secrets kept out of every log line.

use crate::common;

use crate::fixtures::{Fill, tarball};
use common::{FakeHub, Service, Sim, TestDb, http, wait_until};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// A small body that passes the gzip check.
const FILL: Fill = Fill::Pattern {
    len: 2000,
    step: 31,
};

/// Runs `hone-build ARGS` to completion in `dir` with `HONE_BUILD_*` env;
/// returns (exit code, stdout, stderr).
fn run(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hone-build"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HONE_BUILD_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir)
        .env("HONE_BUILD_DATA_DIR", dir.join("data"))
        .env("HONE_BUILD_UPLOADS_DIR", dir.join("uploads"))
        .env("HONE_BUILD_PACKAGES_DIR", dir.join("packages"));
    for (k, v) in env {
        cmd.env(format!("HONE_BUILD_{k}"), v);
    }
    let out = cmd.args(args).output().expect("run hone-build");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(dir.path(), &[], &["--version"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("hone-build {}", env!("CARGO_PKG_VERSION"))
    );
    let (code, out, _) = run(dir.path(), &[], &["--help"]);
    assert_eq!(code, 0);
    for word in [
        "check-config",
        "migrate",
        "jobs",
        "retry",
        "--config",
        "--version",
    ] {
        assert!(out.contains(word), "--help lacks {word}: {out}");
    }
    let (code, out, _) = run(dir.path(), &[], &["jobs", "--help"]);
    assert_eq!(code, 0, "--help after a subcommand");
    assert!(out.contains("Usage"));
    let (code, _, err) = run(dir.path(), &[], &["frobnicate"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown command 'frobnicate'"), "{err}");
    let (code, _, err) = run(dir.path(), &[], &["--frob"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown option --frob"), "{err}");
    let (code, _, err) = run(
        dir.path(),
        &[],
        &["--config", "/nonexistent/build.conf", "check-config"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/build.conf"), "{err}");
}

#[test]
fn check_config_masks_secrets_and_reports_reachability() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = [
        ("UPLOAD_SECRET", "upload-secret-CHK-1"),
        ("PERRY_HUB_LICENSE_KEY", "license-CHK-2"),
        ("DB_PASS", "dbpass-CHK-3"),
    ];
    // Hub unreachable: non-zero exit, and it says so.
    let mut env = secrets.to_vec();
    env.push(("PERRY_HUB_URL", "http://127.0.0.1:9"));
    let (code, out, err) = run(dir.path(), &env, &["check-config"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("store: ok (sqlite)"), "{out}");
    assert!(out.contains("hub: FAILED"), "{out}");
    assert!(
        out.contains("UPLOAD_SECRET") && out.contains("********"),
        "{out}"
    );
    for (_, s) in secrets {
        assert!(
            !out.contains(s) && !err.contains(s),
            "check-config leaks {s}"
        );
    }
    // Hub answering: exit 0. (The simulator serves its WebSocket on a port
    // of its own, not at PERRY_HUB_URL's /ws as the real hub does.)
    let sim = Sim::start(&[]);
    let url = sim.url();
    let ws = sim.ws_url();
    let (code, out, err) = run(
        dir.path(),
        &[("PERRY_HUB_URL", &url), ("PERRY_HUB_WS_URL", &ws)],
        &["check-config"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("hub: ok"), "{out}");
    assert!(out.contains(&format!("hub websocket: ok ({ws})")), "{out}");
    // Store unreachable: non-zero.
    let (code, out, _) = run(
        dir.path(),
        &[
            ("PERRY_HUB_URL", &url),
            ("PERRY_HUB_WS_URL", &ws),
            ("DB_HOST", "127.0.0.1"),
            ("DB_PORT", "9"),
        ],
        &["check-config"],
    );
    assert_eq!(code, 1);
    assert!(out.contains("store: FAILED"), "{out}");
}

/// Issue #13: check-config warns (stderr, `warning:`, naming the keys)
/// about settings that start but silently break production, each exactly
/// when it applies; warnings keep exit status 0 unless `--strict`; no
/// secret is printed.
#[test]
fn check_config_warns_about_what_breaks_production() {
    let sim = Sim::start(&[]);
    let (url, ws) = (sim.url(), sim.ws_url());
    let token = "token-WARN-1";
    let license = "license-WARN-2";
    let upload = "upload-WARN-3";
    // A good configuration: the simulator, a token, loopback, directories
    // that can be created, PACKAGES_DIR named packages.
    let base = |extra: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("PERRY_HUB_URL", url.clone()),
            ("PERRY_HUB_WS_URL", ws.clone()),
            ("PERRY_HUB_TOKEN", token.to_string()),
        ];
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k, v.clone()));
        }
        env
    };
    // Runs check-config; answers (exit code, stdout, the warning lines).
    let check = |dir: &std::path::Path, env: &[(&'static str, String)], strict: bool| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let args: &[&str] = if strict {
            &["check-config", "--strict"]
        } else {
            &["check-config"]
        };
        let (code, out, err) = run(dir, &env, args);
        for s in [token, license, upload] {
            assert!(
                !out.contains(s) && !err.contains(s),
                "leaks {s}: {out}{err}"
            );
        }
        let warnings: Vec<String> = err
            .lines()
            .filter(|l| l.starts_with("warning: "))
            .map(str::to_string)
            .collect();
        assert!(
            !out.contains("warning"),
            "warnings go to stderr, not stdout: {out}"
        );
        (code, out, warnings)
    };
    // Exactly one warning, containing every one of `words`; exit 0.
    let one = |dir: &std::path::Path, env: &[(&'static str, String)], words: &[&str]| {
        let (code, out, w) = check(dir, env, false);
        assert_eq!(code, 0, "warnings keep exit 0: {out}{w:?}");
        assert_eq!(w.len(), 1, "{words:?}: {w:?}");
        for word in words {
            assert!(w[0].contains(word), "{word:?} not in {w:?}");
        }
        w.into_iter().next().unwrap()
    };
    let none = |dir: &std::path::Path, env: &[(&'static str, String)]| {
        let (code, out, w) = check(dir, env, false);
        assert_eq!(code, 0, "{out}{w:?}");
        assert!(w.is_empty(), "no warning expected: {w:?}");
    };

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = |p: &std::path::Path| p.display().to_string();
    none(d, &base(&[]));
    let (code, _, w) = check(d, &base(&[]), true);
    assert_eq!((code, w.len()), (0, 0), "--strict without warnings: 0");

    // PUBLIC_URL on loopback while BIND is public (UPLOAD_SECRET set makes
    // the default BIND 0.0.0.0).
    let public = base(&[("UPLOAD_SECRET", upload.into())]);
    let w = one(
        d,
        &public,
        &["PUBLIC_URL is not set", "localhost", "BIND=0.0.0.0"],
    );
    assert!(w.contains("patched hub"), "{w}");
    for local in [
        "http://127.0.0.1:8447",
        "http://[::1]:1",
        "https://LocalHost/",
    ] {
        let mut env = public.clone();
        env.push(("PUBLIC_URL", local.into()));
        one(d, &env, &["PUBLIC_URL=", "BIND=0.0.0.0"]);
    }
    let mut env = public.clone();
    env.push(("PERRY_HUB_WS_URL", "off".into()));
    let w = one(d, &env, &["PUBLIC_URL", "BUILD_TIMEOUT_SECS"]);
    assert!(w.contains("every build waits"), "{w}");
    let mut env = public.clone();
    env.push(("PUBLIC_URL", "https://build.example.org".into()));
    none(d, &env);
    let mut env = public.clone();
    env.push(("BIND", "127.0.0.1".into()));
    none(d, &env);

    // Hub credentials.
    let w = one(
        d,
        &base(&[("PERRY_HUB_TOKEN", String::new())]),
        &["neither PERRY_HUB_TOKEN nor PERRY_HUB_LICENSE_KEY"],
    );
    assert!(w.contains("refuses every submission"), "{w}");
    let w = one(
        d,
        &base(&[
            ("PERRY_HUB_TOKEN", String::new()),
            ("PERRY_HUB_LICENSE_KEY", license.into()),
        ]),
        &["PERRY_HUB_LICENSE_KEY is set but PERRY_HUB_TOKEN is not"],
    );
    assert!(w.contains("ACCOUNT_REQUIRED") && w.contains("first"), "{w}");
    none(d, &base(&[("PERRY_HUB_LICENSE_KEY", license.into())]));

    // Directories that cannot be written or created. The tests run as
    // root, so a path under /proc (where nobody creates files) stands for
    // a read-only place, and a regular file for a wrong path.
    let file = d.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    one(
        d,
        &base(&[("UPLOADS_DIR", "/proc/hone-build-test/uploads".into())]),
        &[
            "UPLOADS_DIR=/proc/hone-build-test/uploads",
            "does not exist and cannot be created",
            "/proc cannot be written",
        ],
    );
    one(
        d,
        &base(&[("UPLOADS_DIR", s(&file))]),
        &["UPLOADS_DIR=", "cannot be written", "not a directory"],
    );
    // DATA_DIR: the embedded store cannot open there either.
    let (code, out, w) = check(d, &base(&[("DATA_DIR", s(&file))]), false);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("store: FAILED"), "{out}");
    assert!(
        w.len() == 1 && w[0].contains("DATA_DIR=") && w[0].contains("cannot be written"),
        "{w:?}"
    );
    // A packages "directory" that is a file: not writable (its look is not
    // judged on top).
    let pfile = d.join("pk").join("packages");
    std::fs::create_dir_all(pfile.parent().unwrap()).unwrap();
    std::fs::write(&pfile, b"x").unwrap();
    one(
        d,
        &base(&[("PACKAGES_DIR", s(&pfile))]),
        &["PACKAGES_DIR=", "cannot be written"],
    );
    assert!(
        !d.join("uploads").exists() && !d.join("packages").exists(),
        "check-config creates no directory"
    );

    // PACKAGES_DIR that does not look like the marketplace's.
    one(
        d,
        &base(&[("PACKAGES_DIR", s(&d.join("bins")))]),
        &["PACKAGES_DIR=", "not a directory named packages"],
    );
    std::fs::create_dir(d.join("store")).unwrap();
    one(
        d,
        &base(&[
            ("PACKAGES_DIR", s(&d.join("store/packages"))),
            ("UPLOADS_DIR", s(&d.join("store/packages/../packages/up"))),
        ]),
        &["PACKAGES_DIR=", "UPLOADS_DIR=", "overlap"],
    );
    one(
        d,
        &base(&[("PACKAGES_DIR", s(&d.join("hone-marketplce/data/packages")))]),
        &[
            "PACKAGES_DIR=",
            "does not exist, nor does",
            "hone-marketplce/data",
        ],
    );
    // Contents: plugin/version directories (and hidden temp files) fit.
    let market = d.join("market/data/packages");
    let version = market.join("my-plugin/1.0.0-beta.1");
    std::fs::create_dir_all(&version).unwrap();
    std::fs::write(version.join("linux-x64.bin"), b"program").unwrap();
    std::fs::write(version.join("manifest.json"), b"{}").unwrap();
    std::fs::write(market.join(".tmp-0123abcd"), b"").unwrap();
    let at_market = base(&[("PACKAGES_DIR", s(&market))]);
    none(d, &at_market);
    for (odd, words) in [
        ("notes.txt", "'notes.txt' (not a directory)"),
        ("My Documents/", "'My Documents' (not a plugin name)"),
        (
            "my-plugin/README",
            "'my-plugin/README' (not a version directory)",
        ),
        ("my-plugin/v 2/", "'my-plugin/v 2' (not a version)"),
    ] {
        let p = market.join(odd.trim_end_matches('/'));
        if odd.ends_with('/') {
            std::fs::create_dir(&p).unwrap();
        } else {
            std::fs::write(&p, b"x").unwrap();
        }
        one(
            d,
            &at_market,
            &["PACKAGES_DIR=", words, "marketplace's packages"],
        );
        let (code, _, w) = check(d, &at_market, true);
        assert_eq!((code, w.len()), (1, 1), "--strict makes a warning fail");
        if odd.ends_with('/') {
            std::fs::remove_dir(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
    none(d, &at_market);
    let env: Vec<(&str, &str)> = at_market.iter().map(|(k, v)| (*k, v.as_str())).collect();
    std::fs::write(market.join("stray"), b"x").unwrap();
    let (code, _, err) = run(d, &env, &["check-config", "--strict"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("1 warning(s), which --strict makes errors"),
        "{err}"
    );
}

#[test]
fn migrate_creates_the_tables() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(String, String)> = db.service_env("127.0.0.1", common::mysql_server().1);
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(k, v)| (k.strip_prefix("HONE_BUILD_").unwrap_or(k), v.as_str()))
        .collect();
    for _ in 0..2 {
        let (code, out, err) = run(dir.path(), &env, &["migrate"]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("mysql store is up to date"), "{out}");
    }
    let tables = db.rows("SHOW TABLES");
    for t in ["buildJobs", "pluginVersions", "plugins"] {
        assert!(
            tables.iter().any(|r| r[0].as_deref() == Some(t)),
            "{t} missing: {tables:?}"
        );
    }
}

#[test]
fn jobs_lists_and_retry_resubmits_failed_jobs() {
    let sim = Sim::start(&["--build-delay-ms", "60000"]);
    sim.set(serde_json::json!({"fail_next": 1, "fail_kind": "publish_limit"}));
    let svc = Service::builder()
        .set("PERRY_HUB_URL", sim.url())
        .set("PERRY_HUB_LICENSE_KEY", "sim-license")
        .set("RETRY_BASE_SECS", "1")
        .start();
    let r = http(
        "POST",
        &svc.url("/upload?name=ops-plugin&version=2.0.0-rc.1&platforms=linux"),
        &[],
        Some(&tarball("", FILL)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["builds"][0]["status"], "failed");

    let env = [("LOG_LEVEL", "warn")];
    let (code, out, err) = run(svc.dir(), &env, &["jobs"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains("PLUGIN") && lines[0].contains("STATUS") && lines[0].contains("STAGE"),
        "{out}"
    );
    let row = lines
        .iter()
        .find(|l| l.contains("ops-plugin"))
        .expect("job listed");
    assert!(
        row.contains("2.0.0-rc.1") && row.contains("linux") && row.contains("failed"),
        "{row}"
    );
    assert!(row.contains("PUBLISH_LIMIT_REACHED"), "error shown: {row}");
    assert!(out.contains("1 job(s)"));
    let (_, out, _) = run(svc.dir(), &env, &["jobs", "other-plugin"]);
    assert!(out.contains("0 job(s)"), "filter by name: {out}");
    let (_, out, _) = run(svc.dir(), &env, &["jobs", "ops-plugin", "9.9.9"]);
    assert!(out.contains("0 job(s)"), "filter by version: {out}");

    let (code, out, err) = run(
        svc.dir(),
        &env,
        &["retry", "ops-plugin", "2.0.0-rc.1", "linux"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 failed job(s)"), "{out}");
    // The running service's background loop submits it again.
    let queued = wait_until(Duration::from_secs(15), || {
        let s = http("GET", &svc.url("/status/ops-plugin/2.0.0-rc.1"), &[], None).json();
        s["builds"][0]["status"] == "queued"
    });
    assert!(queued, "retried job not queued; log:\n{}", svc.log());
    assert_eq!(sim.submissions().len(), 2);
    let (_, out, _) = run(svc.dir(), &env, &["retry", "ops-plugin", "2.0.0-rc.1"]);
    assert!(
        out.contains("0 failed job(s)"),
        "nothing left to retry: {out}"
    );
}

#[test]
fn sigterm_lets_an_inflight_upload_finish_then_exits_zero() {
    let sim = Sim::start(&["--build-delay-ms", "60000"]);
    let mut svc = Service::builder()
        .set("PERRY_HUB_URL", sim.url())
        .set("PERRY_HUB_LICENSE_KEY", "sim-license")
        .start();
    let body = tarball("", FILL);
    let mut conn = TcpStream::connect(svc.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        conn,
        "POST /upload?name=slow-plugin&version=1.0.0&platforms=linux HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    conn.write_all(&body[..100]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    svc.terminate();
    std::thread::sleep(Duration::from_millis(500));
    // Still running: the upload is in flight.
    assert!(svc.is_running(), "exited with a request in flight");
    for chunk in body[100..].chunks(500) {
        conn.write_all(chunk).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                resp.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&resp).contains("\"success\":true") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let resp = String::from_utf8_lossy(&resp);
    assert!(
        resp.starts_with("HTTP/1.1 200"),
        "in-flight upload answered: {resp}"
    );
    assert!(resp.contains("\"status\":\"queued\""), "{resp}");
    let status = svc
        .wait_exit(Duration::from_secs(15))
        .expect("exits after SIGTERM");
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        svc.log()
    );
    assert!(svc.log().contains("stopped"));
    assert_eq!(sim.submissions().len(), 1);
}

#[test]
fn sigint_on_an_idle_server_exits_zero_quickly() {
    let mut svc = Service::builder().start();
    let st = Command::new("kill")
        .arg("-INT")
        .arg(svc.pid().to_string())
        .status()
        .unwrap();
    assert!(st.success());
    let status = svc
        .wait_exit(Duration::from_secs(5))
        .expect("exits within 5 s");
    assert!(status.success(), "{status}");
}

/// `name{labels} value` → value, from Prometheus text.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn metrics_are_prometheus_text_and_move() {
    let sim = Sim::start(&["--build-delay-ms", "100"]);
    let svc = Service::builder()
        .set("PERRY_HUB_URL", sim.url())
        .set("PERRY_HUB_LICENSE_KEY", "sim-license")
        .start();
    let m = http("GET", &svc.url("/metrics"), &[], None);
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    let before = m.text();
    // Every non-comment line is `series value`.
    for l in before
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l}"));
        assert!(
            series.starts_with("hone_build_") || series.starts_with("process_"),
            "{l}"
        );
        assert!(value.parse::<f64>().is_ok(), "{l}");
    }
    let health = r#"hone_build_requests_total{route="health",status="200"}"#;
    let h0 = metric(&before, health).unwrap_or(0.0);
    for _ in 0..3 {
        http("GET", &svc.url("/health"), &[], None);
    }
    http("GET", &svc.url("/nope"), &[], None);
    let r = http(
        "POST",
        &svc.url("/upload?name=m-plugin&version=1.0.0&platforms=linux"),
        &[],
        Some(&tarball("", FILL)),
    );
    assert_eq!(r.status, 200);
    assert!(wait_until(Duration::from_secs(10), || {
        http("GET", &svc.url("/status/m-plugin/1.0.0"), &[], None).json()["overall"] == "completed"
    }));
    let after = http("GET", &svc.url("/metrics"), &[], None).text();
    assert_eq!(metric(&after, health), Some(h0 + 3.0), "{after}");
    assert_eq!(
        metric(
            &after,
            r#"hone_build_requests_total{route="unknown",status="404"}"#
        ),
        Some(1.0)
    );
    assert_eq!(metric(&after, "hone_build_uploads_total"), Some(1.0));
    assert_eq!(
        metric(&after, "hone_build_artifacts_stored_total"),
        Some(1.0)
    );
    assert_eq!(
        metric(&after, "hone_build_artifact_bytes_total"),
        Some(4096.0)
    );
    assert_eq!(
        metric(
            &after,
            r#"hone_build_hub_submissions_total{outcome="accepted"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&after, r#"hone_build_jobs{state="completed"}"#),
        Some(1.0)
    );
    // The latency histogram by route: /health was asked three times.
    let count = metric(
        &after,
        r#"hone_build_request_duration_seconds_count{route="health"}"#,
    )
    .unwrap();
    let inf = metric(
        &after,
        r#"hone_build_request_duration_seconds_bucket{route="health",le="+Inf"}"#,
    )
    .unwrap();
    assert_eq!(count, inf);
    assert_eq!(count, h0 + 3.0);
}

#[test]
fn a_full_publish_with_every_secret_set_logs_none_of_them() {
    let db = TestDb::new();
    let password = "db-pass-SECRET-771";
    let user = db.add_user(password);
    let license = "license-SECRET-772";
    let upload_secret = "upload-SECRET-773";
    let sim = Sim::start(&["--license-key", license, "--build-delay-ms", "100"]);
    let (_, port, _, _) = common::mysql_server();
    let svc = Service::builder()
        .envs(db.service_env("127.0.0.1", port))
        .set("DB_USER", user)
        .set("DB_PASS", password)
        .set("PERRY_HUB_URL", sim.url())
        .set("PERRY_HUB_LICENSE_KEY", license)
        .set("UPLOAD_SECRET", upload_secret)
        .set("BIND", "127.0.0.1")
        .set("LOG_LEVEL", "trace")
        .start();
    let auth = format!("Bearer {upload_secret}");
    let r = http(
        "POST",
        &svc.url("/upload?name=secret-plugin&version=1.0.0&platforms=macos,linux"),
        &[("Authorization", &auth)],
        Some(&tarball("", FILL)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // The old ?token= form too.
    let r = http(
        "POST",
        &svc.url(&format!(
            "/upload?name=secret-plugin2&version=1.0.0&platforms=linux&token={upload_secret}"
        )),
        &[],
        Some(&tarball("", FILL)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(wait_until(Duration::from_secs(15), || {
        http("GET", &svc.url("/status/secret-plugin/1.0.0"), &[], None).json()["overall"]
            == "completed"
    }));
    // A wrong secret, logged as a failure, must not echo what was sent either.
    let r = http(
        "POST",
        &svc.url("/upload?name=x&version=1&token=wrong-SECRET-774"),
        &[],
        Some(&tarball("", FILL)),
    );
    assert_eq!(r.status, 401);
    let log = svc.log();
    let tokens: Vec<String> = sim
        .submissions()
        .iter()
        .filter_map(|s| s["artifact_upload_url"].as_str())
        .filter_map(|u| u.split("token=").nth(1).map(str::to_string))
        .collect();
    assert_eq!(tokens.len(), 3);
    assert!(log.contains("POST /upload"), "access lines present");
    for secret in [password, license, upload_secret, "wrong-SECRET-774"]
        .into_iter()
        .map(str::to_string)
        .chain(tokens)
    {
        assert!(
            !log.contains(&secret),
            "log contains a secret {secret}:\n{log}"
        );
        assert!(!r.text().contains(&secret));
    }
    for s in sim.submissions() {
        assert!(
            !s.to_string().contains(upload_secret),
            "UPLOAD_SECRET reached the hub"
        );
    }
}

/// Issue #11 item 21: the access log redacts secrets wherever a client puts
/// them: after `;` (a parameter separator some clients use), and in any
/// parameter whose value is a configured secret, encoded or not.
#[test]
fn access_log_redacts_secrets_after_semicolons_and_under_any_name() {
    let secret = "upload-SECRET-5a7c";
    let svc = Service::builder()
        .set("UPLOAD_SECRET", secret)
        .set("BIND", "127.0.0.1")
        .set("LOG_LEVEL", "info")
        .start();
    let targets = [
        format!("/upload?name=semi&version=1.0.0;token={secret}"),
        format!("/upload?name=semi&version=1.0.0;x=1;token={secret}&platforms=linux"),
        format!("/upload?name=semi&version=1.0.0&auth={secret}"),
        // `u` percent-encoded: still the secret once decoded.
        format!("/upload?name=semi&version=1.0.0&v=%75{}", &secret[1..]),
        format!("/status/semi/1.0.0?x={secret}"),
    ];
    for t in &targets {
        let r = http("POST", &svc.url(t), &[], Some(&tarball("", FILL)));
        assert!(r.status >= 400, "{t}: {}", r.text());
        assert!(
            !r.text().contains(secret),
            "{t}: the answer echoes the secret"
        );
    }
    // Access lines are written after the answers: wait for all of them.
    let access_lines = |log: &str| {
        log.lines()
            .filter(|l| l.contains("/upload?") || l.contains("/status/semi"))
            .count()
    };
    wait_until(Duration::from_secs(10), || {
        access_lines(&svc.log()) >= targets.len()
    });
    let log = svc.log();
    let access: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("/upload?") || l.contains("/status/semi"))
        .collect();
    assert_eq!(access.len(), targets.len(), "one access line each:\n{log}");
    for secret_form in [secret.to_string(), format!("%75{}", &secret[1..])] {
        assert!(
            !log.contains(&secret_form),
            "the log carries the secret ({secret_form}):\n{log}"
        );
    }
    assert!(
        access[0].contains("token=REDACTED"),
        "what was redacted stays visible: {}",
        access[0]
    );
}

/// Issue #11 item 21: what the hub says in an error reaches the log and
/// the stored job error with its control characters escaped: a hub (or
/// whatever answers at its address) cannot forge log lines or rewrite the
/// operator's terminal.
#[test]
fn hub_error_messages_are_escaped_before_logging_and_storing() {
    let body = r#"{"error":{"code":"BAD\u001b[2J","message":"no\n[2026-01-01T00:00:00Z ERROR access] FORGED\rline\u0007"}}"#;
    let hub = FakeHub::start(Duration::ZERO, Some(FakeHub::json(400, body)));
    let svc = Service::builder()
        .set("PERRY_HUB_URL", hub.url())
        .set("PERRY_HUB_LICENSE_KEY", "k")
        .start();
    let r = http(
        "POST",
        &svc.url("/upload?name=hub-esc&version=1.0.0&platforms=linux"),
        &[],
        Some(&tarball("", FILL)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let build = &r.json()["builds"][0];
    assert_eq!(build["status"], "failed", "{build}");
    let error = build["error"].as_str().unwrap();
    assert!(
        error.contains("FORGED") && !error.chars().any(|c| c.is_control()),
        "stored error keeps the text, escaped: {error:?}"
    );
    let status = http("GET", &svc.url("/status/hub-esc/1.0.0"), &[], None).json();
    let stored = status["builds"][0]["errorMessage"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        stored.contains("FORGED") && !stored.chars().any(|c| c.is_control()),
        "{stored:?}"
    );
    wait_until(Duration::from_secs(10), || svc.log().contains("FORGED"));
    let log = svc.log();
    assert!(
        log.contains("FORGED"),
        "the hub's message is logged:\n{log}"
    );
    for line in log.split('\n') {
        assert!(
            !line.contains('\r') && !line.contains('\u{1b}') && !line.contains('\u{7}'),
            "a raw control character from the hub in the log: {line:?}"
        );
        assert!(
            !line.starts_with("[2026-01-01"),
            "the hub forged a log line: {line:?}"
        );
    }
}

/// Sends `sig` (`TERM`, `INT`) to the service through the `kill` command.
fn signal(svc: &Service, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(svc.pid().to_string())
        .status()
        .unwrap();
    assert!(st.success());
}

/// A service whose background loop is inside a submission to a hub that
/// accepted the connection and never answers (HUB_TIMEOUT_SECS=60): the
/// upload's own submission found nothing listening, the retry a second
/// later found the hanging hub. Returns the service and the hub.
fn service_stuck_in_a_hub_call(grace_secs: &str) -> (Service, FakeHub) {
    let port = common::free_port();
    let svc = Service::builder()
        .set("PERRY_HUB_URL", format!("http://127.0.0.1:{port}"))
        .set("PERRY_HUB_LICENSE_KEY", "k")
        .set("HUB_TIMEOUT_SECS", "60")
        .set("RETRY_BASE_SECS", "1")
        .set("SHUTDOWN_GRACE_SECS", grace_secs)
        .start();
    let r = http(
        "POST",
        &svc.url("/upload?name=stuck&version=1.0.0&platforms=linux"),
        &[],
        Some(&tarball("", FILL)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["builds"][0]["status"], "pending");
    let hub = FakeHub::start_on(port, Duration::ZERO, None);
    assert!(
        wait_until(Duration::from_secs(8), || hub.connections() >= 1),
        "the background loop did not retry; log:\n{}",
        svc.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    (svc, hub)
}

/// Issue #11 item 22: the drain after SIGTERM is bounded by
/// SHUTDOWN_GRACE_SECS even while a hub request hangs (it took 27-31 s):
/// the hanging submission is abandoned (its claim expires and it is
/// submitted again after a restart), the process exits 0 and says so.
#[test]
fn shutdown_is_bounded_while_a_hub_request_hangs() {
    let (mut svc, _hub) = service_stuck_in_a_hub_call("3");
    let t = Instant::now();
    svc.terminate();
    let status = svc.wait_exit(Duration::from_secs(15));
    let took = t.elapsed();
    let status =
        status.unwrap_or_else(|| panic!("still running 15 s after SIGTERM:\n{}", svc.log()));
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after SIGTERM with SHUTDOWN_GRACE_SECS=3; log:\n{}",
        svc.log()
    );
    assert!(status.success(), "{status}; log:\n{}", svc.log());
    let log = svc.log();
    assert!(
        log.contains("SHUTDOWN_GRACE_SECS") && log.contains("abandon"),
        "the log says what was cut off:\n{log}"
    );
}

/// Issue #11 item 22: a second SIGINT/SIGTERM during the drain exits at
/// once (status 128 + the signal), whatever is still running.
#[test]
fn a_second_signal_exits_at_once() {
    for (first, second, code) in [("TERM", "INT", 130), ("INT", "TERM", 143)] {
        let (mut svc, _hub) = service_stuck_in_a_hub_call("60");
        signal(&svc, first);
        std::thread::sleep(Duration::from_millis(700));
        assert!(
            svc.is_running(),
            "draining: still running after the first signal"
        );
        let t = Instant::now();
        signal(&svc, second);
        let status = svc
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("a second SIG{second} did not stop it:\n{}", svc.log()));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "exited {:?} after the second signal",
            t.elapsed()
        );
        assert_eq!(
            status.code(),
            Some(code),
            "SIG{first} then SIG{second}: {status}"
        );
    }
}

/// Issue #11 item 24: `jobs` and `retry` on a store nothing ever ran on
/// answered "no such table"; they work on it (the schema is created first).
#[test]
fn jobs_and_retry_on_a_fresh_store() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("LOG_LEVEL", "warn")];
    let (code, out, err) = run(dir.path(), &env, &["jobs"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 job(s)"), "{out}");
    assert!(!err.contains("no such table"), "{err}");
    let (code, out, err) = run(dir.path(), &env, &["retry", "p", "1.0.0", "linux"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 failed job(s)"), "{out}");
    // MySQL: a database without the marketplace's tables yet.
    let db = TestDb::new();
    let denv: Vec<(String, String)> = db.service_env("127.0.0.1", common::mysql_server().1);
    let mut denv: Vec<(&str, &str)> = denv
        .iter()
        .map(|(k, v)| (k.strip_prefix("HONE_BUILD_").unwrap_or(k), v.as_str()))
        .collect();
    denv.push(("LOG_LEVEL", "warn"));
    let (code, out, err) = run(dir.path(), &denv, &["jobs", "some-plugin"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 job(s)"), "{out}");
}

/// Issue #11 item 24: `retry NAME VERSION beos` said "0 failed job(s)" and
/// exited 0. An unknown platform is refused (exit 2, naming it and the
/// known ones); a marketplace platform id is accepted as its hub name.
#[test]
fn retry_refuses_an_unknown_platform() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("LOG_LEVEL", "warn")];
    let (code, out, err) = run(dir.path(), &env, &["retry", "p", "1.0.0", "beos"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("'beos'") && err.contains("linux") && err.contains("darwin-arm64"),
        "{err}"
    );
    assert!(!out.contains("job(s)"), "{out}");
    let (code, out, err) = run(dir.path(), &env, &["retry", "p", "1.0.0", "linux-x64"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 failed job(s) of p 1.0.0 (linux)"), "{out}");
}

/// Issue #11 item 24: `make run` (the README's first command) wrote into
/// `../hone-marketplace/data/packages`, outside the clone. The demo run
/// keeps its files under the working directory; deployments keep the
/// default.
#[test]
fn make_run_keeps_the_demo_files_inside_the_clone() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("make")
        .args(["-n", "--no-print-directory", "run"])
        .current_dir(root)
        .output()
        .expect("run make -n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = text
        .lines()
        .find(|l| l.contains("release/hone-build") && !l.contains("ls -l"))
        .unwrap_or_else(|| panic!("no line starting hone-build in:\n{text}"));
    for key in ["PACKAGES_DIR", "UPLOADS_DIR", "DATA_DIR"] {
        let value = run
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("HONE_BUILD_{key}=")))
            .unwrap_or_else(|| panic!("`make run` does not set {key}: {run}"));
        assert!(
            !value.starts_with("..") && !value.starts_with('/') && !value.contains("/../"),
            "`make run` puts {key} outside the clone: {value}"
        );
    }
    assert_eq!(
        hone_build::config::key_spec("PACKAGES_DIR")
            .unwrap()
            .default,
        "../hone-marketplace/data/packages",
        "the deployment default is unchanged"
    );
}

/// Issue #11 item 24: the README said the static binary "runs without
/// matching libraries", but a statically linked glibc still loads the
/// host's NSS modules to resolve host names. The README and the operations
/// guide say so, and what to do about it.
#[test]
fn docs_are_honest_about_static_glibc_and_name_lookups() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for doc in ["README.md", "docs/operations.md", "Makefile"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            !flat.contains("runs without matching libraries")
                && !flat.contains("runs on the web server without matching libraries")
                && !flat.contains("runs on a web server without matching libraries"),
            "{doc} still promises a binary that needs no libraries at all"
        );
        if doc != "Makefile" {
            assert!(
                flat.contains("NSS") && flat.contains("DB_HOST") && flat.contains("IP address"),
                "{doc} does not explain NSS for host names"
            );
        }
    }
}

/// Issue #11 item 16, end to end: a numeric key beyond its bound stops the
/// service before it listens (exit 2), naming the key and the variable; a
/// BOM-prefixed build.conf (item 17) keeps its first key.
#[test]
fn out_of_range_numbers_stop_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    // check-config (it ends by itself, also if the value were accepted).
    let hub = [
        ("PERRY_HUB_URL", "http://127.0.0.1:9"),
        ("PERRY_HUB_WS_URL", "off"),
    ];
    let mut env = hub.to_vec();
    env.push(("BUILD_TIMEOUT_SECS", "9223372036854775808"));
    let (code, out, err) = run(dir.path(), &env, &["check-config"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("BUILD_TIMEOUT_SECS")
            && err.contains("HONE_BUILD_BUILD_TIMEOUT_SECS")
            && err.contains("at most"),
        "{err}"
    );
    assert!(!out.contains("configuration from"), "{out}");
    std::fs::write(
        dir.path().join("build.conf"),
        b"\xef\xbb\xbfHUB_TIMEOUT_SECS=99999999999\n",
    )
    .unwrap();
    let (code, out, err) = run(dir.path(), &hub, &["check-config"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("HUB_TIMEOUT_SECS")
            && err.contains("build.conf:1")
            && err.contains("at most 3600"),
        "{err}"
    );
}

/// `serve` logs check-config's warnings once at start (WARN, `config:`),
/// so an operator who never ran check-config sees in the journal why
/// every build is about to fail; a configuration without any logs none.
#[test]
fn serve_logs_the_check_config_warnings_at_start() {
    let warned = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("WARN") && l.contains("config: "))
            .map(str::to_string)
            .collect()
    };
    // No hub credentials: Perry Hub would refuse every submission.
    let svc = Service::builder().start();
    let lines = warned(&svc.log());
    assert_eq!(lines.len(), 1, "{}", svc.log());
    assert!(
        lines[0].contains("neither PERRY_HUB_TOKEN nor PERRY_HUB_LICENSE_KEY is set"),
        "{lines:?}"
    );
    drop(svc);
    // A token (never printed), loopback, writable directories: nothing.
    let svc = Service::builder()
        .set("PERRY_HUB_TOKEN", "token-SERVE-WARN")
        .start();
    assert!(warned(&svc.log()).is_empty(), "{}", svc.log());
    assert!(!svc.log().contains("token-SERVE-WARN"), "{}", svc.log());
}
