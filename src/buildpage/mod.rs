//! The build page, `GET /builds/:name/:version` (docs/api.md): one
//! self-contained HTML page per version, rendered on the server so that it
//! is complete with JavaScript off (a snapshot: every build's state, stage,
//! progress, timings, size, SHA-256, error and log tail), and carrying a
//! small inline script (`page.js`) that polls `/status` and the logs while
//! anything builds and updates the page in place. No external resource of
//! any kind; the style (`page.css`) is inline too.
//!
//! Everything that comes from a row or a log (names of old rows, hub
//! messages, error messages, log lines) is untrusted and HTML-escaped here;
//! the script only ever sets `textContent`. The Content-Security-Policy
//! ([`csp`]) allows exactly this page's script and style (by their SHA-256)
//! and same-origin fetches, nothing else.

use crate::app::App;
use crate::buildlog;
use crate::error::{ApiError, StoreError};
use crate::links;
use crate::platform::Platform;
use crate::store::{self, Job, JobStatus};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// The live-update script, inlined into every page.
pub const SCRIPT: &str = include_str!("page.js");
/// The page's style, inlined into every page.
pub const STYLE: &str = include_str!("page.css");
/// How many of a log's last lines the page shows (the script too).
pub const LOG_TAIL_LINES: usize = 200;

/// A rendered page.
pub struct Page {
    pub html: String,
}

