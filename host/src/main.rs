//! The `kairos` binary: mesh agent, bridge and operator CLI of the Kairos p2p
//! full mesh. `main` only parses the command line, runs the command and turns
//! its error into one line on stderr and an exit code (see [`cli::CliError`]).

mod cli;
mod clock;
// Parts of the agent's config and all of the state dir are used only once
// `kairos agent` is wired to them (the next task).
#[allow(dead_code)]
mod config;
#[allow(dead_code, unused_imports)]
mod state;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
