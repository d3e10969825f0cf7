//! The body of one transfer, and the slot it occupies while it runs.
//!
//! [`Slots`] bounds concurrent transfers (`tftp.max_transfers`); a [`Slot`]
//! is released when the transfer's [`Body`] is dropped, whether the
//! transfer finished, failed or the server shut down. File bodies are read
//! on the `blocking` thread pool in chunks, the next chunk always in flight
//! while the current one is sent ([`ReadAhead`]): a cold disk never stalls
//! the server's packet loop, and there is one thread hop per chunk rather
//! than per block. Every byte handed to the protocol is counted.

use std::fs::File;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};

use blocking::Task;
use futures_lite::io::Cursor;
use futures_lite::{AsyncRead, Future};

use crate::content::Content;

/// Bytes read from disk at a time; two chunks per transfer at most in memory.
const CHUNK: usize = 64 * 1024;

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

/// A file read in chunks on the blocking pool, one chunk ahead.
pub struct ReadAhead {
    current: Vec<u8>,
    pos: usize,
    /// The next chunk being read (with the file handed back); `None` at end.
    next: Option<Task<(File, io::Result<Vec<u8>>)>>,
}

impl ReadAhead {
    pub fn new(file: File) -> Self {
        Self {
            current: Vec::new(),
            pos: 0,
            next: Some(read_chunk(file)),
        }
    }
}

fn read_chunk(mut file: File) -> Task<(File, io::Result<Vec<u8>>)> {
    blocking::unblock(move || {
        let mut chunk = vec![0u8; CHUNK];
        let result = read_full(&mut file, &mut chunk).map(|n| {
            chunk.truncate(n);
            chunk
        });
        (file, result)
    })
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    use std::io::Read;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl AsyncRead for ReadAhead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            if this.pos < this.current.len() {
                let n = buf.len().min(this.current.len() - this.pos);
                buf[..n].copy_from_slice(&this.current[this.pos..this.pos + n]);
                this.pos += n;
                return Poll::Ready(Ok(n));
            }
            let Some(task) = this.next.as_mut() else {
                return Poll::Ready(Ok(0));
            };
            let (file, result) = futures_lite::ready!(Pin::new(task).poll(cx));
            this.next = None;
            let chunk = result?;
            if chunk.len() == CHUNK {
                this.next = Some(read_chunk(file));
            }
            (this.current, this.pos) = (chunk, 0);
        }
    }
}

enum Source {
    File(ReadAhead),
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
            Content::File { file, .. } => Source::File(ReadAhead::new(file)),
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
    fn read_ahead_handles_exact_chunk_multiples_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 1, CHUNK, 2 * CHUNK, 2 * CHUNK + 1] {
            let data: Vec<u8> = (0..len).map(|i| (i % 7) as u8).collect();
            std::fs::write(dir.path().join("f"), &data).unwrap();
            let mut reader = ReadAhead::new(File::open(dir.path().join("f")).unwrap());
            let mut out = Vec::new();
            let mut small = [0u8; 1000];
            futures_lite::future::block_on(async {
                loop {
                    let n = reader.read(&mut small).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&small[..n]);
                }
            });
            assert_eq!(out, data, "length {len}");
        }
    }

    #[test]
    fn bodies_count_bytes_and_free_their_slot() {
        let slots = Slots::new(1);
        let bytes = Arc::new(AtomicU64::new(0));
        let dir = tempfile::tempdir().unwrap();
        let pattern: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("f"), &pattern).unwrap();
        let file = File::open(dir.path().join("f")).unwrap();
        let content = Content::File {
            file,
            size: 300_000,
        };
        let mut body = Body::new(content, slots.try_take().unwrap(), bytes.clone());
        let mut out = Vec::new();
        futures_lite::future::block_on(body.read_to_end(&mut out)).unwrap();
        assert_eq!(out, pattern);
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
