//! What each command prints and the exit code it ends with, kept apart from
//! the socket so it can be tested as plain data.

use std::path::Path;

use serde_json::{json, Value};

use crate::client::ClientError;
use crate::protocol::{
    ErrorBody, ErrorKind, FunctionInfo, InvokeResponse, Percentiles, PretriggerAccepted,
    StatsReport,
};

/// Success.
pub const EXIT_OK: i32 = 0;
/// The function itself failed (FunctionError).
pub const EXIT_FUNCTION_ERROR: i32 = 1;
/// Anything else went wrong: a typed error, the connection, bad usage.
pub const EXIT_ERROR: i32 = 2;

/// A command's output: bytes for stdout, lines for stderr, the exit code.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    pub stdout: Vec<u8>,
    pub stderr: Vec<String>,
    pub code: i32,
}

impl Rendered {
    pub fn ok(stdout: impl Into<Vec<u8>>) -> Rendered {
        Rendered {
            stdout: stdout.into(),
            ..Rendered::default()
        }
    }

    /// One error line, `sprout: CONTEXT: MESSAGE`, and exit code `code`.
    pub fn error(context: &str, message: impl std::fmt::Display, code: i32) -> Rendered {
        Rendered {
            stdout: Vec::new(),
            stderr: vec![format!("sprout: {context}: {message}")],
            code,
        }
    }
}

/// The exit code for a typed error.
pub fn exit_code_for(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::FunctionError => EXIT_FUNCTION_ERROR,
        _ => EXIT_ERROR,
    }
}

/// A failed client call: one line saying what happened, with a hint when
/// the daemon could not be reached.
pub fn client_error(context: &str, err: &ClientError, socket: &Path) -> Rendered {
    let code = err.error_kind().map_or(EXIT_ERROR, exit_code_for);
    match err {
        ClientError::Connect { source, .. } => Rendered::error(
            context,
            format_args!(
                "cannot connect to the daemon: {source}; is 'sprout serve' running? (socket {})",
                socket.display()
            ),
            code,
        ),
        other => Rendered::error(context, other, code),
    }
}

/// `sprout invoke`: the outcome of one invocation.
pub fn invoke(
    function: &str,
    outcome: &Result<InvokeResponse, ClientError>,
    json: bool,
    socket: &Path,
) -> Rendered {
    let context = format!("invoke {function}");
    match outcome {
        Ok(resp) => {
            let mut out = Rendered::ok(Vec::new());
            if json {
                out.stdout = json_line(&invoke_json(resp));
            } else if resp.error.is_none() && !resp.result.is_empty() {
                out.stdout = resp.result.clone();
                if !out.stdout.ends_with(b"\n") {
                    out.stdout.push(b'\n');
                }
            }
            if let Some(err) = &resp.error {
                let line = Rendered::error(&context, err, exit_code_for(err.kind));
                out.stderr = line.stderr;
                out.code = line.code;
            }
            out
        }
        Err(err) => {
            let mut out = client_error(&context, err, socket);
            // A typed error still gets its JSON object, so scripts reading
            // stdout see every answer the daemon gave.
            if json {
                if let Some(body) = typed_error(err) {
                    out.stdout = json_line(&json!({
                        "request_id": null,
                        "ok": false,
                        "result": null,
                        "error": error_json(&body),
                        "cold": null,
                        "sandbox": null,
                        "duration_us": null,
                        "total_us": null,
                        "affinity_hit": null,
                    }));
                }
            }
            out
        }
    }
}

/// The `--json` object for an invocation.
pub fn invoke_json(resp: &InvokeResponse) -> Value {
    let result = match &resp.error {
        Some(_) => Value::Null,
        None => serde_json::from_slice(&resp.result)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&resp.result).into_owned())),
    };
    json!({
        "request_id": resp.invocation_id,
        "ok": resp.error.is_none(),
        "result": result,
        "error": resp.error.as_ref().map(error_json),
        "cold": resp.cold,
        "sandbox": resp.sandbox,
        "duration_us": resp.duration_us,
        "total_us": resp.total_us,
        "affinity_hit": resp.affinity_hit,
    })
}

/// `{"type", "message", "error_type", "stack_trace"}`.
pub fn error_json(err: &ErrorBody) -> Value {
    json!({
        "type": err.kind.as_str(),
        "message": err.message,
        "error_type": err.error_type,
        "stack_trace": err.stack_trace,
    })
}

fn typed_error(err: &ClientError) -> Option<ErrorBody> {
    match err {
        ClientError::Remote(body) => Some(body.clone()),
        ClientError::PayloadTooLarge { len, limit } => Some(ErrorBody::new(
            ErrorKind::TooLarge,
            format!("payload of {len} bytes is over the {limit} byte limit"),
        )),
        _ => None,
    }
}

