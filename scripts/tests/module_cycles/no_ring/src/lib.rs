//! One way only: `state` names `config` through a re-export, `config`
//! names nothing of the crate; a parent re-exporting its child is no ring.
mod config;
mod state;

pub use config::Config;
pub use state::State;
