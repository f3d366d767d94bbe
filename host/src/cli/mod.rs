//! The command line: the [`Cli`] definition (clap derive), the [`Command`]
//! enum every subcommand hangs off, and [`CliError`], which decides what an
//! operator sees on failure and which exit code scripts get.
//!
//! Each command lives in its own file and owns its argument struct and its
//! `run`. Commands write their result to stdout and nothing else; notes and
//! warnings go to stderr, so `TOKEN=$(kairos generate-token)` stays clean.
//!
//! Exit codes: 0 success; 1 an operational failure (I/O, network); 2 bad
//! input from the operator (a bad token, a bad argument, as clap does for
//! usage errors).

mod agent;
mod bridge;
mod demo;
mod generate_token;
mod token;
mod validate;

use std::io;

use clap::{Parser, Subcommand};
use kairos_core::token::TokenError;

/// The top-level command line of `kairos`.
#[derive(Debug, Parser)]
#[command(
    name = "kairos",
    version,
    about = "Kairos p2p full mesh: encrypted overlay network and k3s bootstrap for edge nodes",
    long_about = "Kairos p2p full mesh: edge nodes that share one network token find each other \
                  (same LAN or across NATs), form an end-to-end encrypted full-mesh overlay, and \
                  bootstrap a k3s cluster over it, so the Kubernetes API is never exposed to the \
                  internet.\n\nStart with `kairos generate-token` and put the token in every \
                  node's cloud-config (`p2p.network_token`).",
    after_help = "Run `kairos <command> --help` for the details of a command."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands. Commands still to come (bridge, get-kubeconfig,
/// status, ...) are added here as they are built.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a new network token (share it with every node of the network).
    #[command(long_about = generate_token::LONG_ABOUT)]
    GenerateToken(generate_token::GenerateTokenArgs),
    /// Work with network tokens (inspect).
    Token(token::TokenArgs),
    /// Run two peers on loopback: handshake, echo and a bulk transfer.
    #[command(long_about = demo::LONG_ABOUT)]
    Demo(demo::DemoArgs),
    /// Check a cloud-config and print every problem with its line and column.
    #[command(long_about = validate::LONG_ABOUT)]
    Validate(validate::ValidateArgs),
    /// Run the mesh node daemon: join the network, keep the overlay interface and API up.
    #[command(long_about = agent::LONG_ABOUT, visible_alias = "start")]
    Agent(agent::AgentArgs),
    /// Join the network from this machine (no cluster role): interface, routes and API until Ctrl-C.
    #[command(long_about = bridge::LONG_ABOUT)]
    Bridge(bridge::BridgeArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::GenerateToken(args) => generate_token::run(args),
        Command::Token(args) => token::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Bridge(args) => bridge::run(args),
    }
}

/// Why a command failed. `Display` is the one line printed after `error: `.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The token was read but refused; the message names the failed check.
    #[error("{0}")]
    BadToken(#[from] TokenError),
    /// No token was given anywhere.
    #[error("no token given: pass TOKEN, --token-file FILE, or set KAIROS_TOKEN")]
    NoToken,
    /// The token file or stdin could not be read.
    #[error("cannot read the token from {from}: {source}")]
    ReadToken {
        /// Where the token was being read from (`stdin` or a path).
        from: String,
        /// The I/O error.
        source: io::Error,
    },
    /// An argument is unusable in a way clap cannot check (e.g. too many
    /// bootstrap endpoints, a host name that does not resolve).
    #[error("{0}")]
    Usage(String),
    /// Writing the result failed.
    #[error("cannot write the output: {0}")]
    Output(#[source] io::Error),
    /// Anything else (used by commands built on `anyhow`).
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl CliError {
    /// The process exit code: 2 for bad operator input, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::BadToken(_) | CliError::NoToken | CliError::Usage(_) => 2,
            CliError::ReadToken { .. } | CliError::Output(_) | CliError::Other(_) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_commands() {
        let cli = Cli::try_parse_from(["kairos", "generate-token"]).unwrap();
        assert!(matches!(cli.command, Command::GenerateToken(_)));
        let cli = Cli::try_parse_from(["kairos", "token", "inspect", "kairos_x"]).unwrap();
        assert!(matches!(cli.command, Command::Token(_)));
        assert!(Cli::try_parse_from(["kairos"]).is_err());
        assert!(Cli::try_parse_from(["kairos", "token"]).is_err());
        assert!(Cli::try_parse_from(["kairos", "no-such-command"]).is_err());
    }

    #[test]
    fn exit_codes() {
        assert_eq!(CliError::BadToken(TokenError::BadChecksum).exit_code(), 2);
        assert_eq!(CliError::NoToken.exit_code(), 2);
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        let io = || io::Error::other("boom");
        assert_eq!(
            CliError::ReadToken {
                from: "stdin".into(),
                source: io()
            }
            .exit_code(),
            1
        );
        assert_eq!(CliError::Output(io()).exit_code(), 1);
        assert_eq!(CliError::Other(anyhow::anyhow!("x")).exit_code(), 1);
    }

    #[test]
    fn bad_token_message_is_the_check() {
        assert_eq!(
            CliError::BadToken(TokenError::BadChecksum).to_string(),
            "token checksum does not match (was it copied completely?)"
        );
        let chained = anyhow::anyhow!("inner").context("outer");
        assert_eq!(CliError::Other(chained).to_string(), "outer: inner");
    }
}
