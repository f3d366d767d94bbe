//! The command line: the [`Cli`] definition (clap derive), the [`Command`]
//! enum every subcommand hangs off, and [`CliError`], which decides what an
//! operator sees on failure and which exit code scripts get.
//!
//! Each command lives in its own file and owns its argument struct and its
//! `run`. Commands write their result to stdout and nothing else; notes and
//! warnings go to stderr, so `TOKEN=$(kairos generate-token)` stays clean.
//!
//! Exit codes: 0 success; 1 an operational failure (I/O, network, an API
//! that is not there or refuses); 2 bad input from the operator (a bad
//! token, a bad argument, as clap does for usage errors, a value the API
//! refused as malformed or too large).
//!
//! The operator commands (`status`, `peers`, `ledger`, `get-kubeconfig`)
//! are clients of a running agent's or bridge's HTTP API; they share
//! [`ApiArgs`] and [`crate::client`].

mod agent;
mod bridge;
mod demo;
mod generate_token;
mod get_kubeconfig;
mod ledger;
mod peers;
mod status;
mod token;
mod validate;

use std::io;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use kairos_core::token::TokenError;

use crate::client::{self, ApiClient, ApiEndpoint, ApiError, TokenSources};

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

/// The subcommands. Commands still to come are added here as
/// they are built.
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
    /// Show this node and the members it sees (asks the running agent or bridge).
    #[command(long_about = status::LONG_ABOUT)]
    Status(status::StatusArgs),
    /// Show the encrypted sessions with the other members: path, RTT, traffic.
    #[command(long_about = peers::LONG_ABOUT)]
    Peers(peers::PeersArgs),
    /// Read and write the shared ledger (key/value buckets replicated to every member).
    #[command(long_about = ledger::LONG_ABOUT)]
    Ledger(ledger::LedgerArgs),
    /// Print the kubeconfig the cluster's master published, pointed at its overlay address.
    #[command(long_about = get_kubeconfig::LONG_ABOUT)]
    GetKubeconfig(get_kubeconfig::GetKubeconfigArgs),
}

/// How an operator command reaches the API: shared by `status`, `peers`,
/// `ledger` and `get-kubeconfig`.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The kairos API to ask: HOST:PORT, http://HOST:PORT or unix:///PATH
    /// (the agent's p2p.mesh.api, the bridge's --api).
    #[arg(long, value_name = "URL", env = "KAIROS_API", default_value = client::DEFAULT_API)]
    pub api: ApiEndpoint,

    /// A file holding the API's bearer token, needed when the API has one
    /// (it must when it listens on a non-loopback address). Without it, the
    /// token is the environment variable KAIROS_API_TOKEN, else the content
    /// of the file named by KAIROS_API_TOKEN_FILE (as the agent reads it).
    #[arg(long, value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
}

impl ApiArgs {
    /// A client of the API these arguments name, with its token.
    pub fn client(&self) -> Result<ApiClient, CliError> {
        let token = TokenSources::from_process(self.api_token_file.clone()).load()?;
        Ok(ApiClient::new(self.api.clone(), token)?)
    }
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
        Command::Status(args) => status::run(args),
        Command::Peers(args) => peers::run(args),
        Command::Ledger(args) => ledger::run(args),
        Command::GetKubeconfig(args) => get_kubeconfig::run(args),
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
    /// A call to the kairos API failed; the message says why.
    #[error("{0}")]
    Api(#[from] ApiError),
    /// Writing the result failed.
    #[error("cannot write the output: {0}")]
    Output(#[source] io::Error),
    /// Anything else (used by commands built on `anyhow`).
    #[error("{}", Chain(.0))]
    Other(#[from] anyhow::Error),
}

/// An error and its causes on one line, `outer: inner`, leaving out a
/// cause whose text the line already holds (many errors name their source
/// in their own message: "cannot read the config FILE: No such file or
/// directory" would otherwise say the last part twice).
struct Chain<'a>(&'a anyhow::Error);

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut line = String::new();
        for cause in self.0.chain() {
            let text = cause.to_string();
            if line.is_empty() {
                line = text;
            } else if !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
        }
        f.write_str(&line)
    }
}

impl CliError {
    /// The process exit code: 2 for bad operator input, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::BadToken(_) | CliError::NoToken | CliError::Usage(_) => 2,
            CliError::Api(e) if e.is_bad_input() => 2,
            CliError::ReadToken { .. } | CliError::Api(_) | CliError::Output(_) | CliError::Other(_) => 1,
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
        let cli = Cli::try_parse_from(["kairos", "status", "--api", "unix:///run/k.sock", "--json"]).unwrap();
        assert!(matches!(cli.command, Command::Status(_)));
        assert!(Cli::try_parse_from(["kairos", "status", "--api", "https://x:1"]).is_err());
        let cli = Cli::try_parse_from(["kairos", "ledger", "put", "b", "k", "--file", "/tmp/x"]).unwrap();
        assert!(matches!(cli.command, Command::Ledger(_)));
        assert!(Cli::try_parse_from(["kairos", "ledger", "put", "b", "k"]).is_err());
        assert!(Cli::try_parse_from(["kairos", "ledger", "put", "b", "k", "v", "--file", "/tmp/x"]).is_err());
        let cli = Cli::try_parse_from(["kairos", "get-kubeconfig", "--network-id", "kairos"]).unwrap();
        assert!(matches!(cli.command, Command::GetKubeconfig(_)));
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
        let status = |status| {
            CliError::Api(ApiError::Status {
                status,
                message: "x".into(),
            })
            .exit_code()
        };
        assert_eq!(
            (status(400), status(413), status(404), status(403), status(500)),
            (2, 2, 1, 1, 1)
        );
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

    #[test]
    fn a_cause_the_message_already_names_is_not_repeated() {
        let path = std::path::Path::new("/nonexistent/kairos/config.yaml");
        let err = crate::config::load(path, &crate::config::EnvOverrides::default()).expect_err("no such file");
        let line = CliError::Other(err.into()).to_string();
        let io = std::fs::read(path).unwrap_err().to_string();
        assert_eq!(line, format!("cannot read the config {}: {io}", path.display()));
        let io = io::Error::from(io::ErrorKind::NotFound).to_string();
        // A cause the message does not name still shows.
        let chained = anyhow::Error::from(io::Error::from(io::ErrorKind::NotFound)).context("cannot start");
        assert_eq!(CliError::Other(chained).to_string(), format!("cannot start: {io}"));
    }
}
