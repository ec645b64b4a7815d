//! The handlers weir runs itself: one file each.
//!
//! - [`builtin`]: md5, sha256, argon2, sleep, noop, flaky.
//! - [`http`]: POST the input to a URL, signed, with retries on 408/425/429/5xx.
//! - [`command`]: run a program per attempt, input on stdin, result on stdout.

mod argon2;
mod builtin;
mod command;
mod hash;
mod http;
mod sleep;

pub use builtin::BuiltinHandler;
pub use command::CommandHandler;
pub use http::HttpHandler;
