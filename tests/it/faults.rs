//! Fault injection against the real `hone-build` binary (docs/api.md, docs/jobs.md, docs/operations.md#security):
//!
//! 1. the MySQL database disappears in the middle of a run of uploads (TCP
//!    proxy cut) and comes back: 503 + Retry-After while it is away, nothing
//!    acknowledged is lost, nothing refused is left behind, no restart needed;
//! 2. Perry Hub disappears while uploads happen and returns on the same
//!    port: uploads stay `pending`, then every job is submitted once and
//!    completes;
//! 3. `kill -9` of hone-build at random moments of a run of 100 publishes,
//!    restarting it on the same working directory each time (SQLite and
//!    MySQL): every acknowledged publish ends completed (or failed/pending
//!    with a reason), no `.bin` is partial or ahead of its job;
//! 4. the database dies exactly between a file being put in place and the
//!    transaction's commit (the window 1 and 3 can only hit by chance);
//! 5. a fast hub delivers before hone-build recorded its acceptance.
//!
//! Every wait is a bounded poll. Where the test stands in for something the
//! simulator cannot do (a hub that keeps its queue across a crash, the
//! passage of a claim's lease), it says so and the run's summary counts it.

use crate::common;

use crate::fixtures::{Fill, expected_artifact, hex, sha256, tarball};
use common::{
    Resp, Service, ServiceBuilder, Sim, TcpProxy, TestDb, free_port, http, tail_lines, try_http,
    wait_until,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Size of the simulator's artifacts (not a multiple of 3: base64 padding).
const ARTIFACT_SIZE: usize = 1501;
const ARTIFACT_SIZE_ARG: &str = "1501";
/// Small tarballs, distinct by tag.
const FILL: Fill = Fill::Pattern { len: 700, step: 31 };

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("OS random numbers");
    u64::from_le_bytes(b)
}

/// A random number in `lo..=hi`.
fn rand_in(lo: u64, hi: u64) -> u64 {
    lo + rand_u64() % (hi - lo + 1)
}

/// The marketplace's platform id of a hub platform name.
fn platform_id(hub: &str) -> &'static str {
    match hub {
        "macos" => "darwin-arm64",
        "linux" => "linux-x64",
        "windows" => "windows-x64",
        "ios" => "ios-arm64",
        "android" => "android-arm64",
        other => panic!("unknown platform {other}"),
    }
}

const PLATFORMS: [&str; 5] = ["macos", "linux", "windows", "ios", "android"];

fn upload(
    base: &str,
    name: &str,
    version: &str,
    platforms: &[&str],
    body: &[u8],
) -> Result<Resp, ureq::Error> {
    try_http(
        "POST",
        &format!(
            "{base}/upload?name={name}&version={version}&platforms={}",
            platforms.join(",")
        ),
        &[],
        Some(body),
    )
}

fn get_status(base: &str, name: &str, version: &str) -> Option<Resp> {
    try_http("GET", &format!("{base}/status/{name}/{version}"), &[], None).ok()
}

fn health_status(base: &str) -> Option<u16> {
    try_http("GET", &format!("{base}/health"), &[], None)
        .ok()
        .map(|r| r.status)
}

/// Files in `dir` (not recursive) whose name starts with the temp prefix.
fn temp_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if e.file_name().to_string_lossy().starts_with(".tmp-") {
                out.push(p);
            }
        }
    }
    walk(root, &mut out);
    out
}

