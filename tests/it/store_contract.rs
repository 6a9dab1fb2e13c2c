//! The `Store` contract, written once and run against both implementations:
//! `sqlite::<test>` on a temporary SQLite file and `mysql::<test>` on a
//! database of its own on the real MySQL/MariaDB server (see
//! `common`). Every trait method is covered.

use crate::common;

use common::{StoreKind, TestDb, both_stores, sqlite_rows, sqlite_store};
use hone_build::platform::Platform::{self, *};
use hone_build::store::{
    Artifact, AttemptResult, ClaimFilter, CompleteOutcome, Deliverer, Job, JobStatus, LegacyLookup,
    NewUpload, Refusal, Store, UploadOutcome,
};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

/// Rows of a raw query, values as text (`None` = NULL).
type Rows = Vec<Vec<Option<String>>>;

/// What a contract test gets: a migrated store, a way to open more stores
/// on the same database (other "processes"), and raw SQL access for set-up
/// and checks (SQL common to both dialects only).
struct Env {
    kind: StoreKind,
    store: Box<dyn Store>,
    open: Box<dyn Fn() -> Box<dyn Store>>,
    exec: Box<dyn Fn(&str)>,
    rows: Box<dyn Fn(&str) -> Rows>,
    /// Keeps the database (TestDb or TempDir) alive; dropped last.
    _keep: Box<dyn std::any::Any>,
}

impl Env {
    fn new(kind: StoreKind) -> Env {
        match kind {
            StoreKind::Sqlite => Env::sqlite(),
            StoreKind::Mysql => Env::mysql(),
        }
    }

    fn sqlite() -> Env {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let store = sqlite_store(dir.path());
        store.migrate().expect("migrate");
        let connect = {
            let dir = Arc::clone(&dir);
            move || {
                let c = rusqlite::Connection::open(dir.path().join(common::SQLITE_FILE)).unwrap();
                c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
                c
            }
        };
        let c1 = connect.clone();
        let d2 = Arc::clone(&dir);
        Env {
            kind: StoreKind::Sqlite,
            store: Box::new(store),
            open: Box::new(move || Box::new(sqlite_store(d2.path()))),
            exec: Box::new(move |sql| {
                c1().execute_batch(sql)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }),
            rows: Box::new(move |sql| sqlite_rows(&connect(), sql)),
            _keep: Box::new(dir),
        }
    }

    fn mysql() -> Env {
        let db = Arc::new(TestDb::new());
        let store = db.store();
        store.migrate().expect("migrate");
        let (d1, d2, d3) = (Arc::clone(&db), Arc::clone(&db), Arc::clone(&db));
        Env {
            kind: StoreKind::Mysql,
            store: Box::new(store),
            open: Box::new(move || Box::new(d1.store())),
            exec: Box::new(move |sql| d2.exec(sql)),
            rows: Box::new(move |sql| d3.rows(sql)),
            _keep: Box::new(db),
        }
    }

    fn s(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// One value of a query (first row, first column).
    fn one(&self, sql: &str) -> Option<String> {
        let rows = (self.rows)(sql);
        assert_eq!(rows.len(), 1, "{sql}: expected one row, got {rows:?}");
        rows[0][0].clone()
    }

    fn count(&self, sql: &str) -> i64 {
        self.one(sql).expect("a count").parse().expect("a number")
    }

    fn job(&self, id: i64) -> Job {
        self.s()
            .job_by_id(id)
            .expect("job_by_id")
            .expect("job exists")
    }

    /// The plugin's id, by name.
    fn plugin_id(&self, name: &str) -> i64 {
        self.count(&format!("SELECT id FROM plugins WHERE name = '{name}'"))
    }
}

fn new_upload(name: &str, version: &str, platforms: &[Platform], now: i64) -> NewUpload {
    NewUpload {
        name: name.to_string(),
        version: version.to_string(),
        display_name: None,
        description: None,
        entry: "src/index.ts".to_string(),
        platforms: platforms.to_vec(),
        now,
        reserved_until_ms: now * 1000,
    }
}

/// A token generator handing out `tok-<n>` and remembering what it gave.
fn tokens() -> (
    impl FnMut() -> String,
    std::rc::Rc<std::cell::RefCell<Vec<String>>>,
) {
    let given = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let g = std::rc::Rc::clone(&given);
    let f = move || {
        let t = format!("tok-{}-{}", g.borrow().len(), common::random_hex());
        g.borrow_mut().push(t.clone());
        t
    };
    (f, given)
}

fn try_upload(env: &Env, up: &NewUpload) -> UploadOutcome {
    let (mut tok, _) = tokens();
    env.s()
        .record_upload(up, &mut tok, &mut || Ok(()))
        .expect("record_upload")
}

/// Records an upload that must not be refused; returns its jobs.
fn upload(env: &Env, name: &str, version: &str, platforms: &[Platform], now: i64) -> Vec<Job> {
    match try_upload(env, &new_upload(name, version, platforms, now)) {
        UploadOutcome::Recorded(jobs) => jobs,
        UploadOutcome::Refused(r) => panic!("upload {name} {version} refused: {r:?}"),
    }
}

/// Claims the job (unless the test already holds a claim on it) and
/// records the hub's acceptance at `now` (seconds).
fn accept(env: &Env, id: i64, now: i64) {
    let held = env.job(id).attempts;
    let attempt = if held > 0 {
        held
    } else {
        let claimed = env
            .s()
            .claim(ClaimFilter::Ids(vec![id]), now * 1000, 60_000)
            .unwrap();
        assert_eq!(claimed.len(), 1, "job {id} claimable");
        claimed[0].attempts
    };
    let hub_job_id = format!("hub-{id}");
    assert!(
        env.s()
            .record_attempt(id, attempt, &AttemptResult::Accepted { hub_job_id }, now)
            .unwrap()
    );
}

/// Claims the job and records a non-retryable failure.
fn fail(env: &Env, id: i64, now: i64) {
    let claimed = env
        .s()
        .claim(ClaimFilter::Ids(vec![id]), now * 1000, 60_000)
        .unwrap();
    assert_eq!(claimed.len(), 1, "job {id} claimable");
    let error = "hub said no".to_string();
    assert!(
        env.s()
            .record_attempt(
                id,
                claimed[0].attempts,
                &AttemptResult::Failed { error },
                now
            )
            .unwrap()
    );
}

fn complete(env: &Env, id: i64, size: i64, sha: &str, now: i64) -> CompleteOutcome {
    let a = Artifact {
        size,
        sha256: sha.to_string(),
        now,
    };
    let token = token_of(env.s(), id);
    env.s()
        .complete_job(
            id,
            Deliverer::Callback(token.as_deref()),
            &a,
            &mut || Ok(()),
        )
        .expect("complete_job")
}

/// The job's callback token now: what a delivery authenticated by it presents.
fn token_of(store: &dyn Store, id: i64) -> Option<String> {
    store
        .job_by_id(id)
        .expect("job_by_id")
        .and_then(|j| j.callback_token)
}

fn by_platform<'a>(jobs: &'a [Job], p: &str) -> &'a Job {
    jobs.iter()
        .find(|j| j.platform == p)
        .unwrap_or_else(|| panic!("no {p} job in {jobs:?}"))
}

fn platforms_of(v: &hone_build::store::VersionArtifacts) -> Vec<String> {
    serde_json::from_str(&v.platforms_json)
        .unwrap_or_else(|e| panic!("platforms not a JSON array ({e}): {}", v.platforms_json))
}

/// Inserts a job as the old server wrote it: spec columns only, no token.
fn insert_old_job(env: &Env, plugin_id: i64, version: &str, platform: &str, status: &str) -> i64 {
    (env.exec)(&format!(
        "INSERT INTO buildJobs (pluginId, version, platform, hubJobId, status, createdAt)
         VALUES ({plugin_id}, '{version}', '{platform}', 'old-hub-id', '{status}', 50)"
    ));
    env.count(&format!(
        "SELECT MAX(id) FROM buildJobs WHERE pluginId = {plugin_id} AND version = '{version}' AND platform = '{platform}'"
    ))
}

// ---------------------------------------------------------------------------
// The contract
// ---------------------------------------------------------------------------

fn kind_and_ping(env: &Env) {
    assert_eq!(env.s().kind(), env.kind.name());
    env.s().ping().expect("ping");
}

fn migrate_is_idempotent(env: &Env) {
    // Env already migrated once.
    env.s().migrate().expect("second migrate");
    let jobs = upload(env, "idem", "1.0.0", &[Linux], 100);
    env.s().migrate().expect("third migrate");
    (env.open)()
        .migrate()
        .expect("migrate from another store instance");
    let again = env.s().version_jobs("idem", "1.0.0").unwrap();
    assert_eq!(again, jobs, "data survives migrations");
    assert_eq!(env.count("SELECT COUNT(*) FROM buildJobs"), 1);
}

fn upload_creates_pending_jobs_in_platform_order(env: &Env) {
    let mut up = new_upload("alpha", "1.0.0", &[Windows, Macos, Linux], 1_000);
    up.entry = "lib/main.ts".into();
    let (mut tok, given) = tokens();
    let mut commits = 0;
    let out = env
        .s()
        .record_upload(&up, &mut tok, &mut || {
            commits += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(commits, 1, "commit_file called once");
    let UploadOutcome::Recorded(jobs) = out else {
        panic!("refused: {out:?}")
    };
    let platforms: Vec<&str> = jobs.iter().map(|j| j.platform.as_str()).collect();
    assert_eq!(
        platforms,
        ["linux", "macos", "windows"],
        "ordered by platform"
    );
    let given = given.borrow();
    assert_eq!(given.len(), 3, "one token per job");
    let job_tokens: HashSet<String> = jobs
        .iter()
        .map(|j| j.callback_token.clone().expect("token"))
        .collect();
    assert_eq!(job_tokens.len(), 3, "tokens are distinct");
    assert_eq!(
        job_tokens,
        given.iter().cloned().collect::<HashSet<_>>(),
        "tokens come from new_token"
    );
    let ids: HashSet<i64> = jobs.iter().map(|j| j.id).collect();
    assert_eq!(ids.len(), 3);
    for j in &jobs {
        assert_eq!(j.plugin_name, "alpha");
        assert_eq!(j.version, "1.0.0");
        assert_eq!(j.status, "pending");
        assert_eq!(j.attempts, 0);
        assert_eq!(j.next_attempt_at_ms, 1_000_000, "due at once");
        assert_eq!(j.created_at, 1_000);
        assert_eq!(j.entry.as_deref(), Some("lib/main.ts"));
        assert_eq!(j.hub_job_id, None);
        assert_eq!(j.completed_at, None);
        assert_eq!(j.error_message, None);
        assert_eq!(j.size_bytes, None);
        assert_eq!(j.sha256, None);
    }
    assert_eq!(
        env.s().version_jobs("alpha", "1.0.0").unwrap(),
        jobs,
        "version_jobs sees the same jobs"
    );
    assert!(env.s().version_jobs("alpha", "9.9.9").unwrap().is_empty());
    assert!(env.s().version_jobs("nobody", "1.0.0").unwrap().is_empty());
    let v = env
        .s()
        .version_row("alpha", "1.0.0")
        .unwrap()
        .expect("version row inserted");
    assert!(platforms_of(&v).is_empty(), "no platform built yet: {v:?}");
    assert_eq!(v.download_url, None);
}

fn upload_inserts_then_updates_plugin_row(env: &Env) {
    let row = |env: &Env| {
        (env.rows)(
            "SELECT displayName, description, publishedAt, updatedAt FROM plugins WHERE name = 'beta'",
        )
    };
    let mut up = new_upload("beta", "1.0.0", &[Linux], 1_000);
    up.display_name = Some("Beta Plugin".into());
    up.description = Some("first description".into());
    assert!(matches!(try_upload(env, &up), UploadOutcome::Recorded(_)));
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        row(env),
        vec![vec![
            s("Beta Plugin"),
            s("first description"),
            s("1000"),
            s("1000")
        ]]
    );

    // Another version: displayName given, description not → kept.
    let mut up2 = new_upload("beta", "2.0.0", &[Linux], 2_000);
    up2.display_name = Some("Beta Renamed".into());
    assert!(matches!(try_upload(env, &up2), UploadOutcome::Recorded(_)));
    assert_eq!(
        row(env),
        vec![vec![
            s("Beta Renamed"),
            s("first description"),
            s("1000"),
            s("2000")
        ]]
    );

    // Neither given: both kept, updatedAt moves.
    assert!(matches!(
        try_upload(env, &new_upload("beta", "3.0.0", &[Linux], 3_000)),
        UploadOutcome::Recorded(_)
    ));
    assert_eq!(
        row(env),
        vec![vec![
            s("Beta Renamed"),
            s("first description"),
            s("1000"),
            s("3000")
        ]]
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM plugins WHERE name = 'beta'"),
        1
    );
    assert_eq!(env.count("SELECT COUNT(*) FROM pluginVersions"), 3);
}

fn upload_without_display_name_defaults_like_mysql(env: &Env) {
    // A first upload without displayName/description: both stores record the
    // same row (displayName falls back to the name, description to empty).
    upload(env, "gamma", "1.0.0", &[Linux], 10);
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        (env.rows)("SELECT displayName, description FROM plugins WHERE name = 'gamma'"),
        vec![vec![s("gamma"), s("")]]
    );
}

