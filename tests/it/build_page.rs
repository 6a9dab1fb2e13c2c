//! The build page `GET /builds/:name/:version` and the links to it (issue
//! #12), over HTTP without a browser: the snapshot a reader gets with
//! JavaScript off (every state, escaped), its headers, its errors, the
//! upload answer's `statusUrl`/`buildUrl` and `/status`'s `logUrl`. The
//! page in a real browser, updating live: the `browser` suite.

use crate::common::{self, Resp, Service, ServiceBuilder, Sim, http, wait_until};
use crate::fixtures::{Fill, tarball};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;

pub const LICENSE: &str = "sim-license";

/// hone-build (embedded store) following `sim` in real-hub mode.
pub fn service_for(sim: &Sim) -> ServiceBuilder {
    Service::builder()
        .set("PERRY_HUB_URL", sim.url())
        .set("PERRY_HUB_WS_URL", sim.ws_url())
        .set("PERRY_HUB_LICENSE_KEY", LICENSE)
        .set("BIND", "127.0.0.1")
        .set("RETRY_BASE_SECS", "1")
        .set("RETRY_MAX_SECS", "2")
}

/// Uploads a fresh tarball of `name` `version` for `platforms`; the answer.
#[track_caller]
pub fn upload(svc: &Service, name: &str, version: &str, platforms: &str) -> Value {
    let tar = tarball(&format!("{name}-{version}"), Fill::Unique);
    let r = http(
        "POST",
        &svc.url(&format!(
            "/upload?name={name}&version={version}&platforms={platforms}"
        )),
        &[("Content-Type", "application/gzip")],
        Some(&tar),
    );
    assert_eq!(r.status, 200, "upload: {}", r.text());
    r.json()
}

pub fn status(svc: &Service, name: &str, version: &str) -> Value {
    let r = http(
        "GET",
        &svc.url(&format!("/status/{name}/{version}")),
        &[],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Waits until `/status` says `overall`; the answer.
#[track_caller]
pub fn wait_overall(svc: &Service, name: &str, version: &str, overall: &str) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(Duration::from_secs(30), || {
        last = status(svc, name, version);
        last["overall"] == overall
    });
    assert!(ok, "{name} {version} not {overall}: {last}\n{}", svc.log());
    last
}

fn page(svc: &Service, name: &str, version: &str) -> Resp {
    http(
        "GET",
        &svc.url(&format!("/builds/{name}/{version}")),
        &[],
        None,
    )
}

/// The `<section>` of `platform` in a page.
#[track_caller]
fn section<'a>(html: &'a str, platform: &str) -> &'a str {
    let start = html
        .find(&format!(
            "<section class=\"build\" data-platform=\"{platform}\""
        ))
        .unwrap_or_else(|| panic!("no section for {platform}:\n{html}"));
    let end = start + html[start..].find("</section>").expect("section end");
    &html[start..end]
}

/// The text of the element carrying `data-f="f"` in `html` (still escaped).
#[track_caller]
fn field<'a>(html: &'a str, f: &str) -> &'a str {
    let at = html
        .find(&format!("data-f=\"{f}\""))
        .unwrap_or_else(|| panic!("no field {f}:\n{html}"));
    let open = at + html[at..].find('>').unwrap() + 1;
    let close = open + html[open..].find('<').unwrap();
    &html[open..close]
}

/// Is the details row `f` shown (not `hidden`)?
fn row_shown(html: &str, f: &str) -> bool {
    html.contains(&format!("<div data-row=\"{f}\">"))
}

fn sqlite_path(svc: &Service) -> PathBuf {
    svc.dir().join("data").join(common::SQLITE_FILE)
}

