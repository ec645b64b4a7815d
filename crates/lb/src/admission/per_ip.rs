//! `--max-connections-per-ip`: how many connections each client IP holds,
//! so one client cannot take every connection slot. Entries go when their
//! last connection does: memory follows open connections, not history.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Open connections per client IP, under a cap (0: no cap).
pub(crate) struct PerIp {
    cap: usize,
    /// Sharded by address so the serving threads rarely meet on a lock.
    shards: [Mutex<HashMap<IpAddr, usize>>; SHARDS],
}

const SHARDS: usize = 16;

/// The client IP already holds as many connections as the cap allows.
#[derive(Debug)]
pub(crate) struct AtCap;

/// One connection's place in its IP's count, given back on drop.
pub(crate) struct PerIpGuard {
    counts: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Arc::new(PerIp {
            cap,
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        })
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, usize>> {
        let byte = match ip {
            IpAddr::V4(v4) => v4.octets()[3],
            IpAddr::V6(v6) => v6.octets()[15],
        };
        &self.shards[usize::from(byte) % SHARDS]
    }

    /// A place for one more connection from `ip` (`None` inside: no cap,
    /// nothing counted); `AtCap` when it already holds the cap.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Option<PerIpGuard>, AtCap> {
        if self.cap == 0 {
            return Ok(None);
        }
        let mut counts = self.shard(&ip).lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.cap {
            return Err(AtCap);
        }
        *count += 1;
        Ok(Some(PerIpGuard {
            counts: self.clone(),
            ip,
        }))
    }

    /// Client IPs holding connections now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

impl Drop for PerIpGuard {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .shard(&self.ip)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ip_holds_at_most_the_cap_and_entries_go_with_their_connections() {
        let per_ip = PerIp::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = per_ip.admit(a).unwrap();
        let second = per_ip.admit(a).unwrap();
        assert!(per_ip.admit(a).is_err(), "a third from the same IP");
        let other = per_ip.admit(b).unwrap();
        assert!(other.is_some());
        drop(first);
        assert!(per_ip.admit(a).is_ok(), "a place came free");
        drop((second, other));
        assert_eq!(per_ip.tracked(), 0);
    }

    #[test]
    fn no_cap_tracks_nothing() {
        let per_ip = PerIp::new(0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let guards: Vec<_> = (0..100).map(|_| per_ip.admit(ip).unwrap()).collect();
        assert!(guards.iter().all(Option::is_none));
        assert_eq!(per_ip.tracked(), 0);
    }
}
