//! Service tasks (DHCP, TFTP, NFS, HTTP) under supervision.
//!
//! Every service is `run(bound socket, CancellationToken) -> Result`. The
//! supervisor binds the socket, runs the service, and when binding or the
//! service fails it reports why in [`Status`] and tries again with capped
//! exponential backoff. A failing service never takes the process down and
//! never fails silently.

use std::fmt::Display;
use std::future::Future;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::settings::Policy;
use crate::status::{Kind, Status, UnitState};

/// Binds with `bind`, runs with `run`, restarts on failure until `shutdown`.
pub async fn supervise_service<S, E1, E2, B, BF, R, RF>(
    name: &str,
    status: Status,
    policy: Policy,
    shutdown: CancellationToken,
    mut bind: B,
    mut run: R,
) where
    B: FnMut() -> BF,
    BF: Future<Output = Result<S, E1>>,
    R: FnMut(S, CancellationToken) -> RF,
    RF: Future<Output = Result<(), E2>>,
    E1: Display,
    E2: Display,
{
    status.register(name, Kind::Service);
    let mut failures: u32 = 0;
    loop {
        let started = Instant::now();
        let problem = match bind().await {
            Err(e) => format!("cannot start: {e}"),
            Ok(socket) => {
                status.set(name, UnitState::Up, None);
                if failures > 0 {
                    info!(service = name, "running again");
                } else {
                    info!(service = name, "running");
                }
                match run(socket, shutdown.child_token()).await {
                    Ok(()) if shutdown.is_cancelled() => {
                        status.set(name, UnitState::Stopped, None);
                        info!(service = name, "stopped");
                        return;
                    }
                    Ok(()) => "returned unexpectedly".to_string(),
                    Err(e) => format!("failed: {e}"),
                }
            }
        };
        if shutdown.is_cancelled() {
            status.set(name, UnitState::Stopped, None);
            return;
        }
        failures = if started.elapsed() < policy.fast_failure {
            failures + 1
        } else {
            1
        };
        let delay = policy.backoff(failures);
        error!(service = name, "{problem}; retrying in {delay:?}");
        status.add_restart(name);
        status.set(name, UnitState::Backoff, Some(problem));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => {
                status.set(name, UnitState::Stopped, None);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn failing_service_is_reported_and_restarted() {
        let status = Status::new();
        let shutdown = CancellationToken::new();
        let runs = Arc::new(AtomicU32::new(0));
        let policy = Policy {
            backoff_initial: Duration::from_millis(10),
            ..Policy::default()
        };
        let task = tokio::spawn({
            let (status, shutdown, runs) = (status.clone(), shutdown.clone(), runs.clone());
            async move {
                supervise_service(
                    "demo",
                    status,
                    policy,
                    shutdown,
                    || async { Ok::<_, String>(()) },
                    move |(), token: CancellationToken| {
                        let n = runs.fetch_add(1, Ordering::SeqCst);
                        async move {
                            if n < 2 {
                                return Err(format!("boom {n}"));
                            }
                            token.cancelled().await;
                            Ok::<_, String>(())
                        }
                    },
                )
                .await
            }
        });
        while runs.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let unit = status.get("demo").unwrap();
        assert_eq!(unit.state, UnitState::Up);
        assert_eq!(unit.restarts, 2);
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(status.get("demo").unwrap().state, UnitState::Stopped);
    }
}
