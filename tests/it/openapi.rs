//! docs/openapi.yaml stays true (docs/api.md, `GET /openapi.json`):
//!
//! - its paths and methods are exactly the routing table's (`routes::ROUTES`),
//!   both directions;
//! - real answers of the service — uploads, builds followed to the end,
//!   status while building and after, build logs (plain, by attempt,
//!   followed), build pages, artifact deliveries, health, metrics, and the
//!   errors of each — are validated against the description: the status is
//!   documented for the operation, the media type is one it lists, required
//!   headers are there with values their schemas allow, and a JSON body
//!   matches the schema
//!   (JSON Schema 2020-12, with the `jsonschema` crate). Every served
//!   operation must have been checked at least once. On both stores.
//!
//! `make check-api` adds a fuzzer (schemathesis) against a live instance.

use crate::common::{
    self, Resp, Service, ServiceBuilder, Sim, StoreKind, TestDb, both_stores, http,
};
use crate::fixtures::{self, Fill};
use hone_build::routes::{ROUTES, openapi::DESCRIPTION};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
const SECRET: &str = "openapi-test-secret";

fn description() -> Value {
    serde_json::from_str(DESCRIPTION).expect("the served description is JSON")
}

/// `/status/:name/:version` → `/status/{name}/{version}`.
fn template(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|s| match s.strip_prefix(':') {
            Some(p) => format!("{{{p}}}"),
            None => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `(METHOD, path template)` of every operation the description serves.
fn described_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(*m).is_some() {
                out.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn description_and_routing_table_name_the_same_operations() {
    let doc = description();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    let described = described_operations(&doc);
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), template(r.pattern)))
        .collect();
    let undocumented: Vec<_> = routed.difference(&described).collect();
    let unrouted: Vec<_> = described.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from docs/openapi.yaml: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "operations in docs/openapi.yaml that no route serves: {unrouted:?}"
    );
    // Every path parameter of a template is declared, and nothing else.
    for (method, path) in &described {
        let op = &doc["paths"][path][method.to_lowercase()];
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let in_template: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        assert_eq!(declared, in_template, "{method} {path}: path parameters");
    }
    // Every reference points at something.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 20, "references found: {}", refs.len());
    for r in refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{r}: not local"));
        assert!(doc.pointer(pointer).is_some(), "{r} points at nothing");
    }
}

/// Every `$ref` value inside `v`.
fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// Validates answers against the description and remembers what it checked.
struct Checker {
    doc: Value,
    checked: BTreeMap<(String, String), BTreeSet<u16>>,
}

/// RFC 6901 escaping of one pointer token.
fn token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

impl Checker {
    fn new() -> Checker {
        Checker {
            doc: description(),
            checked: BTreeMap::new(),
        }
    }

    /// The value at `pointer`, following a `$ref` there; with the pointer
    /// it was found at.
    fn resolve(&self, pointer: String) -> (String, Value) {
        let v = self
            .doc
            .pointer(&pointer)
            .unwrap_or_else(|| panic!("nothing at {pointer}"))
            .clone();
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => self.resolve(r.trim_start_matches('#').to_string()),
            None => (pointer, v),
        }
    }

    /// Errors of `instance` against the schema at `pointer` (inside the
    /// description, so its `$ref`s resolve).
    fn schema_errors(&self, pointer: &str, instance: &Value) -> Vec<String> {
        let mut root = self.doc.clone();
        // A URI fragment: the braces of a path template are percent-encoded.
        let fragment = pointer.replace('{', "%7B").replace('}', "%7D");
        root["$ref"] = json!(format!("#{fragment}"));
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&root)
            .unwrap_or_else(|e| panic!("schema at {pointer}: {e}"));
        validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    /// Checks one answer of `method path` (`path` a template of the
    /// description) against the operation's documented responses.
    #[track_caller]
    fn check(&mut self, method: &str, path: &str, r: &Resp) {
        let op = format!("/paths/{}/{}", token(path), method.to_lowercase());
        assert!(
            self.doc.pointer(&op).is_some(),
            "{method} {path} is not in the description"
        );
        let status = r.status.to_string();
        assert!(
            self.doc
                .pointer(&format!("{op}/responses/{status}"))
                .is_some(),
            "{method} {path}: status {status} is not documented; body {}",
            r.text()
        );
        let (at, response) = self.resolve(format!("{op}/responses/{status}"));
        for (name, _) in response["headers"].as_object().into_iter().flatten() {
            let (at, header) = self.resolve(format!("{at}/headers/{}", token(name)));
            let Some(value) = r.header(name) else {
                assert!(
                    header["required"] != true,
                    "{method} {path} {status}: header {name} missing"
                );
                continue;
            };
            // A header's value is text; an integer schema reads it as one.
            let instance = match header["schema"]["type"].as_str() {
                Some("integer") => value
                    .parse::<i64>()
                    .map_or_else(|_| json!(value), |n| json!(n)),
                _ => json!(value),
            };
            let errors = self.schema_errors(&format!("{at}/schema"), &instance);
            assert!(
                errors.is_empty(),
                "{method} {path} {status}: header {name}: {value}: {errors:?}"
            );
        }
        let content_type = r.header("content-type").unwrap_or_default();
        let media = content_type.split(';').next().unwrap_or_default().trim();
        let content = response["content"].as_object().expect("content");
        assert!(
            content.contains_key(media),
            "{method} {path} {status}: Content-Type {content_type} is not one of {:?}",
            content.keys().collect::<Vec<_>>()
        );
        let instance = if media == "application/json" {
            r.json()
        } else {
            Value::String(r.text())
        };
        let errors =
            self.schema_errors(&format!("{at}/content/{}/schema", token(media)), &instance);
        assert!(
            errors.is_empty(),
            "{method} {path} {status} does not match the description: {errors:#?}\nbody: {}",
            r.text()
        );
        self.checked
            .entry((method.to_string(), path.to_string()))
            .or_default()
            .insert(r.status);
    }

    /// An error answered outside any operation (unknown path, wrong method)
    /// still has the documented error body.
    #[track_caller]
    fn check_error_body(&self, r: &Resp) {
        let errors = self.schema_errors("/components/schemas/Error", &r.json());
        assert!(errors.is_empty(), "{errors:?}: {}", r.text());
    }

    /// Every served operation was checked at least once.
    fn assert_all_operations_checked(&self) {
        let all = described_operations(&self.doc);
        let seen: BTreeSet<(String, String)> = self.checked.keys().cloned().collect();
        let missing: Vec<_> = all.difference(&seen).collect();
        assert!(
            missing.is_empty(),
            "operations never checked against the description: {missing:?}"
        );
        eprintln!(
            "openapi: statuses checked per operation: {:?}",
            self.checked
        );
    }
}

