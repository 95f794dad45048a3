//! Command-line flags (clap) and the settings the server runs with.
//!
//! `Cli` is what the user types; `Config` is what the actors get. Tests build a
//! `Config` directly (see `Config::default`), so nothing here touches sockets.

use clap::{Parser, ValueEnum};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::protocol::Password;
use crate::relay::connect::Outgoing;
use crate::relay::copy::RelayMode;
use crate::rules::{Cidr, PortRange, Rules};
use crate::transport::TransportKind;

/// Default SOCKS listen address when no `--bind` is given.
pub const DEFAULT_BIND: &str = "127.0.0.1:1080";
/// Default manager (SCTP) listen address.
pub const DEFAULT_MANAGER_BIND: &str = "127.0.0.1:8080";
/// The manager protocol's list reply counts users in one byte.
pub const MAX_USERS_LIMIT: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// A SOCKS5 proxy built as an actix actor system, administered over SCTP.
#[derive(Debug, Parser)]
#[command(
    name = "actor-socks",
    version,
    about,
    long_about = None,
    after_help = "\
SOCKS5 commands (RFC 1928): CONNECT; BIND (a listening socket on the control \
connection's local address, accepting only the host the request named, within \
--bind-timeout); UDP ASSOCIATE (a relay socket for as long as the control \
connection lives, advertised as --udp-advertise when set, used only by the \
client). Authentication: none when no user exists, else username/password \
(RFC 1929).

Manager: with --admin (or ACTOR_SOCKS_ADMIN) the server listens for the SCTP \
manager protocol on --manager-bind; examples/manager_client.rs is its client."
)]
pub struct Cli {
    /// SOCKS5 listen address; repeat for several (IPv6 as `[::]:1080`).
    /// Default: 127.0.0.1:1080.
    #[arg(long = "bind", value_name = "ADDR")]
    pub bind: Vec<SocketAddr>,

    /// A SOCKS user as NAME:PASS; repeatable. With any user configured the
    /// server requires username/password authentication (RFC 1929).
    #[arg(long = "user", value_name = "NAME:PASS", value_parser = parse_credentials)]
    pub users: Vec<(String, Password)>,

    /// File of SOCKS users, one `name:password` per line (`#` comments and
    /// blank lines ignored). Users added through the manager are written back
    /// to it atomically; SIGHUP reads it again.
    #[arg(long, value_name = "PATH")]
    pub users_file: Option<PathBuf>,

    /// Most SOCKS client connections open at once; further ones are refused.
    /// 0 admits none (a drain). Changeable at runtime by the manager.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_clients: u32,

    /// Most client connections open at once from one IP address, so one host
    /// cannot take every slot; further ones are refused like those over
    /// --max-clients. 0: no per-address limit.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_clients_per_ip: u32,

