//! Boot information: the PXE vendor options every Pi ROM matches on, the
//! boot file for PCs by architecture, and iPXE's script.
//!
//! Proxy offers, proxy ACKs on port 4011 and standalone offers all carry
//! the same boot options, built here by [`add_boot_options`].

use bramble_core::settings::DhcpSettings;
use dhcproto::v4::{DhcpOption, UnknownOption};

use crate::packet::{OPT_IPXE, Reply, Request};

/// Boot menu item text; the original Pi 3B ROM needs the trailing spaces.
pub const PI_BOOT_MENU: &[u8] = b"Raspberry Pi Boot   ";
/// Menu prompt sub-option 10: timeout 0, then the prompt text.
pub const MENU_PROMPT: &[u8] = b"\x00PXE";

/// PXE vendor options (option 43): discovery control 3, menu prompt, one
/// boot menu item of type 0, end.
pub fn pxe_vendor_options() -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    push_sub(&mut out, 6, &[3]);
    push_sub(&mut out, 10, MENU_PROMPT);
    let mut item = vec![0, 0, PI_BOOT_MENU.len() as u8];
    item.extend_from_slice(PI_BOOT_MENU);
    push_sub(&mut out, 9, &item);
    out.push(255);
    out
}

/// PXE vendor options for PCs: discovery control 8 (use the offered boot
/// file, no menu, no boot-server discovery), the echoed boot item on port
/// 4011, end.
pub fn pc_vendor_options(item: Option<&[u8]>) -> Vec<u8> {
    let mut out = vec![6, 1, 8];
    if let Some(item) = item {
        push_sub(&mut out, 71, item);
    }
    out.push(255);
    out
}

/// The proxy ACK on port 4011 echoes the boot item the client asked for.
fn pxe_vendor_options_with_item(item: Option<&[u8]>) -> Vec<u8> {
    let mut out = pxe_vendor_options();
    if let Some(item) = item {
        out.pop();
        push_sub(&mut out, 71, item);
        out.push(255);
    }
    out
}

fn push_sub(out: &mut Vec<u8>, code: u8, value: &[u8]) {
    let len = value.len().min(255);
    out.push(code);
    out.push(len as u8);
    out.extend_from_slice(&value[..len]);
}

/// The boot file a PC should load, by option 93 (RFC 4578 / IANA codes);
/// iPXE gets the script so it does not chain-load itself forever.
pub fn boot_file<'a>(req: &Request, settings: &'a DhcpSettings) -> Option<&'a str> {
    let file = if req.is_ipxe() {
        &settings.ipxe_script
    } else {
        match req.arch? {
            0 => &settings.boot_file_bios,
            7 | 9 => &settings.boot_file_efi_x64,
            11 => &settings.boot_file_efi_arm64,
            _ => return None,
        }
    };
    (!file.is_empty()).then_some(file.as_str())
}

/// What kind of boot client a request comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootKind {
    /// A Raspberry Pi ROM/EEPROM: PXE options only, no boot file.
    Pi,
    /// A PC PXE ROM or iPXE: PXE options and a boot file.
    Pc,
}

/// Where the reply is going, for the details that differ between modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// First answer on port 67 (offer, or ACK to a request there).
    Dhcp,
    /// Answer to a request on port 4011 (echoes the boot item).
    ProxyAck,
}

/// Adds siaddr, options 60, 66, 67, 43 (and 97 echoed, and 175 for iPXE in
/// standalone mode) for a PXE client.
pub fn add_boot_options(
    reply: &mut Reply,
    req: &Request,
    kind: BootKind,
    settings: &DhcpSettings,
    phase: Phase,
    standalone: bool,
) {
    let server = reply.server_ip;
    reply.header.set_siaddr(server);
    reply
        .options
        .push(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
    reply
        .options
        .push(DhcpOption::TFTPServerName(server.to_string().into_bytes()));
    if let (BootKind::Pc, Some(file)) = (kind, boot_file(req, settings)) {
        reply.header.set_sname_str(server.to_string());
        reply.header.set_fname_str(file);
        reply
            .options
            .push(DhcpOption::BootfileName(file.as_bytes().to_vec()));
    }
    let item = match phase {
        Phase::ProxyAck => req.boot_item.as_deref(),
        Phase::Dhcp => None,
    };
    let vendor = match kind {
        BootKind::Pi => pxe_vendor_options_with_item(item),
        // A PC must not see the Pi's boot menu: iPXE and PC PXE ROMs would
        // run a boot-server discovery for it and give up. Discovery control
        // bit 3 says "load the boot file named in this offer".
        BootKind::Pc => pc_vendor_options(item),
    };
    reply.options.push(DhcpOption::VendorExtensions(vendor));
    if let Some(id) = &req.machine_id {
        reply
            .options
            .push(DhcpOption::ClientMachineIdentifier(id.clone()));
    }
    if standalone && req.is_ipxe() {
        reply.options.push(ipxe_no_pxedhcp());
    }
}

/// iPXE option 175 with encapsulated 176 (`no-pxedhcp`) = 1: in standalone
/// mode there is no ProxyDHCP server to wait for.
pub fn ipxe_no_pxedhcp() -> DhcpOption {
    DhcpOption::Unknown(UnknownOption::new(OPT_IPXE.into(), vec![176, 1, 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_options_are_byte_exact() {
        let mut expected = vec![6, 1, 3, 10, 4, 0, b'P', b'X', b'E', 9, 23, 0, 0, 20];
        expected.extend_from_slice(b"Raspberry Pi Boot   ");
        expected.push(255);
        assert_eq!(pxe_vendor_options(), expected);
    }

    #[test]
    fn boot_item_is_echoed_before_end() {
        let v = pxe_vendor_options_with_item(Some(&[0, 0, 0, 0]));
        assert_eq!(&v[v.len() - 7..], &[71, 4, 0, 0, 0, 0, 255]);
    }
}
