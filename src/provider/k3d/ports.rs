//! Port mappings added to and removed from a running k3d-style cluster.
//!
//! Docker fixes a container's published ports when it is created, so k3d
//! (`k3d node edit --port-add`) recreates the whole load balancer, and every
//! published port, the API's included, refuses connections while it does.
//! Here each added mapping gets a proxy container of its own, made from the
//! load balancer's image and configured the same way (values.yaml: the node
//! port on every server and agent). Adding or removing one never touches the
//! load balancer or another mapping. The proxies carry the cluster's labels,
//! so stop, start, the restart policy and delete treat them like the load
//! balancer.

use crate::engine::models::ContainerSummary;
use crate::engine::Engine;
use std::collections::{BTreeMap, HashMap};

use super::spec::{self, PORT_PROXY_ROLE};
use super::{role, LB_READY};
use crate::docker::{self, summary_label, summary_name};
use crate::error::{Error, Result};
use crate::guard::Guard;
use crate::options::ValidPort;
use crate::provider::{binding, steps, PortInfo, PortMap, ProviderCtx, ALL_INTERFACES};

/// Adds `port` to the running cluster whose containers are `all`. An identical
/// mapping that exists already is returned as it is; a failure leaves the
/// cluster exactly as it was.
pub async fn add(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    all: &[ContainerSummary],
    port: &ValidPort,
    existing: &[PortInfo],
    guard: &Guard,
) -> Result<PortInfo> {
    let lb = all.iter().find(|c| role(c) == "loadbalancer").ok_or_else(|| {
        Error::InvalidArgument(format!(
            "cluster {cluster} has no load balancer (it was created with loadBalancer: false); port mappings on a running cluster go through one"
        ))
    })?;
    let mut port = port.clone();
    let host_ip = port
        .host_ip
        .clone()
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| ALL_INTERFACES.to_string());
    if port.host_port == 0 {
        let ip = host_ip.parse().map_err(|_| {
            Error::InvalidArgument(format!("port hostIp {host_ip:?} is not an IP address"))
        })?;
        port.host_port = docker::free_host_port(ip)?;
    }
    if let Some(same) = existing
        .iter()
        .find(|p| p.host_port == port.host_port && p.protocol == port.protocol)
    {
        if same.container_port == port.container_port {
            return Ok(same.clone());
        }
        return Err(Error::AlreadyExists(format!(
            "cluster {cluster}: host port {}/{} is already mapped to container port {} (on {})",
            port.host_port, port.protocol, same.container_port, same.container
        )));
    }

    let name = spec::port_proxy_name(cluster, port.host_port, &port.protocol);
    let body = proxy_body(cluster, lb, &port, &host_ip);
    let targets = node_names(all);
    let values = spec::lb_values_yaml(&BTreeMap::from([(
        format!("{}.{}", port.container_port, port.protocol),
        targets,
    )]));
    guard.check(&format!(
        "cluster {cluster}: adding port {}",
        port.host_port
    ))?;
    let opts = crate::engine::query::CreateContainerOptions {
        name: Some(name.clone()),
        ..Default::default()
    };
    cx.docker
        .create_container(opts, body)
        .await
        .map_err(|e| Error::docker(format!("cluster {cluster}: creating {name}"), e))?;
    let up = async {
        docker::write_file(
            cx.docker,
            &name,
            spec::LB_CONFIG_PATH,
            values.as_bytes(),
            0o744,
        )
        .await?;
        steps::start_node(cx, cluster, &name, 0, guard).await?;
        // a new container: its whole log is this run's
        guard
            .wait(
                &format!("cluster {cluster}: waiting for {name} to log {LB_READY:?}"),
                docker::wait_for_log_line(cx.docker, &name, &[LB_READY], 0),
            )
            .await?;
        Ok::<_, Error>(())
    };
    if let Err(err) = up.await {
        // leave the cluster as it was: the proxy goes, nothing else was touched
        let rb = Guard::uncancellable(
            format!("removing {name}"),
            steps::ROLLBACK_TIMEOUT,
            guard.reporter(),
        );
        return match docker::remove_containers(cx.docker, std::slice::from_ref(&name), &rb).await {
            Ok(()) => Err(err),
            Err(rb_err) => Err(err.with_suffix(format!("removing {name} also failed: {rb_err}"))),
        };
    }
    guard.report(&format!(
        "mapped host port {}/{} to node port {}",
        port.host_port, port.protocol, port.container_port
    ));
    Ok(PortInfo {
        host_ip,
        host_port: port.host_port,
        container_port: port.container_port,
        protocol: port.protocol,
        container: name,
        added: true,
    })
}

