//! The socket loops around the pure handler: receive, [`process`], send,
//! until shutdown.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::DhcpError;
use crate::handler::{Now, Port, Received, State, process};
use crate::net::{self, Meta};
use crate::packet::{Destination, Reply};

/// Largest datagram we read; longer ones are counted as malformed.
const MAX_PACKET: usize = 4096;

/// Serves one socket until `shutdown`.
pub async fn serve(
    sock: UdpSocket,
    port: Port,
    state: Arc<State>,
    shutdown: CancellationToken,
) -> Result<(), DhcpError> {
    let mut buf = vec![0u8; MAX_PACKET];
    loop {
        let meta = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = net::recv(&sock, &mut buf) => match r {
                Ok(meta) => meta,
                Err(e) => {
                    warn!(?port, "receive failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if meta.truncated {
            bramble_core::status::bump(&state.counters.malformed);
            debug!(source = %meta.source, "dropping oversized packet");
            continue;
        }
        let rx = Received {
            port,
            source: meta.source,
            local_ip: meta.local_ip,
        };
        let bytes = &buf[..meta.len];
        let reply = handle_blocking(&state, bytes, &rx);
        if let Some(reply) = reply {
            send_reply(&sock, &state, &reply, &meta).await;
        }
    }
}

/// Runs the handler, which may write state files, without stalling other
/// tasks of a multi-threaded runtime.
fn handle_blocking(state: &State, bytes: &[u8], rx: &Received) -> Option<Reply> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let multi = Handle::try_current()
        .map(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
        .unwrap_or(false);
    if multi {
        tokio::task::block_in_place(|| process(state, bytes, rx, Now::current()))
    } else {
        process(state, bytes, rx, Now::current())
    }
}

async fn send_reply(sock: &UdpSocket, state: &State, reply: &Reply, meta: &Meta) {
    let dest = match reply.destination {
        Destination::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, state.client_port()),
        Destination::Unicast(ip, port) => SocketAddrV4::new(ip, port),
        Destination::Relay(ip) => SocketAddrV4::new(ip, state.relay_port()),
    };
    let bytes = reply.encode();
    // The source address is the local one the request reached: a
    // configured server_ip need not be an address of this host.
    if let Err(e) = net::send(sock, &bytes, dest, meta.ifindex, meta.local_ip).await {
        bramble_core::status::bump(&state.counters.send_errors);
        debug!(%dest, "cannot send reply: {e}");
    }
}
