//! The load balancer against tiny real backends on ephemeral ports.

mod failover;
mod forwarding;
mod strategies;
mod support;