    /// Capacity of the user registry (at most 255: the manager's list reply
    /// counts users in one byte).
    #[arg(long, default_value_t = 255, value_name = "N",
          value_parser = clap::value_parser!(u16).range(0..=255))]
    pub max_users: u16,

    /// A client that has not finished greeting, authentication and request
    /// within this time is dropped. Accepts `10`, `10s`, `500ms`, `2m`.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// Give up on an outbound connection (all addresses together) after this.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Close a relaying session after this long with no byte in either direction.
    #[arg(long, default_value = "300s", value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// BIND: how long to wait for the incoming connection.
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = parse_duration)]
    pub bind_timeout: Duration,

    /// UDP ASSOCIATE: end an association idle for this long.
    #[arg(long, default_value = "120s", value_name = "DURATION", value_parser = parse_duration)]
    pub udp_timeout: Duration,

    /// UDP ASSOCIATE: the address advertised in the reply (for NAT), instead
    /// of the control connection's local address.
    #[arg(long, value_name = "IP")]
    pub udp_advertise: Option<IpAddr>,

    /// On SIGINT/SIGTERM, let open sessions finish for up to this long.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub grace_period: Duration,

    /// How relayed bytes cross the proxy: `copy` (read/write through pooled
    /// buffers: 256 KiB, 1 MiB for a lone bulk flow), `splice` (zero-copy
    /// splice(2) through a pipe; half the CPU per byte, faster with many
    /// concurrent streams; Linux) or `auto` (copy, and splice for a bulk flow
    /// while other flows move data on the same worker).
    #[arg(long, value_enum, default_value_t = RelayMode::Auto)]
    pub relay: RelayMode,

    /// Only clients from these networks may connect (`10.0.0.0/8`, `fd00::/8`;
    /// a bare address is one host); repeatable. Default: any client.
    #[arg(long = "allow-client", value_name = "CIDR")]
    pub allow_client: Vec<Cidr>,

    /// Clients from these networks are disconnected as soon as they are
    /// accepted; repeatable. Wins over --allow-client.
    #[arg(long = "deny-client", value_name = "CIDR")]
    pub deny_client: Vec<Cidr>,

    /// The proxy reaches only these networks: CONNECT targets, BIND peers,
    /// UDP ASSOCIATE destinations, judged on every address a name resolves
    /// to; repeatable. Default: any target.
    #[arg(long = "allow-target", value_name = "CIDR")]
    pub allow_target: Vec<Cidr>,

    /// The proxy never reaches these networks (e.g. `127.0.0.0/8` and `::1`,
    /// to keep clients off the proxy host's own services); repeatable. Wins
    /// over --allow-target. A refused request gets reply 0x02 (not allowed
    /// by ruleset); a refused datagram is dropped.
    #[arg(long = "deny-target", value_name = "CIDR")]
    pub deny_target: Vec<Cidr>,

    /// The proxy reaches only these target ports (`443`, `1024-65535`):
    /// CONNECT and UDP ASSOCIATE destinations; repeatable. Default: any.
    #[arg(long = "allow-port", value_name = "PORT[-PORT]")]
    pub allow_port: Vec<PortRange>,

    /// The proxy never reaches these target ports (e.g. `25`, to keep the
    /// proxy from relaying mail spam); repeatable. Wins over --allow-port.
    /// Refused like --deny-target.
    #[arg(long = "deny-port", value_name = "PORT[-PORT]")]
    pub deny_port: Vec<PortRange>,

    /// Source address for outbound connections and UDP datagrams (a
    /// multi-homed host's egress address); one per family, repeatable for
    /// the other family. Once set, targets of a family without one are
    /// unreachable (reply 0x03). Default: the kernel chooses.
    #[arg(long = "outgoing-ip", value_name = "IP")]
    pub outgoing_ip: Vec<IpAddr>,

    /// Session worker threads (actix arbiters). Default: one per core.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Administrator credentials for the manager, NAME:PASS. Without them
    /// the manager does not listen.
    #[arg(long, env = "ACTOR_SOCKS_ADMIN", value_name = "NAME:PASS",
          value_parser = parse_credentials, hide_env_values = true)]
    pub admin: Option<(String, Password)>,

    /// Manager (SCTP) listen address.
    #[arg(long, default_value = DEFAULT_MANAGER_BIND, value_name = "ADDR")]
    pub manager_bind: SocketAddr,

    /// Manager transport: kernel SCTP, SCTP over UDP, or auto (kernel when
    /// the kernel has SCTP, otherwise UDP on the same address and port).
    #[arg(long, value_enum, default_value_t = TransportKind::Auto)]
    pub manager_transport: TransportKind,

    /// Drop a manager peer that sends nothing for this long.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub manager_timeout: Duration,

    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Least severe level logged.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Once every socket is bound, write their addresses to this file
    /// (lines `socks ADDR` and `manager ADDR TRANSPORT`), e.g. after `--bind
    /// 127.0.0.1:0`.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

impl Cli {
    /// What clap cannot check flag by flag: at most one `--outgoing-ip` per
    /// address family.
    pub fn check(&self) -> Result<(), String> {
        Outgoing::from_ips(&self.outgoing_ip).map(|_| ())
    }
}

/// Everything the actors need, built from `Cli` or directly by tests.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: Vec<SocketAddr>,
    pub users: Vec<(String, Password)>,
    pub users_file: Option<PathBuf>,
    pub max_clients: u32,
    pub max_clients_per_ip: u32,
    pub max_users: usize,
    pub handshake_timeout: Duration,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub bind_timeout: Duration,
    pub udp_timeout: Duration,
    pub udp_advertise: Option<IpAddr>,
    pub grace_period: Duration,
    pub relay: RelayMode,
    /// Which clients may connect.
    pub clients: Rules,
    /// Which targets may be reached.
    pub targets: Rules,
    /// Source addresses for what the proxy sends out.
    pub outgoing: Outgoing,
    pub workers: usize,
    pub admin: Option<(String, Password)>,
    pub manager_bind: SocketAddr,
    pub manager_transport: TransportKind,
    pub manager_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: vec![DEFAULT_BIND.parse().expect("valid default")],
            users: Vec::new(),
            users_file: None,
            max_clients: 10_000,
            max_clients_per_ip: 0,
            max_users: MAX_USERS_LIMIT,
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            bind_timeout: Duration::from_secs(60),
            udp_timeout: Duration::from_secs(120),
            udp_advertise: None,
            grace_period: Duration::from_secs(10),
            relay: RelayMode::Auto,
            clients: Rules::default(),
            targets: Rules::default(),
            outgoing: Outgoing::default(),
            workers: default_workers(),
            admin: None,
            manager_bind: DEFAULT_MANAGER_BIND.parse().expect("valid default"),
            manager_transport: TransportKind::Auto,
            manager_timeout: Duration::from_secs(10),
        }
    }
}

