//! `kairos bridge`: joins the network of a token from an operator's
//! machine. It is the agent ([`crate::agent`]) with its settings from flags
//! instead of a cloud-config, its own state directory, and no cluster role:
//! it creates the overlay interface, takes an address from the mesh's
//! allocator, routes the overlay range and serves the API, so every node of
//! every cluster on the network is reachable from here, and `kairos
//! get-kubeconfig` can read the ledger through it.
//!
//! With `--userspace` it needs no root: no interface, the overlay's TCP/IP
//! stack runs in the process ([`crate::agent::userspace`]), and programs
//! reach the mesh through its SOCKS5 proxy and port forwards.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Args;

use super::token::{read_token, TOKEN_ENV};
use super::CliError;
use crate::agent::userspace::{ForwardSpec, UserspaceConfig, DEFAULT_SOCKS};
use crate::agent::{preflight, AgentError};
use crate::config::agent::{ApiAddress, Endpoint, LogLevel, NodeKind, DEFAULT_INTERFACE};
use crate::config::settings::Settings;
use crate::config::values;
use kairos_core::token::{NetworkToken, OverlayRange};

/// The `--help` text of the command.
pub const LONG_ABOUT: &str = "Join the network of a token from this machine (a laptop, a jump \
host) without becoming a cluster node: create the overlay interface, take an overlay address \
from the mesh (never a fixed one that could collide), route the overlay range through it, and \
serve the HTTP API, until Ctrl-C. Every node of every cluster on the network is reachable \
while it runs; `kairos get-kubeconfig` and `kairos status` talk to its API.

  sudo kairos bridge --network-token TOKEN
  KAIROS_TOKEN=... sudo -E kairos bridge          (keeps the token out of shell history)

The bridge needs root (or CAP_NET_ADMIN) for the interface. Without root:

  kairos bridge --userspace --forward 127.0.0.1:6443=10.1.0.7:6443
  curl --socks5-hostname 127.0.0.1:1080 http://10.1.0.7:8080/

--userspace runs the overlay's TCP/IP stack inside the process (no interface, no root): \
programs reach the mesh through a SOCKS5 proxy (127.0.0.1:1080; --socks ADDR, --socks off) \
and port forwards (--forward LISTEN=OVERLAY_IP:PORT, repeatable), TCP only. SOCKS domain names \
are overlay addresses in text or the members' host names (`curl --socks5-hostname ... \
http://e2e-a:8080/`). `kairos get-kubeconfig --userspace-forward` writes a kubeconfig for a \
forward to the master's port 6443. The proxy has no authentication: its listeners stay on \
loopback unless --allow-remote-proxy. --no-interface joins without any overlay (API and ledger \
only, no traffic).

It finds nodes on the same LAN by their encrypted beacons \
and dials the bootstrap endpoints in the token and in --bootstrap. Its identity and address \
are kept in --state-dir (default /var/lib/kairos-bridge as root, else \
$XDG_STATE_HOME/kairos-bridge or ~/.local/state/kairos-bridge), so it gets the same address \
next time.

Ctrl-C (or SIGTERM) leaves the mesh cleanly: the members are told at once, the interface and \
its routes are removed. The API listens on 127.0.0.1:8080 (--api; `unix:///path` for a socket \
with mode 0600). Exit status: 0 after Ctrl-C, 1 when it cannot start (the message says why), 2 \
for bad arguments or a bad token.";

/// The state directory of the bridge run as root: its identity (so it
/// keeps its address) and ledger snapshot. Separate from the agent's, so a
/// node can run both. Other users get [`user_state_dir`].
pub const DEFAULT_STATE_DIR: &str = "/var/lib/kairos-bridge";

/// The name of the bridge's directory under a user's state home.
const USER_STATE_NAME: &str = "kairos-bridge";

/// `--socks`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocksSetting(pub Option<SocketAddr>);

