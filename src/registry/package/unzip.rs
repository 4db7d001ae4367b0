//! Unpacking a zip deployment package, as hostile input.
//!
//! Two passes. The first reads only the central directory: every name is
//! checked and normalised, every entry classified, duplicates, entries
//! under a file or a symlink, special files, encrypted entries and
//! compression ratios refused, and the declared sizes summed against the
//! budget, so most bad archives are refused before a byte is written. The
//! second writes directories and files, counting the bytes really
//! decompressed (an entry that yields more than its header declared is
//! refused), then creates the symlinks last, once each target is known to
//! resolve inside the package.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::SFlag;
use zip::ZipArchive;

use super::{create_dir, file_mode, Budget, PackageError, MAX_RATIO, RATIO_GRACE};

/// Longest symlink target taken, in bytes (PATH_MAX less the NUL).
const MAX_LINK_TARGET: u64 = 4095;

/// Most links followed while resolving one symlink's target, as the
/// kernel's limit (ELOOP).
const MAX_LINK_HOPS: u32 = 40;

/// Why one entry of an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum EntryRule {
    #[error("a `..` component would leave the package")]
    ParentDir,
    #[error("an absolute path")]
    Absolute,
    #[error("a drive letter or backslash in the name (re-create the archive with `/` separators)")]
    Windows,
    #[error("a NUL byte in the name")]
    Nul,
    #[error("an empty name")]
    Empty,
    #[error("a second entry for the same path")]
    Duplicate,
    #[error("written through the symlink {0:?}")]
    ThroughSymlink(PathBuf),
    #[error("its parent {0:?} is a file")]
    UnderFile(PathBuf),
    #[error("a symlink to the absolute path {0:?}")]
    LinkAbsolute(String),
    #[error("a symlink to {0:?}, which leads outside the package")]
    LinkEscapes(String),
    #[error("a symlink to {0:?}, which resolves through more than {max} links", max = MAX_LINK_HOPS)]
    LinkLoop(String),
    #[error("a symlink whose target is empty, not UTF-8, holds a NUL or passes {max} bytes", max = MAX_LINK_TARGET)]
    LinkTarget,
    #[error("a {0} (only files, directories and symlinks are taken)")]
    Special(&'static str),
    #[error("encrypted (sprout takes no password)")]
    Encrypted,
    #[error(
        "{declared} bytes from {compressed} compressed, more than {max} times as much (a zip bomb?)",
        max = MAX_RATIO
    )]
    Ratio { declared: u64, compressed: u64 },
    #[error("it unpacks to more than the {declared} bytes its header declares")]
    SizeMismatch { declared: u64 },
    #[error("unreadable entry: {0}")]
    Zip(#[source] zip::result::ZipError),
    #[error("read: {0}")]
    Read(#[source] io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File { mode: u32 },
    Link,
}

/// One entry of the archive, checked, as it will be written.
#[derive(Debug)]
struct Planned {
    index: usize,
    /// Relative, normal components only.
    path: PathBuf,
    kind: Kind,
    declared: u64,
}

/// Unpack the zip archive at `source` into the existing, empty directory
/// `dir`, charging `budget`. Returns the bytes of the files written.
pub fn unzip(source: &Path, dir: &Path, budget: &mut Budget) -> Result<u64, PackageError> {
    let open_err = |err| PackageError::Open {
        path: source.to_path_buf(),
        source: err,
    };
    let file = File::open(source).map_err(open_err)?;
    let archive_bytes = file.metadata().map_err(open_err)?.len();
    let mut archive = ZipArchive::new(BufReader::new(file)).map_err(|err| PackageError::Zip {
        path: source.to_path_buf(),
        source: err,
    })?;
    let plan = plan(&archive, source, archive_bytes, budget)?;
    let mut total = 0;
    let mut links = HashMap::new();
    for entry in &plan {
        let fail = |rule| entry_error(source, &entry.path, rule);
        let dest = dir.join(&entry.path);
        match entry.kind {
            Kind::Dir => make_dirs(dir, &entry.path)?,
            Kind::File { mode } => {
                if let Some(parent) = entry.path.parent() {
                    make_dirs(dir, parent)?;
                }
                let mut reader = archive
                    .by_index(entry.index)
                    .map_err(|e| fail(EntryRule::Zip(e)))?;
                let written = write_file(&mut reader, &dest, entry.declared, mode).map_err(
                    |err| match err {
                        WriteError::Read(err) => fail(EntryRule::Read(err)),
                        WriteError::Write(source) => PackageError::Write {
                            path: dest.clone(),
                            source,
                        },
                        WriteError::TooLong => fail(EntryRule::SizeMismatch {
                            declared: entry.declared,
                        }),
                    },
                )?;
                budget.spend_bytes(written, source)?;
                total += written;
            }
            Kind::Link => {
                let mut reader = archive
                    .by_index(entry.index)
                    .map_err(|e| fail(EntryRule::Zip(e)))?;
                let mut target = Vec::new();
                (&mut reader)
                    .take(MAX_LINK_TARGET + 1)
                    .read_to_end(&mut target)
                    .map_err(|e| fail(EntryRule::Read(e)))?;
                let target = String::from_utf8(target)
                    .ok()
                    .filter(|t| {
                        !t.is_empty() && !t.contains('\0') && t.len() as u64 <= MAX_LINK_TARGET
                    })
                    .ok_or_else(|| fail(EntryRule::LinkTarget))?;
                links.insert(entry.path.clone(), target);
            }
        }
    }
    // Links last: nothing above was written through one, and each target
    // is checked against every link of the package.
    for entry in plan.iter().filter(|e| e.kind == Kind::Link) {
        let target = &links[&entry.path];
        resolve_inside(&links, &entry.path, target)
            .map_err(|rule| entry_error(source, &entry.path, rule))?;
        if let Some(parent) = entry.path.parent() {
            make_dirs(dir, parent)?;
        }
        let dest = dir.join(&entry.path);
        symlink(target, &dest).map_err(|source| PackageError::Write { path: dest, source })?;
    }
    Ok(total)
}

fn entry_error(archive: &Path, entry: &Path, rule: EntryRule) -> PackageError {
    PackageError::Entry {
        archive: archive.to_path_buf(),
        entry: entry.display().to_string(),
        rule,
    }
}

/// The first pass, over the central directory only.
fn plan<R: Read + io::Seek>(
    archive: &ZipArchive<R>,
    source: &Path,
    archive_bytes: u64,
    budget: &mut Budget,
) -> Result<Vec<Planned>, PackageError> {
    if archive.has_duplicate_names() {
        return Err(PackageError::DuplicateNames {
            path: source.to_path_buf(),
        });
    }
    let mut plan = Vec::with_capacity(archive.len());
    let mut kinds: HashMap<PathBuf, Kind> = HashMap::new();
    let mut declared_total: u128 = 0;
    for index in 0..archive.len() {
        let entry = archive
            .by_index_data(index)
            .map_err(|err| PackageError::Zip {
                path: source.to_path_buf(),
                source: err,
            })?;
        let shown = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let fail = |rule| PackageError::Entry {
            archive: source.to_path_buf(),
            entry: shown.clone(),
            rule,
        };
        budget.spend_entry(source)?;
        let name = entry.name().map_err(|e| fail(EntryRule::Zip(e)))?;
        let path = normalize(&name).map_err(fail)?;
        let kind = classify(entry.unix_mode(), name.ends_with('/')).map_err(fail)?;
        if path.as_os_str().is_empty() {
            if kind == Kind::Dir {
                continue; // `./`: the package's root itself
            }
            return Err(fail(EntryRule::Empty));
        }
        if entry.encrypted() {
            return Err(fail(EntryRule::Encrypted));
        }
        let declared = entry.size();
        let compressed = entry.compressed_size();
        if over_ratio(u128::from(declared), compressed) {
            return Err(fail(EntryRule::Ratio {
                declared,
                compressed,
            }));
        }
        if kind == Kind::Link && declared > MAX_LINK_TARGET {
            return Err(fail(EntryRule::LinkTarget));
        }
        if kinds.insert(path.clone(), kind).is_some() {
            return Err(fail(EntryRule::Duplicate));
        }
        declared_total += u128::from(declared);
        plan.push(Planned {
            index,
            path,
            kind,
            declared,
        });
    }
    if declared_total > u128::from(budget.bytes()) {
        return Err(PackageError::TooLarge {
            path: source.to_path_buf(),
        });
    }
    if over_ratio(declared_total, archive_bytes) {
        return Err(PackageError::ArchiveRatio {
            path: source.to_path_buf(),
            archive_bytes,
            declared: declared_total,
        });
    }
    for entry in &plan {
        for ancestor in entry.path.ancestors().skip(1) {
            let rule = match kinds.get(ancestor) {
                Some(Kind::Link) => EntryRule::ThroughSymlink(ancestor.to_path_buf()),
                Some(Kind::File { .. }) => EntryRule::UnderFile(ancestor.to_path_buf()),
                Some(Kind::Dir) | None => continue,
            };
            return Err(entry_error(source, &entry.path, rule));
        }
    }
    Ok(plan)
}

/// `unpacked` bytes from `packed` passes [`MAX_RATIO`] (past the grace).
fn over_ratio(unpacked: u128, packed: u64) -> bool {
    unpacked > u128::from(RATIO_GRACE) && unpacked > u128::from(packed) * u128::from(MAX_RATIO)
}

/// An entry's name as a relative path of normal components: `.` and empty
/// components dropped, anything that could leave the root refused.
fn normalize(name: &str) -> Result<PathBuf, EntryRule> {
    if name.contains('\0') {
        return Err(EntryRule::Nul);
    }
    if name.contains('\\') {
        return Err(EntryRule::Windows);
    }
    if name.starts_with('/') {
        return Err(EntryRule::Absolute);
    }
    let first = name.as_bytes();
    if first.len() >= 2 && first[0].is_ascii_alphabetic() && first[1] == b':' {
        return Err(EntryRule::Windows);
    }
    let mut path = PathBuf::new();
    for component in name.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(EntryRule::ParentDir),
            normal => path.push(normal),
        }
    }
    Ok(path)
}

