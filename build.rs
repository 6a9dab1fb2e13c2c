//! Converts docs/openapi.yaml (the API's description, kept in YAML for
//! people) into the JSON that `GET /openapi.json` serves, once per build: the
//! binary carries it and parses nothing at run time. Every operation it
//! describes is routed (tests/it/openapi.rs compares it with the routing
//! table).

use serde_json::Value;
use std::path::Path;

const SOURCE: &str = "docs/openapi.yaml";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-changed=build.rs");
    let text = std::fs::read_to_string(SOURCE).unwrap_or_else(|e| fail(&format!("read: {e}")));
    let doc: Value =
        serde_norway::from_str(&text).unwrap_or_else(|e| fail(&format!("not YAML: {e}")));
    if !doc["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.1."))
    {
        fail("`openapi` must be 3.1.x");
    }
    if !doc.get("paths").is_some_and(Value::is_object) {
        fail("no `paths` object");
    }
    let out = std::env::var("OUT_DIR").unwrap_or_else(|_| fail("OUT_DIR is not set"));
    write(&Path::new(&out).join("openapi.json"), &doc.to_string());
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| fail(&format!("write {}: {e}", path.display())));
}

fn fail(why: &str) -> ! {
    panic!("{SOURCE}: {why}");
}
