//! `kairos token ...`: commands that work on an existing network token.
//! `inspect` reads a token (argument, file, stdin or `KAIROS_TOKEN`), checks
//! it, and prints what it holds except the secret: its version, hints and
//! public network id.
//!
//! Nothing here ever prints the token or its secret, even on error: a bad
//! token's error names the failed check only.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use kairos_core::token::{NetworkToken, TokenVersion};
use serde_json::json;

use super::CliError;

/// The environment variable a token is read from when no other source is given.
pub const TOKEN_ENV: &str = "KAIROS_TOKEN";

/// Reading more than this from a file or stdin cannot be a token.
const READ_LIMIT: u64 = 64 * 1024;

/// Arguments of `kairos token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The token command.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// The `kairos token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Check a token and show what it holds (never the secret).
    #[command(long_about = INSPECT_LONG_ABOUT)]
    Inspect(InspectArgs),
}

const INSPECT_LONG_ABOUT: &str = "Check a network token and show what it holds: its version (or \
\"legacy EdgeVPN/Kairos\" for a token made by EdgeVPN or an older Kairos), its bootstrap \
endpoints and overlay range, and the public network id derived from it. The secret itself is \
never printed, so the output is safe to paste into a ticket.

Two tokens with the same network id are the same network. A legacy token works as it is: its \
secret material is hashed into this network's secret.

The token comes from the TOKEN argument, else --token-file, else the KAIROS_TOKEN environment \
variable; `-` as TOKEN or FILE reads stdin. Passing it through a file or stdin keeps it out of \
the shell history and the process list.

Exit status: 0 if the token is valid, 2 if it is not (the message names the failed check, e.g. \
\"token checksum does not match\"), 1 if it could not be read.";

/// Arguments of `kairos token inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The token, or `-` to read it from stdin. Also read from --token-file or
    /// the KAIROS_TOKEN environment variable.
    #[arg(value_name = "TOKEN", conflicts_with = "token_file")]
    pub token: Option<String>,

    /// Read the token from this file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Print a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `kairos token` command.
pub fn run(args: TokenArgs) -> Result<(), CliError> {
    match args.command {
        TokenCommand::Inspect(args) => inspect(args),
    }
}

fn inspect(args: InspectArgs) -> Result<(), CliError> {
    let text = token_text(&args, std::env::var(TOKEN_ENV).ok())?;
    let token = NetworkToken::decode(&text)?;
    let mut out = io::stdout().lock();
    if args.json {
        writeln!(out, "{:#}", inspect_json(&token))
    } else {
        write_human(&token, &mut out)
    }
    .and_then(|()| out.flush())
    .map_err(CliError::Output)
}

/// Where the token text comes from, in order of precedence.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    Literal(String),
    Stdin,
    File(PathBuf),
}

#[cfg(test)]
fn source(args: &InspectArgs, env: Option<String>) -> Result<Source, CliError> {
    source_of(args.token.as_deref(), args.token_file.as_deref(), env)
}

/// The token's source: `literal`, else `file`, else `env` (KAIROS_TOKEN).
fn source_of(literal: Option<&str>, file: Option<&std::path::Path>, env: Option<String>) -> Result<Source, CliError> {
    let stdin_or = |s: Source, is_dash: bool| if is_dash { Source::Stdin } else { s };
    if let Some(t) = literal {
        Ok(stdin_or(Source::Literal(t.to_owned()), t == "-"))
    } else if let Some(p) = file {
        Ok(stdin_or(Source::File(p.to_owned()), p.as_os_str() == "-"))
    } else {
        env.filter(|e| !e.trim().is_empty())
            .map(Source::Literal)
            .ok_or(CliError::NoToken)
    }
}

/// The token text named by the arguments (`env` is the value of KAIROS_TOKEN).
fn token_text(args: &InspectArgs, env: Option<String>) -> Result<String, CliError> {
    read_token(args.token.as_deref(), args.token_file.as_deref(), env)
}

/// Reads a token given as `literal` (`-`: stdin), else in `file` (`-`:
/// stdin), else in `env` (the value of KAIROS_TOKEN), and returns its text.
/// Shared by every command that takes a token.
pub fn read_token(
    literal: Option<&str>,
    file: Option<&std::path::Path>,
    env: Option<String>,
) -> Result<String, CliError> {
    let read = |from: String, r: &mut dyn Read| {
        let mut text = String::new();
        r.take(READ_LIMIT)
            .read_to_string(&mut text)
            .map_err(|source| CliError::ReadToken { from, source })?;
        Ok(text)
    };
    match source_of(literal, file, env)? {
        Source::Literal(t) => Ok(t),
        Source::Stdin => read("stdin".into(), &mut io::stdin().lock()),
        Source::File(p) => {
            let from = p.display().to_string();
            let mut f = std::fs::File::open(&p).map_err(|source| CliError::ReadToken {
                from: from.clone(),
                source,
            })?;
            read(from, &mut f)
        }
    }
}

