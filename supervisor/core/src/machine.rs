//! The restart decisions for one supervised child, as a pure state machine.
//!
//! [`Machine::handle`] maps an [`Event`] (spawned, ready, exited, a timer,
//! shutdown) to the [`Action`]s the caller must carry out (spawn, arm a
//! timer, send TERM or KILL). It never touches a process or a clock, so unit
//! tests drive it with made-up instants; `process.rs` is the thin shell that
//! does the syscalls.

use std::time::{Duration, Instant};

use crate::settings::Policy;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Idle,
    /// Spawned, readiness not yet confirmed.
    Starting,
    Ready,
    /// Waiting to restart.
    Backoff,
    /// Too many fast failures in a row.
    GaveUp,
    /// TERM sent on shutdown, waiting for the exit.
    Stopping,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Start,
    Spawned,
    SpawnFailed(String),
    Ready,
    Exited(String),
    Timer,
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Spawn,
    /// Arm (or re-arm) the single timer of this child.
    SetTimer(Duration),
    /// Start polling the readiness check.
    CheckReady,
    Term,
    Kill,
    /// Tell the operator why the child is not running.
    Report(String),
    /// The machine is finished (after shutdown).
    Done,
}

#[derive(Debug, Clone)]
pub struct Machine {
    policy: Policy,
    state: State,
    started_at: Option<Instant>,
    fast_failures: u32,
    restarts: u64,
}

