//! The shared, read-only files every sandbox root is built from, assembled
//! once per daemon start under STATE/rootfs: a curated `etc/` (no secrets),
//! the runtimes' files under `runtimes/<kind>/`, and `newroot/`, the empty
//! directory each sandbox mounts its root tmpfs on (in its own mount
//! namespace). See rootfs/README.md and rootfs/etc.manifest.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::rootfs::RUNTIME_MOUNT;
use super::runtime::PYTHON;
use super::{RuntimeKind, SandboxError};

/// Host files copied verbatim into the sandbox /etc when present: the
/// dynamic loader's cache and configuration, name service switch, time
/// zone, OS identification, protocol and service names. Symlinks are
/// recreated as symlinks (they resolve inside the sandbox's /usr).
pub const COPIED: &[&str] = &[
    "ld.so.cache",
    "ld.so.conf",
    "nsswitch.conf",
    "localtime",
    "os-release",
    "protocols",
    "services",
];

/// Host directories whose regular files are copied (not recursively).
pub const COPIED_DIRS: &[&str] = &["ld.so.conf.d"];

/// Generated files: accounts for uid 0 (the sandbox's own root, mapped to an
/// unprivileged host uid), a `sandbox` user, and nobody (what unmapped host
/// owners show as).
pub const GENERATED: &[(&str, &str)] = &[
    (
        "passwd",
        "root:x:0:0:root:/tmp:/usr/sbin/nologin\n\
         sandbox:x:1000:1000:sprout sandbox:/tmp:/usr/sbin/nologin\n\
         nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    ),
    ("group", "root:x:0:\nsandbox:x:1000:\nnogroup:x:65534:\n"),
    (
        "hosts",
        "127.0.0.1\tlocalhost sprout\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    ),
    ("hostname", "sprout\n"),
];

/// The python runtime's files, written to runtimes/python/: what the
/// sandbox runs (start.py), the runtime it starts, and the module that
/// runtime loads on first use.
const PYTHON_FILES: &[(&str, &str)] = &[
    ("start.py", include_str!("../../runtimes/python/start.py")),
    (
        "bootstrap.py",
        include_str!("../../runtimes/python/bootstrap.py"),
    ),
    (
        "lambda_support.py",
        include_str!("../../runtimes/python/lambda_support.py"),
    ),
];

/// The python files compiled to bytecode when the daemon starts.
const PRECOMPILED: [&str; 2] = ["bootstrap.py", "lambda_support.py"];

/// Compiles each `DIR/NAME` to `DIR/NAMEc` (argv: DIR, the directory
/// sandboxes see it in, for the paths in its frames, then the names).
const PRECOMPILE: &str = "import py_compile, sys; d, seen, *names = sys.argv[1:]; \
    [py_compile.compile(f'{d}/{n}', cfile=f'{d}/{n}c', dfile=f'{seen}/{n}', doraise=True, \
    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH) for n in names]";

/// Paths of the prepared tree.
#[derive(Debug, Clone)]
pub struct Layout {
    /// STATE/rootfs: the init starts with this as its working directory.
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(state_dir: &Path) -> Layout {
        Layout {
            dir: state_dir.join("rootfs"),
        }
    }

    pub fn etc(&self) -> PathBuf {
        self.dir.join(ETC)
    }

    pub fn runtime(&self, kind: RuntimeKind) -> PathBuf {
        self.dir.join(runtime_rel(kind))
    }
}

/// Relative to [`Layout::dir`] (the init's working directory).
pub const ETC: &str = "etc";
/// Relative to [`Layout::dir`]: where each sandbox mounts its root tmpfs.
pub const NEWROOT: &str = "newroot";

pub fn runtime_rel(kind: RuntimeKind) -> String {
    format!("runtimes/{kind}")
}

/// Build STATE/rootfs from scratch (a previous run's tree is replaced).
pub fn prepare(layout: &Layout, host_etc: &Path) -> Result<(), SandboxError> {
    let etc = layout.etc();
    let err = |source| SandboxError::PrepareEtc {
        path: etc.clone(),
        source,
    };
    mkdir_public(&layout.dir).map_err(err)?;
    mkdir_public(&layout.dir.join(NEWROOT)).map_err(err)?;
    remove_if_present(&etc).map_err(err)?;
    mkdir_public(&etc).map_err(err)?;
    assemble_etc(host_etc, &etc).map_err(err)?;
    mkdir_public(&layout.dir.join("runtimes")).map_err(err)?;
    for kind in RuntimeKind::all() {
        let dir = layout.runtime(kind);
        write_runtime(kind, &dir).map_err(|source| SandboxError::PrepareRuntime {
            runtime: kind,
            path: dir.clone(),
            source,
        })?;
    }
    Ok(())
}

fn assemble_etc(host_etc: &Path, etc: &Path) -> io::Result<()> {
    for name in COPIED {
        copy_entry(&host_etc.join(name), &etc.join(name))?;
    }
    for name in COPIED_DIRS {
        let src = host_etc.join(name);
        if !src.is_dir() {
            continue;
        }
        let dst = etc.join(name);
        mkdir_public(&dst)?;
        for entry in fs::read_dir(&src)? {
            let entry = entry?;
            if entry.file_type()?.is_file() || entry.file_type()?.is_symlink() {
                copy_entry(&entry.path(), &dst.join(entry.file_name()))?;
            }
        }
    }
    for (name, text) in GENERATED {
        write_public(&etc.join(name), text.as_bytes())?;
    }
    Ok(())
}

fn write_runtime(kind: RuntimeKind, dir: &Path) -> io::Result<()> {
    remove_if_present(dir)?;
    mkdir_public(dir)?;
    match kind {
        RuntimeKind::Python => {
            for (name, text) in PYTHON_FILES {
                write_public(&dir.join(name), text.as_bytes())?;
            }
            precompile_python(dir);
            Ok(())
        }
        // The init itself is the native loader; the bootstrap comes with
        // the function's code.
        RuntimeKind::Native => Ok(()),
        // The init itself serves the Runtime API; the bootstrap comes with
        // the function's code.
        RuntimeKind::Provided => Ok(()),
    }
}

/// Compile the python runtime once, with the host's python, so that
/// sandboxes run its bytecode rather than compile it on every start
/// (start.py's `code_of`). Without it (no python here, or it failed) they compile the
/// source: slower, not wrong, so a failure is only a warning.
fn precompile_python(dir: &Path) {
    if let Err(reason) = try_precompile_python(dir) {
        tracing::warn!(%reason, "precompiling the python runtime failed; sandboxes will compile it as they start");
    }
}

fn try_precompile_python(dir: &Path) -> Result<(), String> {
    let seen = format!("/{RUNTIME_MOUNT}");
    let out = Command::new(OsStr::from_bytes(PYTHON.to_bytes()))
        .args(["-I", "-c", PRECOMPILE])
        .arg(dir)
        .arg(&seen)
        .args(PRECOMPILED)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running python: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{}: {}", out.status, stderr.trim()));
    }
    // Readable by every sandbox whatever this process's umask.
    for name in PRECOMPILED {
        let compiled = dir.join(format!("{name}c"));
        fs::set_permissions(&compiled, fs::Permissions::from_mode(0o644))
            .map_err(|e| format!("chmod {}: {e}", compiled.display()))?;
    }
    Ok(())
}

/// Copy a regular file (mode 0644) or recreate a symlink; absent is fine.
fn copy_entry(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(src) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    if meta.file_type().is_symlink() {
        return symlink(fs::read_link(src)?, dst);
    }
    if meta.is_file() {
        let bytes = fs::read(src)?;
        return write_public(dst, &bytes);
    }
    Ok(())
}

fn write_public(path: &Path, bytes: &[u8]) -> io::Result<()> {
    fs::write(path, bytes)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
}

fn mkdir_public(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err),
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_matches_the_code() {
        let manifest = include_str!("../../rootfs/etc.manifest");
        let entries = |kind: &str| -> Vec<&str> {
            manifest
                .lines()
                .filter_map(|line| line.strip_prefix(kind)?.strip_prefix(' '))
                .collect()
        };
        assert_eq!(entries("copy"), COPIED);
        assert_eq!(entries("copydir"), COPIED_DIRS);
        let generated: Vec<&str> = GENERATED.iter().map(|(name, _)| *name).collect();
        assert_eq!(entries("generate"), generated);
        assert_eq!(entries("bind"), super::super::rootfs::HOST_DIRS);
    }

    #[test]
    fn curated_etc_holds_no_secrets() {
        let host = tempfile::tempdir().unwrap();
        for name in [
            "ld.so.cache",
            "nsswitch.conf",
            "shadow",
            "machine-id",
            "passwd",
        ] {
            fs::write(host.path().join(name), name).unwrap();
        }
        fs::create_dir(host.path().join("ssh")).unwrap();
        fs::write(host.path().join("ssh/ssh_host_ed25519_key"), "secret").unwrap();
        fs::create_dir(host.path().join("ld.so.conf.d")).unwrap();
        fs::write(host.path().join("ld.so.conf.d/x86_64.conf"), "/usr/lib").unwrap();
        symlink("../usr/lib/os-release", host.path().join("os-release")).unwrap();

        let state = tempfile::tempdir().unwrap();
        let layout = Layout::new(state.path());
        prepare(&layout, host.path()).unwrap();
        let etc = layout.etc();
        assert_eq!(
            fs::read_to_string(etc.join("ld.so.cache")).unwrap(),
            "ld.so.cache"
        );
        assert_eq!(
            fs::read_to_string(etc.join("ld.so.conf.d/x86_64.conf")).unwrap(),
            "/usr/lib"
        );
        assert_eq!(
            fs::read_link(etc.join("os-release")).unwrap(),
            Path::new("../usr/lib/os-release")
        );
        assert!(!etc.join("shadow").exists());
        assert!(!etc.join("machine-id").exists());
        assert!(!etc.join("ssh").exists());
        let passwd = fs::read_to_string(etc.join("passwd")).unwrap();
        assert!(passwd.starts_with("root:x:0:0:"));
        assert!(passwd.contains("\nsandbox:x:"));
        let mode = fs::metadata(etc.join("passwd"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        assert!(layout
            .runtime(RuntimeKind::Python)
            .join("bootstrap.py")
            .is_file());
        for name in ["start.py", "bootstrap.pyc", "lambda_support.pyc"] {
            assert!(layout.runtime(RuntimeKind::Python).join(name).is_file());
        }
        assert!(layout.runtime(RuntimeKind::Native).is_dir());
        assert!(layout.dir.join(NEWROOT).is_dir());

        // A second start replaces the tree.
        fs::write(etc.join("stale"), "x").unwrap();
        prepare(&layout, host.path()).unwrap();
        assert!(!etc.join("stale").exists());
    }
}
