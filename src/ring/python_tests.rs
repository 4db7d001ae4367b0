//! The Python runtime (runtimes/python/bootstrap.py) driven for real: a
//! `/usr/bin/python3 -I` child with its ring at fds 3-5 and control socket
//! at 6, as a sandbox starts it (minus the confinement). The function's
//! code is a temporary directory named by `LAMBDA_TASK_ROOT` in the
//! assignment's env, as the daemon names `/var/task`. Errors, logging and
//! encoding are in python_lambda_tests.rs.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use serde_json::{json, Value};

use super::harness::RuntimeProcess;
use super::*;

const PYTHON: &str = "/usr/bin/python3";
pub(super) const WAIT: Duration = Duration::from_secs(20);

pub(super) const APP: &str = r#"
import os
import sys

def ok(event, context):
    identity = context.identity
    return {
        "event": event,
        "request_id": context.aws_request_id,
        "same_id": context.request_id == context.aws_request_id,
        "function": context.function_name,
        "version": context.function_version,
        "memory": context.memory_limit_in_mb,
        "arn": context.invoked_function_arn,
        "log_group": context.log_group_name,
        "log_stream": context.log_stream_name,
        "identity": [identity.cognito_identity_id, identity.cognito_identity_pool_id],
        "client_context": context.client_context,
        "remaining_ok": 0 < context.get_remaining_time_in_millis() <= 60000,
        "extras": [context.affinity_key, context.trace_id, context.parent_id, context.depth],
        "env": os.environ.get("GREETING"),
        "cwd": os.getcwd(),
        "file": __file__,
        "path": sys.path[:3],
        "python": "python%d.%d" % sys.version_info[:2],
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "lazy": sorted(m for m in ("json", "socket", "traceback", "logging", "re") if m in sys.modules),
    }

def client(event, context):
    cc = context.client_context
    c = cc.client
    return {
        "repr": repr(context),
        "client": [c.installation_id, c.app_title, c.app_version_name, c.app_version_code, c.app_package_name],
        "custom": cc.custom,
        "env": cc.env,
        "identity": [context.identity.cognito_identity_id, context.identity.cognito_identity_pool_id],
    }

def boom(event, context):
    raise ValueError("bad input: " + str(event))

def unmarshalable(event, context):
    return {"set": {1, 2}}

def as_json_sees_it(event, context):
    import json
    return {"event": event, "dumped": json.dumps(event)}
"#;

/// runtimes/python, where the sandbox's /var/runtime comes from.
fn runtime_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("runtimes/python")
}

