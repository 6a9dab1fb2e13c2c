//! `POST /artifact/:callbackId` (SPEC 2): a hub worker delivers a compiled
//! binary. Authenticated by the job's own token (or, for jobs of the old
//! server, `<name>-<version>-<platform>` with UPLOAD_SECRET), decoded and
//! hashed while streamed to a temporary file beside its destination,
//! verified, renamed into place and recorded in one transaction.

use crate::app::{App, Unresolved, now_secs};
use crate::body::{self, Encoding, Limited};
use crate::error::{ApiError, StoreError};
use crate::packages::{self, ManifestEntry, Replacement, TempFile};
use crate::router::{Ctx, Reply};
use crate::store::{Artifact, CompleteOutcome, Job, JobStatus, LegacyLookup};
use crate::validate::{self, Query};
use serde_json::json;
use std::sync::atomic::Ordering::Relaxed;

/// Finds the job a callback id names and checks the token.
fn resolve(app: &App, callback_id: &str, token: Option<&str>) -> Result<Job, ApiError> {
    if callback_id.len() > 300
        || !callback_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(ApiError::bad_request(
            "callback id may contain only letters, digits, '.', '_' and '-'",
        ));
    }
    if callback_id.bytes().all(|b| b.is_ascii_digit()) {
        let id: i64 = callback_id
            .parse()
            .map_err(|_| ApiError::not_found("unknown build job"))?;
        let job = app
            .store
            .job_by_id(id)?
            .ok_or_else(|| ApiError::not_found("unknown build job"))?;
        let Some(token) = token else {
            return Err(ApiError::unauthorized("missing callback token"));
        };
        let expected = job.callback_token.as_deref().unwrap_or_default();
        if !validate::secret_matches(token, expected) {
            return Err(ApiError::unauthorized(
                "invalid callback token for this job",
            ));
        }
        return Ok(job);
    }
    // The old server's form: authenticated by UPLOAD_SECRET, resolved in the database.
    let secret = app.cfg.upload_secret.expose();
    match token {
        Some(t) if validate::secret_matches(t, secret) => {}
        Some(_) => return Err(ApiError::unauthorized("invalid callback token")),
        None => return Err(ApiError::unauthorized("missing callback token")),
    }
    match app.store.job_by_legacy_callback(callback_id)? {
        LegacyLookup::Found(job) => Ok(*job),
        LegacyLookup::NotFound => Err(ApiError::not_found("unknown build job")),
        LegacyLookup::Ambiguous(_) => Err(ApiError::bad_request(
            "callback id is ambiguous; use the job id form",
        )),
    }
}

