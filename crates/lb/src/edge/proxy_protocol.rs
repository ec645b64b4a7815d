//! `--proxy-protocol`: connections come from a trusted balancer in front
//! (a cloud NLB, HAProxy) that opens each with a PROXY protocol header, v1
//! (text) or v2 (binary), naming the client. That client address then
//! stands for the connection's peer everywhere: rate limits, per-IP
//! connection caps, hashing, logs and `X-Forwarded-For`. A connection
//! without a valid header is refused: on such a listener any other sender
//! could name any client.
//!
//! The header is read exactly — nothing of the HTTP bytes after it — so the
//! connection is handed on untouched: 12 bytes tell the versions apart (the
//! v2 signature is 12 bytes; the shortest v1 header is 15), v2 then says its
//! length, and v1 is read up to its CRLF (at most 107 bytes).

use std::net::SocketAddr;
use std::time::Duration;

use ppp::{v1, v2, HeaderResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header (RFC: 107 bytes with its CRLF).
const V1_MAX: usize = 107;
/// The longest v2 header accepted: its addresses and a few TLVs.
const V2_MAX: usize = 16 + 512;

/// Reads the header within `timeout`; the client it names (`None`: the
/// balancer's own connection, e.g. a health check — LOCAL or UNKNOWN).
/// `Err` when there is no valid header.
pub(crate) async fn read_header(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<Option<SocketAddr>, ()> {
    tokio::time::timeout(timeout, read(stream))
        .await
        .map_err(|_| ())?
}

async fn read(stream: &mut TcpStream) -> Result<Option<SocketAddr>, ()> {
    let mut buf = vec![0u8; 12];
    stream.read_exact(&mut buf).await.map_err(|_| ())?;
    if buf == V2_SIGNATURE {
        let mut rest = [0u8; 4];
        stream.read_exact(&mut rest).await.map_err(|_| ())?;
        buf.extend_from_slice(&rest);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        if 16 + len > V2_MAX {
            return Err(());
        }
        buf.resize(16 + len, 0);
        stream.read_exact(&mut buf[16..]).await.map_err(|_| ())?;
    } else if buf.starts_with(b"PROXY ") {
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= V1_MAX {
                return Err(());
            }
            buf.push(stream.read_u8().await.map_err(|_| ())?);
        }
    } else {
        return Err(());
    }
    client(HeaderResult::parse(&buf))
}

/// The source address a complete header names.
fn client(header: HeaderResult<'_>) -> Result<Option<SocketAddr>, ()> {
    match header {
        HeaderResult::V1(Ok(h)) => Ok(match h.addresses {
            v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v1::Addresses::Unknown => None,
        }),
        HeaderResult::V2(Ok(h)) => Ok(match (h.command, h.addresses) {
            (v2::Command::Local, _) => None,
            (_, v2::Addresses::IPv4(a)) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            (_, v2::Addresses::IPv6(a)) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            (_, _) => None,
        }),
        _ => Err(()),
    }
}
