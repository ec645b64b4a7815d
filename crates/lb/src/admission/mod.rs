//! Whether a request is let in, and when: per-client rate limits (local,
//! or shared through Redis), per-IP connection caps, and the overload
//! protection that bounds each backend's in-flight requests and the wait
//! for a slot — not misled by the lb's own lag ([`lag`]).

pub(crate) mod adaptive;
pub mod lag;
pub(crate) mod per_ip;
pub(crate) mod rate;
pub mod ratelimit;
pub(crate) mod ratelimit_shared;
pub(crate) mod sojourn;
