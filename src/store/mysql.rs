//! The production store: the marketplace's MySQL/MariaDB database through a
//! `mysql` connection pool (pure Rust, no TLS). Transactions run at READ
//! COMMITTED; rows that decide a change are read with `FOR UPDATE`, and
//! claims use `FOR UPDATE SKIP LOCKED` so several processes never claim one job.

use super::*;
use ::mysql::prelude::*;
use ::mysql::{
    IsolationLevel, Opts, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, PooledConn, Row,
    Transaction, TxOpts, Value,
};
use std::time::Duration;

/// Connection settings (from DB_* keys).
#[derive(Clone)]
pub struct MysqlSettings {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub pass: crate::config::Secret,
    pub db_name: String,
    pub max_connections: usize,
}

impl MysqlSettings {
    pub fn from_config(cfg: &crate::config::Config) -> MysqlSettings {
        MysqlSettings {
            host: cfg.db_host.clone(),
            port: cfg.db_port,
            user: cfg.db_user.clone(),
            pass: cfg.db_pass.clone(),
            db_name: cfg.db_name.clone(),
            max_connections: cfg.workers + 4,
        }
    }
}

pub struct MysqlStore {
    pool: Pool,
}

/// Positional statement parameters.
macro_rules! p {
    ($($v:expr),* $(,)?) => { Params::Positional(vec![$(Value::from($v)),*]) };
}

