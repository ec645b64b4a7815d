//! The `weir` binary's library half: command-line config, the in-process
//! cluster `weir up` runs, and one module per subcommand. Kept in a library so
//! the integration tests start exactly what the binary starts.
//!
//! # Layout
//! - [`config`]: the command line (every flag also a `WEIR_*` env var).
//! - [`config_file`]: `--config FILE`, TOML settings under flags and env.
//! - [`cluster`]: [`cluster::Cluster`], lb + API nodes + workers in one process.
//! - [`cmd`]: one module per subcommand (`up`, `lb`, `api`, `worker`, `migrate`, `bench`).
//! - [`registration`]: `weir api --register-with`, joining and leaving a running lb.
//! - [`status`]: `weir status`, the cluster at a glance with verdicts.
//! - [`signal`]: the shutdown signal (Ctrl-C or SIGTERM).
//! - [`probes`]: a worker's `/health/live` and `/health/ready`.
//! - [`logging`]: tracing setup (`--log-format text|json`).

pub mod api_client;
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod config_file;
pub mod listen;
pub mod logging;
pub mod probes;
pub mod registration;
pub mod signal;
pub mod status;
