//! The dump worker: a second netlink socket in the overlay's namespace, on a
//! thread of its own, so that the kernel fills the dumps of one reconcile on
//! two CPUs at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::Result;
use crate::handle::Handle;
use crate::transport::{RawReply, Request};

/// A job for the [`DumpWorker`]: dump requests and where to send the replies.
pub(super) type DumpJob = (
    Vec<Request>,
    tokio::sync::oneshot::Sender<Result<Vec<RawReply>>>,
);

/// A second netlink socket in the overlay's namespace, served by a thread of
/// its own, so that the kernel fills the dumps of a reconcile on two CPUs at
/// once (a socket runs one dump at a time, and the kernel fills a dump in
/// the context of the thread that reads it). The thread ends when the last
/// clone of the [`Overlay`](super::Overlay) is dropped.
#[derive(Debug)]
pub(super) struct DumpWorker {
    jobs: std::sync::mpsc::Sender<DumpJob>,
    ready: Arc<AtomicBool>,
}

impl DumpWorker {
    /// Start the worker for a handle bound to a namespace, without waiting
    /// for its socket: `None` when there is no namespace to open a second
    /// socket in or no thread could be spawned. Until the worker's socket is
    /// open (see [`DumpWorker::ready`]) dumps share the caller's socket, so
    /// a first reconcile never waits for the worker.
    pub(super) fn start(handle: &Handle, vxlan: u32) -> Option<DumpWorker> {
        let netns = handle.netns()?.clone();
        let (jobs, queue) = std::sync::mpsc::channel::<DumpJob>();
        let ready = Arc::new(AtomicBool::new(false));
        let ready_flag = ready.clone();
        std::thread::Builder::new()
            .name("overlay-dumps".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                else {
                    return;
                };
                let opened = {
                    let _enter = rt.enter();
                    netns.handle()
                };
                // Without a socket the queue is dropped and callers fall back
                // to their own socket.
                let Ok(second) = opened else {
                    return;
                };
                ready_flag.store(true, Ordering::Release);
                while let Ok((requests, reply)) = queue.recv() {
                    let replies = rt.block_on(second.exchange_raw(
                        "read overlay state",
                        || format!("on link index {vxlan}"),
                        requests,
                    ));
                    let _ = reply.send(replies);
                }
            })
            .ok()?;
        Some(DumpWorker { jobs, ready })
    }

    /// Start `n` workers for VXLAN device `vxlan` (none when the handle has
    /// no namespace).
    pub(super) fn start_pool(handle: &Handle, vxlan: u32, n: usize) -> Vec<DumpWorker> {
        (0..n)
            .filter_map(|_| DumpWorker::start(handle, vxlan))
            .collect()
    }

    /// Whether the worker's socket is open.
    pub(super) fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Queue dump requests; the replies arrive on the returned receiver.
    pub(super) fn submit(
        &self,
        requests: Vec<Request>,
    ) -> Option<tokio::sync::oneshot::Receiver<Result<Vec<RawReply>>>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs.send((requests, tx)).ok()?;
        Some(rx)
    }
}

/// Dump workers per overlay. With one, the FDB dump runs on the worker's
/// socket while the neighbour and route dumps run on the caller's. (A second
/// worker for the routes measured slower on two CPUs: three threads competing
/// for two cores.)
pub(super) const DUMP_WORKERS: usize = 1;

#[cfg(test)]
mod tests {

    use super::*;
    use crate::transport::FakeTransport;

    #[test]
    fn no_dump_worker_starts_for_a_handle_without_a_namespace() {
        let handle = Handle::with_transport(Arc::new(FakeTransport::new()));
        assert!(DumpWorker::start(&handle, 5).is_none());
        assert!(DumpWorker::start_pool(&handle, 5, DUMP_WORKERS).is_empty());
    }
}
