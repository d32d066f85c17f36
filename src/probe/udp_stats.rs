//! Receiver-side UDP accounting as a pure state machine (fed arrivals, no sockets), so loss,
//! reordering, duplicates and jitter can be checked against synthetic arrival sequences.

/// Sequence numbers above this are treated as corrupt rather than grown into (the seen-bitmap
/// would need 32 MiB); 2^28 datagrams is far beyond any probe's duration.
const MAX_SEQ: u64 = 1 << 28;

#[derive(Debug, Default, Clone)]
pub struct UdpAccounting {
    /// One bit per sequence number seen, to tell duplicates from late arrivals.
    seen: Vec<u64>,
    highest: Option<u64>,
    received: u64,
    bytes: u64,
    duplicates: u64,
    out_of_order: u64,
    invalid: u64,
    /// Running RFC 3550 jitter estimate, nanoseconds.
    jitter_ns: f64,
    prev_transit: Option<i128>,
    first_arrival_ns: Option<u64>,
    last_arrival_ns: u64,
}

/// Totals after the test.
#[derive(Debug, Clone, PartialEq)]
pub struct UdpCounts {
    /// Distinct datagrams received.
    pub received: u64,
    pub bytes: u64,
    pub lost: u64,
    pub loss_fraction: f64,
    pub out_of_order: u64,
    pub duplicates: u64,
    pub jitter_ms: f64,
    /// First to last arrival.
    pub seconds: f64,
}

