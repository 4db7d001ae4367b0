//! Running each command: gather its input, make the client call, and hand
//! the outcome to [`super::output`].

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::args::{
    DeployArgs, InvokeArgs, ListArgs, PretriggerArgs, ProfileArgs, RmArgs, ServeArgs, StatsArgs,
    TraceArgs,
};
use super::output::{self, Rendered, EXIT_ERROR};
use crate::client::{Client, InvokeOptions};
use crate::daemon::DaemonConfig;
use crate::protocol::{validate_function_name, CallerContext, DeploySpec};

pub fn serve(args: ServeArgs) -> Rendered {
    let config = DaemonConfig {
        socket: args.socket,
        state_dir: args.state_dir,
        event_loop: args.event_loop,
        max_payload: args.max_payload,
        pool_min: args.pool_size.unwrap_or(args.pool_min),
        pool_max: args.pool_size.unwrap_or(args.pool_max),
        max_call_depth: args.max_call_depth,
        trace_capacity: args.trace_capacity,
        otlp_endpoint: args.otlp_endpoint,
        favor_cgroup_moves: !args.keep_cgroup_flags,
        busy_poll: std::time::Duration::from_micros(args.busy_poll_us),
        region: args.region.clone(),
    };
    match crate::daemon::run(config) {
        Ok(()) => Rendered::default(),
        Err(err) => Rendered::error("serve", format_args!("{err:#}"), EXIT_ERROR),
    }
}

pub fn deploy(args: DeployArgs) -> Rendered {
    let context = format!("deploy {}", args.name);
    if let Err(reason) = validate_function_name(&args.name) {
        return Rendered::error(&context, reason, EXIT_ERROR);
    }
    let mut paths = Vec::with_capacity(1 + args.layers.len());
    for (what, path) in std::iter::once(("code", &args.code))
        .chain(args.layers.iter().map(|layer| ("layer", layer)))
    {
        match package_path(path) {
            Ok(path) => paths.push(path),
            Err(reason) => {
                return Rendered::error(
                    &context,
                    format_args!("{what} {}: {reason}", path.display()),
                    EXIT_ERROR,
                )
            }
        }
    }
    let layers = paths.split_off(1);
    let code = paths.pop().expect("the code's path");
    let spec = DeploySpec {
        name: args.name,
        runtime: args.runtime,
        handler: args.handler,
        code,
        layers,
        memory_mb: args.memory,
        timeout_secs: args.timeout,
        env: args.env.into_iter().collect::<BTreeMap<_, _>>(),
        concurrency: args.concurrency,
        max_queue: args.queue,
        idle_timeout_secs: args.idle_timeout,
        affinity_mode: args.affinity_mode,
        prewarm_callees: args.prewarm_callees.then_some(true),
        ephemeral_storage_mb: args.ephemeral_storage,
    };
    let socket = &args.socket.socket;
    match Client::connect(socket).and_then(|c| c.deploy(&spec)) {
        Ok(info) => output::deployed(&info),
        Err(err) => output::client_error(&context, &err, socket),
    }
}

/// The absolute path of a package (a directory or a zip file) for the
/// daemon, which unpacks it.
fn package_path(path: &Path) -> Result<PathBuf, String> {
    let path = std::fs::canonicalize(path).map_err(|err| err.to_string())?;
    if path.is_dir() || path.is_file() {
        Ok(path)
    } else {
        Err("not a directory nor a zip file".to_owned())
    }
}

pub fn invoke(args: InvokeArgs) -> Rendered {
    let context = format!("invoke {}", args.name);
    if let Err(reason) = validate_function_name(&args.name) {
        return Rendered::error(&context, reason, EXIT_ERROR);
    }
    let payload = match args.payload.as_deref() {
        None => Vec::new(),
        Some(arg) if arg == "-" => {
            let mut buf = Vec::new();
            if let Err(err) = std::io::stdin().lock().read_to_end(&mut buf) {
                return Rendered::error(
                    &context,
                    format_args!("read payload from stdin: {err}"),
                    EXIT_ERROR,
                );
            }
            buf
        }
        Some(arg) => arg.as_bytes().to_vec(),
    };
    let socket = &args.socket.socket;
    let options = InvokeOptions {
        affinity: args.affinity,
        traceparent: args.traceparent,
        caller: CallerContext {
            client_context: args.client_context,
            cognito_identity: None,
        },
    };
    let outcome = Client::connect_with_max_payload(socket, args.max_payload)
        .and_then(|c| c.invoke_with(&args.name, &payload, &options));
    output::invoke(&args.name, &outcome, args.json, socket)
}

