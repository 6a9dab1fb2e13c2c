//! Property tests (proptest) for the parsers that face untrusted input: the
//! query-string decoder, the configuration parser, the old-form callback-id
//! resolver and the streaming base64 body reader.
//!
//! They run `PROPTEST_CASES` cases each (proptest's default, 256, in
//! `make test`); `make fuzz` runs many more.

use crate::common;

use hone_build::body::{self, Encoding, Limited};
use hone_build::config;
use hone_build::platform::Platform;
use hone_build::store::{LegacyLookup, NewUpload, Store, UploadOutcome};
use hone_build::validate::{self, Query};
use proptest::prelude::*;
use std::io::Read;

/// A reader that hands out its data in the given chunk sizes (as a socket does).
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    i: usize,
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.data.len() {
            return Ok(0);
        }
        let want = self.sizes[self.i % self.sizes.len()].max(1);
        self.i += 1;
        let n = want.min(buf.len()).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn percent_encode_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

proptest! {
    /// Any input: no panic; an error is a 400 that names the problem.
    #[test]
    fn query_parse_never_panics(raw in ".{0,300}") {
        match Query::parse(&raw) {
            Ok(_) => {}
            Err(e) => {
                prop_assert_eq!(e.status, 400);
                prop_assert!(e.message.contains("UTF-8") || e.message.contains("more than once"), "{}", e.message);
            }
        }
    }

    /// Percent-encoding every byte of UTF-8 keys and values decodes back to them.
    #[test]
    fn query_round_trips(pairs in proptest::collection::btree_map("[a-zA-Z_]{1,12}", ".{0,40}", 0..6)) {
        let raw = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode_all(k), percent_encode_all(v)))
            .collect::<Vec<_>>()
            .join("&");
        let q = Query::parse(&raw).unwrap();
        for (k, v) in &pairs {
            prop_assert_eq!(q.get(k), Some(v.as_str()));
        }
    }

    /// `+` is a space and `%2B` a plus, whatever surrounds them.
    #[test]
    fn plus_is_space(a in "[a-z]{0,8}", b in "[a-z]{0,8}") {
        prop_assert_eq!(validate::url_decode(&format!("{a}+{b}%2B"), "x").unwrap(), format!("{a} {b}+"));
    }

    /// Invalid UTF-8 after decoding is always refused, never replaced.
    #[test]
    fn invalid_utf8_is_refused(prefix in "[a-z]{0,5}", bad in 0x80u8..=0xBF) {
        let raw = format!("displayName={prefix}%{bad:02X}");
        prop_assert!(Query::parse(&raw).is_err());
    }

    /// The name rule accepts exactly what docs/api.md describes.
    #[test]
    fn name_rule_matches_the_spec(s in ".{0,140}") {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && !s.starts_with('.')
            && !s.starts_with('-')
            && !s.contains("..");
        prop_assert_eq!(validate::name_like(&s, "name").is_ok(), ok);
        if ok {
            // Safe as a single path component.
            prop_assert!(!s.contains('/') && s != "." && s != "..");
        }
    }

    /// Any text: no panic; every accepted value is what followed the first '=', trimmed.
    #[test]
    fn config_parser_never_panics(text in "(.{0,60}\n){0,12}") {
        let raw = config::parse_file(&text, "fuzz.conf");
        for (key, (value, line)) in &raw.values {
            prop_assert!(config::KEYS.iter().any(|(k, _)| k == key));
            let src = text.lines().nth(line - 1).unwrap();
            let after = src.trim().split_once('=').unwrap().1.trim();
            prop_assert_eq!(value.as_str(), after);
        }
    }

    /// Generated files: values with '=' and spaces survive; comments never count.
    #[test]
    fn config_values_with_equals(v in "[ -~]{0,40}", pad in " {0,3}") {
        let text = format!("# DB_USER=commented\n{pad}DB_USER{pad}={pad}{v}{pad}\n");
        let raw = config::parse_file(&text, "f");
        prop_assert_eq!(raw.values["DB_USER"].0.as_str(), v.trim());
    }

    /// base64 with any line breaks and any read chunking decodes to the bytes;
    /// the hash is the bytes' SHA-256.
    #[test]
    fn base64_reader_round_trips(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        wrap in 1usize..120,
        crlf in any::<bool>(),
        sizes in proptest::collection::vec(1usize..700, 1..8),
    ) {
        use base64::Engine;
        let enc = base64::engine::general_purpose::STANDARD.encode(&data);
        let sep = if crlf { "\r\n" } else { "\n" };
        let wrapped = enc.as_bytes().chunks(wrap).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(sep);
        let reader = Chunked { data: wrapped.into_bytes(), pos: 0, sizes, i: 0 };
        let mut out = Vec::new();
        let s = body::stream_decoded(Limited::new(reader, 1 << 20), Encoding::Base64, &mut out).unwrap();
        prop_assert_eq!(&out, &data);
        prop_assert_eq!(s.size, data.len() as u64);
        use sha2::Digest;
        prop_assert_eq!(s.sha256, hone_build::codec::hex(&sha2::Sha256::digest(&data)));
    }

    /// Arbitrary bytes as a base64 body: decoded or a 400, never a panic or a 5xx.
    #[test]
    fn base64_reader_rejects_garbage_cleanly(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut out = Vec::new();
        match body::stream_decoded(Limited::new(&data[..], 1 << 20), Encoding::Base64, &mut out) {
            Ok(_) => {}
            Err(e) => prop_assert_eq!(e.status, 400),
        }
    }

    /// The size limit is exact for any chunking.
    #[test]
    fn limit_is_exact(len in 0usize..2000, max in 0u64..2000, sizes in proptest::collection::vec(1usize..500, 1..5)) {
        let reader = Chunked { data: vec![7; len], pos: 0, sizes, i: 0 };
        let r = body::stream_decoded(Limited::new(reader, max), Encoding::Raw, &mut std::io::sink());
        if len as u64 <= max {
            prop_assert_eq!(r.unwrap().size, len as u64);
        } else {
            prop_assert_eq!(r.unwrap_err().status, 413);
        }
    }
}

