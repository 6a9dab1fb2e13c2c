//! Hostile input against the real `hone-build` binary (SPEC 2 and 7).
//!
//! One table of bad requests ([`cases`]) runs against ONE service (embedded
//! store, UPLOAD_SECRET set, MAX_BODY_BYTES = 64 KiB, READ_TIMEOUT_SECS = 3)
//! whose hub is a perry-hub-sim that never calls back, so the jobs created
//! first (`good-plugin` 1.0.0 for linux and macos) stay `queued`. Every case
//! is sent over raw TCP and checked for:
//!
//! - its status (the first listed; the others are tolerated alternatives,
//!   `0` meaning "connection closed without an answer"), and for the first
//!   status the SPEC 2 error body `{"error","code"}`: code, and a substring
//!   of the message; `Allow` on 405; where RFC 9112 requires it, that the
//!   connection is closed after the answer;
//! - no secret (UPLOAD_SECRET, callback tokens) in the answer;
//! - `/health` still 200 and the process still running;
//! - the database unchanged (every row of `buildJobs`, `plugins` and
//!   `pluginVersions`, read from the SQLite file under DATA_DIR);
//! - the working directory unchanged: nothing new or modified outside
//!   `data/`, `uploads/`, `packages/`, and no file changed inside them.
//!
//! After the table: no file named after the probe string (`pwned…`, used in
//! every traversal/shell payload) anywhere under the system temp dir, and no
//! secret in the service's log. A compact table of results is printed.
//!
//! Targeted tests outside the table (each on its own service):
//! - a complete request after the declared length is judged on its own
//!   credentials and creates nothing;
//! - 200 garbage request lines in a row leave the service healthy;
//! - clients trickling headers do not slow `/health` down.
//!
//! Regression tests for defects this suite found (fixed in
//! vendor/tiny_http, see its HONE-PATCH.md, and in src/):
//! - [`body_past_the_drain_limit_is_not_executed`] — bytes inside a declared
//!   body past the drain limit must not run as a request;
//! - [`ambiguous_framing_does_not_run_the_hidden_request`] — invalid or
//!   duplicate Content-Length, CL + TE: 400 and the connection closed;
//! - [`truncated_bodies_are_not_stored`] — bodies cut short are refused;
//! - [`http2_request_lines_are_answered_and_leak_nothing`] — `HTTP/2.0`
//!   request lines are answered 505 and closed (they used to deadlock);
//! - [`slow_header_client_is_cut_off`] — a request head has a deadline;
//! - [`unread_slow_bodies_do_not_pin_the_body_workers`] — the drain of an
//!   answered request's unread body is bounded in bytes and time;
//! - [`access_log_lines_cannot_be_forged`] — control characters escaped.

use crate::common;

