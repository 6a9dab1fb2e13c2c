//! The store: the marketplace's tables (docs/database.md) behind one trait, written
//! once (`flows`: every transaction sequence, over the neutral connection
//! interface of `sql`) for two dialects: MySQL (production) and SQLite
//! (embedded default), which supply only connections, DDL and the SQL text
//! that differs.
//!
//! Every multi-statement change is one transaction inside one trait method;
//! callers never hold a transaction. Rules of the marketplace (which
//! platforms an upload builds, the primary artifact) live here as plain
//! functions.

use crate::error::StoreError;
use crate::platform::Platform;
use serde::Serialize;

mod flows;
pub mod mysql;
pub mod sql;
pub mod sqlite;

pub use flows::SqlStore;

/// A job's state (docs/jobs.md). `Building` is the old server's; hone-build
/// treats it like `Queued`. A state this version does not know (a row
/// written by another program) is kept as `Other`: it counts as neither in
/// progress, completed nor failed, so it blocks no upload, is never rebuilt,
/// claimed or timed out, and is reported and counted under its own name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobStatus {
    Pending,
    Queued,
    Building,
    Completed,
    Failed,
    Other(String),
}

impl JobStatus {
    pub fn as_str(&self) -> &str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Queued => "queued",
            JobStatus::Building => "building",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Other(s) => s,
        }
    }

    /// Never fails: an unknown state becomes `Other`.
    pub fn parse(s: &str) -> JobStatus {
        match s {
            "pending" => JobStatus::Pending,
            "queued" => JobStatus::Queued,
            "building" => JobStatus::Building,
            "completed" => JobStatus::Completed,
            "failed" => JobStatus::Failed,
            other => JobStatus::Other(other.to_string()),
        }
    }

    /// States in which a build is still under way.
    pub fn in_progress(&self) -> bool {
        matches!(
            self,
            JobStatus::Pending | JobStatus::Queued | JobStatus::Building
        )
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for JobStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<str> for JobStatus {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for JobStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One `buildJobs` row, joined with its plugin's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: i64,
    pub plugin_id: i64,
    pub plugin_name: String,
    pub version: String,
    /// The hub's platform name (`macos`); rows of the old server may hold anything.
    pub platform: String,
    pub hub_job_id: Option<String>,
    pub status: JobStatus,
    pub error_message: Option<String>,
    pub created_at: i64,
    pub completed_at: Option<i64>,
    /// The job's own callback token; `None` for rows created by the old server.
    #[serde(skip)]
    pub callback_token: Option<String>,
    pub attempts: u32,
    /// Unix milliseconds: when a pending job may be submitted (again).
    pub next_attempt_at_ms: i64,
    /// Unix seconds: when the hub accepted it.
    pub submitted_at: Option<i64>,
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
    /// The manifest's entry point, recorded at upload.
    pub entry: Option<String>,
    pub updated_at: Option<i64>,
    /// What the hub last said of the build under way (queued jobs only).
    pub progress: BuildProgress,
    /// The job's current log attempt: incremented by every claim for
    /// submission and never reset, so a job's attempts are numbered 1, 2, 3…
    /// for good. 0: never submitted by hone-build (no log).
    pub log_attempt: u32,
}

/// A build's progress as the hub reports it over the WebSocket (its latest
/// `stage`, `progress` and `queue_update`). Every field may be unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildProgress {
    /// `extracting`, `compiling`, … (at most 32 characters).
    pub stage: Option<String>,
    /// 0–100.
    pub percent: Option<i64>,
    /// The hub's words about it (at most 255 characters).
    pub message: Option<String>,
    /// Place in the hub's queue, when it said.
    pub queue_position: Option<i64>,
}

/// The stream a build log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// The compiler's standard output, as the hub relays it.
    Stdout,
    /// The compiler's standard error, as the hub relays it.
    Stderr,
    /// A stage the hub reported.
    Stage,
    /// An error the hub reported.
    Error,
    /// hone-build's own events for the job.
    HoneBuild,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Stage => "stage",
            LogStream::Error => "error",
            LogStream::HoneBuild => "hone-build",
        }
    }
}

