//! Artifact intake: a compiled program for one job, from any byte source
//! (a worker's `POST /artifact`, a download from the hub), streamed →
//! decoded → hashed into a temporary file beside its destination →
//! verified → put in place with `manifest.json` → recorded in one
//! transaction. The body is never held whole in memory, and a refused or
//! failed intake leaves the published files as they were.

use crate::app::{App, now_secs};
use crate::body::{self, Encoding, Limited, Streamed};
use crate::buildlog;
use crate::error::ApiError;
use crate::files::{self, ManifestEntry, Placed, ProgramOrigin, TempFile};
use crate::platform::Platform;
use crate::store::{Artifact, CompleteOutcome, Deliverer, Job, JobStatus};
use crate::unpack::{self, Limits, UnpackError};
use crate::validate;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// A program received for a job, in a temporary file in its version
/// directory, not yet verified or recorded.
pub struct Received {
    tmp: TempFile,
    dir: PathBuf,
    platform: Platform,
    /// Size, SHA-256 and first bytes of the decoded program.
    pub streamed: Streamed,
}

/// What a completed intake stored.
#[derive(Debug, Clone)]
pub struct Stored {
    pub platform: Platform,
    pub size: u64,
    pub sha256: String,
    /// False when the job had already completed with these very bytes
    /// (nothing changed).
    pub changed: bool,
}

impl Stored {
    /// The build log's line for it: `program stored for linux-x64 (N
    /// bytes, sha256 …)`.
    pub fn log_line(&self) -> String {
        format!(
            "program stored for {} ({} bytes, sha256 {})",
            self.platform.id(),
            self.size,
            self.sha256
        )
    }
}

/// The job's platform and version directory; names from the database are
/// checked again before they become a path.
fn destination(app: &App, job: &Job) -> Result<(Platform, PathBuf), ApiError> {
    let platform = job
        .platform()
        .ok_or_else(|| ApiError::internal(format!("job {} has an unknown platform", job.id)))?;
    validate::name_like(&job.plugin_name, "plugin name")
        .and_then(|()| validate::name_like(&job.version, "version"))
        .map_err(|e| {
            ApiError::internal(format!(
                "job {} has an unusable name: {}",
                job.id, e.message
            ))
        })?;
    let dir = files::version_dir(&app.cfg.packages_dir, &job.plugin_name, &job.version);
    Ok((platform, dir))
}

/// Streams `source` (decoded per `encoding`, at most MAX_BODY_BYTES) into
/// a temporary file beside the job's destination, hashing on the way. An
/// empty program is refused.
pub fn receive(
    app: &App,
    job: &Job,
    source: &mut dyn Read,
    encoding: Encoding,
) -> Result<Received, ApiError> {
    let (platform, dir) = destination(app, job)?;
    let mut tmp = TempFile::create_in(&app.cfg.packages_dir, &dir)?;
    let streamed = body::stream_decoded(
        Limited::new(source, app.cfg.max_body_bytes),
        encoding,
        &mut tmp,
    )?;
    if streamed.size == 0 {
        return Err(ApiError::bad_request("artifact body is empty"));
    }
    Ok(Received {
        tmp,
        dir,
        platform,
        streamed,
    })
}

/// Refuses (422, nothing stored) a program whose SHA-256 is not `expected`.
pub fn verify(job: &Job, received: &Received, expected: &str) -> Result<(), ApiError> {
    let got = &received.streamed.sha256;
    if expected.trim().eq_ignore_ascii_case(got) {
        return Ok(());
    }
    log::warn!(
        "job {}: artifact checksum mismatch (announced {}, received {got})",
        job.id,
        validate::printable(expected),
    );
    Err(ApiError::new(
        422,
        "CHECKSUM_MISMATCH",
        format!("x-artifact-sha256 does not match the received bytes (sha256 {got})"),
    ))
}

/// Takes the program out of a received hub package (see `unpack`) into a
/// new temporary file beside it, hashed on the way; a raw program is taken
/// as it is. The package's file is removed when this returns.
pub fn unpack(
    app: &App,
    job: &Job,
    package: Received,
    artifact_name: &str,
    target: &str,
    app_name: &str,
) -> Result<(Received, ProgramOrigin), UnpackError> {
    let Received {
        mut tmp,
        dir,
        platform,
        streamed,
    } = package;
    let artifact = unpack::Artifact {
        name: artifact_name,
        target,
        platform,
        app_name: Some(app_name),
    };
    let io_err = |action: &'static str, source: std::io::Error| UnpackError::Io {
        artifact: artifact_name.to_string(),
        action,
        source,
    };
    let program = TempFile::create_beside(&dir).map_err(|e| io_err("creating a file", e))?;
    let mut out = unpack::HashingWriter::new(program);
    let file = tmp.file();
    file.seek(SeekFrom::Start(0))
        .map_err(|e| io_err("reading the package", e))?;
    let source = unpack::extract_program(
        file,
        &artifact,
        &Limits::for_max_body(app.cfg.max_body_bytes),
        &mut out,
    )?;
    let (program, size, sha256) = out.finish();
    let mut head = Vec::with_capacity(8);
    {
        let mut program = program;
        let f = program.file();
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.take(8).read_to_end(&mut head))
            .map_err(|e| io_err("reading the program", e))?;
        let origin = ProgramOrigin {
            artifact: artifact_name.to_string(),
            target: target.to_string(),
            package_sha256: streamed.sha256,
            package: source.package.as_str().to_string(),
            member: source.member,
        };
        log::info!(
            "job {}: program {} ({size} bytes) taken out of {}",
            job.id,
            validate::printable(origin.member.as_deref().unwrap_or("(the artifact itself)")),
            validate::printable(artifact_name)
        );
        Ok((
            Received {
                tmp: program,
                dir,
                platform,
                streamed: Streamed { size, sha256, head },
            },
            origin,
        ))
    }
}

