//! The no-op functions every contender runs: `benches/noop_native.rs` (one
//! executable for sprout and the peers) and `benches/functions/noop-python`
//! (one handler; sprout's python runtime calls it, the peers call it
//! through `benches/functions/run_once.py`, copied beside it). Both echo their payload.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use sprout::protocol::DeploySpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Runtime {
    Native,
    Python,
}

impl Runtime {
    pub const ALL: [Runtime; 2] = [Runtime::Native, Runtime::Python];

    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Native => "native",
            Runtime::Python => "python",
        }
    }
}

/// Where the functions' code lives for this run.
pub struct Functions {
    /// Holds `bootstrap` (the no-op native executable).
    pub native_dir: PathBuf,
    /// Holds `app.py`, and `run_once.py`, the peers' python driver.
    pub python_dir: PathBuf,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

impl Functions {
    /// Build the no-op native function (same profile as this bench) and lay
    /// out both functions under `work`.
    pub fn prepare(work: &Path) -> Functions {
        let native_dir = work.join("noop-native");
        std::fs::create_dir_all(&native_dir).expect("create the native code dir");
        install_stripped(
            &build_bench_executable("noop-native"),
            &native_dir.join("bootstrap"),
        );
        let python_dir = work.join("noop-python");
        std::fs::create_dir_all(&python_dir).expect("create the python code dir");
        let functions = repo().join("benches/functions");
        std::fs::copy(
            functions.join("noop-python/app.py"),
            python_dir.join("app.py"),
        )
        .expect("copy the python handler");
        std::fs::copy(
            functions.join("run_once.py"),
            python_dir.join("run_once.py"),
        )
        .expect("copy the python driver");
        Functions {
            native_dir,
            python_dir,
        }
    }

    pub fn code_dir(&self, runtime: Runtime) -> &Path {
        match runtime {
            Runtime::Native => &self.native_dir,
            Runtime::Python => &self.python_dir,
        }
    }

    /// What to deploy to sprout. Built from JSON so that deploy options
    /// added later keep their defaults.
    pub fn spec(&self, name: &str, runtime: Runtime) -> DeploySpec {
        let handler = match runtime {
            Runtime::Python => Some("app.handler"),
            Runtime::Native => None,
        };
        serde_json::from_value(json!({
            "name": name,
            "runtime": runtime.as_str(),
            "handler": handler,
            "code": self.code_dir(runtime).to_str().expect("utf-8 work dir"),
        }))
        .expect("a valid deploy spec")
    }
}

/// `cargo bench --no-run --bench TARGET` (a function the bench deploys),
/// and the executable it made.
pub fn build_bench_executable(target: &str) -> PathBuf {
    let output = Command::new(env!("CARGO"))
        .args([
            "bench",
            "--no-run",
            "-q",
            "--bench",
            target,
            "--message-format",
            "json-render-diagnostics",
        ])
        .current_dir(repo())
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "building the {target} function failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["target"]["name"] == target)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo named no {target} executable"))
}

/// Copy `from` to `to` without its debug info (the bench profile keeps it,
/// and a 50 MB function would make every deploy copy 50 MB); a plain copy
/// where `strip` is missing.
pub fn install_stripped(from: &Path, to: &Path) {
    let stripped = Command::new("strip")
        .args(["--strip-debug", "-o"])
        .arg(to)
        .arg(from)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(from, to).expect("copy the native bootstrap");
    }
}

/// A JSON payload of exactly `size` bytes (a string), so both runtimes can
/// decode it.
pub fn payload(size: usize) -> Vec<u8> {
    assert!(size >= 2);
    let mut p = vec![b'x'; size];
    p[0] = b'"';
    p[size - 1] = b'"';
    p
}
