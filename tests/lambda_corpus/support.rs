//! What the corpus tests share: staging and deploying corpus functions,
//! pip, zips, and reading results, errors and Lambda log lines.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sprout::client::Client;
use sprout::protocol::{DeploySpec, ErrorBody, ErrorKind, InvokeResponse};
use zip::write::SimpleFileOptions;
use zip::ZipWriter;

use crate::common::{instance_of, Daemon};

pub fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/functions/corpus")
        .join(name)
}

/// A copy of corpus function `name` in a temporary directory, modes kept,
/// for the functions whose package the test completes.
pub fn staged(name: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("sprout-corpus-")
        .tempdir()
        .unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", corpus(name).display()))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(copied.success());
    dir
}

pub fn deploy(client: &Client, name: &str, code: &Path, handler: &str) {
    deploy_spec(client, spec(name, code, handler));
}

pub fn spec(name: &str, code: &Path, handler: &str) -> DeploySpec {
    DeploySpec {
        name: name.into(),
        runtime: "python".into(),
        handler: Some(handler.into()),
        code: code.to_path_buf(),
        timeout_secs: Some(30),
        ..Default::default()
    }
}

pub fn deploy_spec(client: &Client, spec: DeploySpec) {
    let name = spec.name.clone();
    client
        .deploy(&spec)
        .unwrap_or_else(|e| panic!("deploy {name}: {e}"));
}

/// `pip install --no-deps --target target ...`, as Lambda's packaging
/// guide installs a function's or a layer's dependencies.
pub fn pip_install(target: &Path, requirements: &[&str]) {
    let installed = Command::new("/usr/bin/python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
        ])
        .args(["--disable-pip-version-check", "--root-user-action=ignore"])
        .arg("--target")
        .arg(target)
        .args(requirements)
        .status()
        .unwrap();
    assert!(installed.success(), "pip install --target failed");
}

pub fn function_error(response: InvokeResponse) -> ErrorBody {
    let error = response.error.expect("a function error");
    assert_eq!(error.kind, ErrorKind::FunctionError, "{error:?}");
    error
}

/// The sandbox's log once it holds `lines` lines (the reaper drains the
/// function's output on its own schedule).
pub fn log_lines(daemon: &Daemon, sandbox: u64, lines: usize) -> Vec<String> {
    let path = daemon
        .state
        .join("logs")
        .join(instance_of(&daemon.state))
        .join(format!("sandbox-{sandbox}.log"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let got: Vec<String> = text.lines().map(str::to_string).collect();
        if got.len() >= lines || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Lambda log line, `[LEVEL]\t<UTC time>\t<request id>\t<message>`,
/// as (level, request id, message) once its time is checked.
pub fn lambda_log_line(line: &str) -> (String, String, String) {
    let fields: Vec<&str> = line.splitn(4, '\t').collect();
    assert_eq!(fields.len(), 4, "not a Lambda log line: {line:?}");
    let time = fields[1].as_bytes();
    assert!(
        time.len() == 24 && time[10] == b'T' && time[19] == b'.' && time[23] == b'Z',
        "{line:?}"
    );
    (fields[0].into(), fields[2].into(), fields[3].into())
}

/// `dir` as a zip at `out`, each file with its mode, as `zip -r` makes one.
pub fn zip_dir(dir: &Path, out: &Path) {
    fn add(zip: &mut ZipWriter<std::fs::File>, root: &Path, dir: &Path) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let meta = std::fs::metadata(&path).unwrap();
            let options =
                SimpleFileOptions::default().unix_permissions(meta.permissions().mode() & 0o777);
            if meta.is_dir() {
                zip.add_directory(name, options).unwrap();
                add(zip, root, &path);
            } else {
                zip.start_file(name, options).unwrap();
                zip.write_all(&std::fs::read(&path).unwrap()).unwrap();
            }
        }
    }
    let mut zip = ZipWriter::new(std::fs::File::create(out).unwrap());
    add(&mut zip, dir, dir);
    zip.finish().unwrap();
}
