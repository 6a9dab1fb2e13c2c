//! Reading a build's log (`GET /logs/...`, `hone-build logs`): finding the
//! job and log attempt a request names, the log of that attempt as text,
//! and following it while the build runs.
//!
//! A follower polls the store (every [`POLL`]) rather than listening to
//! this process's own follow threads, so that every process sharing one
//! MySQL database shows the same log, whichever of them follows the build.

use crate::error::ApiError;
use crate::platform::Platform;
use crate::store::{Job, JobStatus, LogLine, LogPage, Store};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often a follower looks for new lines and for the end of the build.
pub const POLL: Duration = Duration::from_millis(250);

/// After this long without a line, [`Follower::next_text`] returns an
/// empty text.
pub const QUIET: Duration = Duration::from_secs(1);

/// Lines read from the store at a time.
const PAGE: usize = 1000;

/// A follower ends after the store failed this many polls in a row.
const MAX_STORE_FAILURES: u32 = 120;

/// The log a request names: a job and one of its log attempts.
#[derive(Debug, Clone)]
pub struct LogRef {
    pub job: Job,
    pub attempt: u32,
}

/// Parses `attempt` (a query parameter or option): a positive integer.
pub fn parse_attempt(raw: Option<&str>) -> Result<Option<u32>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match raw.parse::<u32>() {
        Ok(n) if n >= 1 && raw.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(n)),
        _ => Err(ApiError::bad_request(format!(
            "attempt must be a whole number from 1 (got '{}')",
            crate::validate::printable(raw)
        ))),
    }
}

/// Parses `follow`: `1`/`true`/`yes` or `0`/`false`/`no` (absent: no).
pub fn parse_follow(raw: Option<&str>) -> Result<bool, ApiError> {
    match raw {
        None => Ok(false),
        Some("1" | "true" | "yes") => Ok(true),
        Some("0" | "false" | "no") => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!(
            "follow must be 1 or 0 (got '{}')",
            crate::validate::printable(other)
        ))),
    }
}

/// Parses `tail` (a query parameter or option): a whole number from 1 to
/// [`buildlog::TAIL_MAX`](crate::buildlog::TAIL_MAX).
pub fn parse_tail(raw: Option<&str>) -> Result<Option<usize>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let max = crate::buildlog::TAIL_MAX;
    match raw.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) && raw.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(n)),
        _ => Err(ApiError::bad_request(format!(
            "tail must be a whole number from 1 to {max} (got '{}')",
            crate::validate::printable(raw)
        ))),
    }
}

/// Finds the log of `name` `version` on `platform`: attempt `attempt`, or
/// the latest. 404 when there is no such plugin, version, platform build
/// or attempt, or when the build has no log yet (never submitted).
pub fn locate(
    store: &dyn Store,
    name: &str,
    version: &str,
    platform: &str,
    attempt: Option<u32>,
) -> Result<LogRef, ApiError> {
    let Some(p) = Platform::from_name_or_id(platform) else {
        return Err(ApiError::not_found(format!(
            "no platform '{}': expected one of {}",
            crate::validate::printable(platform),
            Platform::names_and_ids_list()
        )));
    };
    let jobs = store.version_jobs(name, version)?;
    if jobs.is_empty() {
        return Err(ApiError::no_builds(name, version));
    }
    let Some(job) = jobs.into_iter().find(|j| j.platform == p.hub_name()) else {
        return Err(ApiError::not_found(format!(
            "no build of {name} {version} for {}",
            p.hub_name()
        )));
    };
    let latest = job.log_attempt;
    match attempt {
        None if latest == 0 => Err(ApiError::not_found(format!(
            "no log yet: the build of {name} {version} for {} has not been submitted",
            p.hub_name()
        ))),
        None => Ok(LogRef {
            job,
            attempt: latest,
        }),
        Some(n) if n > latest => Err(ApiError::not_found(format!(
            "no attempt {n} of the build of {name} {version} for {} (attempts: {})",
            p.hub_name(),
            match latest {
                0 => "none yet".to_string(),
                1 => "1".to_string(),
                l => format!("1 to {l}"),
            }
        ))),
        Some(n) => Ok(LogRef { job, attempt: n }),
    }
}