/// Every `*.bin` under `root` as `(name, version, file name)`.
fn bin_files(root: &Path) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let Ok(names) = std::fs::read_dir(root) else {
        return out;
    };
    for n in names.flatten() {
        let Ok(versions) = std::fs::read_dir(n.path()) else {
            continue;
        };
        for v in versions.flatten() {
            let Ok(files) = std::fs::read_dir(v.path()) else {
                continue;
            };
            for f in files.flatten() {
                let file = f.file_name().to_string_lossy().into_owned();
                if file.ends_with(".bin") {
                    out.push((
                        n.file_name().to_string_lossy().into_owned(),
                        v.file_name().to_string_lossy().into_owned(),
                        file,
                    ));
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Direct access to the service's database (bypassing any proxy)
// ---------------------------------------------------------------------------

enum Direct<'a> {
    Mysql(&'a TestDb),
    Sqlite(PathBuf),
}

impl Direct<'_> {
    fn sqlite_conn(path: &Path) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(path).expect("open the service's SQLite file");
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    }

    fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match self {
            Direct::Mysql(db) => db.rows(sql),
            Direct::Sqlite(p) => common::sqlite_rows(&Self::sqlite_conn(p), sql),
        }
    }

    fn exec(&self, sql: &str) {
        match self {
            Direct::Mysql(db) => db.exec(sql),
            Direct::Sqlite(p) => Self::sqlite_conn(p)
                .execute_batch(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// `(job id, callbackToken, status, nextAttemptAt, attempts)` of one job.
    fn job(
        &self,
        name: &str,
        version: &str,
        platform: &str,
    ) -> Option<(i64, String, String, i64, i64)> {
        let rows = self.rows(&format!(
            "SELECT j.id, j.callbackToken, j.status, j.nextAttemptAt, j.attempts FROM buildJobs j \
             JOIN plugins p ON p.id = j.pluginId \
             WHERE p.name = '{name}' AND j.version = '{version}' AND j.platform = '{platform}'"
        ));
        let r = rows.into_iter().next()?;
        let num = |i: usize| r[i].as_deref().unwrap_or("0").parse::<i64>().unwrap_or(0);
        Some((
            num(0),
            r[1].clone().unwrap_or_default(),
            r[2].clone().unwrap_or_default(),
            num(3),
            num(4),
        ))
    }

    /// Rows of a version: `(jobs, pluginVersions rows)`.
    fn version_row_counts(&self, name: &str, version: &str) -> (usize, usize) {
        let jobs = self.rows(&format!(
            "SELECT j.id FROM buildJobs j JOIN plugins p ON p.id = j.pluginId \
             WHERE p.name = '{name}' AND j.version = '{version}'"
        ));
        let versions = self.rows(&format!(
            "SELECT v.id FROM pluginVersions v JOIN plugins p ON p.id = v.pluginId \
             WHERE p.name = '{name}' AND v.version = '{version}'"
        ));
        (jobs.len(), versions.len())
    }

    /// A pending job whose claim was made at least 5 s ago and is still
    /// leased (a submission cut short by a kill or an outage before its
    /// outcome was recorded) waits for its lease (at least 120 s) to expire.
    /// The test stands in for that passage of time: it moves the job's next
    /// attempt to now. Returns the jobs it moved.
    fn expire_stale_lease(&self, name: &str, version: &str, platform: &str) -> Option<i64> {
        let (id, _, status, next, _) = self.job(name, version, platform)?;
        let now = now_ms() as i64;
        if status == "pending" && next > now + 20_000 && next < now + 115_000 {
            self.exec(&format!(
                "UPDATE buildJobs SET nextAttemptAt = 0 \
                 WHERE id = {id} AND status = 'pending' AND nextAttemptAt = {next}"
            ));
            return Some(id);
        }
        None
    }
}

// ---------------------------------------------------------------------------
// The simulator's records
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct SubRec {
    status: u16,
    job_id: Option<String>,
    name: String,
    version: String,
    target: String,
    tarball_sha256: Option<String>,
    received_at_ms: u64,
}

impl SubRec {
    fn key(&self) -> (String, String, String) {
        (self.name.clone(), self.version.clone(), self.target.clone())
    }
    fn accepted(&self) -> bool {
        self.status == 200 && self.job_id.is_some()
    }
}

fn sub_records(list: &[Value]) -> Vec<SubRec> {
    list.iter()
        .map(|s| SubRec {
            status: s["status"].as_u64().unwrap_or(0) as u16,
            job_id: s["job_id"].as_str().map(str::to_string),
            name: s["manifest"]["app_name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            version: s["manifest"]["version"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            target: s["manifest"]["targets"][0]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            tarball_sha256: s["tarball_sha256"].as_str().map(str::to_string),
            received_at_ms: s["received_at_ms"].as_u64().unwrap_or(0),
        })
        .collect()
}

#[derive(Debug, Clone)]
struct DelRec {
    job_id: String,
    status: Option<u16>,
    error: Option<String>,
}

fn del_records(list: &[Value]) -> Vec<DelRec> {
    list.iter()
        .map(|d| DelRec {
            job_id: d["job_id"].as_str().unwrap_or_default().to_string(),
            status: d["status"].as_u64().map(|s| s as u16),
            error: d["error"].as_str().map(str::to_string),
        })
        .collect()
}

/// `POST /_sim/deliver/<job>` without panicking (the service may be down).
fn sim_deliver(sim: &Sim, job_id: &str) -> Option<Value> {
    let r = try_http(
        "POST",
        &format!("{}/_sim/deliver/{job_id}", sim.url()),
        &[],
        None,
    )
    .ok()?;
    (r.status == 200).then(|| r.json())
}

// ---------------------------------------------------------------------------
// Settling: wait until every build is terminal, re-delivering what a dead
// server or database missed
// ---------------------------------------------------------------------------

type Key = (String, String, String);

#[derive(Default, Debug)]
struct Settled {
    /// `/status` of every version at the end.
    statuses: BTreeMap<(String, String), Value>,
    /// Manual re-deliveries (`/_sim/deliver/<job>`) made.
    redelivered: usize,
    /// Stale claim leases moved to now (see `Direct::expire_stale_lease`).
    expired_leases: Vec<i64>,
    /// Artifacts the test delivered itself for jobs a killed hub had accepted.
    orphans_delivered: usize,
    done: bool,
    waited: Duration,
}

struct SettleOpts<'a> {
    base: String,
    sim: &'a Sim,
    versions: Vec<(String, String)>,
    build_delay_ms: u64,
    /// `failed` counts as settled (kill -9 run), else only `completed` does.
    accept_failed: bool,
    timeout: Duration,
}

/// Polls `/status` of every version until all builds are settled. Each
/// round: a build whose hub job was accepted but whose artifact delivery
/// failed (dead server, database down) or never came is re-delivered with
/// `/_sim/deliver/<job>`; a pending build never accepted by the hub whose
/// claim is stale gets its lease expired; a queued build whose hub job the
/// current simulator does not know (accepted by a simulator since killed)
/// is handed to `orphan`.
fn settle(
    o: &SettleOpts<'_>,
    direct: &Direct<'_>,
    orphan: &mut dyn FnMut(&str, &str, &str) -> bool,
) -> Settled {
    let start = Instant::now();
    let mut out = Settled::default();
    let mut last_manual: HashMap<String, Instant> = HashMap::new();
    let mut orphaned: BTreeSet<Key> = BTreeSet::new();
    loop {
        let mut open: Vec<(Key, String, Option<String>)> = Vec::new();
        let mut all_answered = true;
        for (n, v) in &o.versions {
            match get_status(&o.base, n, v) {
                Some(r) if r.status == 200 => {
                    let s = r.json();
                    for b in s["builds"].as_array().cloned().unwrap_or_default() {
                        let st = b["status"].as_str().unwrap_or_default().to_string();
                        let settled = st == "completed" || (o.accept_failed && st == "failed");
                        if !settled {
                            let key = (
                                n.clone(),
                                v.clone(),
                                b["platform"].as_str().unwrap_or_default().to_string(),
                            );
                            open.push((key, st, b["hubJobId"].as_str().map(str::to_string)));
                        }
                    }
                    out.statuses.insert((n.clone(), v.clone()), s);
                }
                _ => all_answered = false,
            }
        }
        out.waited = start.elapsed();
        if all_answered && open.is_empty() {
            out.done = true;
            return out;
        }
        if start.elapsed() > o.timeout {
            return out;
        }
        let subs = sub_records(&o.sim.submissions());
        let dels = del_records(&o.sim.deliveries());
        let now = now_ms();
        for (key, st, hub_job) in &open {
            let accepted: Vec<&SubRec> = subs
                .iter()
                .filter(|s| s.accepted() && s.key() == *key)
                .collect();
            match accepted.last() {
                Some(sub) => {
                    let job_id = sub.job_id.clone().unwrap();
                    let mine: Vec<&DelRec> = dels.iter().filter(|d| d.job_id == job_id).collect();
                    if mine.iter().any(|d| d.status == Some(200)) {
                        continue; // delivered; being recorded
                    }
                    let failed = mine.iter().any(|d| d.status != Some(200));
                    let overdue = now.saturating_sub(sub.received_at_ms) > o.build_delay_ms + 1500;
                    let recent = last_manual
                        .get(&job_id)
                        .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
                    if (failed || overdue) && !recent {
                        last_manual.insert(job_id.clone(), Instant::now());
                        if sim_deliver(o.sim, &job_id).is_some() {
                            out.redelivered += 1;
                        }
                    }
                }
                None if st == "pending" => {
                    if start.elapsed() > Duration::from_secs(2)
                        && let Some(id) = direct.expire_stale_lease(&key.0, &key.1, &key.2)
                    {
                        out.expired_leases.push(id);
                    }
                }
                None if (st == "queued" || st == "building")
                    && hub_job.is_some()
                    && !orphaned.contains(key) =>
                {
                    orphaned.insert(key.clone()); // tried once
                    out.orphans_delivered += usize::from(orphan(&key.0, &key.1, &key.2));
                }
                None => {}
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Posts the simulator's deterministic artifact for a job straight to the
/// service, as a hub worker that survived would (job id and token from the
/// database). Returns the status.
fn deliver_as_worker(
    base: &str,
    direct: &Direct<'_>,
    name: &str,
    version: &str,
    platform: &str,
    tarball: &[u8],
) -> u16 {
    use base64::Engine;
    let (id, token, _, _, _) = direct.job(name, version, platform).expect("job row");
    let bin = expected_artifact(tarball, platform, ARTIFACT_SIZE);
    let body = base64::engine::general_purpose::STANDARD.encode(&bin);
    let sha = hex(&sha256(&bin));
    http(
        "POST",
        &format!("{base}/artifact/{id}?token={token}"),
        &[
            ("Content-Type", "text/plain"),
            ("x-artifact-sha256", &sha),
            ("x-artifact-target", platform),
        ],
        Some(body.as_bytes()),
    )
    .status
}

/// Checks the files of one version against its `/status`: every completed
/// build has `<platform-id>.bin` whose size and sha256 are what `/status`
/// and `manifest.json` say and whose bytes are the simulator's artifact of
/// this tarball; no other build has a `.bin` or a manifest entry. Returns
/// the problems found.
fn check_version_files(
    packages: &Path,
    name: &str,
    version: &str,
    status: &Value,
    tarball: &[u8],
) -> Vec<String> {
    let mut problems = Vec::new();
    let dir = packages.join(name).join(version);
    let manifest: Option<Value> = match std::fs::read(dir.join("manifest.json")) {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(format!(
                    "{name} {version}: manifest.json does not parse: {e}"
                ));
                None
            }
        },
        Err(_) => None,
    };
    let mut expected_bins = BTreeSet::new();
    for b in status["builds"].as_array().cloned().unwrap_or_default() {
        let platform = b["platform"].as_str().unwrap_or_default();
        let id = platform_id(platform);
        let file = dir.join(format!("{id}.bin"));
        let tag = format!("{name} {version} {platform}");
        if b["status"] == "completed" {
            expected_bins.insert(format!("{id}.bin"));
            let Ok(bytes) = std::fs::read(&file) else {
                problems.push(format!(
                    "{tag}: completed but {} is missing",
                    file.display()
                ));
                continue;
            };
            let sha = hex(&sha256(&bytes));
            if b["size"].as_u64() != Some(bytes.len() as u64)
                || b["sha256"].as_str() != Some(sha.as_str())
            {
                problems.push(format!(
                    "{tag}: file has {} bytes sha256 {sha}; /status says size {} sha256 {}",
                    bytes.len(),
                    b["size"],
                    b["sha256"]
                ));
            }
            let expected = expected_artifact(tarball, platform, ARTIFACT_SIZE);
            if bytes != expected {
                problems.push(format!(
                    "{tag}: file is not the simulator's artifact of this tarball ({} bytes)",
                    bytes.len()
                ));
            }
            match &manifest {
                None => problems.push(format!("{tag}: completed but no manifest.json")),
                Some(m) => {
                    let e = &m["artifacts"][id];
                    if e["sha256"].as_str() != Some(sha.as_str())
                        || e["size"].as_u64() != Some(bytes.len() as u64)
                        || e["filename"].as_str() != Some(format!("{id}.bin").as_str())
                    {
                        problems.push(format!(
                            "{tag}: manifest entry {e} does not describe the file (sha256 {sha})"
                        ));
                    }
                }
            }
        } else {
            if file.exists() {
                problems.push(format!(
                    "{tag}: {} exists but the job is {}",
                    file.display(),
                    b["status"]
                ));
            }
            if let Some(m) = &manifest
                && !m["artifacts"][id].is_null()
            {
                problems.push(format!(
                    "{tag}: manifest.json lists it but the job is {}",
                    b["status"]
                ));
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if f.ends_with(".bin") && !expected_bins.contains(&f) {
                problems.push(format!("{name} {version}: unexpected file {f}"));
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------
// A client loop of uploads (tests 1 and 2)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Up {
    name: String,
    version: String,
    platforms: Vec<&'static str>,
    body: Vec<u8>,
    start: Instant,
    end: Instant,
    /// None: transport error.
    status: Option<u16>,
    code: Option<String>,
    retry_after: Option<String>,
    json: Value,
    error: Option<String>,
}

impl Up {
    fn key(&self) -> (String, String) {
        (self.name.clone(), self.version.clone())
    }
}

struct UploadLoop {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Up>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl UploadLoop {
    /// Uploads `<prefix><i % 3>` version `1.<i>.0` (one or two platforms)
    /// one after the other, `pause` apart, until stopped.
    fn start(base: String, prefix: &'static str, pause: Duration) -> UploadLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let log: Arc<Mutex<Vec<Up>>> = Arc::default();
        let (st, lg) = (Arc::clone(&stop), Arc::clone(&log));
        let handle = std::thread::spawn(move || {
            let mut i = 0u32;
            while !st.load(Ordering::Acquire) {
                let name = format!("{prefix}{}", i % 3);
                let version = format!("1.{i}.0");
                let platforms: Vec<&'static str> = if i.is_multiple_of(2) {
                    vec!["linux"]
                } else {
                    vec!["linux", "windows"]
                };
                let body = tarball(&format!("{name}/{version}"), FILL);
                let start = Instant::now();
                let r = upload(&base, &name, &version, &platforms, &body);
                let end = Instant::now();
                let up = match r {
                    Ok(r) => {
                        let json: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                        Up {
                            name,
                            version,
                            platforms,
                            body,
                            start,
                            end,
                            status: Some(r.status),
                            code: json["code"].as_str().map(str::to_string),
                            retry_after: r.header("retry-after").map(str::to_string),
                            json,
                            error: None,
                        }
                    }
                    Err(e) => Up {
                        name,
                        version,
                        platforms,
                        body,
                        start,
                        end,
                        status: None,
                        code: None,
                        retry_after: None,
                        json: Value::Null,
                        error: Some(e.to_string()),
                    },
                };
                lg.lock().unwrap().push(up);
                i += 1;
                std::thread::sleep(pause);
            }
        });
        UploadLoop {
            stop,
            log,
            handle: Some(handle),
        }
    }

    fn snapshot(&self) -> Vec<Up> {
        self.log.lock().unwrap().clone()
    }

    /// Uploads answered 200 that started after `t`.
    fn ok_since(&self, t: Instant) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|u| u.start >= t && u.status == Some(200))
            .count()
    }

    fn finish(mut self) -> Vec<Up> {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            h.join().expect("upload loop panicked");
        }
        self.snapshot()
    }
}

impl Drop for UploadLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn base_service(sim: &Sim) -> ServiceBuilder {
    Service::builder()
        .set("PERRY_HUB_URL", sim.url())
        .set("PERRY_HUB_LICENSE_KEY", "sim-license")
        .set("RETRY_BASE_SECS", "1")
        .set("RETRY_MAX_SECS", "2")
        .set("SUBMIT_MAX_ATTEMPTS", "100")
        .set("HUB_TIMEOUT_SECS", "5")
}

// ---------------------------------------------------------------------------
// 1. The database disappears mid-run
// ---------------------------------------------------------------------------

#[test]
fn database_outage_mid_run_loses_nothing_and_recovers_without_restart() {
    let t0 = Instant::now();
    let db = TestDb::new();
    let direct = Direct::Mysql(&db);
    let proxy = TcpProxy::start(&format!("{}:{}", db.host, db.port));
    let sim = Sim::start(&[
        "--build-delay-ms",
        "100",
        "--artifact-size",
        ARTIFACT_SIZE_ARG,
    ]);
    let mut svc = base_service(&sim)
        .envs(db.service_env("127.0.0.1", proxy.port()))
        .start();
    let base = svc.base();
    let pid = svc.pid();
    assert_eq!(health_status(&base), Some(200), "{}", svc.log());

    let uploads = UploadLoop::start(base.clone(), "dbcut", Duration::from_millis(40));
    assert!(
        wait_until(Duration::from_secs(15), || uploads.ok_since(t0) >= 6),
        "no uploads before the outage: {:?}\n{}",
        uploads.snapshot().last(),
        svc.log()
    );

    // A job the hub accepts but holds: its artifact is delivered during the outage.
    sim.set(json!({"never_callback": true}));
    let held_body = tarball("held", FILL);
    let r = upload(&base, "held", "1.0.0", &["linux"], &held_body).expect("upload held");
    sim.set(json!({"never_callback": false}));
    assert_eq!(r.status, 200, "{}", r.text());
    let held_hub_job = r.json()["builds"][0]["jobId"].as_str().unwrap().to_string();
    assert_eq!(r.json()["builds"][0]["status"], "queued", "{}", r.text());

    // From here the hub refuses (retryably) until just before the restore:
    // uploads made now leave pending jobs that can only be submitted after it.
    sim.set(json!({"fail_next": 1_000_000, "fail_kind": "500"}));
    let pend_body = tarball("pend", FILL);
    let r = upload(&base, "pend", "1.0.0", &["linux", "windows"], &pend_body).expect("upload pend");
    assert_eq!(r.status, 200, "{}", r.text());
    for b in r.json()["builds"].as_array().unwrap() {
        assert_eq!(b["status"], "pending", "{}", r.text());
    }
    let t_pending = Instant::now();
    assert!(wait_until(Duration::from_secs(10), || uploads
        .ok_since(t_pending)
        >= 2));
    let pending_before: Vec<Key> = direct
        .rows(
            "SELECT p.name, j.version, j.platform FROM buildJobs j JOIN plugins p ON p.id = j.pluginId \
             WHERE j.status = 'pending' ORDER BY j.id",
        )
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap(), r[2].clone().unwrap()))
        .collect();
    assert!(
        pending_before.len() >= 2,
        "pending jobs before the cut: {pending_before:?}"
    );

    // --- The outage. ---
    proxy.cut();
    let t_cut = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || health_status(&base)
            == Some(503)),
        "/health does not say 503 while the database is cut"
    );
    // An artifact arriving while the database is down.
    let d = sim_deliver(&sim, &held_hub_job).expect("sim deliver during the outage");
    let held_dir = svc.dir().join("packages/held/1.0.0");
    let during_delivery_status = d["status"].as_u64();
    let during_delivery_body = d["response_body"].as_str().unwrap_or_default().to_string();
    let held_bin_during = held_dir.join("linux-x64.bin").exists();
    let held_temps_during = temp_files(&held_dir);
    let status_during = get_status(&base, "held", "1.0.0").map(|r| r.status);
    let cut_for = Duration::from_secs(3);
    while t_cut.elapsed() < cut_for {
        std::thread::sleep(Duration::from_millis(50));
    }
    sim.set(json!({"fail_next": 0}));
    let t_restore = Instant::now();
    let restore_ms = now_ms();
    proxy.restore();
    // --- Restored. ---

    assert!(
        wait_until(Duration::from_secs(20), || health_status(&base)
            == Some(200)),
        "/health not 200 after the database came back; log:\n{}",
        svc.log()
    );
    let recovered_in = t_restore.elapsed();
    assert!(
        svc.is_running() && svc.pid() == pid,
        "recovered without a restart"
    );
    assert!(
        wait_until(Duration::from_secs(20), || uploads.ok_since(t_restore) >= 3),
        "uploads do not succeed again after the restore: {:?}\n{}",
        uploads.snapshot().last(),
        svc.log()
    );
    let ups = uploads.finish();

    // The held artifact, delivered again now that the database is back.
    let d2 = sim_deliver(&sim, &held_hub_job).expect("sim deliver after the restore");
    assert_eq!(d2["status"], 200, "held delivery after the restore: {d2}");

    // Uploads answered 503: nothing recorded, nothing left behind — except
    // when the COMMIT reached the server and only its answer was lost (rows
    // and tarball both there: an unknowable outcome, like a transport
    // failure; such an upload must then complete like the others).
    let mut problems: Vec<String> = Vec::new();
    let uploads_dir = svc.dir().join("uploads");
    let mut ambiguous: Vec<(String, String)> = Vec::new();
    for u in ups.iter().filter(|u| u.status == Some(503)) {
        let tar = uploads_dir
            .join(&u.name)
            .join(format!("{}.tar.gz", u.version));
        let (jobs, version_rows) = direct.version_row_counts(&u.name, &u.version);
        let since_cut = match u.start.checked_duration_since(t_cut) {
            Some(d) => d.as_millis() as i64,
            None => -(t_cut.duration_since(u.start).as_millis() as i64),
        };
        if tar.exists() && jobs == u.platforms.len() && version_rows == 1 {
            ambiguous.push(u.key());
        } else if tar.exists() || jobs > 0 || version_rows > 0 {
            problems.push(format!(
                "upload {} {} answered 503 (started {since_cut} ms after the cut) but left: \
                 tarball {}, {jobs} job row(s), {version_rows} pluginVersions row(s)",
                u.name,
                u.version,
                tar.exists()
            ));
        }
    }

    // Everything that was answered 200 settles as completed.
    let mut versions: Vec<(String, String)> = ups
        .iter()
        .filter(|u| u.status == Some(200))
        .map(Up::key)
        .collect();
    versions.extend(ambiguous.iter().cloned());
    versions.push(("held".into(), "1.0.0".into()));
    versions.push(("pend".into(), "1.0.0".into()));
    let settled = settle(
        &SettleOpts {
            base: base.clone(),
            sim: &sim,
            versions: versions.clone(),
            build_delay_ms: 100,
            accept_failed: false,
            timeout: Duration::from_secs(40),
        },
        &direct,
        &mut |_, _, _| false,
    );

    let subs = sub_records(&sim.submissions());
    let dels = del_records(&sim.deliveries());
    let failed_deliveries: Vec<&DelRec> = dels.iter().filter(|d| d.status != Some(200)).collect();
    let during: Vec<&Up> = ups
        .iter()
        .filter(|u| u.start >= t_cut && u.end <= t_restore)
        .collect();
    let n_ok = ups.iter().filter(|u| u.status == Some(200)).count();
    let n_503 = ups.iter().filter(|u| u.status == Some(503)).count();
    println!(
        "database outage: {} uploads ({n_ok} x 200, {n_503} x 503, {} during the cut), \
         outage {:?}, /health 200 again {:?} after the restore, settled in {:?}; \
         sim: {} submissions, {} deliveries ({} failed: {:?}); {} manual re-deliveries, \
         {} expired leases; answered 503 but committed: {ambiguous:?}; artifact during the outage -> {:?} {}",
        ups.len(),
        during.len(),
        cut_for,
        recovered_in,
        settled.waited,
        subs.len(),
        dels.len(),
        failed_deliveries.len(),
        failed_deliveries
            .iter()
            .map(|d| d
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| d.error.clone().unwrap_or_default()))
            .collect::<BTreeSet<_>>(),
        settled.redelivered,
        settled.expired_leases.len(),
        during_delivery_status,
        during_delivery_body,
    );

    // While cut: 503 UNAVAILABLE with Retry-After, never 200.
    if during.len() < 5 {
        problems.push(format!(
            "only {} uploads fell entirely inside the outage",
            during.len()
        ));
    }
    for u in &during {
        if u.status != Some(503)
            || u.code.as_deref() != Some("UNAVAILABLE")
            || u.retry_after.is_none()
        {
            problems.push(format!(
                "upload {} {} during the outage answered {:?} {:?} Retry-After {:?}: {}",
                u.name, u.version, u.status, u.code, u.retry_after, u.json
            ));
        }
    }
    for u in &ups {
        if !matches!(u.status, Some(200) | Some(503)) {
            problems.push(format!(
                "upload {} {} answered {:?} {:?} {}",
                u.name, u.version, u.status, u.error, u.json
            ));
        }
    }
    // An artifact delivered while the database is down: 503, nothing stored.
    if during_delivery_status != Some(503) || !during_delivery_body.contains("UNAVAILABLE") {
        problems.push(format!(
            "artifact during the outage answered {during_delivery_status:?} {during_delivery_body}"
        ));
    }
    if held_bin_during || !held_temps_during.is_empty() {
        problems.push(format!(
            "artifact during the outage left files: bin {held_bin_during}, temps {held_temps_during:?}"
        ));
    }
    if status_during != Some(503) {
        problems.push(format!(
            "/status during the outage answered {status_during:?}"
        ));
    }
    let temps = temp_files(svc.dir());
    if !temps.is_empty() {
        problems.push(format!("temporary files left: {temps:?}"));
    }
    for (n, v) in &ambiguous {
        let u = ups
            .iter()
            .find(|u| u.key() == (n.clone(), v.clone()))
            .unwrap();
        let again = upload(&base, n, v, &u.platforms, &u.body).expect("retry");
        if again.status != 409 {
            problems.push(format!(
                "upload {n} {v} answered 503 but was recorded; a retry answered {} {}",
                again.status,
                again.text()
            ));
        }
    }
    // Every upload answered 200 is present and completed, files intact.
    if !settled.done {
        problems.push(format!(
            "not everything completed within {:?}: {:?}",
            settled.waited,
            settled
                .statuses
                .iter()
                .filter(|(_, s)| s["overall"] != "completed")
                .collect::<Vec<_>>()
        ));
    }
    let bodies: HashMap<(String, String), Vec<u8>> = ups
        .iter()
        .map(|u| (u.key(), u.body.clone()))
        .chain([
            (("held".to_string(), "1.0.0".to_string()), held_body.clone()),
            (("pend".to_string(), "1.0.0".to_string()), pend_body.clone()),
        ])
        .collect();
    let packages = svc.dir().join("packages");
    for u in ups.iter().filter(|u| u.status == Some(200)) {
        let Some(s) = settled.statuses.get(&u.key()) else {
            problems.push(format!(
                "upload {} {} answered 200 but has no /status",
                u.name, u.version
            ));
            continue;
        };
        let platforms: BTreeSet<&str> = s["builds"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["platform"].as_str())
            .collect();
        if platforms != u.platforms.iter().copied().collect() {
            problems.push(format!(
                "upload {} {}: builds {platforms:?}, asked {:?}",
                u.name, u.version, u.platforms
            ));
        }
    }
    for (k, s) in &settled.statuses {
        problems.extend(check_version_files(&packages, &k.0, &k.1, s, &bodies[k]));
    }
    // Jobs pending before the cut were submitted after the restore.
    for key in &pending_before {
        let after = subs
            .iter()
            .any(|s| s.accepted() && s.key() == *key && s.received_at_ms >= restore_ms);
        if !after {
            problems.push(format!(
                "job pending before the cut {key:?} was not submitted after the restore"
            ));
        }
    }
    // The held job: its delivery during the outage was refused, the one after stored it.
    let held = &settled.statuses[&("held".to_string(), "1.0.0".to_string())];
    if held["builds"][0]["status"] != "completed" {
        problems.push(format!("held job not completed: {held}"));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}\n--- log tail:\n{}",
        problems.len(),
        problems.join("\n"),
        tail_lines(&svc.log(), 60)
    );
    drop(svc);
}

// ---------------------------------------------------------------------------
// 2. The hub disappears and returns
// ---------------------------------------------------------------------------

#[test]
fn hub_outage_keeps_uploads_pending_then_submits_each_job_once() {
    let mut sim = Sim::start(&[
        "--build-delay-ms",
        "100",
        "--artifact-size",
        ARTIFACT_SIZE_ARG,
    ]);
    let hub_port = sim.port();
    let svc = base_service(&sim).start();
    let base = svc.base();
    let direct = Direct::Sqlite(svc.dir().join("data").join(common::SQLITE_FILE));
    let t0 = Instant::now();
    let uploads = UploadLoop::start(base.clone(), "hubout", Duration::from_millis(40));
    assert!(
        wait_until(Duration::from_secs(15), || uploads.ok_since(t0) >= 6),
        "no uploads before the hub outage: {:?}",
        uploads.snapshot().last()
    );

    // Kill the hub while uploads go on; keep what it recorded first.
    let before_subs = sub_records(&sim.submissions());
    let before_dels = del_records(&sim.deliveries());
    let kill_ms = now_ms();
    sim.kill();
    let t_kill = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let t_restart = Instant::now();
    sim.restart();
    let restart_ms = now_ms();
    assert_eq!(sim.port(), hub_port, "simulator back on the same port");
    assert!(
        wait_until(Duration::from_secs(20), || uploads.ok_since(t_restart) >= 3),
        "uploads after the hub came back: {:?}",
        uploads.snapshot().last()
    );
    let ups = uploads.finish();

    // Jobs the killed hub had accepted but not yet delivered were lost with
    // it (the simulator keeps no state across a restart; a real hub keeps
    // its queue): the test delivers those artifacts itself, like the worker.
    let bodies: HashMap<(String, String), Vec<u8>> =
        ups.iter().map(|u| (u.key(), u.body.clone())).collect();
    let versions: Vec<(String, String)> = ups
        .iter()
        .filter(|u| u.status == Some(200))
        .map(Up::key)
        .collect();
    let mut orphan_keys = Vec::new();
    let settled = settle(
        &SettleOpts {
            base: base.clone(),
            sim: &sim,
            versions: versions.clone(),
            build_delay_ms: 100,
            accept_failed: false,
            timeout: Duration::from_secs(40),
        },
        &direct,
        &mut |n, v, p| {
            let body = &bodies[&(n.to_string(), v.to_string())];
            orphan_keys.push((n.to_string(), v.to_string(), p.to_string()));
            deliver_as_worker(&base, &direct, n, v, p, body) == 200
        },
    );

    let after_subs = sub_records(&sim.submissions());
    let all_subs: Vec<&SubRec> = before_subs.iter().chain(after_subs.iter()).collect();
    let down: Vec<&Up> = ups
        .iter()
        .filter(|u| u.start >= t_kill && u.end <= t_restart)
        .collect();
    let mut problems = Vec::new();
    for u in &ups {
        if u.status != Some(200) {
            problems.push(format!(
                "upload {} {} answered {:?} {:?} {}",
                u.name, u.version, u.status, u.error, u.json
            ));
        }
    }
    if down.len() < 5 {
        problems.push(format!(
            "only {} uploads fell entirely inside the hub outage",
            down.len()
        ));
    }
    for u in &down {
        for b in u.json["builds"].as_array().cloned().unwrap_or_default() {
            if b["status"] != "pending" || b["jobId"] != "" {
                problems.push(format!(
                    "upload {} {} while the hub was down: build {b}",
                    u.name, u.version
                ));
            }
        }
    }
    if !settled.done {
        problems.push(format!(
            "not everything completed within {:?}: {:?}",
            settled.waited,
            settled
                .statuses
                .iter()
                .filter(|(_, s)| s["overall"] != "completed")
                .collect::<Vec<_>>()
        ));
    }
    let packages = svc.dir().join("packages");
    let mut per_job: BTreeMap<Key, Vec<&SubRec>> = BTreeMap::new();
    for s in all_subs.iter().filter(|s| s.accepted()) {
        per_job.entry(s.key()).or_default().push(s);
    }
    let mut resubmitted = 0;
    let mut jobs = 0;
    for u in ups.iter().filter(|u| u.status == Some(200)) {
        let Some(st) = settled.statuses.get(&u.key()) else {
            problems.push(format!("upload {} {}: no /status", u.name, u.version));
            continue;
        };
        problems.extend(check_version_files(
            &packages, &u.name, &u.version, st, &u.body,
        ));
        for b in st["builds"].as_array().unwrap() {
            jobs += 1;
            let key = (
                u.name.clone(),
                u.version.clone(),
                b["platform"].as_str().unwrap().to_string(),
            );
            let hub_job = b["hubJobId"].as_str().unwrap_or_default();
            let accepted = per_job.get(&key).cloned().unwrap_or_default();
            let down_upload = u.start >= t_kill && u.end <= t_restart;
            if accepted.is_empty() {
                // Accepted by the killed hub after the snapshot: known only by
                // hone-build's record (and delivered by the test).
                if !orphan_keys.contains(&key) {
                    problems.push(format!("{key:?}: never submitted (hubJobId {hub_job:?})"));
                }
                continue;
            }
            if down_upload && (accepted.len() != 1 || accepted[0].received_at_ms < restart_ms) {
                problems.push(format!(
                    "{key:?} uploaded while the hub was down: accepted submissions {:?}",
                    accepted
                        .iter()
                        .map(|s| s.received_at_ms)
                        .collect::<Vec<_>>()
                ));
            }
            if accepted.last().and_then(|s| s.job_id.as_deref()) != Some(hub_job)
                && !orphan_keys.contains(&key)
            {
                problems.push(format!(
                    "{key:?}: completed with hubJobId {hub_job:?}, but the hub accepted it as {:?} \
                     (the acceptance was not recorded; see \
                     artifact_arriving_before_the_acceptance_is_recorded_keeps_the_hub_job_id)",
                    accepted.last().and_then(|s| s.job_id.as_deref())
                ));
            }
            if accepted.len() > 1 {
                resubmitted += 1;
                // Legitimate only when the earlier submission's outcome could
                // not be recorded: the hub died right after accepting it.
                for s in &accepted[..accepted.len() - 1] {
                    if s.received_at_ms + 1000 < kill_ms || s.job_id.as_deref() == Some(hub_job) {
                        problems.push(format!(
                            "{key:?} submitted {} times; an earlier one ({} ms before the kill) was recorded",
                            accepted.len(),
                            kill_ms as i64 - s.received_at_ms as i64
                        ));
                    }
                }
            }
            if accepted
                .iter()
                .any(|s| s.tarball_sha256.as_deref() != Some(hex(&sha256(&u.body)).as_str()))
            {
                problems.push(format!("{key:?}: the hub got another tarball"));
            }
        }
    }
    println!(
        "hub outage: {} uploads ({} while the hub was down, all pending), {jobs} jobs, \
         {} accepted submissions before the kill + {} after the restart, {resubmitted} resubmitted, \
         {} delivered in place of the killed hub, {} re-delivered, settled in {:?}; \
         {} deliveries before the kill",
        ups.len(),
        down.len(),
        before_subs.iter().filter(|s| s.accepted()).count(),
        after_subs.iter().filter(|s| s.accepted()).count(),
        settled.orphans_delivered,
        settled.redelivered,
        settled.waited,
        before_dels.len(),
    );
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}\n--- log tail:\n{}",
        problems.len(),
        problems.join("\n"),
        tail_lines(&svc.log(), 60)
    );
}

