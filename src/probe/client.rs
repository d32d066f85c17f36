//! The probe client: one control session, the selected tests in turn, every wait bounded by
//! its own limit and by the run's overall timeout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::control::{ClientMsg, Control, ControlError, ServerMsg, TestSpec};
use super::mtu::{self, MtuError};
use super::tcp::{self, DataError};
use super::threads::{self, StopOnDrop};
use super::wire::{Preamble, StreamKind};
use super::{
    ClientOptions, DataThreads, ErrorKind, MtuResult, PROTOCOL_VERSION, ProbeError, ProbeReport,
    RrResult, TcpResult, TestError, TestKind, UdpResult, rr, udp,
};

/// Longest wait for a TCP handshake (control or data).
const CONNECT_WAIT: Duration = Duration::from_secs(5);
/// Longest wait for the server's `welcome` / `ready`.
const REPLY_WAIT: Duration = Duration::from_secs(5);
/// Longest wait for a test's result after `done` (the server drains for up to 5 s).
const RESULT_WAIT: Duration = Duration::from_secs(10);
/// Beyond its own length, what a test's data phase may take (connects, thread start).
const DATA_SLACK: Duration = Duration::from_secs(10);
/// Bound of the whole MTU search (≈ 20 sizes × 3 tries × 250 ms worst case, plus margin).
const MTU_WAIT: Duration = Duration::from_secs(30);
/// One RR transaction slower than this fails the test.
const RR_TRANSACTION_WAIT: Duration = Duration::from_secs(2);

/// A test that failed. `control_lost`: the control connection is no longer in a known state,
/// so no further test can run on it.
struct Failure {
    kind: ErrorKind,
    message: String,
    control_lost: bool,
}

impl Failure {
    fn lost(kind: ErrorKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            control_lost: true,
        }
    }
    fn kept(kind: ErrorKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            control_lost: false,
        }
    }
}

impl From<ControlError> for Failure {
    fn from(e: ControlError) -> Self {
        let kind = match e {
            ControlError::Timeout(_) => ErrorKind::NoResponse,
            ControlError::Closed | ControlError::Malformed(_) => ErrorKind::Protocol,
            ControlError::Io(_) => ErrorKind::Io,
        };
        Failure::lost(kind, format!("control connection: {e}"))
    }
}

enum Outcome {
    Tcp(TcpResult),
    Udp(UdpResult),
    Rr(RrResult),
    Mtu(MtuResult),
    Crr(RrResult),
}

/// Runs the selected tests against a probe server. `Err` only when no session could be set up;
/// a failing test is recorded in `report.errors` and the others still run.
pub async fn run_client(opts: &ClientOptions) -> Result<ProbeReport, ProbeError> {
    let addr = SocketAddr::new(opts.server, opts.port);
    let overall = Instant::now() + opts.timeout;
    let mut ctl = open_session(addr, overall).await?;
    let mut report = ProbeReport {
        server: addr.to_string(),
        ..ProbeReport::default()
    };
    let mut path_mtu = None;
    let mut lost: Option<(ErrorKind, String)> = None;
    for test in schedule(&opts.tests, opts.udp_size.is_none()) {
        if let Some((kind, why)) = &lost {
            report.errors.push(TestError {
                test,
                kind: *kind,
                message: format!("not run: {why}"),
            });
            continue;
        }
        if Instant::now() >= overall {
            report.errors.push(TestError {
                test,
                kind: ErrorKind::Timeout,
                message: format!(
                    "not run: the overall timeout of {:.0} s was reached",
                    opts.timeout.as_secs_f64()
                ),
            });
            continue;
        }
        match run_test(&mut ctl, opts, test, addr, overall, path_mtu).await {
            Ok(Outcome::Tcp(r)) if test == TestKind::Tcp => report.tcp = Some(r),
            Ok(Outcome::Tcp(r)) => report.tcp_multi = Some(r),
            Ok(Outcome::Udp(r)) => report.udp = Some(r),
            Ok(Outcome::Rr(r)) => report.rr = Some(r),
            Ok(Outcome::Crr(r)) => report.crr = Some(r),
            Ok(Outcome::Mtu(r)) => {
                path_mtu = Some(r.path_mtu);
                report.mtu = Some(r);
            }
            Err(f) => {
                if f.control_lost {
                    lost = Some((f.kind, format!("an earlier test failed ({})", f.message)));
                }
                report.errors.push(TestError {
                    test,
                    kind: f.kind,
                    message: f.message,
                });
            }
        }
    }
    if lost.is_none() {
        // Wait (briefly) for the server to be free again, so an immediate next run isn't
        // told it is busy. Old servers or a lost answer only cost this short wait.
        if ctl.send(&ClientMsg::Bye).await.is_ok() {
            let _ = ctl
                .recv::<ServerMsg>(bounded(Duration::from_secs(2), overall))
                .await;
        }
    }
    Ok(report)
}

