//! Reconciling the published files with the rows (at start and
//! periodically, from the background loop). A crash between putting a
//! program in place and COMMIT (kill -9, power loss) leaves a `.bin` and a
//! manifest entry for a job the database says is queued, pending or
//! failed; a manifest may also miss a platform that did complete, or be
//! unparsable. Here, for every version directory under PACKAGES_DIR whose
//! version the store knows:
//!
//! - a program whose job did not complete is taken out of the published
//!   files: renamed to a temporary name (kept a day, then removed with the
//!   stale temporary files);
//! - `manifest.json` lists the completed platforms whose program is there,
//!   drops the platforms the rows say did not complete, keeps entries the
//!   rows say nothing about (the old server's, say), and is rebuilt when
//!   unparsable (`files::rebuild_manifest`).
//!
//! Never touched: a version the store does not know (no row of exactly
//! that name and version), a file younger than the grace period (a
//! delivery may be in flight, in this or another process), anything while
//! a change of this process waits to be settled.

use super::{
    Manifest, RowStates, TEMP_PREFIX, entry_of_file, read_manifest, rebuild_manifest,
    write_manifest,
};
use crate::codec;
use crate::error::StoreError;
use crate::store::{JobStatus, Store};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

/// Files younger than this are left alone: a delivery may be in flight.
pub const GRACE: Duration = Duration::from_secs(300);

/// What one pass changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Programs taken out of the published files.
    pub set_aside: usize,
    /// Manifests rewritten.
    pub manifests: usize,
}

fn older_than(path: &Path, grace: Duration) -> bool {
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age >= grace)
}

/// Real subdirectories of `dir` (no symbolic links, no hidden names).
fn subdirs(dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            (!name.starts_with('.')).then(|| (name, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// One pass over PACKAGES_DIR.
pub fn reconcile(
    store: &dyn Store,
    packages_dir: &Path,
    grace: Duration,
) -> Result<Reconciled, StoreError> {
    let mut done = Reconciled::default();
    for (name, plugin_dir) in subdirs(packages_dir) {
        for (version, dir) in subdirs(&plugin_dir) {
            let jobs = store.version_jobs(&name, &version)?;
            // Exactly this spelling (a case-insensitive collation may
            // return another's rows).
            let mut rows: BTreeMap<String, (bool, JobStatus)> = BTreeMap::new();
            for j in jobs
                .iter()
                .filter(|j| j.plugin_name == name && j.version == version)
            {
                if let Some(p) = j.platform() {
                    let completed = j.status == JobStatus::Completed;
                    let e = rows
                        .entry(p.id().to_string())
                        .or_insert((completed, j.status.clone()));
                    // Several rows of one platform: completed wins.
                    if completed {
                        *e = (true, j.status.clone());
                    }
                }
            }
            if rows.is_empty() {
                continue;
            }
            version_dir(&dir, &name, &version, &rows, grace, &mut done);
        }
    }
    Ok(done)
}

fn version_dir(
    dir: &Path,
    name: &str,
    version: &str,
    rows: &BTreeMap<String, (bool, JobStatus)>,
    grace: Duration,
    done: &mut Reconciled,
) {
    // Programs of jobs that did not complete.
    for (id, (completed, status)) in rows {
        let bin = dir.join(format!("{id}.bin"));
        let is_file = fs::symlink_metadata(&bin).is_ok_and(|m| m.is_file());
        if *completed || !is_file || !older_than(&bin, grace) {
            continue;
        }
        let aside = dir.join(format!(
            "{TEMP_PREFIX}stray-{id}.bin-{}",
            codec::random_hex(4).unwrap_or_default()
        ));
        match fs::rename(&bin, &aside) {
            Ok(()) => {
                done.set_aside += 1;
                log::warn!(
                    "{}: its job is {status}, not completed (a crash before COMMIT?): taken out \
                     of the published files, kept as {} for a day",
                    bin.display(),
                    aside.display()
                );
            }
            Err(e) => log::error!("reconcile: renaming {} aside: {e}", bin.display()),
        }
    }

    // The manifest.
    let path = dir.join("manifest.json");
    if path.exists() && !older_than(&path, grace) {
        return;
    }
    let states: RowStates = rows.iter().map(|(k, (c, _))| (k.clone(), *c)).collect();
    let (mut manifest, mut changed) = match read_manifest(dir) {
        Ok(Ok(Some(m))) => (m, false),
        Ok(Ok(None)) => (
            Manifest {
                plugin_name: name.into(),
                version: version.into(),
                artifacts: BTreeMap::new(),
            },
            false,
        ),
        Ok(Err(e)) => match rebuild_manifest(dir, name, version, &states) {
            Ok(m) => {
                log::warn!(
                    "{} is not a valid manifest ({e}): rebuilt from the programs and the rows",
                    path.display()
                );
                (m, true)
            }
            Err(e) => {
                log::error!("reconcile: {e}");
                return;
            }
        },
        Err(e) => {
            log::error!("reconcile: {e}");
            return;
        }
    };
    for (id, (completed, status)) in rows {
        let filename = format!("{id}.bin");
        let bin = dir.join(&filename);
        let present = fs::symlink_metadata(&bin).is_ok_and(|m| m.is_file());
        if *completed {
            if present && !manifest.artifacts.contains_key(id) {
                match entry_of_file(&bin, &filename) {
                    Ok(entry) => {
                        log::warn!(
                            "{}: {id} completed but was not listed: added",
                            path.display()
                        );
                        manifest.artifacts.insert(id.clone(), entry);
                        changed = true;
                    }
                    Err(e) => log::error!("reconcile: {e}"),
                }
            }
        } else if manifest.artifacts.contains_key(id) && (!present || older_than(&bin, grace)) {
            // (A program younger than the grace period may be a delivery in flight.)
            log::warn!(
                "{}: {id} listed but its job is {status}: removed from the manifest",
                path.display()
            );
            manifest.artifacts.remove(id);
            changed = true;
        }
    }
    if changed {
        match write_manifest(dir, &manifest) {
            Ok(r) => {
                r.keep();
                done.manifests += 1;
            }
            Err(e) => log::error!("reconcile: {e}"),
        }
    }
}
