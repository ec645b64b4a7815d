//! Selection strategies: which backend gets the next request. One file per
//! strategy behind one trait; the active one is swapped at runtime.

mod consistent_hash;
mod least_connections;
mod peak_ewma;
mod power_of_two;
mod round_robin;
mod weighted_round_robin;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use http::HeaderName;

pub use consistent_hash::{hash_key, ConsistentHash};
pub use least_connections::LeastConnections;
pub use peak_ewma::PeakEwma;
pub use power_of_two::PowerOfTwoChoices;
pub use round_robin::RoundRobin;
pub use weighted_round_robin::WeightedRoundRobin;

use crate::Backend;

/// What `consistent_hash` keys on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HashKey {
    /// The connecting client's IP.
    #[default]
    ClientIp,
    /// A request header's value (falling back to the client IP when absent).
    Header(HeaderName),
}

impl FromStr for HashKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "client_ip" => Ok(HashKey::ClientIp),
            _ => match s.strip_prefix("header:") {
                Some(name) => HeaderName::from_bytes(name.trim().as_bytes())
                    .map(HashKey::Header)
                    .map_err(|_| format!("invalid header name {name:?}")),
                None => Err(format!(
                    "hash key must be client_ip or header:NAME, not {s:?}"
                )),
            },
        }
    }
}

impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashKey::ClientIp => f.write_str("client_ip"),
            HashKey::Header(name) => write!(f, "header:{name}"),
        }
    }
}

/// What a selector knows of the request it places.
pub struct Pick<'a> {
    /// Hash of the request's affinity key (client IP, or a named header), read
    /// by `consistent_hash`.
    pub key: u64,
    /// Which backends may be chosen (healthy, not draining, not tried yet…).
    pub eligible: &'a dyn Fn(&Backend) -> bool,
}

impl Pick<'_> {
    /// Any backend, for key `key`.
    pub fn any(key: u64) -> Pick<'static> {
        Pick {
            key,
            eligible: &|_| true,
        }
    }
}

/// Picks a backend for one request.
pub trait Selector: Send + Sync {
    /// Index into `backends` of the chosen one, among those `pick.eligible`
    /// allows; `None` when none is eligible.
    fn select(&self, backends: &[Arc<Backend>], pick: &Pick) -> Option<usize>;
}

/// The strategies a user can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Each backend in turn.
    RoundRobin,
    /// Each backend in proportion to its weight, smoothly interleaved (nginx's algorithm).
    WeightedRoundRobin,
    /// The backend with the fewest requests in flight.
    LeastConnections,
    /// The less loaded of two random picks.
    PowerOfTwoChoices,
    /// The same key (client IP or a header) to the same backend; when one of n
    /// backends leaves, only its ~1/n of keys move.
    ConsistentHash,
    /// Latency-aware: the lower of two random picks' peak-EWMA latency × load.
    PeakEwma,
}

impl Strategy {
    pub const ALL: [Strategy; 6] = [
        Strategy::RoundRobin,
        Strategy::WeightedRoundRobin,
        Strategy::LeastConnections,
        Strategy::PowerOfTwoChoices,
        Strategy::ConsistentHash,
        Strategy::PeakEwma,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::WeightedRoundRobin => "weighted_round_robin",
            Strategy::LeastConnections => "least_connections",
            Strategy::PowerOfTwoChoices => "power_of_two_choices",
            Strategy::ConsistentHash => "consistent_hash",
            Strategy::PeakEwma => "peak_ewma",
        }
    }

    /// A fresh selector for this strategy.
    pub fn selector(self) -> Box<dyn Selector> {
        match self {
            Strategy::RoundRobin => Box::new(RoundRobin::default()),
            Strategy::WeightedRoundRobin => Box::new(WeightedRoundRobin::default()),
            Strategy::LeastConnections => Box::new(LeastConnections::default()),
            Strategy::PowerOfTwoChoices => Box::new(PowerOfTwoChoices),
            Strategy::ConsistentHash => Box::new(ConsistentHash),
            Strategy::PeakEwma => Box::new(PeakEwma),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = Strategy::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown strategy {:?}; known strategies: {}",
                    s.chars().take(64).collect::<String>(),
                    known.join(", ")
                )
            })
    }
}

/// The active strategy and its selector, swapped together.
pub struct ActiveStrategy {
    pub strategy: Strategy,
    pub selector: Box<dyn Selector>,
    /// What `consistent_hash` keys on; switched together with the strategy.
    pub hash_key: HashKey,
}

impl ActiveStrategy {
    pub fn new(strategy: Strategy, hash_key: HashKey) -> Self {
        ActiveStrategy {
            strategy,
            selector: strategy.selector(),
            hash_key,
        }
    }

    /// The header `consistent_hash` keys on, if it keys on one.
    pub fn hash_header(&self) -> Option<&http::HeaderName> {
        match &self.hash_key {
            HashKey::Header(name) => Some(name),
            HashKey::ClientIp => None,
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub fn backends(n: usize) -> Vec<Arc<Backend>> {
        (0..n)
            .map(|i| Arc::new(Backend::parse(&format!("http://127.0.0.1:{}", 9000 + i)).unwrap()))
            .collect()
    }
}