/// Removes a mapping `add` made. One given at create is refused: the load
/// balancer publishes it, and taking it away means recreating the load
/// balancer, which would interrupt every other port (k3d's way).
pub async fn remove(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    all: &[ContainerSummary],
    host_port: u16,
    protocol: &str,
    existing: &[PortInfo],
    guard: &Guard,
) -> Result<()> {
    let port = host_port.to_string();
    let proxy = all.iter().find(|c| {
        role(c) == PORT_PROXY_ROLE
            && summary_label(c, spec::PORT_LABEL_HOST) == Some(port.as_str())
            && summary_label(c, spec::PORT_LABEL_PROTOCOL) == Some(protocol)
    });
    match proxy {
        Some(c) => {
            let name = summary_name(c);
            docker::remove_containers(cx.docker, std::slice::from_ref(&name), guard)
                .await
                .map_err(|e| e.context(format!("cluster {cluster}: removing port {port}")))?;
            guard.report(&format!("removed host port {port}/{protocol}"));
            Ok(())
        }
        None => match existing
            .iter()
            .find(|p| p.host_port == host_port && p.protocol == protocol)
        {
            Some(p) => Err(Error::InvalidArgument(format!(
                "cluster {cluster}: host port {port}/{protocol} was mapped at create on {}; only mappings added to the running cluster can be removed (recreate the cluster without it)",
                p.container
            ))),
            None => Err(Error::NotFound(format!(
                "cluster {cluster}: host port {port}/{protocol} is not mapped"
            ))),
        },
    }
}

/// Every server, then every agent: where k3d's load balancer forwards a port.
fn node_names(all: &[ContainerSummary]) -> Vec<String> {
    let mut servers: Vec<String> = Vec::new();
    let mut agents: Vec<String> = Vec::new();
    for c in all {
        match role(c) {
            "server" => servers.push(summary_name(c)),
            "agent" => agents.push(summary_name(c)),
            _ => {}
        }
    }
    servers.sort();
    agents.sort();
    servers.into_iter().chain(agents).collect()
}

/// The proxy for one mapping: the load balancer's image (by ID: never pulled)
/// and labels, with its own role and the mapping it carries.
fn proxy_body(
    cluster: &str,
    lb: &ContainerSummary,
    port: &ValidPort,
    host_ip: &str,
) -> crate::engine::models::ContainerCreateBody {
    let mut labels: HashMap<String, String> = lb.labels.clone().unwrap_or_default();
    labels.insert("k3d.role".into(), PORT_PROXY_ROLE.into());
    labels.insert(spec::PORT_LABEL_HOST.into(), port.host_port.to_string());
    labels.insert(spec::PORT_LABEL_HOST_IP.into(), host_ip.to_string());
    labels.insert(
        spec::PORT_LABEL_CONTAINER.into(),
        port.container_port.to_string(),
    );
    labels.insert(spec::PORT_LABEL_PROTOCOL.into(), port.protocol.clone());
    let image = lb
        .image_id
        .clone()
        .or_else(|| lb.image.clone())
        .unwrap_or_default();
    let ports: PortMap = HashMap::from([(
        format!("{}/{}", port.container_port, port.protocol),
        Some(vec![binding(host_ip, port.host_port)]),
    )]);
    spec::proxy_container(cluster, &image, labels, ports)
}
