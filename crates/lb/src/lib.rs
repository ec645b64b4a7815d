//! weir's HTTP load balancer: forwards every request to one of the API nodes by
//! a strategy that can be switched at runtime, checks their health, retries
//! idempotent requests that could not connect on another node, and serves its
//! own admin API under `/lb/`.
//!
//! # Layout
//! - `config`: the balancer's settings, [`LbConfig`].
//! - `state`: [`Lb`], the shared state every part reads.
//! - `backend`: [`Backend`] (counters, health) and the lock-free [`BackendSet`].
//! - `selection`: the `Selector` trait, one file per strategy.
//! - `dispatch`: which backend gets a request (pick, bounded wait, affinity)
//!   and the bookkeeping of its answer.
//! - `adaptive`: each backend's in-flight limit, learned from its response
//!   times (the default overload protection).
//! - `sojourn`: whether the wait queue stands (CoDel's sojourn time).
//! - `attempt`: the attempt loop both paths share (retries, retry budget,
//!   what a failure costs a backend, the lb's own JSON refusals).
//! - `rules`: HTTP's rules as the lb applies them (hop-by-hop headers,
//!   replays, request ids, the JSON error shape).
//! - `h1`: the fast path — plain HTTP/1.1 relayed byte for byte.
//! - `proxy`: the general path's transport on hyper (HTTP/2, upgrades, the rest).
//! - `upstream`: per-thread keep-alive pools to the backends (HTTP/1.1, and
//!   HTTP/2 for `h2c://` and `https://` backends that offer it);
//!   [`upstream_tls`]: TLS to `https://` backends.
//! - `tunnel`: upgraded connections (WebSockets) relayed both ways.
//! - `discovery`: `--backends-dns`, the backend set following DNS names.
//! - `proxy_protocol`: `--proxy-protocol`, the client named by a balancer in front.
//! - `health`: active health checks; `outlier`: passive health (ejection)
//!   and the retry budget.
//! - [`ratelimit`] (and `ratelimit_shared`, through Redis): per-client limits.
//! - `admin_guard`: `--admin-allow` and the lockout after wrong admin tokens.
//! - `admin`: `/lb/stats`, `/lb/strategy`, `/lb/backends`, the dashboard.
//! - [`tls`]: TLS termination (certificates by SNI, reloaded in place);
//!   `client_io`: a client connection, plain or TLS.
//! - [`args`]: the flags `weir lb` and `weir up` flatten ([`BalancerArgs`]),
//!   beside the [`LbConfig`] they become.
//! - [`edge`]: headers added to answers (HSTS, `--add-header`) and the
//!   redirect of plain HTTP to HTTPS.
//! - `server`: accepting connections, graceful shutdown; [`run`], [`serve_tls`].
//! - [`spread`]: connections spread over the serving threads ([`serve_seated`],
//!   [`serve_inbox`]).

mod adaptive;
mod admin;
mod admin_guard;
pub mod args;
mod attempt;
mod backend;
mod client_io;
mod config;
pub mod discovery;
mod dispatch;
pub mod edge;
mod h1;
pub mod handover;
mod health;
mod latency;
mod outlier;
mod per_ip;
mod proxy;
mod proxy_protocol;
mod rate;
pub mod ratelimit;
mod ratelimit_shared;
mod rules;
mod selection;
mod server;
mod sojourn;
pub mod spread;
mod state;
mod throughput;
pub mod tls;
mod tunnel;
mod upstream;
pub mod upstream_tls;

pub use args::BalancerArgs;
pub use backend::{Backend, BackendSet};
pub use config::{DnsTarget, LbConfig};
pub use outlier::EjectionConfig;
pub use selection::{HashKey, Strategy};
pub use server::{run, serve, serve_admin, serve_inbox, serve_seated, serve_tls, spawn_background};
pub use state::{BackendsReloaded, Lb};
