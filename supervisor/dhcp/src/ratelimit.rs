//! Per-client reply limit, so a looping or hostile client can neither
//! flood the network with replies nor the log with lines.
//!
//! A fixed one-second window per MAC; `0` disables the limit. The table is
//! pruned when it grows, so spoofed MACs cannot exhaust memory.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bramble_core::clients::Mac;

const WINDOW: Duration = Duration::from_secs(1);
const PRUNE_ABOVE: usize = 8192;

pub struct RateLimiter {
    per_second: u32,
    windows: HashMap<Mac, (Instant, u32)>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            windows: HashMap::new(),
        }
    }

    /// Counts one request from `mac`; false when it is over the limit.
    pub fn allow(&mut self, mac: Mac, now: Instant) -> bool {
        if self.per_second == 0 {
            return true;
        }
        if self.windows.len() > PRUNE_ABOVE {
            self.windows
                .retain(|_, (start, _)| now.saturating_duration_since(*start) < WINDOW);
        }
        let entry = self.windows.entry(mac).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= self.per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_mac_per_second() {
        let mut r = RateLimiter::new(2);
        let t = Instant::now();
        let a = Mac([2, 0, 0, 0, 0, 1]);
        let b = Mac([2, 0, 0, 0, 0, 2]);
        assert!(r.allow(a, t));
        assert!(r.allow(a, t));
        assert!(!r.allow(a, t));
        assert!(r.allow(b, t));
        assert!(r.allow(a, t + WINDOW));
    }

    #[test]
    fn zero_means_unlimited() {
        let mut r = RateLimiter::new(0);
        let t = Instant::now();
        assert!((0..1000).all(|_| r.allow(Mac([0; 6]), t)));
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut r = RateLimiter::new(1);
        let t = Instant::now();
        for i in 0..20_000u32 {
            let b = i.to_be_bytes();
            r.allow(Mac([2, 0, b[0], b[1], b[2], b[3]]), t);
        }
        r.allow(Mac([4; 6]), t + WINDOW * 2);
        assert!(r.windows.len() <= PRUNE_ABOVE + 2);
    }
}
