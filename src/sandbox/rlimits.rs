//! Resource limits of the sandbox's processes. The process count is the
//! pids cgroup's job, memory the memory cgroup's.

use nix::sys::resource::{setrlimit, Resource};

use super::confine::{ConfineError, Step};
use super::Limits;

pub fn apply(limits: &Limits) -> Result<(), ConfineError> {
    let set = |resource: Resource, name: &str, value: u64| {
        setrlimit(resource, value, value).map_err(|e| {
            ConfineError::new(
                Step::Rlimit,
                format!("setrlimit({name}, {value})"),
                e.into(),
            )
        })
    };
    set(Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE", limits.nofile)?;
    set(Resource::RLIMIT_FSIZE, "RLIMIT_FSIZE", limits.fsize_bytes)?;
    set(Resource::RLIMIT_CORE, "RLIMIT_CORE", 0)?;
    Ok(())
}
