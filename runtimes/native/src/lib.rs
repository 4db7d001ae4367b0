//! The native sprout runtime, like AWS Lambda's `provided` runtimes: link
//! it into an executable named `bootstrap`, put that in the function's code
//! dir, and deploy with runtime `native`.
//!
//! ```no_run
//! use serde_json::{json, Value};
//! use sprout_runtime::Context;
//!
//! fn main() {
//!     sprout_runtime::run(|event: Value, ctx: &Context| -> Result<Value, Box<dyn std::error::Error>> {
//!         Ok(json!({ "echo": event, "request_id": ctx.request_id() }))
//!     })
//! }
//! ```
//!
//! The sandbox init has already mapped the ring and sent READY, received
//! the assignment and exec'd this program with the function's environment;
//! [`run`] sends INIT_OK, then serves one invocation at a time forever. A
//! handler error becomes an ERROR record; a handler panic becomes an ERROR
//! with errorType `Panic`, and the runtime carries on.

mod context;
mod error;

use std::cell::RefCell;
use std::convert::Infallible;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;

pub use context::{Context, FunctionInfo};
pub use error::HandlerError;
pub use sprout;
pub use sprout::ring::CallError;
use sprout::ring::{RingError, RuntimeRing};

/// Serve a JSON handler: the payload is parsed as JSON (an empty payload is
/// `null`) and the returned value serialised. Never returns; exits with
/// status 2 if the ring fails (the daemon then reports a runtime crash).
pub fn run<F>(mut handler: F) -> !
where
    F: FnMut(serde_json::Value, &Context) -> Result<serde_json::Value, Box<dyn std::error::Error>>,
{
    run_bytes(move |payload: &[u8], ctx: &Context| {
        let event = if payload.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(payload).map_err(|e| {
                HandlerError::new(
                    "Runtime.UnmarshalError",
                    format!("payload is not JSON: {e}"),
                )
            })?
        };
        let out = handler(event, ctx).map_err(HandlerError::from)?;
        serde_json::to_vec(&out).map_err(|e| {
            HandlerError::new(
                "Runtime.MarshalError",
                format!("unable to marshal response: {e}"),
            )
        })
    })
}

/// Serve a raw-bytes handler: payload in, result bytes out.
pub fn run_bytes<F>(handler: F) -> !
where
    F: FnMut(&[u8], &Context) -> Result<Vec<u8>, HandlerError>,
{
    let result = RuntimeRing::open_inherited()
        .and_then(|ring| serve(ring, FunctionInfo::from_env(), handler));
    let err = match result {
        Ok(never) => match never {},
        Err(err) => err,
    };
    eprintln!("sprout runtime: {err}");
    std::process::exit(2)
}

/// The runtime loop on an already opened ring: INIT_OK, then invocations
/// until the ring fails. [`run_bytes`] is this on the inherited fds.
pub fn serve<F>(
    ring: RuntimeRing,
    function: FunctionInfo,
    mut handler: F,
) -> Result<Infallible, RingError>
where
    F: FnMut(&[u8], &Context) -> Result<Vec<u8>, HandlerError>,
{
    // Shared with each Context for nested calls; borrowed here only
    // between handler runs.
    let shared = Rc::new(RefCell::new(ring));
    shared.borrow_mut().send_init_ok()?;
    loop {
        let invoke = shared.borrow_mut().next_invoke()?;
        let ctx = Context::for_invoke(&function, invoke.id, invoke.deadline_ms, &invoke.meta)
            .with_ring(Rc::clone(&shared));
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| handler(&invoke.payload, &ctx)))
            .unwrap_or_else(|panic| Err(HandlerError::new("Panic", panic_message(panic.as_ref()))));
        drop(ctx);
        let mut guard = shared.borrow_mut();
        let ring = &mut *guard;
        match outcome {
            Ok(body) if body.len() <= ring.max_body() => ring.send_result(invoke.id, &body)?,
            Ok(body) => {
                let err = HandlerError::new(
                    "Runtime.ResponseTooLarge",
                    format!(
                        "response of {} bytes is over the {}-byte limit",
                        body.len(),
                        ring.max_body()
                    ),
                );
                ring.send_error(invoke.id, &err.body())?
            }
            Err(err) => ring.send_error(invoke.id, &fitting_body(err, ring.max_body()))?,
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "handler panicked".to_string()
    }
}

/// The error body, cut down (stack dropped, message shortened) until it
/// fits the ring.
fn fitting_body(mut err: HandlerError, max: usize) -> Vec<u8> {
    let body = err.body();
    if body.len() <= max {
        return body;
    }
    err.stack_trace.clear();
    let mut keep = (max / 2).min(err.message.len());
    while !err.message.is_char_boundary(keep) {
        keep -= 1;
    }
    err.message.truncate(keep);
    err.error_type.truncate(err.error_type.len().min(128));
    err.body()
}

#[cfg(test)]
mod tests;