impl From<&Cli> for Config {
    fn from(cli: &Cli) -> Self {
        let d = Config::default();
        Config {
            bind: if cli.bind.is_empty() {
                d.bind
            } else {
                cli.bind.clone()
            },
            users: cli.users.clone(),
            users_file: cli.users_file.clone(),
            max_clients: cli.max_clients,
            max_clients_per_ip: cli.max_clients_per_ip,
            max_users: cli.max_users as usize,
            handshake_timeout: cli.handshake_timeout,
            connect_timeout: cli.connect_timeout,
            idle_timeout: cli.idle_timeout,
            bind_timeout: cli.bind_timeout,
            udp_timeout: cli.udp_timeout,
            udp_advertise: cli.udp_advertise,
            grace_period: cli.grace_period,
            relay: cli.relay,
            clients: Rules::new(cli.allow_client.clone(), cli.deny_client.clone()),
            targets: Rules::new(cli.allow_target.clone(), cli.deny_target.clone())
                .with_ports(cli.allow_port.clone(), cli.deny_port.clone()),
            // Cli::check reports a second address of one family.
            outgoing: Outgoing::from_ips(&cli.outgoing_ip).unwrap_or_default(),
            workers: cli.workers.filter(|&n| n > 0).unwrap_or(d.workers),
            admin: cli.admin.clone(),
            manager_bind: cli.manager_bind,
            manager_transport: cli.manager_transport,
            manager_timeout: cli.manager_timeout,
        }
    }
}

fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Parses `NAME:PASS` (the first `:` separates; the password may hold more).
/// Both parts must be 1..=255 bytes, as the wire formats carry them.
pub fn parse_credentials(s: &str) -> Result<(String, Password), String> {
    let (name, pass) = s
        .split_once(':')
        .ok_or_else(|| "expected NAME:PASS".to_string())?;
    check_credential_lengths(name, pass)?;
    Ok((name.to_string(), Password::new(pass)))
}

/// Both a user name and a password must be 1..=255 bytes.
pub fn check_credential_lengths(name: &str, pass: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err("user name must be 1 to 255 bytes".into());
    }
    if pass.is_empty() || pass.len() > 255 {
        return Err("password must be 1 to 255 bytes".into());
    }
    Ok(())
}

/// Parses `10`, `10s`, `500ms`, `2m`, `1h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 10s, 500ms"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("invalid duration unit {unit:?}: use ms, s, m or h")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn credentials() {
        let (n, p) = parse_credentials("alice:pa:ss").unwrap();
        assert_eq!(n, "alice");
        assert!(p.ct_eq("pa:ss"));
        assert!(parse_credentials("alice").is_err());
        assert!(parse_credentials(":x").is_err());
        assert!(parse_credentials("a:").is_err());
    }

    #[test]
    fn cli_defaults() {
        let cli = Cli::parse_from(["actor-socks"]);
        let c = Config::from(&cli);
        assert_eq!(c.bind, vec!["127.0.0.1:1080".parse().unwrap()]);
        assert_eq!(c.max_clients, 10_000);
        assert_eq!(c.manager_bind, "127.0.0.1:8080".parse().unwrap());
        assert!(Cli::try_parse_from(["actor-socks", "--max-users", "256"]).is_err());
        assert!(c.clients.is_open() && c.targets.is_open());
    }

    #[test]
    fn cli_rules() {
        let cli = Cli::parse_from([
            "actor-socks",
            "--deny-target",
            "127.0.0.0/8",
            "--deny-target",
            "::1",
            "--allow-client",
            "10.0.0.0/8",
        ]);
        let c = Config::from(&cli);
        assert_eq!(c.targets.deny.len(), 2);
        assert!(!c.targets.permits("127.0.0.1".parse().unwrap()));
        assert!(c.clients.permits("10.9.8.7".parse().unwrap()));
        assert!(!c.clients.permits("192.0.2.1".parse().unwrap()));
        assert!(Cli::try_parse_from(["actor-socks", "--deny-target", "10.0.0.0/33"]).is_err());
        assert!(Cli::try_parse_from(["actor-socks", "--allow-client", "localhost"]).is_err());
        let c = Config::from(&Cli::parse_from([
            "actor-socks",
            "--deny-port",
            "25",
            "--allow-port",
            "1-1024",
        ]));
        assert!(!c.targets.permits_target("192.0.2.1:25".parse().unwrap()));
        assert!(!c.targets.permits_target("192.0.2.1:8080".parse().unwrap()));
        assert!(c.targets.permits_target("192.0.2.1:443".parse().unwrap()));
        assert!(Cli::try_parse_from(["actor-socks", "--deny-port", "70000"]).is_err());
    }

    #[test]
    fn cli_outgoing() {
        let cli = Cli::parse_from([
            "actor-socks",
            "--outgoing-ip",
            "10.0.0.5",
            "--outgoing-ip",
            "fd00::5",
        ]);
        assert!(cli.check().is_ok());
        let c = Config::from(&cli);
        assert_eq!(c.outgoing.v4, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(c.outgoing.v6, Some("fd00::5".parse().unwrap()));
        let twice = Cli::parse_from([
            "actor-socks",
            "--outgoing-ip",
            "10.0.0.5",
            "--outgoing-ip",
            "10.0.0.6",
        ]);
        assert!(twice.check().unwrap_err().contains("IPv4"));
    }
}
