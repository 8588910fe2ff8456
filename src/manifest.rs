//! swupd manifests and the Manifest-of-Manifests: strict parsing, exact serialisation,
//! and the path rules that keep a hostile manifest out of the filesystem.

use std::fmt::{self, Write as _};

use crate::hash::Hash;
use crate::limits::MANIFEST_TEXT;

/// Largest number of body entries accepted (swupd's own sanity limit for filecount).
pub const MAX_ENTRIES: usize = 4_000_000;
/// Largest `contentsize:` accepted (2 TB, swupd's sanity limit).
pub const MAX_CONTENTSIZE: u64 = 2_000_000_000_000;
/// Longest path accepted (Linux PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// Longest single path component (Linux NAME_MAX).
const MAX_NAME: usize = 255;
/// The number of entries in the CPU-variant table that swupd defines.
const DEFINED_VARIANTS: usize = 20;
/// swupd's CPU-variant modifier alphabet; the index of a character is its variant id.
const MODIFIERS: &[u8] = b".acdefghijklmnopqrtuvwxyzABDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#^*";
/// Variant ids that are plain (SSE) builds, usable on any x86-64 CPU.
const PLAIN_VARIANTS: [u8; 8] = [0, 1, 2, 3, 8, 9, 10, 11];

/// A manifest that was refused, with the 1-based line and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

fn err<T>(line: usize, reason: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        line,
        reason: reason.into(),
    })
}

/// Whether a text is a Manifest-of-Manifests (only `M` lines) or a bundle manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Mom,
    Bundle,
}

/// Flag 1: what the entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryType {
    File,
    Dir,
    Link,
    Manifest,
    /// `.`: no type, used by deleted entries.
    Unset,
}

/// Flag 2: whether the entry exists in this version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Present,
    Deleted,
    /// Deleted, but the client must not remove it (kernels, modules).
    Ghosted,
    /// Experimental bundle (MoM lines only).
    Experimental,
}

/// Flag 4: miscellaneous marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Misc {
    None,
    /// `x`: exported binary.
    Exported,
    /// `r`: rename (deprecated, ignored).
    Rename,
    /// `m`: mix manifest (mixer-internal).
    Mix,
    /// `i`: chainup image payload (`/core`, `/efiboot`).
    Image,
}

/// The image payloads an `i` entry may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    /// `/core`: the block-level core image for the inactive slot.
    Core,
    /// `/efiboot`: the EFI binary for the ESP.
    EfiBoot,
    /// `/core.index`: the chunk index of `/core` (docs/chunks.md), for chunked updates.
    CoreIndex,
}

impl ImageKind {
    /// The manifest path that names this payload.
    pub fn path(self) -> &'static str {
        match self {
            ImageKind::Core => "/core",
            ImageKind::EfiBoot => "/efiboot",
            ImageKind::CoreIndex => "/core.index",
        }
    }
}

/// One body line: `flags<TAB>hash<TAB>version<TAB>path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub etype: EntryType,
    pub status: Status,
    /// Flag 3, the CPU-variant modifier character (`.` for plain builds).
    pub modifier: u8,
    pub misc: Misc,
    pub hash: Hash,
    /// The release in which this entry last changed; also where its content lives.
    pub version: u32,
    /// An absolute path, or a bundle name for `M` lines.
    pub path: String,
}

impl Entry {
    /// True unless the entry is deleted or ghosted.
    pub fn is_present(&self) -> bool {
        matches!(self.status, Status::Present | Status::Experimental)
    }

    /// The image payload this entry carries, if any.
    pub fn image(&self) -> Option<ImageKind> {
        if self.misc != Misc::Image {
            return None;
        }
        match self.path.as_str() {
            "/core" => Some(ImageKind::Core),
            "/efiboot" => Some(ImageKind::EfiBoot),
            "/core.index" => Some(ImageKind::CoreIndex),
            _ => None,
        }
    }

    /// The CPU-variant id of the modifier, or `None` if it is beyond the defined table.
    pub fn variant(&self) -> Option<u8> {
        let id = match self.modifier {
            // Legacy boot/state/config markers mean a plain build.
            b'b' | b's' | b'C' => 0,
            m => MODIFIERS.iter().position(|&c| c == m).unwrap_or(0),
        };
        (id < DEFINED_VARIANTS).then_some(id as u8)
    }

    /// True for the plain (SSE) build of a path, the one chainup installs.
    pub fn is_plain_variant(&self) -> bool {
        self.variant().is_some_and(|v| PLAIN_VARIANTS.contains(&v))
    }

