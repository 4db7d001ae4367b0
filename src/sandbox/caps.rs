//! Dropping every capability the init holds in its user namespace, so that
//! neither the runtime nor anything it execs (as uid 0 of the namespace)
//! regains any.

use caps::CapSet;

use super::confine::{ConfineError, Step};
use crate::sys::process;

/// SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
/// SECBIT_NO_SETUID_FIXUP_LOCKED: exec as uid 0 grants no capabilities, and
/// that can never be undone.
const SECUREBITS: libc::c_ulong = 0x01 | 0x02 | 0x04 | 0x08;

/// Highest capability number tried when emptying the bounding set (the
/// kernel answers EINVAL past its last one).
const MAX_CAP: u32 = 63;

/// Bounding set first and securebits next (both need CAP_SETPCAP), then
/// ambient, inheritable, effective and permitted.
pub fn drop_all() -> Result<(), ConfineError> {
    for cap in 0..=MAX_CAP {
        match process::capbset_drop(cap) {
            Ok(()) => {}
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => break,
            Err(err) => {
                return Err(ConfineError::new(
                    Step::DropCaps,
                    format!("prctl(PR_CAPBSET_DROP, {cap})"),
                    err,
                ))
            }
        }
    }
    process::set_securebits(SECUREBITS).map_err(|e| {
        ConfineError::new(
            Step::Securebits,
            "prctl(PR_SET_SECUREBITS, NOROOT|NO_SETUID_FIXUP, locked)",
            e,
        )
    })?;
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set).map_err(|e| {
            ConfineError::new(
                Step::DropCaps,
                format!("clear {set:?} capabilities"),
                std::io::Error::other(e.to_string()),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs in a forked child (it changes process-wide state) that reports
    /// through its exit status.
    #[test]
    fn drop_all_leaves_nothing() {
        if !crate::testing::require_root("sandbox::caps::drop_all_leaves_nothing") {
            return;
        }
        let status = crate::sys::process::run_in_fork(|| {
            drop_all().map_err(|e| e.to_string())?;
            for set in [
                CapSet::Bounding,
                CapSet::Ambient,
                CapSet::Inheritable,
                CapSet::Effective,
                CapSet::Permitted,
            ] {
                let held = caps::read(None, set).map_err(|e| e.to_string())?;
                if !held.is_empty() {
                    return Err(format!("{set:?} still holds {held:?}"));
                }
            }
            let bits = process::securebits().map_err(|e| e.to_string())?;
            if bits & SECUREBITS != SECUREBITS {
                return Err(format!("securebits {bits:#x}"));
            }
            Ok(())
        });
        assert_eq!(status, Ok(()));
    }
}
