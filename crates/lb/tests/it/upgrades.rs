//! WebSockets (and any `Upgrade`) through the lb: relayed both ways, counted
//! as load on the backend, closed when the backend dies or the tunnel idles,
//! and waited for by a drain.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use weir_lb::Strategy;

use crate::support::{poll, TestLb};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket backend: echoes text and binary messages, answers the text
/// `close-me` by closing with code 4000, and reports the close codes
/// clients send it. Plain `GET /health` gets a 200 so health checks pass.
struct WsBackend {
    addr: SocketAddr,
    closes: tokio::sync::mpsc::UnboundedReceiver<u16>,
    task: tokio::task::JoinHandle<()>,
}

impl WsBackend {
    async fn start() -> WsBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, closes) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            // Owning every connection: aborting the task drops them all.
            let mut connections = JoinSet::new();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                connections.spawn(serve_one(stream, tx.clone()));
                while connections.try_join_next().is_some() {}
            }
        });
        WsBackend { addr, closes, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops the listener and every open connection, as SIGKILL would.
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn serve_one(stream: TcpStream, closes: tokio::sync::mpsc::UnboundedSender<u16>) {
    let mut peek = [0u8; 64];
    let n = stream.peek(&mut peek).await.unwrap_or(0);
    if peek[..n].starts_with(b"GET /health") {
        answer_health(stream).await;
        return;
    }
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            Message::Text(t) if t.as_str() == "close-me" => {
                let frame = CloseFrame {
                    code: CloseCode::from(4000),
                    reason: "server says bye".into(),
                };
                let _ = ws.close(Some(frame)).await;
            }
            echo @ (Message::Text(_) | Message::Binary(_)) => {
                let Ok(()) = ws.send(echo).await else { return };
            }
            Message::Close(frame) => {
                let _ = closes.send(frame.map_or(0, |f| u16::from(f.code)));
            }
            _ => {}
        }
    }
}

async fn answer_health(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            return;
        }
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if stream.write_all(ok).await.is_err() {
            return;
        }
    }
}

async fn connect(lb: &TestLb) -> Client {
    let url = format!("{}/chat", lb.base.replacen("http://", "ws://", 1));
    let (ws, resp) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

async fn next_message(ws: &mut Client) -> Option<Message> {
    tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the lb answered within 5 s")
        .and_then(Result::ok)
}

/// The connection ends (a close frame, EOF or reset) within `deadline`.
async fn ends_within(ws: &mut Client, deadline: Duration) -> bool {
    tokio::time::timeout(deadline, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .is_ok()
}

async fn in_flight(lb: &TestLb) -> u64 {
    let stats: Value = lb.stats().await;
    stats["backends"][0]["in_flight"].as_u64().unwrap()
}

#[tokio::test]
async fn websocket_messages_and_close_codes_pass_both_ways_on_every_strategy() {
    for strategy in Strategy::ALL {
        let mut backend = WsBackend::start().await;
        let lb = TestLb::start(vec![backend.url()], strategy).await;
        let mut ws = connect(&lb).await;

        ws.send(Message::text("hello")).await.unwrap();
        assert_eq!(next_message(&mut ws).await, Some(Message::text("hello")));
        let bytes = vec![0u8, 1, 2, 255, 254];
        ws.send(Message::binary(bytes.clone())).await.unwrap();
        assert_eq!(next_message(&mut ws).await, Some(Message::binary(bytes)));

        // The client closes with its own code: the backend receives it.
        let frame = CloseFrame {
            code: CloseCode::from(4001),
            reason: "client says bye".into(),
        };
        ws.close(Some(frame)).await.unwrap();
        let code = tokio::time::timeout(Duration::from_secs(5), backend.closes.recv())
            .await
            .unwrap();
        assert_eq!(code, Some(4001), "{strategy:?}");

        // The backend closes with its code: the client receives it.
        let mut ws = connect(&lb).await;
        ws.send(Message::text("close-me")).await.unwrap();
        match next_message(&mut ws).await {
            Some(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 4000, "{strategy:?}");
                assert_eq!(frame.reason.as_str(), "server says bye");
            }
            other => panic!("{strategy:?}: expected the backend's close, got {other:?}"),
        }
        // The client's reply to the close goes out, and the connection ends.
        assert!(ends_within(&mut ws, Duration::from_secs(5)).await);
        lb.stop().await;
        backend.kill().await;
    }
}

#[tokio::test]
async fn an_open_websocket_counts_as_load_on_its_backend_until_it_closes() {
    let backend = WsBackend::start().await;
    let lb = TestLb::start(vec![backend.url()], Strategy::LeastConnections).await;
    let mut ws = connect(&lb).await;
    ws.send(Message::text("ping")).await.unwrap();
    assert!(next_message(&mut ws).await.is_some());
    assert_eq!(in_flight(&lb).await, 1);

    ws.close(None).await.unwrap();
    poll(Duration::from_secs(5), || async {
        (in_flight(&lb).await == 0).then_some(())
    })
    .await;
    lb.stop().await;
    backend.kill().await;
}

#[tokio::test]
async fn a_backend_killed_mid_stream_closes_the_clients_websocket_instead_of_hanging() {
    let backend = WsBackend::start().await;
    let lb = TestLb::start(vec![backend.url()], Strategy::RoundRobin).await;
    let mut ws = connect(&lb).await;
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Some(Message::text("before")));

    backend.kill().await;
    assert!(
        ends_within(&mut ws, Duration::from_secs(5)).await,
        "the client's connection ended when its backend died"
    );
    poll(Duration::from_secs(5), || async {
        (in_flight(&lb).await == 0).then_some(())
    })
    .await;
    lb.stop().await;
}

