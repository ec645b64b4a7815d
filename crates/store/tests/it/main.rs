//! The store conformance suite: every queue promise, checked against every backend.

mod conformance;
mod sqlite;
