//! From package to program: takes the compiled program out of an artifact
//! Perry Hub returns (PERRY-HUB 1, "What a build produces").
//!
//! Workers package apps; the marketplace serves the bare program as
//! `<platform-id>.bin`. [`extract_program`] reads the downloaded (already
//! base64-decoded) artifact and streams the program into the caller's
//! writer, which hashes it on the way to its temporary file. Nothing is
//! ever written to disk here, and no name from an archive is used as a path.
//!
//! What is taken, per platform (the artifact's first bytes decide between a
//! raw program, a gzip'd tar and a zip; any platform accepts either archive):
//!
//! | platform | artifact target | program |
//! | --- | --- | --- |
//! | linux | `linux` (`.tar.gz`) | the ELF regular file in `<prefix>/bin/` (or `bin/`) |
//! | macos | `macos-precompiled` (`.tar.gz` of `<App>.app`) | the Mach-O regular file in `<App>.app/Contents/MacOS/` |
//! | ios | `ios-precompiled` (`.ipa`, a zip) | the Mach-O regular file directly in `Payload/<App>.app/` |
//! | android | `android` (`.apk`, a zip) | the ELF `*.so` in `lib/arm64-v8a/` |
//! | windows | `windows` (portable `.zip`) | the PE `*.exe` at the top level (or one directory down) |
//!
//! An artifact that already is a program of the platform's format (ELF,
//! Mach-O, PE: what a worker patched for plugin builds returns) is taken as
//! it is. Two packages that carry a program's magic are recognised and
//! refused: an AppImage (ELF with `AI` in its identification bytes, the
//! default Linux package) and an NSIS installer (PE with the
//! `NullsoftInst` header at a 512-byte boundary, the default Windows
//! package). A package is never returned as a program.
//!
//! Choosing among the files in the program's place: only regular files whose
//! first bytes are the platform's program format count. One: it. Several:
//! the one with the conventional name — the bundle's name (`<App>` of
//! `<App>.app`, or iOS's `CFBundleExecutable` when `Info.plist` is an XML
//! plist), the `<binary>` of `<binary>-<version>-linux-x86_64/bin/<binary>`,
//! `libperry_app.so` (what Perry's Android packaging names it) or
//! `lib<app>.so`, `<app>.exe` (with [`Artifact::app_name`]); no unique
//! such name: refused as ambiguous. A `.tar.gz` is read once when the
//! program carries the conventional name (every Perry layout), otherwise a
//! second time to extract the single candidate found by the first read.
//!
//! Safety rules: an entry named with a `..` component, an absolute name
//! (`/x`, `\x`, `C:x`) or a NUL byte makes the whole package refused. Links
//! (symbolic and hard), device files, FIFOs and other non-regular entries
//! are skipped, except in the program's place, where they are an error
//! (links are never followed). The program's bytes are bounded by
//! [`Limits::max_program_bytes`] as they are read, everything a `.tar.gz`
//! decompresses to by [`Limits::max_unpacked_bytes`], and the entries read
//! by [`Limits::max_entries`], so a zip or gzip bomb is refused after at
//! most the limit, never materialized. A zip's entry count is checked from
//! its end records (zip64 included) before its central directory is read;
//! a `.tar.gz` is read to the end of its gzip stream so the CRC is checked.
//! Long names and PAX headers are read by this module, bounded (64 KiB,
//! 1 MiB), not by the `tar` crate (which would read them whole).

use crate::platform::Platform;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};

/// Buffer size of every read and write.
pub const BUF_SIZE: usize = 64 * 1024;
/// Default bound on the entries of a package.
pub const MAX_ENTRIES: u64 = 100_000;
/// Bytes read from a member before its format is decided (a multiple of 512,
/// which the NSIS check relies on; enough to reach a PE header).
const HEAD_LEN: usize = 4096;
/// Largest `Info.plist` read.
const MAX_PLIST_BYTES: u64 = 1 << 20;
/// Largest GNU long name read.
const MAX_LONG_NAME_BYTES: u64 = 64 * 1024;
/// Largest PAX extended header read.
const MAX_PAX_BYTES: u64 = 1 << 20;
/// Names listed at most in an error message.
const LIST_MAX: usize = 10;
/// `0xDEADBEEF` (little-endian) and `NullsoftInst`: an NSIS installer's
/// first header, 4 bytes into a 512-byte block after the PE image.
const NSIS_SIG: &[u8; 16] = b"\xef\xbe\xad\xdeNullsoftInst";

/// The `artifact_ready` target whose artifact carries the program of
/// `platform`: the unsigned intermediate for macos and ios (the `.dmg` and
/// the signed `.ipa` that follow are not needed), the final one otherwise
/// (windows' intermediate is never shown to subscribers).
pub fn program_target(platform: Platform) -> &'static str {
    match platform {
        Platform::Macos => "macos-precompiled",
        Platform::Ios => "ios-precompiled",
        Platform::Windows => "windows",
        Platform::Linux => "linux",
        Platform::Android => "android",
    }
}

/// Whether an artifact announced with `target` for a job of `platform` is
/// the one to download and unpack. Every other target (`macos-sign`,
/// `ios-sign`, `windows-precompiled`, an unknown one) is ignored.
pub fn carries_program(platform: Platform, target: &str) -> bool {
    target == program_target(platform)
}

/// An executable format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ProgramFormat {
    #[serde(rename = "elf")]
    Elf,
    #[serde(rename = "mach-o")]
    MachO,
    #[serde(rename = "pe")]
    Pe,
}

impl ProgramFormat {
    /// The format a program of `platform` has.
    pub fn of(platform: Platform) -> ProgramFormat {
        match platform {
            Platform::Linux | Platform::Android => ProgramFormat::Elf,
            Platform::Macos | Platform::Ios => ProgramFormat::MachO,
            Platform::Windows => ProgramFormat::Pe,
        }
    }

    /// `an ELF`, `a Mach-O`, `a PE`.
    pub fn with_article(self) -> &'static str {
        match self {
            ProgramFormat::Elf => "an ELF",
            ProgramFormat::MachO => "a Mach-O",
            ProgramFormat::Pe => "a PE",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ProgramFormat::Elf => "ELF",
            ProgramFormat::MachO => "Mach-O",
            ProgramFormat::Pe => "PE",
        }
    }
}

impl fmt::Display for ProgramFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The format of a program starting with `head` (at least its first 64
/// bytes, for PE up to its PE header): ELF `\x7fELF` (not an AppImage),
/// Mach-O `feedface`/`feedfacf` in either byte order or fat `cafebabe`/
/// `cafebabf` (not a Java class file), PE `MZ` with a `PE\0\0` header.
pub fn program_format(head: &[u8]) -> Option<ProgramFormat> {
    if head.starts_with(b"\x7fELF") {
        let class_ok = matches!(head.get(4), Some(1 | 2));
        return (class_ok && !is_appimage(head)).then_some(ProgramFormat::Elf);
    }
    if head.len() >= 8 {
        let m = [head[0], head[1], head[2], head[3]];
        match m {
            [0xfe, 0xed, 0xfa, 0xce | 0xcf] | [0xce | 0xcf, 0xfa, 0xed, 0xfe] => {
                return Some(ProgramFormat::MachO);
            }
            [0xca, 0xfe, 0xba, 0xbe | 0xbf] => {
                // Fat binary: a handful of architectures. A Java class file
                // shares the magic but has its version (>= 45) there.
                let nfat = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
                return (1..20).contains(&nfat).then_some(ProgramFormat::MachO);
            }
            _ => {}
        }
    }
    if head.starts_with(b"MZ") && head.len() >= 0x40 {
        let off = u32::from_le_bytes([head[0x3c], head[0x3d], head[0x3e], head[0x3f]]) as usize;
        if off.checked_add(4).is_some_and(|end| end <= head.len())
            && &head[off..off + 4] == b"PE\0\0"
        {
            return Some(ProgramFormat::Pe);
        }
    }
    None
}

/// An AppImage is an ELF runtime with a filesystem appended; it carries
/// `AI` and its type in the ELF identification's padding.
fn is_appimage(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF") && head.len() >= 11 && &head[8..10] == b"AI" && head[10] <= 2
}

/// What bytes starting with `head` look like, for error messages.
fn describe(head: &[u8]) -> String {
    if head.is_empty() {
        return "empty".into();
    }
    if is_appimage(head) {
        return "an AppImage (a package, not a program)".into();
    }
    if let Some(f) = program_format(head) {
        return format!("{} program", f.with_article());
    }
    let known: &[(&[u8], &str)] = &[
        (b"\x1f\x8b", "gzip data"),
        (b"PK\x03\x04", "a zip archive"),
        (b"PK\x05\x06", "an empty zip archive"),
        (b"\x7fELF", "a malformed ELF file"),
        (b"MZ", "an MS-DOS executable without a PE header"),
        (b"\xca\xfe\xba\xbe", "a Java class file"),
        (b"\x89PNG", "a PNG image"),
        (b"bplist", "a binary property list"),
        (b"<?xml", "XML text"),
        (b"#!", "a script"),
        (b"!<arch>", "an ar archive (a .deb?)"),
        (b"%PDF", "a PDF document"),
    ];
    if let Some((_, what)) = known.iter().find(|(m, _)| head.starts_with(m)) {
        return (*what).into();
    }
    if head
        .iter()
        .take(64)
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        return "text".into();
    }
    let hex = crate::codec::hex(&head[..head.len().min(8)]);
    format!("data starting with 0x{hex}")
}

/// The container an artifact turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PackageKind {
    /// The artifact is the program itself.
    #[serde(rename = "raw")]
    Raw,
    #[serde(rename = "tar.gz")]
    TarGz,
    #[serde(rename = "zip")]
    Zip,
}

impl PackageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PackageKind::Raw => "raw",
            PackageKind::TarGz => "tar.gz",
            PackageKind::Zip => "zip",
        }
    }
}

/// Where the program came from, for `manifest.json` (the caller adds the
/// artifact's name, target and sha256, and the program's sha256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgramSource {
    pub package: PackageKind,
    /// Path of the program inside the package (`/`-separated, normalized:
    /// no `.` components); `None` for a raw program.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    pub format: ProgramFormat,
    /// Bytes written to the output.
    pub size: u64,
}

/// The artifact being unpacked, as the hub announced it.
#[derive(Debug, Clone, Copy)]
pub struct Artifact<'a> {
    /// `artifact_name` (used only in messages).
    pub name: &'a str,
    /// `target` (used only in messages; see [`carries_program`]).
    pub target: &'a str,
    /// The job's platform: decides where the program is and its format.
    pub platform: Platform,
    /// The `app_name` sent to the hub, if known: names the program when a
    /// package holds several candidates (`<app>.exe`, `lib<app>.so`, ...).
    pub app_name: Option<&'a str>,
}

/// Bounds on what unpacking reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest program (MAX_BODY_BYTES).
    pub max_program_bytes: u64,
    /// Largest decompressed `.tar.gz` stream (headers and all members).
    pub max_unpacked_bytes: u64,
    /// Most entries read (tar headers, zip central directory records).
    pub max_entries: u64,
}

impl Limits {
    /// The limits for MAX_BODY_BYTES = `max_body_bytes`: the program at most
    /// that, a whole `.tar.gz` at most four times that, 100,000 entries.
    pub fn for_max_body(max_body_bytes: u64) -> Limits {
        Limits {
            max_program_bytes: max_body_bytes,
            max_unpacked_bytes: max_body_bytes.saturating_mul(4),
            max_entries: MAX_ENTRIES,
        }
    }
}

