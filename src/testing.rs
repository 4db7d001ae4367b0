//! Helpers shared by unit and integration tests.

/// The one gate for tests that need root: returns `true` when the test can
/// run. Without root it prints why the test is skipped, and panics instead
/// when `SPROUT_MUST_WORK=1` (as CI sets), so a skip never looks like a pass.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("SPROUT_MUST_WORK").is_some_and(|v| v == "1") {
        panic!("{test}: needs root, and SPROUT_MUST_WORK=1 forbids skipping");
    }
    eprintln!("skipped {test}: needs root");
    false
}
