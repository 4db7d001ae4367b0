//! Traces of calls between functions.
//!
//! Every invocation belongs to a trace: a client invocation starts a new
//! tree (or joins the caller's W3C `traceparent`), and a nested call made
//! through a sandbox's ring joins its caller's tree one level deeper. The
//! daemon injects the [`TraceContext`] into each INVOKE meta; the parent is
//! always the invocation whose sandbox sent the CALL, never anything the
//! payload says. Each finished invocation leaves a [`Span`] in the bounded
//! [`SpanStore`], from which `sprout trace` and `sprout profile` are
//! answered ([`render`] draws them).

mod context;
pub mod otlp;
mod profile;
pub mod render;
mod store;

pub use context::{
    parse_traceparent, Parent, TraceContext, TraceIds, TraceParent, XrayHeader,
    MAX_TREE_INVOCATIONS,
};
pub use profile::{frequent_callees, profile};
pub use store::{Span, SpanStore};
