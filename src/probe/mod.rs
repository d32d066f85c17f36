//! `director-boot probe`: a network measurement tool built into the binary, so nodes and
//! containers need no iperf3/netperf. Modelled on iperf3's design.
//!
//! # Library API (what `netcheck` calls)
//!
//! ```ignore
//! // On the far end (e.g. inside a pod), blocks until --idle-exit / --once / error:
//! probe::serve(&ServerOptions { bind, port: probe::DEFAULT_PORT, idle_exit: Some(60s), once: false }).await?;
//! // or, to learn an ephemeral port first: let s = Server::bind(&opts).await?; s.local_addr(); s.run().await
//!
//! // On the near end:
//! let mut opts = ClientOptions::new(server_ip);          // iperf3-like defaults
//! opts.tests = vec![TestKind::Tcp, TestKind::Udp];
//! opts.timeout = opts.suggested_timeout();               // new() already sets this
//! let report: ProbeReport = probe::run_client(&opts).await?;
//! // Err(ProbeError) = the control connection never worked (refused / timeout / no answer /
//! // busy / version); a failure inside one test lands in report.errors and the other tests run.
//! ```
//!
//! # Protocol (version [`PROTOCOL_VERSION`])
//!
//! Everything uses one port number, TCP and UDP (default 5299).
//! - Every TCP connection starts with a 14-byte preamble (`wire::Preamble`): magic `DBPR`,
//!   version, kind (control / tcp-data / rr) and a 64-bit cookie (0 on control).
//! - The control connection then carries newline-delimited JSON (`control::ClientMsg` /
//!   `control::ServerMsg`): `hello` → `welcome` (or `busy`), then per test `start{spec}` →
//!   `ready{cookie}` → the client runs the data path → `done{what it sent}` → the server's
//!   receiver-side result. `bye` ends the session. One control connection at a time.
//! - TCP data streams (and the RR stream) are separate TCP connections carrying the test's
//!   cookie in their preamble; the client sends, the server receives and measures.
//! - UDP datagrams (data and MTU probes) carry a 32-byte header (`wire::DatagramHeader`):
//!   magic, kind, cookie, sequence number and send time; the server counts loss / reordering /
//!   duplicates and computes RFC 3550 jitter, and acknowledges MTU probes.
//!
//! # How figures are measured (and how they compare with iperf3)
//!
//! - TCP: the same I/O pattern as iperf3, so that CPU-bound paths (loopback, veth, an overlay
//!   on a busy host) give comparable figures: 128 KiB blocks (`-l 128K`), readiness from
//!   poll(2), the sender writing nonblocking in 10 rounds of one block per ready stream
//!   ("multisend"), the receiver reading one whole block per ready stream; kernel buffer
//!   autotuning left on. One data thread per side for all streams by default (iperf3 up to
//!   3.15), or one per stream ([`DataThreads::PerStream`], iperf3 3.16+). Throughput is
//!   measured at the receiver, from its first byte to the
//!   end of the last stream (EOF), summed over streams. Nothing is omitted by default, as iperf3
//!   (`-O 0`); `omit` (iperf3's `-O`) drops the first seconds after the first byte from both the
//!   byte count and the time.
//! - UDP: payload bytes received over first-to-last datagram time at the receiver; loss =
//!   sent − distinct received (exact, duplicates don't hide losses); jitter per RFC 3550 §A.8.
//!   Bitrate 0 sends as fast as the socket accepts; the received rate and loss tell what got
//!   through. Both ends ask for 4 MiB socket buffers (iperf3 keeps the ~200 KiB default), so
//!   at bitrate 0 on a CPU-bound path fewer datagrams are dropped at the receiving socket and
//!   the received rate is higher than iperf3's; on a link-bound path the two agree. Default datagram size: path MTU − 28 (IPv4; − 48 IPv6) when the MTU test ran
//!   first (it is scheduled first when both are asked for), else the local route MTU, else 1472.
//! - RR: one TCP connection with TCP_NODELAY, 1-byte request → 1-byte response, measured at the
//!   client; 10 uncounted warm-up transactions first.
//! - CRR: connection rate as netperf's TCP_CRR: a new TCP connection per transaction (connect,
//!   preamble + 1-byte request, 1-byte response, close) for `crr_duration`, counted and timed at
//!   the client; the first failed connection fails the test.
//! - CPU: the process's own CPU time (getrusage, user + system) around each TCP test, on the
//!   client (sender) and the server (receiver), so netcheck can give CPU seconds per Gbit. It
//!   is what the kernel charges to the probe process: network work done in softirq context on
//!   behalf of another process (on one machine, the sender often runs the receive path) or by
//!   ksoftirqd is not in it.
//! - MTU: UDP with DF set (IP_PMTUDISC_DO), binary search of the largest packet the server
//!   acknowledges between 576 and `max_mtu` (capped by the local route MTU); each size tried
//!   3× with a 250 ms wait before it counts as lost.

