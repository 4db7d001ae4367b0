//! The `sprout` command line.
//!
//! Exit codes: 0 success, 1 the function failed (FunctionError), 2 any
//! other error (typed errors from the daemon, connection failures, usage).

#![deny(unsafe_code)]

mod args;
mod commands;
mod output;

use std::io::Write;

use clap::Parser;
use tracing_subscriber::EnvFilter;

pub use args::{Cli, Command};
pub use output::{Rendered, EXIT_ERROR, EXIT_FUNCTION_ERROR, EXIT_OK};

pub fn main() -> i32 {
    if std::env::args_os()
        .next()
        .is_some_and(|arg0| arg0 == "sprout-sandbox-init")
    {
        return crate::sandbox::init_main();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                EXIT_ERROR
            } else {
                EXIT_OK
            };
        }
    };
    run(cli)
}

/// Run one parsed command line, print its output, return its exit code.
pub fn run(cli: Cli) -> i32 {
    let rendered = match cli.command {
        Command::Serve(args) => {
            init_logging("info");
            commands::serve(args)
        }
        command => {
            // The client library only logs what goes wrong.
            init_logging("warn");
            match command {
                Command::Deploy(args) => commands::deploy(args),
                Command::Invoke(args) => commands::invoke(args),
                Command::List(args) => commands::list(args),
                Command::Rm(args) => commands::rm(args),
                Command::Stats(args) => commands::stats(args),
                Command::Pretrigger(args) => commands::pretrigger(args),
                Command::Trace(args) => commands::trace(args),
                Command::Profile(args) => commands::profile(args),
                Command::Serve(_) => unreachable!("handled above"),
            }
        }
    };
    print(&rendered);
    rendered.code
}

fn init_logging(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn print(rendered: &Rendered) {
    // A closed stdout (`sprout list | head -0`) is not worth a panic.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&rendered.stdout);
    let _ = stdout.flush();
    let mut stderr = std::io::stderr().lock();
    for line in &rendered.stderr {
        let _ = writeln!(stderr, "{line}");
    }
}