use crate::fixtures::{Fill, chunked, tarball};
use base64::Engine;
use common::{
    Answer, Service, Sim, Wire, exchange, http, random_hex, read_until, response_complete,
    sqlite_rows, wait_until,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

const SECRET: &str = "hostile-upload-S3cret-0f9a";
const MAX_BODY: u64 = 65536;
const READ_TIMEOUT_SECS: u64 = 3;
const NAME: &str = "good-plugin";
const VERSION: &str = "1.0.0";
/// Small bodies that pass the gzip check.
const FILL: Fill = Fill::Pattern { len: 200, step: 37 };

// ---------------------------------------------------------------------------
// Fixture: one service, one sim, two queued jobs
// ---------------------------------------------------------------------------

/// A job's callback, as the hub received it.
#[derive(Debug, Clone)]
struct Callback {
    id: String,
    token: String,
}

struct Fx {
    // Drop order: the service before the sim.
    svc: Service,
    sim: Sim,
    db: rusqlite::Connection,
    linux: Callback,
    macos: Callback,
    /// Unique probe string put in every traversal / shell payload.
    probe: String,
}

fn bearer() -> String {
    format!("Bearer {SECRET}")
}

/// Starts a sim (no callbacks) and a service with the secret and small
/// limits; `extra` adds/overrides configuration keys.
fn start_service(extra: &[(&str, &str)]) -> (Service, Sim) {
    let sim = Sim::start(&["--build-delay-ms", "600000"]);
    sim.set(json!({"never_callback": true}));
    let mut b = Service::builder()
        .set("UPLOAD_SECRET", SECRET)
        .set("MAX_BODY_BYTES", MAX_BODY.to_string())
        .set("READ_TIMEOUT_SECS", READ_TIMEOUT_SECS.to_string())
        .set("WORKERS", "4")
        .set("LOG_LEVEL", "info")
        .set("PERRY_HUB_LICENSE_KEY", "sim-license")
        .set("PERRY_HUB_URL", sim.url());
    for (k, v) in extra {
        b = b.set(k, *v);
    }
    (b.start(), sim)
}

/// Uploads `name` `version` for `platforms` with the secret; asserts 200.
fn upload_ok(svc: &Service, name: &str, version: &str, platforms: &str) -> Value {
    let r = http(
        "POST",
        &svc.url(&format!(
            "/upload?name={name}&version={version}&platforms={platforms}"
        )),
        &[("Authorization", &bearer())],
        Some(&tarball(name, FILL)),
    );
    assert_eq!(r.status, 200, "upload {name}: {}\n{}", r.text(), svc.log());
    r.json()
}

fn callback_of(sim: &Sim, name: &str, version: &str, platform: &str) -> Callback {
    let subs = sim.submissions();
    let s = subs
        .iter()
        .find(|s| {
            s["status"] == 200
                && s["manifest"]["app_name"] == name
                && s["manifest"]["version"] == version
                && s["manifest"]["targets"] == json!([platform])
        })
        .unwrap_or_else(|| panic!("no accepted submission of {name} {version} {platform}"));
    let url = s["artifact_upload_url"].as_str().expect("callback URL");
    let pq = &url[url.find("/artifact/").expect("callback path")..];
    let (path, token) = pq.split_once("?token=").expect("token in callback URL");
    Callback {
        id: path["/artifact/".len()..].to_string(),
        token: token.to_string(),
    }
}

fn open_db(svc: &Service) -> rusqlite::Connection {
    let path = svc.dir().join("data").join(common::SQLITE_FILE);
    let c =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c
}

fn fixture() -> Fx {
    let (svc, sim) = start_service(&[]);
    let v = upload_ok(&svc, NAME, VERSION, "linux,macos");
    for b in v["builds"].as_array().unwrap() {
        assert_eq!(b["status"], "queued", "{v}");
    }
    let linux = callback_of(&sim, NAME, VERSION, "linux");
    let macos = callback_of(&sim, NAME, VERSION, "macos");
    let db = open_db(&svc);
    Fx {
        svc,
        sim,
        db,
        linux,
        macos,
        probe: format!("pwned{}", &random_hex()[..10]),
    }
}

impl Fx {
    /// Replaces `{S}` (secret), `{JL}`/`{TL}` (linux job id/token),
    /// `{JM}`/`{TM}` (macos) and `{P}` (probe).
    fn subst(&self, s: &str) -> String {
        s.replace("{S}", SECRET)
            .replace("{JL}", &self.linux.id)
            .replace("{TLU}", &self.linux.token.to_ascii_uppercase())
            .replace("{TL}", &self.linux.token)
            .replace("{JM}", &self.macos.id)
            .replace("{TM}", &self.macos.token)
            .replace("{P}", &self.probe)
    }

    fn secrets(&self) -> [&str; 3] {
        [SECRET, &self.linux.token, &self.macos.token]
    }

    fn db_dump(&self) -> String {
        let mut out = String::new();
        for t in ["plugins", "pluginVersions", "buildJobs"] {
            for row in sqlite_rows(&self.db, &format!("SELECT * FROM {t} ORDER BY id")) {
                let _ = writeln!(out, "{t}: {row:?}");
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

/// Every entry under `root` (relative path → description), minus what the
/// service may legitimately change while refusing a request: the SQLite
/// files in `data/`, and directories inside `data/`, `uploads/`,
/// `packages/` (a temporary file's directory is created before its body is
/// read). Files inside those directories are kept: none may change.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let in_data_dirs = ["data/", "uploads/", "packages/"]
                .iter()
                .any(|d| rel.starts_with(d));
            if meta.is_dir() {
                if !in_data_dirs {
                    out.insert(rel, "dir".into());
                }
                walk(root, &p, out);
            } else {
                let name = e.file_name().to_string_lossy().into_owned();
                if rel.starts_with("data/") && name.starts_with(common::SQLITE_FILE) {
                    continue;
                }
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                out.insert(rel, format!("{} bytes, mtime {mtime}", meta.len()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn tree_diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let mut d = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => d.push(format!("removed {k}")),
            Some(w) if w != v => d.push(format!("changed {k}: {v} -> {w}")),
            _ => {}
        }
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        d.push(format!("new {k}"));
    }
    d
}

/// Paths under `root` (at most `depth` levels) whose name contains `needle`.
fn find_named(root: &Path, needle: &str, depth: u32) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir(root) else {
        return found;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().contains(needle) {
            found.push(p.clone());
        }
        if depth > 0 && e.file_type().is_ok_and(|t| t.is_dir() && !t.is_symlink()) {
            found.extend(find_named(&p, needle, depth - 1));
        }
    }
    found
}

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

enum Body {
    /// No body and no Content-Length (unless a header gives one).
    None,
    /// A body with a correct Content-Length added.
    Sized(Vec<u8>),
    /// Bytes after the head, framed only by the case's own headers.
    Framed(Vec<u8>),
    /// The whole request, verbatim (placeholders replaced when UTF-8).
    Verbatim(Vec<u8>),
}

struct Case {
    group: &'static str,
    name: String,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Body,
    wire: Wire,
    /// Expected status first; the others are tolerated (0: closed, no answer).
    status: Vec<u16>,
    code: Option<&'static str>,
    msg: Option<String>,
    allow: Option<&'static str>,
    /// The server must close the connection after answering.
    must_close: bool,
    /// Keep the connection open (no `Connection: close`), and read what
    /// follows the first answer for a while.
    keep_alive: bool,
    /// How long to wait for the first answer (default: by `wire`).
    timeout: Option<Duration>,
}

fn case(group: &'static str, name: impl Into<String>, method: &str, target: &str) -> Case {
    Case {
        group,
        name: name.into(),
        method: method.into(),
        target: target.into(),
        headers: Vec::new(),
        body: Body::None,
        wire: Wire::Normal,
        status: vec![],
        code: None,
        msg: None,
        allow: None,
        must_close: false,
        keep_alive: false,
        timeout: None,
    }
}

impl Case {
    fn h(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    fn auth(self) -> Self {
        self.h("Authorization", "Bearer {S}")
    }
    fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Sized(b.into());
        self
    }
    fn framed(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Framed(b.into());
        self
    }
    fn verbatim(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Verbatim(b.into());
        self
    }
    fn wire(mut self, w: Wire) -> Self {
        self.wire = w;
        self
    }
    fn expect(mut self, status: u16, code: &'static str, msg: &str) -> Self {
        self.status = vec![status];
        self.code = Some(code);
        self.msg = Some(msg.into());
        self
    }
    /// Only a status (answers from the HTTP layer have no JSON body).
    fn status(mut self, status: u16) -> Self {
        self.status = vec![status];
        self
    }
    fn or(mut self, alternatives: &[u16]) -> Self {
        self.status.extend_from_slice(alternatives);
        self
    }
    fn allow(mut self, a: &'static str) -> Self {
        self.allow = Some(a);
        self
    }
    fn must_close(mut self) -> Self {
        self.must_close = true;
        self.keep_alive = true;
        self
    }
    fn keep_alive(mut self) -> Self {
        self.keep_alive = true;
        self
    }
    fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    fn bytes(&self, fx: &Fx) -> Vec<u8> {
        if let Body::Verbatim(b) = &self.body {
            return match std::str::from_utf8(b) {
                Ok(s) => fx.subst(s).into_bytes(),
                Err(_) => b.clone(),
            };
        }
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\n",
            self.method,
            fx.subst(&self.target)
        );
        if !self.keep_alive {
            head.push_str("Connection: close\r\n");
        }
        for (k, v) in &self.headers {
            let _ = write!(head, "{k}: {}\r\n", fx.subst(v));
        }
        let body: &[u8] = match &self.body {
            Body::Sized(b) => {
                let _ = write!(head, "Content-Length: {}\r\n", b.len());
                b
            }
            Body::Framed(b) => b,
            Body::None | Body::Verbatim(_) => &[],
        };
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        out
    }
}

/// Shorthands for upload targets.
fn up(q: &str) -> String {
    format!("/upload?{q}")
}
fn fu(name: &str) -> String {
    up(&format!("name={name}&version=1.0.0&platforms=linux"))
}
fn up_v(name_q: &str) -> String {
    up(&format!("name={name_q}&version=1.0.0&platforms=linux"))
}
fn up_n(version_q: &str) -> String {
    up(&format!(
        "name=x-plugin&version={version_q}&platforms=linux"
    ))
}
fn up_e(extra: &str) -> String {
    if extra.starts_with("platforms=") {
        up(&format!("name=x-plugin&version=1.0.0&{extra}"))
    } else {
        up(&format!(
            "name=x-plugin&version=1.0.0&platforms=linux&{extra}"
        ))
    }
}

fn cases() -> Vec<Case> {
    let tar = tarball("hostile", FILL);
    let mut v: Vec<Case> = Vec::new();
    let name_bad = |label: &str, q: &str, msg: &str| {
        case("name", format!("upload name {label}"), "POST", &up_v(q))
            .auth()
            .body(tar.clone())
            .expect(400, "BAD_REQUEST", msg)
    };

    // --- Traversal, shell metacharacters, bad encodings in `name` ----------
    v.push(name_bad("../", "../../{P}", "name may contain only"));
    v.push(name_bad("..%2F", "..%2F..%2Ftmp%2F{P}", "found '/'"));
    v.push(name_bad("%2e%2e%2f", "%2e%2e%2f%2e%2e%2f{P}", "found '/'"));
    v.push(name_bad(";", "a;touch%20{P}", "found ';'"));
    v.push(name_bad("|", "a|touch%20{P}", "found '|'"));
    v.push(name_bad("$(id)", "$(touch%20/tmp/{P})", "found '$'"));
    v.push(name_bad("backticks", "`touch%20/tmp/{P}`", "found '`'"));
    v.push(name_bad("&&", "a%26%26touch%20{P}", "found '&'"));
    v.push(name_bad("space", "a%20{P}", "found ' '"));
    v.push(name_bad("plus=space", "a+{P}", "found ' '"));
    v.push(name_bad("NUL", "a%00{P}", "found '\\0'"));
    v.push(name_bad(
        "overlong %C0%AE",
        "%C0%AE%C0%AE%2F{P}",
        "'name' is not valid UTF-8",
    ));
    v.push(name_bad(
        "overlong %E0%80%AE",
        "%E0%80%AE%E0%80%AE",
        "'name' is not valid UTF-8",
    ));
    v.push(name_bad("lone %FF", "a%FF", "'name' is not valid UTF-8"));
    v.push(name_bad("129 chars", &"n".repeat(129), "at most 128"));
    v.push(name_bad(
        "fullwidth ．．／",
        "%EF%BC%8E%EF%BC%8E%EF%BC%8F{P}",
        "name may contain only",
    ));
    v.push(name_bad(
        "zero-width space",
        "good-plugin%E2%80%8B",
        "name may contain only",
    ));
    v.push(name_bad(
        "cyrillic о lookalike",
        "g%D0%BEod-plugin",
        "name may contain only",
    ));
    v.push(name_bad(".hidden", ".{P}", "name must not start"));
    v.push(name_bad("empty", "", "name is required"));

    // --- `version` ---------------------------------------------------------
    let version_bad = |label: &str, q: &str, msg: &str| {
        case(
            "version",
            format!("upload version {label}"),
            "POST",
            &up_n(q),
        )
        .auth()
        .body(tar.clone())
        .expect(400, "BAD_REQUEST", msg)
    };
    v.push(version_bad(
        "../",
        "../../../{P}",
        "version may contain only",
    ));
    v.push(version_bad(
        "..%2F",
        "1.0.0%2F..%2F..%2F{P}",
        "version may contain only",
    ));
    v.push(version_bad(";", "1.0.0;touch%20{P}", "found ';'"));
    v.push(version_bad("$(id)", "$(id)", "found '$'"));
    v.push(version_bad(
        "overlong %C0%AE",
        "%C0%AE%C0%AE",
        "'version' is not valid UTF-8",
    ));
    v.push(version_bad("a..b", "1..0", "must not contain '..'"));
    v.push(version_bad("129 chars", &"1".repeat(129), "at most 128"));
    v.push(version_bad(
        "fullwidth digit",
        "%EF%BC%91.0.0",
        "version may contain only",
    ));

    // --- `entry`, `platforms`, `displayName`, `description` ----------------
    let field_bad = |group: &'static str, label: &str, q: &str, msg: &str| {
        case(group, format!("upload {label}"), "POST", &up_e(q))
            .auth()
            .body(tar.clone())
            .expect(400, "BAD_REQUEST", msg)
    };
    v.push(field_bad(
        "entry",
        "entry ../",
        "entry=../../{P}/x.ts",
        "entry must not contain a '..' segment",
    ));
    v.push(field_bad(
        "entry",
        "entry absolute",
        "entry=/etc/passwd",
        "entry must be a relative path",
    ));
    v.push(field_bad(
        "entry",
        "entry ..%2F",
        "entry=src%2F..%2F..%2F{P}",
        "entry must not contain a '..' segment",
    ));
    v.push(field_bad(
        "entry",
        "entry $(id)",
        "entry=src/$(touch%20{P}).ts",
        "entry may contain only",
    ));
    v.push(field_bad(
        "entry",
        "entry backslash",
        "entry=..%5C..%5C{P}",
        "entry may contain only",
    ));
    v.push(field_bad(
        "entry",
        "entry NUL",
        "entry=src/index.ts%00.sh",
        "entry may contain only",
    ));
    v.push(field_bad(
        "entry",
        "entry 257 chars",
        &format!("entry={}", "e".repeat(257)),
        "at most 256",
    ));
    v.push(field_bad(
        "entry",
        "entry overlong %C0%AE",
        "entry=%C0%AE%C0%AE/x",
        "'entry' is not valid UTF-8",
    ));
    v.push(field_bad(
        "platform",
        "platform ;",
        "platforms=linux;touch%20{P}",
        "unknown platform",
    ));
    v.push(field_bad(
        "platform",
        "platform ../",
        "platforms=../../{P}",
        "unknown platform",
    ));
    v.push(field_bad(
        "platform",
        "platform NUL",
        "platforms=linux%00",
        "unknown platform",
    ));
    v.push(field_bad(
        "platform",
        "platform fullwidth",
        "platforms=%EF%BD%8Cinux",
        "unknown platform",
    ));
    v.push(field_bad(
        "platform",
        "platform only commas",
        "platforms=,,",
        "no platform given",
    ));
    v.push(field_bad(
        "platform",
        "platform overlong UTF-8",
        "platforms=%C0%AE",
        "'platforms' is not valid UTF-8",
    ));
    v.push(field_bad(
        "text",
        "displayName control char",
        "displayName=a%07b",
        "displayName must not contain control",
    ));
    v.push(field_bad(
        "text",
        "displayName 257 chars",
        &format!("displayName={}", "d".repeat(257)),
        "displayName must be at most 256",
    ));
    v.push(field_bad(
        "text",
        "description 4097 chars",
        &format!("description={}", "d".repeat(4097)),
        "description must be at most 4096",
    ));
    v.push(field_bad(
        "text",
        "description invalid UTF-8",
        "description=%FF%FE",
        "'description' is not valid UTF-8",
    ));

    // --- Duplicate and conflicting query parameters -------------------------
    let dup = |label: &str, target: &str, msg: &str| {
        case("dup-query", label.to_string(), "POST", target)
            .auth()
            .body(tar.clone())
            .expect(400, "BAD_REQUEST", msg)
    };
    v.push(dup(
        "name twice",
        "/upload?name=a&name=b&version=1.0.0&platforms=linux",
        "'name' is given more than once",
    ));
    v.push(dup(
        "encoded key duplicate",
        "/upload?name=a&na%6De=a&version=1.0.0&platforms=linux",
        "'name' is given more than once",
    ));
    v.push(dup(
        "token twice (right, wrong)",
        "/upload?name=a&version=1.0.0&platforms=linux&token={S}&token=x",
        "'token' is given more than once",
    ));
    v.push(dup(
        "token + encoded token",
        "/upload?name=a&version=1.0.0&platforms=linux&token=x&%74oken={S}",
        "'token' is given more than once",
    ));
    v.push(dup(
        "version twice, conflicting",
        "/upload?name=a&version=1.0.0&version=..%2F..&platforms=linux",
        "'version' is given more than once",
    ));
    v.push(dup(
        "platforms twice",
        "/upload?name=a&version=1.0.0&platforms=linux&platforms=macos",
        "'platforms' is given more than once",
    ));
    v.push(dup(
        "key with invalid UTF-8",
        "/upload?name=a&version=1.0.0&%C0%AE=1",
        "query parameter name is not valid UTF-8",
    ));
    v.push(
        case(
            "dup-query",
            "artifact token twice",
            "POST",
            "/artifact/{JL}?token={TL}&token={TL}",
        )
        .body("aGVsbG8=")
        .expect(400, "BAD_REQUEST", "'token' is given more than once"),
    );

    // --- Upload authentication -----------------------------------------------
    let ok_target = "/upload?name=auth-plugin&version=1.0.0&platforms=linux";
    let auth_case = |label: &str, target: &str| {
        case("auth", label.to_string(), "POST", target).body(tar.clone())
    };
    v.push(auth_case("upload without secret", ok_target).expect(
        401,
        "UNAUTHORIZED",
        "missing upload secret",
    ));
    v.push(
        auth_case("upload wrong Bearer", ok_target)
            .h("Authorization", "Bearer wrong")
            .expect(401, "UNAUTHORIZED", "invalid upload secret"),
    );
    v.push(
        auth_case("upload secret + suffix", ok_target)
            .h("Authorization", "Bearer {S}x")
            .expect(401, "UNAUTHORIZED", "invalid upload secret"),
    );
    v.push(
        auth_case("upload secret prefix only", ok_target)
            .h(
                "Authorization",
                &format!("Bearer {}", &SECRET[..SECRET.len() - 1]),
            )
            .expect(401, "UNAUTHORIZED", "invalid upload secret"),
    );
    v.push(
        auth_case("upload Bearer secret + NUL", ok_target)
            .h("Authorization", "Bearer {S}\0")
            .expect(401, "UNAUTHORIZED", "invalid upload secret"),
    );
    v.push(
        auth_case("upload wrong ?token=", &format!("{ok_target}&token=wrong")).expect(
            401,
            "UNAUTHORIZED",
            "invalid upload secret",
        ),
    );
    v.push(
        auth_case("upload empty ?token=", &format!("{ok_target}&token=")).expect(
            401,
            "UNAUTHORIZED",
            "invalid upload secret",
        ),
    );
    v.push(
        auth_case("upload Basic with secret", ok_target)
            .h(
                "Authorization",
                &format!("Basic {}", b64(format!("admin:{SECRET}").as_bytes())),
            )
            .expect(401, "UNAUTHORIZED", "missing upload secret"),
    );
    v.push(
        auth_case("upload 'Bearer' empty value", ok_target)
            .h("Authorization", "Bearer ")
            .expect(401, "UNAUTHORIZED", "upload secret"),
    );
    v.push(
        auth_case("upload secret w/o scheme", ok_target)
            .h("Authorization", "{S}")
            .expect(401, "UNAUTHORIZED", "missing upload secret"),
    );
    v.push(
        auth_case("upload callback token as secret", ok_target)
            .h("Authorization", "Bearer {TL}")
            .expect(401, "UNAUTHORIZED", "invalid upload secret"),
    );
    v.push(
        auth_case("upload 64 KiB Bearer", ok_target)
            .h(
                "Authorization",
                &format!("Bearer {}", "x".repeat(64 * 1024)),
            )
            .expect(401, "UNAUTHORIZED", "invalid upload secret")
            .or(&[400, 431, 0]),
    );

    // --- Artifact authentication and callback ids ----------------------------
    let art = |label: &str, target: &str| {
        case("artifact-auth", label.to_string(), "POST", target)
            .h("Content-Type", "text/plain")
            .body("aGVsbG8=")
    };
    v.push(art("artifact no token", "/artifact/{JL}").expect(
        401,
        "UNAUTHORIZED",
        "missing callback token",
    ));
    v.push(
        art("artifact wrong token", "/artifact/{JL}?token=wrong").expect(
            401,
            "UNAUTHORIZED",
            "invalid callback token",
        ),
    );
    v.push(art("artifact empty token", "/artifact/{JL}?token=").expect(
        401,
        "UNAUTHORIZED",
        "invalid callback token",
    ));
    v.push(
        art("artifact other job's token", "/artifact/{JL}?token={TM}").expect(
            401,
            "UNAUTHORIZED",
            "invalid callback token",
        ),
    );
    v.push(
        art(
            "artifact UPLOAD_SECRET as token",
            "/artifact/{JL}?token={S}",
        )
        .expect(401, "UNAUTHORIZED", "invalid callback token"),
    );
    v.push(
        art("artifact secret as Bearer only", "/artifact/{JL}")
            .h("Authorization", "Bearer {S}")
            .expect(401, "UNAUTHORIZED", "missing callback token"),
    );
    v.push(
        art("artifact token, case changed", "/artifact/{JL}?token={TLU}").expect(
            401,
            "UNAUTHORIZED",
            "invalid callback token",
        ),
    );
    v.push(
        art(
            "legacy form, wrong secret",
            "/artifact/good-plugin-1.0.0-linux?token=wrong",
        )
        .expect(401, "UNAUTHORIZED", "invalid callback token"),
    );
    v.push(
        art(
            "legacy form, job token",
            "/artifact/good-plugin-1.0.0-linux?token={TL}",
        )
        .expect(401, "UNAUTHORIZED", "invalid callback token"),
    );
    v.push(
        art("legacy form, no token", "/artifact/good-plugin-1.0.0-linux").expect(
            401,
            "UNAUTHORIZED",
            "missing callback token",
        ),
    );
    v.push(
        art(
            "legacy form, unknown job",
            "/artifact/good-plugin-9.9.9-linux?token={S}",
        )
        .expect(404, "NOT_FOUND", "unknown build job"),
    );
    v.push(
        art("numeric id unknown", "/artifact/987654?token={TL}").expect(
            404,
            "NOT_FOUND",
            "unknown build job",
        ),
    );
    v.push(art("id 0", "/artifact/0?token={TL}").expect(404, "NOT_FOUND", "unknown build job"));
    v.push(
        art(
            "id > i64",
            "/artifact/99999999999999999999999999?token={TL}",
        )
        .expect(404, "NOT_FOUND", "unknown build job"),
    );
    v.push(
        art("id i64::MAX", "/artifact/9223372036854775807?token={TL}").expect(
            404,
            "NOT_FOUND",
            "unknown build job",
        ),
    );
    v.push(art("id -1", "/artifact/-1?token={TL}").expect(
        401,
        "UNAUTHORIZED",
        "invalid callback token",
    ));
    let cb_bad = |label: &str, target: &str, msg: &str| {
        case("callback-id", label.to_string(), "POST", target)
            .h("Content-Type", "text/plain")
            .body("aGVsbG8=")
            .expect(400, "BAD_REQUEST", msg)
    };
    let only = "callback id may contain only";
    v.push(cb_bad(
        "id ..%2F",
        "/artifact/..%2F..%2F{P}?token={S}",
        only,
    ));
    v.push(cb_bad(
        "id %2e%2e%2f",
        "/artifact/%2e%2e%2f{P}?token={S}",
        only,
    ));
    v.push(cb_bad(
        "id ;",
        "/artifact/{JL};touch%20{P}?token={TL}",
        only,
    ));
    v.push(cb_bad("id |", "/artifact/{JL}|id?token={TL}", only));
    v.push(cb_bad(
        "id $(id)",
        "/artifact/$(touch%20{P})?token={S}",
        only,
    ));
    v.push(cb_bad("id backticks", "/artifact/`id`?token={S}", only));
    v.push(cb_bad("id &&", "/artifact/{JL}%26%26id?token={TL}", only));
    v.push(cb_bad("id space", "/artifact/{JL}%20?token={TL}", only));
    v.push(cb_bad("id NUL", "/artifact/{JL}%00?token={TL}", only));
    v.push(cb_bad(
        "id overlong %C0%AE",
        "/artifact/%C0%AE%C0%AE?token={S}",
        "path segment is not valid UTF-8",
    ));
    v.push(cb_bad(
        "id overlong %E0%80%AE",
        "/artifact/%E0%80%AE?token={S}",
        "path segment is not valid UTF-8",
    ));
    v.push(cb_bad(
        "id 301 chars",
        &format!("/artifact/{}?token={{S}}", "a".repeat(301)),
        only,
    ));
    v.push(cb_bad(
        "id fullwidth digit",
        "/artifact/%EF%BC%91?token={TL}",
        only,
    ));
    v.push(cb_bad(
        "legacy id with traversal",
        "/artifact/good-plugin-1.0.0-..%2F..%2Flinux?token={S}",
        only,
    ));
    v.push(cb_bad(
        "legacy id, SQL quote",
        "/artifact/good-plugin'%20OR%20'1'='1?token={S}",
        only,
    ));
    v.push(
        case(
            "callback-id",
            "legacy id '..'",
            "POST",
            "/artifact/..?token={S}",
        )
        .body("aGVsbG8=")
        .expect(404, "NOT_FOUND", "unknown build job"),
    );

    // --- /status ---------------------------------------------------------
    let st = |label: &str, target: &str, msg: &str| {
        case("status", label.to_string(), "GET", target).expect(400, "BAD_REQUEST", msg)
    };
    v.push(st(
        "status ..%2F name",
        "/status/..%2F..%2Fetc/passwd",
        "name may contain only",
    ));
    v.push(st(
        "status %2e%2e name",
        "/status/%2e%2e/%2e%2e",
        "name must not start",
    ));
    v.push(st(
        "status ..%2F version",
        "/status/good-plugin/..%2F{P}",
        "version may contain only",
    ));
    v.push(st(
        "status ; version",
        "/status/good-plugin/1.0.0;id",
        "found ';'",
    ));
    v.push(st("status $(id) name", "/status/$(id)/1.0.0", "found '$'"));
    v.push(st(
        "status NUL",
        "/status/good-plugin%00/1.0.0",
        "found '\\0'",
    ));
    v.push(st(
        "status overlong UTF-8",
        "/status/good-plugin/%C0%AE",
        "path segment is not valid UTF-8",
    ));
    v.push(st(
        "status 129-char name",
        &format!("/status/{}/1.0.0", "n".repeat(129)),
        "at most 128",
    ));
    v.push(st(
        "status fullwidth dot",
        "/status/good-plugin/1%EF%BC%8E0%EF%BC%8E0",
        "version may contain only",
    ));
    v.push(st(
        "status '+' is not a space",
        "/status/good+plugin/1.0.0",
        "found '+'",
    ));
    v.push(
        case(
            "status",
            "status raw ../ segments",
            "GET",
            "/status/../../health",
        )
        .expect(404, "NOT_FOUND", "no route")
        .or(&[400]),
    );
    v.push(
        case(
            "status",
            "status unknown version",
            "GET",
            "/status/good-plugin/9.9.9",
        )
        .expect(404, "NOT_FOUND", "no builds"),
    );

    // --- Bodies ------------------------------------------------------------
    let good_up = "/upload?name=body-plugin&version=1.0.0&platforms=linux";
    let body_case = |label: &str| case("body", label.to_string(), "POST", good_up).auth();
    v.push(
        body_case("upload invalid base64")
            .body("!!!! not base64 ****")
            .expect(400, "BAD_REQUEST", "not valid base64"),
    );
    v.push(
        body_case("upload base64 with NUL")
            .body("H4sI\0AAAA")
            .expect(400, "BAD_REQUEST", "not valid base64"),
    );
    v.push(
        body_case("upload base64 of non-gzip")
            .body(b64(b"#!/bin/sh\ntouch /tmp/pwned\n"))
            .expect(400, "BAD_REQUEST", "not a gzip file"),
    );
    v.push(
        body_case("upload raw non-gzip binary")
            .body(vec![0x7f, b'E', b'L', b'F', 0, 1, 2])
            .expect(400, "BAD_REQUEST", "not valid base64"),
    );
    v.push(
        body_case("upload 1 byte 0x1f")
            .body(vec![0x1f])
            .expect(400, "BAD_REQUEST", "base64"),
    );
    v.push(
        body_case("upload empty body (CL 0)")
            .body(Vec::new())
            .expect(400, "BAD_REQUEST", "body is empty"),
    );
    v.push(body_case("upload no body at all").expect(400, "BAD_REQUEST", "body is empty"));
    v.push(
        body_case("upload whitespace-only base64")
            .body(" \r\n\t \r\n")
            .expect(400, "BAD_REQUEST", "empty after base64"),
    );
    v.push(
        case(
            "body",
            "re-upload while building",
            "POST",
            "/upload?name=good-plugin&version=1.0.0&platforms=linux,macos",
        )
        .auth()
        .body(tar.clone())
        .expect(409, "BUILD_IN_PROGRESS", "still being built"),
    );
    let art_ok = |label: &str| {
        case(
            "artifact-body",
            label.to_string(),
            "POST",
            "/artifact/{JL}?token={TL}",
        )
        .h("Content-Type", "text/plain")
    };
    v.push(art_ok("artifact empty body").body(Vec::new()).expect(
        400,
        "BAD_REQUEST",
        "artifact body is empty",
    ));
    v.push(
        art_ok("artifact invalid base64")
            .body("@@@@ not base64")
            .expect(400, "BAD_REQUEST", "not valid base64"),
    );
    v.push(
        art_ok("artifact sha256 mismatch")
            .h("x-artifact-sha256", &"0".repeat(64))
            .body(b64(b"binary"))
            .expect(422, "CHECKSUM_MISMATCH", "x-artifact-sha256"),
    );
    v.push(
        art_ok("artifact sha256 header is a path")
            .h("x-artifact-sha256", "../../../{P}")
            .h("x-artifact-name", "../../{P}.bin")
            .h("x-artifact-target", "../../{P}")
            .body(b64(b"binary"))
            .expect(422, "CHECKSUM_MISMATCH", "x-artifact-sha256"),
    );
    v.push(
        case(
            "artifact-body",
            "artifact raw, sha256 mismatch",
            "POST",
            "/artifact/{JL}?token={TL}",
        )
        .h("Content-Type", "application/octet-stream")
        .h("x-artifact-sha256", &"f".repeat(64))
        .body(vec![0u8, 1, 2, 3])
        .expect(422, "CHECKSUM_MISMATCH", "x-artifact-sha256"),
    );
    v.push(
        case(
            "artifact-body",
            "legacy form, right secret, empty body",
            "POST",
            "/artifact/good-plugin-1.0.0-linux?token={S}",
        )
        .body(Vec::new())
        .expect(400, "BAD_REQUEST", "artifact body is empty"),
    );

    // --- Framing: lengths, chunked, early end --------------------------------
    v.push(
        case(
            "framing",
            "upload CL above MAX_BODY_BYTES",
            "POST",
            &fu("frame1-plugin"),
        )
        .auth()
        .h("Content-Length", "1000000")
        .framed(b"H4sI".to_vec())
        .expect(413, "PAYLOAD_TOO_LARGE", "MAX_BODY_BYTES"),
    );
    v.push(
        case(
            "framing",
            "upload CL above max, no secret",
            "POST",
            &fu("frame2-plugin"),
        )
        .h("Content-Length", "1000000")
        .framed(b"H4sI".to_vec())
        .expect(401, "UNAUTHORIZED", "missing upload secret"),
    );
    v.push(
        case(
            "framing",
            "artifact CL above MAX_BODY_BYTES",
            "POST",
            "/artifact/{JL}?token={TL}",
        )
        .h("Content-Length", "70000")
        .framed(b"aGVsbG8=".to_vec())
        .expect(413, "PAYLOAD_TOO_LARGE", "MAX_BODY_BYTES"),
    );
    v.push(
        case("framing", "upload CL > u64", "POST", &fu("frame3-plugin"))
            .auth()
            .h("Content-Length", "99999999999999999999999")
            .status(400)
            .or(&[413, 0])
            .must_close(),
    );
    v.push(
        case(
            "framing",
            "upload CL non-numeric",
            "POST",
            &fu("frame4-plugin"),
        )
        .auth()
        .h("Content-Length", "abc")
        .status(400)
        .or(&[0])
        .must_close(),
    );
    v.push(
        case(
            "framing",
            "upload CL negative",
            "POST",
            &fu("frame5-plugin"),
        )
        .auth()
        .h("Content-Length", "-1")
        .status(400)
        .or(&[0])
        .must_close(),
    );
    v.push(
        case(
            "framing",
            "upload CL twice, differing",
            "POST",
            &fu("frame6-plugin"),
        )
        .auth()
        .h("Content-Length", "4")
        .h("Content-Length", "9")
        .framed(b"H4sI".to_vec())
        .status(400)
        .or(&[0])
        .must_close(),
    );
    v.push(
        case(
            "framing",
            "upload CL + TE chunked",
            "POST",
            &fu("frame7-plugin"),
        )
        .auth()
        .h("Content-Length", "5")
        .h("Transfer-Encoding", "chunked")
        .framed(b"0\r\n\r\n".to_vec())
        .status(400)
        .or(&[0])
        .must_close(),
    );
    v.push(
        case(
            "framing",
            "upload chunked past the limit",
            "POST",
            &fu("frame8-plugin"),
        )
        .auth()
        .h("Transfer-Encoding", "chunked")
        .framed(chunked(&vec![b'A'; MAX_BODY as usize + 40_000], 8192))
        .expect(413, "PAYLOAD_TOO_LARGE", "MAX_BODY_BYTES"),
    );
    v.push(
        case(
            "framing",
            "upload chunked, bad chunk size",
            "POST",
            &fu("frame9-plugin"),
        )
        .auth()
        .h("Transfer-Encoding", "chunked")
        .framed(b"zz\r\nH4sI\r\n0\r\n\r\n".to_vec())
        .expect(400, "BAD_REQUEST", "")
        .or(&[0]),
    );
    v.push(
        case(
            "framing",
            "upload TE gzip (not chunked)",
            "POST",
            &fu("frame10-plugin"),
        )
        .auth()
        .h("Transfer-Encoding", "gzip")
        .framed(b"H4sIAAAA".to_vec())
        .wire(Wire::HalfClose)
        .status(501)
        .or(&[400, 0]),
    );
    v.push(
        case(
            "framing",
            "upload chunked, ends early (FIN)",
            "POST",
            &fu("frame11-plugin"),
        )
        .auth()
        .h("Transfer-Encoding", "chunked")
        .framed([b"1000\r\n".to_vec(), tarball("chunk-fin", FILL)].concat())
        .wire(Wire::HalfClose)
        .expect(400, "BAD_REQUEST", "")
        .or(&[0]),
    );
    v.push(
        case(
            "framing",
            "upload CL <= 1024, body ends early (FIN)",
            "POST",
            &fu("frame12-plugin"),
        )
        .auth()
        .h("Content-Length", "1000")
        .framed(tarball("short", FILL)[..20].to_vec())
        .wire(Wire::HalfClose)
        .status(400)
        .or(&[0]),
    );
    v.push(
        case(
            "framing",
            "upload body stalls (read timeout)",
            "POST",
            &fu("frame13-plugin"),
        )
        .auth()
        .h("Content-Length", "4096")
        .framed(vec![b'A'; 100])
        .wire(Wire::Stall)
        .expect(408, "REQUEST_TIMEOUT", "not received in time")
        .or(&[400, 0]),
    );
    v.push(
        case(
            "framing",
            "body longer than declared: garbage after",
            "POST",
            "/upload?name=a;b&version=1.0.0",
        )
        .auth()
        .h("Content-Length", "4")
        .framed(b"H4sI\x00\x01garbage garbage\r\n\r\n".to_vec())
        .keep_alive()
        .expect(400, "BAD_REQUEST", "found ';'"),
    );
    v.push(
        case(
            "framing",
            "body longer than declared: unauthenticated upload after",
            "POST",
            "/upload?name=a;b&version=1.0.0",
        )
        .auth()
        .h("Content-Length", "4")
        .framed(
            [
                b"H4sI".to_vec(),
                format!(
                    "POST /upload?name=extra-{{P}}&version=1.0.0&platforms=linux HTTP/1.1\r\n\
                     Host: x\r\nContent-Length: {}\r\n\r\n",
                    tar.len()
                )
                .into_bytes(),
                tar.clone(),
            ]
            .concat(),
        )
        .keep_alive()
        .expect(400, "BAD_REQUEST", "found ';'"),
    );
    // Bodies that end early: what arrived must not be taken for the whole.
    v.push(
        case(
            "framing",
            "upload CL 4096, 2000 bytes then FIN",
            "POST",
            "/upload?name=trunc-upload&version=1.0.0&platforms=linux",
        )
        .auth()
        .h("Content-Length", "4096")
        .framed({
            let mut t = tarball("trunc", FILL);
            t.resize(2000, 7);
            t
        })
        .wire(Wire::HalfClose)
        .expect(400, "BAD_REQUEST", "")
        .or(&[0]),
    );
    v.push(
        case(
            "framing",
            "artifact raw CL 8192, 3000 bytes then FIN",
            "POST",
            "/artifact/{JL}?token={TL}",
        )
        .h("Content-Type", "application/octet-stream")
        .h("Content-Length", "8192")
        .framed(vec![0x42u8; 3000])
        .wire(Wire::HalfClose)
        .expect(400, "BAD_REQUEST", "")
        .or(&[0]),
    );

    // --- Methods and routes -------------------------------------------------
    let m = |method: &str, target: &str, allow: &'static str| {
        case("method", format!("{method} {target}"), method, target)
            .expect(
                405,
                "METHOD_NOT_ALLOWED",
                &format!("method {method} is not allowed"),
            )
            .allow(allow)
    };
    v.push(m("GET", "/upload", "POST"));
    v.push(m("PUT", "/upload", "POST"));
    v.push(m("PATCH", "/upload", "POST"));
    v.push(m("OPTIONS", "/upload", "POST"));
    v.push(m("DELETE", "/upload", "POST"));
    v.push(m("GET", "/artifact/1", "POST"));
    v.push(m("PUT", "/artifact/1", "POST"));
    v.push(m("DELETE", "/artifact/{JL}", "POST"));
    v.push(m("DELETE", "/status/a/b", "GET"));
    v.push(m("POST", "/status/good-plugin/1.0.0", "GET"));
    v.push(m("PUT", "/status/good-plugin/1.0.0", "GET"));
    v.push(m("POST", "/health", "GET"));
    v.push(m("DELETE", "/health", "GET"));
    v.push(m("TRACE", "/health", "GET"));
    v.push(m("POST", "/metrics", "GET"));
    v.push(m("FOO", "/health", "GET"));
    v.push(m("get", "/health", "GET"));
    v.push(
        case("method", "HEAD /upload", "HEAD", "/upload")
            .status(405)
            .allow("POST"),
    );
    v.push(
        case("method", "POST /health with a body", "POST", "/health")
            .body(tar.clone())
            .expect(405, "METHOD_NOT_ALLOWED", "method POST is not allowed")
            .allow("GET"),
    );
    let nf = |target: &str| {
        case("route", format!("GET {target}"), "GET", target).expect(404, "NOT_FOUND", "no route")
    };
    v.push(nf("/nope"));
    v.push(nf("/"));
    v.push(nf("/health/"));
    v.push(nf("/HEALTH"));
    v.push(nf("//health"));
    v.push(nf("/health;id"));
    v.push(nf("/artifact/"));
    v.push(nf("/artifact"));
    v.push(nf("/status/good-plugin"));
    v.push(nf("/status/good-plugin/1.0.0/linux"));
    v.push(nf("/../../../etc/passwd"));
    v.push(nf("/%2e%2e/%2e%2e/etc/passwd"));
    v.push(nf("/upload/../health"));
    v.push(nf("*"));
    v.push(nf("/x%0d%0aSet-Cookie:%20pwned=1"));
    v.push(
        case(
            "route",
            "absolute-form target",
            "GET",
            "http://evil.example/nope",
        )
        .expect(404, "NOT_FOUND", "no route"),
    );
    v.push(
        case("route", "raw UTF-8 in path", "GET", "/st\u{0430}tus/a/b")
            .status(400)
            .or(&[404, 0]),
    );

    // --- Headers -----------------------------------------------------------
    v.push(
        case("headers", "64 KiB header value", "GET", "/health")
            .h("X-Big", &"v".repeat(64 * 1024))
            .status(200)
            .or(&[400, 431, 0]),
    );
    v.push({
        let mut c = case("headers", "2000 headers", "GET", "/health")
            .status(200)
            .or(&[400, 431, 0]);
        for i in 0..2000 {
            c = c.h(&format!("X-H{i}"), "x");
        }
        c
    });
    v.push(
        case("headers", "4 MiB header value", "GET", "/health")
            .h("X-Huge", &"h".repeat(4 << 20))
            .status(200)
            .or(&[400, 431, 0]),
    );
    v.push(
        case(
            "headers",
            "64 KiB request target",
            "GET",
            &format!("/{}", "p".repeat(64 * 1024)),
        )
        .expect(404, "NOT_FOUND", "no route")
        .or(&[400, 414, 431, 0]),
    );
    v.push(
        case("headers", "header without colon", "GET", "/health")
            .verbatim(b"GET /health HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n".to_vec())
            .status(400)
            .or(&[0]),
    );
    v.push(
        case("headers", "space before colon", "POST", good_up)
            .verbatim(
                b"POST /upload?name=a&version=1 HTTP/1.1\r\nHost: x\r\nContent-Length : 4\r\n\r\nH4sI"
                    .to_vec(),
            )
            .status(400)
            .or(&[0]),
    );
    v.push(
        case("headers", "non-ASCII header bytes", "GET", "/health")
            .verbatim(b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: \xff\xfe\xc0\xae\r\n\r\n".to_vec())
            .status(400)
            .or(&[0]),
    );
    v.push(
        case("headers", "obsolete line folding", "GET", "/health")
            .verbatim(b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n folded\r\n\r\n".to_vec())
            .status(400)
            .or(&[200, 0]),
    );
    v.push(
        case("headers", "unknown Expect", "POST", good_up)
            .auth()
            .h("Expect", "200-ok")
            .body(tar.clone())
            .status(417)
            .or(&[400, 0]),
    );
    v.push(
        case("headers", "HTTP/2.0 request line", "GET", "/health")
            .verbatim(b"GET /health HTTP/2.0\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec())
            .status(505)
            .or(&[400, 0])
            .timeout(Duration::from_secs(READ_TIMEOUT_SECS + 2)),
    );
    v
}

/// Standard base64 of `data`.
fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

// ---------------------------------------------------------------------------
// Running the table
// ---------------------------------------------------------------------------

struct Outcome {
    status: u16,
    problems: Vec<String>,
    took: Duration,
}

fn run_case(fx: &mut Fx, c: &Case) -> Outcome {
    let start = Instant::now();
    let files_before = tree(fx.svc.dir());
    let db_before = fx.db_dump();
    let linger = if c.keep_alive {
        Duration::from_millis(1500)
    } else {
        Duration::ZERO
    };
    let timeout = c.timeout.unwrap_or(match c.wire {
        Wire::Stall => Duration::from_secs(READ_TIMEOUT_SECS * 3 + 2),
        _ => Duration::from_secs(8),
    });
    let a = exchange(fx.svc.addr(), &c.bytes(fx), c.wire, timeout, linger);
    let mut p: Vec<String> = Vec::new();

    if !c.status.contains(&a.status) {
        p.push(format!(
            "status {} not in {:?}; got: {}",
            a.status,
            c.status,
            trunc(&a.raw, 400)
        ));
    } else if a.status == c.status[0]
        && a.status != 0
        && c.method != "HEAD"
        && let Some(code) = c.code
    {
        p.extend(check_error_body(&a, code, c.msg.as_deref().unwrap_or("")));
    }
    if let Some(allow) = c.allow
        && a.status == 405
        && a.header("allow") != Some(allow)
    {
        p.push(format!("Allow {:?}, expected {allow:?}", a.header("allow")));
    }
    if a.status == 0 && !a.closed {
        p.push(format!(
            "no answer, and the connection still open after {timeout:?}"
        ));
    }
    if c.must_close && a.status != 0 && !a.closed {
        p.push("connection kept open after the answer (RFC 9112 6.3: must close)".into());
    }
    for s in fx.secrets() {
        if a.raw.contains(s) {
            p.push("a secret appears in the answer".into());
        }
    }

    // Requests pipelined after the first one finish before we compare.
    let health = wait_until(Duration::from_secs(10), || {
        common::try_http("GET", &fx.svc.url("/health"), &[], None).is_ok_and(|r| r.status == 200)
    });
    if !health {
        p.push("GET /health did not answer 200 afterwards".into());
    }
    if !fx.svc.is_running() {
        p.push("the service is no longer running".into());
    }
    let db_after = fx.db_dump();
    if db_after != db_before {
        p.push(format!(
            "database changed:\n--- before\n{db_before}--- after\n{db_after}"
        ));
    }
    let diff = tree_diff(&files_before, &tree(fx.svc.dir()));
    if !diff.is_empty() {
        p.push(format!("files changed: {diff:?}"));
    }
    let probes = find_named(fx.svc.dir(), &fx.probe, 8);
    if !probes.is_empty() {
        p.push(format!("probe files created: {probes:?}"));
    }
    Outcome {
        status: a.status,
        problems: p,
        took: start.elapsed(),
    }
}

/// SPEC 2 error body: JSON, exactly `error` and `code`, this code, a
/// message containing `msg`.
fn check_error_body(a: &Answer, code: &str, msg: &str) -> Vec<String> {
    let mut p = Vec::new();
    let ct = a.header("content-type").unwrap_or_default();
    if !ct.starts_with("application/json") {
        p.push(format!("Content-Type {ct:?}"));
    }
    match serde_json::from_str::<Value>(&a.body) {
        Ok(Value::Object(o)) => {
            if o.len() != 2 || !o.contains_key("error") || !o.contains_key("code") {
                p.push(format!("body is not exactly {{error, code}}: {}", a.body));
            }
            if o.get("code") != Some(&Value::from(code)) {
                p.push(format!("code {:?}, expected {code}", o.get("code")));
            }
            match o.get("error").and_then(Value::as_str) {
                Some(m) if m.contains(msg) && !m.is_empty() => {}
                other => p.push(format!("message {other:?} does not contain {msg:?}")),
            }
        }
        _ => p.push(format!(
            "body is not a JSON object: {}",
            trunc(&a.body, 300)
        )),
    }
    p
}

fn trunc(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.escape_debug().to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>().escape_debug())
    }
}

/// At most `n` characters of `s`, control characters escaped (for the table).
fn cut(s: &str, n: usize) -> String {
    let mut out: String = s
        .chars()
        .take(n)
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    if s.chars().count() > n {
        out.push('…');
    }
    out
}

/// Runs `cases` in order; returns the printed table and the failures.
fn run_table(fx: &mut Fx, cases: &[Case], first: usize) -> (String, Vec<String>) {
    let mut table = String::new();
    let mut failures = Vec::new();
    if first == 0 {
        let _ = writeln!(
            table,
            "\n{:<4} {:<14} {:<58} {:>6} {:>7}  result",
            "#", "group", "case", "status", "ms"
        );
    }
    for (i, c) in cases.iter().enumerate() {
        let n = first + i + 1;
        let o = run_case(fx, c);
        let verdict = if o.problems.is_empty() { "ok" } else { "FAIL" };
        let _ = writeln!(
            table,
            "{n:<4} {:<14} {:<58} {:>6} {:>7}  {verdict}",
            c.group,
            cut(&c.name, 56),
            o.status,
            o.took.as_millis(),
        );
        if !o.problems.is_empty() {
            let text = format!("#{n} {} [{}]: {}", c.name, c.group, o.problems.join("; "));
            failures.push(text);
        }
    }
    (table, failures)
}

#[test]
fn hostile_requests_table() {
    let mut fx = fixture();
    let all = cases();
    assert!(all.len() >= 40, "at least 40 cases, have {}", all.len());
    let total = all.len();
    let (table, mut failures) = run_table(&mut fx, &all, 0);
    print!("{table}");
    // The known jobs are still queued with their tokens intact.
    let st = http("GET", &fx.svc.url("/status/good-plugin/1.0.0"), &[], None);
    assert_eq!(st.status, 200, "{}", st.text());
    let v = st.json();
    let queued = v["builds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["status"] == "queued")
        .count();
    if queued != 2 {
        failures.push(format!("good-plugin 1.0.0 jobs no longer both queued: {v}"));
    }

    // Nothing anywhere under the system temp dir is named after the probe.
    let probes = find_named(&std::env::temp_dir(), &fx.probe, 6);
    if !probes.is_empty() {
        failures.push(format!("probe files under the temp dir: {probes:?}"));
    }
    let log = fx.svc.log();
    for s in fx.secrets() {
        if log.contains(s) {
            failures.push("a secret appears in the service log".into());
        }
    }
    println!(
        "{total} cases; sim saw {} submission(s)",
        fx.sim.submissions().len()
    );
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}\n\nservice log (tail):\n{}",
        failures.len(),
        failures.join("\n"),
        tail(&log, 4000)
    );
}

fn tail(s: &str, n: usize) -> &str {
    let mut i = s.len().saturating_sub(n);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

// ---------------------------------------------------------------------------
// Targeted tests
// ---------------------------------------------------------------------------

/// Every response status found in `raw` (pipelined responses included).
fn statuses(raw: &str) -> Vec<u16> {
    raw.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| raw.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

/// `GET /status/<name>/1.0.0` status.
fn status_of(svc: &Service, name: &str) -> u16 {
    http("GET", &svc.url(&format!("/status/{name}/1.0.0")), &[], None).status
}

/// A complete authenticated upload request for `name` (a valid one: if
/// the server ever runs it, it creates `name` 1.0.0).
fn authed_upload_request(name: &str) -> Vec<u8> {
    let tar = tarball(name, FILL);
    let mut r = format!(
        "POST /upload?name={name}&version=1.0.0&platforms=linux HTTP/1.1\r\n\
         Host: x\r\nAuthorization: Bearer {SECRET}\r\nContent-Length: {}\r\n\r\n",
        tar.len()
    )
    .into_bytes();
    r.extend_from_slice(&tar);
    r
}

fn threads_of(svc: &Service) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", svc.pid()))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn fds_of(svc: &Service) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", svc.pid()))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Bytes after a complete request (a second, unauthenticated request in
/// the same write) are a request of their own: it must be judged on its
/// own credentials and create nothing.
#[test]
fn request_smuggled_after_the_declared_length_creates_no_upload() {
    let (svc, _sim) = start_service(&[]);
    let first = authed_upload_request("pipe-first");
    let tar = tarball("smuggled-noauth", FILL);
    let mut second = format!(
        "POST /upload?name=smuggled-noauth&version=1.0.0&platforms=linux HTTP/1.1\r\n\
         Host: x\r\nContent-Length: {}\r\n\r\n",
        tar.len()
    )
    .into_bytes();
    second.extend_from_slice(&tar);
    // The second request in the same write, right after the first's body.
    let bytes = [first, second].concat();
    let a = exchange(
        svc.addr(),
        &bytes,
        Wire::Normal,
        Duration::from_secs(8),
        Duration::from_secs(2),
    );
    let got = statuses(&a.raw);
    assert_eq!(got.first(), Some(&200), "first upload: {}", a.raw);
    assert!(
        got.iter().skip(1).all(|s| *s == 401 || *s == 400),
        "the smuggled request must be refused: {got:?}\n{}",
        a.raw
    );
    assert_eq!(status_of(&svc, "pipe-first"), 200);
    assert_eq!(
        status_of(&svc, "smuggled-noauth"),
        404,
        "the smuggled upload created builds"
    );
    assert!(!svc.dir().join("uploads/smuggled-noauth").exists());

    // Same, with the first request refused (bad version) and a body longer
    // than its Content-Length holding the second request.
    let mut refused = format!(
        "POST /upload?name=outer&version=1;2&platforms=linux HTTP/1.1\r\n\
         Host: x\r\nAuthorization: Bearer {SECRET}\r\nContent-Length: 4\r\n\r\nH4sI"
    )
    .into_bytes();
    let mut inner = format!(
        "POST /upload?name=smuggled-noauth2&version=1.0.0&platforms=linux&token=nope HTTP/1.1\r\n\
         Host: x\r\nContent-Length: {}\r\n\r\n",
        tar.len()
    )
    .into_bytes();
    inner.extend_from_slice(&tar);
    refused.extend_from_slice(&inner);
    let a = exchange(
        svc.addr(),
        &refused,
        Wire::Normal,
        Duration::from_secs(8),
        Duration::from_secs(2),
    );
    let got = statuses(&a.raw);
    assert_eq!(got.first(), Some(&400), "{}", a.raw);
    assert!(got.iter().skip(1).all(|s| *s == 401), "{got:?}");
    assert_eq!(status_of(&svc, "smuggled-noauth2"), 404);
    assert_eq!(http("GET", &svc.url("/health"), &[], None).status, 200);
}

/// A request refused before its body was read (here 401, for a body far
/// over MAX_BODY_BYTES) leaves the body on the connection; tiny_http
/// (vendor patch) drains at most 1 MiB of it and then parses the REST OF
/// THE BODY AS THE NEXT REQUEST. A front proxy framing by Content-Length
/// sees one request; hone-build runs two (request smuggling / response
/// queue desync). Expected: the connection is closed, nothing is run.
#[test]
fn body_past_the_drain_limit_is_not_executed() {
    let (svc, _sim) = start_service(&[]);
    const DRAIN_LIMIT: usize = 1 << 20;
    let inner = authed_upload_request("smuggled-drain");
    // No credentials on the outer request: it is answered 401 at once.
    let head = format!(
        "POST /upload?name=outer&version=1.0.0 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        DRAIN_LIMIT + inner.len()
    );
    let mut s = TcpStream::connect(svc.addr()).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let (first, _) = read_until(
        &mut s,
        Duration::from_secs(5),
        Vec::new(),
        response_complete,
    );
    let first = String::from_utf8_lossy(&first).into_owned();
    assert_eq!(statuses(&first), vec![401], "{first}");
    // Exactly DRAIN_LIMIT bytes of body, let the server drain them, then the
    // rest of the declared body: a complete, authenticated upload.
    // (A fixed server may close the connection instead: ignore write errors.)
    let _ = s.write_all(&vec![b'A'; DRAIN_LIMIT]);
    std::thread::sleep(Duration::from_millis(700));
    let _ = s.write_all(&inner);
    let (rest, _) = read_until(
        &mut s,
        Duration::from_secs(4),
        Vec::new(),
        response_complete,
    );
    let rest = String::from_utf8_lossy(&rest).into_owned();
    let smuggled = status_of(&svc, "smuggled-drain");
    assert_eq!(
        smuggled, 404,
        "bytes inside the declared body were executed as a request; the server answered:\n{rest}"
    );
}

/// Builds an outer request around a hidden one.
type Framer = fn(&[u8]) -> Vec<u8>;

/// Ambiguous framing (RFC 9112 6.3): an invalid Content-Length, two
/// different Content-Lengths, Content-Length with Transfer-Encoding. The
/// server may refuse (or, for CL+TE, use TE) but MUST close the connection
/// afterwards; otherwise what a proxy took for body is run as a request.
/// Each variant hides a complete authenticated upload where a
/// Content-Length-framing proxy sees body.
#[test]
fn ambiguous_framing_does_not_run_the_hidden_request() {
    let (svc, _sim) = start_service(&[]);
    let mut failures = Vec::new();
    let variants: Vec<(&str, &str, Framer)> = vec![
        (
            "invalid Content-Length",
            "smuggled-badcl",
            |inner: &[u8]| {
                let mut r = format!(
                    "POST /upload?name=outer1&version=1.0.0 HTTP/1.1\r\nHost: x\r\n\
                     Authorization: Bearer {SECRET}\r\nContent-Length: {}x\r\n\r\n",
                    inner.len()
                )
                .into_bytes();
                r.extend_from_slice(inner);
                r
            },
        ),
        (
            "two different Content-Lengths",
            "smuggled-dupcl",
            |inner: &[u8]| {
                let mut r = format!(
                    "POST /upload?name=outer2&version=1.0.0 HTTP/1.1\r\nHost: x\r\n\
                     Authorization: Bearer {SECRET}\r\nContent-Length: 0\r\n\
                     Content-Length: {}\r\n\r\n",
                    inner.len()
                )
                .into_bytes();
                r.extend_from_slice(inner);
                r
            },
        ),
        (
            "Content-Length with Transfer-Encoding (CL.TE)",
            "smuggled-clte",
            |inner: &[u8]| {
                let mut r = format!(
                    "POST /upload?name=outer3&version=1.0.0 HTTP/1.1\r\nHost: x\r\n\
                     Authorization: Bearer {SECRET}\r\nContent-Length: {}\r\n\
                     Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                    inner.len() + 5
                )
                .into_bytes();
                r.extend_from_slice(inner);
                r
            },
        ),
    ];
    for (label, name, build) in &variants {
        let bytes = build(&authed_upload_request(name));
        let a = exchange(
            svc.addr(),
            &bytes,
            Wire::Normal,
            Duration::from_secs(8),
            Duration::from_secs(2),
        );
        let st = status_of(&svc, name);
        println!(
            "{label}: answers {:?}, closed {}, hidden upload /status {st}",
            statuses(&a.raw),
            a.closed
        );
        if st != 404 {
            failures.push(format!(
                "{label}: the hidden request was executed ({name} exists); answers {:?}",
                statuses(&a.raw)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Bodies that end before their declared length (client closes early) must
/// not be stored as if complete.
#[test]
fn truncated_bodies_are_not_stored() {
    let (svc, sim) = start_service(&[]);
    upload_ok(&svc, NAME, VERSION, "linux");
    let cb = callback_of(&sim, NAME, VERSION, "linux");
    let mut failures = Vec::new();

    // Upload: declared 4096, 2000 sent, then FIN.
    let mut t = tarball("trunc", FILL);
    t.resize(2000, 7);
    let mut req = format!(
        "POST /upload?name=trunc-up&version=1.0.0&platforms=linux HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {SECRET}\r\nContent-Length: 4096\r\n\r\n"
    )
    .into_bytes();
    req.extend_from_slice(&t);
    let a = exchange(
        svc.addr(),
        &req,
        Wire::HalfClose,
        Duration::from_secs(8),
        Duration::ZERO,
    );
    if status_of(&svc, "trunc-up") != 404 {
        failures.push(format!(
            "upload: 2000 of 4096 bytes stored as uploads/trunc-up/1.0.0.tar.gz and built; answer {}",
            a.status
        ));
    }

    // Upload, chunked: a chunk of 0x1000 announced, 200 bytes sent, FIN.
    let mut req = format!(
        "POST /upload?name=trunc-chunk&version=1.0.0&platforms=linux HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {SECRET}\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n"
    )
    .into_bytes();
    req.extend_from_slice(&tarball("trunc-chunk", FILL));
    let a = exchange(
        svc.addr(),
        &req,
        Wire::HalfClose,
        Duration::from_secs(8),
        Duration::ZERO,
    );
    if status_of(&svc, "trunc-chunk") != 404 {
        failures.push(format!(
            "chunked upload: a truncated chunk stored and built; answer {}",
            a.status
        ));
    }

    // Artifact, raw, no checksum header: declared 8192, 3000 sent, FIN.
    let mut req = format!(
        "POST /artifact/{}?token={} HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 8192\r\n\r\n",
        cb.id, cb.token
    )
    .into_bytes();
    req.extend_from_slice(&[0x42; 3000]);
    let a = exchange(
        svc.addr(),
        &req,
        Wire::HalfClose,
        Duration::from_secs(8),
        Duration::ZERO,
    );
    let st = http("GET", &svc.url("/status/good-plugin/1.0.0"), &[], None).json();
    if st["builds"][0]["status"] != "queued" {
        failures.push(format!(
            "artifact: 3000 of 8192 bytes published as linux-x64.bin (answer {}): {st}",
            a.status
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// 200 connections in a row sending garbage request lines: each is
/// answered 400 (or closed) promptly, and the service stays healthy with
/// no thread left behind.
#[test]
fn garbage_request_lines_leave_the_service_healthy() {
    let (mut svc, _sim) = start_service(&[]);
    // Worker threads start after the "listening" line: settle first.
    assert_eq!(http("GET", &svc.url("/health"), &[], None).status, 200);
    std::thread::sleep(Duration::from_millis(300));
    let base_threads = threads_of(&svc);
    let fixed: Vec<Vec<u8>> = vec![
        b"\r\n\r\n".to_vec(),
        b"GET\r\n\r\n".to_vec(),
        b"GET /health\r\n\r\n".to_vec(),
        b"GET /health HTTP/1.1 extra\r\n\r\n".to_vec(),
        b"GET /health HTTP/9.9\r\n\r\n".to_vec(),
        b"GET /health FTP/1.0\r\n\r\n".to_vec(),
        b"GET  /health  HTTP/1.1\r\n\r\n".to_vec(),
        b"\x00\x00\x00\x00\r\n\r\n".to_vec(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(), // TLS ClientHello
        b"SSH-2.0-OpenSSH_9.0\r\n\r\n".to_vec(),
        b"G\xc3\x89T /health HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /\xff\xfe HTTP/1.1\r\n\r\n".to_vec(),
        format!("GET /{} HTTP/1.1 x\r\n\r\n", "a".repeat(20_000)).into_bytes(),
        b"POST /upload HTTP/1.1\r\nContent-Length: 5\r\nContent-Length\r\n\r\n".to_vec(),
        b"\n\n\n\n".to_vec(),
        b"GET /health HTTP/1.1\nHost: x\n\n".to_vec(),
    ];
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let mut hung = Vec::new();
    let start = Instant::now();
    for i in 0..200 {
        let line: Vec<u8> = if i % 2 == 0 {
            fixed[(i / 2) % fixed.len()].clone()
        } else {
            // Random bytes, no space-separated three-part shape guaranteed.
            let n = 1 + (next() % 300) as usize;
            let mut l: Vec<u8> = (0..n).map(|_| (next() % 256) as u8).collect();
            l.extend_from_slice(b"\r\n\r\n");
            l
        };
        // The client half-closes after its garbage, so that lines waiting
        // for a CRLF end at once instead of at the read timeout.
        let a = exchange(
            svc.addr(),
            &line,
            Wire::HalfClose,
            Duration::from_secs(READ_TIMEOUT_SECS + 2),
            Duration::ZERO,
        );
        if a.status == 0 && !a.closed {
            hung.push(format!(
                "#{i}: {:?}",
                String::from_utf8_lossy(&line[..line.len().min(60)])
            ));
        }
        *answers.entry(a.status.to_string()).or_default() += 1;
    }
    println!(
        "200 garbage request lines in {:?}; answers by status (0 = closed): {answers:?}",
        start.elapsed()
    );
    assert!(
        hung.is_empty(),
        "connections neither answered nor closed: {hung:?}"
    );
    assert!(svc.is_running());
    let h = http("GET", &svc.url("/health"), &[], None);
    assert_eq!(h.status, 200, "{}", h.text());
    assert!(
        wait_until(Duration::from_secs(10), || threads_of(&svc)
            <= base_threads + 8),
        "threads {} after, {base_threads} before",
        threads_of(&svc)
    );
}

/// HTTP/2.0 request lines (a client trying h2c prior knowledge sends
/// `PRI * HTTP/2.0`): answered 505 or closed, promptly, without leaving a
/// thread or socket behind.
#[test]
fn http2_request_lines_are_answered_and_leak_nothing() {
    let (svc, _sim) = start_service(&[]);
    assert_eq!(http("GET", &svc.url("/health"), &[], None).status, 200);
    std::thread::sleep(Duration::from_millis(300));
    let (t0, f0) = (threads_of(&svc), fds_of(&svc));
    let mut hung = 0;
    for i in 0..20 {
        let line: &[u8] = if i % 2 == 0 {
            b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n"
        } else {
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        };
        let a = exchange(
            svc.addr(),
            line,
            Wire::Normal,
            Duration::from_millis(300),
            Duration::ZERO,
        );
        if a.status == 0 && !a.closed {
            hung += 1;
        }
    }
    // Let the server's read timeout pass: whatever is stuck stays stuck.
    std::thread::sleep(Duration::from_secs(READ_TIMEOUT_SECS + 2));
    let (t1, f1) = (threads_of(&svc), fds_of(&svc));
    println!("threads {t0} -> {t1}, fds {f0} -> {f1}, {hung}/20 not answered within 300 ms");
    assert!(
        t1 <= t0 + 5 && f1 <= f0 + 5,
        "20 HTTP/2.0 request lines (connections closed by the client) left threads {t0} -> {t1} \
         and file descriptors {f0} -> {f1}"
    );
}

/// Clients that send their headers one byte per 100 ms do not block
/// `/health` for others.
#[test]
fn slow_header_clients_do_not_block_health() {
    let (svc, _sim) = start_service(&[]);
    let addr = svc.addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow: Vec<_> = (0..6)
        .map(|i| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let req = format!(
                    "POST /upload?name=slow{i}&version=1.0.0 HTTP/1.1\r\nHost: x\r\nX-Slow: {}",
                    "a".repeat(10_000)
                );
                let mut sent = 0;
                for b in req.bytes() {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) || s.write_all(&[b]).is_err()
                    {
                        break;
                    }
                    sent += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                sent
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let r = http("GET", &svc.url("/health"), &[], None);
        assert_eq!(r.status, 200, "{}", r.text());
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent: Vec<usize> = slow.into_iter().map(|h| h.join().unwrap()).collect();
    println!(
        "slowest /health among 20 while 6 clients trickled headers: {worst:?}; bytes sent {sent:?}"
    );
    assert!(
        worst < Duration::from_secs(1),
        "/health took {worst:?} while slow clients sent headers"
    );
}

/// SPEC 7: slow clients "cannot pin request threads or grow threads
/// without bound". A client sending its headers one byte per 100 ms never
/// trips the per-read timeout; it must still be cut off (408/400/431 or a
/// close) after a bounded time.
#[test]
fn slow_header_client_is_cut_off() {
    let (svc, _sim) = start_service(&[("READ_TIMEOUT_SECS", "2")]);
    let mut s = TcpStream::connect(svc.addr()).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let start = Instant::now();
    let limit = Duration::from_secs(12);
    let mut cut = None;
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        if s.write_all(b"a").is_err() {
            cut = Some(start.elapsed());
            break;
        }
        match s.read(&mut buf) {
            Ok(_) => {
                cut = Some(start.elapsed());
                break;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                cut = Some(start.elapsed());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        cut.is_some(),
        "a client trickling header bytes was still connected after {limit:?} (READ_TIMEOUT_SECS=2)"
    );
}

/// SPEC 7: a request answered before its body was read (401 here: no
/// credentials needed) must not leave a body-lane worker draining a slow
/// client's body. Two slow unauthenticated clients per worker must not
/// make `/artifact` and `/upload` answer 503 for everyone else.
#[test]
fn unread_slow_bodies_do_not_pin_the_body_workers() {
    let (svc, _sim) = start_service(&[("WORKERS", "2"), ("READ_TIMEOUT_SECS", "2")]);
    let addr = svc.addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let _ = s.write_all(
                    b"POST /upload?name=x&version=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n",
                );
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if s.write_all(b"A").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    // Well past READ_TIMEOUT_SECS: a bounded drain would have ended.
    std::thread::sleep(Duration::from_secs(3));
    let mut seen: Vec<String> = Vec::new();
    let ok = wait_until(Duration::from_secs(8), || {
        let r = common::try_http_timeout(
            "POST",
            &svc.url("/artifact/424242?token=x"),
            &[("Content-Type", "text/plain")],
            Some(b"aGVsbG8="),
            Duration::from_secs(3),
        );
        match r {
            Ok(r) => {
                seen.push(r.status.to_string());
                r.status == 404
            }
            Err(e) => {
                seen.push(format!("no answer within 3 s ({e})"));
                false
            }
        }
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in slow {
        let _ = h.join();
    }
    assert!(
        ok,
        "4 unauthenticated clients trickling bodies (answered 401 at once) keep the body lane \
         pinned: /artifact answered {seen:?} (503: lane full; no answer: the rejecter thread \
         itself is draining a slow body)\nlog:\n{}",
        tail(&svc.log(), 3000)
    );
}

/// SPEC 8: one access line per request. Control characters a client puts
/// in the request line (bare LF, bare CR, ESC) must not reach the log raw:
/// they split the line or rewrite the terminal.
#[test]
fn access_log_lines_cannot_be_forged() {
    let (svc, _sim) = start_service(&[]);
    let requests: [&[u8]; 3] = [
        b"GET /x\nFORGED-LF_[access]_POST_/upload_200 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /x\rFORGED-CR_POST_/upload_200 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"G\x1b[2JFORGED-ESC /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ];
    let mut answers = Vec::new();
    for r in requests {
        answers.push(
            exchange(
                svc.addr(),
                r,
                Wire::Normal,
                Duration::from_secs(5),
                Duration::ZERO,
            )
            .status,
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let log = svc.log();
    let bad: Vec<String> = log
        .split('\n')
        .filter(|l| l.contains("FORGED"))
        .filter(|l| !l.starts_with('[') || l.contains('\r') || l.contains('\x1b'))
        .map(|l| format!("{l:?}"))
        .collect();
    assert!(
        bad.is_empty(),
        "answers {answers:?}; log lines carrying raw control characters from the request:\n{}",
        bad.join("\n")
    );
}