// ---------------------------------------------------------------------------
// 3. kill -9 at random points
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Publish {
    name: String,
    version: String,
    platforms: Vec<&'static str>,
    body: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Published {
    p: Publish,
    /// Attempts that failed at the transport level.
    transport_failures: u32,
    /// The final answer: status and code.
    status: u16,
    code: Option<String>,
    body: String,
}

impl Published {
    /// Acknowledged: 200, or (after a lost first attempt) 409 saying the
    /// first attempt was recorded.
    fn acknowledged(&self) -> bool {
        self.status == 200
            || (self.status == 409
                && self.transport_failures > 0
                && matches!(
                    self.code.as_deref(),
                    Some("BUILD_IN_PROGRESS") | Some("VERSION_EXISTS")
                ))
    }
}

fn kill9_run(db: Option<&TestDb>) {
    let t0 = Instant::now();
    let label = if db.is_some() { "mysql" } else { "sqlite" };
    let work = tempfile::Builder::new()
        .prefix("hone-build-k9")
        .tempdir()
        .unwrap();
    let port = free_port();
    let sim = Sim::start(&[
        "--build-delay-ms",
        "50",
        "--artifact-size",
        ARTIFACT_SIZE_ARG,
    ]);
    let builder = || {
        let b = base_service(&sim)
            .dir(work.path())
            .set("PORT", port.to_string())
            .set("PUBLIC_URL", format!("http://127.0.0.1:{port}"));
        match db {
            Some(db) => b.envs(db.service_env(&db.host, db.port)),
            None => b,
        }
    };
    let mut svc = builder().start();
    let base = format!("http://127.0.0.1:{port}");
    let direct = match db {
        Some(db) => Direct::Mysql(db),
        None => Direct::Sqlite(work.path().join("data").join(common::SQLITE_FILE)),
    };

    // 100 publishes: distinct name/version, one or two platforms each.
    let plan: Vec<Publish> = (0..100)
        .map(|i| {
            let name = format!("k9p{}", i % 10);
            let version = format!("2.{i}.0");
            let first = PLATFORMS[rand_in(0, 4) as usize];
            let mut platforms = vec![first];
            if rand_u64().is_multiple_of(2) {
                let second = PLATFORMS[(PLATFORMS.iter().position(|p| *p == first).unwrap()
                    + rand_in(1, 4) as usize)
                    % 5];
                platforms.push(second);
            }
            let body = tarball(&format!("{label}/{name}/{version}/{}", rand_u64()), FILL);
            Publish {
                name,
                version,
                platforms,
                body,
            }
        })
        .collect();
    let plan = Arc::new(plan);
    let next = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<Vec<Published>>> = Arc::default();
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (plan, next, results, base) = (
                Arc::clone(&plan),
                Arc::clone(&next),
                Arc::clone(&results),
                base.clone(),
            );
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(p) = plan.get(i) else { break };
                    let mut transport_failures = 0;
                    let deadline = Instant::now() + Duration::from_secs(60);
                    let resp = loop {
                        match upload(&base, &p.name, &p.version, &p.platforms, &p.body) {
                            Ok(r) => break r,
                            Err(e) => {
                                transport_failures += 1;
                                assert!(
                                    Instant::now() < deadline,
                                    "publish {} {} keeps failing: {e}",
                                    p.name,
                                    p.version
                                );
                                std::thread::sleep(Duration::from_millis(rand_in(50, 150)));
                            }
                        }
                    };
                    let json: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
                    results.lock().unwrap().push(Published {
                        p: p.clone(),
                        transport_failures,
                        status: resp.status,
                        code: json["code"].as_str().map(str::to_string),
                        body: resp.text(),
                    });
                    std::thread::sleep(Duration::from_millis(rand_in(40, 160)));
                }
            })
        })
        .collect();
    // The simulated builds take a small random time; some deliveries are
    // throttled and now and then a submission hangs a little, so that kills
    // also land in the middle of a delivery or of a submission.
    let stop_delays = Arc::new(AtomicBool::new(false));
    let delays = {
        let (stop, url) = (Arc::clone(&stop_delays), sim.url());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let throttle = [0u64, 0, 10_000, 20_000][rand_in(0, 3) as usize];
                let mut knobs = json!({
                    "build_delay_ms": rand_in(10, 400),
                    "throttle_bytes_per_sec": throttle,
                });
                if rand_in(0, 4) == 0 {
                    knobs["hang_next"] = json!(1);
                    knobs["hang_ms"] = json!(rand_in(100, 400));
                }
                let body = knobs.to_string();
                let _ = try_http(
                    "POST",
                    &format!("{url}/_sim/config"),
                    &[],
                    Some(body.as_bytes()),
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // kill -9 at random moments, restarting on the same directory each time.
    let planned_kills = rand_in(3, 5);
    let mut crash_problems: Vec<String> = Vec::new();
    let mut bins_ahead: Vec<String> = Vec::new();
    let mut kills = 0;
    let mut kill_gaps = Vec::new();
    let clients_done =
        |results: &Arc<Mutex<Vec<Published>>>| results.lock().unwrap().len() >= plan.len();
    while kills < planned_kills && !clients_done(&results) {
        let gap = Duration::from_millis(rand_in(200, 1500));
        let t = Instant::now();
        while t.elapsed() < gap && !clients_done(&results) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if clients_done(&results) {
            break;
        }
        svc.kill9();
        kills += 1;
        kill_gaps.push(gap.as_millis() as u64);
        // The state the crash left, before anything heals it.
        let (hard, ahead) = crash_state(&direct, &work.path().join("packages"), &plan);
        crash_problems.extend(hard.into_iter().map(|p| format!("after kill {kills}: {p}")));
        bins_ahead.extend(
            ahead
                .into_iter()
                .map(|p| format!("after kill {kills}: {p}")),
        );
        svc = builder().start();
    }
    for c in clients {
        c.join().expect("publishing client panicked");
    }
    stop_delays.store(true, Ordering::Release);
    delays.join().unwrap();
    let published = results.lock().unwrap().clone();
    let publish_time = t0.elapsed();

    // Settle: re-deliver what hit a dead server; stale claims expire.
    let versions: Vec<(String, String)> = published
        .iter()
        .filter(|p| p.acknowledged())
        .map(|p| (p.p.name.clone(), p.p.version.clone()))
        .collect();
    let settled = settle(
        &SettleOpts {
            base: base.clone(),
            sim: &sim,
            versions,
            build_delay_ms: 400,
            accept_failed: true,
            timeout: Duration::from_secs(40),
        },
        &direct,
        &mut |_, _, _| false,
    );

    let subs = sub_records(&sim.submissions());
    let dels = del_records(&sim.deliveries());
    let mut problems = Vec::new();
    let (mut completed, mut failed, mut pending, mut other) = (0, 0, 0, 0);
    let packages = work.path().join("packages");
    let mut acked = BTreeSet::new();
    for p in &published {
        if !p.acknowledged() {
            problems.push(format!(
                "publish {} {} answered {} {:?} after {} transport failure(s): {}",
                p.p.name, p.p.version, p.status, p.code, p.transport_failures, p.body
            ));
            continue;
        }
        acked.insert((p.p.name.clone(), p.p.version.clone()));
        let Some(st) = settled
            .statuses
            .get(&(p.p.name.clone(), p.p.version.clone()))
        else {
            problems.push(format!(
                "acknowledged publish {} {} has no /status",
                p.p.name, p.p.version
            ));
            continue;
        };
        let builds = st["builds"].as_array().unwrap();
        let platforms: BTreeSet<&str> = builds
            .iter()
            .filter_map(|b| b["platform"].as_str())
            .collect();
        if platforms != p.p.platforms.iter().copied().collect() {
            problems.push(format!(
                "{} {}: builds {platforms:?}, asked {:?}",
                p.p.name, p.p.version, p.p.platforms
            ));
        }
        for b in builds {
            let reason = b["errorMessage"].as_str().unwrap_or_default();
            match b["status"].as_str().unwrap_or_default() {
                "completed" => completed += 1,
                "failed" if !reason.is_empty() => failed += 1,
                "pending" if !reason.is_empty() => pending += 1,
                _ => {
                    other += 1;
                    problems.push(format!(
                        "{} {}: build settled as {b}",
                        p.p.name, p.p.version
                    ));
                }
            }
        }
        problems.extend(check_version_files(
            &packages,
            &p.p.name,
            &p.p.version,
            st,
            &p.p.body,
        ));
        // What the hub received is this publish's tarball, whole.
        let sha = hex(&sha256(&p.p.body));
        for s in subs
            .iter()
            .filter(|s| s.accepted() && s.name == p.p.name && s.version == p.p.version)
        {
            if s.tarball_sha256.as_deref() != Some(sha.as_str()) {
                problems.push(format!(
                    "{} {} {}: the hub got another tarball",
                    s.name, s.version, s.target
                ));
            }
        }
    }
    // No .bin anywhere for something not acknowledged or not completed.
    for (n, v, f) in bin_files(&packages) {
        if !acked.contains(&(n.clone(), v.clone())) {
            problems.push(format!(
                "{n}/{v}/{f} exists for a publish never acknowledged"
            ));
        }
    }
    if !settled.done {
        problems.push(format!("not settled within {:?}", settled.waited));
    }
    let mut per_job: BTreeMap<Key, usize> = BTreeMap::new();
    for s in subs.iter().filter(|s| s.accepted()) {
        *per_job.entry(s.key()).or_default() += 1;
    }
    let resubmitted = per_job.values().filter(|n| **n > 1).count();
    let failed_deliveries = dels.iter().filter(|d| d.status != Some(200)).count();
    let temps = temp_files(work.path());
    let retried = published
        .iter()
        .filter(|p| p.transport_failures > 0)
        .count();
    let recorded_409 = published.iter().filter(|p| p.status == 409).count();
    println!(
        "kill -9 ({label}): {} publishes ({} acknowledged, {retried} retried after a transport failure, \
         {recorded_409} of them answered 409 = recorded), {kills} kills (gaps {kill_gaps:?} ms), \
         publishing took {publish_time:?}; builds: {completed} completed, {failed} failed, {pending} pending, {other} other; \
         sim: {} accepted submissions ({resubmitted} jobs submitted more than once), {} deliveries ({failed_deliveries} failed), \
         {} manual re-deliveries, {} stale leases expired by the test {:?}; {} temporary files left by kills; \
         settled in {:?}, total {:?}",
        published.len(),
        acked.len(),
        per_job.values().sum::<usize>(),
        dels.len(),
        settled.redelivered,
        settled.expired_leases.len(),
        settled.expired_leases,
        temps.len(),
        settled.waited,
        t0.elapsed(),
    );
    if !bins_ahead.is_empty() {
        println!(
            "kill -9 ({label}): a crash left a complete .bin for a job the database \
             does not have as completed (healed later by a re-delivery): {bins_ahead:?}"
        );
    }
    problems.extend(crash_problems);
    if kills < 3 {
        problems.push(format!("only {kills} kills happened while publishing"));
    }
    if published.len() != plan.len() {
        problems.push(format!(
            "{} of {} publishes answered",
            published.len(),
            plan.len()
        ));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}\n--- log tail:\n{}",
        problems.len(),
        problems.join("\n"),
        tail_lines(&svc.log(), 80)
    );
}

