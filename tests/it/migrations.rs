//! Migrations (docs/database.md): on an empty database, on the marketplace's own
//! schema (buildJobs with the old server's columns only, marketplace-only
//! columns elsewhere, existing rows), repeated runs; MySQL and SQLite.

use crate::common;

use common::{TestDb, sqlite_rows, sqlite_store};
use hone_build::platform::Platform;
use hone_build::store::{
    Artifact, ClaimFilter, CompleteOutcome, Deliverer, LogStream, NewLogLine, NewUpload, Refusal,
    Store, UploadOutcome,
};
use std::collections::BTreeMap;

type Rows = Vec<Vec<Option<String>>>;

/// Columns hone-build reads or writes, per table.
const NEEDED: &[(&str, &[&str])] = &[
    (
        "plugins",
        &[
            "id",
            "name",
            "displayName",
            "description",
            "publishedAt",
            "updatedAt",
        ],
    ),
    (
        "pluginVersions",
        &[
            "id",
            "pluginId",
            "version",
            "platforms",
            "downloadUrl",
            "sizeBytes",
            "sha256",
            "publishedAt",
        ],
    ),
    (
        "buildJobs",
        &[
            "id",
            "pluginId",
            "version",
            "platform",
            "hubJobId",
            "status",
            "errorMessage",
            "createdAt",
            "completedAt",
            "callbackToken",
            "attempts",
            "nextAttemptAt",
            "submittedAt",
            "sizeBytes",
            "sha256",
            "entry",
            "updatedAt",
        ],
    ),
];

/// The columns hone-build adds to the marketplace's buildJobs.
const ADDED: &[&str] = &[
    "callbackToken",
    "attempts",
    "nextAttemptAt",
    "submittedAt",
    "sizeBytes",
    "sha256",
    "entry",
    "updatedAt",
    "logAttempt",
];

fn upload(name: &str, version: &str, platforms: &[Platform], now: i64) -> NewUpload {
    NewUpload {
        name: name.into(),
        version: version.into(),
        display_name: None,
        description: None,
        entry: "src/index.ts".into(),
        platforms: platforms.to_vec(),
        now,
        reserved_until_ms: now * 1000,
    }
}

fn record(store: &dyn Store, up: &NewUpload) -> UploadOutcome {
    let mut n = 0;
    let mut tok = || {
        n += 1;
        format!("tok-{n}-{}", common::random_hex())
    };
    store
        .record_upload(up, &mut tok, &mut || Ok(()))
        .expect("record_upload")
}

/// A smoke run of the trait on a migrated database: upload, claim, complete.
fn exercise(store: &dyn Store) {
    let UploadOutcome::Recorded(jobs) = record(
        store,
        &upload("fresh-plugin", "0.1.0", &[Platform::Linux], 10),
    ) else {
        panic!("refused")
    };
    let claimed = store
        .claim(ClaimFilter::Ids(vec![jobs[0].id]), 10_000, 1_000)
        .unwrap();
    assert_eq!(
        claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
        [jobs[0].id]
    );
    assert_eq!(claimed[0].log_attempt, 1);
    // The log tables exist and work.
    let line = NewLogLine {
        at_ms: 10_500,
        stream: LogStream::HoneBuild,
        text: "submitted".into(),
    };
    assert_eq!(
        store.append_log(jobs[0].id, 1, &[line], 1 << 20).unwrap(),
        9
    );
    let page = store.read_log(jobs[0].id, 1, 0, 10).unwrap();
    assert_eq!(page.lines.len(), 1);
    assert_eq!(page.lines[0].text, "submitted");
    let a = Artifact {
        size: 3,
        sha256: "abc".into(),
        now: 20,
    };
    assert_eq!(
        store
            .complete_job(
                jobs[0].id,
                Deliverer::Callback(jobs[0].callback_token.as_deref()),
                &a,
                &mut || Ok(())
            )
            .unwrap(),
        CompleteOutcome::Completed
    );
    let v = store.version_row("fresh-plugin", "0.1.0").unwrap().unwrap();
    assert_eq!(
        v.download_url.as_deref(),
        Some("/api/v1/pkg/fresh-plugin/0.1.0?platform=linux-x64")
    );
}

