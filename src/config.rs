//! Command-line flags (clap) and the settings the server runs with.
//!
//! `Cli` is what the user types; `Config` is what the actors get. Tests build a
//! `Config` directly (see `Config::default`), so nothing here touches sockets.

use clap::builder::TypedValueParser;
use clap::{Parser, ValueEnum};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::throttle::ThrottlePolicy;
use crate::auth::AuthPolicy;
use crate::protocol::credentials::parse_pair;
use crate::protocol::{Secret, UserName};
use crate::relay::connect::Outgoing;
use crate::relay::copy::RelayMode;
use crate::rules::{Net, PortRange, Rules};
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
client). Authentication (--auth): username/password (RFC 1929) once any user \
exists or --user/--users-file is given, and never switched off again at runtime; \
none only with --auth none or when started with no users at all.

Manager: with --admin (or ACTOR_SOCKS_ADMIN) the server listens for the SCTP \
manager protocol on --manager-bind; actor-socks-manager is its client."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Subcommand>,

    /// A TOML file with a key for every flag, named as the flag
    /// (`max-clients = 500`, `allow-target = ["10.0.0.0/8"]`); flags given
    /// here override the file's. SIGHUP reads it again (users and rules).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// SOCKS5 listen address, IP:PORT or HOST:PORT (every address the host
    /// name resolves to is bound); repeat for several (IPv6 as `[::]:1080`).
    /// Default: 127.0.0.1:1080.
    #[arg(long = "bind", value_name = "ADDR", value_parser = parse_addrs)]
    pub bind: Vec<Addrs>,

    /// A SOCKS user as NAME:PASS; repeatable. With any user configured the
    /// server requires username/password authentication (RFC 1929).
    #[arg(long = "user", value_name = "NAME:PASS", value_parser = Hidden(parse_credentials))]
    pub users: Vec<(UserName, Secret)>,

    /// Whether clients must authenticate: `auto` (username/password once
    /// any user exists, or from the start with --user or --users-file; never
    /// switched off again while running), `required` (always; with no users
    /// nobody gets in), `none` (an open proxy; refused with --user or
    /// --users-file).
    #[arg(long, value_enum, default_value_t = AuthPolicy::Auto)]
    pub auth: AuthPolicy,

    /// File of SOCKS users, one `name:password` per line (`#` comments and
    /// blank lines ignored); the password in plaintext or as an Argon2id
    /// hash (`actor-socks hash-password`). Users added through the manager
    /// are written back to it atomically, hashed; SIGHUP reads it again.
    #[arg(long, value_name = "PATH")]
    pub users_file: Option<PathBuf>,

    /// Most SOCKS client connections open at once; further ones are refused.
    /// 0 admits none (a drain). Changeable at runtime by the manager. Left
    /// unset, it shrinks to what the open-file limit allows (said at start).
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
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_timeout)]
    pub handshake_timeout: Duration,

    /// Give up on an outbound connection (all addresses together) after this.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_timeout)]
    pub connect_timeout: Duration,

    /// End a relaying session that made no progress for this long: no byte
    /// relayed, and none acknowledged or received by either socket's kernel
    /// (a slow but steady reader is progress). Both sides get a reset.
    #[arg(long, default_value = "300s", value_name = "DURATION", value_parser = parse_timeout)]
    pub idle_timeout: Duration,

    /// BIND: how long to wait for the incoming connection.
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = parse_timeout)]
    pub bind_timeout: Duration,

    /// UDP ASSOCIATE: end an association idle for this long.
    #[arg(long, default_value = "120s", value_name = "DURATION", value_parser = parse_timeout)]
    pub udp_timeout: Duration,

    /// UDP ASSOCIATE: the address advertised in the reply (for NAT), instead
    /// of the control connection's local address.
    #[arg(long, value_name = "IP")]
    pub udp_advertise: Option<IpAddr>,

    /// On SIGINT/SIGTERM, let open sessions finish for up to this long (0:
    /// stop them at once).
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
    /// a bare address is one host; `local`: this host's own addresses);
    /// repeatable. Also judges UDP ASSOCIATE senders. Default: any client.
    #[arg(long = "allow-client", value_name = "CIDR")]
    pub allow_client: Vec<Net>,

    /// Clients from these networks are disconnected as soon as they are
    /// accepted, and their UDP datagrams dropped; repeatable. Wins over
    /// --allow-client.
    #[arg(long = "deny-client", value_name = "CIDR")]
    pub deny_client: Vec<Net>,

    /// The proxy reaches only these networks: CONNECT targets, BIND peers,
    /// UDP ASSOCIATE destinations, judged on every address a name resolves
    /// to; repeatable. Default: any target.
    #[arg(long = "allow-target", value_name = "CIDR")]
    pub allow_target: Vec<Net>,

    /// The proxy never reaches these networks (e.g. `local`: every address
    /// of this host, to keep clients off its own services); repeatable. Wins
    /// over --allow-target. A refused request gets reply 0x02 (not allowed
    /// by ruleset); a refused datagram is dropped. Whatever the rules,
    /// 0.0.0.0/8 and `::` are never reached.
    #[arg(long = "deny-target", value_name = "CIDR")]
    pub deny_target: Vec<Net>,

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

    /// Session worker threads (actix arbiters), 1 to 1024. Default: one per
    /// core.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,

    /// Administrator credentials for the manager, NAME:PASS. Without them
    /// the manager does not listen.
    #[arg(long, env = "ACTOR_SOCKS_ADMIN", value_name = "NAME:PASS",
          value_parser = Hidden(parse_credentials), hide_env_values = true)]
    pub admin: Option<(UserName, Secret)>,

    #[command(flatten)]
    pub supervision: SupervisionArgs,

    /// Serve the counters for Prometheus at http://ADDR/metrics (OpenMetrics
    /// text), IP:PORT or HOST:PORT. Off by default. It names users: bind it
    /// where only the monitoring system reaches it.
    #[arg(long, value_name = "ADDR", value_parser = parse_addrs)]
    pub metrics_bind: Option<Addrs>,

    /// Manager (SCTP) listen address.
    #[arg(long, default_value = DEFAULT_MANAGER_BIND, value_name = "ADDR",
          value_parser = parse_addrs)]
    pub manager_bind: Addrs,

    /// Manager transport: kernel SCTP, SCTP over UDP, or auto (kernel when
    /// the kernel has SCTP, otherwise UDP on the same address and port).
    #[arg(long, value_enum, default_value_t = TransportKind::Auto)]
    pub manager_transport: TransportKind,

    /// Drop a manager peer that sends nothing for this long.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_timeout)]
    pub manager_timeout: Duration,

    /// A manager association must have authenticated within this long
    /// (so unauthenticated peers cannot hold the manager's slots).
    #[arg(long, default_value = "3s", value_name = "DURATION", value_parser = parse_timeout)]
    pub manager_auth_timeout: Duration,

    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Least severe level logged.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Once every socket is bound, write their addresses to this file
    /// (lines `socks ADDR`, `manager ADDR TRANSPORT` and `metrics ADDR`),
    /// e.g. after `--bind 127.0.0.1:0`.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

