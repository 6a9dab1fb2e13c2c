//! Following hub jobs: today's Perry Hub never calls back, so every job it
//! accepted is followed over its WebSocket until it is over.
//!
//! One connection per job, subscribed at once (the hub replays nothing),
//! pinged every 25 s; after a close it subscribes again at once if the
//! connection had lasted, else (and after errors) with backoff and jitter. On `artifact_ready` for the artifact that carries the program
//! (`unpack::carries_program`) the artifact is downloaded at once (the link
//! is single-use and short-lived), decoded and hashed to a temporary file,
//! checked against the announced sha256, unpacked, and recorded through
//! `intake` exactly as a delivery to `POST /artifact` would be.
//!
//! Outcomes: a failed build fails the job with the hub's message; a success
//! without a usable artifact, a download refused, a wrong sha256, or a hub
//! that forgot the job (`JOB_NOT_FOUND`: it restarted) submits the job
//! again as a new hub job (counted against SUBMIT_MAX_ATTEMPTS); a package
//! without a usable program fails the job; BUILD_TIMEOUT_SECS bounds every
//! job, and the hub is sent `cancel` when hone-build gives up. A WebSocket
//! that cannot be reached is retried until then and never alone resubmits.
//!
//! Everything the hub relays for the job (`log` lines, `stage`, `error`,
//! queue positions) and hone-build's own events are written to the job
//! attempt's build log (`buildlog`), redacted.
//!
//! Several processes on one database: each job is followed by one process
//! at a time, under a lease in the store (taken over when it lapses), so an
//! artifact is downloaded once. At most FOLLOW_MAX_JOBS jobs (threads,
//! connections) per process.

use crate::app::{App, now_millis, now_secs};
use crate::body::Encoding;
use crate::buildlog;
use crate::error::ApiError;
use crate::hub::message::HubMessage;
use crate::hub::ws::{Event, HubSocket};
use crate::hub::{DownloadError, hub_app_name};
use crate::intake;
use crate::store::{BuildProgress, Deliverer, Job, LogStream, ResubmitOutcome};
use crate::unpack;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a follow lease lasts; renewed every [`RENEW_EVERY`].
pub const LEASE: Duration = Duration::from_secs(30);
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How long a read waits before the loop looks at its deadlines again.
const POLL: Duration = Duration::from_millis(500);
/// How often the supervisor looks for jobs to follow.
const TICK: Duration = Duration::from_millis(250);
/// Longest message kept from the hub.
const MAX_MESSAGE_CHARS: usize = 1000;
/// Progress is written to the store at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(300);
/// Stderr lines of the compiler a failed build's message ends with.
const STDERR_TAIL: usize = 20;
/// Longest stderr line kept for it.
const MAX_LINE_CHARS: usize = 300;

/// Starts the supervisor thread (none when following is off).
pub fn start(app: Arc<App>, stop: Arc<AtomicBool>) -> Option<JoinHandle<()>> {
    app.cfg.perry_hub_ws_url.as_ref()?;
    Some(
        std::thread::Builder::new()
            .name("follow".into())
            .spawn(move || supervise(&app, &stop))
            .expect("spawn the follow supervisor"),
    )
}

