//! [`confine`]: every step that turns the freshly cloned init into a
//! confined sandbox, in order, one line each. The order is the security
//! argument; docs link here instead of restating it.

use std::fmt;
use std::io;

use super::config::{fds, InitConfig};
use super::{caps, namespaces, rlimits, rootfs, RuntimeKind};
use crate::sys::process;

/// Confine the init. Before this runs, the daemon has cloned it into new
/// user, pid, mount, net, ipc and uts namespaces, mapped uid/gid 0 to an
/// unprivileged host uid (host root is never mapped), put it in its cgroup,
/// and the child has dropped its supplementary groups and switched to
/// uid/gid 0 of the namespace before exec'ing the init.
///
/// Returns the fresh environment for the runtime. What follows is in
/// `reaper.rs` (the fork: pid 1 stays as the reaper, the child becomes the
/// runtime) and `runtime.rs`: each process installs the seccomp filter
/// last, the runtime immediately before its exec (for native, after the
/// assignment arrives, since its process is the loader until then).
pub fn confine(config: &InitConfig) -> Result<Vec<String>, ConfineError> {
    namespaces::enter_cgroup_namespace()?; // the parent moved us into our cgroup first
    namespaces::set_hostname(&config.hostname)?;
    namespaces::loopback_up()?; // the only interface of the new net namespace
    rootfs::build(config)?; // private /, ro binds, /tmp, /dev, /proc, pivot_root, ro /
    rlimits::apply(&config.limits)?;
    close_inherited_fds()?; // keep only 0-7: stdio, ring, bells, control, log
    let env = fresh_environment(config.runtime, &config.region);
    caps::drop_all()?; // bounding, securebits (locked), ambient, inheritable, effective, permitted
    no_new_privs()?;
    parent_death_signal()?; // after the credential changes, which clear it
    process_name(config)?;
    Ok(env)
}

/// The environment a runtime starts with: nothing from the host; its
/// runtime, and Lambda's variables that no function changes
/// (`lambda::env::tenant_neutral`), set before any function is known.
pub fn fresh_environment(runtime: RuntimeKind, region: &str) -> Vec<String> {
    let mut env = vec![format!("SPROUT_RUNTIME={runtime}"), "HOME=/tmp".to_owned()];
    env.extend(
        crate::lambda::env::tenant_neutral(runtime, region)
            .into_iter()
            .map(|(key, value)| format!("{key}={value}")),
    );
    env
}

fn close_inherited_fds() -> Result<(), ConfineError> {
    process::close_from(fds::FIRST_CLOSED)
        .map_err(|e| ConfineError::new(Step::CloseFds, "close_range(8, ~0)", e))
}

fn no_new_privs() -> Result<(), ConfineError> {
    nix::sys::prctl::set_no_new_privs()
        .map_err(|e| ConfineError::new(Step::NoNewPrivs, "prctl(PR_SET_NO_NEW_PRIVS)", e.into()))
}

fn parent_death_signal() -> Result<(), ConfineError> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(|e| {
        ConfineError::new(
            Step::ParentDeathSignal,
            "prctl(PR_SET_PDEATHSIG, SIGKILL)",
            e.into(),
        )
    })
}

fn process_name(config: &InitConfig) -> Result<(), ConfineError> {
    // `ps` shows e.g. sprout:py[12] (15 bytes at most).
    let mut name = format!("sprout:{}[{}]", config.runtime.tag(), config.id);
    name.truncate(15);
    let name = std::ffi::CString::new(name).unwrap_or_default();
    nix::sys::prctl::set_name(&name)
        .map_err(|e| ConfineError::new(Step::ProcessName, "prctl(PR_SET_NAME)", e.into()))
}

/// The step that failed; each has its own exit code, so the daemon learns
/// which from the init's exit status alone.
///
/// | code | step |
/// |-----:|------|
/// | 101-108 | the cloned child before exec (see `sys::process::child_exit`) |
/// | 10 | ReadConfig | 11 | CgroupNamespace | 12 | Hostname | 13 | Loopback |
/// | 20 | RootSlave | 21 | RootTmpfs | 22 | BindReadOnly | 23 | Symlink |
/// | 24 | MountPackage | 25 | MountDev | 26 | BindDevice | 27 | MountProc |
/// | 28 | PivotRoot | 29 | DetachOldRoot | 30 | RootReadOnly |
/// | 40 | Rlimit | 41 | CloseFds | 42 | DropCaps | 43 | Securebits |
/// | 44 | NoNewPrivs | 45 | ParentDeathSignal | 46 | ProcessName |
/// | 47 | Fork | 48 | Reap |
/// | 50 | Ready | 51 | Assignment | 52 | Seccomp | 53 | Exec |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    ReadConfig,
    CgroupNamespace,
    Hostname,
    Loopback,
    RootSlave,
    RootTmpfs,
    BindReadOnly,
    Symlink,
    /// Binding /var/task, /opt and /tmp to the daemon's package mount points.
    MountPackage,
    MountDev,
    BindDevice,
    MountProc,
    PivotRoot,
    DetachOldRoot,
    RootReadOnly,
    Rlimit,
    CloseFds,
    DropCaps,
    Securebits,
    NoNewPrivs,
    ParentDeathSignal,
    ProcessName,
    /// The output pipe and the fork of the runtime from the reaper.
    Fork,
    /// Setting up the reaper (pid 1), or its loop.
    Reap,
    Ready,
    Assignment,
    Seccomp,
    Exec,
}

