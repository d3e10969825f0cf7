//! bramble-nfs: the userspace NFSv3 server of the appliance, with its
//! MOUNT protocol and a small portmapper.
//!
//! It exports every OS tree read-only as `/os/<name>`, and `/homes` and
//! `/shared` read-write with the caller's own permissions (root squashed),
//! to registered clients only. The binary calls [`bind`] then [`run`].
//!
//! Where things live:
//! - [`server`]: TCP/UDP transports, per-connection tasks, dispatch by
//!   program number, the duplicate-request cache ([`drc`]).
//! - [`rpc`] and [`xdr`]: ONC RPC framing and bounds-checked decoding.
//! - [`portmap`], [`mount`], [`nfs`]: the three programs.
//! - [`exports`], [`handle`], [`vfs`]: what is exported, handles with a
//!   keyed MAC, handle -> open object (with the open-file cache).
//! - [`creds`], [`pool`]: running each operation as the caller on the
//!   server's own worker threads; [`admission`]: which addresses may mount.
//! - [`attr`], [`error`], [`sys`]: attributes, error mapping, syscalls.

pub mod admission;
pub mod attr;
pub mod creds;
pub mod drc;
pub mod error;
pub mod exports;
pub mod handle;
pub mod mount;
pub mod nfs;
pub mod pool;
pub mod portmap;
pub mod rpc;
pub mod server;
pub mod sys;
pub mod vfs;
pub mod xdr;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bramble_core::clients::Registry;
use bramble_core::leases::Leases;
use bramble_core::settings::NfsSettings;
use bramble_core::{Status, Volume};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use error::NfsError;

use crate::server::{Service, State};

/// Worker threads for file-system operations.
const WORKERS: usize = 16;

/// What the service needs from the rest of bramble.
pub struct Context {
    pub settings: NfsSettings,
    pub volume: Volume,
    pub registry: Registry,
    pub leases: Leases,
    pub status: Status,
}

/// Bound sockets: NFS + MOUNT on `nfs.listen` (TCP, and UDP when the port
/// is free), the portmapper on `nfs.portmap_listen` when that port is free.
pub struct Sockets {
    nfs_tcp: TcpListener,
    nfs_udp: Option<UdpSocket>,
    portmap_tcp: Option<TcpListener>,
    portmap_udp: Option<UdpSocket>,
}

impl Sockets {
    /// Where NFS and MOUNT listen (TCP).
    pub fn nfs_addr(&self) -> io::Result<SocketAddr> {
        self.nfs_tcp.local_addr()
    }

    /// Where the portmapper listens (TCP), if it could bind.
    pub fn portmap_addr(&self) -> Option<SocketAddr> {
        self.portmap_tcp.as_ref().and_then(|l| l.local_addr().ok())
    }
}

/// Binds the sockets. Fails only if the NFS TCP port cannot be bound; a
/// taken portmapper port (a host rpcbind) is logged and skipped.
pub async fn bind(settings: &NfsSettings) -> io::Result<Sockets> {
    let nfs_tcp = TcpListener::bind(settings.listen).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("binding nfs.listen {}: {e}", settings.listen),
        )
    })?;
    let nfs_addr = nfs_tcp.local_addr()?;
    let nfs_udp = UdpSocket::bind(nfs_addr)
        .await
        .inspect_err(|e| warn!("nfs: no UDP on {nfs_addr} ({e}); serving TCP only"))
        .ok();
    let pm = settings.portmap_listen;
    let taken = |proto: &str, e: &io::Error| {
        warn!(
            "nfs: portmapper port {pm}/{proto} is not available ({e}); is a host rpcbind running? \
             NFS keeps serving on {nfs_addr}; clients must then name the port \
             (mount -o port={p},mountport={p}) or the host's rpcbind must map it",
            p = nfs_addr.port()
        )
    };
    let portmap_tcp = TcpListener::bind(pm)
        .await
        .inspect_err(|e| taken("tcp", e))
        .ok();
    let pm_udp_addr = portmap_tcp
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .unwrap_or(pm);
    let portmap_udp = UdpSocket::bind(pm_udp_addr)
        .await
        .inspect_err(|e| taken("udp", e))
        .ok();
    Ok(Sockets {
        nfs_tcp,
        nfs_udp,
        portmap_tcp,
        portmap_udp,
    })
}

/// Serves until `shutdown` is cancelled, then waits for open connections
/// to finish their current calls.
pub async fn run(
    sockets: Sockets,
    ctx: Context,
    shutdown: CancellationToken,
) -> Result<(), NfsError> {
    let state = Arc::new(build_state(&sockets, &ctx)?);
    info!(
        nfs = %sockets.nfs_addr().map_err(NfsError::Socket)?,
        portmap = ?sockets.portmap_addr(),
        udp = sockets.nfs_udp.is_some(),
        exports = ?state.vfs.exports.names(),
        allow_unregistered = ctx.settings.allow_unregistered,
        "nfs: serving"
    );
    let tracker = TaskTracker::new();
    let Sockets {
        nfs_tcp,
        nfs_udp,
        portmap_tcp,
        portmap_udp,
    } = sockets;
    let tcp = [
        (Some(nfs_tcp), Service::Nfs),
        (portmap_tcp, Service::Portmap),
    ];
    for (listener, service) in tcp {
        if let Some(l) = listener {
            tracker.spawn(server::serve_tcp(
                state.clone(),
                l,
                service,
                shutdown.clone(),
                tracker.clone(),
            ));
        }
    }
    for (socket, service) in [(nfs_udp, Service::Nfs), (portmap_udp, Service::Portmap)] {
        if let Some(s) = socket {
            tracker.spawn(server::serve_udp(
                state.clone(),
                s,
                service,
                shutdown.clone(),
            ));
        }
    }
    shutdown.cancelled().await;
    tracker.close();
    tracker.wait().await;
    info!("nfs: stopped");
    Ok(())
}

fn build_state(sockets: &Sockets, ctx: &Context) -> Result<State, NfsError> {
    let key = ctx
        .volume
        .secret("nfs-handle-key")
        .map_err(NfsError::HandleKey)?;
    let files = sys::raise_nofile_limit();
    let capacity = usize::try_from(files / 4).unwrap_or(4096).clamp(64, 16384);
    let exports = exports::Exports::new(ctx.volume.clone());
    let nfs_port = sockets.nfs_addr().map_err(NfsError::Socket)?.port();
    Ok(State {
        vfs: vfs::Vfs::new(exports, handle::Codec::new(&key), capacity),
        mounts: mount::MountTable::default(),
        admission: admission::Admission::new(
            ctx.settings.allow_unregistered,
            ctx.registry.clone(),
            ctx.leases.clone(),
        ),
        ports: portmap::Ports {
            nfs: nfs_port,
            udp: sockets.nfs_udp.is_some(),
        },
        drc: drc::Drc::new(4096),
        verifier: rand_verifier(),
        pool: pool::Pool::new(WORKERS).map_err(NfsError::Workers)?,
        requests: ctx.status.counter("nfs", "requests"),
    })
}

fn rand_verifier() -> [u8; 8] {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let h = blake3::hash(
        &[
            now.to_be_bytes().as_slice(),
            &std::process::id().to_be_bytes(),
        ]
        .concat(),
    );
    let mut v = [0u8; 8];
    v.copy_from_slice(&h.as_bytes()[..8]);
    v
}
