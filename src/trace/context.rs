//! Trace ids, W3C `traceparent` parsing, and the per-invocation context.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Most invocations one trace tree may start (the root included): past it
/// a nested call fails with BadRequest instead of fanning out forever.
pub const MAX_TREE_INVOCATIONS: u32 = 1000;

/// A `traceparent` header's ids (version 00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: u128,
    pub span_id: u64,
}

/// Parse `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`; all-zero
/// ids are invalid, as W3C Trace Context says.
pub fn parse_traceparent(s: &str) -> Result<TraceParent, String> {
    let bad = || format!("{s:?} is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)");
    let parts: Vec<&str> = s.split('-').collect();
    let [version, trace, span, flags] = parts[..] else {
        return Err(bad());
    };
    let hex = |p: &str, len: usize| {
        p.len() == len
            && p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if version != "00" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return Err(bad());
    }
    let trace_id = u128::from_str_radix(trace, 16).map_err(|_| bad())?;
    let span_id = u64::from_str_radix(span, 16).map_err(|_| bad())?;
    if trace_id == 0 || span_id == 0 {
        return Err(bad());
    }
    Ok(TraceParent { trace_id, span_id })
}

/// Makes trace ids: a splitmix64 sequence seeded from the clock and the
/// pid. Trace ids must be unique, not secret.
#[derive(Debug)]
pub struct TraceIds {
    state: u64,
}

impl Default for TraceIds {
    fn default() -> TraceIds {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        TraceIds {
            state: nanos ^ (u64::from(std::process::id()) << 32),
        }
    }
}

impl TraceIds {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A fresh, non-zero 128-bit trace id.
    pub fn trace_id(&mut self) -> u128 {
        loop {
            let id = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
            if id != 0 {
                return id;
            }
        }
    }
}

/// Where one invocation sits in its trace.
#[derive(Debug, Clone)]
pub struct TraceContext {
    pub trace_id: u128,
    /// The caller's invocation id for a nested call; for a root, the span
    /// id of the client's `traceparent`, if it sent one.
    pub parent: Option<Parent>,
    /// 0 for a client invocation, the caller's depth + 1 for a nested one.
    pub depth: u32,
    /// Invocations started in this tree so far, shared by all of them.
    tree: Rc<Cell<u32>>,
}

/// An invocation's parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    /// A nested call: the invocation whose handler made it.
    Invocation(u64),
    /// A client invocation joined to an outside trace: that span's id.
    Remote(u64),
}

impl TraceContext {
    /// The root of a new tree, or of a subtree of the client's trace.
    pub fn root(ids: &mut TraceIds, traceparent: Option<TraceParent>) -> TraceContext {
        TraceContext {
            trace_id: traceparent.map_or_else(|| ids.trace_id(), |p| p.trace_id),
            parent: traceparent.map(|p| Parent::Remote(p.span_id)),
            depth: 0,
            tree: Rc::new(Cell::new(1)),
        }
    }

    /// The context of a call made by invocation `caller` (whose context
    /// this is), or why it may not be made: past `max_depth`, or past
    /// [`MAX_TREE_INVOCATIONS`] in the tree.
    pub fn child(&self, caller: u64, max_depth: u32) -> Result<TraceContext, String> {
        let depth = self.depth + 1;
        if depth > max_depth {
            return Err(format!(
                "call depth {depth} is over the limit of {max_depth} (serve --max-call-depth)"
            ));
        }
        let started = self.tree.get();
        if started >= MAX_TREE_INVOCATIONS {
            return Err(format!(
                "trace {:032x} already started {started} invocations, the most one call tree may",
                self.trace_id
            ));
        }
        self.tree.set(started + 1);
        Ok(TraceContext {
            trace_id: self.trace_id,
            parent: Some(Parent::Invocation(caller)),
            depth,
            tree: Rc::clone(&self.tree),
        })
    }

    /// The keys this adds to the INVOKE meta object of invocation `id` (no
    /// braces, leading comma), written straight into the meta without an
    /// allocation of its own:
    /// `,"trace_id":"..","parent_id":"..","depth":N,"xray_trace_id":".."`.
    pub fn meta_fields(&self, id: u64) -> MetaFields<'_> {
        MetaFields(self, id)
    }
}

/// The X-Ray trace header (`_X_AMZN_TRACE_ID`, `Lambda-Runtime-Trace-Id`)
/// of invocation `id` in trace `trace_id`: the root is the trace id cut as
/// X-Ray cuts its own (8 hex digits, then 24), the parent is the
/// invocation's span, so what the function traces joins the same tree.
pub struct XrayHeader {
    pub trace_id: u128,
    pub id: u64,
}

impl std::fmt::Display for XrayHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=1",
            self.trace_id >> 96,
            self.trace_id & ((1u128 << 96) - 1),
            self.id
        )
    }
}

/// [`TraceContext::meta_fields`], formatted on demand.
pub struct MetaFields<'a>(&'a TraceContext, u64);

impl std::fmt::Display for MetaFields<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let trace = self.0;
        write!(f, r#","trace_id":"{:032x}","parent_id":"#, trace.trace_id)?;
        match trace.parent {
            Some(Parent::Invocation(id)) => write!(f, r#""{id}""#)?,
            Some(Parent::Remote(span)) => write!(f, r#""{span:016x}""#)?,
            None => f.write_str("null")?,
        }
        write!(f, r#","depth":{}"#, trace.depth)?;
        let xray = XrayHeader {
            trace_id: trace.trace_id,
            id: self.1,
        };
        write!(f, r#","xray_trace_id":"{xray}""#)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parses_and_rejects() {
        let p =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(p.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(p.span_id, 0x00f067aa0ba902b7);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn children_go_one_level_deeper_until_the_limits() {
        let mut ids = TraceIds::default();
        let root = TraceContext::root(&mut ids, None);
        assert_eq!(root.parent, None);
        let child = root.child(7, 2).unwrap();
        assert_eq!((child.trace_id, child.depth), (root.trace_id, 1));
        assert!(child
            .meta_fields(8)
            .to_string()
            .contains(r#","parent_id":"7","depth":1,"#));
        assert!(root
            .meta_fields(7)
            .to_string()
            .contains(r#","parent_id":null,"depth":0,"#));
        let grandchild = child.child(8, 2).unwrap();
        assert!(grandchild
            .child(9, 2)
            .unwrap_err()
            .contains("over the limit of 2"));
        // The tree counts every invocation started in it.
        for _ in 3..MAX_TREE_INVOCATIONS {
            root.child(7, 2).unwrap();
        }
        assert!(root.child(7, 2).unwrap_err().contains("1000 invocations"));
        assert_ne!(TraceContext::root(&mut ids, None).trace_id, root.trace_id);
    }

    #[test]
    fn a_joined_root_keeps_the_remote_ids() {
        let parent = TraceParent {
            trace_id: 0xabc,
            span_id: 0x12,
        };
        let root = TraceContext::root(&mut TraceIds::default(), Some(parent));
        assert_eq!(root.trace_id, 0xabc);
        assert_eq!(
            root.meta_fields(0x2a).to_string(),
            r#","trace_id":"00000000000000000000000000000abc","parent_id":"0000000000000012","depth":0,"xray_trace_id":"Root=1-00000000-000000000000000000000abc;Parent=000000000000002a;Sampled=1""#
        );
    }

    #[test]
    fn xray_header_cuts_the_trace_id_as_xray_does() {
        let header = XrayHeader {
            trace_id: 0x5759e988_bd862e3fe1be46a994272793,
            id: 0x53995c3f42cd8ad8,
        };
        assert_eq!(
            header.to_string(),
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        );
    }
}