/// The order tests run in: as given (duplicates dropped), except that the MTU search goes
/// before UDP when UDP's datagram size is to be derived from it.
fn schedule(tests: &[TestKind], udp_size_auto: bool) -> Vec<TestKind> {
    let mut out: Vec<TestKind> = Vec::new();
    for t in tests {
        if !out.contains(t) {
            out.push(*t);
        }
    }
    if udp_size_auto
        && let (Some(u), Some(m)) = (
            out.iter().position(|t| *t == TestKind::Udp),
            out.iter().position(|t| *t == TestKind::Mtu),
        )
        && m > u
    {
        let mtu = out.remove(m);
        out.insert(u, mtu);
    }
    out
}

fn bounded(wait: Duration, overall: Instant) -> Instant {
    (Instant::now() + wait).min(overall)
}

async fn open_session(addr: SocketAddr, overall: Instant) -> Result<Control, ProbeError> {
    let connect_until = bounded(CONNECT_WAIT, overall);
    let secs = connect_until
        .saturating_duration_since(Instant::now())
        .as_secs_f64();
    let io = |context: &str, source| ProbeError::Io {
        context: format!("{addr}: {context}"),
        source,
    };
    let mut stream = match tokio::time::timeout_at(connect_until, TcpStream::connect(addr)).await {
        Err(_) => return Err(ProbeError::ConnectTimeout { addr, secs }),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(ProbeError::ConnectRefused { addr });
        }
        Ok(Err(e)) => return Err(io("connect", e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let preamble = Preamble {
        kind: StreamKind::Control,
        cookie: 0,
    }
    .encode();
    let reply_until = bounded(REPLY_WAIT, overall);
    let no_response = || ProbeError::NoResponse {
        addr,
        what: "the probe hello",
        secs: REPLY_WAIT.as_secs_f64(),
    };
    match tokio::time::timeout_at(reply_until, stream.write_all(&preamble)).await {
        Err(_) => return Err(no_response()),
        Ok(Err(e)) => return Err(io("send", e)),
        Ok(Ok(())) => {}
    }
    let mut ctl = Control::new(stream);
    let protocol = |message: String| ProbeError::Protocol { addr, message };
    let hello = ClientMsg::Hello {
        version: PROTOCOL_VERSION,
    };
    match tokio::time::timeout_at(reply_until, ctl.send(&hello)).await {
        Err(_) => return Err(no_response()),
        Ok(Err(e)) => return Err(protocol(e.to_string())),
        Ok(Ok(())) => {}
    }
    match ctl.recv::<ServerMsg>(reply_until).await {
        Ok(ServerMsg::Welcome { version }) if version == PROTOCOL_VERSION => Ok(ctl),
        Ok(ServerMsg::Busy { message }) => Err(ProbeError::Busy { addr, message }),
        Ok(ServerMsg::Error { message }) => Err(protocol(message)),
        Ok(other) => Err(protocol(format!("unexpected answer to hello: {other:?}"))),
        Err(ControlError::Timeout(_)) => Err(no_response()),
        Err(ControlError::Closed) => Err(protocol(
            "the server closed the connection without answering (not a probe server?)".into(),
        )),
        Err(ControlError::Io(e)) => Err(io("hello", e)),
        Err(e) => Err(protocol(e.to_string())),
    }
}

async fn run_test(
    ctl: &mut Control,
    opts: &ClientOptions,
    test: TestKind,
    addr: SocketAddr,
    overall: Instant,
    path_mtu: Option<u32>,
) -> Result<Outcome, Failure> {
    match test {
        TestKind::Tcp => tcp_test(ctl, opts, 1, addr, overall).await,
        TestKind::TcpMulti => tcp_test(ctl, opts, opts.streams.max(1), addr, overall).await,
        TestKind::Udp => udp_test(ctl, opts, addr, overall, path_mtu).await,
        TestKind::Rr => rr_test(ctl, opts, addr, overall).await,
        TestKind::Mtu => mtu_test(ctl, opts, addr, overall).await,
        TestKind::Crr => crr_test(ctl, opts, addr, overall).await,
    }
}

/// Sends `start`, returns the test cookie from `ready`.
async fn start(ctl: &mut Control, test: TestSpec, overall: Instant) -> Result<u64, Failure> {
    ctl.send(&ClientMsg::Start { test }).await?;
    match ctl.recv::<ServerMsg>(bounded(REPLY_WAIT, overall)).await? {
        ServerMsg::Ready { cookie } => Ok(cookie),
        ServerMsg::Error { message } => Err(Failure::kept(
            ErrorKind::Protocol,
            format!("server refused the test: {message}"),
        )),
        other => Err(Failure::lost(
            ErrorKind::Protocol,
            format!("expected ready, got {other:?}"),
        )),
    }
}

/// Tells the server the client side is done and returns its result message.
async fn finish(
    ctl: &mut Control,
    sent_bytes: u64,
    sent_datagrams: u64,
    overall: Instant,
) -> Result<ServerMsg, Failure> {
    ctl.send(&ClientMsg::Done {
        sent_bytes,
        sent_datagrams,
    })
    .await?;
    match ctl.recv::<ServerMsg>(bounded(RESULT_WAIT, overall)).await? {
        ServerMsg::Error { message } => Err(Failure::kept(
            ErrorKind::Protocol,
            format!("server: {message}"),
        )),
        m => Ok(m),
    }
}

/// Awaits a worker thread until `until`; on timeout the worker is told to stop (by the caller's
/// [`StopOnDrop`]) and the control connection is considered lost.
async fn join<T>(
    worker: tokio::sync::oneshot::Receiver<T>,
    until: Instant,
    what: &str,
) -> Result<T, Failure> {
    match tokio::time::timeout_at(until, worker).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(_)) => Err(Failure::lost(ErrorKind::Io, format!("{what} worker died"))),
        Err(_) => Err(Failure::lost(
            ErrorKind::Timeout,
            format!("{what} did not finish in time"),
        )),
    }
}

