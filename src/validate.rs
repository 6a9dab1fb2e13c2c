//! Validation of everything a request names (docs/api.md), and URL decoding.
//! Only values that passed these checks are ever used to build a path.

use crate::error::ApiError;
use crate::platform::{self, Platform};

/// Decodes `%XX` and `+` (a space) into bytes, then requires UTF-8.
/// `what` names the parameter in the error message.
pub fn url_decode(raw: &str, what: &str) -> Result<String, ApiError> {
    let plus_as_space = raw.replace('+', " ");
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(&plus_as_space).collect();
    String::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request(format!("{what} is not valid UTF-8 after URL decoding")))
}

/// Decodes a path segment: `%XX` only (`+` stays a plus).
pub fn path_decode(raw: &str, what: &str) -> Result<String, ApiError> {
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    String::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request(format!("{what} is not valid UTF-8 after URL decoding")))
}

/// A decoded query string. A parameter given twice is an error (the two
/// values could disagree; the old server's choice between them is not a
/// contract worth keeping).
#[derive(Debug, Default, Clone)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: &str) -> Result<Query, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let key = url_decode(k, "a query parameter name")?;
            let value = url_decode(v, &format!("query parameter '{}'", printable(&key)))?;
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(ApiError::bad_request(format!(
                    "query parameter '{}' is given more than once",
                    printable(&key)
                )));
            }
            pairs.push((key, value));
        }
        Ok(Query { pairs })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A value safe to quote in an error message: escaped, at most 64 characters.
pub fn printable(s: &str) -> String {
    let escaped: String = s
        .chars()
        .take(64)
        .collect::<String>()
        .escape_debug()
        .to_string();
    if s.chars().count() > 64 {
        format!("{escaped}…")
    } else {
        escaped
    }
}

/// `name` and `version`: 1-128 of `[A-Za-z0-9._-]`, not starting with `.`
/// or `-`, no `..`.
pub fn name_like(value: &str, field: &str) -> Result<(), ApiError> {
    let bad = |why: &str| ApiError::bad_request(format!("{field} {why}"));
    if value.is_empty() {
        return Err(bad("is required"));
    }
    if value.len() > 128 {
        return Err(bad("must be at most 128 characters"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(bad(&format!(
            "may contain only letters, digits, '.', '_' and '-' (found '{}')",
            printable(&c.to_string())
        )));
    }
    if value.starts_with('.') || value.starts_with('-') {
        return Err(bad("must not start with '.' or '-'"));
    }
    if value.contains("..") {
        return Err(bad("must not contain '..'"));
    }
    Ok(())
}

/// `entry`: a relative path of `[A-Za-z0-9._/-]`, at most 256 characters,
/// no `..` segment, no leading `/`.
pub fn entry(value: &str) -> Result<(), ApiError> {
    let bad = |why: &str| ApiError::bad_request(format!("entry {why}"));
    if value.is_empty() {
        return Err(bad("must not be empty"));
    }
    if value.len() > 256 {
        return Err(bad("must be at most 256 characters"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-')))
    {
        return Err(bad(&format!(
            "may contain only letters, digits, '.', '_', '/' and '-' (found '{}')",
            printable(&c.to_string())
        )));
    }
    if value.starts_with('/') {
        return Err(bad("must be a relative path (no leading '/')"));
    }
    if value.split('/').any(|seg| seg == "..") {
        return Err(bad("must not contain a '..' segment"));
    }
    Ok(())
}

/// `displayName` (256) and `description` (4096): at most `max` characters,
/// no control characters but line feed and tab, and no invisible character
/// that reorders or hides text ([`is_invisible`]). (UTF-8 validity is
/// checked by the decoder.)
pub fn text(value: &str, field: &str, max: usize) -> Result<(), ApiError> {
    if value.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "{field} must be at most {max} characters"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ApiError::bad_request(format!(
            "{field} must not contain control characters"
        )));
    }
    if let Some(c) = value.chars().find(|&c| is_invisible(c)) {
        return Err(ApiError::bad_request(format!(
            "{field} must not contain invisible formatting characters such as bidirectional \
             overrides or zero-width spaces (found U+{:04X})",
            c as u32
        )));
    }
    Ok(())
}

/// A value the database's column for `field` holds: at most `max`
/// characters (the column's width, see `store::ColumnLimits`).
pub fn fits(value: &str, field: &str, max: usize) -> Result<(), ApiError> {
    if value.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "{field} must be at most {max} characters (the width of the database's {field} column)"
        )));
    }
    Ok(())
}

