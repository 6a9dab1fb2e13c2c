//! Files on disk: uploaded tarballs (UPLOADS_DIR) and compiled binaries with
//! their manifest (PACKAGES_DIR), laid out as docs/storage.md describes. Every file is written to a
//! temporary file in its target directory, flushed, and renamed into place,
//! so no reader ever sees a partial file. Paths are built only from names
//! that passed `validate::name_like`.

use crate::codec;
use crate::platform::Platform;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

mod guard;
pub mod reconcile;
pub mod tarball;
pub use guard::{Placed, RecordedCheck, Unsettled};

/// Prefix of temporary files; a crashed write leaves one behind, which
/// [`remove_stale_temps`] cleans up.
pub const TEMP_PREFIX: &str = ".tmp-";

/// A file being written in its final directory; removed on drop unless
/// [`TempFile::persist`] renamed it into place.
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
    /// Directories `create_in` had to create, deepest first: removed again
    /// (when still empty) if the file is not persisted, so a refused request
    /// leaves no trace.
    created_dirs: Vec<PathBuf>,
}

impl TempFile {
    /// Creates `dir` (its components below `root`, never through a
    /// symbolic link: see [`ensure_dir`]) and a new temporary file in it.
    pub fn create_in(root: &Path, dir: &Path) -> io::Result<TempFile> {
        let created_dirs = ensure_dir(root, dir)?;
        // A concurrent refused request may remove an empty directory between
        // our ensure_dir and open: try once more.
        let mut t = match TempFile::open_in(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                ensure_dir(root, dir)?;
                TempFile::open_in(dir)?
            }
            other => other?,
        };
        t.created_dirs = created_dirs;
        Ok(t)
    }

    /// A new temporary file in `dir`, which must exist and be a real
    /// directory (not a symbolic link); creates nothing else.
    pub fn create_beside(dir: &Path) -> io::Result<TempFile> {
        match fs::symlink_metadata(dir) {
            Ok(m) if m.file_type().is_symlink() => return Err(symlink_refused(dir)),
            Ok(_) => {}
            Err(e) => return Err(context("opening the directory", dir, e)),
        }
        TempFile::open_in(dir)
    }

    fn open_in(dir: &Path) -> io::Result<TempFile> {
        let path = dir.join(format!("{TEMP_PREFIX}{}", codec::random_hex(8)?));
        // `create_new` (O_CREAT | O_EXCL) never follows a symbolic link.
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| context("creating", &path, e))?;
        Ok(TempFile {
            path,
            file: Some(file),
            created_dirs: Vec::new(),
        })
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("temp file open until persisted")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes the data to disk and renames the file to `dest` (same
    /// directory), then syncs the directory so the rename survives a crash.
    pub fn persist(&mut self, dest: &Path) -> io::Result<()> {
        let file = self.file.take().expect("persist once");
        file.sync_all()
            .map_err(|e| context("flushing", &self.path, e))?;
        drop(file);
        fs::rename(&self.path, dest).map_err(|e| context("renaming into place", dest, e))?;
        if let Some(dir) = dest.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| context("syncing the directory", dir, e))?;
        }
        self.path = PathBuf::new();
        self.created_dirs.clear();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
            for d in &self.created_dirs {
                let _ = fs::remove_dir(d); // only succeeds while empty
            }
        }
    }
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let path = self.path.clone();
        self.file()
            .write(buf)
            .map_err(|e| context("writing", &path, e))
    }
    fn flush(&mut self) -> io::Result<()> {
        let path = self.path.clone();
        self.file()
            .flush()
            .map_err(|e| context("writing", &path, e))
    }
}

/// A file moved into place whose transaction has not committed yet: what it
/// replaced is kept (as a hard link) so that [`Replacement::undo`] can put it
/// back if the transaction fails; [`Replacement::keep`] drops that copy.
/// `dest` always exists throughout: readers see the old or the new file.
#[must_use = "call keep() or undo()"]
pub struct Replacement {
    dest: PathBuf,
    backup: Option<PathBuf>,
    /// Inode of the file placed: `undo` leaves `dest` alone once another
    /// request has replaced it meanwhile.
    placed_ino: u64,
}