fn unexpected(m: ServerMsg) -> Failure {
    Failure::lost(
        ErrorKind::Protocol,
        format!("unexpected result message {m:?}"),
    )
}

fn io_kind(e: &std::io::Error) -> ErrorKind {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ErrorKind::ConnectTimeout,
        _ => ErrorKind::Io,
    }
}

async fn tcp_test(
    ctl: &mut Control,
    opts: &ClientOptions,
    streams: u32,
    addr: SocketAddr,
    overall: Instant,
) -> Result<Outcome, Failure> {
    let length = opts.duration + opts.omit;
    let cookie = start(
        ctl,
        TestSpec::Tcp {
            streams,
            duration_ms: opts.duration.as_millis() as u64,
            omit_ms: opts.omit.as_millis() as u64,
            per_stream_threads: opts.data_threads == DataThreads::PerStream,
        },
        overall,
    )
    .await?;
    let guard = StopOnDrop::default();
    let stop = guard.0.clone();
    let threads = match opts.data_threads {
        DataThreads::One => 1,
        DataThreads::PerStream => streams,
    };
    let worker = threads::spawn("probe-tcp", move || {
        let before = super::sockopt::process_cpu_seconds();
        let sent = tcp::send_streams(addr, cookie, streams, threads, length, CONNECT_WAIT, &stop);
        let cpu = before
            .zip(super::sockopt::process_cpu_seconds())
            .map(|(a, b)| (b - a).max(0.0));
        sent.map(|s| (s, cpu))
    });
    let sent = join(worker, bounded(length + DATA_SLACK, overall), "TCP sending").await?;
    let reply = finish(ctl, sent.as_ref().map_or(0, |s| s.0.bytes), 0, overall).await?;
    let (sent, sender_cpu_seconds) = sent.map_err(|e| {
        let kind = match &e {
            DataError::Connect { source, .. } => io_kind(source),
            _ => ErrorKind::Io,
        };
        Failure::kept(kind, e.to_string())
    })?;
    match reply {
        ServerMsg::TcpDone {
            streams: seen,
            bytes,
            seconds,
            cpu_seconds,
        } => {
            if seen < streams {
                return Err(Failure::kept(
                    ErrorKind::Protocol,
                    format!("only {seen} of {streams} streams reached the server"),
                ));
            }
            Ok(Outcome::Tcp(TcpResult {
                streams: seen,
                seconds,
                bytes,
                bits_per_second: rate(bytes, seconds),
                sent_bytes: sent.bytes,
                retransmits: sent.retransmits,
                sender_cpu_seconds,
                receiver_cpu_seconds: cpu_seconds,
            }))
        }
        m => Err(unexpected(m)),
    }
}