fn upload_inserts_version_row_once(env: &Env) {
    let jobs = upload(env, "delta", "1.0.0", &[Linux, Macos], 100);
    fail(env, by_platform(&jobs, "linux").id, 110);
    fail(env, by_platform(&jobs, "macos").id, 110);
    let again = upload(env, "delta", "1.0.0", &[Linux, Macos], 200);
    assert_eq!(again.len(), 2);
    let pid = env.plugin_id("delta");
    assert_eq!(
        (env.rows)(&format!(
            "SELECT version, publishedAt FROM pluginVersions WHERE pluginId = {pid}"
        )),
        vec![vec![Some("1.0.0".to_string()), Some("100".to_string())]],
        "one version row, first publishedAt kept"
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM buildJobs"),
        2,
        "failed rows reused, not duplicated"
    );
}

fn upload_refusals(env: &Env) {
    let plugin_row =
        |env: &Env| (env.rows)("SELECT displayName, updatedAt FROM plugins WHERE name = 'eps'");
    let refused = |env: &Env, version: &str, want: Refusal| {
        let before_jobs = (env.rows)("SELECT * FROM buildJobs ORDER BY id");
        let before_plugin = plugin_row(env);
        let mut up = new_upload("eps", version, &[Linux, Macos, Windows], 9_999);
        up.display_name = Some("Changed".into());
        let (mut tok, given) = tokens();
        let mut commits = 0;
        let out = env
            .s()
            .record_upload(&up, &mut tok, &mut || {
                commits += 1;
                Ok(())
            })
            .unwrap();
        assert!(
            matches!(&out, UploadOutcome::Refused(r) if *r == want),
            "{version}: want {want:?}, got {out:?}"
        );
        assert_eq!(
            commits, 0,
            "{version}: the tarball is not stored when refused"
        );
        assert!(given.borrow().is_empty(), "{version}: no token drawn");
        assert_eq!(
            (env.rows)("SELECT * FROM buildJobs ORDER BY id"),
            before_jobs,
            "{version}: jobs unchanged"
        );
        assert_eq!(
            plugin_row(env),
            before_plugin,
            "{version}: plugin row unchanged"
        );
    };

    // Every platform completed: VERSION_EXISTS.
    let done = upload(env, "eps", "1.0.0", &[Linux, Macos], 100);
    for j in &done {
        accept(env, j.id, 101);
        assert_eq!(
            complete(env, j.id, 10, "aa", 102),
            CompleteOutcome::Completed
        );
    }
    refused(env, "1.0.0", Refusal::VersionExists);

    // Any pending / queued / building: BUILD_IN_PROGRESS (even if others failed).
    let p = upload(env, "eps", "2.0.0", &[Linux, Macos], 200);
    fail(env, by_platform(&p, "linux").id, 201);
    refused(env, "2.0.0", Refusal::BuildInProgress);
    accept(env, by_platform(&p, "macos").id, 202);
    refused(env, "2.0.0", Refusal::BuildInProgress);
    (env.exec)(&format!(
        "UPDATE buildJobs SET status = 'building' WHERE id = {}",
        by_platform(&p, "macos").id
    ));
    refused(env, "2.0.0", Refusal::BuildInProgress);
    // One completed, one in progress: still in progress.
    let q = upload(env, "eps", "3.0.0", &[Linux, Macos], 300);
    accept(env, q[0].id, 301);
    assert_eq!(
        complete(env, q[0].id, 1, "bb", 302),
        CompleteOutcome::Completed
    );
    refused(env, "3.0.0", Refusal::BuildInProgress);
}

fn upload_rebuilds_failed_keeps_completed(env: &Env) {
    let first = upload(env, "zeta", "1.0.0", &[Macos, Linux], 100);
    let mac = by_platform(&first, "macos").clone();
    let lin = by_platform(&first, "linux").clone();
    accept(env, mac.id, 101);
    assert_eq!(
        complete(env, mac.id, 42, "sha-mac", 150),
        CompleteOutcome::Completed
    );
    accept(env, lin.id, 101);
    env.s().fail_timed_out(102, "build timed out", 103).unwrap();
    let lin_failed = env.job(lin.id);
    assert_eq!(lin_failed.status, "failed");
    assert!(lin_failed.hub_job_id.is_some());

    let mut up = new_upload("zeta", "1.0.0", &[Macos, Linux, Windows], 500);
    up.entry = "src/new.ts".into();
    let (mut tok, _) = tokens();
    let out = env
        .s()
        .record_upload(&up, &mut tok, &mut || Ok(()))
        .unwrap();
    let UploadOutcome::Recorded(rebuilt) = out else {
        panic!("refused: {out:?}")
    };
    let platforms: Vec<&str> = rebuilt.iter().map(|j| j.platform.as_str()).collect();
    assert_eq!(
        platforms,
        ["linux", "windows"],
        "failed and never-built platforms only"
    );
    let lin2 = by_platform(&rebuilt, "linux");
    assert_eq!(lin2.id, lin.id, "the failed row is reset, not duplicated");
    assert_eq!(lin2.status, "pending");
    assert_eq!(lin2.attempts, 0);
    assert_eq!(lin2.hub_job_id, None);
    assert_eq!(lin2.error_message, None);
    assert_eq!(lin2.created_at, 500);
    assert_eq!(lin2.next_attempt_at_ms, 500_000);
    assert_eq!(lin2.entry.as_deref(), Some("src/new.ts"));
    assert_ne!(lin2.callback_token, lin.callback_token, "a fresh token");
    assert!(lin2.callback_token.is_some());
    // The completed build is untouched.
    let mac_now = env.job(mac.id);
    assert_eq!(mac_now.status, "completed");
    assert_eq!(mac_now.sha256.as_deref(), Some("sha-mac"));
    assert_eq!(mac_now.size_bytes, Some(42));
    assert_eq!(mac_now.completed_at, Some(150));
    assert_eq!(mac_now.callback_token, mac.callback_token);
    assert_eq!(env.s().version_jobs("zeta", "1.0.0").unwrap().len(), 3);
    let v = env.s().version_row("zeta", "1.0.0").unwrap().unwrap();
    assert_eq!(
        platforms_of(&v),
        ["darwin-arm64"],
        "version row keeps the completed platform"
    );
}

fn upload_commit_failure_writes_nothing(env: &Env) {
    let dump = |env: &Env| {
        (
            (env.rows)("SELECT * FROM plugins ORDER BY id"),
            (env.rows)("SELECT * FROM pluginVersions ORDER BY id"),
            (env.rows)("SELECT * FROM buildJobs ORDER BY id"),
        )
    };
    let failing = |env: &Env, up: &NewUpload| {
        let (mut tok, _) = tokens();
        let r = env.s().record_upload(up, &mut tok, &mut || {
            Err(std::io::Error::other("disk full"))
        });
        assert!(r.is_err(), "commit_file failure is an error, got {r:?}");
    };
    // A new plugin: nothing at all is written.
    let empty = dump(env);
    let mut up = new_upload("eta", "1.0.0", &[Linux, Macos], 100);
    up.display_name = Some("Eta".into());
    failing(env, &up);
    assert_eq!(dump(env), empty);
    assert!(env.s().version_jobs("eta", "1.0.0").unwrap().is_empty());
    assert_eq!(env.s().version_row("eta", "1.0.0").unwrap(), None);

    // A re-upload over a failed build: the failed job stays as it was.
    let jobs = upload(env, "eta", "1.0.0", &[Linux], 200);
    fail(env, jobs[0].id, 201);
    let before = dump(env);
    let mut up = new_upload("eta", "1.0.0", &[Linux, Windows], 300);
    up.display_name = Some("Eta 2".into());
    failing(env, &up);
    assert_eq!(dump(env), before);
    assert_eq!(env.job(jobs[0].id).status, "failed");
}

fn claim_due_respects_time_limit_and_lease(env: &Env) {
    let jobs = upload(env, "theta", "1.0.0", &[Linux, Macos, Windows], 1_000);
    let pid = env.plugin_id("theta");
    // An old-server pending row (no callback token) is never claimed.
    let old = insert_old_job(env, pid, "0.9.0", "linux", "pending");
    assert!(
        env.s()
            .claim(ClaimFilter::Due(10), 999_999, 60_000)
            .unwrap()
            .is_empty(),
        "not due yet"
    );

    let first = env
        .s()
        .claim(ClaimFilter::Due(2), 1_000_000, 60_000)
        .unwrap();
    assert_eq!(first.len(), 2, "limit respected");
    for j in &first {
        assert_eq!(j.attempts, 1, "attempts incremented in the returned job");
        assert_eq!(j.next_attempt_at_ms, 1_060_000, "lease in the returned job");
        let stored = env.job(j.id);
        assert_eq!(stored.attempts, 1);
        assert_eq!(stored.next_attempt_at_ms, 1_060_000, "lease stored");
        assert_eq!(stored.status, "pending");
    }
    let second = env
        .s()
        .claim(ClaimFilter::Due(10), 1_000_000, 60_000)
        .unwrap();
    assert_eq!(second.len(), 1, "only the unclaimed one");
    assert!(
        env.s()
            .claim(ClaimFilter::Due(10), 1_059_999, 60_000)
            .unwrap()
            .is_empty(),
        "leased"
    );

    let mut all: Vec<i64> = first.iter().chain(&second).map(|j| j.id).collect();
    all.sort();
    let mut want: Vec<i64> = jobs.iter().map(|j| j.id).collect();
    want.sort();
    assert_eq!(all, want);

    // The lease expires: claimable again, attempts 2. Queued ones are not.
    accept(env, second[0].id, 1_001);
    let again = env
        .s()
        .claim(ClaimFilter::Due(10), 1_060_000, 60_000)
        .unwrap();
    let ids: BTreeSet<i64> = again.iter().map(|j| j.id).collect();
    assert_eq!(ids, first.iter().map(|j| j.id).collect::<BTreeSet<_>>());
    assert!(again.iter().all(|j| j.attempts == 2), "{again:?}");
    assert!(!ids.contains(&old));
    assert!(
        env.s()
            .claim(ClaimFilter::Due(100), i64::MAX / 4, 1)
            .unwrap()
            .iter()
            .all(|j| j.id != old)
    );
    assert_eq!(env.job(old).attempts, 0, "old row untouched");
}

