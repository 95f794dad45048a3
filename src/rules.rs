//! Address rules: which clients may use the proxy (`--allow-client`,
//! `--deny-client`) and which targets it may reach (`--allow-target`,
//! `--deny-target`, and by port `--allow-port`, `--deny-port`).
//!
//! A rule set is two lists of networks. An address is permitted when no
//! deny network contains it and, if any allow network is given, one of them
//! does: deny wins, and an empty allow list allows everything.
//!
//! Addresses are judged as the kernel will reach them ([`canonical`]):
//! IPv4-mapped (`::ffff:10.0.0.1`) and IPv4-compatible (`::10.0.0.1`) IPv6
//! addresses as the IPv4 address they carry, so a rule on `10.0.0.0/8`
//! cannot be dodged by writing the target in IPv6. The unspecified
//! addresses (`0.0.0.0/8`, `::`, in any encoding) are never a destination,
//! with or without rules ([`is_unspecified_destination`]): Linux delivers a
//! connection or a datagram to `0.0.0.0` to the host itself.
//!
//! The network `local` is every address of this host: the loopback
//! networks, the unspecified addresses and each interface's address, read
//! again at most once a second (`--deny-target local` keeps clients off the
//! proxy host's own services, whichever address they name it by).
//!
//! Targets are judged after name resolution, on every address a name
//! resolves to, so a name that points at a denied network is refused as
//! well (SOCKS reply 0x02, "connection not allowed by ruleset"). Port rules
//! work the same way on the target's port (CONNECT, UDP destinations; not
//! BIND, whose port names where the expected peer connects from).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `ip` as the kernel will reach it: an IPv4-mapped (`::ffff:a.b.c.d`) or
/// IPv4-compatible (`::a.b.c.d`, not `::` or `::1`) IPv6 address as its
/// IPv4 address; anything else unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let o = v6.octets();
            if o[..12] == [0; 12] && !v6.is_unspecified() && v6 != Ipv6Addr::LOCALHOST {
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            ip
        }
        v4 => v4,
    }
}

/// Never a destination: `0.0.0.0/8` ("this network": Linux sends `0.0.0.0`
/// to the host itself) and `::`, in any encoding.
pub fn is_unspecified_destination(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(a) => a.octets()[0] == 0,
        IpAddr::V6(a) => a.is_unspecified(),
    }
}

/// Whether `ip` is an address of this host: loopback, unspecified, or an
/// interface's (the interface list is read at most once a second).
pub fn is_local(ip: IpAddr) -> bool {
    let ip = canonical(ip);
    if ip.is_loopback() || is_unspecified_destination(ip) {
        return true;
    }
    static CACHE: Mutex<Option<(Instant, Vec<IpAddr>)>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let fresh = matches!(&*cache, Some((at, _)) if at.elapsed() < Duration::from_secs(1));
    if !fresh {
        // Fails closed: with no list, only loopback and unspecified count,
        // and the next call tries again.
        let addrs = if_addrs::get_if_addrs()
            .map(|v| v.into_iter().map(|i| canonical(i.ip())).collect())
            .unwrap_or_default();
        *cache = Some((Instant::now(), addrs));
    }
    cache.as_ref().is_some_and(|(_, addrs)| addrs.contains(&ip))
}

/// A network: an address and a prefix length (`10.0.0.0/8`, `::1/128`).
/// Host bits are cleared when parsed (`10.1.2.3/8` is `10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network of `addr` with `prefix` bits; `None` if `prefix` is too
    /// long for the family.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        // A mapped IPv6 network is stored as the IPv4 network it maps.
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        let net = match addr {
            IpAddr::V4(a) if prefix <= 32 => IpAddr::V4((u32::from(a) & mask32(prefix)).into()),
            IpAddr::V6(a) if prefix <= 128 => IpAddr::V6((u128::from(a) & mask128(prefix)).into()),
            _ => return None,
        };
        Some(Cidr { net, prefix })
    }

    /// Whether `ip` is in this network (mapped and compatible IPv6 judged
    /// as IPv4, see [`canonical`]).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask32(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask128(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    /// `ADDR/PREFIX`, or a bare `ADDR` for that one host (/32, /128).
    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || format!("invalid network {s:?}: expected e.g. 10.0.0.0/8, ::1 or fd00::/8");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(bad)?
            }
            Some(_) => return Err(bad()),
        };
        Cidr::new(addr, prefix).ok_or_else(bad)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// A network of a rule: a [`Cidr`], or `local` (every address of this host,
/// see [`is_local`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    Cidr(Cidr),
    Local,
}

