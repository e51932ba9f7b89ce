//! The secure layer as the simulator's per-node datagram path.

use std::{net::SocketAddr, time::Duration};

use super::SecureLayer;
use crate::sim::{Opened, Transport};

/// Seals every core datagram and opens every received one; dropped
/// datagrams are counted in [`SecureLayer::stats`].
impl Transport for SecureLayer {
    fn seal(
        &mut self,
        now: Duration,
        dst: SocketAddr,
        payload: Vec<u8>,
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        // The core's frames are at most `wire::MAX_DATAGRAM_LEN`, far below
        // `MAX_PLAINTEXT`; an oversized one would be dropped here.
        if let Ok(datagrams) = SecureLayer::seal(self, now, dst, &payload) {
            out.extend(datagrams.into_iter().map(|d| (d.dst, d.bytes)));
        }
    }

    fn open(
        &mut self,
        now: Duration,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) -> Option<Opened> {
        let opened = SecureLayer::open(self, now, from, datagram).ok()?;
        out.extend(opened.replies.into_iter().map(|d| (d.dst, d.bytes)));
        let payload = opened.plaintext?;
        Some(Opened {
            payload,
            sender_static: opened.remote_static,
        })
    }

    fn poll_timeout(&self) -> Option<Duration> {
        SecureLayer::poll_timeout(self)
    }

    fn handle_timeout(&mut self, now: Duration, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        out.extend(
            SecureLayer::handle_timeout(self, now)
                .into_iter()
                .map(|d| (d.dst, d.bytes)),
        );
    }
}
