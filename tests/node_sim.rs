//! The node simulator image seen from outside, the way the library and k3d see a
//! k3s node: real containers on the real Docker Engine, real TLS, real kube-rs.

mod support;

use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, RemoveContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use kecs_cluster::docker::{published_port, read_file, wait_for_log_line, wait_for_log_line_after};
use kecs_cluster::kubeconfig::{rewrite, EntryNames};
use support::*;

/// A simulator container, removed on drop.
struct Sim {
    docker: Docker,
    name: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", "-v", &self.name])
            .output();
    }
}

struct Net(String);
impl Drop for Net {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["network", "rm", &self.0])
            .output();
    }
}

async fn start_sim(
    name: &str,
    cmd: &[&str],
    env: &[&str],
    network: Option<&str>,
) -> (Sim, Instant) {
    start_sim_with_binds(name, cmd, env, network, &[]).await
}

async fn start_sim_with_binds(
    name: &str,
    cmd: &[&str],
    env: &[&str],
    network: Option<&str>,
    binds: &[String],
) -> (Sim, Instant) {
    start_image(SIM_IMAGE, None, name, cmd, env, network, binds).await
}

/// A container of a simulator image, `entrypoint` overriding the image's.
async fn start_image(
    image: &str,
    entrypoint: Option<&[&str]>,
    name: &str,
    cmd: &[&str],
    env: &[&str],
    network: Option<&str>,
    binds: &[String],
) -> (Sim, Instant) {
    ensure_sim_image().await;
    let docker = docker().await;
    let mut ports = HashMap::new();
    ports.insert(
        "6443/tcp".to_string(),
        Some(vec![PortBinding {
            host_ip: Some("127.0.0.1".into()),
            host_port: Some(String::new()),
        }]),
    );
    let body = ContainerCreateBody {
        image: Some(image.into()),
        entrypoint: entrypoint.map(|e| e.iter().map(|s| s.to_string()).collect()),
        hostname: Some(name.into()),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        env: Some(env.iter().map(|s| s.to_string()).collect()),
        exposed_ports: Some(vec!["6443/tcp".into()]),
        host_config: Some(HostConfig {
            init: Some(true),
            port_bindings: Some(ports),
            network_mode: network.map(String::from),
            binds: Some(binds.to_vec()),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.into()),
                ..Default::default()
            }),
            body,
        )
        .await
        .unwrap();
    let sim = Sim {
        docker: docker.clone(),
        name: name.into(),
    };
    let started = Instant::now();
    docker
        .start_container(
            name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .unwrap();
    (sim, started)
}

impl Sim {
    async fn wait_line(&self, line: &str, limit: Duration) -> Result<String, String> {
        match tokio::time::timeout(
            limit,
            wait_for_log_line(&self.docker, &self.name, &[line], 0),
        )
        .await
        {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no {line:?} within {limit:?}")),
        }
    }

    /// The node's kubeconfig, pointed at the port published on 127.0.0.1.
    async fn host_kubeconfig(&self) -> String {
        let raw = read_file(&self.docker, &self.name, "/output/kubeconfig.yaml")
            .await
            .unwrap();
        let info = self
            .docker
            .inspect_container(&self.name, None::<InspectContainerOptions>)
            .await
            .unwrap();
        let port = published_port(&info, "6443/tcp").unwrap();
        let names = EntryNames {
            cluster: "sim".into(),
            context: "sim".into(),
            user: "sim".into(),
        };
        rewrite(
            &String::from_utf8(raw).unwrap(),
            &names,
            &format!("https://127.0.0.1:{port}"),
        )
        .unwrap()
    }

