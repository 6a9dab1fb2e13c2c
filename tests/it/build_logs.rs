//! Build logs (issue 12): the real `hone-build` binary following builds of
//! `perry-hub-sim` in real-hub mode, on both stores. The logs are read from
//! the store (the same database the service writes), as every reader does.
//!
//! What must hold: the log holds the compiler's lines in order with
//! hone-build's events around them, also across a restart of hone-build in
//! the middle of a build; the size bound keeps the tail and says what it
//! dropped; no secret ever enters a log or an error message; retention
//! removes old logs and keeps new ones.

use crate::common;
use crate::follow::{Env, LICENSE, metric, only_build, quiet};

use common::{Sim, StoreKind, both_stores, wait_until};
use hone_build::buildlog;
use hone_build::store::{LogPage, LogStream, NewLogLine, Store};
use serde_json::json;
use std::time::Duration;

both_stores!(
    log_holds_the_compilers_lines_in_order_with_the_events,
    log_keeps_every_line_in_order_across_a_restart_mid_build,
    size_bound_keeps_the_tail_and_says_what_it_dropped,
    no_secret_enters_a_log_or_an_error_message,
    retention_removes_old_logs_and_keeps_new_ones,
    a_retried_submission_starts_a_new_log_attempt,
    a_callback_delivery_is_written_to_the_log,
    a_build_timeout_is_written_to_the_log,
    queue_positions_and_reconnects_are_written_to_the_log,
    a_burst_of_lines_faster_than_the_flush_interval_is_kept_whole,
);

/// A compiler printing 25,000 lines at once — more than a log writer
/// buffers between two appends (10,000), far quicker than its 250 ms
/// interval — loses none of them: a full buffer is appended at once. (It
/// used to drop the oldest and say "[N line(s) lost here: the database did
/// not answer]" while the database answered; `make bench-logs` showed it.)
fn a_burst_of_lines_faster_than_the_flush_interval_is_kept_whole(kind: StoreKind) {
    const N: u64 = 25_000;
    let env = Env::start(
        kind,
        &["--build-delay-ms", "300", "--log-lines", &N.to_string()],
        &[("BUILD_LOG_MAX_BYTES", "16777216")],
    );
    let (name, version) = ("burst-log", "1.0.0");
    env.upload_ok(name, version, "linux");
    env.wait_overall(name, version, "completed", Duration::from_secs(60));
    let (_, page) = wait_log(&env, name, version, "program stored for");
    let lines = texts(&page);
    assert!(
        !lines.iter().any(|l| l.contains("lost here")),
        "lines were lost: {:?}",
        lines.iter().find(|l| l.contains("lost here"))
    );
    assert_eq!(page.dropped_lines, 0, "under the bound");
    assert_eq!(
        numbered(&page),
        (1..=N).collect::<Vec<_>>(),
        "every line, in order"
    );
}

/// The job of (`name`, `version`, `platform`) and the whole log of its
/// current log attempt.
fn log_of(env: &Env, name: &str, version: &str, platform: &str) -> (i64, LogPage) {
    let s = env.store();
    let jobs = s.version_jobs(name, version).expect("version_jobs");
    let job = jobs
        .iter()
        .find(|j| j.platform == platform)
        .unwrap_or_else(|| panic!("no {platform} job of {name} {version}: {jobs:?}"));
    assert!(job.log_attempt >= 1, "never submitted: {job:?}");
    let page = s
        .read_log(job.id, job.log_attempt, 0, usize::MAX)
        .expect("read_log");
    (job.id, page)
}

/// Waits until the log holds a line containing `needle` (the follower
/// writes its last lines just after the job completes); returns it.
#[track_caller]
fn wait_log(env: &Env, name: &str, version: &str, needle: &str) -> (i64, LogPage) {
    let mut last = (0, LogPage::default());
    let found = wait_until(Duration::from_secs(10), || {
        last = log_of(env, name, version, "linux");
        last.1.lines.iter().any(|l| l.text.contains(needle))
    });
    assert!(
        found,
        "{needle:?} never in the log:\n{}\nservice log:\n{}",
        texts(&last.1).join("\n"),
        quiet(&env.svc.log())
    );
    last
}

