//! `POST /upload` (SPEC 2): authenticate, validate, refuse early what would
//! conflict, stream the tarball to a temporary file, record it and its jobs
//! in one transaction, then attempt each platform's first submission.

use crate::app::{App, Unresolved, now_millis, now_secs};
use crate::body::{self, Encoding, Limited};
use crate::dispatcher;
use crate::error::{ApiError, StoreError};
use crate::packages::{self, Replacement, TempFile};
use crate::router::{Ctx, Reply};
use crate::store::{AttemptResult, ClaimFilter, NewUpload, Refusal, UploadOutcome, plan_upload};
use crate::validate::{self, Query};
use serde_json::json;
use std::io::{Cursor, Read};

/// The query parameters of an upload, validated.
struct Params {
    name: String,
    version: String,
    display_name: Option<String>,
    description: Option<String>,
    entry: String,
    platforms: Vec<crate::platform::Platform>,
}

/// Checks `UPLOAD_SECRET` given as `Authorization: Bearer …` or `?token=…`.
pub fn authorize(app: &App, ctx: &Ctx<'_>, query: &Query) -> Result<(), ApiError> {
    let secret = app.cfg.upload_secret.expose();
    if secret.is_empty() {
        return Ok(());
    }
    let bearer = ctx
        .header("Authorization")
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim);
    let presented = bearer.or(query.get("token"));
    match presented {
        Some(p) if validate::secret_matches(p, secret) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("invalid upload secret")),
        None => Err(ApiError::unauthorized(
            "missing upload secret: send Authorization: Bearer <secret> or ?token=<secret>",
        )),
    }
}

fn params(app: &App, q: &Query) -> Result<Params, ApiError> {
    let name = q.get("name").unwrap_or_default().to_string();
    validate::name_like(&name, "name")?;
    let version = q.get("version").unwrap_or_default().to_string();
    validate::name_like(&version, "version")?;
    let display_name = q.get("displayName").map(str::to_string);
    if let Some(d) = &display_name {
        validate::text(d, "displayName", 256)?;
    }
    let description = q.get("description").map(str::to_string);
    if let Some(d) = &description {
        validate::text(d, "description", 4096)?;
    }
    let entry = q.get("entry").unwrap_or("src/index.ts").to_string();
    validate::entry(&entry)?;
    let platforms = match q.get("platforms") {
        Some(p) => validate::platforms(p)?,
        None => app.cfg.platforms.clone(),
    };
    Ok(Params {
        name,
        version,
        display_name,
        description,
        entry,
        platforms,
    })
}

