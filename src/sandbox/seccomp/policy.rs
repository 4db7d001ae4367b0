//! Seccomp policy files: parsing (every entry must carry a comment),
//! merging a runtime's additions into the base policy, and compiling the
//! merged policy to BPF layers with seccompiler (the `allow` layer's
//! answer for syscalls it does not name is set here, see the parent
//! module's docs).

#![deny(unsafe_code)]

use std::collections::BTreeMap;

use seccompiler::{SeccompAction, TargetArch};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{SeccompError, SeccompProgram, BASE_FILE, LAYERS, MAX_INSNS, SECTIONS};

/// A BPF `ret` of a constant (BPF_RET | BPF_K), as seccompiler emits it.
const RET_K: u16 = 0x06;

/// One policy file: sections by name, each in seccompiler's JSON format.
/// The types mirror seccompiler's but make every comment mandatory.
pub(super) type PolicyFile = BTreeMap<String, Filter>;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Filter {
    pub(super) mismatch_action: serde_json::Value,
    pub(super) match_action: serde_json::Value,
    pub(super) filter: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Rule {
    pub(super) syscall: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) args: Option<Vec<Condition>>,
    pub(super) comment: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Condition {
    index: u8,
    #[serde(rename = "type")]
    arg_type: String,
    op: serde_json::Value,
    val: u64,
    pub(super) comment: String,
}

pub(super) fn parse(file: &'static str, text: &str) -> Result<PolicyFile, SeccompError> {
    let policy: PolicyFile =
        serde_json::from_str(text).map_err(|source| SeccompError::Parse { file, source })?;
    let policy_err = |reason: String| SeccompError::Policy { file, reason };
    for (layer, filter) in &policy {
        if !SECTIONS.contains(&layer.as_str()) {
            return Err(policy_err(format!(
                "unknown section {layer:?} (known: {SECTIONS:?})"
            )));
        }
        for rule in &filter.filter {
            if rule.comment.trim().is_empty() {
                return Err(policy_err(format!("{} has no comment", rule.syscall)));
            }
            for cond in rule.args.iter().flatten() {
                if cond.comment.trim().is_empty() {
                    return Err(policy_err(format!(
                        "{} argument {} has no comment",
                        rule.syscall, cond.index
                    )));
                }
                if cond.arg_type != "dword" && cond.arg_type != "qword" {
                    return Err(policy_err(format!(
                        "{} argument {}: type must be dword or qword",
                        rule.syscall, cond.index
                    )));
                }
            }
        }
    }
    Ok(policy)
}

/// Merges a runtime's additions into the base policy. A syscall allowed
/// unconditionally may appear only once in `allow` (seccompiler would
/// otherwise keep only the conditional entries), and a syscall may be in
/// only one section: allowed, killed, EPERM or ENOSYS.
pub(super) fn merge(
    runtime: &'static str,
    mut base: PolicyFile,
    file: &'static str,
    additions: PolicyFile,
) -> Result<PolicyFile, SeccompError> {
    for (section, extra) in additions {
        let Some(target) = base.get_mut(&section) else {
            return Err(SeccompError::Policy {
                file,
                reason: format!("section {section:?} is not in {BASE_FILE}"),
            });
        };
        if target.mismatch_action != extra.mismatch_action
            || target.match_action != extra.match_action
        {
            return Err(SeccompError::Policy {
                file,
                reason: format!("section {section:?} must use the actions of {BASE_FILE}"),
            });
        }
        target.filter.extend(extra.filter);
    }
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for (section, filter) in &base {
        let mut seen: BTreeMap<&str, (usize, bool)> = BTreeMap::new();
        for rule in &filter.filter {
            let entry = seen.entry(&rule.syscall).or_default();
            entry.0 += 1;
            entry.1 |= rule.args.is_none();
        }
        if let Some((syscall, _)) = seen.iter().find(|(_, (n, bare))| *bare && *n > 1) {
            return Err(SeccompError::Duplicate {
                runtime,
                section: section.clone(),
                syscall: syscall.to_string(),
            });
        }
        for syscall in seen.into_keys() {
            if let Some(other) = owner.insert(syscall, section) {
                return Err(SeccompError::Policy {
                    file,
                    reason: format!("{syscall} is in both the {other} and the {section} sections"),
                });
            }
        }
    }
    Ok(base)
}

pub(super) fn target_arch() -> Result<TargetArch, SeccompError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(TargetArch::x86_64),
        "aarch64" => Ok(TargetArch::aarch64),
        arch => Err(SeccompError::UnsupportedArch { arch }),
    }
}