impl Machine {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            state: State::Idle,
            started_at: None,
            fast_failures: 0,
            restarts: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        use Action::*;
        match (self.state, event) {
            (State::Idle, Event::Start) | (State::Backoff, Event::Timer) => {
                self.state = State::Starting;
                vec![Spawn]
            }
            (State::Starting, Event::Spawned) => {
                self.started_at = Some(now);
                vec![CheckReady]
            }
            (State::Starting, Event::Ready) => {
                self.state = State::Ready;
                vec![]
            }
            (State::Starting, Event::SpawnFailed(why)) => {
                self.started_at = Some(now);
                self.failed(now, format!("could not start: {why}"))
            }
            (State::Starting | State::Ready, Event::Exited(how)) => {
                self.failed(now, format!("exited: {how}"))
            }
            (State::Starting | State::Ready, Event::Shutdown) => {
                self.state = State::Stopping;
                vec![Term, SetTimer(self.policy.stop_timeout)]
            }
            (State::Stopping, Event::Exited(_)) => {
                self.state = State::Stopped;
                vec![Done]
            }
            (State::Stopping, Event::Timer) => vec![Kill, SetTimer(self.policy.stop_timeout)],
            (State::Idle | State::Backoff | State::GaveUp, Event::Shutdown) => {
                self.state = State::Stopped;
                vec![Done]
            }
            // Stale events (a readiness answer after an exit, a timer after
            // shutdown) change nothing.
            _ => vec![],
        }
    }

    fn failed(&mut self, now: Instant, why: String) -> Vec<Action> {
        let ran = self
            .started_at
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or_default();
        if ran < self.policy.fast_failure {
            self.fast_failures += 1;
        } else {
            self.fast_failures = 1;
        }
        if self.fast_failures >= self.policy.give_up_after {
            self.state = State::GaveUp;
            return vec![Action::Report(format!(
                "{why}; gave up after {} fast failures in a row",
                self.fast_failures
            ))];
        }
        self.state = State::Backoff;
        self.restarts += 1;
        let delay = self.policy.backoff(self.fast_failures);
        vec![
            Action::Report(format!("{why}; restarting in {delay:?}")),
            Action::SetTimer(delay),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    fn policy() -> Policy {
        Policy {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            fast_failure: Duration::from_secs(10),
            give_up_after: 4,
            stop_timeout: Duration::from_secs(5),
        }
    }

    fn started(m: &mut Machine, now: Instant) {
        assert_eq!(m.handle(Event::Start, now), vec![Spawn]);
        assert_eq!(m.handle(Event::Spawned, now), vec![CheckReady]);
        assert_eq!(m.handle(Event::Ready, now), vec![]);
        assert_eq!(m.state(), State::Ready);
    }

    fn timer(actions: &[Action]) -> Option<Duration> {
        actions.iter().find_map(|a| match a {
            SetTimer(d) => Some(*d),
            _ => None,
        })
    }

    #[test]
    fn crash_restarts_with_exponential_capped_backoff_then_gives_up() {
        let mut p = policy();
        p.give_up_after = 6;
        let mut m = Machine::new(p);
        let t = Instant::now();
        started(&mut m, t);
        let mut delays = vec![];
        for _ in 0..5 {
            let a = m.handle(Event::Exited("signal 9".into()), t);
            assert_eq!(m.state(), State::Backoff);
            delays.push(timer(&a).unwrap().as_millis());
            assert_eq!(m.handle(Event::Timer, t), vec![Spawn]);
            m.handle(Event::Spawned, t);
        }
        assert_eq!(delays, vec![100, 200, 400, 800, 1000]);
        let a = m.handle(Event::Exited("status 1".into()), t);
        assert_eq!(m.state(), State::GaveUp);
        assert!(
            matches!(&a[..], [Report(r)] if r.contains("gave up after 6")),
            "{a:?}"
        );
        assert_eq!(m.restarts(), 5);
    }

    #[test]
    fn a_long_run_resets_the_fast_failure_count() {
        let mut m = Machine::new(policy());
        let t = Instant::now();
        started(&mut m, t);
        for _ in 0..3 {
            m.handle(Event::Exited("x".into()), t);
            m.handle(Event::Timer, t);
            m.handle(Event::Spawned, t);
        }
        // Ran for a minute: the next failure is the first of a new run.
        let a = m.handle(Event::Exited("x".into()), t + Duration::from_secs(60));
        assert_eq!(timer(&a), Some(Duration::from_millis(100)));
        assert_eq!(m.state(), State::Backoff);
    }

    #[test]
    fn spawn_failure_counts_as_fast_failure() {
        let mut m = Machine::new(policy());
        let t = Instant::now();
        m.handle(Event::Start, t);
        let a = m.handle(Event::SpawnFailed("no such file".into()), t);
        assert!(matches!(&a[0], Report(r) if r.contains("could not start: no such file")));
        assert_eq!(m.state(), State::Backoff);
    }

    #[test]
    fn shutdown_terms_then_kills_until_exit() {
        let mut m = Machine::new(policy());
        let t = Instant::now();
        started(&mut m, t);
        assert_eq!(
            m.handle(Event::Shutdown, t),
            vec![Term, SetTimer(Duration::from_secs(5))]
        );
        assert_eq!(
            m.handle(Event::Timer, t),
            vec![Kill, SetTimer(Duration::from_secs(5))]
        );
        assert_eq!(m.handle(Event::Exited("signal 9".into()), t), vec![Done]);
        assert_eq!(m.state(), State::Stopped);
    }

    #[test]
    fn shutdown_during_backoff_or_after_giving_up_is_immediate() {
        let mut m = Machine::new(policy());
        let t = Instant::now();
        started(&mut m, t);
        m.handle(Event::Exited("x".into()), t);
        assert_eq!(m.handle(Event::Shutdown, t), vec![Done]);
        // No restart after shutdown, whatever the timer says.
        assert_eq!(m.handle(Event::Timer, t), vec![]);
    }

    #[test]
    fn stale_ready_after_exit_is_ignored() {
        let mut m = Machine::new(policy());
        let t = Instant::now();
        m.handle(Event::Start, t);
        m.handle(Event::Spawned, t);
        m.handle(Event::Exited("x".into()), t);
        assert_eq!(m.handle(Event::Ready, t), vec![]);
        assert_eq!(m.state(), State::Backoff);
    }
}
