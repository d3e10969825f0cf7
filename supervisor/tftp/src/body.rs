//! The body of one transfer, and the slot it occupies while it runs.
//!
//! [`Slots`] bounds concurrent transfers (`tftp.max_transfers`); a [`Slot`]
//! is released when the transfer's [`Body`] is dropped, whether the
//! transfer finished, failed or the server shut down. File bodies are read
//! on the `blocking` thread pool with a bounded read-ahead, so a cold disk
//! never stalls the server's packet loop; every byte handed to the protocol
//! is counted.

use std::fs::File;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};

use blocking::Unblock;
use futures_lite::AsyncRead;
use futures_lite::io::Cursor;

use crate::content::Content;

/// Read-ahead per file transfer (bytes buffered between disk and network).
const READ_AHEAD: usize = 256 * 1024;

/// The transfer slots of one server.
#[derive(Debug)]
pub struct Slots {
    active: AtomicU32,
    max: u32,
}

impl Slots {
    pub fn new(max: u32) -> Arc<Self> {
        Arc::new(Self {
            active: AtomicU32::new(0),
            max: max.max(1),
        })
    }

    pub fn max(&self) -> u32 {
        self.max
    }

    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// Takes a slot, or `None` when all are in use.
    pub fn try_take(self: &Arc<Self>) -> Option<Slot> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(self)))
    }
}

/// One running transfer; frees its slot on drop.
#[derive(Debug)]
pub struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

enum Source {
    File(Unblock<File>),
    Memory(Cursor<Vec<u8>>),
}

/// What async-tftp reads a transfer from.
pub struct Body {
    source: Source,
    bytes: Arc<AtomicU64>,
    _slot: Slot,
}

impl Body {
    pub fn new(content: Content, slot: Slot, bytes: Arc<AtomicU64>) -> Self {
        let source = match content {
            Content::File { file, .. } => Source::File(Unblock::with_capacity(READ_AHEAD, file)),
            Content::Memory(data) => Source::Memory(Cursor::new(data)),
        };
        Self {
            source,
            bytes,
            _slot: slot,
        }
    }
}

impl AsyncRead for Body {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.source {
            Source::File(f) => Pin::new(f).poll_read(cx, buf),
            Source::Memory(m) => Pin::new(m).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(n)) = &polled {
            this.bytes.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::AsyncReadExt;

    #[test]
    fn slots_are_bounded_and_released() {
        let slots = Slots::new(2);
        let a = slots.try_take().unwrap();
        let _b = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        drop(a);
        assert_eq!(slots.active(), 1);
        assert!(slots.try_take().is_some());
    }

    #[test]
    fn bodies_count_bytes_and_free_their_slot() {
        let slots = Slots::new(1);
        let bytes = Arc::new(AtomicU64::new(0));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![7u8; 300_000]).unwrap();
        let file = File::open(dir.path().join("f")).unwrap();
        let content = Content::File {
            file,
            size: 300_000,
        };
        let mut body = Body::new(content, slots.try_take().unwrap(), bytes.clone());
        let mut out = Vec::new();
        futures_lite::future::block_on(body.read_to_end(&mut out)).unwrap();
        assert_eq!(out.len(), 300_000);
        drop(body);
        let mut body = Body::new(
            Content::Memory(b"abc".to_vec()),
            slots.try_take().unwrap(),
            bytes.clone(),
        );
        futures_lite::future::block_on(body.read_to_end(&mut out)).unwrap();
        assert_eq!(bytes.load(Ordering::Relaxed), 300_003);
        assert!(slots.try_take().is_none());
        drop(body);
        assert_eq!(slots.active(), 0);
    }
}
