//! The store: the marketplace's tables (SPEC 6) behind one trait, with a
//! MySQL implementation (production) and an SQLite one (embedded default).
//!
//! Every multi-statement change is one transaction inside one trait method;
//! callers never hold a transaction. Rules shared by both implementations
//! (which platforms an upload builds, the primary artifact) live here as
//! plain functions so that they are written once.

use crate::error::StoreError;
use crate::platform::Platform;
use serde::Serialize;

pub mod mysql;
pub mod sqlite;

/// Job states (SPEC 3). `building` is the old server's; hone-build treats it like `queued`.
pub mod status {
    pub const PENDING: &str = "pending";
    pub const QUEUED: &str = "queued";
    pub const BUILDING: &str = "building";
    pub const COMPLETED: &str = "completed";
    pub const FAILED: &str = "failed";

    /// States in which a build is still under way.
    pub fn in_progress(s: &str) -> bool {
        matches!(s, PENDING | QUEUED | BUILDING)
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
    pub status: String,
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
}

impl Job {
    pub fn platform(&self) -> Option<Platform> {
        Platform::from_hub_name(&self.platform)
    }
}

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
    /// Unix milliseconds from which the dispatcher may submit the new jobs:
    /// until then they are reserved for the upload request, which submits
    /// them itself (an `Ids` claim). If that request dies, the dispatcher
    /// takes them after this time.
    pub reserved_until_ms: i64,
}

/// Why an upload is refused (SPEC 2, both 409 rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every platform of the version completed.
    VersionExists,
    /// Some platform is pending, queued or building.
    BuildInProgress,
}

/// Result of [`Store::record_upload`].
#[derive(Debug)]
pub enum UploadOutcome {
    Refused(Refusal),
    /// The jobs now pending (new rows, or failed rows reset), in platform order.
    Recorded(Vec<Job>),
}

/// The platforms an upload builds, or why it is refused (SPEC 2): completed
/// builds are kept, failed ones and requested ones never built are built.
/// `existing` is `(platform, status)` of the version's jobs.
pub fn plan_upload(
    existing: &[(String, String)],
    requested: &[Platform],
) -> Result<Vec<Platform>, Refusal> {
    if !existing.is_empty() && existing.iter().all(|(_, s)| s == status::COMPLETED) {
        return Err(Refusal::VersionExists);
    }
    if existing.iter().any(|(_, s)| status::in_progress(s)) {
        return Err(Refusal::BuildInProgress);
    }
    let mut out: Vec<Platform> = Platform::ALL
        .into_iter()
        .filter(|p| {
            let row = existing.iter().find(|(name, _)| name == p.hub_name());
            match row {
                Some((_, s)) => s == status::FAILED,
                None => requested.contains(p),
            }
        })
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
}

/// What the version row describes after a completion: SPEC 2's
/// `platforms`/primary rule, computed from the version's completed jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionArtifacts {
    /// Sorted platform ids, as a JSON array string.
    pub platforms_json: String,
    pub download_url: Option<String>,
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
}

