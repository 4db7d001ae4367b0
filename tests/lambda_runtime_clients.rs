//! Unmodified Lambda runtime clients against the Runtime API served in
//! real `provided` sandboxes through the daemon: a shell bootstrap using
//! curl (one connection per request), a Rust function built with the
//! `lambda_runtime` crate (tests/functions/lambda-rust), and the official
//! Python runtime interface client `awslambdaric` (its wheel vendored
//! into the function at test time). Each: success, function error, init
//! error, a crash mid-invocation, a timeout, a result and a payload over
//! the limit; and a bootstrap found in a layer (`/opt/bootstrap`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{error_kind, fixtures, json, Daemon};
use sprout::protocol::{DeploySpec, ErrorKind, InvokeResponse};

/// The daemon's payload limit in these tests: small, so "over the limit"
/// is cheap to produce.
const MAX_PAYLOAD: &str = "64K";

fn daemon() -> Daemon {
    Daemon::start_with("uring", &["--max-payload", MAX_PAYLOAD])
}

fn spec(name: &str, code: &Path, env: &[(&str, &str)]) -> DeploySpec {
    DeploySpec {
        name: name.into(),
        runtime: "provided.al2023".into(),
        handler: Some("app.handler".into()),
        code: code.to_path_buf(),
        timeout_secs: Some(1),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    }
}

