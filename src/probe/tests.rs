//! Client and server end to end on loopback, and every way a run must end in bounded time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use super::*;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn start_server(
    idle_exit: Option<Duration>,
    once: bool,
) -> (SocketAddr, tokio::task::JoinHandle<Result<(), ProbeError>>) {
    let server = Server::bind(&ServerOptions {
        bind: LOCALHOST,
        port: 0,
        idle_exit,
        once,
    })
    .await
    .unwrap();
    let addr = server.local_addr();
    (addr, tokio::spawn(server.run()))
}

fn quick(addr: SocketAddr, tests: &[TestKind]) -> ClientOptions {
    let mut o = ClientOptions::new(addr.ip());
    o.port = addr.port();
    o.tests = tests.to_vec();
    o.duration = Duration::from_millis(500);
    o.rr_count = 300;
    o.crr_duration = Duration::from_millis(300);
    o.udp_bitrate = 50_000_000;
    o.timeout = o.suggested_timeout();
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_test_gives_sane_numbers_on_loopback() {
    let (addr, _server) = start_server(None, false).await;
    let opts = quick(addr, &TestKind::ALL);
    let r = run_client(&opts).await.unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);

    let tcp = r.tcp.unwrap();
    assert_eq!(tcp.streams, 1);
    assert!(tcp.bits_per_second > 100e6, "{tcp:?}");
    assert!(tcp.seconds > 0.4 && tcp.seconds < 1.5, "{tcp:?}");
    // Receiver counted what the sender wrote (all of it drained before EOF).
    assert_eq!(tcp.bytes, tcp.sent_bytes);
    let multi = r.tcp_multi.unwrap();
    assert_eq!(multi.streams, 4);
    assert!(multi.bits_per_second > 100e6, "{multi:?}");

    let udp = r.udp.unwrap();
    // The MTU test ran first, so the datagram fills a 9000-byte packet (the --max-mtu cap).
    assert_eq!(r.mtu.as_ref().unwrap().path_mtu, 9000);
    assert_eq!(udp.datagram_size, 9000 - 28);
    assert_eq!(udp.received + udp.lost, udp.sent);
    // 50 Mbit/s paced over loopback: nothing lost, the rate is what was asked for.
    assert_eq!(udp.lost, 0, "{udp:?}");
    assert!((udp.bits_per_second / 50e6 - 1.0).abs() < 0.15, "{udp:?}");

    let rr = r.rr.unwrap();
    assert_eq!(rr.count, 300);
    assert!(rr.p50_us > 0.0 && rr.p50_us <= rr.p99_us, "{rr:?}");
    assert!(rr.transactions_per_second > 100.0, "{rr:?}");

    // A new connection per transaction: slower than RR on one connection, but many per second.
    let crr = r.crr.unwrap();
    assert!(crr.count > 10, "{crr:?}");
    assert!(crr.transactions_per_second > 30.0, "{crr:?}");
    // Both ends measured their CPU time around the single-stream transfer.
    assert!(tcp.sender_cpu_seconds.is_some_and(|c| c > 0.0), "{tcp:?}");
    assert!(tcp.receiver_cpu_seconds.is_some_and(|c| c > 0.0), "{tcp:?}");

    // The same server serves the next client.
    let again = run_client(&quick(addr, &[TestKind::Rr])).await.unwrap();
    assert!(again.rr.is_some() && again.errors.is_empty());
}

#[tokio::test]
async fn unlimited_udp_reports_what_arrived() {
    let (addr, _server) = start_server(None, false).await;
    let mut opts = quick(addr, &[TestKind::Udp]);
    opts.udp_bitrate = 0;
    opts.udp_size = Some(1472);
    let r = run_client(&opts).await.unwrap();
    let udp = r.udp.unwrap();
    assert_eq!(udp.datagram_size, 1472);
    assert_eq!(udp.received + udp.lost, udp.sent);
    assert!(udp.bits_per_second > 0.0 && udp.seconds > 0.0, "{udp:?}");
    assert!((0.0..=1.0).contains(&udp.loss_fraction));
}

