//! The Python runtime's errors, logs and result encoding, each as AWS
//! Lambda's Python runtime (awslambdaric) produces them, byte for byte
//! where Lambda's are fixed.

use serde_json::{json, Value};

use super::python_tests::{app_dir, result_json, Python, APP, WAIT};
use super::RuntimeMessage;

/// The 1-based line of `APP` holding `needle`.
fn line_of(source: &str, needle: &str) -> usize {
    source
        .lines()
        .position(|l| l.contains(needle))
        .expect("needle in source")
        + 1
}

fn error_json(message: RuntimeMessage, id: u64) -> Value {
    match message {
        RuntimeMessage::Error { id: got, body } => {
            assert_eq!(got, id);
            serde_json::from_slice(&body).unwrap()
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn python_reports_a_raising_handler_as_lambda_and_carries_on() {
    let code = app_dir();
    let root = code.path().to_str().unwrap();
    let mut py = Python::ready("app.boom", code.path(), &[]);
    let line = line_of(APP, "raise ValueError");
    let frame = format!(
        "  File \"{root}/app.py\", line {line}, in boom\n    raise ValueError(\"bad input: \" + str(event))\n"
    );
    assert_eq!(
        error_json(py.invoke(1, b"7"), 1),
        json!({
            "errorMessage": "bad input: 7",
            "errorType": "ValueError",
            "requestId": "1",
            "stackTrace": [frame],
        })
    );
    // Not JSON: an unmarshal error with json's own message, and the
    // runtime is still alive.
    assert_eq!(
        error_json(py.invoke(2, b"{nope"), 2),
        json!({
            "errorMessage": "Unable to unmarshal input: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
            "errorType": "Runtime.UnmarshalError",
            "requestId": "2",
            "stackTrace": [],
        })
    );
    assert_eq!(
        error_json(py.invoke(3, b"null"), 3)["errorType"],
        "ValueError"
    );
    // Lambda logs each error it reports: one record, CR between lines,
    // indentation as no-break spaces.
    let logged = format!(
        "[ERROR] ValueError: bad input: 7\rTraceback (most recent call last):\r\
         \u{a0}\u{a0}File \"{root}/app.py\", line {line}, in boom\r\
         \u{a0}\u{a0}\u{a0}\u{a0}raise ValueError(\"bad input: \" + str(event))\n"
    );
    let stdout = py.stdout();
    assert!(stdout.starts_with(&logged), "{stdout:?}");
    assert!(
        stdout.contains("\n[ERROR] Runtime.UnmarshalError: Unable to unmarshal input: Expecting"),
        "{stdout:?}"
    );
}

#[test]
fn python_reports_an_unserialisable_result() {
    let code = app_dir();
    let mut py = Python::ready("app.unmarshalable", code.path(), &[]);
    assert_eq!(
        error_json(py.invoke(9, b"{}"), 9),
        json!({
            "errorMessage": "Unable to marshal response: Object of type set is not JSON serializable",
            "errorType": "Runtime.MarshalError",
            "requestId": "9",
            "stackTrace": [],
        })
    );
}

/// Decimals (what DynamoDB hands out) are written in their own digits, as
/// Lambda's encoder writes them; bytes pass through untouched.
#[test]
fn python_encodes_results_as_lambda_does() {
    let code = tempfile::tempdir().unwrap();
    std::fs::write(
        code.path().join("app.py"),
        "from decimal import Decimal\n\
         def decimals(event, context):\n    \
             return {'price': Decimal('1.10'), 'big': Decimal('1E+2'), 'n': [Decimal('3'), 2.5, Decimal('NaN')]}\n\
         def raw(event, context):\n    return b'\\x00not json'\n\
         def unicode(event, context):\n    return 'h\\u00e9'\n",
    )
    .unwrap();
    let mut py = Python::ready("app.decimals", code.path(), &[]);
    let body = br#"{"price": 1.10, "big": 1E+2, "n": [3, 2.5, NaN]}"#.to_vec();
    assert_eq!(py.invoke(1, b"{}"), RuntimeMessage::Result { id: 1, body });
    let mut py = Python::ready("app.raw", code.path(), &[]);
    let body = b"\x00not json".to_vec();
    assert_eq!(py.invoke(2, b"{}"), RuntimeMessage::Result { id: 2, body });
    // python3.11 and earlier escape non-ASCII text, as Lambda's do.
    let mut py = Python::ready("app.unicode", code.path(), &[]);
    let body = br#""h\u00e9""#.to_vec();
    assert_eq!(py.invoke(3, b"{}"), RuntimeMessage::Result { id: 3, body });
}

#[test]
fn python_init_errors_are_lambdas_and_the_runtime_exits() {
    let code = app_dir();
    let root = code.path().to_str().unwrap();
    std::fs::write(code.path().join("broken.py"), "def oops(:\n").unwrap();
    std::fs::write(code.path().join("needs_x.py"), "import x_not_installed\n").unwrap();
    std::fs::write(
        code.path().join("raises.py"),
        "raise RuntimeError('no db')\n",
    )
    .unwrap();
    let syntax_trace = format!("  File \"{root}/broken.py\" Line 1\n    def oops(:\n");
    for (handler, want) in [
        (
            "nosuch.handler",
            json!([
                "Runtime.ImportModuleError",
                "Unable to import module 'nosuch': No module named 'nosuch'",
                []
            ]),
        ),
        (
            "needs_x.handler",
            json!([
                "Runtime.ImportModuleError",
                "Unable to import module 'needs_x': No module named 'x_not_installed'",
                []
            ]),
        ),
        (
            "app.missing",
            json!([
                "Runtime.HandlerNotFound",
                "Handler 'missing' missing on module 'app'",
                []
            ]),
        ),
        (
            "nodot",
            json!([
                "Runtime.MalformedHandlerName",
                "Bad handler 'nodot': not enough values to unpack (expected 2, got 1)",
                []
            ]),
        ),
        (
            "broken.oops",
            json!([
                "Runtime.UserCodeSyntaxError",
                "Syntax error in module 'broken': invalid syntax (broken.py, line 1)",
                [syntax_trace]
            ]),
        ),
        (
            "time.handler",
            json!([
                "Runtime.BuiltInModuleConflict",
                "Cannot use built-in module time as a handler module",
                []
            ]),
        ),
    ] {
        let mut py = Python::start(handler, code.path(), &[]);
        let RuntimeMessage::InitError { body } = py.rt.wait_message(WAIT).unwrap() else {
            panic!("{handler}: expected an init error");
        };
        let body: Value = serde_json::from_slice(&body).unwrap();
        let got = json!([body["errorType"], body["errorMessage"], body["stackTrace"]]);
        assert_eq!(got, want, "{handler}");
        assert_eq!(body["requestId"], "", "{handler}");
        let status = py.rt.wait_exit(WAIT).unwrap();
        assert_eq!(status.code(), Some(1), "{handler}");
        let logged = format!(
            "[ERROR] {}: {}\rTraceback",
            want[0].as_str().unwrap(),
            want[1].as_str().unwrap()
        );
        assert!(
            py.stdout().starts_with(&logged),
            "{handler}: {:?}",
            py.stdout()
        );
    }
    // A module whose own code raises: that exception, traced from the
    // import machinery down to the module's line.
    let mut py = Python::start("raises.handler", code.path(), &[]);
    let RuntimeMessage::InitError { body } = py.rt.wait_message(WAIT).unwrap() else {
        panic!("expected an init error");
    };
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["errorType"], "RuntimeError");
    assert_eq!(body["errorMessage"], "no db");
    let trace = body["stackTrace"].as_array().unwrap();
    assert!(
        trace[0]
            .as_str()
            .unwrap()
            .contains("importlib/__init__.py\", line "),
        "{trace:?}"
    );
    assert_eq!(
        trace.last().unwrap(),
        &json!(format!(
            "  File \"{root}/raises.py\", line 1, in <module>\n    raise RuntimeError('no db')\n"
        ))
    );
    assert_eq!(py.rt.wait_exit(WAIT).unwrap().code(), Some(1));
}

const LOGAPP: &str = r#"
import logging
import time

logger = logging.getLogger()
logger.setLevel(logging.INFO)

def handler(event, context):
    hour = time.strftime("%Y-%m-%dT%H", time.gmtime())
    logger.info("hello %s", event["name"])
    logging.getLogger("child").warning("careful")
    print("plain print")
    logger.debug("not shown")
    return hour

def structured(event, context):
    import logging
    try:
        raise KeyError("k")
    except KeyError:
        logging.getLogger("orders").error("failed", exc_info=True, extra={"order": 7})
    return "ok"
"#;

/// The `[LEVEL]\t<UTC time>\t<request id>\t<message>` fields of each line
/// of `stdout` that is a log record.
fn log_lines(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|l| l.starts_with('['))
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// `2026-12-05T10:11:12.123Z`, the time a Lambda log line carries.
fn assert_lambda_time(ts: &str, hour: &str) {
    assert_eq!(ts.len(), 24, "{ts}");
    assert!(ts.starts_with(hour), "{ts} is not in {hour} UTC");
    assert_eq!(&ts[13..14], ":");
    assert_eq!(&ts[19..20], ".");
    assert!(
        ts[20..23].bytes().all(|b| b.is_ascii_digit()) && ts.ends_with('Z'),
        "{ts}"
    );
}

/// The root logger is Lambda's: its handler, format, UTC times, request
/// ids; a module that sets its level keeps it; print goes to stdout.
#[test]
fn python_root_logger_is_set_up_as_lambdas() {
    let code = tempfile::tempdir().unwrap();
    std::fs::write(code.path().join("app.py"), LOGAPP).unwrap();
    let mut py = Python::ready("app.handler", code.path(), &[]);
    let hour = result_json(py.invoke(5, br#"{"name": "Ada"}"#), 5);
    let hour = hour.as_str().unwrap();
    let stdout = py.stdout();
    let lines = log_lines(&stdout);
    assert_eq!(lines.len(), 2, "{stdout:?}");
    for (line, (level, message)) in lines
        .iter()
        .zip([("[INFO]", "hello Ada"), ("[WARNING]", "careful")])
    {
        assert_eq!(line.len(), 4, "{line:?}");
        assert_eq!(
            (line[0].as_str(), line[2].as_str(), line[3].as_str()),
            (level, "5", message)
        );
        assert_lambda_time(&line[1], hour);
    }
    assert!(stdout.ends_with("\tcareful\nplain print\n"), "{stdout:?}");
}

/// Imports `logging` only once it runs.
const LATE: &str = r#"
def handler(event, context):
    import logging
    logging.getLogger(__name__).info("info")
    logging.getLogger(__name__).debug("debug")
    logging.warning("warned")
    return len(logging.getLogger().handlers)
"#;

/// A function that imports `logging` only while it runs gets the same
/// setup; the level comes from AWS_LAMBDA_LOG_LEVEL (WARNING without).
#[test]
fn python_log_level_follows_aws_lambda_log_level() {
    let code = tempfile::tempdir().unwrap();
    std::fs::write(code.path().join("late.py"), LATE).unwrap();
    for (level, want) in [
        (None, vec!["[WARNING]"]),
        (Some("DEBUG"), vec!["[INFO]", "[DEBUG]", "[WARNING]"]),
    ] {
        let extra: Vec<(&str, &str)> = level
            .map(|l| ("AWS_LAMBDA_LOG_LEVEL", l))
            .into_iter()
            .collect();
        let mut py = Python::ready("late.handler", code.path(), &extra);
        // One handler: Lambda's, not also one from logging.basicConfig.
        assert_eq!(result_json(py.invoke(11, b"{}"), 11), json!(1));
        let stdout = py.stdout();
        let levels: Vec<String> = log_lines(&stdout)
            .into_iter()
            .map(|l| l[0].clone())
            .collect();
        assert_eq!(levels, want, "{level:?}: {stdout:?}");
        assert!(stdout.ends_with("\t11\twarned\n"), "{stdout:?}");
    }
}

/// AWS_LAMBDA_LOG_FORMAT=JSON: Lambda's JSON lines, extra fields included.
#[test]
fn python_json_log_format() {
    let code = tempfile::tempdir().unwrap();
    std::fs::write(code.path().join("app.py"), LOGAPP).unwrap();
    let root = code.path().to_str().unwrap();
    let mut py = Python::ready(
        "app.structured",
        code.path(),
        &[("AWS_LAMBDA_LOG_FORMAT", "JSON")],
    );
    assert_eq!(result_json(py.invoke(21, b"{}"), 21), json!("ok"));
    // Errors are logged as JSON objects too.
    let error = py.invoke(22, b"{nope");
    assert!(
        matches!(error, RuntimeMessage::Error { id: 22, .. }),
        "{error:?}"
    );
    let stdout = py.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout:?}");
    let mut logged: Value = serde_json::from_str(lines[1]).unwrap();
    let timestamp = logged["timestamp"].take();
    assert_eq!(timestamp.as_str().unwrap().len(), 20, "{timestamp}");
    assert_eq!(
        logged,
        json!({
            "timestamp": null,
            "log_level": "ERROR",
            "errorMessage": "Unable to unmarshal input: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
            "errorType": "Runtime.UnmarshalError",
            "requestId": "22",
            "stackTrace": [],
        })
    );
    let mut record: Value = serde_json::from_str(lines[0]).unwrap();
    let timestamp = record["timestamp"].take();
    assert_eq!(timestamp.as_str().unwrap().len(), 20, "{timestamp}");
    let line = line_of(LOGAPP, "logging.getLogger(\"orders\")");
    let raised = line_of(LOGAPP, "raise KeyError");
    assert_eq!(
        record,
        json!({
            "timestamp": null,
            "level": "ERROR",
            "message": "failed",
            "logger": "orders",
            "stackTrace": [format!("  File \"{root}/app.py\", line {raised}, in structured\n    raise KeyError(\"k\")\n")],
            "errorType": "KeyError",
            "errorMessage": "'k'",
            "requestId": "21",
            "location": format!("{root}/app.py:structured:{line}"),
            "order": 7,
        })
    );
}
