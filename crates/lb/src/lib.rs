//! weir's HTTP load balancer: forwards every request to one of the API nodes by
//! a strategy that can be switched at runtime, checks their health, retries
//! idempotent requests that could not connect on another node, and serves its
//! own admin API under `/lb/`.
//!
//! # Layout
//! - `config`: the balancer's settings, [`LbConfig`]; [`args`]: the flags
//!   `weir lb` and `weir up` flatten ([`BalancerArgs`]), which become it.
//! - `state`: [`Lb`], the shared state every part reads.
//! - `server/`: accepting connections and graceful shutdown ([`run`],
//!   [`serve_tls`]); [`server::spread`]: connections spread over the serving
//!   threads; [`server::handover`]: listeners handed to a successor process.
//! - `edge/`: the client's side of the connection — TLS termination
//!   ([`edge::tls`]), plain or TLS streams, `--proxy-protocol`, and what the
//!   lb adds at the edge (HSTS, `--add-header`, the HTTPS redirect).
//! - `request/`: what every request goes through on either path — its
//!   phases (admin diversion or redirect, the rate-limit verdict, the headers
//!   added to its answer), the attempt loop (retries, retry budget, the lb's
//!   own JSON refusals) and HTTP's rules (hop-by-hop headers, request ids).
//! - `http1/`: the fast path — plain HTTP/1.1 relayed byte for byte.
//! - `proxy/`: the general path on hyper (HTTP/2, upgrades and WebSocket
//!   tunnels, the rest).
//! - `upstream/`: per-thread keep-alive pools to the backends (HTTP/1.1, and
//!   HTTP/2 for `h2c://` and `https://`); [`upstream::tls`]: TLS to them.
//! - `admission/`: whether and when a request is let in — per-client rate
//!   limits ([`admission::ratelimit`], local or through Redis), per-IP
//!   connection caps, each backend's adaptive in-flight limit and the
//!   standing-queue check (CoDel's sojourn time).
//! - `backends/`: [`Backend`] and the lock-free [`BackendSet`]; the
//!   strategies (`selection/`, one file each), dispatch (pick, bounded wait,
//!   affinity), active and passive health (ejection), latency histograms,
//!   and [`backends::discovery`] (`--backends-dns`).
//! - `admin/`: `/lb/stats`, `/lb/strategy`, `/lb/backends`, the dashboard,
//!   `--admin-allow` and the lockout after wrong admin tokens.

mod admin;
pub mod admission;
pub mod args;
pub mod backends;
mod config;
pub mod edge;
mod http1;
mod proxy;
mod request;
pub mod server;
mod state;
pub mod upstream;

pub use args::BalancerArgs;
pub use backends::outlier::EjectionConfig;
pub use backends::selection::{HashKey, Strategy};
pub use backends::{Backend, BackendSet};
pub use config::{DnsTarget, LbConfig};
pub use server::{run, serve, serve_admin, serve_inbox, serve_seated, serve_tls, spawn_background};
pub use state::{BackendsReloaded, Lb};