pub fn post(app: &App, ctx: &mut Ctx<'_>) -> Result<Reply, ApiError> {
    let query = Query::parse(ctx.query)?;
    let callback_id = ctx.params[0].clone();
    let job = resolve(app, &callback_id, query.get("token"))?;
    let max = app.cfg.max_body_bytes;
    body::check_declared_length(ctx.req, max)?;

    let platform = job
        .platform()
        .ok_or_else(|| ApiError::internal(format!("job {} has an unknown platform", job.id)))?;
    // Names from the database are checked again before they become a path.
    validate::name_like(&job.plugin_name, "plugin name")
        .and_then(|()| validate::name_like(&job.version, "version"))
        .map_err(|e| {
            ApiError::internal(format!(
                "job {} has an unusable name: {}",
                job.id, e.message
            ))
        })?;
    if let Some(target) = ctx.header("x-artifact-target")
        && target != platform.hub_name()
        && target != platform.id()
    {
        log::warn!(
            "job {}: x-artifact-target {target:?} differs from the job's platform {platform}",
            job.id
        );
    }
    let expected_sha = ctx
        .header("x-artifact-sha256")
        .map(|s| s.trim().to_ascii_lowercase());
    let raw = ctx.header("Content-Type").is_some_and(|ct| {
        ct.trim()
            .to_ascii_lowercase()
            .starts_with("application/octet-stream")
    });
    let encoding = if raw { Encoding::Raw } else { Encoding::Base64 };

    let dir = packages::version_dir(&app.cfg.packages_dir, &job.plugin_name, &job.version);
    let mut tmp = TempFile::create_in(&dir)?;
    let streamed =
        body::stream_decoded(Limited::new(ctx.req.as_reader(), max), encoding, &mut tmp)?;
    if streamed.size == 0 {
        return Err(ApiError::bad_request("artifact body is empty"));
    }
    if let Some(expected) = &expected_sha
        && *expected != streamed.sha256
    {
        log::warn!(
            "job {}: artifact checksum mismatch (header {}, received {})",
            job.id,
            validate::printable(expected),
            streamed.sha256
        );
        return Err(ApiError::new(
            422,
            "CHECKSUM_MISMATCH",
            format!(
                "x-artifact-sha256 does not match the received bytes (sha256 {})",
                streamed.sha256
            ),
        ));
    }

    let filename = packages::artifact_file_name(platform);
    let dest = dir.join(&filename);
    let artifact = Artifact {
        size: streamed.size as i64,
        sha256: streamed.sha256.clone(),
        now: now_secs(),
    };
    let entry = ManifestEntry {
        filename: filename.clone(),
        size: streamed.size,
        sha256: streamed.sha256.clone(),
        stored_at: packages::rfc3339_now(),
    };
    let mut placed: Vec<Replacement> = Vec::new();
    let outcome = app.store.complete_job(job.id, &artifact, &mut || {
        placed.push(Replacement::place(&mut tmp, &dest)?);
        let (_, manifest) = packages::update_manifest(
            &dir,
            &job.plugin_name,
            &job.version,
            platform,
            entry.clone(),
        )?;
        placed.push(manifest);
        Ok(())
    });
    // The files went in place just before COMMIT: keep them, or put back
    // what they replaced if the transaction failed after all.
    let outcome = match outcome {
        Ok(o) => {
            placed.into_iter().for_each(Replacement::keep);
            o
        }
        // The COMMIT's outcome is unknown: the job, completed with these
        // bytes or not, tells; until the database can say, the files stay.
        Err(e @ StoreError::CommitUnknown(_)) => {
            let (id, sha) = (job.id, streamed.sha256.clone());
            app.settle(Unresolved {
                what: format!("artifact of job {id}"),
                recorded: Box::new(move |store| {
                    Ok(store.job_by_id(id)?.is_some_and(|j| {
                        j.status == JobStatus::Completed
                            && j.sha256.as_deref() == Some(sha.as_str())
                    }))
                }),
                placed,
            });
            return Err(e.into());
        }
        Err(e) => {
            placed.into_iter().rev().for_each(Replacement::undo);
            return Err(e.into());
        }
    };
    match outcome {
        CompleteOutcome::Completed => {
            app.metrics.artifacts_stored.fetch_add(1, Relaxed);
            app.metrics.artifact_bytes.fetch_add(streamed.size, Relaxed);
            log::info!(
                "job {} ({} {} {}): stored {filename}, {} bytes, sha256 {}",
                job.id,
                job.plugin_name,
                job.version,
                job.platform,
                streamed.size,
                streamed.sha256
            );
        }
        CompleteOutcome::AlreadyCompleted => {
            log::info!(
                "job {}: same artifact delivered again; nothing changed",
                job.id
            );
        }
        CompleteOutcome::Conflict => {
            return Err(ApiError::conflict(
                "ARTIFACT_CONFLICT",
                "this build already completed with different bytes; published builds are immutable",
            ));
        }
        CompleteOutcome::NotFound => return Err(ApiError::not_found("unknown build job")),
    }
    Ok(Reply::json(
        200,
        &json!({
            "success": true,
            "plugin": job.plugin_name,
            "version": job.version,
            "platform": platform.id(),
            "size": streamed.size,
            "sha256": streamed.sha256,
        }),
    ))
}