// ---------------------------------------------------------------------------
// MySQL
// ---------------------------------------------------------------------------

/// Runs the marketplace schema fixture (statements end with `;` at a line end).
fn load_marketplace_schema(db: &TestDb) {
    let text = crate::fixtures::MARKETPLACE_SCHEMA;
    let sql: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| format!("{l}\n"))
        .collect();
    for stmt in sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        db.exec(stmt);
    }
}

/// `table -> [column, ...]` in ordinal order.
fn mysql_columns(db: &TestDb) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in db.rows(&format!(
        "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS
         WHERE TABLE_SCHEMA = '{}' ORDER BY TABLE_NAME, ORDINAL_POSITION",
        db.name
    )) {
        out.entry(r[0].clone().unwrap())
            .or_default()
            .push(r[1].clone().unwrap());
    }
    out
}

/// Everything about the schema that a migration could change: columns
/// (type, nullability, default, extra) and indexes.
fn mysql_schema_dump(db: &TestDb) -> (Rows, Rows) {
    let cols = db.rows(&format!(
        "SELECT TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA,
                CHARACTER_SET_NAME, COLLATION_NAME
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{}' ORDER BY TABLE_NAME, ORDINAL_POSITION",
        db.name
    ));
    let idx = db.rows(&format!(
        "SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE
         FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = '{}' ORDER BY 1, 2, 3",
        db.name
    ));
    (cols, idx)
}

/// Full rows of each table, restricted to `columns` (the pre-migration ones).
fn mysql_row_dump(db: &TestDb, columns: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, Rows> {
    columns
        .iter()
        .map(|(t, cols)| {
            let list = cols
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ");
            (
                t.clone(),
                // Every column in order (buildLogs has no id).
                db.rows(&format!("SELECT {list} FROM `{t}` ORDER BY {list}")),
            )
        })
        .collect()
}

fn assert_needed_columns(cols: &BTreeMap<String, Vec<String>>) {
    for (table, needed) in NEEDED {
        let have = cols
            .get(*table)
            .unwrap_or_else(|| panic!("table {table} missing: {cols:?}"));
        for c in *needed {
            assert!(
                have.iter().any(|h| h == c),
                "{table}.{c} missing; have {have:?}"
            );
        }
    }
}

#[test]
fn mysql_empty_database_gets_every_table_and_column() {
    let db = TestDb::new();
    assert!(mysql_columns(&db).is_empty());
    let store = db.store();
    store.migrate().expect("migrate");
    let cols = mysql_columns(&db);
    assert_needed_columns(&cols);
    // Uniqueness the code relies on (upserts, INSERT IGNORE).
    let mut unique = db.rows(&format!(
        "SELECT TABLE_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) FROM information_schema.STATISTICS
         WHERE TABLE_SCHEMA = '{}' AND NON_UNIQUE = 0 AND INDEX_NAME <> 'PRIMARY'
         GROUP BY TABLE_NAME, INDEX_NAME ORDER BY 1, 2",
        db.name
    ));
    unique.sort(); // the server's collation may order case-insensitively
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        unique,
        vec![
            vec![s("pluginVersions"), s("pluginId,version")],
            vec![s("plugins"), s("name")]
        ]
    );
    exercise(&store);
}