impl Replacement {
    /// Persists `tmp` as `dest`, keeping a link to the file it replaces.
    pub fn place(tmp: &mut TempFile, dest: &Path) -> io::Result<Replacement> {
        let backup = match fs::symlink_metadata(dest) {
            Ok(_) => {
                let b = dest.with_file_name(format!("{TEMP_PREFIX}bak-{}", codec::random_hex(8)?));
                fs::hard_link(dest, &b).map_err(|e| context("keeping a copy of", dest, e))?;
                Some(b)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(context("reading", dest, e)),
        };
        let mut placed = Replacement {
            dest: dest.to_path_buf(),
            backup,
            placed_ino: 0,
        };
        let tmp_ino = inode(tmp.path());
        match tmp.persist(dest) {
            Ok(()) => {
                placed.placed_ino = inode(dest).unwrap_or(0);
                Ok(placed)
            }
            // Renamed, but the directory could not be synced: the new file
            // is in place, so the change has to be undone (what it replaced
            // put back), or a failed change would leave it there.
            Err(e) if tmp_ino.is_some() && inode(dest) == tmp_ino => {
                placed.placed_ino = tmp_ino.unwrap_or(0);
                placed.undo();
                Err(e)
            }
            Err(e) => {
                placed.keep();
                Err(e)
            }
        }
    }

    /// The file this replacement put in place.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// The transaction failed: put back what was there (or remove the file).
    /// If `dest` is no longer the file placed (a later request replaced it),
    /// it is left alone.
    pub fn undo(self) {
        if inode(&self.dest) != Some(self.placed_ino) {
            log::info!("{} was replaced since; not undoing", self.dest.display());
            return self.keep();
        }
        match &self.backup {
            Some(b) => {
                if let Err(e) = fs::rename(b, &self.dest) {
                    log::error!("cannot restore {}: {e}", self.dest.display());
                }
            }
            None => {
                if let Err(e) = fs::remove_file(&self.dest) {
                    log::error!("cannot remove {}: {e}", self.dest.display());
                }
            }
        }
    }

    /// The transaction committed: forget the old file.
    pub fn keep(self) {
        if let Some(b) = &self.backup {
            let _ = fs::remove_file(b);
        }
    }
}

fn inode(p: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(p).ok().map(|m| m.ino())
}

/// `e` with the operation and the path in its message; the kind is kept
/// (a full disk stays one: `ApiError` answers it with 507).
pub fn context(op: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{op} {}: {e}", path.display()))
}

fn symlink_refused(path: &Path) -> io::Error {
    io::Error::other(format!(
        "refusing to write through the symbolic link {}",
        path.display()
    ))
}

/// Makes sure `dir` is a real directory, creating what is missing of it
/// below `root` one component at a time. A component that is a symbolic
/// link (or not a directory) is refused: files are never written through
/// a link planted inside UPLOADS_DIR or PACKAGES_DIR (`root` itself may
/// be one: it is the operator's choice). Returns the directories created,
/// deepest first.
pub fn ensure_dir(root: &Path, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let rel = dir.strip_prefix(root).map_err(|_| {
        io::Error::other(format!(
            "{} is not inside {}",
            dir.display(),
            root.display()
        ))
    })?;
    if !root.is_dir() {
        fs::create_dir_all(root).map_err(|e| context("creating the directory", root, e))?;
    }
    let mut created = Vec::new();
    let mut at = root.to_path_buf();
    for c in rel.components() {
        let std::path::Component::Normal(c) = c else {
            return Err(io::Error::other(format!(
                "{} is not a plain path",
                dir.display()
            )));
        };
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => return Err(symlink_refused(&at)),
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{} is not a directory",
                    at.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&at) {
                Ok(()) => created.push(at.clone()),
                // Created meanwhile by another request: check it again.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if fs::symlink_metadata(&at)?.file_type().is_symlink() {
                        return Err(symlink_refused(&at));
                    }
                }
                Err(e) => return Err(context("creating the directory", &at, e)),
            },
            Err(e) => return Err(context("reading", &at, e)),
        }
    }
    created.reverse();
    Ok(created)
}

