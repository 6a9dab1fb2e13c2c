//! Build logs (docs/logs.md): what is written to a job attempt's log and
//! how a log is shown.
//!
//! - [`Redactor`]: no secret enters a log. Every configured secret value,
//!   any URL's query string, a download token in a `/api/v1/dl/<token>`
//!   path, `Bearer <token>` and `token=`/`key=`/`secret=`/`password=`-like
//!   values become `[redacted]`. Applied to every line before it is stored
//!   and to the `errorMessage` text built from the hub's output.
//! - [`Writer`]: a buffer per followed job (or submission, or delivery):
//!   lines are redacted, made printable and bounded as they are pushed, and
//!   appended to the store at most every [`FLUSH_EVERY`], at once when
//!   [`MAX_BUFFERED`] wait (a burst), on a stage change ([`Writer::flush`])
//!   and at the end (also when dropped).
//! - [`render`]: a log as text lines, shared by every reader.

use crate::app::{App, now_millis};
use crate::error::StoreError;
use crate::store::{LogPage, LogStream, LogTail, NewLogLine, Store};
use std::time::{Duration, Instant, UNIX_EPOCH};

/// What a secret becomes.
pub const REDACTED: &str = "[redacted]";
/// Lines are appended to the store at most this often.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Longest line kept, in bytes (cut at a character boundary, marked `…`).
pub const MAX_LINE_BYTES: usize = 4096;
/// Lines buffered at most: a full buffer is appended at once; while the
/// store does not answer, older ones are dropped (and said so in the log
/// once it answers again).
const MAX_BUFFERED: usize = 10_000;

/// Removes secrets from text bound for a log or an error message.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Secret values and their percent-encoded forms, longest first.
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

/// Names of `name=value` pairs whose value is redacted wherever they
/// appear (compared without case, as a suffix: `x-api-key`, `uploadToken`).
const SECRET_NAMES: &[&str] = &[
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "pass",
    "signature",
    "sig",
    "credential",
    "credentials",
];

impl Redactor {
    /// A redactor for these secret values (empty ones are ignored).
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Redactor {
        let mut all: Vec<String> = Vec::new();
        for s in secrets {
            let s = s.as_ref();
            if s.is_empty() {
                continue;
            }
            all.push(s.to_string());
            let encoded =
                percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            if encoded != s {
                all.push(encoded);
            }
        }
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        all.dedup();
        Redactor { secrets: all }
    }

    /// The configuration's secrets (license key, hub token, upload secret,
    /// database password, …).
    pub fn from_config(cfg: &crate::config::Config) -> Redactor {
        Redactor::new(&cfg.secrets())
    }

    /// `text` with every secret replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        let out = redact_urls(&out);
        let out = redact_bearer(&out);
        redact_pairs(&out)
    }
}

/// Ends a URL, a token or a value: whitespace, quotes, brackets.
fn ends_token(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '`' | '<' | '>' | '(' | ')' | '[' | ']' | '{' | '}' | ',' | ';'
        )
}

