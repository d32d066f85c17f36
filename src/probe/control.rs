//! The control connection: newline-delimited JSON messages, every read bounded in time.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// No legitimate control message comes near this; a peer sending more is not ours.
const MAX_LINE: u64 = 64 * 1024;

/// Client → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    Hello {
        version: u32,
    },
    Start {
        test: TestSpec,
    },
    /// The client finished its side of the current test.
    Done {
        sent_bytes: u64,
        sent_datagrams: u64,
    },
    Bye,
}

/// What the server must prepare for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TestSpec {
    Tcp {
        streams: u32,
        duration_ms: u64,
        omit_ms: u64,
        /// A receiving thread per stream instead of one for all.
        #[serde(default)]
        per_stream_threads: bool,
    },
    Udp {
        duration_ms: u64,
        datagram_size: usize,
    },
    Rr {
        count: u32,
    },
    Mtu,
    /// Connection rate: new connections for this long.
    Crr {
        duration_ms: u64,
    },
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    Welcome {
        version: u32,
    },
    Busy {
        message: String,
    },
    Ready {
        cookie: u64,
    },
    TcpDone {
        streams: u32,
        bytes: u64,
        seconds: f64,
        /// CPU seconds the server process used during the test.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpu_seconds: Option<f64>,
    },
    UdpDone {
        received: u64,
        bytes: u64,
        lost: u64,
        loss_fraction: f64,
        out_of_order: u64,
        duplicates: u64,
        jitter_ms: f64,
        seconds: f64,
    },
    RrDone {
        transactions: u64,
    },
    MtuDone {
        probes: u64,
        largest: u64,
    },
    /// Connect/request/response/close transactions the server answered.
    CrrDone {
        transactions: u64,
    },
    /// The server could not run the test; the session stays usable.
    Error {
        message: String,
    },
    /// Answer to the client's `bye`: the server is free for the next client.
    Bye,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no message within {0:.1} s")]
    Timeout(f64),
    #[error("the peer closed the control connection")]
    Closed,
    #[error("unreadable control message: {0}")]
    Malformed(String),
    #[error("control connection: {0}")]
    Io(#[from] std::io::Error),
}

/// One end of a control connection.
pub struct Control {
    stream: BufReader<TcpStream>,
    line: String,
}

impl Control {
    /// Wraps a connection whose preamble has already been exchanged.
    pub fn new(stream: TcpStream) -> Self {
        Control {
            stream: BufReader::new(stream),
            line: String::new(),
        }
    }

    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), ControlError> {
        let mut line =
            serde_json::to_vec(msg).map_err(|e| ControlError::Malformed(e.to_string()))?;
        line.push(b'\n');
        let w = self.stream.get_mut();
        w.write_all(&line).await?;
        w.flush().await?;
        Ok(())
    }

    /// The next message, waiting until `deadline` at most.
    pub async fn recv<T: DeserializeOwned>(
        &mut self,
        deadline: Instant,
    ) -> Result<T, ControlError> {
        self.line.clear();
        let wait = deadline.saturating_duration_since(Instant::now());
        let mut limited = (&mut self.stream).take(MAX_LINE);
        let read = limited.read_line(&mut self.line);
        let n = match tokio::time::timeout_at(deadline, read).await {
            Ok(r) => r?,
            Err(_) => return Err(ControlError::Timeout(wait.as_secs_f64())),
        };
        if n == 0 {
            return Err(ControlError::Closed);
        }
        if !self.line.ends_with('\n') {
            return Err(ControlError::Malformed(format!(
                "line longer than {MAX_LINE} bytes or cut short"
            )));
        }
        serde_json::from_str(self.line.trim_end())
            .map_err(|e| ControlError::Malformed(format!("{e}: {}", preview(&self.line))))
    }

    /// Like [`Self::recv`] with a relative bound.
    pub async fn recv_within<T: DeserializeOwned>(
        &mut self,
        wait: Duration,
    ) -> Result<T, ControlError> {
        self.recv(Instant::now() + wait).await
    }
}

fn preview(s: &str) -> String {
    s.trim_end().chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_a_stable_shape() {
        let m = ClientMsg::Start {
            test: TestSpec::Udp {
                duration_ms: 5000,
                datagram_size: 1472,
            },
        };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(
            s,
            r#"{"type":"start","test":{"kind":"udp","duration_ms":5000,"datagram_size":1472}}"#
        );
        assert_eq!(serde_json::from_str::<ClientMsg>(&s).unwrap(), m);
        let r: ServerMsg = serde_json::from_str(r#"{"type":"ready","cookie":5}"#).unwrap();
        assert_eq!(r, ServerMsg::Ready { cookie: 5 });
    }

    #[tokio::test]
    async fn recv_is_bounded_and_rejects_garbage() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let client = tokio::spawn(async move { TcpStream::connect(addr).await.unwrap() });
        let (server, _) = l.accept().await.unwrap();
        let mut peer = client.await.unwrap();
        let mut ctl = Control::new(server);

        let t0 = std::time::Instant::now();
        let r = ctl
            .recv_within::<ClientMsg>(Duration::from_millis(200))
            .await;
        assert!(matches!(r, Err(ControlError::Timeout(_))), "{r:?}");
        assert!(t0.elapsed() < Duration::from_secs(20));

        peer.write_all(b"{\"type\":\"nonsense\"}\n").await.unwrap();
        let r = ctl.recv_within::<ClientMsg>(Duration::from_secs(2)).await;
        assert!(matches!(r, Err(ControlError::Malformed(_))), "{r:?}");

        peer.write_all(b"{\"type\":\"bye\"}\n").await.unwrap();
        let r = ctl.recv_within::<ClientMsg>(Duration::from_secs(2)).await;
        assert_eq!(r.unwrap(), ClientMsg::Bye);

        drop(peer);
        let r = ctl.recv_within::<ClientMsg>(Duration::from_secs(2)).await;
        assert!(matches!(r, Err(ControlError::Closed)), "{r:?}");
    }
}
