//! bramble-dhcp: the DHCP service that boots registered Raspberry Pis and
//! PCs and never answers strangers.
//!
//! The caller [`bind`]s the sockets (port 67 and the PXE boot server port
//! 4011) and hands them to [`run`], which serves until the shutdown token
//! fires. Three modes (`dhcp.mode`): **proxy** (boot information only,
//! next to the school's own DHCP server), **standalone** (addresses from
//! `dhcp.range` as well, refused when another DHCP server answers a probe)
//! and **off**. Unregistered PXE clients and Pis are recorded as
//! discovered and get no reply.
//!
//! - [`packet`]: parsing requests and encoding replies (dhcproto codec).
//! - [`handler`]: the pure decision `request -> reply?`, rate limit, counters.
//! - [`proxy`], [`standalone`]: the per-mode answers; [`pool`]: address choice.
//! - [`pxe`]: option 43 and boot files; [`pi`]: Pi MAC prefixes and option 97.
//! - [`net`]: sockets with IP_PKTINFO/SO_BINDTODEVICE; [`server`]: the loops.
//! - [`probe`]: looking for another DHCP server.

pub mod handler;
pub mod net;
pub mod packet;
pub mod pi;
pub mod pool;
pub mod probe;
pub mod proxy;
pub mod pxe;
pub mod ratelimit;
pub mod server;
pub mod standalone;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bramble_core::clients::Registry;
use bramble_core::leases::Leases;
use bramble_core::settings::{DhcpMode, DhcpSettings};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

pub use handler::{Now, Outcome, Port, Received, State, handle, process};
pub use probe::probe_other_server;

/// What the DHCP service shares with the rest of bramble.
pub struct Context {
    pub settings: DhcpSettings,
    pub registry: Registry,
    pub leases: Leases,
    pub status: bramble_core::Status,
}

/// Why the DHCP service stopped.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error(
        "another DHCP server answers on {interface} at {server}: refusing to run in standalone mode \
         (use dhcp.mode = \"proxy\" next to it, or set dhcp.force_standalone = true)"
    )]
    OtherServer { server: Ipv4Addr, interface: String },
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// The bound port 67 and port 4011 sockets.
pub struct Sockets {
    dhcp: UdpSocket,
    proxy: UdpSocket,
}

impl Sockets {
    /// Local addresses of the DHCP and the boot server socket.
    pub fn local_addrs(&self) -> std::io::Result<(SocketAddr, SocketAddr)> {
        Ok((self.dhcp.local_addr()?, self.proxy.local_addr()?))
    }
}

/// Binds `dhcp.listen` and `dhcp.proxy_listen` (SO_REUSEADDR, SO_BROADCAST,
/// SO_BINDTODEVICE to `dhcp.interface` if set, IP_PKTINFO).
pub async fn bind(settings: &DhcpSettings) -> std::io::Result<Sockets> {
    let interface = settings.interface.as_deref();
    Ok(Sockets {
        dhcp: net::udp_socket(settings.listen, interface)?,
        proxy: net::udp_socket(settings.proxy_listen, interface)?,
    })
}

/// Serves until `shutdown`. In standalone mode it first probes for another
/// DHCP server (unless `dhcp.force_standalone`) and fails, naming it, if
/// one answers.
pub async fn run(
    sockets: Sockets,
    ctx: Context,
    shutdown: CancellationToken,
) -> Result<(), DhcpError> {
    let settings = &ctx.settings;
    if settings.mode == DhcpMode::Off {
        info!("dhcp.mode is off: not serving");
        shutdown.cancelled().await;
        return Ok(());
    }
    if settings.mode == DhcpMode::Standalone && !settings.force_standalone {
        check_no_other_server(settings).await?;
    }
    let interface = settings
        .interface
        .as_deref()
        .and_then(net::interface_address);
    let state = Arc::new(State::new(
        ctx.settings.clone(),
        ctx.registry,
        ctx.leases,
        &ctx.status,
        interface,
    ));
    info!(
        mode = ?state.settings.mode,
        listen = %state.settings.listen,
        server_ip = ?state.server_ip,
        "DHCP serving"
    );
    let dhcp = server::serve(sockets.dhcp, Port::Dhcp, state.clone(), shutdown.clone());
    let proxy = server::serve(sockets.proxy, Port::Proxy, state, shutdown);
    tokio::try_join!(dhcp, proxy)?;
    Ok(())
}

async fn check_no_other_server(settings: &DhcpSettings) -> Result<(), DhcpError> {
    let interface = settings.interface.as_deref();
    let found = probe_other_server(interface, settings.listen.port(), settings.probe_timeout).await;
    match found {
        Some(server) => {
            let err = DhcpError::OtherServer {
                server,
                interface: interface.unwrap_or("the network").to_string(),
            };
            error!("{err}");
            Err(err)
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
