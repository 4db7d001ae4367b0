//! Function packages as Lambda takes them, end to end: a zip deployment
//! package, a directory with two layers (one a zip), a sized /tmp, and a
//! hostile zip refused through the CLI. Each is checked in the registry's
//! layout and from inside a real sandbox, by the Lambda paths.

mod common;

use std::io::{Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use sprout::protocol::DeploySpec;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// The handler: reads its package by Lambda's paths only.
const APP: &str = r#"
import os, subprocess, sys

def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        return "%s: %s" % (type(e).__name__, e)

def _tmp_mb():
    # The size option of the tmpfs at /tmp, as mounted.
    for line in _read("/proc/self/mountinfo").splitlines():
        fields = line.split()
        if fields[4] == "/tmp":
            for option in fields[-1].split(","):
                if option.startswith("size="):
                    return int(option[5:].rstrip("k")) // 1024
    return None

def handler(event, context):
    out = {
        "data": _read("/var/task/data.txt"),
        "nested": _read("/var/task/pkg/sub/deep.txt"),
        "tmp_mb": _tmp_mb(),
    }
    if os.path.exists("/var/task/bin/tool"):
        run = subprocess.run(["/var/task/bin/tool"], capture_output=True, text=True)
        out["tool"] = run.stdout.strip()
    if os.path.isdir("/opt/python"):
        sys.path.insert(0, "/opt/python")
        import layered
        out["layered"] = layered.VALUE
        out["only_first"] = _read("/opt/only-first.txt")
        out["bin_is_file"] = os.path.isfile("/opt/bin")
    return out
"#;

/// `(name, contents, mode)` as a deflated zip.
fn zip_of(files: &[(&str, &str, u32)]) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, text, mode) in files {
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .unix_permissions(*mode);
        zip.start_file(*name, options).unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn python(name: &str, code: &Path) -> DeploySpec {
    DeploySpec {
        code: code.to_path_buf(),
        ..python_spec(name, "app.handler")
    }
}

#[test]
fn python_function_from_a_zip() {
    if !sprout::testing::require_root("python_function_from_a_zip") {
        return;
    }
    let daemon = Daemon::start("uring");
    let client = daemon.client();
    let package = daemon.dir.path().join("function.zip");
    std::fs::write(
        &package,
        zip_of(&[
            ("app.py", APP, 0o644),
            ("data.txt", "beside the handler", 0o600),
            ("pkg/sub/deep.txt", "nested", 0o644),
            ("bin/tool", "#!/bin/sh\necho tool ran\n", 0o700),
        ]),
    )
    .unwrap();
    let info = client.deploy(&python("zipped", &package)).unwrap();
    assert_eq!(info.code_bytes, (APP.len() + 18 + 6 + 24) as u64);
    assert!(info.layer_bytes.is_empty());
    assert_eq!(info.ephemeral_storage_mb, 512);

    let code = daemon.state.join("functions/zipped/1/code");
    assert_eq!(
        mode(&code.join("data.txt")),
        0o644,
        "readable by the sandbox"
    );
    assert_eq!(mode(&code.join("bin/tool")), 0o755, "executable stays so");
    assert_eq!(mode(&code.join("pkg/sub")), 0o755);
    assert!(!daemon.state.join("functions/zipped/1/opt").exists());

    let out = ok(&client.invoke("zipped", b"{}").unwrap(), &daemon);
    assert_eq!(out["data"], "beside the handler");
    assert_eq!(out["nested"], "nested");
    assert_eq!(out["tool"], "tool ran");
    assert_eq!(out["tmp_mb"], 512, "Lambda's default /tmp");
    assert!(out.get("layered").is_none(), "no layers, no /opt/python");
}

#[test]
fn python_function_with_two_layers() {
    if !sprout::testing::require_root("python_function_with_two_layers") {
        return;
    }
    let daemon = Daemon::start("uring");
    let client = daemon.client();
    let root = daemon.dir.path();
    let code = root.join("code");
    write_tree(
        &code,
        &[
            ("app.py", APP),
            ("data.txt", "dir"),
            ("pkg/sub/deep.txt", "x"),
        ],
    );
    let first = root.join("layer-one");
    write_tree(
        &first,
        &[
            ("python/layered.py", "VALUE = 'first'\n"),
            ("only-first.txt", "kept"),
            ("bin/old-tool", "replaced by a file"),
        ],
    );
    let second = root.join("layer-two.zip");
    std::fs::write(
        &second,
        zip_of(&[
            ("python/layered.py", "VALUE = 'second'\n", 0o644),
            ("bin", "a file now", 0o644),
        ]),
    )
    .unwrap();
    let spec = DeploySpec {
        layers: vec![first.clone(), second.clone()],
        ephemeral_storage_mb: Some(1024),
        ..python("layered", &code)
    };
    let info = client.deploy(&spec).unwrap();
    assert_eq!(info.layer_bytes, [16 + 4 + 18, 17 + 10]);
    assert_eq!(info.ephemeral_storage_mb, 1024);

    let opt = daemon.state.join("functions/layered/1/opt");
    let read = |p: &str| std::fs::read_to_string(opt.join(p)).unwrap();
    assert_eq!(
        read("python/layered.py"),
        "VALUE = 'second'\n",
        "later wins"
    );
    assert_eq!(read("only-first.txt"), "kept");
    assert_eq!(read("bin"), "a file now", "a file replaces a directory");

    let out = ok(&client.invoke("layered", b"{}").unwrap(), &daemon);
    assert_eq!(out["data"], "dir");
    assert_eq!(out["layered"], "second");
    assert_eq!(out["only_first"], "kept");
    assert_eq!(out["bin_is_file"], true);
    assert_eq!(out["tmp_mb"], 1024, "--ephemeral-storage sizes /tmp");

    // `list` shows them, as a table and as JSON.
    let list = daemon.cli(&["list", "--json"], None);
    assert!(list.status.success());
    let listed = json(&list.stdout);
    assert_eq!(listed[0]["layer_bytes"], serde_json::json!([38, 27]));
    assert_eq!(listed[0]["ephemeral_storage_mb"], 1024);
    let table = String::from_utf8(daemon.cli(&["list"], None).stdout).unwrap();
    assert!(
        table.contains("2 (0.0 MB)") && table.contains("1024 MB"),
        "{table}"
    );
}

#[test]
fn hostile_zip_through_the_cli_is_refused_and_leaves_nothing() {
    if !sprout::testing::require_root("hostile_zip_through_the_cli") {
        return;
    }
    let daemon = Daemon::start("uring");
    let package = daemon.dir.path().join("evil.zip");
    std::fs::write(
        &package,
        zip_of(&[("app.py", APP, 0o644), ("../../escaped.txt", "x", 0o644)]),
    )
    .unwrap();
    let deploy = |extra: &[&str]| {
        let mut args = vec![
            "deploy",
            "evil",
            "--runtime",
            "python",
            "--handler",
            "app.handler",
        ];
        args.extend_from_slice(extra);
        daemon.cli(&args, None)
    };
    let out = deploy(&["--code", package.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(r#"entry "../../escaped.txt": a `..` component would leave the package"#),
        "{stderr}"
    );
    let functions = daemon.state.join("functions");
    let left: Vec<_> = std::fs::read_dir(&functions).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!daemon.state.join("escaped.txt").exists());
    assert!(!functions.join("escaped.txt").exists());

    // A good package with an out-of-range /tmp, and too many layers.
    let good = daemon.dir.path().join("good.zip");
    std::fs::write(&good, zip_of(&[("app.py", APP, 0o644)])).unwrap();
    let good = good.to_str().unwrap();
    let out = deploy(&["--code", good, "--ephemeral-storage", "256"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("ephemeral storage 256 MB is outside 512..=10240 MB"));
    let mut six = vec!["--code", good];
    for _ in 0..6 {
        six.extend(["--layer", good]);
    }
    let out = deploy(&six);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("6 layers given, at most 5"));
    assert_eq!(std::fs::read_dir(&functions).unwrap().count(), 0);
    assert!(daemon.client().list().unwrap().is_empty());

    // The good one deploys.
    let out = deploy(&["--code", good, "--layer", good]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
