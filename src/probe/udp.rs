//! UDP data path: a paced (or unpaced) sender on the client, and the server's per-test loop
//! that counts data datagrams or acknowledges MTU probes.

use std::io;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use super::threads::Stop;
use super::udp_stats::UdpAccounting;
use super::wire::{DatagramHeader, DatagramKind};

/// Socket buffers asked for on both ends (the kernel caps them at net.core.[rw]mem_max), so a
/// burst at full speed is queued instead of dropped at the socket.
pub const SOCKET_BUFFER: usize = 4 * 1024 * 1024;
/// Largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;
/// After the client says it is done, datagrams still in flight are awaited this long after the
/// last one arrived …
const DRAIN_QUIET: Duration = Duration::from_millis(100);
/// … but never longer than this.
const DRAIN_MAX: Duration = Duration::from_secs(2);

pub fn set_buffers(sock: &UdpSocket) -> io::Result<()> {
    let s = socket2::SockRef::from(sock);
    s.set_recv_buffer_size(SOCKET_BUFFER)?;
    s.set_send_buffer_size(SOCKET_BUFFER)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SendSummary {
    pub datagrams: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Sends `size`-byte datagrams on a connected socket for `duration`, at `bitrate` bits/s
/// (0 = as fast as the socket takes them). Only datagrams the kernel accepted are counted.
pub fn send(
    sock: &UdpSocket,
    cookie: u64,
    size: usize,
    bitrate: u64,
    duration: Duration,
    stop: &Stop,
) -> io::Result<SendSummary> {
    let size = size.clamp(DatagramHeader::LEN, MAX_DATAGRAM);
    sock.set_write_timeout(Some(super::threads::POLL))?;
    let mut buf = vec![0u8; size];
    let start = Instant::now();
    let deadline = start + duration;
    let mut out = SendSummary::default();
    loop {
        let now = Instant::now();
        if now >= deadline || stop.raised() {
            break;
        }
        let elapsed = now - start;
        if bitrate > 0 {
            // Ahead of the schedule: wait until this datagram is due.
            let due =
                Duration::from_secs_f64((out.bytes + size as u64) as f64 * 8.0 / bitrate as f64);
            if due > elapsed {
                std::thread::sleep((due - elapsed).min(deadline - now));
                continue;
            }
        }
        DatagramHeader {
            kind: DatagramKind::Data,
            cookie,
            seq: out.datagrams,
            stamp: elapsed.as_nanos() as u64,
        }
        .write(&mut buf);
        match sock.send(&buf) {
            Ok(_) => {
                out.datagrams += 1;
                out.bytes += size as u64;
            }
            // Queue full (ENOBUFS) or timed out: the datagram was not sent, try again.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    out.seconds = start.elapsed().min(duration).as_secs_f64();
    Ok(out)
}

/// What the server does with this test's datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMode {
    Count,
    AckProbes,
}

#[derive(Debug, Default)]
pub struct ServerOutcome {
    pub accounting: UdpAccounting,
    /// MTU probes acknowledged, and the largest one.
    pub probes: u64,
    pub largest: u64,
    /// Datagrams of other tests or strangers.
    pub ignored: u64,
}

/// Serves one test on the server's UDP socket until `stop` (then drains what is still in
/// flight) or `hard_deadline`.
pub fn serve_test(
    sock: &UdpSocket,
    cookie: u64,
    mode: ServerMode,
    stop: &Stop,
    hard_deadline: Instant,
) -> io::Result<ServerOutcome> {
    sock.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut buf = vec![0u8; 65_536];
    let epoch = Instant::now();
    let mut out = ServerOutcome::default();
    let mut stopped_at: Option<Instant> = None;
    let mut last_rx = epoch;
    loop {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                let now = Instant::now();
                last_rx = now;
                let h = match DatagramHeader::read(&buf[..n]) {
                    Ok(h) if h.cookie == cookie => h,
                    _ => {
                        out.ignored += 1;
                        continue;
                    }
                };
                match (mode, h.kind) {
                    (ServerMode::Count, DatagramKind::Data) => {
                        let at = (now - epoch).as_nanos() as u64;
                        out.accounting.on_arrival(h.seq, h.stamp, at, n);
                    }
                    (ServerMode::AckProbes, DatagramKind::MtuProbe) => {
                        let mut ack = [0u8; DatagramHeader::LEN];
                        DatagramHeader {
                            kind: DatagramKind::MtuAck,
                            cookie,
                            seq: h.seq,
                            stamp: n as u64,
                        }
                        .write(&mut ack);
                        if let Err(e) = sock.send_to(&ack, from) {
                            tracing::debug!("probe: MTU ack to {from}: {e}");
                        } else {
                            out.probes += 1;
                            out.largest = out.largest.max(n as u64);
                        }
                    }
                    _ => out.ignored += 1,
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            // ICMP errors from earlier acks (the client went away) are not ours to fail on.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        if now >= hard_deadline {
            break;
        }
        if stop.raised() {
            let at = *stopped_at.get_or_insert(now);
            if now - at >= DRAIN_MAX || now - last_rx.max(at) >= DRAIN_QUIET {
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (UdpSocket, UdpSocket) {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        set_buffers(&server).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        (server, client)
    }

    #[test]
    fn paced_send_is_counted_without_loss() {
        let (server, client) = pair();
        let stop = Stop::default();
        let rx = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                serve_test(
                    &server,
                    77,
                    ServerMode::Count,
                    &stop,
                    Instant::now() + Duration::from_secs(10),
                )
                .unwrap()
            })
        };
        // 8 Mbit/s of 1000-byte datagrams for 0.5 s = 500 datagrams.
        let sent = send(
            &client,
            77,
            1000,
            8_000_000,
            Duration::from_millis(500),
            &Stop::default(),
        )
        .unwrap();
        // A stray datagram of another test must not count.
        let mut other = [0u8; 64];
        DatagramHeader {
            kind: DatagramKind::Data,
            cookie: 78,
            seq: 0,
            stamp: 0,
        }
        .write(&mut other);
        client.send(&other).unwrap();
        stop.raise();
        let out = rx.join().unwrap();
        let c = out.accounting.counts(Some(sent.datagrams));
        assert!((450..=510).contains(&sent.datagrams), "{sent:?}");
        assert_eq!(c.received, sent.datagrams);
        assert_eq!(c.lost, 0);
        assert_eq!(c.bytes, sent.bytes);
        assert_eq!(out.ignored, 1);
        assert!(c.seconds > 0.4 && c.seconds < 0.6, "{c:?}");
    }

    #[test]
    fn probes_are_acknowledged_with_their_size() {
        let (server, client) = pair();
        let stop = Stop::default();
        let rx = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                serve_test(
                    &server,
                    5,
                    ServerMode::AckProbes,
                    &stop,
                    Instant::now() + Duration::from_secs(10),
                )
                .unwrap()
            })
        };
        let mut probe = vec![0u8; 1200];
        DatagramHeader {
            kind: DatagramKind::MtuProbe,
            cookie: 5,
            seq: 3,
            stamp: 0,
        }
        .write(&mut probe);
        client.send(&probe).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut ack = [0u8; 64];
        let n = client.recv(&mut ack).unwrap();
        let h = DatagramHeader::read(&ack[..n]).unwrap();
        assert_eq!((h.kind, h.seq, h.stamp), (DatagramKind::MtuAck, 3, 1200));
        stop.raise();
        let out = rx.join().unwrap();
        assert_eq!((out.probes, out.largest), (1, 1200));
    }

    #[test]
    fn server_loop_ends_at_its_deadline_without_traffic() {
        let (server, _client) = pair();
        let t0 = Instant::now();
        serve_test(
            &server,
            1,
            ServerMode::Count,
            &Stop::default(),
            Instant::now() + Duration::from_millis(200),
        )
        .unwrap();
        // Bounded, not hung (a generous bound: the test host may be loaded).
        assert!(t0.elapsed() < Duration::from_secs(20));
    }
}