/// How the supervision tree restarts its nodes (`crate::supervision`;
/// docs/supervision.md). Declared once, used as is by [`Config`].
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Supervision")]
pub struct SupervisionArgs {
    /// Change a node's supervision policy: NODE:KEY=VALUE[,KEY=VALUE...].
    /// Nodes: root, registry, metrics, connections, supervisor, listener
    /// (every listener) or listener/N, management, manager, udp-driver.
    /// Keys: strategy=one_for_one|one_for_all|rest_for_one (root,
    /// connections, management), intensity=N/PERIOD (at most N restarts in
    /// PERIOD, e.g. 3/10s), backoff=MIN..MAX (e.g. 50ms..2s). Repeatable.
    #[arg(long = "supervise", value_name = "NODE:SETTINGS",
          value_parser = crate::supervision::policy::parse_override)]
    pub overrides: Vec<crate::supervision::Override>,

    /// Let the administrator inject faults (manager FAULT:
    /// `actor-socks-manager fault NODE panic|stop`), to watch the tree
    /// restart nodes. Off by
    /// default: never on a production proxy.
    #[arg(long)]
    pub fault_injection: bool,
}

/// Commands other than running the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Subcommand {
    /// Read a password from standard input (never the command line) and
    /// print its Argon2id hash, for a `name:HASH` line of --users-file.
    HashPassword,
}