#[tokio::test]
async fn an_idle_websocket_is_closed_after_the_upgrade_idle_timeout_and_a_busy_one_is_not() {
    let backend = WsBackend::start().await;
    let lb = TestLb::start_with(vec![backend.url()], |c| {
        c.upgrade_idle_timeout = Duration::from_millis(400);
    })
    .await;

    // Messages more often than the timeout keep it open past several timeouts.
    let mut busy = connect(&lb).await;
    let mut last_message = std::time::Instant::now();
    for i in 0..8 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        busy.send(Message::text(format!("m{i}"))).await.unwrap();
        assert_eq!(
            next_message(&mut busy).await,
            Some(Message::text(format!("m{i}")))
        );
        last_message = std::time::Instant::now();
    }

    // Silence past the timeout ends it.
    assert!(ends_within(&mut busy, Duration::from_secs(5)).await);
    let started = last_message;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "closed only once idle: {:?}",
        started.elapsed()
    );
    lb.stop().await;
    backend.kill().await;
}

#[tokio::test]
async fn a_drain_waits_for_open_websockets_within_the_shutdown_grace() {
    let backend = WsBackend::start().await;
    let lb = TestLb::start_with(vec![backend.url()], |c| {
        c.shutdown_grace = Duration::from_secs(20);
    })
    .await;
    let mut ws = connect(&lb).await;
    ws.send(Message::text("one")).await.unwrap();
    assert!(next_message(&mut ws).await.is_some());

    let draining = lb.begin_stop();
    // The tunnel still relays while the lb drains, and the lb waits for it.
    for i in 0..3 {
        ws.send(Message::text(format!("during drain {i}")))
            .await
            .unwrap();
        assert_eq!(
            next_message(&mut ws).await,
            Some(Message::text(format!("during drain {i}")))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !draining.is_finished(),
        "the lb waited for the open WebSocket"
    );

    ws.close(None).await.unwrap();
    let drained = tokio::time::timeout(Duration::from_secs(5), draining).await;
    drained
        .expect("the lb ended once the WebSocket closed")
        .unwrap()
        .unwrap();
    backend.kill().await;
}

#[tokio::test]
async fn an_upgrade_the_backend_refuses_is_answered_as_an_ordinary_response() {
    let backend = crate::support::TestBackend::start("plain", Duration::ZERO).await;
    let lb = TestLb::start(vec![backend.url()], Strategy::RoundRobin).await;
    let url = format!("{}/echo", lb.base.replacen("http://", "ws://", 1));
    let err = tokio_tungstenite::connect_async(url).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status(), 200, "the backend's own answer, passed on");
        }
        other => panic!("expected the backend's HTTP answer, got {other}"),
    }
    // The lb is still serving, and the backend is not charged an error.
    let stats = lb.stats().await;
    assert_eq!(stats["backends"][0]["in_flight"], 0);
    lb.stop().await;
    backend.kill().await;
}