/// Checks what a crash left on disk, the process being dead: every
/// `manifest.json` parses; every `.bin` is whole (exactly the simulator's
/// artifact of its publish's tarball). Returns those problems, and the
/// `.bin` files whose job the database does not have as completed.
fn crash_state(
    direct: &Direct<'_>,
    packages: &Path,
    plan: &[Publish],
) -> (Vec<String>, Vec<String>) {
    let (mut hard, mut ahead) = (Vec::new(), Vec::new());
    let completed: BTreeSet<Key> = direct
        .rows(
            "SELECT p.name, j.version, j.platform FROM buildJobs j JOIN plugins p ON p.id = j.pluginId \
             WHERE j.status = 'completed'",
        )
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap(), r[2].clone().unwrap()))
        .collect();
    for (n, v, f) in bin_files(packages) {
        let dir = packages.join(&n).join(&v);
        let Some(p) = plan.iter().find(|p| p.name == n && p.version == v) else {
            hard.push(format!("{n}/{v}/{f}: not a publish of this run"));
            continue;
        };
        let id = f.trim_end_matches(".bin");
        let Some(hub) = PLATFORMS.iter().find(|h| platform_id(h) == id) else {
            hard.push(format!("{n}/{v}/{f}: not a platform file"));
            continue;
        };
        let bytes = std::fs::read(dir.join(&f)).unwrap_or_default();
        if bytes != expected_artifact(&p.body, hub, ARTIFACT_SIZE) {
            hard.push(format!(
                "{n}/{v}/{f}: partial or wrong ({} bytes)",
                bytes.len()
            ));
        }
        if !completed.contains(&(n.clone(), v.clone(), hub.to_string())) {
            ahead.push(format!("{n}/{v}/{f}"));
        }
    }
    let Ok(names) = std::fs::read_dir(packages) else {
        return (hard, ahead);
    };
    for n in names.flatten() {
        for v in std::fs::read_dir(n.path()).into_iter().flatten().flatten() {
            let m = v.path().join("manifest.json");
            if let Ok(b) = std::fs::read(&m)
                && serde_json::from_slice::<Value>(&b).is_err()
            {
                hard.push(format!("{}: does not parse", m.display()));
            }
        }
    }
    (hard, ahead)
}