/// `sprout deploy`.
pub fn deployed(info: &FunctionInfo) -> Rendered {
    Rendered::ok(format!("deployed {} version {}\n", info.name, info.version))
}

/// `sprout rm`.
pub fn removed(name: &str) -> Rendered {
    Rendered::ok(format!("removed {name}\n"))
}

/// `sprout list`: a table, or a JSON array of the functions.
pub fn list(functions: &[FunctionInfo], json: bool) -> Rendered {
    if json {
        let value = serde_json::to_value(functions).expect("function info serializes");
        return Rendered::ok(json_line(&value));
    }
    let header = [
        "NAME",
        "VERSION",
        "RUNTIME",
        "MEMORY",
        "TIMEOUT",
        "CONCURRENCY",
        "QUEUE",
        "IDLE",
        "AFFINITY",
        "PREWARM",
        "LAYERS",
        "TMP",
    ];
    let rows: Vec<Vec<String>> = functions
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                f.version.to_string(),
                f.runtime.clone(),
                format!("{} MB", f.memory_mb),
                format!("{} s", f.timeout_secs),
                f.concurrency.to_string(),
                f.max_queue.to_string(),
                format!("{} s", f.idle_timeout_secs),
                f.affinity_mode.to_string(),
                if f.prewarm_callees { "callees" } else { "-" }.to_owned(),
                match f.layer_bytes.len() {
                    0 => "-".to_owned(),
                    n => format!("{n} ({})", megabytes(f.layer_bytes.iter().sum())),
                },
                format!("{} MB", f.ephemeral_storage_mb),
            ]
        })
        .collect();
    Rendered::ok(table(&header, &rows))
}

