//! The command line, as clap derive types, and the parsers of its values.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::daemon::DaemonConfig;
use crate::protocol::AffinityMode;
use crate::reactor::Backend;

#[derive(Debug, Parser)]
#[command(
    name = "sprout",
    version,
    about = "On-demand code executor: pre-forked, confined sandboxes behind a Unix-socket daemon"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (logs to stderr; RUST_LOG filters).
    Serve(ServeArgs),
    /// Deploy a new version of a function.
    Deploy(DeployArgs),
    /// Invoke a function and print its result.
    Invoke(InvokeArgs),
    /// List deployed functions.
    List(ListArgs),
    /// Remove a function.
    Rm(RmArgs),
    /// Show scheduling counters: per function, and the pool.
    Stats(StatsArgs),
    /// Prepare sandboxes of a function ahead of its invocations.
    Pretrigger(PretriggerArgs),
    /// Print the call tree of the trace an invocation is in.
    Trace(TraceArgs),
    /// Profile a function over its recent invocations: phases, errors,
    /// cold starts, callees and callers.
    Profile(ProfileArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Unix socket to listen on.
    #[arg(long, env = "SPROUT_SOCKET", default_value = DaemonConfig::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Directory for the registry, function code and runtime files.
    #[arg(long, default_value = DaemonConfig::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Force the event-loop backend (default: io_uring when the kernel
    /// allows it, else epoll).
    #[arg(long, value_name = "uring|epoll", value_parser = parse_backend)]
    pub event_loop: Option<Backend>,
    /// Largest payload (and result) in bytes; suffixes K, M, G (powers of
    /// 1024) are accepted.
    #[arg(long, value_name = "BYTES", default_value = "6M", value_parser = parse_size)]
    pub max_payload: usize,
    /// Fewest idle pre-forked sandboxes kept per shape; the pool grows
    /// toward --pool-max with the rate of cold starts.
    #[arg(long, value_name = "N", default_value_t = DaemonConfig::DEFAULT_POOL_MIN)]
    pub pool_min: usize,
    /// Most idle pre-forked sandboxes kept per shape.
    #[arg(long, value_name = "N", default_value_t = DaemonConfig::DEFAULT_POOL_MAX)]
    pub pool_max: usize,
    /// A fixed pool: exactly N idle sandboxes per shape (--pool-min N
    /// --pool-max N); 0 disables the pool.
    #[arg(long, value_name = "N", conflicts_with_all = ["pool_min", "pool_max"])]
    pub pool_size: Option<usize>,
    /// Deepest chain of nested calls between functions (a client
    /// invocation is depth 0); a call past it fails with BadRequest.
    #[arg(long, value_name = "N", default_value_t = DaemonConfig::DEFAULT_MAX_CALL_DEPTH)]
    pub max_call_depth: u32,
    /// Spans of finished invocations kept in memory for `sprout trace`
    /// and `sprout profile`; the oldest are dropped first (and counted).
    #[arg(long, value_name = "N", default_value_t = DaemonConfig::DEFAULT_TRACE_CAPACITY)]
    pub trace_capacity: usize,
    /// Export spans to an OpenTelemetry collector over OTLP/HTTP
    /// (protobuf), e.g. http://127.0.0.1:4318/v1/traces; a background
    /// thread sends them, dropping (and counting) what a slow or absent
    /// collector cannot take.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Leave the host's cgroup2 root flags alone. By default sprout sets
    /// favordynmods on it (Linux 6.0+), without which moving each new
    /// sandbox into its cgroups waits for an RCU grace period (~10 ms).
    #[arg(long)]
    pub keep_cgroup_flags: bool,
    /// Microseconds the event loop polls for work before it sleeps (0:
    /// never polls). Polling costs up to that much CPU each time the
    /// daemon runs out of work, and keeps the next message from having to
    /// wake a halted CPU (tens of microseconds on a virtual machine).
    #[arg(long, value_name = "US", default_value_t = DaemonConfig::DEFAULT_BUSY_POLL_US)]
    pub busy_poll_us: u64,
    /// The AWS region functions see (AWS_REGION, AWS_DEFAULT_REGION, their
    /// ARNs).
    #[arg(long, default_value = crate::lambda::env::DEFAULT_REGION, value_parser = parse_region)]
    pub region: String,
}

