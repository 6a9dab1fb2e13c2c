//! `check-config`'s warnings: settings with which hone-build starts and
//! answers, yet silently fails in production — callbacks that can never
//! arrive, a hub that refuses every submission or every plugin but the
//! first, directories it cannot write, binaries stored where the
//! marketplace does not look (docs/configuration.md, "What check-config
//! warns about").
//!
//! Each warning names the keys involved and never a secret's value. The
//! checks read the filesystem (a probe file is created and removed in each
//! existing directory, as `files::check_writable` does) and change nothing
//! else: a missing directory is not created.

use crate::config::Config;
use crate::files;
use crate::validate;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

/// One warning: the keys it is about (the first is the main one) and what
/// goes wrong, in one sentence or two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub keys: Vec<&'static str>,
    pub text: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn warn(keys: &[&'static str], text: String) -> Warning {
    Warning {
        keys: keys.to_vec(),
        text,
    }
}

/// Every warning about `cfg`, in a stable order: address, credentials,
/// directories, the packages directory's look.
pub fn warnings(cfg: &Config) -> Vec<Warning> {
    let mut out = Vec::new();
    out.extend(public_url(cfg));
    out.extend(credentials(cfg));
    for (key, dir) in [
        ("DATA_DIR", &cfg.data_dir),
        ("UPLOADS_DIR", &cfg.uploads_dir),
        ("PACKAGES_DIR", &cfg.packages_dir),
    ] {
        if let Err(why) = writable_or_creatable(dir) {
            out.push(warn(
                &[key],
                format!(
                    "{key}={} {why} (checked as user id {}): hone-build refuses to start, or \
                     fails every upload or build that needs it",
                    dir.display(),
                    rustix::process::getuid().as_raw()
                ),
            ));
        }
    }
    out.extend(packages_dir(cfg));
    out
}

// ---- PUBLIC_URL ---------------------------------------------------------

/// PUBLIC_URL names this machine only (localhost, a loopback or unspecified
/// address) while BIND accepts connections from others: a patched hub's
/// workers, elsewhere, would post the programs to themselves.
fn public_url(cfg: &Config) -> Option<Warning> {
    if cfg.bind.is_loopback() {
        return None;
    }
    let host = url_host(&cfg.public_url)?;
    if !names_this_machine_only(&host) {
        return None;
    }
    let shown = if cfg.public_url_is_default {
        format!("PUBLIC_URL is not set (so {})", cfg.public_url)
    } else {
        format!("PUBLIC_URL={}", cfg.public_url)
    };
    let consequence = if cfg.perry_hub_ws_url.is_none() {
        "every build waits for a callback that can never arrive and fails at \
         BUILD_TIMEOUT_SECS (PERRY_HUB_WS_URL is off)"
    } else {
        "callbacks from a patched hub's workers could never arrive (builds followed over the \
         WebSocket still complete)"
    };
    Some(warn(
        &["PUBLIC_URL", "BIND"],
        format!(
            "{shown} names this machine only, while BIND={} accepts connections from other \
             machines: {consequence}; set PUBLIC_URL to the address the hub's workers reach this \
             server at",
            cfg.bind
        ),
    ))
}

/// The host of an `http(s)://` URL, lower-cased, without user info, port
/// or IPv6 brackets.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    Some(host.trim_end_matches('.').to_ascii_lowercase())
}

fn names_this_machine_only(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip.is_unspecified(),
        Err(_) => false,
    }
}

// ---- hub credentials ----------------------------------------------------

fn credentials(cfg: &Config) -> Option<Warning> {
    match (
        cfg.perry_hub_token.is_empty(),
        cfg.perry_hub_license_key.is_empty(),
    ) {
        (false, _) => None,
        (true, false) => Some(warn(
            &["PERRY_HUB_LICENSE_KEY", "PERRY_HUB_TOKEN"],
            "PERRY_HUB_LICENSE_KEY is set but PERRY_HUB_TOKEN is not: a license key from \
             Perry's self-service registration binds itself to the first bundle id it builds, \
             and hone-build sends one bundle id per plugin (codes.hone.plugin.<name>), so every \
             plugin but the first fails with 403 ACCOUNT_REQUIRED; set PERRY_HUB_TOKEN to a \
             Perry account API token (sent as Authorization: Bearer, not bound to a plugin)"
                .into(),
        )),
        (true, true) => Some(warn(
            &["PERRY_HUB_TOKEN", "PERRY_HUB_LICENSE_KEY"],
            "neither PERRY_HUB_TOKEN nor PERRY_HUB_LICENSE_KEY is set: Perry Hub refuses every \
             submission (400 BAD_REQUEST) and every build fails; set PERRY_HUB_TOKEN to a Perry \
             account API token"
                .into(),
        )),
    }
}

