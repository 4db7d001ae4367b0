//! Seccomp policy files: parsing (every entry must carry a comment),
//! merging a runtime's additions into the base policy, and compiling the
//! merged policy to BPF layers with seccompiler.

#![deny(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};

use seccompiler::TargetArch;
use serde::{Deserialize, Serialize};

use super::{SeccompError, SeccompProgram, BASE_FILE, LAYERS, MAX_INSNS};

/// One policy file: filter layers by name, in seccompiler's JSON format.
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
        if !LAYERS.contains(&layer.as_str()) {
            return Err(policy_err(format!(
                "unknown layer {layer:?} (known: {LAYERS:?})"
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
/// unconditionally may appear only once per layer (seccompiler would
/// otherwise keep only the conditional entries), and no syscall may be
/// both allowed and in the kill or ENOSYS layer.
pub(super) fn merge(
    runtime: &'static str,
    mut base: PolicyFile,
    file: &'static str,
    additions: PolicyFile,
) -> Result<PolicyFile, SeccompError> {
    for (layer, extra) in additions {
        let Some(target) = base.get_mut(&layer) else {
            return Err(SeccompError::Policy {
                file,
                reason: format!("layer {layer:?} is not in {BASE_FILE}"),
            });
        };
        if target.mismatch_action != extra.mismatch_action
            || target.match_action != extra.match_action
        {
            return Err(SeccompError::Policy {
                file,
                reason: format!("layer {layer:?} must use the actions of {BASE_FILE}"),
            });
        }
        target.filter.extend(extra.filter);
    }
    for filter in base.values() {
        let mut seen: BTreeMap<&str, (usize, bool)> = BTreeMap::new();
        for rule in &filter.filter {
            let entry = seen.entry(&rule.syscall).or_default();
            entry.0 += 1;
            entry.1 |= rule.args.is_none();
        }
        if let Some((syscall, _)) = seen.iter().find(|(_, (n, bare))| *bare && *n > 1) {
            return Err(SeccompError::Duplicate {
                runtime,
                syscall: syscall.to_string(),
            });
        }
    }
    let names = |layer: &str| -> BTreeSet<String> {
        base.get(layer)
            .map(|f| f.filter.iter().map(|r| r.syscall.clone()).collect())
            .unwrap_or_default()
    };
    let allowed = names("allow");
    for layer in ["kill", "enosys"] {
        if let Some(syscall) = names(layer).intersection(&allowed).next() {
            return Err(SeccompError::Policy {
                file,
                reason: format!("{syscall} is both allowed and in the {layer} layer"),
            });
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

/// x86_64 syscalls the policies name that aarch64 does not have (it only
/// has the `*at`/`p*` variants, which the policies list as well).
const NOT_ON_AARCH64: [&str; 20] = [
    "access",
    "arch_prctl",
    "dup2",
    "epoll_create",
    "epoll_wait",
    "fork",
    "getpgrp",
    "lstat",
    "mkdir",
    "open",
    "pipe",
    "poll",
    "readlink",
    "rename",
    "rmdir",
    "select",
    "stat",
    "time",
    "unlink",
    "vfork",
];

/// Compiles a merged policy into layers in [`LAYERS`] order. The policies
/// use x86_64 names; on aarch64 the names in [`NOT_ON_AARCH64`] are
/// dropped first, which only narrows the allowlist. Any other unknown name
/// is an error (a typo).
pub(super) fn compile_policy(
    runtime: &'static str,
    mut policy: PolicyFile,
) -> Result<SeccompProgram, SeccompError> {
    let arch = target_arch()?;
    if arch == TargetArch::aarch64 {
        for filter in policy.values_mut() {
            filter
                .filter
                .retain(|r| !NOT_ON_AARCH64.contains(&r.syscall.as_str()));
        }
    }
    let json = serde_json::to_vec(&policy).map_err(|source| SeccompError::Parse {
        file: BASE_FILE,
        source,
    })?;
    let mut map = seccompiler::compile_from_json(json.as_slice(), arch)
        .map_err(|source| SeccompError::Compile { runtime, source })?;
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
