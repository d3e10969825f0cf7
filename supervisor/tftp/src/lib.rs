//! bramble-tftp: the TFTP service. Each registered client gets the boot
//! files of the OS assigned to it, read-only, and nobody else gets anything.
//!
//! - [`path`]: which request names are acceptable at all (no `..`, absolute
//!   names, NUL or control characters, over-long names).
//! - [`identify`]: who is asking: a `<serial>/` or `<mac>/` prefix, or the
//!   source address through leases and the neighbour (ARP) table ([`bramble_core::neighbours`]).
//! - [`beneath`]: opening files strictly inside an OS's boot directory
//!   (`os/<name>/boot/firmware`, else `os/<name>/boot`), symlinks that
//!   leave it refused.
//! - [`generate`] and [`content`]: per-client `cmdline.txt` (NFS root on
//!   bramble), `config.txt` additions and iPXE scripts, made in memory on
//!   every request; no caching per client, so an OS reassignment applies at
//!   the client's next request.
//! - [`body`]: the transfer body and the `tftp.max_transfers` slots.
//! - [`handler`]: the async-tftp handler tying it together, with counters
//!   in [`bramble_core::Status`] (`tftp/requests`, `served`, `not_found`,
//!   `unknown_client`, `refused`, `busy`, `errors`, `bytes_sent`).
//!
//! The protocol (RFC 1350, options of RFC 2347/2348/2349/7440: blksize up
//! to 65464, tsize, timeout, windowsize) is async-tftp's. Its server and
//! every transfer run on one dedicated thread ([`run`]); file opens and
//! file reads run on the `blocking` pool.

pub mod beneath;
pub mod body;
pub mod content;
pub mod generate;
pub mod handler;
pub mod identify;
pub mod path;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use async_tftp::server::TftpServerBuilder;
use bramble_core::clients::Registry;
use bramble_core::leases::Leases;
use bramble_core::settings::TftpSettings;
use tokio_util::sync::CancellationToken;
use tracing::info;

use handler::BootHandler;

/// Retransmission timeout unless the client asks for another (RFC 2349).
const RETRANSMIT_TIMEOUT: Duration = Duration::from_secs(1);
/// Retransmissions of one block before a silent client is given up.
const MAX_RETRANSMITS: u32 = 6;
/// Largest RFC 7440 window granted (bounds memory per transfer).
const MAX_WINDOW: u16 = 32;

/// What the service needs from the rest of bramble.
#[derive(Clone)]
pub struct Context {
    pub settings: TftpSettings,
    pub registry: Registry,
    pub leases: Leases,
    pub status: bramble_core::Status,
    /// Address clients use for NFS (`dhcp.server_ip`); `None` = the local
    /// address the request arrived on.
    pub server_ip: Option<Ipv4Addr>,
}

/// Why the service stopped.
#[derive(Debug, thiserror::Error)]
pub enum TftpError {
    #[error("cannot use the TFTP socket: {0}")]
    Socket(#[source] io::Error),
    #[error("TFTP server failed: {0}")]
    Server(#[source] async_tftp::Error),
    #[error("the TFTP server thread ended without a result (panic)")]
    Crashed,
}

/// Binds `tftp.listen`.
pub async fn bind(settings: &TftpSettings) -> io::Result<UdpSocket> {
    UdpSocket::bind(settings.listen)
}

/// Serves TFTP on `socket` until `shutdown` is cancelled (or this future is
/// dropped). Transfers in flight are abandoned on shutdown; the socket is
/// closed before this returns, so the port can be bound again at once.
///
/// The protocol runs on a dedicated thread under `async_io::block_on`: that
/// thread polls the sockets itself instead of being woken by another
/// reactor thread for every packet, which lock-step TFTP feels directly.
pub async fn run(
    socket: UdpSocket,
    ctx: Context,
    shutdown: CancellationToken,
) -> Result<(), TftpError> {
    let local = socket.local_addr().map_err(TftpError::Socket)?;
    let max = ctx.settings.max_transfers;
    let stop = shutdown.child_token();
    let _stop_when_dropped = stop.clone().drop_guard();
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("tftp".into())
        .spawn(move || {
            let _ = done.send(async_io::block_on(serve(socket, ctx, local, stop)));
        })
        .map_err(TftpError::Socket)?;
    info!("tftp: serving boot files on {local} (at most {max} transfers at once)");
    finished.await.unwrap_or(Err(TftpError::Crashed))
}

/// The server itself, until `stop`.
async fn serve(
    socket: UdpSocket,
    ctx: Context,
    local: SocketAddr,
    stop: CancellationToken,
) -> Result<(), TftpError> {
    let server = TftpServerBuilder::with_handler(BootHandler::new(ctx, local))
        .std_socket(socket)
        .map_err(TftpError::Server)?
        .timeout(RETRANSMIT_TIMEOUT)
        .max_send_retries(MAX_RETRANSMITS)
        .window_size_limit(MAX_WINDOW)
        .build()
        .await
        .map_err(TftpError::Server)?;
    let stopped = async {
        stop.cancelled().await;
        Ok(())
    };
    let served = async { server.serve().await.map_err(TftpError::Server) };
    futures_lite::future::or(stopped, served).await
}