/// The whole log of an attempt as text (`buildlog::render`), or its last
/// `tail` lines (`buildlog::read_tail`).
pub fn read_all(store: &dyn Store, log: &LogRef, tail: Option<usize>) -> Result<String, ApiError> {
    Ok(match tail {
        None => text(&crate::buildlog::read_attempt(
            store,
            log.job.id,
            log.attempt,
        )?),
        Some(n) => lines_text(crate::buildlog::read_tail(
            store,
            log.job.id,
            log.attempt,
            n,
        )?),
    })
}

/// Follows the log of one attempt: new lines as they are stored, until the
/// build of that attempt ends, then a last line saying how it ended. `S` is
/// how the follower reaches the store (the service's, or the command's).
pub struct Follower<S> {
    store: S,
    job_id: i64,
    attempt: u32,
    after: i64,
    started: bool,
    /// The end, once seen: the last line to write (after one more read).
    ending: Option<String>,
    done: bool,
    failures: u32,
    /// Start with the last this many lines rather than the whole log.
    tail: Option<usize>,
}

impl<S> Follower<S>
where
    S: Deref,
    S::Target: Store,
{
    pub fn new(store: S, log: &LogRef) -> Follower<S> {
        Follower {
            store,
            job_id: log.job.id,
            attempt: log.attempt,
            after: 0,
            started: false,
            ending: None,
            done: false,
            failures: 0,
            tail: None,
        }
    }

    /// Starts with the last `n` lines (as `read_all` with a tail), then
    /// follows: `tail -n N -f`.
    pub fn with_tail(mut self, n: Option<usize>) -> Follower<S> {
        self.tail = n;
        self
    }

    /// The next rendered lines, waiting (polling the store) until there are
    /// some, or an empty text after [`QUIET`] without any (a chance to see
    /// whether the reader is still there); the last line saying how the
    /// build ended; then `None`. Once `stop` is set, a line saying so and
    /// then `None`, within [`POLL`].
    pub fn next_text(&mut self, stop: &AtomicBool) -> Option<String> {
        let since = std::time::Instant::now();
        loop {
            if self.started && since.elapsed() >= QUIET && self.ending.is_none() {
                return Some(String::new());
            }
            if self.done {
                return None;
            }
            if stop.load(Ordering::Acquire) {
                self.done = true;
                return Some(self.note("hone-build is stopping: follow again to see the rest"));
            }
            if self.failures >= MAX_STORE_FAILURES {
                self.done = true;
                return Some(
                    self.note("the log cannot be read (the database fails): follow again later"),
                );
            }
            // The job's state is read before the lines: every line stored
            // before the end was seen is read before the last line.
            let state = match self.store.job_by_id(self.job_id) {
                Ok(job) => ended(job.as_ref(), self.attempt),
                Err(e) => {
                    self.failed(&e.to_string(), stop);
                    continue;
                }
            };
            if !self.started
                && let Some(n) = self.tail
            {
                match self.store.read_log_tail(self.job_id, self.attempt, n) {
                    Ok(t) => {
                        self.failures = 0;
                        self.started = true;
                        if let Some(last) = t.page.lines.last() {
                            self.after = last.seq;
                        }
                        let lines = crate::buildlog::tail_lines(t, n);
                        if !lines.is_empty() {
                            return Some(lines_text(lines));
                        }
                    }
                    Err(e) => self.failed(&e.to_string(), stop),
                }
                continue;
            }
            let page = match self
                .store
                .read_log(self.job_id, self.attempt, self.after, PAGE)
            {
                Ok(p) => p,
                Err(e) => {
                    self.failed(&e.to_string(), stop);
                    continue;
                }
            };
            self.failures = 0;
            if let Some(last) = page.lines.last() {
                self.after = last.seq;
            }
            if !page.lines.is_empty() || (!self.started && has_dropped(&page)) {
                let mut page = page;
                if self.started {
                    page.dropped_lines = 0;
                    page.dropped_bytes = 0;
                }
                self.started = true;
                return Some(text(&page));
            }
            self.started = true;
            match (state, self.ending.take()) {
                // Seen ended at the previous poll and nothing came since.
                (_, Some(last)) => {
                    self.done = true;
                    return Some(last);
                }
                // Ended: one more poll for lines stored late, then the end.
                (Some(how), None) => self.ending = Some(self.note(&how)),
                (None, None) => {}
            }
            crate::app::sleep_unless_stopped(stop, POLL);
        }
    }

    /// A poll the store failed: counted, then wait for the next one.
    fn failed(&mut self, e: &str, stop: &AtomicBool) {
        self.failures += 1;
        if self.failures == 1 {
            log::warn!(
                "following the log of job {}: the store fails: {e}",
                self.job_id
            );
        }
        crate::app::sleep_unless_stopped(stop, POLL);
    }

    /// A line of hone-build's own, rendered like the log's lines.
    fn note(&self, words: &str) -> String {
        let page = LogPage {
            attempt: self.attempt,
            lines: vec![LogLine {
                seq: 0,
                at_ms: crate::app::now_millis(),
                stream: "hone-build".into(),
                text: words.to_string(),
            }],
            dropped_lines: 0,
            dropped_bytes: 0,
        };
        text(&page)
    }
}