fn claim_ids_only_pending_with_token(env: &Env) {
    let jobs = upload(env, "iota", "1.0.0", &[Linux, Macos, Windows], 100);
    let pid = env.plugin_id("iota");
    let old = insert_old_job(env, pid, "0.1.0", "linux", "pending");
    let (a, b, c) = (jobs[0].id, jobs[1].id, jobs[2].id);
    accept(env, c, 100); // queued: not claimable
    assert!(
        env.s()
            .claim(ClaimFilter::Ids(vec![]), 0, 1)
            .unwrap()
            .is_empty()
    );
    // Not due yet does not matter for Ids.
    let got = env
        .s()
        .claim(ClaimFilter::Ids(vec![a, b, c, old, 987_654]), 0, 5_000)
        .unwrap();
    let ids: BTreeSet<i64> = got.iter().map(|j| j.id).collect();
    assert_eq!(ids, BTreeSet::from([a, b]));
    assert!(
        got.iter()
            .all(|j| j.attempts == 1 && j.next_attempt_at_ms == 5_000),
        "{got:?}"
    );
    assert_eq!(env.job(a).next_attempt_at_ms, 5_000);
    assert_eq!(env.job(old).attempts, 0);
    assert_eq!(env.job(c).status, "queued");
}

fn claim_is_exclusive(env: &Env) {
    for i in 0..10 {
        upload(env, &format!("conc{i}"), "1.0.0", &Platform::ALL, 100);
    }
    assert_eq!(
        env.count("SELECT COUNT(*) FROM buildJobs WHERE status = 'pending'"),
        50
    );
    let stores: Vec<Box<dyn Store>> = (0..8).map(|_| (env.open)()).collect();
    let barrier = Arc::new(std::sync::Barrier::new(stores.len()));
    let handles: Vec<_> = stores
        .into_iter()
        .map(|store| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let mut mine = Vec::new();
                loop {
                    let got = store
                        .claim(ClaimFilter::Due(3), 200_000, 600_000)
                        .expect("claim");
                    if got.is_empty() {
                        break;
                    }
                    mine.extend(got.iter().map(|j| j.id));
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().expect("claimer thread"));
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        50,
        "every job claimed exactly once (claims: {})",
        all.len()
    );
    assert_eq!(unique.len(), 50);
    assert_eq!(
        env.count("SELECT COUNT(*) FROM buildJobs WHERE attempts = 1"),
        50
    );
    assert!(
        env.s()
            .claim(ClaimFilter::Due(100), 200_000, 1)
            .unwrap()
            .is_empty()
    );
}

/// An `Ids` claim (an upload's own first submission) takes only jobs never
/// attempted: a job another process claimed meanwhile is left to it.
fn claim_ids_takes_only_unattempted_jobs(env: &Env) {
    let jobs = upload(env, "nu", "1.0.0", &[Linux, Macos], 100);
    let (a, b) = (jobs[0].id, jobs[1].id);
    let other = env.s().claim(ClaimFilter::Due(1), 100_000, 60_000).unwrap();
    assert_eq!(other.len(), 1);
    let taken = other[0].id;
    let mine = env
        .s()
        .claim(ClaimFilter::Ids(vec![a, b]), 100_001, 60_000)
        .unwrap();
    let mine: Vec<i64> = mine.iter().map(|j| j.id).collect();
    assert!(!mine.contains(&taken), "claimed twice: {mine:?}");
    assert_eq!(mine.len(), 1);
}

/// New jobs are reserved for the uploading request until `reserved_until_ms`.
fn new_jobs_are_reserved_for_the_upload(env: &Env) {
    let mut up = new_upload("xi", "1.0.0", &[Linux], 100);
    up.reserved_until_ms = 500_000;
    let UploadOutcome::Recorded(jobs) = try_upload(env, &up) else {
        panic!("refused")
    };
    assert!(
        env.s()
            .claim(ClaimFilter::Due(10), 499_999, 1)
            .unwrap()
            .is_empty()
    );
    let ids = env
        .s()
        .claim(ClaimFilter::Ids(vec![jobs[0].id]), 200_000, 1)
        .unwrap();
    assert_eq!(ids.len(), 1, "the upload itself may take it at once");
}

fn record_attempt_outcomes_and_guard(env: &Env) {
    let jobs = upload(env, "kappa", "1.0.0", &[Linux, Macos], 100);
    let (id, other) = (jobs[0].id, jobs[1].id);
    let claimed = env
        .s()
        .claim(ClaimFilter::Ids(vec![id]), 100_000, 60_000)
        .unwrap();
    assert_eq!(claimed[0].attempts, 1);

    let stale = AttemptResult::Accepted {
        hub_job_id: "stale".into(),
    };
    assert!(
        !env.s().record_attempt(id, 0, &stale, 101).unwrap(),
        "stale attempt number"
    );
    assert!(
        !env.s().record_attempt(987_654, 1, &stale, 101).unwrap(),
        "unknown job"
    );
    assert_eq!(env.job(id).status, "pending");
    assert_eq!(env.job(id).hub_job_id, None);

    let retry = AttemptResult::Retry {
        next_attempt_at_ms: 5_000_000,
        error: "hub answered 503".into(),
    };
    assert!(env.s().record_attempt(id, 1, &retry, 102).unwrap());
    let j = env.job(id);
    assert_eq!(
        (j.status.as_str(), j.attempts, j.next_attempt_at_ms),
        ("pending", 1, 5_000_000)
    );
    assert_eq!(j.error_message.as_deref(), Some("hub answered 503"));
    assert_eq!(j.updated_at, Some(102));
    assert!(
        env.s()
            .claim(ClaimFilter::Due(10), 4_999_999, 1)
            .unwrap()
            .iter()
            .all(|j| j.id != id)
    );

    let second = env
        .s()
        .claim(ClaimFilter::Due(10), 5_000_000, 60_000)
        .unwrap();
    assert!(
        second.iter().any(|j| j.id == id && j.attempts == 2),
        "{second:?}"
    );
    let late = AttemptResult::Failed {
        error: "late answer of attempt 1".into(),
    };
    assert!(
        !env.s().record_attempt(id, 1, &late, 103).unwrap(),
        "attempt 1 is stale now"
    );
    assert_eq!(env.job(id).status, "pending");

    let ok = AttemptResult::Accepted {
        hub_job_id: "hub-job-uuid".into(),
    };
    assert!(env.s().record_attempt(id, 2, &ok, 104).unwrap());
    let j = env.job(id);
    assert_eq!(j.status, "queued");
    assert_eq!(j.hub_job_id.as_deref(), Some("hub-job-uuid"));
    assert_eq!(j.error_message, None, "the retry's error is cleared");
    assert_eq!(j.submitted_at, Some(104));
    assert!(
        !env.s().record_attempt(id, 2, &late, 105).unwrap(),
        "no longer pending"
    );
    assert_eq!(env.job(id).status, "queued");

    // Failed (`other` is held by the Due claims above).
    let held = env.job(other).attempts;
    assert!(held > 0);
    let failed = AttemptResult::Failed {
        error: "LICENSE_INVALID: bad key".into(),
    };
    assert!(env.s().record_attempt(other, held, &failed, 106).unwrap());
    let j = env.job(other);
    assert_eq!(j.status, "failed");
    assert_eq!(j.error_message.as_deref(), Some("LICENSE_INVALID: bad key"));
    assert_eq!(j.completed_at, None);
}

fn fail_timed_out_fails_old_submissions(env: &Env) {
    let jobs = upload(env, "lambda", "1.0.0", &[Linux, Macos, Windows], 50);
    let (a, b, c) = (jobs[0].id, jobs[1].id, jobs[2].id);
    accept(env, a, 100);
    accept(env, b, 200);
    let pid = env.plugin_id("lambda");
    // An old server's row: no submittedAt, createdAt 50 counts instead.
    let old = insert_old_job(env, pid, "0.1.0", "linux", "building");
    assert!(
        env.s()
            .fail_timed_out(50, "build timed out", 300)
            .unwrap()
            .is_empty(),
        "strictly before"
    );

    let got = env.s().fail_timed_out(150, "build timed out", 300).unwrap();
    let mut ids = got.iter().map(|j| j.id).collect::<Vec<_>>();
    ids.sort_unstable();
    assert_eq!(ids, [a, old]);
    assert_eq!(env.job(old).status, "failed");
    let ja = env.job(a);
    assert_eq!(ja.status, "failed");
    assert_eq!(ja.error_message.as_deref(), Some("build timed out"));
    assert_eq!(ja.updated_at, Some(300));
    assert_eq!(env.job(b).status, "queued");

    // `building` counts like queued.
    (env.exec)(&format!(
        "UPDATE buildJobs SET status = 'building' WHERE id = {b}"
    ));
    let got = env.s().fail_timed_out(10_000, "too slow", 400).unwrap();
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), [b]);
    assert_eq!(env.job(b).status, "failed");
    assert_eq!(env.job(b).error_message.as_deref(), Some("too slow"));
    assert_eq!(
        env.job(a).error_message.as_deref(),
        Some("build timed out"),
        "failed jobs untouched"
    );
    assert_eq!(
        env.job(c).status,
        "pending",
        "pending jobs are not timed out"
    );
    assert_eq!(
        env.job(old).error_message.as_deref(),
        Some("build timed out"),
        "the old row was timed out once, by its creation time"
    );
}

fn job_by_id_finds_one(env: &Env) {
    let jobs = upload(env, "mu", "1.0.0", &[Linux, Ios], 70);
    for j in &jobs {
        assert_eq!(&env.job(j.id), j);
    }
    assert_eq!(env.s().job_by_id(987_654).unwrap(), None);
}

/// Makes jobs look as the old server wrote them: no callback token (the
/// old callback form names only such rows).
fn as_old_rows(env: &Env, jobs: &[Job]) {
    for j in jobs {
        (env.exec)(&format!(
            "UPDATE buildJobs SET callbackToken = NULL WHERE id = {}",
            j.id
        ));
    }
}

fn legacy_callback_with_dashes(env: &Env) {
    let beta = upload(env, "my-plugin", "1.0.0-beta.1", &[Linux, Macos], 100);
    let plain = upload(env, "my-plugin", "1.0.0", &[Linux], 100);
    as_old_rows(env, &beta);
    as_old_rows(env, &plain);
    let lookup = |id: &str| match env.s().job_by_legacy_callback(id).unwrap() {
        LegacyLookup::Ambiguous(n) => Err(n),
        found => Ok(found.found()),
    };
    let found = lookup("my-plugin-1.0.0-beta.1-linux")
        .unwrap()
        .expect("found");
    assert_eq!(found.id, by_platform(&beta, "linux").id);
    assert_eq!(
        (
            found.plugin_name.as_str(),
            found.version.as_str(),
            found.platform.as_str()
        ),
        ("my-plugin", "1.0.0-beta.1", "linux")
    );
    assert_eq!(
        lookup("my-plugin-1.0.0-beta.1-macos").unwrap().unwrap().id,
        by_platform(&beta, "macos").id
    );
    assert_eq!(
        lookup("my-plugin-1.0.0-linux").unwrap().unwrap().id,
        plain[0].id
    );
    assert_eq!(lookup("my-plugin-1.0.0-beta.1-windows").unwrap(), None);
    assert_eq!(lookup("my-plugin-1.0.0").unwrap(), None);
    assert_eq!(lookup("").unwrap(), None);
    assert_eq!(lookup("x' OR '1'='1").unwrap(), None);

    // A decoy whose name-version-platform spells the same id: plugin `my`,
    // version `plugin-1.0.0-beta.1`. The trait documents: more than one match is an error.
    let decoy = upload(env, "my", "plugin-1.0.0-beta.1", &[Linux], 100);
    as_old_rows(env, &decoy);
    let r = lookup("my-plugin-1.0.0-beta.1-linux");
    assert!(
        r.is_err(),
        "ambiguous legacy id must be an error, got {r:?}"
    );
    // Ids only one job spells still resolve.
    assert_eq!(
        lookup("my-plugin-1.0.0-beta.1-macos").unwrap().unwrap().id,
        by_platform(&beta, "macos").id
    );
    assert_eq!(
        lookup("my-plugin-1.0.0-linux").unwrap().unwrap().id,
        plain[0].id
    );
    assert_ne!(decoy[0].id, found.id);
}

