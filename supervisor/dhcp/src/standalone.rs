//! Standalone mode: a complete DHCP server (RFC 2131) for registered
//! clients, with addresses from `dhcp.range`.
//!
//! DISCOVER -> OFFER (held in memory for a minute), REQUEST -> ACK or NAK
//! (selecting, init-reboot, renewing and rebinding), RELEASE and DECLINE
//! update the table, INFORM -> ACK without an address. A lease is written
//! to the volume (`Leases::put`) before its ACK leaves, so a restart never
//! hands an address out twice. A Pi boot ROM never sends a REQUEST, so its
//! offer is committed as a lease at once. PXE and iPXE clients get the
//! boot options as well.

use std::net::Ipv4Addr;

use bramble_core::leases::Lease;
use dhcproto::v4::{DhcpOption, MessageType};
use tracing::{info, warn};

use crate::handler::{Ctx, Outcome, PendingOffer, Silence};
use crate::packet::Reply;
use crate::pool::Taken;
use crate::pxe::{self, BootKind, Phase};

/// How long an offered address stays reserved for the client it was offered to.
const OFFER_HOLD_SECS: u64 = 60;
/// How long a declined address stays out of the pool.
const DECLINE_HOLD_SECS: u64 = 600;

pub fn handle(ctx: &Ctx<'_>) -> Outcome {
    match ctx.req.msg_type {
        MessageType::Discover => on_discover(ctx),
        MessageType::Request => on_request(ctx),
        MessageType::Release => on_release(ctx),
        MessageType::Decline => on_decline(ctx),
        MessageType::Inform => on_inform(ctx),
        _ => Outcome::Silent(Silence::NotForUs),
    }
}

fn taken(ctx: &Ctx<'_>) -> Taken {
    Taken::for_client(ctx.state, ctx.req.mac, ctx.server_ip, ctx.now.unix)
}

fn on_discover(ctx: &Ctx<'_>) -> Outcome {
    let mac = ctx.req.mac;
    let pending = ctx.state.offers().get(&mac).map(|o| o.ip);
    let leased = ctx.state.leases.by_mac(mac).map(|l| l.ip);
    let chosen = match ctx.client.fixed_ip {
        Some(fixed) => Some(fixed),
        None => taken(ctx).choose(ctx.client, &[pending, leased, ctx.req.requested_ip]),
    };
    let Some(ip) = chosen else {
        warn!(%mac, "no free address in dhcp.range");
        return Outcome::Silent(Silence::PoolExhausted);
    };
    hold_offer(ctx, ip);
    // A Pi boot ROM takes the offered address without ever sending a
    // REQUEST: the offer is all the lease it will ask for.
    let boot_rom = ctx.kind == BootKind::Pi && ctx.req.is_pxe();
    if boot_rom && let Err(e) = commit_lease(ctx, ip) {
        warn!(%mac, %ip, "cannot save lease, not offering: {e}");
        return Outcome::Silent(Silence::LeaseNotSaved);
    }
    Outcome::Reply(Box::new(address_reply(ctx, MessageType::Offer, ip)))
}

fn commit_lease(ctx: &Ctx<'_>, ip: Ipv4Addr) -> std::io::Result<()> {
    ctx.state.leases.put(Lease {
        mac: ctx.req.mac,
        ip,
        expires: ctx.now.unix + lease_secs(ctx) as u64,
        hostname: ctx.req.hostname.clone(),
    })
}

fn hold_offer(ctx: &Ctx<'_>, ip: Ipv4Addr) {
    let now = ctx.now.unix;
    let mut offers = ctx.state.offers();
    if offers.len() > 4096 {
        offers.retain(|_, o| o.expires > now);
    }
    offers.insert(
        ctx.req.mac,
        PendingOffer {
            ip,
            xid: ctx.req.xid(),
            expires: now + OFFER_HOLD_SECS,
        },
    );
}

/// The address a REQUEST asks for, by RFC 2131 4.3.2 state; `None` when
/// the client chose another server.
fn requested_address(ctx: &Ctx<'_>) -> Result<Option<Ipv4Addr>, Silence> {
    let req = ctx.req;
    let ciaddr = (!req.ciaddr().is_unspecified()).then_some(req.ciaddr());
    match req.server_id {
        Some(id) if id != ctx.server_ip => {
            ctx.state.offers().remove(&req.mac);
            Err(Silence::NotForUs)
        }
        // SELECTING: option 50 carries the offered address.
        Some(_) => Ok(req.requested_ip.or(ciaddr)),
        // INIT-REBOOT (option 50) or RENEWING/REBINDING (ciaddr).
        None => Ok(req.requested_ip.or(ciaddr)),
    }
}

