"""The adversarial suite's python payloads (tests/adversarial.rs).

Each handler tries one kind of escape or abuse from inside a real sandbox
and reports the exact outcome (an errno name, a signal, a count); the
tests assert it. `probe` is the static C program built from probe.c and
shipped beside this file.
"""

import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time

# The function's code, as on Lambda.
PROBE = "/var/task/probe"


def _err(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__


def _attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return _err(e)


def syscalls(event, context):
    """Every syscall probe of probe.c, as {name: outcome}."""
    out = subprocess.run([PROBE, "syscalls"], capture_output=True, text=True, timeout=30)
    result = {}
    for line in out.stdout.splitlines():
        name, _, outcome = line.partition(" ")
        result[name] = outcome
    result["_exit"] = out.returncode
    return result


def kill(event, context):
    """Become probe.c and make a never-legitimate syscall as the runtime."""
    if event == "hello":
        return hello(event, context)
    os.execv(PROBE, ["probe", "kill", event])


def _write(path):
    with open(path, "w") as f:
        f.write("1")


def _read(path):
    with open(path) as f:
        f.read(1)


def _fds():
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            pass  # the descriptor listdir itself used
    return fds


def _mount_options(path):
    """Per-mount options of the mount `path` is on (the last, innermost)."""
    best, options = "", []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4]
            under = path == point or path.startswith(point.rstrip("/") + "/")
            if under and len(point) >= len(best):
                best, options = point, fields[5].split(",")
    return options


def inside(event, context):
    """Items 1-3 and 6-8 of the issue, as seen by the runtime itself."""
    status = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    libc = ctypes.CDLL(None, use_errno=True)
    setuid = libc.setuid(0)
    setuid_errno = errno.errorcode.get(ctypes.get_errno(), "") if setuid else "ok"
    suid = [p for p in ("/usr/bin/su", "/usr/bin/passwd", "/usr/bin/mount", "/usr/bin/newgrp")
            if os.path.exists(p) and os.stat(p).st_mode & 0o4000]
    return {
        "fds": _fds(),
        "cwd": os.getcwd(),
        "cwd_link": os.readlink("/proc/self/cwd"),
        "root_entries": sorted(os.listdir("/")),
        "env": sorted(os.environ),
        "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "pid": os.getpid(),
        "init_fds": _attempt(lambda: os.listdir("/proc/1/fd")),
        "init_mem": _attempt(lambda: _read("/proc/1/mem")),
        "no_new_privs": status.get("NoNewPrivs"),
        "uid": os.getuid(),
        "setuid_binaries": suid,
        "usr_bin_mount": _mount_options("/usr/bin"),
        "setuid0": setuid_errno,
        "write": {p: _attempt(lambda p=p: _write(p)) for p in (
            "/proc/sys/kernel/hostname", "/proc/sysrq-trigger",
            "/sys/kernel/profiling", "/proc/self/oom_score_adj_x", "/x",
            "/usr/x", "/etc/passwd", "/var/runtime/x", "/var/task/app.py",
            "/var/task/new", "/opt/x")},
        "read": {p: _attempt(lambda p=p: _read(p)) for p in (
            "/proc/kcore", "/proc/kallsyms", "/proc/keys", "/proc/sysrq-trigger",
            "/proc/sys/kernel/hostname", "/sys/kernel/profiling")},
        "mknod": _attempt(lambda: os.mknod("/tmp/null", 0o600 | 0o020000, os.makedev(1, 3))),
        "dev": sorted(os.listdir("/dev")),
        "oom_score_adj": open("/proc/self/oom_score_adj").read().strip(),
        "daemon_socket": _attempt(lambda: socket.socket(socket.AF_UNIX).connect(event["socket"])),
        "rlimit_nofile": __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE),
        "rlimit_fsize": __import__("resource").getrlimit(__import__("resource").RLIMIT_FSIZE),
    }


def forkbomb(event, context):
    """Fork until the pids limit (probe.c); every child keeps trying."""
    out = subprocess.run([PROBE, "forkbomb"], capture_output=True, text=True, timeout=30)
    refused, forked = out.stdout.split()
    return {"fork": refused, "forked": int(forked)}


def threadbomb(event, context):
    """Start threads until the pids limit refuses one."""
    started = 0
    stop = threading.Event()
    try:
        while True:
            threading.Thread(target=stop.wait, daemon=True).start()
            started += 1
    except RuntimeError as e:
        stop.set()
        return {"thread": type(e).__name__, "started": started}