#[test]
fn mysql_marketplace_schema_is_extended_not_rewritten() {
    let db = TestDb::new();
    load_marketplace_schema(&db);
    let cols_before = mysql_columns(&db);
    let (schema_before, idx_before) = mysql_schema_dump(&db);
    let rows_before = mysql_row_dump(&db, &cols_before);
    assert_eq!(rows_before["buildJobs"].len(), 7, "fixture loaded");

    db.store()
        .migrate()
        .expect("migrate on the marketplace schema");

    let cols_after = mysql_columns(&db);
    assert_needed_columns(&cols_after);
    for c in ADDED {
        assert!(
            !cols_before["buildJobs"].contains(&c.to_string()),
            "fixture must not have {c}"
        );
        assert!(
            cols_after["buildJobs"].contains(&c.to_string()),
            "buildJobs.{c} added"
        );
    }
    // Every pre-existing column keeps its position, type, nullability, default.
    let (schema_after, idx_after) = mysql_schema_dump(&db);
    for old in &schema_before {
        assert!(
            schema_after.contains(old),
            "column definition changed or dropped: {old:?}"
        );
    }
    for old in &idx_before {
        assert!(idx_after.contains(old), "index changed or dropped: {old:?}");
    }
    assert_eq!(
        cols_after["plugins"], cols_before["plugins"],
        "plugins untouched (marketplace columns kept)"
    );
    assert_eq!(cols_after["pluginVersions"], cols_before["pluginVersions"]);
    for c in ["downloads", "authorEmail", "verified"] {
        assert!(cols_after["plugins"].contains(&c.to_string()));
    }
    // Every row and value untouched.
    assert_eq!(mysql_row_dump(&db, &cols_before), rows_before);
    // Old rows get neutral values in the new columns.
    let s = |v: &str| Some(v.to_string());
    let added = db
        .rows("SELECT DISTINCT callbackToken, attempts, nextAttemptAt, submittedAt FROM buildJobs");
    assert_eq!(added, vec![vec![None, s("0"), s("0"), None]]);
}

#[test]
fn mysql_migrating_again_is_a_noop() {
    for marketplace in [false, true] {
        let db = TestDb::new();
        if marketplace {
            load_marketplace_schema(&db);
        }
        let store = db.store();
        store.migrate().expect("first migrate");
        let schema1 = mysql_schema_dump(&db);
        let cols = mysql_columns(&db);
        let rows1 = mysql_row_dump(&db, &cols);
        store.migrate().expect("second migrate");
        assert_eq!(
            mysql_schema_dump(&db),
            schema1,
            "second migrate changed the schema"
        );
        db.store().migrate().expect("third migrate, another pool");
        assert_eq!(
            mysql_schema_dump(&db),
            schema1,
            "third migrate changed the schema"
        );
        assert_eq!(mysql_row_dump(&db, &cols), rows1);
    }
}

