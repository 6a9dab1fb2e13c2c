//! Following builds over Perry Hub's WebSocket (issue 10): the real
//! `hone-build` binary against `perry-hub-sim` in its default real-hub mode
//! (no callbacks: hone-build subscribes, downloads the announced artifact
//! once, takes the program out of its package), on both stores.
//!
//! Every test checks `/status` (status, `errorMessage`), the files under
//! PACKAGES_DIR (and that nothing is written outside it), the simulator's
//! record of what it was sent (`/_sim/jobs`, `/_sim/submissions`) and, where
//! they matter, the rows and `/metrics`.
//!
//! With `PERRY_HUB_WS_URL=off` hone-build behaves as before following
//! existed: jobs wait for `POST /artifact` callbacks. The `artifact`,
//! `upload`, `faults` and `operations` suites run that way (the harness's
//! default); [`ws_off_waits_for_callbacks_only`] states it here.

use crate::common;

use crate::fixtures::{Fill, expected_artifact, sha256_hex, tarball};
use common::{Service, ServiceBuilder, Sim, StoreKind, TestDb, both_stores, http, wait_until};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

pub(crate) const LICENSE: &str = "sim-license";

/// Hub platform → marketplace platform id.
fn platform_id(p: &str) -> &'static str {
    match p {
        "macos" => "darwin-arm64",
        "linux" => "linux-x64",
        "windows" => "windows-x64",
        "ios" => "ios-arm64",
        "android" => "android-arm64",
        other => panic!("unknown platform {other}"),
    }
}

/// The `artifact_ready` target that carries a platform's program.
fn program_target(p: &str) -> &'static str {
    match p {
        "macos" => "macos-precompiled",
        "linux" => "linux",
        "windows" => "windows",
        "ios" => "ios-precompiled",
        "android" => "android",
        other => panic!("unknown platform {other}"),
    }
}

/// hone-build (one store, following on) + perry-hub-sim (real-hub mode),
/// in a temporary root. The service's working directory is `root/w/x/y`,
/// so a path escaping PACKAGES_DIR by a few `..` still lands in `root`.
pub(crate) struct Env {
    pub(crate) svc: Service,
    pub(crate) sim: Sim,
    pub(crate) db: Option<TestDb>,
    pub(crate) workdir: PathBuf,
    pub(crate) extra: Vec<(String, String)>,
    root: tempfile::TempDir,
}

impl Env {
    pub(crate) fn start(kind: StoreKind, sim_args: &[&str], extra: &[(&str, &str)]) -> Env {
        Self::start_with(kind, Sim::start_real(sim_args), extra)
    }

    pub(crate) fn start_with(kind: StoreKind, sim: Sim, extra: &[(&str, &str)]) -> Env {
        let root = tempfile::Builder::new()
            .prefix("hone-follow-test")
            .tempdir()
            .expect("tempdir");
        let workdir = root.path().join("w/x/y");
        fs::create_dir_all(&workdir).unwrap();
        let db = (kind == StoreKind::Mysql).then(TestDb::new);
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let svc = Self::builder(&workdir, &sim, db.as_ref(), &extra).start();
        Env {
            svc,
            sim,
            db,
            workdir,
            extra,
            root,
        }
    }

    fn builder(
        workdir: &Path,
        sim: &Sim,
        db: Option<&TestDb>,
        extra: &[(String, String)],
    ) -> ServiceBuilder {
        let mut b = Service::builder()
            .dir(workdir)
            .set("PERRY_HUB_URL", sim.url())
            .set("PERRY_HUB_WS_URL", sim.ws_url())
            .set("PERRY_HUB_LICENSE_KEY", LICENSE)
            .set("BIND", "127.0.0.1")
            .set("RETRY_BASE_SECS", "1")
            .set("RETRY_MAX_SECS", "2");
        for (k, v) in extra {
            b = b.set(k, v.clone());
        }
        if let Some(db) = db {
            // A DB_* key among `extra` (another user) wins.
            let set = |k: &str| extra.iter().any(|(e, _)| format!("HONE_BUILD_{e}") == k);
            b = b.envs(
                db.service_env(&db.host, db.port)
                    .into_iter()
                    .filter(|(k, _)| !set(k)),
            );
        }
        b
    }

    /// Stops hone-build gracefully (SIGTERM) and waits for it to exit.
    pub(crate) fn stop(&mut self) {
        self.svc.terminate();
        let st = self.svc.wait_exit(Duration::from_secs(15));
        assert!(
            st.is_some_and(|s| s.success()),
            "hone-build did not stop cleanly ({st:?}); log:\n{}",
            self.svc.log()
        );
    }

    /// Starts hone-build again on the same directories and database.
    pub(crate) fn start_again(&mut self) {
        self.svc = Self::builder(&self.workdir, &self.sim, self.db.as_ref(), &self.extra).start();
    }

    fn packages(&self) -> PathBuf {
        self.workdir.join("packages")
    }

    fn version_dir(&self, name: &str, version: &str) -> PathBuf {
        self.packages().join(name).join(version)
    }

    /// Uploads `tar` on `svc` and asserts every build was accepted.
    #[track_caller]
    fn upload_on(svc: &Service, name: &str, version: &str, platforms: &str, tar: &[u8]) {
        let url = svc.url(&format!(
            "/upload?name={name}&version={version}&platforms={platforms}&displayName=Test+plugin"
        ));
        let r = http(
            "POST",
            &url,
            &[("Content-Type", "application/gzip")],
            Some(tar),
        );
        assert_eq!(r.status, 200, "upload {name} {version}: {}", r.text());
        let v = r.json();
        let builds = v["builds"].as_array().expect("builds");
        assert_eq!(builds.len(), platforms.split(',').count(), "{v}");
    }

    #[track_caller]
    pub(crate) fn upload_ok(&self, name: &str, version: &str, platforms: &str) -> Vec<u8> {
        let tar = tarball(&format!("{name}-{version}"), Fill::Unique);
        Self::upload_on(&self.svc, name, version, platforms, &tar);
        tar
    }

    pub(crate) fn status(&self, name: &str, version: &str) -> Value {
        let r = http(
            "GET",
            &self.svc.url(&format!("/status/{name}/{version}")),
            &[],
            None,
        );
        assert_eq!(r.status, 200, "/status {name} {version}: {}", r.text());
        r.json()
    }