fn texts(p: &LogPage) -> Vec<String> {
    p.lines
        .iter()
        .map(|l| format!("{} | {}", l.stream, l.text))
        .collect()
}

/// Positions in `lines` of the lines containing each of `wanted`, asserted
/// present and in that order.
#[track_caller]
fn assert_in_order(lines: &[String], wanted: &[&str]) {
    let mut from = 0;
    for w in wanted {
        match lines[from..].iter().position(|l| l.contains(w)) {
            Some(i) => from += i + 1,
            None => panic!(
                "{w:?} missing after line {from} (or out of order) in the log:\n{}",
                lines.join("\n")
            ),
        }
    }
}

/// The numbers `i` of the simulator's `[i/n] compiled module` lines, in log order.
fn numbered(p: &LogPage) -> Vec<u64> {
    p.lines
        .iter()
        .filter_map(|l| {
            let rest = l.text.strip_prefix('[')?;
            let (i, _) = rest.split_once('/')?;
            i.parse().ok()
        })
        .collect()
}

/// A successful build's log, from the submission to the program stored:
/// every line the hub relayed, in order, on its stream; the metrics count
/// the bytes and the build's times.
fn log_holds_the_compilers_lines_in_order_with_the_events(kind: StoreKind) {
    let env = Env::start(kind, &["--build-delay-ms", "300", "--log-lines", "30"], &[]);
    let (name, version) = ("logged", "1.2.3");
    env.upload_ok(name, version, "linux");
    let st = env.wait_overall(name, version, "completed", Duration::from_secs(20));
    let hub_job = only_build(&st)["hubJobId"].as_str().unwrap().to_string();
    let (_, page) = wait_log(&env, name, version, "program stored for");
    assert_eq!(page.attempt, 1);
    assert_eq!((page.dropped_lines, page.dropped_bytes), (0, 0));
    let lines = texts(&page);
    let mut wanted = vec![
        "hone-build | submitting logged 1.2.3 for linux to Perry Hub (log attempt 1, submission 1 of at most 8)".to_string(),
        format!("hone-build | accepted by Perry Hub as hub job {hub_job}"),
        format!("hone-build | following hub job {hub_job} over Perry Hub's WebSocket"),
        "stage | stage: extracting — Extracting project".into(),
        "stage | stage: compiling — Compiling for linux".into(),
        "stdout | $ perry compile src/index.ts -o".into(),
        "stdout | Compiling src/index.ts".into(),
    ];
    wanted.extend((1..=30).map(|i| format!("stdout | [{i}/30] compiled module m{i}.ts")));
    wanted.extend(
        [
            "stdout | Wrote ",
            "stage | stage: bundling — Packaging the app",
            "stage | stage: uploading — Uploading artifact",
            "hone-build | artifact announced: ",
            "hone-build | downloaded ",
            "hone-build | sha256 verified: ",
            "hone-build | program extracted: ",
            "hone-build | program stored for linux-x64 (",
        ]
        .map(String::from),
    );
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    assert_in_order(&lines, &wanted);
    assert_eq!(numbered(&page), (1..=30).collect::<Vec<_>>(), "each once");
    assert!(page.lines.windows(2).all(|w| w[0].seq < w[1].seq));
    // Nothing of the download link: its token is a secret.
    assert!(!lines.iter().any(|l| l.contains("/dl/")), "{lines:#?}");
    // Rendered as every reader shows it.
    let rendered = buildlog::render(&page);
    assert_eq!(rendered.len(), page.lines.len());
    assert!(
        rendered
            .iter()
            .any(|l| l.ends_with(" stdout | [30/30] compiled module m30.ts")
                && l.len() > 24
                && l.as_bytes()[23] == b'Z'),
        "{rendered:#?}"
    );
    // The metrics: the bytes stored, and the build's duration and queue time.
    let m = env.metrics();
    let stored: usize = page.lines.iter().map(|l| l.text.len()).sum();
    assert_eq!(
        metric(&m, "hone_build_log_bytes_stored_total"),
        stored as f64,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "hone_build_build_duration_seconds_count{platform=\"linux\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "hone_build_hub_queue_seconds_count{platform=\"linux\"}"),
        1.0,
        "{m}"
    );
    let queued = metric(&m, "hone_build_hub_queue_seconds_sum{platform=\"linux\"}");
    assert!((0.0..30.0).contains(&queued), "{m}");
}

