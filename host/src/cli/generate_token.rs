//! `kairos generate-token`: makes a new network token from the operating
//! system's randomness and prints it, followed by a newline, and nothing else
//! on stdout. Notes (a host name resolved for a bootstrap endpoint) go to stderr.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};

use clap::Args;
use kairos_core::token::{NetworkToken, OverlayRange, MAX_BOOTSTRAP};
use rand_core::OsRng;

use super::CliError;

/// The `--help` text of the command.
pub const LONG_ABOUT: &str = "Print a new network token on stdout.

The token holds a fresh 256-bit network secret from the operating system's random number \
generator. Every node that has it can join the network; anyone who has it can too, so treat it \
like a password. Put it in each node's cloud-config as `p2p.network_token` (or the legacy \
`kairos.network_token`) and give it to `kairos bridge --token` on an operator machine.

Optional hints can be baked in: bootstrap endpoints, which nodes dial first when they are not \
on the same LAN (any reachable member works, e.g. a node with a public address and its mesh \
port forwarded), and the overlay IPv4 range members take addresses from. Hints are not secret \
but cannot be changed without a new token; peers learned later through the mesh do not need to \
be listed.

Example:
  kairos generate-token --bootstrap 203.0.113.7:51820 --overlay 10.1.0.0/24";

/// Arguments of `kairos generate-token`.
#[derive(Debug, Args)]
pub struct GenerateTokenArgs {
    /// A member nodes dial first when they cannot find each other on the LAN,
    /// as HOST:PORT (IPv6 as [ADDR]:PORT). Repeat for several, up to 8. A host
    /// name is resolved now; the token holds the address.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_endpoint)]
    pub bootstrap: Vec<Endpoint>,

    /// The overlay IPv4 range members take their addresses from, as CIDR
    /// (e.g. 10.1.0.0/24). A node's own config (`p2p.mesh.address`) wins.
    #[arg(long, value_name = "CIDR")]
    pub overlay: Option<OverlayRange>,
}

/// A bootstrap endpoint as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// An address literal.
    Addr(SocketAddr),
    /// A host name to resolve, and a port.
    Name {
        /// The host name.
        host: String,
        /// The port (not 0).
        port: u16,
    },
}

/// Parses `HOST:PORT`, `IPv4:PORT` or `[IPv6]:PORT`.
pub fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err("port 0 cannot be dialled".into());
        }
        return Ok(Endpoint::Addr(addr));
    }
    let (host, port) = s.rsplit_once(':').ok_or("expected HOST:PORT, e.g. 203.0.113.7:51820")?;
    if host.contains(':') || host.starts_with('[') {
        return Err("write an IPv6 endpoint as [ADDR]:PORT, e.g. [2001:db8::1]:51820".into());
    }
    let valid_name = |h: &str| {
        !h.is_empty() && h.len() <= 253 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if !valid_name(host) {
        return Err(format!("`{host}` is not an IP address or a host name"));
    }
    let port = match port.parse::<u16>() {
        Ok(p) if p != 0 => p,
        _ => return Err(format!("`{port}` is not a port (1 to 65535)")),
    };
    Ok(Endpoint::Name {
        host: host.to_owned(),
        port,
    })
}

impl Endpoint {
    /// The address to put in the token, resolving a host name (first answer).
    fn resolve(&self) -> Result<SocketAddr, CliError> {
        match self {
            Endpoint::Addr(a) => Ok(*a),
            Endpoint::Name { host, port } => {
                let found = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|e| CliError::Usage(format!("cannot resolve bootstrap host `{host}`: {e}")))?
                    .next()
                    .ok_or_else(|| CliError::Usage(format!("bootstrap host `{host}` has no address")))?;
                eprintln!("note: bootstrap host {host} resolved to {found}; the token holds the address");
                Ok(found)
            }
        }
    }
}

