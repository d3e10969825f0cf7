//! The duplicate-request cache: a retransmitted non-idempotent call
//! (CREATE, REMOVE, RENAME, ...) gets the reply of the first execution
//! instead of running twice (and answering, say, NFS3ERR_NOENT for a
//! REMOVE that succeeded). A duplicate that arrives while the original is
//! still running is dropped; the client will retransmit again.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use crate::rpc::Reply;

/// Identifies a call: client, xid, procedure and a digest of the arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub client: IpAddr,
    pub xid: u32,
    pub proc_: u32,
    pub digest: [u8; 8],
}

impl Key {
    pub fn new(client: IpAddr, xid: u32, proc_: u32, args: &[u8]) -> Self {
        let head = &args[..args.len().min(256)];
        let h = blake3::hash(head);
        let mut digest = [0u8; 8];
        digest.copy_from_slice(&h.as_bytes()[..8]);
        Self {
            client,
            xid,
            proc_,
            digest,
        }
    }
}

enum Slot {
    InProgress,
    Done(Reply),
}

/// What to do with a call.
pub enum Lookup {
    /// First time seen: run it, then [`Drc::finish`].
    New,
    /// Still running: drop this copy.
    InProgress,
    /// Already answered: send this again.
    Replay(Reply),
}

/// A bounded cache of recent non-idempotent calls.
pub struct Drc {
    inner: Mutex<(HashMap<Key, Slot>, VecDeque<Key>)>,
    capacity: usize,
}

impl Drc {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::default(),
            capacity,
        }
    }

    pub fn begin(&self, key: &Key) -> Lookup {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *guard;
        match map.get(key) {
            Some(Slot::InProgress) => return Lookup::InProgress,
            Some(Slot::Done(r)) => return Lookup::Replay(r.clone()),
            None => {}
        }
        while order.len() >= self.capacity {
            match order.pop_front() {
                Some(old) => {
                    map.remove(&old);
                }
                None => break,
            }
        }
        map.insert(key.clone(), Slot::InProgress);
        order.push_back(key.clone());
        Lookup::New
    }

    pub fn finish(&self, key: &Key, reply: Option<&Reply>) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match reply {
            Some(r) => {
                if let Some(slot) = guard.0.get_mut(key) {
                    *slot = Slot::Done(r.clone());
                }
            }
            None => {
                guard.0.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_finished_and_drops_running() {
        let d = Drc::new(2);
        let k = Key::new("10.0.0.1".parse().unwrap(), 9, 12, b"args");
        assert!(matches!(d.begin(&k), Lookup::New));
        assert!(matches!(d.begin(&k), Lookup::InProgress));
        d.finish(&k, Some(&Reply::success(9)));
        assert!(matches!(d.begin(&k), Lookup::Replay(_)));
        for xid in 10..13 {
            let k2 = Key::new("10.0.0.1".parse().unwrap(), xid, 12, b"args");
            assert!(matches!(d.begin(&k2), Lookup::New));
        }
        assert!(matches!(d.begin(&k), Lookup::New), "evicted after capacity");
    }
}