/// A line to append to a build log ([`Store::append_log`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLogLine {
    /// Unix milliseconds.
    pub at_ms: i64,
    pub stream: LogStream,
    pub text: String,
}

/// A stored build log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// The row's id: increasing in the order lines were appended.
    pub seq: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// [`LogStream::as_str`] (kept as text: a row may name a stream this
    /// version does not know).
    pub stream: String,
    pub text: String,
}

/// Part of one log attempt, as [`Store::read_log`] returns it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogPage {
    pub attempt: u32,
    pub lines: Vec<LogLine>,
    /// Lines, and their bytes, dropped from the start of the attempt's log
    /// to keep it within its bound.
    pub dropped_lines: i64,
    pub dropped_bytes: i64,
}

/// The end of one log attempt, as [`Store::read_log_tail`] returns it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogTail {
    pub page: LogPage,
    /// Lines still stored before the first one of `page` (not read).
    pub earlier_lines: i64,
}

/// The longest line [`Store::append_log`] stores, in bytes (longer ones
/// are cut at a character boundary): a MySQL `TEXT` holds 65535.
pub const LOG_LINE_MAX_BYTES: usize = 16 * 1024;

impl Job {
    pub fn platform(&self) -> Option<Platform> {
        Platform::from_hub_name(&self.platform)
    }
}

/// A version's state from its builds' (`/status`'s `overall`, the build
/// page's): `failed` if any failed, else `completed` if all completed,
/// else `building`.
pub fn overall<'a>(statuses: impl IntoIterator<Item = &'a JobStatus>) -> &'static str {
    let (mut any_failed, mut all_completed) = (false, true);
    for s in statuses {
        any_failed |= *s == JobStatus::Failed;
        all_completed &= *s == JobStatus::Completed;
    }
    if any_failed {
        "failed"
    } else if all_completed {
        "completed"
    } else {
        "building"
    }
}

/// How many characters the database's columns hold for what an upload
/// names (VARCHAR widths count characters). A longer value is refused with
/// 400 before anything is written: a strict server would fail the
/// transaction (500), a lenient one truncate it silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnLimits {
    /// `plugins.name`.
    pub name: usize,
    /// `plugins.displayName`.
    pub display_name: usize,
    /// The narrower of `pluginVersions.version` and `buildJobs.version`.
    pub version: usize,
    /// `buildJobs.entry`.
    pub entry: usize,
}

impl ColumnLimits {
    /// The marketplace's own schema (`name VARCHAR(128)`, `displayName
    /// VARCHAR(255)`, `version VARCHAR(64)`) and the `entry VARCHAR(256)`
    /// hone-build adds: the tables hone-build creates, and the embedded
    /// store's limits.
    pub const MARKETPLACE: ColumnLimits = ColumnLimits {
        name: 128,
        display_name: 255,
        version: 64,
        entry: 256,
    };

    /// What the request rules allow at most (docs/api.md): no column makes
    /// a limit larger.
    pub const RULES: ColumnLimits = ColumnLimits {
        name: 128,
        display_name: 256,
        version: 128,
        entry: 256,
    };

    /// The limits of columns as a database reports them: `(table, column,
    /// width)`; a column not reported (not a `VARCHAR`) limits nothing
    /// beyond [`ColumnLimits::RULES`].
    pub fn from_widths(widths: &[(String, String, i64)]) -> ColumnLimits {
        let width = |table: &str, column: &str, default: usize| {
            widths
                .iter()
                .filter(|(t, c, _)| t.eq_ignore_ascii_case(table) && c.eq_ignore_ascii_case(column))
                .filter_map(|(_, _, w)| usize::try_from(*w).ok())
                .min()
                .map_or(default, |w| w.min(default))
        };
        let m = ColumnLimits::RULES;
        ColumnLimits {
            name: width("plugins", "name", m.name),
            display_name: width("plugins", "displayName", m.display_name),
            version: width("pluginVersions", "version", m.version).min(width(
                "buildJobs",
                "version",
                m.version,
            )),
            entry: width("buildJobs", "entry", m.entry),
        }
    }
}

