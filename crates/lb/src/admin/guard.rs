//! Who may reach the admin API: `--admin-allow` CIDRs (every method), and a
//! lockout for a client IP after repeated wrong tokens, checked before the
//! token is, so guessing stays slow whatever the answers say.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong tokens a client IP may present per window before it is locked out
/// for the rest of the window.
const MAX_FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Client IPs remembered at most; past it the oldest windows are dropped.
const MAX_TRACKED: usize = 10_000;

/// Failed admin authentications per client IP.
#[derive(Default)]
pub struct FailedLogins {
    by_ip: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl FailedLogins {
    /// How long `ip` stays locked out, if it is.
    pub(crate) fn locked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let by_ip = self.by_ip.lock().unwrap_or_else(|e| e.into_inner());
        let (failures, since) = by_ip.get(&ip)?;
        let left = WINDOW
            .checked_sub(now.duration_since(*since))
            .filter(|left| !left.is_zero())?;
        (*failures >= MAX_FAILURES).then_some(left)
    }

    pub(crate) fn record(&self, ip: IpAddr, now: Instant) {
        let mut by_ip = self.by_ip.lock().unwrap_or_else(|e| e.into_inner());
        if by_ip.len() >= MAX_TRACKED {
            by_ip.retain(|_, (_, since)| now.duration_since(*since) < WINDOW);
        }
        let entry = by_ip.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    pub(crate) fn forget(&self, ip: IpAddr) {
        let mut by_ip = self.by_ip.lock().unwrap_or_else(|e| e.into_inner());
        by_ip.remove(&ip);
    }
}

/// Whether `ip` may reach the admin API (an empty list allows everyone).
pub(crate) fn allowed(allow: &[ipnet::IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    allow.is_empty() || allow.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ip_is_locked_out_after_repeated_failures_for_the_rest_of_the_window() {
        let logins = FailedLogins::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert!(logins.locked(ip, t0).is_none());
            logins.record(ip, t0);
        }
        assert!(logins.locked(ip, t0).is_some());
        assert!(logins.locked("10.0.0.2".parse().unwrap(), t0).is_none());
        assert!(
            logins.locked(ip, t0 + WINDOW).is_none(),
            "the window passed"
        );
    }

    #[test]
    fn the_allow_list_matches_cidrs_and_mapped_addresses() {
        let allow: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(allowed(&allow, "10.1.2.3".parse().unwrap()));
        assert!(allowed(&allow, "::ffff:10.1.2.3".parse().unwrap()));
        assert!(!allowed(&allow, "192.168.0.1".parse().unwrap()));
        assert!(allowed(&[], "192.168.0.1".parse().unwrap()));
    }
}
