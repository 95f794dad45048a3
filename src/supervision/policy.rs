//! Each node's default policy, and `--supervise NODE:KEY=VALUE,...`, which
//! changes it at start.
//!
//! Defaults, and why:
//! - `root`: one_for_one, 2 restarts in 60 s. A root restart restarts every
//!   actor (clients keep their connections, see docs/supervision.md); a
//!   third escalation within a minute means something is broken for good,
//!   and a clean exit (status 70) lets systemd's `Restart=on-failure` start
//!   a fresh process.
//! - `registry`, `metrics`, `supervisor`, `manager`: 3 in 10 s, backoff
//!   50 ms doubling to 2 s. Their state lives outside them, so a restart is
//!   cheap; three crashes in ten seconds is a crash loop worth escalating.
//! - `listener/N`: 5 in 10 s, backoff 10 ms to 1 s. While a listener is
//!   down its socket stays open and clients wait in the kernel's backlog,
//!   so the first restarts should be quick.
//! - `udp-driver`: 3 in 10 s, backoff 100 ms to 2 s; its associations are
//!   lost with it (the manager client retries nothing: one request each).
//! - `connections` (supervisor, listeners), `management` (manager, driver):
//!   one_for_one, 3 in 30 s, so a crash loop in one group is stopped by
//!   that group before it reaches the root.

use std::time::Duration;

use super::tree::{Backoff, Policy, Strategy};
use crate::config::parse_duration;

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);

/// The default policy of the node called `name` (`listener/N` for every
/// listener).
pub fn default_for(name: &str) -> Policy {
    let p = |intensity, period, initial, max| Policy {
        strategy: Strategy::OneForOne,
        intensity,
        period,
        backoff: Backoff { initial, max },
    };
    match name {
        "root" => p(2, 60 * S, 100 * MS, 5 * S),
        "connections" | "management" => p(3, 30 * S, 50 * MS, 2 * S),
        "udp-driver" => p(3, 10 * S, 100 * MS, 2 * S),
        n if n.starts_with("listener/") => p(5, 10 * S, 10 * MS, S),
        n if n.starts_with("udp-driver/") => p(3, 10 * S, 100 * MS, 2 * S),
        _ => p(3, 10 * S, 50 * MS, 2 * S),
    }
}

/// The nodes `--supervise` may name (`listener` is every listener,
/// `udp-driver` every driver: one per manager address).
pub const NODES: &[&str] = &[
    "root",
    "registry",
    "metrics",
    "connections",
    "supervisor",
    "listener",
    "management",
    "manager",
    "udp-driver",
    "prometheus",
];

/// Nodes with children, which take `strategy`.
pub fn is_supervisor(name: &str) -> bool {
    matches!(name, "root" | "connections" | "management")
}

/// One `--supervise` flag: settings for a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// `root`, `registry`, ..., `listener` (all) or `listener/N`.
    pub node: String,
    pub strategy: Option<Strategy>,
    pub intensity: Option<(u32, Duration)>,
    pub backoff: Option<Backoff>,
}

impl Override {
    /// Whether it applies to the node called `name`.
    pub fn matches(&self, name: &str) -> bool {
        self.node == name
            || (matches!(self.node.as_str(), "listener" | "udp-driver")
                && name
                    .strip_prefix(self.node.as_str())
                    .is_some_and(|rest| rest.starts_with('/')))
    }

    /// `policy` with these settings applied.
    pub fn apply(&self, mut policy: Policy) -> Policy {
        if let Some(s) = self.strategy {
            policy.strategy = s;
        }
        if let Some((n, period)) = self.intensity {
            policy.intensity = n;
            policy.period = period;
        }
        if let Some(b) = self.backoff {
            policy.backoff = b;
        }
        policy
    }
}

