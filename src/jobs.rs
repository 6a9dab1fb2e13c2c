//! The background loop: submits due `pending` jobs (through `publish`),
//! fails queued jobs whose artifact did not arrive within
//! BUILD_TIMEOUT_SECS (saying so in their build logs), settles changes whose COMMIT outcome was unknown,
//! reconciles the published files with the rows (`files::reconcile`),
//! removes stale temporary files, and removes build logs older than
//! BUILD_LOG_RETENTION_DAYS. All state is in the store, so it resumes after
//! a restart.

use crate::app::{App, now_millis, now_secs};
use crate::files;
use crate::publish;
use crate::store::ClaimFilter;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Jobs claimed per round (and submitted concurrently).
const BATCH: usize = 4;
/// First delay before the migration is tried again while the database does
/// not answer; it doubles up to [`MIGRATE_RETRY_MAX`].
const MIGRATE_RETRY_FIRST: Duration = Duration::from_secs(2);
const MIGRATE_RETRY_MAX: Duration = Duration::from_secs(60);
/// How often the loop looks for due work.
const TICK: Duration = Duration::from_millis(250);

/// Starts the background thread; it stops when `stop` is set.
pub fn start(app: Arc<App>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("jobs".into())
        .spawn(move || run(&app, &stop))
        .expect("spawn the background jobs thread")
}

fn run(app: &App, stop: &AtomicBool) {
    let mut last_timeout_check = Instant::now() - Duration::from_secs(3600);
    let mut last_cleanup = Instant::now() - Duration::from_secs(3600);
    let mut last_reconcile: Option<Instant> = None;
    let mut last_log_prune: Option<Instant> = None;
    // Start-up just tried the migration; while the database does not
    // answer, try again after a delay doubling from 2 s to a minute.
    let mut migrate_delay = MIGRATE_RETRY_FIRST;
    while !stop.load(Ordering::Acquire) {
        if !app.is_migrated() {
            let _ = crate::app::sleep_unless_stopped(stop, migrate_delay);
            let next = (migrate_delay * 2).min(MIGRATE_RETRY_MAX);
            if stop.load(Ordering::Acquire) || !app.try_migrate_then(Some(next)) {
                migrate_delay = next;
                continue;
            }
        }
        app.unsettled.retry(app.store.as_ref());
        let mut busy = false;
        match publish::submit_now(app, ClaimFilter::Due(BATCH)) {
            Ok(done) => busy = done.len() == BATCH,
            Err(e) => log::warn!("submitting due jobs: {e}"),
        }
        if last_timeout_check.elapsed() >= Duration::from_secs(1) {
            last_timeout_check = Instant::now();
            fail_timed_out(app);
        }
        if last_cleanup.elapsed() >= Duration::from_secs(3600) {
            last_cleanup = Instant::now();
            let day = Duration::from_secs(24 * 3600);
            files::remove_stale_temps(&app.cfg.uploads_dir, day);
            files::remove_stale_temps(&app.cfg.packages_dir, day);
        }
        // Files and manifests against the rows: at start, then every
        // RECONCILE_EVERY; never while a change of ours is unsettled.
        if last_reconcile.is_none_or(|t| t.elapsed() >= RECONCILE_EVERY) && app.unsettled.is_empty()
        {
            last_reconcile = Some(Instant::now());
            reconcile(app);
        }
        if last_log_prune.is_none_or(|t| t.elapsed() >= PRUNE_LOGS_EVERY) {
            last_log_prune = Some(Instant::now());
            prune_logs(app);
        }
        if !busy {
            let _ = crate::app::sleep_unless_stopped(stop, TICK);
        }
    }
    log::info!("background jobs stopped");
}
/// How often build logs past BUILD_LOG_RETENTION_DAYS are removed.
const PRUNE_LOGS_EVERY: Duration = Duration::from_secs(3600);

/// Removes the logs of build attempts last written more than
/// BUILD_LOG_RETENTION_DAYS ago (0: never).
fn prune_logs(app: &App) {
    let days = app.cfg.build_log_retention_days;
    if days == 0 {
        return;
    }
    let before_ms = now_millis().saturating_sub((days as i64).saturating_mul(86_400_000));
    match app.store.prune_logs(before_ms) {
        Ok(0) => log::debug!("no build logs older than {days} days"),
        Ok(n) => log::info!(
            "removed {n} build log line(s) older than BUILD_LOG_RETENTION_DAYS ({days} days)"
        ),
        Err(e) => log::warn!("removing old build logs: {e}"),
    }
}

/// How often the published files are reconciled with the rows.
const RECONCILE_EVERY: Duration = Duration::from_secs(600);

fn reconcile(app: &App) {
    let grace = files::reconcile::GRACE;
    match files::reconcile::reconcile(app.store.as_ref(), &app.cfg.packages_dir, grace) {
        Ok(r) if r == Default::default() => log::debug!("files reconciled with the rows"),
        Ok(r) => log::info!(
            "files reconciled with the rows: {} stray program(s) set aside, {} manifest(s) \
             rewritten",
            r.set_aside,
            r.manifests
        ),
        Err(e) => log::warn!("reconciling files with the rows: {e}"),
    }
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
                crate::buildlog::Writer::new(app, j.id, j.log_attempt).event(&message);
                log::warn!(
                    "job {} ({} {} {}): {message}",
                    j.id,
                    j.plugin_name,
                    j.version,
                    j.platform
                );
            }
        }
        Err(e) => log::warn!("build timeout check: {e}"),
    }
}
