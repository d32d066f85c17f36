//! Path MTU discovery: DF-flagged UDP probes the server acknowledges, binary search of the
//! largest packet that gets through. Several tries per size so one lost datagram doesn't lie.

use std::io;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use super::sockopt;
use super::threads::Stop;
use super::wire::{DatagramHeader, DatagramKind};

/// Tries per packet size before it counts as "does not get through".
const TRIES: u32 = 3;
/// Wait for each try's acknowledgement.
const ACK_WAIT: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, PartialEq)]
pub struct MtuOutcome {
    pub path_mtu: u32,
    pub local_mtu: Option<u32>,
    pub probes: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum MtuError {
    #[error(
        "no acknowledgement for a {0}-byte probe after {TRIES} tries (UDP blocked on the path?)"
    )]
    NoResponse(u32),
    #[error("the server's UDP port is unreachable (ICMP port unreachable)")]
    Refused,
    #[error("stopped")]
    Stopped,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// IP + UDP header bytes in front of the payload.
pub fn overhead(ipv6: bool) -> u32 {
    if ipv6 { 48 } else { 28 }
}

struct Prober<'a> {
    sock: &'a UdpSocket,
    ipv6: bool,
    cookie: u64,
    seq: u64,
    probes: u32,
    local_mtu: Option<u32>,
    stop: &'a Stop,
}

/// Finds the largest packet size in `[min_mtu, max_mtu]` that reaches the server through
/// `sock` (connected to the server's probe port).
pub fn discover(
    sock: &UdpSocket,
    ipv6: bool,
    cookie: u64,
    min_mtu: u32,
    max_mtu: u32,
    stop: &Stop,
) -> Result<MtuOutcome, MtuError> {
    sockopt::set_dont_fragment(sock, ipv6)?;
    let mut p = Prober {
        sock,
        ipv6,
        cookie,
        seq: 0,
        probes: 0,
        local_mtu: sockopt::path_mtu(sock, ipv6).ok(),
        stop,
    };
    let mut lo = min_mtu;
    let mut hi = max_mtu.max(min_mtu);
    if let Some(local) = p.local_mtu {
        hi = hi.min(local.max(min_mtu));
    }
    if !p.gets_through(lo)? {
        return Err(MtuError::NoResponse(lo));
    }
    if hi > lo && p.gets_through(hi)? {
        lo = hi;
    }
    // Invariant: `lo` got through, `hi` did not.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if p.gets_through(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(MtuOutcome {
        path_mtu: lo,
        local_mtu: p.local_mtu,
        probes: p.probes,
    })
}

impl Prober<'_> {
    fn gets_through(&mut self, packet: u32) -> Result<bool, MtuError> {
        let payload = packet.saturating_sub(overhead(self.ipv6)) as usize;
        if !(DatagramHeader::LEN..=super::udp::MAX_DATAGRAM).contains(&payload) {
            return Ok(false);
        }
        let mut buf = vec![0u8; payload];
        for _ in 0..TRIES {
            if self.stop.raised() {
                return Err(MtuError::Stopped);
            }
            self.seq += 1;
            DatagramHeader {
                kind: DatagramKind::MtuProbe,
                cookie: self.cookie,
                seq: self.seq,
                stamp: 0,
            }
            .write(&mut buf);
            match self.sock.send(&buf) {
                Ok(_) => self.probes += 1,
                Err(e) => {
                    // Larger than the local route (or a learned path) MTU with DF set.
                    if e.raw_os_error() == Some(libc::EMSGSIZE) {
                        self.refresh_local_mtu();
                        return Ok(false);
                    }
                    return Err(classify(e));
                }
            }
            match self.await_ack(self.seq, payload) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(MtuError::Io(e)) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    // ICMP "fragmentation needed" from a router: the kernel lowered its PMTU.
                    self.refresh_local_mtu();
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    fn refresh_local_mtu(&mut self) {
        if let Ok(m) = sockopt::path_mtu(self.sock, self.ipv6) {
            self.local_mtu = Some(m);
        }
    }

    /// Waits for the ack of probe `seq`; acks of earlier probes are skipped.
    fn await_ack(&self, seq: u64, payload: usize) -> Result<bool, MtuError> {
        let deadline = Instant::now() + ACK_WAIT;
        let mut buf = [0u8; 256];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.sock.set_read_timeout(Some(left))?;
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    if let Ok(h) = DatagramHeader::read(&buf[..n])
                        && h.kind == DatagramKind::MtuAck
                        && h.cookie == self.cookie
                        && h.seq == seq
                        && h.stamp == payload as u64
                    {
                        return Ok(true);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(classify(e)),
            }
        }
    }
}

fn classify(e: io::Error) -> MtuError {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        MtuError::Refused
    } else {
        MtuError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::udp::{ServerMode, serve_test};

    #[test]
    fn finds_the_cap_on_loopback() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        let stop = Stop::default();
        let srv = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                serve_test(
                    &server,
                    11,
                    ServerMode::AckProbes,
                    &stop,
                    Instant::now() + Duration::from_secs(20),
                )
                .unwrap()
            })
        };
        // Loopback's MTU is 64 KiB, so the 9000 cap is what we find, in 2 probes.
        let r = discover(&client, false, 11, 576, 9000, &Stop::default()).unwrap();
        assert_eq!((r.path_mtu, r.probes), (9000, 2));
        assert_eq!(
            r.local_mtu,
            Some(crate::probe::sockopt::path_mtu(&client, false).unwrap())
        );
        // Above the largest UDP datagram the local stack refuses: binary search to 65535.
        let r = discover(&client, false, 11, 576, 70_000, &Stop::default()).unwrap();
        assert_eq!(r.path_mtu, 65_535);
        stop.raise();
        assert!(srv.join().unwrap().probes >= 3);
    }

    #[test]
    fn silent_peer_is_no_response_in_bounded_time() {
        // Bound but never answering: the datagrams vanish, no ICMP comes back.
        let blackhole = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(blackhole.local_addr().unwrap()).unwrap();
        let t0 = Instant::now();
        let e = discover(&client, false, 1, 576, 1500, &Stop::default()).unwrap_err();
        assert!(matches!(e, MtuError::NoResponse(576)), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    }

    #[test]
    fn closed_port_is_refused() {
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(addr).unwrap();
        let e = discover(&client, false, 1, 576, 1500, &Stop::default()).unwrap_err();
        assert!(matches!(e, MtuError::Refused), "{e}");
    }
}