/// Names and versions made of dash-separated parts: the confusable kind.
fn dashed() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-z0-9]{1,3}", 1..4).prop_map(|parts| parts.join("-"))
}

proptest! {
    // Each case builds a database: a fifth of PROPTEST_CASES, at least 48.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .map_or(48, |n| (n / 5).max(48)),
        ..ProptestConfig::default()
    })]

    /// The old-form callback id resolves to the old server's job (no callback
    /// token) whose own name, version and platform spell it, or reports
    /// ambiguity; it never picks another job, nor one of hone-build's own.
    #[test]
    fn legacy_callback_resolves_only_exact_matches(
        plugins in proptest::collection::vec((dashed(), dashed()), 1..6),
        probe in dashed(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = common::sqlite_store(dir.path());
        store.migrate().unwrap();
        let raw = rusqlite::Connection::open(dir.path().join(common::SQLITE_FILE)).unwrap();
        for (i, (name, version)) in plugins.iter().enumerate() {
            let up = NewUpload {
                name: name.clone(),
                version: version.clone(),
                display_name: None,
                description: None,
                entry: "src/index.ts".into(),
                platforms: vec![Platform::Linux],
                now: 1,
                reserved_until_ms: 1000,
            };
            let mut t = 0;
            // A repeated (name, version) is refused as in progress: fine here.
            let r = store.record_upload(&up, &mut || { t += 1; format!("t{t}") }, &mut || Ok(())).unwrap();
            prop_assert!(matches!(r, UploadOutcome::Recorded(_) | UploadOutcome::Refused(_)));
            // Every other plugin's jobs stand for the old server's rows.
            if let (UploadOutcome::Recorded(jobs), true) = (&r, i % 2 == 0) {
                for j in jobs {
                    raw.execute("UPDATE buildJobs SET callbackToken = NULL WHERE id = ?1", [j.id]).unwrap();
                }
            }
        }
        let mut candidates: Vec<String> = plugins.iter().map(|(n, v)| format!("{n}-{v}-linux")).collect();
        candidates.push(format!("{probe}-linux"));
        for id in candidates {
            let expected: Vec<i64> = store
                .list_jobs(None, None)
                .unwrap()
                .into_iter()
                .filter(|j| j.callback_token.is_none())
                .filter(|j| format!("{}-{}-{}", j.plugin_name, j.version, j.platform) == id)
                .map(|j| j.id)
                .collect();
            match store.job_by_legacy_callback(&id).unwrap() {
                LegacyLookup::Found(job) => prop_assert_eq!(vec![job.id], expected),
                LegacyLookup::NotFound => prop_assert!(expected.is_empty()),
                LegacyLookup::Ambiguous(n) => {
                    prop_assert!(expected.len() > 1, "ambiguity reported only when real");
                    prop_assert_eq!(n, expected.len());
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Build log redaction takes any text (hub output is anything): it never
    /// panics, leaves no configured secret, and the line is printable and
    /// bounded.
    #[test]
    fn build_log_redaction_never_panics_and_removes_secrets(
        before in "\\PC{0,40}",
        after in "(\\PC|[=:/?#@ ]){0,40}",
        secret in "[a-zA-Z0-9/+]{6,12}",
    ) {
        prop_assume!(!"[redacted]".contains(secret.as_str()));
        let r = hone_build::buildlog::Redactor::new(&[secret.as_str()]);
        let text = format!("{before}{secret}{after} Bearer {secret} key={after}");
        let out = r.redact(&text);
        prop_assert!(!out.contains(&secret), "{out:?}");
        let line = hone_build::buildlog::printable_line(&out);
        prop_assert!(line.len() <= hone_build::buildlog::MAX_LINE_BYTES);
        prop_assert!(!line.chars().any(char::is_control));
    }
}