fn rate(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 * 8.0 / seconds
    } else {
        0.0
    }
}

fn unspecified(ip: IpAddr) -> SocketAddr {
    match ip {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let sock = UdpSocket::bind(unspecified(addr.ip()))?;
    sock.connect(addr)?;
    Ok(sock)
}

/// Datagram size when none was given: largest that needs no IP fragmentation.
fn auto_udp_size(addr: SocketAddr, path_mtu: Option<u32>) -> usize {
    let ipv6 = addr.is_ipv6();
    let mtu = path_mtu.or_else(|| {
        let sock = udp_socket(addr).ok()?;
        super::sockopt::path_mtu(&sock, ipv6).ok()
    });
    match mtu {
        Some(m) => (m.saturating_sub(mtu::overhead(ipv6)) as usize)
            .clamp(super::wire::DatagramHeader::LEN, udp::MAX_DATAGRAM),
        None => 1472,
    }
}

async fn udp_test(
    ctl: &mut Control,
    opts: &ClientOptions,
    addr: SocketAddr,
    overall: Instant,
    path_mtu: Option<u32>,
) -> Result<Outcome, Failure> {
    let size = opts
        .udp_size
        .unwrap_or_else(|| auto_udp_size(addr, path_mtu))
        .clamp(super::wire::DatagramHeader::LEN, udp::MAX_DATAGRAM);
    let cookie = start(
        ctl,
        TestSpec::Udp {
            duration_ms: opts.duration.as_millis() as u64,
            datagram_size: size,
        },
        overall,
    )
    .await?;
    let guard = StopOnDrop::default();
    let stop = guard.0.clone();
    let (duration, bitrate) = (opts.duration, opts.udp_bitrate);
    let worker = threads::spawn("probe-udp", move || {
        let sock = udp_socket(addr)?;
        udp::set_buffers(&sock)?;
        udp::send(&sock, cookie, size, bitrate, duration, &stop)
    });
    let sent = join(
        worker,
        bounded(duration + DATA_SLACK, overall),
        "UDP sending",
    )
    .await?;
    let (sent_bytes, sent_n) = sent.as_ref().map_or((0, 0), |s| (s.bytes, s.datagrams));
    let reply = finish(ctl, sent_bytes, sent_n, overall).await?;
    let sent = sent.map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::ConnectionRefused {
            ErrorKind::ConnectRefused
        } else {
            ErrorKind::Io
        };
        Failure::kept(kind, format!("UDP send: {e}"))
    })?;
    match reply {
        ServerMsg::UdpDone {
            received,
            bytes,
            lost,
            loss_fraction,
            out_of_order,
            duplicates,
            jitter_ms,
            seconds,
        } => {
            if received == 0 {
                return Err(Failure::kept(
                    ErrorKind::NoResponse,
                    format!(
                        "none of {} UDP datagrams reached the server (UDP blocked on the path?)",
                        sent.datagrams
                    ),
                ));
            }
            Ok(Outcome::Udp(UdpResult {
                seconds,
                datagram_size: size,
                sent: sent.datagrams,
                received,
                lost,
                loss_fraction,
                out_of_order,
                duplicates,
                jitter_ms,
                bits_per_second: rate(bytes, seconds),
                sent_bits_per_second: rate(sent.bytes, sent.seconds),
            }))
        }
        m => Err(unexpected(m)),
    }
}

async fn rr_test(
    ctl: &mut Control,
    opts: &ClientOptions,
    addr: SocketAddr,
    overall: Instant,
) -> Result<Outcome, Failure> {
    let count = opts.rr_count.max(1);
    let cookie = start(ctl, TestSpec::Rr { count }, overall).await?;
    let guard = StopOnDrop::default();
    let stop = guard.0.clone();
    let worker = threads::spawn("probe-rr", move || {
        let s = tcp::connect(addr, StreamKind::Rr, cookie, CONNECT_WAIT).map_err(|e| {
            let kind = match &e {
                DataError::Connect { source, .. } => io_kind(source),
                _ => ErrorKind::Io,
            };
            Failure::kept(kind, e.to_string())
        })?;
        rr::run_client(s, count, RR_TRANSACTION_WAIT, &stop).map_err(|e| {
            let kind = match e.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ErrorKind::Timeout,
                _ => ErrorKind::Io,
            };
            Failure::kept(kind, format!("request/response: {e}"))
        })
    });
    // Each transaction is bounded by RR_TRANSACTION_WAIT; the whole by 5 ms each on average.
    let length = Duration::from_millis(5) * count;
    let result = join(
        worker,
        bounded(length + DATA_SLACK, overall),
        "request/response",
    )
    .await?;
    let reply = finish(ctl, 0, 0, overall).await?;
    let result = result?;
    match reply {
        ServerMsg::RrDone { transactions } => {
            if transactions != u64::from(result.count) {
                tracing::debug!(
                    "probe rr: server echoed {transactions}, client counted {}",
                    result.count
                );
            }
            Ok(Outcome::Rr(result))
        }
        m => Err(unexpected(m)),
    }
}

