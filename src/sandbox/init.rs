//! The sandbox init: the sprout binary re-executed as
//! `sprout-sandbox-init` in the freshly cloned child. It reads its
//! configuration, confines itself, forks the runtime and stays as its
//! reaper (see [`super::reaper`]). Failures end it
//! with the failed step's exit code (see [`super::Step`]) after writing the
//! error text to stderr and to the control socket (the daemon reads it with
//! [`super::Sandbox::init_error`]).

use std::io::Read;
use std::os::fd::AsFd;

use super::config::{fds, InitConfig, MAX_CONFIG_BYTES};
use super::confine::{confine, ConfineError, Step};
use super::reaper;

/// Entry point of the re-executed sandbox init process.
pub fn init_main() -> i32 {
    let _ = nix::sys::prctl::set_name(c"sprout:init");
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let err = match read_config() {
        Ok(config) => match confine(&config) {
            Ok(env) => reaper::start(&config, env),
            Err(err) => err,
        },
        Err(err) => err,
    };
    report(&err);
    err.step.exit_code()
}

/// Read the JSON configuration from fd 7 (the sync byte was consumed
/// before exec) until the daemon closes the pipe.
fn read_config() -> Result<InitConfig, ConfineError> {
    let pipe = crate::sys::fd::inherited(fds::CONFIG)
        .map_err(|e| ConfineError::new(Step::ReadConfig, "take the config pipe (fd 7)", e))?;
    let mut bytes = Vec::new();
    std::fs::File::from(pipe)
        .take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ConfineError::new(Step::ReadConfig, "read the config pipe", e))?;
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(ConfineError::new(
            Step::ReadConfig,
            format!("configuration larger than {MAX_CONFIG_BYTES} bytes"),
            std::io::ErrorKind::InvalidData.into(),
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ConfineError::new(Step::ReadConfig, "parse the configuration", e.into()))
}

/// Tell whoever listens why the init failed. Best effort: stderr is
/// /dev/null before the fork (the daemon's with
/// SPROUT_SANDBOX_STDERR=inherit), the output pipe after it.
fn report(err: &ConfineError) {
    let text = format!("sprout-sandbox-init: {err}");
    eprintln!("{text}");
    if let Ok(control) = crate::sys::fd::dup_inherited(fds::CONTROL) {
        let _ = crate::sys::socket::send_nonblocking(control.as_fd(), text.as_bytes());
    }
}
