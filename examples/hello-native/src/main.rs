//! A sprout function in Rust. Build it with
//! `cargo build --release -p hello-native`, copy `target/release/bootstrap`
//! into an empty code dir, and deploy that dir with runtime `native`.
//!
//! It greets `event.name` and reports its trace context. With
//! `"call": {"function": F, "event": E}` it also invokes F with E and waits
//! for its result (under `"called"`); with `"start": {...}` the same, it
//! starts F without waiting (the callee's invocation id under `"started"`).

use serde_json::{json, Value};
use sprout_runtime::Context;

fn main() {
    sprout_runtime::run(
        |event: Value, ctx: &Context| -> Result<Value, Box<dyn std::error::Error>> {
            let name = event.get("name").and_then(Value::as_str).unwrap_or("world");
            let mut out = json!({
                "message": format!("Hello, {name}!"),
                "request_id": ctx.request_id(),
                "function": ctx.function_name,
                "remaining_ms": ctx.remaining_time().as_millis() as u64,
                "trace_id": ctx.trace_id,
                "parent_id": ctx.parent_id,
                "depth": ctx.depth,
            });
            if let Some(call) = event.get("call") {
                let function = call["function"].as_str().ok_or("call needs a function")?;
                out["called"] = ctx.invoke_json(function, &call["event"])?;
            }
            if let Some(start) = event.get("start") {
                let function = start["function"].as_str().ok_or("start needs a function")?;
                let payload = serde_json::to_vec(&start["event"])?;
                out["started"] = ctx.invoke_async(function, &payload)?.into();
            }
            Ok(out)
        },
    )
}
