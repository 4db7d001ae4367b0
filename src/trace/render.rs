//! Traces and profiles for people: an indented call tree with each
//! phase's time, Chrome trace-event JSON, and a profile summary.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

use crate::protocol::{PhaseStats, ProfileReport, SpanInfo, TraceReport};

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

/// The call tree, one line per invocation, children indented under their
/// caller in the order they started:
///
/// ```text
/// trace 4bf9…4736 (3 invocations)
/// ta #1 v1  cold  12.3 ms  [queue 0.0, acquire 0.1, init 8.0, run 4.2]  ok  sandbox 3
///   tb #2 v1  warm  3.1 ms  [queue 0.0, run 3.0]  ok  sandbox 4
/// ```
pub fn tree(report: &TraceReport) -> String {
    let mut out = format!(
        "trace {} ({} invocation{})\n",
        report.trace_id,
        report.spans.len(),
        if report.spans.len() == 1 { "" } else { "s" }
    );
    let ids: HashSet<u64> = report.spans.iter().map(|s| s.invocation_id).collect();
    let mut children: BTreeMap<u64, Vec<&SpanInfo>> = BTreeMap::new();
    let mut roots = Vec::new();
    for span in &report.spans {
        match span.parent_id.filter(|p| ids.contains(p)) {
            Some(parent) => children.entry(parent).or_default().push(span),
            None => roots.push(span),
        }
    }
    let mut stack: Vec<(&SpanInfo, usize)> = roots.into_iter().rev().map(|s| (s, 0)).collect();
    while let Some((span, indent)) = stack.pop() {
        line(&mut out, span, indent);
        if let Some(kids) = children.get(&span.invocation_id) {
            stack.extend(kids.iter().rev().map(|k| (*k, indent + 1)));
        }
    }
    if report.dropped > 0 {
        let _ = writeln!(
            out,
            "({} older spans dropped from the store; some of this trace may be missing)",
            report.dropped
        );
    }
    out
}

fn line(out: &mut String, span: &SpanInfo, indent: usize) {
    let mut phases = vec![format!("queue {}", ms(span.queue_us))];
    if span.cold {
        phases.push(format!("acquire {}", ms(span.acquire_us)));
        phases.push(format!("init {}", ms(span.init_us)));
    }
    phases.push(format!("run {}", ms(span.run_us)));
    let outcome = span.error.map_or("ok", |k| k.as_str());
    let _ = writeln!(
        out,
        "{:indent$}{} #{} v{}  {}{}  {} ms  [{}]  {}  sandbox {}",
        "",
        span.function,
        span.invocation_id,
        span.version,
        if span.cold { "cold" } else { "warm" },
        if span.detached { " async" } else { "" },
        ms(span.total_us),
        phases.join(", "),
        outcome,
        span.sandbox,
        indent = indent * 2,
    );
}

/// Chrome trace-event JSON (Perfetto, chrome://tracing): one complete
/// event per invocation and one per phase inside it, one row per depth.
pub fn chrome(report: &TraceReport) -> serde_json::Value {
    let mut events = Vec::new();
    for span in &report.spans {
        let tid = span.depth;
        events.push(serde_json::json!({
            "name": span.function,
            "cat": "invocation",
            "ph": "X",
            "ts": span.start_unix_us,
            "dur": span.total_us,
            "pid": 1,
            "tid": tid,
            "args": {
                "invocation_id": span.invocation_id,
                "parent_id": span.parent_id,
                "version": span.version,
                "sandbox": span.sandbox,
                "cold": span.cold,
                "detached": span.detached,
                "outcome": span.error.map_or("ok", |k| k.as_str()),
            },
        }));
        let mut at = span.start_unix_us;
        for (name, dur) in [
            ("queue", span.queue_us),
            ("acquire", span.acquire_us),
            ("init", span.init_us),
            ("run", span.run_us),
        ] {
            if dur > 0 {
                events.push(serde_json::json!({
                    "name": name, "cat": "phase", "ph": "X", "ts": at, "dur": dur,
                    "pid": 1, "tid": tid,
                }));
            }
            at += dur;
        }
    }
    serde_json::json!({ "traceEvents": events, "displayTimeUnit": "ms" })
}

/// A profile as a few lines of text.
pub fn profile(p: &ProfileReport) -> String {
    let phase = |s: &PhaseStats| format!("{}/{}", ms(s.p50_us), ms(s.p99_us));
    let mut out = format!(
        "{}: {} invocations, {:.1}% errors, {:.1}% cold starts\n",
        p.function,
        p.count,
        p.error_rate() * 100.0,
        p.cold_start_rate() * 100.0
    );
    let _ = writeln!(
        out,
        "  ms p50/p99: queue {}  acquire {}  init (cold) {}  run {}  total {}",
        phase(&p.queue),
        phase(&p.acquire),
        phase(&p.init),
        phase(&p.run),
        phase(&p.total)
    );
    for callee in &p.callees {
        let _ = writeln!(
            out,
            "  calls  {} ×{} ({:.1}% of its run time waiting on it)",
            callee.function,
            callee.calls,
            callee.wait_share * 100.0
        );
    }
    for caller in &p.callers {
        let _ = writeln!(out, "  called by {} ×{}", caller.function, caller.calls);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: u64, parent: Option<u64>, depth: u32, cold: bool) -> SpanInfo {
        SpanInfo {
            trace_id: "ab".repeat(16),
            invocation_id: id,
            parent_id: parent,
            remote_parent: None,
            depth,
            function: format!("f{id}"),
            version: 1,
            sandbox: id,
            cold,
            detached: false,
            start_unix_us: 1000 + id,
            queue_us: 100,
            acquire_us: if cold { 200 } else { 0 },
            init_us: if cold { 300 } else { 0 },
            run_us: 400,
            total_us: 1000,
            error: None,
        }
    }

    #[test]
    fn the_tree_nests_children_under_their_callers() {
        let report = TraceReport {
            trace_id: "ab".repeat(16),
            // 4 is a second child of 1, started after 2's child 3.
            spans: vec![
                span(1, None, 0, true),
                span(2, Some(1), 1, false),
                span(3, Some(2), 2, true),
                span(4, Some(1), 1, false),
            ],
            dropped: 0,
        };
        let text = tree(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("(4 invocations)"), "{text}");
        assert!(
            lines[1].starts_with(
                "f1 #1 v1  cold  1.0 ms  [queue 0.1, acquire 0.2, init 0.3, run 0.4]  ok"
            ),
            "{text}"
        );
        assert!(
            lines[2].starts_with("  f2 #2 v1  warm  1.0 ms  [queue 0.1, run 0.4]"),
            "{text}"
        );
        assert!(lines[3].starts_with("    f3 #3"), "{text}");
        assert!(lines[4].starts_with("  f4 #4"), "{text}");
        let events = chrome(&report)["traceEvents"].as_array().unwrap().len();
        // Each span and its phases: cold ones have four, warm ones two.
        assert_eq!(events, 4 + 4 + 2 + 4 + 2);
    }
}