/// Checks that `dir` is a directory this process can create files in (a
/// probe file is created and removed: cheap, and true also for root).
pub fn check_writable(dir: &Path) -> io::Result<()> {
    let m = fs::metadata(dir).map_err(|e| context("reading", dir, e))?;
    if !m.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is not a directory", dir.display()),
        ));
    }
    let probe = dir.join(format!("{TEMP_PREFIX}probe-{}", codec::random_hex(6)?));
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| context("creating a file in", dir, e))?;
    fs::remove_file(&probe).map_err(|e| context("removing", &probe, e))
}

/// The answer to a store operation that failed while it put files in
/// place: the file error `file` (kept by the caller's callback) when there
/// is one and the store only reports it as its own failure, so a full disk
/// is a 507 naming the file in the log, not an "internal database error".
pub fn store_or_file_error(
    e: crate::error::StoreError,
    file: Option<io::Error>,
) -> crate::error::ApiError {
    match (e, file) {
        (crate::error::StoreError::Other(_), Some(io)) => io.into(),
        (e, _) => e.into(),
    }
}

/// Where an uploaded tarball lives: `UPLOADS_DIR/<name>/<version>.tar.gz`.
pub fn tarball_path(uploads_dir: &Path, name: &str, version: &str) -> PathBuf {
    uploads_dir.join(name).join(format!("{version}.tar.gz"))
}

/// `PACKAGES_DIR/<name>/<version>`.
pub fn version_dir(packages_dir: &Path, name: &str, version: &str) -> PathBuf {
    packages_dir.join(name).join(version)
}

/// `<platform-id>.bin`.
pub fn artifact_file_name(p: Platform) -> String {
    format!("{}.bin", p.id())
}

/// One artifact in `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestEntry {
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    #[serde(rename = "storedAt")]
    pub stored_at: String,
    /// Where the program came from, when hone-build took it out of a hub
    /// package (absent for a program delivered as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ProgramOrigin>,
}

/// The hub artifact a stored program was taken from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProgramOrigin {
    /// The artifact's name as the hub announced it.
    pub artifact: String,
    /// The `artifact_ready` target (`linux`, `macos-precompiled`, …).
    pub target: String,
    /// SHA-256 of the downloaded (decoded) artifact.
    pub package_sha256: String,
    /// `raw`, `tar.gz` or `zip`.
    pub package: String,
    /// The program's path inside the package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
}

/// `manifest.json` (docs/storage.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    #[serde(rename = "pluginName")]
    pub plugin_name: String,
    pub version: String,
    pub artifacts: BTreeMap<String, ManifestEntry>,
}

/// What the rows say of each platform of a version: platform id →
/// completed. A platform missing from it is one the rows say nothing about.
pub type RowStates = BTreeMap<String, bool>;

/// Reads the version directory's `manifest.json`: `Ok(None)` when there is
/// none, `Err(Err(_))` when it is unparsable.
pub fn read_manifest(dir: &Path) -> io::Result<Result<Option<Manifest>, serde_json::Error>> {
    let path = dir.join("manifest.json");
    match fs::read(&path) {
        Ok(bytes) => Ok(serde_json::from_slice::<Manifest>(&bytes).map(Some)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Ok(None)),
        Err(e) => Err(context("reading", &path, e)),
    }
}

