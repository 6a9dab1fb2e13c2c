//! Files on disk under attack and after crashes (issue #11, items 10, 11,
//! 14, 18, 19, 20): stray programs and manifests reconciled with the rows,
//! broken manifests rebuilt, tarballs checked whole, full disks and
//! unwritable directories named, symlinks refused, a deleted SQLite file
//! noticed. Embedded store unless the behaviour depends on the store.

use crate::common;
use crate::fixtures::{ENTRY, Fill, sha256_hex, tar_gz, tarball, tarball_sized};
use common::*;
use serde_json::{Value, json};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const SECRET: &str = "files-s3cret-41c2";
/// Simulator arguments: accepted jobs are not delivered during a test.
const SLOW_SIM: &[&str] = &["--build-delay-ms", "600000"];

fn service(sim: Option<&Sim>, dir: Option<&Path>) -> Service {
    let mut b = Service::builder()
        .set("UPLOAD_SECRET", SECRET)
        .set("PERRY_HUB_LICENSE_KEY", "sim-license")
        .set("RETRY_BASE_SECS", "1")
        .set("RETRY_MAX_SECS", "2");
    if let Some(s) = sim {
        b = b.set("PERRY_HUB_URL", s.url());
    }
    if let Some(d) = dir {
        b = b.dir(d);
    }
    b.start()
}

fn upload(svc: &Service, query: &str, body: &[u8], headers: &[(&str, &str)]) -> Resp {
    let auth = format!("Bearer {SECRET}");
    let mut h = vec![("Authorization", auth.as_str())];
    h.extend_from_slice(headers);
    http(
        "POST",
        &svc.url(&format!("/upload?{query}")),
        &h,
        Some(body),
    )
}

fn post_artifact(svc: &Service, path_query: &str, body: &[u8]) -> Resp {
    http(
        "POST",
        &svc.url(path_query),
        &[("Content-Type", "application/octet-stream")],
        Some(body),
    )
}

fn assert_error(r: &Resp, status: u16, code: &str, needles: &[&str]) -> String {
    assert_eq!(r.status, status, "status; body: {}", r.text());
    let j = r.json();
    assert_eq!(j["code"], code, "code; body: {j}");
    let msg = j["error"].as_str().expect("error message").to_string();
    for n in needles {
        assert!(msg.contains(n), "message {msg:?} should contain {n:?}");
    }
    msg
}

/// Every file (not directory) under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn sqlite(svc_dir: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(svc_dir.join("data").join(SQLITE_FILE)).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c
}

fn count_rows(svc_dir: &Path, table: &str) -> usize {
    let rows = sqlite_rows(&sqlite(svc_dir), &format!("SELECT COUNT(*) FROM {table}"));
    rows[0][0].as_deref().unwrap().parse().unwrap()
}