impl Step {
    pub const ALL: [Step; 28] = [
        Step::ReadConfig,
        Step::CgroupNamespace,
        Step::Hostname,
        Step::Loopback,
        Step::RootSlave,
        Step::RootTmpfs,
        Step::BindReadOnly,
        Step::Symlink,
        Step::MountPackage,
        Step::MountDev,
        Step::BindDevice,
        Step::MountProc,
        Step::PivotRoot,
        Step::DetachOldRoot,
        Step::RootReadOnly,
        Step::Rlimit,
        Step::CloseFds,
        Step::DropCaps,
        Step::Securebits,
        Step::NoNewPrivs,
        Step::ParentDeathSignal,
        Step::ProcessName,
        Step::Fork,
        Step::Reap,
        Step::Ready,
        Step::Assignment,
        Step::Seccomp,
        Step::Exec,
    ];

    /// The init's exit status when this step fails.
    pub fn exit_code(self) -> i32 {
        match self {
            Step::ReadConfig => 10,
            Step::CgroupNamespace => 11,
            Step::Hostname => 12,
            Step::Loopback => 13,
            Step::RootSlave => 20,
            Step::RootTmpfs => 21,
            Step::BindReadOnly => 22,
            Step::Symlink => 23,
            Step::MountPackage => 24,
            Step::MountDev => 25,
            Step::BindDevice => 26,
            Step::MountProc => 27,
            Step::PivotRoot => 28,
            Step::DetachOldRoot => 29,
            Step::RootReadOnly => 30,
            Step::Rlimit => 40,
            Step::CloseFds => 41,
            Step::DropCaps => 42,
            Step::Securebits => 43,
            Step::NoNewPrivs => 44,
            Step::ParentDeathSignal => 45,
            Step::ProcessName => 46,
            Step::Fork => 47,
            Step::Reap => 48,
            Step::Ready => 50,
            Step::Assignment => 51,
            Step::Seccomp => 52,
            Step::Exec => 53,
        }
    }

    /// The step an init exit status names, if any.
    pub fn from_exit_code(code: i32) -> Option<Step> {
        Step::ALL.into_iter().find(|step| step.exit_code() == code)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A confinement step failed: which, on what, why, and (when an operator
/// can act) what to do.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {what}: {source}{}", hint.map(|h| format!(" (hint: {h})")).unwrap_or_default())]
pub struct ConfineError {
    pub step: Step,
    pub what: String,
    pub hint: Option<&'static str>,
    #[source]
    pub source: io::Error,
}

impl ConfineError {
    pub fn new(step: Step, what: impl Into<String>, source: io::Error) -> ConfineError {
        ConfineError {
            step,
            what: what.into(),
            hint: None,
            source,
        }
    }

    pub fn with_hint(mut self, hint: &'static str) -> ConfineError {
        self.hint = Some(hint);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_round_trip() {
        let mut codes: Vec<i32> = Step::ALL.iter().map(|s| s.exit_code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Step::ALL.len());
        for step in Step::ALL {
            assert_eq!(Step::from_exit_code(step.exit_code()), Some(step));
            assert!(
                step.exit_code() < 101,
                "collides with the pre-exec child codes"
            );
        }
    }

    #[test]
    fn error_message_names_step_and_hint() {
        let err = ConfineError::new(
            Step::MountProc,
            "mount proc on proc",
            io::Error::from_raw_os_error(libc::EPERM),
        )
        .with_hint("the host's /proc must be fully visible");
        let text = err.to_string();
        assert!(
            text.starts_with("MountProc: mount proc on proc: "),
            "{text}"
        );
        assert!(
            text.ends_with("(hint: the host's /proc must be fully visible)"),
            "{text}"
        );
    }

    #[test]
    fn environment_is_fresh() {
        let env = fresh_environment(RuntimeKind::Python, "eu-west-1");
        assert_eq!(env[0], "SPROUT_RUNTIME=python");
        assert!(env.contains(&"AWS_REGION=eu-west-1".to_owned()));
        assert!(env.contains(&"LAMBDA_TASK_ROOT=/var/task".to_owned()));
        assert!(!env
            .iter()
            .any(|e| e.starts_with("AWS_LAMBDA_FUNCTION_NAME=")));
    }
}
