//! The packages the simulated workers produce (real-hub mode), per target as
//! in the hub's workers: the compiled **program** inside an app package.
//!
//! The program is deterministic: the bytes of `artifact.rs` for
//! (tarball sha256, hub target) with their first bytes replaced by the
//! target's executable magic (ELF `\x7fELF` for linux and android, Mach-O
//! `\xcf\xfa\xed\xfe` for macos and ios, PE `MZ` for windows). It is streamed
//! into the package; a package is written to an anonymous temporary file
//! (created and unlinked at once), so a 128 MiB program is never held in
//! memory and nothing is left behind when the simulator dies.
//!
//! | package | entries (`<bin>` = [`binary_name`]) |
//! | --- | --- |
//! | linux `"linux_format":"tarball"` | `.tar.gz`: `<App>/bin/<bin>` (the program), `<App>/share/applications/<bin>.desktop` |
//! | linux otherwise | `.AppImage`: a blob that is **not** a program (a real AppImage is an ELF, which could not be told from a raw program; the simulator makes a missing `linux_format` show as an unusable artifact) |
//! | windows `"windows_distribute":"portable"` | `.zip`: `<App>.exe` (the program), `perry_runtime.dll` (also PE) |
//! | windows otherwise | `.exe`: an NSIS-installer blob, not a program (same reason) |
//! | macos-precompiled | `.tar.gz`: `<App>.app/Contents/MacOS/<bin>`, `<App>.app/Contents/Info.plist` |
//! | macos-sign | `.dmg`: opaque bytes |
//! | ios-precompiled | `.ipa` (zip): `Payload/<App>.app/<bin>`, `Payload/<App>.app/Info.plist` |
//! | ios-sign | `.ipa`: the same plus `Payload/<App>.app/_CodeSignature/CodeResources` |
//! | android | `.apk` (zip): `AndroidManifest.xml`, `classes.dex`, `lib/arm64-v8a/lib<bin>.so` (the program, stored) |
//!
//! `bad_package` replaces the program entry of the package that carries it:
//! `dotdot` (`<dir>/../../../<file>`), `absolute` (`/<path>`), `symlink` (a
//! symlink to `/etc/passwd` where the program should be), `no_program` (the
//! entry left out), `zip_bomb` (the only entry: the program path holding
//! `zip_bomb_size` zero bytes, deflated to about a thousandth of that).

use crate::artifact::ArtifactReader;
use flate2::Compression;
use flate2::write::{DeflateEncoder, GzEncoder};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

/// Broken packages for hone-build's extraction tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadPackage {
    Dotdot,
    Absolute,
    Symlink,
    NoProgram,
    ZipBomb,
}

/// A PE file's first bytes: the `MZ` header whose `e_lfanew` (at 0x3c)
/// points at the `PE\0\0` signature at 0x80, as a real `.exe` has.
const PE_HEAD: [u8; 0x84] = {
    let mut h = [0u8; 0x84];
    h[0] = b'M';
    h[1] = b'Z';
    h[0x3c] = 0x80;
    h[0x80] = b'P';
    h[0x81] = b'E';
    h
};

/// The first bytes of a hub target's programs: a well-formed executable
/// header (a 64-bit little-endian ELF identification for linux and android,
/// a 64-bit Mach-O magic for macos and ios, MZ + PE signature for windows),
/// so that they pass the same checks a real compiled program passes.
pub fn magic(target: &str) -> &'static [u8] {
    match target {
        "macos" | "ios" => b"\xcf\xfa\xed\xfe",
        "windows" => &PE_HEAD,
        _ => b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00",
    }
}

/// The program's file name: the app name, lower case, spaces as `-`.
pub fn binary_name(app_name: &str) -> String {
    app_name.to_lowercase().replace(' ', "-")
}

/// Streams the program of (tarball, target): [`ArtifactReader`]'s bytes
/// with the target's magic over the first bytes.
pub struct ProgramReader {
    inner: ArtifactReader,
    magic: &'static [u8],
    pos: usize,
}