#[test]
fn kill9_at_random_points_sqlite() {
    kill9_run(None);
}

#[test]
fn kill9_at_random_points_mysql() {
    let db = TestDb::new();
    kill9_run(Some(&db));
}

// ---------------------------------------------------------------------------
// 4. The database dies right after a file was put in place
// ---------------------------------------------------------------------------

/// Spins until `path` exists (at most `limit`), then cuts the proxy.
/// Returns whether it cut.
fn cut_when_exists(proxy: &TcpProxy, path: &Path, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if path.exists() {
            proxy.cut();
            return true;
        }
        std::hint::spin_loop();
    }
    false
}

/// The store puts the tarball (upload) and the `.bin` plus `manifest.json`
/// (artifact) in place *inside* the database transaction, just before it
/// commits. This cuts the database the moment the file appears — the
/// window between the rename and the commit — and checks that a request
/// answered 503 leaves nothing behind once the database answers again (a
/// COMMIT whose answer was lost is settled then): no tarball or rows for a
/// refused upload, no `.bin` or manifest entry for a job not completed.
#[test]
fn database_cut_right_after_a_file_is_put_in_place_leaves_no_file() {
    let db = TestDb::new();
    let direct = Direct::Mysql(&db);
    let proxy = TcpProxy::start(&format!("{}:{}", db.host, db.port));
    let sim = Sim::start(&[
        "--build-delay-ms",
        "100",
        "--artifact-size",
        ARTIFACT_SIZE_ARG,
    ]);
    sim.set(json!({"never_callback": true}));
    let svc = base_service(&sim)
        .envs(db.service_env("127.0.0.1", proxy.port()))
        .start();
    let base = svc.base();
    let packages = svc.dir().join("packages");
    let uploads_dir = svc.dir().join("uploads");
    let restore = |proxy: &TcpProxy| {
        proxy.restore();
        assert!(
            wait_until(Duration::from_secs(20), || health_status(&base)
                == Some(200)),
            "no recovery; log:\n{}",
            tail_lines(&svc.log(), 40)
        );
    };
    let mut problems = Vec::new();

    // Uploads cut right after their tarball was put in place.
    let (mut upload_tries, mut upload_hits) = (0, 0);
    let mut ambiguous = Vec::new();
    for k in 0..10 {
        if upload_hits >= 3 {
            break;
        }
        upload_tries += 1;
        let version = format!("1.{k}.0");
        let body = tarball(&format!("probe/{version}"), FILL);
        let tar = uploads_dir.join("probe").join(format!("{version}.tar.gz"));
        let (r, cut) = std::thread::scope(|s| {
            let w = s.spawn(|| cut_when_exists(&proxy, &tar, Duration::from_secs(10)));
            let r = upload(&base, "probe", &version, &["linux"], &body);
            (r, w.join().unwrap())
        });
        let r = r.expect("upload answered");
        restore(&proxy);
        if !(cut && r.status == 503) {
            continue;
        }
        upload_hits += 1;
        // A COMMIT whose answer was lost is settled once the database
        // answers again: the file stays if the rows exist, else it goes.
        wait_until(Duration::from_secs(10), || {
            let (jobs, rows) = direct.version_row_counts("probe", &version);
            (jobs > 0 && rows > 0) == tar.exists()
        });
        let (jobs, version_rows) = direct.version_row_counts("probe", &version);
        if jobs > 0 && version_rows > 0 && tar.exists() {
            // The COMMIT reached the server and its answer was lost: a
            // consistent state and an unknowable outcome, like a transport
            // failure. A retry says it was recorded.
            let again = upload(&base, "probe", &version, &["linux"], &body).expect("retry");
            ambiguous.push(format!(
                "{version} (retry: {} {})",
                again.status,
                again.text()
            ));
            if again.status != 409 {
                problems.push(format!(
                    "upload probe {version} answered 503 but was recorded; a retry answered {} {}",
                    again.status,
                    again.text()
                ));
            }
        } else if jobs > 0 || version_rows > 0 {
            problems.push(format!(
                "upload probe {version} answered 503 {} and is half recorded: {jobs} job row(s), \
                 {version_rows} pluginVersions row(s), tarball {}",
                r.text(),
                tar.exists()
            ));
        } else if tar.exists() {
            problems.push(format!(
                "upload probe {version} answered 503 {} and recorded nothing, but its tarball {} \
                 was left in place",
                r.text(),
                tar.display()
            ));
        }
    }

    // Artifacts cut right after their .bin was put in place.
    let (mut artifact_tries, mut artifact_hits, mut healed) = (0, 0, 0);
    for k in 0..10 {
        if artifact_hits >= 3 {
            break;
        }
        let version = format!("2.{k}.0");
        let body = tarball(&format!("probe/{version}"), FILL);
        let r = upload(&base, "probe", &version, &["linux"], &body).expect("upload");
        assert_eq!(r.status, 200, "{}", r.text());
        let hub_job = r.json()["builds"][0]["jobId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(!hub_job.is_empty(), "{}", r.text());
        artifact_tries += 1;
        let bin = packages.join("probe").join(&version).join("linux-x64.bin");
        let (d, cut) = std::thread::scope(|s| {
            let w = s.spawn(|| cut_when_exists(&proxy, &bin, Duration::from_secs(10)));
            let d = sim_deliver(&sim, &hub_job);
            (d, w.join().unwrap())
        });
        let d = d.expect("sim deliver");
        restore(&proxy);
        // Settled once the database answers again (see above).
        wait_until(Duration::from_secs(10), || {
            let job = direct.job("probe", &version, "linux").expect("job row");
            (job.2 == "completed") == bin.exists()
        });
        let job = direct.job("probe", &version, "linux").expect("job row");
        let manifest =
            std::fs::read_to_string(bin.with_file_name("manifest.json")).unwrap_or_default();
        if cut && d["status"] != 200 {
            artifact_hits += 1;
            if job.2 != "completed" && (bin.exists() || manifest.contains("linux-x64")) {
                problems.push(format!(
                    "artifact for probe {version} answered {} {} and the job is {:?}, yet {} \
                     exists: {}, manifest.json lists linux-x64: {}",
                    d["status"],
                    d["response_body"],
                    job.2,
                    bin.display(),
                    bin.exists(),
                    manifest.contains("linux-x64")
                ));
            }
            if job.2 == "completed" && !(bin.exists() && manifest.contains("linux-x64")) {
                problems.push(format!(
                    "artifact for probe {version} answered {} and the job was completed, \
                     but {} exists: {}, manifest.json lists linux-x64: {}",
                    d["status"],
                    bin.display(),
                    bin.exists(),
                    manifest.contains("linux-x64")
                ));
            } else if job.2 == "completed" {
                // The COMMIT reached the server and its answer was lost, as
                // for uploads above: consistent, and the outcome unknowable
                // to the worker, whose next delivery is told it is stored.
                ambiguous.push(format!("artifact {version}"));
            }
            // The hub delivering again after the outage heals it.
            let again = sim_deliver(&sim, &hub_job).expect("sim deliver again");
            let job = direct.job("probe", &version, "linux").unwrap();
            if again["status"] == 200 && job.2 == "completed" && bin.exists() {
                healed += 1;
            } else {
                problems.push(format!(
                    "artifact for probe {version}: the delivery after the outage answered {} \
                     and the job is {:?}, {} exists: {}",
                    again["status"],
                    job.2,
                    bin.display(),
                    bin.exists()
                ));
            }
        } else if (job.2 == "completed") != bin.exists() {
            problems.push(format!(
                "probe {version}: job {:?} (delivery answered {}), {} exists: {}",
                job.2,
                d["status"],
                bin.display(),
                bin.exists()
            ));
        }
    }
    println!(
        "cut right after a file was put in place: uploads {upload_hits} hit(s) in {upload_tries} \
         tries (answered 503 but committed: {ambiguous:?}), artifacts {artifact_hits} hit(s) in {artifact_tries} tries ({healed} healed by \
         a second delivery after the outage)"
    );
    assert!(
        upload_hits > 0 && artifact_hits > 0,
        "the cut never landed in the window"
    );
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}\n--- log tail:\n{}",
        problems.len(),
        problems.join("\n"),
        tail_lines(&svc.log(), 30)
    );
}