/// The build page of `name` `version` (both already valid names): 404 when
/// the version has no builds, like `/status`.
pub fn page(app: &App, name: &str, version: &str) -> Result<Page, ApiError> {
    let jobs = app.store.version_jobs(name, version)?;
    if jobs.is_empty() {
        return Err(ApiError::no_builds(name, version));
    }
    let builds = jobs
        .iter()
        .map(|job| {
            let log = log_tail(app, job)?;
            Ok(Build { job, log })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Page {
        html: render(name, version, &builds, crate::app::now_secs()),
    })
}

/// The last [`LOG_TAIL_LINES`] lines of `job`'s latest log attempt as
/// `/logs?tail=` answers them (`buildlog::read_tail`); `None` when
/// hone-build never submitted the job (no attempt, no log).
fn log_tail(app: &App, job: &Job) -> Result<Option<Vec<String>>, StoreError> {
    if job.log_attempt == 0 {
        return Ok(None);
    }
    buildlog::read_tail(app.store.as_ref(), job.id, job.log_attempt, LOG_TAIL_LINES).map(Some)
}

/// The `Content-Security-Policy` of every build page: nothing may load or
/// run but the page's own inline script and style (named by hash), and
/// fetches go to the page's own origin only.
pub fn csp() -> String {
    format!(
        "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; \
         img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash_source(SCRIPT),
        hash_source(STYLE)
    )
}

/// `sha256-<base64>` of an inline element's text, as CSP names it.
fn hash_source(text: &str) -> String {
    use base64::Engine as _;
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// One build as the page shows it: its row and the tail of its latest
/// log attempt (already rendered lines), when there is one.
pub struct Build<'a> {
    pub job: &'a Job,
    pub log: Option<Vec<String>>,
}

/// The page's HTML for `builds` of `name` `version`, as of `now` (Unix
/// seconds; the script counts running time from it).
pub fn render(name: &str, version: &str, builds: &[Build<'_>], now: i64) -> String {
    let overall = store::overall(builds.iter().map(|b| &b.job.status));
    let (n, v) = (esc(name), esc(version));
    let mut h = String::with_capacity(8192 + 2048 * builds.len());
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{n} {v} \u{2014} builds</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>{n} <small>{v}</small></h1>\n\
         <p class=\"meta\">Builds of this version: \
         <span id=\"overall\" class=\"state {oc}\">{overall}</span> \
         <span id=\"live\">As of {asof}.</span></p>\n\
         <noscript><p class=\"meta\">A snapshot as of {asof}: reload the page to see \
         what changed.</p></noscript>\n\
         <main id=\"builds\" data-status=\"{status}\" data-now=\"{now}\">\n",
        oc = state_class(overall),
        asof = iso(now),
        // Relative, so the page works under any origin or path prefix it is
        // served from (PUBLIC_URL may name another host).
        status = esc(&format!("../..{}", links::status_path(name, version))),
    );
    for b in builds {
        build_section(&mut h, name, version, b, now);
    }
    let status = links::status_path(name, version);
    let _ = write!(
        h,
        "</main>\n<p class=\"meta\">The same as JSON: <a href=\"{href}\">{text}</a></p>\n\
         <script>{SCRIPT}</script>\n</body>\n</html>\n",
        href = esc(&format!("../..{status}")),
        text = esc(&status),
    );
    h
}

fn build_section(h: &mut String, name: &str, version: &str, b: &Build<'_>, now: i64) {
    let j = b.job;
    let st = j.status.as_str();
    let running = matches!(
        j.status,
        JobStatus::Pending | JobStatus::Queued | JobStatus::Building
    );
    let active = matches!(j.status, JobStatus::Queued | JobStatus::Building);
    let id = Platform::from_hub_name(&j.platform).map_or("", Platform::id);
    let _ = write!(
        h,
        "<section class=\"build\" data-platform=\"{p}\" data-state=\"{se}\" data-log=\"{log}\">\n\
         <h2><span>{p}</span> <span class=\"pid\">{id}</span> \
         <span class=\"state {sc}\" data-f=\"status\">{se}</span></h2>\n",
        p = esc(&j.platform),
        se = esc(st),
        sc = state_class(st),
        log = esc(&format!(
            "../..{}",
            links::log_path(name, version, &j.platform)
        )),
    );
    // Progress: the hub's figure while it builds (none yet: indeterminate),
    // full once stored, no bar otherwise.
    let percent = match j.status {
        JobStatus::Completed => Some(100),
        _ if active => j.progress.percent.map(|p| p.clamp(0, 100)),
        _ => None,
    };
    let _ = writeln!(
        h,
        "<div class=\"bar\"{hidden}><progress max=\"100\" data-f=\"progress\"{value}></progress>\
         <span class=\"pct\" data-f=\"percent\">{pct}</span></div>",
        hidden = hidden(!(active || j.status == JobStatus::Completed)),
        value = percent
            .map(|p| format!(" value=\"{p}\""))
            .unwrap_or_default(),
        pct = percent.map(|p| format!("{p}%")).unwrap_or_default(),
    );
    let stage = stage_line(j);
    let _ = writeln!(
        h,
        "<p class=\"stage\" data-f=\"stage\"{}>{}</p>",
        hidden(stage.is_none()),
        esc(stage.as_deref().unwrap_or_default())
    );
    h.push_str("<dl>\n");
    let duration = match j.completed_at {
        Some(c) => Some(duration(c - j.created_at)),
        None if running => Some(format!("{} so far", duration(now - j.created_at))),
        None => None,
    };
    let rows: [(&str, &str, Option<String>); 7] = [
        ("createdAt", "Created", Some(iso(j.created_at))),
        ("completedAt", "Completed", j.completed_at.map(iso)),
        ("duration", "Duration", duration),
        ("attempts", "Submissions", Some(j.attempts.to_string())),
        ("hubJobId", "Perry Hub job", j.hub_job_id.clone()),
        ("size", "Size", j.size_bytes.map(size)),
        ("sha256", "SHA-256", j.sha256.clone()),
    ];
    for (f, label, value) in rows {
        let _ = writeln!(
            h,
            "<div data-row=\"{f}\"{}><dt>{label}</dt><dd data-f=\"{f}\">{}</dd></div>",
            hidden(value.is_none()),
            esc(value.as_deref().unwrap_or_default())
        );
    }
    h.push_str("</dl>\n");
    let err = j.error_message.as_deref().filter(|e| !e.is_empty());
    let _ = writeln!(
        h,
        "<pre class=\"error\" data-f=\"error\"{}>{}</pre>",
        hidden(err.is_none()),
        esc(err.unwrap_or_default())
    );
    let log = match &b.log {
        Some(lines) if !lines.is_empty() => lines.join("\n"),
        Some(_) => "(no log lines yet)".to_string(),
        None => "(no log: hone-build has not submitted this build)".to_string(),
    };
    let _ = write!(
        h,
        "<details open><summary>Log, last {LOG_TAIL_LINES} lines \
         (<a href=\"{href}\">the whole log</a>)</summary>\
         <pre class=\"log\" data-f=\"log\">{}</pre></details>\n</section>\n",
        esc(&log),
        href = esc(&format!(
            "../..{}",
            links::log_path(name, version, &j.platform)
        )),
    );
}

/// What the build is doing, in words (the script writes the same).
fn stage_line(j: &Job) -> Option<String> {
    match j.status {
        JobStatus::Pending if j.attempts > 0 => Some(format!(
            "waiting to be submitted again at {}",
            iso(j.next_attempt_at_ms / 1000)
        )),
        JobStatus::Pending => Some("waiting to be submitted to Perry Hub".to_string()),
        JobStatus::Queued | JobStatus::Building => {
            let p = &j.progress;
            let mut s = p
                .stage
                .clone()
                .unwrap_or_else(|| "accepted by Perry Hub".to_string());
            if let Some(m) = &p.message {
                let _ = write!(s, " \u{2014} {m}");
            }
            if let Some(q) = p.queue_position {
                let _ = write!(s, " (position {q} in the hub's queue)");
            }
            Some(s)
        }
        _ => None,
    }
}

/// A state's badge class: only the states the style knows.
fn state_class(state: &str) -> &'static str {
    match state {
        "pending" => "st-pending",
        "queued" => "st-queued",
        "building" => "st-building",
        "completed" => "st-completed",
        "failed" => "st-failed",
        _ => "st-other",
    }
}

