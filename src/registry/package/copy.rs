//! Copying a directory package into the registry.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use super::{create_dir, file_mode, Budget, PackageError};

/// Copy the tree at `from` into the existing, empty directory `to`,
/// returning the bytes copied. Files and directories get the modes of
/// [`file_mode`]. Symlinks are copied as links, never followed (they
/// resolve inside the sandbox's own root); other special files are refused.
pub fn copy_tree(from: &Path, to: &Path, budget: &mut Budget) -> Result<u64, PackageError> {
    let mut total = 0;
    copy_dir(from, to, budget, &mut total)?;
    Ok(total)
}

fn copy_dir(
    from: &Path,
    to: &Path,
    budget: &mut Budget,
    total: &mut u64,
) -> Result<(), PackageError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PackageError::Open { path, source }
    };
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PackageError::Write { path, source }
    };
    for entry in fs::read_dir(from).map_err(read_err(from))? {
        let entry = entry.map_err(read_err(from))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let meta = fs::symlink_metadata(&src).map_err(read_err(&src))?;
        budget.spend_entry(&src)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            create_dir(&dst).map_err(write_err(&dst))?;
            copy_dir(&src, &dst, budget, total)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&src).map_err(read_err(&src))?;
            symlink(target, &dst).map_err(write_err(&dst))?;
        } else if kind.is_file() {
            // Refused before copying when it cannot fit; charged by what
            // was really copied.
            if meta.len() > budget.bytes() {
                return Err(PackageError::TooLarge { path: src });
            }
            let copied = fs::copy(&src, &dst).map_err(write_err(&dst))?;
            budget.spend_bytes(copied, &src)?;
            *total += copied;
            let mode = fs::Permissions::from_mode(file_mode(meta.permissions().mode()));
            fs::set_permissions(&dst, mode).map_err(write_err(&dst))?;
        } else {
            return Err(PackageError::Special {
                path: src,
                what: "not a regular file, directory or symlink",
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::package::MAX_ENTRIES;

    #[test]
    fn copies_files_links_and_modes() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        fs::write(src.path().join("a.py"), "abc").unwrap();
        fs::write(src.path().join("run"), "#!").unwrap();
        fs::set_permissions(src.path().join("run"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::create_dir(src.path().join("sub")).unwrap();
        fs::write(src.path().join("sub/b"), "de").unwrap();
        symlink("a.py", src.path().join("link")).unwrap();

        let to = dst.path();
        let mut budget = Budget::default();
        assert_eq!(copy_tree(src.path(), to, &mut budget).unwrap(), 7);
        assert_eq!(fs::read_to_string(to.join("sub/b")).unwrap(), "de");
        assert_eq!(fs::read_link(to.join("link")).unwrap(), Path::new("a.py"));
        let mode = |p: &str| fs::metadata(to.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("a.py"), 0o644);
        assert_eq!(mode("run"), 0o755);
        assert_eq!(mode("sub"), 0o755);
        assert_eq!(budget.entries, MAX_ENTRIES - 5, "a.py run sub sub/b link");
    }

    #[test]
    fn refuses_fifos_and_what_does_not_fit() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        fs::write(src.path().join("big"), [0u8; 100]).unwrap();
        let mut small = Budget {
            bytes: 99,
            ..Budget::default()
        };
        let err = copy_tree(src.path(), dst.path(), &mut small).unwrap_err();
        assert!(matches!(err, PackageError::TooLarge { .. }), "{err}");

        nix::unistd::mkfifo(
            &src.path().join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let dst = tempfile::tempdir().unwrap();
        let err = copy_tree(src.path(), dst.path(), &mut Budget::default()).unwrap_err();
        assert!(matches!(err, PackageError::Special { .. }), "{err}");
    }
}