/// Runs a statement on the service's SQLite file.
fn sqlite_exec(svc: &Service, sql: &str, params: &[&dyn rusqlite::ToSql]) {
    let c = rusqlite::Connection::open(sqlite_path(svc)).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.execute(sql, params)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The snapshot (no script run) shows each state as it is: a completed
/// build with its size and SHA-256 and full bar, a failed one with the
/// compiler's error, one waiting to be submitted again with when.
#[test]
fn snapshot_shows_completed_failed_and_waiting_builds() {
    let sim = Sim::start_real(&[]);
    let svc = service_for(&sim).start();
    upload(&svc, "snap", "1.0.0", "linux,windows");
    let st = wait_overall(&svc, "snap", "1.0.0", "completed");
    let r = page(&svc, "snap", "1.0.0");
    assert_eq!(r.status, 200, "{}", r.text());
    let html = r.text();
    assert!(html.contains("id=\"overall\" class=\"state st-completed\">completed<"));
    for b in st["builds"].as_array().unwrap() {
        let p = b["platform"].as_str().unwrap();
        let s = section(&html, p);
        assert!(s.contains("data-state=\"completed\""), "{s}");
        assert_eq!(field(s, "status"), "completed");
        assert!(
            s.contains("<progress max=\"100\" data-f=\"progress\" value=\"100\">"),
            "{s}"
        );
        assert_eq!(field(s, "sha256"), b["sha256"].as_str().unwrap());
        let size = b["size"].as_i64().unwrap();
        assert!(field(s, "size").contains(&format!("{size} bytes")), "{s}");
        assert!(
            row_shown(s, "completedAt") && row_shown(s, "duration"),
            "{s}"
        );
        assert_eq!(field(s, "hubJobId"), b["hubJobId"].as_str().unwrap());
        assert!(!row_shown(s, "nextAttemptAt"));
        assert!(
            s.contains("<pre class=\"error\" data-f=\"error\" hidden></pre>"),
            "{s}"
        );
    }
    // The page polls nothing when all is done, but carries the script.
    assert!(html.contains("<script>\"use strict\";"));

    sim.set(json!({"compile_failure": true}));
    upload(&svc, "snap", "2.0.0", "linux");
    let st = wait_overall(&svc, "snap", "2.0.0", "failed");
    let html = page(&svc, "snap", "2.0.0").text();
    let s = section(&html, "linux");
    assert_eq!(field(s, "status"), "failed");
    let err = field(s, "error");
    assert!(
        err.contains("error TS2304: Cannot find name &#39;foo&#39;."),
        "{s}"
    );
    assert!(
        st["builds"][0]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("error TS2304: Cannot find name 'foo'."),
        "{st}"
    );
    assert!(
        s.contains("<div class=\"bar\" hidden>"),
        "no bar for a failed build: {s}"
    );
    assert!(!row_shown(s, "size") && !row_shown(s, "sha256"), "{s}");

    // No hub at all: the job waits to be submitted again.
    let lone = Service::builder().start();
    upload(&lone, "snap", "3.0.0", "linux");
    let html = page(&lone, "snap", "3.0.0").text();
    let s = section(&html, "linux");
    assert_eq!(field(s, "status"), "pending");
    assert!(
        field(s, "stage").starts_with("waiting to be submitted again at 20"),
        "{s}"
    );
    assert!(
        s.contains("<pre class=\"error\" data-f=\"error\">Perry Hub unreachable"),
        "{s}"
    );
    assert!(html.contains("st-building\">building<"), "{html}");
}

/// While the hub builds, the snapshot shows the stage and the bar at the
/// hub's last figure, like `/status`.
#[test]
fn snapshot_shows_the_stage_and_progress_while_building() {
    let sim = Sim::start_real(&["--stage-delay-ms", "700"]);
    let svc = service_for(&sim).start();
    upload(&svc, "midway", "1.0.0", "linux");
    let mut seen = None;
    wait_until(Duration::from_secs(20), || {
        let st = status(&svc, "midway", "1.0.0");
        let b = &st["builds"][0];
        if b["progress"].is_i64() && b["stage"].is_string() {
            let html = page(&svc, "midway", "1.0.0").text();
            // The same moment, as far as the page can tell.
            if status(&svc, "midway", "1.0.0")["builds"][0] == *b {
                seen = Some((b.clone(), html));
                return true;
            }
        }
        st["overall"] != "building"
    });
    let (b, html) = seen.expect("a build under way was seen");
    let s = section(&html, "linux");
    let pct = b["progress"].as_i64().unwrap();
    assert!(
        s.contains(&format!(
            "<progress max=\"100\" data-f=\"progress\" value=\"{pct}\">"
        )),
        "{b}\n{s}"
    );
    assert_eq!(field(s, "percent"), format!("{pct}%"));
    assert!(
        field(s, "stage").starts_with(b["stage"].as_str().unwrap()),
        "{b}\n{s}"
    );
    assert_eq!(field(s, "status"), "queued");
    assert!(field(s, "duration").ends_with(" so far"), "{s}");
    assert!(html.contains("st-building\">building<"));
    wait_overall(&svc, "midway", "1.0.0", "completed");
}

/// Headers: HTML, a CSP naming exactly the page's inline script and style
/// by hash (and nothing else may load), nosniff, never cached.
#[test]
fn page_headers_pin_its_own_script_and_style() {
    let svc = Service::builder().start();
    upload(&svc, "hdr", "1.0.0", "linux");
    let r = page(&svc, "hdr", "1.0.0");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let csp = r
        .header("content-security-policy")
        .expect("CSP")
        .to_string();
    let html = r.text();
    let inline = |open: &str, close: &str| -> String {
        let a = html.find(open).expect(open) + open.len();
        let b = a + html[a..].find(close).expect(close);
        use base64::Engine as _;
        let d = Sha256::digest(&html.as_bytes()[a..b]);
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(d)
        )
    };
    let (script, style) = (
        inline("<script>", "</script>"),
        inline("<style>", "</style>"),
    );
    assert_eq!(
        csp,
        format!(
            "default-src 'none'; script-src {script}; style-src {style}; connect-src 'self'; \
             img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
    );
    // One script, one style, nothing external.
    assert_eq!(html.matches("<script").count(), 1);
    assert_eq!(html.matches("<style").count(), 1);
    assert!(!html.contains("src=") && !html.contains("<link"), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    // HEAD as GET.
    let h = http("HEAD", &svc.url("/builds/hdr/1.0.0"), &[], None);
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-security-policy"), Some(csp.as_str()));
}

/// Unknown plugin or version: 404 with the API's JSON error, like
/// `/status`; an invalid name: 400; another method: 405.
#[test]
fn unknown_or_invalid_versions_are_refused_like_status() {
    let svc = Service::builder().start();
    upload(&svc, "known", "1.0.0", "linux");
    for path in [
        "/builds/known/9.9.9",
        "/builds/unknown/1.0.0",
        "/builds/KNOWN/1.0.0",
    ] {
        let r = http("GET", &svc.url(path), &[], None);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v = r.json();
        assert_eq!(v["code"], "NOT_FOUND", "{v}");
        let (n, ver) = path.trim_start_matches("/builds/").split_once('/').unwrap();
        assert_eq!(v["error"], format!("no builds for {n} {ver}"));
    }
    let r = http("GET", &svc.url("/builds/a%20b/1.0.0"), &[], None);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["code"], "BAD_REQUEST");
    assert!(
        r.json()["error"].as_str().unwrap().starts_with("name "),
        "{}",
        r.text()
    );
    let r = http("GET", &svc.url("/builds/known/..%2F1"), &[], None);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = http("POST", &svc.url("/builds/known/1.0.0"), &[], Some(b""));
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.header("allow"), Some("GET"));
    for path in [
        "/builds/known",
        "/builds/known/1.0.0/linux",
        "/builds/known/1.0.0/",
    ] {
        assert_eq!(http("GET", &svc.url(path), &[], None).status, 404, "{path}");
    }
}

