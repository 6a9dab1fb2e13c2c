//! Every [`Store`] operation, written once over a [`Backend`]: the
//! transaction sequences, their statements and their lock order. A dialect
//! file supplies only connections, DDL and the SQL text that differs.
//!
//! Lock order, the same for every transaction that waits for locks: the
//! plugin row (uploads only), then the version row, then job rows by id.
//! Claims and timeouts lock job rows only and skip locked ones instead of
//! waiting (`FOR UPDATE SKIP LOCKED`; SQLite's `BEGIN IMMEDIATE` locks the
//! whole database and needs no clause).

use super::sql::{Backend, Conn, Row, Txn, Value, params, placeholders};
use super::*;

/// The store over one database.
pub struct SqlStore<B> {
    b: B,
    /// Read by `migrate`.
    limits: std::sync::RwLock<ColumnLimits>,
}

/// `buildJobs` columns of a [`Job`], in [`job_from_row`]'s order; the
/// plugin's name follows them.
const JOB_COLUMNS: &str = "j.id, j.pluginId, j.version, j.platform, j.hubJobId, j.status, \
     j.errorMessage, j.createdAt, j.completedAt, j.callbackToken, j.attempts, j.nextAttemptAt, \
     j.submittedAt, j.sizeBytes, j.sha256, j.entry, j.updatedAt, j.stage, j.progress, \
     j.progressMessage, j.queuePosition, j.logAttempt";

fn job_from_row(r: &Row) -> Result<Job, StoreError> {
    Ok(Job {
        id: r.get(0)?,
        plugin_id: r.get(1)?,
        version: r.get(2)?,
        platform: r.get(3)?,
        hub_job_id: r.get(4)?,
        status: JobStatus::parse(&r.get::<String>(5)?),
        error_message: r.get(6)?,
        created_at: r.get::<Option<i64>>(7)?.unwrap_or(0),
        completed_at: r.get(8)?,
        callback_token: r.get(9)?,
        attempts: r.get::<Option<u32>>(10)?.unwrap_or(0),
        next_attempt_at_ms: r.get::<Option<i64>>(11)?.unwrap_or(0),
        submitted_at: r.get(12)?,
        size_bytes: r.get(13)?,
        sha256: r.get(14)?,
        entry: r.get(15)?,
        updated_at: r.get(16)?,
        progress: BuildProgress {
            stage: r.get(17)?,
            percent: r.get(18)?,
            message: r.get(19)?,
            queue_position: r.get(20)?,
        },
        log_attempt: r.get::<Option<u32>>(21)?.unwrap_or(0),
        plugin_name: r.get(22)?,
    })
}

/// Jobs (joined with their plugin's name) matching `where_clause`; a
/// plain read, locking nothing.
fn jobs(c: &mut dyn Conn, where_clause: &str, params: &[Value]) -> Result<Vec<Job>, StoreError> {
    let sql = format!(
        "SELECT {JOB_COLUMNS}, p.name FROM buildJobs j JOIN plugins p ON p.id = j.pluginId \
         WHERE {where_clause}"
    );
    c.query(&sql, params)?.iter().map(job_from_row).collect()
}

/// Jobs of the plugin `plugin_name` matching `where_clause`, locked until
/// COMMIT, in id order. Reads `buildJobs` alone: a join would lock the
/// plugin row too, after the version row (the reverse of an upload's order).
fn locked_jobs<B: Backend>(
    c: &mut dyn Conn,
    where_clause: &str,
    params: &[Value],
    plugin_name: &str,
) -> Result<Vec<Job>, StoreError> {
    let sql = format!(
        "SELECT {JOB_COLUMNS}, '' FROM buildJobs j WHERE {where_clause} ORDER BY j.id{}",
        B::FOR_UPDATE
    );
    let mut jobs: Vec<Job> = c
        .query(&sql, params)?
        .iter()
        .map(job_from_row)
        .collect::<Result<_, _>>()?;
    for j in &mut jobs {
        j.plugin_name = plugin_name.to_string();
    }
    Ok(jobs)
}

fn ids_of(rows: Vec<Row>) -> Result<Vec<Value>, StoreError> {
    rows.iter()
        .map(|r| r.get::<i64>(0).map(Value::Int))
        .collect()
}

/// Locks the version row, creating it if absent. The row is read with
/// `FOR UPDATE` first: on MySQL an `INSERT` meeting an existing row takes a
/// shared lock, and two transactions holding it and both asking for the
/// exclusive one deadlock (artifacts of one version arriving together).
fn lock_version<B: Backend>(
    c: &mut dyn Conn,
    plugin_id: i64,
    version: &str,
    now: i64,
) -> Result<(), StoreError> {
    let select = format!(
        "SELECT id FROM pluginVersions WHERE pluginId = ? AND version = ?{}",
        B::FOR_UPDATE
    );
    if !c.query(&select, params![plugin_id, version])?.is_empty() {
        return Ok(());
    }
    let insert = format!(
        "INSERT INTO pluginVersions (pluginId, version, platforms, publishedAt) VALUES (?, ?, '[]', ?) {}",
        B::insert_keep_existing("pluginId, version")
    );
    c.execute(&insert, params![plugin_id, version, now])
        .map(drop)
}

