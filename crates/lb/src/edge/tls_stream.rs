//! A client's TLS session over its TCP socket, on rustls's unbuffered API:
//! the lb owns every buffer, so an idle connection holds none.
//!
//! rustls's buffered `ServerConnection` keeps a 4 KiB record buffer for the
//! session's life, the largest part of an idle HTTPS connection's memory.
//! Here records read wait in `incoming` only until they are decrypted,
//! plaintext the reader has not taken waits in `plaintext`, and records to
//! send wait in `outgoing` until the socket takes them; each is given back
//! when the connection waits for its client with it empty.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What one read from the socket reserves.
const READ_SIZE: usize = 4096;
/// Most plaintext one write encrypts, and most ciphertext waiting for the
/// socket before a write waits for it to drain.
const WRITE_CHUNK: usize = 64 * 1024;
/// Most bytes held undecrypted: a handshake message (rustls takes up to
/// 64 KiB) in full records. A peer sending more without completing one is
/// refused, so a hostile client cannot grow the buffer.
const MAX_INCOMING: usize = 64 * 1024 + 2 * (16 * 1024 + 256);
/// A buffer emptied while the connection is busy is kept up to this size.
const KEEP_CAPACITY: usize = 16 * 1024;

/// A server-side TLS session on a client's socket.
pub(crate) struct TlsConn {
    tcp: TcpStream,
    session: UnbufferedServerConnection,
    /// Read from the socket, not yet decrypted (a partial record).
    incoming: Vec<u8>,
    /// Decrypted, not yet read, from `plain_at` on.
    plaintext: Vec<u8>,
    plain_at: usize,
    /// Encrypted, not yet written to the socket, from `out_at` on.
    outgoing: Vec<u8>,
    out_at: usize,
    /// The peer sent close_notify or closed its side: reads end.
    peer_closed: bool,
    close_sent: bool,
}

/// What the session waits for once the records at hand are processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// More records from the peer (mid-handshake).
    Read,
    /// Nothing: application data may flow both ways.
    Traffic,
    /// Both sides said close_notify.
    Closed,
}

/// What to do once the session can take application data.
enum Then<'d> {
    Stop,
    Encrypt(&'d [u8]),
    CloseNotify,
}

impl TlsConn {
    /// The server's side of a handshake on `tcp`.
    pub(crate) async fn accept(config: Arc<ServerConfig>, tcp: TcpStream) -> io::Result<TlsConn> {
        let session = UnbufferedServerConnection::new(config).map_err(tls_error)?;
        let mut conn = TlsConn {
            tcp,
            session,
            incoming: Vec::new(),
            plaintext: Vec::new(),
            plain_at: 0,
            outgoing: Vec::new(),
            out_at: 0,
            peer_closed: false,
            close_sent: false,
        };
        poll_fn(|cx| conn.poll_handshake(cx)).await?;
        Ok(conn)
    }

