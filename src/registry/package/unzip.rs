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

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zip::ZipArchive;

use super::entries::{classify, normalize, EntryRule, Kind, Tree, MAX_NAME_BYTES};
use super::{create_dir, file_mode, Budget, PackageError, MAX_RATIO, RATIO_GRACE};

/// One entry of the archive, checked, as it will be written.
#[derive(Debug)]
struct Planned {
    index: usize,
    /// Relative, normal components only, joined by `/`.
    path: String,
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
    let (plan, mut tree) = plan(&archive, source, archive_bytes, budget)?;
    let mut total = 0;
    for entry in &plan {
        let fail = |rule| entry_error(source, &entry.path, rule);
        match entry.kind {
            Kind::Dir => make_dirs(dir, &entry.path)?,
            Kind::File { mode } => {
                make_parents(dir, &entry.path)?;
                let dest = dir.join(&entry.path);
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
                let target = read_target(&mut reader).map_err(fail)?;
                tree.set_target(&entry.path, target);
            }
        }
    }
    // Links last: nothing above was written through one, and each target
    // is checked against every link of the package.
    for entry in plan.iter().filter(|e| e.kind == Kind::Link) {
        tree.check_link(&entry.path)
            .map_err(|rule| entry_error(source, &entry.path, rule))?;
    }
    for entry in plan.iter().filter(|e| e.kind == Kind::Link) {
        make_parents(dir, &entry.path)?;
        let dest = dir.join(&entry.path);
        let target = tree.target(&entry.path);
        symlink(target, &dest).map_err(|source| PackageError::Write { path: dest, source })?;
    }
    Ok(total)
}

fn entry_error(archive: &Path, entry: &str, rule: EntryRule) -> PackageError {
    PackageError::Entry {
        archive: archive.to_path_buf(),
        entry: entry.to_owned(),
        rule,
    }
}

/// A link's target, as stored in its entry's data.
fn read_target(reader: &mut impl Read) -> Result<String, EntryRule> {
    let mut target = Vec::new();
    reader
        .take(MAX_NAME_BYTES as u64 + 1)
        .read_to_end(&mut target)
        .map_err(EntryRule::Read)?;
    String::from_utf8(target)
        .ok()
        .filter(|t| !t.is_empty() && !t.contains('\0') && t.len() <= MAX_NAME_BYTES)
        .ok_or(EntryRule::LinkTarget)
}

/// The first pass, over the central directory only.
fn plan<R: Read + io::Seek>(
    archive: &ZipArchive<R>,
    source: &Path,
    archive_bytes: u64,
    budget: &mut Budget,
) -> Result<(Vec<Planned>, Tree), PackageError> {
    if archive.has_duplicate_names() {
        return Err(PackageError::DuplicateNames {
            path: source.to_path_buf(),
        });
    }
    let mut plan = Vec::with_capacity(archive.len());
    let mut tree = Tree::default();
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
        if path.is_empty() {
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
        if kind == Kind::Link && declared > MAX_NAME_BYTES as u64 {
            return Err(fail(EntryRule::LinkTarget));
        }
        tree.insert(&path, kind).map_err(fail)?;
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
        tree.check_parents(&entry.path)
            .map_err(|rule| entry_error(source, &entry.path, rule))?;
    }
    Ok((plan, tree))
}

/// `unpacked` bytes from `packed` passes [`MAX_RATIO`] (past the grace).
fn over_ratio(unpacked: u128, packed: u64) -> bool {
    unpacked > u128::from(RATIO_GRACE) && unpacked > u128::from(packed) * u128::from(MAX_RATIO)
}

/// Create the directories above the entry at `rel`.
fn make_parents(root: &Path, rel: &str) -> Result<(), PackageError> {
    match rel.rsplit_once('/') {
        Some((parents, _)) => make_dirs(root, parents),
        None => Ok(()),
    }
}

/// Create `rel` and its missing ancestors under `root`, each 0755. None of
/// them is a link or a file: [`plan`] refused entries under those.
fn make_dirs(root: &Path, rel: &str) -> Result<(), PackageError> {
    let mut path = root.to_path_buf();
    for component in rel.split('/') {
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
