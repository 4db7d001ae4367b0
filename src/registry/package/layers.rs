//! Layers, merged as Lambda merges them under `/opt`: in order, a later
//! layer's entry replacing an earlier one's at the same path.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{unpack_into, Budget, PackageError, Partial};

/// Unpack each of `sources` (directories or zip files, in order) and merge
/// them into one new tree at `dest`, charging `budget` with every layer's
/// own size (as Lambda counts them). Returns each layer's bytes. On error
/// nothing is left at `dest` nor beside it.
pub fn unpack_layers(
    sources: &[PathBuf],
    dest: &Path,
    budget: &mut Budget,
) -> Result<Vec<u64>, PackageError> {
    let merged = Partial::create(dest)?;
    let mut sizes = Vec::with_capacity(sources.len());
    for (index, source) in sources.iter().enumerate() {
        let layer = Partial::create(&dest.with_file_name(format!("layer-{index}")))?;
        sizes.push(unpack_into(source, &layer.path, budget)?);
        overlay(&layer.path, &merged.path)?;
        // Dropping `layer` removes the directories emptied by the moves.
    }
    merged.commit(dest)?;
    Ok(sizes)
}

/// Move every entry of `upper` into `lower`. A directory over a directory
/// merges into it; anything else replaces what `lower` has at that path,
/// a whole directory included. Nothing is followed: a link in `lower` is
/// replaced as a link, never written through.
fn overlay(upper: &Path, lower: &Path) -> Result<(), PackageError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PackageError::Write { path, source }
    };
    for entry in fs::read_dir(upper).map_err(write_err(upper))? {
        let entry = entry.map_err(write_err(upper))?;
        let from = entry.path();
        let to = lower.join(entry.file_name());
        let from_is_dir = entry.file_type().map_err(write_err(&from))?.is_dir();
        match fs::symlink_metadata(&to) {
            Ok(meta) if meta.is_dir() && from_is_dir => {
                overlay(&from, &to)?;
                continue;
            }
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&to).map_err(write_err(&to))?,
            Ok(_) => fs::remove_file(&to).map_err(write_err(&to))?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(write_err(&to)(err)),
        }
        fs::rename(&from, &to).map_err(write_err(&to))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;
    use crate::registry::package::unzip_tests::zip_of;

    fn layer(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn later_layers_win_files_dirs_and_links() {
        let first = layer(&[
            ("python/lib.py", "v1"),
            ("python/only1.py", "1"),
            ("bin/tool", "dir in 1"),
            ("data", "file in 1"),
        ]);
        symlink("/etc", first.path().join("etc")).unwrap();
        let second = layer(&[
            ("python/lib.py", "v2"),
            ("bin", "file in 2"),
            ("data/inside", "dir in 2"),
            ("etc/passwd", "not the host's"),
        ]);
        let state = tempfile::tempdir().unwrap();
        let opt = state.path().join("opt");
        let mut budget = Budget::default();
        let sizes = unpack_layers(
            &[first.path().to_path_buf(), second.path().to_path_buf()],
            &opt,
            &mut budget,
        )
        .unwrap();
        assert_eq!(sizes, [2 + 1 + 8 + 9, 2 + 9 + 8 + 14]);
        let read = |p: &str| fs::read_to_string(opt.join(p)).unwrap();
        assert_eq!(read("python/lib.py"), "v2");
        assert_eq!(read("python/only1.py"), "1");
        assert_eq!(read("bin"), "file in 2", "a file replaces a directory");
        assert_eq!(
            read("data/inside"),
            "dir in 2",
            "a directory replaces a file"
        );
        assert!(
            !fs::symlink_metadata(opt.join("etc")).unwrap().is_symlink(),
            "a directory replaces a link, nothing is written through it"
        );
        assert_eq!(read("etc/passwd"), "not the host's");
        let names: Vec<_> = fs::read_dir(state.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["opt"], "no staging directory is left");
    }

    #[test]
    fn zip_layers_merge_and_a_bad_one_leaves_nothing() {
        let zip_dir = tempfile::tempdir().unwrap();
        let good = zip_dir.path().join("good.zip");
        fs::write(&good, zip_of(&[("bin/run", "#!/bin/sh\n", 0o755)])).unwrap();
        let bad = zip_dir.path().join("bad.zip");
        fs::write(&bad, zip_of(&[("../escape", "x", 0o644)])).unwrap();

        let state = tempfile::tempdir().unwrap();
        let opt = state.path().join("opt");
        unpack_layers(std::slice::from_ref(&good), &opt, &mut Budget::default()).unwrap();
        let mode = fs::metadata(opt.join("bin/run"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);

        let state = tempfile::tempdir().unwrap();
        let opt = state.path().join("opt");
        let err = unpack_layers(&[good, bad], &opt, &mut Budget::default()).unwrap_err();
        assert!(err.to_string().contains("../escape"), "{err}");
        assert_eq!(fs::read_dir(state.path()).unwrap().count(), 0, "{err}");
    }
}
