//! A Rust Lambda function as its author would write it for AWS, with the
//! `lambda_runtime` crate and nothing of sprout's. The event's `op` picks
//! what it does, so one binary covers every outcome the tests check:
//! `echo` (the default), `fail` (a handler error), `crash` (the process
//! dies mid-invocation), `sleep` (`ms` milliseconds), `big` (a result of
//! `bytes` bytes). An event that is a JSON string comes back as it is (the
//! latency benchmark's echo). With `FAIL_INIT=1` in its environment it
//! fails before it asks for work.

use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::{json, Value};

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let (payload, context) = event.into_parts();
    if payload.is_string() {
        return Ok(payload);
    }
    match payload["op"].as_str().unwrap_or("echo") {
        // The error type Lambda reports is the Diagnostic's.
        "fail" => Err(Diagnostic {
            error_type: "Function.Failed".into(),
            error_message: "the handler failed on purpose".into(),
        }),
        "crash" => std::process::exit(3),
        "sleep" => {
            let ms = payload["ms"].as_u64().unwrap_or(0);
            std::thread::sleep(std::time::Duration::from_millis(ms));
            Ok(json!({ "slept_ms": ms }))
        }
        "big" => {
            let bytes = payload["bytes"].as_u64().unwrap_or(0) as usize;
            Ok(Value::String("x".repeat(bytes)))
        }
        _ => Ok(json!({
            "echo": payload,
            "request_id": context.request_id,
            "arn": context.invoked_function_arn,
            "deadline_set": context.deadline > 0,
            "function_name": context.env_config.function_name,
        })),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    if std::env::var_os("FAIL_INIT").is_some_and(|v| v == "1") {
        return Err("init failed on purpose".into());
    }
    lambda_runtime::run(service_fn(handler)).await
}