impl ProgramReader {
    pub fn new(tarball_sha256: &[u8; 32], target: &str, size: u64) -> Self {
        ProgramReader {
            inner: ArtifactReader::new(tarball_sha256, target, size),
            magic: magic(target),
            pos: 0,
        }
    }
}

impl Read for ProgramReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.pos < self.magic.len() {
            let m = (self.magic.len() - self.pos).min(n);
            buf[..m].copy_from_slice(&self.magic[self.pos..self.pos + m]);
        }
        self.pos = self.pos.saturating_add(n);
        Ok(n)
    }
}

/// SHA-256 of a reader's bytes and their count.
pub fn hash_reader(mut r: impl Read) -> io::Result<([u8; 32], u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok((h.finalize().into(), total));
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
}

/// What a job needs to build one package.
#[derive(Debug, Clone)]
pub struct Spec {
    pub app_name: String,
    pub bundle_id: String,
    pub version: String,
    pub tarball_sha256: [u8; 32],
    /// The hub target (`linux`, `macos`, …): seeds the program.
    pub target: String,
    pub program_size: u64,
    pub bad: Option<BadPackage>,
    pub zip_bomb_size: u64,
}

impl Spec {
    pub fn program(&self) -> ProgramReader {
        ProgramReader::new(&self.tarball_sha256, &self.target, self.program_size)
    }
    fn binary(&self) -> String {
        binary_name(&self.app_name)
    }
    fn info_plist(&self) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<plist version=\"1.0\"><dict>\
             <key>CFBundleExecutable</key><string>{}</string>\
             <key>CFBundleIdentifier</key><string>{}</string>\
             <key>CFBundleShortVersionString</key><string>{}</string>\
             </dict></plist>\n",
            self.binary(),
            self.bundle_id,
            self.version
        )
    }
}

/// The kinds of artifact a worker produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    LinuxTarball,
    AppImage,
    WindowsPortable,
    WindowsSetup,
    MacosPrecompiled,
    Dmg,
    IosPrecompiled,
    IosSigned,
    Apk,
    /// A patched worker: the program itself.
    Raw,
}

impl Kind {
    /// File extension of the artifact name.
    pub fn ext(self) -> &'static str {
        match self {
            Kind::LinuxTarball | Kind::MacosPrecompiled => "tar.gz",
            Kind::AppImage => "AppImage",
            Kind::WindowsPortable => "zip",
            Kind::WindowsSetup => "exe",
            Kind::Dmg => "dmg",
            Kind::IosPrecompiled | Kind::IosSigned => "ipa",
            Kind::Apk => "apk",
            Kind::Raw => "bin",
        }
    }

    /// Whether `bad_package` applies to it (it carries the program that
    /// hone-build extracts).
    fn carries_program(self) -> bool {
        matches!(
            self,
            Kind::LinuxTarball
                | Kind::WindowsPortable
                | Kind::MacosPrecompiled
                | Kind::IosPrecompiled
                | Kind::Apk
        )
    }
}

/// A built package, in an unlinked temporary file.
#[derive(Debug, Clone)]
pub struct Built {
    pub file: Arc<File>,
    pub size: u64,
    pub sha256: [u8; 32],
    /// Where the program is inside the package (`""` for a raw program),
    /// and its sha256 and size; `None` when the package holds no usable
    /// program (opaque blobs, `no_program`, `symlink`, `zip_bomb`).
    pub program: Option<(String, [u8; 32], u64)>,
}

/// Reads an unlinked package file from its start, sharing the handle.
pub struct FileReader {
    file: Arc<File>,
    pos: u64,
}

impl FileReader {
    pub fn new(file: Arc<File>) -> Self {
        FileReader { file, pos: 0 }
    }
}

