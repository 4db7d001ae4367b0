//! The bounded in-memory store of finished invocations' spans.

use std::collections::VecDeque;
use std::rc::Rc;

use super::Parent;
use crate::protocol::{ErrorKind, SpanInfo, TraceReport};
use crate::registry::Function;

/// One finished invocation. Small and allocation-free to record: the
/// function is a shared handle, times are µs.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: u128,
    pub invocation: u64,
    pub parent: Option<Parent>,
    pub depth: u32,
    pub function: Rc<Function>,
    pub sandbox: u64,
    pub cold: bool,
    pub detached: bool,
    pub start_unix_us: u64,
    pub queue_us: u64,
    pub acquire_us: u64,
    pub init_us: u64,
    pub run_us: u64,
    pub total_us: u64,
    pub error: Option<ErrorKind>,
}

impl Span {
    pub fn parent_invocation(&self) -> Option<u64> {
        match self.parent {
            Some(Parent::Invocation(id)) => Some(id),
            _ => None,
        }
    }

    pub fn info(&self) -> SpanInfo {
        SpanInfo {
            trace_id: format!("{:032x}", self.trace_id),
            invocation_id: self.invocation,
            parent_id: self.parent_invocation(),
            remote_parent: match self.parent {
                Some(Parent::Remote(span)) => Some(format!("{span:016x}")),
                _ => None,
            },
            depth: self.depth,
            function: self.function.name.clone(),
            version: self.function.version,
            sandbox: self.sandbox,
            cold: self.cold,
            detached: self.detached,
            start_unix_us: self.start_unix_us,
            queue_us: self.queue_us,
            acquire_us: self.acquire_us,
            init_us: self.init_us,
            run_us: self.run_us,
            total_us: self.total_us,
            error: self.error,
        }
    }
}

/// The last `capacity` spans, oldest dropped first (and counted).
#[derive(Debug)]
pub struct SpanStore {
    spans: VecDeque<Span>,
    capacity: usize,
    dropped: u64,
}

impl SpanStore {
    pub const DEFAULT_CAPACITY: usize = 10_000;

    pub fn new(capacity: usize) -> SpanStore {
        SpanStore {
            spans: VecDeque::with_capacity(capacity.min(Self::DEFAULT_CAPACITY)),
            capacity,
            dropped: 0,
        }
    }

    pub fn record(&mut self, span: Span) {
        if self.capacity == 0 {
            self.dropped += 1;
            return;
        }
        if self.spans.len() == self.capacity {
            self.spans.pop_front();
            self.dropped += 1;
        }
        self.spans.push_back(span);
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn spans(&self) -> impl Iterator<Item = &Span> {
        self.spans.iter()
    }

    /// Every span of the trace invocation `id` is in, or `None` if no span
    /// of `id` is stored.
    pub fn trace_of(&self, id: u64) -> Option<TraceReport> {
        let trace_id = self.spans.iter().find(|s| s.invocation == id)?.trace_id;
        let mut spans: Vec<SpanInfo> = self
            .spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .map(Span::info)
            .collect();
        spans.sort_by_key(|s| (s.start_unix_us, s.invocation_id));
        Some(TraceReport {
            trace_id: format!("{trace_id:032x}"),
            spans,
            dropped: self.dropped,
        })
    }
}