/// Builds the token the arguments describe, with a secret from `rng`.
pub fn build(
    args: &GenerateTokenArgs,
    rng: &mut (impl rand_core::RngCore + rand_core::CryptoRng),
) -> Result<NetworkToken, CliError> {
    if args.bootstrap.len() > MAX_BOOTSTRAP {
        return Err(CliError::Usage(format!(
            "{} bootstrap endpoints given; a token carries at most {MAX_BOOTSTRAP}",
            args.bootstrap.len()
        )));
    }
    let mut token = NetworkToken::generate(rng);
    for ep in &args.bootstrap {
        let addr = ep.resolve()?;
        token
            .add_bootstrap(addr)
            .map_err(|e| CliError::Usage(format!("bootstrap endpoint {addr}: {e}")))?;
    }
    token.set_overlay(args.overlay);
    Ok(token)
}

/// Runs the command.
pub fn run(args: GenerateTokenArgs) -> Result<(), CliError> {
    let token = build(&args, &mut OsRng)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{token}")
        .and_then(|()| out.flush())
        .map_err(CliError::Output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: GenerateTokenArgs,
    }

    fn parse(argv: &[&str]) -> Result<GenerateTokenArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("generate-token").chain(argv.iter().copied())).map(|w| w.args)
    }

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            parse_endpoint("203.0.113.7:51820"),
            Ok(Endpoint::Addr("203.0.113.7:51820".parse().unwrap()))
        );
        assert_eq!(
            parse_endpoint("[2001:db8::1]:443"),
            Ok(Endpoint::Addr("[2001:db8::1]:443".parse().unwrap()))
        );
        assert_eq!(
            parse_endpoint("node-1.example.com:51820"),
            Ok(Endpoint::Name {
                host: "node-1.example.com".into(),
                port: 51820
            })
        );
    }

    #[test]
    fn bad_endpoints_say_why() {
        assert!(parse_endpoint("203.0.113.7").unwrap_err().contains("HOST:PORT"));
        assert!(parse_endpoint("2001:db8::1:443").unwrap_err().contains("[ADDR]:PORT"));
        assert!(parse_endpoint("host:0").unwrap_err().contains("not a port"));
        assert!(parse_endpoint("1.2.3.4:0").unwrap_err().contains("port 0"));
        assert!(parse_endpoint("host:99999").unwrap_err().contains("not a port"));
        assert!(parse_endpoint(":80")
            .unwrap_err()
            .contains("not an IP address or a host name"));
        assert!(parse_endpoint("bad_host!:80").is_err());
    }

    #[test]
    fn arguments_parse() {
        let a = parse(&[
            "--bootstrap",
            "203.0.113.7:1",
            "--bootstrap",
            "[::1]:2",
            "--overlay",
            "10.1.0.0/24",
        ])
        .unwrap();
        assert_eq!(a.bootstrap.len(), 2);
        assert_eq!(a.overlay.unwrap().to_string(), "10.1.0.0/24");
        assert!(parse(&["--overlay", "10.1.0.0"]).is_err());
        assert!(parse(&["--overlay", "10.1.0.0/40"]).is_err());
        assert!(parse(&["--bootstrap", "nope"]).is_err());
        let none = parse(&[]).unwrap();
        assert!(none.bootstrap.is_empty() && none.overlay.is_none());
    }

    #[test]
    fn builds_the_described_token() {
        let a = parse(&["--bootstrap", "203.0.113.7:51820", "--overlay", "10.1.0.0/24"]).unwrap();
        let t = build(&a, &mut OsRng).unwrap();
        assert_eq!(t.bootstrap(), ["203.0.113.7:51820".parse::<SocketAddr>().unwrap()]);
        assert_eq!(t.overlay().unwrap().to_string(), "10.1.0.0/24");
        let again = build(&a, &mut OsRng).unwrap();
        assert_ne!(t.network_id(), again.network_id(), "every token has a fresh secret");
    }

    #[test]
    fn too_many_or_unroutable_endpoints_are_refused() {
        let mut argv = Vec::new();
        for i in 0..=MAX_BOOTSTRAP {
            argv.push("--bootstrap".to_owned());
            argv.push(format!("192.0.2.{}:1", i + 1));
        }
        let a = parse(&argv.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
        let err = build(&a, &mut OsRng).unwrap_err();
        assert!(err.to_string().contains("at most 8"), "{err}");
        assert_eq!(err.exit_code(), 2);
        let a = parse(&["--bootstrap", "0.0.0.0:51820"]).unwrap();
        assert!(build(&a, &mut OsRng).unwrap_err().to_string().contains("unspecified"));
    }
}