fn code_dir(dir: &Path) -> OwnedFd {
    open(
        dir,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .unwrap()
}

/// Lambda's environment for function `greeter` with its code at `root`,
/// plus `extra`.
fn lambda_env(root: &Path, handler: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = [
        ("LAMBDA_TASK_ROOT", root.to_str().unwrap()),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime"),
        ("_HANDLER", handler),
        ("AWS_LAMBDA_FUNCTION_NAME", "greeter"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/greeter"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/12/05/[$LATEST]0123abcd"),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_DEFAULT_REGION", "eu-west-1"),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("TZ", ":UTC"),
        ("GREETING", "hi"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

/// A python runtime started as a sandbox starts it, its stdout going to
/// `stdout` (a file the test reads back).
pub(super) struct Python {
    pub rt: RuntimeProcess,
    pub stdout: PathBuf,
    _stdout_dir: tempfile::TempDir,
}

impl Python {
    /// Started, READY read, and assigned `handler` from `code` with
    /// Lambda's environment plus `extra`.
    pub fn start(handler: &str, code: &Path, extra: &[(&str, &str)]) -> Python {
        Python::start_from(&runtime_dir(), handler, code, extra)
    }

    /// As [`Python::start`], the runtime's files taken from `runtime`.
    fn start_from(runtime: &Path, handler: &str, code: &Path, extra: &[(&str, &str)]) -> Python {
        let stdout_dir = tempfile::tempdir().unwrap();
        let stdout = stdout_dir.path().join("stdout");
        let mut cmd = Command::new(PYTHON);
        cmd.arg("-I")
            .arg(runtime.join("start.py"))
            .env_clear()
            .env("SPROUT_RUNTIME", "python")
            .stdout(File::create(&stdout).unwrap());
        let mut rt = RuntimeProcess::spawn(cmd, 1 << 20).unwrap();
        assert_eq!(rt.wait_message(WAIT).unwrap(), RuntimeMessage::Ready);
        let assignment = Assignment {
            function: "greeter".into(),
            version: 4,
            handler: handler.into(),
            env: lambda_env(code, handler, extra),
            memory_mb: 128,
            timeout_ms: 30_000,
        };
        rt.assign(&assignment, code_dir(code).as_fd()).unwrap();
        Python {
            rt,
            stdout,
            _stdout_dir: stdout_dir,
        }
    }

    /// Started and initialised (INIT_OK).
    pub fn ready(handler: &str, code: &Path, extra: &[(&str, &str)]) -> Python {
        let mut py = Python::start(handler, code, extra);
        assert_eq!(py.rt.wait_message(WAIT).unwrap(), RuntimeMessage::InitOk);
        py
    }

    pub fn invoke(&mut self, id: u64, payload: &[u8]) -> RuntimeMessage {
        self.rt.invoke(id, payload, WAIT).unwrap()
    }

    /// An invocation whose INVOKE meta is `meta` plus `deadline_ms`.
    pub fn invoke_meta(&mut self, id: u64, mut meta: Value, payload: &[u8]) -> RuntimeMessage {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        meta["id"] = json!(id);
        meta["deadline_ms"] = json!((now + WAIT).as_millis() as u64);
        let meta = serde_json::to_vec(&meta).unwrap();
        self.rt.host.send_invoke(id, &meta, payload).unwrap();
        self.rt.wait_message(WAIT).unwrap()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap()
    }
}

pub(super) fn app_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.py"), APP).unwrap();
    dir
}

pub(super) fn result_json(message: RuntimeMessage, id: u64) -> Value {
    match message {
        RuntimeMessage::Result { id: got, body } => {
            assert_eq!(got, id);
            serde_json::from_slice(&body).unwrap()
        }
        other => panic!("expected a result, got {other:?}"),
    }
}

#[test]
fn python_runs_a_handler_with_lambdas_context_and_file_system() {
    let code = app_dir();
    let root = code.path().to_str().unwrap();
    let mut py = Python::ready("app.ok", code.path(), &[]);

    let out = result_json(py.invoke(41, br#"{"name": "Ada"}"#), 41);
    let python = out["python"].as_str().unwrap().to_string();
    assert_eq!(
        out,
        json!({
            "event": {"name": "Ada"},
            "request_id": "41",
            "same_id": true,
            "function": "greeter",
            "version": "$LATEST",
            "memory": "128",
            "arn": "arn:aws:lambda:eu-west-1:000000000000:function:greeter",
            "log_group": "/aws/lambda/greeter",
            "log_stream": "2026/12/05/[$LATEST]0123abcd",
            "identity": [null, null],
            "client_context": null,
            "remaining_ok": true,
            "extras": [null, null, null, 0],
            "env": "hi",
            "cwd": root,
            "file": format!("{root}/app.py"),
            "path": [root, format!("/opt/python/lib/{python}/site-packages"), "/opt/python"],
            "python": python,
            "trace": null,
            // The runtime itself imported none of these.
            "lazy": [],
        })
    );
    // Empty payload is a None event; the same process serves on.
    let out = result_json(py.invoke(42, b""), 42);
    assert_eq!(out["event"], Value::Null);
    assert_eq!(out["request_id"], "42");
    // Many warm invocations in a row, with payloads that wrap the ring.
    let big = format!(r#"{{"blob": "{}"}}"#, "x".repeat(300_000));
    for id in 100..120u64 {
        let out = result_json(py.invoke(id, big.as_bytes()), id);
        assert_eq!(out["event"]["blob"].as_str().unwrap().len(), 300_000);
    }
}

/// `_X_AMZN_TRACE_ID` per invocation: the daemon's from the INVOKE meta,
/// else one made the same way; sprout's own trace fields reach the context.
#[test]
fn python_sets_the_xray_trace_id_per_invocation() {
    let code = app_dir();
    let mut py = Python::ready("app.ok", code.path(), &[]);
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let given = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let cases = [
        (
            json!({"trace_id": trace, "parent_id": null, "depth": 0, "xray_trace_id": given}),
            given.to_string(),
        ),
        // Without one, made as the daemon makes it: the invocation is the
        // parent, whoever called it.
        (
            json!({"trace_id": trace, "parent_id": null, "depth": 0}),
            "Root=1-0af76519-16cd43dd8448eb211c80319c;Parent=00000000000004d2;Sampled=1".into(),
        ),
        (
            json!({"trace_id": trace, "parent_id": "b7ad6b7169203331", "depth": 0}),
            "Root=1-0af76519-16cd43dd8448eb211c80319c;Parent=00000000000004d2;Sampled=1".into(),
        ),
        (
            json!({"trace_id": trace, "parent_id": "300", "depth": 2, "affinity_key": "k"}),
            "Root=1-0af76519-16cd43dd8448eb211c80319c;Parent=00000000000004d2;Sampled=1".into(),
        ),
    ];
    for (meta, want) in cases {
        let out = result_json(py.invoke_meta(1234, meta.clone(), b"{}"), 1234);
        assert_eq!(out["trace"], want, "{meta}");
        let extras = json!([
            meta.get("affinity_key"),
            trace,
            meta["parent_id"],
            meta["depth"]
        ]);
        assert_eq!(out["extras"], extras);
    }
    // No trace context at all: the variable is gone, not stale.
    let out = result_json(py.invoke(8, b"{}"), 8);
    assert_eq!(out["trace"], Value::Null);
}

/// The client context and Cognito identity come from the INVOKE meta as
/// the JSON strings Lambda's headers carry.
#[test]
fn python_context_has_client_context_and_identity() {
    let code = app_dir();
    let mut py = Python::ready("app.client", code.path(), &[]);
    let client_context = json!({
        "client": {"installation_id": "i-1", "app_title": "Notes", "app_version_name": "1.2",
                   "app_version_code": "12", "app_package_name": "com.example.notes"},
        "custom": {"tier": "gold"},
        "env": {"platform": "Android"},
    });
    let identity =
        json!({"cognitoIdentityId": "us-east-1:abc", "cognitoIdentityPoolId": "us-east-1:pool"});
    let meta = json!({
        "client_context": client_context.to_string(),
        "cognito_identity": identity.to_string(),
    });
    let mut out = result_json(py.invoke_meta(3, meta, b"{}"), 3);
    // Printed as Lambda's context prints.
    let repr = out["repr"].take();
    assert_eq!(
        repr,
        "LambdaContext([aws_request_id=3,log_group_name=/aws/lambda/greeter,\
         log_stream_name=2026/12/05/[$LATEST]0123abcd,function_name=greeter,memory_limit_in_mb=128,\
         function_version=$LATEST,invoked_function_arn=arn:aws:lambda:eu-west-1:000000000000:function:greeter,\
         client_context=ClientContext([custom={'tier': 'gold'},env={'platform': 'Android'},\
         client=Client([installation_id=i-1,app_title=Notes,app_version_name=1.2,app_version_code=12,\
         app_package_name=com.example.notes])]),identity=CognitoIdentity([cognito_identity_id=us-east-1:abc,\
         cognito_identity_pool_id=us-east-1:pool]),tenant_id=None])"
    );
    assert_eq!(
        out,
        json!({
            "repr": null,
            "client": ["i-1", "Notes", "1.2", "12", "com.example.notes"],
            "custom": {"tier": "gold"},
            "env": {"platform": "Android"},
            "identity": ["us-east-1:abc", "us-east-1:pool"],
        })
    );
    // A client context that is not JSON fails the invocation, as on Lambda.
    let message = py.invoke_meta(4, json!({"client_context": "{oops"}), b"{}");
    let RuntimeMessage::Error { id: 4, body } = message else {
        panic!("{message:?}");
    };
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        json!({
            "errorMessage": "Unable to parse Client Context JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
            "errorType": "Runtime.LambdaContextUnmarshalError",
            "requestId": "4",
            "stackTrace": [],
        })
    );
}

/// Handlers in packages, named with dots or slashes as Lambda accepts; the
/// package's modules see their own `__file__` under the task root.
#[test]
fn python_loads_nested_module_handlers() {
    let code = tempfile::tempdir().unwrap();
    let pkg = code.path().join("pkg/sub");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(code.path().join("pkg/__init__.py"), "").unwrap();
    std::fs::write(
        pkg.join("mod.py"),
        "def handler(event, context):\n    return __name__ + ' ' + __file__\n",
    )
    .unwrap();
    let root = code.path().to_str().unwrap();
    for handler in ["pkg/sub/mod.handler", "pkg.sub.mod.handler"] {
        let mut py = Python::ready(handler, code.path(), &[]);
        let out = result_json(py.invoke(1, b"{}"), 1);
        assert_eq!(out, json!(format!("pkg.sub.mod {root}/pkg/sub/mod.py")));
    }
}

#[test]
fn python_runtime_json_agrees_with_the_json_module() {
    let code = app_dir();
    let mut py = Python::ready("app.as_json_sees_it", code.path(), &[]);
    let events: [&[u8]; 5] = [
        br#"{"a": [1, -2, 3.5, 1e300, 123456789012345678901234567890], "b": {"c": null}}"#,
        "  {\"unicode\": \"é\u{2028}ü ∑ \\\" \\\\ \\n\\u0001\"}\n".as_bytes(),
        b"[true, false, null, \"\", [], {}]",
        b"\"just a string\"",
        b"-0.0",
    ];
    for (id, event) in (1..).zip(events) {
        let RuntimeMessage::Result { id: got, body } = py.invoke(id, event) else {
            panic!("no result for {}", String::from_utf8_lossy(event));
        };
        assert_eq!(got, id);
        let out: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&body));
        });
        let dumped = out["dumped"].as_str().unwrap();
        // The runtime's encoding of the event is byte for byte json.dumps'.
        let body = String::from_utf8(body.clone()).unwrap();
        let expected = format!("{{\"event\": {dumped}, \"dumped\": ");
        assert!(body.starts_with(&expected), "{body} vs {expected}");
    }
    // json's non-standard constants pass both ways too.
    let out = py.invoke(8, b"[NaN, Infinity, -Infinity]");
    let expected =
        br#"{"event": [NaN, Infinity, -Infinity], "dumped": "[NaN, Infinity, -Infinity]"}"#;
    assert_eq!(
        out,
        RuntimeMessage::Result {
            id: 8,
            body: expected.to_vec()
        }
    );
}

#[test]
fn python_serves_the_hello_example() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-python");
    let mut py = Python::ready("app.handler", &example, &[]);
    let out = result_json(py.invoke(5, br#"{"name": "sprout"}"#), 5);
    assert_eq!(out["message"], "Hello, sprout!");
    assert_eq!(out["request_id"], "5");
    let out = result_json(py.invoke(6, b""), 6);
    assert_eq!(out["message"], "Hello, world!");
}

/// start.py runs the bootstrap's bytecode when this Python compiled it (as
/// the daemon does at start), and the source when there is no bytecode or
/// it is another Python's.
#[test]
fn python_start_runs_the_compiled_bootstrap_else_the_source() {
    const FILES: [&str; 2] = ["bootstrap.py", "lambda_support.py"];
    let runtime = tempfile::tempdir().unwrap();
    let dir = runtime.path();
    for name in ["start.py", FILES[0], FILES[1]] {
        std::fs::copy(runtime_dir().join(name), dir.join(name)).unwrap();
    }
    // As the daemon compiles them: NAME.py to NAME.pyc beside it.
    let compiled = Command::new(PYTHON)
        .args(["-I", "-c"])
        .arg("import py_compile, sys; [py_compile.compile(f, cfile=f + 'c', doraise=True) for f in sys.argv[1:]]")
        .args(FILES.map(|f| dir.join(f)))
        .status()
        .unwrap();
    assert!(compiled.success());
    let sources = FILES.map(|f| std::fs::read(dir.join(f)).unwrap());
    let code = app_dir();
    let boom = |py: &mut Python, id: u64| {
        let (kind, message, _) = match py.invoke(id, b"7") {
            RuntimeMessage::Error { body, .. } => parse_function_error(&body),
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(
            (kind.as_str(), message.as_str()),
            ("ValueError", "bad input: 7")
        );
    };

    // Bytecode present: the sources are not even read (an error report
    // needs lambda_support).
    for name in FILES {
        std::fs::write(dir.join(name), "raise SystemExit(9)\n").unwrap();
    }
    let mut py = Python::start_from(dir, "app.boom", code.path(), &[]);
    assert_eq!(py.rt.wait_message(WAIT).unwrap(), RuntimeMessage::InitOk);
    boom(&mut py, 1);

    // Another Python's bytecode (its magic number differs): the sources.
    for (name, source) in FILES.iter().zip(&sources) {
        std::fs::write(dir.join(name), source).unwrap();
        let pyc = dir.join(format!("{name}c"));
        let mut bytes = std::fs::read(&pyc).unwrap();
        bytes[0] ^= 0xff;
        std::fs::write(&pyc, &bytes).unwrap();
    }
    let mut py = Python::start_from(dir, "app.boom", code.path(), &[]);
    assert_eq!(py.rt.wait_message(WAIT).unwrap(), RuntimeMessage::InitOk);
    boom(&mut py, 2);

    // No bytecode: the sources.
    for name in FILES {
        std::fs::remove_file(dir.join(format!("{name}c"))).unwrap();
    }
    let mut py = Python::start_from(dir, "app.boom", code.path(), &[]);
    assert_eq!(py.rt.wait_message(WAIT).unwrap(), RuntimeMessage::InitOk);
    boom(&mut py, 3);
}