fn err(e: ::mysql::Error) -> StoreError {
    use ::mysql::Error as E;
    match &e {
        E::IoError(_) | E::CodecError(_) | E::DriverError(_) => {
            StoreError::Unavailable(e.to_string())
        }
        // Too many connections, lock wait timeout, deadlock, server shutting down.
        E::MySqlError(m) if matches!(m.code, 1040 | 1205 | 1213 | 1053) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

fn take<T: FromValue>(row: &mut Row, i: usize) -> Result<T, StoreError> {
    match row.take_opt::<T, usize>(i) {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(StoreError::Other(format!("column {i}: {e}"))),
        None => Err(StoreError::Other(format!("column {i} missing"))),
    }
}

fn job_from_row(mut r: Row) -> Result<Job, StoreError> {
    Ok(Job {
        id: take(&mut r, 0)?,
        plugin_id: take(&mut r, 1)?,
        plugin_name: take(&mut r, 2)?,
        version: take(&mut r, 3)?,
        platform: take(&mut r, 4)?,
        hub_job_id: take(&mut r, 5)?,
        status: take(&mut r, 6)?,
        error_message: take(&mut r, 7)?,
        created_at: take::<Option<i64>>(&mut r, 8)?.unwrap_or(0),
        completed_at: take(&mut r, 9)?,
        callback_token: take(&mut r, 10)?,
        attempts: take::<Option<u32>>(&mut r, 11)?.unwrap_or(0),
        next_attempt_at_ms: take::<Option<i64>>(&mut r, 12)?.unwrap_or(0),
        submitted_at: take(&mut r, 13)?,
        size_bytes: take(&mut r, 14)?,
        sha256: take(&mut r, 15)?,
        entry: take(&mut r, 16)?,
        updated_at: take(&mut r, 17)?,
    })
}

fn select_jobs(where_clause: &str) -> String {
    format!(
        "SELECT {JOB_COLUMNS} FROM buildJobs j JOIN plugins p ON p.id = j.pluginId WHERE {where_clause}"
    )
}

fn jobs<Q: Queryable>(
    q: &mut Q,
    where_clause: &str,
    params: Params,
) -> Result<Vec<Job>, StoreError> {
    let rows: Vec<Row> = q.exec(select_jobs(where_clause), params).map_err(err)?;
    rows.into_iter().map(job_from_row).collect()
}

fn id_list(ids: &[i64]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS plugins (
        id INT AUTO_INCREMENT PRIMARY KEY,
        name VARCHAR(128) NOT NULL,
        displayName VARCHAR(256) NULL,
        description TEXT NULL,
        publishedAt BIGINT NOT NULL,
        updatedAt BIGINT NOT NULL,
        UNIQUE KEY uq_plugins_name (name)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE IF NOT EXISTS pluginVersions (
        id INT AUTO_INCREMENT PRIMARY KEY,
        pluginId INT NOT NULL,
        version VARCHAR(128) NOT NULL,
        platforms JSON NULL,
        downloadUrl VARCHAR(512) NULL,
        sizeBytes BIGINT NULL,
        sha256 VARCHAR(64) NULL,
        publishedAt BIGINT NOT NULL,
        UNIQUE KEY uq_pluginVersions (pluginId, version)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE IF NOT EXISTS buildJobs (
        id INT AUTO_INCREMENT PRIMARY KEY,
        pluginId INT NOT NULL,
        version VARCHAR(128) NOT NULL,
        platform VARCHAR(32) NOT NULL,
        hubJobId VARCHAR(128) NULL,
        status VARCHAR(16) NOT NULL,
        errorMessage TEXT NULL,
        createdAt BIGINT NOT NULL,
        completedAt BIGINT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
];

const INDEXES: &[(&str, &str)] = &[
    ("idx_buildJobs_due", "(status, nextAttemptAt)"),
    ("idx_buildJobs_version", "(pluginId, version, platform)"),
];

impl MysqlStore {
    /// Creates the pool; no connection is made until first use, so the
    /// service starts (and answers `/health` 503) while the database is down.
    pub fn open(s: &MysqlSettings) -> Result<MysqlStore, StoreError> {
        let constraints = PoolConstraints::new(0, s.max_connections.max(1))
            .ok_or_else(|| StoreError::Other("bad pool size".into()))?;
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some(s.host.clone()))
            .tcp_port(s.port)
            .user(Some(s.user.clone()))
            .pass(Some(s.pass.expose().to_string()))
            .db_name(Some(s.db_name.clone()))
            // Connect where DB_HOST/DB_PORT say. With the default (true) the driver,
            // having reached a loopback address, reconnects through the Unix socket
            // the server reports, bypassing DB_PORT (a tunnel or forwarded port may
            // then end up on another, local server).
            .prefer_socket(false)
            .tcp_connect_timeout(Some(Duration::from_secs(3)))
            .read_timeout(Some(Duration::from_secs(15)))
            .write_timeout(Some(Duration::from_secs(15)))
            .stmt_cache_size(Some(64))
            .pool_opts(PoolOpts::default().with_constraints(constraints));
        let pool = Pool::new(Opts::from(opts)).map_err(err)?;
        Ok(MysqlStore { pool })
    }

    fn conn(&self) -> Result<PooledConn, StoreError> {
        self.pool.try_get_conn(Duration::from_secs(10)).map_err(err)
    }

    fn tx<T>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let out = self.tx_or_rollback(|tx| f(tx).map(Ok::<T, std::convert::Infallible>))?;
        Ok(out.unwrap_or_else(|never| match never {}))
    }

    /// Like [`MysqlStore::tx`], but `f` may decline the change: `Ok(Err(r))`
    /// rolls the transaction back and returns `r`.
    fn tx_or_rollback<T, R>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<Result<T, R>, StoreError>,
    ) -> Result<Result<T, R>, StoreError> {
        let mut conn = self.conn()?;
        let opts = TxOpts::default().set_isolation_level(Some(IsolationLevel::ReadCommitted));
        let mut tx = conn.start_transaction(opts).map_err(err)?;
        // On an error, dropping the uncommitted transaction rolls it back.
        match f(&mut tx)? {
            Ok(out) => {
                tx.commit().map_err(|e| match e {
                    // The COMMIT may have reached the server: the outcome is unknown.
                    ::mysql::Error::IoError(_)
                    | ::mysql::Error::CodecError(_)
                    | ::mysql::Error::DriverError(_) => StoreError::CommitUnknown(e.to_string()),
                    e => err(e),
                })?;
                Ok(Ok(out))
            }
            Err(declined) => {
                tx.rollback().map_err(err)?;
                Ok(Err(declined))
            }
        }
    }

    /// Locks the version row, creating it if absent. The row is read with
    /// `FOR UPDATE` first: an `INSERT IGNORE` on an existing row would take a
    /// shared lock, and two transactions holding it and both asking for the
    /// exclusive one deadlock (artifacts of one version arriving together).
    fn lock_version(
        tx: &mut Transaction<'_>,
        plugin_id: i64,
        version: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let select = "SELECT id FROM pluginVersions WHERE pluginId = ? AND version = ? FOR UPDATE";
        let found: Option<i64> = tx.exec_first(select, p![plugin_id, version]).map_err(err)?;
        if found.is_some() {
            return Ok(());
        }
        // Not `INSERT IGNORE`: on a row inserted meanwhile by another
        // transaction it would take a shared lock (the deadlock above);
        // `ON DUPLICATE KEY UPDATE` takes the exclusive one.
        tx.exec_drop(
            "INSERT INTO pluginVersions (pluginId, version, platforms, publishedAt) VALUES (?, ?, '[]', ?)
             ON DUPLICATE KEY UPDATE id = id",
            p![plugin_id, version, now],
        )
        .map_err(err)
    }
}

impl Store for MysqlStore {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn()?;
        c.query_drop("SELECT 1").map_err(err)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut c = self.conn()?;
        for stmt in SCHEMA {
            c.query_drop(stmt).map_err(err)?;
        }
        let existing: Vec<String> = c
            .query(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'buildJobs'",
            )
            .map_err(err)?;
        for (col, ty, _) in ADDED_JOB_COLUMNS {
            if !existing.iter().any(|e| e.eq_ignore_ascii_case(col)) {
                log::info!("migrate: adding buildJobs.{col}");
                c.query_drop(format!("ALTER TABLE buildJobs ADD COLUMN {col} {ty}"))
                    .map_err(err)?;
            }
        }
        let indexes: Vec<String> = c
            .query(
                "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'buildJobs'",
            )
            .map_err(err)?;
        for (name, cols) in INDEXES {
            if !indexes.iter().any(|i| i == name) {
                log::info!("migrate: adding index {name} on buildJobs");
                c.query_drop(format!("CREATE INDEX {name} ON buildJobs {cols}"))
                    .map_err(err)?;
            }
        }
        Ok(())
    }

    fn version_jobs(&self, name: &str, version: &str) -> Result<Vec<Job>, StoreError> {
        jobs(
            &mut self.conn()?,
            "p.name = ? AND j.version = ? ORDER BY j.platform, j.id",
            p![name, version],
        )
    }

    fn record_upload(
        &self,
        up: &NewUpload,
        new_token: &mut dyn FnMut() -> String,
        commit_file: &mut dyn FnMut() -> std::io::Result<()>,
    ) -> Result<UploadOutcome, StoreError> {
        self.tx_or_rollback(|tx| {
            let now = up.now;
            // Locks the plugin row: uploads of one plugin are serialized.
            tx.exec_drop(
                "INSERT INTO plugins (name, displayName, description, publishedAt, updatedAt)
                 VALUES (?, COALESCE(?, ?), COALESCE(?, ''), ?, ?)
                 ON DUPLICATE KEY UPDATE
                   displayName = COALESCE(?, displayName),
                   description = COALESCE(?, description),
                   updatedAt = VALUES(updatedAt)",
                p![
                    up.name.as_str(),
                    up.display_name.clone(),
                    up.name.as_str(),
                    up.description.clone(),
                    now,
                    now,
                    up.display_name.clone(),
                    up.description.clone()
                ],
            )
            .map_err(err)?;
            let plugin_id: i64 = tx
                .exec_first("SELECT id FROM plugins WHERE name = ?", p![up.name.as_str()])
                .map_err(err)?
                .ok_or_else(|| StoreError::Other("plugin row vanished".into()))?;
            Self::lock_version(tx, plugin_id, &up.version, now)?;
            let existing = jobs(
                tx,
                "j.pluginId = ? AND j.version = ? ORDER BY j.platform, j.id FOR UPDATE",
                p![plugin_id, up.version.as_str()],
            )?;
            let pairs: Vec<(String, String)> =
                existing.iter().map(|j| (j.platform.clone(), j.status.clone())).collect();
            let to_build = match plan_upload(&pairs, &up.platforms) {
                Ok(p) => p,
                // Declined: rolled back (the plugin row's updatedAt included).
                Err(r) => return Ok(Err(r)),
            };
            let now_ms = up.reserved_until_ms;
            let mut ids = Vec::new();
            for pf in &to_build {
                let token = new_token();
                match existing.iter().find(|j| j.platform == pf.hub_name()) {
                    Some(old) => {
                        tx.exec_drop(
                            "UPDATE buildJobs SET status = 'pending', hubJobId = NULL, errorMessage = NULL,
                               createdAt = ?, completedAt = NULL, callbackToken = ?, attempts = 0,
                               nextAttemptAt = ?, submittedAt = NULL, sizeBytes = NULL, sha256 = NULL,
                               entry = ?, updatedAt = ? WHERE id = ?",
                            p![now, token, now_ms, up.entry.as_str(), now, old.id],
                        )
                        .map_err(err)?;
                        ids.push(old.id);
                    }
                    None => {
                        tx.exec_drop(
                            "INSERT INTO buildJobs (pluginId, version, platform, status, createdAt,
                               callbackToken, attempts, nextAttemptAt, entry, updatedAt)
                             VALUES (?, ?, ?, 'pending', ?, ?, 0, ?, ?, ?)",
                            p![plugin_id, up.version.as_str(), pf.hub_name(), now, token, now_ms, up.entry.as_str(), now],
                        )
                        .map_err(err)?;
                        ids.push(tx.last_insert_id().unwrap_or(0) as i64);
                    }
                }
            }
            let created = if ids.is_empty() {
                Vec::new()
            } else {
                jobs(tx, &format!("j.id IN ({}) ORDER BY j.platform", id_list(&ids)), Params::Empty)?
            };
            // The file goes in place last, just before COMMIT (in `tx`).
            commit_file().map_err(|e| StoreError::Other(format!("storing the tarball: {e}")))?;
            Ok(Ok(UploadOutcome::Recorded(created)))
        })
        .map(|r| r.unwrap_or_else(UploadOutcome::Refused))
    }

    fn claim(
        &self,
        filter: ClaimFilter,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<Job>, StoreError> {
        self.tx(|tx| {
            let ids: Vec<i64> = match &filter {
                ClaimFilter::Due(limit) => tx
                    .exec(
                        "SELECT id FROM buildJobs
                         WHERE status = 'pending' AND callbackToken IS NOT NULL AND nextAttemptAt <= ?
                         ORDER BY nextAttemptAt, id LIMIT ? FOR UPDATE SKIP LOCKED",
                        p![now_ms, *limit as u64],
                    )
                    .map_err(err)?,
                ClaimFilter::Ids(ids) if ids.is_empty() => Vec::new(),
                ClaimFilter::Ids(ids) => tx
                    .query(format!(
                        "SELECT id FROM buildJobs
                         WHERE status = 'pending' AND attempts = 0 AND callbackToken IS NOT NULL AND id IN ({})
                         FOR UPDATE SKIP LOCKED",
                        id_list(ids)
                    ))
                    .map_err(err)?,
            };
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let list = id_list(&ids);
            tx.exec_drop(
                format!(
                    "UPDATE buildJobs SET attempts = attempts + 1, nextAttemptAt = ?, updatedAt = ?
                     WHERE id IN ({list})"
                ),
                p![now_ms + lease_ms, now_ms / 1000],
            )
            .map_err(err)?;
            jobs(tx, &format!("j.id IN ({list}) ORDER BY j.platform, j.id"), Params::Empty)
        })
    }

    fn record_attempt(
        &self,
        job_id: i64,
        attempt: u32,
        result: &AttemptResult,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn()?;
        let guard = "id = ? AND status = 'pending' AND attempts = ?";
        match result {
            AttemptResult::Accepted { hub_job_id } => c.exec_drop(
                format!(
                    "UPDATE buildJobs SET status = 'queued', hubJobId = ?, errorMessage = NULL,
                       submittedAt = ?, updatedAt = ? WHERE {guard}"
                ),
                p![hub_job_id.as_str(), now, now, job_id, attempt],
            ),
            AttemptResult::Retry { next_attempt_at_ms, error } => c.exec_drop(
                format!("UPDATE buildJobs SET nextAttemptAt = ?, errorMessage = ?, updatedAt = ? WHERE {guard}"),
                p![*next_attempt_at_ms, error.as_str(), now, job_id, attempt],
            ),
            AttemptResult::Failed { error } => c.exec_drop(
                format!("UPDATE buildJobs SET status = 'failed', errorMessage = ?, updatedAt = ? WHERE {guard}"),
                p![error.as_str(), now, job_id, attempt],
            ),
        }
        .map_err(err)?;
        if c.affected_rows() == 0
            && let AttemptResult::Accepted { hub_job_id } = result
        {
            // The artifact may have arrived before the hub's answer was
            // recorded: keep the hub's job id all the same.
            c.exec_drop(
                "UPDATE buildJobs SET hubJobId = ?, submittedAt = COALESCE(submittedAt, ?)
                 WHERE id = ? AND attempts = ? AND status = 'completed' AND hubJobId IS NULL",
                p![hub_job_id.as_str(), now, job_id, attempt],
            )
            .map_err(err)?;
        }
        Ok(c.affected_rows() == 1)
    }

    fn fail_timed_out(
        &self,
        submitted_before: i64,
        message: &str,
        now: i64,
    ) -> Result<Vec<Job>, StoreError> {
        self.tx(|tx| {
            let ids: Vec<i64> = tx
                .exec(
                    "SELECT id FROM buildJobs WHERE status IN ('queued', 'building')
                     AND COALESCE(submittedAt, createdAt) < ? FOR UPDATE SKIP LOCKED",
                    p![submitted_before],
                )
                .map_err(err)?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let list = id_list(&ids);
            let timed_out = jobs(tx, &format!("j.id IN ({list})"), Params::Empty)?;
            tx.exec_drop(
                format!("UPDATE buildJobs SET status = 'failed', errorMessage = ?, updatedAt = ? WHERE id IN ({list})"),
                p![message, now],
            )
            .map_err(err)?;
            Ok(timed_out)
        })
    }

    fn job_by_id(&self, id: i64) -> Result<Option<Job>, StoreError> {
        Ok(jobs(&mut self.conn()?, "j.id = ?", p![id])?
            .into_iter()
            .next())
    }

    fn job_by_legacy_callback(&self, callback_id: &str) -> Result<Option<Job>, StoreError> {
        let found = jobs(
            &mut self.conn()?,
            "CONCAT(p.name, '-', j.version, '-', j.platform) = ?",
            p![callback_id],
        )?;
        match found.len() {
            0 | 1 => Ok(found.into_iter().next()),
            n => Err(StoreError::Other(format!("callback id matches {n} jobs"))),
        }
    }

    fn complete_job(
        &self,
        job_id: i64,
        a: &Artifact,
        commit_file: &mut dyn FnMut() -> std::io::Result<()>,
    ) -> Result<CompleteOutcome, StoreError> {
        self.tx(|tx| {
            let Some(job) = jobs(tx, "j.id = ?", p![job_id])?.into_iter().next() else {
                return Ok(CompleteOutcome::NotFound);
            };
            // Lock order (version, then job) is the same as record_upload's.
            Self::lock_version(tx, job.plugin_id, &job.version, a.now)?;
            let job = jobs(tx, "j.id = ? FOR UPDATE", p![job_id])?
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::Other("job vanished".into()))?;
            if job.status == status::COMPLETED {
                return Ok(if job.sha256.as_deref() == Some(a.sha256.as_str()) {
                    CompleteOutcome::AlreadyCompleted
                } else {
                    CompleteOutcome::Conflict
                });
            }
            tx.exec_drop(
                "UPDATE buildJobs SET status = 'completed', completedAt = ?, sizeBytes = ?, sha256 = ?,
                   errorMessage = NULL, updatedAt = ? WHERE id = ?",
                p![a.now, a.size, a.sha256.as_str(), a.now, job_id],
            )
            .map_err(err)?;
            let completed: Vec<(String, Option<i64>, Option<String>)> = tx
                .exec(
                    "SELECT platform, sizeBytes, sha256 FROM buildJobs
                     WHERE pluginId = ? AND version = ? AND status = 'completed'",
                    p![job.plugin_id, job.version.as_str()],
                )
                .map_err(err)?;
            let v = version_artifacts(&job.plugin_name, &job.version, &completed);
            tx.exec_drop(
                "UPDATE pluginVersions SET platforms = ?, downloadUrl = ?, sizeBytes = ?, sha256 = ?
                 WHERE pluginId = ? AND version = ?",
                p![v.platforms_json, v.download_url, v.size_bytes, v.sha256, job.plugin_id, job.version.as_str()],
            )
            .map_err(err)?;
            commit_file().map_err(|e| StoreError::Other(format!("storing the artifact: {e}")))?;
            Ok(CompleteOutcome::Completed)
        })
    }

    fn version_row(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<VersionArtifacts>, StoreError> {
        type VersionColumns = (Option<String>, Option<String>, Option<i64>, Option<String>);
        let row: Option<VersionColumns> = self
            .conn()?
            .exec_first(
                "SELECT v.platforms, v.downloadUrl, v.sizeBytes, v.sha256 FROM pluginVersions v
                 JOIN plugins p ON p.id = v.pluginId WHERE p.name = ? AND v.version = ?",
                p![name, version],
            )
            .map_err(err)?;
        Ok(row.map(
            |(platforms, download_url, size_bytes, sha256)| VersionArtifacts {
                platforms_json: platforms.unwrap_or_default(),
                download_url,
                size_bytes,
                sha256,
            },
        ))
    }

    fn list_jobs(&self, name: Option<&str>, version: Option<&str>) -> Result<Vec<Job>, StoreError> {
        jobs(
            &mut self.conn()?,
            "(? IS NULL OR p.name = ?) AND (? IS NULL OR j.version = ?) ORDER BY j.createdAt DESC, j.id DESC",
            p![name, name, version, version],
        )
    }

    fn retry_failed(
        &self,
        name: &str,
        version: &str,
        platform: Option<&str>,
        now: i64,
    ) -> Result<usize, StoreError> {
        let mut c = self.conn()?;
        c.exec_drop(
            "UPDATE buildJobs j JOIN plugins p ON p.id = j.pluginId
             SET j.status = 'pending', j.attempts = 0, j.nextAttemptAt = ?, j.errorMessage = NULL,
                 j.hubJobId = NULL, j.submittedAt = NULL, j.updatedAt = ?
             WHERE j.status = 'failed' AND j.callbackToken IS NOT NULL AND p.name = ? AND j.version = ?
               AND (? IS NULL OR j.platform = ?)",
            p![now * 1000, now, name, version, platform, platform],
        )
        .map_err(err)?;
        Ok(c.affected_rows() as usize)
    }

    fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.conn()?
            .query("SELECT status, COUNT(*) FROM buildJobs GROUP BY status ORDER BY status")
            .map_err(err)
    }
}