mod client;
mod control;
mod crr;
mod mtu;
mod rr;
mod server;
mod sockopt;
mod tcp;
mod threads;
mod udp;
mod udp_stats;
mod wire;

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use client::run_client;
pub use server::{Server, serve};

/// The port the probe server listens on (TCP and UDP) unless told otherwise.
pub const DEFAULT_PORT: u16 = 5299;
/// Bumped whenever the control or wire format changes incompatibly.
pub const PROTOCOL_VERSION: u32 = 2;

/// One kind of measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TestKind {
    /// One TCP stream, client → server.
    Tcp,
    /// `streams` parallel TCP streams, client → server.
    TcpMulti,
    /// UDP datagrams client → server: rate, loss, reordering, jitter.
    Udp,
    /// TCP request/response latency.
    Rr,
    /// Largest packet that crosses the path with DF set.
    Mtu,
    /// Connection rate: connect, request, response, close (netperf TCP_CRR).
    Crr,
}

impl TestKind {
    pub const ALL: [TestKind; 6] = [
        TestKind::Tcp,
        TestKind::TcpMulti,
        TestKind::Udp,
        TestKind::Rr,
        TestKind::Mtu,
        TestKind::Crr,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TestKind::Tcp => "tcp",
            TestKind::TcpMulti => "tcp-multi",
            TestKind::Udp => "udp",
            TestKind::Rr => "rr",
            TestKind::Mtu => "mtu",
            TestKind::Crr => "crr",
        }
    }
}

impl std::fmt::Display for TestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many data threads each side runs for a multi-stream TCP test. On a path limited by the
/// link both give the same figure; on a CPU-bound path (loopback, veth, an overlay on a busy
/// host) one thread is what iperf3 up to 3.15 measures and per-stream what iperf3 3.16+ does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DataThreads {
    /// One thread multiplexes all streams (iperf3 ≤ 3.15, e.g. Debian 12's 3.12).
    #[default]
    One,
    /// A thread per stream on each side (iperf3 ≥ 3.16).
    PerStream,
}

/// What the client measures and how long it may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientOptions {
    pub server: IpAddr,
    pub port: u16,
    /// Run in this order, except that `mtu` goes before `udp` when the UDP size is automatic.
    pub tests: Vec<TestKind>,
    /// Streams of the `tcp-multi` test (`tcp` always uses one).
    pub streams: u32,
    /// Data threads per side in TCP tests.
    pub data_threads: DataThreads,
    /// Sending time of each TCP and UDP test.
    pub duration: Duration,
    /// Seconds after the first byte left out of the TCP figure (iperf3 `-O`); zero = none.
    pub omit: Duration,
    /// UDP send rate in bits/s; 0 = as fast as the socket accepts.
    pub udp_bitrate: u64,
    /// UDP payload bytes per datagram; None = from the path MTU (see the module docs).
    pub udp_size: Option<usize>,
    pub rr_count: u32,
    /// How long the `crr` test opens connections.
    pub crr_duration: Duration,
    /// Upper end of the MTU search (IP packet size).
    pub max_mtu: u32,
    /// Hard bound on the whole run; tests not finished by then are reported as timed out.
    pub timeout: Duration,
}

impl ClientOptions {
    /// The CLI's defaults: all tests, 4 streams, 5 s, unlimited UDP, 2000 RR, 2 s of CRR, MTU
    /// up to 9000.
    pub fn new(server: IpAddr) -> Self {
        let mut opts = ClientOptions {
            server,
            port: DEFAULT_PORT,
            tests: TestKind::ALL.to_vec(),
            streams: 4,
            data_threads: DataThreads::One,
            duration: Duration::from_secs(5),
            omit: Duration::ZERO,
            udp_bitrate: 0,
            udp_size: None,
            rr_count: 2000,
            crr_duration: Duration::from_secs(2),
            max_mtu: 9000,
            timeout: Duration::ZERO,
        };
        opts.timeout = opts.suggested_timeout();
        opts
    }

    /// Enough for every selected test to finish on a slow path, plus connection setup.
    pub fn suggested_timeout(&self) -> Duration {
        let per_test = |t: &TestKind| match t {
            TestKind::Tcp | TestKind::TcpMulti | TestKind::Udp => {
                self.duration + self.omit + Duration::from_secs(15)
            }
            // 2000 transactions at 5 ms each would be 10 s: a very slow path.
            TestKind::Rr => Duration::from_secs(10) + Duration::from_millis(5) * self.rr_count,
            TestKind::Mtu => Duration::from_secs(30),
            TestKind::Crr => self.crr_duration + Duration::from_secs(15),
        };
        Duration::from_secs(10) + self.tests.iter().map(per_test).sum::<Duration>()
    }
}

