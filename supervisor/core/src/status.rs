//! Live state of every service task and supervised child, plus counters.
//!
//! The supervisor writes here; `/health`, `/status` and `/metrics` read. A
//! unit is healthy only while it is `up`; anything else names it in the
//! health report together with the reason.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Service,
    Child,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitState {
    Starting,
    Up,
    /// Waiting before the next restart.
    Backoff,
    /// Gave up restarting (or a precondition failed); needs an operator.
    Failed,
    Stopping,
    Stopped,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnitStatus {
    pub kind: Kind,
    pub state: UnitState,
    /// Why it is not up, or what it is doing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub restarts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Seconds since the Unix epoch of the last state change.
    pub since: u64,
}

/// Shared registry; cheap to clone.
#[derive(Debug, Clone)]
pub struct Status {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    started: Instant,
    units: Mutex<BTreeMap<String, UnitStatus>>,
    counters: Mutex<BTreeMap<(String, String), Arc<AtomicU64>>>,
}

impl Default for Status {
    fn default() -> Self {
        Self::new()
    }
}

impl Status {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                started: Instant::now(),
                units: Mutex::new(BTreeMap::new()),
                counters: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    pub fn uptime_secs(&self) -> f64 {
        self.inner.started.elapsed().as_secs_f64()
    }

    /// Registers a unit (state `starting`) so health reports it from the start.
    pub fn register(&self, name: &str, kind: Kind) {
        self.units().entry(name.to_string()).or_insert(UnitStatus {
            kind,
            state: UnitState::Starting,
            detail: None,
            restarts: 0,
            pid: None,
            since: crate::unix_now(),
        });
    }

    /// Records a new state for `name` with an optional reason.
    pub fn set(&self, name: &str, state: UnitState, detail: Option<String>) {
        let mut units = self.units();
        if let Some(u) = units.get_mut(name) {
            if u.state != state {
                u.since = crate::unix_now();
            }
            u.state = state;
            u.detail = detail;
        }
    }

    pub fn set_pid(&self, name: &str, pid: Option<u32>) {
        if let Some(u) = self.units().get_mut(name) {
            u.pid = pid;
        }
    }

    pub fn add_restart(&self, name: &str) {
        if let Some(u) = self.units().get_mut(name) {
            u.restarts += 1;
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, UnitStatus> {
        self.units().clone()
    }

    pub fn get(&self, name: &str) -> Option<UnitStatus> {
        self.units().get(name).cloned()
    }

    /// Units that are not up, with their state and reason.
    pub fn unhealthy(&self) -> Vec<(String, UnitStatus)> {
        self.units()
            .iter()
            .filter(|(_, u)| u.state != UnitState::Up)
            .map(|(n, u)| (n.clone(), u.clone()))
            .collect()
    }

    /// A monotonically increasing counter `bramble_<service>_<name>_total`.
    pub fn counter(&self, service: &str, name: &str) -> Arc<AtomicU64> {
        self.inner
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((service.to_string(), name.to_string()))
            .or_default()
            .clone()
    }

    pub fn counters(&self) -> Vec<(String, String, u64)> {
        self.inner
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((s, n), v)| (s.clone(), n.clone(), v.load(Ordering::Relaxed)))
            .collect()
    }

    fn units(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, UnitStatus>> {
        self.inner.units.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
