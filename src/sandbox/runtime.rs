//! After [`super::confine::confine`] and the reaper's fork, in the
//! runtime's process: install the seccomp filter (last) and exec the
//! runtime.
//!
//! - python: exec `/usr/bin/python3 -I /var/runtime/start.py`, which runs
//!   the bootstrap (compiled once by the daemon); the bootstrap announces
//!   READY and reads its assignment from fd 6.
//! - native: the runtime's process is the pooled loader. It installs the
//!   seccomp filter, announces READY on the ring, blocks on fd 6 for the
//!   assignment (JSON [`Assignment`] plus the code directory's
//!   descriptor), then execs `bootstrap` from that directory with the
//!   function's environment: tenant code never runs unfiltered, and the
//!   filter (a good part of a millisecond to install) is not on a cold
//!   start's path.
//! - provided: the runtime's process becomes the Lambda Runtime API bridge
//!   ([`crate::runtime_api`]). Like the native loader it installs the
//!   filter, then listens on 127.0.0.1:9001 and announces READY; once the
//!   assignment comes it forks the function's `/var/task/bootstrap` (or
//!   `/opt/bootstrap`) and serves it until it exits, then exits with its
//!   status.

use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};

use super::config::{fds, InitConfig};
use super::confine::{ConfineError, Step};
use super::reaper::SIGNALED_EXIT_BASE;
use super::rootfs::RUNTIME_MOUNT;
use super::{seccomp, Assignment, RuntimeKind};
// The function's code is mounted at TASK_ROOT before the assignment
// arrives: the runtime's working directory.
use crate::lambda::env::{RUNTIME_API, TASK_ROOT};
use crate::runtime_api;
use crate::sys::fd::dup_inherited;
use crate::sys::process::{self, Argv};

pub(super) const PYTHON: &CStr = c"/usr/bin/python3";

/// Start the runtime; returns only on failure.
pub fn start(config: &InitConfig, env: Vec<String>) -> ConfineError {
    let result = match config.runtime {
        RuntimeKind::Python => exec_python(config, env),
        RuntimeKind::Native => load_native(config, env),
        RuntimeKind::Provided => serve_provided(config, env),
    };
    match result {
        Ok(never) => match never {},
        Err(err) => err,
    }
}

enum Never {}

fn exec_python(config: &InitConfig, env: Vec<String>) -> Result<Never, ConfineError> {
    // start.py runs the bootstrap the daemon compiled (etc.rs).
    let start = format!("/{RUNTIME_MOUNT}/start.py");
    let argv = make_argv(&["python3", "-I", &start])?;
    let envp = make_argv(&env)?;
    apply_seccomp(config)?;
    let err = process::execve(PYTHON, &argv, &envp);
    Err(ConfineError::new(
        Step::Exec,
        "execve /usr/bin/python3",
        err,
    ))
}

fn load_native(config: &InitConfig, env: Vec<String>) -> Result<Never, ConfineError> {
    // Before READY, not after the assignment: installing the filters takes
    // a good part of a millisecond, which a cold start would wait for.
    apply_seccomp(config)?;
    announce_ready()?;
    let (assignment, code) = receive_assignment()?;
    std::env::set_current_dir(TASK_ROOT)
        .map_err(|e| ConfineError::new(Step::Exec, format!("chdir {TASK_ROOT}"), e))?;
    let envp = make_argv(&assignment.runtime_env(env))?;
    let argv = make_argv(&["bootstrap"])?;
    let err = process::execveat(code.as_fd(), c"bootstrap", &argv, &envp);
    Err(ConfineError::new(
        Step::Exec,
        format!("execveat bootstrap of {}", assignment.function),
        err,
    ))
}