/// x86_64 syscalls the policies name that aarch64 does not have (it has
/// the `*at`, `p*` and newer variants instead, which the policies list as
/// well; x86-only calls such as modify_ldt and iopl have no counterpart).
const NOT_ON_AARCH64: [&str; 41] = [
    "access",
    "alarm",
    "arch_prctl",
    "chmod",
    "chown",
    "creat",
    "dup2",
    "epoll_create",
    "epoll_ctl_old",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "fork",
    "futimesat",
    "getdents",
    "getpgrp",
    "inotify_init",
    "ioperm",
    "iopl",
    "lchown",
    "link",
    "lstat",
    "mkdir",
    "mknod",
    "modify_ldt",
    "open",
    "pause",
    "pipe",
    "poll",
    "readlink",
    "rename",
    "rmdir",
    "select",
    "signalfd",
    "stat",
    "symlink",
    "time",
    "unlink",
    "utime",
    "utimes",
    "vfork",
];

/// Compiles a merged policy into layers in [`LAYERS`] order for `arch`.
/// The policies use x86_64 names; for aarch64 the names in
/// [`NOT_ON_AARCH64`] are dropped first, which only narrows the
/// allowlist. Any other unknown name is an error (a typo).
pub(super) fn compile_policy(
    runtime: &'static str,
    mut policy: PolicyFile,
    arch: TargetArch,
) -> Result<SeccompProgram, SeccompError> {
    if arch == TargetArch::aarch64 {
        for filter in policy.values_mut() {
            filter
                .filter
                .retain(|r| !NOT_ON_AARCH64.contains(&r.syscall.as_str()));
        }
    }
    let section = |name: &str| {
        policy.get(name).ok_or_else(|| SeccompError::Policy {
            file: BASE_FILE,
            reason: format!("section {name:?} is missing"),
        })
    };
    let (allow, enosys) = (section("allow")?, section("enosys")?);
    let action = |value: &serde_json::Value| {
        serde_json::from_value::<SeccompAction>(value.clone())
            .map(u32::from)
            .map_err(|source| SeccompError::Parse {
                file: BASE_FILE,
                source,
            })
    };
    // The enosys section is no layer of its own: its match action is what
    // the allow layer answers for every syscall it does not name.
    if enosys.mismatch_action != json!("allow") {
        return Err(SeccompError::Policy {
            file: BASE_FILE,
            reason: "the enosys section must mismatch with \"allow\"".to_string(),
        });
    }
    let (refused_args, not_named) = (
        action(&allow.mismatch_action)?,
        action(&enosys.match_action)?,
    );
    let compiled: PolicyFile = LAYERS
        .iter()
        .map(|layer| Ok((layer.to_string(), section(layer)?.clone())))
        .collect::<Result<_, SeccompError>>()?;
    let json = serde_json::to_vec(&compiled).map_err(|source| SeccompError::Parse {
        file: BASE_FILE,
        source,
    })?;
    let mut map = seccompiler::compile_from_json(json.as_slice(), arch)
        .map_err(|source| SeccompError::Compile { runtime, source })?;
    // seccompiler has one mismatch action for a named syscall whose
    // arguments match no rule (each syscall's chain ends with its own
    // return) and for a syscall the filter does not name (the filter's
    // last instruction, after every chain): give the latter the enosys
    // section's action.
    let last = map
        .get_mut("allow")
        .and_then(|bpf| bpf.last_mut())
        .filter(|insn| insn.code == RET_K && insn.k == refused_args);
    match last {
        Some(insn) => insn.k = not_named,
        None => {
            return Err(SeccompError::Policy {
                file: BASE_FILE,
                reason: "the compiled allow layer does not end with its mismatch action (hint: seccompiler's output changed; see compile_policy)".to_string(),
            })
        }
    }
    let mut layers = Vec::with_capacity(LAYERS.len());
    for layer in LAYERS {
        let bpf = map.remove(layer).ok_or_else(|| SeccompError::Policy {
            file: BASE_FILE,
            reason: format!("layer {layer:?} is missing"),
        })?;
        if bpf.len() > MAX_INSNS {
            return Err(SeccompError::Policy {
                file: BASE_FILE,
                reason: format!(
                    "layer {layer:?} has {} instructions, over the kernel's {MAX_INSNS}",
                    bpf.len()
                ),
            });
        }
        layers.push(bpf);
    }
    Ok(SeccompProgram { layers })
}
