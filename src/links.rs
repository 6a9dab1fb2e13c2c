//! The service's public URLs of a version: its `/status` answer, its build
//! page and each build's log, absolute from PUBLIC_URL (docs/api.md) so a
//! publisher's client can print them as they are.
//!
//! Names and versions only ever reach here after `validate::name_like`
//! (letters, digits, `.`, `_`, `-`); a platform may come from a row of the
//! old server, so every segment is percent-encoded all the same.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What stays as it is in a path segment: the characters of a name.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'_').remove(b'-');

fn seg(s: &str) -> impl std::fmt::Display + '_ {
    utf8_percent_encode(s, SEGMENT)
}

/// `/status/<name>/<version>` under `public_url` (which has no trailing `/`).
pub fn status_url(public_url: &str, name: &str, version: &str) -> String {
    format!("{public_url}{}", status_path(name, version))
}

/// `/builds/<name>/<version>`: the build page.
pub fn build_url(public_url: &str, name: &str, version: &str) -> String {
    format!("{public_url}/builds/{}/{}", seg(name), seg(version))
}

/// `/logs/<name>/<version>/<platform>`: a build's log (its latest attempt).
pub fn log_url(public_url: &str, name: &str, version: &str, platform: &str) -> String {
    format!("{public_url}{}", log_path(name, version, platform))
}

/// The path of [`status_url`].
pub fn status_path(name: &str, version: &str) -> String {
    format!("/status/{}/{}", seg(name), seg(version))
}

/// The path of [`log_url`].
pub fn log_path(name: &str, version: &str, platform: &str) -> String {
    format!("/logs/{}/{}/{}", seg(name), seg(version), seg(platform))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_absolute_and_segments_encoded() {
        let base = "https://build.example.org";
        assert_eq!(
            status_url(base, "git-blame", "1.0.0-rc_1"),
            "https://build.example.org/status/git-blame/1.0.0-rc_1"
        );
        assert_eq!(
            build_url(base, "git-blame", "1.0.0"),
            "https://build.example.org/builds/git-blame/1.0.0"
        );
        assert_eq!(
            log_url(base, "a", "1", "linux"),
            "https://build.example.org/logs/a/1/linux"
        );
        // An old row's platform may hold anything.
        assert_eq!(
            log_path("a", "1", "x/../y ?#"),
            "/logs/a/1/x%2F..%2Fy%20%3F%23"
        );
    }
}