// ---------------------------------------------------------------------------
// 5. The artifact arrives before the hub's acceptance is recorded
// ---------------------------------------------------------------------------

/// A fast hub delivers the artifact right after accepting the job; on a
/// busy host that can be before hone-build has recorded the acceptance.
/// The job then completes while still `pending`, and the acceptance
/// (`hubJobId`, `submittedAt`) must not be lost: `/status` of a completed
/// build names the hub job that built it.
#[test]
fn artifact_arriving_before_the_acceptance_is_recorded_keeps_the_hub_job_id() {
    let sim = Sim::start(&[
        "--build-delay-ms",
        "0",
        "--artifact-size",
        ARTIFACT_SIZE_ARG,
    ]);
    let svc = base_service(&sim).start();
    let base = svc.base();
    let mut versions = Vec::new();
    for i in 0..30 {
        let version = format!("3.{i}.0");
        let body = tarball(&format!("fast/{version}"), FILL);
        let r = upload(
            &base,
            "fast",
            &version,
            &["linux", "windows", "macos"],
            &body,
        )
        .expect("upload");
        assert_eq!(r.status, 200, "{}", r.text());
        versions.push(("fast".to_string(), version));
    }
    let direct = Direct::Sqlite(svc.dir().join("data").join(common::SQLITE_FILE));
    let settled = settle(
        &SettleOpts {
            base: base.clone(),
            sim: &sim,
            versions,
            build_delay_ms: 0,
            accept_failed: false,
            timeout: Duration::from_secs(20),
        },
        &direct,
        &mut |_, _, _| false,
    );
    assert!(settled.done, "not completed: {:?}", settled.statuses);
    let subs = sub_records(&sim.submissions());
    let mut problems = Vec::new();
    let mut builds = 0;
    for ((n, v), s) in &settled.statuses {
        for b in s["builds"].as_array().unwrap() {
            builds += 1;
            let p = b["platform"].as_str().unwrap();
            let accepted: Vec<&str> = subs
                .iter()
                .filter(|s| s.accepted() && s.name == *n && s.version == *v && s.target == p)
                .filter_map(|s| s.job_id.as_deref())
                .collect();
            if accepted.len() != 1 || b["hubJobId"].as_str() != Some(accepted[0]) {
                problems.push(format!(
                    "{n} {v} {p}: completed with hubJobId {} but the hub accepted it as {accepted:?}",
                    b["hubJobId"]
                ));
            }
        }
    }
    let lost = svc.log().matches("outcome not recorded").count();
    println!(
        "fast hub: {builds} builds, {} with the hub job id lost; log says \"outcome not recorded\" {lost} time(s)",
        problems.len()
    );
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