// ---- directories --------------------------------------------------------

/// `Ok` when `dir` is a directory this process can create files in, or
/// does not exist and the nearest existing directory above it can be
/// written (hone-build creates the rest at start). `Err` says why not.
fn writable_or_creatable(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(_) => files::check_writable(dir).map_err(|e| format!("cannot be written: {e}")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let Some(existing) = nearest_existing(dir) else {
                return Err("does not exist, and nothing above it does".into());
            };
            files::check_writable(&existing).map_err(|e| {
                format!(
                    "does not exist and cannot be created ({} cannot be written: {e})",
                    existing.display()
                )
            })
        }
        Err(e) => Err(format!("cannot be read: {e}")),
    }
}

/// The nearest ancestor of `dir` that exists (the working directory for a
/// relative path with nothing existing in it).
fn nearest_existing(dir: &Path) -> Option<PathBuf> {
    let mut at = dir.parent();
    while let Some(p) = at {
        let p = if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        };
        if std::fs::symlink_metadata(p).is_ok() {
            return Some(p.to_path_buf());
        }
        at = p.parent();
    }
    None
}

// ---- does PACKAGES_DIR look like the marketplace's? ----------------------

/// Most entries looked at in PACKAGES_DIR (plugins and their versions):
/// enough to tell a wrong directory, cheap on a large marketplace.
const SCAN_BUDGET: usize = 2000;

/// The marketplace serves downloads from its `data/packages` directory,
/// laid out `<name>/<version>/<platform-id>.bin`. PACKAGES_DIR does not
/// look like it when it is not named `packages`, when it overlaps
/// UPLOADS_DIR, when neither it nor its parent exists (a typo: hone-build
/// would create a tree nobody serves), or when it holds something other
/// than `<name>/<version>/` directories (hidden entries, such as
/// hone-build's `.tmp-*` files, are passed over).
fn packages_dir(cfg: &Config) -> Vec<Warning> {
    let dir = &cfg.packages_dir;
    let shown = dir.display();
    let mut out = Vec::new();
    if dir.file_name().is_none_or(|n| n != "packages") {
        out.push(warn(
            &["PACKAGES_DIR"],
            format!(
                "PACKAGES_DIR={shown} is not a directory named packages: the marketplace serves \
                 downloads from its data/packages directory (the default is \
                 ../hone-marketplace/data/packages), so programs stored elsewhere are never \
                 offered"
            ),
        ));
    }
    if overlap(dir, &cfg.uploads_dir) {
        out.push(warn(
            &["PACKAGES_DIR", "UPLOADS_DIR"],
            format!(
                "PACKAGES_DIR={shown} and UPLOADS_DIR={} overlap: uploaded source tarballs would \
                 sit among the programs the marketplace serves",
                cfg.uploads_dir.display()
            ),
        ));
    }
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if std::fs::metadata(parent).is_err() {
                out.push(warn(
                    &["PACKAGES_DIR"],
                    format!(
                        "PACKAGES_DIR={shown} does not exist, nor does {}: the marketplace has \
                         never stored packages there; check the path (hone-build would create \
                         it, and nobody would serve what it stores)",
                        parent.display()
                    ),
                ));
            }
        }
        Ok(m) if m.is_dir() => {
            if let Some(odd) = foreign_entry(dir) {
                out.push(warn(
                    &["PACKAGES_DIR"],
                    format!(
                        "PACKAGES_DIR={shown} holds {odd}, which is not a <name>/<version>/ \
                         directory of plugin packages: is this the marketplace's packages \
                         directory?"
                    ),
                ));
            }
        }
        // Not a directory, or unreadable: the writability warning says so.
        _ => {}
    }
    out
}

/// The first entry of a packages directory that does not fit
/// `<name>/<version>/` (names and versions as uploads are validated),
/// described relative to it; `None` when all looked at fit.
fn foreign_entry(dir: &Path) -> Option<String> {
    let mut budget = SCAN_BUDGET;
    let visible = |p: &Path| -> Vec<(String, bool)> {
        let Ok(rd) = std::fs::read_dir(p) else {
            return Vec::new();
        };
        let mut v: Vec<(String, bool)> = rd
            .flatten()
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                // Not following symlinks: a link is not what hone-build creates.
                let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                (name, is_dir)
            })
            .filter(|(n, _)| !n.starts_with('.'))
            .collect();
        v.sort();
        v
    };
    for (name, is_dir) in visible(dir) {
        if budget == 0 {
            return None;
        }
        budget -= 1;
        let what = format!("'{}'", validate::printable(&name));
        if !is_dir {
            return Some(format!("{what} (not a directory)"));
        }
        if validate::name_like(&name, "name").is_err() {
            return Some(format!("{what} (not a plugin name)"));
        }
        for (version, is_dir) in visible(&dir.join(&name)) {
            if budget == 0 {
                return None;
            }
            budget -= 1;
            let what = format!(
                "'{}/{}'",
                validate::printable(&name),
                validate::printable(&version)
            );
            if !is_dir {
                return Some(format!("{what} (not a version directory)"));
            }
            if validate::name_like(&version, "version").is_err() {
                return Some(format!("{what} (not a version)"));
            }
        }
    }
    None
}