#[test]
fn mysql_old_server_rows_are_usable_after_migration() {
    let db = TestDb::new();
    load_marketplace_schema(&db);
    let store = db.store();
    store.migrate().expect("migrate");

    // Legacy callbacks resolve to the old jobs (dashes in the version too).
    let j = store
        .job_by_legacy_callback("git-blame-1.1.0-beta.2-linux")
        .unwrap()
        .found()
        .expect("old job");
    assert_eq!(
        (j.id, j.status.as_str(), j.callback_token.as_deref()),
        (4, "building", None)
    );
    assert_eq!(j.hub_job_id.as_deref(), Some("hub-0004"));
    assert_eq!(j.created_at, 1_700_400_000);
    let j = store
        .job_by_legacy_callback("git-blame-1.0.0-windows")
        .unwrap()
        .found()
        .expect("old failed job");
    assert_eq!((j.id, j.status.as_str()), (3, "failed"));
    assert_eq!(
        store.job_by_id(6).unwrap().unwrap().plugin_name,
        "my-plugin"
    );

    // Old pending rows (no callback token) are never claimed.
    assert!(
        store
            .claim(ClaimFilter::Due(100), i64::MAX / 4, 1_000)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .claim(ClaimFilter::Ids(vec![5]), 0, 1_000)
            .unwrap()
            .is_empty()
    );
    // ... until `retry` gives them a token (issue #11 item 13): from then on
    // they are hone-build's, with the default entry (the old server
    // recorded none).
    assert_eq!(
        store
            .retry_failed("git-blame", "1.1.0-beta.2", Some("macos"), 1, &mut || {
                "tok-5".to_string()
            })
            .unwrap(),
        1
    );
    let j = store.job_by_id(5).unwrap().unwrap();
    assert_eq!(
        (
            j.status.as_str(),
            j.callback_token.as_deref(),
            j.entry.as_deref()
        ),
        ("pending", Some("tok-5"), Some("src/index.ts"))
    );
    assert_eq!(
        store
            .claim(ClaimFilter::Ids(vec![5]), 1_000, 1_000)
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect::<Vec<_>>(),
        [5]
    );

    // Uploads see the old jobs.
    let out = record(
        &store,
        &upload(
            "git-blame",
            "1.1.0-beta.2",
            &[Platform::Linux],
            1_800_000_000,
        ),
    );
    assert!(
        matches!(out, UploadOutcome::Refused(Refusal::BuildInProgress)),
        "{out:?}"
    );
    let out = record(
        &store,
        &upload("my-plugin", "0.3.0", &[Platform::Linux], 1_800_000_000),
    );
    assert!(
        matches!(out, UploadOutcome::Refused(Refusal::VersionExists)),
        "{out:?}"
    );
    let out = record(
        &store,
        &upload(
            "git-blame",
            "1.0.0",
            &[Platform::Macos, Platform::Linux],
            1_800_000_000,
        ),
    );
    let UploadOutcome::Recorded(jobs) = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        jobs.iter()
            .map(|j| (j.id, j.platform.as_str()))
            .collect::<Vec<_>>(),
        [(3, "windows")]
    );
    assert!(jobs[0].callback_token.is_some());

    // A delivery for the old building job completes it and describes the
    // version row; marketplace-only columns stay as they were.
    let a = Artifact {
        size: 4096,
        sha256: "c".repeat(64),
        now: 1_800_000_100,
    };
    assert_eq!(
        store
            .complete_job(4, Deliverer::Callback(None), &a, &mut || Ok(()))
            .unwrap(),
        CompleteOutcome::Completed
    );
    let s = |v: &str| Some(v.to_string());
    let row = db.rows("SELECT platforms, downloadUrl, sizeBytes, changelog, yanked, publishedAt FROM pluginVersions WHERE id = 2");
    let platforms: Vec<String> = serde_json::from_str(row[0][0].as_deref().unwrap()).unwrap();
    assert_eq!(platforms, ["linux-x64"]);
    assert_eq!(
        row[0][1..],
        [
            s("/api/v1/pkg/git-blame/1.1.0-beta.2?platform=linux-x64"),
            s("4096"),
            None,
            s("0"),
            s("1700400000")
        ]
    );
    assert_eq!(
        db.rows("SELECT downloads, authorEmail, verified, displayName FROM plugins WHERE id = 1"),
        vec![vec![
            s("1234"),
            s("dev@example.com"),
            s("1"),
            s("Git Blame")
        ]]
    );

    // A new plugin in the marketplace's schema (displayName NOT NULL there).
    exercise(&store);
    assert_eq!(
        db.rows("SELECT displayName, downloads, authorEmail, verified FROM plugins WHERE name = 'fresh-plugin'"),
        vec![vec![s("fresh-plugin"), s("0"), None, s("0")]]
    );
}

// ---------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------

/// The old server's tables (spec columns only) with rows, in SQLite syntax.
const SQLITE_OLD_SCHEMA: &str = "
CREATE TABLE plugins (
  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, displayName TEXT NOT NULL,
  description TEXT NULL, publishedAt INTEGER NOT NULL, updatedAt INTEGER NOT NULL,
  downloads INTEGER NOT NULL DEFAULT 0);
CREATE TABLE pluginVersions (
  id INTEGER PRIMARY KEY AUTOINCREMENT, pluginId INTEGER NOT NULL, version TEXT NOT NULL,
  platforms TEXT NULL, downloadUrl TEXT NULL, sizeBytes INTEGER NULL, sha256 TEXT NULL,
  publishedAt INTEGER NOT NULL, changelog TEXT NULL, UNIQUE (pluginId, version));
CREATE TABLE buildJobs (
  id INTEGER PRIMARY KEY AUTOINCREMENT, pluginId INTEGER NOT NULL, version TEXT NOT NULL,
  platform TEXT NOT NULL, hubJobId TEXT NULL, status TEXT NOT NULL, errorMessage TEXT NULL,
  createdAt INTEGER NOT NULL, completedAt INTEGER NULL);
