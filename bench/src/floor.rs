//! The floor: the raw Docker API calls for the same objects the library makes,
//! sent with bollard (the HTTP client the library itself uses) and no library
//! logic. Each figure's floor is measured in more than one valid order (every
//! node at once, one after another, the load balancer pipelined behind the
//! server's start) and the best order measured in the run is the floor.

use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, StartContainerOptions,
};
use bollard::Docker;
use kecs_cluster::engine::Engine;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use kecs_cluster::docker::{
    inspect, read_file, stop_container, wait_for_log_line, wait_for_log_line_after, write_file,
};
use kecs_cluster::provider::k3d::spec::{lb_values_yaml, LB_CONFIG_PATH};
use kecs_cluster::provider::k3d::{AGENT_READY, INIT_RESTART_READY, LB_READY, SERVER_READY};

pub struct FloorCluster {
    pub network: String,
    pub server: String,
    pub agents: Vec<String>,
    pub lb: Option<String>,
}

impl FloorCluster {
    fn containers(&self) -> Vec<String> {
        std::iter::once(self.server.clone())
            .chain(self.agents.iter().cloned())
            .chain(self.lb.clone())
            .collect()
    }
}

/// The order in which the floor starts what it created.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Order {
    /// Every node started at once (agents retry until the server answers); the
    /// load balancer started as soon as the server's start returned (nginx
    /// resolves its upstreams when it starts, so not before), all waited together.
    Parallel,
    /// One after another, each waited for (k3d's order).
    Sequential,
    /// The server first; the agents as soon as it logs that it runs its API
    /// server (its join endpoint answers, so no agent waits out k3s's join
    /// retry); the load balancer as soon as the server's start returned.
    Pipelined,
}

fn ports(spec: &str, host_ip: &str, host_port: u16) -> HashMap<String, Option<Vec<PortBinding>>> {
    HashMap::from([(
        spec.to_string(),
        Some(vec![PortBinding {
            host_ip: Some(host_ip.into()),
            // empty: Docker picks
            host_port: Some(if host_port == 0 {
                String::new()
            } else {
                host_port.to_string()
            }),
        }]),
    )])
}

