//! One create/delete/wait operation's limits: its cancellation token, its
//! deadline, and where its progress is reported. Docker calls are never dropped
//! half-way (so rollback knows exactly what exists); cancellation and the deadline
//! are checked between steps and raced only against waits.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// Receives one line per step ("created network k3d-x") with the time since the
/// operation started.
pub type Reporter = Arc<dyn Fn(Duration, &str) + Send + Sync>;

#[derive(Clone)]
pub struct Guard {
    cancel: CancellationToken,
    started: Instant,
    deadline: Option<Instant>,
    subject: String,
    reporter: Option<Reporter>,
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
        }
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
}