fn manifest(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn artifact_keys(m: &Value) -> Vec<String> {
    m["artifacts"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn entry(bytes: &[u8], platform_id: &str) -> Value {
    json!({
        "filename": format!("{platform_id}.bin"),
        "size": bytes.len(),
        "sha256": sha256_hex(bytes),
        "storedAt": "2026-01-01T00:00:00Z",
    })
}

fn set_age(path: &Path, age: Duration) {
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

// ---------------------------------------------------------------------------
// Item 14: tarballs are checked whole
// ---------------------------------------------------------------------------

/// One refused upload: label, body, extra headers, what the message says.
type Case<'a> = (&'a str, Vec<u8>, Vec<(&'a str, &'a str)>, Vec<&'a str>);

/// Truncated, corrupt, line-break-stripped, not-a-tar, entry-less and
/// multipart bodies are refused with 400 saying what is wrong; nothing is
/// recorded or stored, nothing is submitted.
#[test]
fn broken_tarballs_are_refused_with_what_is_wrong() {
    let sim = Sim::start(SLOW_SIM);
    let svc = service(Some(&sim), None);
    // Enough incompressible contents that the deflate stream holds line breaks.
    let big = tarball_sized(3, 20_000);
    let good = tarball("good", Fill::Unique);
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 30);
    let mut corrupt = big.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0x55;
    let stripped: Vec<u8> = big
        .iter()
        .copied()
        .filter(|b| *b != b'\n' && *b != b'\r')
        .collect();
    assert!(stripped.len() < big.len(), "the fixture holds line breaks");
    let mut text_gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(
        &mut text_gz,
        b"just some text, no tar here\n".repeat(40).as_slice(),
    )
    .unwrap();
    let not_tar = text_gz.finish().unwrap();
    let no_entry = tar_gz(
        &[
            ("lib/other.ts", b"export {}".as_slice()),
            ("README.md", b"hi".as_slice()),
        ],
        None,
        flate2::Compression::default(),
    );
    let cases: Vec<Case> = vec![
        ("truncated", truncated, vec![], vec!["gzip", "truncated"]),
        ("corrupt", corrupt, vec![], vec!["gzip"]),
        ("stripped", stripped, vec![], vec!["gzip", "--data-binary"]),
        ("nottar", not_tar, vec![], vec!["tar"]),
        ("noentry", no_entry, vec![], vec![ENTRY, "entry"]),
        (
            "multipart",
            [
                b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.tar.gz\"\r\n\
                  Content-Type: application/gzip\r\n\r\n"
                    .as_slice(),
                &good,
                b"\r\n--XyZ--\r\n",
            ]
            .concat(),
            vec![("Content-Type", "multipart/form-data; boundary=XyZ")],
            vec!["multipart/form-data", "raw .tar.gz", "--data-binary"],
        ),
    ];
    for (name, body, headers, needles) in &cases {
        let r = upload(
            &svc,
            &format!("name=broken-{name}&version=1.0.0&platforms=linux"),
            body,
            headers,
        );
        assert_error(&r, 400, "BAD_REQUEST", needles);
    }
    assert_eq!(
        files_under(&svc.dir().join("uploads")),
        Vec::<PathBuf>::new()
    );
    for t in ["plugins", "pluginVersions", "buildJobs"] {
        assert_eq!(count_rows(svc.dir(), t), 0, "rows in {t}");
    }
    assert_eq!(sim.submissions(), Vec::<Value>::new(), "hub submissions");

    // A tarball with a non-default entry holding that entry is accepted.
    let custom = tar_gz(
        &[("lib/main.ts", b"export {}".as_slice())],
        None,
        flate2::Compression::default(),
    );
    let r = upload(
        &svc,
        "name=custom-entry&version=1.0.0&platforms=linux&entry=lib/main.ts",
        &custom,
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = upload(
        &svc,
        "name=custom-entry&version=2.0.0&platforms=linux",
        &custom,
        &[],
    );
    assert_error(&r, 400, "BAD_REQUEST", &[ENTRY]);
}

// ---------------------------------------------------------------------------
// Item 10 and 11: files and manifests reconciled with the rows
// ---------------------------------------------------------------------------

/// A program left by a crash between the rename and COMMIT (its job queued
/// or failed) is taken out of the published files at start; the manifest
/// lists exactly the completed platforms; a version the store does not
/// know and a file younger than the grace period are left alone.
#[test]
fn stray_programs_are_reconciled_with_the_rows_at_start() {
    let work = tempfile::tempdir().unwrap();
    let mut svc = service(None, Some(work.path()));
    // The hub is unreachable: jobs stay pending.
    let r = upload(
        &svc,
        "name=recon&version=1.0.0&platforms=linux,macos,windows",
        &tarball("recon", Fill::Unique),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    svc.kill9();

    let linux = b"linux program".to_vec();
    let macos = b"macos program left by a crash".to_vec();
    let windows = b"windows program being delivered".to_vec();
    {
        let c = sqlite(work.path());
        c.execute(
            "UPDATE buildJobs SET status = 'completed', sha256 = ?1, sizeBytes = ?2, \
             completedAt = 1700000000 WHERE platform = 'linux'",
            rusqlite::params![sha256_hex(&linux), linux.len() as i64],
        )
        .unwrap();
        c.execute(
            "UPDATE buildJobs SET status = 'failed', errorMessage = 'x' WHERE platform = 'macos'",
            [],
        )
        .unwrap();
        c.execute(
            "UPDATE buildJobs SET status = 'queued' WHERE platform = 'windows'",
            [],
        )
        .unwrap();
    }
    let dir = work.path().join("packages/recon/1.0.0");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("linux-x64.bin"), &linux).unwrap();
    fs::write(dir.join("darwin-arm64.bin"), &macos).unwrap();
    fs::write(dir.join("windows-x64.bin"), &windows).unwrap();
    // The manifest lists the stray macOS program, misses the completed Linux one.
    let m = json!({"pluginName": "recon", "version": "1.0.0", "artifacts": {
        "darwin-arm64": entry(&macos, "darwin-arm64"),
        "windows-x64": entry(&windows, "windows-x64"),
    }});
    fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
    let hour = Duration::from_secs(3600);
    for f in ["linux-x64.bin", "darwin-arm64.bin", "manifest.json"] {
        set_age(&dir.join(f), hour);
    }
    // A version the store does not know (the old server's, say): untouched.
    let other = work.path().join("packages/recon/0.9.0");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("linux-x64.bin"), b"old").unwrap();
    let other_manifest = json!({"pluginName": "recon", "version": "0.9.0", "artifacts": {
        "linux-x64": entry(b"old", "linux-x64"), "darwin-arm64": entry(b"gone", "darwin-arm64")}})
    .to_string();
    fs::write(other.join("manifest.json"), &other_manifest).unwrap();
    set_age(&other.join("linux-x64.bin"), hour);

    let svc = service(None, Some(work.path()));
    let settled = wait_until(Duration::from_secs(10), || {
        !dir.join("darwin-arm64.bin").exists()
            && artifact_keys(&manifest(&dir.join("manifest.json"))).contains(&"linux-x64".into())
    });
    let m = manifest(&dir.join("manifest.json"));
    assert!(settled, "not reconciled: {m}\n{}", svc.log());
    assert_eq!(
        artifact_keys(&m),
        vec!["linux-x64", "windows-x64"],
        "completed Linux added, failed macOS dropped, in-flight Windows (younger than the \
         grace period) left: {m}"
    );
    assert_eq!(m["artifacts"]["linux-x64"]["sha256"], sha256_hex(&linux));
    assert_eq!(m["artifacts"]["linux-x64"]["size"], linux.len());
    assert_eq!(fs::read(dir.join("linux-x64.bin")).unwrap(), linux);
    assert_eq!(fs::read(dir.join("windows-x64.bin")).unwrap(), windows);
    // The stray program is kept aside under a temporary name, not served.
    let aside: Vec<PathBuf> = files_under(&dir)
        .into_iter()
        .filter(|p| fs::read(p).unwrap() == macos)
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(
        aside[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".tmp-"),
        "{aside:?}"
    );
    assert_eq!(fs::read(other.join("linux-x64.bin")).unwrap(), b"old");
    assert_eq!(
        fs::read_to_string(other.join("manifest.json")).unwrap(),
        other_manifest
    );
    wait_until(Duration::from_secs(10), || {
        let log = svc.log();
        log.contains("darwin-arm64.bin") && log.contains("failed")
    });
    let log = svc.log();
    assert!(
        log.contains("darwin-arm64.bin") && log.contains("failed"),
        "the log says what was taken out and why:\n{log}"
    );
}

/// A delivery into a version whose `manifest.json` is unparsable rebuilds
/// it from the completed rows and the files: the old server's completed
/// platforms stay listed.
#[test]
fn unparsable_manifest_is_rebuilt_keeping_completed_platforms() {
    let sim = Sim::start(SLOW_SIM);
    let svc = service(Some(&sim), None);
    let r = upload(
        &svc,
        "name=rebuild&version=1.0.0&platforms=linux,windows",
        &tarball("rebuild", Fill::Unique),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let dir = svc.dir().join("packages/rebuild/1.0.0");
    // Linux completed earlier (by the old server: its row and program),
    // and a macOS program the rows say nothing about.
    let linux = b"linux program of the old server".to_vec();
    let macos = b"a program no row mentions".to_vec();
    sqlite(svc.dir())
        .execute(
            "UPDATE buildJobs SET status = 'completed', sha256 = ?1, sizeBytes = ?2, \
             completedAt = 1700000000 WHERE platform = 'linux'",
            rusqlite::params![sha256_hex(&linux), linux.len() as i64],
        )
        .unwrap();
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("linux-x64.bin"), &linux).unwrap();
    fs::write(dir.join("darwin-arm64.bin"), &macos).unwrap();
    fs::write(
        dir.join("manifest.json"),
        b"{\"pluginName\": \"rebuild\", \"artif",
    )
    .unwrap();

    let cb = sim.callback("rebuild", "1.0.0", "windows");
    let windows = b"windows program".to_vec();
    let r = post_artifact(&svc, &cb.path_query, &windows);
    assert_eq!(r.status, 200, "{}", r.text());
    let m = manifest(&dir.join("manifest.json"));
    assert_eq!(
        artifact_keys(&m),
        vec!["darwin-arm64", "linux-x64", "windows-x64"],
        "{m}"
    );
    assert_eq!(m["pluginName"], "rebuild");
    for (id, bytes) in [
        ("linux-x64", &linux),
        ("darwin-arm64", &macos),
        ("windows-x64", &windows),
    ] {
        assert_eq!(m["artifacts"][id]["sha256"], sha256_hex(bytes), "{id}: {m}");
        assert_eq!(m["artifacts"][id]["size"], bytes.len(), "{id}: {m}");
        assert_eq!(m["artifacts"][id]["filename"], format!("{id}.bin"));
    }
}

// ---------------------------------------------------------------------------
// Item 18: full disk, unwritable directories
// ---------------------------------------------------------------------------

fn prlimit_fsize(pid: u32, bytes: &str) {
    let st = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--fsize={bytes}:"))
        .status()
        .expect("run prlimit");
    assert!(st.success(), "prlimit failed: {st}");
}

/// A write that runs out of space (here a file-size limit, EFBIG) answers
/// 507 and logs the operation and the path, for the tarball and for
/// `manifest.json` (not "internal database error"); nothing is recorded;
/// the service lives on.
#[test]
fn full_disk_answers_507_and_logs_the_path() {
    let sim = Sim::start(SLOW_SIM);
    let mut svc = service(Some(&sim), None);
    let r = upload(
        &svc,
        "name=roomy&version=1.0.0&platforms=linux",
        &tarball("roomy", Fill::Unique),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // A big manifest (valid, with entries the rows do not contradict).
    let dir = svc.dir().join("packages/roomy/1.0.0");
    fs::create_dir_all(&dir).unwrap();
    let mut artifacts = serde_json::Map::new();
    for i in 0..300 {
        artifacts.insert(
            format!("extra-{i}"),
            entry(format!("{i}").as_bytes(), "extra"),
        );
    }
    let big = json!({"pluginName": "roomy", "version": "1.0.0", "artifacts": artifacts});
    fs::write(dir.join("manifest.json"), big.to_string()).unwrap();
    let big_len = fs::metadata(dir.join("manifest.json")).unwrap().len();
    assert!(big_len > 40_000, "{big_len}");

    prlimit_fsize(svc.pid(), "20000");
    let body = tarball_sized(4, 60_000);
    assert!(body.len() > 20_000);
    let r = upload(&svc, "name=huge&version=1.0.0&platforms=linux", &body, &[]);
    assert_error(&r, 507, "INSUFFICIENT_STORAGE", &["space"]);
    let cb = sim.callback("roomy", "1.0.0", "linux");
    let r = post_artifact(&svc, &cb.path_query, b"small program");
    let msg = assert_error(&r, 507, "INSUFFICIENT_STORAGE", &["space"]);
    assert!(!msg.contains("database"), "{msg}");
    assert!(svc.is_running(), "SIGXFSZ must not kill the service");
    let uploads = svc.dir().join("uploads").join("huge");
    wait_until(Duration::from_secs(10), || {
        svc.log()
            .lines()
            .any(|l| l.contains("writing") && l.contains(&*uploads.to_string_lossy()))
    });
    let log = svc.log();
    assert!(
        log.lines()
            .any(|l| l.contains("writing") && l.contains(&*uploads.to_string_lossy())),
        "the tarball's path and the operation are logged:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(&*dir.to_string_lossy()) && l.contains("manifest")),
        "the manifest's path is logged:\n{log}"
    );
    assert!(!log.contains("internal database error"), "{log}");
    // Nothing recorded: the job is still queued, the upload left no rows.
    let rows = sqlite_rows(
        &sqlite(svc.dir()),
        "SELECT j.status FROM buildJobs j JOIN plugins p ON p.id = j.pluginId WHERE p.name = 'roomy'",
    );
    assert_eq!(rows, vec![vec![Some("queued".to_string())]]);
    assert_eq!(
        sqlite_rows(
            &sqlite(svc.dir()),
            "SELECT COUNT(*) FROM plugins WHERE name = 'huge'"
        ),
        vec![vec![Some("0".to_string())]]
    );
    assert!(
        !dir.join("linux-x64.bin").exists(),
        "the program was put back"
    );
    assert_eq!(
        fs::metadata(dir.join("manifest.json")).unwrap().len(),
        big_len
    );
    // Space again: the same delivery succeeds.
    prlimit_fsize(svc.pid(), "unlimited");
    let r = post_artifact(&svc, &cb.path_query, b"small program");
    assert_eq!(r.status, 200, "{}", r.text());
    svc.kill9();
}

/// `/health` answers 503 naming the directory when PACKAGES_DIR or
/// UPLOADS_DIR cannot be written (here: replaced by a file, which stops
/// root too); a service cannot start on such a directory.
#[test]
fn unwritable_directories_fail_health_and_start() {
    let svc = service(None, None);
    let h = http("GET", &svc.url("/health"), &[], None);
    assert_eq!(h.status, 200, "{}", h.text());
    for (key, sub) in [("PACKAGES_DIR", "packages"), ("UPLOADS_DIR", "uploads")] {
        let d = svc.dir().join(sub);
        fs::remove_dir_all(&d).unwrap();
        fs::write(&d, b"not a directory").unwrap();
        let h = http("GET", &svc.url("/health"), &[], None);
        assert_eq!(h.status, 503, "{key}: {}", h.text());
        let j = h.json();
        assert_eq!(j["status"], "unavailable", "{j}");
        let problem = j["problems"].to_string();
        assert!(problem.contains(key), "{key}: {j}");
        fs::remove_file(&d).unwrap();
        fs::create_dir(&d).unwrap();
        let h = http("GET", &svc.url("/health"), &[], None);
        assert_eq!(h.status, 200, "{key} back: {}", h.text());
    }
    // At start: refused, naming the key and the path.
    let work = tempfile::tempdir().unwrap();
    fs::write(work.path().join("blocker"), b"x").unwrap();
    let mut s = Service::builder()
        .dir(work.path())
        .set(
            "PACKAGES_DIR",
            work.path().join("blocker").display().to_string(),
        )
        .spawn();
    let st = s.wait_exit(Duration::from_secs(15)).expect("exits");
    assert!(!st.success());
    let log = s.log();
    assert!(
        log.contains("PACKAGES_DIR") && log.contains("blocker"),
        "{log}"
    );
}

// ---------------------------------------------------------------------------
// Item 19: symlinks inside the data directories
// ---------------------------------------------------------------------------

/// Directory symlinks planted inside UPLOADS_DIR and PACKAGES_DIR are not
/// written through: the upload and the delivery are refused, nothing is
/// written outside, nothing recorded.
#[test]
fn planted_directory_symlinks_are_not_followed() {
    let sim = Sim::start(SLOW_SIM);
    let svc = service(Some(&sim), None);
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), svc.dir().join("uploads/evil")).unwrap();
    let r = upload(
        &svc,
        "name=evil&version=1.0.0&platforms=linux",
        &tarball("evil", Fill::Unique),
        &[],
    );
    let msg = assert_error(&r, 500, "INTERNAL", &[]);
    assert!(!msg.contains(&*outside.path().to_string_lossy()), "{msg}");
    assert_eq!(files_under(outside.path()), Vec::<PathBuf>::new());
    assert_eq!(count_rows(svc.dir(), "plugins"), 0);
    // The line is written by the answering thread after the response went
    // out: wait for it rather than read the log once.
    let evil = svc
        .dir()
        .join("uploads/evil")
        .to_string_lossy()
        .into_owned();
    let logged = wait_until(Duration::from_secs(10), || {
        let log = svc.log();
        log.contains("symbolic link") && log.contains(&evil)
    });
    assert!(logged, "{}", svc.log());

    // PACKAGES_DIR: the plugin's directory, then the version's.
    for (name, link) in [("pkga", "pkga"), ("pkgb", "pkgb/1.0.0")] {
        let r = upload(
            &svc,
            &format!("name={name}&version=1.0.0&platforms=linux"),
            &tarball(name, Fill::Unique),
            &[],
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let at = svc.dir().join("packages").join(link);
        fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(outside.path(), &at).unwrap();
        let cb = sim.callback(name, "1.0.0", "linux");
        let r = post_artifact(&svc, &cb.path_query, b"program");
        assert_error(&r, 500, "INTERNAL", &[]);
        assert_eq!(files_under(outside.path()), Vec::<PathBuf>::new(), "{name}");
        let rows = sqlite_rows(
            &sqlite(svc.dir()),
            &format!(
                "SELECT j.status FROM buildJobs j JOIN plugins p ON p.id = j.pluginId \
                 WHERE p.name = '{name}'"
            ),
        );
        assert_eq!(rows, vec![vec![Some("queued".to_string())]], "{name}");
    }
}

// ---------------------------------------------------------------------------
// Item 20: the SQLite file deleted under a running service
// ---------------------------------------------------------------------------

/// Deleting the SQLite file under a running service turns `/health` to 503
/// naming the file, and uploads are refused with 503 instead of being
/// recorded in a file nobody will open again.
#[test]
fn deleted_sqlite_file_is_noticed() {
    let svc = service(None, None);
    let h = http("GET", &svc.url("/health"), &[], None);
    assert_eq!(h.status, 200, "{}", h.text());
    let file = svc.dir().join("data").join(SQLITE_FILE);
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{suffix}", file.display()));
    }
    let h = http("GET", &svc.url("/health"), &[], None);
    assert_eq!(h.status, 503, "{}", h.text());
    assert!(h.text().contains(SQLITE_FILE), "{}", h.text());
    let r = upload(
        &svc,
        "name=lost&version=1.0.0&platforms=linux",
        &tarball("lost", Fill::Unique),
        &[],
    );
    assert_error(&r, 503, "UNAVAILABLE", &[]);
    assert_eq!(
        files_under(&svc.dir().join("uploads")),
        Vec::<PathBuf>::new()
    );
    assert!(
        !file.exists(),
        "no new database file appears behind its back"
    );
}