fn serve_provided(config: &InitConfig, env: Vec<String>) -> Result<Never, ConfineError> {
    apply_seccomp(config)?;
    let ready = |what: &str, e: std::io::Error| ConfineError::new(Step::Ready, what.to_owned(), e);
    // Bound before READY: a bootstrap can connect as soon as it runs.
    let listener = std::net::TcpListener::bind(RUNTIME_API)
        .map_err(|e| ready(&format!("bind the Runtime API on {RUNTIME_API}"), e))?;
    // The bootstrap's process is forked before READY too: a pooled
    // sandbox is ready up to the exec.
    let argv = make_argv(&["bootstrap"])?;
    let cwd = std::ffi::CString::new(TASK_ROOT).expect("no NUL in the path");
    let waiting = process::fork_waiting(&cwd, &BOOTSTRAPS, &argv)
        .map_err(|e| ready("fork the bootstrap's process", e))?;
    let mut ring = crate::ring::RuntimeRing::open_inherited().map_err(|e| {
        ready(
            "map the inherited ring",
            std::io::Error::other(e.to_string()),
        )
    })?;
    ring.send_ready()
        .map_err(|e| ready("send READY", std::io::Error::other(e.to_string())))?;
    // The code is at /var/task; its descriptor is not needed.
    let (assignment, _code) = receive_assignment()?;
    // Lambda's variables (AWS_LAMBDA_RUNTIME_API, _HANDLER...) are in the
    // assignment's environment.
    let env = assignment.runtime_env(env);
    let region = env.iter().find_map(|e| e.strip_prefix("AWS_REGION="));
    let function = runtime_api::Function::new(&assignment.function, region);
    let child = waiting.start(&env).map_err(|e| {
        ConfineError::new(
            Step::Exec,
            format!("start the bootstrap of {}", assignment.function),
            e,
        )
    })?;
    match runtime_api::serve(listener, ring, child.pidfd.as_fd(), function) {
        // The sandbox's pid 1 reports this status as the runtime's.
        Ok(status) => std::process::exit(match status {
            process::ExitStatus::Exited(code) => code,
            process::ExitStatus::Signaled(signal) => SIGNALED_EXIT_BASE + signal,
        }),
        Err(err) => Err(ConfineError::new(
            Step::Exec,
            format!("the Runtime API bridge of {} failed", assignment.function),
            std::io::Error::other(error_chain(&err)),
        )),
    }
}

/// Where Lambda looks for a `provided` function's bootstrap, in order.
const BOOTSTRAPS: [&CStr; 2] = [c"/var/task/bootstrap", c"/opt/bootstrap"];

/// An error and its sources, `: `-separated.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// READY on the ring, through close-on-exec duplicates: fds 3-5 stay as
/// they are for the bootstrap, which maps the ring again.
fn announce_ready() -> Result<(), ConfineError> {
    let step = |what: &str, e: std::io::Error| ConfineError::new(Step::Ready, what.to_owned(), e);
    let dup = |fd| dup_inherited(fd).map_err(|e| step(&format!("duplicate inherited fd {fd}"), e));
    let mut ring = crate::ring::RuntimeRing::from_fds(
        dup(fds::RING)?,
        dup(fds::REQUEST_BELL)?,
        dup(fds::RESPONSE_BELL)?,
    )
    .map_err(|e| {
        step(
            "map the inherited ring",
            std::io::Error::other(e.to_string()),
        )
    })?;
    ring.send_ready()
        .map_err(|e| step("send READY", std::io::Error::other(e.to_string())))
}

/// Block for the one assignment message on the control socket.
fn receive_assignment() -> Result<(Assignment, OwnedFd), ConfineError> {
    let control = crate::sys::fd::inherited(fds::CONTROL)
        .map_err(|e| ConfineError::new(Step::Assignment, "take the control socket (fd 6)", e))?;
    let received = crate::ring::recv_assignment(control.as_fd());
    // fd 6 stays open for the runtime, as documented.
    std::mem::forget(control);
    received.map_err(|e| {
        ConfineError::new(
            Step::Assignment,
            format!("receive the assignment: {e}"),
            std::io::Error::from(std::io::ErrorKind::InvalidData),
        )
    })
}

pub(super) fn apply_seccomp(config: &InitConfig) -> Result<(), ConfineError> {
    let step = |e: seccomp::SeccompError| {
        ConfineError::new(
            Step::Seccomp,
            "install the seccomp filter",
            std::io::Error::other(e.to_string()),
        )
    };
    let program = seccomp::SeccompProgram::from_bytes(&config.seccomp).map_err(step)?;
    seccomp::apply(&program).map_err(step)
}

fn make_argv<S: AsRef<str>>(items: &[S]) -> Result<Argv, ConfineError> {
    Argv::new(items).map_err(|e| ConfineError::new(Step::Exec, "build argv/envp", e))
}