    /// The protocol the client chose by ALPN.
    pub(crate) fn alpn_protocol(&self) -> Option<&[u8]> {
        self.session.alpn_protocol()
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Waits until there is plaintext to read, or the stream has ended or
    /// failed; while it waits, the connection holds no buffer.
    pub(crate) async fn readable(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_plaintext(cx, None)).await
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let (next, _) = self.process(None, Then::Stop)?;
            ready!(self.poll_send(cx))?;
            match next {
                Next::Traffic => return Poll::Ready(Ok(())),
                Next::Closed => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
                Next::Read if self.peer_closed => {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()))
                }
                Next::Read => {
                    if ready!(self.poll_fill(cx))? == 0 {
                        self.peer_closed = true;
                    }
                }
            }
        }
    }

    /// Ready once `sink` took plaintext, plaintext is waiting, or the
    /// stream ended.
    fn poll_plaintext(
        &mut self,
        cx: &mut Context<'_>,
        mut sink: Option<&mut ReadBuf<'_>>,
    ) -> Poll<io::Result<()>> {
        let filled = sink.as_ref().map_or(0, |s| s.filled().len());
        loop {
            // Records that came with those read (tickets, a key update's
            // answer) go out as the socket takes them; the rest with the
            // next write or flush.
            if self.out_at < self.outgoing.len() {
                let _ = self.poll_send(cx)?;
            }
            let (next, _) = self.process(sink.as_deref_mut(), Then::Stop)?;
            if next == Next::Closed {
                self.peer_closed = true;
            }
            let took = sink.as_ref().map_or(0, |s| s.filled().len()) > filled;
            if took || self.plain_at < self.plaintext.len() || self.peer_closed {
                return Poll::Ready(Ok(()));
            }
            if ready!(self.poll_fill(cx))? == 0 {
                // The socket ended without close_notify: the end of the
                // stream all the same, as HTTP/1.1 clients often do — but
                // not in the middle of a record, which is a truncation.
                if !self.incoming.is_empty() {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
                self.peer_closed = true;
            }
        }
    }

    /// Copies waiting plaintext into `buf`; whether there was any.
    fn take_plaintext(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.plain_at >= self.plaintext.len() {
            return false;
        }
        let n = (self.plaintext.len() - self.plain_at).min(buf.remaining());
        buf.put_slice(&self.plaintext[self.plain_at..self.plain_at + n]);
        self.plain_at += n;
        if self.plain_at == self.plaintext.len() {
            self.plain_at = 0;
            keep_or_release(&mut self.plaintext);
        }
        true
    }

    /// Reads what the socket has into `incoming`: `Ok(0)` at its end.
    /// Waiting for the client, the connection gives back its empty buffers.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.incoming.len() >= MAX_INCOMING {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS: a record or handshake message larger than the lb takes",
            )));
        }
        loop {
            if self.tcp.poll_read_ready(cx).is_pending() {
                if self.incoming.is_empty() {
                    self.incoming = Vec::new();
                }
                if self.plaintext.is_empty() {
                    self.plaintext = Vec::new();
                }
                if self.outgoing.is_empty() {
                    self.outgoing = Vec::new();
                }
                return Poll::Pending;
            }
            self.incoming.reserve(READ_SIZE);
            match self.tcp.try_read_buf(&mut self.incoming) {
                Ok(n) => return Poll::Ready(Ok(n)),
                // Readiness was stale; the failed read cleared it.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Writes `outgoing` to the socket until it has taken all of it.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_at < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.outgoing[self.out_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_at += n;
        }
        self.out_at = 0;
        keep_or_release(&mut self.outgoing);
        Poll::Ready(Ok(()))
    }

    /// [`TlsConn::process_records`]; on a TLS error, the alert rustls
    /// queued is sent if the socket takes it now.
    fn process(
        &mut self,
        sink: Option<&mut ReadBuf<'_>>,
        then: Then<'_>,
    ) -> io::Result<(Next, usize)> {
        self.process_records(sink, then).inspect_err(|_| {
            self.encode_queued();
            let _ = self.tcp.try_write(&self.outgoing[self.out_at..]);
        })
    }

    /// Moves the alert rustls queued on an error into `outgoing`. rustls
    /// hands out what it queued before it parses anything, and this takes
    /// that one record and stops: the bytes that failed are not parsed again
    /// (a second fatal alert), and the handshake's fragments still in
    /// `incoming` stay where rustls expects them.
    fn encode_queued(&mut self) {
        let UnbufferedStatus { state, .. } = self.session.process_tls_records(&mut self.incoming);
        if let Ok(ConnectionState::EncodeTlsData(mut data)) = state {
            let _ = append(&mut self.outgoing, 512, |out| {
                data.encode(out).map_err(encode_room)
            });
        }
    }

    /// Processes the complete records in `incoming`: plaintext into `sink`
    /// (then `plaintext`), handshake records into `outgoing`; then, once
    /// the session takes application data, does `then`. Returns what the
    /// session waits for next and the bytes `then` put in `outgoing`.
    fn process_records(
        &mut self,
        mut sink: Option<&mut ReadBuf<'_>>,
        mut then: Then<'_>,
    ) -> io::Result<(Next, usize)> {
        let TlsConn {
            session,
            incoming,
            plaintext,
            outgoing,
            peer_closed,
            ..
        } = self;
        loop {
            let UnbufferedStatus { mut discard, state } =
                session.process_tls_records(&mut incoming[..]);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    incoming.drain(..discard);
                    return Err(tls_error(e));
                }
            };
            let done = match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(tls_error)?;
                        discard += record.discard;
                        deliver(record.payload, sink.as_deref_mut(), plaintext);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut data) => {
                    append(outgoing, 512, |out| data.encode(out).map_err(encode_room))?;
                    None
                }
                // `outgoing` holds them, sent before anything appended later.
                ConnectionState::TransmitTlsData(data) => {
                    data.done();
                    None
                }
                ConnectionState::BlockedHandshake => Some((Next::Read, 0)),
                ConnectionState::PeerClosed => {
                    *peer_closed = true;
                    None
                }
                ConnectionState::Closed => Some((Next::Closed, 0)),
                ConnectionState::WriteTraffic(mut traffic) => {
                    let written = match std::mem::replace(&mut then, Then::Stop) {
                        Then::Stop => 0,
                        Then::Encrypt(data) => append(outgoing, data.len() + 256, |out| {
                            traffic.encrypt(data, out).map_err(encrypt_room)
                        })?,
                        Then::CloseNotify => append(outgoing, 64, |out| {
                            traffic.queue_close_notify(out).map_err(encrypt_room)
                        })?,
                    };
                    Some((Next::Traffic, written))
                }
                // Early data is never enabled (`max_early_data_size` is 0).
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "TLS: an unexpected connection state",
                    ))
                }
            };
            incoming.drain(..discard);
            if let Some(done) = done {
                return Ok(done);
            }
        }
    }
}