impl UdpAccounting {
    /// One datagram arrived. `sent_ns` is the sender's clock, `arrival_ns` the receiver's; the
    /// clocks need not agree, only their rates (their offset cancels in the jitter).
    pub fn on_arrival(&mut self, seq: u64, sent_ns: u64, arrival_ns: u64, bytes: usize) {
        if seq >= MAX_SEQ {
            self.invalid += 1;
            return;
        }
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.seen.len() <= word {
            // Grow geometrically so a steady stream costs amortised O(1).
            self.seen.resize((word + 1).max(self.seen.len() * 2), 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= 1 << bit;
        match self.highest {
            Some(h) if seq < h => self.out_of_order += 1,
            _ => self.highest = Some(seq),
        }
        self.received += 1;
        self.bytes += bytes as u64;
        self.first_arrival_ns.get_or_insert(arrival_ns);
        self.last_arrival_ns = self.last_arrival_ns.max(arrival_ns);

        // RFC 3550 A.8: D = difference of transit times of consecutive arrivals,
        // J += (|D| - J) / 16.
        let transit = i128::from(arrival_ns) - i128::from(sent_ns);
        if let Some(prev) = self.prev_transit {
            let d = (transit - prev).unsigned_abs() as f64;
            self.jitter_ns += (d - self.jitter_ns) / 16.0;
        }
        self.prev_transit = Some(transit);
    }

    /// Datagrams that were not ours or were corrupt.
    pub fn invalid(&self) -> u64 {
        self.invalid
    }

    /// Totals; `sent` is the sender's count, which also catches losses after the last arrival.
    pub fn counts(&self, sent: Option<u64>) -> UdpCounts {
        let implied = self.highest.map_or(0, |h| h + 1);
        let expected = sent.unwrap_or(implied).max(implied);
        let lost = expected.saturating_sub(self.received);
        let seconds = self
            .first_arrival_ns
            .map_or(0.0, |f| (self.last_arrival_ns - f) as f64 / 1e9);
        UdpCounts {
            received: self.received,
            bytes: self.bytes,
            lost,
            loss_fraction: if expected == 0 {
                0.0
            } else {
                lost as f64 / expected as f64
            },
            out_of_order: self.out_of_order,
            duplicates: self.duplicates,
            jitter_ms: self.jitter_ns / 1e6,
            seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arrivals 1 ms apart, each sent 1 ms apart with constant transit unless overridden.
    fn feed(acc: &mut UdpAccounting, seqs: &[u64]) {
        for (i, &s) in seqs.iter().enumerate() {
            acc.on_arrival(s, s * 1_000_000, 5_000_000 + i as u64 * 1_000_000, 100);
        }
    }

    #[test]
    fn in_order_no_loss() {
        let mut a = UdpAccounting::default();
        feed(&mut a, &[0, 1, 2, 3, 4]);
        let c = a.counts(Some(5));
        assert_eq!(
            (c.received, c.lost, c.out_of_order, c.duplicates),
            (5, 0, 0, 0)
        );
        assert_eq!(c.bytes, 500);
        assert_eq!(c.jitter_ms, 0.0);
        assert!((c.seconds - 0.004).abs() < 1e-12);
    }

    #[test]
    fn gaps_and_tail_losses_count() {
        let mut a = UdpAccounting::default();
        feed(&mut a, &[0, 1, 4, 5, 7]);
        // 2, 3, 6 missing in the middle; 8 and 9 sent but never arrived.
        let c = a.counts(Some(10));
        assert_eq!(c.received, 5);
        assert_eq!(c.lost, 5);
        assert!((c.loss_fraction - 0.5).abs() < 1e-12);
        // Without the sender's count only the gaps are visible.
        assert_eq!(a.counts(None).lost, 3);
    }

    #[test]
    fn reordering_is_not_loss() {
        let mut a = UdpAccounting::default();
        feed(&mut a, &[0, 2, 1, 3, 5, 4]);
        let c = a.counts(Some(6));
        assert_eq!((c.received, c.lost, c.out_of_order), (6, 0, 2));
    }

    #[test]
    fn duplicates_do_not_hide_losses() {
        let mut a = UdpAccounting::default();
        // 2 never arrives, 3 arrives twice, 1 arrives twice late.
        feed(&mut a, &[0, 1, 3, 3, 4, 1]);
        let c = a.counts(Some(5));
        assert_eq!(c.received, 4);
        assert_eq!(c.duplicates, 2);
        assert_eq!(c.lost, 1);
        assert_eq!(c.out_of_order, 0);
        assert_eq!(c.bytes, 400);
    }

    #[test]
    fn jitter_follows_rfc3550() {
        let mut a = UdpAccounting::default();
        // Sent every 10 ms; transit alternates 1 ms and 3 ms -> |D| = 2 ms each step.
        for i in 0..200u64 {
            let sent = i * 10_000_000;
            let transit = if i % 2 == 0 { 1_000_000 } else { 3_000_000 };
            a.on_arrival(i, sent, sent + transit, 1000);
        }
        let c = a.counts(Some(200));
        // J converges to |D| = 2 ms: after 199 steps J = 2 * (1 - (15/16)^199).
        let expect = 2.0 * (1.0 - (15.0f64 / 16.0).powi(199));
        assert!((c.jitter_ms - expect).abs() < 1e-9, "{}", c.jitter_ms);
    }

    #[test]
    fn jitter_ignores_clock_offset() {
        let mut a = UdpAccounting::default();
        let mut b = UdpAccounting::default();
        for i in 0..50u64 {
            let sent = i * 1_000_000;
            let arrive = sent + 500_000 + (i % 3) * 100_000;
            a.on_arrival(i, sent, arrive, 10);
            // Sender clock far ahead of the receiver's: negative "transit" must work too.
            b.on_arrival(i, sent + 10_000_000_000, arrive, 10);
        }
        assert!((a.counts(None).jitter_ms - b.counts(None).jitter_ms).abs() < 1e-12);
        assert!(a.counts(None).jitter_ms > 0.0);
    }

    #[test]
    fn absurd_sequence_numbers_are_rejected() {
        let mut a = UdpAccounting::default();
        a.on_arrival(u64::MAX, 0, 0, 10);
        assert_eq!(a.invalid(), 1);
        assert_eq!(a.counts(None).received, 0);
        assert_eq!(a.counts(None).lost, 0);
    }

    #[test]
    fn nothing_received_means_everything_lost() {
        let a = UdpAccounting::default();
        let c = a.counts(Some(42));
        assert_eq!((c.received, c.lost), (0, 42));
        assert_eq!(c.loss_fraction, 1.0);
        assert_eq!(c.seconds, 0.0);
    }
}