/// Claims jobs to follow while there is room, one thread each.
fn supervise(app: &Arc<App>, stop: &Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        threads.retain(|t| !t.is_finished());
        let room = app
            .cfg
            .follow_max_jobs
            .saturating_sub(active.load(Ordering::Acquire));
        if room > 0 && app.is_migrated() {
            match app.store.claim_follows(
                &app.instance,
                now_millis(),
                LEASE.as_millis() as i64,
                room,
            ) {
                Ok(jobs) => {
                    for job in jobs {
                        // Given back when the thread ends — also by a panic,
                        // or when it could not be started (then dropped here).
                        let slot = Slot::take(&active);
                        app.metrics.followed.inc();
                        let job_id = job.id;
                        let (app2, stop) = (Arc::clone(app), Arc::clone(stop));
                        let spawned = std::thread::Builder::new()
                            .name(format!("follow-{job_id}"))
                            .spawn(move || {
                                let _slot = slot;
                                follow(&app2, &job, &stop);
                            });
                        match spawned {
                            Ok(t) => threads.push(t),
                            Err(e) => {
                                log::error!("cannot start a follow thread for job {job_id}: {e}");
                                let _ = app.store.release_follow(job_id, &app.instance);
                            }
                        }
                    }
                }
                Err(e) => log::warn!("looking for jobs to follow: {e}"),
            }
        }
        app.follow_wake.wait(TICK);
    }
    // Each thread notices `stop` within a poll interval and releases its lease.
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One of the FOLLOW_MAX_JOBS places, held by a follow thread.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Slot {
        active.fetch_add(1, Ordering::AcqRel);
        Slot(Arc::clone(active))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Wakes the supervisor before its next tick: a job was just accepted by
/// the hub, and messages sent before the subscribe are lost for good.
#[derive(Default)]
pub struct Wake {
    pending: Mutex<bool>,
    cv: Condvar,
}

impl Wake {
    pub fn notify(&self) {
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    /// Waits until notified or `timeout` passes.
    fn wait(&self, timeout: Duration) {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (mut pending, _) = self
            .cv
            .wait_timeout_while(pending, timeout, |p| !*p)
            .unwrap_or_else(|p| p.into_inner());
        *pending = false;
    }
}

/// How one followed job ended, for the log.
enum Over {
    /// Stored, failed, resubmitted, or no longer ours to follow.
    Done,
    /// Stop requested: the lease was released for another process.
    Stopped,
}

/// What a message means for the job.
enum Step {
    Continue,
    Over,
}

struct Follow<'a> {
    app: &'a App,
    /// The job attempt's build log.
    log: buildlog::Writer<'a>,
    /// The queue position and message last written to the log.
    queue_said: Option<(Option<i64>, Option<String>)>,
    /// A stage was seen for this hub job (here, or by an earlier follower:
    /// the row had one): the hub queue time is measured once.
    stage_seen: bool,
    job: &'a Job,
    hub_job: String,
    /// The hub's last `error` message, for the failure that follows it.
    last_error: Option<String>,
    /// The compiler's last stderr lines (at most [`STDERR_TAIL`]), for the
    /// message of a failed build.
    stderr_tail: std::collections::VecDeque<String>,
    /// Unix seconds after which hone-build gives up on the job.
    deadline: i64,
    last_renew: Instant,
    /// What the hub last said of the build's progress, and whether the
    /// store has it yet (written at most every [`PROGRESS_EVERY`], at once
    /// when the stage changes).
    progress: BuildProgress,
    progress_unsaved: bool,
    progress_saved_at: Option<Instant>,
}

/// Follows one job until it is over, the lease is lost, or `stop`.
fn follow(app: &App, job: &Job, stop: &AtomicBool) {
    let Some(hub_job) = job.hub_job_id.clone() else {
        return;
    };
    let start = job.submitted_at.unwrap_or(job.created_at);
    let mut f = Follow {
        app,
        log: buildlog::Writer::new(app, job.id, job.log_attempt),
        queue_said: None,
        stage_seen: job.progress.stage.is_some(),
        job,
        hub_job,
        last_error: None,
        stderr_tail: std::collections::VecDeque::new(),
        deadline: start.saturating_add(app.cfg.build_timeout_secs as i64),
        last_renew: Instant::now(),
        progress: BuildProgress::default(),
        progress_unsaved: false,
        progress_saved_at: None,
    };
    log::info!(
        "job {} ({} {} {}): following hub job {}",
        job.id,
        job.plugin_name,
        job.version,
        job.platform,
        f.hub_job
    );
    f.log.event(&format!(
        "following hub job {} over Perry Hub's WebSocket",
        f.hub_job
    ));
    match f.run(stop) {
        Over::Done => f.log.flush(),
        Over::Stopped => {
            f.log.event(
                "hone-build is stopping: the build goes on at Perry Hub and is followed again \
                 by the next process",
            );
            // Before the lease goes: the next follower's lines come after these.
            f.log.flush();
            if let Err(e) = app.store.release_follow(job.id, &app.instance) {
                log::debug!("job {}: releasing the follow lease: {e}", job.id);
            }
        }
    }
}

impl Follow<'_> {
    fn run(&mut self, stop: &AtomicBool) -> Over {
        let url = self
            .app
            .cfg
            .perry_hub_ws_url
            .clone()
            .expect("following is on");
        let connect_timeout = Duration::from_secs(self.app.cfg.hub_timeout_secs.clamp(1, 30));
        // Consecutive failed connections; `reconnect`: any pass after the first.
        let mut failures: u32 = 0;
        let mut reconnect = false;
        let mut subscribed_before = false;
        loop {
            if stop.load(Ordering::Acquire) {
                return Over::Stopped;
            }
            if !self.keep_lease() {
                return Over::Done;
            }
            if now_secs() > self.deadline {
                self.give_up(None);
                return Over::Done;
            }
            if reconnect {
                self.app.metrics.follow_reconnects.inc();
                if failures > 0
                    && !crate::app::sleep_unless_stopped(stop, reconnect_delay(failures))
                {
                    return Over::Stopped;
                }
            }
            reconnect = true;
            let mut sock = match HubSocket::connect(&url, connect_timeout, POLL) {
                Ok(s) => s,
                Err(e) => {
                    failures += 1;
                    log::warn!(
                        "job {}: cannot reach Perry Hub's WebSocket (try {failures}): {e}",
                        self.job.id
                    );
                    // Tries 1, 2, 4, 8, …: a long outage is not a log of its own.
                    if failures.is_power_of_two() {
                        self.log.event(&format!(
                            "cannot reach Perry Hub's WebSocket (try {failures}): {e}"
                        ));
                    }
                    continue;
                }
            };
            if let Err(e) = sock.subscribe(&self.hub_job) {
                failures += 1;
                log::warn!("job {}: subscribe failed: {e}", self.job.id);
                if failures.is_power_of_two() {
                    self.log.event(&format!(
                        "subscribing to hub job {} failed: {e}",
                        self.hub_job
                    ));
                }
                continue;
            }
            if subscribed_before {
                self.log.event(&format!(
                    "reconnected to Perry Hub's WebSocket; following hub job {} again",
                    self.hub_job
                ));
            }
            subscribed_before = true;
            let subscribed = Instant::now();
            loop {
                if stop.load(Ordering::Acquire) {
                    sock.close();
                    return Over::Stopped;
                }
                if !self.keep_lease() {
                    // Given up elsewhere (the background loop's build
                    // timeout, an operator): the hub need not go on.
                    if self.job_failed() {
                        let _ = sock.cancel(&self.hub_job);
                    }
                    sock.close();
                    return Over::Done;
                }
                if now_secs() > self.deadline {
                    self.give_up(Some(&mut sock));
                    sock.close();
                    return Over::Done;
                }
                match sock.next_event() {
                    Event::Idle => {
                        self.save_progress(false);
                        self.log.tick();
                    }
                    Event::Closed(why) => {
                        // The hub replays nothing: after a connection that
                        // worked for a while (at least POLL: so at most two
                        // reconnects a second), subscribe again at once
                        // (every moment away loses messages for good); one
                        // closed sooner counts as a failure and backs off,
                        // 250 ms doubling to 30 s.
                        failures = if subscribed.elapsed() >= POLL {
                            0
                        } else {
                            failures + 1
                        };
                        log::info!(
                            "job {}: WebSocket closed before the build ended ({why}); reconnecting",
                            self.job.id
                        );
                        self.log.event(&format!(
                            "Perry Hub's WebSocket closed before the build ended ({why}); reconnecting"
                        ));
                        break;
                    }
                    Event::Message(m) => {
                        if let Step::Over = self.on_message(m, stop) {
                            sock.close();
                            return Over::Done;
                        }
                    }
                }
            }
        }
    }

    /// Renews the lease when due; false when the job is no longer ours to
    /// follow (another process took it over, or it is no longer queued
    /// with this hub job: completed by a callback, failed, resubmitted).
    fn keep_lease(&mut self) -> bool {
        if self.last_renew.elapsed() < RENEW_EVERY {
            return true;
        }
        match self.app.store.renew_follow(
            self.job.id,
            &self.app.instance,
            &self.hub_job,
            now_millis() + LEASE.as_millis() as i64,
        ) {
            Ok(true) => {
                self.last_renew = Instant::now();
                true
            }
            Ok(false) => {
                log::info!(
                    "job {}: no longer followed here (completed, changed or taken over)",
                    self.job.id
                );
                self.log.event(&format!(
                    "no longer following hub job {} here: the job was completed, changed or taken \
                     over by another process",
                    self.hub_job
                ));
                false
            }
            // The database is away: keep following; the lease says who may
            // act once it is back.
            Err(e) => {
                log::warn!("job {}: renewing the follow lease: {e}", self.job.id);
                true
            }
        }
    }

    /// Writes the progress to the store when it changed and the last write
    /// is at least [`PROGRESS_EVERY`] old (or `now`).
    fn save_progress(&mut self, now: bool) {
        if !self.progress_unsaved
            || (!now
                && self
                    .progress_saved_at
                    .is_some_and(|t| t.elapsed() < PROGRESS_EVERY))
        {
            return;
        }
        match self
            .app
            .store
            .record_progress(self.job.id, &self.hub_job, &self.progress)
        {
            Ok(_) => {
                self.progress_unsaved = false;
                self.progress_saved_at = Some(Instant::now());
            }
            Err(e) => log::debug!("job {}: recording progress: {e}", self.job.id),
        }
    }

    /// Writes "queued at Perry Hub, position N" when the position or the
    /// hub's words about it changed.
    fn say_queue(&mut self, position: Option<i64>, message: Option<&str>) {
        let message = message.map(str::trim).filter(|m| !m.is_empty());
        if position.is_none() && message.is_none() {
            return;
        }
        let now = (position, message.map(str::to_string));
        if self.queue_said.as_ref() == Some(&now) {
            return;
        }
        let mut line = "queued at Perry Hub".to_string();
        if let Some(p) = position {
            line.push_str(&format!(", position {p}"));
        }
        if let Some(m) = message {
            line.push_str(&format!(": {m}"));
        }
        self.log.event(&line);
        self.queue_said = Some(now);
    }

    /// Is the job failed now (read from the store)?
    fn job_failed(&self) -> bool {
        matches!(
            self.app.store.job_by_id(self.job.id),
            Ok(Some(j)) if j.status == crate::store::JobStatus::Failed
        )
    }

    fn on_message(&mut self, m: HubMessage, stop: &AtomicBool) -> Step {
        let id = self.job.id;
        match m {
            // Not written to the log: the hub answers every subscribe with
            // position 0, also for a build under way.
            HubMessage::JobCreated { position } => {
                self.progress.queue_position = position;
                self.progress_unsaved = true;
                self.save_progress(false);
                Step::Continue
            }
            HubMessage::QueueUpdate { position, message } => {
                self.say_queue(position, message.as_deref());
                self.progress.queue_position = position;
                if message.is_some() {
                    self.progress.message = message.map(|m| clip(&m, 255));
                }
                self.progress_unsaved = true;
                self.save_progress(false);
                Step::Continue
            }
            HubMessage::Stage { stage, message } => {
                match message.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
                    Some(m) => self
                        .log
                        .push(LogStream::Stage, &format!("stage: {stage} — {m}")),
                    None => self.log.push(LogStream::Stage, &format!("stage: {stage}")),
                }
                if !self.stage_seen {
                    self.stage_seen = true;
                    if let Some(accepted) = self.job.submitted_at {
                        let queued = now_millis() as f64 / 1000.0 - accepted as f64;
                        self.app
                            .metrics
                            .record_hub_queue_time(&self.job.platform, queued);
                    }
                }
                self.queue_said = None;
                let stage = clip(&stage, 32);
                let changed = self.progress.stage.as_deref() != Some(stage.as_str());
                if changed {
                    self.log.flush();
                }
                self.progress.stage = Some(stage);
                self.progress.message = message.map(|m| clip(&m, 255));
                // A build that left the queue has no place in it.
                self.progress.queue_position = None;
                self.progress_unsaved = true;
                self.save_progress(changed);
                Step::Continue
            }
            HubMessage::Progress {
                stage,
                percent,
                message,
            } => {
                if let Some(stage) = stage {
                    self.progress.stage = Some(clip(&stage, 32));
                }
                if let Some(p) = percent {
                    self.progress.percent = Some(p.clamp(0.0, 100.0).round() as i64);
                }
                if message.is_some() {
                    self.progress.message = message.map(|m| clip(&m, 255));
                }
                self.progress_unsaved = true;
                self.save_progress(false);
                Step::Continue
            }
            HubMessage::Other => Step::Continue,
            HubMessage::Log { line, stream, .. } => {
                let to = match stream.as_deref() {
                    Some("stderr") => LogStream::Stderr,
                    _ => LogStream::Stdout,
                };
                self.log.push(to, &line);
                if to == LogStream::Stderr {
                    if self.stderr_tail.len() == STDERR_TAIL {
                        self.stderr_tail.pop_front();
                    }
                    let line: String = bounded(&line).chars().take(MAX_LINE_CHARS).collect();
                    self.stderr_tail.push_back(line);
                }
                Step::Continue
            }
            HubMessage::Unreadable(why) => {
                // It may hold a download link (an artifact_ready with a
                // field missing).
                let why = self.log.redactor().redact(&why);
                log::warn!("job {id}: unreadable message from Perry Hub: {why}");
                self.log
                    .event(&format!("unreadable message from Perry Hub: {why}"));
                Step::Continue
            }
            HubMessage::ArtifactReady {
                target,
                artifact_name,
                sha256,
                download_url,
                ..
            } => {
                let Some(platform) = self.job.platform() else {
                    self.fail(&format!("unknown platform {:?}", self.job.platform));
                    return Step::Over;
                };
                let announced = format!(
                    "artifact announced: {} (target {}, sha256 {})",
                    crate::validate::printable(&artifact_name),
                    crate::validate::printable(&target),
                    crate::validate::printable(&sha256)
                );
                if !unpack::carries_program(platform, &target) {
                    log::info!(
                        "job {id}: artifact {} ({}) does not carry the program; waiting",
                        crate::validate::printable(&artifact_name),
                        crate::validate::printable(&target)
                    );
                    self.log.event(&format!(
                        "{announced}; it does not carry the program: waiting for the next one"
                    ));
                    return Step::Continue;
                }
                self.log.event(&announced);
                self.fetch(&target, &artifact_name, &sha256, &download_url, stop);
                Step::Over
            }
            HubMessage::Error { code, message } => {
                // The hub's words may quote a secret (a key, a download
                // link): redacted before they are logged or kept.
                let redact =
                    |s: Option<&str>| self.log.redactor().redact(&bounded(s.unwrap_or("")));
                let code = redact(code.as_deref());
                let message = redact(message.as_deref());
                self.log.push(
                    LogStream::Error,
                    &match (code.is_empty(), message.is_empty()) {
                        (true, _) => message.clone(),
                        (false, true) => code.clone(),
                        (false, false) => format!("{code}: {message}"),
                    },
                );
                if code == "JOB_NOT_FOUND" {
                    self.resubmit(
                        "job_not_found",
                        format!(
                            "Perry Hub no longer knows hub job {} (it restarted and forgot its jobs)",
                            self.hub_job
                        ),
                    );
                    return Step::Over;
                }
                log::warn!("job {id}: Perry Hub reported {code}: {message}");
                self.last_error = Some(if code.is_empty() {
                    message
                } else {
                    format!("{code}: {message}")
                });
                Step::Continue
            }
            HubMessage::Complete { success: false, .. } => {
                let mut why = match &self.last_error {
                    Some(e) => format!("Perry Hub: build failed: {e}"),
                    None => "Perry Hub: build failed".to_string(),
                };
                // What the publisher needs to fix it, without opening a log.
                if !self.stderr_tail.is_empty() {
                    why.push_str("\ncompiler output (stderr, last lines):");
                    for line in &self.stderr_tail {
                        why.push_str("\n  ");
                        why.push_str(line);
                    }
                }
                self.log.event("Perry Hub: the build failed");
                self.fail(&why);
                Step::Over
            }
            HubMessage::Complete { success: true, .. } => {
                self.log
                    .event("Perry Hub: the build completed without an artifact for hone-build");
                let why = match &self.last_error {
                    Some(e) => format!(
                        "the build reported success but no artifact was received (the hub said: {e})"
                    ),
                    None => "the build reported success but no artifact was received".to_string(),
                };
                self.resubmit("no_artifact", why);
                Step::Over
            }
        }
    }

    /// Downloads, verifies, unpacks and records the program, at once: the
    /// link is single-use and expires minutes after the worker uploaded.
    /// The lease is renewed meanwhile, so nobody else downloads it too.
    fn fetch(&mut self, target: &str, name: &str, sha256: &str, url: &str, stop: &AtomicBool) {
        let id = self.job.id;
        let done = AtomicBool::new(false);
        let (app, hub_job) = (self.app, self.hub_job.clone());
        let result = std::thread::scope(|s| {
            s.spawn(|| {
                let mut last = Instant::now();
                while !done.load(Ordering::Acquire) && !stop.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(10));
                    if last.elapsed() >= RENEW_EVERY {
                        last = Instant::now();
                        let _ = app.store.renew_follow(
                            id,
                            &app.instance,
                            &hub_job,
                            now_millis() + LEASE.as_millis() as i64,
                        );
                    }
                }
            });
            let r = self.download_and_record(target, name, sha256, url);
            done.store(true, Ordering::Release);
            r
        });
        match result {
            Ok(stored) => {
                self.app.metrics.artifacts_fetched.inc();
                log::info!(
                    "job {id}: program from hub job {} stored ({} bytes, sha256 {}){}",
                    self.hub_job,
                    stored.size,
                    stored.sha256,
                    if stored.changed {
                        ""
                    } else {
                        "; it was already there"
                    }
                );
            }
            Err(Fetch::Resubmit(cause, why)) => self.resubmit(cause, why),
            Err(Fetch::Fail(why)) => self.fail(&why),
        }
    }

    fn download_and_record(
        &mut self,
        target: &str,
        name: &str,
        sha256: &str,
        url: &str,
    ) -> Result<intake::Stored, Fetch> {
        let (app, job) = (self.app, self.job);
        let artifact = crate::validate::printable(name);
        let mut body = app.hub.download(url).map_err(|e| match e {
            DownloadError::Refused(m) | DownloadError::Failed(m) => {
                Fetch::Resubmit("download_failed", format!("{artifact}: {m}"))
            }
        })?;
        let mut counted = CountingReader::new(&mut body);
        let package = intake::receive(app, job, &mut counted, Encoding::Base64);
        app.metrics.artifact_fetched_bytes.inc_by(counted.count);
        if let Ok(p) = &package {
            self.log.event(&format!(
                "downloaded {artifact}: {} bytes of base64, {} bytes decoded",
                counted.count, p.streamed.size
            ));
        }
        let package = package.map_err(|e| match e.status {
            413 => Fetch::Fail(format!("{artifact}: {}", e.message)),
            _ => Fetch::Resubmit(
                "download_failed",
                format!("{artifact}: download failed: {}", e.message),
            ),
        })?;
        intake::verify(job, &package, sha256).map_err(|_| {
            Fetch::Resubmit(
                "wrong_sha256",
                format!(
                    "{artifact}: the downloaded bytes do not match the sha256 Perry Hub announced; nothing was stored"
                ),
            )
        })?;
        self.log
            .event(&format!("sha256 verified: {}", package.streamed.sha256));
        let (program, origin) = intake::unpack(
            app,
            job,
            package,
            name,
            target,
            &hub_app_name(&job.plugin_name),
        )
        .map_err(|e| {
            if e.is_package_fault() {
                Fetch::Fail(format!("no program stored: {e}"))
            } else {
                Fetch::Resubmit("internal", format!("{e}"))
            }
        })?;
        self.log.event(&format!(
            "program extracted: {} ({} bytes, sha256 {})",
            crate::validate::printable(origin.member.as_deref().unwrap_or("the artifact itself")),
            program.streamed.size,
            program.streamed.sha256
        ));
        let hub_job = self.hub_job.clone();
        let by = Deliverer::HubJob(&hub_job);
        let stored =
            intake::record(app, job, by, program, Some(origin)).map_err(|e: ApiError| {
                match e.status {
                    409 if e.code == "JOB_SUPERSEDED" => Fetch::Fail(format!(
                        "{artifact}: the job was reset or submitted again meanwhile; nothing stored"
                    )),
                    409 => Fetch::Fail(format!(
                        "{artifact}: this build already completed with a different program"
                    )),
                    _ => Fetch::Resubmit(
                        "internal",
                        format!("storing the program failed: {}", e.message),
                    ),
                }
            })?;
        self.log.event(&format!(
            "{}{}",
            stored.log_line(),
            if stored.changed {
                ""
            } else {
                "; it was already there"
            }
        ));
        Ok(stored)
    }

    /// Submits the job again as a new hub job (or fails it once
    /// SUBMIT_MAX_ATTEMPTS submissions were made).
    fn resubmit(&mut self, cause: &'static str, why: String) {
        let id = self.job.id;
        let why = self.log.redactor().redact(&why);
        match self.app.store.resubmit(
            id,
            &self.hub_job,
            &why,
            self.app.cfg.submit_max_attempts,
            now_millis(),
            now_secs(),
        ) {
            Ok(ResubmitOutcome::Requeued) => {
                self.app.metrics.record_resubmission(cause);
                log::warn!("job {id}: {why}; submitting it again");
                self.log
                    .event(&format!("{why}; submitting it again as a new hub job"));
            }
            Ok(ResubmitOutcome::Failed) => {
                log::warn!("job {id}: {why}; no submissions left: failed");
                self.log.event(&format!(
                    "{why}; no submissions left (SUBMIT_MAX_ATTEMPTS): the build failed"
                ));
            }
            Ok(ResubmitOutcome::Unchanged) => {
                log::info!("job {id}: {why}; the job changed meanwhile: nothing to do");
            }
            Err(e) => log::warn!("job {id}: {why}; resubmission not recorded: {e}"),
        }
    }

    /// Fails the job with `why` (redacted: it may quote the hub's output).
    fn fail(&mut self, why: &str) {
        let id = self.job.id;
        let why = self.log.redactor().redact(why);
        match self
            .app
            .store
            .fail_followed(id, &self.hub_job, &why, now_secs())
        {
            Ok(true) => {
                log::warn!("job {id} failed: {why}");
                let first = why.lines().next().unwrap_or_default();
                self.log.event(&format!("the build failed: {first}"));
            }
            Ok(false) => log::info!("job {id}: {why}; the job changed meanwhile"),
            Err(e) => log::warn!("job {id}: {why}; not recorded: {e}"),
        }
    }

    /// BUILD_TIMEOUT_SECS passed: cancel the hub job (best effort) and fail it.
    fn give_up(&mut self, sock: Option<&mut HubSocket>) {
        if let Some(sock) = sock {
            let _ = sock.cancel(&self.hub_job);
        } else if let Some(url) = &self.app.cfg.perry_hub_ws_url
            && let Ok(mut sock) = HubSocket::connect(url, Duration::from_secs(5), POLL)
        {
            let _ = sock.subscribe(&self.hub_job);
            let _ = sock.cancel(&self.hub_job);
            sock.close();
        }
        let secs = self.app.cfg.build_timeout_secs;
        self.fail(&format!(
            "build timed out: no artifact within BUILD_TIMEOUT_SECS ({secs} s) of submission; cancelled at Perry Hub"
        ));
    }
}

