//! The worker threads every file-system operation runs on.
//!
//! They are the server's own (not tokio's blocking pool) because each one
//! changes per-thread state: its file-system credentials for the duration
//! of a call ([`crate::creds`]) and, once at start, a private umask of 0 so
//! the modes clients ask for are applied exactly. Nothing else in the
//! process ever runs on them.

use std::io;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of worker threads fed from one queue.
pub struct Pool {
    tx: Sender<Job>,
}

impl Pool {
    /// Starts `threads` workers; they exit when the pool is dropped.
    pub fn new(threads: usize) -> io::Result<Self> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("nfs-worker-{i}"))
                .spawn(move || worker(&rx))?;
        }
        Ok(Self { tx })
    }

    /// Runs `f` on a worker and waits for its result. `None` if the pool
    /// is shutting down or the job panicked.
    pub async fn run<T, F>(&self, f: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(f());
        });
        // Unbounded queue: callers bound their own in-flight requests.
        self.tx.send(job).ok()?;
        result.await.ok()
    }
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    if let Err(e) = crate::sys::private_fs_with_zero_umask() {
        tracing::warn!(
            "nfs worker cannot get a private umask ({e}); modes are fixed up after create"
        );
    }
    loop {
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // A panicking job must not take the worker (or its credentials) down.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}