/// The entry file of an upload that names none (docs/api.md), also given to
/// a row of the old server (which recorded none) when it is retried.
pub const DEFAULT_ENTRY: &str = "src/index.ts";

/// What `POST /upload` records.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub name: String,
    pub version: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub entry: String,
    pub platforms: Vec<Platform>,
    /// Unix seconds.
    pub now: i64,
    /// Unix milliseconds from which the background loop may submit the new jobs:
    /// until then they are reserved for the upload request, which submits
    /// them itself (an `Ids` claim). If that request dies, the background loop
    /// takes them after this time.
    pub reserved_until_ms: i64,
}

/// Why an upload is refused (docs/api.md, the 409 rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Every platform of the version completed.
    VersionExists,
    /// Some platform is pending, queued or building.
    BuildInProgress,
    /// The name, or the version, differs only in letter case from one
    /// already recorded: these are the recorded spellings.
    CaseConflict(Spelling),
}

/// A plugin name and version as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spelling {
    pub name: String,
    pub version: String,
}

/// Result of [`Store::job_by_legacy_callback`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyLookup {
    Found(Box<Job>),
    NotFound,
    /// This many jobs spell the id: it names none of them.
    Ambiguous(usize),
}

impl LegacyLookup {
    /// The job, when exactly one spells the id.
    pub fn found(self) -> Option<Job> {
        match self {
            LegacyLookup::Found(j) => Some(*j),
            _ => None,
        }
    }
}

/// Result of [`Store::record_upload`].
#[derive(Debug)]
pub enum UploadOutcome {
    Refused(Refusal),
    /// The jobs now pending (new rows, or failed rows reset), in platform order.
    Recorded(Vec<Job>),
}

/// The platforms an upload builds, or why it is refused (docs/api.md): completed
/// builds are kept, failed ones and requested ones never built are built.
/// `existing` are the version's jobs.
pub fn plan_upload(existing: &[Job], requested: &[Platform]) -> Result<Vec<Platform>, Refusal> {
    if !existing.is_empty() && existing.iter().all(|j| j.status == JobStatus::Completed) {
        return Err(Refusal::VersionExists);
    }
    if existing.iter().any(|j| j.status.in_progress()) {
        return Err(Refusal::BuildInProgress);
    }
    let mut out: Vec<Platform> = Platform::ALL
        .into_iter()
        .filter(
            |p| match existing.iter().find(|j| j.platform == p.hub_name()) {
                Some(j) => j.status == JobStatus::Failed,
                None => requested.contains(p),
            },
        )
        .collect();
    out.sort_by_key(|p| p.hub_name());
    Ok(out)
}

/// A verified artifact, as recorded by [`Store::complete_job`].
#[derive(Debug, Clone)]
pub struct Artifact {
    pub size: i64,
    pub sha256: String,
    /// Unix seconds.
    pub now: i64,
}

/// Who delivers an artifact to [`Store::complete_job`]. Checked again under
/// the job's row lock: a delivery that began before the job changed hands
/// (a new upload reset it with a new token, or it was submitted again as
/// another hub job) cannot complete it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deliverer<'a> {
    /// A callback authenticated by this token: the row must still hold it.
    /// `None`: the old server's callback form, for a row without a token.
    Callback(Option<&'a str>),
    /// The follower of this hub job: the row must still hold its id.
    HubJob(&'a str),
}

/// Result of [`Store::complete_job`].
#[derive(Debug, PartialEq, Eq)]
pub enum CompleteOutcome {
    /// The job is now completed (it was pending, queued, building or failed).
    Completed,
    /// It was already completed with these very bytes: nothing changed.
    AlreadyCompleted,
    /// It was already completed with other bytes: refused, nothing changed.
    Conflict,
    /// No such job.
    NotFound,
    /// The job no longer belongs to this delivery (its token or hub job
    /// changed since the delivery began): refused, nothing changed.
    Superseded,
}

/// What the version row describes after a completion: docs/api.md's
/// `platforms`/primary rule, computed from the version's completed jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionArtifacts {
    /// Sorted platform ids, as a JSON array string.
    pub platforms_json: String,
    pub download_url: Option<String>,
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
}

