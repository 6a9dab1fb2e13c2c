//! The build page in a real browser (issue #12): Debian's headless
//! `chromium`, driven over the Chrome DevTools Protocol on its WebSocket
//! (tungstenite). It loads the page of a version while the simulator
//! builds it slowly, and checks that the page shows the progress moving
//! and then the completed state without being reloaded; screenshots go to
//! `target/tmp/` (`CARGO_TARGET_TMPDIR`).
//!
//! Chromium missing is a failure, not a skip: `.ci/run` installs it.

use crate::build_page::{service_for, status, upload, wait_overall};
use crate::common::{Service, Sim, http};
use base64::Engine as _;
use serde_json::{Value, json};
use std::io::Read as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// A headless Chromium with one page, attached over the DevTools protocol.
struct Chromium {
    child: Child,
    ws: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    profile: tempfile::TempDir,
}

impl Chromium {
    /// Starts `chromium` on a fresh profile with remote debugging on a port
    /// of its choosing (read back from `DevToolsActivePort`), and opens a
    /// blank page.
    fn start() -> Chromium {
        let bin = ["chromium", "chromium-browser"]
            .into_iter()
            .find_map(which)
            .unwrap_or_else(|| {
                panic!(
                    "chromium is not installed: the browser test needs Debian's `chromium` \
                     (apt-get install -y chromium; .ci/run installs it)"
                )
            });
        let profile = tempfile::Builder::new()
            .prefix("hone-chromium")
            .tempdir()
            .expect("tempdir");
        let log = std::fs::File::create(profile.path().join("chromium.log")).unwrap();
        let child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--window-size=1100,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!(
                "--user-data-dir={}",
                profile.path().join("data").display()
            ))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn chromium");
        let active = profile.path().join("data").join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let (port, path) = loop {
            let text = std::fs::read_to_string(&active).unwrap_or_default();
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                break (port.trim().to_string(), path.trim().to_string());
            }
            assert!(
                Instant::now() < deadline,
                "chromium wrote no DevToolsActivePort within 30 s; its log:\n{}",
                std::fs::read_to_string(profile.path().join("chromium.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let stream = TcpStream::connect(format!("127.0.0.1:{port}")).expect("connect devtools");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}{path}"), stream)
            .expect("devtools websocket handshake");
        let mut c = Chromium {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            profile,
        };
        let target = c.call("Target.createTarget", json!({"url": "about:blank"}));
        let target = target["targetId"].as_str().expect("targetId").to_string();
        let attached = c.call(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        c.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        c
    }

    /// Sends a command (to the page once attached) and waits for its
    /// answer, skipping events; panics on a protocol error.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .expect("send to devtools");
        loop {
            let m = self.ws.read().expect("read from devtools");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str()).expect("devtools JSON");
            if v["id"] != id {
                continue;
            }
            if let Some(e) = v.get("error") {
                panic!("{method}: {e}");
            }
            return v["result"].clone();
        }
    }

    /// Navigates and waits until the document has loaded.
    fn open(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({"url": url}));
        assert!(r.get("errorText").is_none(), "navigate {url}: {r}");
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.eval("document.readyState") != "complete" {
            assert!(Instant::now() < deadline, "{url} did not load");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// A PNG of the whole page, written to `path`.
    fn screenshot(&mut self, path: &Path) {
        self.screenshot_to(path, "document.body");
    }

    /// A PNG of the page from its top down to the end of the element
    /// `upto` (a JavaScript expression), written to `path`.
    fn screenshot_to(&mut self, path: &Path, upto: &str) {
        // The page's width, and its height down to the end of the body
        // (not the taller window).
        let m = self.call("Page.getLayoutMetrics", json!({}));
        let w = m["cssContentSize"]["width"].as_f64().unwrap();
        let h = self
            .eval(&format!(
                "Math.ceil({upto}.getBoundingClientRect().bottom + 16)"
            ))
            .as_f64()
            .unwrap();
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true,
                   "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.profile.path().join("chromium.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // Closing the browser ends its helper processes too.
        self.session.clear();
        self.next_id += 1;
        let msg = json!({"id": self.next_id, "method": "Browser.close"});
        let _ = self.ws.send(Message::Text(msg.to_string().into()));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(bin))
            .find(|p| p.is_file())
    })
}

/// `/logs/<name>/<version>/<platform>` of `svc`.
fn r_url(svc: &Service, name: &str, version: &str, platform: &str) -> String {
    svc.url(&format!("/logs/{name}/{version}/{platform}"))
}

