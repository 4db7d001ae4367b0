//! Process creation and process-wide settings: `clone` with a pidfd (the
//! sandbox child, which runs only async-signal-safe code until it execs),
//! pidfd signalling and reaping, `close_range`, securebits.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// A NULL-terminated `argv`/`envp` array, built before `clone` so the child
/// allocates nothing.
pub struct Argv {
    strings: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

impl Argv {
    /// Build from strings; fails when one holds a NUL byte.
    pub fn new<S: AsRef<str>>(items: &[S]) -> io::Result<Argv> {
        let strings = items
            .iter()
            .map(|s| {
                CString::new(s.as_ref()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut ptrs: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        Ok(Argv { strings, ptrs })
    }

    /// The strings, without the terminating NULL.
    pub fn strings(&self) -> &[CString] {
        &self.strings
    }

    fn as_ptr(&self) -> *const *const libc::c_char {
        self.ptrs.as_ptr()
    }
}

/// Everything the cloned child needs, prepared by the parent: the child only
/// reads this and makes raw system calls.
pub struct ChildPlan<'a> {
    /// `(source, target)`: `dup2(source, target)`. Every source is a
    /// close-on-exec descriptor numbered above every target, so no `dup2`
    /// clobbers a source still to be moved.
    pub fds: &'a [(BorrowedFd<'a>, RawFd)],
    /// The parent's ends the child must not hold (the write end of the sync
    /// pipe: otherwise a parent dying before the sync byte would leave the
    /// child blocked for ever instead of reading EOF).
    pub close: &'a [BorrowedFd<'a>],
    /// Opened `/dev/null`, put on 0, 1 and (unless `keep_stderr`) 2.
    pub null: BorrowedFd<'a>,
    pub keep_stderr: bool,
    /// Target number of the pipe the parent writes one sync byte to once the
    /// id maps are written and the child is in its cgroup.
    pub sync_target: RawFd,
    /// Working directory, entered by path after the sync byte and before
    /// the uid changes (while the child still has its parent's credentials
    /// for the traversal), so the init can reach its files by relative
    /// paths whatever the permissions of their ancestors.
    pub cwd: &'a CStr,
    /// The program to exec (`execveat(exe, "", AT_EMPTY_PATH)`).
    pub exe: BorrowedFd<'a>,
    pub argv: &'a Argv,
    pub envp: &'a Argv,
}

/// Exit codes of the cloned child before it execs (the one `_exit` point).
pub mod child_exit {
    pub const DUP2: i32 = 101;
    pub const SYNC_READ: i32 = 102;
    pub const SYNC_EOF: i32 = 103;
    pub const SETGROUPS: i32 = 104;
    pub const SETRESGID: i32 = 105;
    pub const SETRESUID: i32 = 106;
    pub const EXEC: i32 = 107;
    pub const CHDIR: i32 = 108;
}

/// A child process known by its pid and its pidfd.
pub struct Child {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

/// `clone(flags | CLONE_PIDFD)` with a NULL stack (fork-like), then in the
/// child: move descriptors per `plan`, wait for the parent's sync byte, become
/// enter `plan.cwd`, become uid/gid 0 of the new user namespace with no supplementary groups, and exec.
///
/// The child never returns. It calls only async-signal-safe raw system calls
/// (no allocation, no locks, no glibc set*id broadcast), so this is sound to
/// call from a multi-threaded process.
pub fn clone_and_exec(flags: libc::c_int, plan: &ChildPlan<'_>) -> io::Result<Child> {
    let mut pidfd: libc::c_int = -1;
    // SAFETY: raw clone with a NULL stack behaves like fork: the child runs
    // on a copy-on-write copy of this stack and only executes
    // `child_after_clone`, which touches nothing but `plan` (borrowed, alive
    // in the child's copy of memory) and raw syscalls, then execs or
    // `_exit`s. `pidfd` outlives the call; with CLONE_PIDFD the kernel
    // writes the new pidfd there (parent_tid argument).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::CLONE_PIDFD | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            &mut pidfd as *mut libc::c_int,
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    if ret == 0 {
        child_after_clone(plan);
    }
    // SAFETY: the kernel just created this pidfd for us (CLONE_PIDFD); no
    // one else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Child {
        pid: ret as i32,
        pidfd,
    })
}

fn child_after_clone(plan: &ChildPlan<'_>) -> ! {
    let code = child_steps(plan);
    // SAFETY: `_exit` ends the process without running atexit handlers or
    // destructors that belong to the parent's copy of the state.
    unsafe { libc::_exit(code) }
}