/// Where the daemon listens; every client command takes it.
#[derive(Debug, Args)]
pub struct SocketArg {
    /// The daemon's Unix socket.
    #[arg(long, env = "SPROUT_SOCKET", default_value = DaemonConfig::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Function name: 1 to 64 of [A-Za-z0-9_-].
    pub name: String,
    /// The runtime that runs the code: python (or python3.N, the host's), native, provided (or provided.al2, provided.al2023).
    #[arg(long)]
    pub runtime: String,
    /// Entry point, e.g. app.handler (python).
    #[arg(long)]
    pub handler: Option<String>,
    /// The function's code: a directory, or a .zip file as deployed to
    /// Lambda (unpacked by the daemon; served at /var/task).
    #[arg(long, value_name = "DIR|ZIP")]
    pub code: PathBuf,
    /// A layer: a directory or .zip file (repeatable, at most 5). Layers
    /// are merged in order into /opt, a later layer's file winning.
    #[arg(long = "layer", value_name = "DIR|ZIP")]
    pub layers: Vec<PathBuf>,
    /// Size of the function's /tmp in MB, 512 to 10240 [default: 512].
    #[arg(long, value_name = "MB")]
    pub ephemeral_storage: Option<u32>,
    /// Memory limit in MiB.
    #[arg(long, value_name = "MB")]
    pub memory: Option<u32>,
    /// Timeout of one invocation in seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u32>,
    /// Environment variable for the function (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Most sandboxes at once [default: 10].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u32>,
    /// Most invocations waiting for a sandbox; more are Throttled
    /// [default: 100].
    #[arg(long, value_name = "N")]
    pub queue: Option<u32>,
    /// Destroy a sandbox idle this long [default: 300].
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<u32>,
    /// shared: a key goes to the sandbox that last served it; strict: a
    /// sandbox serves one key only, and every invocation needs a key
    /// [default: shared].
    #[arg(long, value_name = "shared|strict", value_parser = parse_affinity_mode)]
    pub affinity_mode: Option<AffinityMode>,
    /// When this function starts cold, start sandboxes for the functions
    /// it called in most of its recent invocations, so their cold starts
    /// overlap its own.
    #[arg(long)]
    pub prewarm_callees: bool,
    #[command(flatten)]
    pub socket: SocketArg,
}

#[derive(Debug, Args)]
pub struct InvokeArgs {
    pub name: String,
    /// The payload; "-" reads it from stdin; none sends an empty payload.
    pub payload: Option<OsString>,
    /// Print one JSON object with the result and its metadata.
    #[arg(long)]
    pub json: bool,
    /// Route to the sandbox that last served KEY (the handler sees it as
    /// its context's affinity key).
    #[arg(long, value_name = "KEY")]
    pub affinity: Option<String>,
    /// Join the caller's trace: a W3C traceparent
    /// (00-<32 hex trace id>-<16 hex span id>-<2 hex flags>).
    #[arg(long, value_name = "TRACEPARENT")]
    pub traceparent: Option<String>,
    /// Lambda's client context for the handler: a JSON object (python
    /// `context.client_context`; the Runtime API's
    /// Lambda-Runtime-Client-Context).
    #[arg(long, value_name = "JSON")]
    pub client_context: Option<String>,
    /// Refuse payloads over this many bytes before sending (match the
    /// daemon's --max-payload).
    #[arg(long, value_name = "BYTES", env = "SPROUT_MAX_PAYLOAD", default_value = "6M", value_parser = parse_size)]
    pub max_payload: usize,
    #[command(flatten)]
    pub socket: SocketArg,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub socket: SocketArg,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this function (default: every function).
    pub name: Option<String>,
    /// Print the whole report as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub socket: SocketArg,
}

#[derive(Debug, Args)]
pub struct PretriggerArgs {
    pub name: String,
    /// How many invocations to expect (bounded by the function's
    /// concurrency).
    #[arg(long, value_name = "N")]
    pub count: u32,
    /// Keep the prepared sandboxes from idle reaping this long [default:
    /// 60].
    #[arg(long, value_name = "SECS")]
    pub ttl: Option<u32>,
    #[command(flatten)]
    pub socket: SocketArg,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Any invocation id of the trace.
    pub id: u64,
    /// Print the spans as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write Chrome trace-event JSON (Perfetto, chrome://tracing) to FILE.
    #[arg(long, value_name = "FILE")]
    pub chrome: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub socket: SocketArg,
}

#[derive(Debug, Args)]
pub struct ProfileArgs {
    pub name: String,
    /// Print the profile as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub socket: SocketArg,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    pub name: String,
    #[command(flatten)]
    pub socket: SocketArg,
}

fn parse_affinity_mode(s: &str) -> Result<AffinityMode, String> {
    s.parse()
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    s.parse::<Backend>().map_err(|e| e.to_string())
}