    /// Waits until `/status` reports `overall`; returns the body.
    #[track_caller]
    pub(crate) fn wait_overall(
        &self,
        name: &str,
        version: &str,
        overall: &str,
        timeout: Duration,
    ) -> Value {
        let mut last = Value::Null;
        let ok = wait_until(timeout, || {
            last = self.status(name, version);
            last["overall"] == overall
        });
        assert!(
            ok,
            "{name} {version} not {overall} within {timeout:?}; last /status: {last}\nlog:\n{}\nsim log:\n{}",
            quiet(&self.svc.log()),
            self.sim.log()
        );
        last
    }

    /// `/_sim/jobs`.
    pub(crate) fn sim_jobs(&self) -> Vec<Value> {
        sim_jobs(&self.sim)
    }

    /// The simulator's job for (bundle of) `name` and `platform`, the last
    /// accepted one (after resubmissions).
    #[track_caller]
    fn sim_job(&self, name: &str, platform: &str) -> Value {
        self.sim_jobs()
            .into_iter()
            .rev()
            .find(|j| {
                j["manifest"]["bundle_id"] == format!("codes.hone.plugin.{name}")
                    && j["targets"] == json!([platform])
            })
            .unwrap_or_else(|| panic!("no hub job of {name} for {platform}"))
    }

    pub(crate) fn metrics(&self) -> String {
        metrics_of(&self.svc)
    }

    /// A store on the service's database (another "process").
    pub(crate) fn store(&self) -> Box<dyn hone_build::store::Store> {
        match &self.db {
            Some(db) => Box::new(db.store()),
            None => Box::new(common::sqlite_store(&self.workdir.join("data"))),
        }
    }

    pub(crate) fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match &self.db {
            Some(db) => db.rows(sql),
            None => {
                let path = self.workdir.join("data").join(common::SQLITE_FILE);
                let c = rusqlite::Connection::open(&path).unwrap();
                c.busy_timeout(Duration::from_secs(10)).unwrap();
                common::sqlite_rows(&c, sql)
            }
        }
    }

    /// `(platform, status, hubJobId, attempts, sha256, errorMessage)` of a
    /// version's jobs, by platform.
    fn job_rows(&self, name: &str, version: &str) -> Vec<Vec<Option<String>>> {
        self.rows(&format!(
            "SELECT j.platform, j.status, j.hubJobId, j.attempts, j.sha256, j.errorMessage \
             FROM buildJobs j JOIN plugins p ON p.id = j.pluginId \
             WHERE p.name = '{name}' AND j.version = '{version}' ORDER BY j.platform"
        ))
    }

    /// Asserts every file under the root is where the service may write:
    /// DATA_DIR, UPLOADS_DIR, or exactly `allowed` under PACKAGES_DIR (paths
    /// relative to it); no link anywhere, no temporary file left.
    #[track_caller]
    fn assert_only_files(&self, allowed: &[String]) {
        wait_until(Duration::from_secs(2), || {
            walk(&self.packages())
                .iter()
                .all(|(p, _)| !p.to_string_lossy().contains(".tmp-"))
        });
        let allowed: BTreeSet<PathBuf> = allowed.iter().map(|a| self.packages().join(a)).collect();
        let mut seen = BTreeSet::new();
        for (p, ft) in walk(self.root.path()) {
            assert!(!ft.is_symlink(), "a link was written: {}", p.display());
            if ft.is_dir() {
                continue;
            }
            if p.starts_with(self.workdir.join("data"))
                || p.starts_with(self.workdir.join("uploads"))
            {
                continue;
            }
            assert!(
                allowed.contains(&p),
                "unexpected file {} (allowed: {allowed:?})",
                p.display()
            );
            seen.insert(p);
        }
        assert_eq!(seen, allowed, "expected files under PACKAGES_DIR");
    }
}

/// Every path under `dir` with its file type (links not followed).
fn walk(dir: &Path) -> Vec<(PathBuf, fs::FileType)> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let ft = e.file_type().unwrap();
        let p = e.path();
        out.push((p.clone(), ft));
        if ft.is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}