impl Net {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match self {
            Net::Cidr(c) => c.contains(ip),
            Net::Local => is_local(ip),
        }
    }
}

impl FromStr for Net {
    type Err = String;

    /// `local`, `ADDR/PREFIX` or a bare `ADDR`.
    fn from_str(s: &str) -> Result<Net, String> {
        if s == "local" {
            return Ok(Net::Local);
        }
        s.parse::<Cidr>()
            .map(Net::Cidr)
            .map_err(|e| format!("{e} (or `local`: every address of this host)"))
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Net::Cidr(c) => c.fmt(f),
            Net::Local => f.write_str("local"),
        }
    }
}

impl From<Cidr> for Net {
    fn from(c: Cidr) -> Net {
        Net::Cidr(c)
    }
}

/// A port or an inclusive range of ports (`25`, `1024-65535`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    lo: u16,
    hi: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<PortRange, String> {
        let bad = || format!("invalid port range {s:?}: expected e.g. 25 or 1024-65535");
        let port = |p: &str| {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse::<u16>().map_err(|_| bad())
        };
        let (lo, hi) = match s.split_once('-') {
            Some((lo, hi)) => (port(lo)?, port(hi)?),
            None => (port(s)?, port(s)?),
        };
        if lo > hi {
            return Err(bad());
        }
        Ok(PortRange { lo, hi })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// The client and target rules in force: replaced whole when the config
/// file is read again (SIGHUP); a session keeps the rules it started with.
#[derive(Debug)]
pub struct SharedRules {
    clients: arc_swap::ArcSwap<Rules>,
    targets: arc_swap::ArcSwap<Rules>,
}

impl SharedRules {
    pub fn new(clients: Rules, targets: Rules) -> Self {
        SharedRules {
            clients: arc_swap::ArcSwap::from_pointee(clients),
            targets: arc_swap::ArcSwap::from_pointee(targets),
        }
    }

    /// The client rules now.
    pub fn clients(&self) -> std::sync::Arc<Rules> {
        self.clients.load_full()
    }

    /// The target rules now.
    pub fn targets(&self) -> std::sync::Arc<Rules> {
        self.targets.load_full()
    }

    /// Whether `ip` may connect, by the client rules now (no reference
    /// count taken: called for every accepted client).
    pub fn permits_client(&self, ip: IpAddr) -> bool {
        self.clients.load().permits(ip)
    }

    /// Replaces both.
    pub fn replace(&self, clients: Rules, targets: Rules) {
        self.clients.store(std::sync::Arc::new(clients));
        self.targets.store(std::sync::Arc::new(targets));
    }
}

/// Allow and deny lists of networks, and for targets of ports; see the
/// module header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub allow: Vec<Net>,
    pub deny: Vec<Net>,
    pub allow_ports: Vec<PortRange>,
    pub deny_ports: Vec<PortRange>,
}

/// Deny wins; an empty allow list allows everything.
fn judged<T>(allow: &[T], deny: &[T], hit: impl Fn(&T) -> bool) -> bool {
    !deny.iter().any(&hit) && (allow.is_empty() || allow.iter().any(hit))
}

impl Rules {
    pub fn new(allow: Vec<Net>, deny: Vec<Net>) -> Rules {
        Rules {
            allow,
            deny,
            ..Rules::default()
        }
    }

    /// These rules with port lists as well (target rules).
    pub fn with_ports(self, allow_ports: Vec<PortRange>, deny_ports: Vec<PortRange>) -> Rules {
        Rules {
            allow_ports,
            deny_ports,
            ..self
        }
    }

    /// No rule at all: everything is permitted.
    pub fn is_open(&self) -> bool {
        self.allow.is_empty()
            && self.deny.is_empty()
            && self.allow_ports.is_empty()
            && self.deny_ports.is_empty()
    }