fn hidden(yes: bool) -> &'static str {
    if yes { " hidden" } else { "" }
}

/// Unix seconds as `2026-11-29T14:03:07Z` (the script writes the same).
fn iso(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `42s`, `4m 12s`, `1h 4m 12s` (the script writes the same).
fn duration(secs: i64) -> String {
    let s = secs.max(0);
    let (h, m, r) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h {m}m {r}s")
    } else if m > 0 {
        format!("{m}m {r}s")
    } else {
        format!("{r}s")
    }
}

/// `512 bytes`, `5.0 MiB (5242880 bytes)` (the script writes the same).
fn size(n: i64) -> String {
    if n < 1024 {
        return format!("{n} bytes");
    }
    let units = ["KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {} ({n} bytes)", units[i])
}

/// Text made safe in HTML content and in quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BuildProgress;

    #[test]
    fn the_script_asks_for_the_tail_the_page_shows() {
        let want = format!("var TAIL = {LOG_TAIL_LINES};");
        assert!(SCRIPT.contains(&want), "page.js must say {want}");
        const { assert!(LOG_TAIL_LINES <= buildlog::TAIL_MAX) };
    }

    fn job(platform: &str, status: JobStatus) -> Job {
        Job {
            id: 1,
            plugin_id: 1,
            plugin_name: "p".into(),
            version: "1.0.0".into(),
            platform: platform.into(),
            hub_job_id: None,
            status,
            error_message: None,
            created_at: 1_764_412_800,
            completed_at: None,
            callback_token: Some("cafe".repeat(16)),
            attempts: 1,
            next_attempt_at_ms: 0,
            submitted_at: None,
            size_bytes: None,
            sha256: None,
            entry: None,
            updated_at: None,
            progress: BuildProgress::default(),
            log_attempt: 1,
        }
    }

    #[test]
    fn escapes_every_markup_character() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn log_lines_and_messages_are_escaped_and_the_log_is_a_tail() {
        let mut j = job("linux", JobStatus::Queued);
        j.progress = BuildProgress {
            stage: Some("compiling<i>".into()),
            percent: Some(140),
            message: Some("</p><script>x()</script>".into()),
            queue_position: Some(3),
        };
        let lines: Vec<String> = (50..250).map(|i| format!("line {i} <b>&</b>")).collect();
        let html = render(
            "p",
            "1.0.0",
            &[Build {
                job: &j,
                log: Some(lines),
            }],
            1_764_412_900,
        );
        assert!(html.contains(
            "compiling&lt;i&gt; \u{2014} &lt;/p&gt;&lt;script&gt;x()&lt;/script&gt; (position 3 in the hub&#39;s queue)"
        ));
        assert!(html.contains(">line 50 &lt;b&gt;&amp;&lt;/b&gt;\nline 51 "));
        assert!(html.contains("line 249 &lt;b&gt;&amp;&lt;/b&gt;</pre>"));
        // A figure out of range is shown clamped.
        assert!(html.contains("value=\"100\"") && html.contains(">100%<"));
        assert!(html.contains(">1m 40s so far<"));
        assert_eq!(html.matches("<script>").count(), 1);
        assert!(!html.contains(&"cafe".repeat(16)), "the callback token");
    }

    #[test]
    fn formats_match_the_script() {
        assert_eq!(iso(1_764_412_800), "2025-11-29T10:40:00Z");
        assert_eq!(iso(-5), "1970-01-01T00:00:00Z");
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(252), "4m 12s");
        assert_eq!(duration(3852), "1h 4m 12s");
        assert_eq!(size(512), "512 bytes");
        assert_eq!(size(5_242_880), "5.0 MiB (5242880 bytes)");
        assert_eq!(size(1536), "1.5 KiB (1536 bytes)");
    }

    #[test]
    fn csp_names_the_inline_script_and_style() {
        let csp = csp();
        assert!(csp.contains(&format!("script-src '{}'", hash_source(SCRIPT))));
        assert!(csp.contains(&format!("style-src '{}'", hash_source(STYLE))));
        assert!(!SCRIPT.contains("</script") && !STYLE.contains("</style"));
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("eval("));
    }
}
