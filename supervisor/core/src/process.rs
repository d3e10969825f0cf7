//! Child processes: the one place that spawns them and the one that reaps.
//!
//! [`Reaper`] spawns every child while holding the pid table lock and reaps
//! with `waitpid(-1)` under the same lock, so an exit status always reaches
//! the task that owns the child and a fast-exiting child cannot be mistaken
//! for an orphan. Anything else that ends up as our child (we are PID 1 in the
//! container, and a subreaper when run natively) is reaped and logged.
//! [`supervise_child`] drives one child through [`crate::machine::Machine`].
//!
//! Nothing else in the process may wait for children (no `Command::status`,
//! no `tokio::process`): the reaper would take their exit status.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::machine::{Action, Event, Machine, State};
use crate::settings::Policy;
use crate::status::{Kind, Status, UnitState};

type ExitSender = oneshot::Sender<String>;

/// Spawns children and reaps every child of this process.
#[derive(Clone, Default)]
pub struct Reaper {
    table: Arc<Mutex<HashMap<i32, ExitSender>>>,
}

impl Reaper {
    /// Creates the reaper and, when not PID 1, makes this process a child
    /// subreaper so orphans of our children come to us too.
    pub fn new() -> Self {
        if std::process::id() != 1
            && let Err(e) = nix::sys::prctl::set_child_subreaper(true)
        {
            warn!("cannot become a child subreaper ({e}); orphans go to the real init");
        }
        Self::default()
    }

    /// Spawns `command` in its own process group; the receiver gets a
    /// description of how it ended.
    pub fn spawn(&self, command: &mut Command) -> io::Result<(i32, oneshot::Receiver<String>)> {
        let (tx, rx) = oneshot::channel();
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let child = command.stdin(Stdio::null()).process_group(0).spawn()?;
        let pid = child.id() as i32;
        table.insert(pid, tx);
        // `child` is dropped without waiting: the reaper owns its exit.
        Ok((pid, rx))
    }