#[tokio::test]
async fn refused_when_nothing_listens() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let t0 = Instant::now();
    let e = run_client(&quick(addr, &[TestKind::Tcp]))
        .await
        .unwrap_err();
    assert!(matches!(e, ProbeError::ConnectRefused { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::ConnectRefused);
    // Reported at once, not after the client's timeout.
    assert!(
        t0.elapsed() < quick(addr, &[TestKind::Tcp]).timeout,
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn handshake_that_never_completes_is_connect_timeout() {
    // A listener with a full accept queue drops further SYNs: a local stand-in for a
    // firewall that drops packets.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from((LOCALHOST, 0)).into()).unwrap();
    sock.listen(0).unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
        assert!(fillers.len() < 16, "the accept queue never filled");
    }
    let mut opts = quick(addr, &[TestKind::Tcp]);
    opts.timeout = Duration::from_secs(1);
    let t0 = Instant::now();
    let e = run_client(&opts).await.unwrap_err();
    assert!(matches!(e, ProbeError::ConnectTimeout { .. }), "{e}");
    // Bounded, not hung (generous: the test host may be loaded).
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
}

#[tokio::test]
async fn listener_that_never_answers_is_no_response() {
    // Accepted by the kernel, never served.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let mut opts = quick(addr, &[TestKind::Tcp]);
    opts.timeout = Duration::from_millis(1500);
    let t0 = Instant::now();
    let e = run_client(&opts).await.unwrap_err();
    assert!(matches!(e, ProbeError::NoResponse { .. }), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
}

#[tokio::test]
async fn second_client_is_told_the_server_is_busy() {
    let (addr, _server) = start_server(None, false).await;
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    first
        .write_all(
            &wire::Preamble {
                kind: wire::StreamKind::Control,
                cookie: 0,
            }
            .encode(),
        )
        .await
        .unwrap();
    let mut first = control::Control::new(first);
    first
        .send(&control::ClientMsg::Hello {
            version: PROTOCOL_VERSION,
        })
        .await
        .unwrap();
    let welcome: control::ServerMsg = first.recv_within(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        welcome,
        control::ServerMsg::Welcome {
            version: PROTOCOL_VERSION
        }
    );

    let e = run_client(&quick(addr, &[TestKind::Rr])).await.unwrap_err();
    assert!(matches!(e, ProbeError::Busy { .. }), "{e}");

    // Once the first session ends, the server takes the next client.
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = run_client(&quick(addr, &[TestKind::Rr])).await.unwrap();
    assert!(r.rr.is_some(), "{:?}", r.errors);
}

#[tokio::test]
async fn overall_timeout_stops_a_long_test_and_skips_the_rest() {
    let (addr, _server) = start_server(None, false).await;
    let mut opts = quick(addr, &[TestKind::Tcp, TestKind::Rr]);
    opts.duration = Duration::from_secs(60);
    opts.timeout = Duration::from_secs(1);
    let t0 = Instant::now();
    let r = run_client(&opts).await.unwrap();
    // Stopped by the timeout, not run for its duration (generous: the host may be loaded).
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert_eq!(r.errors.len(), 2, "{:?}", r.errors);
    assert_eq!(
        (r.errors[0].test, r.errors[0].kind),
        (TestKind::Tcp, ErrorKind::Timeout)
    );
    assert_eq!(r.errors[1].test, TestKind::Rr);
    assert!(
        r.errors[1].message.starts_with("not run"),
        "{:?}",
        r.errors[1]
    );
}

#[tokio::test]
async fn idle_server_exits() {
    let (_addr, server) = start_server(Some(Duration::from_millis(300)), false).await;
    let t0 = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn idle_clock_restarts_after_a_client() {
    let (addr, server) = start_server(Some(Duration::from_millis(800)), false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = run_client(&quick(addr, &[TestKind::Rr])).await.unwrap();
    assert!(r.errors.is_empty());
    let t_client_done = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // Exited a full idle period after the client, not 800 ms after start.
    assert!(t_client_done.elapsed() >= Duration::from_millis(700));
}

#[tokio::test]
async fn once_server_exits_after_one_session() {
    let (addr, server) = start_server(None, true).await;
    let r = run_client(&quick(addr, &[TestKind::Mtu])).await.unwrap();
    assert!(r.mtu.is_some(), "{:?}", r.errors);
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[test]
fn report_json_shape() {
    let r = ProbeReport {
        server: "10.0.0.2:5299".into(),
        errors: vec![TestError {
            test: TestKind::TcpMulti,
            kind: ErrorKind::ConnectTimeout,
            message: "x".into(),
        }],
        ..ProbeReport::default()
    };
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["errors"][0]["test"], "tcp-multi");
    assert_eq!(v["errors"][0]["kind"], "connect_timeout");
    assert!(v["tcp"].is_null());
    let back: ProbeReport = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_per_stream_mode_counts_every_stream() {
    let (addr, _server) = start_server(None, false).await;
    let mut opts = quick(addr, &[TestKind::TcpMulti]);
    opts.streams = 3;
    opts.data_threads = DataThreads::PerStream;
    let r = run_client(&opts).await.unwrap();
    let m = r.tcp_multi.unwrap();
    assert_eq!(m.streams, 3);
    assert_eq!(m.bytes, m.sent_bytes);
    assert!(m.bits_per_second > 100e6, "{m:?}");
}