/// What is wrong with a package (the job fails with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Neither a program of the platform nor a `.tar.gz` or `.zip`.
    NotAPackage {
        found: String,
        expected: String,
    },
    /// An entry's name would leave the package.
    UnsafeName {
        entry: String,
        why: &'static str,
    },
    /// A link, device file, ... where the program should be.
    NotRegular {
        entry: String,
        kind: &'static str,
    },
    /// Nothing of the right format in the program's place.
    NoProgram {
        expected: String,
        found: Vec<String>,
    },
    /// The program (raw, or the only candidate) has the wrong format.
    WrongFormat {
        entry: Option<String>,
        expected: ProgramFormat,
        found: String,
    },
    /// Several candidates and no rule picks one.
    Ambiguous {
        expected: ProgramFormat,
        candidates: Vec<String>,
    },
    /// The program is an installer (a package carrying a program's magic).
    Installer {
        entry: Option<String>,
    },
    TooLarge {
        limit: u64,
    },
    UnpackedTooLarge {
        limit: u64,
    },
    TooManyEntries {
        limit: u64,
    },
    /// The candidate cannot be read (encryption, compression method).
    Unsupported {
        detail: String,
    },
    Corrupt {
        detail: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotAPackage { found, expected } => write!(
                f,
                "is {found}: neither a program nor a .tar.gz or .zip package (expected {expected})"
            ),
            Problem::UnsafeName { entry, why } => write!(f, "entry '{entry}' {why}"),
            Problem::NotRegular { entry, kind } => write!(
                f,
                "entry '{entry}' is a {kind} where the program should be (links are never followed)"
            ),
            Problem::NoProgram { expected, found } if found.is_empty() => {
                write!(f, "no {expected}")
            }
            Problem::NoProgram { expected, found } => {
                write!(f, "no {expected} (found {})", found.join(", "))
            }
            Problem::WrongFormat {
                entry,
                expected,
                found,
            } => match entry {
                Some(e) => write!(
                    f,
                    "'{e}' is {found}, not {} program",
                    expected.with_article()
                ),
                None => write!(
                    f,
                    "the artifact is {found}, not {} program",
                    expected.with_article()
                ),
            },
            Problem::Ambiguous {
                expected,
                candidates,
            } => write!(
                f,
                "several {expected} programs and none named as the app: {}",
                candidates.join(", ")
            ),
            Problem::Installer { entry } => write!(
                f,
                "{} is an NSIS installer (a package), not a program",
                entry
                    .as_deref()
                    .map_or("the artifact".into(), |e| format!("'{e}'"))
            ),
            Problem::TooLarge { limit } => write!(f, "extracted program exceeds {limit} bytes"),
            Problem::UnpackedTooLarge { limit } => {
                write!(f, "package unpacks to more than {limit} bytes")
            }
            Problem::TooManyEntries { limit } => {
                write!(f, "package has more than {limit} entries")
            }
            Problem::Unsupported { detail } => write!(f, "unsupported package: {detail}"),
            Problem::Corrupt { detail } => write!(f, "corrupt package: {detail}"),
        }
    }
}

/// Why no program came out.
#[derive(Debug)]
pub enum UnpackError {
    /// The package's fault: fail the job with this message.
    Package {
        /// `linux artifact app-x.tar.gz` (target added when it is not the platform's name).
        artifact: String,
        problem: Problem,
    },
    /// Reading the package file or writing the program failed on our side:
    /// the package may be fine (retry, or report an internal error).
    Io {
        artifact: String,
        action: &'static str,
        source: io::Error,
    },
}

impl UnpackError {
    /// True when the package is at fault (the job fails), false for an I/O
    /// error on our side.
    pub fn is_package_fault(&self) -> bool {
        matches!(self, UnpackError::Package { .. })
    }

    pub fn problem(&self) -> Option<&Problem> {
        match self {
            UnpackError::Package { problem, .. } => Some(problem),
            UnpackError::Io { .. } => None,
        }
    }
}

impl fmt::Display for UnpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnpackError::Package { artifact, problem } => write!(f, "{artifact}: {problem}"),
            UnpackError::Io {
                artifact,
                action,
                source,
            } => write!(f, "{artifact}: error {action}: {source}"),
        }
    }
}

impl std::error::Error for UnpackError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UnpackError::Io { source, .. } => Some(source),
            UnpackError::Package { .. } => None,
        }
    }
}

/// Takes the program of `artifact.platform` out of `package` (the whole
/// reader from offset 0: the downloaded, base64-decoded artifact) and
/// streams it to `out` in 64 KiB writes, never holding it in memory.
///
/// On success `out` received exactly the program's bytes. On error it may
/// have received part of them (or another candidate's): discard it.
pub fn extract_program<R, W>(
    package: &mut R,
    artifact: &Artifact<'_>,
    limits: &Limits,
    out: &mut W,
) -> Result<ProgramSource, UnpackError>
where
    R: Read + Seek + ?Sized,
    W: Write + ?Sized,
{
    let ctx = Ctx::new(artifact, limits);
    let mut src = TagIo(package);
    src.seek(SeekFrom::Start(0))
        .map_err(|e| ctx.io("reading the package", e))?;
    let mut head = Vec::with_capacity(HEAD_LEN);
    (&mut src)
        .take(HEAD_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|e| ctx.read_err(e))?;
    if let Some(format) = program_format(&head) {
        if format != ctx.expected {
            return Err(ctx.package(Problem::WrongFormat {
                entry: None,
                expected: ctx.expected,
                found: describe(&head),
            }));
        }
        let len = src
            .seek(SeekFrom::End(0))
            .map_err(|e| ctx.io("reading the package", e))?;
        if len > limits.max_program_bytes {
            return Err(ctx.package(Problem::TooLarge {
                limit: limits.max_program_bytes,
            }));
        }
        src.seek(SeekFrom::Start(head.len() as u64))
            .map_err(|e| ctx.io("reading the package", e))?;
        let size = ctx.copy_program(&mut src, &head, None, out)?;
        return Ok(ProgramSource {
            package: PackageKind::Raw,
            member: None,
            format,
            size,
        });
    }
    src.seek(SeekFrom::Start(0))
        .map_err(|e| ctx.io("reading the package", e))?;
    if head.starts_with(b"\x1f\x8b") {
        targz::extract(&ctx, src.0, out)
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        zipfile::extract(&ctx, src.0, out)
    } else {
        Err(ctx.package(Problem::NotAPackage {
            found: describe(&head),
            expected: ctx.rules.expected(),
        }))
    }
}

/// A writer that hashes (SHA-256) and counts what passes through it, for a
/// caller that streams the program to its temporary file.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The inner writer, the bytes written and their lowercase hex SHA-256.
    pub fn finish(self) -> (W, u64, String) {
        let sha = crate::codec::hex(&self.hasher.finalize());
        (self.inner, self.size, sha)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

// ---------------------------------------------------------------------------
// Shared machinery

/// An error of the package reader itself (ours, not the package's): carried
/// inside the `io::Error`s that the decoders pass on.
#[derive(Debug)]
struct SourceIo(io::Error);
impl fmt::Display for SourceIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
impl std::error::Error for SourceIo {}

/// The decompressed stream passed [`Limits::max_unpacked_bytes`].
#[derive(Debug)]
struct UnpackedLimit;
impl fmt::Display for UnpackedLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unpacked size limit")
    }
}
impl std::error::Error for UnpackedLimit {}

/// Tags the package reader's errors as [`SourceIo`].
struct TagIo<'a, R: ?Sized>(&'a mut R);

fn tag(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::Interrupted {
        return e;
    }
    io::Error::new(e.kind(), SourceIo(e))
}

impl<R: Read + ?Sized> Read for TagIo<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(tag)
    }
}

impl<R: Seek + ?Sized> Seek for TagIo<'_, R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.seek(pos).map_err(tag)
    }
}

/// Fails with [`UnpackedLimit`] once more than `remaining` bytes came through.
struct Bounded<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let cap = self.remaining.saturating_add(1).min(buf.len() as u64) as usize;
        let n = self.inner.read(&mut buf[..cap])?;
        if n as u64 > self.remaining {
            return Err(io::Error::other(UnpackedLimit));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Reads until `buf` is full or the end; returns the bytes read.
fn fill(r: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads a member's first [`HEAD_LEN`] bytes (fewer at its end).
fn read_head(r: &mut (impl Read + ?Sized)) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; HEAD_LEN];
    let n = fill(r, &mut head)?;
    head.truncate(n);
    Ok(head)
}

/// Reads a small member whole; `None` if it has more than `max` bytes.
fn read_small(r: &mut (impl Read + ?Sized), max: u64) -> io::Result<Option<Vec<u8>>> {
    let mut v = Vec::new();
    r.take(max + 1).read_to_end(&mut v)?;
    Ok((v.len() as u64 <= max).then_some(v))
}

/// An entry's name for messages: lossy, escaped, at most 200 characters.
fn shown(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut out: String = s.escape_debug().take(200).collect();
    if s.escape_debug().nth(200).is_some() {
        out.push('…');
    }
    out
}

/// Checks an entry's name and splits it into normal components (`.` and
/// empty ones dropped, `\` taken as a separator too). `Ok(None)`: not
/// UTF-8, so it cannot be the program (it is skipped).
fn entry_path(raw: &[u8]) -> Result<Option<Vec<String>>, Problem> {
    let unsafe_name = |why| Problem::UnsafeName {
        entry: shown(raw),
        why,
    };
    if raw.contains(&0) {
        return Err(unsafe_name("has a NUL byte in its name"));
    }
    let drive = raw.len() >= 2 && raw[0].is_ascii_alphabetic() && raw[1] == b':';
    if raw.first().is_some_and(|b| *b == b'/' || *b == b'\\') || drive {
        return Err(unsafe_name("has an absolute name"));
    }
    let mut comps = Vec::new();
    for c in raw.split(|b| *b == b'/' || *b == b'\\') {
        match c {
            b"" | b"." => {}
            b".." => return Err(unsafe_name("escapes the package")),
            c => comps.push(c),
        }
    }
    let mut out = Vec::with_capacity(comps.len());
    for c in comps {
        match std::str::from_utf8(c) {
            Ok(s) => out.push(s.to_string()),
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(out))
}

/// Where the program may be, per platform.
struct Rules {
    platform: Platform,
    app: Option<String>,
}

/// An entry in the program's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    /// Named by the platform's convention.
    preferred: bool,
}

impl Rules {
    /// What the error says is missing.
    fn expected(&self) -> String {
        match self.platform {
            Platform::Linux => "ELF program under bin/ (<prefix>/bin/<binary>)",
            Platform::Macos => "Mach-O program in <App>.app/Contents/MacOS/",
            Platform::Ios => "Mach-O program in Payload/<App>.app/",
            Platform::Android => "ELF library in lib/arm64-v8a/ (*.so)",
            Platform::Windows => "PE program (*.exe)",
        }
        .into()
    }

    /// Whether `comps` (a normalized entry path) is in the program's place.
    /// `bundle_exec`: iOS `CFBundleExecutable`, when known.
    fn place(&self, comps: &[String], bundle_exec: Option<&str>) -> Option<Place> {
        let name = comps.last()?.as_str();
        let app = self.app.as_deref();
        match self.platform {
            Platform::Linux => {
                let (prefix, in_bin) = match comps {
                    [p, bin, _] => (Some(p.as_str()), bin == "bin"),
                    [bin, _] => (None, bin == "bin"),
                    _ => (None, false),
                };
                if !in_bin {
                    return None;
                }
                let by_prefix =
                    prefix.is_some_and(|p| p == name || p.starts_with(&format!("{name}-")));
                let by_app = app.is_some_and(|a| linux_binary_name(a) == name);
                Some(Place {
                    preferred: by_prefix || by_app,
                })
            }
            Platform::Macos => match comps {
                [bundle, contents, macos, _] if contents == "Contents" && macos == "MacOS" => {
                    let stem = bundle.strip_suffix(".app").filter(|s| !s.is_empty())?;
                    Some(Place {
                        preferred: name == stem || app == Some(name),
                    })
                }
                _ => None,
            },
            Platform::Ios => match comps {
                [payload, bundle, _] if payload == "Payload" => {
                    let stem = bundle.strip_suffix(".app").filter(|s| !s.is_empty())?;
                    let preferred = match bundle_exec {
                        Some(exec) => name == exec,
                        None => name == stem || app == Some(name),
                    };
                    Some(Place { preferred })
                }
                _ => None,
            },
            Platform::Android => match comps {
                [lib, abi, _] if lib == "lib" && abi == "arm64-v8a" && name.ends_with(".so") => {
                    Some(Place {
                        preferred: name == "libperry_app.so"
                            || app.is_some_and(|a| name == format!("lib{a}.so")),
                    })
                }
                _ => None,
            },
            Platform::Windows => {
                if comps.len() > 2 || name.len() <= 4 || !name.is_char_boundary(name.len() - 4) {
                    return None;
                }
                let (stem, ext) = name.split_at(name.len() - 4);
                if !ext.eq_ignore_ascii_case(".exe") {
                    return None;
                }
                Some(Place {
                    preferred: app.is_some_and(|a| stem.eq_ignore_ascii_case(a)),
                })
            }
        }
    }
}