impl Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A new temporary file, already unlinked.
fn scratch_file() -> io::Result<File> {
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd).map_err(io::Error::other)?;
    let path = std::env::temp_dir().join(format!(
        "perry-hub-sim-{}-{}",
        std::process::id(),
        crate::state::hex(&rnd)
    ));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// Builds one package of `kind` for `spec`.
pub fn build(kind: Kind, spec: &Spec) -> io::Result<Built> {
    let bad = if kind.carries_program() {
        spec.bad
    } else {
        None
    };
    let spec = &Spec {
        bad,
        ..spec.clone()
    };
    let app = spec.app_name.clone();
    let bin = spec.binary();
    let file = scratch_file()?;
    let (file, program_path) = match kind {
        Kind::Raw => {
            let mut f = file;
            io::copy(&mut spec.program(), &mut f)?;
            (f, Some(String::new()))
        }
        Kind::AppImage => opaque(file, b"AppImage-sim: not a program\n", spec, "appimage")?,
        Kind::WindowsSetup => opaque(file, b"NSIS-sim: an installer\n", spec, "nsis")?,
        Kind::Dmg => opaque(file, b"DMG-sim: a disk image\n", spec, "dmg")?,
        Kind::LinuxTarball => {
            let desktop = format!("[Desktop Entry]\nName={app}\nExec={bin}\nType=Application\n");
            let extra = [(
                format!("{app}/share/applications/{bin}.desktop"),
                desktop.into_bytes(),
            )];
            tar_gz(file, spec, &format!("{app}/bin/{bin}"), &extra)?
        }
        Kind::MacosPrecompiled => {
            let extra = [(
                format!("{app}.app/Contents/Info.plist"),
                spec.info_plist().into_bytes(),
            )];
            tar_gz(
                file,
                spec,
                &format!("{app}.app/Contents/MacOS/{bin}"),
                &extra,
            )?
        }
        Kind::WindowsPortable => {
            let mut dll = Vec::from(&b"MZ"[..]);
            dll.extend_from_slice(b" perry runtime library (simulated)\n");
            let extra = [("perry_runtime.dll".to_string(), dll)];
            zip_pkg(file, spec, &format!("{app}.exe"), &extra, true)?
        }
        Kind::IosPrecompiled | Kind::IosSigned => {
            let mut extra = vec![(
                format!("Payload/{app}.app/Info.plist"),
                spec.info_plist().into_bytes(),
            )];
            if kind == Kind::IosSigned {
                extra.push((
                    format!("Payload/{app}.app/_CodeSignature/CodeResources"),
                    b"<plist version=\"1.0\"><dict/></plist>\n".to_vec(),
                ));
            }
            zip_pkg(
                file,
                spec,
                &format!("Payload/{app}.app/{bin}"),
                &extra,
                true,
            )?
        }
        Kind::Apk => {
            let manifest = format!(
                "<manifest package=\"{}\" android:versionName=\"{}\"/>\n",
                spec.bundle_id, spec.version
            );
            let extra = [
                ("AndroidManifest.xml".to_string(), manifest.into_bytes()),
                ("classes.dex".to_string(), b"dex\n035\0".to_vec()),
            ];
            zip_pkg(
                file,
                spec,
                &format!("lib/arm64-v8a/lib{bin}.so"),
                &extra,
                false,
            )?
        }
    };
    let file = Arc::new(file);
    let (sha256, size) = hash_reader(FileReader::new(Arc::clone(&file)))?;
    let program = match program_path {
        Some(path) => {
            let (psha, psize) = hash_reader(spec.program())?;
            Some((path, psha, psize))
        }
        None => None,
    };
    Ok(Built {
        file,
        size,
        sha256,
        program,
    })
}

/// A blob that is not a program: a text header and deterministic bytes.
fn opaque(
    mut file: File,
    header: &[u8],
    spec: &Spec,
    seed: &str,
) -> io::Result<(File, Option<String>)> {
    file.write_all(header)?;
    let mut body =
        ArtifactReader::new(&spec.tarball_sha256, seed, spec.program_size.min(64 * 1024));
    io::copy(&mut body, &mut file)?;
    Ok((file, None))
}

