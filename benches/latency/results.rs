//! Everything one run measured, printed as a table and written as JSON.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::functions::Runtime;
use crate::lambda::{LambdaClient, LambdaCold};
use crate::peers::{Peer, PeerKind};
use crate::pool_memory::PoolFigures;
use crate::scheduling::Figures;
use crate::stats::{Samples, Summary};

/// The payload of cold starts, peers and throughput.
pub const SMALL: usize = 64;

#[derive(Default)]
pub struct Results {
    pub floor: BTreeMap<usize, Samples>,
    pub warm: BTreeMap<(Runtime, usize), Samples>,
    pub cold_pool: BTreeMap<Runtime, Samples>,
    pub cold_empty: BTreeMap<Runtime, Samples>,
    /// The same cold starts as the daemon reported them (`total_us`).
    pub cold_pool_daemon: BTreeMap<Runtime, Samples>,
    pub cold_empty_daemon: BTreeMap<Runtime, Samples>,
    pub peers: BTreeMap<(PeerKind, Runtime), Samples>,
    pub peer_status: Vec<Value>,
    pub peer_unavailable: BTreeMap<PeerKind, String>,
    /// (runtime, in flight, connections, invocations per second)
    pub throughput: Vec<(Runtime, usize, usize, f64)>,
    pub pool: Vec<PoolFigures>,
    /// Pre-triggers, and cold starts under a stream of new functions.
    pub scheduling: Figures,
    /// Nested warm calls of the echo function, timed by the caller.
    pub nested: BTreeMap<Runtime, Samples>,
    /// Warm round trips through the Runtime API, per runtime client.
    pub lambda_warm: BTreeMap<LambdaClient, Samples>,
    pub lambda_unavailable: BTreeMap<LambdaClient, String>,
    /// Pooled cold starts of Lambda functions.
    pub lambda_cold: BTreeMap<LambdaCold, Samples>,
}

