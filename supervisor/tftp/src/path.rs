//! Request names: which TFTP file names are acceptable at all.
//!
//! A name is split into plain components before anything touches the file
//! system. One leading `/` is dropped, as tftpd-hpa and dnsmasq do (GRUB
//! asks for `/<prefix>/grub.cfg`, the kernel and initrd with a leading slash):
//! names are always relative to the client's boot directory. `..` / `.` /
//! empty components (so `//etc`), control characters (NUL included),
//! backslashes and over-long names are refused here, so later stages only
//! ever see relative component lists.

/// Longest file name accepted (bytes); firmware names are far shorter.
pub const MAX_NAME_LEN: usize = 255;

/// Why a requested name is refused outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("empty file name")]
    Empty,
    #[error("file name longer than {MAX_NAME_LEN} bytes")]
    TooLong,
    #[error("file name `/` (the boot directory itself)")]
    Absolute,
    #[error("NUL, control character or backslash in file name")]
    BadCharacter,
    #[error("`..`, `.` or empty component in file name")]
    BadComponent,
}

/// Splits a requested name into its components, refusing anything that is
/// not a plain relative path.
pub fn split(name: &str) -> Result<Vec<&str>, Refusal> {
    if name.is_empty() {
        return Err(Refusal::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Refusal::TooLong);
    }
    // `/a` is `a` in the boot directory; `//a` keeps an empty component.
    let name = name.strip_prefix('/').unwrap_or(name);
    if name.is_empty() {
        return Err(Refusal::Absolute);
    }
    if name.chars().any(|c| c.is_control() || c == '\\') {
        return Err(Refusal::BadCharacter);
    }
    let parts: Vec<&str> = name.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(Refusal::BadComponent);
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_split() {
        assert_eq!(split("start4.elf").unwrap(), vec!["start4.elf"]);
        assert_eq!(
            split("1234abcd/overlays/vc4.dtbo").unwrap(),
            vec!["1234abcd", "overlays", "vc4.dtbo"]
        );
        assert_eq!(split("..hidden").unwrap(), vec!["..hidden"]);
        // GRUB's names: relative to the boot directory all the same.
        assert_eq!(
            split("/grub/arm64-efi/grub.cfg").unwrap(),
            vec!["grub", "arm64-efi", "grub.cfg"]
        );
        assert_eq!(split("/etc/passwd").unwrap(), vec!["etc", "passwd"]);
    }

    #[test]
    fn escapes_are_refused() {
        assert_eq!(split(""), Err(Refusal::Empty));
        assert_eq!(split("/"), Err(Refusal::Absolute));
        assert_eq!(split("//etc/passwd"), Err(Refusal::BadComponent));
        assert_eq!(split("/../etc/passwd"), Err(Refusal::BadComponent));
        assert_eq!(split("../etc/passwd"), Err(Refusal::BadComponent));
        assert_eq!(split("a/../../b"), Err(Refusal::BadComponent));
        assert_eq!(split("a//b"), Err(Refusal::BadComponent));
        assert_eq!(split("a/./b"), Err(Refusal::BadComponent));
        assert_eq!(split("a/"), Err(Refusal::BadComponent));
        assert_eq!(split("a\0b"), Err(Refusal::BadCharacter));
        assert_eq!(split("a\nb"), Err(Refusal::BadCharacter));
        assert_eq!(split("..\\..\\etc"), Err(Refusal::BadCharacter));
        assert_eq!(split(&"a".repeat(256)), Err(Refusal::TooLong));
        assert!(split(&"a".repeat(255)).is_ok());
    }
}
