//! Stop and start of an existing cluster, shared by the providers. Nodes go in
//! phases (each provider gives its order); every call of a phase finishes before
//! the result is looked at, and a restart's ready line only counts when it was
//! logged after the node's new `StartedAt`, so the previous run's lines never do.

use crate::engine::models::ContainerSummary;
use crate::engine::Engine;

use super::{steps, ProviderCtx};
use crate::docker::{self, summary_name};
use crate::error::{Error, Result};
use crate::guard::Guard;

/// One node to start and the log lines that mean it is back (none: no wait).
pub struct NodeStart {
    pub name: String,
    pub lines: &'static [&'static str],
}

pub fn is_running(c: &ContainerSummary) -> bool {
    c.state.map(|s| s.to_string()).as_deref() == Some("running")
}

/// Stops the nodes phase by phase; within a phase all stops run (together, or in
/// sequence on an engine that needs it: `Engine::one_leave_at_a_time`) and all
/// finish. A node that is already stopped is fine (stop is idempotent).
pub async fn stop_phases(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    phases: Vec<Vec<String>>,
    guard: &Guard,
) -> Result<()> {
    for phase in phases.into_iter().filter(|p| !p.is_empty()) {
        guard.check(&format!("cluster {cluster}: stopping nodes"))?;
        let stops = phase.iter().map(|name| async move {
            docker::stop_container(cx.docker, name)
                .await
                .map_err(|e| e.context(format!("cluster {cluster}")))?;
            guard.report(&format!("stopped node {name}"));
            Ok::<_, Error>(())
        });
        crate::engine::all_leaves_finish(cx.docker, stops).await?;
    }
    Ok(())
}

/// Starts the nodes phase by phase: every start of a phase finishes, then every
/// wait for a ready line. A node that exits instead is named with its exit code
/// and last log lines; once every wait of the phase ended, the nodes that failed
/// are stopped (not removed: the cluster existed before).
pub async fn start_phases(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    phases: Vec<Vec<NodeStart>>,
    guard: &Guard,
) -> Result<()> {
    for phase in phases.into_iter().filter(|p| !p.is_empty()) {
        // Lines of this run are those after the previous run ended: Docker
        // stamps StartedAt after the process runs, so a fast node's ready line
        // can come before it.
        let ended =
            futures_util::future::join_all(phase.iter().map(|n| finished_at(cx, &n.name))).await;
        let starts = phase
            .iter()
            .map(|n| steps::start_node(cx, cluster, &n.name, 0, guard));
        first_error(futures_util::future::join_all(starts).await)?;
        let waits = phase
            .iter()
            .zip(&ended)
            .filter(|(n, _)| !n.lines.is_empty())
            .map(|(n, ended)| async move {
                let waited = wait_restarted(cx, cluster, n, ended, guard).await;
                (n.name.as_str(), waited)
            });
        let waited = futures_util::future::join_all(waits).await;
        // Nodes that failed are stopped, not removed: the restart policy would
        // otherwise crash-loop them, and the next start begins from a known
        // state. Stops leave the network: all_leaves_finish sequences them.
        let failed = waited.iter().filter(|(_, w)| w.is_err()).map(|(name, _)| {
            let name = name.to_string();
            async move {
                if let Err(stop_err) = docker::stop_container(cx.docker, &name).await {
                    guard.report(&format!(
                        "could not stop {name} after it failed: {stop_err}"
                    ));
                }
                Ok::<_, Error>(())
            }
        });
        crate::engine::all_leaves_finish(cx.docker, failed).await?;
        first_error(waited.into_iter().map(|(_, w)| w).collect())?;
    }
    Ok(())
}

/// When the container's previous run ended (Docker's `State.FinishedAt`).
async fn finished_at(cx: &ProviderCtx<'_, impl Engine>, name: &str) -> String {
    docker::inspect(cx.docker, name)
        .await
        .ok()
        .and_then(|i| i.state)
        .and_then(|s| s.finished_at)
        .unwrap_or_default()
}

async fn wait_restarted(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    node: &NodeStart,
    ended: &str,
    guard: &Guard,
) -> Result<()> {
    let name = &node.name;
    let step = format!(
        "cluster {cluster}: waiting for node {name} to log {:?}",
        node.lines[0]
    );
    let waited = guard
        .wait(
            &step,
            docker::wait_for_log_line_after(cx.docker, name, node.lines, ended),
        )
        .await;
    if let Err(e) = waited {
        // a restart policy may have started it again: its die event has the code
        let since = docker::parse_timestamp(ended).map_or(0, |(s, _)| s);
        let e = match docker::last_exit_code(cx.docker, name, since).await {
            Some(code) if e.code() != crate::ErrorCode::Timeout => {
                e.with_suffix(format!("it exited with code {code}"))
            }
            _ => e,
        };
        return Err(e.context(format!("cluster {cluster}: starting node {name}")));
    }
    guard.report(&format!("node {name} is up"));
    Ok(())
}

fn first_error(results: Vec<Result<()>>) -> Result<()> {
    results.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
}

/// Names of the nodes in `nodes` matching `pick`, sorted.
pub fn names_where(
    nodes: &[ContainerSummary],
    pick: impl Fn(&ContainerSummary) -> bool,
) -> Vec<String> {
    let mut names: Vec<String> = nodes.iter().filter(|c| pick(c)).map(summary_name).collect();
    names.sort();
    names
}
