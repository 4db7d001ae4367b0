//! A function's package as Lambda lays it out: the code (a directory or a
//! `.zip` deployment package) and up to five layers merged into one tree,
//! unpacked once at deploy into the version's directory.
//!
//! Everything here treats its input as hostile: a zip entry may not leave
//! the tree it is unpacked into (no `..`, absolute paths, drive letters,
//! links leading out, nor anything written through a link), special files
//! are refused, and one [`Budget`] bounds the bytes and entries of the code
//! and its layers together. A tree is unpacked beside its destination and
//! renamed into place only once complete, so a refused package leaves
//! nothing behind.

mod copy;
mod entries;
mod layers;
mod unzip;
#[cfg(test)]
mod unzip_tests;

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub use entries::EntryRule;
pub use layers::unpack_layers;

/// Most bytes the code and its layers may hold unpacked, together. Lambda
/// allows 250 MiB (code and layers unzipped); sprout keeps the 512 MiB it
/// always allowed for code, so every package Lambda takes fits and no
/// function that deployed before is refused now, while the state directory
/// stays bounded.
pub const MAX_UNPACKED_BYTES: u64 = 512 * 1024 * 1024;

/// Most files, directories and links in the code and its layers together:
/// as many as a zip without zip64 extensions can list. Large Python
/// dependency trees reach tens of thousands of files.
pub const MAX_ENTRIES: u64 = 65_535;

/// Most layers per function, as on Lambda.
pub const MAX_LAYERS: usize = 5;

/// Largest expansion of a zip entry, and of an archive as a whole, over
/// its compressed bytes, once it has unpacked more than [`RATIO_GRACE`].
/// Source code and libraries deflate 3 to 20 times; a zip bomb thousands
/// of times. 100 is the bound Apache POI applies to the zips it opens.
pub const MAX_RATIO: u64 = 100;

/// Bytes an entry (or archive) may unpack before [`MAX_RATIO`] applies:
/// small, highly compressible files are harmless.
pub const RATIO_GRACE: u64 = 1024 * 1024;

/// Why a package could not be unpacked. Messages leave out their
/// `#[source]`, which follows in the chain (`{:#}`, as the daemon reports).
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("read {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is neither a directory nor a zip file")]
    NotPackage { path: PathBuf },
    #[error("{path}: not a readable zip archive")]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("{path}: the archive lists one name more than once")]
    DuplicateNames { path: PathBuf },
    #[error("{archive}: entry {entry:?}")]
    Entry {
        archive: PathBuf,
        entry: String,
        #[source]
        rule: EntryRule,
    },
    #[error(
        "{path}: {archive_bytes} bytes of zip declare {declared} bytes unpacked, more than \
         {max} times as much (a zip bomb?)",
        max = MAX_RATIO
    )]
    ArchiveRatio {
        path: PathBuf,
        archive_bytes: u64,
        declared: u128,
    },
    #[error(
        "{path}: code and layers hold more than {max} bytes unpacked (Lambda's limit is 250 MiB)",
        max = MAX_UNPACKED_BYTES
    )]
    TooLarge { path: PathBuf },
    #[error(
        "{path}: code and layers hold more than {max} files, directories and links",
        max = MAX_ENTRIES
    )]
    TooManyEntries { path: PathBuf },
    #[error("{path}: {what} (only files, directories and symlinks are taken)")]
    Special { path: PathBuf, what: &'static str },
    #[error("write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What the code and layers of one function may still use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    bytes: u64,
    entries: u64,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            bytes: MAX_UNPACKED_BYTES,
            entries: MAX_ENTRIES,
        }
    }
}

impl Budget {
    /// Bytes left.
    fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Spend `n` bytes written from `source`.
    fn spend_bytes(&mut self, n: u64, source: &Path) -> Result<(), PackageError> {
        self.bytes = self
            .bytes
            .checked_sub(n)
            .ok_or_else(|| PackageError::TooLarge {
                path: source.to_path_buf(),
            })?;
        Ok(())
    }

    /// Spend one entry (file, directory or link) of `source`.
    fn spend_entry(&mut self, source: &Path) -> Result<(), PackageError> {
        self.entries = self
            .entries
            .checked_sub(1)
            .ok_or_else(|| PackageError::TooManyEntries {
                path: source.to_path_buf(),
            })?;
        Ok(())
    }
}

/// Unpack `source` (a directory, or a regular file holding a zip archive)
/// into `dest`, which must not exist, charging `budget`. Returns the bytes
/// of the files written. On error nothing is left at `dest` nor beside it.
pub fn unpack(source: &Path, dest: &Path, budget: &mut Budget) -> Result<u64, PackageError> {
    let partial = Partial::create(dest)?;
    let bytes = unpack_into(source, &partial.path, budget)?;
    partial.commit(dest)?;
    Ok(bytes)
}

/// Unpack `source` into the existing, empty directory `dir`.
fn unpack_into(source: &Path, dir: &Path, budget: &mut Budget) -> Result<u64, PackageError> {
    let meta = fs::metadata(source).map_err(|err| PackageError::Open {
        path: source.to_path_buf(),
        source: err,
    })?;
    if meta.is_dir() {
        copy::copy_tree(source, dir, budget)
    } else if meta.is_file() {
        unzip::unzip(source, dir, budget)
    } else {
        Err(PackageError::NotPackage {
            path: source.to_path_buf(),
        })
    }
}

/// The mode a file is stored with: 0755 when any execute bit was set, else
/// 0644, so the unprivileged sandbox user can read (and run) it but nobody
/// but root can change it. Directories are 0755.
fn file_mode(mode: u32) -> u32 {
    if mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

const DIR_MODE: u32 = 0o755;

/// Create the directory `path` with [`DIR_MODE`], whatever the umask.
fn create_dir(path: &Path) -> io::Result<()> {
    fs::create_dir(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE))
}

/// A directory being filled beside its destination, removed when dropped
/// before [`Partial::commit`].
struct Partial {
    path: PathBuf,
    committed: bool,
}

impl Partial {
    /// `.NAME.partial` beside `dest`, fresh (a leftover of a crash is
    /// removed first).
    fn create(dest: &Path) -> Result<Partial, PackageError> {
        let name = dest.file_name().expect("destination has a name");
        let mut partial_name = std::ffi::OsString::from(".");
        partial_name.push(name);
        partial_name.push(".partial");
        let path = dest.with_file_name(partial_name);
        let write_err = |source| PackageError::Write {
            path: path.clone(),
            source,
        };
        match fs::remove_dir_all(&path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(write_err(err)),
            _ => {}
        }
        create_dir(&path).map_err(write_err)?;
        Ok(Partial {
            path,
            committed: false,
        })
    }

    fn commit(mut self, dest: &Path) -> Result<(), PackageError> {
        fs::rename(&self.path, dest).map_err(|source| PackageError::Write {
            path: dest.to_path_buf(),
            source,
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.committed {
            if let Err(err) = fs::remove_dir_all(&self.path) {
                tracing::warn!(path = %self.path.display(), %err, "could not remove a partly unpacked package");
            }
        }
    }
}