pub fn list(args: ListArgs) -> Rendered {
    let socket = &args.socket.socket;
    match Client::connect(socket).and_then(|c| c.list()) {
        Ok(functions) => output::list(&functions, args.json),
        Err(err) => output::client_error("list", &err, socket),
    }
}

pub fn rm(args: RmArgs) -> Rendered {
    let context = format!("rm {}", args.name);
    if let Err(reason) = validate_function_name(&args.name) {
        return Rendered::error(&context, reason, EXIT_ERROR);
    }
    let socket: &Path = &args.socket.socket;
    match Client::connect(socket).and_then(|c| c.remove(&args.name)) {
        Ok(()) => output::removed(&args.name),
        Err(err) => output::client_error(&context, &err, socket),
    }
}

pub fn stats(args: StatsArgs) -> Rendered {
    let context = match &args.name {
        Some(name) => {
            if let Err(reason) = validate_function_name(name) {
                return Rendered::error(&format!("stats {name}"), reason, EXIT_ERROR);
            }
            format!("stats {name}")
        }
        None => "stats".to_owned(),
    };
    let socket = &args.socket.socket;
    match Client::connect(socket).and_then(|c| c.stats(args.name.as_deref())) {
        Ok(report) => output::stats(&report, args.json),
        Err(err) => output::client_error(&context, &err, socket),
    }
}

pub fn pretrigger(args: PretriggerArgs) -> Rendered {
    let context = format!("pretrigger {}", args.name);
    if let Err(reason) = validate_function_name(&args.name) {
        return Rendered::error(&context, reason, EXIT_ERROR);
    }
    let socket = &args.socket.socket;
    match Client::connect(socket).and_then(|c| c.pretrigger(&args.name, args.count, args.ttl)) {
        Ok(accepted) => output::pretriggered(&accepted),
        Err(err) => output::client_error(&context, &err, socket),
    }
}

pub fn trace(args: TraceArgs) -> Rendered {
    let context = format!("trace {}", args.id);
    let socket = &args.socket.socket;
    let report = match Client::connect(socket).and_then(|c| c.trace(args.id)) {
        Ok(report) => report,
        Err(err) => return output::client_error(&context, &err, socket),
    };
    if let Some(path) = &args.chrome {
        let events = crate::trace::render::chrome(&report);
        let bytes = serde_json::to_vec(&events).expect("trace events serialize");
        if let Err(err) = std::fs::write(path, bytes) {
            return Rendered::error(
                &context,
                format_args!("writing {}: {err}", path.display()),
                EXIT_ERROR,
            );
        }
    }
    if args.json {
        let value = serde_json::to_value(&report).expect("trace serializes");
        return Rendered::ok(format!("{value}\n"));
    }
    if args.chrome.is_some() {
        return Rendered::default();
    }
    Rendered::ok(crate::trace::render::tree(&report))
}

pub fn profile(args: ProfileArgs) -> Rendered {
    let context = format!("profile {}", args.name);
    if let Err(reason) = validate_function_name(&args.name) {
        return Rendered::error(&context, reason, EXIT_ERROR);
    }
    let socket = &args.socket.socket;
    match Client::connect(socket).and_then(|c| c.profile(&args.name)) {
        Ok(report) if args.json => {
            let value = serde_json::to_value(&report).expect("profile serializes");
            Rendered::ok(format!("{value}\n"))
        }
        Ok(report) => Rendered::ok(crate::trace::render::profile(&report)),
        Err(err) => output::client_error(&context, &err, socket),
    }
}