/// The child's steps; returns the exit code for `_exit` on failure (on
/// success it execs and never returns).
fn child_steps(plan: &ChildPlan<'_>) -> i32 {
    for fd in plan.close {
        // SAFETY: closes the child's copy of a descriptor the parent owns;
        // nothing in the child uses it.
        unsafe { libc::close(fd.as_raw_fd()) };
    }
    for (source, target) in plan.fds {
        if raw_dup2(source.as_raw_fd(), *target).is_err() {
            return child_exit::DUP2;
        }
    }
    let null = plan.null.as_raw_fd();
    let std_targets: &[RawFd] = if plan.keep_stderr {
        &[0, 1]
    } else {
        &[0, 1, 2]
    };
    for target in std_targets {
        if raw_dup2(null, *target).is_err() {
            return child_exit::DUP2;
        }
    }
    let mut byte = 0u8;
    loop {
        // SAFETY: reads at most one byte into a live local.
        let n = unsafe { libc::read(plan.sync_target, (&mut byte as *mut u8).cast(), 1) };
        if n == 1 {
            break;
        }
        if n == 0 {
            return child_exit::SYNC_EOF;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return child_exit::SYNC_READ;
        }
    }
    // SAFETY: `cwd` is NUL-terminated and alive (owned by the plan).
    if unsafe { libc::chdir(plan.cwd.as_ptr()) } != 0 {
        return child_exit::CHDIR;
    }
    // Raw syscalls, not glibc's wrappers: those signal every thread glibc
    // believes exists, and a raw clone leaves glibc's thread list stale.
    // SAFETY: setgroups with size 0 reads no memory.
    if unsafe { libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) } != 0 {
        return child_exit::SETGROUPS;
    }
    // SAFETY: plain integer arguments.
    if unsafe { libc::syscall(libc::SYS_setresgid, 0u32, 0u32, 0u32) } != 0 {
        return child_exit::SETRESGID;
    }
    // SAFETY: plain integer arguments.
    if unsafe { libc::syscall(libc::SYS_setresuid, 0u32, 0u32, 0u32) } != 0 {
        return child_exit::SETRESUID;
    }
    // SAFETY: argv and envp are NULL-terminated arrays of NUL-terminated
    // strings owned by `plan`, alive until exec replaces the image.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            plan.exe.as_raw_fd(),
            c"".as_ptr(),
            plan.argv.as_ptr(),
            plan.envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    child_exit::EXEC
}

fn raw_dup2(source: RawFd, target: RawFd) -> Result<(), ()> {
    loop {
        // SAFETY: dup2 on descriptor numbers; the target is ours to replace.
        if unsafe { libc::dup2(source, target) } >= 0 {
            return Ok(());
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EBUSY) {
            return Err(());
        }
    }
}

/// `execve(path, argv, envp)`; returns only on failure.
pub fn execve(path: &CStr, argv: &Argv, envp: &Argv) -> io::Error {
    // SAFETY: all three are NUL-terminated / NULL-terminated and alive for
    // the call; on success the image is replaced.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}

/// `execveat(dir, name, argv, envp, 0)`; returns only on failure.
pub fn execveat(dir: BorrowedFd<'_>, name: &CStr, argv: &Argv, envp: &Argv) -> io::Error {
    // SAFETY: as for `execve`; `dir` is a live descriptor borrowed for the call.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            dir.as_raw_fd(),
            name.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            0,
        )
    };
    io::Error::last_os_error()
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: a live pidfd, a signal number, a NULL siginfo.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `pidfd_open(pid, 0)`: a pidfd for a child of ours (readable once it
/// exits; [`pidfd_wait`] reaps it).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments; returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just created this descriptor for us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Exit code of a [`spawn_program`] child when no candidate could be
/// exec'd (as a shell reports a command that cannot run).
pub const SPAWN_EXEC_FAILED: i32 = 127;
/// Exit code of a [`spawn_program`] child that could not enter its
/// working directory.
pub const SPAWN_CHDIR_FAILED: i32 = 126;

/// Fork a child of this single-threaded process that closes every
/// descriptor from 3 up, enters `cwd` and execs the first of `programs`
/// that exists (`execve` with `argv` and `envp`; a candidate missing with
/// ENOENT is skipped). Returns its pid and a pidfd. The child ends with
/// [`SPAWN_CHDIR_FAILED`] or [`SPAWN_EXEC_FAILED`] (after writing why to
/// stderr) when it cannot start.
pub fn spawn_program<S: AsRef<str>>(
    cwd: &CStr,
    programs: &[&CStr],
    argv: &Argv,
    envp: &[S],
) -> io::Result<Child> {
    fork_waiting(cwd, programs, argv)?.start(envp)
}

/// [`spawn_program`] in two steps: the fork now, the exec once
/// [`WaitingChild::start`] gives the environment. Until then the child
/// waits on a pipe; when the pipe closes without one (the parent went
/// away), it exits 0.
pub fn fork_waiting(cwd: &CStr, programs: &[&CStr], argv: &Argv) -> io::Result<WaitingChild> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let Some(pid) = fork_single_threaded()? else {
        drop(write);
        let code = match read_to_end(read) {
            Ok(env) if env.is_empty() => 0,
            Ok(env) => {
                let vars: Vec<&str> = env
                    .split(|&b| b == 0)
                    .filter_map(|v| std::str::from_utf8(v).ok())
                    .collect();
                match Argv::new(&vars) {
                    Ok(envp) => exec_first(cwd, programs, argv, &envp),
                    Err(_) => SPAWN_EXEC_FAILED,
                }
            }
            Err(_) => SPAWN_EXEC_FAILED,
        };
        // SAFETY: ends the child without running the parent's
        // destructors or atexit handlers.
        unsafe { libc::_exit(code) }
    };
    drop(read);
    let pidfd = pidfd_open(pid)?;
    Ok(WaitingChild {
        child: Child { pid, pidfd },
        start: write,
    })
}