/// Arguments of `kairos bridge`.
#[derive(Debug, Args)]
pub struct BridgeArgs {
    /// The network token (`-` reads stdin). Also read from --token-file or
    /// the KAIROS_TOKEN environment variable, which keep it out of the
    /// shell history.
    #[arg(
        long = "network-token",
        visible_alias = "token",
        value_name = "TOKEN",
        conflicts_with = "token_file"
    )]
    pub network_token: Option<String>,

    /// Read the token from this file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// The overlay interface to create.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_INTERFACE, value_parser = values::interface)]
    pub interface: String,

    /// Where the HTTP API listens: HOST:PORT or unix:///PATH.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080", value_parser = values::api)]
    pub api: ApiAddress,

    /// UDP port of the mesh socket (0: any free port).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub listen_port: u16,

    /// A member to dial first, HOST:PORT (repeat for several); the token's
    /// bootstrap endpoints are dialled too.
    #[arg(long = "bootstrap", value_name = "HOST:PORT", value_parser = values::endpoint)]
    pub bootstrap: Vec<Endpoint>,

    /// Do not send or hear LAN beacons (find members through bootstrap
    /// endpoints only).
    #[arg(long)]
    pub no_lan_beacons: bool,

    /// The overlay IPv4 range, when neither the token nor the default
    /// (10.1.0.0/24) is right. Kairos' `--address 10.1.0.254/24` is
    /// accepted: its range is used and the address comes from the mesh.
    #[arg(long, value_name = "CIDR", value_parser = overlay_of)]
    pub address: Option<OverlayRange>,

    /// MTU of the interface (or of the --userspace stack), 1280 to 9000
    /// (default 1368, as the agent).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u16).range(1280..=9000))]
    pub mtu: Option<u16>,

    /// Where the bridge keeps its identity and ledger snapshot [default:
    /// /var/lib/kairos-bridge as root, else $XDG_STATE_HOME/kairos-bridge
    /// or ~/.local/state/kairos-bridge].
    #[arg(long, value_name = "DIR", value_parser = values::state_dir)]
    pub state_dir: Option<PathBuf>,

    /// Join without an interface (no root needed): the API and ledger
    /// work, overlay traffic does not.
    #[arg(long, conflicts_with = "userspace")]
    pub no_interface: bool,

    /// No interface and no root: the overlay's TCP/IP stack runs in this
    /// process, reached through the SOCKS5 proxy (--socks) and port
    /// forwards (--forward). TCP only.
    #[arg(long, conflicts_with = "dns")]
    pub userspace: bool,

    /// With --userspace: where the SOCKS5 proxy listens, IP:PORT or a
    /// port on 127.0.0.1, or `off` [default: 127.0.0.1:1080].
    #[arg(long, value_name = "ADDR|off", value_parser = socks_setting, requires = "userspace")]
    pub socks: Option<SocksSetting>,

    /// With --userspace: forward connections to LISTEN (IP:PORT, or a port
    /// on 127.0.0.1) to OVERLAY_IP:PORT over the mesh (repeat for several).
    #[arg(long, value_name = "LISTEN=OVERLAY_IP:PORT", requires = "userspace")]
    pub forward: Vec<ForwardSpec>,

    /// With --userspace: let the SOCKS5 proxy and the forwards listen on
    /// addresses other than loopback. They have no authentication: anyone
    /// who reaches them reaches the mesh.
    #[arg(long, requires = "userspace")]
    pub allow_remote_proxy: bool,

    /// Answer DNS for the members' names (`<hostname>.<network_id>.mesh`
    /// and `<hostname>`) on the bridge's overlay address, port 53.
    #[arg(long)]
    pub dns: bool,

    /// Log verbosity: error, warn, info, debug or trace (RUST_LOG overrides).
    #[arg(long, value_name = "LEVEL", default_value = "info", value_parser = values::log_level)]
    pub log_level: LogLevel,
}

/// `--address`: a range, or an address with its prefix (the range of it).
fn overlay_of(s: &str) -> Result<OverlayRange, String> {
    let (addr, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not a range like 10.1.0.0/24"))?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| format!("{prefix:?} is not a prefix length"))?;
    if prefix > 32 {
        return Err(format!("prefix /{prefix} is longer than 32"));
    }
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    let network = Ipv4Addr::from(u32::from(addr) & mask);
    values::overlay(&format!("{network}/{prefix}"))
}

/// `--socks`: `off`, `IP:PORT`, `localhost:PORT` or a port on 127.0.0.1.
fn socks_setting(s: &str) -> Result<SocksSetting, String> {
    const EXPECTED: &str = "expected IP:PORT (e.g. 127.0.0.1:1080), a port, or off";
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Ok(SocksSetting(None));
    }
    let addr = if let Ok(port) = s.parse::<u16>() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    } else if let Some(port) = s.strip_prefix("localhost:") {
        let port = port.parse::<u16>().map_err(|_| EXPECTED.to_owned())?;
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    } else {
        s.parse::<SocketAddr>().map_err(|_| EXPECTED.to_owned())?
    };
    if addr.port() == 0 {
        return Err("expected a port other than 0 (clients could not find it)".into());
    }
    Ok(SocksSetting(Some(addr)))
}

