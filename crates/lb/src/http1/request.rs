//! One client request as the fast path carries it: where it stands, the
//! connection's reusable buffers, and whether the connection stays open.

use std::net::SocketAddr;

use super::head::RequestHead;
use crate::request::phases::AnswerHeaders;
use crate::state::Lb;

/// Whether the client connection stays open after an exchange.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    KeepAlive,
    Close,
}

/// A client connection's reusable buffers.
pub(crate) struct Buffers {
    /// Bytes read from the client: the request head, then body bytes.
    pub client: Vec<u8>,
    /// The head being written (to the backend, then to the client).
    pub head: Vec<u8>,
    /// Bytes read from the backend.
    pub upstream: Vec<u8>,
}

/// Buffers grown past this by a large head or body are shrunk back after the
/// exchange when the client has already sent more (pipelining).
pub(super) const KEEP_CAPACITY: usize = 32 * 1024;

impl Buffers {
    /// Empty: nothing is allocated until bytes arrive, so an idle
    /// connection costs no buffers.
    pub(crate) fn new() -> Self {
        Buffers {
            client: Vec::new(),
            head: Vec::new(),
            upstream: Vec::new(),
        }
    }

    /// After an exchange: with nothing more from the client yet, every
    /// buffer goes back (as nginx returns its buffers to an idle keep-alive
    /// connection); otherwise only what a large exchange grew them by.
    pub(crate) fn shrink(&mut self) {
        if self.client.is_empty() {
            *self = Buffers::new();
            return;
        }
        for buf in [&mut self.client, &mut self.head, &mut self.upstream] {
            if buf.capacity() > KEEP_CAPACITY {
                buf.shrink_to(KEEP_CAPACITY / 4);
            }
        }
    }
}

/// Where the request stands.
pub(crate) struct Request<'a> {
    pub lb: &'a Lb,
    pub peer: SocketAddr,
    pub head: &'a RequestHead,
    /// What the lb adds to the answer.
    pub answer: AnswerHeaders<'a>,
}