/// Where and how long the server listens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerOptions {
    pub bind: IpAddr,
    /// 0 = an ephemeral port (TCP and UDP get the same number); see [`Server::local_addr`].
    pub port: u16,
    /// Exit after this long without a client; None = never.
    pub idle_exit: Option<Duration>,
    /// Exit after the first client session ends.
    pub once: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            bind: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            port: DEFAULT_PORT,
            idle_exit: None,
            once: false,
        }
    }
}

/// Everything one client run measured.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProbeReport {
    /// `ip:port` of the server.
    pub server: String,
    pub tcp: Option<TcpResult>,
    pub tcp_multi: Option<TcpResult>,
    pub udp: Option<UdpResult>,
    pub rr: Option<RrResult>,
    pub mtu: Option<MtuResult>,
    /// Connection rate (`transactions_per_second`) and per-connection latency.
    #[serde(default)]
    pub crr: Option<RrResult>,
    /// One entry per test that failed or was not run.
    pub errors: Vec<TestError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TcpResult {
    /// Streams that reached the server.
    pub streams: u32,
    /// Receiver time: first byte (plus omit) to the end of the last stream.
    pub seconds: f64,
    /// Bytes received in that time.
    pub bytes: u64,
    /// Measured at the receiver.
    pub bits_per_second: f64,
    /// Bytes the client handed to its sockets during the test.
    pub sent_bytes: u64,
    /// Sender's TCP_INFO total_retrans, summed over streams.
    pub retransmits: Option<u64>,
    /// CPU seconds (user + system) the client process used while sending.
    #[serde(default)]
    pub sender_cpu_seconds: Option<f64>,
    /// CPU seconds the server process used while receiving (its figure, sent back).
    #[serde(default)]
    pub receiver_cpu_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UdpResult {
    /// Receiver time: first to last datagram.
    pub seconds: f64,
    /// UDP payload bytes per datagram (including the probe's 32-byte header).
    pub datagram_size: usize,
    pub sent: u64,
    /// Distinct datagrams received.
    pub received: u64,
    pub lost: u64,
    pub loss_fraction: f64,
    pub out_of_order: u64,
    pub duplicates: u64,
    /// RFC 3550 interarrival jitter at the receiver.
    pub jitter_ms: f64,
    /// Received payload at the receiver.
    pub bits_per_second: f64,
    /// Payload the client sent per second of its sending time.
    pub sent_bits_per_second: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RrResult {
    pub count: u32,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    pub min_us: f64,
    pub max_us: f64,
    pub transactions_per_second: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MtuResult {
    /// Largest IP packet (IPv4: payload + 28, IPv6: + 48) that got through with DF set.
    pub path_mtu: u32,
    /// MTU of the local route to the server, when the kernel reports one.
    pub local_mtu: Option<u32>,
    /// Probe datagrams sent.
    pub probes: u32,
}

/// A test that failed or could not run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestError {
    pub test: TestKind,
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Nothing listens on the port (TCP RST / ICMP port unreachable).
    ConnectRefused,
    /// No answer to the TCP handshake in time (firewall drop, dead host).
    ConnectTimeout,
    /// Connected, but the server (or its UDP port) never answered.
    NoResponse,
    /// The test or the whole run took longer than allowed.
    Timeout,
    /// The server said something unexpected, or refused the test.
    Protocol,
    /// Another client is using the server.
    Busy,
    Io,
}

/// Failures that keep the client from running any test, or stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{addr}: connection refused (is `director-boot probe server` running there?)")]
    ConnectRefused { addr: std::net::SocketAddr },
    #[error("{addr}: no answer to the TCP handshake within {secs:.1} s (host down or firewalled)")]
    ConnectTimeout {
        addr: std::net::SocketAddr,
        secs: f64,
    },
    #[error("{addr}: connected, but no answer within {secs:.1} s to {what}")]
    NoResponse {
        addr: std::net::SocketAddr,
        what: &'static str,
        secs: f64,
    },
    #[error("{addr}: server busy: {message}")]
    Busy {
        addr: std::net::SocketAddr,
        message: String,
    },
    #[error("{addr}: protocol error: {message}")]
    Protocol {
        addr: std::net::SocketAddr,
        message: String,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl ProbeError {
    /// The per-test classification of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProbeError::ConnectRefused { .. } => ErrorKind::ConnectRefused,
            ProbeError::ConnectTimeout { .. } => ErrorKind::ConnectTimeout,
            ProbeError::NoResponse { .. } => ErrorKind::NoResponse,
            ProbeError::Busy { .. } => ErrorKind::Busy,
            ProbeError::Protocol { .. } => ErrorKind::Protocol,
            ProbeError::Bind { .. } | ProbeError::Io { .. } => ErrorKind::Io,
        }
    }
}

#[cfg(test)]
mod tests;