/// How a client reports what the tests provoke.
struct Expect {
    /// The errorType of `{"op":"fail"}`.
    fail_type: &'static str,
    /// Kind and errorType of an init failure.
    init: (ErrorKind, Option<&'static str>),
}

fn invoke(daemon: &Daemon, name: &str, event: &str) -> InvokeResponse {
    daemon
        .client()
        .invoke(name, event.as_bytes())
        .unwrap_or_else(|e| panic!("invoke {name} {event}: {e}"))
}

fn kind_of(daemon: &Daemon, name: &str, event: &[u8]) -> Option<ErrorKind> {
    error_kind(daemon.client().invoke(name, event))
}

/// Every outcome, in one daemon, for the client whose code is `code`.
fn exercise(code: &Path, expect: Expect, check_echo: impl Fn(&serde_json::Value, u64)) {
    let daemon = daemon();
    let client = daemon.client();
    client.deploy(&spec("f", code, &[])).expect("deploy");

    // Success, twice: the second is warm, through the same connection
    // pattern of the client.
    let first = invoke(&daemon, "f", r#"{"op":"echo","n":1}"#);
    assert!(first.error.is_none(), "{:?}", first.error);
    check_echo(&json(&first.result), first.invocation_id);
    let warm = invoke(&daemon, "f", r#"{"op":"echo","n":2}"#);
    assert!(warm.error.is_none(), "{:?}", warm.error);
    assert!(!warm.cold);
    assert_eq!(warm.sandbox, first.sandbox);
    check_echo(&json(&warm.result), warm.invocation_id);

    // A function error: the error JSON as the runtime wrote it.
    let failed = invoke(&daemon, "f", r#"{"op":"fail"}"#);
    let error = failed.error.expect("a function error");
    assert_eq!(error.kind, ErrorKind::FunctionError, "{error:?}");
    assert_eq!(error.error_type.as_deref(), Some(expect.fail_type));
    assert!(
        error.message.contains("the handler failed on purpose"),
        "{error:?}"
    );

    // A result over the payload limit, and a payload over it.
    assert_eq!(
        kind_of(&daemon, "f", br#"{"op":"big","bytes":100000}"#),
        Some(ErrorKind::TooLarge)
    );
    let big = format!(r#"{{"op":"echo","pad":"{}"}}"#, "x".repeat(70_000));
    assert_eq!(
        kind_of(&daemon, "f", big.as_bytes()),
        Some(ErrorKind::TooLarge)
    );

    // A timeout, then a crash mid-invocation; each time the next
    // invocation gets a fresh sandbox and works.
    for (event, kind) in [
        (r#"{"op":"sleep","ms":3000}"#, ErrorKind::Timeout),
        (r#"{"op":"crash"}"#, ErrorKind::RuntimeCrash),
    ] {
        let before = invoke(&daemon, "f", r#"{"op":"echo","n":3}"#).sandbox;
        assert_eq!(
            kind_of(&daemon, "f", event.as_bytes()),
            Some(kind),
            "{event}"
        );
        let after = invoke(&daemon, "f", r#"{"op":"echo","n":4}"#);
        assert!(after.error.is_none(), "{event}: {:?}", after.error);
        assert_ne!(after.sandbox, before, "{event}");
        assert!(after.cold, "{event}");
        check_echo(&json(&after.result), after.invocation_id);
    }

    // An init failure.
    client
        .deploy(&spec("broken", code, &[("FAIL_INIT", "1")]))
        .expect("deploy");
    let broken = daemon.client().invoke("broken", b"{}").expect("invoke");
    let error = broken.error.expect("an init failure");
    assert_eq!(
        (error.kind, error.error_type.as_deref()),
        expect.init,
        "{error:?}"
    );
}

fn root(test: &str) -> bool {
    sprout::testing::require_root(test)
}

#[test]
fn curl_bootstrap() {
    if !root("curl_bootstrap") {
        return;
    }
    assert!(
        Path::new("/usr/bin/curl").exists(),
        "curl is missing (hint: apt-get install curl)"
    );
    exercise(
        &fixtures().join("lambda/curl"),
        Expect {
            fail_type: "Function.Failed",
            init: (ErrorKind::FunctionError, Some("Runtime.InitFailed")),
        },
        |result, id| {
            assert_eq!(result["request_id"], id.to_string());
            assert_eq!(result["echo"]["op"], "echo");
        },
    );
}

/// Lambda runs a layer's `/opt/bootstrap` when the code has none.
#[test]
fn bootstrap_from_a_layer() {
    if !root("bootstrap_from_a_layer") {
        return;
    }
    let daemon = daemon();
    let code = scratch_dir("layer-code");
    std::fs::write(code.join("data.txt"), "no bootstrap here").unwrap();
    let deployed = daemon.client().deploy(&DeploySpec {
        layers: vec![fixtures().join("lambda/curl")],
        ..spec("layered", &code, &[])
    });
    deployed.expect("deploy with the bootstrap in a layer");
    let response = invoke(&daemon, "layered", r#"{"op":"echo"}"#);
    assert!(response.error.is_none(), "{:?}", response.error);
    let result = json(&response.result);
    assert_eq!(result["request_id"], response.invocation_id.to_string());
}

#[test]
fn rust_lambda_runtime() {
    if !root("rust_lambda_runtime") {
        return;
    }
    exercise(
        &rust_code_dir(),
        Expect {
            fail_type: "Function.Failed",
            // lambda_runtime exits before its first /next: Lambda's
            // Runtime.ExitError, sprout's RuntimeCrash.
            init: (ErrorKind::RuntimeCrash, None),
        },
        |result, id| {
            assert_eq!(result["request_id"], id.to_string());
            assert_eq!(result["echo"]["op"], "echo");
            assert_eq!(result["deadline_set"], true);
            assert_eq!(
                result["arn"],
                "arn:aws:lambda:us-east-1:000000000000:function:f"
            );
        },
    );
}

#[test]
fn awslambdaric() {
    if !root("awslambdaric") {
        return;
    }
    exercise(
        &awslambdaric_code_dir(),
        Expect {
            fail_type: "ValueError",
            // awslambdaric reports an exception raised while importing
            // the handler's module with the exception's own type.
            init: (ErrorKind::FunctionError, Some("RuntimeError")),
        },
        |result, id| {
            assert_eq!(result["request_id"], id.to_string());
            assert_eq!(result["echo"]["op"], "echo");
            assert_eq!(result["remaining_positive"], true);
            assert_eq!(
                result["arn"],
                "arn:aws:lambda:us-east-1:000000000000:function:f"
            );
        },
    );
}

/// A code dir holding the lambda_runtime function as `bootstrap`, built
/// once.
fn rust_code_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        common::code_dir_of_binary("lambda-rust", "lambda-rust-bootstrap", "lambda-rust")
    })
    .clone()
}

/// The awslambdaric fixture with the client's wheel vendored into
/// `vendor/` (binary wheels only: nothing is compiled). The vendored
/// client is kept between runs; the fixture's own files are fresh.
fn awslambdaric_code_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lambda-awslambdaric");
        let fixture = fixtures().join("lambda/awslambdaric");
        std::fs::create_dir_all(&dir).unwrap();
        let copied = Command::new("cp")
            .arg("-a")
            .arg(fixture.join("bootstrap"))
            .arg(fixture.join("app.py"))
            .arg(&dir)
            .status()
            .unwrap();
        assert!(copied.success());
        let vendor = dir.join("vendor");
        if !vendor.join("awslambdaric").is_dir() {
            let _ = std::fs::remove_dir_all(&vendor);
            let output = Command::new("/usr/bin/python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--only-binary=:all:",
                    "--target",
                ])
                .arg(&vendor)
                .arg("awslambdaric")
                .output()
                .expect("run pip (hint: apt-get install python3-pip)");
            assert!(
                output.status.success(),
                "pip install awslambdaric failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        dir
    })
    .clone()
}

/// An empty directory for `what`, under the test target's scratch space
/// (replaced on each run, never left in /tmp).
fn scratch_dir(what: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lambda-{what}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
