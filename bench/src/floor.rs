//! The floor: the minimum raw Docker API sequence for the same objects the library
//! makes, sent with bollard (the HTTP client the library itself uses) and no
//! library logic — network create, container create, start, follow logs to the
//! ready line, archive-copy the kubeconfig, remove.

use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, StartContainerOptions,
};
use bollard::Docker;
use std::collections::HashMap;
use std::time::Instant;

use kecs_cluster::docker::{read_file, wait_for_log_line};

pub struct FloorCluster {
    pub network: String,
    pub containers: Vec<String>,
}

fn body(
    image: &str,
    name: &str,
    network: &str,
    cmd: &[&str],
    env: Vec<String>,
    api: bool,
) -> ContainerCreateBody {
    let mut ports = HashMap::new();
    if api {
        ports.insert(
            "6443/tcp".to_string(),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(String::new()),
            }]),
        );
    }
    ContainerCreateBody {
        image: Some(image.into()),
        hostname: Some(name.into()),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        env: Some(env),
        exposed_ports: api.then(|| vec!["6443/tcp".to_string()]),
        host_config: Some(HostConfig {
            init: Some(true),
            network_mode: Some(network.into()),
            port_bindings: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn start(docker: &Docker, name: &str) {
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

/// Creates a 1-server + `agents` cluster and returns once every node logged its
/// ready line and the kubeconfig is copied out. `parallel`: start every node at
/// once (as k3s allows); otherwise one after another, each waited (k3d's order).
pub async fn create(
    docker: &Docker,
    image: &str,
    name: &str,
    agents: usize,
    parallel: bool,
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
        body(
            image,
            &server,
            &network,
            &["server", "--tls-san", "127.0.0.1"],
            vec![
                token.clone(),
                "K3S_KUBECONFIG_OUTPUT=/output/kubeconfig.yaml".into(),
            ],
            true,
        ),
    )];
    for i in 0..agents {
        let a = format!("{name}-agent-{i}");
        bodies.push((
            a.clone(),
            body(
                image,
                &a,
                &network,
                &["agent"],
                vec![token.clone(), url.clone()],
                false,
            ),
        ));
    }
    let creates = bodies.into_iter().map(|(n, b)| async move {
        docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(n.clone()),
                    ..Default::default()
                }),
                b,
            )
            .await
            .expect("floor: container create");
        n
    });
    let containers = futures_util::future::join_all(creates).await;
    let line = |n: &str| {
        if n.ends_with("-server") {
            "k3s is up and running"
        } else {
            "Successfully registered node"
        }
    };
    if parallel {
        futures_util::future::join_all(containers.iter().map(|n| start(docker, n))).await;
        futures_util::future::join_all(containers.iter().map(|n| ready(docker, n, line(n)))).await;
    } else {
        for n in &containers {
            start(docker, n).await;
            ready(docker, n, line(n)).await;
        }
    }
    read_file(docker, &server, "/output/kubeconfig.yaml")
        .await
        .expect("floor: archive copy");
    (
        t.elapsed().as_secs_f64() * 1000.0,
        FloorCluster {
            network,
            containers,
        },
    )
}

pub async fn delete(docker: &Docker, c: FloorCluster) -> f64 {
    let t = Instant::now();
    let removals = c.containers.iter().map(|n| async move {
        docker
            .remove_container(
                n,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
            .expect("floor: remove container");
    });
    futures_util::future::join_all(removals).await;
    docker
        .remove_network(&c.network)
        .await
        .expect("floor: remove network");
    t.elapsed().as_secs_f64() * 1000.0
}