/// Everything untrusted is escaped: an error message (it comes from the
/// hub) and a platform name of an old row full of markup come out as
/// text, in content and in attributes.
#[test]
fn hostile_text_is_escaped() {
    // No hub, and no second submission to race with the rows written here.
    let svc = Service::builder()
        .set("RETRY_BASE_SECS", "3600")
        .set("RETRY_MAX_SECS", "3600")
        .start();
    upload(&svc, "hostile", "1.0.0", "linux");
    let evil = "</pre><script>alert(1)</script><img src=x onerror=\"alert(2)\">'&";
    sqlite_exec(
        &svc,
        "UPDATE buildJobs SET status = 'failed', errorMessage = ?1",
        &[&evil],
    );
    sqlite_exec(
        &svc,
        "INSERT INTO buildJobs (pluginId, version, platform, status, errorMessage, createdAt) \
         SELECT pluginId, version, ?1, 'weird\"><b>', ?1, createdAt FROM buildJobs",
        &[&"\"><svg onload=alert(3)>"],
    );
    let r = page(&svc, "hostile", "1.0.0");
    assert_eq!(r.status, 200, "{}", r.text());
    let html = r.text();
    for raw in ["<img", "<svg", "alert(1)</script>", "onerror=\"", "\"><b>"] {
        assert!(!html.contains(raw), "{raw} not escaped:\n{html}");
    }
    let s = section(&html, "linux");
    assert_eq!(
        field(s, "error"),
        "&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&quot;alert(2)&quot;&gt;&#39;&amp;"
    );
    let s = section(&html, "&quot;&gt;&lt;svg onload=alert(3)&gt;");
    assert_eq!(field(s, "status"), "weird&quot;&gt;&lt;b&gt;");
    assert!(s.contains("class=\"state st-other\""), "{s}");
    // A row hone-build never submitted (no log attempt) has no log.
    assert_eq!(
        field(s, "log"),
        "(no log: hone-build has not submitted this build)"
    );
    assert!(
        s.contains("data-log=\"../../logs/hostile/1.0.0/%22%3E%3Csvg%20onload%3Dalert%283%29%3E\""),
        "{s}"
    );
    assert_eq!(html.matches("<script>").count(), 1);
}