/// `a` and `b` are the same directory or one is inside the other, compared
/// as absolute paths with `.` and `..` resolved (through the filesystem for
/// the part that exists, so symlinks count).
fn overlap(a: &Path, b: &Path) -> bool {
    let (a, b) = (resolved(a), resolved(b));
    a.starts_with(&b) || b.starts_with(&a)
}

fn resolved(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    // Canonicalize the longest existing prefix, then append the rest.
    let mut existing = abs.clone();
    let mut rest = Vec::new();
    while std::fs::metadata(&existing).is_err() {
        match (existing.file_name(), existing.parent()) {
            (Some(n), Some(parent)) => {
                rest.push(n.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = std::fs::canonicalize(&existing).unwrap_or(existing);
    for n in rest.into_iter().rev() {
        out.push(n);
    }
    // What is left of `..` after the missing part: resolved lexically.
    let mut clean = PathBuf::new();
    for c in out.components() {
        match c {
            Component::ParentDir => {
                clean.pop();
            }
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts() {
        for (url, host) in [
            ("http://localhost:8447", "localhost"),
            ("https://LOCALHOST./x", "localhost"),
            ("http://user@127.0.0.1:1/", "127.0.0.1"),
            ("http://[::1]:8447", "::1"),
            ("https://build.hone.codes", "build.hone.codes"),
            ("http://0.0.0.0", "0.0.0.0"),
        ] {
            assert_eq!(url_host(url).as_deref(), Some(host), "{url}");
        }
        for (host, local) in [
            ("localhost", true),
            ("app.localhost", true),
            ("127.1.2.3", true),
            ("::1", true),
            ("0.0.0.0", true),
            ("::", true),
            ("10.0.0.5", false),
            ("build.hone.codes", false),
            ("localhost.example.org", false),
        ] {
            assert_eq!(names_this_machine_only(host), local, "{host}");
        }
    }

    /// Every warning names the keys it is about, and all can fire at once.
    #[test]
    fn each_warning_names_its_keys() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let odd = d.path().join("odd");
        std::fs::create_dir_all(odd.join("a b")).unwrap();
        let conf = d.path().join("build.conf");
        let cases = [
            format!(
                "UPLOAD_SECRET=s\nPERRY_HUB_LICENSE_KEY=k\nDATA_DIR={}\nUPLOADS_DIR={}\n\
                 PACKAGES_DIR={}\n",
                file.display(),
                odd.display(),
                odd.display()
            ),
            format!(
                "UPLOAD_SECRET=s\nPUBLIC_URL=http://[::1]:1\nPERRY_HUB_WS_URL=off\n\
                 UPLOADS_DIR=/proc/none/x\nPACKAGES_DIR={}/no/such/packages\n",
                d.path().display()
            ),
        ];
        let mut seen = 0;
        for text in cases {
            std::fs::write(&conf, text).unwrap();
            let (cfg, _) =
                Config::load(crate::config::FileChoice::Explicit(&conf), &|_| None).unwrap();
            for w in warnings(&cfg) {
                assert!(!w.keys.is_empty(), "{w}");
                for k in &w.keys {
                    assert!(w.text.contains(k), "{k} not named in: {w}");
                }
                seen += 1;
            }
        }
        // PUBLIC_URL, license, DATA_DIR, name, overlap, contents; PUBLIC_URL,
        // no credentials, UPLOADS_DIR, missing parent.
        assert_eq!(seen, 10);
    }

    #[test]
    fn overlapping_paths() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        assert!(overlap(&p.join("x"), &p.join("x")));
        assert!(overlap(&p.join("x"), &p.join("x/y/../y")));
        assert!(overlap(&p.join("a/../x/up"), &p.join("x")));
        assert!(!overlap(&p.join("x"), &p.join("xy")));
        assert!(!overlap(&p.join("data/uploads"), &p.join("data/packages")));
    }
}
