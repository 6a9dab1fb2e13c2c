//! The background dispatcher (SPEC 3): submits due `pending` jobs to Perry
//! Hub with exponential backoff and jitter, fails jobs after
//! SUBMIT_MAX_ATTEMPTS or a permanent refusal, and fails queued jobs whose
//! artifact did not arrive within BUILD_TIMEOUT_SECS. All state is in the
//! store, so it resumes after a restart; claims are atomic, so several
//! processes on one MySQL database never submit one job twice.

use crate::app::{App, now_millis, now_secs};
use crate::hub::{Outcome, Submission};
use crate::packages;
use crate::store::{AttemptResult, ClaimFilter, Job};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Jobs claimed per round (and submitted concurrently).
const BATCH: usize = 4;
/// How often the dispatcher looks for due work.
const TICK: Duration = Duration::from_millis(250);

/// How long a claimed job is reserved for the process that claimed it: if
/// that process dies mid-submission, another may take the job after this.
pub fn lease_ms(app: &App) -> i64 {
    (app.cfg.hub_timeout_secs.saturating_mul(4).max(120) * 1000) as i64
}

/// Delay before attempt `attempt + 1`: RETRY_BASE_SECS doubling per attempt
/// up to RETRY_MAX_SECS, with ±25 % jitter.
pub fn backoff_ms(base_secs: u64, max_secs: u64, attempt: u32) -> i64 {
    let exp = attempt.saturating_sub(1).min(30);
    let delay = base_secs.saturating_mul(1u64 << exp).min(max_secs) as f64 * 1000.0;
    let mut r = [0u8; 2];
    let _ = getrandom::fill(&mut r);
    let unit = u16::from_le_bytes(r) as f64 / u16::MAX as f64; // 0..=1
    (delay * (0.75 + 0.5 * unit)) as i64
}

/// The callback URL the hub's worker posts the artifact to.
pub fn callback_url(public_url: &str, job: &Job) -> String {
    format!(
        "{public_url}/artifact/{}?token={}",
        job.id,
        job.callback_token.as_deref().unwrap_or_default()
    )
}

/// Submits one claimed job and records the outcome. Returns what was recorded.
pub fn submit_claimed(app: &App, job: &Job) -> AttemptResult {
    let attempt = job.attempts;
    let outcome = match (job.platform(), job.entry.as_deref()) {
        (Some(platform), Some(entry))
            if crate::validate::name_like(&job.plugin_name, "name").is_ok()
                && crate::validate::name_like(&job.version, "version").is_ok() =>
        {
            let tarball =
                packages::tarball_path(&app.cfg.uploads_dir, &job.plugin_name, &job.version);
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
            AttemptResult::Accepted { hub_job_id }
        }
        Outcome::Permanent(error) => {
            app.metrics.record_submission("failed");
            log::warn!("job {} failed: {error}", job.id);
            AttemptResult::Failed { error }
        }
        Outcome::Retryable(error) if attempt >= app.cfg.submit_max_attempts => {
            app.metrics.record_submission("failed");
            let error = format!("gave up after {attempt} attempts: {error}");
            log::warn!("job {} failed: {error}", job.id);
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
            AttemptResult::Retry {
                next_attempt_at_ms: now_millis() + delay,
                error,
            }
        }
    };
    match app.store.record_attempt(job.id, attempt, &result, now) {
        Ok(true) => {}
        Ok(false) => log::warn!(
            "job {} changed while it was being submitted; outcome not recorded",
            job.id
        ),
        Err(e) => log::error!(
            "job {}: recording the submission outcome failed: {e}",
            job.id
        ),
    }
    result
}

/// Claims `filter`'s jobs and submits them concurrently. Returns each job
/// with what was recorded.
pub fn submit_now(
    app: &App,
    filter: ClaimFilter,
) -> Result<Vec<(Job, AttemptResult)>, crate::error::StoreError> {
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

/// Starts the dispatcher thread; it stops when `stop` is set.
pub fn start(app: Arc<App>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("dispatcher".into())
        .spawn(move || run(&app, &stop))
        .expect("spawn dispatcher thread")
}

fn run(app: &App, stop: &AtomicBool) {
    let mut last_timeout_check = Instant::now() - Duration::from_secs(3600);
    let mut last_cleanup = Instant::now() - Duration::from_secs(3600);
    while !stop.load(Ordering::Acquire) {
        if !app.try_migrate() {
            sleep_unless_stopped(stop, Duration::from_secs(2));
            continue;
        }
        app.resolve_unresolved();
        let mut busy = false;
        match submit_now(app, ClaimFilter::Due(BATCH)) {
            Ok(done) => busy = done.len() == BATCH,
            Err(e) => log::warn!("dispatcher: {e}"),
        }
        if last_timeout_check.elapsed() >= Duration::from_secs(1) {
            last_timeout_check = Instant::now();
            fail_timed_out(app);
        }
        if last_cleanup.elapsed() >= Duration::from_secs(3600) {
            last_cleanup = Instant::now();
            let day = Duration::from_secs(24 * 3600);
            packages::remove_stale_temps(&app.cfg.uploads_dir, day);
            packages::remove_stale_temps(&app.cfg.packages_dir, day);
        }
        if !busy {
            sleep_unless_stopped(stop, TICK);
        }
    }
    log::info!("dispatcher stopped");
}

fn fail_timed_out(app: &App) {
    let secs = app.cfg.build_timeout_secs;
    let message =
        format!("build timed out: no artifact within BUILD_TIMEOUT_SECS ({secs} s) of submission");
    match app
        .store
        .fail_timed_out(now_secs() - secs as i64, &message, now_secs())
    {
        Ok(jobs) => {
            for j in jobs {
                log::warn!(
                    "job {} ({} {} {}): {message}",
                    j.id,
                    j.plugin_name,
                    j.version,
                    j.platform
                );
            }
        }
        Err(e) => log::warn!("dispatcher: build timeout check: {e}"),
    }
}

fn sleep_unless_stopped(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Acquire) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
    }
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