/// The upload answer gains `statusUrl` and `buildUrl`, absolute from
/// PUBLIC_URL, besides its old fields; `/status` gains `logUrl` per build.
/// No secret shows in the page, the status or the upload answer.
#[test]
fn upload_answer_links_the_status_and_the_page() {
    let secret = "upload-secret-b7e1c0ffee";
    let svc = Service::builder()
        .set("PUBLIC_URL", "https://build.example.org/")
        .set("UPLOAD_SECRET", secret)
        .set("PERRY_HUB_LICENSE_KEY", "license-key-9f2d7a")
        .start();
    let tar = tarball("links", Fill::Unique);
    let r = http(
        "POST",
        &svc.url("/upload?name=links&version=1.2.3-rc.1&platforms=linux,macos"),
        &[("Authorization", &format!("Bearer {secret}"))],
        Some(&tar),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "buildUrl",
            "builds",
            "pluginName",
            "statusUrl",
            "success",
            "version"
        ]
    );
    assert_eq!(v["success"], true);
    assert_eq!(v["pluginName"], "links");
    assert_eq!(v["version"], "1.2.3-rc.1");
    assert_eq!(v["builds"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["statusUrl"],
        "https://build.example.org/status/links/1.2.3-rc.1"
    );
    assert_eq!(
        v["buildUrl"],
        "https://build.example.org/builds/links/1.2.3-rc.1"
    );
    // They name real routes (here, under the service's own address).
    for key in ["statusUrl", "buildUrl"] {
        let path = v[key]
            .as_str()
            .unwrap()
            .trim_start_matches("https://build.example.org");
        assert_eq!(http("GET", &svc.url(path), &[], None).status, 200, "{path}");
    }
    let st = status(&svc, "links", "1.2.3-rc.1");
    for b in st["builds"].as_array().unwrap() {
        assert_eq!(
            b["logUrl"],
            format!(
                "https://build.example.org/logs/links/1.2.3-rc.1/{}",
                b["platform"].as_str().unwrap()
            )
        );
    }
    let page = page(&svc, "links", "1.2.3-rc.1").text();
    let tokens: Vec<String> = {
        let c = rusqlite::Connection::open(sqlite_path(&svc)).unwrap();
        common::sqlite_rows(&c, "SELECT callbackToken FROM buildJobs")
            .into_iter()
            .filter_map(|r| r[0].clone())
            .collect()
    };
    assert_eq!(tokens.len(), 2);
    for text in [page.as_str(), &st.to_string(), &v.to_string()] {
        for s in [secret, "license-key-9f2d7a"]
            .into_iter()
            .chain(tokens.iter().map(String::as_str))
        {
            assert!(!text.contains(s), "a secret in an answer: {s}");
        }
    }
}