fn upload(svc: &Service, query: &str, body: &[u8], headers: &[(&str, &str)]) -> Resp {
    http(
        "POST",
        &svc.url(&format!("/upload?{query}")),
        headers,
        Some(body),
    )
}

const AUTH: (&str, &str) = ("Authorization", "Bearer openapi-test-secret");

/// Polls `/status` until `overall` is no longer `building`, checking every
/// answer; true when a build under way showed its stage or progress.
fn follow_status(c: &mut Checker, svc: &Service, name: &str, version: &str) -> (Value, bool) {
    let path = format!("/status/{name}/{version}");
    let mut live = false;
    let mut last = Value::Null;
    let done = common::wait_until(Duration::from_secs(60), || {
        let r = http("GET", &svc.url(&path), &[], None);
        c.check("GET", "/status/{name}/{version}", &r);
        last = r.json();
        live |= last["builds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b.get("stage").is_some() || b.get("progress").is_some());
        last["overall"] != "building"
    });
    assert!(done, "still building: {last}");
    (last, live)
}

/// The build log and the build page of oa-plugin 1.0.0 (built for linux
/// and macos, completed), and their errors.
fn check_logs_and_build_page(c: &mut Checker, svc: &Service) {
    const LOG: &str = "/logs/{name}/{version}/{platform}";
    const PAGE: &str = "/builds/{name}/{version}";
    let base = "/logs/oa-plugin/1.0.0";
    for (target, status) in [
        (format!("{base}/linux"), 200),
        (format!("{base}/darwin-arm64"), 200),
        (format!("{base}/linux?attempt=1&follow=0"), 200),
        // A follow of a build that ended: its lines, the end, at once.
        (format!("{base}/linux?follow=1"), 200),
        (format!("{base}/linux?attempt=2"), 404),
        (format!("{base}/windows"), 404),
        (format!("{base}/plan9"), 404),
        ("/logs/nobody/1.0.0/linux?follow=1".to_string(), 404),
        (format!("{base}/linux?attempt=0"), 400),
        (format!("{base}/linux?follow=maybe"), 400),
        (format!("{base}/linux?attempt=1&attempt=1"), 400),
        ("/logs/..x/1.0.0/linux".to_string(), 400),
    ] {
        let r = http("GET", &svc.url(&target), &[], None);
        assert_eq!(r.status, status, "{target}: {}", r.text());
        c.check("GET", LOG, &r);
        if status == 200 {
            assert_eq!(r.header("x-log-attempt"), Some("1"), "{target}");
            assert!(r.text().contains("stored"), "{target}: {}", r.text());
        }
        if target.ends_with("follow=1") && status == 200 {
            let text = r.text();
            assert!(
                text.trim_end().ends_with("hone-build | build completed"),
                "{text}"
            );
        }
    }
    for (target, status) in [
        ("/builds/oa-plugin/1.0.0", 200),
        ("/builds/oa-plugin/9.9.9", 404),
        ("/builds/oa-plugin/..x", 400),
    ] {
        let r = http("GET", &svc.url(target), &[], None);
        assert_eq!(r.status, status, "{target}: {}", r.text());
        c.check("GET", PAGE, &r);
        if status == 200 {
            assert!(r.text().contains("<html"), "{}", r.text());
        }
    }
}

/// A service with the upload secret, on `db` (a MySQL database of its own)
/// or on the embedded store.
fn service(db: Option<&TestDb>) -> ServiceBuilder {
    let b = Service::builder().set("UPLOAD_SECRET", SECRET);
    match db {
        Some(db) => b.envs(db.service_env(&db.host, db.port)),
        None => b,
    }
}

both_stores!(answers_of_every_route_match_the_description);

fn answers_of_every_route_match_the_description(kind: StoreKind) {
    let mut c = Checker::new();
    let new_db = || (kind == StoreKind::Mysql).then(TestDb::new);

    // --- Today's hub (builds followed over the WebSocket), slow enough to
    // see a build under way.
    let sim = Sim::start_real(&["--build-delay-ms", "300", "--stage-delay-ms", "150"]);
    let db = new_db();
    let svc = service(db.as_ref())
        .set("PERRY_HUB_URL", sim.url())
        .set("PERRY_HUB_WS_URL", sim.ws_url())
        .set("PERRY_HUB_LICENSE_KEY", "sim-license")
        .set("MAX_BODY_BYTES", "65536")
        .start();

    let r = http("GET", &svc.url("/health"), &[], None);
    c.check("GET", "/health", &r);
    assert_eq!(r.json()["store"], kind.name(), "{}", r.text());
    let metrics = http("GET", &svc.url("/metrics"), &[], None);
    c.check("GET", "/metrics", &metrics);
    let served = http("GET", &svc.url("/openapi.json"), &[], None);
    c.check("GET", "/openapi.json", &served);
    assert_eq!(served.text(), DESCRIPTION, "served as built");

    let tar = fixtures::tarball("openapi", Fill::Unique);
    let q = "name=oa-plugin&version=1.0.0&platforms=linux,macos&displayName=OpenAPI+test";
    // Refusals first: none of them records anything.
    for (query, headers, body) in [
        (q, vec![], &tar[..]),
        (q, vec![("Authorization", "Bearer wrong")], &tar[..]),
        ("name=.bad&version=1.0.0", vec![AUTH], &tar[..]),
        (
            "name=oa-plugin&version=1.0.0&platforms=beos",
            vec![AUTH],
            &tar[..],
        ),
        (q, vec![AUTH], b"not a tarball"),
        (
            q,
            vec![AUTH, ("Content-Type", "multipart/form-data; boundary=x")],
            &tar[..],
        ),
        (q, vec![AUTH], &vec![0u8; 70_000][..]),
    ] {
        let r = upload(&svc, query, body, &headers);
        assert!(matches!(r.status, 400 | 401 | 413), "{}", r.text());
        c.check("POST", "/upload", &r);
    }
    let r = http("GET", &svc.url("/status/oa-plugin/1.0.0"), &[], None);
    assert_eq!(r.status, 404, "refused uploads recorded nothing");
    c.check("GET", "/status/{name}/{version}", &r);

    let r = upload(&svc, q, &tar, &[AUTH]);
    assert_eq!(r.status, 200, "{}", r.text());
    c.check("POST", "/upload", &r);
    let r = upload(&svc, q, &tar, &[AUTH]);
    assert_eq!(r.json()["code"], "BUILD_IN_PROGRESS");
    c.check("POST", "/upload", &r);
    let (done, live) = follow_status(&mut c, &svc, "oa-plugin", "1.0.0");
    assert_eq!(done["overall"], "completed", "{done}");
    assert!(live, "a build under way showed its stage or progress");
    // Completed: from memory now, same shape.
    let r = http("GET", &svc.url("/status/oa-plugin/1.0.0"), &[], None);
    c.check("GET", "/status/{name}/{version}", &r);
    let r = upload(&svc, q, &tar, &[AUTH]);
    assert_eq!(r.json()["code"], "VERSION_EXISTS");
    c.check("POST", "/upload", &r);
    let r = upload(&svc, "name=OA-plugin&version=2.0.0", &tar, &[AUTH]);
    assert_eq!(r.json()["code"], "CASE_CONFLICT");
    c.check("POST", "/upload", &r);
    let r = http("GET", &svc.url("/status/oa-plugin/..x"), &[], None);
    assert_eq!(r.status, 400);
    c.check("GET", "/status/{name}/{version}", &r);
    check_logs_and_build_page(&mut c, &svc);

    // Deliveries to the callback route: unknown job, wrong token, bad id,
    // old form without the secret.
    for (target, status) in [
        ("/artifact/999999?token=00", 404),
        ("/artifact/1?token=00", 401),
        ("/artifact/1", 401),
        ("/artifact/a%20b?token=00", 400),
        ("/artifact/oa-plugin-1.0.0-linux?token=wrong", 401),
    ] {
        let r = http("POST", &svc.url(target), &[], Some(b"aGVsbG8="));
        assert_eq!(r.status, status, "{target}: {}", r.text());
        c.check("POST", "/artifact/{callbackId}", &r);
    }
    // Outside any operation: the error body all the same.
    let r = http("GET", &svc.url("/nowhere"), &[], None);
    assert_eq!(r.status, 404);
    c.check_error_body(&r);
    let r = http("DELETE", &svc.url("/health"), &[], None);
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
    c.check_error_body(&r);
    drop(svc);
    drop(sim);

    // --- A hub that calls back (deliveries with each job's token), and
    // never on its own: the test delivers.
    let sim = Sim::start(&["--never-callback"]);
    let db = new_db();
    let svc = service(db.as_ref())
        .set("PERRY_HUB_URL", sim.url())
        .set("PERRY_HUB_LICENSE_KEY", "sim-license")
        .start();
    let r = upload(
        &svc,
        "name=oa-cb&version=1.0&platforms=linux,windows",
        &tar,
        &[AUTH],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    c.check("POST", "/upload", &r);
    let program = b"\x7fELF a program".to_vec();
    let linux = sim.callback("oa-cb", "1.0", "linux");
    let url = svc.url(&linux.path_query);
    let raw = [("Content-Type", "application/octet-stream")];
    for _ in 0..2 {
        // The second delivery of the same bytes is harmless.
        let r = http("POST", &url, &raw, Some(&program));
        assert_eq!(r.status, 200, "{}", r.text());
        c.check("POST", "/artifact/{callbackId}", &r);
    }
    let r = http("POST", &url, &raw, Some(b"other bytes"));
    assert_eq!(r.json()["code"], "ARTIFACT_CONFLICT");
    c.check("POST", "/artifact/{callbackId}", &r);
    let windows = sim.callback("oa-cb", "1.0", "windows");
    let sha = [("x-artifact-sha256", &"0".repeat(64)[..])];
    let r = http(
        "POST",
        &svc.url(&windows.path_query),
        &sha,
        Some(b"aGVsbG8="),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    c.check("POST", "/artifact/{callbackId}", &r);
    let r = http("POST", &svc.url(&windows.path_query), &[], Some(b""));
    assert_eq!(r.status, 400, "empty body: {}", r.text());
    c.check("POST", "/artifact/{callbackId}", &r);
    drop(svc);
    drop(sim);

    // --- No hub at all: the upload is recorded, its jobs wait to be
    // submitted again (nextAttemptAt, lastError); then (embedded store) the
    // database file goes away: health 503, status 503, metrics still 200.
    let db = new_db();
    let svc = service(db.as_ref()).start();
    let r = upload(
        &svc,
        "name=oa-nohub&version=1.0.0&platforms=linux",
        &tar,
        &[AUTH],
    );
    assert_eq!(r.json()["builds"][0]["status"], "pending", "{}", r.text());
    c.check("POST", "/upload", &r);
    let r = http("GET", &svc.url("/status/oa-nohub/1.0.0"), &[], None);
    assert!(
        r.json()["builds"][0].get("nextAttemptAt").is_some(),
        "{}",
        r.text()
    );
    c.check("GET", "/status/{name}/{version}", &r);
    let r = http("GET", &svc.url("/builds/oa-nohub/1.0.0"), &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    c.check("GET", "/builds/{name}/{version}", &r);
    if kind == StoreKind::Mysql {
        c.assert_all_operations_checked();
        return;
    }
    std::fs::remove_file(svc.dir().join("data").join(common::SQLITE_FILE)).unwrap();
    let r = http("GET", &svc.url("/health"), &[], None);
    assert_eq!(r.status, 503, "{}", r.text());
    c.check("GET", "/health", &r);
    for (path, template) in [
        ("/status/oa-nohub/1.0.0", "/status/{name}/{version}"),
        ("/builds/oa-nohub/1.0.0", "/builds/{name}/{version}"),
        (
            "/logs/oa-nohub/1.0.0/linux",
            "/logs/{name}/{version}/{platform}",
        ),
    ] {
        let r = http("GET", &svc.url(path), &[], None);
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        c.check("GET", template, &r);
    }
    let r = http("GET", &svc.url("/metrics"), &[], None);
    c.check("GET", "/metrics", &r);

    c.assert_all_operations_checked();
}
