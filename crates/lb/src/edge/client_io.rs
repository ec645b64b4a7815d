//! A client's connection, plain or TLS: one concrete type the fast path and
//! the general path serve, whichever listener it came from.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::edge::tls_stream::TlsConn;

/// What a read from a client reserves: a request head fits, as a rule.
pub(crate) const READ_RESERVE: usize = 4096;

pub(crate) enum ClientIo {
    Plain(TcpStream),
    /// Boxed: a TLS session's state is large, and most connections are plain.
    Tls(Box<TlsConn>),
}

impl ClientIo {
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, ClientIo::Tls(_))
    }

    /// Waits for the client's next bytes and reads them into `buf`, which
    /// grows only once they are there: an idle connection holds no buffer.
    /// A plain socket is read as soon as it reports readiness — one system
    /// call per request rather than a peek and then a read. The read is
    /// tokio's `poll_read`, polled once: a short read clears the socket's
    /// readiness (the kernel's buffer is drained), so the next wait is a
    /// real one rather than a read that finds nothing; readiness left over
    /// all the same (a read that filled its buffer keeps it) finds nothing,
    /// gives the buffer back and waits again.
    pub(crate) async fn read_when_ready(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            ClientIo::Plain(s) => loop {
                s.readable().await?;
                buf.reserve(READ_RESERVE);
                let read = {
                    let mut read = std::pin::pin!(tokio::io::AsyncReadExt::read_buf(s, buf));
                    std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await
                };
                match read {
                    Poll::Ready(read) => return read,
                    Poll::Pending if buf.is_empty() => *buf = Vec::new(),
                    Poll::Pending => {}
                }
            },
            ClientIo::Tls(tls) => {
                tls.readable().await?;
                buf.reserve(READ_RESERVE);
                tokio::io::AsyncReadExt::read_buf(tls.as_mut(), buf).await
            }
        }
    }

    /// The lb's own address of this connection (the PROXY header's
    /// destination when one is sent to backends).
    pub(crate) fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        match self {
            ClientIo::Plain(s) => s.local_addr(),
            ClientIo::Tls(tls) => tls.tcp().local_addr(),
        }
    }

    /// Whether the client chose HTTP/2 by ALPN.
    pub(crate) fn negotiated_h2(&self) -> bool {
        match self {
            ClientIo::Plain(_) => false,
            ClientIo::Tls(tls) => tls.alpn_protocol() == Some(b"h2"),
        }
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientIo::Plain(s) => s.is_write_vectored(),
            ClientIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