/// A manifest rebuilt from the programs in `dir` and the rows: every
/// `<platform-id>.bin` is listed (size and SHA-256 of the file, stored at
/// its modification time) unless the rows say its platform did not
/// complete — an entry nothing proves wrong is kept.
pub fn rebuild_manifest(
    dir: &Path,
    name: &str,
    version: &str,
    rows: &RowStates,
) -> io::Result<Manifest> {
    let mut artifacts = BTreeMap::new();
    let entries = fs::read_dir(dir).map_err(|e| context("reading", dir, e))?;
    for e in entries.flatten() {
        let file_name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = file_name.strip_suffix(".bin") else {
            continue;
        };
        if file_name.starts_with('.') || rows.get(id) == Some(&false) {
            continue;
        }
        let path = e.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        artifacts.insert(id.to_string(), entry_of_file(&path, &file_name)?);
    }
    Ok(Manifest {
        plugin_name: name.into(),
        version: version.into(),
        artifacts,
    })
}

/// A manifest entry describing the file at `path` as it is.
pub fn entry_of_file(path: &Path, filename: &str) -> io::Result<ManifestEntry> {
    use sha2::{Digest, Sha256};
    let mut f = File::open(path).map_err(|e| context("reading", path, e))?;
    let mut h = Sha256::new();
    let size = io::copy(&mut f, &mut h).map_err(|e| context("reading", path, e))?;
    let stored_at = f
        .metadata()
        .and_then(|m| m.modified())
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|_| rfc3339_now());
    Ok(ManifestEntry {
        filename: filename.to_string(),
        size,
        sha256: codec::hex(&h.finalize()),
        stored_at,
        source: None,
    })
}

/// Writes `manifest` as the version directory's `manifest.json`,
/// atomically; what it replaces is kept until the returned
/// [`Replacement`] is kept or undone.
pub fn write_manifest(dir: &Path, manifest: &Manifest) -> io::Result<Replacement> {
    let path = dir.join("manifest.json");
    let mut bytes = serde_json::to_vec_pretty(manifest).map_err(io::Error::other)?;
    bytes.push(b'\n');
    let write = || {
        let mut tmp = TempFile::create_beside(dir)?;
        tmp.write_all(&bytes)?;
        Replacement::place(&mut tmp, &path)
    };
    write().map_err(|e| context("writing the manifest", &path, e))
}

/// Adds (or replaces) one artifact in the version directory's
/// `manifest.json`, rewriting it atomically. An unparsable old manifest is
/// rebuilt from the programs beside it and `rows` (see
/// [`rebuild_manifest`]; the broken file is kept aside as a temporary
/// file, removed with the stale ones). The old manifest is kept until the
/// returned [`Replacement`] is kept or undone.
pub fn update_manifest(
    dir: &Path,
    name: &str,
    version: &str,
    platform: Platform,
    entry: ManifestEntry,
    rows: &RowStates,
) -> io::Result<(Manifest, Replacement)> {
    let path = dir.join("manifest.json");
    let mut manifest = match read_manifest(dir)? {
        Ok(Some(m)) => m,
        Ok(None) => Manifest {
            plugin_name: name.into(),
            version: version.into(),
            artifacts: BTreeMap::new(),
        },
        Err(e) => {
            let aside = dir.join(format!(
                "{TEMP_PREFIX}broken-manifest-{}",
                codec::random_hex(4)?
            ));
            let _ = fs::hard_link(&path, &aside);
            log::warn!(
                "{} is not a valid manifest ({e}); rebuilding it from the programs beside it \
                 and the rows (the broken file is kept as {} for a day)",
                path.display(),
                aside.display()
            );
            rebuild_manifest(dir, name, version, rows)?
        }
    };
    manifest.artifacts.insert(platform.id().to_string(), entry);
    let placed = write_manifest(dir, &manifest)?;
    Ok((manifest, placed))
}