impl Cli {
    /// What clap cannot check flag by flag: at most one `--outgoing-ip` per
    /// address family; `--auth none` with users to check; `--supervise`
    /// naming a listener or a manager node that will not exist.
    pub fn check(&self) -> Result<(), String> {
        Outgoing::from_ips(&self.outgoing_ip)?;
        let workers = self.workers.map_or_else(default_workers, usize::from);
        for o in &self.supervision.overrides {
            if let Some(n) = o.node.strip_prefix("listener/") {
                if n.parse::<usize>().is_ok_and(|n| n >= workers) {
                    return Err(format!(
                        "--supervise {}: there are {workers} workers, listener/0 to listener/{}",
                        o.node,
                        workers - 1
                    ));
                }
            }
            if o.node == "prometheus" && self.metrics_bind.is_none() {
                return Err(format!(
                    "--supervise {}: the metrics endpoint does not run without --metrics-bind",
                    o.node
                ));
            }
            let manager_node = matches!(o.node.as_str(), "management" | "manager" | "udp-driver");
            if manager_node && self.admin.is_none() {
                return Err(format!(
                    "--supervise {}: the manager does not run without --admin",
                    o.node
                ));
            }
        }
        if self.auth == AuthPolicy::None && (!self.users.is_empty() || self.users_file.is_some()) {
            return Err(
                "--auth none with --user or --users-file: those users would never \
                        be asked for; drop --auth none, or the users"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Everything the actors need, built from `Cli` or directly by tests.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: Vec<SocketAddr>,
    pub users: Vec<(UserName, Secret)>,
    pub auth: AuthPolicy,
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
    pub admin: Option<(UserName, Secret)>,
    /// Every address the manager listens on (a host name's addresses).
    pub manager_bind: Vec<SocketAddr>,
    pub manager_transport: TransportKind,
    pub manager_timeout: Duration,
    pub manager_auth_timeout: Duration,
    /// How failed manager logins are slowed and locked out (no flag: the
    /// defaults are explained in `auth::throttle`; tests shorten them).
    pub manager_throttle: ThrottlePolicy,
    pub supervision: SupervisionArgs,
    /// Where the Prometheus endpoint listens (empty: it does not).
    pub metrics_bind: Vec<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: vec![DEFAULT_BIND.parse().expect("valid default")],
            users: Vec::new(),
            auth: AuthPolicy::Auto,
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
            manager_bind: vec![DEFAULT_MANAGER_BIND.parse().expect("valid default")],
            manager_transport: TransportKind::Auto,
            manager_timeout: Duration::from_secs(10),
            manager_auth_timeout: Duration::from_secs(3),
            manager_throttle: ThrottlePolicy::default(),
            supervision: SupervisionArgs::default(),
            metrics_bind: Vec::new(),
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
                dedup(cli.bind.iter().flat_map(|a| a.0.iter().copied()))
            },
            users: cli.users.clone(),
            auth: cli.auth,
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
            workers: cli.workers.map_or(d.workers, usize::from),
            admin: cli.admin.clone(),
            manager_bind: cli.manager_bind.0.clone(),
            manager_transport: cli.manager_transport,
            manager_timeout: cli.manager_timeout,
            manager_auth_timeout: cli.manager_auth_timeout,
            manager_throttle: ThrottlePolicy::default(),
            supervision: cli.supervision.clone(),
            metrics_bind: cli
                .metrics_bind
                .as_ref()
                .map_or_else(Vec::new, |a| a.0.clone()),
        }
    }
}

fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// A value parser for arguments holding a password (`--user`, `--admin`,
/// the manager client's): unlike clap's default, its error message does not
/// repeat the rejected value, which may be a password (or hold a CR).
#[derive(Clone, Copy)]
pub struct Hidden<T>(pub fn(&str) -> Result<T, String>);

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Hidden<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let arg = arg.map(|a| a.to_string()).unwrap_or_default();
        let fail = |why: &str| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for '{arg}' (not shown): {why}\n"),
            )
            .with_cmd(cmd)
        };
        let s = value.to_str().ok_or_else(|| fail("not valid UTF-8"))?;
        (self.0)(s).map_err(|e| fail(&e))
    }
}

/// Parses `NAME:PASS` (the first `:` separates; the password may hold more)
/// into a checked user name and password (see [`crate::protocol::credentials`]).
pub fn parse_credentials(s: &str) -> Result<(UserName, Secret), String> {
    parse_pair(s)
}

/// The longest duration accepted: 100 years (far beyond any sensible
/// timeout, far below what the clocks' arithmetic overflows at).
/// The addresses of one `--bind`/`--manager-bind`/`--addr` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addrs(pub Vec<SocketAddr>);

/// `addrs` in order, each once.
fn dedup(addrs: impl Iterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for a in addrs {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

/// `IP:PORT` (`[v6]:PORT`) or `HOST:PORT`: a host name stands for every
/// address it resolves to (`localhost:1080`: 127.0.0.1 and ::1, as the
/// resolver has them), each once, in the resolver's order. Resolved once,
/// here; a name that does not resolve is an error naming it.
pub fn parse_addrs(s: &str) -> Result<Addrs, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(Addrs(vec![a]));
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?}: expected IP:PORT or HOST:PORT (IPv6 as [::1]:1080)"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{s:?}: {port:?} is not a port (0 to 65535)"))?;
    if host.is_empty() || host.contains(':') || host.starts_with('[') {
        return Err(format!(
            "{s:?}: expected IP:PORT or HOST:PORT (IPv6 as [::1]:1080)"
        ));
    }
    let resolved = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?;
    let addrs = dedup(resolved);
    if addrs.is_empty() {
        return Err(format!("{host:?} resolves to no address"));
    }
    Ok(Addrs(addrs))
}

pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Parses `10`, `10s`, `500ms`, `2m`, `1h` (a bare number is seconds). A
/// number too large, or a total over [`MAX_DURATION`], is an error, never a
/// wrapped value.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(format!("invalid duration {s:?}: expected e.g. 10s, 500ms"));
    }
    let too_long = || format!("duration {s:?} is too long (at most 100 years)");
    let n: u64 = num.parse().map_err(|_| too_long())?;
    let d = match unit {
        "" | "s" => Some(Duration::from_secs(n)),
        "ms" => Some(Duration::from_millis(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => return Err(format!("invalid duration unit {unit:?}: use ms, s, m or h")),
    };
    d.filter(|d| *d <= MAX_DURATION).ok_or_else(too_long)
}

/// [`parse_duration`] for a timeout: zero is an error (it would end every
/// wait at once).
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?}: a timeout must be more than 0")),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_host_names() {
        let one = |s| parse_addrs(s).unwrap().0;
        assert_eq!(one("127.0.0.1:1080"), ["127.0.0.1:1080".parse().unwrap()]);
        assert_eq!(one("[::1]:0"), ["[::1]:0".parse().unwrap()]);
        let local = one("localhost:1080");
        assert!(
            !local.is_empty()
                && local
                    .iter()
                    .all(|a| a.ip().is_loopback() && a.port() == 1080)
        );
        for (bad, says) in [
            ("localhost", "HOST:PORT"),
            ("localhost:99999", "not a port"),
            (":1080", "HOST:PORT"),
            ("::1:1080", "HOST:PORT"),
            ("no-such-host.invalid:1080", "cannot resolve"),
        ] {
            let e = parse_addrs(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let cli = Cli::try_parse_from([
            "actor-socks",
            "--bind",
            "localhost:0",
            "--bind",
            "127.0.0.1:0",
        ])
        .unwrap();
        let c = Config::from(&cli);
        assert_eq!(
            c.bind
                .iter()
                .filter(|a| **a == "127.0.0.1:0".parse().unwrap())
                .count(),
            1,
            "each once"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["x", "5d", "", "s", "-1s", "1.5s", "10 s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        // Overflow is an error, never a wrapped value (3381903080180084463m
        // once wrapped to 4 s).
        for big in [
            "3381903080180084463m",
            "18446744073709551615h",
            "18446744073709551616",
            "99999999999999999999999ms",
            "876001h",
        ] {
            assert!(
                parse_duration(big).unwrap_err().contains("too long"),
                "{big}"
            );
        }
        assert_eq!(parse_duration("876000h").unwrap(), MAX_DURATION);
        assert!(parse_timeout("0").is_err() && parse_timeout("0ms").is_err());
        assert!(parse_timeout("1ms").is_ok());
    }

    #[test]
    fn zero_and_overflow_flags_fail() {
        for args in [
            ["--handshake-timeout", "0"],
            ["--handshake-timeout", "3381903080180084463m"],
            ["--connect-timeout", "0s"],
            ["--idle-timeout", "0ms"],
            ["--bind-timeout", "0"],
            ["--udp-timeout", "0"],
            ["--manager-timeout", "0"],
            ["--manager-auth-timeout", "0"],
            ["--workers", "0"],
            ["--workers", "1025"],
            ["--grace-period", "99999999999h"],
        ] {
            let r = Cli::try_parse_from(["actor-socks", args[0], args[1]]);
            assert!(r.is_err(), "{args:?} accepted");
        }
        let c = Config::from(&Cli::parse_from(["actor-socks", "--grace-period", "0"]));
        assert_eq!(c.grace_period, Duration::ZERO);
    }

    #[test]
    fn credentials_and_auth_policy() {
        let (n, p) = parse_credentials("alice:pa:ss").unwrap();
        assert_eq!(n, "alice");
        assert!(p.ct_eq("pa:ss"));
        for bad in ["alice", ":x", "a:", "#a:x", "a\nb:x", "a:x\ny", " a:x"] {
            assert!(parse_credentials(bad).is_err(), "{bad:?}");
        }
        assert!(Cli::try_parse_from(["actor-socks", "--user", "ma\nllory:x"]).is_err());
        // The rejected value (a password, maybe) is never repeated.
        for bad in [
            "root:Leaked\rPW",
            "rootSecret",
            " root:SuperSecret5",
            "al\x01ice:UserSecret1",
        ] {
            for flag in ["--user", "--admin"] {
                let err = Cli::try_parse_from(["actor-socks", flag, bad])
                    .unwrap_err()
                    .to_string();
                assert!(err.contains("(not shown)"), "{err}");
                assert!(!err.contains("Secret") && !err.contains("Leaked"), "{err}");
            }
        }
        let cli = Cli::parse_from(["actor-socks", "--auth", "none", "--user", "a:b"]);
        assert!(cli.check().unwrap_err().contains("--auth none"));
        let cli = Cli::parse_from(["actor-socks", "--auth", "required"]);
        assert_eq!(Config::from(&cli).auth, AuthPolicy::Required);
        let cli = Cli::parse_from(["actor-socks", "hash-password"]);
        assert_eq!(cli.command, Some(Subcommand::HashPassword));
    }

    #[test]
    fn cli_defaults() {
        let cli = Cli::parse_from(["actor-socks"]);
        let c = Config::from(&cli);
        assert_eq!(c.bind, vec!["127.0.0.1:1080".parse().unwrap()]);
        assert_eq!(c.max_clients, 10_000);
        assert_eq!(c.manager_bind, ["127.0.0.1:8080".parse().unwrap()]);
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
