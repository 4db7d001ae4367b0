//! The native caller of the latency bench's nested-call figure: it invokes
//! another function synchronously, over its ring, several times in one
//! handler run, and returns how long each call took as it saw it.
//!
//! Not a benchmark. The latency bench builds it (`cargo bench --no-run
//! --bench nested-native`) and deploys it as a code dir's `bootstrap`.
//! Event: `{"target": NAME, "calls": K, "size": BYTES}`; each call sends a
//! JSON string of BYTES bytes, which the echoing target returns. Result:
//! `{"ns": [K durations in nanoseconds]}`.

use std::time::Instant;

use serde_json::{json, Value};
use sprout_runtime::Context;

fn calls(event: Value, ctx: &Context) -> Result<Value, Box<dyn std::error::Error>> {
    let target = event["target"].as_str().ok_or("no target")?;
    let calls = event["calls"].as_u64().ok_or("no calls")?;
    let size = event["size"].as_u64().ok_or("no size")?.max(2) as usize;
    let mut payload = vec![b'x'; size];
    payload[0] = b'"';
    payload[size - 1] = b'"';
    let mut ns = Vec::with_capacity(calls as usize);
    for _ in 0..calls {
        let start = Instant::now();
        let result = ctx.invoke(target, &payload)?;
        ns.push(start.elapsed().as_nanos() as u64);
        if result.len() != size {
            return Err(format!("{target} returned {} bytes, not {size}", result.len()).into());
        }
    }
    Ok(json!({ "ns": ns }))
}

fn main() {
    // `cargo bench` runs every bench target with `--bench`.
    if std::env::args().nth(1).as_deref() == Some("--bench") {
        println!("nested-native: the latency bench's nested caller; nothing to measure here");
        return;
    }
    sprout_runtime::run(calls)
}
