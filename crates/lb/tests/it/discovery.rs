//! `--backends-dns`: the backend set follows DNS, against a DNS server the
//! test runs (records changed while the lb is under load).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, OpCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use weir_lb::DnsTarget;

use crate::support::{poll, TestBackend, TestLb};

type Zone = Arc<Mutex<HashMap<(Name, RecordType), Vec<RData>>>>;

/// A DNS server answering from `zone`, which the test edits as it runs.
async fn dns_server(zone: Zone) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut answer = Message::response(query.metadata.id, OpCode::Query);
            answer.metadata.authoritative = true;
            answer.metadata.recursion_desired = query.metadata.recursion_desired;
            answer.metadata.recursion_available = true;
            for q in &query.queries {
                answer.add_query(q.clone());
                let records = zone
                    .lock()
                    .unwrap()
                    .get(&(q.name().clone(), q.query_type()))
                    .cloned()
                    .unwrap_or_default();
                for data in records {
                    answer.add_answer(Record::from_rdata(q.name().clone(), 0, data));
                }
            }
            let _ = socket.send_to(&answer.to_vec().unwrap(), from).await;
        }
    });
    addr
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

/// Backend ids (`host:port`) the lb has now.
async fn backend_ids(lb: &TestLb) -> Vec<String> {
    let mut ids: Vec<String> = lb.stats().await["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_coming_and_going_add_and_remove_backends_without_a_5xx() {
    let zone: Zone = Arc::default();
    let dns = dns_server(zone.clone()).await;
    let backends = [
        TestBackend::start("b1", Duration::from_millis(2)).await,
        TestBackend::start("b2", Duration::from_millis(2)).await,
        TestBackend::start("b3", Duration::from_millis(2)).await,
    ];
    let service = name("_http._tcp.api.test.");
    let srv_of =
        |i: usize, port: u16| RData::SRV(SRV::new(0, 0, port, name(&format!("api-{i}.test."))));
    {
        let mut z = zone.lock().unwrap();
        let srvs = backends
            .iter()
            .enumerate()
            .map(|(i, b)| srv_of(i, b.addr.port()))
            .collect();
        z.insert((service.clone(), RecordType::SRV), srvs);
        for i in 0..3 {
            z.insert(
                (name(&format!("api-{i}.test.")), RecordType::A),
                vec![RData::A(A(Ipv4Addr::LOCALHOST))],
            );
        }
    }
    let lb = TestLb::start_with(Vec::new(), |c| {
        c.backends_dns = vec![DnsTarget::Srv {
            name: service.to_string(),
        }];
        c.dns_interval = Duration::from_millis(100);
        c.dns_server = Some(dns);
    })
    .await;
    let all: Vec<String> = {
        let mut v: Vec<String> = backends.iter().map(|b| b.addr.to_string()).collect();
        v.sort();
        v
    };
    poll(Duration::from_secs(10), || async {
        (backend_ids(&lb).await == all).then_some(())
    })
    .await;

    // Constant load while b3's record goes away, then b3 itself.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Answers each client has had so far.
    let done: Arc<Vec<std::sync::atomic::AtomicUsize>> =
        Arc::new((0..8).map(|_| Default::default()).collect());
    let mut clients = Vec::new();
    for i in 0..8 {
        let (base, stop, done) = (lb.base.clone(), stop.clone(), done.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let resp = http.get(format!("{base}/work")).send().await.unwrap();
                let status = resp.status().as_u16();
                answers.push((status, resp.text().await.unwrap_or_default()));
                done[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            answers
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    zone.lock().unwrap().insert(
        (service.clone(), RecordType::SRV),
        vec![
            srv_of(0, backends[0].addr.port()),
            srv_of(1, backends[1].addr.port()),
        ],
    );
    poll(Duration::from_secs(10), || async {
        (backend_ids(&lb).await.len() == 2).then_some(())
    })
    .await;
    // Once out of the set and its requests in flight answered, its process
    // may end: nothing new is sent there. Every client finishing two more
    // requests means each one's request in flight at removal has ended.
    let counts: Vec<usize> = done
        .iter()
        .map(|d| d.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    poll(Duration::from_secs(10), || async {
        done.iter()
            .zip(&counts)
            .all(|(d, seen)| d.load(std::sync::atomic::Ordering::Relaxed) >= seen + 2)
            .then_some(())
    })
    .await;
    let [b1, b2, b3] = backends;
    b3.kill().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answers = Vec::new();
    for c in clients {
        answers.extend(c.await.unwrap());
    }
    let errors: Vec<_> = answers.iter().filter(|(s, _)| *s >= 500).collect();
    assert!(answers.len() > 100, "too little load: {}", answers.len());
    assert!(
        errors.is_empty(),
        "{} of {} answers were 5xx: {:?}",
        errors.len(),
        answers.len(),
        &errors[..errors.len().min(3)]
    );
    assert!(
        answers.iter().any(|(_, who)| who == "b3"),
        "b3 never served before it left"
    );

    // A record coming back is a backend again.
    let b4 = TestBackend::start("b4", Duration::ZERO).await;
    zone.lock()
        .unwrap()
        .get_mut(&(service.clone(), RecordType::SRV))
        .unwrap()
        .push(srv_of(3, b4.addr.port()));
    zone.lock().unwrap().insert(
        (name("api-3.test."), RecordType::A),
        vec![RData::A(A(Ipv4Addr::LOCALHOST))],
    );
    poll(Duration::from_secs(10), || async {
        backend_ids(&lb)
            .await
            .contains(&b4.addr.to_string())
            .then_some(())
    })
    .await;
    lb.stop().await;
    drop((b1, b2, b4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_and_port_gives_every_address_of_the_name() {
    let zone: Zone = Arc::default();
    let dns = dns_server(zone.clone()).await;
    // Two loopback addresses, one port: what a headless Service looks like.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut backends = Vec::new();
    for ip in ["127.0.0.2", "127.0.0.3"] {
        let listener = tokio::net::TcpListener::bind((ip, port)).await.unwrap();
        backends.push(tokio::spawn(async move {
            let app = axum::Router::new()
                .route("/health", axum::routing::get(|| async { "ok" }))
                .route("/work", axum::routing::get(move || async move { ip }));
            axum::serve(listener, app).await.unwrap();
        }));
    }
    zone.lock().unwrap().insert(
        (name("api.test."), RecordType::A),
        vec![
            RData::A(A(Ipv4Addr::new(127, 0, 0, 2))),
            RData::A(A(Ipv4Addr::new(127, 0, 0, 3))),
        ],
    );
    let lb = TestLb::start_with(Vec::new(), |c| {
        c.backends_dns = vec![format!("api.test.:{port}").parse().unwrap()];
        c.dns_interval = Duration::from_millis(100);
        c.dns_server = Some(dns);
    })
    .await;
    let want = vec![format!("127.0.0.2:{port}"), format!("127.0.0.3:{port}")];
    poll(Duration::from_secs(10), || async {
        (backend_ids(&lb).await == want).then_some(())
    })
    .await;
    let http = reqwest::Client::new();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let resp = http.get(format!("{}/work", lb.base)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        seen.insert(resp.text().await.unwrap());
    }
    assert_eq!(seen.len(), 2, "round robin over both addresses: {seen:?}");
    lb.stop().await;
    for b in backends {
        b.abort();
    }
}