/// See [`Store::case_twin`]. Compares with `LOWER` on both dialects: on
/// MySQL the column's collation may or may not ignore case.
fn case_twin(c: &mut dyn Conn, name: &str, version: &str) -> Result<Option<Spelling>, StoreError> {
    let plugins = c.query(
        "SELECT id, name FROM plugins WHERE LOWER(name) = LOWER(?) ORDER BY id",
        params![name],
    )?;
    let mut exact = None;
    let mut twin = None;
    for r in &plugins {
        let spelled: String = r.get(1)?;
        if spelled == name {
            exact = Some(r.get::<i64>(0)?);
        } else if twin.is_none() {
            twin = Some(spelled);
        }
    }
    let Some(plugin_id) = exact else {
        return Ok(twin.map(|name| Spelling {
            name,
            version: version.to_string(),
        }));
    };
    let versions = c.query(
        "SELECT version FROM pluginVersions WHERE pluginId = ? AND LOWER(version) = LOWER(?)
         UNION SELECT version FROM buildJobs WHERE pluginId = ? AND LOWER(version) = LOWER(?)",
        params![plugin_id, version, plugin_id, version],
    )?;
    let spellings: Vec<String> = versions
        .iter()
        .map(|r| r.get(0))
        .collect::<Result<_, _>>()?;
    if spellings.iter().any(|v| v == version) {
        return Ok(None);
    }
    Ok(spellings.into_iter().min().map(|version| Spelling {
        name: name.to_string(),
        version,
    }))
}

