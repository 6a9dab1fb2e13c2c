//! Platform names: the hub's (`macos`, …) and the marketplace's ids (`darwin-arm64`, …).

use std::fmt;

/// A build target. `buildJobs.platform` stores [`Platform::hub_name`]; file
/// names and `pluginVersions.platforms` use [`Platform::id`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    Macos,
    Linux,
    Windows,
    Ios,
    Android,
}

impl Platform {
    /// Every platform, in the primary-artifact preference order of docs/api.md.
    pub const ALL: [Platform; 5] = [
        Platform::Macos,
        Platform::Linux,
        Platform::Windows,
        Platform::Ios,
        Platform::Android,
    ];

    /// The name Perry Hub uses (and `buildJobs.platform` keeps).
    pub fn hub_name(self) -> &'static str {
        match self {
            Platform::Macos => "macos",
            Platform::Linux => "linux",
            Platform::Windows => "windows",
            Platform::Ios => "ios",
            Platform::Android => "android",
        }
    }

    /// The marketplace's platform id (file names, `platforms`, downloadUrl).
    pub fn id(self) -> &'static str {
        match self {
            Platform::Macos => "darwin-arm64",
            Platform::Linux => "linux-x64",
            Platform::Windows => "windows-x64",
            Platform::Ios => "ios-arm64",
            Platform::Android => "android-arm64",
        }
    }

    pub fn from_hub_name(s: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.hub_name() == s)
    }

    pub fn from_id(s: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.id() == s)
    }

    /// What a person may type: the hub's name (`linux`) or the
    /// marketplace's id (`linux-x64`).
    pub fn from_name_or_id(s: &str) -> Option<Platform> {
        Platform::from_hub_name(s).or_else(|| Platform::from_id(s))
    }

    /// The primary platform among `completed`: the first of [`Platform::ALL`]
    /// (darwin-arm64, linux-x64, windows-x64, ios-arm64, android-arm64).
    pub fn primary(completed: &[Platform]) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| completed.contains(p))
    }

    /// `a, b, c` list of hub names, for error messages.
    pub fn names_list() -> String {
        Platform::ALL.map(Platform::hub_name).join(", ")
    }

    /// `macos (darwin-arm64), linux (linux-x64), …`: what
    /// [`Platform::from_name_or_id`] takes, for error messages.
    pub fn names_and_ids_list() -> String {
        Platform::ALL
            .map(|p| format!("{} ({})", p.hub_name(), p.id()))
            .join(", ")
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hub_name())
    }
}

/// Parses a comma-separated list of hub names (`macos,linux`). Blank items
/// are skipped, duplicates removed, order kept. Errors name the bad item.
pub fn parse_list(s: &str) -> Result<Vec<Platform>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let p = Platform::from_hub_name(item).ok_or_else(|| {
            format!(
                "unknown platform '{}' (expected one of {})",
                item.escape_debug(),
                Platform::names_list()
            )
        })?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err("no platform given".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Platform::ALL {
            assert_eq!(Platform::from_hub_name(p.hub_name()), Some(p));
            assert_eq!(Platform::from_id(p.id()), Some(p));
        }
        assert_eq!(Platform::Macos.id(), "darwin-arm64");
        assert_eq!(Platform::Android.id(), "android-arm64");
    }

    #[test]
    fn parse_list_rules() {
        assert_eq!(
            parse_list("macos, linux,,macos").unwrap(),
            vec![Platform::Macos, Platform::Linux]
        );
        let e = parse_list("linux,beos").unwrap_err();
        assert!(e.contains("'beos'"), "{e}");
        assert!(parse_list(" , ").is_err());
        assert!(parse_list("MacOS").is_err(), "names are case-sensitive");
    }

    #[test]
    fn primary_rule() {
        use Platform::*;
        assert_eq!(Platform::primary(&[Windows, Macos]), Some(Macos));
        assert_eq!(Platform::primary(&[Android, Windows]), Some(Windows));
        assert_eq!(Platform::primary(&[Android, Ios]), Some(Ios));
        assert_eq!(Platform::primary(&[]), None);
    }
}
