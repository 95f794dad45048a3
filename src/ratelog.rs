//! Rate-limited log lines that never lose a count (sans-IO: every call
//! takes `now`).
//!
//! A storm of one event (refused clients, failed accepts) is logged at most
//! once per [`RateLimitedLog::period`], each line carrying how many events it
//! stands for. Events that arrive after the last line are not dropped: a
//! periodic [`RateLimitedLog::tick`] reports them once the period is over
//! (when the storm has ended, nothing else would), and
//! [`RateLimitedLog::flush`] reports them at shutdown. The counts of all the
//! lines add up to the number of events exactly.

use std::time::Duration;
use tokio::time::Instant;

/// Counts events and says when a line is due; see the module header.
#[derive(Debug, Clone)]
pub struct RateLimitedLog {
    period: Duration,
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl Default for RateLimitedLog {
    /// At most one line a second.
    fn default() -> Self {
        RateLimitedLog::new(Duration::from_secs(1))
    }
}

impl RateLimitedLog {
    pub fn new(period: Duration) -> Self {
        RateLimitedLog {
            period,
            unlogged: 0,
            logged_at: None,
        }
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    fn due(&self, now: Instant) -> bool {
        self.logged_at
            .is_none_or(|t| now.saturating_duration_since(t) >= self.period)
    }

    /// One event. `Some(n)`: log a line now for `n` events (this one and
    /// those not logged yet); `None`: counted for a later line.
    pub fn record(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        if !self.due(now) {
            return None;
        }
        self.logged_at = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }

    /// Call periodically: `Some(n)` when `n` events wait and the period since
    /// the last line is over (the storm ended, or slowed down).
    pub fn tick(&mut self, now: Instant) -> Option<u64> {
        if self.unlogged == 0 || !self.due(now) {
            return None;
        }
        self.logged_at = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }

    /// At shutdown: the events not logged yet, if any.
    pub fn flush(&mut self) -> Option<u64> {
        (self.unlogged > 0).then(|| std::mem::take(&mut self.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_event_logs_then_once_a_period() {
        let mut l = RateLimitedLog::default();
        let t = Instant::now();
        assert_eq!(l.record(t), Some(1));
        assert_eq!(l.record(t + Duration::from_millis(10)), None);
        assert_eq!(l.record(t + Duration::from_millis(20)), None);
        // The storm ends: nothing else would report the two.
        assert_eq!(l.tick(t + Duration::from_millis(500)), None);
        assert_eq!(l.tick(t + Duration::from_millis(1000)), Some(2));
        assert_eq!(l.tick(t + Duration::from_millis(3000)), None);
        assert_eq!(l.record(t + Duration::from_millis(3001)), Some(1));
        assert_eq!(l.record(t + Duration::from_millis(3002)), None);
        assert_eq!(l.flush(), Some(1));
        assert_eq!(l.flush(), None);
    }

    proptest! {
        /// Whatever the timing, the lines add up to the events exactly, and
        /// no two lines (short of the final flush) are closer than a period.
        #[test]
        fn counts_are_exact(steps in proptest::collection::vec((0u64..1500, any::<bool>()), 0..300)) {
            let mut l = RateLimitedLog::default();
            let t0 = Instant::now();
            let (mut now, mut events, mut logged) = (t0, 0u64, 0u64);
            let mut last_line: Option<Instant> = None;
            for (gap_ms, is_event) in steps {
                now += Duration::from_millis(gap_ms);
                let line = if is_event {
                    events += 1;
                    l.record(now)
                } else {
                    l.tick(now)
                };
                if let Some(n) = line {
                    if let Some(prev) = last_line {
                        prop_assert!(now - prev >= Duration::from_secs(1));
                    }
                    last_line = Some(now);
                    logged += n;
                }
            }
            logged += l.flush().unwrap_or(0);
            prop_assert_eq!(logged, events);
        }
    }
}
