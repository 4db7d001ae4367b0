//! The daemon side of creating a sandbox: cgroup, descriptors, `clone` into
//! new namespaces, id maps, then the configuration on the config pipe.
//!
//! Everything the child needs is prepared before `clone` (descriptors
//! duplicated above 63, every C string built), so the child runs only raw
//! system calls until it execs the init (see `sys::process::clone_and_exec`).

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::rc::Rc;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use super::cgroup::SandboxCgroup;
use super::config::{fds, InitConfig};
use super::etc;
use super::handle::Sandbox;
use super::host;
use super::package;
use super::{Limits, RuntimeKind, SandboxEnv, SandboxError};
use crate::ring::RuntimeEnd;
use crate::sys::fd::dup_at_least;
use crate::sys::process::{self, Argv, ChildPlan};

/// Namespaces every sandbox gets at clone. The cgroup namespace follows in
/// the init, once the parent has moved it into its cgroup.
const CLONE_FLAGS: libc::c_int = libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS;

/// Descriptors the child moves onto fixed numbers are first duplicated to
/// this number or above.
const HIGH_FD: i32 = 64;

/// `argv[0]` that makes the sprout binary run [`super::init_main`].
pub const INIT_ARGV0: &str = "sprout-sandbox-init";

impl SandboxEnv {
    /// Create sandbox `id`: returns once the child is cloned, mapped, in its
    /// cgroup and has its configuration. Readiness comes later, as READY on
    /// the ring.
    pub fn spawn(
        &self,
        id: u64,
        runtime: RuntimeKind,
        limits: &Limits,
        ring: RuntimeEnd,
    ) -> Result<Sandbox, SandboxError> {
        let mounts = self.package_mounts.create(id)?;
        let cgroup = self
            .cgroups
            .create(&self.instance, &cgroup_name(id), &limits.cgroup())?;
        match self.spawn_in(id, runtime, limits, ring, &cgroup) {
            Ok(parts) => Ok(Sandbox::new(parts, cgroup, mounts)),
            Err(err) => {
                if let Err(cleanup) = fs::remove_file(self.log_path(id)) {
                    tracing::debug!(sandbox = id, err = %cleanup, "remove log of failed spawn");
                }
                if let Err(cleanup) = cgroup.remove() {
                    tracing::warn!(sandbox = id, err = %cleanup, "remove cgroup of failed spawn");
                }
                Err(err)
            }
        }
    }