/// hone-build is stopped in the middle of the compiler's output and started
/// again on the same store: the log holds the lines before the stop and
/// those after the restart, in order, in one log attempt, with the stop and
/// the new follower said. (The hub replays nothing: lines it sent while no
/// process listened are not in any log.)
fn log_keeps_every_line_in_order_across_a_restart_mid_build(kind: StoreKind) {
    let mut env = Env::start(
        kind,
        &[
            "--build-delay-ms",
            "200",
            "--log-lines",
            "60",
            "--log-line-delay-ms",
            "100",
        ],
        &[],
    );
    let (name, version) = ("restarted-log", "1.0.0");
    env.upload_ok(name, version, "linux");
    let mut before = LogPage::default();
    assert!(
        wait_until(Duration::from_secs(20), || {
            before = log_of(&env, name, version, "linux").1;
            numbered(&before).len() >= 8
        }),
        "the compiler's lines never reached the log: {:#?}\n{}",
        texts(&before),
        quiet(&env.svc.log())
    );
    // While it builds, `hone-build jobs` shows the stage.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hone-build"))
        .current_dir(&env.workdir)
        .envs(
            env.db
                .as_ref()
                .map(|db| db.service_env(&db.host, db.port))
                .unwrap_or_default(),
        )
        .env("HONE_BUILD_LOG_LEVEL", "warn")
        .arg("jobs")
        .output()
        .expect("run hone-build jobs");
    let listing = String::from_utf8_lossy(&out.stdout);
    let row = listing
        .lines()
        .find(|l| l.contains(name))
        .unwrap_or_else(|| panic!("job not listed: {listing}"));
    assert!(
        row.contains("queued") && row.contains("compiling"),
        "{listing}"
    );
    env.stop();
    let at_stop = log_of(&env, name, version, "linux").1;
    assert!(
        numbered(&at_stop).last() < Some(&60),
        "stopped too late: {:#?}",
        texts(&at_stop)
    );
    std::thread::sleep(Duration::from_millis(500));
    env.start_again();
    env.wait_overall(name, version, "completed", Duration::from_secs(30));
    let (_, after) = wait_log(&env, name, version, "program stored for");
    assert_eq!(
        after.attempt, 1,
        "the same submission, the same log attempt"
    );
    // Everything stored before the stop is still there, first, unchanged.
    assert!(after.lines.len() > at_stop.lines.len());
    assert_eq!(&after.lines[..at_stop.lines.len()], &at_stop.lines[..]);
    let n = numbered(&after);
    assert!(
        n.windows(2).all(|w| w[0] < w[1]),
        "compiler lines out of order or repeated: {n:?}"
    );
    assert_eq!(n.first(), Some(&1));
    assert_eq!(
        n.last(),
        Some(&60),
        "lines after the restart are there: {n:?}"
    );
    assert!(
        n.iter()
            .filter(|&&i| i > *numbered(&at_stop).last().unwrap())
            .count()
            >= 5,
        "{n:?}"
    );
    let lines = texts(&after);
    assert_in_order(
        &lines,
        &[
            "stdout | [1/60] compiled module m1.ts",
            "hone-build | hone-build is stopping: the build goes on at Perry Hub",
            "hone-build | following hub job ",
            "stdout | [60/60] compiled module m60.ts",
            "hone-build | program stored for linux-x64 (",
        ],
    );
    assert!(after.lines.windows(2).all(|w| w[0].seq < w[1].seq));
}

