//! Creating and confining one sandbox.

pub mod cgroup;
pub mod seccomp;

/// Entry point of the re-executed sandbox init process (`argv[0]` is
/// `sprout-sandbox-init`).
pub fn init_main() -> i32 {
    127
}
