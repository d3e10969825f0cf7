//! Caller credentials (AUTH_SYS), root squashing, and running a file
//! system operation *as* the caller.
//!
//! bramble runs as root. Rather than re-implementing the kernel's
//! permission rules, every operation on a client's behalf runs on a worker
//! thread whose file-system uid/gid and supplementary groups are switched
//! to the caller's for the duration of the call ([`Identity::assume`]): the
//! kernel then applies owner/group/other bits, ACLs, sticky directories,
//! setgid inheritance, suid clearing on write and chown rules exactly as
//! for a local process, and new files are owned by the caller. The guard
//! restores root when dropped, even on panic.

use std::io;

use crate::sys;

/// The anonymous identity root is squashed to.
pub const NOBODY: u32 = 65534;

/// Who is calling, as claimed by AUTH_SYS (or anonymous for AUTH_NULL).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl Identity {
    /// The identity of an AUTH_NULL caller.
    pub fn anonymous() -> Self {
        Self {
            uid: NOBODY,
            gid: NOBODY,
            groups: Vec::new(),
        }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Maps uid 0 and gid 0 (also among the groups) to nobody.
    pub fn squashed(&self) -> Self {
        let map = |id: u32| if id == 0 { NOBODY } else { id };
        Self {
            uid: map(self.uid),
            gid: map(self.gid),
            groups: self.groups.iter().map(|g| map(*g)).collect(),
        }
    }

    /// True when `gid` is the primary or a supplementary group.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// Switches this thread's file-system credentials to this identity
    /// until the guard is dropped.
    pub fn assume(&self) -> io::Result<CredGuard> {
        sys::setgroups_thread(&self.groups)?;
        sys::setfsgid(self.gid);
        sys::setfsuid(self.uid);
        let guard = CredGuard;
        // setfs*id return the previous value: calling again confirms the switch.
        if sys::setfsuid(self.uid) != self.uid || sys::setfsgid(self.gid) != self.gid {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "cannot switch file-system credentials (is bramble running as root?)",
            ));
        }
        Ok(guard)
    }
}

/// Restores root file-system credentials when dropped.
#[must_use]
pub struct CredGuard;

impl Drop for CredGuard {
    fn drop(&mut self) {
        sys::setfsuid(0);
        sys::setfsgid(0);
        let _ = sys::setgroups_thread(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squash_maps_root_and_group_zero() {
        let id = Identity {
            uid: 0,
            gid: 0,
            groups: vec![0, 5],
        };
        let s = id.squashed();
        assert_eq!((s.uid, s.gid), (NOBODY, NOBODY));
        assert_eq!(s.groups, vec![NOBODY, 5]);
        let user = Identity {
            uid: 1000,
            gid: 100,
            groups: vec![27],
        };
        assert_eq!(user.squashed(), user);
        assert!(user.in_group(27) && user.in_group(100) && !user.in_group(0));
    }
}
