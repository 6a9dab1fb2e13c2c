//! Publishing: record an upload (the tarball on disk, the plugin, version
//! and job rows in one transaction) and submit its jobs to Perry Hub.
//!
//! Submission is shared by the upload (each platform's first submission,
//! before the answer) and the background loop in `jobs` (retries with
//! backoff and jitter). Claims are atomic, so several processes on one
//! MySQL database never submit one job twice.

use crate::app::{App, now_millis, now_secs};
use crate::body::{self, Encoding, Limited, Streamed};
use crate::buildlog;
use crate::codec;
use crate::error::{ApiError, StoreError};
use crate::files::{self, Placed, TempFile};
use crate::hub::{Outcome, Submission};
use crate::platform::Platform;
use crate::store::{
    AttemptResult, ClaimFilter, Job, NewUpload, Refusal, UploadOutcome, plan_upload,
};
use std::io::{Cursor, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An upload whose parameters passed validation.
#[derive(Debug, Clone)]
pub struct Upload {
    pub name: String,
    pub version: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub entry: String,
    pub platforms: Vec<Platform>,
}

/// What an accepted upload did.
pub struct Published {
    /// The tarball as stored.
    pub tarball: Streamed,
    /// The jobs this upload builds, in platform order, each with the
    /// outcome of its first submission (`None`: not done yet, or claimed by
    /// another process).
    pub builds: Vec<(Job, Option<AttemptResult>)>,
}

fn refusal(r: Refusal, name: &str, version: &str) -> ApiError {
    match r {
        Refusal::CaseConflict(recorded) if recorded.name != name => ApiError::conflict(
            "CASE_CONFLICT",
            format!(
                "plugin name '{name}' differs only in letter case from the existing plugin '{}'; \
                 publish under that exact spelling (names and versions are unique regardless of case)",
                recorded.name
            ),
        ),
        Refusal::CaseConflict(recorded) => ApiError::conflict(
            "CASE_CONFLICT",
            format!(
                "version '{version}' of {name} differs only in letter case from its existing version '{}'; \
                 use that exact spelling, or another version (versions are unique regardless of case)",
                recorded.version
            ),
        ),
        Refusal::VersionExists => ApiError::conflict(
            "VERSION_EXISTS",
            format!(
                "{name} {version} is already published: every platform built; publish a new version"
            ),
        ),
        Refusal::BuildInProgress => ApiError::conflict(
            "BUILD_IN_PROGRESS",
            format!("{name} {version} is still being built; wait for its builds to finish"),
        ),
    }
}

/// Records an upload whose body is `body` (a raw `.tar.gz`, or its base64
/// text), at most MAX_BODY_BYTES, then attempts each job's first submission.
/// A conflict is refused before the body is read; nothing is written for a
/// refused or failed upload.
pub fn upload(app: &App, up: Upload, body: &mut dyn Read) -> Result<Published, ApiError> {
    // Refuse a conflict before reading a possibly large body.
    if let Some(recorded) = app.store.case_twin(&up.name, &up.version)? {
        return Err(refusal(
            Refusal::CaseConflict(recorded),
            &up.name,
            &up.version,
        ));
    }
    let existing = app.store.version_jobs(&up.name, &up.version)?;
    if let Err(r) = plan_upload(&existing, &up.platforms) {
        return Err(refusal(r, &up.name, &up.version));
    }

    let final_path = files::tarball_path(&app.cfg.uploads_dir, &up.name, &up.version);
    let dir = final_path.parent().expect("tarball path has a parent");
    let mut tmp = TempFile::create_in(&app.cfg.uploads_dir, dir)?;
    let tarball = receive_and_check(body, app.cfg.max_body_bytes, &mut tmp, &up.entry)?;

    let new = NewUpload {
        name: up.name.clone(),
        version: up.version.clone(),
        display_name: up.display_name,
        description: up.description,
        entry: up.entry,
        platforms: up.platforms,
        now: now_secs(),
        // Reserved for this request's own first submission (below).
        reserved_until_ms: now_millis() + lease_ms(app),
    };
    let mut tokens: Vec<String> = Vec::new();
    let mut new_token = || {
        let t = new_token();
        tokens.push(t.clone());
        t
    };
    let mut placed = Placed::default();
    let outcome = app.store.record_upload(&new, &mut new_token, &mut || {
        placed.place(&mut tmp, &final_path)
    });
    let (name, version) = (up.name, up.version);
    let outcome = placed.conclude(
        outcome,
        &app.unsettled,
        app.store.as_ref(),
        || format!("upload {name} {version}"),
        // The jobs it created, found by their tokens, tell.
        || {
            let (name, version) = (name.clone(), version.clone());
            Box::new(move |store| {
                let jobs = store.version_jobs(&name, &version)?;
                Ok(jobs.iter().any(|j| {
                    j.callback_token
                        .as_ref()
                        .is_some_and(|t| tokens.contains(t))
                }))
            })
        },
    )?;
    let jobs = match outcome {
        UploadOutcome::Refused(r) => return Err(refusal(r, &name, &version)),
        UploadOutcome::Recorded(jobs) => jobs,
    };
    app.metrics.uploads.inc();
    log::info!(
        "upload {name} {version}: {} bytes (sha256 {}), {} build(s)",
        tarball.size,
        tarball.sha256,
        jobs.len()
    );

    // First submissions, concurrently, waited for at most FIRST_SUBMISSION_WAIT.
    let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
    let mut submitted = first_submissions(app, ids, &name, &version).unwrap_or_else(|e| {
        log::warn!("upload {name} {version}: first submission deferred: {e}");
        Vec::new()
    });
    let builds = jobs
        .into_iter()
        .map(|job| {
            let result = submitted
                .iter()
                .position(|(j, _)| j.id == job.id)
                .map(|i| submitted.swap_remove(i).1);
            (job, result)
        })
        .collect();
    Ok(Published { tarball, builds })
}

/// How long an upload waits for its jobs' first submissions before it
/// answers. A submission still running then (a hub that accepts the
/// connection and is slow to answer) goes on in the background and records
/// its outcome itself; the answer says `pending` for its job.
pub const FIRST_SUBMISSION_WAIT: Duration = Duration::from_secs(3);

/// Claims the upload's new jobs and submits them concurrently, each on a
/// thread of its own; returns those done within [`FIRST_SUBMISSION_WAIT`].
/// The others keep their claim (lease: [`lease_ms`], well beyond what one
/// submission may take), so the background loop does not submit them again
/// while they run; if the process stops first, the lease runs out and the
/// loop submits them then.
fn first_submissions(
    app: &App,
    ids: Vec<i64>,
    name: &str,
    version: &str,
) -> Result<Vec<(Job, AttemptResult)>, StoreError> {
    let Some(shared) = app.shared() else {
        return submit_now(app, ClaimFilter::Ids(ids));
    };
    let jobs = app
        .store
        .claim(ClaimFilter::Ids(ids), now_millis(), lease_ms(app))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut running = 0;
    for job in jobs {
        let app = Arc::clone(&shared);
        let tx = tx.clone();
        let id = job.id;
        let spawned = std::thread::Builder::new()
            .name(format!("submit-{id}"))
            .spawn(move || {
                let result = submit_claimed(&app, &job);
                let _ = tx.send((job, result));
            });
        match spawned {
            Ok(_) => running += 1,
            Err(e) => log::warn!(
                "job {id}: cannot start its first submission ({e}); the background loop submits it \
                 when its claim expires"
            ),
        }
    }
    drop(tx);
    let deadline = Instant::now() + FIRST_SUBMISSION_WAIT;
    let mut done = Vec::with_capacity(running);
    while done.len() < running {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(d) => done.push(d),
            Err(_) => break,
        }
    }
    if done.len() < running {
        log::info!(
            "upload {name} {version}: {} first submission(s) still waiting for Perry Hub after \
             {FIRST_SUBMISSION_WAIT:?}; answering now, they finish in the background",
            running - done.len()
        );
    }
    Ok(done)
}