def membomb(event, context):
    """Several processes allocating until the memory limit."""
    for _ in range(3):
        if os.fork() == 0:
            hog = []
            while True:
                hog.append(bytearray(8 * 1024 * 1024))
    hog = []
    while True:
        hog.append(bytearray(8 * 1024 * 1024))


def tmpfill(event, context):
    """Fill /tmp with bytes, then with inodes, then open files until EMFILE."""
    marker = "/tmp/" + event["marker"]
    open(marker, "w").close()
    written, n = 0, 0
    chunk = b"x" * (1 << 20)
    space = None
    while space is None:
        try:
            with open("/tmp/fill-%d" % n, "wb") as f:
                for _ in range(16):
                    f.write(chunk)
                    f.flush()
                    written += len(chunk)
            n += 1
        except OSError as e:
            space = _err(e)
    for i in range(n + 1):
        try:
            os.unlink("/tmp/fill-%d" % i)
        except OSError:
            pass
    files, inodes = 0, None
    while inodes is None:
        try:
            os.close(os.open("/tmp/i%d" % files, os.O_CREAT | os.O_WRONLY, 0o600))
            files += 1
        except OSError as e:
            inodes = _err(e)
    held, nofile = [], None
    while nofile is None:
        try:
            held.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as e:
            nofile = _err(e)
    for fd in held:
        os.close(fd)
    big = None
    try:
        os.unlink("/tmp/i0")
        with open("/tmp/big", "wb") as f:
            f.truncate((10240 << 20) + 1)
        big = "ok"
    except OSError as e:
        big = _err(e)
    return {"space": space, "written_mib": written >> 20, "inodes": inodes,
            "files": files, "nofile": nofile, "fsize": big}


def spin(event, context):
    """Burn CPU in several threads and processes, ignoring SIGTERM."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    subprocess.Popen([PROBE, "spin", "2"])
    for _ in range(2):
        threading.Thread(target=lambda: [0 for _ in iter(int, 1)], daemon=True).start()
    while True:
        pass


def orphans(event, context):
    """Leave a double-forked daemon, a background child and a zombie."""
    pids = {}
    r, w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.write(w, str(os.getpid()).encode())
            os.close(w)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                time.sleep(60)
        os._exit(0)
    os.close(w)
    pids["daemon"] = int(os.read(r, 32))
    os.close(r)
    pids["background"] = subprocess.Popen(["/usr/bin/sleep", "600"]).pid
    zombie = os.fork()
    if zombie == 0:
        os._exit(0)
    pids["zombie"] = zombie
    time.sleep(0.1)
    pids["visible"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    if event.get("then") == "crash":
        os._exit(7)
    return pids


def _state(pid):
    """A process's state letter from /proc, None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        # Gone between the listing and the open, or between open and read.
        return None


def zombies(event, context):
    """Double-fork `n` processes that exit at once: orphans re-parented to
    pid 1. Report how many are still in the process table (zombies nobody
    reaps) after a bounded wait."""
    r, w = os.pipe()
    for _ in range(event["n"]):
        child = os.fork()
        if child == 0:
            if os.fork() == 0:
                os.write(w, b"%d\n" % os.getpid())
            os._exit(0)
        os.waitpid(child, 0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        orphans = [int(p) for p in f.read().split()]
    deadline = time.monotonic() + 1
    while True:
        left = {p: s for p in orphans if (s := _state(p)) is not None}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return {"orphans": len(orphans), "left": left}


def say(event, context):
    """One line to stdout, one to stderr."""
    print(event["line"])
    print(event["line"] + " (stderr)", file=sys.stderr, flush=True)
    return "said"


def crash(event, context):
    """End the runtime without a reply, in the way the event names."""
    how = event["how"]
    if how == "segv":
        ctypes.string_at(0)
    elif how == "abort":
        os.abort()
    elif how == "exit":
        os._exit(0)
    elif how == "exec":
        os.execv("/usr/bin/true", ["true"])
    raise ValueError(how)


def flood(event, context):
    """Write `gib` GiB to stdout and to stderr."""
    chunk = b"y" * (1 << 20)
    for fd in (1, 2):
        for _ in range(event["gib"] * 1024):
            os.write(fd, chunk)
    return {"written_gib": 2 * event["gib"]}


def hello(event, context):
    return {"pid": os.getpid(), "visible": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
