//! Sandbox creation rate (how fast the daemon refills its pool, per
//! runtime) and memory per idle sandbox: PSS of the sandbox's processes
//! (`/proc/PID/smaps_rollup`) and its cgroup's memory usage.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use sprout::client::Client;

use crate::daemon::Daemon;
use crate::functions::{Functions, Runtime};

pub struct PoolFigures {
    pub runtime: Runtime,
    pub pool: usize,
    /// Median time from clone to READY of the refilled sandboxes (the
    /// daemon's own figure).
    pub boot_ms_median: f64,
    /// Sandboxes created per second while refilling after a drain: the
    /// refilled sandboxes over the time from the first one's clone to the
    /// last one's READY.
    pub refill_per_s: f64,
    pub refill_ms: f64,
    /// Per idle pooled sandbox, in KiB: median PSS and cgroup usage.
    pub pss_kib: f64,
    pub cgroup_kib: f64,
    pub measured: usize,
    pub budget_mib: u64,
}

impl PoolFigures {
    /// Idle sandboxes that fit the budget, charging each the larger of its
    /// PSS and its cgroup usage.
    pub fn fit(&self) -> u64 {
        let each = self.pss_kib.max(self.cgroup_kib);
        if each <= 0.0 {
            return 0;
        }
        (self.budget_mib as f64 * 1024.0 / each) as u64
    }

    pub fn to_json(&self) -> Value {
        json!({
            "runtime": self.runtime.as_str(),
            "pool_size": self.pool,
            "boot_ms_median": self.boot_ms_median,
            "refill_ms": self.refill_ms,
            "refill_sandboxes_per_s": self.refill_per_s,
            "idle_sandboxes_measured": self.measured,
            "pss_kib_median": self.pss_kib,
            "cgroup_usage_kib_median": self.cgroup_kib,
            "memory_budget_mib": self.budget_mib,
            "idle_sandboxes_fitting_budget": self.fit(),
        })
    }
}

/// On a daemon keeping `pool` sandboxes per runtime: drain each runtime's
/// pool with `pool` concurrent cold starts, time the refill, then measure
/// the memory of the refilled sandboxes, idle in the pool.
pub fn measure(
    daemon: &Daemon,
    client: &Client,
    functions: &Functions,
    pool: usize,
    budget_mib: u64,
) -> Vec<PoolFigures> {
    let mut figures = Vec::new();
    for runtime in Runtime::ALL {
        let rt = runtime.as_str();
        assert!(
            daemon.wait_pooled(rt, pool, Duration::from_secs(60)),
            "the {rt} pool did not fill"
        );
        let before = daemon.pooled(rt).len();
        let names: Vec<String> = (0..pool).map(|i| format!("drain-{rt}-{i}")).collect();
        for name in &names {
            client
                .deploy(&functions.spec(name, runtime))
                .expect("deploy");
        }
        std::thread::scope(|s| {
            for name in &names {
                s.spawn(move || {
                    let response = client.invoke(name, b"{}").expect("invoke");
                    assert!(response.error.is_none(), "{:?}", response.error);
                });
            }
        });
        assert!(
            daemon.wait_pooled(rt, before + pool, Duration::from_secs(60)),
            "the {rt} pool did not refill"
        );
        // The refill: the sandboxes pooled since the drain began, from the
        // first one's clone to the last one's READY.
        let refilled = &daemon.pooled(rt)[before..before + pool];
        let ids: HashSet<u64> = refilled.iter().map(|p| p.1).collect();
        let cloned = daemon.cloned();
        let first_clone = cloned
            .iter()
            .filter(|c| ids.contains(&c.1))
            .map(|c| c.0)
            .min()
            .expect("refilled sandboxes were cloned");
        let last_ready = refilled.iter().map(|p| p.0).max().expect("not empty");
        let refill = last_ready
            .saturating_duration_since(first_clone)
            .max(Duration::from_micros(1));
        let boots: Vec<f64> = refilled.iter().map(|p| p.2).collect();
        std::thread::sleep(Duration::from_millis(200));
        let (mut pss, mut cgroup) = (Vec::new(), Vec::new());
        for (_, sandbox, pid, _) in &cloned {
            if ids.contains(sandbox) {
                if let Some(kib) = pss_kib_tree(*pid) {
                    pss.push(kib);
                }
                if let Some(kib) = cgroup_usage_kib(*pid) {
                    cgroup.push(kib);
                }
            }
        }
        figures.push(PoolFigures {
            runtime,
            pool,
            boot_ms_median: median(&boots),
            refill_per_s: pool as f64 / refill.as_secs_f64(),
            refill_ms: refill.as_secs_f64() * 1e3,
            measured: pss.len(),
            pss_kib: median(&pss),
            cgroup_kib: median(&cgroup),
            budget_mib,
        });
        for name in &names {
            client.remove(name).expect("remove");
        }
    }
    figures
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// PSS of `pid` and all its descendants, in KiB.
fn pss_kib_tree(pid: i32) -> Option<f64> {
    let mut total = 0.0;
    let mut stack = vec![pid];
    let mut seen = 0;
    while let Some(p) = stack.pop() {
        let rollup = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok()?;
        total += rollup
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())?;
        stack.extend(children(p));
        seen += 1;
    }
    (seen > 0).then_some(total)
}

fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// The memory usage of `pid`'s cgroup (v1 memory controller or v2), KiB.
fn cgroup_usage_kib(pid: i32) -> Option<f64> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let (file, rel) = table
        .lines()
        .find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            if controllers.split(',').any(|c| c == "memory") {
                Some((
                    Path::new("/sys/fs/cgroup/memory").join("memory.usage_in_bytes"),
                    path,
                ))
            } else {
                None
            }
        })
        .or_else(|| {
            let path = table.lines().find_map(|l| l.strip_prefix("0::"))?;
            Path::new("/sys/fs/cgroup/cgroup.controllers")
                .exists()
                .then(|| (Path::new("/sys/fs/cgroup").join("memory.current"), path))
        })?;
    let dir = file.parent().expect("has a parent");
    let path: PathBuf = dir
        .join(rel.trim_start_matches('/'))
        .join(file.file_name().expect("file name"));
    let bytes: f64 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    Some(bytes / 1024.0)
}