    fn flags(&self) -> [u8; 4] {
        [
            match self.etype {
                EntryType::File => b'F',
                EntryType::Dir => b'D',
                EntryType::Link => b'L',
                EntryType::Manifest => b'M',
                EntryType::Unset => b'.',
            },
            match self.status {
                Status::Present => b'.',
                Status::Deleted => b'd',
                Status::Ghosted => b'g',
                Status::Experimental => b'e',
            },
            self.modifier,
            match self.misc {
                Misc::None => b'.',
                Misc::Exported => b'x',
                Misc::Rename => b'r',
                Misc::Mix => b'm',
                Misc::Image => b'i',
            },
        ]
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags = self.flags();
        let flags = std::str::from_utf8(&flags).expect("flags are ASCII");
        write!(f, "{flags}\t{}\t{}\t{}", self.hash, self.version, self.path)
    }
}

/// The header fields of a manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// The number after `MANIFEST`.
    pub format: u32,
    pub version: u32,
    pub previous: u32,
    pub minversion: u32,
    pub filecount: u64,
    pub timestamp: u64,
    pub contentsize: u64,
    pub includes: Vec<String>,
    pub also_add: Vec<String>,
}

/// A parsed manifest: a header and its body entries in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub header: Header,
    pub entries: Vec<Entry>,
}

impl Manifest {
    /// Parses and validates a manifest text of the given kind.
    pub fn parse(text: &[u8], kind: Kind) -> Result<Manifest, ParseError> {
        Parser::new(kind).parse(text)
    }

    /// Sorts the body as mixer does: by version, then by path.
    pub fn sort_entries(&mut self) {
        self.entries
            .sort_by(|a, b| (a.version, &a.path).cmp(&(b.version, &b.path)));
    }

    /// The exact text form (mixer's layout for the header's format).
    pub fn serialize(&self) -> String {
        let h = &self.header;
        let mut out = String::with_capacity(128 + self.entries.len() * 100);
        let _ = writeln!(out, "MANIFEST\t{}", h.format);
        let _ = writeln!(out, "version:\t{}", h.version);
        let _ = writeln!(out, "previous:\t{}", h.previous);
        if h.minversion != 0 && h.format >= 26 {
            let _ = writeln!(out, "minversion:\t{}", h.minversion);
        }
        let _ = writeln!(out, "filecount:\t{}", h.filecount);
        let _ = writeln!(out, "timestamp:\t{}", h.timestamp);
        let _ = writeln!(out, "contentsize:\t{}", h.contentsize);
        for inc in &h.includes {
            let _ = writeln!(out, "includes:\t{inc}");
        }
        if h.format >= 29 {
            for add in &h.also_add {
                let _ = writeln!(out, "also-add:\t{add}");
            }
        }
        out.push('\n');
        for e in &self.entries {
            let _ = writeln!(out, "{e}");
        }
        out
    }

    /// Entries that exist in this version (not deleted or ghosted).
    pub fn present(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.is_present())
    }
}

