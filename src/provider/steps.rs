//! Create steps both providers share: rollback around the build, node containers
//! created without a restart policy, starts that explain a busy host port, the
//! restart policy set once the cluster is up, and the registries a create makes
//! or uses.

use crate::engine::models::{
    ContainerCreateBody, ContainerUpdateBody, RestartPolicy, RestartPolicyNameEnum,
};
use crate::engine::query::CreateContainerOptions;
use crate::engine::Engine;
use std::future::Future;
use std::time::Duration;

use super::{Created, ProviderCtx};
use crate::docker;
use crate::error::{Error, Result};
use crate::guard::Guard;
use crate::options::CreatePlan;
use crate::registry::{self, RegistryRef};

/// How long a rollback may take before we give up and report what is left.
pub const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `build`; when it fails (error, timeout or cancellation) runs `rollback`
/// under its own, uncancellable guard before returning the error.
pub async fn with_rollback<R>(
    cluster: &str,
    guard: &Guard,
    build: impl Future<Output = Result<Created>>,
    rollback: impl FnOnce(Guard) -> R,
) -> Result<Created>
where
    R: Future<Output = Result<bool>>,
{
    match build.await {
        Ok(created) => Ok(created),
        Err(err) => {
            guard.report(&format!("create failed, rolling back: {err}"));
            let rb = Guard::uncancellable(
                format!("rolling back cluster {cluster}"),
                ROLLBACK_TIMEOUT,
                guard.reporter(),
            );
            match rollback(rb).await {
                Ok(_) => Err(err),
                // the caller's error (and its code) comes first
                Err(rb_err) => Err(err.with_suffix(format!(
                    "rolling back also failed, objects may remain: {rb_err}"
                ))),
            }
        }
    }
}

/// Creates a node container with no restart policy, so a node that dies while
/// the cluster comes up stays dead and its exit code can be reported.
pub async fn create_node(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    name: String,
    mut body: ContainerCreateBody,
    guard: &Guard,
) -> Result<()> {
    if let Some(hc) = body.host_config.as_mut() {
        hc.restart_policy = Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        });
    }
    let opts = CreateContainerOptions {
        name: Some(name.clone()),
        ..Default::default()
    };
    cx.docker
        .create_container(opts, body)
        .await
        .map_err(|e| Error::docker(format!("cluster {cluster}: creating node {name}"), e))?;
    guard.report(&format!("created node {name}"));
    Ok(())
}

/// Creates every node container concurrently. All creations finish before this
/// returns (no early return mid-flight), so a rollback sees every container that
/// exists.
pub async fn create_nodes(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    nodes: Vec<(String, ContainerCreateBody)>,
    guard: &Guard,
) -> Result<()> {
    guard.check(&format!("cluster {cluster}: creating nodes"))?;
    let created = futures_util::future::join_all(
        nodes
            .into_iter()
            .map(|(name, body)| create_node(cx, cluster, name, body, guard)),
    )
    .await;
    created.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
}

/// Starts a node; a host port already taken becomes an InvalidArgument that
/// says which port and what to do.
pub async fn start_node(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    name: &str,
    api_port: u16,
    guard: &Guard,
) -> Result<()> {
    let step = format!("cluster {cluster}: starting node {name}");
    guard.check(&step)?;
    match cx.docker.start_container(name).await {
        Ok(()) => {
            guard.report(&format!("started node {name}"));
            Ok(())
        }
        // already running
        Err(crate::engine::EngineError::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(()),
        Err(crate::engine::EngineError::DockerResponseServerError { message, .. })
            if message.contains("port is already allocated")
                || message.contains("address already in use") =>
        {
            let which = if api_port != 0 && message.contains(&format!(":{api_port}")) {
                format!(" (apiPort {api_port})")
            } else {
                String::new()
            };
            Err(Error::InvalidArgument(format!(
                "{step}: a host port it publishes{which} is already in use: {message}; choose another port or 0 to let Docker pick"
            )))
        }
        Err(e) => Err(Error::docker(&step, e)),
    }
}

/// Follows a node's log until one of `lines` (its ready or boot line), within the
/// operation's deadline and cancellation.
pub async fn wait_for_line(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    name: &str,
    lines: &[&str],
    guard: &Guard,
) -> Result<()> {
    let step = format!(
        "cluster {cluster}: waiting for node {name} to log {:?}",
        lines[0]
    );
    guard
        .wait(
            &step,
            crate::docker::wait_for_log_line(cx.docker, name, lines, 0),
        )
        .await?;
    guard.report(&format!("node {name} is up"));
    Ok(())
}

/// Sets the provider's restart policy on every node once the cluster is up.
pub async fn set_restart_policy(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    names: &[String],
    policy: RestartPolicy,
    guard: &Guard,
) -> Result<()> {
    guard.check(&format!("cluster {cluster}: setting the restart policy"))?;
    let updates = names.iter().map(|name| {
        let body = ContainerUpdateBody {
            restart_policy: Some(policy.clone()),
            ..Default::default()
        };
        async move {
            cx.docker.update_container(name, body).await.map_err(|e| {
                Error::docker(
                    format!("cluster {cluster}: setting the restart policy of {name}"),
                    e,
                )
            })
        }
    });
    crate::engine::all_finish(updates).await.map(|_| ())
}

/// Before anything of the cluster exists: the registry to create has its image
/// and a free name; each registry to use exists. Returns every registry the
/// cluster will use.
pub async fn check_registries(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    plan: &CreatePlan,
    guard: &Guard,
) -> Result<Vec<RegistryRef>> {
    let mut refs = Vec::new();
    if let Some(c) = &plan.registry.create {
        docker::ensure_image(cx.docker, &cx.config.registry_image, guard)
            .await
            .map_err(|e| e.context(format!("cluster {cluster}: registry {}", c.name)))?;
        if registry::find(cx.docker, &c.name).await?.is_some() {
            return Err(Error::AlreadyExists(format!(
                "cluster {cluster}: registry {} already exists: use it (registry.use) or choose another name",
                c.name
            )));
        }
        refs.push(c.validate()?);
    }
    for name in &plan.registry.use_existing {
        let r = registry::reference(cx.docker, name)
            .await
            .map_err(|e| e.context(format!("cluster {cluster}")))?;
        refs.push(r);
    }
    Ok(refs)
}

/// The registry a create makes (with the cluster's label, so delete and
/// rollback find it), then every registry attached to the cluster network
/// `network`.
pub async fn attach_registries(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    plan: &CreatePlan,
    refs: &[RegistryRef],
    network: &str,
    guard: &Guard,
) -> Result<()> {
    if let Some(c) = &plan.registry.create {
        registry::create(cx.docker, c, &cx.config.registry_image, cluster, guard).await?;
    }
    for r in refs {
        registry::connect(cx.docker, r, network).await?;
    }
    Ok(())
}