fn complete_job_outcomes_and_version_row(env: &Env) {
    let jobs = upload(env, "nu", "1.0.0-rc.1", &[Macos, Linux, Windows], 100);
    let (mac, lin, win) = (
        by_platform(&jobs, "macos").id,
        by_platform(&jobs, "linux").id,
        by_platform(&jobs, "windows").id,
    );
    for id in [lin, win] {
        accept(env, id, 101);
    }
    fail(env, mac, 102);

    let mut commits = 0;
    let mut commit = || -> std::io::Result<()> {
        commits += 1;
        Ok(())
    };
    let a = |size, sha: &str, now| Artifact {
        size,
        sha256: sha.to_string(),
        now,
    };
    assert_eq!(
        env.s()
            .complete_job(
                win,
                Deliverer::Callback(token_of(env.s(), win).as_deref()),
                &a(300, "sha-win", 200),
                &mut commit,
            )
            .unwrap(),
        CompleteOutcome::Completed
    );
    assert_eq!(commits, 1);
    let j = env.job(win);
    assert_eq!(
        (
            j.status.as_str(),
            j.size_bytes,
            j.sha256.as_deref(),
            j.completed_at
        ),
        ("completed", Some(300), Some("sha-win"), Some(200))
    );
    let v = env.s().version_row("nu", "1.0.0-rc.1").unwrap().unwrap();
    assert_eq!(platforms_of(&v), ["windows-x64"]);
    assert_eq!(
        v.download_url.as_deref(),
        Some("/api/v1/pkg/nu/1.0.0-rc.1?platform=windows-x64")
    );
    assert_eq!(
        (v.size_bytes, v.sha256.as_deref()),
        (Some(300), Some("sha-win"))
    );

    // Linux precedes windows as primary.
    assert_eq!(
        complete(env, lin, 200, "sha-lin", 210),
        CompleteOutcome::Completed
    );
    let v = env.s().version_row("nu", "1.0.0-rc.1").unwrap().unwrap();
    assert_eq!(platforms_of(&v), ["linux-x64", "windows-x64"]);
    assert_eq!(
        v.download_url.as_deref(),
        Some("/api/v1/pkg/nu/1.0.0-rc.1?platform=linux-x64")
    );
    assert_eq!(
        (v.size_bytes, v.sha256.as_deref()),
        (Some(200), Some("sha-lin"))
    );

    // A failed job (for example timed out) is accepted; darwin-arm64 becomes primary.
    assert_eq!(env.job(mac).status, "failed");
    assert_eq!(
        complete(env, mac, 100, "sha-mac", 220),
        CompleteOutcome::Completed
    );
    let j = env.job(mac);
    assert_eq!(j.status, "completed");
    assert_eq!(j.error_message, None);
    let v = env.s().version_row("nu", "1.0.0-rc.1").unwrap().unwrap();
    assert_eq!(
        platforms_of(&v),
        ["darwin-arm64", "linux-x64", "windows-x64"],
        "sorted platform ids"
    );
    assert_eq!(
        v.download_url.as_deref(),
        Some("/api/v1/pkg/nu/1.0.0-rc.1?platform=darwin-arm64")
    );
    assert_eq!(
        (v.size_bytes, v.sha256.as_deref()),
        (Some(100), Some("sha-mac"))
    );

    // Repeated deliveries: same bytes → AlreadyCompleted, other bytes → Conflict;
    // neither stores the file nor changes anything.
    let before = (env.rows)("SELECT * FROM buildJobs ORDER BY id");
    let before_v = env.s().version_row("nu", "1.0.0-rc.1").unwrap();
    let mut commits = 0;
    let mut commit = || -> std::io::Result<()> {
        commits += 1;
        Ok(())
    };
    assert_eq!(
        env.s()
            .complete_job(
                lin,
                Deliverer::Callback(token_of(env.s(), lin).as_deref()),
                &a(200, "sha-lin", 900),
                &mut commit,
            )
            .unwrap(),
        CompleteOutcome::AlreadyCompleted
    );
    assert_eq!(
        env.s()
            .complete_job(
                lin,
                Deliverer::Callback(token_of(env.s(), lin).as_deref()),
                &a(999, "sha-other", 900),
                &mut commit,
            )
            .unwrap(),
        CompleteOutcome::Conflict
    );
    assert_eq!(
        env.s()
            .complete_job(
                987_654,
                Deliverer::Callback(None),
                &a(1, "x", 900),
                &mut commit
            )
            .unwrap(),
        CompleteOutcome::NotFound
    );
    assert_eq!(
        commits, 0,
        "nothing stored for repeated, conflicting or unknown deliveries"
    );
    assert_eq!((env.rows)("SELECT * FROM buildJobs ORDER BY id"), before);
    assert_eq!(env.s().version_row("nu", "1.0.0-rc.1").unwrap(), before_v);
}

fn complete_job_commit_failure_changes_nothing(env: &Env) {
    let jobs = upload(env, "xi", "1.0.0", &[Linux], 100);
    accept(env, jobs[0].id, 101);
    let before = (env.rows)("SELECT * FROM buildJobs ORDER BY id");
    let before_v = env.s().version_row("xi", "1.0.0").unwrap();
    let a = Artifact {
        size: 5,
        sha256: "abc".into(),
        now: 200,
    };
    let by = token_of(env.s(), jobs[0].id);
    let r = env.s().complete_job(
        jobs[0].id,
        Deliverer::Callback(by.as_deref()),
        &a,
        &mut || Err(std::io::Error::other("disk full")),
    );
    assert!(r.is_err(), "{r:?}");
    assert_eq!((env.rows)("SELECT * FROM buildJobs ORDER BY id"), before);
    assert_eq!(env.s().version_row("xi", "1.0.0").unwrap(), before_v);
    // And it can be completed afterwards.
    assert_eq!(
        complete(env, jobs[0].id, 5, "abc", 201),
        CompleteOutcome::Completed
    );
}

fn primary_platform_among_mobile(env: &Env) {
    let jobs = upload(env, "omicron", "2.0.0", &[Android, Ios], 100);
    let (and, ios) = (
        by_platform(&jobs, "android").id,
        by_platform(&jobs, "ios").id,
    );
    accept(env, and, 101);
    accept(env, ios, 101);
    assert_eq!(
        complete(env, and, 7, "sha-and", 110),
        CompleteOutcome::Completed
    );
    let v = env.s().version_row("omicron", "2.0.0").unwrap().unwrap();
    assert_eq!(platforms_of(&v), ["android-arm64"]);
    assert_eq!(
        v.download_url.as_deref(),
        Some("/api/v1/pkg/omicron/2.0.0?platform=android-arm64")
    );
    assert_eq!(
        complete(env, ios, 8, "sha-ios", 111),
        CompleteOutcome::Completed
    );
    let v = env.s().version_row("omicron", "2.0.0").unwrap().unwrap();
    assert_eq!(platforms_of(&v), ["android-arm64", "ios-arm64"]);
    assert_eq!(
        v.download_url.as_deref(),
        Some("/api/v1/pkg/omicron/2.0.0?platform=ios-arm64")
    );
    assert_eq!(
        (v.size_bytes, v.sha256.as_deref()),
        (Some(8), Some("sha-ios"))
    );
}

fn version_row_unknown_is_none(env: &Env) {
    assert_eq!(env.s().version_row("nobody", "1.0.0").unwrap(), None);
    upload(env, "pi", "1.0.0", &[Linux], 100);
    assert_eq!(env.s().version_row("pi", "2.0.0").unwrap(), None);
    assert!(env.s().version_row("pi", "1.0.0").unwrap().is_some());
}

fn list_jobs_filters_newest_first(env: &Env) {
    let a1 = upload(env, "rho", "1.0.0", &[Linux, Macos], 100);
    let a2 = upload(env, "rho", "2.0.0", &[Linux], 200);
    let b1 = upload(env, "sigma", "1.0.0", &[Windows], 300);
    let ids = |jobs: Vec<Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    let (l1, m1) = (by_platform(&a1, "linux").id, by_platform(&a1, "macos").id);
    let (hi, lo) = (l1.max(m1), l1.min(m1));
    assert_eq!(
        ids(env.s().list_jobs(None, None).unwrap()),
        [b1[0].id, a2[0].id, hi, lo],
        "createdAt DESC, id DESC"
    );
    assert_eq!(
        ids(env.s().list_jobs(Some("rho"), None).unwrap()),
        [a2[0].id, hi, lo]
    );
    assert_eq!(
        ids(env.s().list_jobs(Some("rho"), Some("1.0.0")).unwrap()),
        [hi, lo]
    );
    assert_eq!(
        ids(env.s().list_jobs(None, Some("1.0.0")).unwrap()),
        [b1[0].id, hi, lo]
    );
    assert!(env.s().list_jobs(Some("nobody"), None).unwrap().is_empty());
    assert!(
        env.s()
            .list_jobs(Some("rho"), Some("3.0.0"))
            .unwrap()
            .is_empty()
    );
    let listed = env.s().list_jobs(Some("sigma"), None).unwrap();
    assert_eq!(listed, b1, "full jobs");
}

fn retry_failed_resets_failed_jobs(env: &Env) {
    let jobs = upload(env, "tau", "1.0.0", &[Linux, Macos, Windows], 100);
    let (lin, mac, win) = (
        by_platform(&jobs, "linux").id,
        by_platform(&jobs, "macos").id,
        by_platform(&jobs, "windows").id,
    );
    fail(env, lin, 101);
    fail(env, mac, 101);
    accept(env, win, 101);
    assert_eq!(complete(env, win, 1, "w", 102), CompleteOutcome::Completed);
    let pid = env.plugin_id("tau");
    let old = insert_old_job(env, pid, "1.0.0", "ios", "failed");
    let other = upload(env, "upsilon", "1.0.0", &[Linux], 100);
    fail(env, other[0].id, 101);

    assert_eq!(
        env.s()
            .retry_failed("tau", "1.0.0", Some("macos"), 500, &mut common::random_hex)
            .unwrap(),
        1
    );
    let j = env.job(mac);
    assert_eq!(
        (j.status.as_str(), j.attempts, j.next_attempt_at_ms),
        ("pending", 0, 500_000)
    );
    assert_eq!(
        (
            j.error_message.as_deref(),
            j.hub_job_id.as_deref(),
            j.submitted_at
        ),
        (None, None, None)
    );
    assert_eq!(j.updated_at, Some(500));
    assert_eq!(env.job(lin).status, "failed", "platform filter respected");

    assert_eq!(
        env.s()
            .retry_failed("tau", "1.0.0", None, 600, &mut common::random_hex)
            .unwrap(),
        2,
        "linux, and the old server's row (issue #11 item 13: it gets a token)"
    );
    assert_eq!(env.job(lin).status, "pending");
    assert_eq!(env.job(win).status, "completed", "completed untouched");
    let o = env.job(old);
    assert_eq!(o.status, "pending");
    assert!(o.callback_token.is_some(), "{o:?}");
    assert_eq!(
        env.job(lin).callback_token,
        jobs.iter().find(|j| j.id == lin).unwrap().callback_token,
        "hone-build's own job keeps its token"
    );
    assert_eq!(
        env.job(other[0].id).status,
        "failed",
        "other plugins untouched"
    );
    assert_eq!(
        env.s()
            .retry_failed("tau", "1.0.0", None, 700, &mut common::random_hex)
            .unwrap(),
        0
    );
    assert_eq!(
        env.s()
            .retry_failed("nobody", "1.0.0", None, 700, &mut common::random_hex)
            .unwrap(),
        0
    );
    // Retried jobs are claimable.
    let due = env.s().claim(ClaimFilter::Due(10), 600_000, 1_000).unwrap();
    assert_eq!(
        due.iter().map(|j| j.id).collect::<BTreeSet<_>>(),
        BTreeSet::from([lin, mac, old])
    );
}