fn node_body(
    image: &str,
    name: &str,
    network: &str,
    cmd: &[&str],
    env: Vec<String>,
    api: bool,
) -> ContainerCreateBody {
    let published = if api {
        ports("6443/tcp", "127.0.0.1", 0)
    } else {
        HashMap::new()
    };
    ContainerCreateBody {
        image: Some(image.into()),
        hostname: Some(name.into()),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        env: Some(env),
        exposed_ports: api.then(|| vec!["6443/tcp".to_string()]),
        host_config: Some(HostConfig {
            init: Some(true),
            network_mode: Some(network.into()),
            port_bindings: Some(published),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A proxy (the load balancer or a port proxy): the proxy image publishing one
/// container port, on the cluster network, no command of ours.
pub fn proxy_body(image: &str, network: &str, spec: &str, host_port: u16) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.into()),
        exposed_ports: Some(vec![spec.to_string()]),
        host_config: Some(HostConfig {
            network_mode: Some(network.into()),
            port_bindings: Some(ports(spec, "127.0.0.1", host_port)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub async fn create_container(docker: &Docker, name: &str, body: ContainerCreateBody) {
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.to_string()),
                ..Default::default()
            }),
            body,
        )
        .await
        .expect("floor: container create");
}

pub async fn start(docker: &Docker, name: &str) {
    docker
        .start_container(name, None::<StartContainerOptions>)
        .await
        .expect("floor: start");
}

async fn ready(docker: &Docker, name: &str, line: &str) {
    wait_for_log_line(docker, name, &[line], 0)
        .await
        .expect("floor: ready line");
}

/// Waits for `line` logged after the container's previous run ended (a
/// restart's ready line, never the previous run's): one inspect, then the log.
/// The previous run's `FinishedAt`, not the new `StartedAt`: a fast process
/// logs its first lines before Docker records `StartedAt`.
pub async fn ready_after_start(docker: &Docker, name: &str, line: &str) {
    let finished_at = inspect(docker, name)
        .await
        .expect("floor: inspect")
        .state
        .and_then(|s| s.finished_at)
        .unwrap_or_default();
    wait_for_log_line_after(docker, name, &[line], &finished_at)
        .await
        .expect("floor: ready line after the restart");
}

/// values.yaml for a proxy forwarding `key` (`<port>.<proto>`) to `targets`.
pub fn values(key: &str, targets: &[String]) -> String {
    lb_values_yaml(&BTreeMap::from([(key.to_string(), targets.to_vec())]))
}

/// Creates a 1-server + `agents` cluster (plus the load balancer publishing the
/// API when `lb_image` is given) and returns once every node and the load
/// balancer logged their ready lines and the kubeconfig is copied out.
pub async fn create(
    docker: &Docker,
    image: &str,
    lb_image: Option<&str>,
    name: &str,
    agents: usize,
    order: Order,
) -> (f64, FloorCluster) {
    let t = Instant::now();
    let network = format!("kecs-floor-{name}");
    docker
        .create_network(NetworkCreateRequest {
            name: network.clone(),
            driver: Some("bridge".into()),
            ..Default::default()
        })
        .await
        .expect("floor: network create");
    let server = format!("{name}-server");
    let url = format!("K3S_URL=https://{server}:6443");
    let token = "K3S_TOKEN=floor-token".to_string();
    let mut bodies = vec![(
        server.clone(),
        node_body(
            image,
            &server,
            &network,
            &["server", "--tls-san", "127.0.0.1"],
            vec![
                token.clone(),
                "K3S_KUBECONFIG_OUTPUT=/output/kubeconfig.yaml".into(),
            ],
            lb_image.is_none(),
        ),
    )];
    let agent_names: Vec<String> = (0..agents).map(|i| format!("{name}-agent-{i}")).collect();
    for a in &agent_names {
        bodies.push((
            a.clone(),
            node_body(
                image,
                a,
                &network,
                &["agent"],
                vec![token.clone(), url.clone()],
                false,
            ),
        ));
    }
    let lb = lb_image.map(|_| format!("{name}-serverlb"));
    if let (Some(lb), Some(lb_image)) = (&lb, lb_image) {
        // the library publishes the API on a concrete free port too
        let port = kecs_cluster::docker::free_host_port([127, 0, 0, 1].into()).expect("free port");
        bodies.push((lb.clone(), proxy_body(lb_image, &network, "6443/tcp", port)));
    }
    futures_util::future::join_all(
        bodies
            .into_iter()
            .map(|(n, b)| async move { create_container(docker, &n, b).await }),
    )
    .await;
    let lb_values = values("6443.tcp", std::slice::from_ref(&server));
    let configure_lb = async {
        if let Some(lb) = &lb {
            write_file(docker, lb, LB_CONFIG_PATH, lb_values.as_bytes(), 0o744)
                .await
                .expect("floor: values.yaml archive PUT");
        }
    };
    match order {
        Order::Parallel => {
            let nodes = async {
                let server_up = async {
                    // the load balancer's start needs its configuration and a
                    // running server: the archive PUT overlaps the server's start
                    futures_util::future::join(start(docker, &server), configure_lb).await;
                    if let Some(lb) = &lb {
                        start(docker, lb).await;
                    }
                };
                futures_util::future::join(
                    server_up,
                    futures_util::future::join_all(agent_names.iter().map(|a| start(docker, a))),
                )
                .await;
            };
            nodes.await;
            let waits = std::iter::once((server.as_str(), SERVER_READY))
                .chain(agent_names.iter().map(|a| (a.as_str(), AGENT_READY)))
                .chain(lb.iter().map(|l| (l.as_str(), LB_READY)));
            futures_util::future::join_all(waits.map(|(n, l)| ready(docker, n, l))).await;
        }
        Order::Pipelined => {
            futures_util::future::join(start(docker, &server), configure_lb).await;
            let lb_up = async {
                if let Some(lb) = &lb {
                    start(docker, lb).await;
                    ready(docker, lb, LB_READY).await;
                }
            };
            let agents_up = async {
                if agent_names.is_empty() {
                    return;
                }
                ready(docker, &server, INIT_RESTART_READY).await;
                futures_util::future::join_all(agent_names.iter().map(|a| start(docker, a))).await;
                futures_util::future::join_all(
                    agent_names.iter().map(|a| ready(docker, a, AGENT_READY)),
                )
                .await;
            };
            futures_util::future::join3(ready(docker, &server, SERVER_READY), lb_up, agents_up)
                .await;
        }
        Order::Sequential => {
            configure_lb.await;
            start(docker, &server).await;
            ready(docker, &server, SERVER_READY).await;
            for a in &agent_names {
                start(docker, a).await;
                ready(docker, a, AGENT_READY).await;
            }
            if let Some(lb) = &lb {
                start(docker, lb).await;
                ready(docker, lb, LB_READY).await;
            }
        }
    }
    read_file(docker, &server, "/output/kubeconfig.yaml")
        .await
        .expect("floor: archive copy");
    (
        t.elapsed().as_secs_f64() * 1000.0,
        FloorCluster {
            network,
            server,
            agents: agent_names,
            lb,
        },
    )
}

/// Stops a running floor cluster and starts it again until the server and the
/// load balancer logged their ready lines after the restart: (stop ms, stop→ready ms).
pub async fn stop_start(docker: &Docker, c: &FloorCluster, order: Order) -> (f64, f64) {
    let t = Instant::now();
    let all = c.containers();
    let stopped = match order {
        // An engine that deadlocks on concurrent network leaves (Docker 20.10)
        // has no valid parallel stop: the floor stops one at a time there too.
        Order::Parallel | Order::Pipelined if !docker.one_leave_at_a_time() => {
            futures_util::future::join_all(all.iter().map(|n| stop_container(docker, n))).await
        }
        Order::Parallel | Order::Pipelined => {
            let mut out = vec![];
            for n in &all {
                out.push(stop_container(docker, n).await);
            }
            out
        }
        // k3d's order: load balancer, agents, servers
        Order::Sequential => {
            let mut out = vec![];
            for n in all.iter().rev() {
                out.push(stop_container(docker, n).await);
            }
            out
        }
    };
    for s in stopped {
        s.expect("floor: stop");
    }
    let stop_ms = t.elapsed().as_secs_f64() * 1000.0;
    match order {
        Order::Parallel | Order::Pipelined => {
            let server_up = async {
                start(docker, &c.server).await;
                if let Some(lb) = &c.lb {
                    start(docker, lb).await;
                }
            };
            futures_util::future::join(
                server_up,
                futures_util::future::join_all(c.agents.iter().map(|a| start(docker, a))),
            )
            .await;
            let waits = std::iter::once((c.server.as_str(), SERVER_READY))
                .chain(c.agents.iter().map(|a| (a.as_str(), AGENT_READY)))
                .chain(c.lb.iter().map(|l| (l.as_str(), LB_READY)));
            futures_util::future::join_all(waits.map(|(n, l)| ready_after_start(docker, n, l)))
                .await;
        }
        Order::Sequential => {
            start(docker, &c.server).await;
            ready_after_start(docker, &c.server, SERVER_READY).await;
            for a in &c.agents {
                start(docker, a).await;
                ready_after_start(docker, a, AGENT_READY).await;
            }
            if let Some(lb) = &c.lb {
                start(docker, lb).await;
                ready_after_start(docker, lb, LB_READY).await;
            }
        }
    }
    (stop_ms, t.elapsed().as_secs_f64() * 1000.0)
}

/// The Docker calls of one added port mapping as the library designs it: a
/// proxy container created, its values.yaml PUT, started, waited for. Returns
/// the time taken; the proxy is left running (remove it with `remove`).
pub async fn port_add(
    docker: &Docker,
    c: &FloorCluster,
    lb_image: &str,
    name: &str,
    container_port: u16,
) -> f64 {
    let t = Instant::now();
    let host_port = kecs_cluster::docker::free_host_port([127, 0, 0, 1].into()).expect("free port");
    let spec = format!("{container_port}/tcp");
    create_container(
        docker,
        name,
        proxy_body(lb_image, &c.network, &spec, host_port),
    )
    .await;
    let targets: Vec<String> = std::iter::once(c.server.clone())
        .chain(c.agents.iter().cloned())
        .collect();
    let yaml = values(&format!("{container_port}.tcp"), &targets);
    write_file(docker, name, LB_CONFIG_PATH, yaml.as_bytes(), 0o744)
        .await
        .expect("floor: values.yaml archive PUT");
    start(docker, name).await;
    ready(docker, name, LB_READY).await;
    t.elapsed().as_secs_f64() * 1000.0
}

/// Removes the containers, all at once (one at a time on an engine that
/// deadlocks otherwise: `Engine::one_leave_at_a_time`).
pub async fn remove(docker: &Docker, names: &[String]) {
    let removal = |n: &String| {
        let n = n.clone();
        async move {
            let opts = RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            };
            docker
                .remove_container(&n, Some(opts))
                .await
                .expect("floor: remove container");
        }
    };
    if docker.one_leave_at_a_time() {
        for n in names {
            removal(n).await;
        }
    } else {
        futures_util::future::join_all(names.iter().map(removal)).await;
    }
}

pub async fn delete(docker: &Docker, c: FloorCluster) -> f64 {
    let t = Instant::now();
    remove(docker, &c.containers()).await;
    docker
        .remove_network(&c.network)
        .await
        .expect("floor: remove network");
    t.elapsed().as_secs_f64() * 1000.0
}