/// In every `scheme://…` URL: the query string, and the token of a
/// `/dl/<token>` download path.
fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        // The URL runs to the next character that ends a token.
        let end = rest[i..].find(ends_token).map_or(rest.len(), |e| i + e);
        out.push_str(&rest[..i]);
        out.push_str(&redact_url(&rest[i..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    redact_dl_paths(&out)
}

/// One URL (from its `://`): a user and password before the host, the
/// query string and a fragment go.
fn redact_url(url: &str) -> String {
    let after_scheme = &url[3..];
    let host_end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let url = match after_scheme[..host_end].rfind('@') {
        Some(at) if !after_scheme[..at].is_empty() && &after_scheme[..at] != REDACTED => {
            format!("://{REDACTED}{}", &after_scheme[at..])
        }
        _ => url.to_string(),
    };
    match url.find(['?', '#']) {
        Some(q) if q + 1 < url.len() => format!("{}{}{REDACTED}", &url[..q], &url[q..=q]),
        _ => url,
    }
}

/// `/dl/<token>` anywhere (also without a scheme): the token goes.
fn redact_dl_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("/dl/") {
        let start = i + "/dl/".len();
        let end = rest[start..]
            .find(|c: char| ends_token(c) || c == '/' || c == '?' || c == '#')
            .map_or(rest.len(), |e| start + e);
        out.push_str(&rest[..start]);
        let token = &rest[start..end];
        if !token.is_empty() && token != REDACTED {
            out.push_str(REDACTED);
        } else {
            out.push_str(token);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `Bearer <token>` (any case) → `Bearer [redacted]`.
fn redact_bearer(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(i) = lower[pos..].find("bearer") {
        let at = pos + i + "bearer".len();
        let word_start = pos + i == 0 || !text[..pos + i].ends_with(|c: char| c.is_alphanumeric());
        let spaces = text[at..].len() - text[at..].trim_start_matches([' ', '\t', ':', '=']).len();
        let token_start = at + spaces;
        let token_len = text[token_start..]
            .find(ends_token)
            .unwrap_or(text.len() - token_start);
        out.push_str(&text[pos..token_start]);
        if word_start && spaces > 0 && token_len > 0 {
            out.push_str(REDACTED);
            pos = token_start + token_len;
        } else {
            pos = token_start;
        }
    }
    out.push_str(&text[pos..]);
    out
}

/// `name=value` where the name is secret-like (see [`SECRET_NAMES`]):
/// the value goes. (Not `name: value`: compiler messages are full of
/// `token: string`.)
fn redact_pairs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for (i, c) in text.char_indices() {
        if i < pos || c != '=' {
            continue;
        }
        // The name before the separator.
        let name_start = text[..i]
            .char_indices()
            .rev()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .map_or(0, |(s, c)| s + c.len_utf8());
        let name = text[name_start..i].to_ascii_lowercase();
        if name.is_empty() || !SECRET_NAMES.iter().any(|n| name.ends_with(n)) {
            continue;
        }
        let v = i + 1;
        let end = text[v..]
            .find(|c: char| ends_token(c) || c == '&')
            .map_or(text.len(), |e| v + e);
        let value = &text[v..end];
        if value.is_empty() || value == REDACTED || value.starts_with(REDACTED) {
            continue;
        }
        out.push_str(&text[pos..v]);
        out.push_str(REDACTED);
        pos = end;
    }
    out.push_str(&text[pos..]);
    out
}

/// A line made safe to store and show: control characters become spaces,
/// trailing whitespace goes, at most [`MAX_LINE_BYTES`] (cut at a character
/// boundary, ending in `…`).
pub fn printable_line(text: &str) -> String {
    let mut s: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    s.truncate(s.trim_end().len());
    if s.len() > MAX_LINE_BYTES {
        let mut end = MAX_LINE_BYTES - '…'.len_utf8();
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Buffers one job attempt's log lines and appends them to the store.
/// Flushes when dropped.
pub struct Writer<'a> {
    app: &'a App,
    redactor: Redactor,
    job_id: i64,
    attempt: u32,
    buf: Vec<NewLogLine>,
    /// Lines dropped from the buffer while the store did not answer.
    lost: u64,
    /// The last append failed: a full buffer waits for the next timed
    /// try rather than asking a store that fails at every line.
    failing: bool,
    last_flush: Instant,
}

impl<'a> Writer<'a> {
    /// A writer for the log of (`job_id`, `attempt`). Attempt 0 (a job
    /// hone-build never submitted) has no log: nothing is written.
    pub fn new(app: &'a App, job_id: i64, attempt: u32) -> Writer<'a> {
        Writer {
            app,
            redactor: Redactor::from_config(&app.cfg),
            job_id,
            attempt,
            buf: Vec::new(),
            lost: 0,
            failing: false,
            last_flush: Instant::now(),
        }
    }

    /// The redactor lines go through (also for error messages).
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Adds a line: redacted, printable, bounded. Appends the buffer when
    /// the last append is [`FLUSH_EVERY`] old, or at once when it is full
    /// (a burst of output); only while the store fails are the oldest
    /// lines dropped, and counted.
    pub fn push(&mut self, stream: LogStream, text: &str) {
        if self.attempt == 0 {
            return;
        }
        if self.buf.len() >= MAX_BUFFERED && !self.failing {
            self.flush();
        }
        if self.buf.len() >= MAX_BUFFERED {
            self.buf.remove(0);
            self.lost += 1;
        }
        self.buf.push(NewLogLine {
            at_ms: now_millis(),
            stream,
            text: printable_line(&self.redactor.redact(text)),
        });
        self.tick();
    }

    /// A hone-build event line.
    pub fn event(&mut self, text: &str) {
        self.push(LogStream::HoneBuild, text);
    }

    /// Appends the buffer if the last append is [`FLUSH_EVERY`] old.
    pub fn tick(&mut self) {
        if !self.buf.is_empty() && self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush();
        }
    }

    /// Appends the buffer now. When the store does not answer the lines
    /// stay buffered (at most [`MAX_BUFFERED`]) for the next try.
    pub fn flush(&mut self) {
        self.last_flush = Instant::now();
        if self.buf.is_empty() {
            return;
        }
        if self.lost > 0 {
            let note = NewLogLine {
                at_ms: now_millis(),
                stream: LogStream::HoneBuild,
                text: format!(
                    "[{} line(s) lost here: the database did not answer]",
                    self.lost
                ),
            };
            self.buf.insert(0, note);
        }
        match self.app.store.append_log(
            self.job_id,
            self.attempt,
            &self.buf,
            self.app.cfg.build_log_max_bytes,
        ) {
            Ok(bytes) => {
                self.app.metrics.log_bytes_stored.inc_by(bytes);
                self.buf.clear();
                self.lost = 0;
                self.failing = false;
            }
            Err(e) => {
                self.failing = true;
                if self.lost > 0 {
                    self.buf.remove(0);
                }
                log::debug!(
                    "job {}: appending {} log line(s): {e}",
                    self.job_id,
                    self.buf.len()
                );
            }
        }
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A Unix-millisecond time as `2026-11-29T14:03:07.123Z`.
pub fn timestamp(at_ms: i64) -> String {
    // humantime writes years 1970–9999.
    let ms = at_ms.clamp(0, 253_402_300_799_999) as u64;
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Lines read from the store at a time when a whole attempt is read.
const READ_PAGE: usize = 1000;
/// Pages read at most by [`read_attempt`]: lines keep coming while a build
/// runs, and however the reads interleave with the writes, reading stops
/// after what the size bound lets a log hold many times over.
const MAX_PAGES: usize = 4096;

/// The whole log of one attempt, oldest line first, read in pages, with
/// the dropped counts of the first read (the lines before the first one
/// read had gone by then). An attempt without a log gives an empty page.
pub fn read_attempt(store: &dyn Store, job_id: i64, attempt: u32) -> Result<LogPage, StoreError> {
    let mut whole = store.read_log(job_id, attempt, 0, READ_PAGE)?;
    let mut n = whole.lines.len();
    for _ in 1..MAX_PAGES {
        let Some(after) = whole.lines.last().map(|l| l.seq).filter(|_| n == READ_PAGE) else {
            break;
        };
        let page = store.read_log(job_id, attempt, after, READ_PAGE)?;
        n = page.lines.len();
        whole.lines.extend(page.lines);
    }
    Ok(whole)
}

/// The most lines a tail may ask for (`/logs?tail=N`, `logs --tail N`).
pub const TAIL_MAX: usize = 10_000;

/// The last `n` rendered lines of an attempt's log (as [`render`] writes
/// them, its dropped-lines line counting as one), after a line saying how
/// many earlier ones are left out when any are: one read of at most `n`
/// lines, however long the log.
pub fn read_tail(
    store: &dyn Store,
    job_id: i64,
    attempt: u32,
    n: usize,
) -> Result<Vec<String>, StoreError> {
    Ok(tail_lines(store.read_log_tail(job_id, attempt, n)?, n))
}

/// [`read_tail`]'s lines from what [`Store::read_log_tail`] read.
pub fn tail_lines(mut tail: LogTail, n: usize) -> Vec<String> {
    let dropped_line = i64::from(tail.page.dropped_lines > 0);
    let shown = i64::try_from(tail.page.lines.len()).unwrap_or(i64::MAX);
    let rendered = tail.earlier_lines + shown + dropped_line;
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    if rendered <= n {
        return render(&tail.page);
    }
    // The dropped-lines line opens the whole log: shown only when the
    // tail reaches back to it.
    tail.page.dropped_lines = 0;
    let mut lines = render(&tail.page);
    lines.insert(0, earlier_marker(rendered - shown));
    lines
}

/// The first line of a tail that leaves `n` earlier lines out.
pub fn earlier_marker(n: i64) -> String {
    format!("[… {n} earlier line(s) not shown here: see the whole log …]")
}

/// A log as text, one line each, `<time> <stream> | <text>`, preceded by
/// a line saying how much the size bound dropped, if anything.
pub fn render(page: &LogPage) -> Vec<String> {
    let mut out = Vec::with_capacity(page.lines.len() + 1);
    if page.dropped_lines > 0 {
        out.push(dropped_marker(page.dropped_lines, page.dropped_bytes));
    }
    out.extend(page.lines.iter().map(|l| {
        format!(
            "{} {} | {}",
            timestamp(l.at_ms),
            l.stream,
            printable_line(&l.text)
        )
    }));
    out
}

/// The line standing for what the size bound dropped.
pub fn dropped_marker(lines: i64, bytes: i64) -> String {
    format!(
        "[… {lines} earlier line(s) ({bytes} bytes) dropped: the log of one build attempt keeps \
         its last BUILD_LOG_MAX_BYTES …]"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LogLine;

    fn r() -> Redactor {
        Redactor::new(&["lic-SECRET-1", "tok/en+2", "", "hunter2"])
    }

    /// A tail read of lines `from..to` (seq = index), `earlier` stored
    /// before them and `dropped` dropped lines.
    fn tail(from: i64, to: i64, earlier: i64, dropped: i64) -> LogTail {
        LogTail {
            page: LogPage {
                attempt: 1,
                lines: (from..to)
                    .map(|i| LogLine {
                        seq: i,
                        at_ms: 0,
                        stream: "stdout".into(),
                        text: format!("l{i}"),
                    })
                    .collect(),
                dropped_lines: dropped,
                dropped_bytes: dropped * 10,
            },
            earlier_lines: earlier,
        }
    }

    fn texts(lines: &[String]) -> Vec<&str> {
        lines
            .iter()
            .map(|l| l.rsplit_once(" | ").map_or(l.as_str(), |(_, t)| t))
            .collect()
    }

    #[test]
    fn a_tail_counts_what_it_leaves_out() {
        // All of a short log: as render writes it.
        let t = tail(0, 3, 0, 0);
        assert_eq!(tail_lines(t.clone(), 5), render(&t.page));
        // Seven more before the last three.
        let lines = tail_lines(tail(7, 10, 7, 0), 3);
        assert_eq!(
            texts(&lines),
            [earlier_marker(7).as_str(), "l7", "l8", "l9"]
        );
        // The dropped-lines line fits: the whole log with it.
        let t = tail(0, 2, 0, 4);
        let lines = tail_lines(t.clone(), 3);
        assert_eq!(lines, render(&t.page));
        assert!(
            lines[0].contains("4 earlier line(s) (40 bytes) dropped"),
            "{lines:?}"
        );
        // It does not: it counts as one left out, the marker instead.
        let lines = tail_lines(tail(0, 3, 0, 4), 3);
        assert_eq!(
            texts(&lines),
            [earlier_marker(1).as_str(), "l0", "l1", "l2"]
        );
        let lines = tail_lines(tail(5, 8, 5, 4), 3);
        assert_eq!(texts(&lines)[0], earlier_marker(6));
        // No log yet: nothing.
        assert!(tail_lines(tail(0, 0, 0, 0), 3).is_empty());
    }

    #[test]
    fn configured_secrets_are_redacted_also_percent_encoded() {
        let r = r();
        assert_eq!(
            r.redact("key lic-SECRET-1 and hunter2hunter2"),
            "key [redacted] and [redacted][redacted]"
        );
        assert_eq!(r.redact("tok%2Fen%2B2 in a path"), "[redacted] in a path");
        assert_eq!(r.redact("nothing here"), "nothing here");
        assert_eq!(Redactor::new::<&str>(&[]).redact("plain"), "plain");
    }

    #[test]
    fn url_queries_and_download_tokens_are_redacted() {
        let r = Redactor::default();
        assert_eq!(
            r.redact("GET https://hub.example/api/v1/dl/0b6c-44aa-9f?x=1 failed"),
            "GET https://hub.example/api/v1/dl/[redacted]?[redacted] failed"
        );
        assert_eq!(
            r.redact("callback http://h:8447/artifact/7?token=abc&x=y, done"),
            "callback http://h:8447/artifact/7?[redacted], done"
        );
        assert_eq!(
            r.redact("see /api/v1/dl/abc-123 (once)"),
            "see /api/v1/dl/[redacted] (once)"
        );
        assert_eq!(
            r.redact("https://hub.example/path#frag"),
            "https://hub.example/path#[redacted]"
        );
        assert_eq!(
            r.redact("https://hub.example/plain/path."),
            "https://hub.example/plain/path."
        );
        assert_eq!(r.redact("is it? yes"), "is it? yes", "no URL, no query");
    }

    #[test]
    fn bearer_tokens_and_secret_pairs_are_redacted() {
        let r = Redactor::default();
        assert_eq!(
            r.redact("Authorization: Bearer abc.def-ghi"),
            "Authorization: Bearer [redacted]"
        );
        assert_eq!(
            r.redact("sent bearer xyz now"),
            "sent bearer [redacted] now"
        );
        assert_eq!(r.redact("the bearer of news"), "the bearer [redacted] news");
        assert_eq!(r.redact("unbearer x"), "unbearer x");
        assert_eq!(
            r.redact("license_key=L1 api-key: K2 password=p&q=1 TOKEN=t"),
            "license_key=[redacted] api-key: K2 password=[redacted]&q=1 TOKEN=[redacted]"
        );
        assert_eq!(
            r.redact("error TS2322: Type '{ token: string; }' is not assignable"),
            "error TS2322: Type '{ token: string; }' is not assignable",
            "compiler messages keep their words"
        );
        assert_eq!(
            r.redact("mysql://hone:pw@db:3306/x and https://u@h/p"),
            "mysql://[redacted]@db:3306/x and https://[redacted]@h/p"
        );
        assert_eq!(r.redact("stage: compiling"), "stage: compiling");
        assert_eq!(r.redact("monkey=business"), "monkey=[redacted]");
        assert_eq!(r.redact("keyboard=1 a=b"), "keyboard=1 a=b");
    }

    #[test]
    fn names_after_multibyte_characters_do_not_break_redaction() {
        let r = Redactor::default();
        assert_eq!(r.redact("é=1 —=x"), "é=1 —=x");
        assert_eq!(r.redact("naïvetoken=v"), "naïvetoken=[redacted]");
        assert_eq!(r.redact("ключ—key=v"), "ключ—key=[redacted]");
        assert_eq!(r.redact("—bearer x"), "—bearer [redacted]");
    }

    #[test]
    fn redaction_is_idempotent() {
        let r = r();
        for s in [
            "Bearer abc https://x/y?token=1 /dl/t key=v lic-SECRET-1",
            "plain text: nothing",
        ] {
            let once = r.redact(s);
            assert_eq!(r.redact(&once), once, "{s}");
        }
    }

    #[test]
    fn lines_are_printable_and_bounded() {
        assert_eq!(printable_line("a\u{1b}[2Jb\tc\r\n"), "a [2Jb c");
        let long = "é".repeat(3000);
        let p = printable_line(&long);
        assert!(p.len() <= MAX_LINE_BYTES, "{}", p.len());
        assert!(p.ends_with('…'));
        assert_eq!(printable_line("short"), "short");
    }

    #[test]
    fn render_shows_time_stream_and_the_dropped_marker() {
        let page = LogPage {
            attempt: 2,
            lines: vec![
                LogLine {
                    seq: 5,
                    at_ms: 1_795_960_987_123,
                    stream: "stderr".into(),
                    text: "error TS2304: Cannot find name 'foo'".into(),
                },
                LogLine {
                    seq: 6,
                    at_ms: 1_795_960_988_000,
                    stream: "hone-build".into(),
                    text: "bad\u{7}bell".into(),
                },
            ],
            dropped_lines: 3,
            dropped_bytes: 120,
        };
        let lines = render(&page);
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            "[… 3 earlier line(s) (120 bytes) dropped: the log of one build attempt keeps its \
             last BUILD_LOG_MAX_BYTES …]"
        );
        assert_eq!(
            lines[1],
            "2026-11-29T14:03:07.123Z stderr | error TS2304: Cannot find name 'foo'"
        );
        assert_eq!(lines[2], "2026-11-29T14:03:08.000Z hone-build | bad bell");
        let none = LogPage::default();
        assert!(render(&none).is_empty());
    }
}