/// Characters that display as nothing yet reorder or hide text: the
/// bidirectional controls (U+202A-U+202E overrides and embeddings,
/// U+2066-U+2069 isolates, the U+200E/U+200F/U+061C marks), zero-width
/// spaces and invisible operators (U+200B, U+2060-U+2064, U+180E), the byte
/// order mark U+FEFF, the soft hyphen U+00AD, the line and paragraph
/// separators U+2028/U+2029 (a line break is `\n`) and interlinear
/// annotation marks U+FFF9-U+FFFB. Zero-width joiner and non-joiner
/// (U+200C, U+200D) are allowed: emoji sequences and Persian and Indic
/// scripts need them.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// Text from outside (the hub's messages) made safe to log and store:
/// control and invisible characters written as `\u{..}` escapes, the rest
/// kept.
pub fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || is_invisible(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// `platforms`: comma-separated hub names.
pub fn platforms(value: &str) -> Result<Vec<Platform>, ApiError> {
    platform::parse_list(value).map_err(|e| ApiError::bad_request(format!("platforms: {e}")))
}

/// Compares a presented secret with the expected one in constant time
/// (SHA-256 of both, so not even the length leaks). An empty `expected`
/// never matches.
pub fn secret_matches(presented: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    if expected.is_empty() {
        return false;
    }
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare() {
        assert!(secret_matches("s3cret", "s3cret"));
        assert!(!secret_matches("s3cret ", "s3cret"));
        assert!(!secret_matches("", ""));
        assert!(!secret_matches("x", ""));
    }

    #[test]
    fn decoding() {
        assert_eq!(url_decode("a%20b+c", "x").unwrap(), "a b c");
        assert_eq!(url_decode("%C3%A9t%C3%A9", "x").unwrap(), "été");
        assert_eq!(url_decode("100%", "x").unwrap(), "100%", "stray % kept");
        assert_eq!(url_decode("%2B", "x").unwrap(), "+");
        let e = url_decode("%C0%AE", "query parameter 'name'").unwrap_err();
        assert!(
            e.message.contains("'name'") && e.message.contains("UTF-8"),
            "{e}"
        );
        assert_eq!(path_decode("a+b%2Fc", "x").unwrap(), "a+b/c");
    }

    #[test]
    fn query_parsing() {
        let q = Query::parse("name=my+plugin&version=1.0&flag&&description=caf%C3%A9").unwrap();
        assert_eq!(q.get("name"), Some("my plugin"));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("description"), Some("café"));
        assert_eq!(q.get("missing"), None);
        let e = Query::parse("name=a&name=b").unwrap_err();
        assert!(e.message.contains("'name'") && e.message.contains("more than once"));
        let e = Query::parse("na%6De=a&name=a").unwrap_err();
        assert!(e.message.contains("more than once"), "encoded duplicate");
    }

    #[test]
    fn names() {
        for ok in ["a", "my-plugin", "1.0.0-beta.1", "A_b.c", &"x".repeat(128)] {
            assert!(name_like(ok, "name").is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "required"),
            (".hidden", "start"),
            ("-x", "start"),
            ("a..b", "'..'"),
            ("a/b", "found '/'"),
            ("a b", "found ' '"),
            ("a;rm", "found ';'"),
            ("a\0b", "found '\\0'"),
            ("é", "found 'é'"),
        ] {
            let e = name_like(bad, "version").unwrap_err();
            assert_eq!(e.status, 400);
            assert!(
                e.message.starts_with("version ") && e.message.contains(why),
                "{bad}: {e}"
            );
        }
        assert!(
            name_like(&"x".repeat(129), "name")
                .unwrap_err()
                .message
                .contains("128")
        );
    }

    #[test]
    fn entries() {
        for ok in [
            "src/index.ts",
            "index.js",
            "a/b-c/d_e.f",
            "./x.ts",
            "a..b/c",
        ] {
            assert!(entry(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/..",
            "a b",
            "a\\b",
            "$(id)",
        ] {
            assert!(entry(bad).is_err(), "{bad}");
        }
        assert!(entry(&"a".repeat(257)).unwrap_err().message.contains("256"));
    }

    #[test]
    fn texts_and_platforms() {
        assert!(
            text(&"é".repeat(256), "displayName", 256).is_ok(),
            "characters, not bytes"
        );
        assert!(text(&"a".repeat(257), "displayName", 256).is_err());
        assert!(text("line\nbreak", "description", 4096).is_ok());
        assert!(text("bell\u{7}", "description", 4096).is_err());
        for bad in [
            "\u{202E}", "\u{200B}", "\u{2066}", "\u{FEFF}", "\u{200F}", "\u{2028}",
        ] {
            let e = text(&format!("a{bad}b"), "displayName", 256).unwrap_err();
            let code = format!("U+{:04X}", bad.chars().next().unwrap() as u32);
            assert!(
                e.message.contains(&code) && e.message.contains("displayName"),
                "{e}"
            );
        }
        for ok in [
            "👨\u{200D}👩\u{200D}👧",
            "می\u{200C}خواهم",
            "עברית and العربية",
            "café",
        ] {
            assert!(text(ok, "description", 4096).is_ok(), "{ok}");
        }
        assert_eq!(
            escaped("a\u{1b}[2J\nb\u{202E}c é"),
            "a\\u{1b}[2J\\u{a}b\\u{202e}c é"
        );
        assert_eq!(platforms("linux,macos").unwrap().len(), 2);
        assert!(
            platforms("linux,beos")
                .unwrap_err()
                .message
                .contains("'beos'")
        );
    }
}
