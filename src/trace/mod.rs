//! Traces of calls between functions.
//!
//! Every invocation belongs to a trace: a client invocation starts a new
//! tree (or joins the caller's W3C `traceparent`), and a nested call made
//! through a sandbox's ring joins its caller's tree one level deeper. The
//! daemon injects the [`TraceContext`] into each INVOKE meta; the parent is
//! always the invocation whose sandbox sent the CALL, never anything the
//! payload says.

mod context;

pub use context::{
    parse_traceparent, Parent, TraceContext, TraceIds, TraceParent, MAX_TREE_INVOCATIONS,
};