/// A completed build of a version, as [`version_artifacts`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedBuild {
    /// The hub's platform name.
    pub platform: String,
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
}

/// The version row's artifact columns, from the version's completed builds.
pub fn version_artifacts(
    name: &str,
    version: &str,
    completed: &[CompletedBuild],
) -> VersionArtifacts {
    let platforms: Vec<Platform> = completed
        .iter()
        .filter_map(|c| Platform::from_hub_name(&c.platform))
        .collect();
    let mut ids: Vec<&str> = platforms.iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    ids.dedup();
    let platforms_json = serde_json::to_string(&ids).expect("strings serialize");
    match Platform::primary(&platforms) {
        Some(primary) => {
            let c = completed
                .iter()
                .find(|c| c.platform == primary.hub_name())
                .expect("primary is among completed");
            VersionArtifacts {
                platforms_json,
                download_url: Some(download_url(name, version, primary)),
                size_bytes: c.size_bytes,
                sha256: c.sha256.clone(),
            }
        }
        None => VersionArtifacts {
            platforms_json,
            download_url: None,
            size_bytes: None,
            sha256: None,
        },
    }
}

/// `/api/v1/pkg/<name>/<version>?platform=<platform-id>` (names are validated: no escaping needed).
pub fn download_url(name: &str, version: &str, platform: Platform) -> String {
    format!("/api/v1/pkg/{name}/{version}?platform={}", platform.id())
}

/// Which pending jobs a claim takes.
#[derive(Debug, Clone)]
pub enum ClaimFilter {
    /// Due jobs (nextAttemptAt <= now), at most this many.
    Due(usize),
    /// These jobs, if pending and never attempted (the first submission
    /// right after an upload; a job another process already claimed has
    /// attempts > 0 and is left alone).
    Ids(Vec<i64>),
}

/// Failure of a submission attempt, recorded by [`Store::record_attempt`].
#[derive(Debug, Clone)]
pub enum AttemptResult {
    /// The hub accepted: the job becomes `queued`.
    Accepted { hub_job_id: String },
    /// Retryable: stays `pending`, next attempt at this Unix millisecond.
    Retry {
        next_attempt_at_ms: i64,
        error: String,
    },
    /// Not retryable (or attempts exhausted): `failed`.
    Failed { error: String },
}

/// The marketplace database, as hone-build uses it. Implementations are
/// `Send + Sync` and safe to share between threads and between processes
/// on one database (claims are atomic).
pub trait Store: Send + Sync {
    /// `"mysql"` or `"sqlite"`, as `/health` reports it.
    fn kind(&self) -> &'static str;
    /// A trivial query: does the database answer?
    fn ping(&self) -> Result<(), StoreError>;
    /// Creates missing tables, adds missing `buildJobs` columns and indexes,
    /// and reads the columns' widths ([`Store::column_limits`]).
    /// Idempotent; never drops or rewrites anything.
    fn migrate(&self) -> Result<(), StoreError>;

    /// What the columns hold, as read by the last [`Store::migrate`]
    /// (MySQL: `information_schema.COLUMNS`); the embedded store, and any
    /// store before its migration, has [`ColumnLimits::MARKETPLACE`].
    fn column_limits(&self) -> ColumnLimits;

    /// The jobs of one version (empty when the plugin or version is unknown),
    /// ordered by platform. Names and versions are compared exactly, on
    /// every store (whatever the database's collation).
    fn version_jobs(&self, name: &str, version: &str) -> Result<Vec<Job>, StoreError>;

