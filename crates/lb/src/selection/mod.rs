//! Selection strategies: which backend gets the next request. One file per
//! strategy behind one trait; the active one is swapped at runtime.

mod least_connections;
mod round_robin;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

pub use least_connections::LeastConnections;
pub use round_robin::RoundRobin;

use crate::Backend;

/// Picks a backend for one request.
pub trait Selector: Send + Sync {
    /// Index into `backends` of the chosen one, among those for which `eligible`
    /// holds; `None` when none is eligible.
    fn select(
        &self,
        backends: &[Arc<Backend>],
        eligible: &dyn Fn(&Backend) -> bool,
    ) -> Option<usize>;
}

/// The strategies a user can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Each backend in turn.
    RoundRobin,
    /// The backend with the fewest requests in flight.
    LeastConnections,
}

impl Strategy {
    pub const ALL: [Strategy; 2] = [Strategy::RoundRobin, Strategy::LeastConnections];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastConnections => "least_connections",
        }
    }

    /// A fresh selector for this strategy.
    pub fn selector(self) -> Box<dyn Selector> {
        match self {
            Strategy::RoundRobin => Box::new(RoundRobin::default()),
            Strategy::LeastConnections => Box::new(LeastConnections::default()),
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
}

impl ActiveStrategy {
    pub fn new(strategy: Strategy) -> Self {
        ActiveStrategy {
            strategy,
            selector: strategy.selector(),
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