/// What an entry is, from the type bits of its Unix mode (none: a
/// directory when its name ends in `/`, else a file).
fn classify(mode: Option<u32>, dir_name: bool) -> Result<Kind, EntryRule> {
    let mode = mode.unwrap_or(0);
    let kind = SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits());
    Ok(match kind {
        k if k.is_empty() || k == SFlag::S_IFREG => {
            if dir_name {
                Kind::Dir
            } else {
                Kind::File { mode }
            }
        }
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFLNK => Kind::Link,
        SFlag::S_IFIFO => return Err(EntryRule::Special("fifo")),
        SFlag::S_IFCHR => return Err(EntryRule::Special("character device")),
        SFlag::S_IFBLK => return Err(EntryRule::Special("block device")),
        SFlag::S_IFSOCK => return Err(EntryRule::Special("socket")),
        _ => return Err(EntryRule::Special("file of unknown type")),
    })
}

/// Create `rel` and its missing ancestors under `root`, each 0755. None of
/// them is a link or a file: [`plan`] refused entries under those.
fn make_dirs(root: &Path, rel: &Path) -> Result<(), PackageError> {
    let mut path = root.to_path_buf();
    for component in rel.components() {
        path.push(component);
        match create_dir(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(PackageError::Write { path, source }),
        }
    }
    Ok(())
}