    /// The recorded spelling of a plugin name, or of a version of the
    /// plugin `name`, that differs from `name`/`version` only in letter
    /// case (and no exact one is recorded): an upload under such a spelling
    /// is refused ([`Refusal::CaseConflict`]), since a case-insensitive
    /// collation would take it for the recorded one and a case-sensitive
    /// one for another.
    fn case_twin(&self, name: &str, version: &str) -> Result<Option<Spelling>, StoreError>;

    /// Records an upload in one transaction: refuses a name or version that
    /// differs only in case from a recorded one ([`Store::case_twin`]),
    /// locks the version, applies [`plan_upload`], and if not refused upserts the `plugins` row, inserts
    /// the `pluginVersions` row if absent, creates (or resets failed) jobs as
    /// `pending` with fresh callback tokens from `new_token`, and last, just
    /// before COMMIT, calls `commit_file` (which puts the tarball in place).
    /// When `commit_file` fails, nothing is written. When this returns an
    /// error after `commit_file` ran (the COMMIT failed), the caller must put
    /// back what the file replaced.
    fn record_upload(
        &self,
        up: &NewUpload,
        new_token: &mut dyn FnMut() -> String,
        commit_file: &mut dyn FnMut() -> std::io::Result<()>,
    ) -> Result<UploadOutcome, StoreError>;