fn count_by_status_counts(env: &Env) {
    assert!(env.s().count_by_status().unwrap().is_empty());
    let jobs = upload(env, "phi", "1.0.0", &Platform::ALL, 100);
    accept(env, jobs[0].id, 101);
    accept(env, jobs[1].id, 101);
    assert_eq!(
        complete(env, jobs[1].id, 1, "x", 102),
        CompleteOutcome::Completed
    );
    fail(env, jobs[2].id, 101);
    let pid = env.plugin_id("phi");
    insert_old_job(env, pid, "0.1.0", "linux", "building");
    let counts = env.s().count_by_status().unwrap();
    let want: Vec<(String, i64)> = [
        ("building", 1),
        ("completed", 1),
        ("failed", 1),
        ("pending", 2),
        ("queued", 1),
    ]
    .into_iter()
    .map(|(s, n)| (s.to_string(), n))
    .collect();
    assert_eq!(counts, want);
}

// `sqlite::<name>` and `mysql::<name>` for every contract test.
both_stores!(
    |kind| &Env::new(kind);
    kind_and_ping,
    migrate_is_idempotent,
    upload_creates_pending_jobs_in_platform_order,
    upload_inserts_then_updates_plugin_row,
    upload_without_display_name_defaults_like_mysql,
    upload_inserts_version_row_once,
    upload_refusals,
    upload_rebuilds_failed_keeps_completed,
    upload_commit_failure_writes_nothing,
    claim_due_respects_time_limit_and_lease,
    claim_ids_only_pending_with_token,
    claim_is_exclusive,
    claim_ids_takes_only_unattempted_jobs,
    new_jobs_are_reserved_for_the_upload,
    record_attempt_outcomes_and_guard,
    fail_timed_out_fails_old_submissions,
    job_by_id_finds_one,
    legacy_callback_with_dashes,
    complete_job_outcomes_and_version_row,
    complete_job_commit_failure_changes_nothing,
    primary_platform_among_mobile,
    version_row_unknown_is_none,
    list_jobs_filters_newest_first,
    retry_failed_resets_failed_jobs,
    count_by_status_counts,
);

// ---------------------------------------------------------------------------
// Drifts between the two former implementations, settled one way (issue #9)
// ---------------------------------------------------------------------------

/// A failed or reset job has no `completedAt`: failing a claimed job,
/// timing out a queued one, retrying a failed one and rebuilding a failed
/// one at upload all clear it (rows of the old server may carry one).
fn failed_and_reset_jobs_have_no_completed_at(env: &Env) {
    let jobs = upload(env, "chi", "1.0.0", &[Linux, Macos, Windows], 100);
    let (lin, mac, win) = (
        by_platform(&jobs, "linux").id,
        by_platform(&jobs, "macos").id,
        by_platform(&jobs, "windows").id,
    );
    let stamp = |id: i64| {
        (env.exec)(&format!(
            "UPDATE buildJobs SET completedAt = 77 WHERE id = {id}"
        ))
    };
    // Failed by the hub's answer.
    let claimed = env
        .s()
        .claim(ClaimFilter::Ids(vec![lin]), 100_000, 60_000)
        .unwrap();
    stamp(lin);
    let failed = AttemptResult::Failed { error: "no".into() };
    assert!(
        env.s()
            .record_attempt(lin, claimed[0].attempts, &failed, 101)
            .unwrap()
    );
    let j = env.job(lin);
    assert_eq!((j.status.as_str(), j.completed_at), ("failed", None));

    // Timed out.
    accept(env, mac, 101);
    stamp(mac);
    let got = env.s().fail_timed_out(1_000, "timed out", 102).unwrap();
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), [mac]);
    let j = env.job(mac);
    assert_eq!((j.status.as_str(), j.completed_at), ("failed", None));

    // Retried: pending again, still no completedAt.
    stamp(mac);
    assert_eq!(
        env.s()
            .retry_failed("chi", "1.0.0", Some("macos"), 200, &mut common::random_hex)
            .unwrap(),
        1
    );
    let j = env.job(mac);
    assert_eq!((j.status.as_str(), j.completed_at), ("pending", None));

    // Rebuilt by an upload.
    stamp(lin);
    accept(env, win, 201);
    assert_eq!(complete(env, win, 1, "w", 202), CompleteOutcome::Completed);
    (env.exec)(&format!(
        "UPDATE buildJobs SET status = 'failed' WHERE id = {mac}"
    ));
    let again = upload(env, "chi", "1.0.0", &[Linux], 300);
    assert_eq!(
        again.iter().map(|j| j.id).collect::<BTreeSet<_>>(),
        BTreeSet::from([lin, mac])
    );
    assert!(again.iter().all(|j| j.completed_at.is_none()), "{again:?}");
    assert_eq!(
        env.job(win).completed_at,
        Some(202),
        "a completed job keeps it"
    );
}

/// What `claim` and `fail_timed_out` return is the rows as they now are
/// (SQLite returned claimed jobs with a stale `updatedAt`, both returned
/// timed-out jobs as still queued), and claims come in platform order
/// whatever the filter.
fn claimed_and_timed_out_jobs_are_returned_as_stored(env: &Env) {
    let jobs = upload(env, "psi", "1.0.0", &[Windows, Linux, Macos], 10);
    let (lin, mac, win) = (
        by_platform(&jobs, "linux").id,
        by_platform(&jobs, "macos").id,
        by_platform(&jobs, "windows").id,
    );
    // Due order (windows, macos, linux) differs from platform order.
    for (id, due) in [(win, 1_000), (mac, 2_000), (lin, 3_000)] {
        (env.exec)(&format!(
            "UPDATE buildJobs SET nextAttemptAt = {due} WHERE id = {id}"
        ));
    }
    let claimed = env.s().claim(ClaimFilter::Due(10), 5_000, 60_000).unwrap();
    let platforms: Vec<&str> = claimed.iter().map(|j| j.platform.as_str()).collect();
    assert_eq!(platforms, ["linux", "macos", "windows"]);
    for j in &claimed {
        assert_eq!(j, &env.job(j.id), "claim returns the stored row");
        assert_eq!(j.updated_at, Some(5));
    }
    for j in &claimed {
        let ok = AttemptResult::Accepted {
            hub_job_id: format!("h{}", j.id),
        };
        assert!(env.s().record_attempt(j.id, 1, &ok, 20).unwrap());
    }
    let got = env.s().fail_timed_out(100, "timed out", 30).unwrap();
    assert_eq!(got.len(), 3);
    for j in &got {
        assert_eq!(j, &env.job(j.id), "timeout returns the stored row");
        assert_eq!(j.status, "failed");
        assert_eq!(j.error_message.as_deref(), Some("timed out"));
    }
}

/// Recording the same retry twice still reports the claim as current (MySQL
/// counted changed rows, SQLite matched ones: now both count matched rows).
fn record_attempt_counts_matched_rows(env: &Env) {
    let jobs = upload(env, "omega", "1.0.0", &[Linux], 100);
    let id = jobs[0].id;
    let claimed = env
        .s()
        .claim(ClaimFilter::Ids(vec![id]), 100_000, 60_000)
        .unwrap();
    let retry = AttemptResult::Retry {
        next_attempt_at_ms: 200_000,
        error: "busy".into(),
    };
    let attempt = claimed[0].attempts;
    assert!(env.s().record_attempt(id, attempt, &retry, 101).unwrap());
    assert!(
        env.s().record_attempt(id, attempt, &retry, 101).unwrap(),
        "unchanged values: still the current claim"
    );
    assert_eq!(
        env.s()
            .retry_failed("omega", "1.0.0", None, 102, &mut common::random_hex)
            .unwrap(),
        0
    );
}

/// A repeated or conflicting delivery changes nothing, not even a missing
/// version row (MySQL created it and committed).
fn declined_completion_writes_nothing(env: &Env) {
    let jobs = upload(env, "alef", "1.0.0", &[Linux], 100);
    let id = jobs[0].id;
    accept(env, id, 101);
    assert_eq!(complete(env, id, 3, "abc", 102), CompleteOutcome::Completed);
    (env.exec)("DELETE FROM pluginVersions");
    assert_eq!(
        complete(env, id, 3, "abc", 103),
        CompleteOutcome::AlreadyCompleted
    );
    assert_eq!(complete(env, id, 4, "xyz", 103), CompleteOutcome::Conflict);
    assert_eq!(env.s().version_row("alef", "1.0.0").unwrap(), None);
    assert_eq!(env.count("SELECT COUNT(*) FROM pluginVersions"), 0);
}

/// States the old server wrote that hone-build does not know are read, kept
/// and counted, and touched by nothing.
fn unknown_states_are_kept(env: &Env) {
    let jobs = upload(env, "bet", "1.0.0", &[Linux], 100);
    let pid = env.plugin_id("bet");
    let odd = insert_old_job(env, pid, "1.0.0", "macos", "cancelled");
    (env.exec)(&format!(
        "UPDATE buildJobs SET callbackToken = 'x' WHERE id = {odd}"
    ));
    let j = env.job(odd);
    assert_eq!(j.status, JobStatus::Other("cancelled".into()));
    assert_eq!(j.status.as_str(), "cancelled");
    assert!(
        env.s()
            .claim(ClaimFilter::Due(10), i64::MAX / 4, 1)
            .unwrap()
            .iter()
            .all(|j| j.id != odd)
    );
    assert!(
        env.s()
            .fail_timed_out(i64::MAX / 4, "t", 1)
            .unwrap()
            .iter()
            .all(|j| j.id != odd)
    );
    assert_eq!(env.job(odd).status, "cancelled");
    assert!(
        env.s()
            .count_by_status()
            .unwrap()
            .contains(&("cancelled".to_string(), 1))
    );
    assert_eq!(env.s().version_jobs("bet", "1.0.0").unwrap().len(), 2);
    assert_ne!(jobs[0].id, odd);
}

/// The ambiguous legacy id is a typed answer naming how many jobs spell it.
fn legacy_lookup_is_typed(env: &Env) {
    let ab = upload(env, "a-b", "1.0.0", &[Linux], 100);
    let one = upload(env, "a", "b-1.0.0", &[Linux], 100);
    as_old_rows(env, &ab);
    as_old_rows(env, &one);
    assert_eq!(
        env.s().job_by_legacy_callback("a-b-1.0.0-linux").unwrap(),
        LegacyLookup::Ambiguous(2)
    );
    assert_eq!(
        env.s().job_by_legacy_callback("a-b-1.0.0-macos").unwrap(),
        LegacyLookup::NotFound
    );
    let c = upload(env, "c", "2.0.0", &[Linux], 100);
    as_old_rows(env, &c);
    assert!(matches!(
        env.s().job_by_legacy_callback("c-2.0.0-linux").unwrap(),
        LegacyLookup::Found(j) if j.plugin_name == "c"
    ));
    assert_ne!(one[0].plugin_name, "c");
}