INSERT INTO plugins VALUES (1, 'git-blame', 'Git Blame', 'who wrote it', 1700000000, 1700500000, 42);
INSERT INTO pluginVersions VALUES (1, 1, '1.0.0', '[\"linux-x64\"]', '/api/v1/pkg/git-blame/1.0.0?platform=linux-x64', 10, 'aa', 1700000000, 'notes');
INSERT INTO pluginVersions VALUES (2, 1, '1.1.0-beta.2', '[]', NULL, NULL, NULL, 1700400000, NULL);
INSERT INTO buildJobs VALUES (1, 1, '1.0.0', 'linux', 'hub-1', 'completed', NULL, 1700000000, 1700000500);
INSERT INTO buildJobs VALUES (2, 1, '1.0.0', 'windows', 'hub-2', 'failed', 'boom', 1700000000, NULL);
INSERT INTO buildJobs VALUES (3, 1, '1.1.0-beta.2', 'linux', 'hub-3', 'building', NULL, 1700400000, NULL);
INSERT INTO buildJobs VALUES (4, 1, '1.1.0-beta.2', 'macos', NULL, 'pending', NULL, 1700400000, NULL);
";

fn sqlite_conn(dir: &std::path::Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(dir.join(common::SQLITE_FILE)).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    c
}

fn sqlite_columns(c: &rusqlite::Connection) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in ["plugins", "pluginVersions", "buildJobs"] {
        for r in sqlite_rows(
            c,
            &format!("SELECT name FROM pragma_table_info('{t}') ORDER BY cid"),
        ) {
            out.entry(t.to_string())
                .or_default()
                .push(r[0].clone().unwrap());
        }
    }
    out
}

/// Table and index definitions plus every column's declaration.
fn sqlite_schema_dump(c: &rusqlite::Connection) -> Rows {
    let mut d = sqlite_rows(
        c,
        "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name",
    );
    for t in ["plugins", "pluginVersions", "buildJobs"] {
        d.extend(sqlite_rows(c, &format!("SELECT '{t}', cid, name, type, \"notnull\", dflt_value, pk FROM pragma_table_info('{t}')")));
    }
    d
}

fn sqlite_row_dump(
    c: &rusqlite::Connection,
    cols: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, Rows> {
    cols.iter()
        .map(|(t, cs)| {
            let list = cs
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ");
            (
                t.clone(),
                sqlite_rows(c, &format!("SELECT {list} FROM \"{t}\" ORDER BY id")),
            )
        })
        .collect()
}

#[test]
fn sqlite_empty_file_gets_every_table_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path());
    store.migrate().expect("migrate");
    let c = sqlite_conn(dir.path());
    assert_needed_columns(&sqlite_columns(&c));
    let dump = sqlite_schema_dump(&c);
    store.migrate().expect("second migrate");
    sqlite_store(dir.path())
        .migrate()
        .expect("third migrate, another connection");
    assert_eq!(
        sqlite_schema_dump(&c),
        dump,
        "migrating again changed the schema"
    );
    exercise(&store);
}

