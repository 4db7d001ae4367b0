//! A function's profile over the spans the store still holds.

use std::collections::{BTreeMap, HashMap};

use super::store::{Span, SpanStore};
use crate::protocol::{CallEdge, PhaseStats, ProfileReport};

/// Count, errors, cold starts, phase percentiles, and the functions `name`
/// called and was called by (with the share of its handler time spent
/// waiting on each callee).
pub fn profile(store: &SpanStore, name: &str) -> ProfileReport {
    let by_id: HashMap<u64, &Span> = store.spans().map(|s| (s.invocation, s)).collect();
    let mine: Vec<&Span> = store.spans().filter(|s| s.function.name == name).collect();
    let phase = |f: fn(&Span) -> u64, only_cold: bool| {
        let mut values: Vec<u64> = mine
            .iter()
            .filter(|s| s.cold || !only_cold)
            .map(|s| f(s))
            .collect();
        percentiles(&mut values)
    };
    let run_total: u64 = mine.iter().map(|s| s.run_us).sum();
    // callee name → (calls, µs waited on synchronous calls)
    let mut callees: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut callers: BTreeMap<&str, u64> = BTreeMap::new();
    for span in store.spans() {
        let Some(parent) = span.parent_invocation().and_then(|p| by_id.get(&p)) else {
            continue;
        };
        if parent.function.name == name {
            let entry = callees.entry(&span.function.name).or_default();
            entry.0 += 1;
            if !span.detached {
                entry.1 += span.total_us;
            }
        }
        if span.function.name == name {
            *callers.entry(&parent.function.name).or_default() += 1;
        }
    }
    ProfileReport {
        function: name.to_owned(),
        count: mine.len() as u64,
        errors: mine.iter().filter(|s| s.error.is_some()).count() as u64,
        cold_starts: mine.iter().filter(|s| s.cold).count() as u64,
        queue: phase(|s| s.queue_us, false),
        acquire: phase(|s| s.acquire_us, false),
        init: phase(|s| s.init_us, true),
        run: phase(|s| s.run_us, false),
        total: phase(|s| s.total_us, false),
        callees: callees
            .into_iter()
            .map(|(function, (calls, waited))| CallEdge {
                function: function.to_owned(),
                calls,
                wait_share: if run_total == 0 {
                    0.0
                } else {
                    (waited as f64 / run_total as f64).min(1.0)
                },
            })
            .collect(),
        callers: callers
            .into_iter()
            .map(|(function, calls)| CallEdge {
                function: function.to_owned(),
                calls,
                wait_share: 0.0,
            })
            .collect(),
    }
}

/// The functions `name` called in at least half of its recorded
/// invocations, most called first.
pub fn frequent_callees(store: &SpanStore, name: &str) -> Vec<String> {
    let mut runs = 0u64;
    let mine: std::collections::HashSet<u64> = store
        .spans()
        .filter(|s| s.function.name == name)
        .map(|s| {
            runs += 1;
            s.invocation
        })
        .collect();
    // callee → invocations of `name` that called it
    let mut callers_of: BTreeMap<&str, std::collections::HashSet<u64>> = BTreeMap::new();
    for span in store.spans() {
        if let Some(parent) = span.parent_invocation().filter(|p| mine.contains(p)) {
            callers_of
                .entry(&span.function.name)
                .or_default()
                .insert(parent);
        }
    }
    let mut frequent: Vec<(usize, &str)> = callers_of
        .into_iter()
        .filter(|(_, callers)| 2 * callers.len() as u64 >= runs)
        .map(|(callee, callers)| (callers.len(), callee))
        .collect();
    frequent.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    frequent.into_iter().map(|(_, c)| c.to_owned()).collect()
}

/// Nearest-rank percentiles (zeros when empty).
fn percentiles(values: &mut [u64]) -> PhaseStats {
    if values.is_empty() {
        return PhaseStats::default();
    }
    values.sort_unstable();
    let rank = |p: usize| values[((values.len() * p).div_ceil(100)).max(1) - 1];
    PhaseStats {
        p50_us: rank(50),
        p99_us: rank(99),
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::protocol::ErrorKind;
    use crate::registry::Function;
    use crate::trace::Parent;

    fn function(name: &str) -> Rc<Function> {
        let mut f: Function = serde_json::from_value(serde_json::json!({
            "name": name, "version": 1, "runtime": "python", "handler": "app.h",
            "memory_mb": 128, "timeout_secs": 3, "env": {}, "code_bytes": 0,
            "deployed_at_unix": 0,
        }))
        .unwrap();
        f.name = name.to_owned();
        Rc::new(f)
    }

    fn span(id: u64, f: &Rc<Function>, parent: Option<u64>, run_us: u64) -> Span {
        Span {
            trace_id: 1,
            invocation: id,
            parent: parent.map(Parent::Invocation),
            depth: u32::from(parent.is_some()),
            function: Rc::clone(f),
            sandbox: 1,
            cold: id == 1,
            detached: false,
            start_unix_us: id,
            queue_us: 1,
            acquire_us: 0,
            init_us: if id == 1 { 500 } else { 0 },
            run_us,
            total_us: run_us + 1,
            error: (id == 4).then_some(ErrorKind::FunctionError),
        }
    }

    #[test]
    fn profile_counts_phases_callees_and_callers() {
        let (a, b) = (function("a"), function("b"));
        let mut store = SpanStore::new(10);
        store.record(span(1, &a, None, 1000));
        store.record(span(2, &b, Some(1), 499));
        store.record(span(3, &a, None, 1000));
        store.record(span(4, &b, Some(3), 299));
        let p = profile(&store, "a");
        assert_eq!((p.count, p.errors, p.cold_starts), (2, 0, 1));
        assert_eq!(
            p.init,
            PhaseStats {
                p50_us: 500,
                p99_us: 500
            }
        );
        assert_eq!(p.callees.len(), 1);
        assert_eq!(
            (p.callees[0].function.as_str(), p.callees[0].calls),
            ("b", 2)
        );
        assert!(
            (p.callees[0].wait_share - 0.4).abs() < 1e-9,
            "{}",
            p.callees[0].wait_share
        );
        let p = profile(&store, "b");
        assert_eq!((p.count, p.errors), (2, 1));
        assert_eq!(
            (p.callers[0].function.as_str(), p.callers[0].calls),
            ("a", 2)
        );
        assert!(p.callees.is_empty());
        assert_eq!(frequent_callees(&store, "a"), ["b"]);
        assert!(frequent_callees(&store, "b").is_empty());
        // Called by one of three runs of a: not in most of them.
        store.record(span(5, &a, None, 10));
        store.record(span(6, &a, None, 10));
        store.record(span(7, &a, None, 10));
        store.record(span(8, &a, None, 10));
        assert!(frequent_callees(&store, "a").is_empty());
    }

    #[test]
    fn the_store_drops_the_oldest_and_counts() {
        let a = function("a");
        let mut store = SpanStore::new(2);
        for id in 1..=3 {
            store.record(span(id, &a, None, 10));
        }
        assert_eq!(store.dropped(), 1);
        assert!(store.trace_of(1).is_none());
        let trace = store.trace_of(3).unwrap();
        let ids: Vec<u64> = trace.spans.iter().map(|s| s.invocation_id).collect();
        assert_eq!((ids, trace.dropped), (vec![2, 3], 1));
    }
}