/// Uploads and completions of one version from many store instances at
/// once never fail: every transaction that waits for locks takes them in
/// one order (plugin, version, jobs by id). MySQL's completion used to lock
/// the plugin row after the version row — the reverse of an upload.
fn uploads_and_completions_race_without_deadlock(env: &Env) {
    const VERSIONS: usize = 6;
    let mut all = Vec::new();
    for v in 0..VERSIONS {
        let jobs = upload(env, "gimel", &format!("1.0.{v}"), &Platform::ALL, 100);
        for j in &jobs {
            accept(env, j.id, 101);
        }
        all.push(jobs);
    }
    let completer = (env.open)();
    let uploader = (env.open)();
    std::thread::scope(|s| {
        let all = &all;
        let c = s.spawn(move || {
            for jobs in all {
                for j in jobs {
                    let a = Artifact {
                        size: 1,
                        sha256: format!("sha-{}", j.id),
                        now: 200,
                    };
                    let by = Deliverer::Callback(j.callback_token.as_deref());
                    let out = completer
                        .complete_job(j.id, by, &a, &mut || Ok(()))
                        .expect("complete_job under contention");
                    assert_eq!(out, CompleteOutcome::Completed);
                }
            }
        });
        let u = s.spawn(move || {
            let mut n = 0;
            while n < 400 {
                for v in 0..VERSIONS {
                    let up = new_upload("gimel", &format!("1.0.{v}"), &[Linux], 300);
                    let (mut tok, _) = tokens();
                    let out = uploader
                        .record_upload(&up, &mut tok, &mut || Ok(()))
                        .expect("record_upload under contention");
                    assert!(matches!(out, UploadOutcome::Refused(_)), "{out:?}");
                    n += 1;
                }
            }
        });
        c.join().expect("completer");
        u.join().expect("uploader");
    });
    for (v, jobs) in all.iter().enumerate() {
        let row = env
            .s()
            .version_row("gimel", &format!("1.0.{v}"))
            .unwrap()
            .unwrap();
        assert_eq!(platforms_of(&row).len(), jobs.len());
    }
}

/// The drift tests, run on both stores like the contract above.
mod settled {
    use super::*;
    both_stores!(
        |kind| &Env::new(kind);
        failed_and_reset_jobs_have_no_completed_at,
        claimed_and_timed_out_jobs_are_returned_as_stored,
        record_attempt_counts_matched_rows,
        declined_completion_writes_nothing,
        unknown_states_are_kept,
        legacy_lookup_is_typed,
        uploads_and_completions_race_without_deadlock,
    );
}

/// Integrity (issue #11), run on both stores like the contract above.
mod integrity {
    use super::*;
    both_stores!(
        |kind| &Env::new(kind);
        legacy_callback_matches_only_rows_without_token,
        revoked_token_cannot_complete_reset_job,
        old_pending_rows_time_out_and_can_be_retried,
        case_variants_are_refused_with_the_recorded_spelling,
        a_new_hub_job_is_followed_at_once_after_an_earlier_lease,
    );
}

/// A follow lease belongs to one hub job: when the row is accepted as a new
/// hub job (after a failure and a re-upload, or a resubmission), the lease
/// its earlier follower left must not keep the new one from being claimed
/// at once — the hub replays nothing sent before the subscription.
fn a_new_hub_job_is_followed_at_once_after_an_earlier_lease(env: &Env) {
    let id = upload(env, "lease", "1.0.0", &[Linux], 100)[0].id;
    accept(env, id, 100);
    let first = env
        .s()
        .claim_follows("proc-a", 100_000, 30_000, 10)
        .unwrap();
    assert_eq!(first.iter().map(|j| j.id).collect::<Vec<_>>(), vec![id]);
    // Given up while followed (the background loop's build timeout); the
    // follower stops without releasing its lease (until 130 000 ms).
    let failed = env.s().fail_timed_out(200, "timed out", 200).unwrap();
    assert_eq!(failed.len(), 1);
    // Built again: a new hub job, accepted well within the old lease.
    assert_eq!(upload(env, "lease", "1.0.0", &[Linux], 300)[0].id, id);
    accept(env, id, 300);
    let again = env
        .s()
        .claim_follows("proc-b", 110_000, 30_000, 10)
        .unwrap();
    assert_eq!(
        again.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![id],
        "the new hub job is claimable at once"
    );
}

/// MySQL: the pool no longer pings a connection when it is taken, so a
/// connection the server closed while idle must be noticed before anything
/// is sent on it and replaced — even for a single UPDATE, which could not
/// be run again safely once sent.
#[test]
fn mysql_connections_closed_while_idle_are_replaced() {
    use ::mysql::prelude::Queryable;
    let db = TestDb::new();
    let store = db.store();
    store.migrate().expect("migrate");
    let (mut tok, _) = tokens();
    let up = new_upload("dalet", "1.0.0", &[Linux], 100);
    let UploadOutcome::Recorded(jobs) = store.record_upload(&up, &mut tok, &mut || Ok(())).unwrap()
    else {
        panic!("refused")
    };
    let id = jobs[0].id;
    let claimed = store
        .claim(ClaimFilter::Ids(vec![id]), 100_000, 60_000)
        .unwrap();
    let kill_store_connections = || {
        let ids = db.rows(&format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '{}' AND ID <> CONNECTION_ID()",
            db.name
        ));
        assert!(!ids.is_empty(), "the store keeps a connection");
        for row in ids {
            let _ = db
                .conn()
                .query_drop(format!("KILL {}", row[0].clone().unwrap()));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    kill_store_connections();
    let ok = AttemptResult::Accepted {
        hub_job_id: "h".into(),
    };
    assert!(
        store
            .record_attempt(id, claimed[0].attempts, &ok, 101)
            .expect("a fresh connection replaces the killed one")
    );
    kill_store_connections();
    assert_eq!(store.job_by_id(id).unwrap().unwrap().status, "queued");
    kill_store_connections();
    let a = Artifact {
        size: 1,
        sha256: "a".into(),
        now: 102,
    };
    assert_eq!(
        store
            .complete_job(id, Deliverer::HubJob("h"), &a, &mut || Ok(()))
            .unwrap(),
        CompleteOutcome::Completed
    );
}

// ---------------------------------------------------------------------------
// Integrity (issue #11)
// ---------------------------------------------------------------------------

/// Item 9: the old callback form names only rows of the old server (no
/// callback token): hone-build's own jobs are reached by their id and
/// token only, and an old row is no longer ambiguous because one of
/// hone-build's jobs spells the same id.
fn legacy_callback_matches_only_rows_without_token(env: &Env) {
    let own = upload(env, "a-b", "1", &[Linux], 100);
    upload(env, "a", "0.1.0", &[Linux], 100);
    let pid = env.plugin_id("a");
    let old = insert_old_job(env, pid, "b-1", "linux", "building");
    // `a-b` `1` `linux` and `a` `b-1` `linux` both spell `a-b-1-linux`.
    assert_eq!(
        env.s().job_by_legacy_callback("a-b-1-linux").unwrap(),
        LegacyLookup::Found(Box::new(env.job(old))),
    );
    assert_eq!(
        env.s().job_by_legacy_callback("a-0.1.0-linux").unwrap(),
        LegacyLookup::NotFound,
        "hone-build's own job is not named by the old form"
    );
    assert_ne!(own[0].id, old);
}

/// Item 8: a delivery authenticated by a job's token before a new upload
/// reset the job (new token) cannot complete it: the token is checked again
/// under the row lock; nothing is written and the file is not placed.
fn revoked_token_cannot_complete_reset_job(env: &Env) {
    let jobs = upload(env, "revoked", "1.0.0", &[Linux], 100);
    let id = jobs[0].id;
    let old_token = jobs[0].callback_token.clone().expect("a token");
    fail(env, id, 101);
    // The publisher uploads again: the job is reset with a new token.
    let again = upload(env, "revoked", "1.0.0", &[Linux], 200);
    assert_eq!(again[0].id, id);
    let new_token = again[0].callback_token.clone().expect("a token");
    assert_ne!(new_token, old_token);
    let a = Artifact {
        size: 5,
        sha256: "old-build".into(),
        now: 201,
    };
    let mut placed = 0;
    let out = env
        .s()
        .complete_job(id, Deliverer::Callback(Some(&old_token)), &a, &mut || {
            placed += 1;
            Ok(())
        })
        .expect("complete_job");
    assert_eq!(
        out,
        CompleteOutcome::Superseded,
        "the old build completed the reset job"
    );
    assert_eq!(placed, 0, "no file placed");
    let j = env.job(id);
    assert_eq!(
        (
            j.status.as_str(),
            j.sha256.as_deref(),
            j.callback_token.as_deref()
        ),
        ("pending", None, Some(new_token.as_str()))
    );
    // Nor does the old form (a row without token) reach it.
    let out = env
        .s()
        .complete_job(id, Deliverer::Callback(None), &a, &mut || Ok(()))
        .unwrap();
    assert_eq!(out, CompleteOutcome::Superseded);

    // The follower of a hub job the job no longer has is refused too.
    accept(env, id, 202);
    assert_eq!(
        env.job(id).hub_job_id.as_deref(),
        Some(format!("hub-{id}").as_str())
    );
    assert!(matches!(
        env.s()
            .resubmit(id, &format!("hub-{id}"), "no artifact", 5, 203_000, 203),
        Ok(hone_build::store::ResubmitOutcome::Requeued)
    ));
    let out = env
        .s()
        .complete_job(id, Deliverer::HubJob(&format!("hub-{id}")), &a, &mut || {
            Ok(())
        })
        .unwrap();
    assert_eq!(out, CompleteOutcome::Superseded);
    assert_eq!(env.job(id).status, "pending");
    assert_eq!(
        env.count("SELECT COUNT(*) FROM pluginVersions WHERE platforms <> '[]'"),
        0,
        "the version row describes no build"
    );

    // The current token completes it.
    let good = Artifact {
        size: 6,
        sha256: "new-build".into(),
        now: 204,
    };
    assert_eq!(
        env.s()
            .complete_job(
                id,
                Deliverer::Callback(Some(&new_token)),
                &good,
                &mut || Ok(())
            )
            .unwrap(),
        CompleteOutcome::Completed
    );
    assert_eq!(env.job(id).sha256.as_deref(), Some("new-build"));
}

/// Item 13: the old server's `pending` rows (no callback token) time out
/// like queued ones (from `createdAt`), and `retry` gives them (failed, or
/// still pending) a fresh token, so hone-build submits them from then on.
fn old_pending_rows_time_out_and_can_be_retried(env: &Env) {
    let own = upload(env, "oldpend", "1.0.0", &[Linux], 100);
    let pid = env.plugin_id("oldpend");
    let stuck = insert_old_job(env, pid, "0.1.0", "linux", "pending");
    let other = insert_old_job(env, pid, "0.2.0", "macos", "pending");
    let timed_out = env.s().fail_timed_out(60, "build timed out", 300).unwrap();
    let mut ids: Vec<i64> = timed_out.iter().map(|j| j.id).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [stuck, other],
        "old pending rows time out from createdAt"
    );
    assert_eq!(env.job(stuck).status, "failed");
    assert_eq!(
        env.job(stuck).error_message.as_deref(),
        Some("build timed out")
    );

    assert_eq!(
        env.job(own[0].id).status,
        "pending",
        "hone-build's own pending jobs are submitted, not timed out"
    );

    // Retried: pending, with a token of its own and the default entry.
    assert_eq!(
        env.s()
            .retry_failed("oldpend", "0.1.0", None, 500, &mut || "fresh-1".into())
            .unwrap(),
        1
    );
    let j = env.job(stuck);
    assert_eq!(
        (
            j.status.as_str(),
            j.callback_token.as_deref(),
            j.entry.as_deref(),
            j.error_message.as_deref(),
            j.attempts,
            j.next_attempt_at_ms
        ),
        (
            "pending",
            Some("fresh-1"),
            Some("src/index.ts"),
            None,
            0,
            500_000
        )
    );
    // An old pending row that has not timed out yet is retried at once.
    let young = insert_old_job(env, pid, "0.3.0", "windows", "pending");
    assert_eq!(
        env.s()
            .retry_failed("oldpend", "0.3.0", None, 500, &mut || "fresh-2".into())
            .unwrap(),
        1
    );
    assert_eq!(env.job(young).callback_token.as_deref(), Some("fresh-2"));
    let due = env.s().claim(ClaimFilter::Due(10), 500_000, 1_000).unwrap();
    assert_eq!(
        due.iter().map(|j| j.id).collect::<BTreeSet<_>>(),
        BTreeSet::from([own[0].id, stuck, young])
    );
    assert_eq!(env.job(other).status, "failed", "other versions untouched");
}