    /// Whether `ip` is permitted: in no deny network, and in an allow
    /// network when there are any (judged as [`canonical`]). Ports are not
    /// looked at.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        judged(&self.allow, &self.deny, |n| n.contains(ip))
    }

    /// Whether a destination is permitted: never an unspecified address
    /// ([`is_unspecified_destination`]), whatever the rules; its address by
    /// [`Rules::permits`], its port by the port lists the same way.
    pub fn permits_target(&self, target: SocketAddr) -> bool {
        !is_unspecified_destination(target.ip())
            && self.permits(target.ip())
            && judged(&self.allow_ports, &self.deny_ports, |r| {
                r.contains(target.port())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn n(s: &str) -> Net {
        s.parse().unwrap()
    }

    #[test]
    fn parses_networks_and_hosts() {
        assert_eq!(net("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("192.168.1.5").to_string(), "192.168.1.5/32");
        assert_eq!(net("::1").to_string(), "::1/128");
        assert_eq!(net("fd00:1::/16").to_string(), "fd00::/16");
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
        // A mapped IPv6 network is the IPv4 network it maps.
        assert_eq!(net("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0/8",
            "example.com",
            "10.0.0.0/8/8",
            "10.0.0.0/ 8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn contains_by_prefix() {
        assert!(net("10.0.0.0/8").contains(ip("10.255.0.1")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!net("0.0.0.0/0").contains(ip("::1")), "families do not mix");
        assert!(net("127.0.0.2").contains(ip("127.0.0.2")));
        assert!(!net("127.0.0.2").contains(ip("127.0.0.3")));
        assert!(net("fe80::/10").contains(ip("fe80::1")));
        assert!(!net("fe80::/10").contains(ip("fec0::1")));
        // Mapped addresses are judged as IPv4, both ways round.
        assert!(net("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
        assert!(net("::ffff:127.0.0.0/104").contains(ip("127.0.0.1")));
    }

    #[test]
    fn deny_wins_and_empty_allow_allows_all() {
        let open = Rules::default();
        assert!(open.is_open());
        assert!(open.permits(ip("127.0.0.1")));

        let deny_local = Rules::new(vec![], vec![n("127.0.0.0/8"), n("::1")]);
        assert!(!deny_local.permits(ip("127.0.0.1")));
        assert!(!deny_local.permits(ip("::ffff:127.0.0.1")));
        assert!(!deny_local.permits(ip("::1")));
        assert!(deny_local.permits(ip("192.0.2.1")));

        let only_lan = Rules::new(vec![n("192.168.0.0/16")], vec![n("192.168.1.0/24")]);
        assert!(only_lan.permits(ip("192.168.2.7")));
        assert!(!only_lan.permits(ip("192.168.1.7")), "deny wins over allow");
        assert!(
            !only_lan.permits(ip("10.0.0.1")),
            "outside every allow network"
        );
    }

    #[test]
    fn ports_and_ranges() {
        let r: PortRange = "1024-65535".parse().unwrap();
        assert!(r.contains(1024) && r.contains(65535) && !r.contains(1023));
        assert_eq!("25".parse::<PortRange>().unwrap().to_string(), "25");
        for bad in [
            "", "-", "25-", "-25", "0x19", "65536", "30-20", "2 5", "+25",
        ] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad:?} parsed");
        }
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let no_smtp = Rules::default().with_ports(vec![], vec!["25".parse().unwrap()]);
        assert!(!no_smtp.is_open());
        assert!(!no_smtp.permits_target(sa("192.0.2.1:25")));
        assert!(no_smtp.permits_target(sa("192.0.2.1:587")));
        assert!(
            no_smtp.permits("192.0.2.1".parse().unwrap()),
            "permits ignores ports"
        );
        let web = Rules::new(vec![], vec![n("10.0.0.0/8")])
            .with_ports(vec!["80".parse().unwrap(), "443".parse().unwrap()], vec![]);
        assert!(web.permits_target(sa("192.0.2.1:443")));
        assert!(
            !web.permits_target(sa("192.0.2.1:22")),
            "outside the allowed ports"
        );
        assert!(!web.permits_target(sa("10.0.0.1:443")), "denied network");
    }

    #[test]
    fn canonical_forms_and_unspecified_destinations() {
        assert_eq!(canonical(ip("::ffff:127.0.0.1")), ip("127.0.0.1"));
        assert_eq!(canonical(ip("::127.0.0.1")), ip("127.0.0.1"));
        assert_eq!(canonical(ip("::1")), ip("::1"), "IPv6 loopback stays");
        assert_eq!(canonical(ip("::")), ip("::"));
        assert_eq!(canonical(ip("2001:db8::1")), ip("2001:db8::1"));
        for u in [
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "::ffff:0.0.0.0",
            "::0.0.0.2",
            "::ffff:0.9.9.9",
        ] {
            assert!(is_unspecified_destination(ip(u)), "{u}");
            let sa = SocketAddr::new(ip(u), 80);
            assert!(!Rules::default().permits_target(sa), "{u} with no rules");
        }
        for ok in ["1.0.0.0", "::2:0:0", "192.0.2.1", "::1"] {
            assert!(!is_unspecified_destination(ip(ok)), "{ok}");
        }
        // The input: CONNECT 0.0.0.0:P under the loopback recipe.
        let recipe = Rules::new(vec![], vec![n("127.0.0.0/8"), n("::1")]);
        for bad in [
            "0.0.0.0:8080",
            "[::]:8080",
            "[::127.0.0.1]:80",
            "[::ffff:7f00:1]:80",
        ] {
            assert!(!recipe.permits_target(bad.parse().unwrap()), "{bad}");
        }
    }

    #[test]
    fn local_is_every_address_of_this_host() {
        assert_eq!(n("local"), Net::Local);
        assert_eq!(Net::Local.to_string(), "local");
        assert!("locals".parse::<Net>().unwrap_err().contains("local"));
        let deny_local = Rules::new(vec![], vec![Net::Local]);
        for l in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "0.0.0.0",
            "::",
            "::ffff:127.0.0.1",
        ] {
            assert!(!deny_local.permits(ip(l)), "{l}");
        }
        // Each interface address counts too.
        for i in if_addrs::get_if_addrs().unwrap() {
            assert!(!deny_local.permits(i.ip()), "{}", i.ip());
        }
        assert!(
            deny_local.permits(ip("192.0.2.1")),
            "TEST-NET-1 is nobody's"
        );
    }

    /// What Linux delivers to the host itself (loopback interface): the
    /// oracle the property below is judged by.
    fn delivered_locally(ip: IpAddr) -> bool {
        let v4 = |a: Ipv4Addr| a.octets()[0] == 127 || a.octets()[0] == 0;
        match ip {
            IpAddr::V4(a) => v4(a),
            IpAddr::V6(a) => {
                a.is_loopback()
                    || a.is_unspecified()
                    || a.to_ipv4_mapped().is_some_and(v4)
                    // IPv4-compatible: not routed as IPv4 by Linux today, but
                    // judged as IPv4 all the same.
                    || (a.octets()[..12] == [0; 12] && v4(Ipv4Addr::from(u128::from(a) as u32)))
            }
        }
    }

    fn any_encoding() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(a.into())),
            any::<u128>().prop_map(|a| IpAddr::V6(a.into())),
            // Near the interesting places: 127/8, 0/8, mapped, compatible.
            (any::<u32>(), 0u8..4).prop_map(|(low, kind)| {
                let v4 = Ipv4Addr::from(match kind & 1 {
                    0 => 0x7f00_0000 | (low & 0x00ff_ffff),
                    _ => low & 0x00ff_ffff,
                });
                match kind {
                    0 | 1 => IpAddr::V4(v4),
                    2 => IpAddr::V6(v4.to_ipv6_mapped()),
                    _ => IpAddr::V6(Ipv6Addr::from(u128::from(u32::from(v4)))),
                }
            }),
            Just(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            Just(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        ]
    }

    proptest! {
        /// No destination that Linux delivers to the host itself passes the
        /// loopback recipe, in any encoding, on any port.
        #[test]
        fn the_loopback_recipe_covers_every_local_destination(ip in any_encoding(), port: u16) {
            let recipe = Rules::new(vec![], vec![n("127.0.0.0/8"), n("::1")]);
            if delivered_locally(ip) {
                prop_assert!(!recipe.permits_target(SocketAddr::new(ip, port)), "{ip}");
            }
        }

        /// Parsing never panics, and what parses prints back to itself.
        #[test]
        fn parse_is_total_and_round_trips(s in "[0-9a-f:./]{0,45}") {
            if let Ok(c) = s.parse::<Cidr>() {
                prop_assert_eq!(c.to_string().parse::<Cidr>().unwrap(), c);
            }
        }

        /// A network contains exactly the addresses that share its prefix.
        #[test]
        fn contains_matches_the_prefix(a in any::<u32>(), b in any::<u32>(), p in 0u8..=32) {
            let c = Cidr::new(IpAddr::V4(a.into()), p).unwrap();
            let same = (a ^ b) & mask32(p) == 0;
            prop_assert_eq!(c.contains(IpAddr::V4(b.into())), same);
        }

        #[test]
        fn contains_matches_the_prefix_v6(a in any::<u128>(), b in any::<u128>(), p in 0u8..=128) {
            let (a6, b6) = (std::net::Ipv6Addr::from(a), std::net::Ipv6Addr::from(b));
            prop_assume!(a6.to_ipv4_mapped().is_none() && b6.to_ipv4_mapped().is_none());
            let c = Cidr::new(IpAddr::V6(a6), p).unwrap();
            let same = (a ^ b) & mask128(p) == 0;
            prop_assert_eq!(c.contains(IpAddr::V6(b6)), same);
        }
    }
}
