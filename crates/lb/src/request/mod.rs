//! What every request goes through, whichever path carries it (the hand-written
//! HTTP/1.1 fast path or hyper's general path).

pub(crate) mod attempt;
pub(crate) mod phases;
pub(crate) mod rules;
