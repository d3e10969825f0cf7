//! NFS file handles: what they hold and how they are authenticated.
//!
//! Layout (at most 64 bytes, the NFSv3 limit):
//!
//! ```text
//! 0     version (1)
//! 1     kernel handle type (1)
//! 2     kernel handle length n (1, <= 32)
//! 3     reserved, 0
//! 4..8  export id (big-endian u32)
//! 8..16 st_dev of the export root (big-endian u64)
//! 16..16+n  kernel file handle (name_to_handle_at: inode + generation)
//! then  16-byte keyed BLAKE3 MAC over everything before it
//! ```
//!
//! The kernel handle survives restarts of bramble (and of the machine), so
//! clients keep working. The MAC key comes from `secrets/nfs-handle-key`;
//! a handle with any byte changed, or one made up, fails the MAC and is
//! answered with NFS3ERR_BADHANDLE before it reaches the file system.

use nfs3_types::nfs3::nfsstat3;

use crate::sys::{KernelHandle, MAX_KERNEL_HANDLE};

const VERSION: u8 = 1;
const HEADER: usize = 16;
const MAC_LEN: usize = 16;

/// A handle's decoded, authenticated content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub export_id: u32,
    pub dev: u64,
    pub kernel: KernelHandle,
}

/// Encodes and checks handles with one secret key.
pub struct Codec {
    key: [u8; 32],
}

impl Codec {
    /// Derives the MAC key from the volume secret (any string).
    pub fn new(secret: &str) -> Self {
        Self {
            key: blake3::derive_key("bramble nfs file handle v1", secret.as_bytes()),
        }
    }

    fn mac(&self, data: &[u8]) -> [u8; MAC_LEN] {
        let h = blake3::keyed_hash(&self.key, data);
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&h.as_bytes()[..MAC_LEN]);
        out
    }

    /// Builds the handle bytes; `None` if the kernel handle is too large.
    pub fn encode(&self, export_id: u32, dev: u64, kernel: &KernelHandle) -> Option<Vec<u8>> {
        let n = kernel.bytes.len();
        let handle_type = u8::try_from(kernel.handle_type).ok()?;
        if n > MAX_KERNEL_HANDLE {
            return None;
        }
        let mut out = Vec::with_capacity(HEADER + n + MAC_LEN);
        out.extend_from_slice(&[VERSION, handle_type, n as u8, 0]);
        out.extend_from_slice(&export_id.to_be_bytes());
        out.extend_from_slice(&dev.to_be_bytes());
        out.extend_from_slice(&kernel.bytes);
        let mac = self.mac(&out);
        out.extend_from_slice(&mac);
        Some(out)
    }

    /// Checks the MAC and splits a handle; BADHANDLE for anything off.
    pub fn decode(&self, bytes: &[u8]) -> Result<Decoded, nfsstat3> {
        let bad = nfsstat3::NFS3ERR_BADHANDLE;
        if bytes.len() < HEADER + MAC_LEN || bytes[0] != VERSION || bytes[3] != 0 {
            return Err(bad);
        }
        let n = bytes[2] as usize;
        if n > MAX_KERNEL_HANDLE || bytes.len() != HEADER + n + MAC_LEN {
            return Err(bad);
        }
        let (body, mac) = bytes.split_at(HEADER + n);
        if !constant_time_eq(&self.mac(body), mac) {
            return Err(bad);
        }
        Ok(Decoded {
            export_id: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            dev: u64::from_be_bytes(bytes[8..16].try_into().map_err(|_| bad)?),
            kernel: KernelHandle {
                handle_type: i32::from(bytes[1]),
                bytes: bytes[HEADER..HEADER + n].to_vec(),
            },
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let c = Codec::new("secret");
        let k = KernelHandle {
            handle_type: 1,
            bytes: vec![1, 2, 3, 4, 5, 6, 7, 8],
        };
        let h = c.encode(42, 0x801, &k).unwrap();
        assert!(h.len() <= 64);
        let d = c.decode(&h).unwrap();
        assert_eq!((d.export_id, d.dev, d.kernel), (42, 0x801, k));
        for i in 0..h.len() {
            let mut t = h.clone();
            t[i] ^= 1;
            assert_eq!(c.decode(&t), Err(nfsstat3::NFS3ERR_BADHANDLE), "byte {i}");
        }
        assert!(Codec::new("other").decode(&h).is_err());
        assert!(c.decode(&[]).is_err());
        assert!(c.decode(&h[..20]).is_err());
    }
}