/// Checks a manifest path: absolute, normalised, no `.`/`..`/empty components, no NUL,
/// no trailing slash, not the root itself, within PATH_MAX and NAME_MAX.
pub fn validate_path(path: &str) -> Result<(), String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("path {path:?} is not absolute"));
    };
    if rest.is_empty() {
        return Err("the root directory itself cannot be an entry".into());
    }
    if path.len() > MAX_PATH {
        return Err(format!("path is longer than {MAX_PATH} bytes"));
    }
    if path.contains('\0') {
        return Err(format!("path {path:?} contains NUL"));
    }
    if path.contains('\n') {
        return Err(format!("path {path:?} contains a newline"));
    }
    for comp in rest.split('/') {
        match comp {
            "" => return Err(format!("path {path:?} has an empty component")),
            "." | ".." => return Err(format!("path {path:?} has a {comp:?} component")),
            c if c.len() > MAX_NAME => {
                return Err(format!(
                    "path {path:?} has a component over {MAX_NAME} bytes"
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A manifest path that passed [`validate_path`]; its constructor is the validation, so
/// code that holds one (the installer's leaves take nothing else) cannot hold `..`, a
/// relative path or an empty component.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RootPath(String);

impl RootPath {
    /// Validates `path` as a manifest path.
    pub fn new(path: &str) -> Result<RootPath, String> {
        validate_path(path)?;
        Ok(RootPath(path.to_string()))
    }

    /// The path as written in the manifest (`/usr/bin/tool`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parent directory, `None` for an entry directly under the root.
    pub fn parent(&self) -> Option<RootPath> {
        let (dir, _) = self.0.rsplit_once('/')?;
        (!dir.is_empty()).then(|| RootPath(dir.to_string()))
    }

    /// True when `self` lies strictly below `dir`.
    pub fn is_below(&self, dir: &RootPath) -> bool {
        self.0
            .strip_prefix(dir.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    }
}

impl fmt::Display for RootPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for RootPath {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Checks a bundle name: it becomes a URL segment and a file name, so it is kept to
/// `[A-Za-z0-9._+-]`, not starting with `.` or `-`, at most 255 bytes.
pub fn validate_bundle_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid bundle name"))
    }
}

struct Parser {
    kind: Kind,
}

impl Parser {
    fn new(kind: Kind) -> Parser {
        Parser { kind }
    }

    fn parse(&self, text: &[u8]) -> Result<Manifest, ParseError> {
        if text.len() as u64 > MANIFEST_TEXT {
            return err(0, format!("manifest is larger than {MANIFEST_TEXT} bytes"));
        }
        let text = match std::str::from_utf8(text) {
            Ok(t) => t,
            Err(e) => {
                let line = 1 + text[..e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count();
                return err(line, "not valid UTF-8");
            }
        };
        if !text.ends_with('\n') {
            let line = text.lines().count().max(1);
            return err(line, "the last line does not end with a newline");
        }
        let mut lines = text[..text.len() - 1]
            .split('\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l));

        let (n, first) = lines.next().expect("split yields at least one item");
        let header_format = first.strip_prefix("MANIFEST\t").ok_or_else(|| ParseError {
            line: n,
            reason: "the first line must be MANIFEST<TAB><format>".into(),
        })?;
        let format = parse_positive(header_format).map_err(|r| ParseError {
            line: n,
            reason: format!("format: {r}"),
        })?;
        let mut header = Header {
            format,
            ..Header::default()
        };
        self.parse_header(&mut lines, &mut header)?;

        let mut entries = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (n, line) in lines {
            if entries.len() >= MAX_ENTRIES {
                return err(n, format!("more than {MAX_ENTRIES} entries"));
            }
            let entry = self.parse_entry(n, line)?;
            if !seen.insert((entry.path.clone(), entry.modifier)) {
                return err(n, format!("duplicate entry for {:?}", entry.path));
            }
            entries.push(entry);
        }
        Ok(Manifest { header, entries })
    }

    fn parse_header<'a>(
        &self,
        lines: &mut impl Iterator<Item = (usize, &'a str)>,
        h: &mut Header,
    ) -> Result<(), ParseError> {
        let mut seen = std::collections::HashSet::new();
        let mut last = 1;
        for (n, line) in lines.by_ref() {
            last = n;
            if line.is_empty() {
                for required in [
                    "version:",
                    "previous:",
                    "filecount:",
                    "timestamp:",
                    "contentsize:",
                ] {
                    if !seen.contains(required) {
                        return err(n, format!("header has no {required} line"));
                    }
                }
                return Ok(());
            }
            let Some((key, value)) = line.split_once('\t') else {
                return err(n, "header line has no TAB");
            };
            let list_key = matches!(key, "includes:" | "also-add:");
            if !list_key && !seen.insert(key.to_string()) {
                return err(n, format!("duplicate header key {key:?}"));
            }
            let num = |r: Result<u64, String>| {
                r.map_err(|reason| ParseError {
                    line: n,
                    reason: format!("{key} {reason}"),
                })
            };
            let small = |v: u64| {
                u32::try_from(v).map_err(|_| ParseError {
                    line: n,
                    reason: format!("{key} {v} is out of range"),
                })
            };
            match key {
                "version:" => h.version = small(num(parse_positive(value).map(u64::from))?)?,
                "previous:" => h.previous = small(num(parse_u64(value))?)?,
                "minversion:" => h.minversion = small(num(parse_u64(value))?)?,
                "filecount:" => {
                    h.filecount = num(parse_u64(value))?;
                    if h.filecount > MAX_ENTRIES as u64 {
                        return err(
                            n,
                            format!("filecount {} is over {MAX_ENTRIES}", h.filecount),
                        );
                    }
                }
                "timestamp:" => h.timestamp = num(parse_u64(value))?,
                "contentsize:" => {
                    h.contentsize = num(parse_u64(value))?;
                    if h.contentsize > MAX_CONTENTSIZE {
                        return err(n, format!("contentsize {} is over 2 TB", h.contentsize));
                    }
                }
                "includes:" | "also-add:" => {
                    validate_bundle_name(value).map_err(|reason| ParseError { line: n, reason })?;
                    let list = if key == "includes:" {
                        &mut h.includes
                    } else {
                        &mut h.also_add
                    };
                    list.push(value.to_string());
                }
                // Unknown keys are ignored, as swupd does, so newer publishers stay readable.
                _ => {}
            }
        }
        err(last, "the header is not followed by an empty line")
    }

    fn parse_entry(&self, n: usize, line: &str) -> Result<Entry, ParseError> {
        if line.is_empty() {
            return err(n, "empty line in the body");
        }
        let mut fields = line.splitn(4, '\t');
        let (Some(flags), Some(hash), Some(version), Some(path)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return err(n, "expected flags<TAB>hash<TAB>version<TAB>path");
        };
        let flags = flags.as_bytes();
        if flags.len() != 4 {
            return err(
                n,
                format!(
                    "flags {:?} are not 4 characters",
                    String::from_utf8_lossy(flags)
                ),
            );
        }
        let etype = match flags[0] {
            b'F' => EntryType::File,
            b'D' => EntryType::Dir,
            b'L' => EntryType::Link,
            b'M' => EntryType::Manifest,
            b'.' => EntryType::Unset,
            c => return err(n, format!("unknown type flag {:?}", c as char)),
        };
        let status = match flags[1] {
            b'.' => Status::Present,
            b'd' => Status::Deleted,
            b'g' => Status::Ghosted,
            b'e' => Status::Experimental,
            c => return err(n, format!("unknown status flag {:?}", c as char)),
        };
        let modifier = flags[2];
        if !MODIFIERS.contains(&modifier) && !matches!(modifier, b'b' | b's' | b'C') {
            return err(n, format!("unknown modifier flag {:?}", modifier as char));
        }
        let misc = match flags[3] {
            b'.' => Misc::None,
            b'x' => Misc::Exported,
            b'r' => Misc::Rename,
            b'm' => Misc::Mix,
            b'i' => Misc::Image,
            c => return err(n, format!("unknown fourth flag {:?}", c as char)),
        };
        let hash: Hash = hash.parse().map_err(|_| ParseError {
            line: n,
            reason: format!("hash {hash:?} is not 64 lowercase hex digits"),
        })?;
        let version = parse_positive(version).map_err(|r| ParseError {
            line: n,
            reason: format!("version {r}"),
        })?;
        let mut entry = Entry {
            etype,
            status,
            modifier,
            misc,
            hash,
            version,
            path: path.to_string(),
        };
        // swupd's generators mark entries deleted or ghosted without always zeroing the
        // hash, and swupd never reads it; dropping it here keeps "not present, zero hash"
        // true for everything downstream.
        if !entry.is_present() {
            entry.hash = Hash::ZERO;
        }
        self.check_entry(n, &entry)?;
        Ok(entry)
    }

    fn check_entry(&self, n: usize, e: &Entry) -> Result<(), ParseError> {
        let bad = |reason: String| err(n, reason);
        match (self.kind, e.etype) {
            (Kind::Mom, EntryType::Manifest) => {
                validate_bundle_name(&e.path).or_else(bad)?;
            }
            (Kind::Mom, _) => return bad("a Manifest.MoM may only hold M lines".into()),
            (Kind::Bundle, EntryType::Manifest) => {
                return bad("M lines belong in the Manifest.MoM only".into())
            }
            (Kind::Bundle, _) => validate_path(&e.path).or_else(bad)?,
        }
        if e.status == Status::Experimental && e.etype != EntryType::Manifest {
            return bad("only M lines can be experimental".into());
        }
        if e.is_present() && e.hash.is_zero() {
            return bad(format!("{:?} is present but has the zero hash", e.path));
        }
        if e.is_present() && e.etype == EntryType::Unset {
            return bad(format!("{:?} is present but has no type", e.path));
        }
        if e.misc == Misc::Image {
            if e.image().is_none() {
                return bad(format!(
                    "image payload {:?} is neither /core, /efiboot nor /core.index",
                    e.path
                ));
            }
            if e.is_present() && e.etype != EntryType::File {
                return bad(format!("image payload {:?} is not a file", e.path));
            }
        }
        Ok(())
    }
}

/// A decimal integer > 0 that fits in u32, with no sign or leading zeros.
fn parse_positive(s: &str) -> Result<u32, String> {
    let v = parse_u64(s)?;
    if v == 0 {
        return Err("must be greater than 0".into());
    }
    u32::try_from(v).map_err(|_| format!("{s:?} is out of range"))
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return Err(format!("{s:?} is not a decimal number"));
    }
    s.parse().map_err(|_| format!("{s:?} is out of range"))
}

#[cfg(test)]
mod tests;