/// A page as text: `buildlog::render`'s lines, each ending in a newline.
fn text(page: &LogPage) -> String {
    lines_text(crate::buildlog::render(page))
}

/// Rendered lines as text, each ending in a newline.
fn lines_text(lines: Vec<String>) -> String {
    let mut out = String::new();
    for line in lines {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn has_dropped(page: &LogPage) -> bool {
    page.dropped_lines > 0 || page.dropped_bytes > 0
}

/// How the build of `attempt` ended, if it did: the job is gone, finished,
/// or was submitted again (a later attempt).
fn ended(job: Option<&Job>, attempt: u32) -> Option<String> {
    let Some(job) = job else {
        return Some("the build is gone (its version was removed)".into());
    };
    if job.log_attempt > attempt {
        return Some(format!(
            "attempt {attempt} ended: the build was submitted again (attempt {})",
            job.log_attempt
        ));
    }
    match &job.status {
        s if s.in_progress() => None,
        JobStatus::Completed => Some("build completed".into()),
        JobStatus::Failed => Some(match &job.error_message {
            Some(m) => format!("build failed: {m}"),
            None => "build failed".into(),
        }),
        other => Some(format!("build ended ({other})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_whole_numbers_from_one() {
        assert_eq!(parse_attempt(None), Ok(None));
        assert_eq!(parse_attempt(Some("1")), Ok(Some(1)));
        assert_eq!(parse_attempt(Some("42")), Ok(Some(42)));
        for bad in ["0", "", "-1", "+1", "1.0", " 1", "abc", "4294967296"] {
            let e = parse_attempt(Some(bad)).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
        }
    }

    #[test]
    fn follow_flags() {
        assert_eq!(parse_follow(None), Ok(false));
        assert_eq!(parse_follow(Some("1")), Ok(true));
        assert_eq!(parse_follow(Some("0")), Ok(false));
        assert_eq!(parse_follow(Some("maybe")).unwrap_err().status, 400);
        assert_eq!(parse_follow(Some("")).unwrap_err().status, 400);
    }

    #[test]
    fn platforms_by_hub_name_or_id() {
        assert_eq!(Platform::from_name_or_id("linux"), Some(Platform::Linux));
        assert_eq!(
            Platform::from_name_or_id("darwin-arm64"),
            Some(Platform::Macos)
        );
        assert_eq!(Platform::from_name_or_id("plan9"), None);
    }
}