    /// Reaps until the process exits; wakes on SIGCHLD and once a second.
    pub async fn run(self) -> io::Result<()> {
        let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
        loop {
            self.reap_all();
            tokio::select! {
                _ = sigchld.recv() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Runs a short-lived helper command to completion through the reaper
    /// (never with `Command::output`, whose wait would race the reaper).
    /// Returns how it ended and what it printed (stdout and stderr).
    pub async fn run_to_completion(&self, command: &mut Command) -> io::Result<(bool, String)> {
        let capture = tempfile_in_tmp()?;
        let out = capture.0.try_clone()?;
        command.stdout(out.try_clone()?).stderr(out);
        let (_, rx) = self.spawn(command)?;
        let how = rx.await.unwrap_or_else(|_| "exit status lost".into());
        let text = std::fs::read_to_string(&capture.1).unwrap_or_default();
        let _ = std::fs::remove_file(&capture.1);
        Ok((how == "exit status 0", format!("{how}: {}", text.trim())))
    }

    /// Sends SIGKILL to every child process group still running (forced shutdown).
    pub fn kill_all(&self) {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        for pid in table.keys() {
            let _ = killpg(Pid::from_raw(*pid), Signal::SIGKILL);
        }
    }

    /// Collects every exited child without blocking.
    pub fn reap_all(&self) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(status) => {
                    let Some(pid) = status.pid() else { return };
                    let how = describe(&status);
                    match table.remove(&pid.as_raw()) {
                        Some(tx) => {
                            let _ = tx.send(how);
                        }
                        None => info!(pid = pid.as_raw(), "reaped orphan process: {how}"),
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    warn!("waitpid failed: {e}");
                    return;
                }
            }
        }
    }
}

fn tempfile_in_tmp() -> io::Result<(std::fs::File, std::path::PathBuf)> {
    let path = std::env::temp_dir().join(format!(
        "bramble-cmd-{}-{:08x}.out",
        std::process::id(),
        rand::random::<u32>()
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((file, path))
}

fn describe(status: &WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit status {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("killed by {sig}"),
        other => format!("{other:?}"),
    }
}

/// A readiness check: resolves `true` once the child serves.
pub type ReadyCheck = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// How to tell that a child is ready.
#[derive(Clone)]
pub enum Readiness {
    /// Ready as soon as it is spawned.
    Spawned,
    /// Ready once a TCP connection to the address succeeds.
    Tcp(SocketAddr),
    /// Ready once the check says so (polled every 100 ms).
    Check(ReadyCheck),
}

/// One supervised child process.
#[derive(Clone)]
pub struct ChildUnit {
    pub name: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub readiness: Readiness,
}

impl ChildUnit {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.command[0]);
        cmd.args(&self.command[1..]);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn wait_ready(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let readiness = self.readiness.clone();
        Box::pin(async move {
            loop {
                let ok = match &readiness {
                    Readiness::Spawned => true,
                    Readiness::Tcp(addr) => tokio::net::TcpStream::connect(addr).await.is_ok(),
                    Readiness::Check(check) => check().await,
                };
                if ok {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }
}

async fn maybe<F: Future + Unpin>(f: &mut Option<F>) -> F::Output {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

fn unit_state(state: State) -> UnitState {
    match state {
        State::Idle | State::Starting => UnitState::Starting,
        State::Ready => UnitState::Up,
        State::Backoff => UnitState::Backoff,
        State::GaveUp => UnitState::Failed,
        State::Stopping => UnitState::Stopping,
        State::Stopped => UnitState::Stopped,
    }
}

/// Runs `unit` until `shutdown`: start, readiness, restart with backoff,
/// TERM then KILL on shutdown. Returns once the child is gone.
pub async fn supervise_child(
    unit: ChildUnit,
    reaper: Reaper,
    status: Status,
    policy: Policy,
    shutdown: CancellationToken,
) {
    let name = unit.name.clone();
    status.register(&name, Kind::Child);
    let mut machine = Machine::new(policy);
    let mut events = VecDeque::from([Event::Start]);
    let mut exit: Option<oneshot::Receiver<String>> = None;
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut ready: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
    let mut pid: Option<i32> = None;
    let mut detail: Option<String> = None;
    let mut spawned_before = false;
    loop {
        while let Some(event) = events.pop_front() {
            debug!(child = %name, ?event, "child event");
            for action in machine.handle(event, Instant::now()) {
                match action {
                    Action::Spawn => match reaper.spawn(&mut unit.command()) {
                        Ok((p, rx)) => {
                            info!(child = %name, pid = p, "started");
                            if spawned_before {
                                status.add_restart(&name);
                            }
                            spawned_before = true;
                            pid = Some(p);
                            exit = Some(rx);
                            status.set_pid(&name, Some(p as u32));
                            events.push_back(Event::Spawned);
                        }
                        Err(e) => events
                            .push_back(Event::SpawnFailed(format!("{}: {e}", unit.command[0]))),
                    },
                    Action::SetTimer(d) => timer = Some(Box::pin(tokio::time::sleep(d))),
                    Action::CheckReady => ready = Some(unit.wait_ready()),
                    Action::Term | Action::Kill => {
                        let sig = if action == Action::Term {
                            Signal::SIGTERM
                        } else {
                            Signal::SIGKILL
                        };
                        if let Some(p) = pid {
                            info!(child = %name, pid = p, "sending {sig}");
                            let _ = killpg(Pid::from_raw(p), sig);
                        }
                    }
                    Action::Report(msg) => {
                        if machine.state() == State::GaveUp {
                            error!(child = %name, "{msg}");
                        } else {
                            warn!(child = %name, "{msg}");
                        }
                        detail = Some(msg);
                    }
                    Action::Done => {
                        status.set(&name, UnitState::Stopped, None);
                        status.set_pid(&name, None);
                        info!(child = %name, "stopped");
                        return;
                    }
                }
            }
            let state = unit_state(machine.state());
            if state == UnitState::Up {
                // Up again: the last failure is history.
                detail = None;
                if status.get(&name).map(|u| u.state) != Some(UnitState::Up) {
                    info!(child = %name, "ready");
                }
            }
            status.set(&name, state, detail.clone());
        }
        let event = tokio::select! {
            how = maybe(&mut exit) => {
                exit = None;
                ready = None;
                pid = None;
                status.set_pid(&name, None);
                Event::Exited(how.unwrap_or_else(|_| "exit status lost".into()))
            }
            _ = maybe(&mut timer) => { timer = None; Event::Timer }
            _ = maybe(&mut ready) => { ready = None; Event::Ready }
            _ = shutdown.cancelled(), if !matches!(machine.state(), State::Stopping | State::Stopped) => Event::Shutdown,
        };
        events.push_back(event);
    }
}