/// `completed`: `(hub platform name, size, sha256)` of a version's completed jobs.
pub fn version_artifacts(
    name: &str,
    version: &str,
    completed: &[(String, Option<i64>, Option<String>)],
) -> VersionArtifacts {
    let platforms: Vec<Platform> = completed
        .iter()
        .filter_map(|(p, _, _)| Platform::from_hub_name(p))
        .collect();
    let mut ids: Vec<&str> = platforms.iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    ids.dedup();
    let platforms_json = serde_json::to_string(&ids).expect("strings serialize");
    match Platform::primary(&platforms) {
        Some(primary) => {
            let (_, size, sha) = completed
                .iter()
                .find(|(p, _, _)| p == primary.hub_name())
                .expect("primary is among completed");
            VersionArtifacts {
                platforms_json,
                download_url: Some(download_url(name, version, primary)),
                size_bytes: *size,
                sha256: sha.clone(),
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
    /// Creates missing tables, adds missing `buildJobs` columns and indexes.
    /// Idempotent; never drops or rewrites anything.
    fn migrate(&self) -> Result<(), StoreError>;

    /// The jobs of one version (empty when the plugin or version is unknown),
    /// ordered by platform.
    fn version_jobs(&self, name: &str, version: &str) -> Result<Vec<Job>, StoreError>;

    /// Records an upload in one transaction: locks the version, applies
    /// [`plan_upload`], and if not refused upserts the `plugins` row, inserts
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
    /// `attempts` is incremented and its `nextAttemptAt` pushed to
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
    /// seconds) with `message`. Rows of the old server have no submission
    /// time; their creation time counts. Returns the jobs it failed.
    fn fail_timed_out(
        &self,
        submitted_before: i64,
        message: &str,
        now: i64,
    ) -> Result<Vec<Job>, StoreError>;

    fn job_by_id(&self, id: i64) -> Result<Option<Job>, StoreError>;

    /// Resolves the old callback form `<name>-<version>-<platform>` by
    /// comparing it with each job's own name, version and platform in the
    /// database (never by splitting on dashes). More than one match: `Err`.
    fn job_by_legacy_callback(&self, callback_id: &str) -> Result<Option<Job>, StoreError>;

    /// Completes a job in one transaction: locks it; refuses a completed job
    /// with other bytes; otherwise marks the job completed with size and
    /// sha256, updates the version's `platforms`, `downloadUrl`, `sizeBytes`,
    /// `sha256`, and last, just before COMMIT, calls `commit_file` (which
    /// puts the binary and manifest in place). Errors after `commit_file`
    /// ran: as for [`Store::record_upload`].
    fn complete_job(
        &self,
        job_id: i64,
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

    /// Puts failed jobs of a version (optionally one platform) back to
    /// pending with attempts reset. Returns how many.
    fn retry_failed(
        &self,
        name: &str,
        version: &str,
        platform: Option<&str>,
        now: i64,
    ) -> Result<usize, StoreError>;

    /// Number of jobs in each state.
    fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError>;
}

/// The columns of a [`Job`], in the order the implementations read them.
pub(crate) const JOB_COLUMNS: &str = "j.id, j.pluginId, p.name, j.version, j.platform, j.hubJobId, \
     j.status, j.errorMessage, j.createdAt, j.completedAt, j.callbackToken, j.attempts, \
     j.nextAttemptAt, j.submittedAt, j.sizeBytes, j.sha256, j.entry, j.updatedAt";

/// Columns hone-build adds to `buildJobs` when missing: `(name, MySQL type, SQLite type)`.
pub(crate) const ADDED_JOB_COLUMNS: &[(&str, &str, &str)] = &[
    ("callbackToken", "VARCHAR(64) NULL", "TEXT NULL"),
    (
        "attempts",
        "INT NOT NULL DEFAULT 0",
        "INTEGER NOT NULL DEFAULT 0",
    ),
    (
        "nextAttemptAt",
        "BIGINT NOT NULL DEFAULT 0",
        "INTEGER NOT NULL DEFAULT 0",
    ),
    ("submittedAt", "BIGINT NULL", "INTEGER NULL"),
    ("sizeBytes", "BIGINT NULL", "INTEGER NULL"),
    ("sha256", "VARCHAR(64) NULL", "TEXT NULL"),
    ("entry", "VARCHAR(256) NULL", "TEXT NULL"),
    ("updatedAt", "BIGINT NULL", "INTEGER NULL"),
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

    fn ex(rows: &[(&str, &str)]) -> Vec<(String, String)> {
        rows.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
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
    fn primary_and_platforms() {
        let c = vec![
            ("windows".to_string(), Some(3), Some("w".to_string())),
            ("linux".to_string(), Some(2), Some("l".to_string())),
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
