//! Restarts that drop nothing: a new `weir lb` binary takes the listening
//! sockets of the running one (`--handover-socket PATH`), as HAProxy's `-x`
//! and Pingora's upgrade do.
//!
//! The running lb listens on a Unix socket at `PATH` (mode 0600, and only a
//! peer of the same user is answered). A new lb started with the same flag
//! connects, receives every listening socket (`SCM_RIGHTS`) with what each
//! is for, serves on them, then writes `ready`: only then does the old one
//! stop accepting and drain. The sockets are never closed in between, so a
//! connection waiting in a backlog is accepted by one process or the other,
//! never refused. If the new process goes away before `ready`, the old one
//! keeps serving. The new one then listens on `PATH` for the next upgrade.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::net::{
    recvmsg, sendmsg, sockopt::socket_peercred, RecvAncillaryBuffer, RecvAncillaryMessage,
    RecvFlags, ReturnFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};

/// What a listening socket serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    /// `--listen`: plain HTTP.
    Plain,
    /// `--tls-listen`: HTTPS.
    Tls,
    /// `--admin-listen`: the admin API alone.
    Admin,
}

impl ListenerKind {
    fn name(self) -> &'static str {
        match self {
            ListenerKind::Plain => "plain",
            ListenerKind::Tls => "tls",
            ListenerKind::Admin => "admin",
        }
    }

    fn parse(name: &str) -> Option<ListenerKind> {
        match name {
            "plain" => Some(ListenerKind::Plain),
            "tls" => Some(ListenerKind::Tls),
            "admin" => Some(ListenerKind::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("--handover-socket {path}: {why}")]
    Socket { path: PathBuf, why: String },
    #[error("--handover-socket {path}: the running lb's answer is not understood: {why}")]
    Protocol { path: PathBuf, why: String },
}

/// The first line of the running lb's answer.
const GREETING: &str = "weir-lb-handover 1";
/// More sockets than one message carries (`SCM_MAX_FD`) are refused.
const MAX_FDS: usize = 253;
/// How long the running lb waits for its successor to serve.
const SUCCESSOR_DEADLINE: Duration = Duration::from_secs(60);
const READY: &[u8] = b"ready\n";

/// The listening sockets taken from a running lb; [`Inherited::ready`]
/// tells it to stop accepting.
pub struct Inherited {
    listeners: Vec<(ListenerKind, TcpListener)>,
    predecessor: UnixStream,
}

impl Inherited {
    /// Asks the lb listening at `path` for its sockets; `None` when no lb
    /// answers there (no file, or a file no process listens on).
    pub fn take_over(path: &Path) -> Result<Option<Inherited>, HandoverError> {
        let stream = match UnixStream::connect(path) {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(socket_error(path, e)),
        };
        let protocol = |why: String| HandoverError::Protocol {
            path: path.to_owned(),
            why,
        };
        stream
            .set_read_timeout(Some(SUCCESSOR_DEADLINE))
            .map_err(|e| socket_error(path, e))?;
        let (text, fds) = receive(&stream).map_err(|e| protocol(e.to_string()))?;
        let mut lines = text.lines();
        if lines.next() != Some(GREETING) {
            return Err(protocol(format!("expected {GREETING:?}")));
        }
        let kinds: Vec<ListenerKind> = lines
            .map(|l| ListenerKind::parse(l).ok_or_else(|| protocol(format!("kind {l:?}"))))
            .collect::<Result<_, _>>()?;
        if kinds.len() != fds.len() {
            return Err(protocol(format!(
                "{} kinds for {} sockets",
                kinds.len(),
                fds.len()
            )));
        }
        let listeners = kinds
            .into_iter()
            .zip(fds)
            .map(|(kind, fd)| (kind, TcpListener::from(fd)))
            .collect();
        Ok(Some(Inherited {
            listeners,
            predecessor: stream,
        }))
    }

    /// Takes the inherited sockets of `kind` listening on `addr` (port 0:
    /// on any port of that address).
    pub fn take(&mut self, kind: ListenerKind, addr: SocketAddr) -> Vec<TcpListener> {
        let (taken, kept) = std::mem::take(&mut self.listeners)
            .into_iter()
            .partition(|(k, l)| {
                *k == kind
                    && l.local_addr().is_ok_and(|bound| {
                        bound == addr || (addr.port() == 0 && bound.ip() == addr.ip())
                    })
            });
        self.listeners = kept;
        taken.into_iter().map(|(_, l)| l).collect()
    }

    /// This process serves on the sockets it took: the old one stops
    /// accepting and drains. Sockets not taken (a listener dropped from the
    /// configuration) close; their addresses are named.
    pub fn ready(self) -> std::io::Result<Vec<SocketAddr>> {
        let mut predecessor = self.predecessor;
        predecessor.write_all(READY)?;
        Ok(self
            .listeners
            .iter()
            .filter_map(|(_, l)| l.local_addr().ok())
            .collect())
    }
}

/// The running lb's side: offers `listeners` at `path` until a successor
/// serves on them. Runs until then (blocking: call it on a thread of its own).
pub struct Offer {
    listener: UnixListener,
    path: PathBuf,
    listeners: Vec<(ListenerKind, OwnedFd)>,
}

impl Offer {
    /// Listens at `path` (replacing a file left there), offering copies of
    /// `listeners`: they stay open as long as the offer does.
    pub fn bind(
        path: &Path,
        listeners: &[(ListenerKind, &TcpListener)],
    ) -> Result<Offer, HandoverError> {
        if listeners.len() > MAX_FDS {
            return Err(HandoverError::Socket {
                path: path.to_owned(),
                why: format!("{} listening sockets; at most {MAX_FDS}", listeners.len()),
            });
        }
        let copies = listeners
            .iter()
            .map(|(kind, l)| Ok((*kind, OwnedFd::from(l.try_clone()?))))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| socket_error(path, e))?;
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(socket_error(path, e)),
        }
        let listener = UnixListener::bind(path).map_err(|e| socket_error(path, e))?;
        // Whoever connects may accept this lb's clients: its owner alone.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| socket_error(path, e))?;
        Ok(Offer {
            listener,
            path: path.to_owned(),
            listeners: copies,
        })
    }

    /// Answers successors until one reports it serves; returns then.
    pub fn wait_for_successor(self) {
        for stream in self.listener.incoming() {
            let Ok(stream) = stream else { continue };
            match self.hand_over(stream) {
                Ok(()) => {
                    tracing::info!(path = %self.path.display(), "handover: a new process serves; draining");
                    return;
                }
                Err(why) => {
                    tracing::warn!(path = %self.path.display(), %why, "handover not completed; serving on")
                }
            }
        }
    }

    fn hand_over(&self, mut stream: UnixStream) -> Result<(), String> {
        let peer = socket_peercred(&stream).map_err(|e| e.to_string())?;
        let ours = rustix::process::geteuid();
        if peer.uid != ours && !ours.is_root() {
            return Err(format!("refused a process of user {}", peer.uid.as_raw()));
        }
        let mut text = String::from(GREETING);
        for (kind, _) in &self.listeners {
            text.push('\n');
            text.push_str(kind.name());
        }
        let fds: Vec<BorrowedFd> = self.listeners.iter().map(|(_, fd)| fd.as_fd()).collect();
        send(&stream, &text, &fds).map_err(|e| format!("sending the sockets: {e}"))?;
        stream
            .set_read_timeout(Some(SUCCESSOR_DEADLINE))
            .map_err(|e| e.to_string())?;
        let mut answer = [0u8; READY.len()];
        stream
            .read_exact(&mut answer)
            .map_err(|_| "the new process went away before serving".to_string())?;
        if answer != READY {
            return Err("the new process answered something other than ready".into());
        }
        Ok(())
    }
}

