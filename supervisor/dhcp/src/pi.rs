//! Recognising Raspberry Pis: MAC prefixes and the bootloader's option 97.
//!
//! The Pi 4/400/CM4 and Pi 5 EEPROM bootloader sends option 97 (client
//! machine identifier, RFC 4578: a type byte 0 and a 16-byte GUID) built as
//! FourCC `RPi4`/`RPi5` (the 32-bit value 0x34695052/0x35695052), board
//! revision, the low four bytes of the MAC and the 32-bit serial number.
//! On the wire the values are big-endian, so the GUID starts with `4iPR`
//! or `5iPR`; a byte-swapped `RPi4`/`RPi5` prefix is accepted as well. Older
//! firmware repeats the serial four times; that form carries no model.

use bramble_core::clients::Mac;

/// What option 97 says about a Pi.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiId {
    /// `RPi4` or `RPi5`.
    pub model: &'static str,
    /// Board revision code, e.g. 0x00c03111.
    pub revision: u32,
    /// 8 lowercase hex digits, as used in TFTP paths.
    pub serial: String,
}

/// Model label for Pis that do not send an `RPi4`/`RPi5` option 97.
pub const OLDER_PI: &str = "Pi 3 or older";

/// Decodes option 97 from a Pi 4/5 bootloader; `None` for anything else.
pub fn decode_option97(data: &[u8]) -> Option<PiId> {
    let guid: &[u8; 16] = match data.len() {
        17 if data[0] == 0 => data[1..].try_into().ok()?,
        16 => data.try_into().ok()?,
        _ => return None,
    };
    let word = |i: usize, big: bool| {
        let b = [guid[i], guid[i + 1], guid[i + 2], guid[i + 3]];
        if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let (model, big) = match &guid[..4] {
        b"4iPR" => ("RPi4", true),
        b"5iPR" => ("RPi5", true),
        b"RPi4" => ("RPi4", false),
        b"RPi5" => ("RPi5", false),
        _ => return None,
    };
    Some(PiId {
        model,
        revision: word(4, big),
        serial: format!("{:08x}", word(12, big)),
    })
}

/// Encodes option 97 the way a Pi 4/5 bootloader does (for tests and benches).
pub fn encode_option97(model: &str, revision: u32, mac: Mac, serial: u32) -> Vec<u8> {
    let fourcc: u32 = if model == "RPi5" {
        0x3569_5052
    } else {
        0x3469_5052
    };
    let mut v = vec![0u8];
    v.extend(fourcc.to_be_bytes());
    v.extend(revision.to_be_bytes());
    v.extend(&mac.0[2..]);
    v.extend(serial.to_be_bytes());
    v
}

/// True when the MAC starts with one of the configured Pi prefixes.
pub fn has_pi_prefix(mac: Mac, prefixes: &[[u8; 3]]) -> bool {
    prefixes.iter().any(|p| mac.0[..3] == p[..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pi4_and_pi5_guids() {
        let mac: Mac = "dc:a6:32:01:36:c2".parse().unwrap();
        let raw = encode_option97("RPi4", 0x00c0_3111, mac, 0x9ffe_fdef);
        assert_eq!(&raw[1..5], b"4iPR");
        assert_eq!(
            decode_option97(&raw),
            Some(PiId {
                model: "RPi4",
                revision: 0x00c0_3111,
                serial: "9ffefdef".into()
            })
        );
        let raw5 = encode_option97("RPi5", 0x00d0_4170, mac, 0x1234);
        let id = decode_option97(&raw5[1..]).unwrap();
        assert_eq!((id.model, id.serial.as_str()), ("RPi5", "00001234"));
    }

    #[test]
    fn accepts_byte_swapped_fourcc() {
        let mut guid = b"RPi4".to_vec();
        guid.extend(0x00c0_3111u32.to_le_bytes());
        guid.extend([0x32, 0x01, 0x36, 0xc2]);
        guid.extend(0xcafe_0001u32.to_le_bytes());
        let id = decode_option97(&guid).unwrap();
        assert_eq!(id.serial, "cafe0001");
        assert_eq!(id.revision, 0x00c0_3111);
    }

    #[test]
    fn ignores_other_guids() {
        assert_eq!(decode_option97(&[0; 17]), None);
        assert_eq!(decode_option97(&[1; 17]), None);
        assert_eq!(decode_option97(b"4iPR"), None);
        assert_eq!(decode_option97(&[]), None);
    }

    #[test]
    fn prefixes_match_the_first_three_bytes() {
        let mac: Mac = "b8:27:eb:00:00:01".parse().unwrap();
        assert!(has_pi_prefix(mac, &[[0xb8, 0x27, 0xeb]]));
        assert!(!has_pi_prefix(mac, &[[0xdc, 0xa6, 0x32]]));
    }
}