/// Where a bad variant puts the program (`None`: not at all).
fn bad_entry_name(path: &str, bad: Option<BadPackage>) -> String {
    match bad {
        Some(BadPackage::Dotdot) => {
            let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
            if dir.is_empty() {
                format!("../../../{file}")
            } else {
                format!("{dir}/../../../../{file}")
            }
        }
        Some(BadPackage::Absolute) => format!("/{path}"),
        _ => path.to_string(),
    }
}

/// A gzip tar: `extra` entries and the program at `program_path`.
fn tar_gz(
    file: File,
    spec: &Spec,
    program_path: &str,
    extra: &[(String, Vec<u8>)],
) -> io::Result<(File, Option<String>)> {
    if spec.bad == Some(BadPackage::ZipBomb) {
        return bomb_tar_gz(file, program_path, spec.zip_bomb_size).map(|f| (f, None));
    }
    let gz = GzEncoder::new(io::BufWriter::new(file), Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut recorded = None;
    for (name, data) in extra {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        tar.append_data(&mut h, name, &data[..])?;
    }
    match spec.bad {
        Some(BadPackage::NoProgram) => {}
        Some(BadPackage::Symlink) => {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            h.set_mtime(0);
            tar.append_link(&mut h, program_path, "/etc/passwd")?;
        }
        bad @ (Some(BadPackage::Dotdot) | Some(BadPackage::Absolute)) => {
            // The tar crate refuses such names: write the name field raw.
            let name = bad_entry_name(program_path, bad);
            let mut h = tar::Header::new_old();
            let field = &mut h.as_old_mut().name;
            if name.len() > field.len() {
                return Err(io::Error::other("bad entry name longer than 100 bytes"));
            }
            field[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(spec.program_size);
            h.set_mode(0o755);
            h.set_mtime(0);
            h.set_cksum();
            tar.append(&h, spec.program())?;
            recorded = Some(name);
        }
        _ => {
            let mut h = tar::Header::new_gnu();
            h.set_size(spec.program_size);
            h.set_mode(0o755);
            h.set_mtime(0);
            tar.append_data(&mut h, program_path, spec.program())?;
            recorded = Some(program_path.to_string());
        }
    }
    let file = tar
        .into_inner()?
        .finish()?
        .into_inner()
        .map_err(|e| e.into_error())?;
    Ok((file, recorded))
}

/// A zip: `extra` entries and the program at `program_path` (deflated, or
/// stored when `deflate` is false).
fn zip_pkg(
    file: File,
    spec: &Spec,
    program_path: &str,
    extra: &[(String, Vec<u8>)],
    deflate: bool,
) -> io::Result<(File, Option<String>)> {
    if spec.bad == Some(BadPackage::ZipBomb) {
        return bomb_zip(file, program_path, spec.zip_bomb_size).map(|f| (f, None));
    }
    let mut zip = zip::ZipWriter::new(io::BufWriter::new(file));
    let text = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .unix_permissions(0o644);
    let program_opts = SimpleFileOptions::default()
        .compression_method(if deflate {
            CompressionMethod::Deflated
        } else {
            CompressionMethod::Stored
        })
        .unix_permissions(0o755)
        .large_file(spec.program_size >= u32::MAX as u64);
    for (name, data) in extra {
        zip.start_file(name, text).map_err(io::Error::other)?;
        zip.write_all(data)?;
    }
    let mut recorded = None;
    match spec.bad {
        Some(BadPackage::NoProgram) => {}
        Some(BadPackage::Symlink) => {
            zip.add_symlink(program_path, "/etc/passwd", text)
                .map_err(io::Error::other)?;
        }
        bad => {
            let name = bad_entry_name(program_path, bad);
            zip.start_file(&name, program_opts)
                .map_err(io::Error::other)?;
            io::copy(&mut spec.program(), &mut zip)?;
            recorded = Some(name);
        }
    }
    let file = zip
        .finish()
        .map_err(io::Error::other)?
        .into_inner()
        .map_err(|e| e.into_error())?;
    Ok((file, recorded))
}

/// Raw deflate of `data`, sync-flushed: non-final blocks, byte-aligned,
/// that refer to nothing before them.
fn deflate_sync(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut enc = DeflateEncoder::new(Vec::new(), Compression::best());
    enc.write_all(data)?;
    enc.flush()?;
    Ok(enc.get_ref().clone())
}

/// An empty final deflate block (fixed Huffman).
const DEFLATE_END: [u8; 2] = [0x03, 0x00];
const MIB: u64 = 1024 * 1024;

/// The deflated MiB of zeros and its CRC state.
fn zero_mib() -> io::Result<(Vec<u8>, crc32fast::Hasher)> {
    let zeros = vec![0u8; MIB as usize];
    let mut crc = crc32fast::Hasher::new();
    crc.update(&zeros);
    Ok((deflate_sync(&zeros)?, crc))
}

/// Writes `mibs` MiB of zeros as deflate blocks, folding them into `crc`.
fn write_zeros(out: &mut impl Write, mibs: u64, crc: &mut crc32fast::Hasher) -> io::Result<u64> {
    let (block, block_crc) = zero_mib()?;
    for _ in 0..mibs {
        out.write_all(&block)?;
        crc.combine(&block_crc);
    }
    Ok(block.len() as u64 * mibs)
}

/// A gzip tar whose only entry, `path`, holds `size` zero bytes (rounded up
/// to whole MiB).
fn bomb_tar_gz(file: File, path: &str, size: u64) -> io::Result<File> {
    let mibs = size.div_ceil(MIB).max(1);
    let size = mibs * MIB;
    let mut h = tar::Header::new_gnu();
    h.set_path(path)?;
    h.set_size(size);
    h.set_mode(0o755);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let end = [0u8; 1024];
    let mut out = io::BufWriter::new(file);
    out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
    let mut crc = crc32fast::Hasher::new();
    out.write_all(&deflate_sync(h.as_bytes())?)?;
    crc.update(h.as_bytes());
    write_zeros(&mut out, mibs, &mut crc)?;
    out.write_all(&deflate_sync(&end)?)?;
    crc.update(&end);
    out.write_all(&DEFLATE_END)?;
    out.write_all(&crc.finalize().to_le_bytes())?;
    let isize = (512 + size + 1024) as u32; // modulo 2^32, as gzip says
    out.write_all(&isize.to_le_bytes())?;
    out.into_inner().map_err(|e| e.into_error())
}

/// A zip whose only entry, `path`, holds `size` zero bytes (whole MiB, at
/// most 4 GiB − 1 MiB: no zip64), deflated.
fn bomb_zip(file: File, path: &str, size: u64) -> io::Result<File> {
    let mibs = size.div_ceil(MIB).clamp(1, 4095);
    let size = mibs * MIB;
    let mut out = io::BufWriter::new(file);
    let name = path.as_bytes();
    // Local header with zero crc/sizes first; patched after the data.
    let local = |crc: u32, csize: u32| {
        let mut v = Vec::new();
        v.extend_from_slice(&0x04034b50u32.to_le_bytes());
        v.extend_from_slice(&20u16.to_le_bytes()); // version needed
        v.extend_from_slice(&0u16.to_le_bytes()); // flags
        v.extend_from_slice(&8u16.to_le_bytes()); // deflate
        v.extend_from_slice(&0u16.to_le_bytes()); // time
        v.extend_from_slice(&0x21u16.to_le_bytes()); // 1980-01-01
        v.extend_from_slice(&crc.to_le_bytes());
        v.extend_from_slice(&csize.to_le_bytes());
        v.extend_from_slice(&(size as u32).to_le_bytes());
        v.extend_from_slice(&(name.len() as u16).to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend_from_slice(name);
        v
    };
    let header_len = local(0, 0).len() as u64;
    out.write_all(&local(0, 0))?;
    let mut crc = crc32fast::Hasher::new();
    let mut csize = write_zeros(&mut out, mibs, &mut crc)?;
    out.write_all(&DEFLATE_END)?;
    csize += DEFLATE_END.len() as u64;
    let crc = crc.finalize();
    let mut cd = Vec::new();
    cd.extend_from_slice(&0x02014b50u32.to_le_bytes());
    cd.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes()); // made by: unix
    cd.extend_from_slice(&20u16.to_le_bytes());
    cd.extend_from_slice(&0u16.to_le_bytes());
    cd.extend_from_slice(&8u16.to_le_bytes());
    cd.extend_from_slice(&0u16.to_le_bytes());
    cd.extend_from_slice(&0x21u16.to_le_bytes());
    cd.extend_from_slice(&crc.to_le_bytes());
    cd.extend_from_slice(&(csize as u32).to_le_bytes());
    cd.extend_from_slice(&(size as u32).to_le_bytes());
    cd.extend_from_slice(&(name.len() as u16).to_le_bytes());
    cd.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attrs
    cd.extend_from_slice(&((0o100755u32) << 16).to_le_bytes());
    cd.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    cd.extend_from_slice(name);
    let cd_offset = header_len + csize;
    out.write_all(&cd)?;
    let mut eocd = Vec::new();
    eocd.extend_from_slice(&0x06054b50u32.to_le_bytes());
    eocd.extend_from_slice(&[0; 4]);
    eocd.extend_from_slice(&1u16.to_le_bytes());
    eocd.extend_from_slice(&1u16.to_le_bytes());
    eocd.extend_from_slice(&(cd.len() as u32).to_le_bytes());
    eocd.extend_from_slice(&(cd_offset as u32).to_le_bytes());
    eocd.extend_from_slice(&0u16.to_le_bytes());
    out.write_all(&eocd)?;
    let mut file = out.into_inner().map_err(|e| e.into_error())?;
    file.seek(io::SeekFrom::Start(0))?;
    file.write_all(&local(crc, csize as u32))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;

    fn spec(target: &str, bad: Option<BadPackage>) -> Spec {
        Spec {
            app_name: "My App".into(),
            bundle_id: "codes.hone.plugin.my-app".into(),
            version: "1.0.0".into(),
            tarball_sha256: [9; 32],
            target: target.into(),
            program_size: 5000,
            bad,
            zip_bomb_size: 16 * MIB,
        }
    }

    fn program_bytes(s: &Spec) -> Vec<u8> {
        let mut v = Vec::new();
        s.program().read_to_end(&mut v).unwrap();
        v
    }

    fn bytes(b: &Built) -> Vec<u8> {
        let mut v = Vec::new();
        FileReader::new(Arc::clone(&b.file))
            .read_to_end(&mut v)
            .unwrap();
        assert_eq!(v.len() as u64, b.size);
        let sha: [u8; 32] = Sha256::digest(&v).into();
        assert_eq!(sha, b.sha256);
        v
    }

    /// (name, entry type, data) of every tar entry.
    fn tar_entries(gz: &[u8]) -> Vec<(String, tar::EntryType, Vec<u8>)> {
        let mut a = tar::Archive::new(GzDecoder::new(gz));
        let mut out = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let ty = e.header().entry_type();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.push((name, ty, data));
        }
        out
    }

    fn zip_entries(z: &[u8]) -> Vec<(String, bool, Vec<u8>)> {
        let mut a = zip::ZipArchive::new(io::Cursor::new(z)).unwrap();
        let mut out = Vec::new();
        for i in 0..a.len() {
            let mut f = a.by_index(i).unwrap();
            let name = String::from_utf8_lossy(f.name_raw()).into_owned();
            let link = f.is_symlink();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            out.push((name, link, data));
        }
        out
    }

    #[test]
    fn program_has_magic_and_is_deterministic() {
        for (t, m) in [
            ("linux", &b"\x7fELF"[..]),
            ("android", b"\x7fELF"),
            ("macos", b"\xcf\xfa\xed\xfe"),
            ("ios", b"\xcf\xfa\xed\xfe"),
            ("windows", b"MZ"),
        ] {
            let s = spec(t, None);
            let p = program_bytes(&s);
            assert_eq!(p.len(), 5000);
            assert!(p.starts_with(m), "{t}");
            // The whole header replaces the artifact's first bytes.
            let head = magic(t);
            assert!(p.starts_with(head), "{t}");
            assert_eq!(p, program_bytes(&s));
            let raw = crate::artifact::build_artifact(&s.tarball_sha256, t, 5000);
            assert_eq!(p[head.len()..], raw[head.len()..]);
        }
        assert_ne!(
            program_bytes(&spec("linux", None)),
            program_bytes(&spec("android", None))
        );
    }

    #[test]
    fn tar_packages_hold_the_program() {
        for (kind, target, path) in [
            (Kind::LinuxTarball, "linux", "My App/bin/my-app"),
            (
                Kind::MacosPrecompiled,
                "macos",
                "My App.app/Contents/MacOS/my-app",
            ),
        ] {
            let s = spec(target, None);
            let b = build(kind, &s).unwrap();
            let entries = tar_entries(&bytes(&b));
            let prog: Vec<_> = entries.iter().filter(|e| e.0 == path).collect();
            assert_eq!(prog.len(), 1, "{entries:?}");
            assert_eq!(prog[0].2, program_bytes(&s));
            assert_eq!(entries.len(), 2);
            let (p, sha, size) = b.program.clone().unwrap();
            assert_eq!(p, path);
            assert_eq!(size, 5000);
            assert_eq!(sha, <[u8; 32]>::from(Sha256::digest(program_bytes(&s))));
        }
    }

    #[test]
    fn zip_packages_hold_the_program() {
        for (kind, target, path, count) in [
            (Kind::WindowsPortable, "windows", "My App.exe", 2),
            (Kind::IosPrecompiled, "ios", "Payload/My App.app/my-app", 2),
            (Kind::IosSigned, "ios", "Payload/My App.app/my-app", 3),
            (Kind::Apk, "android", "lib/arm64-v8a/libmy-app.so", 3),
        ] {
            let s = spec(target, None);
            let b = build(kind, &s).unwrap();
            let entries = zip_entries(&bytes(&b));
            assert_eq!(entries.len(), count, "{entries:?}");
            let prog: Vec<_> = entries.iter().filter(|e| e.0 == path).collect();
            assert_eq!(prog.len(), 1);
            assert_eq!(prog[0].2, program_bytes(&s));
            assert_eq!(b.program.clone().unwrap().0, path);
        }
    }

    #[test]
    fn opaque_and_raw() {
        for kind in [Kind::AppImage, Kind::WindowsSetup, Kind::Dmg] {
            let b = build(kind, &spec("linux", None)).unwrap();
            let v = bytes(&b);
            assert!(b.program.is_none());
            for m in [
                &b"\x7fELF"[..],
                b"MZ",
                b"\xcf\xfa\xed\xfe",
                b"PK",
                b"\x1f\x8b",
            ] {
                assert!(!v.starts_with(m), "{kind:?}");
            }
        }
        let s = spec("windows", Some(BadPackage::ZipBomb));
        let b = build(Kind::Raw, &s).unwrap();
        assert_eq!(bytes(&b), program_bytes(&s));
    }

    #[test]
    fn bad_tar_packages() {
        let path = "My App/bin/my-app";
        let s = |bad| spec("linux", Some(bad));
        let e = tar_entries(&bytes(
            &build(Kind::LinuxTarball, &s(BadPackage::Dotdot)).unwrap(),
        ));
        assert!(
            e.iter().any(|e| e.0 == "My App/bin/../../../../my-app"),
            "{e:?}"
        );
        let e = tar_entries(&bytes(
            &build(Kind::LinuxTarball, &s(BadPackage::Absolute)).unwrap(),
        ));
        assert!(e.iter().any(|e| e.0 == format!("/{path}")), "{e:?}");
        let b = build(Kind::LinuxTarball, &s(BadPackage::Symlink)).unwrap();
        assert!(b.program.is_none());
        let e = tar_entries(&bytes(&b));
        assert!(
            e.iter()
                .any(|e| e.0 == path && e.1 == tar::EntryType::Symlink)
        );
        let e = tar_entries(&bytes(
            &build(Kind::LinuxTarball, &s(BadPackage::NoProgram)).unwrap(),
        ));
        assert_eq!(e.len(), 1);
        assert!(!e[0].0.contains("/bin/"));
        let b = build(
            Kind::MacosPrecompiled,
            &spec("macos", Some(BadPackage::ZipBomb)),
        )
        .unwrap();
        assert!(b.size < 200 * 1024, "{} bytes compressed", b.size);
        let gz = bytes(&b);
        let mut a = tar::Archive::new(GzDecoder::new(&gz[..]));
        let mut e = a.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.path_bytes().as_ref(), b"My App.app/Contents/MacOS/my-app");
        assert_eq!(e.header().size().unwrap(), 16 * MIB);
        let (_, n) = hash_reader(&mut e).unwrap();
        assert_eq!(n, 16 * MIB);
        // The whole gzip stream checks out (CRC and length trailer).
        let (_, total) = hash_reader(GzDecoder::new(&bytes(&b)[..])).unwrap();
        assert_eq!(total, 16 * MIB + 1536);
    }

    #[test]
    fn bad_zip_packages() {
        let path = "lib/arm64-v8a/libmy-app.so";
        let s = |bad| spec("android", Some(bad));
        let e = zip_entries(&bytes(&build(Kind::Apk, &s(BadPackage::Dotdot)).unwrap()));
        assert!(
            e.iter()
                .any(|e| e.0 == "lib/arm64-v8a/../../../../libmy-app.so"),
            "{e:?}"
        );
        let e = zip_entries(&bytes(&build(Kind::Apk, &s(BadPackage::Absolute)).unwrap()));
        assert!(e.iter().any(|e| e.0 == format!("/{path}")), "{e:?}");
        let e = zip_entries(&bytes(&build(Kind::Apk, &s(BadPackage::Symlink)).unwrap()));
        assert!(
            e.iter()
                .any(|e| e.0 == path && e.1 && e.2 == b"/etc/passwd"),
            "{e:?}"
        );
        let e = zip_entries(&bytes(
            &build(Kind::Apk, &s(BadPackage::NoProgram)).unwrap(),
        ));
        assert_eq!(e.len(), 2);
        assert!(e.iter().all(|e| !e.0.starts_with("lib/")));
        let b = build(
            Kind::WindowsPortable,
            &spec("windows", Some(BadPackage::ZipBomb)),
        )
        .unwrap();
        assert!(b.size < 200 * 1024, "{} bytes compressed", b.size);
        let z = bytes(&b);
        let mut a = zip::ZipArchive::new(io::Cursor::new(&z[..])).unwrap();
        let f = a.by_index(0).unwrap();
        assert_eq!(f.name_raw(), b"My App.exe");
        assert_eq!(f.size(), 16 * MIB);
        // Reading it all verifies the CRC.
        let (_, n) = hash_reader(f).unwrap();
        assert_eq!(n, 16 * MIB);
        // bad_package leaves the other stages alone.
        let b = build(Kind::IosSigned, &spec("ios", Some(BadPackage::NoProgram))).unwrap();
        assert!(b.program.is_some());
    }
}