/// A child from [`fork_waiting`], waiting for its environment.
pub struct WaitingChild {
    pub child: Child,
    start: OwnedFd,
}

impl WaitingChild {
    /// Exec the program with `envp` (`KEY=value` strings, without NULs).
    pub fn start<S: AsRef<str>>(self, envp: &[S]) -> io::Result<Child> {
        let mut bytes = Vec::new();
        for var in envp {
            bytes.extend_from_slice(var.as_ref().as_bytes());
            bytes.push(0);
        }
        let mut pipe = std::fs::File::from(self.start);
        std::io::Write::write_all(&mut pipe, &bytes)?;
        drop(pipe);
        Ok(self.child)
    }
}

fn read_to_end(fd: OwnedFd) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut bytes)?;
    Ok(bytes)
}

/// The child's side of [`spawn_program`]; returns only on failure. It
/// takes no lock (stderr is written unbuffered, without Rust's stderr
/// lock) and only allocates, which glibc's fork keeps usable in the child,
/// so it is sound after a fork from a test's many threads too.
fn exec_first(cwd: &CStr, programs: &[&CStr], argv: &Argv, envp: &Argv) -> i32 {
    let say = |text: String| {
        let _ = nix::unistd::write(io::stderr(), text.as_bytes());
    };
    if close_from(3).is_err() || reset_signals().is_err() {
        return SPAWN_EXEC_FAILED;
    }
    // SAFETY: `cwd` is NUL-terminated and alive.
    if unsafe { libc::chdir(cwd.as_ptr()) } != 0 {
        let err = io::Error::last_os_error();
        say(format!("cannot enter {}: {err}\n", cwd.to_string_lossy()));
        return SPAWN_CHDIR_FAILED;
    }
    let mut last = io::Error::from_raw_os_error(libc::ENOENT);
    for program in programs {
        last = execve(program, argv, envp);
        if last.raw_os_error() != Some(libc::ENOENT) {
            break;
        }
    }
    let names: Vec<_> = programs.iter().map(|p| p.to_string_lossy()).collect();
    say(format!("cannot execute {}: {last}\n", names.join(" or ")));
    SPAWN_EXEC_FAILED
}

/// Give the program a clean signal state: no blocked signals, and
/// SIGPIPE back to its default (Rust's runtime ignores it, and an ignored
/// signal stays ignored across exec).
fn reset_signals() -> io::Result<()> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    // SAFETY: SIG_DFL installs no code.
    unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) }?;
    Ok(())
}

/// How a reaped child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

/// `waitid(P_PIDFD, pidfd, WEXITED | flags)`: reap the child. With
/// `nohang`, returns `Ok(None)` when it is still running.
pub fn pidfd_wait(pidfd: BorrowedFd<'_>, nohang: bool) -> io::Result<Option<ExitStatus>> {
    // SAFETY: siginfo_t is plain data; all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | if nohang { libc::WNOHANG } else { 0 };
    loop {
        // SAFETY: `info` is a live, writable siginfo_t; `pidfd` is live.
        let ret = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                flags,
            )
        };
        if ret == 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
    // SAFETY: waitid filled `info` (or left it zeroed with WNOHANG).
    let (pid, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(if code == libc::CLD_EXITED {
        ExitStatus::Exited(status)
    } else {
        ExitStatus::Signaled(status)
    }))
}

