//! Proxy mode (PXE "ProxyDHCP"): boot information without addresses.
//!
//! The school's own DHCP server hands out addresses; bramble answers a
//! registered PXE client's DISCOVER with an offer whose yiaddr is 0.0.0.0,
//! carrying option 60 `PXEClient`, option 54/siaddr/option 66 = the server,
//! and the PXE vendor options. Requests on port 4011 (in either mode) get a
//! DHCPACK with the same boot options, unicast back to their source.

use dhcproto::v4::MessageType;

use crate::handler::{Ctx, Outcome, Silence};
use crate::packet::{Destination, Reply};
use crate::pxe::{self, Phase};

/// Port 67 in proxy mode: DISCOVER -> offer; REQUEST naming us -> ACK.
pub fn on_dhcp_port(ctx: &Ctx<'_>) -> Outcome {
    let req = ctx.req;
    if !req.is_pxe() {
        return Outcome::Silent(Silence::NotPxe);
    }
    let msg_type = match req.msg_type {
        MessageType::Discover => MessageType::Offer,
        MessageType::Request if req.server_id == Some(ctx.server_ip) => MessageType::Ack,
        _ => return Outcome::Silent(Silence::NotForUs),
    };
    let mut reply = Reply::to(req, msg_type, ctx.server_ip);
    pxe::add_boot_options(
        &mut reply,
        req,
        ctx.kind,
        &ctx.state.settings,
        Phase::Dhcp,
        false,
    );
    reply.destination = ctx.destination(false);
    Outcome::Reply(Box::new(reply))
}

/// Port 4011: REQUEST or INFORM from a PXE client -> ACK to its source.
pub fn on_boot_server_port(ctx: &Ctx<'_>) -> Outcome {
    let req = ctx.req;
    if !req.is_pxe() {
        return Outcome::Silent(Silence::NotPxe);
    }
    if !matches!(req.msg_type, MessageType::Request | MessageType::Inform) {
        return Outcome::Silent(Silence::NotForUs);
    }
    let mut reply = Reply::to(req, MessageType::Ack, ctx.server_ip);
    reply.header.set_ciaddr(req.ciaddr());
    let standalone = ctx.state.settings.mode == bramble_core::settings::DhcpMode::Standalone;
    pxe::add_boot_options(
        &mut reply,
        req,
        ctx.kind,
        &ctx.state.settings,
        Phase::ProxyAck,
        standalone,
    );
    let source = ctx.rx.source;
    reply.destination = if source.ip().is_unspecified() {
        Destination::Broadcast
    } else {
        Destination::Unicast(*source.ip(), source.port())
    };
    Outcome::Reply(Box::new(reply))
}