    fn spawn_in(
        &self,
        id: u64,
        runtime: RuntimeKind,
        limits: &Limits,
        ring: RuntimeEnd,
        cgroup: &SandboxCgroup,
    ) -> Result<Spawned, SandboxError> {
        let fd_err = |source| SandboxError::Descriptors { id, source };
        let (control, control_child) = crate::sys::socket::seqpacket_pair().map_err(fd_err)?;
        let (config_read, config_write) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| fd_err(e.into()))?;
        let null = open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| fd_err(e.into()))?;
        let log_path = self.log_path(id);
        let log = open(
            &log_path,
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_TRUNC
                | OFlag::O_CLOEXEC
                | OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| fd_err(e.into()))?;
        let high = |fd: &OwnedFd| dup_at_least(fd.as_fd(), HIGH_FD).map_err(fd_err);
        let moved: [(OwnedFd, i32); 6] = [
            (high(&ring.memfd)?, fds::RING),
            (high(&ring.request_bell)?, fds::REQUEST_BELL),
            (high(&ring.response_bell)?, fds::RESPONSE_BELL),
            (high(&control_child)?, fds::CONTROL),
            (high(&log)?, fds::LOG),
            (high(&config_read)?, fds::CONFIG),
        ];
        let null = high(&null)?;
        let exe = high(&self.init_exe)?;
        drop((ring, control_child, config_read, log));
        let pairs: Vec<_> = moved
            .iter()
            .map(|(fd, target)| (fd.as_fd(), *target))
            .collect();
        let argv = Argv::new(&[INIT_ARGV0]).map_err(fd_err)?;
        let envp = Argv::new::<&str>(&[]).map_err(fd_err)?;
        let cwd = CString::new(self.layout.dir.as_os_str().as_bytes())
            .map_err(|e| fd_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
        let config = InitConfig {
            id,
            runtime,
            limits: *limits,
            hostname: "sprout".to_owned(),
            etc_dir: etc::ETC.to_owned(),
            newroot_dir: etc::NEWROOT.to_owned(),
            runtime_dir: etc::runtime_rel(runtime),
            package_dir: package::sandbox_dir_rel(id),
            region: self.region.clone(),
            seccomp: self.seccomp.get(&runtime).cloned().unwrap_or_default(),
            keep_stderr: self.keep_stderr,
        };
        let config = serde_json::to_vec(&config).map_err(|e| fd_err(e.into()))?;
        let plan = ChildPlan {
            fds: &pairs,
            close: &[config_write.as_fd()],
            null: null.as_fd(),
            keep_stderr: self.keep_stderr,
            sync_target: fds::CONFIG,
            cwd: &cwd,
            exe: exe.as_fd(),
            argv: &argv,
            envp: &envp,
        };

        let child = process::clone_and_exec(CLONE_FLAGS, &plan)
            .map_err(|source| SandboxError::Clone { id, source })?;
        drop(moved);
        let host_uid = self.host_uid(id);
        let guard = KillOnError {
            pidfd: &child.pidfd,
        };
        write_id_maps(id, child.pid, host_uid)?;
        // The child inherited the daemon's -1000; sandboxes go first.
        host::set_oom_score_adj(
            std::path::Path::new("/proc"),
            &child.pid.to_string(),
            host::SANDBOX_OOM_SCORE_ADJ,
        )
        .map_err(|source| SandboxError::OomScoreAdj {
            id,
            pid: child.pid,
            source,
        })?;
        cgroup.add_pid(child.pid)?;
        let mut pipe = fs::File::from(config_write);
        pipe.write_all(&[1])
            .and_then(|()| pipe.write_all(&config))
            .map_err(|source| SandboxError::SendConfig { id, source })?;
        drop(pipe);
        std::mem::forget(guard);
        tracing::debug!(sandbox = id, pid = child.pid, host_uid, %runtime, "sandbox cloned");
        Ok(Spawned {
            id,
            pid: child.pid,
            host_uid,
            runtime,
            pidfd: Rc::new(child.pidfd),
            control,
            log: log_path,
        })
    }
}

/// What [`Sandbox::new`] is built from.
pub(super) struct Spawned {
    pub id: u64,
    pub pid: i32,
    pub host_uid: u32,
    pub runtime: RuntimeKind,
    pub pidfd: Rc<OwnedFd>,
    pub control: OwnedFd,
    pub log: std::path::PathBuf,
}

pub(super) fn cgroup_name(id: u64) -> String {
    format!("sandbox-{id}")
}

/// uid and gid 0 inside map to `host_uid` outside, nothing else. setgroups
/// stays allowed (the daemon, privileged, writes the maps) so the child can
/// drop the supplementary groups it inherited; with "deny" it would keep
/// them for life.
fn write_id_maps(id: u64, pid: i32, host_uid: u32) -> Result<(), SandboxError> {
    let map = format!("0 {host_uid} 1\n");
    for file in ["uid_map", "gid_map"] {
        fs::write(format!("/proc/{pid}/{file}"), &map).map_err(|source| SandboxError::IdMap {
            id,
            pid,
            file,
            source,
        })?;
    }
    Ok(())
}

/// Kills and reaps the child if configuring it fails half-way.
struct KillOnError<'a> {
    pidfd: &'a OwnedFd,
}

impl Drop for KillOnError<'_> {
    fn drop(&mut self) {
        let _ = process::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
        let _ = process::pidfd_wait(self.pidfd.as_fd(), false);
    }
}
