//! sprout: an on-demand code executor.
//!
//! A daemon (`sprout serve`) accepts invocations over a Unix socket and runs
//! them in sandboxes that were forked, confined and loaded with their
//! language runtime before the request came. See ARCHITECTURE.md for the
//! process diagram and the request path.
//!
//! # Terminology
//!
//! - **function**: user code deployed under a name; each deploy makes a new
//!   immutable **version**.
//! - **runtime**: the program that runs user code for one language inside a
//!   sandbox (`native`, `python`, `provided`). It pulls invocations from
//!   its ring; for `provided` the sandbox's Runtime API bridge pulls them
//!   and serves them to the function's `bootstrap` over Lambda's HTTP API.
//! - **sandbox**: one confined process tree (namespaces, cgroup, seccomp, no
//!   capabilities) running one runtime. Once assigned a function version it
//!   serves only that version until it is destroyed.
//! - **shape**: runtime × memory class; sandboxes of one shape are
//!   interchangeable until assigned.
//! - **pool**: idle, tenant-neutral sandboxes per shape, created ahead of
//!   demand so a cold start only hands one of them the function's code.
//! - **invocation**: one request to run a function with a payload; it ends in
//!   a result or a typed error ([`protocol::ErrorKind`]).
//! - **cold start**: an invocation served by a sandbox that had not served
//!   that function before (from the pool, or newly created).
//! - **ring**: the shared-memory request and response queues between the
//!   daemon and one sandbox's runtime, with eventfd doorbells.
//! - **affinity**: routing invocations that carry the same key to the
//!   sandbox that served that key before.

pub mod cli;
pub mod client;
pub mod daemon;
pub mod lambda;
pub mod pool;
pub mod protocol;
pub mod reactor;
pub mod registry;
pub mod ring;
pub mod runtime_api;
pub mod sandbox;
pub mod scheduler;
pub mod sys;
#[doc(hidden)]
pub mod testing;
pub mod trace;