/// RFC 3339 UTC, seconds precision.
pub fn rfc3339_now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Removes temporary files older than `max_age` left in `dir`'s
/// subdirectories (two levels: `<name>/<version>/` and `<name>/`) by a crash.
pub fn remove_stale_temps(root: &Path, max_age: std::time::Duration) {
    fn walk(dir: &Path, depth: u32, max_age: std::time::Duration) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() && depth > 0 {
                walk(&path, depth - 1, max_age);
            } else if meta.is_file()
                && e.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
                && meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|age| age >= max_age)
            {
                log::info!("removing stale temporary file {}", path.display());
                let _ = fs::remove_file(&path);
            }
        }
    }
    walk(root, 2, max_age);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("hone-pkg-{tag}-{}", codec::random_hex(6).unwrap()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn temp_file_is_removed_unless_persisted() {
        let d = tmpdir("temp");
        let p = {
            let mut t = TempFile::create_in(&d, &d.join("a/b")).unwrap();
            t.write_all(b"x").unwrap();
            t.path().to_path_buf()
        };
        assert!(!p.exists());
        assert!(
            !d.join("a").exists(),
            "directories it created are removed too"
        );
        fs::create_dir_all(d.join("a")).unwrap();
        let mut t = TempFile::create_in(&d, &d).unwrap();
        t.write_all(b"hello").unwrap();
        t.persist(&d.join("final.bin")).unwrap();
        drop(t);
        assert_eq!(fs::read(d.join("final.bin")).unwrap(), b"hello");
        assert_eq!(
            fs::read_dir(&d).unwrap().count(),
            2,
            "a/ and final.bin only"
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn replacement_undo_and_keep() {
        let d = tmpdir("replace");
        let dest = d.join("x.bin");
        // New file, undone: gone.
        let mut t = TempFile::create_in(&d, &d).unwrap();
        t.write_all(b"new").unwrap();
        Replacement::place(&mut t, &dest).unwrap().undo();
        assert!(!dest.exists());
        // Over an old file, undone: the old bytes are back.
        fs::write(&dest, b"old").unwrap();
        let mut t = TempFile::create_in(&d, &d).unwrap();
        t.write_all(b"new").unwrap();
        let r = Replacement::place(&mut t, &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        r.undo();
        assert_eq!(fs::read(&dest).unwrap(), b"old");
        // Kept: the new bytes stay and no backup is left.
        let mut t = TempFile::create_in(&d, &d).unwrap();
        t.write_all(b"newer").unwrap();
        Replacement::place(&mut t, &dest).unwrap().keep();
        drop(t);
        assert_eq!(fs::read(&dest).unwrap(), b"newer");
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1, "only x.bin");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn manifest_accumulates_and_is_valid_json() {
        let d = tmpdir("manifest");
        let e = |s: &str| ManifestEntry {
            filename: format!("{s}.bin"),
            size: 3,
            sha256: "ab".into(),
            stored_at: rfc3339_now(),
            source: None,
        };
        update_manifest(
            &d,
            "p",
            "1.0.0",
            Platform::Linux,
            e("linux-x64"),
            &RowStates::new(),
        )
        .unwrap()
        .1
        .keep();
        let (m, placed) = update_manifest(
            &d,
            "p",
            "1.0.0",
            Platform::Macos,
            e("darwin-arm64"),
            &RowStates::new(),
        )
        .unwrap();
        placed.keep();
        assert_eq!(m.artifacts.len(), 2);
        let on_disk: serde_json::Value =
            serde_json::from_slice(&fs::read(d.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(on_disk["pluginName"], "p");
        assert_eq!(
            on_disk["artifacts"]["linux-x64"]["filename"],
            "linux-x64.bin"
        );
        assert!(
            on_disk["artifacts"]["darwin-arm64"]["storedAt"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
        fs::write(d.join("manifest.json"), b"{broken").unwrap();
        let (m, placed) = update_manifest(
            &d,
            "p",
            "1.0.0",
            Platform::Windows,
            e("windows-x64"),
            &RowStates::new(),
        )
        .unwrap();
        assert_eq!(m.artifacts.len(), 1);
        placed.undo();
        assert_eq!(
            fs::read(d.join("manifest.json")).unwrap(),
            b"{broken",
            "undo restores the old file"
        );
        assert_eq!(m.artifacts.len(), 1);
        fs::remove_dir_all(&d).unwrap();
    }
}