async fn crr_test(
    ctl: &mut Control,
    opts: &ClientOptions,
    addr: SocketAddr,
    overall: Instant,
) -> Result<Outcome, Failure> {
    let length = opts.crr_duration;
    let cookie = start(
        ctl,
        TestSpec::Crr {
            duration_ms: length.as_millis() as u64,
        },
        overall,
    )
    .await?;
    let guard = StopOnDrop::default();
    let stop = guard.0.clone();
    let worker = threads::spawn("probe-crr", move || {
        super::crr::run_client(addr, cookie, length, RR_TRANSACTION_WAIT, &stop)
    });
    let result = join(
        worker,
        bounded(length + RR_TRANSACTION_WAIT + DATA_SLACK, overall),
        "connect/request/response",
    )
    .await?;
    let reply = finish(ctl, 0, 0, overall).await?;
    let result = result.map_err(|e| {
        let kind = match e.kind() {
            std::io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ErrorKind::Timeout,
            _ => ErrorKind::Io,
        };
        Failure::kept(kind, format!("connect/request/response: {e}"))
    })?;
    match reply {
        ServerMsg::CrrDone { transactions } => {
            if transactions + 1 < u64::from(result.count) {
                tracing::debug!(
                    "probe crr: server answered {transactions}, client counted {}",
                    result.count
                );
            }
            Ok(Outcome::Crr(result))
        }
        m => Err(unexpected(m)),
    }
}

async fn mtu_test(
    ctl: &mut Control,
    opts: &ClientOptions,
    addr: SocketAddr,
    overall: Instant,
) -> Result<Outcome, Failure> {
    let ipv6 = addr.is_ipv6();
    // The smallest MTU every link must carry: IPv4 576, IPv6 1280.
    let floor = if ipv6 { 1280 } else { 576 };
    let max = opts.max_mtu.max(floor);
    let cookie = start(ctl, TestSpec::Mtu, overall).await?;
    let guard = StopOnDrop::default();
    let stop = guard.0.clone();
    let worker = threads::spawn("probe-mtu", move || {
        let sock = udp_socket(addr)?;
        mtu::discover(&sock, ipv6, cookie, floor, max, &stop)
    });
    let found = join(worker, bounded(MTU_WAIT, overall), "MTU search").await?;
    let reply = finish(ctl, 0, 0, overall).await?;
    let found = found.map_err(|e| {
        let kind = match &e {
            MtuError::NoResponse(_) => ErrorKind::NoResponse,
            MtuError::Refused => ErrorKind::ConnectRefused,
            MtuError::Stopped => ErrorKind::Timeout,
            MtuError::Io(_) => ErrorKind::Io,
        };
        Failure::kept(kind, format!("MTU search: {e}"))
    })?;
    match reply {
        ServerMsg::MtuDone { largest, .. } => {
            let seen = largest as u32 + mtu::overhead(ipv6);
            if seen < found.path_mtu {
                tracing::debug!(
                    "probe mtu: server saw at most {seen}, client {}",
                    found.path_mtu
                );
            }
            Ok(Outcome::Mtu(MtuResult {
                path_mtu: found.path_mtu,
                local_mtu: found.local_mtu,
                probes: found.probes,
            }))
        }
        m => Err(unexpected(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TestKind::*;

    #[test]
    fn mtu_runs_before_udp_only_when_it_decides_the_size() {
        assert_eq!(
            schedule(&[Tcp, TcpMulti, Udp, Rr, Mtu], true),
            vec![Tcp, TcpMulti, Mtu, Udp, Rr]
        );
        assert_eq!(
            schedule(&[Tcp, Udp, Rr, Mtu], false),
            vec![Tcp, Udp, Rr, Mtu]
        );
        assert_eq!(schedule(&[Mtu, Udp, Mtu], true), vec![Mtu, Udp]);
        assert_eq!(schedule(&[Udp], true), vec![Udp]);
    }
}