/// HTML text back to text (the five escapes the page uses).
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn shot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// What the page shows of each build, read from the DOM.
const READ_PAGE: &str = r#"JSON.stringify({
  overall: document.getElementById("overall").textContent,
  live: document.getElementById("live").textContent,
  builds: Array.from(document.querySelectorAll("section[data-platform]")).map(function (s) {
    var p = s.querySelector("progress"), f = function (n) { return s.querySelector('[data-f="' + n + '"]'); };
    return {
      platform: s.getAttribute("data-platform"),
      state: f("status").textContent,
      barShown: !s.querySelector(".bar").hidden,
      progress: p.hasAttribute("value") ? p.value : null,
      percent: f("percent").textContent,
      stage: f("stage").hidden ? null : f("stage").textContent,
      size: f("size").closest("div").hidden ? null : f("size").textContent,
      sha256: f("sha256").closest("div").hidden ? null : f("sha256").textContent,
      error: f("error").hidden ? null : f("error").textContent,
      log: f("log").textContent
    };
  })
})"#;

fn read_page(c: &mut Chromium) -> Value {
    let text = c.eval(READ_PAGE);
    serde_json::from_str(text.as_str().expect("a JSON string")).expect("page JSON")
}

/// Loaded while the hub builds, the page follows the build by itself: the
/// bar moves through several increasing figures, then it shows the build
/// completed with its size and SHA-256, as `/status` has them.
#[test]
fn page_follows_a_build_live_until_it_completes() {
    let started = Instant::now();
    let mut browser = Chromium::start();
    let sim = Sim::start_real(&["--stage-delay-ms", "2500"]);
    let svc: Service = service_for(&sim).start();
    let (name, version) = ("aurora-notes", "1.4.0");
    let up = upload(&svc, name, version, "linux,windows");
    let page_url = svc.url(&format!("/builds/{name}/{version}"));
    assert!(
        up["buildUrl"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/builds/{name}/{version}"))
    );
    browser.open(&page_url);

    let mut samples: Vec<Value> = Vec::new();
    let mut seen: Vec<i64> = Vec::new(); // linux's figures, in order, repeats dropped
    let mut running_shot = false;
    let deadline = Instant::now() + Duration::from_secs(40);
    let last = loop {
        let v = read_page(&mut browser);
        let linux = v["builds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["platform"] == "linux")
            .expect("linux section")
            .clone();
        if let Some(p) = linux["progress"].as_f64() {
            let p = p as i64;
            if seen.last() != Some(&p) {
                seen.push(p);
            }
            if !running_shot && (40..90).contains(&p) {
                browser.screenshot(&shot_path("build-page-running.png"));
                running_shot = true;
            }
        }
        samples.push(v.clone());
        // Done once the script saw it all finished (after its last fetches).
        if v["overall"] == "completed" && v["live"] == "All builds have finished." {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed completed; samples: {samples:#?}\nservice log:\n{}\nchromium:\n{}",
            svc.log(),
            browser.log()
        );
        std::thread::sleep(Duration::from_millis(150));
    };
    // The figures moved, only forward, through several values before 100.
    // (The simulator reports 5, 20, 50, 60, 90 for linux; 20 is replaced
    // by 50 within /status's 300 ms and 90 by the stored program at once;
    // each of the others stays about 2.5 s, the page polls every second.)
    eprintln!("linux progress shown by the page, in order: {seen:?}");
    let before_done: Vec<i64> = seen.iter().copied().filter(|p| *p < 100).collect();
    assert!(
        before_done.len() >= 3,
        "fewer than 3 distinct figures shown while building: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "figures went backwards: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&100), "{seen:?}");
    // The first sample is the server's snapshot of a build under way.
    assert_eq!(samples[0]["overall"], "building", "{:#}", samples[0]);

    let st = wait_overall(&svc, name, version, "completed");
    for b in st["builds"].as_array().unwrap() {
        let shown = last["builds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["platform"] == b["platform"])
            .expect("section");
        assert_eq!(shown["state"], "completed", "{shown}");
        assert_eq!(shown["progress"], 100.0, "{shown}");
        assert_eq!(shown["percent"], "100%", "{shown}");
        assert_eq!(shown["sha256"], b["sha256"], "{shown}");
        let size = b["size"].as_i64().unwrap();
        assert!(
            shown["size"]
                .as_str()
                .unwrap()
                .ends_with(&format!("({size} bytes)")),
            "{shown}"
        );
        assert_eq!(shown["error"], Value::Null, "{shown}");
        assert_eq!(shown["stage"], Value::Null, "{shown}");
    }
    assert_eq!(last["live"], "All builds have finished.");
    assert_eq!(
        browser.eval("document.querySelector('noscript p') === null"),
        true
    );
    // Each log shown is its end as /logs has it: the script fetched it once
    // more when the build ended.
    for shown in last["builds"].as_array().unwrap() {
        let platform = shown["platform"].as_str().unwrap();
        let r = http(
            "GET",
            &svc.url(&format!("/logs/{name}/{version}/{platform}")),
            &[],
            None,
        );
        let shown = shown["log"].as_str().unwrap();
        if r.status == 200 {
            // The script fetches the log when the build ends and once more
            // 2 s later (for the lines written as it ended).
            let mut text = String::new();
            let mut now = String::new();
            let same = crate::common::wait_until(Duration::from_secs(6), || {
                text = http("GET", &r_url(&svc, name, version, platform), &[], None).text();
                let v = read_page(&mut browser);
                now = v["builds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|b| b["platform"] == platform)
                    .unwrap()["log"]
                    .as_str()
                    .unwrap()
                    .to_string();
                text.contains("program stored") && now == text.trim_end_matches('\n')
            });
            let lines = text.trim_end_matches('\n').split('\n').count();
            assert!(lines <= 200, "a longer log than this test expects");
            assert!(same, "{platform}: the page shows\n{now}\n/logs has\n{text}");
        } else {
            // Without the /logs route (another branch of issue #12) the
            // script cannot refresh the log: the page keeps the beginning
            // it was served with.
            eprintln!(
                "GET /logs answers {}: the log shown is the page's snapshot",
                r.status
            );
            let mut now = String::new();
            let whole = crate::common::wait_until(Duration::from_secs(5), || {
                let html = http("GET", &page_url, &[], None).text();
                let at = html.find(&format!("data-platform=\"{platform}\"")).unwrap();
                let pre = &html[at..];
                let open = pre.find("data-f=\"log\">").unwrap() + "data-f=\"log\">".len();
                let close = open + pre[open..].find("</pre>").unwrap();
                now = unescape(&pre[open..close]);
                now.contains("program stored")
            });
            assert!(whole, "{now}");
            assert!(now.starts_with(shown), "{platform}: {shown:?} vs {now:?}");
        }
    }
    // The inline style applied (the CSP names it): badges are white on colour.
    assert_eq!(
        browser.eval("getComputedStyle(document.querySelector('.state')).color"),
        "rgb(255, 255, 255)"
    );
    browser.screenshot(&shot_path("build-page-live-end.png"));
    // The same page loaded afresh (the server's rendering, whole logs).
    browser.open(&page_url);
    assert_eq!(read_page(&mut browser)["overall"], "completed");
    browser.screenshot(&shot_path("build-page.png"));
    browser.screenshot_to(
        &shot_path("build-page-linux.png"),
        "document.querySelector('section[data-platform=\"linux\"]')",
    );
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "took {:?}",
        started.elapsed()
    );
}

/// Script on, hostile text stays text: an error message full of markup is
/// shown as written, creates no element and runs nothing, in the snapshot
/// and after the script rewrote it from `/status`.
#[test]
fn page_shows_hostile_text_as_text() {
    let mut browser = Chromium::start();
    let svc = Service::builder()
        .set("RETRY_BASE_SECS", "3600")
        .set("RETRY_MAX_SECS", "3600")
        .start();
    upload(&svc, "hostile-view", "1.0.0", "linux");
    let evil = "<img src=x onerror=\"window.pwned=1\"><script>window.pwned=2</script>";
    let c = rusqlite::Connection::open(svc.dir().join("data").join(crate::common::SQLITE_FILE))
        .unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.execute("UPDATE buildJobs SET errorMessage = ?1", [evil])
        .unwrap();
    assert_eq!(status(&svc, "hostile-view", "1.0.0")["overall"], "building");
    browser.open(&svc.url("/builds/hostile-view/1.0.0"));
    // The job is pending: the page polls /status (every 5 s) and rewrites it.
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..2 {
        let v = read_page(&mut browser);
        assert_eq!(v["builds"][0]["error"], evil, "{v}");
        assert_eq!(browser.eval("typeof window.pwned"), "undefined");
        assert_eq!(browser.eval("document.images.length"), 0);
        assert_eq!(browser.eval("document.scripts.length"), 1);
        std::thread::sleep(Duration::from_millis(5200));
    }
}

/// Script off, the page is a complete snapshot: the browser shows each
/// build's state, bar, size and SHA-256, and the note that it is a
/// snapshot; the style still applies (the CSP lets it).
#[test]
fn page_is_a_snapshot_with_javascript_off() {
    let mut browser = Chromium::start();
    browser.call(
        "Emulation.setScriptExecutionDisabled",
        json!({"value": true}),
    );
    let sim = Sim::start_real(&[]);
    let svc = service_for(&sim).start();
    upload(&svc, "still-life", "1.0.0", "linux");
    let st = wait_overall(&svc, "still-life", "1.0.0", "completed");
    browser.open(&svc.url("/builds/still-life/1.0.0"));
    let v = read_page(&mut browser);
    let b = &v["builds"][0];
    assert_eq!(v["overall"], "completed", "{v}");
    assert_eq!(b["state"], "completed", "{v}");
    assert_eq!(b["progress"], 100.0, "{v}");
    assert_eq!(b["sha256"], st["builds"][0]["sha256"], "{v}");
    let size = st["builds"][0]["size"].as_i64().unwrap();
    assert!(
        b["size"]
            .as_str()
            .unwrap()
            .ends_with(&format!("({size} bytes)")),
        "{v}"
    );
    assert!(v["live"].as_str().unwrap().starts_with("As of "), "{v}");
    // Scripts are really off: only then is <noscript>'s content parsed
    // into elements (the note that this is a snapshot).
    let note = browser.eval("(document.querySelector('noscript p') || {}).textContent || null");
    assert!(
        note.as_str()
            .unwrap_or_default()
            .starts_with("A snapshot as of "),
        "{note}"
    );
    assert_eq!(
        browser.eval("getComputedStyle(document.querySelector('.state')).color"),
        "rgb(255, 255, 255)",
        "the inline style applies"
    );
    browser.screenshot(&shot_path("build-page-no-js.png"));
}

/// A log longer than the page shows, growing while the page is open: the
/// script asks `/logs` for its last 200 lines (`?tail=200`) and shows them
/// after the line counting the earlier ones, as the server renders it.
#[test]
fn page_shows_the_end_of_a_long_log_as_it_grows() {
    use hone_build::store::{LogStream, NewLogLine, Store};
    let mut browser = Chromium::start();
    // Queued at the hub for ten minutes: the build stays unfinished.
    let sim = Sim::start_real(&["--build-delay-ms", "600000"]);
    let svc = service_for(&sim).start();
    let (name, version) = ("long-log", "1.0.0");
    upload(&svc, name, version, "linux");
    let store = crate::common::sqlite_store(&svc.dir().join("data"));
    let mut job = None;
    crate::common::wait_until(Duration::from_secs(10), || {
        job = store
            .version_jobs(name, version)
            .unwrap()
            .into_iter()
            .find(|j| j.log_attempt > 0);
        job.is_some()
    });
    let job = job.expect("the job was submitted");
    // hone-build's own lines of the submission first (it writes nothing
    // more while the hub queues the job): the lines below then end the log.
    // (Read from the store: the test asks /logs nothing but the tail.)
    assert!(
        crate::common::wait_until(Duration::from_secs(10), || {
            store
                .read_log(job.id, job.log_attempt, 0, 1000)
                .is_ok_and(|p| p.lines.iter().any(|l| l.text.contains("following hub job")))
        }),
        "the job is followed"
    );
    browser.open(&svc.url(&format!("/builds/{name}/{version}")));
    let lines: Vec<NewLogLine> = (0..300)
        .map(|i| NewLogLine {
            at_ms: hone_build::app::now_millis(),
            stream: LogStream::Stdout,
            text: format!("long line {i}"),
        })
        .collect();
    store
        .append_log(job.id, job.log_attempt, &lines, 1 << 20)
        .unwrap();
    let tail_url = format!("{}?tail=200", r_url(&svc, name, version, "linux"));
    let mut shown = String::new();
    let mut served = String::new();
    let same = crate::common::wait_until(Duration::from_secs(15), || {
        shown = read_page(&mut browser)["builds"][0]["log"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        served = http("GET", &tail_url, &[], None).text();
        shown.ends_with("stdout | long line 299") && shown == served.trim_end_matches('\n')
    });
    assert!(
        same,
        "the page shows\n{shown}\n/logs?tail=200 has\n{served}"
    );
    let shown: Vec<&str> = shown.split('\n').collect();
    assert_eq!(shown.len(), 201, "{shown:?}");
    assert!(
        shown[0].starts_with("[\u{2026} ") && shown[0].contains("earlier line(s) not shown here"),
        "{}",
        shown[0]
    );
    assert!(shown[1].ends_with("stdout | long line 100"), "{}", shown[1]);
    // The script asked for the tail only, never for the whole log (access
    // lines are written after the answer: wait for one).
    let page_fetches = |q: &str| {
        svc.log()
            .lines()
            .filter(|l| l.contains(&format!("GET /logs/{name}/{version}/linux{q} 200")))
            .count()
    };
    let log = svc.log();
    assert!(
        crate::common::wait_until(Duration::from_secs(5), || page_fetches("?tail=200") > 0),
        "{log}"
    );
    assert_eq!(page_fetches(""), 0, "{log}");
    browser.screenshot(&shot_path("build-page-long-log.png"));
}