/// `close_range(first, ~0, 0)`: close every descriptor from `first` up.
pub fn close_from(first: RawFd) -> io::Result<()> {
    close_range(first, RawFd::MAX)
}

/// `close_range(first, last, 0)`: close descriptors `first..=last`.
pub fn close_range(first: RawFd, last: RawFd) -> io::Result<()> {
    // SAFETY: closes descriptors; the caller declares nothing in the range
    // is still owned (the sandbox init, before exec or before it becomes
    // the reaper).
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0u32) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fork()`, for a process that runs a single thread (the sandbox init):
/// `Ok(None)` in the child, `Ok(Some(pid))` in the parent.
pub fn fork_single_threaded() -> io::Result<Option<i32>> {
    // SAFETY: the caller has one thread, so the child's copy of every lock
    // and allocator state is consistent; glibc's fork runs its atfork
    // handlers as usual.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid)),
    }
}

extern "C" fn wake_only(_: libc::c_int) {}

/// Block `sig` and give it a handler that does nothing: it stays pending
/// until a `ppoll` whose mask lets it in, and then interrupts that wait
/// (a signal left at its default "ignore" would be discarded instead).
pub fn catch_blocked(sig: nix::sys::signal::Signal) -> io::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow};
    let mut set = SigSet::empty();
    set.add(sig);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    let action = SigAction::new(SigHandler::Handler(wake_only), SaFlags::empty(), set);
    // SAFETY: the handler is async-signal-safe (it does nothing).
    unsafe { nix::sys::signal::sigaction(sig, &action) }?;
    Ok(())
}

/// Ignore `sig` (SIG_IGN).
pub fn ignore_signal(sig: nix::sys::signal::Signal) -> io::Result<()> {
    // SAFETY: SIG_IGN installs no code.
    unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigIgn) }?;
    Ok(())
}

/// `prctl(PR_SET_SECUREBITS, bits)`.
pub fn set_securebits(bits: libc::c_ulong) -> io::Result<()> {
    // SAFETY: integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `prctl(PR_GET_SECUREBITS)`.
pub fn securebits() -> io::Result<libc::c_ulong> {
    // SAFETY: integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as libc::c_ulong)
}

/// `prctl(PR_CAPBSET_DROP, cap)`.
pub fn capbset_drop(cap: u32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Run `f` in a forked child and return what it returned (for tests of
/// steps that change process-wide state: namespaces, capabilities). The
/// child reports its error text through a pipe and ends with `_exit`.
pub fn run_in_fork(f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    use std::io::Read;
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    // SAFETY: glibc's fork runs its atfork handlers (malloc stays usable in
    // the child); the child only runs `f`, writes to the pipe and `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error().to_string());
    }
    if pid == 0 {
        drop(read);
        let code = match f() {
            Ok(()) => 0,
            Err(msg) => {
                let _ = nix::unistd::write(&write, msg.as_bytes());
                1
            }
        };
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    drop(write);
    let mut msg = String::new();
    let _ = std::fs::File::from(read).read_to_string(&mut msg);
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a live int.
    if unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        return Err(io::Error::last_os_error().to_string());
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else if msg.is_empty() {
        Err(format!("child ended with status {status:#x}"))
    } else {
        Err(msg)
    }
}

