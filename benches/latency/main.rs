//! sprout's latency benchmark, side by side with what users would pick
//! instead. `cargo bench --bench latency [-- --quick] [--json FILE]
//! [--svg FILE] [--memory-budget MIB]`, as root; `benches/setup.sh`
//! installs the peers first.
//!
//! In one run, on one machine:
//! 1. the floor: a Unix-socket ping-pong between two processes;
//! 2. warm round trips through a real daemon (client library -> daemon ->
//!    runtime -> client), native and python, 64 B / 4 KiB / 1 MiB, and a
//!    warm nested call (a handler invoking the warm function through its
//!    runtime, over its ring; see `nested.rs`);
//! 3. cold starts of just-deployed functions, from the pool and with the
//!    pool empty;
//! 4. the same no-op function started per request by fork+exec, bwrap,
//!    runc and crun (a peer that cannot run here is reported with why);
//! 5. warm throughput at 1, 4, 16 and 64 in flight over one connection,
//!    and 64 over 8 connections;
//! 6. pool refill rate and memory per idle sandbox;
//! 7. the time from a pre-trigger to N warm sandboxes, and cold starts
//!    under a stream of new functions with the pool adapting (see
//!    `scheduling.rs`);
//! 8. Lambda functions: warm round trips through the Runtime API with
//!    unmodified runtime clients, and pooled cold starts of a `provided`
//!    Rust function and a zip-deployed python one (see `lambda.rs`).
//!
//! Samples are taken in interleaved repeats (each repeat measures every
//! figure once), so drifting background load shows as noise across the
//! repeats' medians instead of skewing one contender.

mod daemon;
mod floor;
mod functions;
mod lambda;
mod machine;
mod markdown;
mod nested;
mod peers;
mod plot;
mod pool_memory;
mod results;
mod scheduling;
mod sprout_runs;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use sprout::client::Client;

use daemon::Daemon;
use floor::Floor;
use functions::{payload, Functions, Runtime};
use lambda::{LambdaClient, LambdaFunctions};
use peers::{Peer, PeerKind};
use results::{Results, SMALL};

const SIZES: [usize; 3] = [64, 4 << 10, 1 << 20];
/// The last throughput point spreads its threads over this many
/// connections; the others share one.
const THROUGHPUT_CONNECTIONS: usize = 8;
/// The pool of the daemon that cold starts from the pool and pre-triggers
/// run on.
const POOL: usize = 2;

struct Settings {
    quick: bool,
    json: Option<PathBuf>,
    svg: Option<PathBuf>,
    markdown: Option<PathBuf>,
    budget_mib: u64,
    repeats: usize,
    /// Per repeat.
    warm_small: usize,
    warm_large: usize,
    cold: usize,
    peer: usize,
    throughput_secs: f64,
    memory_pool: usize,
    /// Pre-triggers per runtime and count, per repeat.
    pretrigger: usize,
    /// Length of one stream of new functions.
    stream_secs: f64,
}

impl Settings {
    fn parse() -> Settings {
        let mut args = std::env::args().skip(1);
        let mut s = Settings {
            quick: false,
            json: None,
            svg: None,
            markdown: None,
            budget_mib: 1024,
            repeats: 5,
            warm_small: 4000,
            warm_large: 200,
            cold: 200,
            peer: 200,
            throughput_secs: 2.0,
            memory_pool: 8,
            pretrigger: 10,
            stream_secs: 4.0,
        };
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => s.quick = true,
                "--json" => s.json = args.next().map(PathBuf::from),
                "--svg" => s.svg = args.next().map(PathBuf::from),
                "--markdown" => s.markdown = args.next().map(PathBuf::from),
                "--memory-budget" => {
                    s.budget_mib = args
                        .next()
                        .and_then(|v| v.parse().ok())
                        .expect("--memory-budget takes MiB")
                }
                // `cargo bench` passes `--bench`; filters are not supported.
                _ => {}
            }
        }
        if s.quick {
            s.repeats = 2;
            s.warm_small = 300;
            s.warm_large = 10;
            s.cold = 4;
            s.peer = 2;
            s.throughput_secs = 0.3;
            s.memory_pool = 2;
            s.pretrigger = 1;
            s.stream_secs = 0.8;
        }
        s
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "quick": self.quick,
            "repeats": self.repeats,
            "warm_samples_per_repeat_64B_4KiB": self.warm_small,
            "warm_samples_per_repeat_1MiB": self.warm_large,
            "cold_samples_per_repeat": self.cold,
            "peer_samples_per_repeat": self.peer,
            "throughput_seconds_per_point": self.throughput_secs,
            "memory_pool_size": self.memory_pool,
            "memory_budget_mib": self.budget_mib,
            "pretrigger_samples_per_repeat": self.pretrigger,
            "stream_seconds_per_repeat": self.stream_secs,
            "payload_bytes_cold_peers_throughput": SMALL,
        })
    }
}