/// `bytes` in MB (10^6, as Lambda's quotas), one decimal.
fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Columns padded to their widest cell, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut widths: Vec<usize> = header.iter().map(String::len).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `sprout stats`: a table per function and one for the pool, or the
/// whole report as JSON.
pub fn stats(report: &StatsReport, json: bool) -> Rendered {
    if json {
        let value = serde_json::to_value(report).expect("stats serialize");
        return Rendered::ok(json_line(&value));
    }
    let ms = |p: &Percentiles| format!("{:.1}/{:.1}", p.p50 as f64 / 1e3, p.p99 as f64 / 1e3);
    let header = [
        "NAME",
        "VER",
        "INVOKED",
        "COLD(POOL/NEW)",
        "WARM(PREWARMED)",
        "THROTTLED",
        "TIMEOUTS",
        "ERRORS",
        "LIVE/IDLE/BUSY",
        "PREPARED",
        "QUEUE(PEAK)",
        "WAIT ms p50/p99",
        "INIT ms p50/p99",
        "RUN ms p50/p99",
    ];
    let rows: Vec<Vec<String>> = report
        .functions
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                f.version.to_string(),
                f.invocations.to_string(),
                format!("{}({}/{})", f.cold_starts, f.cold_from_pool, f.cold_new),
                format!("{}({})", f.warm_hits, f.cold_starts_avoided),
                f.throttles.to_string(),
                f.timeouts.to_string(),
                f.errors.to_string(),
                format!(
                    "{}/{}/{}",
                    f.sandboxes_live, f.sandboxes_idle, f.sandboxes_busy
                ),
                f.prepared.to_string(),
                format!("{}({})", f.queue_depth, f.queue_peak),
                ms(&f.queue_wait_us),
                ms(&f.init_us),
                ms(&f.run_us),
            ]
        })
        .collect();
    let mut out = table(&header, &rows);
    let d = &report.daemon;
    out.push_str(&format!(
        "\nsandboxes: {} live, {} created, {} destroyed\n",
        d.sandboxes_live, d.sandboxes_created, d.sandboxes_destroyed
    ));
    let pool_header = [
        "POOL", "IDLE", "BOOTING", "TARGET", "MIN..MAX", "COLD/S", "TAKEN", "MISSES",
    ];
    let pool_rows: Vec<Vec<String>> = d
        .pool
        .iter()
        .map(|p| {
            vec![
                format!("{} {} MB", p.runtime, p.memory_mb),
                p.idle.to_string(),
                p.booting.to_string(),
                p.target.to_string(),
                format!("{}..{}", p.min, p.max),
                format!("{:.2}", p.cold_start_rate),
                p.taken.to_string(),
                p.misses.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(&pool_header, &pool_rows));
    Rendered::ok(out)
}

/// `sprout pretrigger`.
pub fn pretriggered(accepted: &PretriggerAccepted) -> Rendered {
    Rendered::ok(format!(
        "preparing {} sandboxes of {} version {} ({} starting), kept for {} s\n",
        accepted.count, accepted.name, accepted.version, accepted.starting, accepted.ttl_secs
    ))
}

fn json_line(value: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(value).expect("json value serializes");
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;

    fn sock() -> PathBuf {
        PathBuf::from("/run/sprout/sprout.sock")
    }

    fn resp(result: &[u8], error: Option<ErrorBody>) -> InvokeResponse {
        InvokeResponse {
            invocation_id: 9,
            result: result.to_vec(),
            error,
            cold: true,
            sandbox: 3,
            duration_us: 120,
            total_us: 400,
            affinity_hit: false,
        }
    }

    fn function_error() -> ErrorBody {
        ErrorBody {
            kind: ErrorKind::FunctionError,
            message: "bad input".into(),
            error_type: Some("ValueError".into()),
            stack_trace: Some("Traceback (most recent call last):\n ...".into()),
        }
    }

    fn stdout_json(r: &Rendered) -> Value {
        let text = std::str::from_utf8(&r.stdout).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "one JSON object on one line");
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn success_prints_the_result_with_a_newline() {
        let r = invoke("hello", &Ok(resp(b"{\"a\":1}", None)), false, &sock());
        assert_eq!(r, Rendered::ok(b"{\"a\":1}\n".to_vec()));
        let r = invoke("hello", &Ok(resp(b"line\n", None)), false, &sock());
        assert_eq!(r.stdout, b"line\n");
        let r = invoke("hello", &Ok(resp(b"", None)), false, &sock());
        assert_eq!(r, Rendered::ok(Vec::new()));
    }

    #[test]
    fn success_json_shape() {
        let r = invoke("hello", &Ok(resp(b"{\"a\":[1,2]}", None)), true, &sock());
        assert_eq!(r.code, EXIT_OK);
        assert!(r.stderr.is_empty());
        assert_eq!(
            stdout_json(&r),
            json!({"request_id": 9, "ok": true, "result": {"a": [1, 2]}, "error": null,
                   "cold": true, "sandbox": 3, "duration_us": 120, "total_us": 400,
                   "affinity_hit": false})
        );
        let r = invoke("hello", &Ok(resp(b"plain text", None)), true, &sock());
        assert_eq!(stdout_json(&r)["result"], "plain text");
    }

    #[test]
    fn function_error_exits_1() {
        let r = invoke(
            "hello",
            &Ok(resp(b"", Some(function_error()))),
            false,
            &sock(),
        );
        assert_eq!(r.code, EXIT_FUNCTION_ERROR);
        assert!(r.stdout.is_empty());
        assert_eq!(
            r.stderr,
            ["sprout: invoke hello: FunctionError: ValueError: bad input"]
        );

        let r = invoke(
            "hello",
            &Ok(resp(b"", Some(function_error()))),
            true,
            &sock(),
        );
        assert_eq!(r.code, EXIT_FUNCTION_ERROR);
        let v = stdout_json(&r);
        assert_eq!(v["ok"], false);
        assert_eq!(v["result"], Value::Null);
        assert_eq!(
            v["error"],
            json!({"type": "FunctionError", "message": "bad input", "error_type": "ValueError",
                   "stack_trace": "Traceback (most recent call last):\n ..."})
        );
    }

    #[test]
    fn other_invocation_errors_exit_2() {
        let timeout = ErrorBody::new(ErrorKind::Timeout, "handler ran past its 3 s timeout");
        let r = invoke("hello", &Ok(resp(b"", Some(timeout))), false, &sock());
        assert_eq!(r.code, EXIT_ERROR);
        assert_eq!(
            r.stderr,
            ["sprout: invoke hello: Timeout: handler ran past its 3 s timeout"]
        );

        let not_found =
            ClientError::Remote(ErrorBody::new(ErrorKind::NotFound, "no function nope"));
        let r = invoke("nope", &Err(not_found), true, &sock());
        assert_eq!(r.code, EXIT_ERROR);
        assert_eq!(
            r.stderr,
            ["sprout: invoke nope: NotFound: no function nope"]
        );
        let v = stdout_json(&r);
        assert_eq!(v["ok"], false);
        assert_eq!(v["request_id"], Value::Null);
        assert_eq!(v["error"]["type"], "NotFound");

        let too_large = ClientError::PayloadTooLarge { len: 11, limit: 10 };
        let r = invoke("hello", &Err(too_large), false, &sock());
        assert_eq!(r.code, EXIT_ERROR);
        assert!(
            r.stderr[0].starts_with("sprout: invoke hello: TooLarge: "),
            "{:?}",
            r.stderr
        );
        assert!(r.stdout.is_empty());
    }

    #[test]
    fn connection_failures_say_so_and_hint() {
        let err = ClientError::Connect {
            path: sock(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        for json in [false, true] {
            let r = invoke("hello", &Err(ClientError::Disconnected), json, &sock());
            assert_eq!(r.code, EXIT_ERROR);
            assert!(r.stdout.is_empty(), "no JSON for a transport error");
            assert_eq!(
                r.stderr,
                ["sprout: invoke hello: the daemon closed the connection with the request in flight"]
            );
        }
        let r = client_error("list", &err, &sock());
        assert_eq!(r.code, EXIT_ERROR);
        assert_eq!(r.stderr.len(), 1);
        let line = &r.stderr[0];
        assert!(
            line.starts_with("sprout: list: cannot connect to the daemon: "),
            "{line}"
        );
        assert!(
            line.ends_with("is 'sprout serve' running? (socket /run/sprout/sprout.sock)"),
            "{line}"
        );
    }

    #[test]
    fn list_table_and_json() {
        let f = FunctionInfo {
            name: "a-long-function-name".into(),
            version: 12,
            runtime: "python".into(),
            handler: Some("app.handler".into()),
            memory_mb: 128,
            timeout_secs: 3,
            env: BTreeMap::new(),
            code_bytes: 1,
            layer_bytes: vec![],
            ephemeral_storage_mb: 512,
            deployed_at_unix: 2,
            concurrency: 10,
            max_queue: 100,
            idle_timeout_secs: 300,
            affinity_mode: Default::default(),
            prewarm_callees: false,
        };
        let layered = FunctionInfo {
            name: "z".into(),
            layer_bytes: vec![1_000_000, 300_000],
            ephemeral_storage_mb: 10_240,
            ..f.clone()
        };
        let r = list(&[f.clone(), layered], false);
        assert_eq!(
            String::from_utf8(r.stdout).unwrap(),
            "NAME                  VERSION  RUNTIME  MEMORY  TIMEOUT  CONCURRENCY  QUEUE  IDLE   AFFINITY  PREWARM  LAYERS      TMP\n\
             a-long-function-name  12       python   128 MB  3 s      10           100    300 s  shared    -        -           512 MB\n\
             z                     12       python   128 MB  3 s      10           100    300 s  shared    -        2 (1.3 MB)  10240 MB\n"
        );
        let r = list(&[f], true);
        let v = stdout_json(&r);
        assert_eq!(v[0]["name"], "a-long-function-name");
        assert_eq!(v[0]["version"], 12);
        assert_eq!(v[0]["ephemeral_storage_mb"], 512);
        assert_eq!(v[0]["layer_bytes"], json!([]));
        assert_eq!(list(&[], true).stdout, b"[]\n");
    }

    #[test]
    fn stats_table_and_json() {
        use crate::protocol::{FunctionStats, PoolStats};
        let mut report = StatsReport::default();
        report.functions.push(FunctionStats {
            name: "f".into(),
            version: 2,
            invocations: 50,
            cold_starts: 8,
            cold_from_pool: 1,
            cold_new: 7,
            queue_peak: 42,
            queue_wait_us: Percentiles {
                count: 50,
                p50: 1500,
                p99: 20_000,
                max: 21_000,
            },
            ..FunctionStats::default()
        });
        report.daemon.pool.push(PoolStats {
            runtime: "python".into(),
            memory_mb: 128,
            target: 3,
            min: 1,
            max: 8,
            ..PoolStats::default()
        });
        let text = String::from_utf8(stats(&report, false).stdout).unwrap();
        let row = text.lines().nth(1).unwrap();
        assert!(row.starts_with("f     2    50       8(1/7)"), "{text}");
        assert!(row.contains("0(42)") && row.contains("1.5/20.0"), "{text}");
        assert!(
            text.contains("python 128 MB  0     0        3       1..8"),
            "{text}"
        );
        let v = stdout_json(&stats(&report, true));
        assert_eq!(v["functions"][0]["queue_peak"], 42);
        assert_eq!(v["daemon"]["pool"][0]["target"], 3);
    }

    #[test]
    fn deploy_and_rm_lines() {
        let info = FunctionInfo {
            name: "hello".into(),
            version: 2,
            runtime: "native".into(),
            handler: None,
            memory_mb: 128,
            timeout_secs: 3,
            env: BTreeMap::new(),
            code_bytes: 1,
            layer_bytes: vec![],
            ephemeral_storage_mb: 512,
            deployed_at_unix: 2,
            concurrency: 10,
            max_queue: 100,
            idle_timeout_secs: 300,
            affinity_mode: Default::default(),
            prewarm_callees: false,
        };
        assert_eq!(deployed(&info).stdout, b"deployed hello version 2\n");
        assert_eq!(removed("hello").stdout, b"removed hello\n");
    }
}
