//! The embedded store: the same tables in one SQLite file under DATA_DIR.
//! One connection behind a mutex; write transactions are `BEGIN IMMEDIATE`.

use super::*;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use std::path::Path;
use std::sync::Mutex;

pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS plugins (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    displayName TEXT NULL,
    description TEXT NULL,
    publishedAt INTEGER NOT NULL,
    updatedAt INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pluginVersions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pluginId INTEGER NOT NULL,
    version TEXT NOT NULL,
    platforms TEXT NULL,
    downloadUrl TEXT NULL,
    sizeBytes INTEGER NULL,
    sha256 TEXT NULL,
    publishedAt INTEGER NOT NULL,
    UNIQUE (pluginId, version)
);
CREATE TABLE IF NOT EXISTS buildJobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pluginId INTEGER NOT NULL,
    version TEXT NOT NULL,
    platform TEXT NOT NULL,
    hubJobId TEXT NULL,
    status TEXT NOT NULL,
    errorMessage TEXT NULL,
    createdAt INTEGER NOT NULL,
    completedAt INTEGER NULL
);
";

fn job_from_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        plugin_id: r.get(1)?,
        plugin_name: r.get(2)?,
        version: r.get(3)?,
        platform: r.get(4)?,
        hub_job_id: r.get(5)?,
        status: r.get(6)?,
        error_message: r.get(7)?,
        created_at: r.get::<_, Option<i64>>(8)?.unwrap_or(0),
        completed_at: r.get(9)?,
        callback_token: r.get(10)?,
        attempts: r.get::<_, Option<u32>>(11)?.unwrap_or(0),
        next_attempt_at_ms: r.get::<_, Option<i64>>(12)?.unwrap_or(0),
        submitted_at: r.get(13)?,
        size_bytes: r.get(14)?,
        sha256: r.get(15)?,
        entry: r.get(16)?,
        updated_at: r.get(17)?,
    })
}

fn select_jobs(where_clause: &str) -> String {
    format!(
        "SELECT {JOB_COLUMNS} FROM buildJobs j JOIN plugins p ON p.id = j.pluginId WHERE {where_clause}"
    )
}

impl SqliteStore {
    /// Opens (creating) the database file; its directory is created too.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Other(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn).map_err(err)
    }

    fn jobs(
        conn: &Connection,
        where_clause: &str,
        p: impl rusqlite::Params,
    ) -> rusqlite::Result<Vec<Job>> {
        let mut st = conn.prepare_cached(&select_jobs(where_clause))?;
        st.query_map(p, job_from_row)?.collect()
    }
}

impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    }

    fn migrate(&self) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(SCHEMA)?;
            let existing: Vec<String> = {
                let mut st = tx.prepare("SELECT name FROM pragma_table_info('buildJobs')")?;
                st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
            };
            for (col, _, ty) in ADDED_JOB_COLUMNS {
                if !existing.iter().any(|e| e.eq_ignore_ascii_case(col)) {
                    tx.execute_batch(&format!("ALTER TABLE buildJobs ADD COLUMN {col} {ty}"))?;
                }
            }
            tx.execute_batch(
                "CREATE INDEX IF NOT EXISTS idx_buildJobs_due ON buildJobs (status, nextAttemptAt);
                 CREATE INDEX IF NOT EXISTS idx_buildJobs_version ON buildJobs (pluginId, version, platform);",
            )?;
            tx.commit()
        })
    }

    fn version_jobs(&self, name: &str, version: &str) -> Result<Vec<Job>, StoreError> {
        self.with(|c| {
            Self::jobs(
                c,
                "p.name = ?1 AND j.version = ?2 ORDER BY j.platform, j.id",
                params![name, version],
            )
        })
    }

    fn record_upload(
        &self,
        up: &NewUpload,
        new_token: &mut dyn FnMut() -> String,
        commit_file: &mut dyn FnMut() -> std::io::Result<()>,
    ) -> Result<UploadOutcome, StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let existing = Self::jobs(
            &tx,
            "p.name = ?1 AND j.version = ?2 ORDER BY j.platform, j.id",
            params![up.name, up.version],
        )
        .map_err(err)?;
        let pairs: Vec<(String, String)> = existing
            .iter()
            .map(|j| (j.platform.clone(), j.status.clone()))
            .collect();
        let to_build = match plan_upload(&pairs, &up.platforms) {
            Ok(p) => p,
            Err(r) => return Ok(UploadOutcome::Refused(r)),
        };
        let now = up.now;
        let now_ms = up.reserved_until_ms;
        tx.execute(
            "INSERT INTO plugins (name, displayName, description, publishedAt, updatedAt)
             VALUES (?1, COALESCE(?2, ?1), COALESCE(?3, ''), ?4, ?4)
             ON CONFLICT(name) DO UPDATE SET
               displayName = COALESCE(?2, plugins.displayName),
               description = COALESCE(?3, plugins.description),
               updatedAt = excluded.updatedAt",
            params![up.name, up.display_name, up.description, now],
        )
        .map_err(err)?;
        let plugin_id: i64 = tx
            .query_row("SELECT id FROM plugins WHERE name = ?1", [&up.name], |r| {
                r.get(0)
            })
            .map_err(err)?;
        tx.execute(
            "INSERT OR IGNORE INTO pluginVersions (pluginId, version, platforms, publishedAt)
             VALUES (?1, ?2, '[]', ?3)",
            params![plugin_id, up.version, now],
        )
        .map_err(err)?;
        let mut ids = Vec::new();
        for p in &to_build {
            let token = new_token();
            match existing.iter().find(|j| j.platform == p.hub_name()) {
                Some(old) => {
                    tx.execute(
                        "UPDATE buildJobs SET status = 'pending', hubJobId = NULL, errorMessage = NULL,
                           createdAt = ?2, completedAt = NULL, callbackToken = ?3, attempts = 0,
                           nextAttemptAt = ?4, submittedAt = NULL, sizeBytes = NULL, sha256 = NULL,
                           entry = ?5, updatedAt = ?2
                         WHERE id = ?1",
                        params![old.id, now, token, now_ms, up.entry],
                    )
                    .map_err(err)?;
                    ids.push(old.id);
                }
                None => {
                    tx.execute(
                        "INSERT INTO buildJobs (pluginId, version, platform, status, createdAt,
                           callbackToken, attempts, nextAttemptAt, entry, updatedAt)
                         VALUES (?1, ?2, ?3, 'pending', ?4, ?5, 0, ?6, ?7, ?4)",
                        params![
                            plugin_id,
                            up.version,
                            p.hub_name(),
                            now,
                            token,
                            now_ms,
                            up.entry
                        ],
                    )
                    .map_err(err)?;
                    ids.push(tx.last_insert_rowid());
                }
            }
        }
        let jobs = {
            let list = ids
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",");
            Self::jobs(&tx, &format!("j.id IN ({list}) ORDER BY j.platform"), []).map_err(err)?
        };
        // The file goes in place last, just before COMMIT; if the COMMIT
        // fails the caller puts back what was there (see `commit_file`).
        commit_file().map_err(|e| StoreError::Other(format!("storing the tarball: {e}")))?;
        tx.commit().map_err(err)?;
        Ok(UploadOutcome::Recorded(jobs))
    }

    fn claim(
        &self,
        filter: ClaimFilter,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<Job>, StoreError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let due = match &filter {
                ClaimFilter::Due(limit) => Self::jobs(
                    &tx,
                    "j.status = 'pending' AND j.callbackToken IS NOT NULL AND j.nextAttemptAt <= ?1
                     ORDER BY j.nextAttemptAt, j.id LIMIT ?2",
                    params![now_ms, *limit as i64],
                )?,
                ClaimFilter::Ids(ids) if ids.is_empty() => Vec::new(),
                ClaimFilter::Ids(ids) => {
                    let list = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
                    Self::jobs(
                        &tx,
                        &format!(
                            "j.status = 'pending' AND j.attempts = 0 AND j.callbackToken IS NOT NULL AND j.id IN ({list})
                             ORDER BY j.platform"
                        ),
                        [],
                    )?
                }
            };
            let mut out = Vec::with_capacity(due.len());
            for mut j in due {
                tx.execute(
                    "UPDATE buildJobs SET attempts = attempts + 1, nextAttemptAt = ?2, updatedAt = ?3 WHERE id = ?1",
                    params![j.id, now_ms + lease_ms, now_ms / 1000],
                )?;
                j.attempts += 1;
                j.next_attempt_at_ms = now_ms + lease_ms;
                out.push(j);
            }
            tx.commit()?;
            Ok(out)
        })
    }

    fn record_attempt(
        &self,
        job_id: i64,
        attempt: u32,
        result: &AttemptResult,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let guard = "id = ?1 AND status = 'pending' AND attempts = ?2";
            let n = match result {
                AttemptResult::Accepted { hub_job_id } => {
                    let n = c.execute(
                        &format!(
                            "UPDATE buildJobs SET status = 'queued', hubJobId = ?3, errorMessage = NULL,
                               submittedAt = ?4, updatedAt = ?4 WHERE {guard}"
                        ),
                        params![job_id, attempt, hub_job_id, now],
                    )?;
                    if n == 1 {
                        1
                    } else {
                        // The artifact may have arrived before the hub's answer was
                        // recorded: keep the hub's job id all the same.
                        c.execute(
                            "UPDATE buildJobs SET hubJobId = ?3, submittedAt = COALESCE(submittedAt, ?4)
                             WHERE id = ?1 AND attempts = ?2 AND status = 'completed' AND hubJobId IS NULL",
                            params![job_id, attempt, hub_job_id, now],
                        )?
                    }
                }
                AttemptResult::Retry { next_attempt_at_ms, error } => c.execute(
                    &format!(
                        "UPDATE buildJobs SET nextAttemptAt = ?3, errorMessage = ?4, updatedAt = ?5 WHERE {guard}"
                    ),
                    params![job_id, attempt, next_attempt_at_ms, error, now],
                )?,
                AttemptResult::Failed { error } => c.execute(
                    &format!(
                        "UPDATE buildJobs SET status = 'failed', errorMessage = ?3, completedAt = NULL,
                           updatedAt = ?4 WHERE {guard}"
                    ),
                    params![job_id, attempt, error, now],
                )?,
            };
            Ok(n == 1)
        })
    }

    fn fail_timed_out(
        &self,
        submitted_before: i64,
        message: &str,
        now: i64,
    ) -> Result<Vec<Job>, StoreError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let jobs = Self::jobs(
                &tx,
                "j.status IN ('queued', 'building') AND COALESCE(j.submittedAt, j.createdAt) < ?1",
                params![submitted_before],
            )?;
            for j in &jobs {
                tx.execute(
                    "UPDATE buildJobs SET status = 'failed', errorMessage = ?2, updatedAt = ?3 WHERE id = ?1",
                    params![j.id, message, now],
                )?;
            }
            tx.commit()?;
            Ok(jobs)
        })
    }

    fn job_by_id(&self, id: i64) -> Result<Option<Job>, StoreError> {
        self.with(|c| Ok(Self::jobs(c, "j.id = ?1", [id])?.into_iter().next()))
    }

    fn job_by_legacy_callback(&self, callback_id: &str) -> Result<Option<Job>, StoreError> {
        let jobs = self.with(|c| {
            Self::jobs(
                c,
                "(p.name || '-' || j.version || '-' || j.platform) = ?1",
                [callback_id],
            )
        })?;
        match jobs.len() {
            0 | 1 => Ok(jobs.into_iter().next()),
            n => Err(StoreError::Other(format!("callback id matches {n} jobs"))),
        }
    }

    fn complete_job(
        &self,
        job_id: i64,
        a: &Artifact,
        commit_file: &mut dyn FnMut() -> std::io::Result<()>,
    ) -> Result<CompleteOutcome, StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let Some(job) = Self::jobs(&tx, "j.id = ?1", [job_id])
            .map_err(err)?
            .into_iter()
            .next()
        else {
            return Ok(CompleteOutcome::NotFound);
        };
        if job.status == status::COMPLETED {
            return Ok(if job.sha256.as_deref() == Some(a.sha256.as_str()) {
                CompleteOutcome::AlreadyCompleted
            } else {
                CompleteOutcome::Conflict
            });
        }
        tx.execute(
            "UPDATE buildJobs SET status = 'completed', completedAt = ?2, sizeBytes = ?3, sha256 = ?4,
               errorMessage = NULL, updatedAt = ?2 WHERE id = ?1",
            params![job_id, a.now, a.size, a.sha256],
        )
        .map_err(err)?;
        let completed: Vec<(String, Option<i64>, Option<String>)> = {
            let mut st = tx
                .prepare(
                    "SELECT platform, sizeBytes, sha256 FROM buildJobs
                     WHERE pluginId = ?1 AND version = ?2 AND status = 'completed'",
                )
                .map_err(err)?;
            st.query_map(params![job.plugin_id, job.version], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(err)?
        };
        let v = version_artifacts(&job.plugin_name, &job.version, &completed);
        tx.execute(
            "INSERT OR IGNORE INTO pluginVersions (pluginId, version, platforms, publishedAt)
             VALUES (?1, ?2, '[]', ?3)",
            params![job.plugin_id, job.version, a.now],
        )
        .map_err(err)?;
        tx.execute(
            "UPDATE pluginVersions SET platforms = ?3, downloadUrl = ?4, sizeBytes = ?5, sha256 = ?6
             WHERE pluginId = ?1 AND version = ?2",
            params![job.plugin_id, job.version, v.platforms_json, v.download_url, v.size_bytes, v.sha256],
        )
        .map_err(err)?;
        commit_file().map_err(|e| StoreError::Other(format!("storing the artifact: {e}")))?;
        tx.commit().map_err(err)?;
        Ok(CompleteOutcome::Completed)
    }

    fn version_row(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<VersionArtifacts>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT v.platforms, v.downloadUrl, v.sizeBytes, v.sha256 FROM pluginVersions v
                 JOIN plugins p ON p.id = v.pluginId WHERE p.name = ?1 AND v.version = ?2",
                params![name, version],
                |r| {
                    Ok(VersionArtifacts {
                        platforms_json: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                        download_url: r.get(1)?,
                        size_bytes: r.get(2)?,
                        sha256: r.get(3)?,
                    })
                },
            )
            .optional()
        })
    }

    fn list_jobs(&self, name: Option<&str>, version: Option<&str>) -> Result<Vec<Job>, StoreError> {
        self.with(|c| {
            Self::jobs(
                c,
                "(?1 IS NULL OR p.name = ?1) AND (?2 IS NULL OR j.version = ?2)
                 ORDER BY j.createdAt DESC, j.id DESC",
                params![name, version],
            )
        })
    }

    fn retry_failed(
        &self,
        name: &str,
        version: &str,
        platform: Option<&str>,
        now: i64,
    ) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE buildJobs SET status = 'pending', attempts = 0, nextAttemptAt = ?4,
                   errorMessage = NULL, hubJobId = NULL, submittedAt = NULL, updatedAt = ?5
                 WHERE status = 'failed' AND callbackToken IS NOT NULL AND version = ?2
                   AND pluginId = (SELECT id FROM plugins WHERE name = ?1)
                   AND (?3 IS NULL OR platform = ?3)",
                params![name, version, platform, now * 1000, now],
            )
        })
    }

    fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT status, COUNT(*) FROM buildJobs GROUP BY status ORDER BY status",
            )?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
        })
    }
}