    /// Atomically claims pending jobs for submission: each claimed job's
    /// `attempts` and `logAttempt` are incremented and its `nextAttemptAt` pushed to
    /// `now_ms + lease_ms`, so no other process claims it meanwhile. Only
    /// jobs created by hone-build (with a callback token) are claimed.
    fn claim(
        &self,
        filter: ClaimFilter,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<Job>, StoreError>;

    /// Records the outcome of the submission claimed as attempt `attempt`.
    /// Ignored (returns false) if the job is no longer that pending claim.
    fn record_attempt(
        &self,
        job_id: i64,
        attempt: u32,
        result: &AttemptResult,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Fails queued/building jobs submitted before `submitted_before` (Unix
    /// seconds) with `message`, and the old server's `pending` rows (no
    /// callback token: nobody else will ever submit them). Rows of the old
    /// server have no submission time; their creation time counts. Returns
    /// the jobs it failed.
    fn fail_timed_out(
        &self,
        submitted_before: i64,
        message: &str,
        now: i64,
    ) -> Result<Vec<Job>, StoreError>;

    fn job_by_id(&self, id: i64) -> Result<Option<Job>, StoreError>;

    /// Resolves the old callback form `<name>-<version>-<platform>` among
    /// the old server's rows (no callback token) by comparing it with each
    /// job's own name, version and platform in the database (never by
    /// splitting on dashes). hone-build's own jobs are never named by it.
    /// More than one match: [`LegacyLookup::Ambiguous`].
    fn job_by_legacy_callback(&self, callback_id: &str) -> Result<LegacyLookup, StoreError>;

    /// Completes a job in one transaction: locks it; refuses it when it no
    /// longer belongs to `by` (its token or hub job changed); refuses a
    /// completed job with other bytes; otherwise marks the job completed with size and
    /// sha256, updates the version's `platforms`, `downloadUrl`, `sizeBytes`,
    /// `sha256`, and last, just before COMMIT, calls `commit_file` (which
    /// puts the binary and manifest in place). Errors after `commit_file`
    /// ran: as for [`Store::record_upload`].
    fn complete_job(
        &self,
        job_id: i64,
        by: Deliverer<'_>,
        artifact: &Artifact,
        commit_file: &mut dyn FnMut() -> std::io::Result<()>,
    ) -> Result<CompleteOutcome, StoreError>;

    /// The version row's artifact columns: `(platforms, downloadUrl, sizeBytes, sha256)`.
    fn version_row(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<VersionArtifacts>, StoreError>;

    /// Jobs, newest first, optionally of one plugin or version.
    fn list_jobs(&self, name: Option<&str>, version: Option<&str>) -> Result<Vec<Job>, StoreError>;

    /// Puts failed jobs of a version (optionally one platform), and the old
    /// server's `pending` rows (no callback token), back to pending with
    /// attempts reset, due at `now`. A row of the old server gets a callback
    /// token from `new_token` (hone-build submits it from then on) and, if
    /// it has none, the default entry [`DEFAULT_ENTRY`]. Returns how many.
    fn retry_failed(
        &self,
        name: &str,
        version: &str,
        platform: Option<&str>,
        now: i64,
        new_token: &mut dyn FnMut() -> String,
    ) -> Result<usize, StoreError>;

    /// Number of jobs in each state.
    fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError>;

    /// Claims up to `limit` jobs to follow over the hub's WebSocket:
    /// hone-build's own queued jobs with a hub job id whose follow lease
    /// (`followUntil`, Unix ms) has lapsed. Each becomes followed by `owner`
    /// until `now_ms + lease_ms`; no other process claims it meanwhile.
    fn claim_follows(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError>;

    /// Extends `owner`'s follow lease to `until_ms`. False when the job is
    /// no longer `owner`'s to follow: taken over, or no longer queued with
    /// `hub_job_id` (completed by a callback, failed, resubmitted).
    fn renew_follow(
        &self,
        job_id: i64,
        owner: &str,
        hub_job_id: &str,
        until_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Gives up `owner`'s follow lease at once (a graceful stop), so that
    /// another process, or this one restarted, follows the job without delay.
    fn release_follow(&self, job_id: i64, owner: &str) -> Result<(), StoreError>;

    /// The hub job `hub_job_id` gave no program although it may: submit the
    /// job again as a new hub job (`pending`, due now, `why` as its last
    /// error), or fail it with `why` once it was submitted `max_attempts`
    /// times. Only while the job is still queued with that hub job.
    fn resubmit(
        &self,
        job_id: i64,
        hub_job_id: &str,
        why: &str,
        max_attempts: u32,
        now_ms: i64,
        now: i64,
    ) -> Result<ResubmitOutcome, StoreError>;

    /// Fails a followed job with `message`, while it is still queued with
    /// `hub_job_id`. True when it failed now.
    fn fail_followed(
        &self,
        job_id: i64,
        hub_job_id: &str,
        message: &str,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Records the progress the hub reported, while the job is still queued
    /// with `hub_job_id`. True when recorded.
    fn record_progress(
        &self,
        job_id: i64,
        hub_job_id: &str,
        progress: &BuildProgress,
    ) -> Result<bool, StoreError>;

    /// Appends `lines` to the log of (`job_id`, `attempt`) in one
    /// transaction, then drops the oldest lines of that attempt until its
    /// text totals at most `max_bytes`, counting what was dropped. A line
    /// longer than [`LOG_LINE_MAX_BYTES`] is cut. Returns the bytes stored
    /// (lines of `lines` dropped at once by the bound do not count).
    fn append_log(
        &self,
        job_id: i64,
        attempt: u32,
        lines: &[NewLogLine],
        max_bytes: u64,
    ) -> Result<u64, StoreError>;

    /// Lines of (`job_id`, `attempt`) with `seq > after_seq`, oldest first,
    /// at most `limit`, with the attempt's dropped counts. The lines and
    /// the counts are of one moment (read together, whatever appends run
    /// meanwhile). An attempt without a log reads as no lines and nothing
    /// dropped.
    fn read_log(
        &self,
        job_id: i64,
        attempt: u32,
        after_seq: i64,
        limit: usize,
    ) -> Result<LogPage, StoreError>;

    /// The last `limit` lines of (`job_id`, `attempt`), oldest first, with
    /// the attempt's dropped counts and how many of its stored lines come
    /// before them (not read), all of one moment like [`Store::read_log`].
    fn read_log_tail(&self, job_id: i64, attempt: u32, limit: usize)
    -> Result<LogTail, StoreError>;

    /// Removes the lines and totals of log attempts last written before
    /// `before_ms` (Unix ms; retention). Returns how many lines it removed.
    fn prune_logs(&self, before_ms: i64) -> Result<u64, StoreError>;
}

/// Result of [`Store::resubmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResubmitOutcome {
    /// Pending again: the background loop submits it as a new hub job.
    Requeued,
    /// No submissions left: failed.
    Failed,
    /// The job was no longer queued with that hub job: nothing changed.
    Unchanged,
}

/// The type of a column hone-build adds, as each dialect spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `INT` (MySQL) / `INTEGER`.
    Int,
    /// `BIGINT` (MySQL) / `INTEGER`.
    BigInt,
    /// `VARCHAR(n)` (MySQL) / `TEXT`.
    VarChar(u16),
}

/// A column hone-build adds to `buildJobs` when missing.
#[derive(Debug, Clone, Copy)]
pub struct AddedColumn {
    pub name: &'static str,
    pub ty: ColumnType,
    /// `NOT NULL DEFAULT <n>`; `None`: `NULL`.
    pub default: Option<i64>,
}

const fn col(name: &'static str, ty: ColumnType, default: Option<i64>) -> AddedColumn {
    AddedColumn { name, ty, default }
}

/// Columns hone-build adds to the old server's `buildJobs`.
pub(crate) const ADDED_JOB_COLUMNS: &[AddedColumn] = &[
    col("callbackToken", ColumnType::VarChar(64), None),
    col("attempts", ColumnType::Int, Some(0)),
    col("nextAttemptAt", ColumnType::BigInt, Some(0)),
    col("submittedAt", ColumnType::BigInt, None),
    col("sizeBytes", ColumnType::BigInt, None),
    col("sha256", ColumnType::VarChar(64), None),
    col("entry", ColumnType::VarChar(256), None),
    col("updatedAt", ColumnType::BigInt, None),
    col("followedBy", ColumnType::VarChar(64), None),
    col("followUntil", ColumnType::BigInt, Some(0)),
    col("stage", ColumnType::VarChar(32), None),
    col("progress", ColumnType::Int, None),
    col("progressMessage", ColumnType::VarChar(255), None),
    col("queuePosition", ColumnType::Int, None),
    col("logAttempt", ColumnType::Int, Some(0)),
];

/// An index hone-build adds to `buildJobs` when missing.
#[derive(Debug, Clone, Copy)]
pub struct AddedIndex {
    pub name: &'static str,
    pub columns: &'static str,
}

pub(crate) const ADDED_JOB_INDEXES: &[AddedIndex] = &[
    AddedIndex {
        name: "idx_buildJobs_due",
        columns: "status, nextAttemptAt",
    },
    AddedIndex {
        name: "idx_buildJobs_version",
        columns: "pluginId, version, platform",
    },
];

/// Opens the store the configuration names: MySQL with DB_HOST, else SQLite
/// in DATA_DIR. Does not migrate.
pub fn open(cfg: &crate::config::Config) -> Result<Box<dyn Store>, StoreError> {
    if cfg.embedded_store() {
        let path = cfg.data_dir.join("hone-build.sqlite3");
        Ok(Box::new(sqlite::SqliteStore::open(&path)?))
    } else {
        Ok(Box::new(mysql::MysqlStore::open(
            &mysql::MysqlSettings::from_config(cfg),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Platform::*;

    fn job(platform: &str, status: &str) -> Job {
        Job {
            id: 1,
            plugin_id: 1,
            plugin_name: "p".into(),
            version: "1".into(),
            platform: platform.into(),
            hub_job_id: None,
            status: JobStatus::parse(status),
            error_message: None,
            created_at: 0,
            completed_at: None,
            callback_token: None,
            attempts: 0,
            next_attempt_at_ms: 0,
            submitted_at: None,
            size_bytes: None,
            sha256: None,
            entry: None,
            updated_at: None,
            progress: BuildProgress::default(),
            log_attempt: 0,
        }
    }

    fn ex(rows: &[(&str, &str)]) -> Vec<Job> {
        rows.iter().map(|(a, b)| job(a, b)).collect()
    }

    #[test]
    fn plan_new_version_builds_requested() {
        assert_eq!(
            plan_upload(&[], &[Windows, Macos]).unwrap(),
            vec![Macos, Windows]
        );
    }

    #[test]
    fn plan_refusals() {
        let done = ex(&[("macos", "completed"), ("linux", "completed")]);
        assert_eq!(plan_upload(&done, &[Ios]), Err(Refusal::VersionExists));
        for s in ["pending", "queued", "building"] {
            let rows = ex(&[("macos", "failed"), ("linux", s)]);
            assert_eq!(
                plan_upload(&rows, &[Macos]),
                Err(Refusal::BuildInProgress),
                "{s}"
            );
        }
    }

    #[test]
    fn plan_rebuilds_failed_and_never_built_keeps_completed() {
        let rows = ex(&[("macos", "completed"), ("linux", "failed")]);
        assert_eq!(
            plan_upload(&rows, &[Macos, Windows]).unwrap(),
            vec![Linux, Windows]
        );
    }

    #[test]
    fn status_round_trip_and_unknown_states() {
        for s in ["pending", "queued", "building", "completed", "failed"] {
            let st = JobStatus::parse(s);
            assert!(!matches!(st, JobStatus::Other(_)), "{s}");
            assert_eq!(st.as_str(), s);
            assert_eq!(format!("{st:<10}|"), format!("{s:<10}|"));
        }
        let odd = JobStatus::parse("cancelled");
        assert_eq!(odd, JobStatus::Other("cancelled".into()));
        assert_eq!(odd.as_str(), "cancelled");
        assert!(!odd.in_progress());
        assert_eq!(serde_json::to_string(&odd).unwrap(), r#""cancelled""#);
        // An unknown state blocks nothing and is not rebuilt.
        let rows = ex(&[("linux", "cancelled"), ("macos", "failed")]);
        assert_eq!(
            plan_upload(&rows, &[Linux, Windows]).unwrap(),
            vec![Macos, Windows]
        );
        let rows = ex(&[("linux", "completed"), ("macos", "cancelled")]);
        assert_eq!(plan_upload(&rows, &[Linux]).unwrap(), vec![]);
    }

    #[test]
    fn column_limits_from_reported_widths() {
        let w = |t: &str, c: &str, n: i64| (t.to_string(), c.to_string(), n);
        assert_eq!(ColumnLimits::from_widths(&[]), ColumnLimits::RULES);
        let wide = ColumnLimits::from_widths(&[
            w("pluginVersions", "version", 128),
            w("buildJobs", "version", 255),
            w("plugins", "displayName", 1024),
        ]);
        assert_eq!(wide, ColumnLimits::RULES, "wider columns: the rules limit");
        let l = ColumnLimits::from_widths(&[
            w("pluginVersions", "version", 32),
            w("buildJobs", "version", 64),
            w("plugins", "displayName", 100),
            w("plugins", "NAME", 300),
            w("buildJobs", "entry", 80),
            w("plugins", "description", 7),
        ]);
        assert_eq!(
            l,
            ColumnLimits {
                name: 128,
                display_name: 100,
                version: 32,
                entry: 80,
            }
        );
        let l = ColumnLimits::from_widths(&[w("buildJobs", "version", 20)]);
        assert_eq!(l.version, 20, "the narrower of the two version columns");
    }

    #[test]
    fn primary_and_platforms() {
        let c = vec![
            CompletedBuild {
                platform: "windows".into(),
                size_bytes: Some(3),
                sha256: Some("w".into()),
            },
            CompletedBuild {
                platform: "linux".into(),
                size_bytes: Some(2),
                sha256: Some("l".into()),
            },
        ];
        let v = version_artifacts("p", "1.0.0", &c);
        assert_eq!(v.platforms_json, r#"["linux-x64","windows-x64"]"#);
        assert_eq!(
            v.download_url.as_deref(),
            Some("/api/v1/pkg/p/1.0.0?platform=linux-x64")
        );
        assert_eq!(v.size_bytes, Some(2));
        assert_eq!(v.sha256.as_deref(), Some("l"));
        let none = version_artifacts("p", "1", &[]);
        assert_eq!(none.platforms_json, "[]");
        assert_eq!(none.download_url, None);
    }
}