/// The snapshot shows the tail of the latest log attempt as `/logs`
/// renders it: the last 200 lines after a line counting the ones left
/// out; the size bound's dropped-lines line when the tail reaches back to
/// it; log text escaped.
#[test]
fn snapshot_shows_the_log_tail() {
    use hone_build::store::{LogStream, NewLogLine, Store};
    let svc = Service::builder()
        .set("RETRY_BASE_SECS", "3600")
        .set("RETRY_MAX_SECS", "3600")
        .start();
    upload(&svc, "tail", "1.0.0", "linux");
    upload(&svc, "tail", "2.0.0", "linux");
    let rows = {
        let c = rusqlite::Connection::open(sqlite_path(&svc)).unwrap();
        common::sqlite_rows(&c, "SELECT id, logAttempt FROM buildJobs ORDER BY version")
    };
    let id_attempt = |i: usize| -> (i64, u32) {
        let r = &rows[i];
        (
            r[0].as_deref().unwrap().parse().unwrap(),
            r[1].as_deref().unwrap().parse().unwrap(),
        )
    };
    let (job1, attempt1) = id_attempt(0);
    let (job2, attempt2) = id_attempt(1);
    assert_eq!((attempt1, attempt2), (1, 1), "{rows:?}");
    let store = common::sqlite_store(&svc.dir().join("data"));
    let at = 1_764_412_800_000;
    let lines = |n: i64| -> Vec<NewLogLine> {
        (0..n)
            .map(|i| NewLogLine {
                at_ms: at + i,
                stream: if i % 2 == 0 {
                    LogStream::Stdout
                } else {
                    LogStream::Stderr
                },
                text: format!("line {i} <script>x()</script> & done"),
            })
            .collect()
    };
    // hone-build's own lines of the submission come first.
    let before = store.read_log(job1, attempt1, 0, 1000).unwrap().lines.len();
    assert!(before > 0, "the submission was logged");
    store
        .append_log(job1, attempt1, &lines(250), 1 << 20)
        .unwrap();
    let html = page(&svc, "tail", "1.0.0").text();
    let log = field(section(&html, "linux"), "log");
    let shown: Vec<&str> = log.split('\n').collect();
    assert_eq!(shown.len(), 201, "{log}");
    assert_eq!(
        shown[0],
        format!(
            "[\u{2026} {} earlier line(s) not shown here: see the whole log \u{2026}]",
            before + 50
        )
    );
    assert_eq!(
        shown[1],
        "2025-11-29T10:40:00.050Z stdout | line 50 &lt;script&gt;x()&lt;/script&gt; &amp; done"
    );
    assert_eq!(
        shown[200],
        "2025-11-29T10:40:00.249Z stderr | line 249 &lt;script&gt;x()&lt;/script&gt; &amp; done"
    );
    assert!(html.contains("<a href=\"../../logs/tail/1.0.0/linux\">the whole log</a>"));

    // 40 lines of 44 bytes under a 900-byte bound: the oldest are dropped.
    let r = store.append_log(job2, attempt2, &lines(40), 900).unwrap();
    assert!(r > 0);
    let page2 = store.read_log(job2, attempt2, 0, 1000).unwrap();
    assert!(page2.dropped_lines > 0, "{page2:?}");
    let html = page(&svc, "tail", "2.0.0").text();
    let log = field(section(&html, "linux"), "log");
    let shown: Vec<&str> = log.split('\n').collect();
    assert_eq!(shown.len(), page2.lines.len() + 1, "{log}");
    assert_eq!(
        shown[0],
        format!(
            "[\u{2026} {} earlier line(s) ({} bytes) dropped: the log of one build attempt keeps \
             its last BUILD_LOG_MAX_BYTES \u{2026}]",
            page2.dropped_lines, page2.dropped_bytes
        )
    );
    assert!(
        shown[shown.len() - 1].contains("| line 39 &lt;script&gt;"),
        "{log}"
    );
}

/// With every secret set, a real build's page (its log included) holds
/// none of them: not UPLOAD_SECRET, the hub credential, a job's callback
/// token, or a hub download URL's token.
#[test]
fn page_of_a_real_build_holds_no_secret() {
    let secret = "upload-secret-5e1f0c";
    let sim = Sim::start_real(&[]);
    let svc = service_for(&sim).set("UPLOAD_SECRET", secret).start();
    let tar = tarball("sealed", Fill::Unique);
    let r = http(
        "POST",
        &svc.url("/upload?name=sealed&version=1.0.0&platforms=linux,macos"),
        &[("Authorization", &format!("Bearer {secret}"))],
        Some(&tar),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    wait_overall(&svc, "sealed", "1.0.0", "completed");
    // The last lines are written just after the job is recorded.
    let mut html = String::new();
    let whole = wait_until(Duration::from_secs(10), || {
        html = page(&svc, "sealed", "1.0.0").text();
        ["linux-x64", "darwin-arm64"]
            .iter()
            .all(|id| html.contains(&format!("program stored for {id}")))
    });
    assert!(whole, "{html}");
    let mut secrets = vec![secret.to_string(), LICENSE.to_string()];
    let c = rusqlite::Connection::open(sqlite_path(&svc)).unwrap();
    secrets.extend(
        common::sqlite_rows(&c, "SELECT callbackToken FROM buildJobs")
            .into_iter()
            .filter_map(|r| r[0].clone()),
    );
    let jobs = http("GET", &format!("{}/_sim/jobs", sim.url()), &[], None).json();
    for job in jobs.as_array().unwrap() {
        for a in job["artifacts"].as_array().unwrap() {
            let url = a["download_url"].as_str().unwrap();
            let token = url.rsplit('/').next().unwrap();
            assert!(token.len() >= 16, "{url}");
            secrets.push(token.to_string());
        }
    }
    assert!(secrets.len() >= 2 + 2 + 3, "{secrets:?}");
    for s in &secrets {
        assert!(!html.contains(s.as_str()), "a secret in the page: {s}");
    }
}