/// Plaintext to the reader's buffer while it has room, the rest kept.
fn deliver(payload: &[u8], sink: Option<&mut ReadBuf<'_>>, kept: &mut Vec<u8>) {
    let direct = match sink {
        Some(sink) if kept.is_empty() => {
            let n = payload.len().min(sink.remaining());
            sink.put_slice(&payload[..n]);
            n
        }
        _ => 0,
    };
    kept.extend_from_slice(&payload[direct..]);
}

/// Lets `write` fill room at the end of `buf`, starting with `room` bytes
/// and growing to what it says it needs; returns the bytes it wrote.
fn append(
    buf: &mut Vec<u8>,
    mut room: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> io::Result<usize> {
    let start = buf.len();
    loop {
        buf.resize(start + room, 0);
        match write(&mut buf[start..]) {
            Ok(n) => {
                buf.truncate(start + n);
                return Ok(n);
            }
            Err(Some(needed)) if needed > room => room = needed,
            Err(_) => {
                buf.truncate(start);
                return Err(io::Error::other("TLS: a record could not be written"));
            }
        }
    }
}

/// The room an encoding needs, when that is why it failed.
fn encode_room(e: EncodeError) -> Option<usize> {
    match e {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(required_size)
        }
        _ => None,
    }
}

/// The room an encryption needs, when that is why it failed.
fn encrypt_room(e: EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(required_size)
        }
        _ => None,
    }
}

