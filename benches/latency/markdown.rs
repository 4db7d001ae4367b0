//! `--markdown FILE`: the run's figures as the Markdown tables README's
//! Performance section shows, so README's numbers are pasted from the
//! benchmark's own output, never retyped.

use std::fmt::Write;

use serde_json::Value;

use crate::functions::Runtime;
use crate::peers::PeerKind;
use crate::results::{size_label, Results, SMALL};
use crate::stats::{Samples, Summary};

/// Microseconds as µs below 10 ms, else ms.
pub fn t(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// A percentile, in italics when too few samples lie beyond it.
pub fn q(s: &Summary, quantile: f64, value: f64) -> String {
    if s.enough_for(quantile) {
        t(value)
    } else {
        format!("*{}*", t(value))
    }
}

fn ratio(value: f64, base: Option<f64>) -> String {
    base.map(|b| format!("{:.1}×", value / b))
        .unwrap_or_default()
}

pub fn render(r: &Results, machine: &Value, targets: &Value, repeats: usize) -> String {
    let mut md = String::new();
    let m = |k: &str| machine[k].as_str().unwrap_or("?").to_owned();
    let _ = writeln!(
        md,
        "Run {} on {}, kernel {}, {} cores ({}), cgroup {}, event loop {}, commit `{}`{}.\n",
        m("date_utc"),
        m("os"),
        m("kernel"),
        machine["cores"],
        m("cpu"),
        m("cgroup"),
        m("event_loop_backend"),
        m("commit"),
        if machine["uncommitted_changes_in_tree"] == true {
            " (with uncommitted changes of other work in the tree)"
        } else {
            ""
        },
    );

    let _ = writeln!(md, "**Warm round trip**, 1 in flight (client library → daemon → runtime → client; echo handler):\n");
    let _ = writeln!(
        md,
        "| | payload | n | p50 | p90 | p99 | p99.9 | max | p50 ÷ floor |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    let row = |md: &mut String, label: &str, size: usize, s: &Summary, extra: String| {
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {extra} |",
            size_label(size),
            s.n,
            t(s.p50),
            t(s.p90),
            q(s, 0.99, s.p99),
            q(s, 0.999, s.p999),
            t(s.max),
        );
    };
    for (&size, floor) in &r.floor {
        if let Some(s) = floor.summary() {
            row(
                &mut md,
                "floor (Unix-socket ping-pong)",
                size,
                &s,
                "1.0×".into(),
            );
        }
        for runtime in Runtime::ALL {
            if let Some(s) = r.warm.get(&(runtime, size)).and_then(Samples::summary) {
                let label = format!("sprout {}", runtime.as_str());
                row(&mut md, &label, size, &s, ratio(s.p50, r.floor_p50(size)));
            }
        }
    }

    crate::nested::markdown(r, &mut md);
    crate::lambda::markdown(r, &mut md);

    let _ = writeln!(
        md,
        "\n**Cold start** of a just-deployed function, and the same function started per request by the peers ({} payload, echo handler):\n",
        size_label(SMALL)
    );
    let _ = writeln!(
        md,
        "| runtime | how | n | p50 | p90 | p99 | p50 ÷ sprout pooled | p50 ÷ sprout warm |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for runtime in Runtime::ALL {
        let rt = runtime.as_str();
        let line = |md: &mut String, how: &str, s: Option<Summary>| {
            if let Some(s) = s {
                let _ = writeln!(
                    md,
                    "| {rt} | {how} | {} | {} | {} | {} | {} | {} |",
                    s.n,
                    t(s.p50),
                    t(s.p90),
                    q(&s, 0.99, s.p99),
                    ratio(s.p50, r.cold_pool_p50(runtime)),
                    ratio(s.p50, r.warm_p50(runtime, SMALL)),
                );
            }
        };
        line(
            &mut md,
            "**sprout, from the pool**",
            r.cold_pool.get(&runtime).and_then(Samples::summary),
        );
        line(
            &mut md,
            "sprout, pool empty",
            r.cold_empty.get(&runtime).and_then(Samples::summary),
        );
        for peer in PeerKind::ALL {
            match r.peer_unavailable.get(&peer) {
                Some(reason) => {
                    let _ = writeln!(
                        md,
                        "| {rt} | {} per request: not run here ({reason}) | | | | | | |",
                        peer.as_str()
                    );
                }
                None => line(
                    &mut md,
                    &format!("{} per request", peer.as_str()),
                    r.peers.get(&(peer, runtime)).and_then(Samples::summary),
                ),
            }
        }
    }

    let _ = writeln!(
        md,
        "\n**Throughput**, warm, {} payload, threads sharing one client connection unless noted (invocations/s):\n",
        size_label(SMALL)
    );
    let columns: Vec<String> = r
        .throughput
        .iter()
        .filter(|(rt, _, _, _)| *rt == Runtime::Native)
        .map(|(_, n, conns, _)| match conns {
            1 => format!("{n} in flight"),
            c => format!("{n} in flight, {c} connections"),
        })
        .collect();
    let _ = writeln!(md, "| runtime | {} |", columns.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(columns.len()));
    for runtime in Runtime::ALL {
        let cells: Vec<String> = r
            .throughput
            .iter()
            .filter(|(rt, _, _, _)| *rt == runtime)
            .map(|(_, _, _, rate)| format!("{rate:.0}"))
            .collect();
        let _ = writeln!(md, "| {} | {} |", runtime.as_str(), cells.join(" | "));
    }

    let _ = writeln!(
        md,
        "\n**Pool**: refill rate and memory per idle pooled sandbox:\n"
    );
    let _ = writeln!(md, "| runtime | boot (clone → READY, p50) | refill | PSS | cgroup memory | idle sandboxes in {} MiB |", r.pool.first().map(|p| p.budget_mib).unwrap_or(0));
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for p in &r.pool {
        let _ = writeln!(
            md,
            "| {} | {:.0} ms | {} in {:.0} ms ({:.0}/s) | {:.0} KiB | {:.0} KiB | {} |",
            p.runtime.as_str(),
            p.boot_ms_median,
            p.pool,
            p.refill_ms,
            p.refill_per_s,
            p.pss_kib,
            p.cgroup_kib,
            p.fit(),
        );
    }

    r.scheduling.render(&mut md, t);

    let _ = writeln!(md, "\n**Targets** (p50):\n");
    for target in targets.as_array().into_iter().flatten() {
        let verdict = match target["met"].as_bool() {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "not measured",
        };
        let value = target["value_us"].as_f64().map(t).unwrap_or("-".into());
        let limit = target["limit_us"].as_f64().map(t).unwrap_or("-".into());
        let _ = writeln!(
            md,
            "- {verdict}: {} — {value} (limit {limit})",
            target["target"].as_str().unwrap_or("?")
        );
    }
    let (spread, figure) = r.noise();
    let _ = writeln!(
        md,
        "\nNoise: the medians of the {repeats} interleaved repeats of each figure stay within {spread:.2}× of each other (widest: {figure}). Percentiles in italics have fewer than 10 samples beyond them."
    );
    md
}