fn refusal(r: Refusal, name: &str, version: &str) -> ApiError {
    match r {
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

pub fn post(app: &App, ctx: &mut Ctx<'_>) -> Result<Reply, ApiError> {
    let query = Query::parse(ctx.query)?;
    authorize(app, ctx, &query)?;
    let p = params(app, &query)?;
    let max = app.cfg.max_body_bytes;
    body::check_declared_length(ctx.req, max)?;

    // Refuse a conflict before reading a possibly large body.
    let existing = app.store.version_jobs(&p.name, &p.version)?;
    if let Err(r) = plan_upload(&existing, &p.platforms) {
        return Err(refusal(r, &p.name, &p.version));
    }

    let final_path = packages::tarball_path(&app.cfg.uploads_dir, &p.name, &p.version);
    let dir = final_path.parent().expect("tarball path has a parent");
    let mut tmp = TempFile::create_in(dir)?;
    let streamed = {
        let mut reader = Limited::new(ctx.req.as_reader(), max);
        // Raw gzip starts with 1f 8b; anything else is taken as base64 text.
        let mut first = [0u8; 2];
        let mut got = 0;
        while got < 2 {
            match reader.read(&mut first[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(body::classify(e)),
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
        body::stream_decoded(
            Cursor::new(first[..got].to_vec()).chain(reader),
            encoding,
            &mut tmp,
        )?
    };
    if streamed.size == 0 {
        return Err(ApiError::bad_request("body is empty after base64 decoding"));
    }
    if !streamed.head.starts_with(&[0x1f, 0x8b]) {
        return Err(ApiError::bad_request(
            "body is not a gzip file (.tar.gz) after decoding",
        ));
    }

    let up = NewUpload {
        name: p.name.clone(),
        version: p.version.clone(),
        display_name: p.display_name,
        description: p.description,
        entry: p.entry,
        platforms: p.platforms,
        now: now_secs(),
        // Reserved for this request's own first submission (below).
        reserved_until_ms: now_millis() + dispatcher::lease_ms(app),
    };
    let mut tokens: Vec<String> = Vec::new();
    let mut new_token = || {
        let t = new_token();
        tokens.push(t.clone());
        t
    };
    let mut placed: Option<Replacement> = None;
    let outcome = app.store.record_upload(&up, &mut new_token, &mut || {
        placed = Some(Replacement::place(&mut tmp, &final_path)?);
        Ok(())
    });
    // The file went in place just before COMMIT: keep it, or put back what
    // it replaced if the transaction failed after all.
    let outcome = match outcome {
        Ok(o) => {
            placed.into_iter().for_each(Replacement::keep);
            o
        }
        // The COMMIT's outcome is unknown: the jobs it created (found by
        // their tokens) tell; until the database can say, the file stays.
        Err(e @ StoreError::CommitUnknown(_)) => {
            let (name, version) = (p.name.clone(), p.version.clone());
            app.settle(Unresolved {
                what: format!("upload {name} {version}"),
                recorded: Box::new(move |store| {
                    let jobs = store.version_jobs(&name, &version)?;
                    Ok(jobs.iter().any(|j| {
                        j.callback_token
                            .as_ref()
                            .is_some_and(|t| tokens.contains(t))
                    }))
                }),
                placed: placed.into_iter().collect(),
            });
            return Err(e.into());
        }
        Err(e) => {
            placed.into_iter().for_each(Replacement::undo);
            return Err(e.into());
        }
    };
    let jobs = match outcome {
        UploadOutcome::Refused(r) => return Err(refusal(r, &p.name, &p.version)),
        UploadOutcome::Recorded(jobs) => jobs,
    };
    app.metrics
        .uploads
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    log::info!(
        "upload {} {}: {} bytes (sha256 {}), {} build(s)",
        p.name,
        p.version,
        streamed.size,
        streamed.sha256,
        jobs.len()
    );

    // First submissions, concurrently, before answering.
    let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
    let submitted = dispatcher::submit_now(app, ClaimFilter::Ids(ids)).unwrap_or_else(|e| {
        log::warn!(
            "upload {} {}: first submission deferred: {e}",
            p.name,
            p.version
        );
        Vec::new()
    });
    let builds: Vec<serde_json::Value> = jobs
        .iter()
        .map(|job| {
            let result = submitted.iter().find(|(j, _)| j.id == job.id).map(|(_, r)| r);
            match result {
                Some(AttemptResult::Accepted { hub_job_id }) => {
                    json!({"platform": job.platform, "jobId": hub_job_id, "status": "queued"})
                }
                Some(AttemptResult::Failed { error }) => {
                    json!({"platform": job.platform, "jobId": "", "status": "failed", "error": error})
                }
                Some(AttemptResult::Retry { error, .. }) => json!({
                    "platform": job.platform, "jobId": "", "status": "pending",
                    "error": format!("{error}; hone-build keeps trying"),
                }),
                None => json!({
                    "platform": job.platform, "jobId": "", "status": "pending",
                    "error": "not submitted yet; hone-build keeps trying",
                }),
            }
        })
        .collect();
    Ok(Reply::json(
        200,
        &json!({"success": true, "pluginName": p.name, "version": p.version, "builds": builds}),
    ))
}

/// A per-job callback token: 256 random bits, hex.
pub fn new_token() -> String {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).expect("the OS random number generator works");
    body::hex(&raw)
}