fn version_label(token: &NetworkToken) -> String {
    match token.version() {
        TokenVersion::Legacy => "legacy".into(),
        v => v.to_string(),
    }
}

/// The `--json` output.
fn inspect_json(token: &NetworkToken) -> serde_json::Value {
    json!({
        "version": version_label(token),
        "legacy": token.is_legacy(),
        "network_id": token.network_id().to_string(),
        "bootstrap": token.bootstrap().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "overlay": token.overlay().map(|r| r.to_string()),
    })
}

/// The text output: one `label: value` line per item.
fn write_human(token: &NetworkToken, out: &mut impl Write) -> io::Result<()> {
    const W: usize = 12;
    writeln!(out, "{:W$}{}", "version:", token.version())?;
    writeln!(out, "{:W$}{}", "network id:", token.network_id())?;
    match token.bootstrap() {
        [] => writeln!(out, "{:W$}none", "bootstrap:")?,
        [first, rest @ ..] => {
            writeln!(out, "{:W$}{first}", "bootstrap:")?;
            for ep in rest {
                writeln!(out, "{:W$}{ep}", "")?;
            }
        }
    }
    match token.overlay() {
        Some(r) => writeln!(out, "{:W$}{r}", "overlay:")?,
        None => writeln!(out, "{:W$}none (the node's config or the default applies)", "overlay:")?,
    }
    if token.is_legacy() {
        writeln!(out, "note:       made by EdgeVPN or an older Kairos; accepted as it is")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use rand_core::OsRng;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: InspectArgs,
    }

    fn parse(argv: &[&str]) -> Result<InspectArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("inspect").chain(argv.iter().copied())).map(|w| w.args)
    }

    fn sample() -> NetworkToken {
        NetworkToken::generate(&mut OsRng)
            .with_bootstrap("203.0.113.7:51820".parse().unwrap())
            .unwrap()
            .with_bootstrap("[2001:db8::7]:51820".parse().unwrap())
            .unwrap()
            .with_overlay("10.1.0.0/24".parse().unwrap())
    }

    #[test]
    fn token_source_precedence() {
        let env = || Some("from-env".to_owned());
        assert_eq!(
            source(&parse(&["tok"]).unwrap(), env()).unwrap(),
            Source::Literal("tok".into())
        );
        assert_eq!(source(&parse(&["-"]).unwrap(), env()).unwrap(), Source::Stdin);
        let file = parse(&["--token-file", "/etc/kairos/token"]).unwrap();
        assert_eq!(source(&file, env()).unwrap(), Source::File("/etc/kairos/token".into()));
        assert_eq!(
            source(&parse(&["--token-file", "-"]).unwrap(), None).unwrap(),
            Source::Stdin
        );
        assert_eq!(
            source(&parse(&[]).unwrap(), env()).unwrap(),
            Source::Literal("from-env".into())
        );
        assert!(matches!(source(&parse(&[]).unwrap(), None), Err(CliError::NoToken)));
        assert!(matches!(
            source(&parse(&[]).unwrap(), Some("  ".into())),
            Err(CliError::NoToken)
        ));
        assert!(
            parse(&["tok", "--token-file", "f"]).is_err(),
            "two sources are a usage error"
        );
    }

    #[test]
    fn unreadable_file_is_exit_1() {
        let args = parse(&["--token-file", "/nonexistent/kairos-token"]).unwrap();
        let err = token_text(&args, None).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(err
            .to_string()
            .starts_with("cannot read the token from /nonexistent/kairos-token: "));
    }

    #[test]
    fn human_output_shows_everything_but_the_secret() {
        let t = sample();
        let mut out = Vec::new();
        write_human(&t, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let want = format!(
            "version:    1\nnetwork id: {}\nbootstrap:  203.0.113.7:51820\n            [2001:db8::7]:51820\n\
             overlay:    10.1.0.0/24\n",
            t.network_id()
        );
        assert_eq!(text, want);
        assert!(!text.contains(&t.to_string()["kairos_".len()..][..10]));
    }

    #[test]
    fn human_output_without_hints() {
        let t = NetworkToken::generate(&mut OsRng);
        let mut out = Vec::new();
        write_human(&t, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("bootstrap:  none\n") && text.contains("overlay:    none"),
            "{text}"
        );
    }

    #[test]
    fn json_output() {
        let t = sample();
        let v = inspect_json(&t);
        assert_eq!(v["version"], "1");
        assert_eq!(v["legacy"], false);
        assert_eq!(v["network_id"], t.network_id().to_string());
        assert_eq!(v["bootstrap"], json!(["203.0.113.7:51820", "[2001:db8::7]:51820"]));
        assert_eq!(v["overlay"], "10.1.0.0/24");
        let bare = inspect_json(&NetworkToken::generate(&mut OsRng));
        assert_eq!(bare["bootstrap"], json!([]));
        assert!(bare["overlay"].is_null());
    }
}