/// Streams an upload body into `out`: raw gzip (it starts with `1f 8b`) or
/// anything else taken as base64 text. Refuses an empty body and one that
/// is not gzip after decoding.
fn receive_tarball(
    body: &mut dyn Read,
    max: u64,
    out: &mut impl Write,
) -> Result<Streamed, ApiError> {
    let mut reader = Limited::new(body, max);
    let mut first = [0u8; 2];
    let mut got = 0;
    while got < 2 {
        match reader.read(&mut first[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(body::read_error(e)),
        }
    }
    if got == 0 {
        return Err(ApiError::bad_request(
            "body is empty: send the plugin's .tar.gz",
        ));
    }
    let encoding = if first[..got] == [0x1f, 0x8b] {
        Encoding::Raw
    } else {
        Encoding::Base64
    };
    let streamed = body::stream_decoded(
        Cursor::new(first[..got].to_vec()).chain(reader),
        encoding,
        out,
    )?;
    if streamed.size == 0 {
        return Err(ApiError::bad_request("body is empty after base64 decoding"));
    }
    if !streamed.head.starts_with(&[0x1f, 0x8b]) {
        return Err(ApiError::bad_request(
            "body is not a gzip file (.tar.gz) after decoding",
        ));
    }
    Ok(streamed)
}

/// How much a tarball may expand to when checked: a gzip bomb stops here.
const MAX_UNPACK_RATIO: u64 = 64;

/// Streams the upload's body into `tmp` and checks the same bytes while
/// they are written (see `files::tarball`: the whole gzip stream, every tar
/// header, the entry file), on a second thread fed through a bounded
/// channel — the tarball is never read twice. Refuses (400, saying what is
/// wrong) one the hub could not build.
fn receive_and_check(
    body: &mut dyn Read,
    max_body: u64,
    tmp: &mut TempFile,
    entry: &str,
) -> Result<Streamed, ApiError> {
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(16);
    let max = max_body.saturating_mul(MAX_UNPACK_RATIO);
    std::thread::scope(|s| {
        let checker = s.spawn(move || files::tarball::check(ChannelReader::new(rx), entry, max));
        let mut tee = Tee {
            out: tmp,
            tx: Some(tx),
        };
        let streamed = receive_tarball(body, max_body, &mut tee);
        drop(tee); // the end of the stream, for the checker
        let checked = checker
            .join()
            .map_err(|_| ApiError::internal("the tarball check failed"))?;
        let streamed = streamed?;
        tarball_refusal(checked)?;
        Ok(streamed)
    })
}

/// Writes to `out` and hands a copy of every piece to the checker (until
/// it has stopped listening: it had its answer).
struct Tee<'a> {
    out: &'a mut TempFile,
    tx: Option<crossbeam_channel::Sender<Vec<u8>>>,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write_all(buf)?;
        if let Some(tx) = &self.tx
            && tx.send(buf.to_vec()).is_err()
        {
            self.tx = None;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// The pieces a [`Tee`] sends, as a byte stream; the channel's end is EOF.
struct ChannelReader {
    rx: crossbeam_channel::Receiver<Vec<u8>>,
    piece: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    fn new(rx: crossbeam_channel::Receiver<Vec<u8>>) -> ChannelReader {
        ChannelReader {
            rx,
            piece: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.piece.len() {
            match self.rx.recv() {
                Ok(p) => {
                    self.piece = p;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = (self.piece.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.piece[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The check's verdict as the client's answer.
fn tarball_refusal(checked: Result<(), files::tarball::TarballError>) -> Result<(), ApiError> {
    use files::tarball::TarballError;
    let send = "send the file's bytes unchanged: curl --data-binary @plugin.tar.gz \
                (--data strips line breaks)";
    match checked {
        Ok(()) => Ok(()),
        Err(TarballError::Gzip(m)) => Err(ApiError::bad_request(format!(
            "the tarball is not a valid gzip file: {m}; {send}"
        ))),
        Err(TarballError::Tar(m)) => Err(ApiError::bad_request(format!(
            "the tarball is a gzip file but not a tar archive ({m}); send the plugin's .tar.gz"
        ))),
        Err(TarballError::NoEntry { entry, first }) => Err(ApiError::bad_request(format!(
            "the tarball has no {entry} (the entry file; set ?entry= to the plugin's entry, \
             a path inside the tarball){}",
            first
                .map(|f| format!("; its first member is {f}"))
                .unwrap_or_default()
        ))),
        Err(TarballError::TooBig(max)) => Err(ApiError::bad_request(format!(
            "the tarball expands to more than {max} bytes ({MAX_UNPACK_RATIO} × MAX_BODY_BYTES)"
        ))),
    }
}

/// A per-job callback token: 256 random bits, hex.
pub fn new_token() -> String {
    codec::random_hex(32).expect("the OS random number generator works")
}

/// How long a claimed job is reserved for the process that claimed it: if
/// that process dies mid-submission, another may take the job after this.
pub fn lease_ms(app: &App) -> i64 {
    (app.cfg.hub_timeout_secs.saturating_mul(4).max(120) * 1000) as i64
}

/// Delay before attempt `attempt + 1`: RETRY_BASE_SECS doubling per attempt
/// up to RETRY_MAX_SECS, with ±25 % jitter.
pub fn backoff_ms(base_secs: u64, max_secs: u64, attempt: u32) -> i64 {
    let (base, max) = (
        Duration::from_secs(base_secs),
        Duration::from_secs(max_secs),
    );
    crate::app::backoff(base, max, attempt).as_millis() as i64
}

/// The callback URL a patched hub's worker posts the artifact to.
pub fn callback_url(public_url: &str, job: &Job) -> String {
    format!(
        "{public_url}/artifact/{}?token={}",
        job.id,
        job.callback_token.as_deref().unwrap_or_default()
    )
}
/// Submits one claimed job and records the outcome (also in the job
/// attempt's build log). Returns what was recorded.
pub fn submit_claimed(app: &App, job: &Job) -> AttemptResult {
    let attempt = job.attempts;
    let mut blog = buildlog::Writer::new(app, job.id, job.log_attempt);
    blog.event(&format!(
        "submitting {} {} for {} to Perry Hub (log attempt {}, submission {attempt} of at most {})",
        job.plugin_name, job.version, job.platform, job.log_attempt, app.cfg.submit_max_attempts
    ));
    let outcome = match (job.platform(), job.entry.as_deref()) {
        (Some(platform), Some(entry))
            if crate::validate::name_like(&job.plugin_name, "name").is_ok()
                && crate::validate::name_like(&job.version, "version").is_ok() =>
        {
            let tarball = files::tarball_path(&app.cfg.uploads_dir, &job.plugin_name, &job.version);
            let url = callback_url(&app.cfg.public_url, job);
            app.hub.submit(&Submission {
                name: &job.plugin_name,
                version: &job.version,
                entry,
                platform,
                tarball: &tarball,
                callback_url: &url,
            })
        }
        _ => Outcome::Permanent(
            "job cannot be submitted: invalid name, version, platform or entry".into(),
        ),
    };
    let now = now_secs();
    // Hub answers may quote what was sent: no secret goes on.
    let outcome = match outcome {
        Outcome::Permanent(e) => Outcome::Permanent(blog.redactor().redact(&e)),
        Outcome::Retryable(e) => Outcome::Retryable(blog.redactor().redact(&e)),
        accepted => accepted,
    };
    let result = match outcome {
        Outcome::Accepted(hub_job_id) => {
            app.metrics.record_submission("accepted");
            log::info!(
                "job {} ({} {} {}) accepted by Perry Hub as {hub_job_id}",
                job.id,
                job.plugin_name,
                job.version,
                job.platform
            );
            blog.event(&format!(
                "accepted by Perry Hub as hub job {}",
                crate::validate::printable(&hub_job_id)
            ));
            AttemptResult::Accepted { hub_job_id }
        }
        Outcome::Permanent(error) => {
            app.metrics.record_submission("failed");
            log::warn!("job {} failed: {error}", job.id);
            blog.event(&format!(
                "Perry Hub refused the submission: {error}; the build failed"
            ));
            AttemptResult::Failed { error }
        }
        Outcome::Retryable(error) if attempt >= app.cfg.submit_max_attempts => {
            app.metrics.record_submission("failed");
            let error = format!("gave up after {attempt} attempts: {error}");
            log::warn!("job {} failed: {error}", job.id);
            blog.event(&format!(
                "submission not accepted: {error} (SUBMIT_MAX_ATTEMPTS); the build failed"
            ));
            AttemptResult::Failed { error }
        }
        Outcome::Retryable(error) => {
            app.metrics.record_submission("retry");
            let delay = backoff_ms(app.cfg.retry_base_secs, app.cfg.retry_max_secs, attempt);
            log::info!(
                "job {} attempt {attempt} not accepted ({error}); next try in {} ms",
                job.id,
                delay
            );
            blog.event(&format!(
                "submission not accepted: {error}; next try in {:.1} s (backoff)",
                delay as f64 / 1000.0
            ));
            AttemptResult::Retry {
                next_attempt_at_ms: now_millis() + delay,
                error,
            }
        }
    };
    // Before the outcome is recorded: the follower, woken by it, writes
    // after these lines.
    blog.flush();
    match app.store.record_attempt(job.id, attempt, &result, now) {
        Ok(true) => {
            if let AttemptResult::Accepted { .. } = result {
                app.follow_wake.notify();
            }
        }
        Ok(false) => {
            log::warn!(
                "job {} changed while it was being submitted; outcome not recorded",
                job.id
            );
            blog.event(
                "the job changed while it was being submitted: this outcome was not recorded",
            );
        }
        Err(e) => log::error!(
            "job {}: recording the submission outcome failed: {e}",
            job.id
        ),
    }
    result
}

/// Claims `filter`'s jobs and submits them concurrently. Returns each job
/// with what was recorded.
pub fn submit_now(app: &App, filter: ClaimFilter) -> Result<Vec<(Job, AttemptResult)>, StoreError> {
    let jobs = app.store.claim(filter, now_millis(), lease_ms(app))?;
    Ok(std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|job| {
                s.spawn(move || {
                    let r = submit_claimed(app, &job);
                    (job, r)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        for attempt in 1..=12u32 {
            let expected = (5u64 << (attempt - 1)).min(600) as f64 * 1000.0;
            for _ in 0..20 {
                let d = backoff_ms(5, 600, attempt) as f64;
                assert!(
                    d >= expected * 0.75 - 1.0 && d <= expected * 1.25 + 1.0,
                    "attempt {attempt}: {d}"
                );
            }
        }
        assert!(
            backoff_ms(5, 600, 1000) <= 750_000,
            "no overflow at huge attempts"
        );
    }
}