/// A log line's text as stored: cut to [`LOG_LINE_MAX_BYTES`] at a
/// character boundary.
fn stored_text(text: &str) -> &str {
    if text.len() <= LOG_LINE_MAX_BYTES {
        return text;
    }
    let mut end = LOG_LINE_MAX_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A log attempt's totals row (`buildLogs`), locked until COMMIT.
struct LogTotals {
    bytes: i64,
    dropped_lines: i64,
    dropped_bytes: i64,
    updated_at: i64,
}

/// Locks the totals row of (`job_id`, `attempt`), creating it if absent
/// (as [`lock_version`] does): appends to one attempt are serialized, so
/// their lines' ids increase in the order they are committed.
fn lock_log_totals<B: Backend>(
    c: &mut dyn Conn,
    job_id: i64,
    attempt: u32,
    now_ms: i64,
) -> Result<LogTotals, StoreError> {
    let select = format!(
        "SELECT bytes, droppedLines, droppedBytes, updatedAt FROM buildLogs
         WHERE jobId = ? AND attempt = ?{}",
        B::FOR_UPDATE
    );
    for _ in 0..2 {
        if let Some(r) = c.query(&select, params![job_id, attempt])?.first() {
            return Ok(LogTotals {
                bytes: r.get(0)?,
                dropped_lines: r.get(1)?,
                dropped_bytes: r.get(2)?,
                updated_at: r.get(3)?,
            });
        }
        let insert = format!(
            "INSERT INTO buildLogs (jobId, attempt, bytes, droppedLines, droppedBytes, updatedAt)
             VALUES (?, ?, 0, 0, 0, ?) {}",
            B::insert_keep_existing("jobId, attempt")
        );
        c.execute(&insert, params![job_id, attempt, now_ms])?;
    }
    Err(StoreError::Other("log totals row vanished".into()))
}

/// Inserts `lines` into (`job_id`, `attempt`)'s log, in order, with
/// multi-row INSERTs of 32, 16, … 1 rows (a few distinct statements, each
/// prepared once per connection).
fn insert_log_lines(
    c: &mut dyn Conn,
    job_id: i64,
    attempt: u32,
    lines: &[(&NewLogLine, &str)],
) -> Result<(), StoreError> {
    let mut rest = lines;
    while !rest.is_empty() {
        let n = [32, 16, 8, 4, 2, 1]
            .into_iter()
            .find(|&n| n <= rest.len())
            .expect("1 <= len");
        let (chunk, tail) = rest.split_at(n);
        let sql = format!(
            "INSERT INTO buildLogLines (jobId, attempt, at, stream, line) VALUES {}",
            vec!["(?, ?, ?, ?, ?)"; n].join(", ")
        );
        let mut p = Vec::with_capacity(n * 5);
        for (line, text) in chunk {
            p.extend([
                Value::Int(job_id),
                Value::from(attempt),
                Value::Int(line.at_ms),
                Value::from(line.stream.as_str()),
                Value::from(*text),
            ]);
        }
        c.execute(&sql, &p)?;
        rest = tail;
    }
    Ok(())
}

/// A log read's rows as a page, oldest line first: part 0 the attempt's
/// dropped counts (at most one row), part 1 its lines, part 2 (a tail
/// read) how many lines it stores, returned beside the page (0 without).
fn log_page(attempt: u32, rows: &[Row]) -> Result<(LogPage, i64), StoreError> {
    let mut page = LogPage {
        attempt,
        ..LogPage::default()
    };
    let mut stored = 0;
    for r in rows {
        match r.get::<i64>(0)? {
            0 => (page.dropped_lines, page.dropped_bytes) = (r.get(1)?, r.get(2)?),
            2 => stored = r.get(1)?,
            _ => page.lines.push(LogLine {
                seq: r.get(1)?,
                at_ms: r.get(2)?,
                stream: r.get(3)?,
                text: r.get(4)?,
            }),
        }
    }
    // A UNION's rows come in no promised order.
    page.lines.sort_by_key(|l| l.seq);
    Ok((page, stored))
}

/// Removes the oldest lines of (`job_id`, `attempt`) until at least
/// `excess` bytes went; returns the lines and bytes removed.
fn drop_oldest_lines<B: Backend>(
    c: &mut dyn Conn,
    job_id: i64,
    attempt: u32,
    excess: i64,
) -> Result<(i64, i64), StoreError> {
    let (mut lines, mut bytes) = (0i64, 0i64);
    let select = format!(
        "SELECT id, {} FROM buildLogLines WHERE jobId = ? AND attempt = ? AND id > ?
         ORDER BY id LIMIT 256",
        B::byte_length("line")
    );
    let mut after = 0i64;
    while bytes < excess {
        let rows = c.query(&select, params![job_id, attempt, after])?;
        let mut last = None;
        for r in &rows {
            last = Some(r.get::<i64>(0)?);
            lines += 1;
            bytes += r.get::<i64>(1)?;
            if bytes >= excess {
                break;
            }
        }
        let Some(last) = last else { break };
        c.execute(
            "DELETE FROM buildLogLines WHERE jobId = ? AND attempt = ? AND id <= ?",
            params![job_id, attempt, last],
        )?;
        after = last;
    }
    Ok((lines, bytes))
}

impl<B: Backend> SqlStore<B> {
    pub fn new(backend: B) -> SqlStore<B> {
        SqlStore {
            b: backend,
            limits: std::sync::RwLock::new(ColumnLimits::MARKETPLACE),
        }
    }

    /// Runs `f` on a connection, each statement committing itself. Runs it
    /// once more on a fresh connection when the connection was found dead
    /// before anything could have been written (see [`Conn::retry_on_fresh`]).
    fn run<T>(
        &self,
        mut f: impl FnMut(&mut dyn Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut retried = false;
        loop {
            let mut c = self.b.connect()?;
            match f(&mut c) {
                Err(e) if !retried && c.retry_on_fresh(&e) => {
                    log::info!(
                        "{} connection lost ({e}); once more on a fresh one",
                        B::KIND
                    );
                    retried = true;
                }
                r => return r,
            }
        }
    }

    /// Runs `f` in one transaction. An error rolls it back (the connection
    /// does, when dropped); a COMMIT is never run twice.
    fn transaction<T>(
        &self,
        mut f: impl FnMut(&mut dyn Conn) -> Result<Txn<T>, StoreError>,
    ) -> Result<T, StoreError> {
        self.run(|c| {
            c.begin()?;
            match f(c)? {
                Txn::Commit(out) => c.commit().map(|()| out),
                Txn::Rollback(out) => c.rollback().map(|()| out),
            }
        })
    }
}

impl<B: Backend> Store for SqlStore<B> {
    fn kind(&self) -> &'static str {
        B::KIND
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.run(|c| c.query("SELECT 1", &[]).map(drop))
    }

    fn migrate(&self) -> Result<(), StoreError> {
        // One transaction where DDL is transactional (SQLite: concurrent
        // migrations are serialized); MySQL commits each DDL statement
        // itself, and every step here is safe to run again.
        let limits = self.transaction(|c| {
            for ddl in B::CREATE_TABLES {
                c.execute(ddl, &[])?;
            }
            let names = |c: &mut dyn Conn, sql: &str| -> Result<Vec<String>, StoreError> {
                c.query(sql, &[])?.iter().map(|r| r.get(0)).collect()
            };
            let existing = names(c, B::LIST_JOB_COLUMNS)?;
            for col in ADDED_JOB_COLUMNS {
                if !existing.iter().any(|e| e.eq_ignore_ascii_case(col.name)) {
                    log::info!("migrate: adding buildJobs.{}", col.name);
                    let null = match col.default {
                        Some(d) => format!("NOT NULL DEFAULT {d}"),
                        None => "NULL".to_string(),
                    };
                    let ty = B::column_type(col.ty);
                    c.execute(
                        &format!("ALTER TABLE buildJobs ADD COLUMN {} {ty} {null}", col.name),
                        &[],
                    )?;
                }
            }
            let indexes = names(c, B::LIST_JOB_INDEXES)?;
            for ix in ADDED_JOB_INDEXES {
                if !indexes.iter().any(|i| i == ix.name) {
                    log::info!("migrate: adding index {} on buildJobs", ix.name);
                    c.execute(
                        &format!("CREATE INDEX {} ON buildJobs ({})", ix.name, ix.columns),
                        &[],
                    )?;
                }
            }
            let limits = match B::LIST_COLUMN_WIDTHS {
                Some(sql) => {
                    let widths = c
                        .query(sql, &[])?
                        .iter()
                        .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .collect::<Result<Vec<_>, StoreError>>()?;
                    ColumnLimits::from_widths(&widths)
                }
                None => ColumnLimits::MARKETPLACE,
            };
            Ok(Txn::Commit(limits))
        })?;
        if limits != ColumnLimits::MARKETPLACE {
            log::info!("migrate: the database's columns hold {limits:?}");
        }
        *self.limits.write().unwrap_or_else(|p| p.into_inner()) = limits;
        Ok(())
    }

    fn column_limits(&self) -> ColumnLimits {
        *self.limits.read().unwrap_or_else(|p| p.into_inner())
    }

    fn version_jobs(&self, name: &str, version: &str) -> Result<Vec<Job>, StoreError> {
        let found = self.run(|c| {
            jobs(
                c,
                "p.name = ? AND j.version = ? ORDER BY j.platform, j.id",
                params![name, version],
            )
        })?;
        // A case-insensitive collation (MySQL's default) also matched other
        // spellings: keep the exact ones, as SQLite does.
        Ok(found
            .into_iter()
            .filter(|j| j.plugin_name == name && j.version == version)
            .collect())
    }

    fn case_twin(&self, name: &str, version: &str) -> Result<Option<Spelling>, StoreError> {
        self.run(|c| case_twin(c, name, version))
    }

    fn record_upload(
        &self,
        up: &NewUpload,
        new_token: &mut dyn FnMut() -> String,
        commit_file: &mut dyn FnMut() -> std::io::Result<()>,
    ) -> Result<UploadOutcome, StoreError> {
        self.transaction(|c| {
            let now = up.now;
            let conflict = |s: Spelling| Ok(Txn::Rollback(UploadOutcome::Refused(Refusal::CaseConflict(s))));
            if let Some(twin) = case_twin(c, &up.name, &up.version)? {
                return conflict(twin);
            }
            // Locks the plugin row: uploads of one plugin are serialized.
            let upsert = format!(
                "INSERT INTO plugins (name, displayName, description, publishedAt, updatedAt)
                 VALUES (?, COALESCE(?, ?), COALESCE(?, ''), ?, ?) {}
                   displayName = COALESCE(?, plugins.displayName),
                   description = COALESCE(?, plugins.description),
                   updatedAt = ?",
                B::upsert("name")
            );
            c.execute(
                &upsert,
                params![
                    &up.name,
                    up.display_name.as_ref(),
                    &up.name,
                    up.description.as_ref(),
                    now,
                    now,
                    up.display_name.as_ref(),
                    up.description.as_ref(),
                    now
                ],
            )?;
            let plugin = c.query("SELECT id, name FROM plugins WHERE name = ?", params![&up.name])?;
            let plugin = plugin
                .first()
                .ok_or_else(|| StoreError::Other("plugin row vanished".into()))?;
            let (plugin_id, spelled): (i64, String) = (plugin.get(0)?, plugin.get(1)?);
            // A case-insensitive unique key met another spelling recorded
            // meanwhile by a concurrent upload (the check above saw none).
            if spelled != up.name {
                return conflict(Spelling {
                    name: spelled,
                    version: up.version.clone(),
                });
            }
            lock_version::<B>(c, plugin_id, &up.version, now)?;
            let spelled: String = c
                .query(
                    "SELECT version FROM pluginVersions WHERE pluginId = ? AND version = ?",
                    params![plugin_id, &up.version],
                )?
                .first()
                .ok_or_else(|| StoreError::Other("version row vanished".into()))?
                .get(0)?;
            if spelled != up.version {
                return conflict(Spelling {
                    name: up.name.clone(),
                    version: spelled,
                });
            }
            let existing = locked_jobs::<B>(
                c,
                "j.pluginId = ? AND j.version = ?",
                params![plugin_id, &up.version],
                &up.name,
            )?;
            let to_build = match plan_upload(&existing, &up.platforms) {
                Ok(p) => p,
                // Declined: rolled back (the plugin row's updatedAt included).
                Err(r) => return Ok(Txn::Rollback(UploadOutcome::Refused(r))),
            };
            let reserved_until = up.reserved_until_ms;
            let mut ids = Vec::new();
            for pf in &to_build {
                let token = new_token();
                match existing.iter().find(|j| j.platform == pf.hub_name()) {
                    Some(old) => {
                        c.execute(
                            "UPDATE buildJobs SET status = 'pending', hubJobId = NULL, errorMessage = NULL,
                               createdAt = ?, completedAt = NULL, callbackToken = ?, attempts = 0,
                               nextAttemptAt = ?, submittedAt = NULL, sizeBytes = NULL, sha256 = NULL,
                               entry = ?, updatedAt = ? WHERE id = ?",
                            params![now, token, reserved_until, &up.entry, now, old.id],
                        )?;
                        ids.push(Value::Int(old.id));
                    }
                    None => {
                        let id = c.insert(
                            "INSERT INTO buildJobs (pluginId, version, platform, status, createdAt,
                               callbackToken, attempts, nextAttemptAt, entry, updatedAt)
                             VALUES (?, ?, ?, 'pending', ?, ?, 0, ?, ?, ?)",
                            params![
                                plugin_id,
                                &up.version,
                                pf.hub_name(),
                                now,
                                token,
                                reserved_until,
                                &up.entry,
                                now
                            ],
                        )?;
                        ids.push(Value::Int(id));
                    }
                }
            }
            let created = if ids.is_empty() {
                Vec::new()
            } else {
                let w = format!("j.id IN ({}) ORDER BY j.platform, j.id", placeholders(ids.len()));
                jobs(c, &w, &ids)?
            };
            // The file goes in place last, just before COMMIT; if the COMMIT
            // fails the caller puts back what was there (see `commit_file`).
            commit_file().map_err(|e| StoreError::Other(format!("storing the tarball: {e}")))?;
            Ok(Txn::Commit(UploadOutcome::Recorded(created)))
        })
    }

    fn claim(
        &self,
        filter: ClaimFilter,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<Job>, StoreError> {
        self.transaction(|c| {
            let ids = match &filter {
                ClaimFilter::Due(limit) => {
                    let sql = format!(
                        "SELECT id FROM buildJobs
                         WHERE status = 'pending' AND callbackToken IS NOT NULL AND nextAttemptAt <= ?
                         ORDER BY nextAttemptAt, id LIMIT ?{}",
                        B::FOR_UPDATE_SKIP_LOCKED
                    );
                    let limit = i64::try_from(*limit).unwrap_or(i64::MAX);
                    ids_of(c.query(&sql, params![now_ms, limit])?)?
                }
                ClaimFilter::Ids(ids) if ids.is_empty() => Vec::new(),
                ClaimFilter::Ids(ids) => {
                    // Waits for locks instead of skipping them: another
                    // process's claim scan locks rows it merely examines for
                    // a moment, and skipping one of the upload's own new jobs
                    // then left it for the background loop after its
                    // reservation (minutes). A job another claimer really
                    // took has attempts > 0 once its lock is released.
                    let sql = format!(
                        "SELECT id FROM buildJobs
                         WHERE status = 'pending' AND attempts = 0 AND callbackToken IS NOT NULL
                           AND id IN ({}) ORDER BY id{}",
                        placeholders(ids.len()),
                        B::FOR_UPDATE
                    );
                    let ids: Vec<Value> = ids.iter().map(|&i| Value::Int(i)).collect();
                    ids_of(c.query(&sql, &ids)?)?
                }
            };
            if ids.is_empty() {
                return Ok(Txn::Rollback(Vec::new()));
            }
            let list = placeholders(ids.len());
            let mut p = vec![Value::Int(now_ms + lease_ms), Value::Int(now_ms / 1000)];
            p.extend(ids.iter().cloned());
            c.execute(
                &format!(
                    "UPDATE buildJobs SET attempts = attempts + 1, logAttempt = logAttempt + 1,
                       nextAttemptAt = ?, updatedAt = ? WHERE id IN ({list})"
                ),
                &p,
            )?;
            let claimed = jobs(c, &format!("j.id IN ({list}) ORDER BY j.platform, j.id"), &ids)?;
            Ok(Txn::Commit(claimed))
        })
    }

    fn record_attempt(
        &self,
        job_id: i64,
        attempt: u32,
        result: &AttemptResult,
        now: i64,
    ) -> Result<bool, StoreError> {
        const GUARD: &str = "id = ? AND status = 'pending' AND attempts = ?";
        self.run(|c| {
            let n = match result {
                AttemptResult::Accepted { hub_job_id } => c.execute(
                    &format!(
                        // A new hub job starts unfollowed: a lease left by
                        // the follower of an earlier hub job of this row must
                        // not keep it from being subscribed at once.
                        "UPDATE buildJobs SET status = 'queued', hubJobId = ?, errorMessage = NULL,
                           submittedAt = ?, followUntil = 0, stage = NULL, progress = NULL,
                           progressMessage = NULL, queuePosition = NULL, updatedAt = ?
                         WHERE {GUARD}"
                    ),
                    params![hub_job_id, now, now, job_id, attempt],
                )?,
                AttemptResult::Retry {
                    next_attempt_at_ms,
                    error,
                } => c.execute(
                    &format!(
                        "UPDATE buildJobs SET nextAttemptAt = ?, errorMessage = ?, updatedAt = ?
                         WHERE {GUARD}"
                    ),
                    params![*next_attempt_at_ms, error, now, job_id, attempt],
                )?,
                AttemptResult::Failed { error } => c.execute(
                    &format!(
                        "UPDATE buildJobs SET status = 'failed', errorMessage = ?, completedAt = NULL,
                           updatedAt = ? WHERE {GUARD}"
                    ),
                    params![error, now, job_id, attempt],
                )?,
            };
            if n == 0
                && let AttemptResult::Accepted { hub_job_id } = result
            {
                // The artifact may have arrived before the hub's answer was
                // recorded: keep the hub's job id all the same.
                let n = c.execute(
                    "UPDATE buildJobs SET hubJobId = ?, submittedAt = COALESCE(submittedAt, ?)
                     WHERE id = ? AND attempts = ? AND status = 'completed' AND hubJobId IS NULL",
                    params![hub_job_id, now, job_id, attempt],
                )?;
                return Ok(n == 1);
            }
            Ok(n == 1)
        })
    }

    fn fail_timed_out(
        &self,
        submitted_before: i64,
        message: &str,
        now: i64,
    ) -> Result<Vec<Job>, StoreError> {
        self.transaction(|c| {
            // The old server's pending rows are never claimed (no token):
            // left alone they would block their version for good.
            let sql = format!(
                "SELECT id FROM buildJobs
                 WHERE (status IN ('queued', 'building')
                        OR (status = 'pending' AND callbackToken IS NULL))
                   AND COALESCE(submittedAt, createdAt) < ? ORDER BY id{}",
                B::FOR_UPDATE_SKIP_LOCKED
            );
            let ids = ids_of(c.query(&sql, params![submitted_before])?)?;
            if ids.is_empty() {
                return Ok(Txn::Rollback(Vec::new()));
            }
            let list = placeholders(ids.len());
            let mut p = vec![Value::from(message), Value::Int(now)];
            p.extend(ids.iter().cloned());
            c.execute(
                &format!(
                    "UPDATE buildJobs SET status = 'failed', errorMessage = ?, completedAt = NULL,
                       updatedAt = ? WHERE id IN ({list})"
                ),
                &p,
            )?;
            let failed = jobs(c, &format!("j.id IN ({list}) ORDER BY j.id"), &ids)?;
            Ok(Txn::Commit(failed))
        })
    }

    fn job_by_id(&self, id: i64) -> Result<Option<Job>, StoreError> {
        self.run(|c| Ok(jobs(c, "j.id = ?", params![id])?.into_iter().next()))
    }

    fn job_by_legacy_callback(&self, callback_id: &str) -> Result<LegacyLookup, StoreError> {
        // Only the old server's rows: hone-build's own jobs are reached by
        // their id and their own token, never by UPLOAD_SECRET.
        let spelled = B::concat(&["p.name", "'-'", "j.version", "'-'", "j.platform"]);
        let found = self.run(|c| {
            jobs(
                c,
                &format!("j.callbackToken IS NULL AND {spelled} = ?"),
                params![callback_id],
            )
        })?;
        Ok(match found.len() {
            0 => LegacyLookup::NotFound,
            1 => LegacyLookup::Found(Box::new(found.into_iter().next().expect("one job"))),
            n => LegacyLookup::Ambiguous(n),
        })
    }

    fn complete_job(
        &self,
        job_id: i64,
        by: Deliverer<'_>,
        a: &Artifact,
        commit_file: &mut dyn FnMut() -> std::io::Result<()>,
    ) -> Result<CompleteOutcome, StoreError> {
        self.transaction(|c| {
            let Some(seen) = jobs(c, "j.id = ?", params![job_id])?.into_iter().next() else {
                return Ok(Txn::Rollback(CompleteOutcome::NotFound));
            };
            lock_version::<B>(c, seen.plugin_id, &seen.version, a.now)?;
            let job = locked_jobs::<B>(c, "j.id = ?", params![job_id], &seen.plugin_name)?
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::Other("job vanished".into()))?;
            // The delivery was authorized before its body was received; the
            // job may have changed hands since (a new upload gave it a new
            // token, or it became another hub job).
            let still_theirs = match by {
                Deliverer::Callback(token) => job.callback_token.as_deref() == token,
                Deliverer::HubJob(hub_job) => job.hub_job_id.as_deref() == Some(hub_job),
            };
            if !still_theirs {
                return Ok(Txn::Rollback(CompleteOutcome::Superseded));
            }
            if job.status == JobStatus::Completed {
                return Ok(Txn::Rollback(
                    if job.sha256.as_deref() == Some(a.sha256.as_str()) {
                        CompleteOutcome::AlreadyCompleted
                    } else {
                        CompleteOutcome::Conflict
                    },
                ));
            }
            c.execute(
                "UPDATE buildJobs SET status = 'completed', completedAt = ?, sizeBytes = ?, sha256 = ?,
                   errorMessage = NULL, updatedAt = ? WHERE id = ?",
                params![a.now, a.size, &a.sha256, a.now, job_id],
            )?;
            let completed = c
                .query(
                    "SELECT platform, sizeBytes, sha256 FROM buildJobs
                     WHERE pluginId = ? AND version = ? AND status = 'completed' ORDER BY id",
                    params![job.plugin_id, &job.version],
                )?
                .iter()
                .map(|r| {
                    Ok(CompletedBuild {
                        platform: r.get(0)?,
                        size_bytes: r.get(1)?,
                        sha256: r.get(2)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let v = version_artifacts(&job.plugin_name, &job.version, &completed);
            c.execute(
                "UPDATE pluginVersions SET platforms = ?, downloadUrl = ?, sizeBytes = ?, sha256 = ?
                 WHERE pluginId = ? AND version = ?",
                params![
                    v.platforms_json,
                    v.download_url,
                    v.size_bytes,
                    v.sha256,
                    job.plugin_id,
                    &job.version
                ],
            )?;
            commit_file().map_err(|e| StoreError::Other(format!("storing the artifact: {e}")))?;
            Ok(Txn::Commit(CompleteOutcome::Completed))
        })
    }

    fn version_row(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<VersionArtifacts>, StoreError> {
        let rows = self.run(|c| {
            c.query(
                "SELECT v.platforms, v.downloadUrl, v.sizeBytes, v.sha256 FROM pluginVersions v
                 JOIN plugins p ON p.id = v.pluginId WHERE p.name = ? AND v.version = ?",
                params![name, version],
            )
        })?;
        rows.first()
            .map(|r| {
                Ok(VersionArtifacts {
                    platforms_json: r.get::<Option<String>>(0)?.unwrap_or_default(),
                    download_url: r.get(1)?,
                    size_bytes: r.get(2)?,
                    sha256: r.get(3)?,
                })
            })
            .transpose()
    }

    fn list_jobs(&self, name: Option<&str>, version: Option<&str>) -> Result<Vec<Job>, StoreError> {
        let mut conds = vec!["1 = 1"];
        let mut p = Vec::new();
        if let Some(n) = name {
            conds.push("p.name = ?");
            p.push(Value::from(n));
        }
        if let Some(v) = version {
            conds.push("j.version = ?");
            p.push(Value::from(v));
        }
        let w = format!(
            "{} ORDER BY j.createdAt DESC, j.id DESC",
            conds.join(" AND ")
        );
        self.run(|c| jobs(c, &w, &p))
    }

    fn retry_failed(
        &self,
        name: &str,
        version: &str,
        platform: Option<&str>,
        now: i64,
        new_token: &mut dyn FnMut() -> String,
    ) -> Result<usize, StoreError> {
        let mut select = "SELECT id FROM buildJobs
             WHERE (status = 'failed' OR (status = 'pending' AND callbackToken IS NULL))
               AND version = ? AND pluginId = (SELECT id FROM plugins WHERE name = ?)"
            .to_string();
        let mut p = vec![Value::from(version), Value::from(name)];
        if let Some(pf) = platform {
            select.push_str(" AND platform = ?");
            p.push(Value::from(pf));
        }
        select.push_str(" ORDER BY id");
        select.push_str(B::FOR_UPDATE);
        self.transaction(|c| {
            let ids = ids_of(c.query(&select, &p)?)?;
            for id in &ids {
                // A row of the old server gets a token (and an entry): from
                // now on it is hone-build's, submitted and followed like any.
                c.execute(
                    "UPDATE buildJobs SET status = 'pending', attempts = 0, nextAttemptAt = ?,
                       errorMessage = NULL, hubJobId = NULL, submittedAt = NULL, completedAt = NULL,
                       callbackToken = COALESCE(callbackToken, ?), entry = COALESCE(entry, ?),
                       updatedAt = ?
                     WHERE id = ?",
                    &[
                        Value::Int(now * 1000),
                        Value::from(new_token()),
                        Value::from(DEFAULT_ENTRY),
                        Value::Int(now),
                        id.clone(),
                    ],
                )?;
            }
            Ok(Txn::Commit(ids.len()))
        })
    }

    fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = self.run(|c| {
            c.query(
                "SELECT status, COUNT(*) FROM buildJobs GROUP BY status ORDER BY status",
                &[],
            )
        })?;
        rows.iter().map(|r| Ok((r.get(0)?, r.get(1)?))).collect()
    }

    fn claim_follows(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.transaction(|c| {
            let sql = format!(
                "SELECT id FROM buildJobs
                 WHERE status = 'queued' AND hubJobId IS NOT NULL AND callbackToken IS NOT NULL
                   AND followUntil <= ?
                 ORDER BY followUntil, id LIMIT ?{}",
                B::FOR_UPDATE_SKIP_LOCKED
            );
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let ids = ids_of(c.query(&sql, params![now_ms, limit])?)?;
            if ids.is_empty() {
                return Ok(Txn::Rollback(Vec::new()));
            }
            let list = placeholders(ids.len());
            let mut p = vec![Value::from(owner), Value::Int(now_ms + lease_ms)];
            p.extend(ids.iter().cloned());
            c.execute(
                &format!(
                    "UPDATE buildJobs SET followedBy = ?, followUntil = ? WHERE id IN ({list})"
                ),
                &p,
            )?;
            let claimed = jobs(c, &format!("j.id IN ({list}) ORDER BY j.id"), &ids)?;
            Ok(Txn::Commit(claimed))
        })
    }

    fn renew_follow(
        &self,
        job_id: i64,
        owner: &str,
        hub_job_id: &str,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = self.run(|c| {
            c.execute(
                "UPDATE buildJobs SET followUntil = ?
                 WHERE id = ? AND followedBy = ? AND status = 'queued' AND hubJobId = ?",
                params![until_ms, job_id, owner, hub_job_id],
            )
        })?;
        Ok(n == 1)
    }

    fn release_follow(&self, job_id: i64, owner: &str) -> Result<(), StoreError> {
        self.run(|c| {
            c.execute(
                "UPDATE buildJobs SET followUntil = 0 WHERE id = ? AND followedBy = ?",
                params![job_id, owner],
            )
            .map(drop)
        })
    }

    fn resubmit(
        &self,
        job_id: i64,
        hub_job_id: &str,
        why: &str,
        max_attempts: u32,
        now_ms: i64,
        now: i64,
    ) -> Result<ResubmitOutcome, StoreError> {
        const GUARD: &str = "id = ? AND status = 'queued' AND hubJobId = ?";
        self.run(|c| {
            let failed = c.execute(
                &format!(
                    "UPDATE buildJobs SET status = 'failed', errorMessage = ?, completedAt = NULL,
                       followUntil = 0, updatedAt = ? WHERE {GUARD} AND attempts >= ?"
                ),
                params![
                    format!("gave up after {max_attempts} submissions: {why}"),
                    now,
                    job_id,
                    hub_job_id,
                    max_attempts
                ],
            )?;
            if failed == 1 {
                return Ok(ResubmitOutcome::Failed);
            }
            let requeued = c.execute(
                &format!(
                    "UPDATE buildJobs SET status = 'pending', hubJobId = NULL, submittedAt = NULL,
                       errorMessage = ?, nextAttemptAt = ?, followUntil = 0, updatedAt = ?
                     WHERE {GUARD}"
                ),
                params![why, now_ms, now, job_id, hub_job_id],
            )?;
            Ok(if requeued == 1 {
                ResubmitOutcome::Requeued
            } else {
                ResubmitOutcome::Unchanged
            })
        })
    }

    fn fail_followed(
        &self,
        job_id: i64,
        hub_job_id: &str,
        message: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = self.run(|c| {
            c.execute(
                "UPDATE buildJobs SET status = 'failed', errorMessage = ?, completedAt = NULL,
                   followUntil = 0, updatedAt = ?
                 WHERE id = ? AND status = 'queued' AND hubJobId = ?",
                params![message, now, job_id, hub_job_id],
            )
        })?;
        Ok(n == 1)
    }

    fn record_progress(
        &self,
        job_id: i64,
        hub_job_id: &str,
        p: &BuildProgress,
    ) -> Result<bool, StoreError> {
        let n = self.run(|c| {
            c.execute(
                "UPDATE buildJobs SET stage = ?, progress = ?, progressMessage = ?, queuePosition = ?
                 WHERE id = ? AND status = 'queued' AND hubJobId = ?",
                params![
                    p.stage.as_ref(),
                    p.percent,
                    p.message.as_ref(),
                    p.queue_position,
                    job_id,
                    hub_job_id
                ],
            )
        })?;
        Ok(n == 1)
    }

    fn append_log(
        &self,
        job_id: i64,
        attempt: u32,
        lines: &[NewLogLine],
        max_bytes: u64,
    ) -> Result<u64, StoreError> {
        if lines.is_empty() {
            return Ok(0);
        }
        let max = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        let cut: Vec<(&NewLogLine, &str)> =
            lines.iter().map(|l| (l, stored_text(&l.text))).collect();
        let len = |t: &str| i64::try_from(t.len()).unwrap_or(i64::MAX);
        // Lines of this batch the bound would drop at once are never written.
        let mut batch: i64 = cut.iter().map(|(_, t)| len(t)).sum();
        let mut skip = 0;
        while skip < cut.len() && batch > max {
            batch -= len(cut[skip].1);
            skip += 1;
        }
        let skipped_bytes: i64 = cut[..skip].iter().map(|(_, t)| len(t)).sum();
        let skipped_lines = i64::try_from(skip).unwrap_or(i64::MAX);
        let kept = &cut[skip..];
        let last_at = lines.iter().map(|l| l.at_ms).max().unwrap_or(0);
        self.transaction(|c| {
            let t = lock_log_totals::<B>(c, job_id, attempt, last_at)?;
            insert_log_lines(c, job_id, attempt, kept)?;
            let mut bytes = t.bytes + batch;
            let (mut dropped_lines, mut dropped_bytes) = (
                t.dropped_lines + skipped_lines,
                t.dropped_bytes + skipped_bytes,
            );
            if bytes > max {
                let (n, b) = drop_oldest_lines::<B>(c, job_id, attempt, bytes - max)?;
                bytes -= b;
                dropped_lines += n;
                dropped_bytes += b;
            }
            c.execute(
                "UPDATE buildLogs SET bytes = ?, droppedLines = ?, droppedBytes = ?, updatedAt = ?
                 WHERE jobId = ? AND attempt = ?",
                params![
                    bytes,
                    dropped_lines,
                    dropped_bytes,
                    t.updated_at.max(last_at),
                    job_id,
                    attempt
                ],
            )?;
            Ok(Txn::Commit(u64::try_from(batch).unwrap_or(0)))
        })
    }

    fn read_log(
        &self,
        job_id: i64,
        attempt: u32,
        after_seq: i64,
        limit: usize,
    ) -> Result<LogPage, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // One statement, so the lines and the dropped counts are of one
        // moment on both databases (a statement reads one snapshot; two
        // would not, even in a transaction at MySQL's READ COMMITTED): an
        // append between two reads would show its lines with the counts
        // of before it. Rows of part 0 are the totals (at most one), of
        // part 1 the lines.
        let rows = self.run(|c| {
            c.query(
                "SELECT 0 AS part, droppedLines, droppedBytes, '' AS stream, '' AS line
                 FROM buildLogs WHERE jobId = ? AND attempt = ?
                 UNION ALL
                 SELECT 1, id, at, stream, line FROM (
                   SELECT id, at, stream, line FROM buildLogLines
                   WHERE jobId = ? AND attempt = ? AND id > ? ORDER BY id LIMIT ?
                 ) AS page",
                params![job_id, attempt, job_id, attempt, after_seq, limit],
            )
        })?;
        Ok(log_page(attempt, &rows)?.0)
    }

    fn read_log_tail(
        &self,
        job_id: i64,
        attempt: u32,
        limit: usize,
    ) -> Result<LogTail, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // One statement, for one moment (see read_log): part 0 the totals,
        // part 2 the count of the attempt's stored lines, part 1 the lines
        // (newest first in the subquery, to take the last `limit`).
        let rows = self.run(|c| {
            c.query(
                "SELECT 0 AS part, droppedLines, droppedBytes, '' AS stream, '' AS line
                 FROM buildLogs WHERE jobId = ? AND attempt = ?
                 UNION ALL
                 SELECT 2, COUNT(*), 0, '', '' FROM buildLogLines WHERE jobId = ? AND attempt = ?
                 UNION ALL
                 SELECT 1, id, at, stream, line FROM (
                   SELECT id, at, stream, line FROM buildLogLines
                   WHERE jobId = ? AND attempt = ? ORDER BY id DESC LIMIT ?
                 ) AS page",
                params![job_id, attempt, job_id, attempt, job_id, attempt, limit],
            )
        })?;
        let (page, stored) = log_page(attempt, &rows)?;
        let read = i64::try_from(page.lines.len()).unwrap_or(i64::MAX);
        let tail = LogTail {
            page,
            earlier_lines: (stored - read).max(0),
        };
        Ok(tail)
    }

    fn prune_logs(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut removed = 0u64;
        loop {
            let old = self.run(|c| {
                c.query(
                    "SELECT jobId, attempt FROM buildLogs WHERE updatedAt < ?
                     ORDER BY updatedAt, jobId, attempt LIMIT 100",
                    params![before_ms],
                )
            })?;
            if old.is_empty() {
                break;
            }
            for r in &old {
                let (job_id, attempt): (i64, i64) = (r.get(0)?, r.get(1)?);
                // One attempt per transaction, checked again under its lock:
                // an attempt written meanwhile is kept.
                removed += self.transaction(|c| {
                    let still = format!(
                        "SELECT jobId FROM buildLogs WHERE jobId = ? AND attempt = ? AND updatedAt < ?{}",
                        B::FOR_UPDATE
                    );
                    if c.query(&still, params![job_id, attempt, before_ms])?.is_empty() {
                        return Ok(Txn::Rollback(0));
                    }
                    let n = c.execute(
                        "DELETE FROM buildLogLines WHERE jobId = ? AND attempt = ?",
                        params![job_id, attempt],
                    )?;
                    c.execute(
                        "DELETE FROM buildLogs WHERE jobId = ? AND attempt = ?",
                        params![job_id, attempt],
                    )?;
                    Ok(Txn::Commit(n))
                })?;
            }
        }
        // Lines without totals (none are written so; a row removed by hand):
        // gone once old enough.
        removed += self.run(|c| {
            c.execute(
                "DELETE FROM buildLogLines WHERE at < ? AND NOT EXISTS (
                   SELECT 1 FROM buildLogs b
                   WHERE b.jobId = buildLogLines.jobId AND b.attempt = buildLogLines.attempt)",
                params![before_ms],
            )
        })?;
        Ok(removed)
    }
}