/// A log larger than BUILD_LOG_MAX_BYTES keeps its tail, within the bound,
/// and counts what it dropped; the rendered log begins with the marker.
fn size_bound_keeps_the_tail_and_says_what_it_dropped(kind: StoreKind) {
    let env = Env::start(
        kind,
        &["--build-delay-ms", "200", "--log-lines", "300"],
        &[("BUILD_LOG_MAX_BYTES", "3000")],
    );
    let (name, version) = ("big-log", "1.0.0");
    env.upload_ok(name, version, "linux");
    env.wait_overall(name, version, "completed", Duration::from_secs(20));
    let (job_id, page) = wait_log(&env, name, version, "program stored for");
    let kept: usize = page.lines.iter().map(|l| l.text.len()).sum();
    assert!(kept <= 3000, "{kept} bytes kept");
    assert!(kept > 2000, "the bound is filled, not emptied: {kept}");
    assert!(page.dropped_lines > 200, "{page:?}");
    let n = numbered(&page);
    let first = *n.first().expect("some compiler lines kept");
    assert!(first > 1, "the oldest lines went: {n:?}");
    assert_eq!(n, (first..=300).collect::<Vec<_>>(), "a contiguous tail");
    let lines = texts(&page);
    assert!(
        lines
            .last()
            .unwrap()
            .contains("program stored for linux-x64"),
        "the end of the build is kept: {lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.contains("submitting big-log")));
    // Every line ever written is either kept or counted as dropped.
    let rows = env.rows(&format!(
        "SELECT bytes, droppedLines, droppedBytes FROM buildLogs WHERE jobId = {job_id}"
    ));
    assert_eq!(
        rows,
        vec![vec![
            Some(kept.to_string()),
            Some(page.dropped_lines.to_string()),
            Some(page.dropped_bytes.to_string())
        ]]
    );
    let written = page.dropped_lines as usize + page.lines.len();
    // 300 numbered lines plus the hub's and hone-build's own.
    assert!((310..340).contains(&written), "{written} lines written");
    let rendered = buildlog::render(&page);
    assert_eq!(
        rendered[0],
        format!(
            "[… {} earlier line(s) ({} bytes) dropped: the log of one build attempt keeps its \
             last BUILD_LOG_MAX_BYTES …]",
            page.dropped_lines, page.dropped_bytes
        )
    );
    assert_eq!(rendered.len(), page.lines.len() + 1);
}

/// Every secret configured — the license key, the hub API token, the
/// upload secret, the database password — and the tokens hone-build
/// handles (download links, callback tokens) appear in the compiler's
/// output of a failing build; none is stored in the log, in errorMessage,
/// in /status, nor printed in the service's own log.
fn no_secret_enters_a_log_or_an_error_message(kind: StoreKind) {
    let license = format!("lic-{}", common::random_hex());
    let hub_token = format!("acct-{}", common::random_hex());
    let upload_secret = format!("up/secret+{}", common::random_hex());
    let db_pass = format!("dbpw{}", common::random_hex());
    let dl_token = format!("{}-4c1f-9d2e", common::random_hex());
    let callback_token = common::random_hex();
    let mut env = Env::start(
        kind,
        &[
            "--build-delay-ms",
            "200",
            "--license-key",
            &license,
            "--account",
            &hub_token,
            "--compile-failure",
        ],
        &[
            ("PERRY_HUB_LICENSE_KEY", license.as_str()),
            ("PERRY_HUB_TOKEN", hub_token.as_str()),
            ("UPLOAD_SECRET", upload_secret.as_str()),
        ],
    );
    // The database password is a real one on MySQL (a user of its own).
    env.stop();
    let user = env.db.as_ref().map(|db| db.add_user(&db_pass));
    if let Some(user) = user {
        env.extra.push(("DB_USER".into(), user));
    }
    env.extra.push(("DB_PASS".into(), db_pass.clone()));
    env.start_again();
    let encoded: String = upload_secret.replace('/', "%2F").replace('+', "%2B");
    env.sim.set(json!({
    "failure_message": format!(
        "Compilation failed: license {license} refused; see {}/api/v1/dl/{dl_token}",
        env.sim.url()
    ),
    "extra_log_lines": [
        format!("using license key {license} for this build"),
        format!("Authorization: Bearer {hub_token}"),
        format!("the upload secret was {upload_secret} and encoded {encoded}"),
        format!("DB_PASS={db_pass}"),
        format!("fetch {}/api/v1/dl/{dl_token} failed", env.sim.url()),
        format!("callback http://127.0.0.1:9/artifact/1?token={callback_token}"),
    ]}));
    let (name, version) = ("leaky", "1.0.0");
    let tar = crate::fixtures::tarball("leaky-1.0.0", crate::fixtures::Fill::Unique);
    let r = common::http(
        "POST",
        &env.svc.url(&format!(
            "/upload?name={name}&version={version}&platforms=linux"
        )),
        &[("Authorization", &format!("Bearer {upload_secret}"))],
        Some(&tar),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let st = env.wait_overall(name, version, "failed", Duration::from_secs(20));
    let (job_id, page) = wait_log(&env, name, version, "the build failed");
    let lines = texts(&page);
    // The lines are there, with the secrets taken out.
    assert_in_order(
        &lines,
        &[
            "stderr | using license key [redacted] for this build",
            "stderr | Authorization: Bearer [redacted]",
            "stderr | the upload secret was [redacted] and encoded [redacted]",
            "stderr | DB_PASS=[redacted]",
            "/api/v1/dl/[redacted] failed",
            "stderr | callback http://127.0.0.1:9/artifact/1?[redacted]",
            "error TS2304: Cannot find name 'foo'.",
            "error | INTERNAL_ERROR: Compilation failed: license [redacted] refused; see http",
            "hone-build | the build failed: Perry Hub: build failed",
        ],
    );
    let message = only_build(&st)["errorMessage"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("Bearer [redacted]"), "{message}");
    assert!(message.contains("error TS2304"), "{message}");
    let stored_lines = env.rows(&format!(
        "SELECT line FROM buildLogLines WHERE jobId = {job_id}"
    ));
    let stored_message = env.rows("SELECT errorMessage FROM buildJobs");
    let everything = format!(
        "{stored_lines:?}\n{stored_message:?}\n{st}\n{}",
        env.svc.log()
    );
    assert!(stored_lines.len() >= lines.len());
    for secret in [
        &license,
        &hub_token,
        &upload_secret,
        &encoded,
        &db_pass,
        &dl_token,
        &callback_token,
        &LICENSE.to_string(),
    ] {
        assert!(
            !everything.contains(secret.as_str()),
            "{secret:?} leaked:\n{everything}"
        );
    }
}

/// The background loop removes logs last written more than
/// BUILD_LOG_RETENTION_DAYS ago and keeps newer ones; 0 keeps them all.
fn retention_removes_old_logs_and_keeps_new_ones(kind: StoreKind) {
    let mut env = Env::start(kind, &[], &[("BUILD_LOG_RETENTION_DAYS", "0")]);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let day = 86_400_000;
    let s = env.store();
    let line = |at_ms: i64, text: &str| NewLogLine {
        at_ms,
        stream: LogStream::Stdout,
        text: text.into(),
    };
    // Job 1: an attempt 3 days old and one an hour old; job 2: 40 days old.
    s.append_log(1, 1, &[line(now_ms - 3 * day, "old")], 1 << 20)
        .unwrap();
    s.append_log(1, 2, &[line(now_ms - day / 24, "new")], 1 << 20)
        .unwrap();
    s.append_log(2, 1, &[line(now_ms - 40 * day, "older")], 1 << 20)
        .unwrap();
    let count = |env: &Env| env.rows("SELECT COUNT(*) FROM buildLogLines")[0][0].clone();
    // 0: kept forever (the loop looked at start).
    env.stop();
    env.start_again();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(count(&env).as_deref(), Some("3"));
    assert!(
        !env.svc.log().contains("build log line"),
        "{}",
        env.svc.log()
    );
    // 2 days: the loop removes the two old attempts at start.
    env.stop();
    env.extra.retain(|(k, _)| k != "BUILD_LOG_RETENTION_DAYS");
    env.extra
        .push(("BUILD_LOG_RETENTION_DAYS".into(), "2".into()));
    env.start_again();
    assert!(
        wait_until(Duration::from_secs(10), || count(&env).as_deref()
            == Some("1")),
        "not pruned: {:?}\n{}",
        env.rows("SELECT jobId, attempt, at FROM buildLogLines"),
        env.svc.log()
    );
    let left = s.read_log(1, 2, 0, 10).unwrap();
    assert_eq!(left.lines.len(), 1);
    assert_eq!(left.lines[0].text, "new");
    assert!(s.read_log(1, 1, 0, 10).unwrap().lines.is_empty());
    assert!(s.read_log(2, 1, 0, 10).unwrap().lines.is_empty());
    assert_eq!(
        env.rows("SELECT jobId, attempt FROM buildLogs"),
        vec![vec![Some("1".into()), Some("2".into())]]
    );
    assert!(
        wait_until(Duration::from_secs(5), || env.svc.log().contains(
            "removed 2 build log line(s) older than BUILD_LOG_RETENTION_DAYS (2 days)"
        )),
        "{}",
        env.svc.log()
    );
}

/// The log of (`job_id`, `attempt`), whole.
fn attempt_log(env: &Env, job_id: i64, attempt: u32) -> Vec<String> {
    texts(
        &env.store()
            .read_log(job_id, attempt, 0, usize::MAX)
            .unwrap(),
    )
}

/// A submission Perry Hub did not accept is tried again later as the next
/// log attempt; the first attempt's log stays, saying why and when.
fn a_retried_submission_starts_a_new_log_attempt(kind: StoreKind) {
    let env = Env::start(kind, &["--build-delay-ms", "200", "--fail-next", "1"], &[]);
    let (name, version) = ("retried-log", "1.0.0");
    env.upload_ok(name, version, "linux");
    env.wait_overall(name, version, "completed", Duration::from_secs(20));
    let (job_id, page) = wait_log(&env, name, version, "program stored for");
    assert_eq!(page.attempt, 2, "{:#?}", texts(&page));
    assert_in_order(
        &attempt_log(&env, job_id, 1),
        &[
            "hone-build | submitting retried-log 1.0.0 for linux to Perry Hub (log attempt 1, submission 1 of at most 8)",
            "hone-build | submission not accepted: Perry Hub: INTERNAL: simulated failure; next try in ",
        ],
    );
    let first = attempt_log(&env, job_id, 1);
    assert!(
        !first.iter().any(|l| l.contains("accepted by Perry Hub")),
        "{first:#?}"
    );
    assert_in_order(
        &texts(&page),
        &[
            "hone-build | submitting retried-log 1.0.0 for linux to Perry Hub (log attempt 2, submission 2 of at most 8)",
            "hone-build | accepted by Perry Hub as hub job ",
            "stdout | Compiling src/index.ts",
            "hone-build | program stored for linux-x64 (",
        ],
    );
    assert!(attempt_log(&env, job_id, 3).is_empty());
}

/// With PERRY_HUB_WS_URL=off a patched hub's worker posts the program to
/// `/artifact`: the delivery is written to the job attempt's log.
fn a_callback_delivery_is_written_to_the_log(kind: StoreKind) {
    let env = Env::start_with(
        kind,
        Sim::start(&["--build-delay-ms", "300"]),
        &[("PERRY_HUB_WS_URL", "off")],
    );
    let (name, version) = ("called-back", "1.0.0");
    env.upload_ok(name, version, "linux");
    env.wait_overall(name, version, "completed", Duration::from_secs(20));
    let (_, page) = wait_log(&env, name, version, "program stored for");
    let lines = texts(&page);
    assert_in_order(
        &lines,
        &[
            "hone-build | submitting called-back 1.0.0 for linux",
            "hone-build | accepted by Perry Hub as hub job ",
            "hone-build | artifact received from Perry Hub's worker (callback): ",
            "hone-build | sha256 verified against x-artifact-sha256",
            "hone-build | program stored for linux-x64 (",
        ],
    );
    assert!(!lines.iter().any(|l| l.contains("following")), "{lines:#?}");
    // The callback URL's token is never written.
    assert!(!lines.iter().any(|l| l.contains("token")), "{lines:#?}");
}

/// A build whose program never comes is failed by the background loop at
/// BUILD_TIMEOUT_SECS: its log says so.
fn a_build_timeout_is_written_to_the_log(kind: StoreKind) {
    let env = Env::start_with(
        kind,
        Sim::start(&["--build-delay-ms", "100", "--never-callback"]),
        &[("PERRY_HUB_WS_URL", "off"), ("BUILD_TIMEOUT_SECS", "1")],
    );
    let (name, version) = ("timed-out", "1.0.0");
    env.upload_ok(name, version, "linux");
    env.wait_overall(name, version, "failed", Duration::from_secs(20));
    let (_, page) = wait_log(&env, name, version, "build timed out");
    assert_in_order(
        &texts(&page),
        &[
            "hone-build | accepted by Perry Hub as hub job ",
            "hone-build | build timed out: no artifact within BUILD_TIMEOUT_SECS (1 s) of submission",
        ],
    );
}

/// The hub's queue positions are written once each (it repeats them), and
/// a WebSocket the hub closes mid-build is said, with the reconnection; the
/// build completes.
fn queue_positions_and_reconnects_are_written_to_the_log(kind: StoreKind) {
    let env = Env::start(
        kind,
        &[
            "--build-delay-ms",
            "2000",
            "--queue-updates",
            "3",
            "--log-lines",
            "10",
            "--log-line-delay-ms",
            "150",
            "--close-subscribers-after-ms",
            "2700",
        ],
        &[],
    );
    let (name, version) = ("queued-log", "1.0.0");
    env.upload_ok(name, version, "linux");
    env.wait_overall(name, version, "completed", Duration::from_secs(30));
    let (_, page) = wait_log(&env, name, version, "program stored for");
    let lines = texts(&page);
    assert_in_order(
        &lines,
        &[
            "hone-build | queued at Perry Hub, position 3: 3 build(s) ahead",
            "hone-build | queued at Perry Hub, position 2: 2 build(s) ahead",
            "hone-build | queued at Perry Hub, position 1: 1 build(s) ahead",
            "stage | stage: extracting",
            "hone-build | Perry Hub's WebSocket closed before the build ended",
            "hone-build | reconnected to Perry Hub's WebSocket; following hub job ",
            "hone-build | program stored for linux-x64 (",
        ],
    );
    for p in 1..=3 {
        let said = lines
            .iter()
            .filter(|l| l.contains(&format!("position {p}:")))
            .count();
        assert_eq!(said, 1, "position {p} once: {lines:#?}");
    }
    let n = numbered(&page);
    assert!(n.windows(2).all(|w| w[0] < w[1]), "{n:?}");
}

/// An `App` on `store` (migrated here) with a build.conf of `conf` lines
/// in `dir`, for driving a log writer directly.
fn app_on(
    dir: &std::path::Path,
    conf: &str,
    store: Box<dyn Store>,
) -> std::sync::Arc<hone_build::app::App> {
    use hone_build::config::{Config, FileChoice};
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let path = dir.join("build.conf");
    std::fs::write(
        &path,
        format!(
            "DATA_DIR={}\nBUILD_LOG_MAX_BYTES=16777216\n{conf}",
            data.display()
        ),
    )
    .unwrap();
    let (cfg, _) = Config::load(FileChoice::Explicit(&path), &|_| None).unwrap();
    store.migrate().unwrap();
    hone_build::app::App::new(cfg, store)
}

/// The same burst through a log writer directly, whatever the machine's
/// speed: 30,000 lines pushed in far less than the 250 ms between two
/// timed appends (three times the buffer) are all stored, in order, with no
/// "lost" line — a full buffer is appended at once, not cut.
#[test]
fn a_log_writer_appends_a_full_buffer_rather_than_dropping_lines() {
    const N: usize = 30_000;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let store = common::sqlite_store(&dir.path().join("data"));
    let app = app_on(dir.path(), "", Box::new(store));
    let started = std::time::Instant::now();
    {
        let mut w = buildlog::Writer::new(&app, 7, 1);
        for i in 1..=N {
            w.push(
                LogStream::Stdout,
                &format!("[{i}/{N}] compiled module m{i}.ts"),
            );
        }
    }
    let pushed_in = started.elapsed();
    let page = app.store.read_log(7, 1, 0, usize::MAX).unwrap();
    let lines = texts(&page);
    assert!(
        !lines.iter().any(|l| l.contains("lost here")),
        "{:?} (pushed in {pushed_in:?})",
        lines.iter().find(|l| l.contains("lost here"))
    );
    assert_eq!(
        numbered(&page),
        (1..=N as u64).collect::<Vec<_>>(),
        "every line, in order"
    );
}

/// While MySQL is away a log writer keeps 10,000 lines; past that the
/// oldest go, counted: once it answers again the log has the lines from
/// before, the line saying how many were lost where they were, then the
/// 10,000 kept, in order.
#[test]
fn a_log_writer_loses_lines_only_while_the_database_is_away_and_says_so() {
    const KEPT: u64 = 10_000;
    const LOST: u64 = 50;
    let db = common::TestDb::new();
    let proxy = common::TcpProxy::start(&format!("{}:{}", db.host, db.port));
    let dir = tempfile::tempdir().unwrap();
    let store =
        hone_build::store::mysql::MysqlStore::open(&db.settings_via("127.0.0.1", proxy.port()))
            .expect("open MysqlStore");
    let app = app_on(dir.path(), "", Box::new(store));
    let mut w = buildlog::Writer::new(&app, 9, 1);
    w.push(LogStream::Stdout, "before the outage");
    w.flush();
    proxy.cut();
    for i in 1..=KEPT + LOST {
        w.push(
            LogStream::Stdout,
            &format!("[{i}/{}] compiled", KEPT + LOST),
        );
    }
    w.flush();
    let reader = db.store();
    let page = reader.read_log(9, 1, 0, usize::MAX).unwrap();
    assert_eq!(
        texts(&page),
        ["stdout | before the outage"],
        "nothing more yet"
    );
    proxy.restore();
    w.flush();
    drop(w);
    let page = reader.read_log(9, 1, 0, usize::MAX).unwrap();
    let lines = texts(&page);
    assert_eq!(lines[0], "stdout | before the outage");
    assert_eq!(
        lines[1],
        format!("hone-build | [{LOST} line(s) lost here: the database did not answer]")
    );
    assert_eq!(
        numbered(&page),
        (LOST + 1..=KEPT + LOST).collect::<Vec<_>>(),
        "the newest {KEPT}, in order"
    );
    assert_eq!(lines.len() as u64, 2 + KEPT);
}
