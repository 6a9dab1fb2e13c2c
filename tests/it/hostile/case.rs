//! The case-running machinery of the hostile-request table: a [`Case`]
//! (request, expected answer), how it is sent, and the checks after it
//! (answer, secrets, health, database and working directory unchanged).

use super::{Fx, READ_TIMEOUT_SECS};
use crate::common::{self, Answer, Wire, exchange, wait_until};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

/// Every entry under `root` (relative path → description), minus what the
/// service may legitimately change while refusing a request: the SQLite
/// files in `data/`, and directories inside `data/`, `uploads/`,
/// `packages/` (a temporary file's directory is created before its body is
/// read). Files inside those directories are kept: none may change.
pub(super) fn tree(root: &Path) -> BTreeMap<String, String> {
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

pub(super) fn tree_diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
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
pub(super) fn find_named(root: &Path, needle: &str, depth: u32) -> Vec<PathBuf> {
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

pub(super) enum Body {
    /// No body and no Content-Length (unless a header gives one).
    None,
    /// A body with a correct Content-Length added.
    Sized(Vec<u8>),
    /// Bytes after the head, framed only by the case's own headers.
    Framed(Vec<u8>),
    /// The whole request, verbatim (placeholders replaced when UTF-8).
    Verbatim(Vec<u8>),
}

pub(super) struct Case {
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

pub(super) fn case(
    group: &'static str,
    name: impl Into<String>,
    method: &str,
    target: &str,
) -> Case {
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
    pub(super) fn h(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub(super) fn auth(self) -> Self {
        self.h("Authorization", "Bearer {S}")
    }
    pub(super) fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Sized(b.into());
        self
    }
    pub(super) fn framed(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Framed(b.into());
        self
    }
    pub(super) fn verbatim(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Verbatim(b.into());
        self
    }
    pub(super) fn wire(mut self, w: Wire) -> Self {
        self.wire = w;
        self
    }
    pub(super) fn expect(mut self, status: u16, code: &'static str, msg: &str) -> Self {
        self.status = vec![status];
        self.code = Some(code);
        self.msg = Some(msg.into());
        self
    }
    /// Only a status (answers from the HTTP layer have no JSON body).
    pub(super) fn status(mut self, status: u16) -> Self {
        self.status = vec![status];
        self
    }
    pub(super) fn or(mut self, alternatives: &[u16]) -> Self {
        self.status.extend_from_slice(alternatives);
        self
    }
    pub(super) fn allow(mut self, a: &'static str) -> Self {
        self.allow = Some(a);
        self
    }
    pub(super) fn must_close(mut self) -> Self {
        self.must_close = true;
        self.keep_alive = true;
        self
    }
    pub(super) fn keep_alive(mut self) -> Self {
        self.keep_alive = true;
        self
    }
    pub(super) fn timeout(mut self, t: Duration) -> Self {
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

/// docs/api.md error body: JSON, exactly `error` and `code`, this code, a
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
pub(super) fn run_table(fx: &mut Fx, cases: &[Case], first: usize) -> (String, Vec<String>) {
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