/// Item 7: a name or version differing only in letter case from a recorded
/// one is refused by the store itself, with the recorded spelling, on both
/// stores (MySQL's collation ignores case, SQLite's does not); lookups by
/// name and version are exact on both.
fn case_variants_are_refused_with_the_recorded_spelling(env: &Env) {
    let jobs = upload(env, "CaseP", "2.0.0-RC", &[Linux], 100);
    fail(env, jobs[0].id, 101);
    let before = (env.rows)("SELECT * FROM buildJobs ORDER BY id");
    let spelled = |name: &str, version: &str| {
        Refusal::CaseConflict(hone_build::store::Spelling {
            name: name.into(),
            version: version.into(),
        })
    };
    for (name, version, want) in [
        ("casep", "2.0.0-RC", spelled("CaseP", "2.0.0-RC")),
        ("CASEP", "9.9.9", spelled("CaseP", "9.9.9")),
        ("CaseP", "2.0.0-rc", spelled("CaseP", "2.0.0-RC")),
    ] {
        assert_eq!(
            env.s().case_twin(name, version).unwrap(),
            Some(hone_build::store::Spelling {
                name: "CaseP".into(),
                version: if name == "CaseP" { "2.0.0-RC" } else { version }.into(),
            })
        );
        let mut commits = 0;
        let (mut tok, _) = tokens();
        let out = env
            .s()
            .record_upload(
                &new_upload(name, version, &[Linux], 200),
                &mut tok,
                &mut || {
                    commits += 1;
                    Ok(())
                },
            )
            .unwrap();
        assert!(
            matches!(&out, UploadOutcome::Refused(r) if *r == want),
            "{name} {version}: {out:?}"
        );
        assert_eq!(commits, 0, "no tarball placed");
        assert!(env.s().version_jobs(name, version).unwrap().is_empty());
    }
    assert_eq!((env.rows)("SELECT * FROM buildJobs ORDER BY id"), before);
    assert_eq!(env.count("SELECT COUNT(*) FROM plugins"), 1);
    assert_eq!(env.count("SELECT COUNT(*) FROM pluginVersions"), 1);
    assert_eq!(env.s().case_twin("CaseP", "2.0.0-RC").unwrap(), None);
    assert_eq!(env.s().case_twin("other", "1.0.0").unwrap(), None);
    // The recorded spelling rebuilds.
    let again = upload(env, "CaseP", "2.0.0-RC", &[Linux], 300);
    assert_eq!(again[0].id, jobs[0].id);
}

/// Build logs (issue #12), run on both stores like the contract above.
mod logs {
    use super::*;
    use hone_build::store::{LOG_LINE_MAX_BYTES, LogPage, LogStream, NewLogLine};

    both_stores!(
        |kind| &Env::new(kind);
        log_attempt_counts_claims_and_is_never_reset,
        log_lines_are_read_back_in_order_per_attempt,
        log_bound_keeps_the_tail_and_counts_what_it_dropped,
        log_lines_longer_than_the_limit_are_cut,
        prune_logs_removes_old_attempts_and_keeps_new_ones,
        log_appends_of_two_processes_keep_their_order,
        a_log_page_shows_one_moment_while_appends_go_on,
        a_log_tail_reads_the_last_lines_and_counts_the_rest,
    );

    fn line(at_ms: i64, stream: LogStream, text: &str) -> NewLogLine {
        NewLogLine {
            at_ms,
            stream,
            text: text.to_string(),
        }
    }

    fn texts(p: &LogPage) -> Vec<&str> {
        p.lines.iter().map(|l| l.text.as_str()).collect()
    }

    fn all(env: &Env, job: i64, attempt: u32) -> LogPage {
        env.s().read_log(job, attempt, 0, usize::MAX).unwrap()
    }

    /// `logAttempt` goes up with every claim and is never reset: not by a
    /// retried submission, nor `retry_failed`, nor a new upload of a failed
    /// version (which reset `attempts`).
    pub(super) fn log_attempt_counts_claims_and_is_never_reset(env: &Env) {
        let jobs = upload(env, "logp", "1.0.0", &[Linux], 100);
        let id = jobs[0].id;
        assert_eq!(jobs[0].log_attempt, 0, "never submitted: no log");
        let c = env
            .s()
            .claim(ClaimFilter::Ids(vec![id]), 100_000, 1_000)
            .unwrap();
        assert_eq!((c[0].attempts, c[0].log_attempt), (1, 1));
        let retry = AttemptResult::Retry {
            next_attempt_at_ms: 101_000,
            error: "hub down".into(),
        };
        assert!(env.s().record_attempt(id, 1, &retry, 100).unwrap());
        let c = env.s().claim(ClaimFilter::Due(5), 102_000, 1_000).unwrap();
        assert_eq!((c[0].attempts, c[0].log_attempt), (2, 2));
        let failed = AttemptResult::Failed { error: "no".into() };
        assert!(env.s().record_attempt(id, 2, &failed, 102).unwrap());
        assert_eq!(env.job(id).log_attempt, 2, "recording leaves it");
        env.s()
            .retry_failed("logp", "1.0.0", None, 200, &mut common::random_hex)
            .unwrap();
        let j = env.job(id);
        assert_eq!(
            (j.attempts, j.log_attempt),
            (0, 2),
            "attempts reset, logAttempt not"
        );
        let c = env.s().claim(ClaimFilter::Due(5), 200_000, 1_000).unwrap();
        assert_eq!((c[0].attempts, c[0].log_attempt), (1, 3));
        assert!(env.s().record_attempt(id, 1, &failed, 200).unwrap());
        // A new upload of the failed version resets the job, not its log attempt.
        let again = upload(env, "logp", "1.0.0", &[Linux], 300);
        assert_eq!(
            (again[0].id, again[0].attempts, again[0].log_attempt),
            (id, 0, 3)
        );
        let c = env
            .s()
            .claim(ClaimFilter::Ids(vec![id]), 300_000, 1_000)
            .unwrap();
        assert_eq!(c[0].log_attempt, 4);
        assert_eq!(
            env.count(&format!("SELECT logAttempt FROM buildJobs WHERE id = {id}")),
            4
        );
    }

    pub(super) fn log_lines_are_read_back_in_order_per_attempt(env: &Env) {
        let s = env.s();
        let first = [
            line(
                1_000,
                LogStream::HoneBuild,
                "submitted to Perry Hub (attempt 1)",
            ),
            line(1_001, LogStream::Stage, "stage: compiling — tsc"),
            line(1_002, LogStream::Stdout, "compiling 3 files"),
        ];
        assert_eq!(s.append_log(7, 1, &first, 1 << 20).unwrap(), 34 + 24 + 17);
        let second = [
            line(
                1_003,
                LogStream::Stderr,
                "error TS2304: Cannot find name 'föo'",
            ),
            line(1_004, LogStream::Error, ""),
        ];
        assert_eq!(s.append_log(7, 1, &second, 1 << 20).unwrap(), 37);
        assert_eq!(s.append_log(7, 1, &[], 1 << 20).unwrap(), 0);
        // Other attempts and other jobs are logs of their own.
        s.append_log(
            7,
            2,
            &[line(2_000, LogStream::Stdout, "attempt two")],
            1 << 20,
        )
        .unwrap();
        s.append_log(
            8,
            1,
            &[line(2_000, LogStream::Stdout, "job eight")],
            1 << 20,
        )
        .unwrap();

        let p = all(env, 7, 1);
        assert_eq!(p.attempt, 1);
        assert_eq!((p.dropped_lines, p.dropped_bytes), (0, 0));
        assert_eq!(
            texts(&p),
            [
                "submitted to Perry Hub (attempt 1)",
                "stage: compiling — tsc",
                "compiling 3 files",
                "error TS2304: Cannot find name 'föo'",
                ""
            ]
        );
        let streams: Vec<&str> = p.lines.iter().map(|l| l.stream.as_str()).collect();
        assert_eq!(
            streams,
            ["hone-build", "stage", "stdout", "stderr", "error"]
        );
        let at: Vec<i64> = p.lines.iter().map(|l| l.at_ms).collect();
        assert_eq!(at, [1_000, 1_001, 1_002, 1_003, 1_004]);
        assert!(p.lines.windows(2).all(|w| w[0].seq < w[1].seq), "{p:?}");
        // Paging: after a seq, at most `limit`.
        let page = s.read_log(7, 1, p.lines[1].seq, 2).unwrap();
        assert_eq!(
            texts(&page),
            ["compiling 3 files", "error TS2304: Cannot find name 'föo'"]
        );
        let rest = s.read_log(7, 1, page.lines[1].seq, 100).unwrap();
        assert_eq!(texts(&rest), [""]);
        assert!(
            s.read_log(7, 1, rest.lines[0].seq, 100)
                .unwrap()
                .lines
                .is_empty()
        );
        assert_eq!(texts(&all(env, 7, 2)), ["attempt two"]);
        assert_eq!(texts(&all(env, 8, 1)), ["job eight"]);
        // An attempt without a log reads as nothing.
        assert_eq!(
            all(env, 7, 3),
            LogPage {
                attempt: 3,
                ..LogPage::default()
            }
        );
        assert_eq!(all(env, 99, 1).lines, vec![]);
        // Totals: bytes of the attempt's text, last written at its newest line.
        assert_eq!(
            (env.rows)(
                "SELECT bytes, droppedLines, droppedBytes, updatedAt FROM buildLogs WHERE jobId = 7 AND attempt = 1"
            ),
            vec![vec![
                Some("112".into()),
                Some("0".into()),
                Some("0".into()),
                Some("1004".into())
            ]]
        );
    }

