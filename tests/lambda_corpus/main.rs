//! A corpus of Lambda functions written the way public Lambda samples are
//! (tests/functions/corpus/ORIGINS.md says, for each, which samples it
//! follows and how it differs), run in real sandboxes through a real
//! daemon. Each asserts the exact result, error or log lines.

#[path = "../common/mod.rs"]
mod common;
mod support;

use std::process::Command;

use common::*;
use serde_json::{json, Value};
use sprout::client::InvokeOptions;
use sprout::protocol::{CallerContext, DeploySpec};
use support::*;

on_both_backends!(
    calculator_logs_and_fails_as_lambda,
    files_beside_the_handler,
    shipped_executables_run,
    binary_copied_to_tmp_and_chmodded,
    threads_read_the_package,
    processes_report_over_pipes,
    sqlite_in_the_package,
    vendored_package_wins,
    json_lines_through_the_root_handlers,
    import_error_at_init,
    syntax_error_at_init,
    layers_bring_libraries_and_programs,
    context_object_from_the_invoker,
);

/// Root logger at INFO set at import, `logger.info` lines in Lambda's
/// format with the request id, and a KeyError reported (and logged) as
/// Lambda reports it; a wrong handler name is Runtime.HandlerNotFound.
fn calculator_logs_and_fails_as_lambda(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    // The daemon compiled the runtime once for every sandbox to run.
    let runtime = daemon.state.join("rootfs/runtimes/python");
    for compiled in ["bootstrap.pyc", "lambda_support.pyc"] {
        assert!(runtime.join(compiled).is_file(), "{compiled}");
    }
    assert!(!daemon.log().contains("precompiling"), "{}", daemon.log());
    deploy(
        &client,
        "calc",
        &corpus("calculator"),
        "lambda_function.lambda_handler",
    );
    let response = client
        .invoke("calc", br#"{"action": "square", "number": 7}"#)
        .unwrap();
    let (sandbox, id) = (response.sandbox, response.invocation_id.to_string());
    assert_eq!(ok(&response, &daemon), json!({"result": 49}));

    let response = client
        .invoke("calc", br#"{"action": "cube", "number": 3}"#)
        .unwrap();
    let failed = response.invocation_id.to_string();
    let error = function_error(response);
    assert_eq!(error.error_type.as_deref(), Some("KeyError"));
    assert_eq!(error.message, "'cube'");
    let frame = "  File \"/var/task/lambda_function.py\", line 19, in lambda_handler\n    \
                 result = OPERATIONS[event[\"action\"]](event[\"number\"])";
    assert_eq!(error.stack_trace.as_deref(), Some(frame));

    let lines = log_lines(&daemon, sandbox, 4);
    let parsed: Vec<_> = lines[..3].iter().map(|l| lambda_log_line(l)).collect();
    let event = "Event: {'action': 'square', 'number': 7}";
    assert_eq!(
        parsed,
        [
            ("[INFO]".into(), id.clone(), event.into()),
            ("[INFO]".into(), id, "Calculated result of 49".into()),
            (
                "[INFO]".into(),
                failed,
                "Event: {'action': 'cube', 'number': 3}".into()
            ),
        ]
    );
    assert_eq!(
        lines[3],
        "[ERROR] KeyError: 'cube'\rTraceback (most recent call last):\r\u{a0}\u{a0}File \
         \"/var/task/lambda_function.py\", line 19, in lambda_handler\r\u{a0}\u{a0}\u{a0}\u{a0}\
         result = OPERATIONS[event[\"action\"]](event[\"number\"])"
    );

    deploy(
        &client,
        "calc-typo",
        &corpus("calculator"),
        "lambda_function.handler",
    );
    let error = function_error(client.invoke("calc-typo", b"{}").unwrap());
    assert_eq!(error.error_type.as_deref(), Some("Runtime.HandlerNotFound"));
    assert_eq!(
        error.message,
        "Handler 'handler' missing on module 'lambda_function'"
    );
}

/// Relative to the working directory, under LAMBDA_TASK_ROOT, beside
/// `__file__`: all /var/task.
fn files_beside_the_handler(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    deploy(
        &client,
        "files",
        &corpus("config-files"),
        "lambda_function.lambda_handler",
    );
    let response = client.invoke("files", br#"{"name": "Linus"}"#).unwrap();
    assert_eq!(
        ok(&response, &daemon),
        json!({
            "messages": ["Hello, Ada!", "Hello, Grace!", "Hello, Linus!"],
            "cwd": "/var/task",
            "template": "/var/task/templates/message.txt",
            "here": "/var/task",
        })
    );
}

/// A `#!/bin/sh` script run by its path beside the module, one run by
/// name from the task root put on PATH: both with their 0755 mode, from
/// the directory and from the same package zipped (`zip -r` keeps modes).
fn shipped_executables_run(backend: &str) {
    let zipped = tempfile::Builder::new()
        .prefix("sprout-corpus-")
        .tempdir()
        .unwrap();
    let package = zipped.path().join("function.zip");
    zip_dir(&corpus("shipped-executable"), &package);

    let daemon = Daemon::start(backend);
    let client = daemon.client();
    let handler = "lambda_function.lambda_handler";
    deploy(&client, "exec", &corpus("shipped-executable"), handler);
    deploy(&client, "exec-zip", &package, handler);
    let payload = br#"{"text": "the quick brown fox\njumps over\n the lazy dog", "name": "Ada"}"#;
    for name in ["exec", "exec-zip"] {
        let response = client.invoke(name, payload).unwrap();
        assert_eq!(
            ok(&response, &daemon),
            json!({"words": 9, "greeting": "Hello, Ada! (from /var/task)"}),
            "{name}"
        );
    }
}

/// A real program (the host's sha256sum) shipped mode 0644, copied to
/// /tmp, chmod 0755 there and run; warm invocations reuse the copy.
fn binary_copied_to_tmp_and_chmodded(backend: &str) {
    let code = staged("tmp-binary");
    std::fs::create_dir(code.path().join("bin")).unwrap();
    let copied = Command::new("install")
        .args(["-m", "0644", "/usr/bin/sha256sum"])
        .arg(code.path().join("bin/sha256sum"))
        .status()
        .unwrap();
    assert!(copied.success());
    let text = "sprout runs Lambda functions";
    let expected = Command::new("sh")
        .args(["-c", &format!("printf '%s' '{text}' | sha256sum")])
        .output()
        .unwrap();
    let expected = String::from_utf8(expected.stdout).unwrap();
    let expected = expected.split_whitespace().next().unwrap();

    let daemon = Daemon::start(backend);
    let client = daemon.client();
    deploy(
        &client,
        "tmpbin",
        code.path(),
        "lambda_function.lambda_handler",
    );
    let payload = serde_json::to_vec(&json!({ "text": text })).unwrap();
    for _ in 0..2 {
        let response = client.invoke("tmpbin", &payload).unwrap();
        assert_eq!(
            ok(&response, &daemon),
            json!({"sha256": expected, "mode": "0o755", "packaged_is_executable": false})
        );
    }
}

fn threads_read_the_package(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    deploy(
        &client,
        "threads",
        &corpus("threads"),
        "lambda_function.lambda_handler",
    );
    let response = client.invoke("threads", br#"{"reads": 200}"#).unwrap();
    assert_eq!(
        ok(&response, &daemon),
        json!({"reads": 200, "total_quantity": 200 * 155})
    );
}

fn processes_report_over_pipes(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    deploy(
        &client,
        "procs",
        &corpus("multiprocess-pipe"),
        "lambda_function.lambda_handler",
    );
    let payload = br#"{"chunks": [["alpha", "be"], ["gamma"], ["delta", "epsilon", "z"]]}"#;
    for _ in 0..2 {
        let response = client.invoke("procs", payload).unwrap();
        assert_eq!(
            ok(&response, &daemon),
            json!({
                "lengths": {"alpha": 5, "be": 2, "gamma": 5, "delta": 5, "epsilon": 7, "z": 1},
                "exit_codes": [0, 0, 0],
                "children": 3,
                "parent_not_a_child": true,
            })
        );
    }
}

/// Read-only in place (`file:...?mode=ro`), and copied to /tmp with
/// shutil.copy2 (which copies modes, times and extended attributes) to be
/// written across warm invocations.
fn sqlite_in_the_package(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    deploy(
        &client,
        "lookup",
        &corpus("sqlite-package"),
        "lambda_function.lookup",
    );
    let response = client.invoke("lookup", br#"{"category": "tea"}"#).unwrap();
    assert_eq!(
        ok(&response, &daemon),
        json!([
            ["TEA-001", "Sencha", 1250],
            ["TEA-002", "Assam", 990],
            ["TEA-003", "Rooibos", 875]
        ])
    );
    deploy(
        &client,
        "sale",
        &corpus("sqlite-package"),
        "lambda_function.record_sale",
    );
    for stock in [37, 34] {
        let response = client
            .invoke("sale", br#"{"sku": "TEA-001", "quantity": 3}"#)
            .unwrap();
        assert_eq!(
            ok(&response, &daemon),
            json!({"sku": "TEA-001", "stock": stock})
        );
    }
}

/// requirements.txt installed into the package with `pip install
/// --target`, as Lambda's packaging guide does: the package's copy wins
/// over any the host has.
fn vendored_package_wins(backend: &str) {
    let code = staged("vendored-package");
    let requirements = code.path().join("requirements.txt");
    pip_install(code.path(), &["-r", requirements.to_str().unwrap()]);

    let daemon = Daemon::start(backend);
    let client = daemon.client();
    deploy(
        &client,
        "vendored",
        code.path(),
        "lambda_function.lambda_handler",
    );
    let event =
        br#"{"orders": [{"customer": "ada", "total": 250}, {"customer": "bob", "total": 20},
                               {"customer": "eve", "total": 101}]}"#;
    let response = client.invoke("vendored", event).unwrap();
    assert_eq!(
        ok(&response, &daemon),
        json!({
            "customers": ["ada", "eve"],
            "jmespath": ["1.0.1", "/var/task/jmespath/__init__.py"],
        })
    );
}

/// A JSON formatter put on the handlers Lambda's runtime installed on the
/// root logger, filling `request_id` from the record the runtime filled.
fn json_lines_through_the_root_handlers(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    deploy(
        &client,
        "jsonlog",
        &corpus("json-logging"),
        "lambda_function.lambda_handler",
    );
    let response = client
        .invoke("jsonlog", br#"{"order_id": "A-1", "items": ["tea"]}"#)
        .unwrap();
    let (sandbox, first) = (response.sandbox, response.invocation_id.to_string());
    assert_eq!(ok(&response, &daemon), json!({"status": "accepted"}));
    let response = client
        .invoke("jsonlog", br#"{"order_id": "A-2", "items": []}"#)
        .unwrap();
    let second = response.invocation_id.to_string();
    assert_eq!(ok(&response, &daemon), json!({"status": "rejected"}));

    let lines = log_lines(&daemon, sandbox, 5);
    let mut records: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    for record in &mut records {
        let timestamp = record["timestamp"].take();
        assert!(
            timestamp.as_str().is_some_and(|t| t.len() == 23),
            "{timestamp}"
        );
    }
    let exception = records[4]["exception"].take();
    let exception = exception.as_str().unwrap();
    assert!(
        exception.starts_with("Traceback (most recent call last):\n"),
        "{exception}"
    );
    assert!(
        exception.contains("  File \"/var/task/lambda_function.py\", line 59, in validate\n"),
        "{exception}"
    );
    assert!(
        exception.ends_with("\nValueError: order A-2 has no items"),
        "{exception}"
    );
    let record = |id: &str, line: u32, level: &str, message: Value| {
        json!({
            "timestamp": null,
            "level": level,
            "location": format!("orders.lambda_handler:{line}"),
            "request_id": id,
            "message": message,
        })
    };
    let mut rejected = record(&second, 69, "ERROR", json!("order rejected"));
    rejected["exception"] = Value::Null;
    assert_eq!(
        records,
        [
            record(
                &first,
                63,
                "INFO",
                json!({"event": "order_received", "order_id": "A-1"})
            ),
            record(&first, 64, "INFO", json!({"items": 1})),
            record(
                &second,
                63,
                "INFO",
                json!({"event": "order_received", "order_id": "A-2"})
            ),
            record(&second, 64, "INFO", json!({"items": 0})),
            rejected,
        ]
    );
}

fn import_error_at_init(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    deploy(
        &client,
        "rds",
        &corpus("error-import"),
        "lambda_function.lambda_handler",
    );
    let error = function_error(client.invoke("rds", b"{}").unwrap());
    assert_eq!(
        error.error_type.as_deref(),
        Some("Runtime.ImportModuleError")
    );
    assert_eq!(
        error.message,
        "Unable to import module 'lambda_function': No module named 'pymysql'"
    );
    assert_eq!(error.stack_trace, None);
}

fn syntax_error_at_init(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    deploy(
        &client,
        "py27",
        &corpus("error-syntax"),
        "lambda_function.lambda_handler",
    );
    let error = function_error(client.invoke("py27", br#"{"key1": "v"}"#).unwrap());
    assert_eq!(
        error.error_type.as_deref(),
        Some("Runtime.UserCodeSyntaxError")
    );
    assert_eq!(
        error.message,
        "Syntax error in module 'lambda_function': Missing parentheses in call to 'print'. \
         Did you mean print(...)? (lambda_function.py, line 7)"
    );
    assert_eq!(
        error.stack_trace.as_deref(),
        Some(
            "  File \"/var/task/lambda_function.py\" Line 7\n        \
             print \"Received event: \" + json.dumps(event)"
        )
    );
}

/// Two layers merged at /opt: a library pip-installed into one layer's
/// `python/lib/python3.N/site-packages`, a module in the other's
/// `python/`, and a program in its `bin/`, found on PATH.
fn layers_bring_libraries_and_programs(backend: &str) {
    let python = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys; print('python%d.%d' % sys.version_info[:2])",
        ])
        .output()
        .unwrap();
    let python = String::from_utf8(python.stdout).unwrap().trim().to_string();
    let deps = tempfile::Builder::new()
        .prefix("sprout-layer-")
        .tempdir()
        .unwrap();
    let site = format!("python/lib/{python}/site-packages");
    pip_install(&deps.path().join(&site), &["jmespath==1.0.1"]);

    let daemon = Daemon::start(backend);
    let client = daemon.client();
    let layered = corpus("layered");
    deploy_spec(
        &client,
        DeploySpec {
            layers: vec![deps.path().to_path_buf(), layered.join("layer-common")],
            ..spec(
                "layered",
                &layered.join("function"),
                "lambda_function.lambda_handler",
            )
        },
    );
    let event =
        br#"{"orders": [{"customer": "ada", "total": 250}, {"customer": "eve", "total": 101}]}"#;
    let response = client.invoke("layered", event).unwrap();
    assert_eq!(
        ok(&response, &daemon),
        json!({
            "big": ["ada", "eve"],
            "shouted": "ADA EVE",
            "modules": [format!("/opt/{site}/jmespath/__init__.py"), "/opt/python/order_rules.py"],
        })
    );
}

/// Lambda's client context and Cognito identity, given to `invoke`,
/// reach `context.client_context` and `context.identity`; the function's
/// own fields print as Lambda's would.
fn context_object_from_the_invoker(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    deploy(
        &client,
        "ctx",
        &corpus("context-info"),
        "lambda_function.lambda_handler",
    );
    let client_context = json!({
        "client": {"installation_id": "i-42", "app_title": "Notes", "app_version_name": "2.1",
                   "app_version_code": "21", "app_package_name": "com.example.notes"},
        "custom": {"plan": "pro"},
        "env": {"platform": "Android", "locale": "en_GB"},
    });
    let identity =
        json!({"cognitoIdentityId": "eu-west-1:1234", "cognitoIdentityPoolId": "eu-west-1:pool"});
    let options = InvokeOptions {
        caller: CallerContext {
            client_context: Some(client_context.to_string()),
            cognito_identity: Some(identity.to_string()),
        },
        ..Default::default()
    };
    let response = client.invoke_with("ctx", b"{}", &options).unwrap();
    let (sandbox, id) = (response.sandbox, response.invocation_id);
    assert_eq!(
        ok(&response, &daemon),
        json!({
            "app": ["Notes", "2.1"],
            "custom": {"plan": "pro"},
            "env": {"platform": "Android", "locale": "en_GB"},
            "identity": ["eu-west-1:1234", "eu-west-1:pool"],
        })
    );
    let lines = log_lines(&daemon, sandbox, 7);
    let stream = lines[3]
        .strip_prefix("Log stream: ")
        .expect("a log stream line");
    assert!(stream.contains("/[1]"), "{stream}");
    assert_eq!(
        lines,
        [
            "Function: ctx 1".to_string(),
            "Function ARN: arn:aws:lambda:us-east-1:000000000000:function:ctx".into(),
            "Log group: /aws/lambda/ctx".into(),
            format!("Log stream: {stream}"),
            format!("Request ID: {id}"),
            "Memory limit (MB): 128".into(),
            "Time remaining shrinks: True".into(),
        ]
    );
    // Without them: no client context, an identity with nothing in it.
    let response = client.invoke("ctx", b"{}").unwrap();
    assert_eq!(
        ok(&response, &daemon),
        json!({"app": null, "custom": null, "env": null, "identity": [null, null]})
    );
}
