//! The no-op native function of the latency bench: it echoes its payload.
//!
//! Not a benchmark. The latency bench builds it (`cargo bench --no-run
//! --bench noop-native`), deploys it to sprout as a code dir's `bootstrap`,
//! and starts the very same executable per request for the peers with
//! `--stdio` (payload on stdin, result on stdout), so every contender runs
//! the same binary doing the same work.

use std::io::{Read, Write};

/// The handler: the result is the payload.
fn echo(payload: &[u8]) -> Vec<u8> {
    payload.to_vec()
}

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("--stdio") => {
            let mut payload = Vec::new();
            std::io::stdin()
                .read_to_end(&mut payload)
                .expect("read the payload from stdin");
            std::io::stdout()
                .write_all(&echo(&payload))
                .expect("write the result to stdout");
        }
        // `cargo bench` runs every bench target with `--bench`.
        Some("--bench") => {
            println!("noop-native: the latency bench's no-op function; nothing to measure here")
        }
        _ => sprout_runtime::run_bytes(|payload, _ctx| Ok(echo(payload))),
    }
}
