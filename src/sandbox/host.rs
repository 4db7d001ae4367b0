//! The host around the sandboxes: kernel settings that narrow what a
//! sandbox could reach if seccomp had a gap (checked at daemon start, with
//! a warning each), and the OOM killer's preference between the daemon and
//! its sandboxes.
//!
//! Everything takes its `/proc` root as a parameter so it can be tested on
//! a temporary directory.

use std::io;
use std::path::Path;

/// The daemon's own `oom_score_adj`: never chosen by the OOM killer.
pub const DAEMON_OOM_SCORE_ADJ: i32 = -1000;
/// Every sandbox's `oom_score_adj`: chosen before anything else on the
/// host. Set by the daemon right after clone, because children inherit
/// the daemon's -1000, which would make them unkillable even by their own
/// cgroup's OOM killer.
pub const SANDBOX_OOM_SCORE_ADJ: i32 = 1000;

/// One recommended host setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub sysctl: &'static str,
    /// Under `/proc/sys`.
    pub file: &'static str,
    pub recommended: &'static str,
    ok: fn(&str) -> bool,
    pub why: &'static str,
}

/// The settings docs/threat-model.md recommends.
pub const RECOMMENDED: [Setting; 4] = [
    Setting {
        sysctl: "kernel.io_uring_disabled",
        file: "kernel/io_uring_disabled",
        recommended: "1 (or 2 with --event-loop epoll)",
        ok: |v| v != "0",
        why: "io_uring has been a frequent source of kernel exploits; sandboxes are refused it by seccomp, this refuses it to every unprivileged process",
    },
    Setting {
        sysctl: "kernel.unprivileged_bpf_disabled",
        file: "kernel/unprivileged_bpf_disabled",
        recommended: "1 or 2",
        ok: |v| v != "0",
        why: "unprivileged BPF exposes the verifier and JIT to any process",
    },
    Setting {
        sysctl: "vm.unprivileged_userfaultfd",
        file: "vm/unprivileged_userfaultfd",
        recommended: "0",
        ok: |v| v == "0",
        why: "userfaultfd lets a process stall the kernel mid-copy, widening race windows for exploits",
    },
    Setting {
        sysctl: "dev.tty.legacy_tiocsti",
        file: "dev/tty/legacy_tiocsti",
        recommended: "0",
        ok: |v| v == "0",
        why: "TIOCSTI injects input into a terminal another process reads",
    },
];

/// A recommended setting the host does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostWarning {
    pub sysctl: &'static str,
    pub value: String,
    pub recommended: &'static str,
    pub why: &'static str,
}

/// The recommended settings this host lacks. A setting whose file is
/// missing (an older kernel without the knob) is not reported.
pub fn check_settings(proc_sys: &Path) -> Vec<HostWarning> {
    RECOMMENDED
        .iter()
        .filter_map(|s| {
            let value = std::fs::read_to_string(proc_sys.join(s.file)).ok()?;
            let value = value.trim();
            (!(s.ok)(value)).then(|| HostWarning {
                sysctl: s.sysctl,
                value: value.to_owned(),
                recommended: s.recommended,
                why: s.why,
            })
        })
        .collect()
}

/// Write `oom_score_adj` of process `pid` (`"self"` for the caller) under
/// the `/proc` at `proc_root`.
pub fn set_oom_score_adj(proc_root: &Path, pid: &str, adj: i32) -> io::Result<()> {
    std::fs::write(proc_root.join(pid).join("oom_score_adj"), adj.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, file: &str, value: &str) {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("{value}\n")).unwrap();
    }

    #[test]
    fn reports_each_unsafe_setting_and_skips_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            check_settings(dir.path()).is_empty(),
            "missing knobs are not reported"
        );
        write(dir.path(), "kernel/io_uring_disabled", "0");
        write(dir.path(), "kernel/unprivileged_bpf_disabled", "2");
        write(dir.path(), "vm/unprivileged_userfaultfd", "1");
        write(dir.path(), "dev/tty/legacy_tiocsti", "0");
        let warnings = check_settings(dir.path());
        let names: Vec<_> = warnings.iter().map(|w| w.sysctl).collect();
        assert_eq!(
            names,
            ["kernel.io_uring_disabled", "vm.unprivileged_userfaultfd"]
        );
        assert_eq!(warnings[1].value, "1");
        assert_eq!(warnings[1].recommended, "0");
        write(dir.path(), "kernel/io_uring_disabled", "1");
        write(dir.path(), "vm/unprivileged_userfaultfd", "0");
        write(dir.path(), "dev/tty/legacy_tiocsti", "1");
        let names: Vec<_> = check_settings(dir.path())
            .iter()
            .map(|w| w.sysctl)
            .collect();
        assert_eq!(names, ["dev.tty.legacy_tiocsti"]);
    }

    #[test]
    fn oom_score_adj_is_written_where_asked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("42")).unwrap();
        set_oom_score_adj(dir.path(), "42", SANDBOX_OOM_SCORE_ADJ).unwrap();
        let text = std::fs::read_to_string(dir.path().join("42/oom_score_adj")).unwrap();
        assert_eq!(text, "1000");
    }
}