enum WriteError {
    Read(io::Error),
    Write(io::Error),
    /// More bytes than declared.
    TooLong,
}

/// Write what `reader` yields to the new file `dest`, at most `declared`
/// bytes, counting them; the file gets [`file_mode`] of `mode`.
fn write_file(
    reader: &mut impl Read,
    dest: &Path,
    declared: u64,
    mode: u32,
) -> Result<u64, WriteError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(WriteError::Write)?;
    let mut buf = vec![0; 64 * 1024];
    let mut written: u64 = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(WriteError::Read(err)),
        };
        written += n as u64;
        if written > declared {
            return Err(WriteError::TooLong);
        }
        file.write_all(&buf[..n]).map_err(WriteError::Write)?;
    }
    file.set_permissions(fs::Permissions::from_mode(file_mode(mode)))
        .map_err(WriteError::Write)?;
    Ok(written)
}

/// Follow `target` of the link at `link` as the kernel would, through the
/// package's other `links`, and refuse it if it leaves the package.
fn resolve_inside(
    links: &HashMap<PathBuf, String>,
    link: &Path,
    target: &str,
) -> Result<(), EntryRule> {
    if target.starts_with('/') {
        return Err(EntryRule::LinkAbsolute(target.to_owned()));
    }
    let mut at: Vec<&str> = link
        .parent()
        .into_iter()
        .flat_map(|p| p.iter())
        .map(|c| c.to_str().expect("names are UTF-8"))
        .collect();
    let mut todo: VecDeque<&str> = target.split('/').collect();
    let mut hops = 0;
    while let Some(component) = todo.pop_front() {
        match component {
            "" | "." => {}
            ".." => {
                if at.pop().is_none() {
                    return Err(EntryRule::LinkEscapes(target.to_owned()));
                }
            }
            name => {
                at.push(name);
                let here: PathBuf = at.iter().collect();
                if let Some(next) = links.get(&here) {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Err(EntryRule::LinkLoop(target.to_owned()));
                    }
                    if next.starts_with('/') {
                        return Err(EntryRule::LinkEscapes(target.to_owned()));
                    }
                    at.pop();
                    for c in next.split('/').rev() {
                        todo.push_front(c);
                    }
                }
            }
        }
    }
    Ok(())
}
