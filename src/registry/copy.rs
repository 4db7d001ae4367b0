//! Copying a function's code into the registry.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

/// Largest code tree accepted, in bytes.
pub const MAX_CODE_BYTES: u64 = 512 * 1024 * 1024;

/// Copy the tree at `from` to `to` (which must not exist), returning the
/// bytes copied. Files become 0644, or 0755 when any execute bit was set,
/// directories 0755, so the unprivileged sandbox user can read them
/// but nobody but root can change them. Symlinks are copied as links (they
/// resolve inside the sandbox's own root); other special files are refused.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<u64> {
    let mut total = 0;
    copy_dir(from, to, &mut total)?;
    Ok(total)
}

fn copy_dir(from: &Path, to: &Path, total: &mut u64) -> io::Result<()> {
    fs::create_dir(to)?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&src, &dst, total)?;
        } else if kind.is_symlink() {
            symlink(fs::read_link(&src)?, &dst)?;
        } else if kind.is_file() {
            *total += fs::copy(&src, &dst)?;
            if *total > MAX_CODE_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::FileTooLarge,
                    format!("code is larger than {MAX_CODE_BYTES} bytes"),
                ));
            }
            let mode = fs::metadata(&src)?.permissions().mode();
            let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
            fs::set_permissions(&dst, fs::Permissions::from_mode(mode))?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a regular file, directory or symlink",
                    src.display()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

        let to = dst.path().join("code");
        assert_eq!(copy_tree(src.path(), &to).unwrap(), 7);
        assert_eq!(fs::read_to_string(to.join("sub/b")).unwrap(), "de");
        assert_eq!(fs::read_link(to.join("link")).unwrap(), Path::new("a.py"));
        let mode = |p: &str| fs::metadata(to.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("a.py"), 0o644);
        assert_eq!(mode("run"), 0o755);
        assert_eq!(mode("sub"), 0o755);
    }
}
