//! Transports and dispatch: a task per TCP connection reading records and
//! running calls concurrently (pipelined, replies in completion order),
//! a UDP loop, and the routing of each call to its program by number.
//!
//! The NFS port serves NFS, MOUNT and (for clients that ask there) the
//! portmapper; the portmapper port serves only the portmapper. File-system
//! work runs on the [`Pool`]; replies to non-idempotent NFS calls go
//! through the duplicate-request cache.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bramble_core::status::bump;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::admission::Admission;
use crate::drc::{Drc, Key, Lookup};
use crate::mount::MountTable;
use crate::pool::Pool;
use crate::portmap::{self, Ports};
use crate::rpc::{self, Accept, Parsed, Reply};
use crate::vfs::Vfs;
use crate::{mount, nfs};

/// Calls one TCP connection may have in flight.
const PIPELINE: usize = 64;
/// Largest reply sent over UDP.
const UDP_MAX_REPLY: usize = 60 * 1024;

/// Which programs a socket offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// NFS + MOUNT (+ portmapper for convenience).
    Nfs,
    /// Portmapper only.
    Portmap,
}

/// Everything the handlers share.
pub struct State {
    pub vfs: Vfs,
    pub mounts: MountTable,
    pub admission: Admission,
    pub ports: Ports,
    pub drc: Drc,
    /// Write verifier: changes when the server restarts (RFC 1813 COMMIT).
    pub verifier: [u8; 8],
    pub pool: Pool,
    pub requests: Arc<AtomicU64>,
}

impl State {
    /// Answers one record; `None` means send nothing.
    pub async fn handle(
        self: &Arc<Self>,
        peer: SocketAddr,
        record: Vec<u8>,
        service: Service,
        own_port: u16,
        max_reply: usize,
    ) -> Option<Reply> {
        bump(&self.requests);
        let (xid, prog, proc_) = match rpc::parse(&record) {
            Parsed::Junk => {
                debug!(client = %peer, "dropping a record that is not an RPC call");
                return None;
            }
            Parsed::BadRpcVersion(xid) => return Some(Reply::rpc_mismatch(xid)),
            Parsed::Call(c) => (c.xid, c.prog, c.proc_),
        };
        match (service, prog) {
            (_, portmap::PROGRAM) => {
                with_call(&record, |c| portmap::handle(c, &self.ports, own_port))
            }
            (Service::Nfs, mount::PROGRAM) => {
                let state = self.clone();
                self.pool
                    .run(move || with_call(&record, |c| mount::handle(&state, c, peer.ip())))
                    .await
                    .flatten()
            }
            (Service::Nfs, nfs::PROGRAM) => self.nfs(peer, xid, proc_, record, max_reply).await,
            _ => Some(Reply::error(xid, Accept::ProgUnavail)),
        }
    }

    async fn nfs(
        self: &Arc<Self>,
        peer: SocketAddr,
        xid: u32,
        proc_: u32,
        record: Vec<u8>,
        max_reply: usize,
    ) -> Option<Reply> {
        let key = nfs::non_idempotent(proc_).then(|| Key::new(peer.ip(), xid, proc_, &record));
        if let Some(k) = &key {
            match self.drc.begin(k) {
                Lookup::New => {}
                Lookup::InProgress => return None,
                Lookup::Replay(r) => return Some(r),
            }
        }
        let state = self.clone();
        let reply = self
            .pool
            .run(move || with_call(&record, |c| nfs::handle(&state, c, peer.ip(), max_reply)))
            .await
            .flatten();
        if let Some(k) = &key {
            self.drc.finish(k, reply.as_ref());
        }
        reply
    }
}

/// Re-parses a record known to be a call and runs `f` on it.
fn with_call(record: &[u8], f: impl FnOnce(&rpc::Call<'_>) -> Reply) -> Option<Reply> {
    match rpc::parse(record) {
        Parsed::Call(c) => Some(f(&c)),
        _ => None,
    }
}

/// Accepts connections until shutdown; each gets its own task.
pub async fn serve_tcp(
    state: Arc<State>,
    listener: TcpListener,
    service: Service,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let own_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tracker.spawn(connection(
                    state.clone(),
                    stream,
                    peer,
                    service,
                    own_port,
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                warn!("nfs: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads records from one connection and answers them concurrently.
async fn connection(
    state: Arc<State>,
    stream: TcpStream,
    peer: SocketAddr,
    service: Service,
    own_port: u16,
    shutdown: CancellationToken,
) {
    debug!(client = %peer, ?service, "connection opened");
    let (rd, wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(256 * 1024, rd);
    let (tx, rx) = mpsc::channel::<Reply>(PIPELINE);
    let writer = tokio::spawn(write_replies(wr, rx));
    let slots = Arc::new(Semaphore::new(PIPELINE));
    loop {
        let record = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = rpc::read_record(&mut rd) => r,
        };
        let record = match record {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                debug!(client = %peer, "closing connection: {e}");
                break;
            }
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (state, tx) = (state.clone(), tx.clone());
        tokio::spawn(async move {
            let reply = state
                .handle(peer, record, service, own_port, rpc::MAX_RECORD)
                .await;
            if let Some(r) = reply {
                let _ = tx.send(r).await;
            }
            drop(slot);
        });
    }
    drop(tx);
    let _ = writer.await;
    debug!(client = %peer, "connection closed");
}

/// Writes replies as records, batching small ones into one flush.
async fn write_replies(wr: tokio::net::tcp::OwnedWriteHalf, mut rx: mpsc::Receiver<Reply>) {
    let mut w = BufWriter::with_capacity(64 * 1024, wr);
    while let Some(mut reply) = rx.recv().await {
        if w.write_all(reply.as_record()).await.is_err() {
            return;
        }
        while let Ok(mut more) = rx.try_recv() {
            if w.write_all(more.as_record()).await.is_err() {
                return;
            }
        }
        if w.flush().await.is_err() {
            return;
        }
    }
}

/// Answers datagrams until shutdown.
pub async fn serve_udp(
    state: Arc<State>,
    socket: UdpSocket,
    service: Service,
    shutdown: CancellationToken,
) {
    let own_port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 65536];
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        let (n, peer) = match received {
            Ok(r) => r,
            Err(e) => {
                debug!("nfs: udp receive failed: {e}");
                continue;
            }
        };
        let record = buf[..n].to_vec();
        let (state, socket) = (state.clone(), socket.clone());
        tokio::spawn(async move {
            if let Some(reply) = state
                .handle(peer, record, service, own_port, UDP_MAX_REPLY)
                .await
            {
                let _ = socket.send_to(reply.message(), peer).await;
            }
        });
    }
}