/// The Linux worker's binary name for an app name (lowercase, spaces to
/// `-`, only alphanumerics, `-` and `_`).
fn linux_binary_name(app: &str) -> String {
    app.to_lowercase()
        .replace(' ', "-")
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// A regular file in the program's place.
#[derive(Debug, Clone)]
struct Candidate {
    /// Tar: ordinal of the header; zip: index.
    index: u64,
    path: String,
    format: Option<ProgramFormat>,
    what: String,
    preferred: bool,
}

/// The program among `cands`: the only one of the `expected` format, else
/// the only preferred one of them.
fn choose(cands: &[Candidate], expected: ProgramFormat, rules: &Rules) -> Result<usize, Problem> {
    let good: Vec<usize> = (0..cands.len())
        .filter(|&i| cands[i].format == Some(expected))
        .collect();
    match good.len() {
        1 => Ok(good[0]),
        0 if cands.len() == 1 => Err(Problem::WrongFormat {
            entry: Some(cands[0].path.clone()),
            expected,
            found: cands[0].what.clone(),
        }),
        0 => Err(Problem::NoProgram {
            expected: rules.expected(),
            found: cands
                .iter()
                .take(LIST_MAX)
                .map(|c| format!("'{}' ({})", c.path, c.what))
                .collect(),
        }),
        _ => {
            let preferred: Vec<usize> = good
                .iter()
                .copied()
                .filter(|&i| cands[i].preferred)
                .collect();
            match preferred[..] {
                [one] => Ok(one),
                _ => Err(Problem::Ambiguous {
                    expected,
                    candidates: good
                        .iter()
                        .take(LIST_MAX)
                        .map(|&i| cands[i].path.clone())
                        .collect(),
                }),
            }
        }
    }
}

struct Ctx {
    label: String,
    expected: ProgramFormat,
    limits: Limits,
    rules: Rules,
}

impl Ctx {
    fn new(a: &Artifact<'_>, limits: &Limits) -> Ctx {
        let mut label = format!("{} artifact {}", a.platform, shown(a.name.as_bytes()));
        if a.target != a.platform.hub_name() {
            label.push_str(&format!(" ({})", shown(a.target.as_bytes())));
        }
        Ctx {
            label,
            expected: ProgramFormat::of(a.platform),
            limits: *limits,
            rules: Rules {
                platform: a.platform,
                app: a.app_name.map(str::to_string),
            },
        }
    }

    fn package(&self, problem: Problem) -> UnpackError {
        UnpackError::Package {
            artifact: self.label.clone(),
            problem,
        }
    }

    fn io(&self, action: &'static str, source: io::Error) -> UnpackError {
        let source = match source.get_ref().and_then(|i| i.downcast_ref::<SourceIo>()) {
            Some(SourceIo(inner)) => io::Error::new(inner.kind(), inner.to_string()),
            None => source,
        };
        UnpackError::Io {
            artifact: self.label.clone(),
            action,
            source,
        }
    }

    /// An error met while reading through the decoders: ours when it came
    /// from the package file, the package's otherwise.
    fn read_err(&self, e: io::Error) -> UnpackError {
        if let Some(inner) = e.get_ref() {
            if inner.is::<SourceIo>() {
                return self.io("reading the package", e);
            }
            if inner.is::<UnpackedLimit>() {
                return self.package(Problem::UnpackedTooLarge {
                    limit: self.limits.max_unpacked_bytes,
                });
            }
        }
        self.package(Problem::Corrupt {
            detail: e.to_string(),
        })
    }

    /// Writes `head` and the rest of `r` to `out`, bounded by
    /// `max_program_bytes`; refuses an NSIS installer.
    fn copy_program<W: Write + ?Sized>(
        &self,
        r: &mut (impl Read + ?Sized),
        head: &[u8],
        member: Option<&str>,
        out: &mut W,
    ) -> Result<u64, UnpackError> {
        let limit = self.limits.max_program_bytes;
        let too_large = || self.package(Problem::TooLarge { limit });
        let pe = program_format(head) == Some(ProgramFormat::Pe);
        let write_err = |e| self.io("writing the program", e);
        if head.len() as u64 > limit {
            return Err(too_large());
        }
        // `head` is HEAD_LEN bytes unless the member ended: every chunk
        // starts on a 512-byte boundary, as the NSIS check needs.
        let mut installer = pe && has_nsis_header(head);
        out.write_all(head).map_err(write_err)?;
        let mut total = head.len() as u64;
        if head.len() == HEAD_LEN {
            let mut buf = vec![0u8; BUF_SIZE];
            loop {
                let n = fill(r, &mut buf).map_err(|e| self.read_err(e))?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                if total > limit {
                    return Err(too_large());
                }
                installer |= pe && has_nsis_header(&buf[..n]);
                out.write_all(&buf[..n]).map_err(write_err)?;
                if n < BUF_SIZE {
                    break;
                }
            }
        }
        if installer {
            return Err(self.package(Problem::Installer {
                entry: member.map(str::to_string),
            }));
        }
        out.flush().map_err(write_err)?;
        Ok(total)
    }
}

/// Whether a chunk starting on a 512-byte boundary holds an NSIS first
/// header at one of its 512-byte blocks.
fn has_nsis_header(chunk: &[u8]) -> bool {
    chunk
        .chunks(512)
        .any(|block| block.len() >= 4 + NSIS_SIG.len() && &block[4..4 + NSIS_SIG.len()] == NSIS_SIG)
}

/// `CFBundleExecutable` of an XML `Info.plist` (a binary plist, or a
/// value that is not a plain file name, gives `None`).
fn plist_executable(bytes: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(bytes).ok()?;
    const KEY: &str = "<key>CFBundleExecutable</key>";
    let rest = s[s.find(KEY)? + KEY.len()..].trim_start();
    let rest = rest.strip_prefix("<string>")?;
    let raw = rest[..rest.find("</string>")?].trim();
    let value = raw
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    let plain =
        !value.is_empty() && value != "." && value != ".." && !value.contains(['/', '\\', '\0']);
    plain.then_some(value)
}

// ---------------------------------------------------------------------------
// .tar.gz

mod targz {
    use super::*;
    use ::tar::{Archive, Entry, EntryType};
    use flate2::read::MultiGzDecoder;

    /// What one read of the archive ended with.
    enum Outcome {
        Written(ProgramSource),
        /// Nothing written; the program is the header with this ordinal.
        Chosen(u64),
    }

    pub(super) fn extract<R, W>(
        ctx: &Ctx,
        package: &mut R,
        out: &mut W,
    ) -> Result<ProgramSource, UnpackError>
    where
        R: Read + Seek + ?Sized,
        W: Write + ?Sized,
    {
        match pass(ctx, package, out, None)? {
            Outcome::Written(src) => Ok(src),
            Outcome::Chosen(ordinal) => {
                package
                    .seek(SeekFrom::Start(0))
                    .map_err(|e| ctx.io("reading the package", e))?;
                match pass(ctx, package, out, Some(ordinal))? {
                    Outcome::Written(src) => Ok(src),
                    Outcome::Chosen(_) => Err(ctx.package(Problem::Corrupt {
                        detail: "the program's entry was not found again".into(),
                    })),
                }
            }
        }
    }

    /// What a header's entry type makes it.
    fn kind_of(t: EntryType) -> Result<(), &'static str> {
        if t.is_file() || t.is_contiguous() {
            Ok(())
        } else if t.is_symlink() {
            Err("symbolic link")
        } else if t.is_hard_link() {
            Err("hard link")
        } else if t.is_character_special() || t.is_block_special() {
            Err("device file")
        } else if t.is_fifo() {
            Err("FIFO")
        } else if t.is_dir() {
            Err("directory")
        } else if t.is_gnu_sparse() {
            Err("sparse file")
        } else {
            Err("special entry")
        }
    }

    /// One read of the archive. `target`: extract the header with this
    /// ordinal (second read). Otherwise scan everything, write the program
    /// at once when it is a preferred candidate, and choose.
    fn pass<R, W>(
        ctx: &Ctx,
        package: &mut R,
        out: &mut W,
        target: Option<u64>,
    ) -> Result<Outcome, UnpackError>
    where
        R: Read + Seek + ?Sized,
        W: Write + ?Sized,
    {
        let input = BufReader::with_capacity(BUF_SIZE, TagIo(package));
        let unpacked = Bounded {
            inner: MultiGzDecoder::new(input),
            remaining: ctx.limits.max_unpacked_bytes,
        };
        let mut archive = Archive::new(unpacked);
        // Raw: extension headers (long names, PAX) come to us, so that we
        // bound what they make us read.
        let entries = archive.entries().map_err(|e| ctx.read_err(e))?.raw(true);
        let mut long_name: Option<Vec<u8>> = None;
        let mut pax_path: Option<Vec<u8>> = None;
        let mut cands: Vec<Candidate> = Vec::new();
        let mut written: Option<(u64, ProgramSource)> = None;
        for (ordinal, entry) in (0u64..).zip(entries) {
            if ordinal >= ctx.limits.max_entries {
                return Err(ctx.package(Problem::TooManyEntries {
                    limit: ctx.limits.max_entries,
                }));
            }
            let mut entry = entry.map_err(|e| ctx.read_err(e))?;
            let t = entry.header().entry_type();
            if t.is_gnu_longname() {
                let mut name = small(ctx, &mut entry, MAX_LONG_NAME_BYTES, "long name")?;
                while name.last() == Some(&0) {
                    name.pop();
                }
                long_name = Some(name);
                continue;
            }
            if t.is_pax_local_extensions() {
                let data = small(ctx, &mut entry, MAX_PAX_BYTES, "PAX header")?;
                pax_path = pax(ctx, &data)?;
                continue;
            }
            if t.is_gnu_longlink() || t.is_pax_global_extensions() {
                continue; // link targets and global defaults: not needed
            }
            let raw = pax_path
                .take()
                .or(long_name.take())
                .unwrap_or_else(|| entry.path_bytes().into_owned());
            let comps = entry_path(&raw).map_err(|p| ctx.package(p))?;
            if let Some(t_ord) = target {
                if ordinal != t_ord {
                    continue;
                }
                let Some(comps) = comps else { break };
                let path = comps.join("/");
                if kind_of(t).is_err() || ctx.rules.place(&comps, None).is_none() {
                    break;
                }
                let head = read_head(&mut entry).map_err(|e| ctx.read_err(e))?;
                let src = write(ctx, &mut entry, &head, path, out)?;
                return Ok(Outcome::Written(src));
            }
            let Some(comps) = comps else { continue };
            let Some(place) = ctx.rules.place(&comps, None) else {
                continue;
            };
            let path = comps.join("/");
            match kind_of(t) {
                Ok(()) => {}
                Err("directory") => continue,
                Err(kind) => {
                    return Err(ctx.package(Problem::NotRegular { entry: path, kind }));
                }
            }
            let head = read_head(&mut entry).map_err(|e| ctx.read_err(e))?;
            let format = program_format(&head);
            let good = format == Some(ctx.expected);
            if good && place.preferred {
                if let Some((_, first)) = &written {
                    return Err(ctx.package(Problem::Ambiguous {
                        expected: ctx.expected,
                        candidates: vec![first.member.clone().unwrap_or_default(), path],
                    }));
                }
                let src = write(ctx, &mut entry, &head, path.clone(), out)?;
                written = Some((ordinal, src));
            }
            cands.push(Candidate {
                index: ordinal,
                path,
                format,
                what: describe(&head),
                preferred: place.preferred,
            });
        }
        if target.is_some() {
            return Err(ctx.package(Problem::Corrupt {
                detail: "the program's entry was not found again".into(),
            }));
        }
        // Read to the end of the gzip stream, so that its CRC is checked
        // (the tar reader stops at the end-of-archive blocks).
        io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|e| ctx.read_err(e))?;
        let chosen =
            &cands[choose(&cands, ctx.expected, &ctx.rules).map_err(|p| ctx.package(p))?];
        match written {
            Some((ordinal, src)) if ordinal == chosen.index => Ok(Outcome::Written(src)),
            // By construction the written one is the only preferred one of
            // the right format, which `choose` picks; kept as a guard.
            Some((_, src)) => Err(ctx.package(Problem::Ambiguous {
                expected: ctx.expected,
                candidates: vec![src.member.unwrap_or_default(), chosen.path.clone()],
            })),
            None => Ok(Outcome::Chosen(chosen.index)),
        }
    }

    fn write<R: Read, W: Write + ?Sized>(
        ctx: &Ctx,
        entry: &mut Entry<'_, R>,
        head: &[u8],
        path: String,
        out: &mut W,
    ) -> Result<ProgramSource, UnpackError> {
        let format = program_format(head).filter(|f| *f == ctx.expected);
        let Some(format) = format else {
            return Err(ctx.package(Problem::WrongFormat {
                entry: Some(path),
                expected: ctx.expected,
                found: describe(head),
            }));
        };
        if entry.size() > ctx.limits.max_program_bytes {
            return Err(ctx.package(Problem::TooLarge {
                limit: ctx.limits.max_program_bytes,
            }));
        }
        let size = ctx.copy_program(entry, head, Some(&path), out)?;
        Ok(ProgramSource {
            package: PackageKind::TarGz,
            member: Some(path),
            format,
            size,
        })
    }

    fn small<R: Read>(
        ctx: &Ctx,
        entry: &mut Entry<'_, R>,
        max: u64,
        what: &str,
    ) -> Result<Vec<u8>, UnpackError> {
        read_small(entry, max)
            .map_err(|e| ctx.read_err(e))?
            .ok_or_else(|| {
                ctx.package(Problem::Corrupt {
                    detail: format!("{what} longer than {max} bytes"),
                })
            })
    }

    /// The `path` of a PAX extended header. A `size` record (only needed
    /// past 8 GiB, far above any limit) is refused.
    fn pax(ctx: &Ctx, data: &[u8]) -> Result<Option<Vec<u8>>, UnpackError> {
        let bad = |detail: &str| {
            ctx.package(Problem::Corrupt {
                detail: format!("bad PAX header: {detail}"),
            })
        };
        let mut path = None;
        let mut rest = data;
        while !rest.is_empty() {
            if rest.iter().all(|b| *b == 0) {
                break;
            }
            let sp = rest
                .iter()
                .position(|b| *b == b' ')
                .ok_or_else(|| bad("no length"))?;
            let len: usize = std::str::from_utf8(&rest[..sp])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("bad length"))?;
            if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
                return Err(bad("bad record"));
            }
            let record = &rest[sp + 1..len - 1];
            let eq = record
                .iter()
                .position(|b| *b == b'=')
                .ok_or_else(|| bad("no '='"))?;
            let (key, value) = (&record[..eq], &record[eq + 1..]);
            match key {
                b"path" => path = Some(value.to_vec()),
                b"size" => {
                    return Err(ctx.package(Problem::Unsupported {
                        detail: "PAX size records (members over 8 GiB)".into(),
                    }));
                }
                _ => {}
            }
            rest = &rest[len..];
        }
        Ok(path)
    }
}

