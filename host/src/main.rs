//! The `kairos` binary: mesh agent, bridge and operator CLI of the Kairos p2p
//! full mesh. `main` only parses the command line, runs the command and turns
//! its error into one line on stderr and an exit code (see
//! [`kairos::cli::CliError`]).

use std::process::ExitCode;

use clap::Parser;
use kairos::cli;

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