#[test]
fn sqlite_old_tables_are_extended_not_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let c = sqlite_conn(dir.path());
    c.execute_batch(SQLITE_OLD_SCHEMA).expect("old schema");
    let cols_before = sqlite_columns(&c);
    let rows_before = sqlite_row_dump(&c, &cols_before);
    let schema_before = sqlite_schema_dump(&c);

    let store = sqlite_store(dir.path());
    store.migrate().expect("migrate");
    let cols_after = sqlite_columns(&c);
    assert_needed_columns(&cols_after);
    for (t, cs) in &cols_before {
        assert_eq!(
            &cols_after[t][..cs.len()],
            &cs[..],
            "{t}: existing columns kept in place"
        );
    }
    assert!(cols_after["plugins"].contains(&"downloads".to_string()));
    assert_eq!(
        sqlite_row_dump(&c, &cols_before),
        rows_before,
        "rows untouched"
    );
    for old in schema_before
        .iter()
        .filter(|r| r[0].as_deref() != Some("table"))
    {
        // Column declarations (pragma rows) are unchanged; table SQL grows by ALTERs.
        assert!(sqlite_schema_dump(&c).contains(old), "changed: {old:?}");
    }

    let dump = sqlite_schema_dump(&c);
    store.migrate().expect("second migrate");
    store.migrate().expect("third migrate");
    assert_eq!(
        sqlite_schema_dump(&c),
        dump,
        "migrating again changed the schema"
    );
    assert_eq!(sqlite_row_dump(&c, &cols_before), rows_before);

    // Old rows through the trait.
    let j = store
        .job_by_legacy_callback("git-blame-1.1.0-beta.2-linux")
        .unwrap()
        .found()
        .expect("old job");
    assert_eq!(
        (
            j.id,
            j.status.as_str(),
            j.attempts,
            j.callback_token.as_deref()
        ),
        (3, "building", 0, None)
    );
    assert!(
        store
            .claim(ClaimFilter::Due(100), i64::MAX / 4, 1_000)
            .unwrap()
            .is_empty(),
        "no token: never claimed"
    );
    let out = record(
        &store,
        &upload(
            "git-blame",
            "1.1.0-beta.2",
            &[Platform::Linux],
            1_800_000_000,
        ),
    );
    assert!(
        matches!(out, UploadOutcome::Refused(Refusal::BuildInProgress)),
        "{out:?}"
    );
    let a = Artifact {
        size: 7,
        sha256: "dd".into(),
        now: 1_800_000_000,
    };
    assert_eq!(
        store
            .complete_job(3, Deliverer::Callback(None), &a, &mut || Ok(()))
            .unwrap(),
        CompleteOutcome::Completed
    );
    let v = store
        .version_row("git-blame", "1.1.0-beta.2")
        .unwrap()
        .unwrap();
    assert_eq!(
        v.download_url.as_deref(),
        Some("/api/v1/pkg/git-blame/1.1.0-beta.2?platform=linux-x64")
    );
    exercise(&store);
}

/// Item 12 of issue #11: on the marketplace's own schema, narrowed here to
/// the `VARCHAR(32)` version column the issue found in production, a
/// longer version is refused with 400 naming the field and the column's
/// width (read from `information_schema` at migration), not a 500 from the
/// database; nothing is written.
#[test]
fn mysql_values_wider_than_the_marketplace_columns_are_refused() {
    let db = TestDb::new();
    load_marketplace_schema(&db);
    db.exec("ALTER TABLE pluginVersions MODIFY version VARCHAR(32) NOT NULL");
    let sim = common::Sim::start(&["--build-delay-ms", "600000"]);
    sim.set(serde_json::json!({"never_callback": true}));
    let svc = common::Service::builder()
        .set("PERRY_HUB_URL", sim.url())
        .set("PERRY_HUB_LICENSE_KEY", "sim-license")
        .envs(db.service_env(&db.host, db.port))
        .start();
    let tar = crate::fixtures::tarball_sized(60, 2000);
    let upload = |query: &str| {
        common::http(
            "POST",
            &svc.url(&format!("/upload?{query}")),
            &[],
            Some(&tar),
        )
    };
    let counts = || {
        db.rows(
            "SELECT (SELECT COUNT(*) FROM plugins), (SELECT COUNT(*) FROM pluginVersions), \
             (SELECT COUNT(*) FROM buildJobs)",
        )
    };
    let before = counts();
    let v33 = format!("1.0.0-{}", "b".repeat(27));
    assert_eq!(v33.len(), 33);
    let r = upload(&format!("name=narrow&version={v33}&platforms=linux"));
    assert_eq!(r.status, 400, "{}", r.text());
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("version") && msg.contains("32"),
        "message names the field and the limit: {msg}"
    );
    let long_display = "D".repeat(256);
    let r = upload(&format!(
        "name=narrow&version=1.0.0&displayName={long_display}&platforms=linux"
    ));
    assert_eq!(r.status, 400, "{}", r.text());
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(msg.contains("displayName") && msg.contains("255"), "{msg}");
    assert_eq!(counts(), before, "nothing written");
    assert!(sim.submissions().is_empty());
    let r = upload(&format!(
        "name=narrow&version={}&platforms=linux",
        &v33[..32]
    ));
    assert_eq!(r.status, 200, "{}", r.text());
}
