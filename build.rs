//! Converts docs/openapi.yaml (the API's description, kept in YAML for
//! people) into the JSON that `GET /openapi.json` serves, once per build: the
//! binary carries it and parses nothing at run time. Operations marked
//! `x-hone-pending` (described ahead of their route) are left out of it and
//! listed in `openapi-pending.json` for the test that compares the
//! description with the routing table (tests/it/openapi.rs).

use serde_json::Value;
use std::path::Path;

const SOURCE: &str = "docs/openapi.yaml";
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-changed=build.rs");
    let text = std::fs::read_to_string(SOURCE).unwrap_or_else(|e| fail(&format!("read: {e}")));
    let mut doc: Value =
        serde_norway::from_str(&text).unwrap_or_else(|e| fail(&format!("not YAML: {e}")));
    if !doc["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.1."))
    {
        fail("`openapi` must be 3.1.x");
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        fail("no `paths` object");
    };
    let mut pending = Vec::new();
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            fail(&format!("path {path} is not an object"));
        };
        for method in METHODS {
            if item
                .get(*method)
                .is_some_and(|op| op.get("x-hone-pending").is_some())
            {
                item.remove(*method);
                pending.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    paths.retain(|_, item| METHODS.iter().any(|m| item.get(*m).is_some()));
    let out = std::env::var("OUT_DIR").unwrap_or_else(|_| fail("OUT_DIR is not set"));
    let out = Path::new(&out);
    write(&out.join("openapi.json"), &doc.to_string());
    write(
        &out.join("openapi-pending.json"),
        &Value::from(pending).to_string(),
    );
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| fail(&format!("write {}: {e}", path.display())));
}

fn fail(why: &str) -> ! {
    panic!("{SOURCE}: {why}");
}