fn sim_jobs(sim: &Sim) -> Vec<Value> {
    let r = http("GET", &format!("{}/_sim/jobs", sim.url()), &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().as_array().expect("jobs array").clone()
}

fn metrics_of(svc: &Service) -> String {
    let r = http("GET", &svc.url("/metrics"), &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

/// The value of the sample `series` (name with labels) in a metrics text.
pub(crate) fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

/// A service log without the access lines of `/status` polling.
pub(crate) fn quiet(log: &str) -> String {
    log.lines()
        .filter(|l| !l.contains("GET /status/") && !l.contains("GET /metrics"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The artifact of a hub job that carries the program.
#[track_caller]
fn program_artifact(job: &Value, platform: &str) -> Value {
    let target = program_target(platform);
    job["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["target"] == target)
        .unwrap_or_else(|| panic!("no {target} artifact in {job}"))
        .clone()
}

/// The one build in a `/status` body.
#[track_caller]
pub(crate) fn only_build(st: &Value) -> &Value {
    let b = st["builds"].as_array().expect("builds");
    assert_eq!(b.len(), 1, "{st}");
    &b[0]
}

/// Asserts `.bin` of `platform` is exactly the program inside the hub's
/// package (sha256 and size from `/_sim/jobs`), and its manifest entry.
#[track_caller]
fn assert_program_stored(env: &Env, name: &str, version: &str, platform: &str) -> Value {
    let job = env.sim_job(name, platform);
    let art = program_artifact(&job, platform);
    let id = platform_id(platform);
    let bin = fs::read(env.version_dir(name, version).join(format!("{id}.bin")))
        .unwrap_or_else(|e| panic!("{id}.bin: {e}"));
    assert_eq!(
        Some(bin.len() as u64),
        art["program_size"].as_u64(),
        "{art}"
    );
    assert_eq!(json!(sha256_hex(&bin)), art["program_sha256"], "{art}");
    assert_eq!(art["downloads"], 1, "downloaded exactly once: {art}");
    let manifest: Value = serde_json::from_slice(
        &fs::read(env.version_dir(name, version).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let entry = &manifest["artifacts"][id];
    assert_eq!(entry["filename"], format!("{id}.bin"), "{manifest}");
    assert_eq!(entry["size"], bin.len(), "{manifest}");
    assert_eq!(entry["sha256"], sha256_hex(&bin), "{manifest}");
    let src = &entry["source"];
    assert_eq!(src["artifact"], art["name"], "{manifest}");
    assert_eq!(src["target"], art["target"], "{manifest}");
    assert_eq!(src["packageSha256"], art["sha256"], "{manifest}");
    src.clone()
}

#[track_caller]
fn assert_no_secret(text: &str) {
    for s in [LICENSE, "tok-"] {
        assert!(!text.contains(s), "{s:?} leaked into {text:?}");
    }
}

both_stores!(
    status_shows_the_stage_and_progress_while_building,
    subscribes_at_once_after_the_hub_accepts,
    five_platforms_store_the_program_inside_each_package,
    raw_program_is_stored_as_it_is,
    subscriber_sockets_closed_every_second_still_complete,
    hub_forgetting_its_jobs_resubmits,
    restart_while_artifact_announced_resubmits_and_completes,
    compile_failure_fails_with_the_hubs_message,
    wrong_sha256_stores_nothing_and_fails_after_max_attempts,
    dotted_name_and_prerelease_version_complete,
    device_bound_key_second_plugin_needs_a_token,
    bad_archives_fail_and_write_nothing_outside_packages,
    callback_completes_a_followed_job_without_resubmission,
    ws_off_waits_for_callbacks_only,
    build_timeout_while_following_cancels_at_the_hub,
);

// ---------------------------------------------------------------------------
// Publishing
// ---------------------------------------------------------------------------

/// A publish for the five platforms completes; every `.bin` is exactly the
/// program inside its package; macos comes from `macos-precompiled` (the
/// `.dmg` is never downloaded), windows from the portable zip (the hidden
/// precompiled upload is never downloaded).
fn five_platforms_store_the_program_inside_each_package(kind: StoreKind) {
    let env = Env::start(
        kind,
        &["--build-delay-ms", "800", "--program-size", "5001"],
        &[],
    );
    let (name, version) = ("five-plat", "2.1.0");
    let all = ["macos", "linux", "windows", "ios", "android"];
    env.upload_ok(name, version, &all.join(","));
    let st = env.wait_overall(name, version, "completed", Duration::from_secs(20));

    let mut files = vec![format!("{name}/{version}/manifest.json")];
    for p in all {
        let src = assert_program_stored(&env, name, version, p);
        let package = match p {
            "macos" | "linux" => "tar.gz",
            _ => "zip",
        };
        assert_eq!(src["package"], package, "{p}: {src}");
        let member = src["member"].as_str().unwrap_or_else(|| panic!("{src}"));
        let art = program_artifact(&env.sim_job(name, p), p);
        assert_eq!(json!(member), art["program_path"], "{p}");
        files.push(format!("{name}/{version}/{}.bin", platform_id(p)));
    }
    // The manifest lists the five, and nothing else.
    let manifest: Value = serde_json::from_slice(
        &fs::read(env.version_dir(name, version).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let ids: BTreeSet<&str> = manifest["artifacts"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        ids,
        all.iter().map(|p| platform_id(p)).collect(),
        "{manifest}"
    );

    // /status: five completed builds with the stored sha256 and size.
    let builds = st["builds"].as_array().unwrap();
    assert_eq!(builds.len(), 5, "{st}");
    for b in builds {
        let p = b["platform"].as_str().unwrap();
        let art = program_artifact(&env.sim_job(name, p), p);
        assert_eq!(b["status"], "completed", "{b}");
        assert_eq!(b["sha256"], art["program_sha256"], "{b}");
        assert_eq!(b["size"], art["program_size"], "{b}");
        assert_eq!(b["hubJobId"], env.sim_job(name, p)["job_id"], "{b}");
        assert!(b.get("errorMessage").is_none(), "{b}");
    }

    // The packages not carrying the program are never downloaded, also once
    // the hub's builds are over (the .dmg and the signed .ipa come later).
    assert!(
        wait_until(Duration::from_secs(10), || env
            .sim_jobs()
            .iter()
            .all(|j| j["state"] == "succeeded")),
        "{:?}",
        env.sim_jobs()
    );
    let mut others = BTreeSet::new();
    for j in env.sim_jobs() {
        for a in j["artifacts"].as_array().unwrap() {
            let t = a["target"].as_str().unwrap();
            let p = j["targets"][0].as_str().unwrap();
            if t == program_target(p) {
                assert_eq!(a["downloads"], 1, "{a}");
            } else {
                assert_eq!(a["downloads"], 0, "{t} must not be downloaded: {a}");
                others.insert(t.to_string());
            }
        }
    }
    assert_eq!(
        others,
        ["ios-sign", "macos-sign", "windows-precompiled"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        "the packages that carry no program were built"
    );
    // One submission per platform, none again.
    assert_eq!(env.sim.submissions().len(), 5);
    // Rows: completed with the program's sha256.
    for r in env.job_rows(name, version) {
        let p = r[0].clone().unwrap();
        let art = program_artifact(&env.sim_job(name, &p), &p);
        assert_eq!(r[1].as_deref(), Some("completed"), "{r:?}");
        assert_eq!(json!(r[4]), art["program_sha256"], "{r:?}");
    }
    // (`/status` answers from the commit; the counter follows right after.)
    wait_until(Duration::from_secs(5), || {
        metric(&env.metrics(), "hone_build_artifacts_fetched_total") >= 5.0
    });
    let m = env.metrics();
    assert_eq!(metric(&m, "hone_build_artifacts_fetched_total"), 5.0, "{m}");
    env.assert_only_files(&files);
}

/// The hub replays nothing: hone-build subscribes as soon as the hub
/// accepted a job, not at the follow supervisor's next look for work. A
/// worker that starts 300 ms after acceptance and plays its build in about
/// 100 ms: every build completes on its first submission (also with the
/// whole suite running at once on a loaded machine; at 100 ms this failed
/// every time before the supervisor was woken by the submission, but is
/// too tight under load).
fn subscribes_at_once_after_the_hub_accepts(kind: StoreKind) {
    let env = Env::start(kind, &["--build-delay-ms", "300"], &[]);
    let (name, version) = ("prompt", "1.0.0");
    env.upload_ok(name, version, "linux,windows,android");
    let st = env.wait_overall(name, version, "completed", Duration::from_secs(15));
    let subs = env.sim.submissions();
    assert_eq!(subs.len(), 3, "each job submitted once: {subs:?}");
    for b in st["builds"].as_array().unwrap() {
        assert_eq!(b["attempts"], 1, "{b}");
        assert!(b.get("errorMessage").is_none(), "{b}");
    }
    for p in ["linux", "windows", "android"] {
        assert_program_stored(&env, name, version, p);
    }
}

/// A patched worker returns the program itself: stored as it is.
fn raw_program_is_stored_as_it_is(kind: StoreKind) {
    let env = Env::start(kind, &["--build-delay-ms", "800", "--raw-program"], &[]);
    let (name, version) = ("raw-prog", "1.0.0");
    env.upload_ok(name, version, "linux,windows");
    let st = env.wait_overall(name, version, "completed", Duration::from_secs(15));
    for p in ["linux", "windows"] {
        let job = env.sim_job(name, p);
        let arts = job["artifacts"].as_array().unwrap();
        assert_eq!(arts.len(), 1, "{job}");
        let art = &arts[0];
        assert_eq!(art["target"], p);
        // The package is the program: its sha256 is the program's.
        assert_eq!(art["sha256"], art["program_sha256"], "{art}");
        let src = assert_program_stored(&env, name, version, p);
        assert_eq!(src["package"], "raw", "{src}");
    }
    for b in st["builds"].as_array().unwrap() {
        assert_eq!(b["status"], "completed", "{b}");
    }
    env.assert_only_files(&[
        format!("{name}/{version}/manifest.json"),
        format!("{name}/{version}/linux-x64.bin"),
        format!("{name}/{version}/windows-x64.bin"),
    ]);
}

/// The hub's sockets close every second during the build (queued 0.8 s,
/// then a stage every 0.4 s: the artifact is announced about 2.4 s after
/// acceptance, between the second and the third close). hone-build
/// subscribes again at once after each close (nothing is replayed: any gap
/// loses messages), so the build completes on its first submission.
fn subscriber_sockets_closed_every_second_still_complete(kind: StoreKind) {
    let env = Env::start(
        kind,
        &[
            "--build-delay-ms",
            "800",
            "--stage-delay-ms",
            "400",
            "--close-subscribers-after-ms",
            "1000",
        ],
        &[],
    );
    let (name, version) = ("closing-socks", "1.0.0");
    env.upload_ok(name, version, "linux");
    let st = env.wait_overall(name, version, "completed", Duration::from_secs(25));
    assert_eq!(only_build(&st)["status"], "completed");
    assert_program_stored(&env, name, version, "linux");
    let job = env.sim_job(name, "linux");
    assert!(
        job["subscriptions"].as_u64().unwrap() >= 3,
        "subscribed again after each close: {job}"
    );
    let m = env.metrics();
    assert!(
        metric(&m, "hone_build_follow_reconnects_total") >= 2.0,
        "reconnects counted: {m}"
    );
    assert_eq!(env.sim.submissions().len(), 1, "not submitted again");
    assert_eq!(only_build(&st)["attempts"], 1);
    let downloads: u64 = env
        .sim_jobs()
        .iter()
        .flat_map(|j| j["artifacts"].as_array().unwrap().clone())
        .map(|a| a["downloads"].as_u64().unwrap())
        .sum();
    assert_eq!(downloads, 1, "{:?}", env.sim_jobs());
    env.assert_only_files(&[
        format!("{name}/{version}/manifest.json"),
        format!("{name}/{version}/linux-x64.bin"),
    ]);
}

/// The hub restarts mid-build and forgets its jobs: the subscribe answers
/// `JOB_NOT_FOUND`, hone-build submits again, and the job completes.
fn hub_forgetting_its_jobs_resubmits(kind: StoreKind) {
    let env = Env::start(kind, &["--build-delay-ms", "1500"], &[]);
    let (name, version) = ("forgotten", "1.0.0");
    env.upload_ok(name, version, "linux");
    // Building: accepted and followed.
    assert!(
        wait_until(Duration::from_secs(10), || env
            .sim_jobs()
            .first()
            .is_some_and(|j| j["subscribers"].as_u64() >= Some(1))),
        "never subscribed: {:?}\n{}",
        env.sim_jobs(),
        env.svc.log()
    );
    let first = env.sim_jobs()[0]["job_id"].as_str().unwrap().to_string();
    let r = http("POST", &format!("{}/_sim/forget", env.sim.url()), &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    let st = env.wait_overall(name, version, "completed", Duration::from_secs(15));
    let b = only_build(&st);
    let subs = env.sim.submissions();
    assert_eq!(subs.len(), 2, "submitted again: {subs:?}");
    assert!(subs.iter().all(|s| s["status"] == 200), "{subs:?}");
    let second = subs[1]["job_id"].as_str().unwrap();
    assert_ne!(second, first);
    assert_eq!(b["hubJobId"], second, "{b}");
    assert_eq!(b["attempts"], 2, "{b}");
    assert_program_stored(&env, name, version, "linux");
    let m = env.metrics();
    assert_eq!(
        metric(
            &m,
            "hone_build_resubmissions_total{cause=\"job_not_found\"}"
        ),
        1.0,
        "{m}"
    );
    let rows = env.job_rows(name, version);
    assert_eq!(rows[0][1].as_deref(), Some("completed"), "{rows:?}");
    assert_eq!(rows[0][2].as_deref(), Some(second), "{rows:?}");
    env.assert_only_files(&[
        format!("{name}/{version}/manifest.json"),
        format!("{name}/{version}/linux-x64.bin"),
    ]);
}

/// hone-build is stopped right after the hub accepted the job; the hub
/// announces the artifact while nobody listens (lost: no replay). Started
/// again, hone-build subscribes, finds the job over without an artifact,
/// submits it again, and it completes.
fn restart_while_artifact_announced_resubmits_and_completes(kind: StoreKind) {
    let mut env = Env::start(kind, &["--build-delay-ms", "1200"], &[]);
    let (name, version) = ("restarted", "1.0.0");
    env.upload_ok(name, version, "linux");
    assert!(
        wait_until(Duration::from_secs(10), || env
            .sim_jobs()
            .first()
            .is_some_and(|j| j["subscribers"].as_u64() >= Some(1))),
        "never subscribed: {:?}",
        env.sim_jobs()
    );
    env.stop();
    let first = env.sim_jobs()[0].clone();
    assert_eq!(
        first["state"], "queued",
        "stopped before the build ran: {first}"
    );
    // The build runs and announces its artifact while hone-build is down.
    assert!(
        wait_until(Duration::from_secs(10), || env.sim_jobs()[0]["state"]
            == "succeeded"),
        "{:?}",
        env.sim_jobs()
    );
    assert_eq!(
        program_artifact(&env.sim_jobs()[0], "linux")["downloads"],
        0
    );
    let rows = env.job_rows(name, version);
    assert_eq!(rows[0][1].as_deref(), Some("queued"), "{rows:?}");
    env.start_again();
    let st = env.wait_overall(name, version, "completed", Duration::from_secs(15));
    let subs = env.sim.submissions();
    assert_eq!(subs.len(), 2, "submitted again: {subs:?}");
    assert_eq!(only_build(&st)["hubJobId"], subs[1]["job_id"]);
    let jobs = env.sim_jobs();
    assert!(
        jobs[0]["subscriptions"].as_u64().unwrap() >= 2,
        "the restarted process subscribed to the old job: {}",
        jobs[0]
    );
    assert_eq!(program_artifact(&jobs[0], "linux")["downloads"], 0);
    assert_program_stored(&env, name, version, "linux");
    let m = env.metrics();
    assert_eq!(
        metric(&m, "hone_build_resubmissions_total{cause=\"no_artifact\"}"),
        1.0,
        "{m}"
    );
    env.assert_only_files(&[
        format!("{name}/{version}/manifest.json"),
        format!("{name}/{version}/linux-x64.bin"),
    ]);
}

// ---------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------

/// The build fails at the hub: the job fails with the hub's message, and is
/// not submitted again.
fn compile_failure_fails_with_the_hubs_message(kind: StoreKind) {
    let env = Env::start(kind, &["--build-delay-ms", "800", "--compile-failure"], &[]);
    let (name, version) = ("broken-code", "1.0.0");
    env.upload_ok(name, version, "linux");
    let st = env.wait_overall(name, version, "failed", Duration::from_secs(15));
    let b = only_build(&st);
    assert_eq!(b["status"], "failed");
    let msg = b["errorMessage"].as_str().unwrap();
    assert!(msg.starts_with("Perry Hub: build failed"), "{msg}");
    assert!(
        msg.contains("Compilation failed: perry compile exited with status 1"),
        "{msg}"
    );
    // The compiler's own words, so the publisher need not open a log: the
    // stderr lines, not the stdout ones.
    assert!(
        msg.contains("src/index.ts(3,5): error TS2304: Cannot find name 'foo'."),
        "{msg}"
    );
    assert!(
        msg.contains("error: compilation failed with 1 error"),
        "{msg}"
    );
    assert!(
        !msg.contains("$ perry compile"),
        "stdout is not in it: {msg}"
    );
    assert_no_secret(&st.to_string());
    assert_eq!(env.sim.submissions().len(), 1);
    assert_eq!(env.sim_jobs()[0]["state"], "failed");
    let rows = env.job_rows(name, version);
    assert_eq!(rows[0][1].as_deref(), Some("failed"));
    assert_eq!(rows[0][5].as_deref(), Some(msg));
    env.assert_only_files(&[]);
}

/// The announced sha256 is wrong: nothing is stored, the job is submitted
/// again, and after SUBMIT_MAX_ATTEMPTS it fails saying why.
fn wrong_sha256_stores_nothing_and_fails_after_max_attempts(kind: StoreKind) {
    let env = Env::start(
        kind,
        &["--build-delay-ms", "800", "--wrong-sha256"],
        &[("SUBMIT_MAX_ATTEMPTS", "2")],
    );
    let (name, version) = ("bad-sum", "1.0.0");
    env.upload_ok(name, version, "linux");
    let st = env.wait_overall(name, version, "failed", Duration::from_secs(15));
    let b = only_build(&st);
    let msg = b["errorMessage"].as_str().unwrap();
    assert!(msg.contains("gave up after 2 submissions"), "{msg}");
    assert!(msg.contains("do not match the sha256"), "{msg}");
    assert!(msg.contains("nothing was stored"), "{msg}");
    assert!(b.get("sha256").is_none() && b.get("size").is_none(), "{b}");
    assert_eq!(b["attempts"], 2, "{b}");
    let subs = env.sim.submissions();
    assert_eq!(subs.len(), 2, "{subs:?}");
    // Each was downloaded (once) and refused.
    let jobs = env.sim_jobs();
    assert_eq!(jobs.len(), 2);
    for j in &jobs {
        let a = program_artifact(j, "linux");
        assert_eq!(a["downloads"], 1, "{a}");
        assert_ne!(a["sha256"], a["announced_sha256"], "{a}");
    }
    // The message names the artifact of the last submission.
    let last = program_artifact(&jobs[1], "linux");
    assert!(msg.contains(last["name"].as_str().unwrap()), "{msg}");
    let m = env.metrics();
    assert_eq!(
        metric(&m, "hone_build_resubmissions_total{cause=\"wrong_sha256\"}"),
        1.0,
        "{m}"
    );
    assert!(
        !env.version_dir(name, version)
            .join("manifest.json")
            .exists()
    );
    env.assert_only_files(&[]);
}

/// A name with a dot and a prerelease version: the hub gets the workers'
/// forms, hone-build's rows, files and answers keep the real ones.
fn dotted_name_and_prerelease_version_complete(kind: StoreKind) {
    let env = Env::start(kind, &["--build-delay-ms", "800"], &[]);
    let (name, version) = ("my.plugin", "1.0.0-beta.1");
    env.upload_ok(name, version, "linux,windows");
    let st = env.wait_overall(name, version, "completed", Duration::from_secs(15));
    assert_eq!(st["pluginName"], name);
    assert_eq!(st["version"], version);
    for p in ["linux", "windows"] {
        let job = env.sim_job(name, p);
        assert_eq!(job["manifest"]["app_name"], "my-plugin", "{job}");
        assert_eq!(job["manifest"]["version"], "1.0.0", "{job}");
        assert_eq!(job["state"], "succeeded", "{job}");
        assert_program_stored(&env, name, version, p);
    }
    let manifest: Value = serde_json::from_slice(
        &fs::read(env.version_dir(name, version).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["pluginName"], name);
    assert_eq!(manifest["version"], version);
    let rows = env.job_rows(name, version);
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter().all(|r| r[1].as_deref() == Some("completed")),
        "{rows:?}"
    );
    env.assert_only_files(&[
        format!("{name}/{version}/manifest.json"),
        format!("{name}/{version}/linux-x64.bin"),
        format!("{name}/{version}/windows-x64.bin"),
    ]);
}

/// A device-bound license key builds one plugin; the second fails with the
/// hint to set PERRY_HUB_TOKEN. With an account token both complete, and
/// the hub is sent the token, not the key.
fn device_bound_key_second_plugin_needs_a_token(kind: StoreKind) {
    // License key only.
    let env = Env::start(
        kind,
        &["--build-delay-ms", "800", "--device-bound-keys"],
        &[],
    );
    env.upload_ok("first-one", "1.0.0", "linux");
    env.wait_overall("first-one", "1.0.0", "completed", Duration::from_secs(15));
    env.upload_ok("second-one", "1.0.0", "linux");
    let st = env.wait_overall("second-one", "1.0.0", "failed", Duration::from_secs(15));
    let msg = only_build(&st)["errorMessage"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("PERRY_HUB_TOKEN"), "{msg}");
    assert!(
        msg.contains("ACCOUNT_REQUIRED") || msg.contains("account"),
        "{msg}"
    );
    assert_no_secret(&st.to_string());
    let subs = env.sim.submissions();
    assert_eq!(
        subs.iter()
            .map(|s| s["status"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [200, 403],
        "{subs:?}"
    );
    assert_eq!(subs[1]["error_code"], "ACCOUNT_REQUIRED");
    assert!(!env.version_dir("second-one", "1.0.0").exists());
    env.assert_only_files(&[
        "first-one/1.0.0/manifest.json".into(),
        "first-one/1.0.0/linux-x64.bin".into(),
    ]);
    drop(env);

    // The same with an account token.
    let token = "tok-account-123";
    let env = Env::start(
        kind,
        &[
            "--build-delay-ms",
            "800",
            "--device-bound-keys",
            "--account",
            token,
        ],
        &[("PERRY_HUB_TOKEN", token)],
    );
    env.upload_ok("first-one", "1.0.0", "linux");
    env.wait_overall("first-one", "1.0.0", "completed", Duration::from_secs(15));
    env.upload_ok("second-one", "1.0.0", "linux");
    env.wait_overall("second-one", "1.0.0", "completed", Duration::from_secs(15));
    let subs = env.sim.submissions();
    assert_eq!(subs.len(), 2, "{subs:?}");
    for s in &subs {
        assert_eq!(s["status"], 200, "{s}");
        assert_eq!(s["authorization_header"], format!("Bearer {token}"), "{s}");
        assert_eq!(s["license_key"], Value::Null, "no license key sent: {s}");
    }
    for j in env.sim_jobs() {
        assert_eq!(j["identity"], format!("token:{token}"), "{j}");
    }
    assert_program_stored(&env, "first-one", "1.0.0", "linux");
    assert_program_stored(&env, "second-one", "1.0.0", "linux");
    assert!(!env.svc.log().contains(token), "the token is never logged");
}

/// Packages with `..` names, absolute names, a symlink for the program, no
/// program, and a zip bomb: each job fails naming the artifact; no `.bin`,
/// nothing written outside PACKAGES_DIR.
fn bad_archives_fail_and_write_nothing_outside_packages(kind: StoreKind) {
    let env = Env::start(
        kind,
        &["--build-delay-ms", "800", "--zip-bomb-size", "16777216"],
        &[("MAX_BODY_BYTES", "2097152")],
    );
    let before: BTreeSet<PathBuf> = walk(env.root.path()).into_iter().map(|(p, _)| p).collect();
    // (bad_package, platform, version, what the message says): tar.gz and
    // zip packages. The bombs expand to 16 MiB: the .tar.gz is cut at four
    // times MAX_BODY_BYTES; the zip's entry (zeros) is refused from its
    // first bytes, before any more of it is inflated.
    let cases = [
        ("dotdot", "linux", "1.0.1", "escapes the package"),
        ("dotdot", "android", "1.0.2", "escapes the package"),
        ("absolute", "macos", "1.0.3", "has an absolute name"),
        ("absolute", "windows", "1.0.4", "has an absolute name"),
        ("symlink", "linux", "1.0.5", "is a symbolic link"),
        ("symlink", "ios", "1.0.6", "is a symbolic link"),
        ("no_program", "linux", "1.0.7", "no ELF program under bin/"),
        ("no_program", "windows", "1.0.8", "no PE program"),
        ("zip_bomb", "android", "1.0.9", "not an ELF program"),
        (
            "zip_bomb",
            "linux",
            "1.0.10",
            "unpacks to more than 8388608 bytes",
        ),
    ];
    let name = "bad-pkg";
    for (i, (bad, platform, version, _)) in cases.iter().enumerate() {
        env.sim.set(json!({"bad_package": bad}));
        env.upload_ok(name, version, platform);
        // The hub took it with this configuration before the next change.
        assert!(
            wait_until(Duration::from_secs(10), || env.sim_jobs().len() > i),
            "not submitted: {bad} {platform}"
        );
    }
    for (bad, platform, version, says) in cases {
        let st = env.wait_overall(name, version, "failed", Duration::from_secs(15));
        let b = only_build(&st);
        let msg = b["errorMessage"].as_str().unwrap();
        let job = env
            .sim_jobs()
            .into_iter()
            .find(|j| j["job_id"] == b["hubJobId"])
            .unwrap_or_else(|| panic!("{b}"));
        let art = program_artifact(&job, platform);
        if bad == "no_program" {
            assert_eq!(art["program_sha256"], Value::Null, "{bad}: {art}");
        }
        let art_name = art["name"].as_str().unwrap();
        assert!(
            msg.contains(art_name),
            "{bad} {platform}: {msg:?} names the artifact {art_name}"
        );
        assert!(
            msg.starts_with("no program stored"),
            "{bad} {platform}: {msg}"
        );
        assert!(
            msg.contains(says),
            "{bad} {platform}: {msg:?} should say {says:?}"
        );
        assert!(b.get("sha256").is_none(), "{b}");
        assert_eq!(art["downloads"], 1, "{art}");
    }
    // Failed, not submitted again.
    assert_eq!(env.sim.submissions().len(), cases.len());
    // Nothing stored anywhere: only the service's own data and uploads
    // directories gained files; no .bin, no manifest, no link.
    env.assert_only_files(&[]);
    let after: BTreeSet<PathBuf> = walk(env.root.path()).into_iter().map(|(p, _)| p).collect();
    for p in after.difference(&before) {
        assert!(
            p.starts_with(env.workdir.join("data"))
                || p.starts_with(env.workdir.join("uploads"))
                || p.starts_with(env.packages()),
            "written outside the service's directories: {}",
            p.display()
        );
    }
}

// ---------------------------------------------------------------------------
// Callbacks, timeout
// ---------------------------------------------------------------------------

/// A patched hub that also calls back: the job completes through the
/// callback, following notices and changes nothing (one submission).
fn callback_completes_a_followed_job_without_resubmission(kind: StoreKind) {
    let sim = Sim::start(&["--build-delay-ms", "800", "--artifact-size", "3000"]);
    let env = Env::start_with(kind, sim, &[]);
    let (name, version) = ("called-back", "1.0.0");
    let tar = env.upload_ok(name, version, "linux");
    let st = env.wait_overall(name, version, "completed", Duration::from_secs(15));
    let want = expected_artifact(&tar, "linux", 3000);
    let bin = fs::read(env.version_dir(name, version).join("linux-x64.bin")).unwrap();
    assert!(bin == want, "the delivered artifact is stored as it is");
    assert_eq!(only_build(&st)["sha256"], sha256_hex(&want));
    assert!(
        env.svc.log().contains("following hub job"),
        "the job was followed too"
    );
    let jobs = env.sim_jobs();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["mode"], "callbacks");
    assert!(
        jobs[0]["subscriptions"].as_u64() >= Some(1),
        "hone-build subscribed: {}",
        jobs[0]
    );
    // The follow sees the hub's `complete` (no artifact announced: in a
    // callbacks hub the artifact went to the callback) and, the job being
    // completed already, changes nothing.
    assert!(
        wait_until(Duration::from_secs(5), || env
            .svc
            .log()
            .contains("the job changed meanwhile: nothing to do")),
        "{}",
        quiet(&env.svc.log())
    );
    assert_eq!(env.sim.submissions().len(), 1, "not submitted again");
    let d = env.sim.deliveries();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["status"], 200, "{d:?}");
    let m = env.metrics();
    // Every cause has its series from the start; none moved.
    for cause in [
        "no_artifact",
        "job_not_found",
        "download_failed",
        "wrong_sha256",
        "internal",
    ] {
        let series = format!("hone_build_resubmissions_total{{cause=\"{cause}\"}}");
        assert_eq!(metric(&m, &series), 0.0, "{m}");
    }
    assert_eq!(metric(&m, "hone_build_artifacts_fetched_total"), 0.0, "{m}");
    let manifest: Value = serde_json::from_slice(
        &fs::read(env.version_dir(name, version).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert!(
        manifest["artifacts"]["linux-x64"].get("source").is_none(),
        "{manifest}"
    );
    assert_eq!(env.status(name, version)["overall"], "completed");
    env.assert_only_files(&[
        format!("{name}/{version}/manifest.json"),
        format!("{name}/{version}/linux-x64.bin"),
    ]);
}

/// `PERRY_HUB_WS_URL=off`: nothing is followed, jobs wait for the callback
/// exactly as before (the other suites run this way).
fn ws_off_waits_for_callbacks_only(kind: StoreKind) {
    let sim = Sim::start(&["--build-delay-ms", "800", "--never-callback"]);
    let root = tempfile::tempdir().unwrap();
    let db = (kind == StoreKind::Mysql).then(TestDb::new);
    let mut b = Service::builder()
        .dir(root.path())
        .set("PERRY_HUB_URL", sim.url())
        .set("PERRY_HUB_LICENSE_KEY", LICENSE)
        .set("PERRY_HUB_WS_URL", "off")
        .set("BIND", "127.0.0.1");
    if let Some(db) = &db {
        b = b.envs(db.service_env(&db.host, db.port));
    }
    let svc = b.start();
    let (name, version) = ("no-follow", "1.0.0");
    Env::upload_on(&svc, name, version, "linux", &tarball("nf", Fill::Unique));
    assert!(wait_until(Duration::from_secs(10), || sim
        .submissions()
        .len()
        == 1));
    let hub_job = sim.submissions()[0]["job_id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(700));
    let st = http(
        "GET",
        &svc.url(&format!("/status/{name}/{version}")),
        &[],
        None,
    )
    .json();
    assert_eq!(st["overall"], "building", "{st}");
    assert!(!svc.log().contains("following hub job"), "nothing followed");
    let m = metrics_of(&svc);
    assert_eq!(metric(&m, "hone_build_follow_reconnects_total"), 0.0);
    // The callback completes it.
    sim.deliver(&hub_job);
    assert!(wait_until(Duration::from_secs(10), || {
        http(
            "GET",
            &svc.url(&format!("/status/{name}/{version}")),
            &[],
            None,
        )
        .json()["overall"]
            == "completed"
    }));
    assert!(
        root.path()
            .join("packages")
            .join(name)
            .join(version)
            .join("linux-x64.bin")
            .exists()
    );
}

/// A build that never finishes: BUILD_TIMEOUT_SECS fails the job, and the
/// hub is sent `cancel`.
fn build_timeout_while_following_cancels_at_the_hub(kind: StoreKind) {
    let env = Env::start(
        kind,
        &["--build-delay-ms", "600000"],
        &[("BUILD_TIMEOUT_SECS", "2")],
    );
    let (name, version) = ("never-ends", "1.0.0");
    env.upload_ok(name, version, "linux");
    let t0 = Instant::now();
    let st = env.wait_overall(name, version, "failed", Duration::from_secs(15));
    assert!(t0.elapsed() >= Duration::from_secs(1), "{:?}", t0.elapsed());
    let msg = only_build(&st)["errorMessage"].as_str().unwrap();
    assert!(msg.starts_with("build timed out"), "{msg}");
    assert!(msg.contains("BUILD_TIMEOUT_SECS (2 s)"), "{msg}");
    assert!(
        wait_until(Duration::from_secs(5), || env.sim_jobs()[0]["state"]
            == "cancelled"),
        "the hub got cancel: {:?}\n{}",
        env.sim_jobs(),
        quiet(&env.svc.log())
    );
    assert_eq!(env.sim.submissions().len(), 1);
    env.assert_only_files(&[]);
}

// ---------------------------------------------------------------------------
// Two processes (MySQL)
// ---------------------------------------------------------------------------

/// Two hone-build processes on one MySQL database, both following: every
/// artifact is downloaded exactly once and every job completed once.
#[test]
fn mysql_two_processes_on_one_database_download_each_artifact_once() {
    let sim = Sim::start_real(&["--build-delay-ms", "800"]);
    let db = TestDb::new();
    let root = tempfile::tempdir().unwrap();
    let start = |sub: &str| {
        let dir = root.path().join(sub);
        fs::create_dir_all(&dir).unwrap();
        Service::builder()
            .dir(&dir)
            .set("PERRY_HUB_URL", sim.url())
            .set("PERRY_HUB_WS_URL", sim.ws_url())
            .set("PERRY_HUB_LICENSE_KEY", LICENSE)
            // One store of programs for both (as behind one marketplace).
            .set(
                "PACKAGES_DIR",
                root.path().join("packages").display().to_string(),
            )
            .set("BIND", "127.0.0.1")
            .envs(db.service_env(&db.host, db.port))
            .start()
    };
    let a = start("a");
    let b = start("b");
    let plugins = ["two-a", "two-b", "two-c", "two-d"];
    for (i, p) in plugins.iter().enumerate() {
        let svc = if i % 2 == 0 { &a } else { &b };
        Env::upload_on(svc, p, "1.0.0", "linux,android", &tarball(p, Fill::Unique));
    }
    for p in plugins {
        let ok = wait_until(Duration::from_secs(20), || {
            http("GET", &a.url(&format!("/status/{p}/1.0.0")), &[], None).json()["overall"]
                == "completed"
        });
        assert!(
            ok,
            "{p} not completed\nA:\n{}\nB:\n{}",
            quiet(&a.log()),
            quiet(&b.log())
        );
    }
    let jobs = sim_jobs(&sim);
    assert_eq!(
        jobs.len(),
        plugins.len() * 2,
        "each job submitted once: {jobs:?}"
    );
    for j in &jobs {
        let p = j["targets"][0].as_str().unwrap();
        let art = program_artifact(j, p);
        assert_eq!(art["downloads"], 1, "downloaded exactly once: {art}");
        let name = j["manifest"]["bundle_id"]
            .as_str()
            .unwrap()
            .trim_start_matches("codes.hone.plugin.");
        let bin = fs::read(
            root.path()
                .join("packages")
                .join(name)
                .join("1.0.0")
                .join(format!("{}.bin", platform_id(p))),
        )
        .unwrap();
        assert_eq!(json!(sha256_hex(&bin)), art["program_sha256"]);
    }
    // Each job stored once, by one of the two.
    let stored = |log: &str| {
        log.lines()
            .filter(|l| l.contains(": program from hub job"))
            .count()
    };
    // (`/status` answers from the commit; the line is logged right after.)
    wait_until(Duration::from_secs(5), || {
        stored(&a.log()) + stored(&b.log()) >= jobs.len()
    });
    assert_eq!(stored(&a.log()) + stored(&b.log()), jobs.len());
    let fetched = metric(&metrics_of(&a), "hone_build_artifacts_fetched_total")
        + metric(&metrics_of(&b), "hone_build_artifacts_fetched_total");
    assert_eq!(fetched, jobs.len() as f64);
    let rows = db.rows("SELECT status, COUNT(*) FROM buildJobs GROUP BY status");
    assert_eq!(
        rows,
        vec![vec![
            Some("completed".to_string()),
            Some(jobs.len().to_string())
        ]]
    );
}

/// While the hub builds, `/status` shows what it last reported — the stage,
/// the progress and its message (issue #12); once the build completed,
/// those fields are gone and the answer is the old server's shape.
fn status_shows_the_stage_and_progress_while_building(kind: StoreKind) {
    let env = Env::start(kind, &["--stage-delay-ms", "400"], &[]);
    let (name, version) = ("progressing", "1.0.0");
    env.upload_ok(name, version, "linux");
    let mut seen: Vec<Value> = Vec::new();
    let done = wait_until(Duration::from_secs(20), || {
        let st = env.status(name, version);
        let b = only_build(&st).clone();
        if b.get("stage").is_some() {
            seen.push(b);
        }
        st["overall"] == "completed"
    });
    assert!(done, "not completed; seen: {seen:?}");
    assert!(!seen.is_empty(), "no stage was ever shown while building");
    let stages: BTreeSet<String> = seen
        .iter()
        .filter_map(|b| b["stage"].as_str().map(str::to_string))
        .collect();
    assert!(
        stages.len() >= 2,
        "the stage moves on while building: {stages:?}"
    );
    for b in &seen {
        assert_eq!(b["status"], "queued", "{b}");
        if let Some(p) = b.get("progress") {
            let p = p.as_i64().expect("progress is a whole number");
            assert!((0..=100).contains(&p), "{b}");
        }
    }
    assert!(
        seen.iter().any(|b| b.get("progress").is_some()),
        "a progress figure was shown: {seen:?}"
    );
    let done = env.status(name, version);
    let b = only_build(&done);
    for gone in ["stage", "progress", "message", "queuePosition"] {
        assert!(b.get(gone).is_none(), "{gone} after completion: {b}");
    }
}