/// When the version's `manifest.json` is unparsable, what the rows say of
/// each platform (read before the transaction: the manifest is rebuilt
/// from them and the programs, see `files::rebuild_manifest`); otherwise
/// nothing.
fn rows_if_manifest_broken(
    app: &App,
    job: &Job,
    dir: &std::path::Path,
) -> Result<files::RowStates, ApiError> {
    if !matches!(files::read_manifest(dir), Ok(Err(_))) {
        return Ok(files::RowStates::new());
    }
    let jobs = app.store.version_jobs(&job.plugin_name, &job.version)?;
    let mut rows = files::RowStates::new();
    for j in jobs
        .iter()
        .filter(|j| j.plugin_name == job.plugin_name && j.version == job.version)
    {
        if let Some(p) = j.platform() {
            *rows.entry(p.id().to_string()).or_insert(false) |= j.status == JobStatus::Completed;
        }
    }
    Ok(rows)
}

/// Puts a verified program in place as `<platform-id>.bin`, updates
/// `manifest.json` (with `origin` when it came out of a hub package) and
/// completes the job, all in one transaction (the files go in place last,
/// just before COMMIT). A job completed before with other bytes is refused
/// (409): published builds are immutable. So is a job that no longer
/// belongs to `by` (409 `JOB_SUPERSEDED`: reset by a new upload, or
/// submitted again, while the program was on its way).
pub fn record(
    app: &App,
    job: &Job,
    by: Deliverer<'_>,
    received: Received,
    origin: Option<ProgramOrigin>,
) -> Result<Stored, ApiError> {
    let Received {
        mut tmp,
        dir,
        platform,
        streamed,
    } = received;
    let filename = files::artifact_file_name(platform);
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
        stored_at: files::rfc3339_now(),
        source: origin,
    };
    let rows = rows_if_manifest_broken(app, job, &dir)?;
    let mut placed = Placed::default();
    let outcome = app.store.complete_job(job.id, by, &artifact, &mut || {
        placed.place(&mut tmp, &dest)?;
        placed.push(
            files::update_manifest(
                &dir,
                &job.plugin_name,
                &job.version,
                platform,
                entry.clone(),
                &rows,
            )
            .map(|(_, manifest)| manifest),
        )
    });
    let (id, sha) = (job.id, streamed.sha256.clone());
    let outcome = placed.conclude(
        outcome,
        &app.unsettled,
        app.store.as_ref(),
        || format!("artifact of job {id}"),
        // The job, completed with these bytes or not, tells.
        || {
            Box::new(move |store| {
                Ok(store.job_by_id(id)?.is_some_and(|j| {
                    j.status == JobStatus::Completed && j.sha256.as_deref() == Some(sha.as_str())
                }))
            })
        },
    )?;
    let changed = match outcome {
        CompleteOutcome::Completed => {
            app.metrics.artifacts_stored.inc();
            app.metrics.artifact_bytes.inc_by(streamed.size);
            if let Some(accepted) = job.submitted_at {
                let took = crate::app::now_millis() as f64 / 1000.0 - accepted as f64;
                app.metrics.record_build_duration(&job.platform, took);
            }
            log::info!(
                "job {} ({} {} {}): stored {filename}, {} bytes, sha256 {}",
                job.id,
                job.plugin_name,
                job.version,
                job.platform,
                streamed.size,
                streamed.sha256
            );
            true
        }
        CompleteOutcome::AlreadyCompleted => {
            log::info!(
                "job {}: same artifact delivered again; nothing changed",
                job.id
            );
            false
        }
        CompleteOutcome::Conflict => {
            return Err(ApiError::conflict(
                "ARTIFACT_CONFLICT",
                "this build already completed with different bytes; published builds are immutable",
            ));
        }
        CompleteOutcome::NotFound => return Err(ApiError::not_found("unknown build job")),
        CompleteOutcome::Superseded => {
            log::warn!(
                "job {}: a delivery begun before the job was reset or submitted again was refused; nothing stored",
                job.id
            );
            return Err(ApiError::conflict(
                "JOB_SUPERSEDED",
                "this job was reset by a new upload (or submitted again) while the artifact was being received; this delivery no longer belongs to it and nothing was stored",
            ));
        }
    };
    Ok(Stored {
        platform,
        size: streamed.size,
        sha256: streamed.sha256,
        changed,
    })
}

/// The whole intake of one delivery by `by` (a worker's callback):
/// receive, verify against `expected_sha256` when one is given, record.
/// What happened is written to the job attempt's build log.
pub fn deliver(
    app: &App,
    job: &Job,
    by: Deliverer<'_>,
    source: &mut dyn Read,
    encoding: Encoding,
    expected_sha256: Option<&str>,
) -> Result<Stored, ApiError> {
    let mut blog = buildlog::Writer::new(app, job.id, job.log_attempt);
    let stored = (|| {
        let received = receive(app, job, source, encoding)?;
        blog.event(&format!(
            "artifact received from Perry Hub's worker (callback): {} bytes, sha256 {}",
            received.streamed.size, received.streamed.sha256
        ));
        if let Some(expected) = expected_sha256 {
            verify(job, &received, expected)?;
            blog.event("sha256 verified against x-artifact-sha256");
        }
        record(app, job, by, received, None)
    })();
    match &stored {
        Ok(s) if s.changed => blog.event(&s.log_line()),
        Ok(_) => blog.event("the same program was delivered again; nothing changed"),
        Err(e) => blog.event(&format!(
            "artifact delivery refused ({} {}): {}",
            e.status, e.code, e.message
        )),
    }
    stored
}