/// Warm Runtime API samples per repeat of `client`: a quarter of the ring
/// runtimes', and a tenth of that for curl, which starts two processes per
/// invocation.
fn lambda_warm_samples(client: LambdaClient, settings: &Settings) -> usize {
    match client {
        LambdaClient::Curl => (settings.warm_small / 40).max(5),
        _ => settings.warm_small / 4,
    }
}

fn progress(what: &str) {
    eprintln!("latency bench: {what}");
}

fn main() {
    let mut raw = std::env::args().skip(1);
    if raw.next().as_deref() == Some(floor::ECHO_ARG) {
        floor::echo_main(&PathBuf::from(raw.next().expect("socket path")));
    }
    if !nix::unistd::geteuid().is_root() {
        assert!(
            std::env::var_os("SPROUT_MUST_WORK").is_none(),
            "the latency benchmark needs root (SPROUT_MUST_WORK is set)"
        );
        println!("skipped: the latency benchmark needs root");
        return;
    }
    let settings = Settings::parse();
    let work = tempfile::Builder::new()
        .prefix("sprout-bench-")
        .tempdir()
        .expect("work dir");
    progress("building the no-op native function");
    let functions = Functions::prepare(work.path());
    progress("building the nested-call caller");
    let callers = nested::Callers::prepare(work.path());
    progress("preparing the Lambda functions (lambda_runtime, awslambdaric, curl, a zip)");
    let lambdas = LambdaFunctions::prepare(work.path(), &functions);
    let mut results = Results::default();
    for (client, reason) in &lambdas.unavailable {
        progress(&format!(
            "Lambda client {} not run: {reason}",
            client.as_str()
        ));
        results.lambda_unavailable.insert(*client, reason.clone());
    }

    progress("starting daemons and preparing peers");
    let warm_daemon = Daemon::start(work.path(), 2);
    let pool_daemon = Daemon::start(work.path(), POOL);
    let empty_daemon = Daemon::start(work.path(), 0);
    let warm_client = Client::connect(&warm_daemon.socket).expect("connect");
    let pool_client = Client::connect(&pool_daemon.socket).expect("connect");
    let empty_client = Client::connect(&empty_daemon.socket).expect("connect");
    let peers: Vec<Peer> = PeerKind::ALL
        .into_iter()
        .map(|kind| Peer::prepare(kind, work.path(), &functions))
        .collect();
    for peer in &peers {
        peer.record(&mut results);
        if let Some(reason) = &peer.unavailable {
            progress(&format!("peer {} not run: {reason}", peer.kind.as_str()));
        }
    }
    let peers: Vec<&Peer> = peers.iter().filter(|p| p.unavailable.is_none()).collect();

    progress("warming up");
    let payloads: Vec<Vec<u8>> = SIZES.iter().map(|&s| payload(s)).collect();
    let small = payload(SMALL);
    let mut floor = Floor::start(work.path());
    for runtime in Runtime::ALL {
        let name = format!("warm-{}", runtime.as_str());
        warm_client
            .deploy(&functions.spec(&name, runtime))
            .expect("deploy");
        let first = warm_client.invoke(&name, b"{}").expect("first invoke");
        assert!(first.error.is_none() && first.cold, "{:?}", first.error);
    }
    callers.deploy(&warm_client);
    lambdas.deploy_warm(&warm_client);
    let per_size = |size: usize| {
        if size >= 1 << 20 {
            settings.warm_large
        } else {
            settings.warm_small
        }
    };
    for p in &payloads {
        let n = (per_size(p.len()) / 4).max(10);
        (0..n).for_each(|_| {
            floor.round_trip(p);
        });
        for runtime in Runtime::ALL {
            sprout_runs::warm(&warm_client, &format!("warm-{}", runtime.as_str()), p, n);
        }
    }
    for runtime in Runtime::ALL {
        nested::sample(&warm_client, runtime, settings.warm_small / 4);
    }
    for client in lambdas.available() {
        lambda::warm(
            &warm_client,
            client,
            &small,
            lambda_warm_samples(client, &settings) / 4,
        );
    }
    // A first provided function gives the pool its shape.
    let lambda_colds = lambdas.colds();
    for cold in &lambda_colds {
        let spec = lambdas.cold_spec(&format!("lambda-shape-{}", cold.runtime()), *cold);
        sprout_runs::first_invocation(&pool_client, &spec);
    }
    for runtime in Runtime::ALL
        .iter()
        .map(|r| r.as_str())
        .chain(lambda_colds.iter().map(|c| c.runtime()))
    {
        assert!(pool_daemon.wait_pooled(runtime, POOL, Duration::from_secs(60)));
    }
    let mut seq = 0;
    for runtime in Runtime::ALL {
        sprout_runs::cold_from_pool(&pool_daemon, &pool_client, &functions, runtime, seq);
        sprout_runs::cold_empty_pool(&empty_client, &functions, runtime, seq);
        seq += 1;
        for peer in &peers {
            peer.request(runtime, &functions, &small)
                .expect("peer warm-up");
        }
    }
    scheduling::warm_up(&pool_client, &functions);
    results.scheduling.pretrigger_pool = POOL;

    for repeat in 0..settings.repeats {
        progress(&format!("repeat {}/{}", repeat + 1, settings.repeats));
        for p in &payloads {
            let n = per_size(p.len());
            let floor_samples = (0..n).map(|_| floor.round_trip(p)).collect();
            results
                .floor
                .entry(p.len())
                .or_default()
                .push_repeat(floor_samples);
            for runtime in Runtime::ALL {
                let name = format!("warm-{}", runtime.as_str());
                let samples = sprout_runs::warm(&warm_client, &name, p, n);
                results
                    .warm
                    .entry((runtime, p.len()))
                    .or_default()
                    .push_repeat(samples);
            }
        }
        for runtime in Runtime::ALL {
            let samples = nested::sample(&warm_client, runtime, settings.warm_small);
            results
                .nested
                .entry(runtime)
                .or_default()
                .push_repeat(samples);
        }
        for runtime in Runtime::ALL {
            let (mut pooled, mut empty) = (Vec::new(), Vec::new());
            for _ in 0..settings.cold {
                seq += 1;
                pooled.push(sprout_runs::cold_from_pool(
                    &pool_daemon,
                    &pool_client,
                    &functions,
                    runtime,
                    seq,
                ));
                empty.push(sprout_runs::cold_empty_pool(
                    &empty_client,
                    &functions,
                    runtime,
                    seq,
                ));
            }
            for (samples, client_side, daemon_side) in [
                (
                    pooled,
                    &mut results.cold_pool,
                    &mut results.cold_pool_daemon,
                ),
                (
                    empty,
                    &mut results.cold_empty,
                    &mut results.cold_empty_daemon,
                ),
            ] {
                let (seen, reported): (Vec<_>, Vec<_>) = samples.into_iter().unzip();
                client_side.entry(runtime).or_default().push_repeat(seen);
                daemon_side
                    .entry(runtime)
                    .or_default()
                    .push_repeat(reported);
            }
            for peer in &peers {
                let samples = (0..settings.peer)
                    .map(|_| {
                        peer.request(runtime, &functions, &small)
                            .expect("peer request")
                    })
                    .collect();
                results
                    .peers
                    .entry((peer.kind, runtime))
                    .or_default()
                    .push_repeat(samples);
            }
        }
        for client in lambdas.available() {
            let samples = lambda::warm(
                &warm_client,
                client,
                &small,
                lambda_warm_samples(client, &settings),
            );
            results
                .lambda_warm
                .entry(client)
                .or_default()
                .push_repeat(samples);
        }
        for cold in &lambda_colds {
            let samples = (0..(settings.cold / 2).max(2))
                .map(|_| {
                    seq += 1;
                    let name = format!("cold-lambda-{}-{seq}", cold.runtime());
                    let spec = lambdas.cold_spec(&name, *cold);
                    sprout_runs::cold_from_pool_of(&pool_daemon, &pool_client, &spec).0
                })
                .collect();
            results
                .lambda_cold
                .entry(*cold)
                .or_default()
                .push_repeat(samples);
        }
        scheduling::pretrigger_repeat(
            &pool_client,
            &functions,
            settings.pretrigger,
            &mut results.scheduling,
            &mut seq,
        );
    }
    drop(floor);
    let backend = warm_daemon.backend();

    progress("throughput");
    let measure = Duration::from_secs_f64(settings.throughput_secs);
    let mut clients = vec![warm_client];
    for _ in 1..THROUGHPUT_CONNECTIONS {
        clients.push(Client::connect(&warm_daemon.socket).expect("connect"));
    }
    for runtime in Runtime::ALL {
        let name = format!("warm-{}", runtime.as_str());
        for (in_flight, connections) in [
            (1, 1),
            (4, 1),
            (16, 1),
            (64, 1),
            (64, THROUGHPUT_CONNECTIONS),
        ] {
            let rate = sprout_runs::throughput(
                &clients[..connections],
                &name,
                &small,
                in_flight,
                measure / 4,
                measure,
            );
            results
                .throughput
                .push((runtime, in_flight, connections, rate));
        }
    }
    drop((clients, pool_client, empty_client));
    drop((warm_daemon, pool_daemon, empty_daemon));

    progress("cold starts under a stream of new functions");
    scheduling::streams(
        work.path(),
        &functions,
        settings.repeats,
        Duration::from_secs_f64(settings.stream_secs),
        &mut results.scheduling,
    );

    progress("pool refill and memory");
    let memory_daemon = Daemon::start(work.path(), settings.memory_pool);
    let memory_client = Client::connect(&memory_daemon.socket).expect("connect");
    results.pool = pool_memory::measure(
        &memory_daemon,
        &memory_client,
        &functions,
        settings.memory_pool,
        settings.budget_mib,
    );
    drop(memory_client);
    drop(memory_daemon);

    let machine = machine::describe(backend.as_deref());
    println!(
        "sprout latency benchmark{}",
        if settings.quick {
            " (--quick: too few samples for its numbers to mean anything)"
        } else {
            ""
        }
    );
    println!("{}", machine::one_line(&machine));
    results.print();
    let targets = machine::targets(&results);
    let (spread, figure) = results.noise();
    println!(
        "\nnoise: across {} repeats, each figure's medians stay within {:.2}x of each other (widest: {figure})",
        settings.repeats, spread
    );
    if let Some(path) = &settings.markdown {
        let text = markdown::render(&results, &machine, &targets, settings.repeats);
        std::fs::write(path, text).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
        println!("wrote {}", path.display());
    }
    if let Some(path) = &settings.json {
        let doc = results.to_json(machine, settings.to_json(), targets);
        let mut text = serde_json::to_vec_pretty(&doc).expect("json");
        text.push(b'\n');
        std::fs::write(path, text).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
        println!("wrote {}", path.display());
    }
    if let Some(path) = &settings.svg {
        plot::write(&results, path).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
        println!("wrote {}", path.display());
    }
}