/// The userspace settings of `args`, refusing listeners beyond loopback
/// without `--allow-remote-proxy` (as the API refuses them without a
/// token: the proxy has no authentication).
fn userspace_config(args: &BridgeArgs) -> Result<Option<UserspaceConfig>, String> {
    if !args.userspace {
        return Ok(None);
    }
    let socks = args.socks.map_or(Some(DEFAULT_SOCKS), |s| s.0);
    let listens = socks
        .iter()
        .map(|a| ("--socks", *a))
        .chain(args.forward.iter().map(|f| ("--forward", f.listen)));
    for (flag, addr) in listens {
        if !addr.ip().is_loopback() && !args.allow_remote_proxy {
            return Err(format!(
                "{flag} {addr} would let anyone who reaches this machine into the mesh, without \
                 authentication: listen on 127.0.0.1, or pass --allow-remote-proxy"
            ));
        }
    }
    Ok(Some(UserspaceConfig {
        socks,
        forwards: args.forward.clone(),
    }))
}

/// The bridge's state directory when --state-dir is not given: the
/// system's for root, the user's state home otherwise.
pub fn default_state_dir(
    root: bool,
    xdg_state_home: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf, String> {
    if root {
        return Ok(PathBuf::from(DEFAULT_STATE_DIR));
    }
    user_state_dir(xdg_state_home, home).ok_or_else(|| {
        "not running as root and neither XDG_STATE_HOME nor HOME is set: pass --state-dir DIR".to_owned()
    })
}

/// `$XDG_STATE_HOME/kairos-bridge`, else `$HOME/.local/state/kairos-bridge`
/// (absolute paths only, as the XDG base directory spec says).
fn user_state_dir(xdg_state_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let absolute = |v: Option<OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(dir) = absolute(xdg_state_home) {
        return Some(dir.join(USER_STATE_NAME));
    }
    absolute(home).map(|h| h.join(".local/state").join(USER_STATE_NAME))
}

/// Runs `kairos bridge`.
pub fn run(args: BridgeArgs) -> Result<(), CliError> {
    let text = read_token(
        args.network_token.as_deref(),
        args.token_file.as_deref(),
        std::env::var(TOKEN_ENV).ok(),
    )?;
    let token = NetworkToken::decode(&text)?;
    let mtu_warning = args.mtu.and_then(values::lint_mtu);
    let userspace = userspace_config(&args).map_err(CliError::Usage)?;
    let state_dir = match args.state_dir {
        Some(dir) => dir,
        None => default_state_dir(
            rustix::process::geteuid().is_root(),
            std::env::var_os("XDG_STATE_HOME"),
            std::env::var_os("HOME"),
        )
        .map_err(CliError::Usage)?,
    };
    let settings = Settings {
        network_token: Some(token),
        log_level: Some(args.log_level),
        dns: Some(args.dns),
        vpn_create: Some(!args.no_interface && !args.userspace),
        listen_port: Some(args.listen_port),
        bootstrap_peers: Some(args.bootstrap),
        address: args.address,
        interface: Some(args.interface),
        mtu: args.mtu,
        state_dir: Some(state_dir),
        api: Some(args.api),
        lan_beacons: Some(!args.no_lan_beacons),
        ..Settings::default()
    };
    let mut config = settings
        .finish(None, None)
        .ok_or_else(|| CliError::Usage("no network token".into()))?;
    config.kind = NodeKind::Bridge;
    config.userspace = userspace;
    super::agent::init_logging(config.log_level);
    if let Some(w) = mtu_warning {
        tracing::warn!("--mtu: {w}");
    }
    let need_tun = config.vpn.create;
    preflight::check(&preflight::Facts::gather(need_tun), need_tun).map_err(|e| match e {
        preflight::PreflightError::NoNetAdmin => CliError::Other(anyhow::anyhow!(
            "kairos bridge creates the {} interface and needs root: run it with sudo (KAIROS_TOKEN=... sudo -E \
             kairos bridge), give it CAP_NET_ADMIN, or pass --userspace to run without root (SOCKS5 proxy and \
             port forwards instead of an interface)",
            config.mesh.interface
        )),
        other => CliError::Other(AgentError::from(other).into()),
    })?;
    super::agent::run_config(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(extra: &[&str]) -> BridgeArgs {
        let mut argv = vec!["kairos", "bridge"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Bridge(b) => b,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_match_kairos() {
        let b = parse(&["--network-token", "t"]);
        assert_eq!(b.network_token.as_deref(), Some("t"));
        assert_eq!(b.interface, "kairos0");
        assert_eq!(b.api.to_string(), "127.0.0.1:8080");
        assert_eq!(b.state_dir, None);
        assert_eq!(b.listen_port, 0);
        assert!(!b.no_lan_beacons && !b.no_interface && !b.dns && !b.userspace);
        assert_eq!(userspace_config(&b), Ok(None));
    }

    #[test]
    fn token_alias_and_options() {
        let b = parse(&[
            "--token",
            "t",
            "--api",
            "unix:///run/k.sock",
            "--bootstrap",
            "192.0.2.1:51820",
            "--bootstrap",
            "seed.example:51820",
            "--address",
            "10.1.0.254/24",
            "--no-lan-beacons",
            "--dns",
        ]);
        assert_eq!(b.network_token.as_deref(), Some("t"));
        assert_eq!(b.api, ApiAddress::Unix("/run/k.sock".into()));
        assert_eq!(b.bootstrap.len(), 2);
        assert_eq!(b.address.unwrap().to_string(), "10.1.0.0/24");
        assert!(b.no_lan_beacons && b.dns);
    }

    #[test]
    fn bad_arguments_are_refused() {
        let bad = |argv: &[&str]| {
            let mut v = vec!["kairos", "bridge"];
            v.extend_from_slice(argv);
            Cli::try_parse_from(v).is_err()
        };
        assert!(bad(&["--address", "10.1.0.0"]));
        assert!(bad(&["--address", "10.1.0.0/40"]));
        assert!(bad(&["--api", "nonsense"]));
        assert!(bad(&["--network-token", "a", "--token-file", "f"]));
        assert!(bad(&["--bootstrap", "host-without-port"]));
        assert!(bad(&["--mtu", "576"]));
    }

    #[test]
    fn userspace_listens_on_loopback_unless_allowed() {
        let b = parse(&["--userspace"]);
        let u = userspace_config(&b).unwrap().unwrap();
        assert_eq!(u.socks, Some(DEFAULT_SOCKS));
        assert!(u.forwards.is_empty());
        let b = parse(&[
            "--userspace",
            "--socks",
            "off",
            "--forward",
            "127.0.0.1:6443=10.1.0.7:6443",
            "--forward",
            "8080=10.1.0.8:80",
        ]);
        let u = userspace_config(&b).unwrap().unwrap();
        assert_eq!(u.socks, None);
        assert_eq!(u.forwards.len(), 2);
        assert_eq!(u.forwards[1].listen, "127.0.0.1:8080".parse().unwrap());
        let b = parse(&["--userspace", "--socks", "1081"]);
        assert_eq!(
            userspace_config(&b).unwrap().unwrap().socks,
            Some("127.0.0.1:1081".parse().unwrap())
        );

        let exposed = parse(&["--userspace", "--socks", "0.0.0.0:1080"]);
        let err = userspace_config(&exposed).unwrap_err();
        assert!(
            err.contains("--allow-remote-proxy") && err.contains("0.0.0.0:1080"),
            "{err}"
        );
        let exposed = parse(&["--userspace", "--forward", "192.0.2.1:6443=10.1.0.7:6443"]);
        assert!(userspace_config(&exposed).unwrap_err().contains("--forward"));
        let allowed = parse(&["--userspace", "--socks", "0.0.0.0:1080", "--allow-remote-proxy"]);
        assert!(userspace_config(&allowed).is_ok());
    }

    #[test]
    fn userspace_flags_need_userspace_and_exclude_the_interface_ones() {
        let bad = |argv: &[&str]| {
            let mut v = vec!["kairos", "bridge"];
            v.extend_from_slice(argv);
            Cli::try_parse_from(v).is_err()
        };
        assert!(bad(&["--socks", "1080"]));
        assert!(bad(&["--forward", "1=10.1.0.7:1"]));
        assert!(bad(&["--allow-remote-proxy"]));
        assert!(bad(&["--userspace", "--no-interface"]));
        assert!(bad(&["--userspace", "--dns"]));
        assert!(bad(&["--userspace", "--socks", "0"]));
        assert!(bad(&["--userspace", "--socks", "nonsense"]));
        assert!(bad(&["--userspace", "--forward", "6443"]));
    }

    #[test]
    fn the_default_state_dir_is_per_user_unless_root() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(
            default_state_dir(true, os("/x"), os("/home/u")),
            Ok(PathBuf::from(DEFAULT_STATE_DIR))
        );
        assert_eq!(
            default_state_dir(false, os("/x/state"), os("/home/u")),
            Ok(PathBuf::from("/x/state/kairos-bridge"))
        );
        assert_eq!(
            default_state_dir(false, os("relative"), os("/home/u")),
            Ok(PathBuf::from("/home/u/.local/state/kairos-bridge")),
            "a relative XDG_STATE_HOME is ignored"
        );
        assert_eq!(
            default_state_dir(false, None, os("/home/u")),
            Ok(PathBuf::from("/home/u/.local/state/kairos-bridge"))
        );
        let err = default_state_dir(false, None, None).unwrap_err();
        assert!(err.contains("--state-dir"), "{err}");
    }

    #[test]
    fn the_range_of_an_address() {
        assert_eq!(overlay_of("10.1.0.254/24").unwrap().to_string(), "10.1.0.0/24");
        assert_eq!(overlay_of("10.9.8.7/16").unwrap().to_string(), "10.9.0.0/16");
        assert!(overlay_of("nonsense").is_err());
    }
}
