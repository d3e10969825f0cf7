//! Test helper: rewrites one state file through bramble's atomic writer in
//! a tight loop until killed. Each version carries its own length and
//! checksum so a reader can tell a whole file from a torn one.

use std::path::PathBuf;

fn main() {
    let path = PathBuf::from(std::env::args().nth(1).expect("usage: atomic_writer FILE"));
    for generation in 0u64.. {
        let len = 64 * 1024 + (generation as usize * 7919) % (192 * 1024);
        let payload: String = (0..len)
            .map(|i| (b'a' + ((i as u64 + generation) % 26) as u8) as char)
            .collect();
        let doc = serde_json::json!({
            "generation": generation,
            "len": len,
            "sum": checksum(&payload),
            "payload": payload,
        });
        bramble_core::atomic::write_json(&path, &doc).expect("write");
    }
}

/// The same checksum the test computes.
pub fn checksum(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}
