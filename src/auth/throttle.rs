//! Throttling of failed administrator logins, per source (sans-IO: every
//! call takes `now`, so every rule is a unit test without sleeping).
//!
//! Each failure from a source doubles the delay before its failure reply
//! (from [`ThrottlePolicy::base_delay`] up to `max_delay`); `lockout_after`
//! failures within `window` lock the source out for `lockout`, during which
//! its logins are refused without the password being looked at. A success
//! forgets the source's failures and makes it *known*. Sources are IPv4
//! addresses and IPv6 /64 networks (one host usually owns a whole /64); at
//! most `capacity` are remembered, least recently seen forgotten first.
//!
//! An attacker with many addresses (any local user owns all of
//! 127.0.0.0/8) gets `lockout_after` guesses from each: so failures are
//! also counted across all sources, and past `global_failures` within a
//! `window` the logins of sources not known yet are refused unchecked until
//! the window ends. A known source (one that logged in before) is never
//! slowed by other sources' failures.

use lru::LruCache;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::time::Duration;
use tokio::time::Instant;

/// The throttle's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Delay before the reply to a source's first failure.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// Failures within `window` that lock a source out.
    pub lockout_after: u32,
    pub window: Duration,
    pub lockout: Duration,
    /// Sources remembered at most.
    pub capacity: usize,
    /// Failures from all sources together within `window` past which only
    /// known sources are checked.
    pub global_failures: u32,
}

impl Default for ThrottlePolicy {
    /// 250 ms doubling to 4 s; 5 failures in a minute lock out for a minute
    /// (so at most about 5 guesses a minute per source); 30 failures a
    /// minute from all sources together; 4,096 sources.
    fn default() -> Self {
        ThrottlePolicy {
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
            lockout_after: 5,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
            capacity: 4096,
            global_failures: 30,
        }
    }
}

/// The key a source is throttled under: the IPv4 address, or the IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let net = u128::from(v6) & !((1u128 << 64) - 1);
                Source(IpAddr::V6(net.into()))
            }
            v4 => Source(v4),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

/// May a login from this source be looked at?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Open,
    /// Locked out for this much longer.
    LockedOut(Duration),
    /// Too many failures from all sources: only known sources are checked,
    /// for this much longer.
    Storm(Duration),
}

/// What a failure costs its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Penalty {
    /// Wait this long before the failure reply.
    pub delay: Duration,
    /// Failures from this source in the current window.
    pub failures: u32,
    /// This failure locked the source out.
    pub locked: bool,
}

pub struct Throttle {
    policy: ThrottlePolicy,
    sources: LruCache<Source, Entry>,
    /// Sources that logged in successfully.
    known: LruCache<Source, ()>,
    /// Failures from all sources since `global_since`.
    global: u32,
    global_since: Option<Instant>,
}

impl Throttle {
    pub fn new(policy: ThrottlePolicy) -> Throttle {
        let cap = NonZeroUsize::new(policy.capacity.max(1)).expect("at least 1");
        Throttle {
            policy,
            sources: LruCache::new(cap),
            known: LruCache::new(cap),
            global: 0,
            global_since: None,
        }
    }

    pub fn policy(&self) -> &ThrottlePolicy {
        &self.policy
    }

