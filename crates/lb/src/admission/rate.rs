//! [`RatePolicy`]: a rate, as both the local and the shared (Redis) limiters
//! take it.

use serde::{Deserialize, Serialize};

/// A rate: `per_second` sustained, `burst` at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatePolicy {
    pub per_second: u32,
    pub burst: u32,
}
