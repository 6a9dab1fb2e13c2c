//! ARCHITECTURE.md stays true: its code map's "may call" column is checked
//! against the `crate::` paths each file under `src/` names (outside
//! comments and unit tests), and every source file has a row.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules any file may use: the one error type and the shared context.
const ALWAYS: &[&str] = &["error", "app"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The code map: row name (`publish`, `http/server.rs`, `files/mod.rs`) →
/// the top-level modules it may call.
fn code_map() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `module` | owns | may call |
        if cells.len() != 5 || !cells[1].starts_with('`') {
            continue;
        }
        let name = cells[1].split('`').nth(1).unwrap_or_default().to_string();
        let calls = cells[3]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(|c| top_level(&c.replace("::", "/")))
            .collect();
        map.insert(name, calls);
    }
    map
}

/// `http/server.rs` → `http`; `store` → `store`.
fn top_level(path: &str) -> String {
    path.split('/')
        .next()
        .unwrap_or_default()
        .trim_end_matches(".rs")
        .to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a file names as `crate::x` (also inside
/// `use crate::{a, b::c}`), in code outside comments and `#[cfg(test)]`.
fn crate_paths(source: &str) -> BTreeSet<String> {
    let code: String = source
        .split("#[cfg(test)]")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut used = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let name = item.trim().split("::").next().unwrap_or_default();
                if !name.is_empty() && name != "self" {
                    used.insert(name.to_string());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                used.insert(name);
            }
        }
    }
    used
}

#[test]
fn code_map_may_call_column_is_true() {
    let map = code_map();
    assert!(map.len() > 20, "code map not found: {map:?}");
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel == "lib.rs" {
            continue; // the list of modules
        }
        let own = top_level(&rel);
        let row = if map.contains_key(&rel) {
            rel.clone()
        } else if map.contains_key(&own) {
            own.clone()
        } else {
            problems.push(format!("src/{rel}: no row in ARCHITECTURE.md's code map"));
            continue;
        };
        if rel == "main.rs" {
            continue; // "everything below"
        }
        let source = std::fs::read_to_string(&f).unwrap();
        let allowed = &map[&row];
        for used in crate_paths(&source) {
            if used != own && !ALWAYS.contains(&used.as_str()) && !allowed.contains(&used) {
                problems.push(format!(
                    "src/{rel} uses crate::{used}, which its row `{row}` does not list"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn only_the_http_layer_names_tiny_http() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let naming: Vec<String> = files
        .iter()
        .filter(|f| std::fs::read_to_string(f).unwrap().contains("tiny_http"))
        .map(|f| f.strip_prefix(&src).unwrap().display().to_string())
        .filter(|f| !f.starts_with("http/"))
        .collect();
    assert!(
        naming.is_empty(),
        "tiny_http named outside src/http: {naming:?}"
    );
}

#[test]
fn only_the_metrics_module_names_the_prometheus_crate() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let naming: Vec<String> = files
        .iter()
        .filter(|f| std::fs::read_to_string(f).unwrap().contains("prometheus::"))
        .map(|f| f.strip_prefix(&src).unwrap().display().to_string())
        .filter(|f| f != "metrics.rs")
        .collect();
    assert!(
        naming.is_empty(),
        "the prometheus crate named outside src/metrics.rs: {naming:?}"
    );
}

#[test]
fn no_file_refers_outside_the_repository() {
    let out = std::process::Command::new("git")
        .args(["grep", "-l", "-e", "\\.\\./shared", "--", ".", ":!vendor"])
        .current_dir(root())
        .output()
        .expect("git grep");
    let listed = String::from_utf8_lossy(&out.stdout);
    let offending: Vec<&str> = listed
        .lines()
        .filter(|l| *l != "tests/it/architecture.rs")
        .collect();
    assert!(
        offending.is_empty(),
        "files pointing outside the repository: {offending:?}"
    );
}

#[test]
fn crate_paths_reads_groups_and_skips_comments() {
    let src = "use crate::a::X;\nuse crate::{b, c::Y, self};\n// crate::d\nfn f() { crate::e::g(); }\n#[cfg(test)]\nmod t { use crate::z; }";
    let got: Vec<String> = crate_paths(src).into_iter().collect();
    assert_eq!(got, ["a", "b", "c", "e"]);
}