// ---------------------------------------------------------------------------
// .zip (.ipa, .apk)

mod zipfile {
    use super::*;
    use ::zip::ZipArchive;
    use ::zip::result::ZipError;

    fn zip_err(ctx: &Ctx, e: ZipError) -> UnpackError {
        match e {
            ZipError::Io(e) => ctx.read_err(e),
            ZipError::UnsupportedArchive(what) => ctx.package(Problem::Unsupported {
                detail: what.to_string(),
            }),
            ZipError::CompressionMethodNotSupported(m) => ctx.package(Problem::Unsupported {
                detail: format!("compression method {m}"),
            }),
            other => ctx.package(Problem::Corrupt {
                detail: other.to_string(),
            }),
        }
    }

    /// Refuses, before the zip crate reads the central directory, an archive
    /// whose end records announce more than `max_entries` entries (a zip64
    /// record can announce billions).
    fn precheck<R: Read + Seek + ?Sized>(
        ctx: &Ctx,
        r: &mut TagIo<'_, R>,
    ) -> Result<(), UnpackError> {
        let io = |e| ctx.io("reading the package", e);
        let len = r.seek(SeekFrom::End(0)).map_err(io)?;
        let start = len.saturating_sub(22 + 0xffff + 20);
        r.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut tail = Vec::new();
        r.read_to_end(&mut tail).map_err(io)?;
        let max = ctx.limits.max_entries;
        let too_many = || ctx.package(Problem::TooManyEntries { limit: max });
        let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        for pos in (0..tail.len().saturating_sub(21)).rev() {
            if &tail[pos..pos + 4] != b"PK\x05\x06" {
                continue;
            }
            let (on_disk, total) = (u16_at(&tail, pos + 8), u16_at(&tail, pos + 10));
            if on_disk != 0xffff && total != 0xffff {
                if u64::from(total.max(on_disk)) > max {
                    return Err(too_many());
                }
                continue;
            }
            // zip64: the locator just before points to the zip64 record.
            let Some(loc) = pos.checked_sub(20) else {
                continue;
            };
            if &tail[loc..loc + 4] != b"PK\x06\x07" {
                continue;
            }
            let mut off = [0u8; 8];
            off.copy_from_slice(&tail[loc + 8..loc + 16]);
            let off = u64::from_le_bytes(off);
            if off.checked_add(56).is_none_or(|end| end > len) {
                continue;
            }
            let mut rec = [0u8; 56];
            r.seek(SeekFrom::Start(off)).map_err(io)?;
            r.read_exact(&mut rec).map_err(io)?;
            if &rec[..4] != b"PK\x06\x06" {
                continue;
            }
            let count = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&rec[i..i + 8]);
                u64::from_le_bytes(b)
            };
            if count(24).max(count(32)) > max {
                return Err(too_many());
            }
        }
        Ok(())
    }

    enum Kind {
        Regular,
        Dir,
        Other(&'static str),
    }

    pub(super) fn extract<R, W>(
        ctx: &Ctx,
        package: &mut R,
        out: &mut W,
    ) -> Result<ProgramSource, UnpackError>
    where
        R: Read + Seek + ?Sized,
        W: Write + ?Sized,
    {
        let mut src = TagIo(package);
        precheck(ctx, &mut src)?;
        src.seek(SeekFrom::Start(0))
            .map_err(|e| ctx.io("reading the package", e))?;
        let mut archive = ZipArchive::new(src).map_err(|e| zip_err(ctx, e))?;
        if archive.len() as u64 > ctx.limits.max_entries {
            return Err(ctx.package(Problem::TooManyEntries {
                limit: ctx.limits.max_entries,
            }));
        }
        // The central directory: names checked, the program's place found.
        let mut placed: Vec<(usize, Vec<String>)> = Vec::new();
        let mut plist: Option<usize> = None;
        for i in 0..archive.len() {
            let e = archive.by_index_data(i).map_err(|e| zip_err(ctx, e))?;
            let comps = entry_path(e.name_raw()).map_err(|p| ctx.package(p))?;
            let kind = if e.is_dir() {
                Kind::Dir
            } else if e.is_symlink() {
                Kind::Other("symbolic link")
            } else {
                match e.unix_mode().map(|m| m & 0o170000) {
                    None | Some(0) | Some(0o100000) => Kind::Regular,
                    Some(0o040000) => Kind::Dir,
                    Some(0o120000) => Kind::Other("symbolic link"),
                    Some(0o020000 | 0o060000) => Kind::Other("device file"),
                    Some(0o010000) => Kind::Other("FIFO"),
                    Some(_) => Kind::Other("special entry"),
                }
            };
            // Names are taken as UTF-8 bytes; a CP437 name that is not
            // UTF-8 cannot be the program (and is skipped).
            let Some(comps) = comps else { continue };
            let is_plist = ctx.rules.platform == Platform::Ios
                && matches!(&comps[..], [p, b, f] if p == "Payload" && b.ends_with(".app") && f == "Info.plist");
            if ctx.rules.place(&comps, None).is_none() {
                continue;
            }
            match kind {
                Kind::Dir => continue,
                Kind::Other(kind) => {
                    return Err(ctx.package(Problem::NotRegular {
                        entry: comps.join("/"),
                        kind,
                    }));
                }
                Kind::Regular if is_plist => plist = Some(i),
                Kind::Regular => {}
            }
            placed.push((i, comps));
        }
        let bundle_exec = match plist {
            Some(i) => {
                let mut f = archive.by_index(i).map_err(|e| zip_err(ctx, e))?;
                read_small(&mut f, MAX_PLIST_BYTES)
                    .map_err(|e| ctx.read_err(e))?
                    .and_then(|b| plist_executable(&b))
            }
            None => None,
        };
        let peek = |archive: &mut ZipArchive<TagIo<'_, R>>, i: usize| {
            let mut f = archive.by_index(i).map_err(|e| zip_err(ctx, e))?;
            if f.encrypted() {
                return Ok((None, "encrypted".to_string()));
            }
            let head = read_head(&mut f).map_err(|e| ctx.read_err(e))?;
            Ok::<_, UnpackError>((program_format(&head), describe(&head)))
        };
        let mut cands = Vec::with_capacity(placed.len());
        for (i, comps) in placed {
            let place = ctx
                .rules
                .place(&comps, bundle_exec.as_deref())
                .expect("placed before");
            cands.push(Candidate {
                index: i as u64,
                path: comps.join("/"),
                format: None,
                what: String::new(),
                preferred: place.preferred,
            });
        }
        // The only preferred candidate, of the right format, is the choice
        // whatever the others are: then the others' heads are not read.
        let preferred: Vec<usize> = (0..cands.len()).filter(|&c| cands[c].preferred).collect();
        let mut shortcut = None;
        if let [c] = preferred[..] {
            let (format, _) = peek(&mut archive, cands[c].index as usize)?;
            if format == Some(ctx.expected) {
                shortcut = Some(c);
            }
        }
        let chosen = match shortcut {
            Some(c) => &cands[c],
            None => {
                for c in &mut cands {
                    (c.format, c.what) = peek(&mut archive, c.index as usize)?;
                }
                &cands[choose(&cands, ctx.expected, &ctx.rules).map_err(|p| ctx.package(p))?]
            }
        };
        let mut f = archive
            .by_index(chosen.index as usize)
            .map_err(|e| zip_err(ctx, e))?;
        if f.size() > ctx.limits.max_program_bytes {
            return Err(ctx.package(Problem::TooLarge {
                limit: ctx.limits.max_program_bytes,
            }));
        }
        let head = read_head(&mut f).map_err(|e| ctx.read_err(e))?;
        let format = program_format(&head).filter(|f| *f == ctx.expected);
        let Some(format) = format else {
            return Err(ctx.package(Problem::WrongFormat {
                entry: Some(chosen.path.clone()),
                expected: ctx.expected,
                found: describe(&head),
            }));
        };
        let size = ctx.copy_program(&mut f, &head, Some(&chosen.path), out)?;
        Ok(ProgramSource {
            package: PackageKind::Zip,
            member: Some(chosen.path.clone()),
            format,
            size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Cursor;
    use std::time::{Duration, Instant};

    const MIB: u64 = 1 << 20;

    /// Deterministic bytes that do not compress to nothing.
    fn filler(len: usize, seed: u8) -> Vec<u8> {
        let mut x = 0x9e37_79b9_u32 ^ u32::from(seed);
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                if i % 3 == 0 { 0 } else { (x >> 24) as u8 }
            })
            .collect()
    }

    fn with_head(head: &[u8], len: usize, seed: u8) -> Vec<u8> {
        let mut v = filler(len.max(head.len()), seed);
        v[..head.len()].copy_from_slice(head);
        v
    }

    fn elf(len: usize, seed: u8) -> Vec<u8> {
        with_head(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0", len, seed)
    }

    fn macho(len: usize, seed: u8) -> Vec<u8> {
        with_head(&[0xcf, 0xfa, 0xed, 0xfe, 0x0c, 0, 0, 1], len, seed)
    }

    fn pe_head() -> Vec<u8> {
        let mut h = vec![0u8; 0x100];
        h[..2].copy_from_slice(b"MZ");
        h[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        h[0x80..0x84].copy_from_slice(b"PE\0\0");
        h
    }

    fn pe(len: usize, seed: u8) -> Vec<u8> {
        with_head(&pe_head(), len, seed)
    }

    fn program_for(p: Platform, len: usize, seed: u8) -> Vec<u8> {
        match ProgramFormat::of(p) {
            ProgramFormat::Elf => elf(len, seed),
            ProgramFormat::MachO => macho(len, seed),
            ProgramFormat::Pe => pe(len, seed),
        }
    }

    enum T<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        HardLink(&'a str, &'a str),
        CharDevice(&'a str),
        /// A regular file whose name goes into the header as raw bytes
        /// (bypassing the builder's refusal of `..` and absolute names).
        RawName(&'a [u8], &'a [u8]),
        /// A PAX header giving the next entry's path.
        PaxPath(&'a str),
    }

    fn tar_bytes(entries: &[T<'_>]) -> Vec<u8> {
        let mut b = ::tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = ::tar::Header::new_gnu();
            h.set_mode(0o755);
            h.set_mtime(0);
            match e {
                T::File(p, data) => {
                    h.set_size(data.len() as u64);
                    h.set_entry_type(::tar::EntryType::Regular);
                    b.append_data(&mut h, p, *data).unwrap();
                }
                T::Dir(p) => {
                    h.set_size(0);
                    h.set_entry_type(::tar::EntryType::Directory);
                    b.append_data(&mut h, p, io::empty()).unwrap();
                }
                T::Symlink(p, target) | T::HardLink(p, target) => {
                    h.set_size(0);
                    h.set_entry_type(if matches!(e, T::Symlink(..)) {
                        ::tar::EntryType::Symlink
                    } else {
                        ::tar::EntryType::Link
                    });
                    b.append_link(&mut h, p, target).unwrap();
                }
                T::CharDevice(p) => {
                    h.set_size(0);
                    h.set_entry_type(::tar::EntryType::Char);
                    b.append_data(&mut h, p, io::empty()).unwrap();
                }
                T::RawName(name, data) => {
                    h.set_size(data.len() as u64);
                    h.set_entry_type(::tar::EntryType::Regular);
                    h.as_old_mut().name[..name.len()].copy_from_slice(name);
                    h.set_cksum();
                    b.append(&h, *data).unwrap();
                }
                T::PaxPath(p) => {
                    let body = format!(" path={p}\n");
                    let mut len = body.len() + 1;
                    if (len + len.to_string().len() - 1).to_string().len() != len.to_string().len()
                    {
                        len += 1;
                    }
                    let record = format!("{}{body}", len + len.to_string().len() - 1);
                    let mut h = ::tar::Header::new_ustar();
                    h.set_entry_type(::tar::EntryType::XHeader);
                    h.set_size(record.len() as u64);
                    h.set_path("PaxHeader/x").unwrap();
                    h.set_mode(0o644);
                    h.set_cksum();
                    b.append(&h, record.as_bytes()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn targz(entries: &[T<'_>]) -> Vec<u8> {
        gz(&tar_bytes(entries))
    }

    enum Z<'a> {
        File(&'a str, &'a [u8]),
        Stored(&'a str, &'a [u8]),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
    }

    fn zip_bytes(entries: &[Z<'_>]) -> Vec<u8> {
        use ::zip::write::SimpleFileOptions;
        let mut w = ::zip::ZipWriter::new(Cursor::new(Vec::new()));
        let deflated = SimpleFileOptions::default()
            .compression_method(::zip::CompressionMethod::Deflated)
            .unix_permissions(0o755);
        let stored = deflated.compression_method(::zip::CompressionMethod::Stored);
        for e in entries {
            match e {
                Z::File(name, data) => {
                    w.start_file(*name, deflated).unwrap();
                    w.write_all(data).unwrap();
                }
                Z::Stored(name, data) => {
                    w.start_file(*name, stored).unwrap();
                    w.write_all(data).unwrap();
                }
                Z::Dir(name) => w.add_directory(*name, deflated).unwrap(),
                Z::Symlink(name, target) => w.add_symlink(*name, *target, deflated).unwrap(),
            }
        }
        w.finish().unwrap().into_inner()
    }

    fn art(platform: Platform, name: &'static str) -> Artifact<'static> {
        Artifact {
            name,
            target: program_target(platform),
            platform,
            app_name: None,
        }
    }

    fn limits() -> Limits {
        Limits::for_max_body(200 * MIB)
    }

    fn run(
        bytes: &[u8],
        a: &Artifact<'_>,
        l: &Limits,
    ) -> Result<(ProgramSource, Vec<u8>), UnpackError> {
        let mut out = Vec::new();
        let src = extract_program(&mut Cursor::new(bytes), a, l, &mut out)?;
        assert_eq!(src.size, out.len() as u64);
        Ok((src, out))
    }

    fn problem(bytes: &[u8], a: &Artifact<'_>, l: &Limits) -> (Problem, String) {
        let e = match run(bytes, a, l) {
            Ok((src, _)) => panic!("must be refused, got {src:?}"),
            Err(e) => e,
        };
        assert!(e.is_package_fault(), "{e}");
        (e.problem().unwrap().clone(), e.to_string())
    }

    // --- targets and formats

    #[test]
    fn program_targets_and_ignored_ones() {
        use Platform::*;
        let expect = [
            (Macos, "macos-precompiled"),
            (Ios, "ios-precompiled"),
            (Windows, "windows"),
            (Linux, "linux"),
            (Android, "android"),
        ];
        for (p, t) in expect {
            assert_eq!(program_target(p), t);
            assert!(carries_program(p, t));
        }
        for (p, t) in [
            (Macos, "macos-sign"),
            (Macos, "macos"),
            (Ios, "ios-sign"),
            (Ios, "ios"),
            (Windows, "windows-precompiled"),
            (Linux, "android"),
            (Android, "linux"),
            (Linux, ""),
            (Linux, "LINUX"),
        ] {
            assert!(!carries_program(p, t), "{p} {t}");
        }
    }

    #[test]
    fn magic_numbers() {
        assert_eq!(program_format(&elf(64, 1)), Some(ProgramFormat::Elf));
        for m in [
            [0xfe, 0xed, 0xfa, 0xce],
            [0xfe, 0xed, 0xfa, 0xcf],
            [0xce, 0xfa, 0xed, 0xfe],
            [0xcf, 0xfa, 0xed, 0xfe],
        ] {
            assert_eq!(
                program_format(&with_head(&m, 64, 1)),
                Some(ProgramFormat::MachO),
                "{m:x?}"
            );
        }
        let fat = with_head(&[0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 2], 64, 1);
        assert_eq!(program_format(&fat), Some(ProgramFormat::MachO));
        let java = with_head(&[0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 52], 64, 1);
        assert_eq!(program_format(&java), None, "a Java class is no program");
        assert_eq!(describe(&java), "a Java class file");
        assert_eq!(program_format(&pe(0x200, 1)), Some(ProgramFormat::Pe));
        let mut dos = pe(0x200, 1);
        dos[0x80] = b'X';
        assert_eq!(program_format(&dos), None, "MZ without a PE header");
        let mut far = pe(0x200, 1);
        far[0x3c..0x40].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert_eq!(program_format(&far), None, "PE header offset past the head");
        let appimage = with_head(b"\x7fELF\x02\x01\x01\0AI\x02", 64, 1);
        assert_eq!(program_format(&appimage), None);
        assert!(describe(&appimage).contains("AppImage"));
        for short in [&b""[..], b"\x7fEL", b"MZ", b"\xcf\xfa\xed"] {
            assert_eq!(program_format(short), None);
        }
        assert_eq!(describe(b"#!/bin/sh\necho hi\n"), "a script");
        assert_eq!(describe(b"hello world\n"), "text");
        assert_eq!(describe(&[0u8, 1, 2, 3]), "data starting with 0x00010203");
    }

    #[test]
    fn limits_follow_max_body() {
        let l = Limits::for_max_body(209_715_200);
        assert_eq!(l.max_program_bytes, 209_715_200);
        assert_eq!(l.max_unpacked_bytes, 4 * 209_715_200);
        assert_eq!(l.max_entries, 100_000);
        assert_eq!(Limits::for_max_body(u64::MAX).max_unpacked_bytes, u64::MAX);
    }

    // --- raw programs

    #[test]
    fn raw_programs_are_taken_as_they_are() {
        for p in Platform::ALL {
            let prog = program_for(p, 300_000, 7);
            let (src, out) = run(&prog, &art(p, "x"), &limits()).unwrap();
            assert_eq!(out, prog, "{p}");
            assert_eq!(src.package, PackageKind::Raw);
            assert_eq!(src.member, None);
            assert_eq!(src.format, ProgramFormat::of(p));
        }
        // Shorter than the head buffer.
        let tiny = elf(100, 1);
        assert_eq!(
            run(&tiny, &art(Platform::Linux, "x"), &limits()).unwrap().1,
            tiny
        );
    }

    #[test]
    fn raw_program_of_another_platform_is_refused() {
        let (p, msg) = problem(&elf(5000, 1), &art(Platform::Macos, "app.bin"), &limits());
        assert!(matches!(
            p,
            Problem::WrongFormat {
                entry: None,
                expected: ProgramFormat::MachO,
                ..
            }
        ));
        assert_eq!(
            msg,
            "macos artifact app.bin (macos-precompiled): the artifact is an ELF program, not a Mach-O program"
        );
        let (p, _) = problem(&pe(5000, 1), &art(Platform::Android, "a"), &limits());
        assert!(matches!(
            p,
            Problem::WrongFormat {
                expected: ProgramFormat::Elf,
                ..
            }
        ));
    }

    #[test]
    fn appimage_and_nsis_installer_are_packages() {
        let appimage = with_head(b"\x7fELF\x02\x01\x01\0AI\x02", 10_000, 3);
        let (p, msg) = problem(
            &appimage,
            &art(Platform::Linux, "app-1.AppImage"),
            &limits(),
        );
        assert!(matches!(p, Problem::NotAPackage { .. }), "{p:?}");
        assert!(
            msg.starts_with("linux artifact app-1.AppImage: is an AppImage"),
            "{msg}"
        );

        let mut setup = pe(300_000, 4);
        let at = 512 * 300;
        setup[at + 4..at + 20].copy_from_slice(NSIS_SIG);
        let (p, msg) = problem(&setup, &art(Platform::Windows, "Setup.exe"), &limits());
        assert_eq!(p, Problem::Installer { entry: None });
        assert!(msg.contains("NSIS installer"), "{msg}");
        // Inside a zip too.
        let z = zip_bytes(&[Z::File("App.exe", &setup)]);
        let (p, _) = problem(&z, &art(Platform::Windows, "a.zip"), &limits());
        assert_eq!(
            p,
            Problem::Installer {
                entry: Some("App.exe".into())
            }
        );
        // The signature off a 512-byte boundary is just data.
        let mut fine = pe(300_000, 4);
        fine[at + 5..at + 21].copy_from_slice(NSIS_SIG);
        assert_eq!(
            run(&fine, &art(Platform::Windows, "a"), &limits())
                .unwrap()
                .1,
            fine
        );
    }

    #[test]
    fn raw_program_over_the_limit() {
        let l = Limits {
            max_program_bytes: 10_000,
            ..limits()
        };
        let (p, msg) = problem(&elf(10_001, 1), &art(Platform::Linux, "app-x"), &l);
        assert_eq!(p, Problem::TooLarge { limit: 10_000 });
        assert_eq!(
            msg,
            "linux artifact app-x: extracted program exceeds 10000 bytes"
        );
        assert!(run(&elf(10_000, 1), &art(Platform::Linux, "a"), &l).is_ok());
    }

    // --- packages, per platform

    #[test]
    fn linux_tarball() {
        let prog = elf(700_000, 1);
        let icon = b"\x89PNG\r\n\x1a\nicon";
        let pkg = targz(&[
            T::Dir("my-app-1.0.0-linux-x86_64/"),
            T::Dir("my-app-1.0.0-linux-x86_64/bin/"),
            T::File("my-app-1.0.0-linux-x86_64/bin/my-app", &prog),
            T::File("my-app-1.0.0-linux-x86_64/share/icons/my-app.png", icon),
            T::File("my-app-1.0.0-linux-x86_64/bin/icon.png", icon),
            T::File(
                "my-app-1.0.0-linux-x86_64/bin/assets/data.bin",
                &elf(100, 2),
            ),
            T::Symlink("my-app-1.0.0-linux-x86_64/share/link", "../bin/my-app"),
            T::CharDevice("my-app-1.0.0-linux-x86_64/share/null"),
        ]);
        let mut out = HashingWriter::new(Vec::new());
        let src = extract_program(
            &mut Cursor::new(&pkg),
            &art(Platform::Linux, "my-app-x.tar.gz"),
            &limits(),
            &mut out,
        )
        .unwrap();
        let (bytes, size, sha) = out.finish();
        assert_eq!(bytes, prog);
        assert_eq!(size, prog.len() as u64);
        assert_eq!(sha, crate::codec::hex(&Sha256::digest(&prog)));
        assert_eq!(
            src,
            ProgramSource {
                package: PackageKind::TarGz,
                member: Some("my-app-1.0.0-linux-x86_64/bin/my-app".into()),
                format: ProgramFormat::Elf,
                size: prog.len() as u64,
            }
        );
        let json = serde_json::to_value(&src).unwrap();
        assert_eq!(json["package"], "tar.gz");
        assert_eq!(json["format"], "elf");
        assert_eq!(json["member"], "my-app-1.0.0-linux-x86_64/bin/my-app");
    }

    #[test]
    fn linux_tarball_single_candidate_not_named_by_convention() {
        // Read twice: the first read finds it, the second extracts it.
        let prog = elf(200_000, 5);
        let pkg = targz(&[
            T::File("./dist/bin/icon.png", b"\x89PNG...."),
            T::File("./dist/bin/runner", &prog),
            T::File("./dist/README", b"hello"),
        ]);
        let (src, out) = run(&pkg, &art(Platform::Linux, "a.tar.gz"), &limits()).unwrap();
        assert_eq!(out, prog);
        assert_eq!(src.member.as_deref(), Some("dist/bin/runner"));
        // bin/ at the top also counts.
        let pkg = targz(&[T::File("bin/tool", &prog)]);
        assert_eq!(
            run(&pkg, &art(Platform::Linux, "a"), &limits()).unwrap().1,
            prog
        );
    }

    #[test]
    fn macos_precompiled_app() {
        let prog = macho(500_000, 2);
        let plist = b"<?xml version=\"1.0\"?><plist><dict><key>CFBundleExecutable</key><string>My App</string></dict></plist>";
        let pkg = targz(&[
            T::Dir("My App.app/"),
            T::Dir("My App.app/Contents/"),
            T::File("My App.app/Contents/Info.plist", plist),
            T::Dir("My App.app/Contents/MacOS/"),
            T::File("My App.app/Contents/MacOS/My App", &prog),
            T::File("My App.app/Contents/Resources/AppIcon.icns", b"icns...."),
            T::File("My App.app/Contents/Resources/lib.dylib", &macho(1000, 3)),
        ]);
        let (src, out) = run(&pkg, &art(Platform::Macos, "My App-j.tar.gz"), &limits()).unwrap();
        assert_eq!(out, prog);
        assert_eq!(
            src.member.as_deref(),
            Some("My App.app/Contents/MacOS/My App")
        );
        assert_eq!(src.format, ProgramFormat::MachO);
        // The named one wins over a helper; two unnamed ones are ambiguous.
        let pkg = targz(&[
            T::File("A.app/Contents/MacOS/helper", &macho(1000, 4)),
            T::File("A.app/Contents/MacOS/A", &prog),
        ]);
        assert_eq!(
            run(&pkg, &art(Platform::Macos, "a"), &limits()).unwrap().1,
            prog
        );
        let pkg = targz(&[
            T::File("A.app/Contents/MacOS/one", &macho(1000, 4)),
            T::File("A.app/Contents/MacOS/two", &prog),
        ]);
        let (p, _) = problem(&pkg, &art(Platform::Macos, "a"), &limits());
        assert!(
            matches!(p, Problem::Ambiguous { ref candidates, .. } if candidates.len() == 2),
            "{p:?}"
        );
    }

    #[test]
    fn ios_ipa() {
        let prog = macho(400_000, 6);
        let plist = b"<?xml version=\"1.0\"?>\n<plist version=\"1.0\"><dict>\n  <key>CFBundleExecutable</key>\n  <string>Hello</string>\n</dict></plist>";
        let ipa = zip_bytes(&[
            Z::Dir("Payload/"),
            Z::Dir("Payload/Hello.app/"),
            Z::File("Payload/Hello.app/Info.plist", plist),
            Z::File("Payload/Hello.app/PkgInfo", b"APPL????"),
            Z::File("Payload/Hello.app/Hello", &prog),
            Z::File("Payload/Hello.app/assets/img.png", b"\x89PNG"),
            Z::File("Payload/Hello.app/Frameworks/x.dylib", &macho(500, 1)),
        ]);
        let (src, out) = run(&ipa, &art(Platform::Ios, "Hello-j.ipa"), &limits()).unwrap();
        assert_eq!(out, prog);
        assert_eq!(src.package, PackageKind::Zip);
        assert_eq!(src.member.as_deref(), Some("Payload/Hello.app/Hello"));
    }

    #[test]
    fn ios_bundle_executable_decides_among_several() {
        let prog = macho(100_000, 8);
        let plist =
            b"<plist><dict><key>CFBundleExecutable</key><string>Runner</string></dict></plist>";
        let ipa = zip_bytes(&[
            Z::File("Payload/Hello.app/Hello", &macho(1000, 9)),
            Z::File("Payload/Hello.app/Runner", &prog),
            Z::File("Payload/Hello.app/Info.plist", plist),
        ]);
        let (src, out) = run(&ipa, &art(Platform::Ios, "x.ipa"), &limits()).unwrap();
        assert_eq!(out, prog);
        assert_eq!(src.member.as_deref(), Some("Payload/Hello.app/Runner"));
        // A binary plist is not read: the file named like the bundle wins.
        let ipa = zip_bytes(&[
            Z::File("Payload/Hello.app/Runner", &macho(1000, 9)),
            Z::File("Payload/Hello.app/Hello", &prog),
            Z::File("Payload/Hello.app/Info.plist", b"bplist00\xd1\x01\x02"),
        ]);
        let (src, _) = run(&ipa, &art(Platform::Ios, "x.ipa"), &limits()).unwrap();
        assert_eq!(src.member.as_deref(), Some("Payload/Hello.app/Hello"));
        assert_eq!(
            plist_executable(b"<key>CFBundleExecutable</key><string>../x</string>"),
            None
        );
        assert_eq!(
            plist_executable(b"<key>CFBundleExecutable</key>\n\t<string> A &amp; B </string>"),
            Some("A & B".into())
        );
    }

    #[test]
    fn android_apk() {
        let prog = elf(300_000, 10);
        let apk = zip_bytes(&[
            Z::File("AndroidManifest.xml", b"\x03\x00\x08\x00"),
            Z::File("classes.dex", b"dex\n035\0"),
            Z::Stored("lib/arm64-v8a/libperry_app.so", &prog),
            Z::Stored("lib/arm64-v8a/libhone_editor_android.so", &elf(5000, 11)),
            Z::File("lib/armeabi-v7a/libperry_app.so", &elf(5000, 12)),
            Z::File("assets/logo/logo.png", b"\x89PNG"),
        ]);
        let (src, out) = run(&apk, &art(Platform::Android, "app-j.apk"), &limits()).unwrap();
        assert_eq!(out, prog);
        assert_eq!(src.member.as_deref(), Some("lib/arm64-v8a/libperry_app.so"));
        // Several libraries, none conventional: ambiguous unless app_name names one.
        let apk = zip_bytes(&[
            Z::File("lib/arm64-v8a/libone.so", &elf(5000, 11)),
            Z::File("lib/arm64-v8a/libtwo.so", &prog),
        ]);
        let (p, msg) = problem(&apk, &art(Platform::Android, "app-j.apk"), &limits());
        assert!(matches!(p, Problem::Ambiguous { .. }), "{p:?}");
        assert!(
            msg.contains("lib/arm64-v8a/libone.so") && msg.contains("libtwo.so"),
            "{msg}"
        );
        let a = Artifact {
            app_name: Some("two"),
            ..art(Platform::Android, "x")
        };
        assert_eq!(run(&apk, &a, &limits()).unwrap().1, prog);
    }

    #[test]
    fn windows_portable_zip() {
        let prog = pe(600_000, 13);
        let z = zip_bytes(&[
            Z::File("My App.exe", &prog),
            Z::File("perry_ui.dll", &pe(3000, 14)),
            Z::File("app.ico", b"\0\0\x01\0"),
        ]);
        let (src, out) = run(&z, &art(Platform::Windows, "My App-j.zip"), &limits()).unwrap();
        assert_eq!(out, prog);
        assert_eq!(src.member.as_deref(), Some("My App.exe"));
        assert_eq!(src.format, ProgramFormat::Pe);
        let z = zip_bytes(&[
            Z::File("App.EXE", &prog),
            Z::File("helper.exe", &pe(3000, 15)),
        ]);
        let (p, _) = problem(&z, &art(Platform::Windows, "a.zip"), &limits());
        assert!(matches!(p, Problem::Ambiguous { .. }));
        let a = Artifact {
            app_name: Some("app"),
            ..art(Platform::Windows, "a.zip")
        };
        let (src, out) = run(&z, &a, &limits()).unwrap();
        assert_eq!((src.member.as_deref(), out), (Some("App.EXE"), prog));
    }

    // --- refusals

    #[test]
    fn wrong_format_inside_the_package() {
        let pkg = targz(&[T::File(
            "app-1-linux-x86_64/bin/app",
            b"#!/bin/sh\nexec true\n",
        )]);
        let (p, msg) = problem(&pkg, &art(Platform::Linux, "app-x.tar.gz"), &limits());
        assert!(matches!(
            p,
            Problem::WrongFormat {
                entry: Some(_),
                expected: ProgramFormat::Elf,
                ..
            }
        ));
        assert_eq!(
            msg,
            "linux artifact app-x.tar.gz: 'app-1-linux-x86_64/bin/app' is a script, not an ELF program"
        );
        // A Mach-O in the APK's place.
        let apk = zip_bytes(&[Z::File("lib/arm64-v8a/libperry_app.so", &macho(1000, 1))]);
        let (p, _) = problem(&apk, &art(Platform::Android, "a.apk"), &limits());
        assert!(matches!(
            p,
            Problem::WrongFormat {
                expected: ProgramFormat::Elf,
                ..
            }
        ));
        // A tarball for windows: the .exe must be PE.
        let pkg = targz(&[T::File("App.exe", &elf(1000, 1))]);
        let (p, _) = problem(&pkg, &art(Platform::Windows, "a"), &limits());
        assert!(matches!(
            p,
            Problem::WrongFormat {
                expected: ProgramFormat::Pe,
                ..
            }
        ));
    }

    #[test]
    fn no_program() {
        let pkg = targz(&[T::File("app/share/readme.txt", b"hi"), T::Dir("app/bin/")]);
        let (p, msg) = problem(&pkg, &art(Platform::Linux, "app-x.tar.gz"), &limits());
        assert!(matches!(p, Problem::NoProgram { ref found, .. } if found.is_empty()));
        assert_eq!(
            msg,
            "linux artifact app-x.tar.gz: no ELF program under bin/ (<prefix>/bin/<binary>)"
        );
        let pkg = targz(&[
            T::File("app/bin/icon.png", b"\x89PNG...."),
            T::File("app/bin/notes", b"text here"),
        ]);
        let (_, msg) = problem(&pkg, &art(Platform::Linux, "a"), &limits());
        assert!(
            msg.contains("found 'app/bin/icon.png' (a PNG image), 'app/bin/notes' (text)"),
            "{msg}"
        );
        let ipa = zip_bytes(&[Z::File("Payload/A.app/Info.plist", b"<plist/>")]);
        let (p, _) = problem(&ipa, &art(Platform::Ios, "a.ipa"), &limits());
        assert!(matches!(p, Problem::WrongFormat { .. }), "{p:?}");
        let empty_zip = zip_bytes(&[]);
        let (p, _) = problem(&empty_zip, &art(Platform::Windows, "a.zip"), &limits());
        assert!(matches!(p, Problem::NoProgram { .. }), "{p:?}");
    }

    #[test]
    fn not_a_package() {
        let (p, msg) = problem(b"", &art(Platform::Linux, "a"), &limits());
        assert!(matches!(p, Problem::NotAPackage { .. }));
        assert!(msg.contains("is empty"), "{msg}");
        let (_, msg) = problem(
            b"!<arch>\ndebian-binary",
            &art(Platform::Linux, "a.deb"),
            &limits(),
        );
        assert_eq!(
            msg,
            "linux artifact a.deb: is an ar archive (a .deb?): neither a program nor a .tar.gz or .zip package (expected ELF program under bin/ (<prefix>/bin/<binary>))"
        );
        // A .dmg (the macos-sign artifact) is not read.
        let dmg = filler(20_000, 1);
        let a = Artifact {
            target: "macos-sign",
            ..art(Platform::Macos, "a.dmg")
        };
        assert!(matches!(
            problem(&dmg, &a, &limits()).0,
            Problem::NotAPackage { .. }
        ));
    }

    #[test]
    fn dot_dot_names_make_the_package_refused() {
        let prog = elf(1000, 1);
        let pkg = targz(&[T::File("a/bin/a", &prog), T::RawName(b"../evil", b"x")]);
        let (p, msg) = problem(&pkg, &art(Platform::Linux, "app-x.tar.gz"), &limits());
        assert_eq!(
            p,
            Problem::UnsafeName {
                entry: "../evil".into(),
                why: "escapes the package"
            }
        );
        assert_eq!(
            msg,
            "linux artifact app-x.tar.gz: entry '../evil' escapes the package"
        );
        let pkg = targz(&[T::RawName(b"a/bin/../../../x", &prog)]);
        assert!(matches!(
            problem(&pkg, &art(Platform::Linux, "a"), &limits()).0,
            Problem::UnsafeName { .. }
        ));
        let z = zip_bytes(&[
            Z::File("App.exe", &pe(1000, 1)),
            Z::File("..\\..\\evil.dll", b"x"),
        ]);
        let (p, _) = problem(&z, &art(Platform::Windows, "a"), &limits());
        assert!(
            matches!(
                p,
                Problem::UnsafeName {
                    why: "escapes the package",
                    ..
                }
            ),
            "{p:?}"
        );
        // Through a PAX path too.
        let pkg = targz(&[T::PaxPath("../../etc/passwd"), T::File("harmless", b"x")]);
        let (p, _) = problem(&pkg, &art(Platform::Linux, "a"), &limits());
        assert_eq!(
            p,
            Problem::UnsafeName {
                entry: "../../etc/passwd".into(),
                why: "escapes the package"
            }
        );
    }

    #[test]
    fn absolute_names_make_the_package_refused() {
        let pkg = targz(&[T::RawName(b"/usr/bin/app", &elf(1000, 1))]);
        let (p, msg) = problem(&pkg, &art(Platform::Linux, "a"), &limits());
        assert_eq!(
            p,
            Problem::UnsafeName {
                entry: "/usr/bin/app".into(),
                why: "has an absolute name"
            }
        );
        assert!(msg.ends_with("entry '/usr/bin/app' has an absolute name"));
        for name in ["/abs/App.exe", "C:\\x\\App.exe", "\\\\server\\App.exe"] {
            let z = zip_bytes(&[Z::File(name, &pe(1000, 1))]);
            let (p, _) = problem(&z, &art(Platform::Windows, "a"), &limits());
            assert!(
                matches!(
                    p,
                    Problem::UnsafeName {
                        why: "has an absolute name",
                        ..
                    }
                ),
                "{name}: {p:?}"
            );
        }
    }

    #[test]
    fn links_where_the_program_should_be() {
        let prog = elf(1000, 1);
        let pkg = targz(&[
            T::File("a/lib/real", &prog),
            T::Symlink("a/bin/a", "../lib/real"),
        ]);
        let (p, msg) = problem(&pkg, &art(Platform::Linux, "app-x.tar.gz"), &limits());
        assert_eq!(
            p,
            Problem::NotRegular {
                entry: "a/bin/a".into(),
                kind: "symbolic link"
            }
        );
        assert!(
            msg.contains("'a/bin/a' is a symbolic link where the program should be"),
            "{msg}"
        );
        let pkg = targz(&[
            T::File("a/lib/real", &prog),
            T::HardLink("a/bin/a", "a/lib/real"),
        ]);
        let (p, _) = problem(&pkg, &art(Platform::Linux, "a"), &limits());
        assert_eq!(
            p,
            Problem::NotRegular {
                entry: "a/bin/a".into(),
                kind: "hard link"
            }
        );
        // Even after the program was found.
        let pkg = targz(&[
            T::File("a/bin/a", &prog),
            T::Symlink("a/bin/b", "/etc/passwd"),
        ]);
        assert!(matches!(
            problem(&pkg, &art(Platform::Linux, "a"), &limits()).0,
            Problem::NotRegular { .. }
        ));
        let pkg = targz(&[T::CharDevice("A.app/Contents/MacOS/A")]);
        let (p, _) = problem(&pkg, &art(Platform::Macos, "a"), &limits());
        assert_eq!(
            p,
            Problem::NotRegular {
                entry: "A.app/Contents/MacOS/A".into(),
                kind: "device file"
            }
        );
        let z = zip_bytes(&[Z::Symlink("App.exe", "C:\\Windows\\notepad.exe")]);
        let (p, _) = problem(&z, &art(Platform::Windows, "a"), &limits());
        assert_eq!(
            p,
            Problem::NotRegular {
                entry: "App.exe".into(),
                kind: "symbolic link"
            }
        );
        let ipa = zip_bytes(&[
            Z::File("Payload/A.app/real", &macho(100, 1)),
            Z::Symlink("Payload/A.app/A", "real"),
        ]);
        assert!(matches!(
            problem(&ipa, &art(Platform::Ios, "a"), &limits()).0,
            Problem::NotRegular { .. }
        ));
        // Links elsewhere are skipped.
        let z = zip_bytes(&[
            Z::File("App.exe", &pe(1000, 1)),
            Z::Symlink("docs/link", "../../x"),
        ]);
        assert!(run(&z, &art(Platform::Windows, "a"), &limits()).is_ok());
    }

    #[test]
    fn several_candidates_in_a_tarball() {
        let pkg = targz(&[
            T::File("app-1-linux-x86_64/bin/app", &elf(1000, 1)),
            T::File("app-1-linux-x86_64/bin/app", &elf(1000, 2)),
        ]);
        let (p, _) = problem(&pkg, &art(Platform::Linux, "a"), &limits());
        assert!(
            matches!(p, Problem::Ambiguous { .. }),
            "the same path twice: {p:?}"
        );
        let pkg = targz(&[
            T::File("x/bin/one", &elf(1000, 1)),
            T::File("x/bin/two", &elf(1000, 2)),
        ]);
        let (p, msg) = problem(&pkg, &art(Platform::Linux, "a"), &limits());
        assert!(matches!(p, Problem::Ambiguous { .. }));
        assert!(
            msg.contains("several ELF programs and none named as the app: x/bin/one, x/bin/two"),
            "{msg}"
        );
        // app_name decides.
        let a = Artifact {
            app_name: Some("Two"),
            ..art(Platform::Linux, "a")
        };
        assert_eq!(run(&pkg, &a, &limits()).unwrap().1, elf(1000, 2));
    }

    #[test]
    fn long_names_and_pax_paths() {
        let prog = elf(20_000, 3);
        let long = format!("{}/bin/app", "p".repeat(150));
        let pkg = targz(&[T::File(&long, &prog)]);
        let (src, out) = run(&pkg, &art(Platform::Linux, "a"), &limits()).unwrap();
        assert_eq!(
            (src.member.as_deref(), out),
            (Some(long.as_str()), prog.clone())
        );
        let pkg = targz(&[T::PaxPath("pax-1/bin/pax"), T::File("ignored-name", &prog)]);
        let (src, out) = run(&pkg, &art(Platform::Linux, "a"), &limits()).unwrap();
        assert_eq!((src.member.as_deref(), out), (Some("pax-1/bin/pax"), prog));
    }

    // --- bombs and bounds

    /// A raw deflate stream (fixed Huffman codes) of `prefix` then `zeros`
    /// zero bytes, made without compressing anything: 13 bits per 258 zeros.
    fn deflate_zeros(prefix: &[u8], zeros: u64) -> Vec<u8> {
        struct Bits {
            out: Vec<u8>,
            acc: u64,
            n: u32,
        }
        impl Bits {
            fn put(&mut self, v: u32, len: u32) {
                self.acc |= u64::from(v) << self.n;
                self.n += len;
                while self.n >= 8 {
                    self.out.push(self.acc as u8);
                    self.acc >>= 8;
                    self.n -= 8;
                }
            }
            fn code(&mut self, code: u32, len: u32) {
                let rev = code.reverse_bits() >> (32 - len);
                self.put(rev, len);
            }
            fn literal(&mut self, b: u8) {
                match b {
                    0..=143 => self.code(0x30 + u32::from(b), 8),
                    _ => self.code(0x190 + u32::from(b) - 144, 9),
                }
            }
        }
        let mut w = Bits {
            out: Vec::new(),
            acc: 0,
            n: 0,
        };
        w.put(1, 1); // final block
        w.put(1, 2); // fixed Huffman
        for &b in prefix {
            w.literal(b);
        }
        let mut left = zeros;
        if left > 0 {
            w.literal(0);
            left -= 1;
        }
        while left >= 258 {
            w.code(0xc5, 8); // length 258 (code 285)
            w.code(0, 5); // distance 1
            left -= 258;
        }
        for _ in 0..left {
            w.literal(0);
        }
        w.code(0, 7); // end of block
        w.put(0, 7);
        w.out
    }

    /// One-entry zip written by hand, so the declared sizes can lie.
    fn zip_one(name: &str, deflated: &[u8], declared_size: u64) -> Vec<u8> {
        let mut z = Vec::new();
        let le16 = |v: &mut Vec<u8>, x: u16| v.extend_from_slice(&x.to_le_bytes());
        let le32 = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
        z.extend_from_slice(b"PK\x03\x04");
        for x in [20u16, 0, 8, 0, 0x21] {
            le16(&mut z, x);
        }
        le32(&mut z, 0x1234_5678); // crc: never reached
        le32(&mut z, deflated.len() as u32);
        le32(&mut z, declared_size as u32);
        le16(&mut z, name.len() as u16);
        le16(&mut z, 0);
        z.extend_from_slice(name.as_bytes());
        z.extend_from_slice(deflated);
        let cd = z.len() as u32;
        z.extend_from_slice(b"PK\x01\x02");
        for x in [0x031e_u16, 20, 0, 8, 0, 0x21] {
            le16(&mut z, x);
        }
        le32(&mut z, 0x1234_5678);
        le32(&mut z, deflated.len() as u32);
        le32(&mut z, declared_size as u32);
        for x in [name.len() as u16, 0, 0, 0, 0] {
            le16(&mut z, x);
        }
        le32(&mut z, 0o100_755 << 16);
        le32(&mut z, 0);
        z.extend_from_slice(name.as_bytes());
        let cd_size = z.len() as u32 - cd;
        z.extend_from_slice(b"PK\x05\x06");
        for x in [0u16, 0, 1, 1] {
            le16(&mut z, x);
        }
        le32(&mut z, cd_size);
        le32(&mut z, cd);
        le16(&mut z, 0);
        z
    }

    fn inflate_len(deflated: &[u8]) -> u64 {
        io::copy(
            &mut flate2::read::DeflateDecoder::new(deflated),
            &mut io::sink(),
        )
        .unwrap()
    }

    #[test]
    fn hand_made_deflate_is_what_it_claims() {
        let d = deflate_zeros(b"abc\xff", 1000);
        let mut v = Vec::new();
        flate2::read::DeflateDecoder::new(&d[..])
            .read_to_end(&mut v)
            .unwrap();
        assert_eq!(&v[..4], b"abc\xff");
        assert_eq!(v.len(), 1004);
        assert!(v[4..].iter().all(|b| *b == 0));
    }

    #[test]
    fn zip_bomb_is_refused_early() {
        let head = pe(HEAD_LEN, 1);
        let bomb = deflate_zeros(&head, 100 * MIB);
        assert!(bomb.len() < 1_000_000, "{}", bomb.len());
        let l = Limits {
            max_program_bytes: MIB,
            ..limits()
        };
        for declared in [100 * MIB + HEAD_LEN as u64, 5000] {
            let z = zip_one("App.exe", &bomb, declared);
            let mut out = Vec::new();
            let t = Instant::now();
            let e = extract_program(
                &mut Cursor::new(&z),
                &art(Platform::Windows, "a.zip"),
                &l,
                &mut out,
            )
            .unwrap_err();
            assert!(t.elapsed() < Duration::from_secs(10));
            assert!(e.is_package_fault(), "{e}");
            assert!(out.len() as u64 <= MIB, "never more than the limit written");
            if declared > MIB {
                assert_eq!(e.problem(), Some(&Problem::TooLarge { limit: MIB }));
            }
        }
        // A declared size within the limit does not let more through: the
        // stream is counted as it is read.
        let z = zip_one("App.exe", &bomb, MIB - 1);
        let mut out = Vec::new();
        let e = extract_program(
            &mut Cursor::new(&z),
            &art(Platform::Windows, "a.zip"),
            &l,
            &mut out,
        )
        .unwrap_err();
        assert!(e.is_package_fault(), "{e}");
        assert!(out.len() as u64 <= MIB);
    }

    #[test]
    fn program_bomb_in_a_tarball_is_refused_at_the_limit() {
        let mut h = ::tar::Header::new_gnu();
        h.set_path("a/bin/a").unwrap();
        h.set_size(100 * MIB);
        h.set_entry_type(::tar::EntryType::Regular);
        h.set_cksum();
        let mut prefix = h.as_bytes().to_vec();
        prefix.extend_from_slice(&elf(HEAD_LEN, 1));
        let mut pkg = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        pkg.extend(deflate_zeros(&prefix, 100 * MIB - HEAD_LEN as u64));
        pkg.extend([0u8; 8]);
        let l = Limits {
            max_program_bytes: MIB,
            ..limits()
        };
        let mut out = Vec::new();
        let e = extract_program(
            &mut Cursor::new(&pkg),
            &art(Platform::Linux, "a"),
            &l,
            &mut out,
        )
        .unwrap_err();
        assert_eq!(e.problem(), Some(&Problem::TooLarge { limit: MIB }));
        assert!(
            out.is_empty(),
            "refused from the declared size before any byte"
        );
    }

    #[test]
    fn gzip_bomb_in_a_tarball_is_refused_at_the_limit() {
        // A 100 MiB member that is not the program: only the unpacked bound stops it.
        let mut h = ::tar::Header::new_gnu();
        h.set_path("a/share/big").unwrap();
        h.set_size(100 * MIB);
        h.set_entry_type(::tar::EntryType::Regular);
        h.set_cksum();
        let deflated = deflate_zeros(h.as_bytes(), 100 * MIB);
        assert_eq!(inflate_len(&deflated), 100 * MIB + 512);
        let mut pkg = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        pkg.extend(deflated);
        pkg.extend([0u8; 8]);
        let l = Limits {
            max_unpacked_bytes: 2 * MIB,
            ..limits()
        };
        let t = Instant::now();
        let (p, msg) = problem(&pkg, &art(Platform::Linux, "app-x.tar.gz"), &l);
        assert!(t.elapsed() < Duration::from_secs(10));
        assert_eq!(p, Problem::UnpackedTooLarge { limit: 2 * MIB });
        assert_eq!(
            msg,
            "linux artifact app-x.tar.gz: package unpacks to more than 2097152 bytes"
        );
    }

    #[test]
    fn too_many_entries() {
        let l = Limits {
            max_entries: 50,
            ..limits()
        };
        let names: Vec<String> = (0..60).map(|i| format!("a/share/f{i}")).collect();
        let mut entries: Vec<T<'_>> = names.iter().map(|n| T::File(n, b"")).collect();
        entries.push(T::File("a/bin/a", b"\x7fELF\x02"));
        let (p, _) = problem(&targz(&entries), &art(Platform::Linux, "a"), &l);
        assert_eq!(p, Problem::TooManyEntries { limit: 50 });
        let zentries: Vec<Z<'_>> = names.iter().map(|n| Z::File(n, b"")).collect();
        let (p, msg) = problem(&zip_bytes(&zentries), &art(Platform::Windows, "a"), &l);
        assert_eq!(p, Problem::TooManyEntries { limit: 50 });
        assert!(msg.ends_with("package has more than 50 entries"));
        // 50 are fine.
        let exe = pe(500, 1);
        let few: Vec<Z<'_>> = names[..49]
            .iter()
            .map(|n| Z::File(n, b""))
            .chain([Z::File("A.exe", &exe)])
            .collect();
        assert!(run(&zip_bytes(&few), &art(Platform::Windows, "a"), &l).is_ok());
    }

    #[test]
    fn zip64_entry_count_is_checked_before_reading_the_directory() {
        let mut z = zip_bytes(&[Z::File("A.exe", &pe(500, 1))]);
        let eocd = z.split_off(z.len() - 22);
        let cd_size = u64::from(u32::from_le_bytes(eocd[12..16].try_into().unwrap()));
        let cd_off = u64::from(u32::from_le_bytes(eocd[16..20].try_into().unwrap()));
        let rec_off = z.len() as u64;
        z.extend_from_slice(b"PK\x06\x06");
        z.extend_from_slice(&44u64.to_le_bytes());
        z.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        z.extend_from_slice(&1_000_000_000u64.to_le_bytes());
        z.extend_from_slice(&1_000_000_000u64.to_le_bytes());
        z.extend_from_slice(&cd_size.to_le_bytes());
        z.extend_from_slice(&cd_off.to_le_bytes());
        z.extend_from_slice(b"PK\x06\x07\0\0\0\0");
        z.extend_from_slice(&rec_off.to_le_bytes());
        z.extend_from_slice(&1u32.to_le_bytes());
        z.extend_from_slice(b"PK\x05\x06\0\0\0\0\xff\xff\xff\xff");
        z.extend_from_slice(&[0xff; 8]);
        z.extend_from_slice(&[0, 0]);
        let (p, _) = problem(&z, &art(Platform::Windows, "a"), &limits());
        assert_eq!(p, Problem::TooManyEntries { limit: MAX_ENTRIES });
    }

    #[test]
    fn truncated_and_corrupt_archives() {
        let prog = elf(300_000, 1);
        let pkg = targz(&[T::File("a/bin/a", &prog)]);
        for cut in [11, pkg.len() / 2, pkg.len() - 9] {
            let (p, _) = problem(&pkg[..cut], &art(Platform::Linux, "a"), &limits());
            assert!(matches!(p, Problem::Corrupt { .. }), "cut at {cut}: {p:?}");
        }
        let mut flipped = pkg.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x55;
        assert!(
            run(&flipped, &art(Platform::Linux, "a"), &limits())
                .unwrap_err()
                .is_package_fault()
        );
        // A gzip of something that is not a tar.
        let (p, _) = problem(&gz(&filler(5000, 2)), &art(Platform::Linux, "a"), &limits());
        assert!(matches!(p, Problem::Corrupt { .. }), "{p:?}");

        let z = zip_bytes(&[Z::File("A.exe", &pe(300_000, 1))]);
        for cut in [4, z.len() / 2, z.len() - 1] {
            let (p, _) = problem(&z[..cut], &art(Platform::Windows, "a"), &limits());
            assert!(matches!(p, Problem::Corrupt { .. }), "cut at {cut}: {p:?}");
        }
        // A flipped byte in stored data: the CRC check at the end refuses it.
        let z = zip_bytes(&[Z::Stored("A.exe", &pe(300_000, 1))]);
        let mut bad = z.clone();
        bad[200_000] ^= 1;
        let (p, msg) = problem(&bad, &art(Platform::Windows, "a"), &limits());
        assert!(matches!(p, Problem::Corrupt { .. }), "{p:?}");
        assert!(
            msg.to_lowercase().contains("checksum") || msg.contains("CRC"),
            "{msg}"
        );
    }

    // --- our own I/O errors are not the package's fault

    struct FailingReader {
        inner: Cursor<Vec<u8>>,
        fail_after: u64,
    }
    impl Read for FailingReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.inner.position() >= self.fail_after {
                return Err(io::Error::other("disk on fire"));
            }
            let room = (self.fail_after - self.inner.position()) as usize;
            let n = buf.len().min(room);
            self.inner.read(&mut buf[..n])
        }
    }
    impl Seek for FailingReader {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    struct FailingWriter;
    impl Write for FailingWriter {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::StorageFull, "no space"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn io_errors_on_our_side() {
        let prog = elf(400_000, 1);
        let pkg = targz(&[T::File("a/bin/a", &prog)]);
        let zip = zip_bytes(&[Z::Stored("A.exe", &pe(400_000, 1))]);
        for (bytes, p) in [
            (pkg.clone(), Platform::Linux),
            (zip, Platform::Windows),
            (prog, Platform::Linux),
        ] {
            let mut r = FailingReader {
                fail_after: bytes.len() as u64 / 2,
                inner: Cursor::new(bytes),
            };
            let e = extract_program(&mut r, &art(p, "a"), &limits(), &mut Vec::new()).unwrap_err();
            assert!(!e.is_package_fault(), "{p}: {e}");
            assert!(e.to_string().contains("disk on fire"), "{e}");
            assert!(e.to_string().contains("reading the package"), "{e}");
        }
        let e = extract_program(
            &mut Cursor::new(&pkg),
            &art(Platform::Linux, "a"),
            &limits(),
            &mut FailingWriter,
        )
        .unwrap_err();
        assert!(!e.is_package_fault());
        assert_eq!(
            e.to_string(),
            "linux artifact a: error writing the program: no space"
        );
    }

    #[test]
    fn entry_names() {
        let ok = |s: &str| entry_path(s.as_bytes()).unwrap().unwrap();
        assert_eq!(ok("./a//b/./c"), ["a", "b", "c"]);
        assert_eq!(ok("a\\b"), ["a", "b"]);
        assert_eq!(ok("a..b/..c"), ["a..b", "..c"]);
        assert!(
            entry_path(b"a/\xff/b").unwrap().is_none(),
            "not UTF-8: skipped"
        );
        for bad in ["..", "a/../b", "a/..", "/a", "\\a", "c:a", "a\0b"] {
            assert!(entry_path(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_nor_pass_as_programs(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            kind in 0u8..3,
        ) {
            // Give the fuzz a container's start so the decoders run.
            let mut bytes = match kind {
                0 => vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff],
                1 => b"PK\x03\x04".to_vec(),
                _ => Vec::new(),
            };
            bytes.extend(data);
            for p in Platform::ALL {
                if let Ok((src, out)) = run(&bytes, &art(p, "f"), &limits()) {
                    proptest::prop_assert_eq!(program_format(&out), Some(ProgramFormat::of(p)));
                    proptest::prop_assert_eq!(src.package, PackageKind::Raw);
                }
            }
        }

        #[test]
        fn names_with_a_dot_dot_component_are_refused(
            parts in proptest::collection::vec("[a-z.]{1,3}", 1..5),
            at in 0usize..5,
        ) {
            let mut parts = parts;
            let at = at.min(parts.len());
            parts.insert(at, "..".into());
            let name = parts.join("/");
            proptest::prop_assert!(entry_path(name.as_bytes()).is_err());
            let pkg = targz(&[T::RawName(name.as_bytes(), b"x")]);
            let e = run(&pkg, &art(Platform::Linux, "a"), &limits()).unwrap_err();
            let is_unsafe = matches!(e.problem(), Some(Problem::UnsafeName { .. }));
            proptest::prop_assert!(is_unsafe);
        }
    }

    /// Throughput on a 128 MiB program through .tar.gz and .zip, compared
    /// with `sha256sum` of the same bytes. Run with
    /// `cargo test --release --lib unpack::tests::throughput -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn throughput() {
        let dir = tempfile::tempdir().unwrap();
        let size = 128 * MIB as usize;
        // UNPACK_BENCH_PROGRAM=<file>: its bytes, repeated to 128 MiB (a real
        // binary compresses like one); otherwise synthetic bytes.
        let body = match std::env::var_os("UNPACK_BENCH_PROGRAM") {
            Some(p) => {
                let b = std::fs::read(p).unwrap();
                b.iter().copied().cycle().take(size).collect()
            }
            None => filler(size, 42),
        };
        let with = |head: &[u8]| {
            let mut v = body.clone();
            v[..head.len()].copy_from_slice(head);
            v
        };
        let prog = with(&elf(64, 0)[..16]);
        let raw = dir.path().join("prog.bin");
        std::fs::write(&raw, &prog).unwrap();
        let t = Instant::now();
        let st = std::process::Command::new("sha256sum")
            .arg(&raw)
            .output()
            .unwrap();
        let sha256sum = t.elapsed();
        assert!(st.status.success());
        let want = crate::codec::hex(&Sha256::digest(&prog));
        let tgz = dir.path().join("p.tar.gz");
        std::fs::write(&tgz, targz(&[T::File("app-1-linux-x86_64/bin/app", &prog)])).unwrap();
        let zip = dir.path().join("p.zip");
        let prog_pe = with(&pe_head());
        std::fs::write(&zip, zip_bytes(&[Z::File("App.exe", &prog_pe)])).unwrap();
        let want_pe = crate::codec::hex(&Sha256::digest(&prog_pe));
        drop((prog_pe, body));
        drop(prog);
        println!("sha256sum of 128 MiB: {:.3} s", sha256sum.as_secs_f64());
        for (path, p, want) in [
            (&raw, Platform::Linux, &want),
            (&tgz, Platform::Linux, &want),
            (&zip, Platform::Windows, &want_pe),
        ] {
            let out_path = dir.path().join("out");
            let t = Instant::now();
            let mut f = std::fs::File::open(path).unwrap();
            let mut out = HashingWriter::new(std::fs::File::create(&out_path).unwrap());
            let src = extract_program(
                &mut f,
                &art(p, "a"),
                &Limits::for_max_body(200 * MIB),
                &mut out,
            )
            .unwrap();
            let (_, n, sha) = out.finish();
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(&sha, want);
            println!(
                "{:>6}: {n} bytes in {secs:.3} s ({:.0} MiB/s, {:.2}x sha256sum; package {} bytes)",
                src.package.as_str(),
                n as f64 / secs / MIB as f64,
                secs / sha256sum.as_secs_f64(),
                std::fs::metadata(path).unwrap().len()
            );
        }
    }
}