/// Whether a process with this pid exists (`kill(pid, 0)`; ESRCH means no).
pub fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    let ret = unsafe { libc::kill(pid, 0) };
    ret == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn argv_is_null_terminated() {
        let argv = Argv::new(&["a", "bc"]).unwrap();
        assert_eq!(argv.ptrs.len(), 3);
        assert!(argv.ptrs[2].is_null());
        assert!(Argv::new(&["a\0b"]).is_err());
    }

    /// Clone a child (no new namespaces) that waits for the sync byte on fd
    /// 7, enters `cwd` and execs `program` with `argv`; returns it and the
    /// parent's end of the sync pipe.
    fn clone_test_child(program: &str, argv: &[&str], cwd: &CStr) -> (Child, OwnedFd) {
        let exe = std::fs::File::open(program).unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let argv = Argv::new(argv).unwrap();
        let envp = Argv::new::<&str>(&[]).unwrap();
        let r_high = crate::sys::fd::dup_at_least(r.as_fd(), 64).unwrap();
        let fds = [(r_high.as_fd(), 7)];
        let plan = ChildPlan {
            fds: &fds,
            close: &[w.as_fd()],
            null: null.as_fd(),
            keep_stderr: true,
            sync_target: 7,
            cwd,
            exe: exe.as_fd(),
            argv: &argv,
            envp: &envp,
        };
        (clone_and_exec(0, &plan).unwrap(), w)
    }

    #[test]
    fn clone_exec_true_and_reap_through_pidfd() {
        let (child, sync) = clone_test_child("/bin/true", &["true"], c"/");
        assert!(child.pid > 0);
        assert_eq!(pidfd_wait(child.pidfd.as_fd(), true).unwrap(), None);
        nix::unistd::write(&sync, b"x").unwrap();
        let status = pidfd_wait(child.pidfd.as_fd(), false).unwrap();
        assert_eq!(status, Some(ExitStatus::Exited(0)));
        assert!(!process_exists(child.pid));
    }

    /// Failures before exec end the child with the step's own code.
    #[test]
    fn clone_child_reports_failed_step_by_exit_code() {
        let (child, sync) = clone_test_child("/bin/true", &["true"], c"/nonexistent/sprout-test");
        nix::unistd::write(&sync, b"x").unwrap();
        let status = pidfd_wait(child.pidfd.as_fd(), false).unwrap();
        assert_eq!(status, Some(ExitStatus::Exited(child_exit::CHDIR)));
    }

    /// A parent that dies (closes its end) before the sync byte leaves no
    /// child waiting for ever.
    #[test]
    fn clone_child_exits_when_parent_end_closes() {
        let (child, sync) = clone_test_child("/bin/true", &["true"], c"/");
        drop(sync);
        let status = pidfd_wait(child.pidfd.as_fd(), false).unwrap();
        assert_eq!(status, Some(ExitStatus::Exited(child_exit::SYNC_EOF)));
    }

    #[test]
    fn spawn_program_runs_the_first_that_exists_in_its_directory() {
        let argv = Argv::new(&["sh", "-c", "test \"$(pwd)\" = /tmp && exit 7"]).unwrap();
        let envp = ["PATH=/usr/bin:/bin"];
        let child =
            spawn_program(c"/tmp", &[c"/nonexistent/sh", c"/bin/sh"], &argv, &envp).unwrap();
        let status = pidfd_wait(child.pidfd.as_fd(), false).unwrap();
        assert_eq!(status, Some(ExitStatus::Exited(7)));

        let child = spawn_program(c"/", &[c"/nonexistent/a"], &argv, &envp).unwrap();
        let status = pidfd_wait(child.pidfd.as_fd(), false).unwrap();
        assert_eq!(status, Some(ExitStatus::Exited(SPAWN_EXEC_FAILED)));
        let child = spawn_program(c"/nonexistent", &[c"/bin/sh"], &argv, &envp).unwrap();
        let status = pidfd_wait(child.pidfd.as_fd(), false).unwrap();
        assert_eq!(status, Some(ExitStatus::Exited(SPAWN_CHDIR_FAILED)));
    }

    #[test]
    fn a_waiting_child_execs_with_the_environment_it_is_given_or_exits() {
        let argv = Argv::new(&["sh", "-c", "exit $CODE"]).unwrap();
        let waiting = fork_waiting(c"/", &[c"/bin/sh"], &argv).unwrap();
        let child = waiting.start(&["CODE=9"]).unwrap();
        let status = pidfd_wait(child.pidfd.as_fd(), false).unwrap();
        assert_eq!(status, Some(ExitStatus::Exited(9)));
        // Its parent gave up before the exec: it ends quietly.
        let waiting = fork_waiting(c"/", &[c"/bin/sh"], &argv).unwrap();
        let pidfd = waiting.child.pidfd.try_clone().unwrap();
        drop(waiting);
        let status = pidfd_wait(pidfd.as_fd(), false).unwrap();
        assert_eq!(status, Some(ExitStatus::Exited(0)));
    }

    #[test]
    fn signal_through_pidfd() {
        let (child, sync) = clone_test_child("/bin/sleep", &["sleep", "30"], c"/");
        nix::unistd::write(&sync, b"x").unwrap();
        pidfd_send_signal(child.pidfd.as_fd(), libc::SIGKILL).unwrap();
        let status = pidfd_wait(child.pidfd.as_fd(), false).unwrap();
        assert_eq!(status, Some(ExitStatus::Signaled(libc::SIGKILL)));
    }
}