fn on_request(ctx: &Ctx<'_>) -> Outcome {
    let ip = match requested_address(ctx) {
        Err(why) => return Outcome::Silent(why),
        Ok(None) => return nak(ctx),
        Ok(Some(ip)) => ip,
    };
    let acceptable = match ctx.client.fixed_ip {
        Some(fixed) => fixed == ip,
        None => taken(ctx).acceptable(ctx.client, ip),
    };
    if !acceptable {
        return nak(ctx);
    }
    let renewal = ctx.state.leases.by_mac(ctx.req.mac).map(|l| l.ip) == Some(ip);
    if let Err(e) = commit_lease(ctx, ip) {
        warn!(mac = %ctx.req.mac, %ip, "cannot save lease, not acknowledging: {e}");
        return Outcome::Silent(Silence::LeaseNotSaved);
    }
    ctx.state.offers().remove(&ctx.req.mac);
    if !renewal {
        info!(mac = %ctx.req.mac, %ip, "lease granted");
    }
    let mut reply = address_reply(ctx, MessageType::Ack, ip);
    reply.header.set_ciaddr(ctx.req.ciaddr());
    Outcome::Reply(Box::new(reply))
}

fn nak(ctx: &Ctx<'_>) -> Outcome {
    let mut reply = Reply::to(ctx.req, MessageType::Nak, ctx.server_ip);
    reply.destination = ctx.destination(true);
    Outcome::Reply(Box::new(reply))
}

fn on_release(ctx: &Ctx<'_>) -> Outcome {
    let mac = ctx.req.mac;
    if ctx.state.leases.by_mac(mac).map(|l| l.ip) == Some(ctx.req.ciaddr()) {
        match ctx.state.leases.remove(mac) {
            Ok(_) => info!(%mac, ip = %ctx.req.ciaddr(), "lease released"),
            Err(e) => warn!(%mac, "cannot save released lease: {e}"),
        }
    }
    Outcome::Silent(Silence::Released)
}

fn on_decline(ctx: &Ctx<'_>) -> Outcome {
    let mac = ctx.req.mac;
    if let Some(ip) = ctx.req.requested_ip {
        warn!(%mac, %ip, "client declined an address (in use by someone else?)");
        ctx.state
            .declined()
            .insert(ip, ctx.now.unix + DECLINE_HOLD_SECS);
        let held = ctx.state.leases.by_mac(mac).map(|l| l.ip) == Some(ip);
        if held && let Err(e) = ctx.state.leases.remove(mac) {
            warn!(%mac, "cannot save declined lease: {e}");
        }
        ctx.state.offers().remove(&mac);
    }
    Outcome::Silent(Silence::Declined)
}

fn on_inform(ctx: &Ctx<'_>) -> Outcome {
    let mut reply = Reply::to(ctx.req, MessageType::Ack, ctx.server_ip);
    reply.header.set_ciaddr(ctx.req.ciaddr());
    add_network_options(ctx, &mut reply);
    add_boot_if_wanted(ctx, &mut reply);
    reply.destination = ctx.destination(false);
    Outcome::Reply(Box::new(reply))
}

fn lease_secs(ctx: &Ctx<'_>) -> u32 {
    let t = ctx.state.settings.lease_time;
    u32::try_from(t.as_secs()).unwrap_or(u32::MAX)
}

/// An OFFER or ACK for `ip` with lease times, network options and boot options.
fn address_reply(ctx: &Ctx<'_>, msg_type: MessageType, ip: Ipv4Addr) -> Reply {
    let mut reply = Reply::to(ctx.req, msg_type, ctx.server_ip);
    reply.header.set_yiaddr(ip);
    let secs = lease_secs(ctx);
    reply.options.extend([
        DhcpOption::AddressLeaseTime(secs),
        DhcpOption::Renewal(secs / 2),
        DhcpOption::Rebinding((u64::from(secs) * 7 / 8) as u32),
    ]);
    add_network_options(ctx, &mut reply);
    add_boot_if_wanted(ctx, &mut reply);
    reply.destination = ctx.destination(false);
    reply
}

fn add_network_options(ctx: &Ctx<'_>, reply: &mut Reply) {
    let settings = &ctx.state.settings;
    reply
        .options
        .push(DhcpOption::SubnetMask(ctx.state.netmask));
    if let Some(router) = settings.router {
        reply.options.push(DhcpOption::Router(vec![router]));
    }
    if !settings.dns.is_empty() {
        reply
            .options
            .push(DhcpOption::DomainNameServer(settings.dns.clone()));
    }
}

fn add_boot_if_wanted(ctx: &Ctx<'_>, reply: &mut Reply) {
    if ctx.req.is_pxe() || ctx.req.is_ipxe() {
        pxe::add_boot_options(
            reply,
            ctx.req,
            ctx.kind,
            &ctx.state.settings,
            Phase::Dhcp,
            true,
        );
    }
}