fn socket_error(path: &Path, e: impl std::fmt::Display) -> HandoverError {
    HandoverError::Socket {
        path: path.to_owned(),
        why: e.to_string(),
    }
}

/// One message: its length (4 bytes, big-endian) and text, the sockets
/// attached to its first byte.
fn send(stream: &UnixStream, text: &str, fds: &[BorrowedFd]) -> std::io::Result<()> {
    let mut message = (text.len() as u32).to_be_bytes().to_vec();
    message.extend_from_slice(text.as_bytes());
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(std::io::Error::other("the sockets do not fit one message"));
    }
    let sent = sendmsg(
        stream,
        &[IoSlice::new(&message)],
        &mut control,
        SendFlags::empty(),
    )?;
    // The sockets went with the first bytes; the rest is plain text.
    let mut writer = stream;
    writer.write_all(&message[sent..])?;
    Ok(())
}

fn receive(stream: &UnixStream) -> std::io::Result<(String, Vec<OwnedFd>)> {
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    let mut first = [0u8; 4096];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = recvmsg(
        stream,
        &mut [IoSliceMut::new(&mut first)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        return Err(bad("more sockets than one message carries"));
    }
    let read = msg.bytes;
    if read < 4 {
        return Err(bad("a short message"));
    }
    let len = u32::from_be_bytes([first[0], first[1], first[2], first[3]]) as usize;
    if len > 64 * 1024 {
        return Err(bad("an oversized message"));
    }
    let mut text = first[4..read.min(4 + len)].to_vec();
    if text.len() < len {
        let mut rest = vec![0u8; len - text.len()];
        let mut reader = stream;
        reader.read_exact(&mut rest)?;
        text.extend_from_slice(&rest);
    }
    let text = String::from_utf8(text).map_err(|_| bad("not UTF-8"))?;
    Ok((text, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_successor_takes_the_sockets_and_the_offer_ends_when_it_is_ready() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lb.sock");
        assert!(
            Inherited::take_over(&path).unwrap().is_none(),
            "no file yet"
        );
        let plain = TcpListener::bind("127.0.0.1:0").unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").unwrap();
        let plain_addr = plain.local_addr().unwrap();
        let offer = Offer::bind(
            &path,
            &[(ListenerKind::Plain, &plain), (ListenerKind::Admin, &admin)],
        )
        .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let offered = std::thread::spawn(move || offer.wait_for_successor());

        let mut inherited = Inherited::take_over(&path).unwrap().expect("an offer");
        assert!(inherited.take(ListenerKind::Tls, plain_addr).is_empty());
        let taken = inherited.take(ListenerKind::Plain, plain_addr);
        assert_eq!(taken.len(), 1);
        // The same socket: a connection queued on it is accepted here.
        drop(plain);
        let _client = std::net::TcpStream::connect(plain_addr).unwrap();
        let (_conn, _) = taken[0].accept().unwrap();
        assert!(!offered.is_finished(), "the offer waits for ready");
        let closed = inherited.ready().unwrap();
        assert_eq!(closed, vec![admin.local_addr().unwrap()]);
        offered.join().unwrap();
    }

    #[test]
    fn a_successor_gone_before_ready_leaves_the_offer_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lb.sock");
        let plain = TcpListener::bind("127.0.0.1:0").unwrap();
        let offer = Offer::bind(&path, &[(ListenerKind::Plain, &plain)]).unwrap();
        let offered = std::thread::spawn(move || offer.wait_for_successor());
        drop(Inherited::take_over(&path).unwrap().expect("an offer"));
        // The next successor is answered too, and completes.
        let inherited = Inherited::take_over(&path)
            .unwrap()
            .expect("a second offer");
        inherited.ready().unwrap();
        offered.join().unwrap();
    }

    #[test]
    fn a_file_nobody_listens_on_is_no_offer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lb.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(Inherited::take_over(&path).unwrap().is_none());
    }
}
