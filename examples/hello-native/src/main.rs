//! A sprout function in Rust. Build it with
//! `cargo build --release -p hello-native`, copy `target/release/bootstrap`
//! into an empty code dir, and deploy that dir with runtime `native`.

use serde_json::{json, Value};
use sprout_runtime::Context;

fn main() {
    sprout_runtime::run(
        |event: Value, ctx: &Context| -> Result<Value, Box<dyn std::error::Error>> {
            let name = event.get("name").and_then(Value::as_str).unwrap_or("world");
            Ok(json!({
                "message": format!("Hello, {name}!"),
                "request_id": ctx.request_id(),
                "function": ctx.function_name,
                "remaining_ms": ctx.remaining_time().as_millis() as u64,
            }))
        },
    )
}