    /// Whether a login from `ip` may be checked now.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Admission {
        if let Some(since) = self.global_since {
            let age = now.saturating_duration_since(since);
            if age > self.policy.window {
                (self.global, self.global_since) = (0, None);
            } else if self.global >= self.policy.global_failures
                && !self.known.contains(&Source::of(ip))
            {
                return Admission::Storm(self.policy.window - age);
            }
        }
        let Some(e) = self.sources.get_mut(&Source::of(ip)) else {
            return Admission::Open;
        };
        match e.locked_until {
            Some(until) if until > now => Admission::LockedOut(until - now),
            Some(_) => {
                // The lockout is over: a fresh window.
                self.sources.pop(&Source::of(ip));
                Admission::Open
            }
            None => Admission::Open,
        }
    }

    /// Records a failed login from `ip`.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) -> Penalty {
        let p = self.policy;
        if self.global_since.is_none() {
            self.global_since = Some(now);
        }
        self.global = self.global.saturating_add(1);
        let e = self.sources.get_or_insert_mut(Source::of(ip), || Entry {
            failures: 0,
            first: now,
            locked_until: None,
        });
        if now.saturating_duration_since(e.first) > p.window {
            *e = Entry {
                failures: 0,
                first: now,
                locked_until: None,
            };
        }
        e.failures = e.failures.saturating_add(1);
        let shift = (e.failures - 1).min(20);
        let delay = p.base_delay.saturating_mul(1 << shift).min(p.max_delay);
        let locked = e.failures >= p.lockout_after && e.locked_until.is_none();
        if locked {
            e.locked_until = Some(now + p.lockout);
        }
        Penalty {
            delay,
            failures: e.failures,
            locked,
        }
    }

    /// A successful login from `ip`: its failures are forgotten, and it is
    /// known from now on.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.sources.pop(&Source::of(ip));
        self.known.put(Source::of(ip), ());
    }

    /// Sources remembered now.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn delays_double_then_lock_out_then_forgive() {
        let mut t = Throttle::new(ThrottlePolicy::default());
        let now = Instant::now();
        let a = ip("192.0.2.1");
        let delays: Vec<u64> = (0..4)
            .map(|_| t.failed(a, now).delay.as_millis() as u64)
            .collect();
        assert_eq!(delays, [250, 500, 1000, 2000]);
        assert_eq!(t.admit(a, now), Admission::Open);
        let p = t.failed(a, now);
        assert!(p.locked && p.failures == 5);
        assert_eq!(p.delay, Duration::from_secs(4));
        assert_eq!(
            t.admit(a, now + Duration::from_secs(1)),
            Admission::LockedOut(Duration::from_secs(59))
        );
        // Another address is not touched.
        assert_eq!(t.admit(ip("192.0.2.2"), now), Admission::Open);
        // After the lockout, a fresh start.
        assert_eq!(t.admit(a, now + Duration::from_secs(61)), Admission::Open);
        assert_eq!(t.failed(a, now + Duration::from_secs(61)).failures, 1);
    }

    #[test]
    fn the_window_expires_and_success_forgets() {
        let mut t = Throttle::new(ThrottlePolicy::default());
        let now = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..4 {
            t.failed(a, now);
        }
        // Past the window, counting restarts.
        let p = t.failed(a, now + Duration::from_secs(61));
        assert_eq!((p.failures, p.locked), (1, false));
        t.failed(a, now + Duration::from_secs(61));
        t.succeeded(a);
        assert!(t.is_empty());
    }

    /// One guess from each of many addresses: past the global budget only
    /// known sources are checked, until the window ends.
    #[test]
    fn many_sources_share_a_global_budget() {
        let mut t = Throttle::new(ThrottlePolicy::default());
        let now = Instant::now();
        let admin = ip("127.0.0.1");
        t.succeeded(admin);
        for i in 0..30u8 {
            let a = IpAddr::from([127, 1, 0, i]);
            assert_eq!(t.admit(a, now), Admission::Open);
            t.failed(a, now);
        }
        let fresh = ip("127.2.0.1");
        assert_eq!(
            t.admit(fresh, now + Duration::from_secs(1)),
            Admission::Storm(Duration::from_secs(59))
        );
        assert_eq!(
            t.admit(admin, now + Duration::from_secs(1)),
            Admission::Open
        );
        assert_eq!(
            t.admit(fresh, now + Duration::from_secs(61)),
            Admission::Open
        );
    }

    #[test]
    fn sources_are_v4_hosts_and_v6_slash_64s() {
        assert_eq!(
            Source::of(ip("2001:db8::1")),
            Source::of(ip("2001:db8::ffff:1"))
        );
        assert_ne!(
            Source::of(ip("2001:db8::1")),
            Source::of(ip("2001:db8:0:1::1"))
        );
        assert_eq!(
            Source::of(ip("::ffff:192.0.2.1")),
            Source::of(ip("192.0.2.1"))
        );
        let mut t = Throttle::new(ThrottlePolicy {
            capacity: 2,
            ..Default::default()
        });
        let now = Instant::now();
        for i in 0..10 {
            t.failed(IpAddr::from([192, 0, 2, i]), now);
        }
        assert_eq!(t.len(), 2, "bounded");
    }
}
