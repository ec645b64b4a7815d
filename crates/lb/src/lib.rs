//! weir's HTTP load balancer: forwards every request to one of the API nodes by
//! a strategy that can be switched at runtime, checks their health, retries
//! idempotent requests that could not connect on another node, and serves its
//! own admin API under `/lb/`.
//!
//! # Layout
//! - [`config`]: the balancer's settings, [`LbConfig`].
//! - [`backend`]: [`Backend`] (counters, health) and the lock-free [`BackendSet`].
//! - [`selection`]: the [`selection::Selector`] trait, one file per strategy.
//! - [`health`]: active health checks.
//! - [`outlier`]: passive health — outlier ejection with a cap, and the retry budget.
//! - `h1`: the fast path — plain HTTP/1.1 relayed byte for byte.
//! - [`proxy`]: the general path's forwarding (HTTP/2, upgrades, the rest).
//! - [`admin`]: `/lb/stats`, `/lb/strategy`, `/lb/backends`.
//! - [`upstream`]: per-thread keep-alive pools to the backends.
//! - [`server`]: accepting connections, graceful shutdown; [`run`].

pub mod admin;
pub mod backend;
pub mod config;
mod dispatch;
mod h1;
pub mod health;
pub mod latency;
pub mod outlier;
pub mod proxy;
mod rate;
pub mod ratelimit;
pub mod ratelimit_shared;
mod rules;
pub mod selection;
pub mod server;
pub mod state;
pub mod throughput;
pub mod upstream;

pub use backend::{Backend, BackendSet};
pub use config::{HashKey, LbConfig};
pub use selection::Strategy;
pub use server::{run, serve, serve_admin, spawn_background};
pub use state::Lb;