pub fn size_label(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

fn cell(s: &Summary, q: f64, value: f64) -> String {
    if s.enough_for(q) {
        format!("{value:.1}")
    } else {
        format!("({value:.1})")
    }
}

fn header(first: &str, extra: &[&str]) {
    print!(
        "{first:<34} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}  {:<19}",
        "n", "p50", "p90", "p99", "p99.9", "max", "medians min..max"
    );
    for e in extra {
        print!(" {e:>11}");
    }
    println!();
}

fn row(label: &str, s: &Summary, extra: &[String]) {
    print!(
        "{label:<34} {:>6} {:>9.1} {:>9.1} {:>9} {:>9} {:>9.1}  {:<19}",
        s.n,
        s.p50,
        s.p90,
        cell(s, 0.99, s.p99),
        cell(s, 0.999, s.p999),
        s.max,
        format!("{:.1}..{:.1}", s.min_median, s.max_median),
    );
    for e in extra {
        print!(" {e:>11}");
    }
    println!();
}

impl Results {
    fn p50(samples: Option<&Samples>) -> Option<f64> {
        samples.and_then(Samples::summary).map(|s| s.p50)
    }

    pub fn warm_p50(&self, runtime: Runtime, size: usize) -> Option<f64> {
        Self::p50(self.warm.get(&(runtime, size)))
    }

    pub fn floor_p50(&self, size: usize) -> Option<f64> {
        Self::p50(self.floor.get(&size))
    }

    pub fn cold_pool_p50(&self, runtime: Runtime) -> Option<f64> {
        Self::p50(self.cold_pool.get(&runtime))
    }

    pub fn cold_empty_p50(&self, runtime: Runtime) -> Option<f64> {
        Self::p50(self.cold_empty.get(&runtime))
    }

    pub fn print(&self) {
        println!(
            "\n== round trip, 1 in flight (microseconds; ratio = p50 / floor p50 at the same size)"
        );
        header("", &["x floor"]);
        for (&size, samples) in &self.floor {
            if let Some(s) = samples.summary() {
                row(
                    &format!("floor: unix socket ping-pong {}", size_label(size)),
                    &s,
                    &["1.0".into()],
                );
            }
            for runtime in Runtime::ALL {
                if let Some(s) = self.warm.get(&(runtime, size)).and_then(Samples::summary) {
                    let ratio = self
                        .floor_p50(size)
                        .map(|f| format!("{:.1}", s.p50 / f))
                        .unwrap_or_default();
                    row(
                        &format!("sprout warm {} {}", runtime.as_str(), size_label(size)),
                        &s,
                        &[ratio],
                    );
                }
            }
        }

        crate::nested::print(self);
        crate::lambda::print(self);

        println!(
            "\n== cold start and per-request peers, {} payload, no-op handler (microseconds; \
             ratios = p50 / sprout's p50 for the same runtime)",
            size_label(SMALL)
        );
        header("", &["x pooled", "x warm"]);
        for runtime in Runtime::ALL {
            let ratios = |s: &Summary| -> Vec<String> {
                let r = |base: Option<f64>| {
                    base.map(|b| format!("{:.1}", s.p50 / b))
                        .unwrap_or_default()
                };
                vec![
                    r(self.cold_pool_p50(runtime)),
                    r(self.warm_p50(runtime, SMALL)),
                ]
            };
            let rt = runtime.as_str();
            for (label, client_side, daemon_side) in [
                ("from pool", &self.cold_pool, &self.cold_pool_daemon),
                ("empty pool", &self.cold_empty, &self.cold_empty_daemon),
            ] {
                if let Some(s) = client_side.get(&runtime).and_then(Samples::summary) {
                    row(&format!("sprout cold {rt}, {label}"), &s, &ratios(&s));
                }
                if let Some(s) = daemon_side.get(&runtime).and_then(Samples::summary) {
                    row("  as the daemon reports it", &s, &[]);
                }
            }
            for peer in PeerKind::ALL {
                let label = format!("{} {rt}, per request", peer.as_str());
                match self.peer_unavailable.get(&peer) {
                    Some(reason) => println!("{label:<34} not run: {reason}"),
                    None => {
                        if let Some(s) = self.peers.get(&(peer, runtime)).and_then(Samples::summary)
                        {
                            row(&label, &s, &ratios(&s));
                        }
                    }
                }
            }
        }
        println!("(a value in parentheses has fewer than 10 samples beyond its percentile: too few to trust)");

        println!(
            "\n== throughput, warm, {} payload, threads sharing the connections",
            size_label(SMALL)
        );
        println!(
            "{:<10} {:>10} {:>12} {:>16}",
            "runtime", "in flight", "connections", "invocations/s"
        );
        for (runtime, in_flight, connections, rate) in &self.throughput {
            println!(
                "{:<10} {:>10} {:>12} {:>16.0}",
                runtime.as_str(),
                in_flight,
                connections,
                rate
            );
        }

        self.scheduling.print();

        println!("\n== pool: creation rate and memory per idle pooled sandbox");
        println!(
            "{:<8} {:>5} {:>10} {:>12} {:>13} {:>10} {:>13} {:>12}",
            "runtime",
            "pool",
            "boot ms",
            "refill ms",
            "refill /s",
            "PSS KiB",
            "cgroup KiB",
            "fit budget"
        );
        for p in &self.pool {
            println!(
                "{:<8} {:>5} {:>10.1} {:>12.1} {:>13.1} {:>10.0} {:>13.0} {:>12}",
                p.runtime.as_str(),
                p.pool,
                p.boot_ms_median,
                p.refill_ms,
                p.refill_per_s,
                p.pss_kib,
                p.cgroup_kib,
                format!("{} in {} MiB", p.fit(), p.budget_mib),
            );
        }
    }

    /// Every figure's (min, max) repeat median, for the noise line.
    pub fn noise(&self) -> (f64, String) {
        let mut worst = (1.0, String::new());
        let mut consider = |label: String, s: Option<Summary>| {
            if let Some(s) = s {
                if s.min_median > 0.0 && s.max_median / s.min_median > worst.0 {
                    worst = (s.max_median / s.min_median, label);
                }
            }
        };
        for (size, s) in &self.floor {
            consider(format!("floor {}", size_label(*size)), s.summary());
        }
        for ((rt, size), s) in &self.warm {
            consider(
                format!("warm {} {}", rt.as_str(), size_label(*size)),
                s.summary(),
            );
        }
        for (rt, s) in &self.nested {
            consider(format!("nested call {}", rt.as_str()), s.summary());
        }
        for (client, s) in &self.lambda_warm {
            consider(format!("runtime api {}", client.as_str()), s.summary());
        }
        for (cold, s) in &self.lambda_cold {
            consider(format!("cold pool {}", cold.as_str()), s.summary());
        }
        for (rt, s) in &self.cold_pool {
            consider(format!("cold pool {}", rt.as_str()), s.summary());
        }
        for (rt, s) in &self.cold_empty {
            consider(format!("cold empty {}", rt.as_str()), s.summary());
        }
        for ((peer, rt), s) in &self.peers {
            consider(format!("{} {}", peer.as_str(), rt.as_str()), s.summary());
        }
        worst
    }

    pub fn to_json(&self, machine: Value, settings: Value, targets: Value) -> Value {
        let sum = |s: &Samples| s.summary().map(Summary::to_json);
        json!({
            "machine": machine,
            "settings": settings,
            "floor": self.floor.iter().map(|(size, s)| json!({
                "payload_bytes": size, "latency": sum(s),
            })).collect::<Vec<_>>(),
            "warm": self.warm.iter().map(|((rt, size), s)| json!({
                "runtime": rt.as_str(), "payload_bytes": size, "latency": sum(s),
                "ratio_p50_to_floor": self.warm_p50(*rt, *size)
                    .zip(self.floor_p50(*size)).map(|(w, f)| w / f),
            })).collect::<Vec<_>>(),
            "nested_call": crate::nested::to_json(self),
            "lambda": crate::lambda::to_json(self),
            "cold_from_pool": self.cold_pool.iter().map(|(rt, s)| json!({
                "runtime": rt.as_str(), "payload_bytes": SMALL, "latency": sum(s),
                "daemon_total": self.cold_pool_daemon.get(rt).and_then(sum),
            })).collect::<Vec<_>>(),
            "cold_empty_pool": self.cold_empty.iter().map(|(rt, s)| json!({
                "runtime": rt.as_str(), "payload_bytes": SMALL, "latency": sum(s),
                "daemon_total": self.cold_empty_daemon.get(rt).and_then(sum),
            })).collect::<Vec<_>>(),
            "peers": self.peer_status,
            "peer_latency": self.peers.iter().map(|((peer, rt), s)| json!({
                "peer": peer.as_str(), "runtime": rt.as_str(), "payload_bytes": SMALL,
                "latency": sum(s),
                "ratio_p50_to_sprout_cold_from_pool": s.summary()
                    .zip(self.cold_pool_p50(*rt)).map(|(p, b)| p.p50 / b),
                "ratio_p50_to_sprout_warm": s.summary()
                    .zip(self.warm_p50(*rt, SMALL)).map(|(p, b)| p.p50 / b),
            })).collect::<Vec<_>>(),
            "throughput": self.throughput.iter().map(|(rt, n, conns, rate)| json!({
                "runtime": rt.as_str(), "in_flight": n, "connections": conns,
                "invocations_per_s": rate,
            })).collect::<Vec<_>>(),
            "pool": self.pool.iter().map(PoolFigures::to_json).collect::<Vec<_>>(),
            "scheduling": self.scheduling.to_json(),
            "noise": {
                "worst_median_spread": self.noise().0,
                "worst_figure": self.noise().1,
            },
            "targets": targets,
        })
    }
}

impl Peer {
    pub fn record(&self, results: &mut Results) {
        results.peer_status.push(self.describe());
        if let Some(reason) = &self.unavailable {
            results.peer_unavailable.insert(self.kind, reason.clone());
        }
    }
}