/// `1048576`, `512K`, `6M`, `6MiB`, `1G`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let number: usize = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size in bytes"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(format!("{s:?}: unknown size unit {unit:?} (use K, M or G)")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `KEY=VALUE`; the value may contain `=` and may be empty.
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// An AWS region name: lower-case letters, digits and dashes (it goes
/// into ARNs and headers).
pub fn parse_region(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not a region name like us-east-1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions() {
        assert_eq!(parse_region("eu-west-1"), Ok("eu-west-1".to_owned()));
        for bad in ["", "EU", "us east", "a:b"] {
            assert!(parse_region(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("6M"), Ok(6 << 20));
        assert_eq!(parse_size("6MiB"), Ok(6 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("5X").is_err());
        assert!(parse_size(&format!("{}G", usize::MAX)).is_err());
    }

    #[test]
    fn env_pairs() {
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(parse_env("A="), Ok(("A".into(), "".into())));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("novalue").is_err());
    }

    #[test]
    fn command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();

        let cli = Cli::try_parse_from([
            "sprout",
            "serve",
            "--socket",
            "/tmp/s.sock",
            "--event-loop",
            "epoll",
            "--max-payload",
            "1M",
            "--pool-size",
            "4",
        ])
        .unwrap();
        let Command::Serve(serve) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(serve.socket, PathBuf::from("/tmp/s.sock"));
        assert_eq!(serve.event_loop, Some(Backend::Epoll));
        assert_eq!(serve.max_payload, 1 << 20);
        assert_eq!(serve.pool_size, Some(4));
        assert_eq!(serve.busy_poll_us, DaemonConfig::DEFAULT_BUSY_POLL_US);
        assert_eq!(serve.region, "us-east-1");
        assert!(
            Cli::try_parse_from(["sprout", "serve", "--pool-size", "2", "--pool-max", "4"])
                .is_err(),
            "a fixed pool has no bounds"
        );
        let cli =
            Cli::try_parse_from(["sprout", "serve", "--pool-min", "2", "--pool-max", "6"]).unwrap();
        let Command::Serve(serve) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(
            (serve.pool_min, serve.pool_max, serve.pool_size),
            (2, 6, None)
        );
        assert!(Cli::try_parse_from(["sprout", "serve", "--event-loop", "kqueue"]).is_err());

        let cli = Cli::try_parse_from([
            "sprout",
            "deploy",
            "hello",
            "--runtime",
            "python",
            "--handler",
            "app.handler",
            "--code",
            "/srv",
            "--env",
            "A=1",
            "--env",
            "B=2",
            "--memory",
            "256",
        ])
        .unwrap();
        let Command::Deploy(deploy) = cli.command else {
            panic!("not deploy")
        };
        assert_eq!(
            deploy.env,
            [("A".into(), "1".into()), ("B".into(), "2".into())]
        );
        assert_eq!(deploy.memory, Some(256));
        assert_eq!(deploy.timeout, None);
        assert_eq!(deploy.affinity_mode, None);
        assert!(deploy.layers.is_empty());
        assert_eq!(deploy.ephemeral_storage, None);

        let cli = Cli::try_parse_from([
            "sprout",
            "deploy",
            "z",
            "--runtime",
            "python",
            "--handler",
            "app.handler",
            "--code",
            "fn.zip",
            "--layer",
            "deps.zip",
            "--layer",
            "/srv/tools",
            "--ephemeral-storage",
            "2048",
        ])
        .unwrap();
        let Command::Deploy(deploy) = cli.command else {
            panic!("not deploy")
        };
        assert_eq!(deploy.code, PathBuf::from("fn.zip"));
        assert_eq!(
            deploy.layers,
            [PathBuf::from("deps.zip"), PathBuf::from("/srv/tools")]
        );
        assert_eq!(deploy.ephemeral_storage, Some(2048));

        let cli = Cli::try_parse_from([
            "sprout",
            "deploy",
            "t",
            "--runtime",
            "native",
            "--code",
            "/srv",
            "--concurrency",
            "8",
            "--queue",
            "20",
            "--idle-timeout",
            "2",
            "--affinity-mode",
            "strict",
        ])
        .unwrap();
        let Command::Deploy(deploy) = cli.command else {
            panic!("not deploy")
        };
        assert_eq!(
            (deploy.concurrency, deploy.queue, deploy.idle_timeout),
            (Some(8), Some(20), Some(2))
        );
        assert_eq!(deploy.affinity_mode, Some(AffinityMode::Strict));
        assert!(Cli::try_parse_from([
            "sprout",
            "deploy",
            "t",
            "--runtime",
            "native",
            "--code",
            "/srv",
            "--affinity-mode",
            "loose"
        ])
        .is_err());

        let cli = Cli::try_parse_from(["sprout", "pretrigger", "f", "--count", "4", "--ttl", "30"])
            .unwrap();
        let Command::Pretrigger(pre) = cli.command else {
            panic!("not pretrigger")
        };
        assert_eq!((pre.name.as_str(), pre.count, pre.ttl), ("f", 4, Some(30)));
        assert!(
            Cli::try_parse_from(["sprout", "pretrigger", "f"]).is_err(),
            "--count is needed"
        );
        let cli = Cli::try_parse_from(["sprout", "stats", "f", "--json"]).unwrap();
        let Command::Stats(stats) = cli.command else {
            panic!("not stats")
        };
        assert_eq!((stats.name.as_deref(), stats.json), (Some("f"), true));

        let cli = Cli::try_parse_from(["sprout", "invoke", "hello", "-", "--json"]).unwrap();
        let Command::Invoke(invoke) = cli.command else {
            panic!("not invoke")
        };
        assert_eq!(invoke.payload, Some(OsString::from("-")));
        assert!(invoke.json);
        assert_eq!(invoke.affinity, None);
        let cli = Cli::try_parse_from(["sprout", "invoke", "hello", "--affinity", "a"]).unwrap();
        let Command::Invoke(invoke) = cli.command else {
            panic!("not invoke")
        };
        assert_eq!(invoke.affinity.as_deref(), Some("a"));
    }
}