    /// The bound counts bytes (not characters) on both stores, drops the
    /// oldest lines first, across appends and inside one append.
    /// `read_log_tail`: the last N lines oldest first, how many stored
    /// lines come before them, and the attempt's dropped counts.
    pub(super) fn a_log_tail_reads_the_last_lines_and_counts_the_rest(env: &Env) {
        let s = env.s();
        let none = s.read_log_tail(3, 1, 5).unwrap();
        assert!(none.page.lines.is_empty(), "{none:?}");
        assert_eq!(
            (
                none.earlier_lines,
                none.page.dropped_lines,
                none.page.attempt
            ),
            (0, 0, 1)
        );
        let ten: Vec<NewLogLine> = (0..10)
            .map(|i| line(i, LogStream::Stdout, &format!("line {i}")))
            .collect();
        s.append_log(3, 1, &ten[..4], 1 << 20).unwrap();
        s.append_log(3, 1, &ten[4..], 1 << 20).unwrap();
        s.append_log(3, 2, &[line(99, LogStream::Stdout, "attempt two")], 1 << 20)
            .unwrap();
        s.append_log(4, 1, &[line(99, LogStream::Stdout, "job four")], 1 << 20)
            .unwrap();
        let t = s.read_log_tail(3, 1, 3).unwrap();
        assert_eq!(texts(&t.page), ["line 7", "line 8", "line 9"]);
        assert_eq!(t.earlier_lines, 7);
        assert_eq!(t.page.attempt, 1);
        let whole = all(env, 3, 1);
        assert_eq!(
            t.page.lines[..],
            whole.lines[7..],
            "the same rows as a read"
        );
        let t = s.read_log_tail(3, 1, 50).unwrap();
        assert_eq!(t.page.lines, whole.lines);
        assert_eq!(t.earlier_lines, 0);
        assert_eq!(
            texts(&s.read_log_tail(3, 2, 3).unwrap().page),
            ["attempt two"]
        );
        // Under a bound (6-byte lines, 20 bytes): the dropped counts too,
        // and `earlier` counts only what is still stored.
        for i in 0..6 {
            s.append_log(
                5,
                1,
                &[line(i, LogStream::Stderr, &format!("drop-{i}"))],
                20,
            )
            .unwrap();
        }
        let t = s.read_log_tail(5, 1, 2).unwrap();
        assert_eq!(texts(&t.page), ["drop-4", "drop-5"]);
        assert_eq!((t.page.dropped_lines, t.page.dropped_bytes), (3, 18));
        assert_eq!(t.earlier_lines, 1);
    }

    pub(super) fn log_bound_keeps_the_tail_and_counts_what_it_dropped(env: &Env) {
        let s = env.s();
        // Ten-byte lines ("é" is two bytes).
        let ten = |i: usize| format!("line-{i}éxx");
        for i in 0..10 {
            assert_eq!(ten(i).len(), 10, "{}", ten(i));
        }
        for i in 0..6 {
            let n = s
                .append_log(1, 1, &[line(i as i64, LogStream::Stdout, &ten(i))], 45)
                .unwrap();
            assert_eq!(n, 10);
        }
        let p = all(env, 1, 1);
        assert_eq!(texts(&p), [ten(2), ten(3), ten(4), ten(5)]);
        assert_eq!((p.dropped_lines, p.dropped_bytes), (2, 20));
        // One append larger than the bound: its own oldest lines never stay.
        let batch: Vec<NewLogLine> = (6..10)
            .map(|i| line(i as i64, LogStream::Stderr, &ten(i)))
            .chain([line(10, LogStream::Stderr, "end")])
            .collect();
        let n = s.append_log(1, 1, &batch, 25).unwrap();
        assert_eq!(n, 23, "the lines stored: line-8, line-9, end");
        let p = all(env, 1, 1);
        assert_eq!(texts(&p), [ten(8).as_str(), &ten(9), "end"]);
        assert_eq!(
            (p.dropped_lines, p.dropped_bytes),
            (2 + 4 + 2, 20 + 40 + 20),
            "earlier drops, the four older stored lines, two of the batch"
        );
        assert_eq!(
            env.count("SELECT bytes FROM buildLogs WHERE jobId = 1 AND attempt = 1"),
            23
        );
        assert_eq!(
            env.count("SELECT COUNT(*) FROM buildLogLines WHERE jobId = 1 AND attempt = 1"),
            3
        );
        // A line larger than the whole bound leaves nothing, counted.
        assert_eq!(
            s.append_log(1, 1, &[line(11, LogStream::Stdout, &"y".repeat(30))], 25)
                .unwrap(),
            0
        );
        let p = all(env, 1, 1);
        assert_eq!(texts(&p), [ten(8).as_str(), &ten(9), "end"]);
        assert_eq!((p.dropped_lines, p.dropped_bytes), (9, 110));
        // Seqs keep increasing after drops.
        s.append_log(1, 1, &[line(12, LogStream::Stdout, "zzz")], 25)
            .unwrap();
        let p = all(env, 1, 1);
        assert_eq!(texts(&p), [ten(9).as_str(), "end", "zzz"]);
        assert_eq!((p.dropped_lines, p.dropped_bytes), (10, 120));
        assert!(p.lines.windows(2).all(|w| w[0].seq < w[1].seq), "{p:?}");
        // The bound is per attempt: another attempt is untouched.
        s.append_log(1, 2, &[line(13, LogStream::Stdout, &ten(1))], 25)
            .unwrap();
        assert_eq!(texts(&all(env, 1, 1)), [ten(9).as_str(), "end", "zzz"]);
    }

    pub(super) fn log_lines_longer_than_the_limit_are_cut(env: &Env) {
        // A multi-byte character straddles the limit: cut before it.
        let long = format!("{}é{}", "a".repeat(LOG_LINE_MAX_BYTES - 1), "b".repeat(100));
        let n = env
            .s()
            .append_log(3, 1, &[line(1, LogStream::Stderr, &long)], 1 << 20)
            .unwrap();
        assert_eq!(n as usize, LOG_LINE_MAX_BYTES - 1);
        let p = all(env, 3, 1);
        assert_eq!(p.lines[0].text, "a".repeat(LOG_LINE_MAX_BYTES - 1));
    }

    pub(super) fn prune_logs_removes_old_attempts_and_keeps_new_ones(env: &Env) {
        let s = env.s();
        let big = 1 << 20;
        // job 1 attempt 1: last written at 1_500 (old); attempt 2 at 9_000.
        s.append_log(1, 1, &[line(1_000, LogStream::Stdout, "a")], big)
            .unwrap();
        s.append_log(1, 1, &[line(1_500, LogStream::Stdout, "b")], big)
            .unwrap();
        s.append_log(1, 2, &[line(2_000, LogStream::Stdout, "c")], big)
            .unwrap();
        s.append_log(1, 2, &[line(9_000, LogStream::Stdout, "d")], big)
            .unwrap();
        // job 2: old, with drops recorded.
        s.append_log(
            2,
            1,
            &[
                line(100, LogStream::Stdout, "eeee"),
                line(200, LogStream::Stdout, "f"),
            ],
            2,
        )
        .unwrap();
        assert_eq!(all(env, 2, 1).dropped_lines, 1);
        // A line without totals (left by hand), old.
        (env.exec)(
            "INSERT INTO buildLogLines (jobId, attempt, at, stream, line) VALUES (5, 1, 10, 'stdout', 'stray')",
        );
        (env.exec)(
            "INSERT INTO buildLogLines (jobId, attempt, at, stream, line) VALUES (6, 1, 8000, 'stdout', 'stray new')",
        );

        assert_eq!(s.prune_logs(5_000).unwrap(), 2 + 1 + 1);
        assert_eq!(
            all(env, 1, 1),
            LogPage {
                attempt: 1,
                ..LogPage::default()
            }
        );
        assert_eq!(
            all(env, 2, 1),
            LogPage {
                attempt: 1,
                ..LogPage::default()
            },
            "drop counts gone too"
        );
        assert_eq!(
            texts(&all(env, 1, 2)),
            ["c", "d"],
            "an attempt written since is kept whole"
        );
        assert_eq!(texts(&all(env, 6, 1)), ["stray new"]);
        assert_eq!(env.count("SELECT COUNT(*) FROM buildLogs"), 1);
        assert_eq!(env.count("SELECT COUNT(*) FROM buildLogLines"), 3);
        assert_eq!(s.prune_logs(5_000).unwrap(), 0, "nothing more");
        // A pruned attempt written again starts a fresh log.
        s.append_log(1, 1, &[line(10_000, LogStream::Stdout, "again")], big)
            .unwrap();
        assert_eq!(texts(&all(env, 1, 1)), ["again"]);
        assert_eq!(s.prune_logs(i64::MAX).unwrap(), 4);
        assert_eq!(env.count("SELECT COUNT(*) FROM buildLogLines"), 0);
        assert_eq!(env.count("SELECT COUNT(*) FROM buildLogs"), 0);
    }

    /// Two processes (two stores on one database) append to one attempt at
    /// once: every line is there, each process's lines in its order, seqs
    /// increasing, and the totals match what is stored.
    pub(super) fn log_appends_of_two_processes_keep_their_order(env: &Env) {
        let stores: Vec<Box<dyn Store>> = vec![(env.open)(), (env.open)()];
        std::thread::scope(|sc| {
            for (w, st) in stores.iter().enumerate() {
                sc.spawn(move || {
                    for i in 0..40 {
                        let batch: Vec<NewLogLine> = (0..3)
                            .map(|k| line(i, LogStream::Stdout, &format!("w{w} {i:02} {k}")))
                            .collect();
                        st.append_log(4, 1, &batch, 1 << 20).unwrap();
                    }
                });
            }
        });
        let p = all(env, 4, 1);
        assert_eq!(p.lines.len(), 240);
        assert!(p.lines.windows(2).all(|w| w[0].seq < w[1].seq));
        for w in 0..2 {
            let mine: Vec<&str> = texts(&p)
                .into_iter()
                .filter(|t| t.starts_with(&format!("w{w} ")))
                .collect();
            let want: Vec<String> = (0..40)
                .flat_map(|i| (0..3).map(move |k| format!("w{w} {i:02} {k}")))
                .collect();
            assert_eq!(mine, want);
        }
        let stored: usize = p.lines.iter().map(|l| l.text.len()).sum();
        assert_eq!(
            env.count("SELECT bytes FROM buildLogs WHERE jobId = 4 AND attempt = 1"),
            stored as i64
        );
    }

    /// A page is the log at one moment, however reads and appends of
    /// other processes interleave: its lines are the tail the bound kept
    /// after some append, and its dropped counts are those of that same
    /// append (not of the one before: a page showing the last lines with
    /// the counts of an earlier moment says the wrong thing was dropped).
    pub(super) fn a_log_page_shows_one_moment_while_appends_go_on(env: &Env) {
        // Batches of 3 ten-byte lines, the n-th line ever written numbered
        // n; a bound of 45 bytes keeps 4 lines, so every append drops some.
        const BATCHES: usize = 300;
        let text = |n: i64| format!("b{:05}-{}xx", n / 3, n % 3);
        let (writer, reader) = ((env.open)(), (env.open)());
        let (reads, torn) = std::thread::scope(|sc| {
            let appending = sc.spawn(|| {
                for b in 0..BATCHES as i64 {
                    let batch: Vec<NewLogLine> = (0..3)
                        .map(|k| line(b, LogStream::Stdout, &text(b * 3 + k)))
                        .collect();
                    writer.append_log(5, 1, &batch, 45).unwrap();
                }
            });
            let (mut reads, mut torn) = (0usize, Vec::new());
            while !appending.is_finished() {
                let p = reader.read_log(5, 1, 0, usize::MAX).unwrap();
                if p.lines.is_empty() {
                    continue;
                }
                reads += 1;
                // The lines kept are the ones written after those dropped.
                let want: Vec<String> = (0..p.lines.len() as i64)
                    .map(|i| text(p.dropped_lines + i))
                    .collect();
                let whole_batches = (p.dropped_lines + p.lines.len() as i64) % 3 == 0;
                if texts(&p) != want || p.dropped_bytes != 10 * p.dropped_lines || !whole_batches {
                    torn.push(format!(
                        "dropped {} lines ({} bytes), kept {:?}",
                        p.dropped_lines,
                        p.dropped_bytes,
                        texts(&p)
                    ));
                }
            }
            (reads, torn)
        });
        assert!(
            torn.is_empty(),
            "{} of {reads} pages mix two moments, e.g. {:?}",
            torn.len(),
            &torn[..torn.len().min(3)]
        );
        assert!(reads >= 10, "the reads overlapped the appends: {reads}");
        let p = all(env, 5, 1);
        assert_eq!(
            (p.dropped_lines, p.dropped_bytes),
            (3 * BATCHES as i64 - 4, 30 * BATCHES as i64 - 40)
        );
    }
}