/// Why fetching an announced artifact gave no stored program.
enum Fetch {
    /// Submit again (cause for the metrics, message).
    Resubmit(&'static str, String),
    /// The job fails with this message.
    Fail(String),
}

/// Delay before reconnect `n` (1, 2, …): 250 ms doubling to 30 s, ±25 %.
fn reconnect_delay(n: u32) -> Duration {
    crate::app::backoff(Duration::from_millis(250), Duration::from_secs(30), n)
}

/// [`bounded`], then at most `max` characters (a column's width).
fn clip(s: &str, max: usize) -> String {
    bounded(s).chars().take(max).collect()
}

/// A hub message made safe to store and show: printable, bounded.
fn bounded(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    clean.trim().to_string()
}

/// Counts the bytes read through it (downloaded bytes, for the metrics).
struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R> CountingReader<R> {
    fn new(inner: R) -> Self {
        CountingReader { inner, count: 0 }
    }
}

impl<R: std::io::Read> std::io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follow_place_is_given_back_however_its_thread_ends() {
        let active = Arc::new(AtomicUsize::new(0));
        // A thread that panics.
        let slot = Slot::take(&active);
        assert_eq!(active.load(Ordering::Acquire), 1);
        let t = std::thread::spawn(move || {
            let _slot = slot;
            panic!("a follow thread panics");
        });
        assert!(t.join().is_err());
        assert_eq!(active.load(Ordering::Acquire), 0);
        // A thread that could not be started: its closure, holding the
        // place, is dropped.
        let slot = Slot::take(&active);
        let never = move || drop(slot);
        drop(never);
        assert_eq!(active.load(Ordering::Acquire), 0);
    }

    #[test]
    fn reconnect_delays_grow_and_cap() {
        let d1 = reconnect_delay(1).as_millis();
        assert!((187..=313).contains(&d1), "{d1}");
        let d30 = reconnect_delay(30).as_millis();
        assert!((22_500..=37_500).contains(&d30), "{d30}");
    }

    #[test]
    fn hub_messages_are_bounded_and_printable() {
        let long = "x".repeat(5000);
        assert_eq!(bounded(&long).len(), MAX_MESSAGE_CHARS);
        assert_eq!(bounded("a\u{1b}[2Jb\nc"), "a [2Jb c");
    }
}
