//! Fixed binary framing: the preamble of every TCP connection and the header of every UDP
//! datagram. Big-endian, fixed offsets, so the hot paths never parse text.

use super::PROTOCOL_VERSION;

const MAGIC: [u8; 4] = *b"DBPR";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not a director-boot probe peer (bad magic)")]
    Magic,
    #[error("probe protocol version {0} (this build speaks {PROTOCOL_VERSION})")]
    Version(u8),
    #[error("unknown connection/datagram kind {0}")]
    Kind(u8),
    #[error("too short: {0} bytes")]
    Short(usize),
}

/// What a TCP connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Control = 1,
    TcpData = 2,
    Rr = 3,
    /// One connect/request/response/close transaction of the `crr` test.
    Crr = 4,
}

/// First bytes of every TCP connection to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    pub kind: StreamKind,
    /// Test the stream belongs to (issued by the server in `ready`); 0 on the control connection.
    pub cookie: u64,
}

impl Preamble {
    pub const LEN: usize = 14;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4] = PROTOCOL_VERSION as u8;
        b[5] = self.kind as u8;
        b[6..14].copy_from_slice(&self.cookie.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8; Self::LEN]) -> Result<Self, WireError> {
        if b[0..4] != MAGIC {
            return Err(WireError::Magic);
        }
        if u32::from(b[4]) != PROTOCOL_VERSION {
            return Err(WireError::Version(b[4]));
        }
        let kind = match b[5] {
            1 => StreamKind::Control,
            2 => StreamKind::TcpData,
            3 => StreamKind::Rr,
            4 => StreamKind::Crr,
            k => return Err(WireError::Kind(k)),
        };
        Ok(Preamble {
            kind,
            cookie: u64_at(b, 6),
        })
    }
}

/// What a UDP datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    Data = 1,
    MtuProbe = 2,
    MtuAck = 3,
}

/// Head of every UDP datagram; the rest of the datagram is padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramHeader {
    pub kind: DatagramKind,
    pub cookie: u64,
    /// Data: 0, 1, 2, … per test. MTU: the probe number (echoed in the ack).
    pub seq: u64,
    /// Data: sender's monotonic nanoseconds since its start (only differences matter).
    /// MTU ack: the size of the probe datagram the server received.
    pub stamp: u64,
}

impl DatagramHeader {
    pub const LEN: usize = 32;

    /// Writes the header into the first [`Self::LEN`] bytes of `buf` (which must be that long).
    pub fn write(&self, buf: &mut [u8]) {
        buf[0..4].copy_from_slice(&MAGIC);
        buf[4] = PROTOCOL_VERSION as u8;
        buf[5] = self.kind as u8;
        buf[6..8].fill(0);
        buf[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        buf[16..24].copy_from_slice(&self.seq.to_be_bytes());
        buf[24..32].copy_from_slice(&self.stamp.to_be_bytes());
    }

    pub fn read(buf: &[u8]) -> Result<Self, WireError> {
        if buf.len() < Self::LEN {
            return Err(WireError::Short(buf.len()));
        }
        if buf[0..4] != MAGIC {
            return Err(WireError::Magic);
        }
        if u32::from(buf[4]) != PROTOCOL_VERSION {
            return Err(WireError::Version(buf[4]));
        }
        let kind = match buf[5] {
            1 => DatagramKind::Data,
            2 => DatagramKind::MtuProbe,
            3 => DatagramKind::MtuAck,
            k => return Err(WireError::Kind(k)),
        };
        Ok(DatagramHeader {
            kind,
            cookie: u64_at(buf, 8),
            seq: u64_at(buf, 16),
            stamp: u64_at(buf, 24),
        })
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

/// A fresh nonzero test cookie. Not a secret: it only keeps strays and stale datagrams of an
/// earlier test out of the figures, so std's randomly keyed hasher is random enough.
pub fn new_cookie() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preamble_round_trips_and_rejects_strangers() {
        let p = Preamble {
            kind: StreamKind::TcpData,
            cookie: 0xdead_beef_0123_4567,
        };
        assert_eq!(Preamble::decode(&p.encode()), Ok(p));
        let mut http = [0u8; Preamble::LEN];
        http.copy_from_slice(b"GET / HTTP/1.1");
        assert_eq!(Preamble::decode(&http), Err(WireError::Magic));
        let mut old = p.encode();
        old[4] = 0;
        assert_eq!(Preamble::decode(&old), Err(WireError::Version(0)));
    }

    #[test]
    fn datagram_header_round_trips() {
        let h = DatagramHeader {
            kind: DatagramKind::MtuAck,
            cookie: 7,
            seq: u64::MAX - 1,
            stamp: 1_234_567_890,
        };
        let mut buf = [0xffu8; 40];
        h.write(&mut buf);
        assert_eq!(DatagramHeader::read(&buf), Ok(h));
        assert_eq!(DatagramHeader::read(&buf[..31]), Err(WireError::Short(31)));
    }

    #[test]
    fn cookies_differ() {
        assert_ne!(new_cookie(), new_cookie());
        assert_ne!(new_cookie(), 0);
    }
}