    /// Stops the container (SIGTERM; the simulator exits at once).
    async fn stop(&self) {
        self.docker
            .stop_container(
                &self.name,
                Some(StopContainerOptions {
                    t: Some(5),
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
    }

    /// Starts the stopped container again; returns the (host = engine) time just
    /// before the start, RFC 3339 with nanoseconds: every line of the new run is
    /// logged after it. (Docker's `State.StartedAt` is recorded once the process
    /// runs, which can be after the simulator's first lines.)
    async fn start(&self) -> String {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        self.docker
            .start_container(
                &self.name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .unwrap();
        let secs = before.as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // civil date from days since the epoch (Howard Hinnant)
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60,
            before.subsec_nanos()
        )
    }

    /// Waits for a line logged by the run that started at `started_at`.
    async fn wait_line_after(
        &self,
        line: &str,
        started_at: &str,
        limit: Duration,
    ) -> Result<String, String> {
        match tokio::time::timeout(
            limit,
            wait_for_log_line_after(&self.docker, &self.name, &[line], started_at),
        )
        .await
        {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no {line:?} within {limit:?}")),
        }
    }

    /// `docker exec` in the node: (exit status success, stdout).
    fn exec(&self, cmd: &[&str]) -> (bool, String) {
        let (ok, out, _) = self.exec_full(cmd);
        (ok, out)
    }

    /// `docker exec` in the node: (exit status success, stdout, stderr).
    fn exec_full(&self, cmd: &[&str]) -> (bool, String, String) {
        let out = std::process::Command::new("docker")
            .arg("exec")
            .arg(&self.name)
            .args(cmd)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Writes a file in the node (parent directories made).
    fn write_file(&self, path: &str, content: &str) {
        use std::io::Write;
        let mut child = std::process::Command::new("docker")
            .args(["exec", "-i", &self.name, "sh", "-c"])
            .arg(format!(
                "mkdir -p \"$(dirname '{path}')\" && cat > '{path}'"
            ))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(content.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "writing {path}");
    }

    async fn exit_code(&self) -> Option<i64> {
        let info = self
            .docker
            .inspect_container(&self.name, None::<InspectContainerOptions>)
            .await
            .unwrap();
        let state = info.state.unwrap();
        if state.running == Some(true) {
            None
        } else {
            state.exit_code
        }
    }
}

async fn kube_client(kubeconfig: &str) -> kube::Client {
    kecs_cluster::readiness::client(kubeconfig, Duration::from_secs(5))
        .await
        .unwrap()
}

fn ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

const OUT: &str = "K3S_KUBECONFIG_OUTPUT=/output/kubeconfig.yaml";

/// How long an agent that came before its server may take to register: k3s's
/// agent asks for its configuration again 5-10 s after a failed attempt.
const AGENT_RETRY_LIMIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_is_ready_fast_and_serves_the_api() {
    let name = format!("kecs-simtest-{}", unique_name("s"));
    let (sim, started) = start_sim(
        &name,
        &[
            "server",
            "--tls-san",
            "127.0.0.1",
            "--node-label",
            "kecs.io/cluster=x",
            "--unknown-flag",
            "value",
            "--disable=traefik",
        ],
        &[OUT, "K3S_TOKEN=secret"],
        None,
    )
    .await;
    for line in [
        "Containerd is now running",
        "Running kube-apiserver",
        "k3s is up and running",
    ] {
        sim.wait_line(line, Duration::from_secs(5)).await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "ready after {:?}",
        started.elapsed()
    );
    let dns = sim
        .wait_line("Cluster dns configmap", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        dns.starts_with("time=\"") && dns.contains("level=info msg=\""),
        "logrus format: {dns}"
    );

    let kc = sim.host_kubeconfig().await;
    let client = kube_client(&kc).await;
    let version = client.apiserver_version().await.unwrap();
    assert!(
        version.git_version.contains("k3s"),
        "{}",
        version.git_version
    );

    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(list.len(), 1);
    let node = &list[0];
    assert!(ready(node));
    assert_eq!(node.metadata.name.as_deref(), Some(name.as_str()));
    let labels = node.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["node-role.kubernetes.io/control-plane"], "true");
    assert_eq!(labels["kecs.io/cluster"], "x");
    assert!(node
        .status
        .as_ref()
        .unwrap()
        .node_info
        .as_ref()
        .unwrap()
        .kubelet_version
        .starts_with("v1.31"));
    nodes.get(&name).await.unwrap();
    let missing = nodes.get("nope").await.unwrap_err();
    assert!(
        matches!(missing, kube::Error::Api(ref s) if s.code == 404),
        "{missing:?}"
    );

    // namespaces: the defaults exist; create, conflict, delete
    let ns: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = ns
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    for want in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    let new: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "ecs-test"}})).unwrap();
    let created = ns.create(&PostParams::default(), &new).await.unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    let dup = ns.create(&PostParams::default(), &new).await.unwrap_err();
    assert!(
        matches!(dup, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{dup:?}"
    );
    ns.delete("ecs-test", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        matches!(ns.get("ecs-test").await.unwrap_err(), kube::Error::Api(ref s) if s.code == 404)
    );

    // CoreDNS config map with NodeHosts
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let coredns = cms.get("coredns").await.unwrap();
    assert!(coredns.data.unwrap()["NodeHosts"].contains(&name));

    // protobuf bodies: a valid one creates, a body without the envelope is a 400
    let created: serde_json::Value = client
        .request(
            http::Request::post("/api/v1/namespaces")
                .header("content-type", "application/vnd.kubernetes.protobuf")
                .body(protobuf_object(
                    "Namespace",
                    &pb_bytes(1, &pb_bytes(1, b"from-protobuf")),
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(created["metadata"]["name"], "from-protobuf");
    let req = http::Request::post("/api/v1/namespaces")
        .header("content-type", "application/vnd.kubernetes.protobuf")
        .body(vec![0u8, 1, 2])
        .unwrap();
    let err = client.request::<serde_json::Value>(req).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 400),
        "{err:?}"
    );

    // without a client certificate: 401
    let mut doc: serde_json::Value = serde_saphyr::from_str(&kc).unwrap();
    doc["users"][0]["user"] = serde_json::json!({});
    let anonymous = serde_saphyr::to_string(&doc).unwrap();
    let anon: Api<Node> = Api::all(kube_client(&anonymous).await);
    let err = anon.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 401),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_joins_by_name_and_wrong_token_never_does() {
    let tag = unique_name("j");
    let net = format!("kecs-simtest-{tag}");
    let docker = docker().await;
    ensure_sim_image().await;
    docker
        .create_network(NetworkCreateRequest {
            name: net.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let _net = Net(net.clone());
    let server = format!("kecs-simtest-{tag}-server");
    let url = format!("K3S_URL=https://{server}:6443");
    let (sim, _) = start_sim(&server, &["server"], &[OUT, "K3S_TOKEN=right"], Some(&net)).await;
    // agents that come before their server retry only 5-10 s later, as k3s's do
    sim.wait_line("k3s is up and running", Duration::from_secs(5))
        .await
        .unwrap();
    let (agent, _) = start_sim(
        &format!("{server}-agent"),
        &["agent"],
        &["K3S_TOKEN=right", &url],
        Some(&net),
    )
    .await;
    let (intruder, _) = start_sim(
        &format!("{server}-intruder"),
        &["agent"],
        &["K3S_TOKEN=wrong", &url],
        Some(&net),
    )
    .await;
    let line = agent
        .wait_line("Successfully registered node", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(line.contains(&agent.name), "{line}");
    let refused = intruder
        .wait_line("Failed to register node", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(refused.contains("level=error"), "{refused}");

    let nodes: Api<Node> = Api::all(kube_client(&sim.host_kubeconfig().await).await);
    // the server records a node before it answers the registration, and the agent
    // logs its line after the answer: one list sees both nodes
    let list = nodes.list(&ListParams::default()).await.unwrap().items;
    assert!(list.iter().all(ready), "every listed node is Ready");
    let names: Vec<&str> = list
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    assert_eq!(list.len(), 2, "{names:?}");
    assert!(
        names.contains(&agent.name.as_str()) && !names.contains(&intruder.name.as_str()),
        "{names:?}"
    );
    let worker = list
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(agent.name.as_str()))
        .unwrap();
    assert!(!worker
        .metadata
        .labels
        .as_ref()
        .unwrap()
        .contains_key("node-role.kubernetes.io/control-plane"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_knobs() {
    let tag = unique_name("f");
    // SIM_READY_DELAY_MS delays the ready lines
    let (delayed, started) = start_sim(
        &format!("kecs-simtest-{tag}-delay"),
        &["server"],
        &[OUT, "SIM_READY_DELAY_MS=1500"],
        None,
    )
    .await;
    delayed
        .wait_line("k3s is up and running", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "ready after {:?}",
        started.elapsed()
    );

    // SIM_EXIT_BEFORE_READY exits with that code and never logs ready
    let (exits, _) = start_sim(
        &format!("kecs-simtest-{tag}-exit"),
        &["server"],
        &[OUT, "SIM_EXIT_BEFORE_READY=7"],
        None,
    )
    .await;
    let err = exits
        .wait_line("k3s is up and running", Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(err.contains("exit code 7"), "{err}");
    assert_eq!(exits.exit_code().await, Some(7));

    // SIM_NEVER_READY keeps running without the ready line
    let (hangs, _) = start_sim(
        &format!("kecs-simtest-{tag}-hang"),
        &["server"],
        &[OUT, "SIM_NEVER_READY=1"],
        None,
    )
    .await;
    hangs
        .wait_line("simulated hang", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(hangs
        .wait_line("k3s is up and running", Duration::from_millis(1500))
        .await
        .is_err());
    assert_eq!(hangs.exit_code().await, None, "still running");

    // SIM_IGNORE_SIGTERM: only SIGKILL (after docker stop's grace period) stops it
    let (stubborn, _) = start_sim(
        &format!("kecs-simtest-{tag}-stub"),
        &["server"],
        &[OUT, "SIM_IGNORE_SIGTERM=1"],
        None,
    )
    .await;
    stubborn
        .wait_line("k3s is up and running", Duration::from_secs(5))
        .await
        .unwrap();
    let t = Instant::now();
    stubborn
        .docker
        .stop_container(
            &stubborn.name,
            Some(StopContainerOptions {
                t: Some(1),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "stopped after {:?}",
        t.elapsed()
    );
    assert_eq!(stubborn.exit_code().await, Some(137), "killed by SIGKILL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_quickly() {
    let name = format!("kecs-simtest-{}", unique_name("t"));
    let (sim, _) = start_sim(&name, &["server"], &[OUT], None).await;
    sim.wait_line("k3s is up and running", Duration::from_secs(5))
        .await
        .unwrap();
    let t = Instant::now();
    sim.docker
        .stop_container(
            &name,
            Some(StopContainerOptions {
                t: Some(10),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        t.elapsed()
    );
    assert_eq!(sim.exit_code().await, Some(0));
    sim.docker
        .remove_container(
            &name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
}

/// A length-delimited protobuf field.
fn pb_bytes(tag: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    pb_varint(&mut out, u64::from(tag << 3 | 2));
    pb_varint(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

/// A varint protobuf field.
fn pb_int(tag: u32, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    pb_varint(&mut out, u64::from(tag << 3));
    pb_varint(&mut out, v);
    out
}

fn pb_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Kubernetes' protobuf envelope: `k8s\0` + runtime.Unknown{typeMeta, raw}.
fn protobuf_object(kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = [pb_bytes(1, b"v1"), pb_bytes(2, kind.as_bytes())].concat();
    [b"k8s\0".to_vec(), pb_bytes(1, &type_meta), pb_bytes(2, raw)].concat()
}

fn names() -> EntryNames {
    EntryNames {
        cluster: "sim".into(),
        context: "sim".into(),
        user: "sim".into(),
    }
}

async fn published(sim: &Sim) -> u16 {
    let info = sim
        .docker
        .inspect_container(&sim.name, None::<InspectContainerOptions>)
        .await
        .unwrap();
    published_port(&info, "6443/tcp").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_ca_kubeconfig_and_objects() {
    let name = format!("kecs-simtest-{}", unique_name("r"));
    let (sim, _) = start_sim(&name, &["server"], &[OUT], None).await;
    sim.wait_line(
        "Cluster dns configmap has been set successfully",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let before = read_file(&sim.docker, &name, "/output/kubeconfig.yaml")
        .await
        .unwrap();
    let client = kube_client(&sim.host_kubeconfig().await).await;
    let ns: Api<Namespace> = Api::all(client.clone());
    let kept = ns
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "kept"}})).unwrap(),
        )
        .await
        .unwrap();
    let svcs: Api<Service> = Api::namespaced(client.clone(), "kept");
    let svc = svcs
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "web"},
                "spec": {"type": "NodePort", "ports": [{"port": 80}]}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let rv_before: u64 = svc
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();

    sim.stop().await;
    let started = sim.start().await;
    let restarted_lines = [
        "Running kube-apiserver",
        "k3s is up and running",
        "Cluster dns configmap already exists",
    ];
    for line in restarted_lines {
        sim.wait_line_after(line, &started, Duration::from_secs(10))
            .await
            .unwrap();
    }
    let after = read_file(&sim.docker, &name, "/output/kubeconfig.yaml")
        .await
        .unwrap();
    assert_eq!(
        before, after,
        "the same CA and client certificate after a restart"
    );

    // the kubeconfig read before the stop, pointed at the port Docker published now
    let old = rewrite(
        &String::from_utf8(before).unwrap(),
        &names(),
        &format!("https://127.0.0.1:{}", published(&sim).await),
    )
    .unwrap();
    let client = kube_client(&old).await;
    let ns: Api<Namespace> = Api::all(client.clone());
    let again = ns.get("kept").await.unwrap();
    assert_eq!(again.metadata.uid, kept.metadata.uid);
    let svcs: Api<Service> = Api::namespaced(client.clone(), "kept");
    let svc_again = svcs.get("web").await.unwrap();
    assert_eq!(svc_again.spec, svc.spec, "cluster IP and node port kept");
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(list.len(), 1);
    assert!(ready(&list[0]));
    let next = ns
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "next"}})).unwrap(),
        )
        .await
        .unwrap();
    let rv_next: u64 = next.metadata.resource_version.unwrap().parse().unwrap();
    assert!(
        rv_next > rv_before,
        "resourceVersions keep growing: {rv_next} > {rv_before}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_rejoins_after_restart() {
    let tag = unique_name("a");
    let net = format!("kecs-simtest-{tag}");
    let docker = docker().await;
    ensure_sim_image().await;
    docker
        .create_network(NetworkCreateRequest {
            name: net.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let _net = Net(net.clone());
    let server_name = format!("kecs-simtest-{tag}-server");
    let url = format!("K3S_URL=https://{server_name}:6443");
    let (server, _) = start_sim(
        &server_name,
        &["server"],
        &[OUT, "K3S_TOKEN=t", "SIM_NODE_GRACE_MS=1500"],
        Some(&net),
    )
    .await;
    server
        .wait_line("k3s is up and running", Duration::from_secs(5))
        .await
        .unwrap();
    let (agent, _) = start_sim(
        &format!("{server_name}-agent"),
        &["agent"],
        &["K3S_TOKEN=t", &url],
        Some(&net),
    )
    .await;
    agent
        .wait_line("Successfully registered node", Duration::from_secs(10))
        .await
        .unwrap();
    let client = kube_client(&server.host_kubeconfig().await).await;
    let nodes: Api<Node> = Api::all(client);
    let uid_before = nodes.get(&agent.name).await.unwrap().metadata.uid;

    // the agent alone: NotReady once the server stops hearing from it (grace
    // period shortened to 1.5 s on the server), Ready again when it is back
    agent.stop().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&nodes.get(&agent.name).await.unwrap()) {
        assert!(Instant::now() < deadline, "the stopped agent stays Ready");
    }
    let started = agent.start().await;
    agent
        .wait_line_after(
            "Successfully registered node",
            &started,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(ready(&nodes.get(&agent.name).await.unwrap()), "Ready again");

    // the whole cluster, in k3d's order: stop agents then servers, start servers first
    agent.stop().await;
    server.stop().await;
    let server_started = server.start().await;
    let agent_started = agent.start().await;
    server
        .wait_line_after(
            "Cluster dns configmap already exists",
            &server_started,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    // started with its server (k3d's order) the agent may find it not ready
    // yet and retry at k3s's agent period, 5-10 s later
    agent
        .wait_line_after(
            "Successfully registered node",
            &agent_started,
            AGENT_RETRY_LIMIT,
        )
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(kube_client(&server.host_kubeconfig().await).await);
    let list = nodes.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(ready), "every node Ready again");
    let agent_node = list
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(agent.name.as_str()))
        .unwrap();
    assert_eq!(agent_node.metadata.uid, uid_before, "the same Node object");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_file_applies_from_the_next_boot() {
    let dir = TempDir::new("faults");
    let name = format!("kecs-simtest-{}", unique_name("k"));
    let (sim, _) = start_sim_with_binds(
        &name,
        &["server"],
        &[OUT, "SIM_FAULTS_FILE=/faults/knobs"],
        None,
        &[format!("{}:/faults", dir.path().display())],
    )
    .await;
    sim.wait_line("k3s is up and running", Duration::from_secs(5))
        .await
        .unwrap();
    std::fs::write(
        dir.path().join("knobs"),
        "# fail the next boot\nSIM_EXIT_BEFORE_READY=3\nNOT_A_KNOB=ignored\n",
    )
    .unwrap();
    sim.stop().await;
    let started = sim.start().await;
    let err = sim
        .wait_line_after("k3s is up and running", &started, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(err.contains("exit code 3"), "{err}");
    assert_eq!(sim.exit_code().await, Some(3));

    // the file gone, the node boots again with its state
    std::fs::remove_file(dir.path().join("knobs")).unwrap();
    let started = sim.start().await;
    sim.wait_line_after(
        "Cluster dns configmap already exists",
        &started,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ports_listen_on_every_node() {
    let tag = unique_name("p");
    let net = format!("kecs-simtest-{tag}");
    let docker = docker().await;
    ensure_sim_image().await;
    docker
        .create_network(NetworkCreateRequest {
            name: net.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let _net = Net(net.clone());
    let server_name = format!("kecs-simtest-{tag}-server");
    let url = format!("K3S_URL=https://{server_name}:6443");
    let (server, _) = start_sim(&server_name, &["server"], &[OUT, "K3S_TOKEN=t"], Some(&net)).await;
    server
        .wait_line("k3s is up and running", Duration::from_secs(5))
        .await
        .unwrap();
    let (agent, _) = start_sim(
        &format!("{server_name}-agent"),
        &["agent"],
        &["K3S_TOKEN=t", &url],
        Some(&net),
    )
    .await;
    agent
        .wait_line("Successfully registered node", Duration::from_secs(10))
        .await
        .unwrap();
    let client = kube_client(&server.host_kubeconfig().await).await;

    // JSON, no nodePort: one is allocated in 30000-32767
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let web = svcs
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "web"},
                "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80}]}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let port = web.spec.unwrap().ports.unwrap()[0].node_port.unwrap();
    assert!((30000..=32767).contains(&port), "{port}");

    // protobuf, with a chosen nodePort
    let spec = [
        pb_bytes(1, &[pb_int(3, 81), pb_int(5, 30123)].concat()),
        pb_bytes(4, b"NodePort"),
    ]
    .concat();
    let raw = [pb_bytes(1, &pb_bytes(1, b"alt")), pb_bytes(2, &spec)].concat();
    let alt: serde_json::Value = client
        .request(
            http::Request::post("/api/v1/namespaces/default/services")
                .header("content-type", "application/vnd.kubernetes.protobuf")
                .body(protobuf_object("Service", &raw))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(alt["spec"]["ports"][0]["nodePort"], 30123);

    for node in [&server, &agent] {
        for p in [port, 30123] {
            node.wait_line(
                &format!("Listening on node port {p}"),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
            let (ok, body) = node.exec(&["wget", "-qO-", &format!("http://127.0.0.1:{p}/")]);
            assert!(ok, "{} port {p}", node.name);
            assert_eq!(body.trim(), node.name, "answered by the node itself");
        }
    }

    svcs.delete("web", &DeleteParams::default()).await.unwrap();
    for node in [&server, &agent] {
        node.wait_line(&format!("Closed node port {port}"), Duration::from_secs(10))
            .await
            .unwrap();
        let (ok, _) = node.exec(&["wget", "-qO-", &format!("http://127.0.0.1:{port}/")]);
        assert!(!ok, "{} still answers on {port}", node.name);
        let (ok, _) = node.exec(&["wget", "-qO-", "http://127.0.0.1:30123/"]);
        assert!(ok, "{} lost the other service's port", node.name);
    }
}

/// A registry stand-in on `net`: busybox httpd serving `manifests` (repo path,
/// tag) under `/v2/`, each with a small OCI manifest, plus `/v2/ok`.
async fn start_registry(name: &str, net: &str, manifests: &[(&str, &str)]) -> Sim {
    let mut script = String::from("mkdir -p /www/v2 && echo ok > /www/v2/ok");
    for (repo, tag) in manifests {
        script.push_str(&format!(
            " && mkdir -p /www/v2/{repo}/manifests && echo '{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\"}}' > /www/v2/{repo}/manifests/{tag}"
        ));
    }
    script.push_str(" && exec httpd -f -p 5000 -h /www");
    let (sim, _) = start_image(
        SIM_IMAGE,
        Some(&["/bin/sh", "-c"]),
        name,
        &[&script],
        &[],
        Some(net),
        &[],
    )
    .await;
    sim
}

/// Waits in `node` until `url` answers (the registry's httpd is up).
fn wait_http(node: &Sim, url: &str) {
    let (ok, _, err) = node.exec_full(&[
        "timeout",
        "10",
        "sh",
        "-c",
        &format!("until wget -qO /dev/null {url}; do :; done"),
    ]);
    assert!(ok, "{url} never answered from {}: {err}", node.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crictl_pull_follows_mirrors_then_the_default_endpoint() {
    let tag = unique_name("c");
    let net = format!("kecs-simtest-{tag}");
    let docker = docker().await;
    ensure_sim_image().await;
    docker
        .create_network(NetworkCreateRequest {
            name: net.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let _net = Net(net.clone());
    let reg = format!("kecs-simtest-{tag}-reg");
    let empty = format!("kecs-simtest-{tag}-empty");
    let _reg = start_registry(&reg, &net, &[("team/app", "v1")]).await;
    let _empty = start_registry(&empty, &net, &[]).await;

    // k3s: /etc/rancher/k3s/registries.yaml, mirrors in order, then https://<host>
    let (node, _) = start_sim(
        &format!("kecs-simtest-{tag}-server"),
        &["server"],
        &[OUT],
        Some(&net),
    )
    .await;
    node.wait_line("k3s is up and running", Duration::from_secs(5))
        .await
        .unwrap();
    wait_http(&node, &format!("http://{reg}:5000/v2/ok"));
    wait_http(&node, &format!("http://{empty}:5000/v2/ok"));
    node.write_file(
        "/etc/rancher/k3s/registries.yaml",
        &format!(
            "mirrors:\n  \"{reg}:5000\":\n    endpoint:\n      - \"http://{empty}:5000\"\n      - \"http://{reg}:5000\"\n"
        ),
    );
    let (ok, out, err) = node.exec_full(&["crictl", "pull", &format!("{reg}:5000/team/app:v1")]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("from http://{reg}:5000 (mirror"))
            && out.contains("application/vnd.oci.image.manifest.v1+json")
            && out.contains("sha256:"),
        "{out}"
    );
    let (ok, _, err) = node.exec_full(&[
        "k3s",
        "crictl",
        "pull",
        &format!("{reg}:5000/team/missing:v1"),
    ]);
    assert!(!ok, "a missing image fails");
    for tried in [
        format!("http://{empty}:5000/v2/team/missing/manifests/v1: HTTP 404"),
        format!("http://{reg}:5000/v2/team/missing/manifests/v1: HTTP 404"),
        format!("https://{reg}:5000/v2/team/missing/manifests/v1: "),
    ] {
        assert!(err.contains(&tried), "{tried:?} not in {err}");
    }

    // kind: containerd's /etc/containerd/certs.d/<host>/hosts.toml, hosts then server
    let (kind_node, _) = start_image(
        SIM_KIND_IMAGE,
        None,
        &format!("kecs-simtest-{tag}-worker"),
        &[],
        &[],
        Some(&net),
        &[],
    )
    .await;
    kind_node
        .wait_line("Reached target multi-user.target", Duration::from_secs(5))
        .await
        .unwrap();
    kind_node.write_file(
        &format!("/etc/containerd/certs.d/{reg}:5000/hosts.toml"),
        &format!(
            "server = \"http://{reg}:5000\"\n\n[host.\"http://{empty}:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        ),
    );
    let (ok, out, err) =
        kind_node.exec_full(&["crictl", "pull", &format!("{reg}:5000/team/app:v1")]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("from http://{reg}:5000 (server")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_server_serves_the_same_cluster() {
    let tag = unique_name("h");
    let net = format!("kecs-simtest-{tag}");
    let docker = docker().await;
    ensure_sim_image().await;
    docker
        .create_network(NetworkCreateRequest {
            name: net.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let _net = Net(net.clone());
    let first = format!("kecs-simtest-{tag}-server-0");
    let (init, _) = start_sim(
        &first,
        &["server", "--cluster-init"],
        &[OUT, "K3S_TOKEN=t"],
        Some(&net),
    )
    .await;
    let (joined, _) = start_sim(
        &format!("kecs-simtest-{tag}-server-1"),
        &["server", "--server", &format!("https://{first}:6443")],
        &[OUT, "K3S_TOKEN=t"],
        Some(&net),
    )
    .await;
    for s in [&init, &joined] {
        s.wait_line("k3s is up and running", Duration::from_secs(10))
            .await
            .unwrap();
    }
    let via_init = kube_client(&init.host_kubeconfig().await).await;
    let via_joined = kube_client(&joined.host_kubeconfig().await).await;
    let ns: Api<Namespace> = Api::all(via_joined.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({"metadata": {"name": "made-on-1"}})).unwrap(),
    )
    .await
    .unwrap();
    Api::<Namespace>::all(via_init.clone())
        .get("made-on-1")
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(via_joined);
    let names: Vec<String> = nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

/// Three servers as k3d makes an HA cluster on `net`: server-0 with
/// `--cluster-init`, the others joining it by name (K3S_URL), each one ready
/// before the next starts.
async fn three_servers(tag: &str, net: &str, env: &[&str]) -> Vec<Sim> {
    let first = format!("kecs-simtest-{tag}-server-0");
    let url = format!("K3S_URL=https://{first}:6443");
    let mut servers = Vec::new();
    for i in 0..3 {
        let mut all_env = vec![OUT, "K3S_TOKEN=t"];
        all_env.extend_from_slice(env);
        let cmd: &[&str] = if i == 0 {
            &["server", "--cluster-init"]
        } else {
            all_env.push(&url);
            &["server"]
        };
        let (s, _) = start_sim(
            &format!("kecs-simtest-{tag}-server-{i}"),
            cmd,
            &all_env,
            Some(net),
        )
        .await;
        s.wait_line("k3s is up and running", Duration::from_secs(10))
            .await
            .unwrap();
        servers.push(s);
    }
    servers
}

async fn test_network(tag: &str) -> Net {
    let net = format!("kecs-simtest-{tag}");
    docker()
        .await
        .create_network(NetworkCreateRequest {
            name: net.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    Net(net)
}

/// Three servers as k3d makes an HA cluster (server-0 `--cluster-init`, the
/// others joining it by name): with server-0 stopped the others still take
/// writes and serve them to each other; server-0 catches up when it is back,
/// and a write made through it then reaches the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_keep_working_while_server0_is_stopped() {
    let tag = unique_name("ha");
    ensure_sim_image().await;
    let net = test_network(&tag).await;
    let servers = three_servers(&tag, &net.0, &[]).await;
    let (s0, s1, s2) = (&servers[0], &servers[1], &servers[2]);
    let via1 = kube_client(&s1.host_kubeconfig().await).await;
    let via2 = kube_client(&s2.host_kubeconfig().await).await;
    let namespace = |name: &str| -> Namespace {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap()
    };
    // all three servers are nodes of one cluster, seen the same from each
    let node_names = |nodes: Vec<Node>| -> Vec<String> {
        let mut n: Vec<String> = nodes.into_iter().filter_map(|n| n.metadata.name).collect();
        n.sort();
        n
    };
    let nodes2 = Api::<Node>::all(via2.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(node_names(nodes2).len(), 3);

    s0.stop().await;
    // a write through server-1 is acknowledged and read back through server-2
    let made = Api::<Namespace>::all(via1.clone())
        .create(&PostParams::default(), &namespace("while-0-away"))
        .await
        .unwrap();
    let seen = Api::<Namespace>::all(via2.clone())
        .get("while-0-away")
        .await
        .unwrap();
    assert_eq!(seen.metadata.uid, made.metadata.uid);
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "written-on-2"}, "data": {"k": "v"}}))
    .unwrap();
    Api::<ConfigMap>::namespaced(via2.clone(), "while-0-away")
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let back = Api::<ConfigMap>::namespaced(via1.clone(), "while-0-away")
        .get("written-on-2")
        .await
        .unwrap();
    assert_eq!(back.data.unwrap()["k"], "v");
    // the API of a remaining server does not depend on the stopped one
    assert!(via1.apiserver_version().await.is_ok());

    // server-0 comes back: it has what was written while it was away
    let started = s0.start().await;
    s0.wait_line_after("k3s is up and running", &started, Duration::from_secs(10))
        .await
        .unwrap();
    let via0 = kube_client(&s0.host_kubeconfig().await).await;
    let caught_up = Api::<Namespace>::all(via0.clone())
        .get("while-0-away")
        .await
        .unwrap();
    assert_eq!(caught_up.metadata.uid, made.metadata.uid);
    Api::<ConfigMap>::namespaced(via0.clone(), "while-0-away")
        .get("written-on-2")
        .await
        .unwrap();
    // and it leads again: its write is on the others once acknowledged
    Api::<Namespace>::all(via0.clone())
        .create(&PostParams::default(), &namespace("after-0-back"))
        .await
        .unwrap();
    for via in [&via1, &via2] {
        Api::<Namespace>::all(via.clone())
            .get("after-0-back")
            .await
            .unwrap();
    }
    // resourceVersions stay monotonic across the change of leader
    let rv = |ns: &Namespace| -> u64 {
        ns.metadata
            .resource_version
            .as_deref()
            .unwrap()
            .parse()
            .unwrap()
    };
    let later = Api::<Namespace>::all(via2.clone())
        .get("after-0-back")
        .await
        .unwrap();
    assert!(rv(&later) > rv(&made), "{} then {}", rv(&made), rv(&later));
}

/// An agent of a three-server cluster, joined through server-0, keeps working
/// with server-0 stopped: it follows the node ports through another server, stays
/// Ready (its heartbeats reach the servers left), and rejoins after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_fails_over_when_server0_is_stopped() {
    let tag = unique_name("haa");
    ensure_sim_image().await;
    let net = test_network(&tag).await;
    // a short grace period: a node not heard from is NotReady within 1.5 s
    let servers = three_servers(&tag, &net.0, &["SIM_NODE_GRACE_MS=1500"]).await;
    let (s0, s2) = (&servers[0], &servers[2]);
    let (agent, _) = start_sim(
        &format!("kecs-simtest-{tag}-agent-0"),
        &["agent"],
        &["K3S_TOKEN=t", &format!("K3S_URL=https://{}:6443", s0.name)],
        Some(&net.0),
    )
    .await;
    agent
        .wait_line("Successfully registered node", Duration::from_secs(10))
        .await
        .unwrap();
    let via2 = kube_client(&s2.host_kubeconfig().await).await;
    let nodes: Api<Node> = Api::all(via2.clone());
    assert!(ready(&nodes.get(&agent.name).await.unwrap()));

    s0.stop().await;
    // once server-2 sees server-0 NotReady the grace period has passed: the
    // agent, heard through another server, is still Ready
    let deadline = Instant::now() + Duration::from_secs(15);
    while ready(&nodes.get(&s0.name).await.unwrap()) {
        assert!(
            Instant::now() < deadline,
            "the stopped server-0 stays Ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ready(&nodes.get(&agent.name).await.unwrap()),
        "the agent went NotReady with server-0 stopped"
    );
    // a node port made now opens on the agent too
    let web = Api::<Service>::namespaced(via2.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "web"},
                "spec": {"type": "NodePort", "ports": [{"port": 80}]}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let port = web.spec.unwrap().ports.unwrap()[0].node_port.unwrap();
    agent
        .wait_line(
            &format!("Listening on node port {port}"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    // a restarted agent rejoins through the servers it knew
    agent.stop().await;
    let started = agent.start().await;
    agent
        .wait_line_after(
            "Successfully registered node",
            &started,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
}

/// kind's `/kind/kubeadm.conf` as the library writes it (the documents kubeadm
/// reads here), with the JoinConfiguration's `controlPlane` for a secondary
/// control plane.
fn kind_kubeadm_conf(cluster: &str, endpoint: &str, node_ip: &str, control_plane: bool) -> String {
    let join_control_plane = if control_plane {
        format!("controlPlane:\n  localAPIEndpoint:\n    advertiseAddress: \"{node_ip}\"\n    bindPort: 6443\n")
    } else {
        String::new()
    };
    format!(
        "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nclusterName: \"{cluster}\"\ncontrolPlaneEndpoint: \"{endpoint}\"\nnetworking:\n  podSubnet: \"10.244.0.0/16\"\n  serviceSubnet: \"10.96.0.0/16\"\napiServer:\n  certSANs:\n  - \"localhost\"\n  - \"127.0.0.1\"\n---\napiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\nbootstrapTokens:\n- token: \"abcdef.0123456789abcdef\"\nlocalAPIEndpoint:\n  advertiseAddress: \"{node_ip}\"\n  bindPort: 6443\nskipPhases:\n- preflight\n---\napiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    node-ip: \"{node_ip}\"\ndiscovery:\n  bootstrapToken:\n    apiServerEndpoint: \"{endpoint}\"\n    token: \"abcdef.0123456789abcdef\"\n    unsafeSkipCAVerification: true\n{join_control_plane}skipPhases:\n- preflight\n---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n"
    )
}

/// What kind copies from the first control plane to every other one before it
/// joins.
const KIND_SHARED_FILES: [&str; 9] = [
    "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/pki/ca.crt",
    "/etc/kubernetes/pki/ca.key",
    "/etc/kubernetes/pki/front-proxy-ca.crt",
    "/etc/kubernetes/pki/front-proxy-ca.key",
    "/etc/kubernetes/pki/sa.pub",
    "/etc/kubernetes/pki/sa.key",
    "/etc/kubernetes/pki/etcd/ca.crt",
    "/etc/kubernetes/pki/etcd/ca.key",
];

impl Sim {
    /// `docker exec -i` with `input` on stdin: (success, stdout, stderr).
    fn exec_stdin(&self, cmd: &[&str], input: &[u8]) -> (bool, String, String) {
        use std::io::Write;
        let mut child = std::process::Command::new("docker")
            .args(["exec", "-i", &self.name])
            .args(cmd)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The container's address on `net`.
    async fn ip_on(&self, net: &str) -> String {
        let info = self
            .docker
            .inspect_container(&self.name, None::<InspectContainerOptions>)
            .await
            .unwrap();
        info.network_settings
            .and_then(|n| n.networks)
            .and_then(|n| n.get(net).cloned())
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty())
            .unwrap_or_else(|| panic!("{} has no address on {net}", self.name))
    }

    /// A kubeconfig (kubeadm's admin.conf read from `from`) pointed at this
    /// node's API port published on 127.0.0.1.
    async fn kubeconfig_via(&self, admin_conf: &str) -> String {
        rewrite(
            admin_conf,
            &names(),
            &format!("https://127.0.0.1:{}", published(self).await),
        )
        .unwrap()
    }
}

/// kind's HA control plane, node by node as kind drives it: `kubeadm init` on the
/// first control plane writes the shared certificates; a control-plane join
/// without the copied CA fails as kubeadm does; with the files copied the
/// second control plane joins, serves the same cluster with a certificate of
/// the copied CA (the first's admin.conf works against it), and keeps serving
/// reads and writes with the first stopped. Both control planes and the
/// worker come back after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kind_second_control_plane_joins_and_serves_alone() {
    let tag = unique_name("kha");
    ensure_sim_image().await;
    let net = test_network(&tag).await;
    let cluster = format!("kecs-simtest-{tag}");
    let mut nodes = Vec::new();
    for role in ["control-plane", "control-plane2", "worker"] {
        let (node, _) = start_image(
            SIM_KIND_IMAGE,
            None,
            &format!("{cluster}-{role}"),
            &[],
            &[],
            Some(&net.0),
            &[],
        )
        .await;
        nodes.push(node);
    }
    let (cp1, cp2, worker) = (&nodes[0], &nodes[1], &nodes[2]);
    let endpoint = format!("{}:6443", cp1.name);
    for (node, control_plane) in [(cp1, true), (cp2, true), (worker, false)] {
        node.wait_line("Reached target multi-user.target", Duration::from_secs(10))
            .await
            .unwrap();
        let ip = node.ip_on(&net.0).await;
        // the first control plane's JoinConfiguration is never used
        let secondary = control_plane && node.name != cp1.name;
        node.write_file(
            "/kind/kubeadm.conf",
            &kind_kubeadm_conf(&cluster, &endpoint, &ip, secondary),
        );
    }

    let (ok, out, err) = cp1.exec_full(&[
        "kubeadm",
        "init",
        "--config=/kind/kubeadm.conf",
        "--skip-token-print",
        "--v=6",
    ]);
    assert!(ok, "kubeadm init: {out}{err}");
    // every file kind copies is there, PEM, the keys private
    for file in KIND_SHARED_FILES {
        let (ok, mode) = cp1.exec(&["stat", "-c", "%a", file]);
        assert!(ok, "{file} missing on the first control plane");
        if file.ends_with(".key") {
            assert_eq!(mode.trim(), "600", "{file}");
        }
        if file.contains("/pki/") {
            let (_, pem) = cp1.exec(&["cat", file]);
            assert!(pem.starts_with("-----BEGIN "), "{file}: {pem}");
        }
    }

    // kubeadm join --control-plane without the copied CA fails, naming the file
    let join = ["kubeadm", "join", "--config", "/kind/kubeadm.conf", "--v=6"];
    let (ok, out, err) = cp2.exec_full(&join);
    assert!(!ok, "joined without the shared certificates: {out}");
    assert!(
        err.contains("failure loading certificate for CA: couldn't load the certificate file /etc/kubernetes/pki/ca.crt"),
        "{err}"
    );

    // kind's copy: cat on the first, mkdir -p + cp /dev/stdin on the second
    for file in KIND_SHARED_FILES {
        let content = read_file(&cp1.docker, &cp1.name, file).await.unwrap();
        let dir = file.rsplit_once('/').unwrap().0;
        assert!(cp2.exec(&["mkdir", "-p", dir]).0);
        let (ok, _, err) = cp2.exec_stdin(&["cp", "/dev/stdin", file], &content);
        assert!(ok, "copying {file}: {err}");
    }
    let (ok, out, err) = cp2.exec_full(&join);
    assert!(ok, "control-plane join: {out}{err}");
    let (ok, out, err) = worker.exec_full(&join);
    assert!(ok, "worker join: {out}{err}");

    // the first control plane's admin credentials, against the second
    let admin = String::from_utf8(
        read_file(&cp1.docker, &cp1.name, "/etc/kubernetes/admin.conf")
            .await
            .unwrap(),
    )
    .unwrap();
    let via2 = kube_client(&cp2.kubeconfig_via(&admin).await).await;
    let node_api: Api<Node> = Api::all(via2.clone());
    let listed = node_api.list(&ListParams::default()).await.unwrap().items;
    let mut names: Vec<&str> = listed
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    names.sort();
    assert_eq!(names, [&cp1.name, &cp2.name, &worker.name]);
    assert!(listed.iter().all(ready), "every node is Ready");
    for n in &listed {
        let is_cp = n
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key("node-role.kubernetes.io/control-plane"));
        assert_eq!(
            is_cp,
            n.metadata.name.as_deref() != Some(worker.name.as_str()),
            "{:?}",
            n.metadata.name
        );
    }
    // the second control plane's own admin.conf is for the same cluster
    let (_, own) = cp2.exec(&["cat", "/etc/kubernetes/admin.conf"]);
    assert!(
        own.contains(&format!("server: https://{endpoint}")),
        "{own}"
    );

    // with the first control plane stopped the second serves reads and writes
    cp1.stop().await;
    assert_eq!(
        node_api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    let made = Api::<Namespace>::all(via2.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "while-cp1-away"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    Api::<Namespace>::all(via2.clone())
        .get("while-cp1-away")
        .await
        .unwrap();

    // the first comes back with what was written meanwhile
    let started = cp1.start().await;
    cp1.wait_line_after(
        "kube-apiserver is listening",
        &started,
        Duration::from_secs(15),
    )
    .await
    .unwrap();
    let via1 = kube_client(&cp1.kubeconfig_via(&admin).await).await;
    let caught_up = Api::<Namespace>::all(via1.clone())
        .get("while-cp1-away")
        .await
        .unwrap();
    assert_eq!(caught_up.metadata.uid, made.metadata.uid);

    // the second and the worker rejoin after a restart
    for node in [cp2, worker] {
        node.stop().await;
        let started = node.start().await;
        node.wait_line_after(
            "Rejoined the cluster after a restart",
            &started,
            Duration::from_secs(15),
        )
        .await
        .unwrap();
    }
    let via2 = kube_client(&cp2.kubeconfig_via(&admin).await).await;
    let listed = Api::<Node>::all(via2)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(listed.len(), 3);
    assert!(
        listed.iter().all(ready),
        "every node is Ready after the restarts"
    );
}