/// Parses `NODE:KEY=VALUE[,KEY=VALUE...]` with keys `strategy`
/// (`one_for_one`, `one_for_all`, `rest_for_one`; supervisors only),
/// `intensity` (`N/PERIOD`, e.g. `3/10s`) and `backoff` (`MIN..MAX`, e.g.
/// `50ms..2s`).
pub fn parse_override(s: &str) -> Result<Override, String> {
    let (node, settings) = s.split_once(':').ok_or_else(|| {
        format!("{s:?}: expected NODE:KEY=VALUE[,KEY=VALUE...], e.g. registry:intensity=3/10s")
    })?;
    let known = NODES.contains(&node)
        || node
            .strip_prefix("listener/")
            .is_some_and(|n| n.parse::<u16>().is_ok());
    if !known {
        return Err(format!(
            "unknown node {node:?}: one of {}, or listener/N",
            NODES.join(", ")
        ));
    }
    let mut o = Override {
        node: node.to_string(),
        strategy: None,
        intensity: None,
        backoff: None,
    };
    for setting in settings.split(',') {
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("{setting:?}: expected KEY=VALUE"))?;
        match key {
            "strategy" if !is_supervisor(node) => {
                return Err(format!(
                    "{node} has no children: strategy applies to root, connections and \
                     management"
                ))
            }
            "strategy" => o.strategy = Some(value.parse()?),
            "intensity" => {
                let (n, period) = value
                    .split_once('/')
                    .ok_or_else(|| format!("intensity {value:?}: expected N/PERIOD, e.g. 3/10s"))?;
                let n: u32 = n
                    .parse()
                    .map_err(|_| format!("intensity {value:?}: {n:?} is not a count"))?;
                let period = parse_duration(period)?;
                if period.is_zero() {
                    return Err(format!(
                        "intensity {value:?}: the period must be more than 0"
                    ));
                }
                o.intensity = Some((n, period));
            }
            "backoff" => {
                let (min, max) = value.split_once("..").ok_or_else(|| {
                    format!("backoff {value:?}: expected MIN..MAX, e.g. 50ms..2s")
                })?;
                let (initial, max) = (parse_duration(min)?, parse_duration(max)?);
                if initial > max {
                    return Err(format!("backoff {value:?}: MIN is above MAX"));
                }
                o.backoff = Some(Backoff { initial, max });
            }
            _ => {
                return Err(format!(
                    "unknown setting {key:?}: strategy, intensity or backoff"
                ))
            }
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_setting() {
        let o = parse_override("connections:strategy=rest_for_one,intensity=4/20s,backoff=5ms..1s")
            .unwrap();
        assert_eq!(o.strategy, Some(Strategy::RestForOne));
        assert_eq!(o.intensity, Some((4, 20 * S)));
        assert_eq!(
            o.backoff,
            Some(Backoff {
                initial: 5 * MS,
                max: S
            })
        );
        let p = o.apply(default_for("connections"));
        assert_eq!((p.intensity, p.period), (4, 20 * S));
        let all = parse_override("listener:intensity=0/1s").unwrap();
        assert!(all.matches("listener/0") && all.matches("listener/7"));
        assert!(!all.matches("supervisor"));
        let one = parse_override("listener/1:backoff=0ms..0ms").unwrap();
        assert!(one.matches("listener/1") && !one.matches("listener/0"));
    }

    #[test]
    fn rejects_what_it_cannot_apply() {
        for (bad, why) in [
            ("registry", "expected NODE:"),
            ("nosuch:intensity=1/1s", "unknown node"),
            ("listener/x:intensity=1/1s", "unknown node"),
            ("registry:strategy=one_for_all", "has no children"),
            ("root:strategy=all", "unknown strategy"),
            ("root:intensity=3", "N/PERIOD"),
            ("root:intensity=-1/10s", "not a count"),
            ("root:intensity=1/0s", "more than 0"),
            ("root:intensity=1/10parsecs", "unit"),
            ("root:backoff=2s..1s", "above MAX"),
            ("root:backoff=2s", "MIN..MAX"),
            ("root:colour=red", "unknown setting"),
            ("root:", "KEY=VALUE"),
        ] {
            let e = parse_override(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn defaults_are_as_documented() {
        assert_eq!(default_for("registry").intensity, 3);
        assert_eq!(default_for("registry").period, 10 * S);
        assert_eq!(default_for("listener/3").backoff.initial, 10 * MS);
        assert_eq!(default_for("root").intensity, 2);
    }
}
