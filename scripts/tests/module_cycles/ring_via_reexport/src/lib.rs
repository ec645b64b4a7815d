//! Two modules that only name each other's types through the crate root's
//! re-exports: a ring the path-only check missed.
mod backend;
mod config;

pub use backend::Backend;
pub use config::Config;
