//! One create/delete/wait operation's limits: its cancellation token, its
//! deadline, and where its progress is reported. Docker calls are never dropped
//! half-way (so rollback knows exactly what exists); cancellation and the deadline
//! are checked between steps and raced only against waits. (The manager runs
//! state-changing operations as tasks, so a caller whose cancel fires while one
//! request hangs gets its answer without the request being abandoned.)

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// Receives one line per step ("created network k3d-x") with the time since the
/// operation started.
pub type Reporter = Arc<dyn Fn(Duration, &str) + Send + Sync>;

/// The step an operation is at (the last one its guard checked), shared between
/// the guard's clones and whoever must say what a cancelled operation was doing
/// without waiting for it.
#[derive(Clone, Default)]
pub struct StepLog(Arc<Mutex<String>>);

impl StepLog {
    fn record(&self, step: &str) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if *s != step {
            s.clear();
            s.push_str(step);
        }
    }

    /// The last step recorded; empty before the first.
    pub fn current(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[derive(Clone)]
pub struct Guard {
    cancel: CancellationToken,
    started: Instant,
    deadline: Option<Instant>,
    subject: String,
    reporter: Option<Reporter>,
    steps: Option<StepLog>,
}

impl Guard {
    pub fn new(
        subject: impl Into<String>,
        cancel: CancellationToken,
        timeout: Option<Duration>,
        reporter: Option<Reporter>,
    ) -> Guard {
        let started = Instant::now();
        Guard {
            cancel,
            started,
            deadline: timeout.map(|t| started + t),
            subject: subject.into(),
            reporter,
            steps: None,
        }
    }

    /// Records every step this guard (and its clones) checks in `steps`.
    pub fn with_step_log(mut self, steps: StepLog) -> Guard {
        self.steps = Some(steps);
        self
    }

    /// A guard for work that must run to completion (rollback): never cancelled,
    /// bounded by `timeout`.
    pub fn uncancellable(
        subject: impl Into<String>,
        timeout: Duration,
        reporter: Option<Reporter>,
    ) -> Guard {
        Guard::new(subject, CancellationToken::new(), Some(timeout), reporter)
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn report(&self, msg: &str) {
        panic_if_hooked(msg);
        if let Some(r) = &self.reporter {
            r(self.started.elapsed(), msg);
        }
    }

    pub fn reporter(&self) -> Option<Reporter> {
        self.reporter.clone()
    }

    fn cancelled_error(&self, step: &str) -> Error {
        Error::Cancelled(format!("{}: cancelled while {step}", self.subject))
    }

    fn timeout_error(&self, step: &str) -> Error {
        let limit = self
            .deadline
            .map(|d| d.saturating_duration_since(self.started))
            .unwrap_or_default();
        Error::Timeout(format!(
            "{}: timed out after {:.1}s while {step}",
            self.subject,
            limit.as_secs_f64()
        ))
    }

    /// Fails if the operation was cancelled or its deadline has passed.
    pub fn check(&self, step: &str) -> Result<()> {
        if let Some(steps) = &self.steps {
            steps.record(step);
        }
        if self.cancel.is_cancelled() {
            return Err(self.cancelled_error(step));
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(self.timeout_error(step));
        }
        Ok(())
    }

    /// Runs a wait (log following, readiness probing) until it finishes, the
    /// operation is cancelled or the deadline passes.
    pub async fn wait<T>(&self, step: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
        self.check(step)?;
        let deadline = async {
            match self.deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = fut => r,
            _ = self.cancel.cancelled() => Err(self.cancelled_error(step)),
            _ = deadline => Err(self.timeout_error(step)),
        }
    }

    /// Like `wait`, with an extra limit for this step alone.
    pub async fn wait_at_most<T>(
        &self,
        step: &str,
        limit: Duration,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let subject = self.subject.clone();
        self.wait(step, async move {
            match tokio::time::timeout(limit, fut).await {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout(format!(
                    "{subject}: no answer within {:.1}s while {step}",
                    limit.as_secs_f64()
                ))),
            }
        })
        .await
    }
}

/// Progress lines that make `report` panic, for tests of the panic path only
/// (armed by `manager::testing::panic_when_step_reported`; nothing else arms it).
static PANIC_HOOKS: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Whether any hook is armed: one relaxed load per report when none is.
static PANIC_HOOK_ARMED: AtomicBool = AtomicBool::new(false);

pub(crate) fn arm_panic_hook(substring: &str) {
    let mut hooks = PANIC_HOOKS.lock().unwrap_or_else(|p| p.into_inner());
    hooks.push(substring.to_string());
    PANIC_HOOK_ARMED.store(true, Ordering::SeqCst);
}

fn panic_if_hooked(msg: &str) {
    if !PANIC_HOOK_ARMED.load(Ordering::Relaxed) {
        return;
    }
    let fired = {
        let mut hooks = PANIC_HOOKS.lock().unwrap_or_else(|p| p.into_inner());
        let hit = hooks.iter().position(|h| msg.contains(h.as_str()));
        // each hook fires once
        let fired = hit.map(|i| hooks.swap_remove(i));
        PANIC_HOOK_ARMED.store(!hooks.is_empty(), Ordering::SeqCst);
        fired
    };
    if let Some(hook) = fired {
        panic!("test hook {hook:?}: panicking at the step {msg:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cancel_and_deadline() {
        let token = CancellationToken::new();
        let g = Guard::new(
            "cluster x",
            token.clone(),
            Some(Duration::from_millis(50)),
            None,
        );
        assert!(g.check("a").is_ok());
        let e = g
            .wait("waiting", std::future::pending::<Result<()>>())
            .await
            .unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Timeout);
        assert!(e.to_string().contains("cluster x"));
        let g = Guard::new("cluster x", token.clone(), None, None);
        token.cancel();
        assert_eq!(
            g.check("a").unwrap_err().code(),
            crate::ErrorCode::Cancelled
        );
    }

    #[tokio::test]
    async fn steps_are_recorded_for_every_clone() {
        let steps = StepLog::default();
        let g = Guard::new("cluster x", CancellationToken::new(), None, None)
            .with_step_log(steps.clone());
        assert_eq!(steps.current(), "");
        g.check("creating network k3d-x").unwrap();
        assert_eq!(steps.current(), "creating network k3d-x");
        let clone = g.clone();
        clone
            .wait("following logs", async { Ok(()) })
            .await
            .unwrap();
        assert_eq!(steps.current(), "following logs");
    }

    #[test]
    fn panic_hook_fires_once_on_its_line_only() {
        arm_panic_hook("unit-test-hook-line");
        let g = Guard::new("cluster x", CancellationToken::new(), None, None);
        g.report("some other line");
        let hit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            g.report("created unit-test-hook-line here")
        }));
        assert!(hit.is_err());
        // disarmed after firing
        g.report("created unit-test-hook-line here");
    }
}
