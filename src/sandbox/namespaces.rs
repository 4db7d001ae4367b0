//! Namespace steps of [`super::confine::confine`] that are not about the
//! filesystem: the cgroup namespace (entered after the parent moved us into
//! our cgroup), the hostname, and loopback in the new network namespace.

use nix::sched::{unshare, CloneFlags};

use super::confine::{ConfineError, Step};

pub fn enter_cgroup_namespace() -> Result<(), ConfineError> {
    unshare(CloneFlags::CLONE_NEWCGROUP).map_err(|e| {
        ConfineError::new(Step::CgroupNamespace, "unshare(CLONE_NEWCGROUP)", e.into())
            .with_hint("this needs a kernel with CONFIG_CGROUPS namespaces (4.6 or later)")
    })
}

pub fn set_hostname(name: &str) -> Result<(), ConfineError> {
    nix::unistd::sethostname(name)
        .map_err(|e| ConfineError::new(Step::Hostname, format!("sethostname({name:?})"), e.into()))
}

pub fn loopback_up() -> Result<(), ConfineError> {
    crate::sys::net::interface_up("lo")
        .map_err(|e| ConfineError::new(Step::Loopback, "bring up lo (SIOCSIFFLAGS)", e))
}