/// An emptied buffer: kept for the next use unless it grew large.
fn keep_or_release(buf: &mut Vec<u8>) {
    if buf.capacity() > KEEP_CAPACITY {
        *buf = Vec::new();
    } else {
        buf.clear();
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 || this.take_plaintext(buf) {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_plaintext(cx, Some(buf)))?;
        this.take_plaintext(buf);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.outgoing.len() - this.out_at >= WRITE_CHUNK {
            ready!(this.poll_send(cx))?;
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.close_sent {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        // What the socket took goes before more is appended: a stream the
        // socket takes at about the pace it is written never drains whole.
        if this.out_at > 0 {
            this.outgoing.drain(..this.out_at);
            this.out_at = 0;
        }
        let data = &data[..data.len().min(WRITE_CHUNK)];
        match this.process(None, Then::Encrypt(data))? {
            (Next::Traffic, _) => {}
            _ => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
        // What the socket takes now; the rest waits for the next write or
        // flush (the bound above).
        let _ = this.poll_send(cx)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_send(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            this.close_sent = true;
            this.process(None, Then::CloseNotify)?;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server config for `localhost` and a client config trusting it,
    /// both limited to `version`.
    fn configs(
        version: &'static rustls::SupportedProtocolVersion,
    ) -> (Arc<ServerConfig>, Arc<rustls::ClientConfig>) {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = CertificateDer::from(generated.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            generated.signing_key.serialize_der(),
        ));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    async fn pair(
        version: &'static rustls::SupportedProtocolVersion,
    ) -> (TlsConn, tokio_rustls::client::TlsStream<TcpStream>) {
        let (server, client) = configs(version);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            TlsConn::accept(server, tcp).await.unwrap()
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let client = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .unwrap();
        (accepted.await.unwrap(), client)
    }

    /// Echoes what it reads until the client's close_notify, then closes.
    async fn echo(mut conn: TlsConn) -> TlsConn {
        let mut buf = vec![0u8; 7000];
        loop {
            let n = conn.read(&mut buf).await.unwrap();
            if n == 0 {
                conn.shutdown().await.unwrap();
                return conn;
            }
            conn.write_all(&buf[..n]).await.unwrap();
        }
    }

    #[tokio::test]
    async fn megabytes_echo_both_ways_over_tls_1_3_and_1_2_and_both_close_cleanly() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let (server, client) = pair(version).await;
            let served = tokio::spawn(echo(server));
            let sent: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
            let (mut rd, mut wr) = tokio::io::split(client);
            let to_send = sent.clone();
            let writer = tokio::spawn(async move {
                // Odd-sized writes: records that do not line up with reads.
                for chunk in to_send.chunks(12_345) {
                    wr.write_all(chunk).await.unwrap();
                }
                wr.shutdown().await.unwrap();
            });
            let mut got = Vec::new();
            // Ends cleanly: the lb's close_notify, not a truncation error.
            rd.read_to_end(&mut got).await.unwrap();
            writer.await.unwrap();
            assert_eq!(got.len(), sent.len(), "{version:?}");
            assert!(got == sent, "{version:?}: echoed bytes differ");
            let conn = served.await.unwrap();
            assert!(conn.close_sent && conn.peer_closed);
        }
    }

    #[tokio::test]
    async fn a_connection_waiting_for_its_client_holds_no_buffer() {
        let (mut server, mut client) = pair(&rustls::version::TLS13).await;
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 16];
        let n = server.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ping");
        server.write_all(&[b'x'; 40_000]).await.unwrap();
        server.flush().await.unwrap();
        let mut answer = vec![0u8; 40_000];
        client.read_exact(&mut answer).await.unwrap();
        // The server waits for more: a read that finds nothing.
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), server.readable()).await;
        assert!(waited.is_err(), "no bytes came, yet readable");
        assert_eq!(
            (
                server.incoming.capacity(),
                server.plaintext.capacity(),
                server.outgoing.capacity()
            ),
            (0, 0, 0)
        );
        // And it still reads what comes next.
        client.write_all(b"again").await.unwrap();
        server.readable().await.unwrap();
        let n = server.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"again");
    }

    #[tokio::test]
    async fn a_corrupt_record_fails_the_read_and_the_client_is_told() {
        let (mut server, mut client) = pair(&rustls::version::TLS13).await;
        // An application-data record that does not decrypt, past rustls.
        let mut junk = vec![0x17, 0x03, 0x03, 0x00, 0x40];
        junk.extend([0xa5; 0x40]);
        client.get_mut().0.write_all(&junk).await.unwrap();
        let mut buf = [0u8; 64];
        let read = server.read(&mut buf).await;
        assert_eq!(read.unwrap_err().kind(), io::ErrorKind::InvalidData);
        // The alert reached the client: its next read fails rather than
        // waiting for more.
        let answer = tokio::time::timeout(std::time::Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("the client hears of it");
        assert!(answer.is_err(), "{answer:?}");
    }

    #[tokio::test]
    async fn a_socket_ending_in_the_middle_of_a_record_is_a_truncation() {
        let (mut server, mut client) = pair(&rustls::version::TLS13).await;
        client
            .get_mut()
            .0
            .write_all(&[0x17, 0x03, 0x03, 0x01, 0x00, 1, 2, 3])
            .await
            .unwrap();
        client.get_mut().0.shutdown().await.unwrap();
        let mut buf = [0u8; 64];
        let read = server.read(&mut buf).await;
        assert_eq!(read.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn a_client_hello_larger_than_rustls_takes_is_refused() {
        let (server, _) = configs(&rustls::version::TLS13);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            TlsConn::accept(server, tcp).await.err()
        });
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        // Handshake records announcing a ClientHello of 16 MiB, sent in
        // full records until the lb stops reading.
        let mut first = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff];
        first.resize(5 + 0x4000, 0);
        let _ = tcp.write_all(&first).await;
        let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00];
        record.resize(5 + 0x4000, 0);
        for _ in 0..20 {
            if tcp.write_all(&record).await.is_err() {
                break;
            }
        }
        let failed = tokio::time::timeout(std::time::Duration::from_secs(10), accepted)
            .await
            .expect("the handshake ends")
            .unwrap();
        assert!(failed.is_some(), "a 16 MiB ClientHello was taken");
    }
}
