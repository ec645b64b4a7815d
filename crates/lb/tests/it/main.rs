//! The load balancer against tiny real backends on ephemeral ports.

mod backend_protocols;
mod backends;
mod discovery;
mod failover;
mod fast_path;
mod forwarding;
mod overload;
mod proxy_protocol;
mod rate_limits;
mod smuggling;
mod strategies;
mod support;
mod tls;
mod upgrades;
