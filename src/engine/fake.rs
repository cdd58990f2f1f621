//! An in-memory Docker Engine for unit tests: containers, networks, volumes and
//! images kept in a mutex, answering as Docker Engine 20.10 does where the
//! providers care (names unique for containers but not for networks, 404/409/403
//! with Docker's messages, ports bound at start, IPs while running, logs that
//! make every node look ready at once, kind's exec steps, k3s's and kubeadm's
//! kubeconfigs). Every call is logged (operation, target), and faults can be
//! injected at a call index or at the first call of an operation: a 500, a 409,
//! a connection reset (before the engine acts, or after it acted: the answer
//! lost), or a hang until the test releases it. A fault fires once; the calls
//! after it (a rollback) succeed.
//!
//! The kubeconfigs the fake nodes hold point (once rewritten by the providers)
//! at a Kubernetes API stand-in on 127.0.0.1 ([`kube_api`]) that lists 64 Ready
//! nodes, so the steps that confirm readiness through kube-rs (start) run too.

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

use super::models::{
    ContainerConfig, ContainerCreateBody, ContainerCreateResponse, ContainerInspectResponse,
    ContainerState, ContainerStateStatusEnum, ContainerSummary, ContainerSummaryNetworkSettings,
    ContainerSummaryStateEnum, ContainerUpdateBody, CreateImageInfo, EndpointResource,
    EndpointSettings, EventMessage, ImageInspect, Ipam, IpamConfig, Network, NetworkConnectRequest,
    NetworkCreateRequest, NetworkCreateResponse, NetworkDisconnectRequest, NetworkInspect,
    NetworkSettings, PortBinding, PortSummary, PortSummaryTypeEnum, Volume, VolumeCreateRequest,
    VolumeListResponse,
};
use super::{query, server_error, Engine, EngineError, EngineResult, ExecOutput, ExecRequest};

/// One Engine call as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    /// The `Engine` method's name.
    pub op: &'static str,
    /// The object it names: a container, network, volume or image name (a list
    /// call: its filters).
    pub target: String,
    /// The object's name where the target is an ID (or ID prefix) of a
    /// container or network the engine knows; else the target.
    pub object: String,
    /// More about it: an exec's command, a create's image…
    pub detail: String,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.op, self.target)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// What an injected fault does to the call it hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum FaultKind {
    /// 500 before the engine acts.
    ServerError,
    /// 409 before the engine acts.
    Conflict,
    /// The connection resets before the engine acts.
    ConnectionReset,
    /// The engine acts, then the connection resets: the caller does not know.
    LostResponse,
    /// The call waits until [`FakeEngine::release_hang`], then proceeds.
    Hang,
}

impl FaultKind {
    /// Every kind that makes the call fail.
    pub const FAILURES: [FaultKind; 4] = [
        FaultKind::ServerError,
        FaultKind::Conflict,
        FaultKind::ConnectionReset,
        FaultKind::LostResponse,
    ];
}

/// Which call a fault hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum When {
    /// The call at this index of the call log (0 = the first since the last
    /// [`FakeEngine::clear_calls`]).
    At(usize),
    /// The first call of this operation.
    Op(&'static str),
    /// The first call of this operation whose target contains this text.
    OpOn(&'static str, String),
}

#[derive(Debug, Clone)]
struct Fault {
    when: When,
    kind: FaultKind,
    fired: bool,
}

/// A fault that hit a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fired {
    pub index: usize,
    pub call: Call,
    pub kind: FaultKind,
}

/// One object of the engine's state, as [`FakeEngine::snapshot`] lists it (run
/// state left out).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Object {
    /// "container", "network" or "volume".
    pub kind: &'static str,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// Where a container stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Created,
    Running,
    Exited,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        }
    }
}

#[derive(Debug, Clone)]
struct Endpoint {
    ip: String,
    aliases: Vec<String>,
}

#[derive(Debug, Clone)]
struct Container {
    id: String,
    name: String,
    image: String,
    labels: HashMap<String, String>,
    body: ContainerCreateBody,
    status: Status,
    exit_code: i64,
    started_at: String,
    finished_at: String,
    /// By network ID.
    endpoints: BTreeMap<String, Endpoint>,
    /// Bound at start, released at stop: "6443/tcp" → (host IP, host port).
    published: BTreeMap<String, Vec<(String, u16)>>,
    files: BTreeMap<String, Vec<u8>>,
    /// (Unix seconds, line) of every run.
    logs: Vec<(i64, String)>,
    anonymous_volumes: Vec<String>,
}

#[derive(Debug, Clone)]
struct Net {
    id: String,
    name: String,
    driver: String,
    labels: HashMap<String, String>,
    options: HashMap<String, String>,
    ipam: Vec<IpamConfig>,
    enable_ipv6: bool,
    /// bridge, host, none: always there, never in a snapshot.
    builtin: bool,
    /// The third and fourth octets of the next address handed out.
    next_host: u32,
    /// 172.<octet>.0.0/16
    octet: u32,
}

#[derive(Debug, Clone)]
struct Vol {
    labels: HashMap<String, String>,
    driver: String,
}

/// Everything the engine holds; cloned by [`FakeEngine::fork`].
#[derive(Debug, Clone)]
struct World {
    containers: BTreeMap<String, Container>,
    /// In creation order (names may repeat).
    networks: Vec<Net>,
    volumes: BTreeMap<String, Vol>,
    missing_images: BTreeSet<String>,
    pullable_images: BTreeSet<String>,
    /// Unix seconds; every state change moves it on by one.
    clock: i64,
    serial: u64,
    next_port: u16,
    next_octet: u32,
}

#[derive(Debug, Default)]
struct Journal {
    calls: Vec<Call>,
    faults: Vec<Fault>,
    fired: Vec<Fired>,
    /// Indexes of the calls that answered an error (injected or not).
    failed: Vec<usize>,
}

/// A call under way: its index, and whether its answer is to be lost.
#[derive(Debug, Clone, Copy)]
struct Entry {
    index: usize,
    lost: bool,
}

struct Inner {
    world: Mutex<World>,
    journal: Mutex<Journal>,
    hang_reached: Notify,
    release: Notify,
    /// Acts as an engine whose containers must leave networks one at a time.
    one_leave_at_a_time: AtomicBool,
    /// Stops and removals under way now, and the most ever at once.
    leaves: Mutex<(usize, usize)>,
}

/// A stop or removal under way (see [`FakeEngine::leave`]).
struct LeaveGuard<'a>(&'a FakeEngine);

impl Drop for LeaveGuard<'_> {
    fn drop(&mut self) {
        let mut l = self
            .0
            .inner
            .leaves
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        l.0 -= 1;
    }
}

/// The in-memory engine. Clones share one state.
#[derive(Clone)]
pub(crate) struct FakeEngine {
    inner: Arc<Inner>,
}

impl Default for FakeEngine {
    fn default() -> Self {
        FakeEngine::new()
    }
}

/// Where the fake clock starts (2026-09-21): any fixed time works.
const EPOCH: i64 = 1_790_000_000;
/// Docker's "never": a container that never ran or never stopped.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
const KIND_VERSION: &str = "v1.33.1";

/// What the kind node image holds that the provider reads.
const KIND_CNI: &str =
    "# would you kindly template this file\nkind: DaemonSet\npodSubnet: {{ .PodSubnet }}\n";
const KIND_STORAGE: &str = "kind: StorageClass\nmetadata:\n  name: standard\n";

impl FakeEngine {
    pub fn new() -> FakeEngine {
        let mut world = World {
            containers: BTreeMap::new(),
            networks: Vec::new(),
            volumes: BTreeMap::new(),
            missing_images: BTreeSet::new(),
            pullable_images: BTreeSet::new(),
            clock: EPOCH,
            serial: 0,
            next_port: 40_000,
            next_octet: 17,
        };
        for (name, driver) in [("bridge", "bridge"), ("host", "host"), ("none", "null")] {
            let mut net = world.new_network(name, driver);
            net.builtin = true;
            if name == "bridge" {
                net.options
                    .insert("com.docker.network.driver.mtu".into(), "1500".into());
            }
            world.networks.push(net);
        }
        FakeEngine::with_world(world)
    }

    fn with_world(world: World) -> FakeEngine {
        FakeEngine {
            inner: Arc::new(Inner {
                world: Mutex::new(world),
                journal: Mutex::new(Journal::default()),
                hang_reached: Notify::new(),
                release: Notify::new(),
                one_leave_at_a_time: AtomicBool::new(false),
                leaves: Mutex::new((0, 0)),
            }),
        }
    }

    /// An independent engine holding a copy of this one's objects, with an
    /// empty call log and no faults.
    pub fn fork(&self) -> FakeEngine {
        FakeEngine::with_world(self.world().clone())
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.inner.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn journal(&self) -> MutexGuard<'_, Journal> {
        self.inner.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a fault; it fires once, at the first call it matches.
    pub fn inject(&self, when: When, kind: FaultKind) {
        self.journal().faults.push(Fault {
            when,
            kind,
            fired: false,
        });
    }

    /// Every call since the last [`clear_calls`](Self::clear_calls).
    pub fn calls(&self) -> Vec<Call> {
        self.journal().calls.clone()
    }

    /// Empties the call log: the next call has index 0.
    pub fn clear_calls(&self) {
        let mut j = self.journal();
        j.calls.clear();
        j.failed.clear();
    }

    /// The faults that hit a call so far.
    pub fn fired(&self) -> Vec<Fired> {
        self.journal().fired.clone()
    }

    /// Image `image` is not present (until pulled, if pullable).
    pub fn remove_image(&self, image: &str) {
        self.world().missing_images.insert(image.to_string());
    }

    /// A pull of `image` succeeds.
    pub fn make_pullable(&self, image: &str) {
        self.world().pullable_images.insert(image.to_string());
    }

    /// Answers [`Engine::one_leave_at_a_time`] with `on` (as Docker 20.10 does).
    pub fn set_one_leave_at_a_time(&self, on: bool) {
        self.inner.one_leave_at_a_time.store(on, Ordering::Relaxed);
    }

    /// The most stop and removal calls that were under way at the same time.
    pub fn most_leaves_at_once(&self) -> usize {
        self.inner
            .leaves
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
    }

    /// Counts a stop or removal while it is under way; it yields once, so calls
    /// started together are seen together.
    async fn leave(&self) -> LeaveGuard<'_> {
        {
            let mut l = self.inner.leaves.lock().unwrap_or_else(|p| p.into_inner());
            l.0 += 1;
            l.1 = l.1.max(l.0);
        }
        tokio::task::yield_now().await;
        LeaveGuard(self)
    }

    /// Waits until a call hangs on a [`FaultKind::Hang`] fault.
    pub async fn hang_reached(&self) {
        self.inner.hang_reached.notified().await
    }

    /// Lets the hung call proceed (or the next one that would hang).
    pub fn release_hang(&self) {
        self.inner.release.notify_one();
    }

    /// Containers, networks (not bridge/host/none) and volumes, by name and
    /// labels, sorted; run state is left out.
    pub fn snapshot(&self) -> Vec<Object> {
        let w = self.world();
        let labels = |l: &HashMap<String, String>| -> BTreeMap<String, String> {
            l.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let mut out: Vec<Object> = w
            .containers
            .values()
            .map(|c| Object {
                kind: "container",
                name: c.name.clone(),
                labels: labels(&c.labels),
            })
            .chain(w.networks.iter().filter(|n| !n.builtin).map(|n| Object {
                kind: "network",
                name: n.name.clone(),
                labels: labels(&n.labels),
            }))
            .chain(w.volumes.iter().map(|(name, v)| Object {
                kind: "volume",
                name: name.clone(),
                labels: labels(&v.labels),
            }))
            .collect();
        out.sort();
        out
    }

    /// Every container's name and state ("created", "running", "exited").
    pub fn container_states(&self) -> BTreeMap<String, &'static str> {
        self.world()
            .containers
            .values()
            .map(|c| (c.name.clone(), c.status.as_str()))
            .collect()
    }

    /// The restart policy a container has now ("" when none was set).
    pub fn restart_policy(&self, container: &str) -> String {
        self.world()
            .containers
            .get(container)
            .and_then(|c| c.body.host_config.as_ref())
            .and_then(|h| h.restart_policy.as_ref())
            .and_then(|p| p.name)
            .map(|n| n.to_string())
            .unwrap_or_default()
    }

    /// A file in a container (as uploaded or written by an exec).
    pub fn file(&self, container: &str, path: &str) -> Option<Vec<u8>> {
        self.world()
            .containers
            .get(container)?
            .files
            .get(path)
            .cloned()
    }

    /// Logs the call and applies the fault it matches, if any: Err for a fault
    /// that fails it before the engine acts; otherwise the call proceeds (a
    /// hang has been released by then), its answer lost when the fault says so.
    async fn enter(&self, op: &'static str, target: &str, detail: String) -> EngineResult<Entry> {
        let (index, fault) = self.decide(op, target, detail);
        let entry = |lost| Entry { index, lost };
        match fault {
            Some(FaultKind::Hang) => {
                self.inner.hang_reached.notify_one();
                self.inner.release.notified().await;
                Ok(entry(false))
            }
            Some(FaultKind::LostResponse) => Ok(entry(true)),
            Some(kind) => {
                self.journal().failed.push(index);
                Err(fault_error(kind))
            }
            None => Ok(entry(false)),
        }
    }

    /// The synchronous half of [`enter`](Self::enter): logs the call and
    /// returns its index and the fault that hits it.
    fn decide(&self, op: &'static str, target: &str, detail: String) -> (usize, Option<FaultKind>) {
        let object = self.world().object_name(op, target);
        let mut j = self.journal();
        let index = j.calls.len();
        let call = Call {
            op,
            target: target.to_string(),
            object,
            detail,
        };
        let hit = j.faults.iter_mut().find(|f| {
            !f.fired
                && match &f.when {
                    When::At(i) => *i == index,
                    When::Op(o) => *o == op,
                    When::OpOn(o, t) => *o == op && target.contains(t.as_str()),
                }
        });
        let kind = hit.map(|f| {
            f.fired = true;
            f.kind
        });
        if let Some(kind) = kind {
            j.fired.push(Fired {
                index,
                call: call.clone(),
                kind,
            });
        }
        j.calls.push(call);
        (index, kind)
    }

    /// The answer of a call whose engine work is done: lost when the fault
    /// says so. Errors are noted.
    fn answer<T>(&self, entry: Entry, result: EngineResult<T>) -> EngineResult<T> {
        let result = if entry.lost {
            Err(fault_error(FaultKind::ConnectionReset))
        } else {
            result
        };
        if result.is_err() {
            self.journal().failed.push(entry.index);
        }
        result
    }

    /// A stream call: `items` (after a hang is released), or the fault's
    /// error as its only item (a lost answer: after the engine acted).
    fn stream_call<T: Send + 'static>(
        &self,
        (index, fault): (usize, Option<FaultKind>),
        items: EngineResult<Vec<T>>,
    ) -> BoxStream<'static, EngineResult<T>> {
        let items: Vec<EngineResult<T>> = match (fault, items) {
            (None | Some(FaultKind::Hang), Ok(items)) => items.into_iter().map(Ok).collect(),
            (None | Some(FaultKind::Hang), Err(e)) => vec![Err(e)],
            (Some(FaultKind::LostResponse), _) => {
                vec![Err(fault_error(FaultKind::ConnectionReset))]
            }
            (Some(kind), _) => vec![Err(fault_error(kind))],
        };
        if items.iter().any(|i| i.is_err()) {
            self.journal().failed.push(index);
        }
        if fault == Some(FaultKind::Hang) {
            self.inner.hang_reached.notify_one();
            let inner = self.inner.clone();
            return stream::once(async move {
                inner.release.notified().await;
                stream::iter(items)
            })
            .flatten()
            .boxed();
        }
        stream::iter(items).boxed()
    }

    /// The calls that answered an error, in call order.
    pub fn failed_calls(&self) -> Vec<Call> {
        let j = self.journal();
        let mut failed = j.failed.clone();
        failed.sort_unstable();
        failed.dedup();
        failed
            .into_iter()
            .filter_map(|i| j.calls.get(i).cloned())
            .collect()
    }
}

fn fault_error(kind: FaultKind) -> EngineError {
    match kind {
        FaultKind::ServerError => server_error(500, "injected failure"),
        FaultKind::Conflict => server_error(409, "injected conflict"),
        FaultKind::ConnectionReset | FaultKind::LostResponse | FaultKind::Hang => {
            EngineError::IOError {
                err: std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection reset by peer",
                ),
            }
        }
    }
}

fn no_such_container(name: &str) -> EngineError {
    server_error(404, format!("No such container: {name}"))
}

/// `2026-09-21T12:26:40.000000000Z` for Unix seconds (civil from days,
/// Howard Hinnant).
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000000000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `label` filter terms ("k" or "k=v"): all must match.
fn labels_match(labels: &HashMap<String, String>, terms: &[String]) -> bool {
    terms.iter().all(|t| match t.split_once('=') {
        Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
        None => labels.contains_key(t.as_str()),
    })
}

fn filter_text(filters: &Option<HashMap<String, Vec<String>>>) -> String {
    let Some(f) = filters else {
        return String::new();
    };
    let sorted: BTreeMap<_, _> = f.iter().collect();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={}", v.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Docker refuses filters it does not know.
fn check_filters(
    filters: &Option<HashMap<String, Vec<String>>>,
    known: &[&str],
) -> EngineResult<()> {
    for k in filters.iter().flat_map(|f| f.keys()) {
        if !known.contains(&k.as_str()) {
            return Err(server_error(400, format!("invalid filter '{k}'")));
        }
    }
    Ok(())
}

fn filter_terms<'a>(filters: &'a Option<HashMap<String, Vec<String>>>, key: &str) -> &'a [String] {
    filters
        .as_ref()
        .and_then(|f| f.get(key))
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The log lines that make a node look ready at once, by its role labels
/// (every known line for an unknown container).
fn ready_lines(labels: &HashMap<String, String>) -> Vec<&'static str> {
    const K3S_SERVER: [&str; 2] = [
        "level=info msg=\"Running kube-apiserver --advertise-port=6443\"",
        "level=info msg=\"k3s is up and running\"",
    ];
    const K3S_AGENT: [&str; 1] = ["level=info msg=\"Successfully registered node\""];
    const NGINX: [&str; 1] = ["[notice] 1#1: start worker processes"];
    const REGISTRY: [&str; 1] = ["level=info msg=\"listening on [::]:5000\""];
    const KIND_NODE: [&str; 1] = ["Reached target Multi-User System."];
    const ENVOY: [&str; 1] = ["[info][main] starting main dispatch loop"];
    let k3d = labels.get("k3d.role").map(String::as_str);
    let kind = labels.get("io.x-k8s.kind.role").map(String::as_str);
    match (k3d, kind) {
        (Some("server"), _) => K3S_SERVER.to_vec(),
        (Some("agent"), _) => K3S_AGENT.to_vec(),
        (Some("loadbalancer" | "noRole"), _) => NGINX.to_vec(),
        (Some("registry"), _) => REGISTRY.to_vec(),
        (_, Some("control-plane" | "worker")) => KIND_NODE.to_vec(),
        (_, Some("external-load-balancer")) => ENVOY.to_vec(),
        _ => [
            K3S_SERVER.as_slice(),
            &K3S_AGENT,
            &NGINX,
            &REGISTRY,
            &KIND_NODE,
            &ENVOY,
        ]
        .concat(),
    }
}

fn is_kind_node(labels: &HashMap<String, String>) -> bool {
    matches!(
        labels.get("io.x-k8s.kind.role").map(String::as_str),
        Some("control-plane" | "worker")
    )
}

fn env_value(body: &ContainerCreateBody, key: &str) -> Option<String> {
    body.env
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix(&format!("{key}=")).map(String::from))
}

/// A tar holding one file, named by its base name, as the archive API sends it.
fn one_file_tar(path: &str, content: &[u8]) -> EngineResult<Vec<u8>> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o600);
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_data(&mut header, name, content)?;
    Ok(builder.into_inner()?)
}

impl World {
    fn tick(&mut self) -> i64 {
        self.clock += 1;
        self.clock
    }

    fn new_id(&mut self) -> String {
        self.serial += 1;
        let x = self.serial.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        format!(
            "{x:016x}{:016x}{:016x}{:016x}",
            x.rotate_left(17) ^ 0x5a5a,
            x.rotate_left(31),
            x ^ 0xfeed
        )
    }

    fn new_network(&mut self, name: &str, driver: &str) -> Net {
        self.next_octet += 1;
        Net {
            id: self.new_id(),
            name: name.to_string(),
            driver: driver.to_string(),
            labels: HashMap::new(),
            options: HashMap::new(),
            ipam: vec![IpamConfig {
                subnet: Some(format!("172.{}.0.0/16", self.next_octet)),
                gateway: Some(format!("172.{}.0.1", self.next_octet)),
                ..Default::default()
            }],
            enable_ipv6: false,
            builtin: false,
            next_host: 2,
            octet: self.next_octet,
        }
    }

    /// What a call's target names: a network's or container's name for an ID.
    fn object_name(&self, op: &str, target: &str) -> String {
        let found = if op.contains("network") {
            self.network_index(target)
                .ok()
                .map(|i| self.networks[i].name.clone())
        } else {
            self.container_name(target).ok()
        };
        found.unwrap_or_else(|| target.to_string())
    }

    /// A container by name (with or without '/'), ID or unique ID prefix.
    fn container_name(&self, key: &str) -> EngineResult<String> {
        let key = key.trim_start_matches('/');
        if self.containers.contains_key(key) {
            return Ok(key.to_string());
        }
        let by_id: Vec<&Container> = self
            .containers
            .values()
            .filter(|c| !key.is_empty() && c.id.starts_with(key))
            .collect();
        match by_id.as_slice() {
            [c] => Ok(c.name.clone()),
            _ => Err(no_such_container(key)),
        }
    }

    fn container(&mut self, key: &str) -> EngineResult<&mut Container> {
        let name = self.container_name(key)?;
        self.containers
            .get_mut(&name)
            .ok_or_else(|| no_such_container(key))
    }

    /// A network by full ID, then by name (ambiguous when several share it),
    /// then by unique ID prefix, as Docker resolves it.
    fn network_index(&self, key: &str) -> EngineResult<usize> {
        if let Some(i) = self.networks.iter().position(|n| n.id == key) {
            return Ok(i);
        }
        let named: Vec<usize> = (0..self.networks.len())
            .filter(|i| self.networks[*i].name == key)
            .collect();
        match named.as_slice() {
            [i] => return Ok(*i),
            [] => {}
            many => {
                return Err(server_error(
                    400,
                    format!(
                        "network {key} is ambiguous ({} matches found based on name)",
                        many.len()
                    ),
                ))
            }
        }
        let by_id: Vec<usize> = (0..self.networks.len())
            .filter(|i| !key.is_empty() && self.networks[*i].id.starts_with(key))
            .collect();
        match by_id.as_slice() {
            [i] => Ok(*i),
            _ => Err(server_error(404, format!("network {key} not found"))),
        }
    }

    fn attach(&mut self, container: &str, net: usize, aliases: Vec<String>) {
        let n = &mut self.networks[net];
        let ip = format!(
            "172.{}.{}.{}",
            n.octet,
            n.next_host / 256,
            n.next_host % 256
        );
        n.next_host += 1;
        let id = n.id.clone();
        if let Some(c) = self.containers.get_mut(container) {
            c.endpoints.insert(id, Endpoint { ip, aliases });
        }
    }

    fn attached(&self, net_id: &str) -> Vec<&Container> {
        self.containers
            .values()
            .filter(|c| c.endpoints.contains_key(net_id))
            .collect()
    }

    fn network_of_id(&self, id: &str) -> Option<&Net> {
        self.networks.iter().find(|n| n.id == id)
    }

    fn volume_in_use(&self, name: &str) -> Vec<String> {
        self.containers
            .values()
            .filter(|c| {
                c.anonymous_volumes.iter().any(|v| v == name)
                    || c.body
                        .host_config
                        .as_ref()
                        .and_then(|h| h.binds.as_ref())
                        .is_some_and(|b| b.iter().any(|b| b.split(':').next() == Some(name)))
            })
            .map(|c| c.id.clone())
            .collect()
    }

    // containers

    fn create_container(
        &mut self,
        name: Option<String>,
        body: ContainerCreateBody,
    ) -> EngineResult<ContainerCreateResponse> {
        let name = match name {
            Some(n) => n.trim_start_matches('/').to_string(),
            None => format!("fake_{}", self.serial + 1),
        };
        if let Some(c) = self.containers.get(&name) {
            return Err(server_error(
                409,
                format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                    c.id
                ),
            ));
        }
        let image = body.image.clone().unwrap_or_default();
        if image.is_empty() || self.missing_images.contains(&image) {
            return Err(server_error(404, format!("No such image: {image}")));
        }
        // the networks it joins must exist
        let hc = body.host_config.clone().unwrap_or_default();
        let mut joins: Vec<(usize, Vec<String>)> = Vec::new();
        let mode = hc.network_mode.clone().unwrap_or_else(|| "default".into());
        let mode = if mode == "default" {
            "bridge".to_string()
        } else {
            mode
        };
        if !mode.starts_with("container:") {
            joins.push((self.network_index(&mode)?, Vec::new()));
        }
        let endpoints = body
            .networking_config
            .as_ref()
            .and_then(|n| n.endpoints_config.clone())
            .unwrap_or_default();
        let mut endpoint_names: Vec<&String> = endpoints.keys().collect();
        endpoint_names.sort();
        for net in endpoint_names {
            let i = self.network_index(net)?;
            let aliases = endpoints[net].aliases.clone().unwrap_or_default();
            match joins.iter_mut().find(|(j, _)| *j == i) {
                Some(j) => j.1 = aliases,
                None => joins.push((i, aliases)),
            }
        }
        // named volumes in binds are made on the fly (unlabelled), as Docker does
        for bind in hc.binds.iter().flatten() {
            let source = bind.split(':').next().unwrap_or_default();
            if !source.is_empty() && !source.starts_with('/') && !self.volumes.contains_key(source)
            {
                self.volumes.insert(
                    source.to_string(),
                    Vol {
                        labels: HashMap::new(),
                        driver: "local".into(),
                    },
                );
            }
        }
        let mut anonymous = Vec::new();
        for _ in body.volumes.iter().flatten() {
            let v = self.new_id();
            self.volumes.insert(
                v.clone(),
                Vol {
                    labels: HashMap::new(),
                    driver: "local".into(),
                },
            );
            anonymous.push(v);
        }
        let labels = body.labels.clone().unwrap_or_default();
        let mut files = BTreeMap::new();
        if is_kind_node(&labels) {
            files.insert(
                "/kind/version".into(),
                format!("{KIND_VERSION}\n").into_bytes(),
            );
            files.insert(
                "/kind/manifests/default-cni.yaml".into(),
                KIND_CNI.as_bytes().to_vec(),
            );
            files.insert(
                "/kind/manifests/default-storage.yaml".into(),
                KIND_STORAGE.as_bytes().to_vec(),
            );
        }
        let id = self.new_id();
        self.tick();
        self.containers.insert(
            name.clone(),
            Container {
                id: id.clone(),
                name: name.clone(),
                image,
                labels,
                body,
                status: Status::Created,
                exit_code: 0,
                started_at: ZERO_TIME.into(),
                finished_at: ZERO_TIME.into(),
                endpoints: BTreeMap::new(),
                published: BTreeMap::new(),
                files,
                logs: Vec::new(),
                anonymous_volumes: anonymous,
            },
        );
        for (net, aliases) in joins {
            self.attach(&name, net, aliases);
        }
        Ok(ContainerCreateResponse {
            id,
            warnings: Vec::new(),
        })
    }

    fn start_container(&mut self, key: &str) -> EngineResult<()> {
        let name = self.container_name(key)?;
        let c = &self.containers[&name];
        if c.status == Status::Running {
            return Err(server_error(304, ""));
        }
        for net in c.endpoints.keys() {
            if self.network_of_id(net).is_none() {
                return Err(server_error(404, format!("network {net} not found")));
            }
        }
        // bind the ports: concrete ones must be free, empty ones get a free one
        let mut wanted: Vec<(String, String, Option<u16>)> = Vec::new();
        let bindings: BTreeMap<String, Vec<PortBinding>> = c
            .body
            .host_config
            .as_ref()
            .and_then(|h| h.port_bindings.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
        for (port, list) in &bindings {
            for b in list {
                let ip = b
                    .host_ip
                    .clone()
                    .filter(|i| !i.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into());
                let host_port = b
                    .host_port
                    .as_deref()
                    .and_then(|p| p.parse::<u16>().ok())
                    .filter(|p| *p != 0);
                wanted.push((port.clone(), ip, host_port));
            }
        }
        let proto = |port: &str| port.split('/').nth(1).unwrap_or("tcp").to_string();
        let taken = |w: &World, ip: &str, host_port: u16, proto_: &str| {
            w.containers.values().any(|o| {
                o.status == Status::Running
                    && o.published.iter().any(|(p, binds)| {
                        proto(p) == proto_
                            && binds.iter().any(|(oip, op)| {
                                *op == host_port
                                    && (oip == ip || oip == "0.0.0.0" || ip == "0.0.0.0")
                            })
                    })
            })
        };
        let mut published: BTreeMap<String, Vec<(String, u16)>> = BTreeMap::new();
        for (port, ip, host_port) in wanted {
            let p = proto(&port);
            let host_port = match host_port {
                Some(hp) => {
                    let mine = published
                        .get(&port)
                        .is_some_and(|v| v.iter().any(|(_, x)| *x == hp));
                    if mine || taken(self, &ip, hp, &p) {
                        return Err(server_error(
                            500,
                            format!(
                                "driver failed programming external connectivity on endpoint {name} ({}): Bind for {ip}:{hp} failed: port is already allocated",
                                self.containers[&name].id
                            ),
                        ));
                    }
                    hp
                }
                None => loop {
                    self.next_port = self.next_port.checked_add(1).unwrap_or(40_000);
                    let candidate = self.next_port;
                    if !taken(self, &ip, candidate, &p) {
                        break candidate;
                    }
                },
            };
            published.entry(port).or_default().push((ip, host_port));
        }
        let now = self.tick();
        let c = self.containers.get_mut(&name).expect("looked up above");
        c.status = Status::Running;
        c.exit_code = 0;
        c.started_at = rfc3339(now);
        c.published = published;
        for line in ready_lines(&c.labels) {
            c.logs.push((now, line.to_string()));
        }
        // k3s writes its kubeconfig at every start
        if c.labels.get("k3d.role").map(String::as_str) == Some("server") {
            if let Some(path) = env_value(&c.body, "K3S_KUBECONFIG_OUTPUT") {
                c.files
                    .insert(path, kubeconfig_yaml("default", "default").into_bytes());
            }
        }
        Ok(())
    }

    fn stop_container(&mut self, key: &str) -> EngineResult<()> {
        let now = self.clock + 1;
        let c = self.container(key)?;
        if c.status != Status::Running {
            return Err(server_error(304, ""));
        }
        c.status = Status::Exited;
        c.exit_code = 0;
        c.finished_at = rfc3339(now);
        c.published.clear();
        self.tick();
        Ok(())
    }

    fn remove_container(&mut self, key: &str, force: bool, volumes: bool) -> EngineResult<()> {
        let name = self.container_name(key)?;
        let c = &self.containers[&name];
        if c.status == Status::Running && !force {
            return Err(server_error(
                409,
                format!(
                    "You cannot remove a running container {}. Stop the container before attempting removal or force remove",
                    c.id
                ),
            ));
        }
        let c = self.containers.remove(&name).expect("looked up above");
        if volumes {
            for v in c.anonymous_volumes {
                if self.volume_in_use(&v).is_empty() {
                    self.volumes.remove(&v);
                }
            }
        }
        self.tick();
        Ok(())
    }

    fn update_container(&mut self, key: &str, body: ContainerUpdateBody) -> EngineResult<()> {
        let c = self.container(key)?;
        if let Some(policy) = body.restart_policy {
            c.body
                .host_config
                .get_or_insert_with(Default::default)
                .restart_policy = Some(policy);
        }
        Ok(())
    }

    fn endpoint_settings(&self, c: &Container) -> HashMap<String, EndpointSettings> {
        c.endpoints
            .iter()
            .filter_map(|(net_id, ep)| {
                let net = self.network_of_id(net_id)?;
                let running = c.status == Status::Running;
                let gateway = net.ipam.first().and_then(|i| i.gateway.clone());
                Some((
                    net.name.clone(),
                    EndpointSettings {
                        network_id: Some(net.id.clone()),
                        endpoint_id: Some(if running {
                            net_id.clone()
                        } else {
                            String::new()
                        }),
                        aliases: Some(ep.aliases.clone()),
                        ip_address: Some(if running {
                            ep.ip.clone()
                        } else {
                            String::new()
                        }),
                        ip_prefix_len: Some(if running { 16 } else { 0 }),
                        gateway: if running {
                            gateway
                        } else {
                            Some(String::new())
                        },
                        ..Default::default()
                    },
                ))
            })
            .collect()
    }

    fn inspect_container(&self, key: &str) -> EngineResult<ContainerInspectResponse> {
        let name = self.container_name(key)?;
        let c = &self.containers[&name];
        let status = match c.status {
            Status::Created => ContainerStateStatusEnum::CREATED,
            Status::Running => ContainerStateStatusEnum::RUNNING,
            Status::Exited => ContainerStateStatusEnum::EXITED,
        };
        let ports = c
            .published
            .iter()
            .map(|(port, binds)| {
                (
                    port.clone(),
                    Some(
                        binds
                            .iter()
                            .map(|(ip, p)| PortBinding {
                                host_ip: Some(ip.clone()),
                                host_port: Some(p.to_string()),
                            })
                            .collect(),
                    ),
                )
            })
            .collect();
        let b = &c.body;
        Ok(ContainerInspectResponse {
            id: Some(c.id.clone()),
            name: Some(format!("/{}", c.name)),
            image: Some(c.image.clone()),
            state: Some(ContainerState {
                status: Some(status),
                running: Some(c.status == Status::Running),
                paused: Some(false),
                restarting: Some(false),
                oom_killed: Some(false),
                dead: Some(false),
                pid: Some(if c.status == Status::Running { 4242 } else { 0 }),
                exit_code: Some(c.exit_code),
                error: Some(String::new()),
                started_at: Some(c.started_at.clone()),
                finished_at: Some(c.finished_at.clone()),
                health: None,
            }),
            config: Some(ContainerConfig {
                image: b.image.clone(),
                labels: Some(c.labels.clone()),
                env: b.env.clone(),
                cmd: b.cmd.clone(),
                exposed_ports: b.exposed_ports.clone(),
                volumes: b.volumes.clone(),
                ..Default::default()
            }),
            host_config: b.host_config.clone(),
            network_settings: Some(NetworkSettings {
                ports: Some(ports),
                networks: Some(self.endpoint_settings(c)),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn summary(&self, c: &Container) -> ContainerSummary {
        let typ = |port: &str| match port.split('/').nth(1) {
            Some("udp") => PortSummaryTypeEnum::UDP,
            Some("sctp") => PortSummaryTypeEnum::SCTP,
            _ => PortSummaryTypeEnum::TCP,
        };
        let private = |port: &str| {
            port.split('/')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0)
        };
        let ports = if c.status == Status::Running {
            c.published
                .iter()
                .flat_map(|(port, binds)| {
                    binds.iter().map(move |(ip, p)| PortSummary {
                        ip: Some(ip.clone()),
                        private_port: private(port),
                        public_port: Some(*p),
                        typ: Some(typ(port)),
                    })
                })
                .collect()
        } else {
            c.body
                .exposed_ports
                .iter()
                .flatten()
                .map(|port| PortSummary {
                    ip: None,
                    private_port: private(port),
                    public_port: None,
                    typ: Some(typ(port)),
                })
                .collect()
        };
        let (state, status) = match c.status {
            Status::Created => (ContainerSummaryStateEnum::CREATED, "Created".to_string()),
            Status::Running => (
                ContainerSummaryStateEnum::RUNNING,
                "Up 1 second".to_string(),
            ),
            Status::Exited => (
                ContainerSummaryStateEnum::EXITED,
                format!("Exited ({}) 1 second ago", c.exit_code),
            ),
        };
        ContainerSummary {
            id: Some(c.id.clone()),
            names: Some(vec![format!("/{}", c.name)]),
            image: Some(c.image.clone()),
            command: c.body.cmd.as_ref().map(|cmd| cmd.join(" ")),
            ports: Some(ports),
            labels: Some(c.labels.clone()),
            state: Some(state),
            status: Some(status),
            network_settings: Some(ContainerSummaryNetworkSettings {
                networks: Some(self.endpoint_settings(c)),
            }),
            ..Default::default()
        }
    }

    fn list_containers(
        &self,
        options: &query::ListContainersOptions,
    ) -> EngineResult<Vec<ContainerSummary>> {
        check_filters(&options.filters, &["label", "name", "id", "status"])?;
        let f = &options.filters;
        Ok(self
            .containers
            .values()
            .filter(|c| options.all || c.status == Status::Running)
            .filter(|c| labels_match(&c.labels, filter_terms(f, "label")))
            .filter(|c| {
                let names = filter_terms(f, "name");
                names.is_empty()
                    || names
                        .iter()
                        .any(|n| c.name.contains(n.trim_start_matches('/')))
            })
            .filter(|c| {
                let ids = filter_terms(f, "id");
                ids.is_empty() || ids.iter().any(|i| c.id.starts_with(i.as_str()))
            })
            .filter(|c| {
                let states = filter_terms(f, "status");
                states.is_empty() || states.iter().any(|s| s == c.status.as_str())
            })
            .map(|c| self.summary(c))
            .collect())
    }

    fn logs(&self, key: &str, options: &query::LogsOptions) -> EngineResult<Vec<Bytes>> {
        let name = self.container_name(key)?;
        let c = &self.containers[&name];
        let since = i64::from(options.since);
        let mut lines: Vec<Bytes> = c
            .logs
            .iter()
            .filter(|(at, _)| since <= 0 || *at >= since)
            .map(|(at, line)| {
                Bytes::from(if options.timestamps {
                    format!("{} {line}\n", rfc3339(*at))
                } else {
                    format!("{line}\n")
                })
            })
            .collect();
        if let Ok(tail) = options.tail.parse::<usize>() {
            lines = lines.split_off(lines.len().saturating_sub(tail));
        }
        Ok(lines)
    }

    fn download_archive(&self, key: &str, path: &str) -> EngineResult<Vec<u8>> {
        let name = self.container_name(key)?;
        let c = &self.containers[&name];
        let content = c.files.get(path).ok_or_else(|| {
            server_error(
                404,
                format!("Could not find the file {path} in container {name}"),
            )
        })?;
        one_file_tar(path, content)
    }

    fn upload_archive(&mut self, key: &str, tar: &[u8]) -> EngineResult<()> {
        let c = self.container(key)?;
        let mut archive = tar::Archive::new(tar);
        let bad = |e: std::io::Error| server_error(400, format!("unpacking the archive: {e}"));
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = format!("/{}", entry.path().map_err(bad)?.display());
            let mut content = Vec::new();
            entry.read_to_end(&mut content).map_err(bad)?;
            c.files.insert(path, content);
        }
        Ok(())
    }

    /// The commands the providers run, as a node would answer them; anything
    /// else succeeds silently.
    fn exec(&mut self, key: &str, request: &ExecRequest) -> EngineResult<ExecOutput> {
        let c = self.container(key)?;
        if c.status != Status::Running {
            return Err(server_error(
                409,
                format!("Container {} is not running", c.id),
            ));
        }
        let cmd: Vec<&str> = request.cmd.iter().map(String::as_str).collect();
        let ok = |output: String| ExecOutput {
            exit_code: 0,
            output,
        };
        let fail = |code: i64, output: String| ExecOutput {
            exit_code: code,
            output,
        };
        let missing = |path: &str| fail(1, format!("cat: {path}: No such file or directory\n"));
        const KUBEADM_CONF: &str = "/kind/kubeadm.conf";
        const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
        Ok(match cmd.as_slice() {
            ["cat", path] => match c.files.get(*path) {
                Some(content) => ok(String::from_utf8_lossy(content).into_owned()),
                None => missing(path),
            },
            ["cp", "/dev/stdin", path] => {
                c.files
                    .insert(path.to_string(), request.stdin.clone().unwrap_or_default());
                ok(String::new())
            }
            ["kubeadm", "init", ..] | ["kubeadm", "join", ..]
                if !c.files.contains_key(KUBEADM_CONF) =>
            {
                fail(
                    1,
                    format!("open {KUBEADM_CONF}: no such file or directory\n"),
                )
            }
            ["kubeadm", "init", ..] => {
                c.files.insert(
                    ADMIN_CONF.into(),
                    kubeconfig_yaml("kubernetes", "kubernetes-admin").into_bytes(),
                );
                for f in [
                    "ca.crt",
                    "ca.key",
                    "front-proxy-ca.crt",
                    "front-proxy-ca.key",
                    "sa.pub",
                    "sa.key",
                    "etcd/ca.crt",
                    "etcd/ca.key",
                ] {
                    c.files.insert(
                        format!("/etc/kubernetes/pki/{f}"),
                        format!("-----BEGIN FAKE-----\n{f}\n-----END FAKE-----\n").into_bytes(),
                    );
                }
                ok("Your Kubernetes control-plane has initialized successfully!\n".into())
            }
            ["kubectl", ..] if !c.files.contains_key(ADMIN_CONF) => fail(
                1,
                "The connection to the server localhost:8080 was refused\n".into(),
            ),
            _ => ok(String::new()),
        })
    }

    // networks

    fn create_network(&mut self, req: NetworkCreateRequest) -> EngineResult<NetworkCreateResponse> {
        if matches!(req.name.as_str(), "bridge" | "host" | "none") {
            return Err(server_error(
                403,
                format!(
                    "{} is a pre-defined network and cannot be created",
                    req.name
                ),
            ));
        }
        let mut net = self.new_network(&req.name, req.driver.as_deref().unwrap_or("bridge"));
        net.labels = req.labels.unwrap_or_default();
        net.options = req.options.unwrap_or_default();
        net.enable_ipv6 = req.enable_ipv6.unwrap_or(false);
        // an IPv6 subnet asked for comes after the IPv4 one Docker picks
        for cfg in req.ipam.and_then(|i| i.config).unwrap_or_default() {
            if cfg.subnet.as_deref().is_some_and(|s| s.contains(':')) {
                net.ipam.push(cfg);
            }
        }
        let id = net.id.clone();
        self.networks.push(net);
        self.tick();
        Ok(NetworkCreateResponse {
            id,
            warning: String::new(),
        })
    }

    fn network_model(&self, n: &Net) -> Network {
        Network {
            name: Some(n.name.clone()),
            id: Some(n.id.clone()),
            scope: Some("local".into()),
            driver: Some(n.driver.clone()),
            enable_ipv4: Some(true),
            enable_ipv6: Some(n.enable_ipv6),
            ipam: Some(Ipam {
                driver: Some("default".into()),
                config: Some(n.ipam.clone()),
                options: None,
            }),
            internal: Some(false),
            attachable: Some(false),
            ingress: Some(false),
            options: Some(n.options.clone()),
            labels: Some(n.labels.clone()),
            ..Default::default()
        }
    }

    fn inspect_network(&self, key: &str) -> EngineResult<NetworkInspect> {
        let n = &self.networks[self.network_index(key)?];
        let m = self.network_model(n);
        let containers = self
            .attached(&n.id)
            .into_iter()
            .map(|c| {
                let running = c.status == Status::Running;
                let ip = &c.endpoints[&n.id].ip;
                (
                    c.id.clone(),
                    EndpointResource {
                        name: Some(c.name.clone()),
                        endpoint_id: Some(n.id.clone()),
                        ipv4_address: Some(if running {
                            format!("{ip}/16")
                        } else {
                            String::new()
                        }),
                        ..Default::default()
                    },
                )
            })
            .collect();
        Ok(NetworkInspect {
            name: m.name,
            id: m.id,
            scope: m.scope,
            driver: m.driver,
            enable_ipv4: m.enable_ipv4,
            enable_ipv6: m.enable_ipv6,
            ipam: m.ipam,
            internal: m.internal,
            attachable: m.attachable,
            ingress: m.ingress,
            options: m.options,
            labels: m.labels,
            containers: Some(containers),
            ..Default::default()
        })
    }

    fn list_networks(&self, options: &query::ListNetworksOptions) -> EngineResult<Vec<Network>> {
        check_filters(&options.filters, &["label", "name", "id", "driver"])?;
        let f = &options.filters;
        Ok(self
            .networks
            .iter()
            .filter(|n| labels_match(&n.labels, filter_terms(f, "label")))
            .filter(|n| {
                let names = filter_terms(f, "name");
                names.is_empty() || names.iter().any(|x| n.name.contains(x.as_str()))
            })
            .filter(|n| {
                let ids = filter_terms(f, "id");
                ids.is_empty() || ids.iter().any(|i| n.id.starts_with(i.as_str()))
            })
            .filter(|n| {
                let drivers = filter_terms(f, "driver");
                drivers.is_empty() || drivers.contains(&n.driver)
            })
            .map(|n| self.network_model(n))
            .collect())
    }

    fn remove_network(&mut self, key: &str) -> EngineResult<()> {
        let i = self.network_index(key)?;
        let n = &self.networks[i];
        if n.builtin {
            return Err(server_error(
                403,
                format!("{} is a pre-defined network and cannot be removed", n.name),
            ));
        }
        if !self.attached(&n.id).is_empty() {
            return Err(server_error(
                403,
                format!(
                    "error while removing network: network {} id {} has active endpoints",
                    n.name, n.id
                ),
            ));
        }
        self.networks.remove(i);
        self.tick();
        Ok(())
    }

    fn connect_network(&mut self, key: &str, req: NetworkConnectRequest) -> EngineResult<()> {
        let i = self.network_index(key)?;
        let name = self.container_name(&req.container)?;
        let net = &self.networks[i];
        if self.containers[&name].endpoints.contains_key(&net.id) {
            return Err(server_error(
                403,
                format!(
                    "endpoint with name {name} already exists in network {}",
                    net.name
                ),
            ));
        }
        let aliases = req
            .endpoint_config
            .and_then(|e| e.aliases)
            .unwrap_or_default();
        self.attach(&name, i, aliases);
        Ok(())
    }

    fn disconnect_network(&mut self, key: &str, req: NetworkDisconnectRequest) -> EngineResult<()> {
        let i = self.network_index(key)?;
        let net_id = self.networks[i].id.clone();
        let net_name = self.networks[i].name.clone();
        let c = self.container(&req.container)?;
        if c.endpoints.remove(&net_id).is_none() {
            return Err(server_error(
                403,
                format!(
                    "container {} is not connected to network {net_name}",
                    c.name
                ),
            ));
        }
        Ok(())
    }

    // volumes

    fn volume_model(&self, name: &str) -> Option<Volume> {
        let v = self.volumes.get(name)?;
        Some(Volume {
            name: name.to_string(),
            driver: v.driver.clone(),
            mountpoint: format!("/var/lib/docker/volumes/{name}/_data"),
            labels: v.labels.clone(),
            ..Default::default()
        })
    }

    fn create_volume(&mut self, req: VolumeCreateRequest) -> EngineResult<Volume> {
        let name = match req.name.filter(|n| !n.is_empty()) {
            Some(n) => n,
            None => self.new_id(),
        };
        // an existing name answers with the existing volume, labels unchanged
        if !self.volumes.contains_key(&name) {
            self.volumes.insert(
                name.clone(),
                Vol {
                    labels: req.labels.unwrap_or_default(),
                    driver: req.driver.unwrap_or_else(|| "local".into()),
                },
            );
            self.tick();
        }
        Ok(self.volume_model(&name).expect("just made"))
    }

    fn inspect_volume(&self, name: &str) -> EngineResult<Volume> {
        self.volume_model(name)
            .ok_or_else(|| server_error(404, format!("get {name}: no such volume")))
    }

    fn list_volumes(
        &self,
        options: &query::ListVolumesOptions,
    ) -> EngineResult<VolumeListResponse> {
        check_filters(&options.filters, &["label", "name", "dangling", "driver"])?;
        let f = &options.filters;
        let volumes = self
            .volumes
            .iter()
            .filter(|(_, v)| labels_match(&v.labels, filter_terms(f, "label")))
            .filter(|(name, _)| {
                let names = filter_terms(f, "name");
                names.is_empty() || names.iter().any(|x| name.contains(x.as_str()))
            })
            .filter_map(|(name, _)| self.volume_model(name))
            .collect();
        Ok(VolumeListResponse {
            volumes: Some(volumes),
            warnings: Some(Vec::new()),
        })
    }

    fn remove_volume(&mut self, name: &str) -> EngineResult<()> {
        if !self.volumes.contains_key(name) {
            return Err(server_error(404, format!("get {name}: no such volume")));
        }
        let users = self.volume_in_use(name);
        if !users.is_empty() {
            return Err(server_error(
                409,
                format!("remove {name}: volume is in use - [{}]", users.join(", ")),
            ));
        }
        self.volumes.remove(name);
        self.tick();
        Ok(())
    }

    // images

    fn inspect_image(&self, image: &str) -> EngineResult<ImageInspect> {
        if self.missing_images.contains(image) {
            return Err(server_error(404, format!("No such image: {image}")));
        }
        Ok(ImageInspect {
            id: Some(format!("sha256:{:x}", image.len() * 7919)),
            repo_tags: Some(vec![image.to_string()]),
            ..Default::default()
        })
    }

    fn pull_image(&mut self, image: &str) -> EngineResult<Vec<CreateImageInfo>> {
        if !self.pullable_images.contains(image) {
            return Err(server_error(
                404,
                format!(
                    "pull access denied for {image}, repository does not exist or may require 'docker login'"
                ),
            ));
        }
        self.missing_images.remove(image);
        Ok(vec![CreateImageInfo {
            status: Some(format!("Status: Downloaded newer image for {image}")),
            ..Default::default()
        }])
    }
}

impl Engine for FakeEngine {
    async fn list_containers(
        &self,
        options: query::ListContainersOptions,
    ) -> EngineResult<Vec<ContainerSummary>> {
        let entry = self
            .enter(
                "list_containers",
                &filter_text(&options.filters),
                String::new(),
            )
            .await?;
        let r = self.world().list_containers(&options);
        self.answer(entry, r)
    }

    async fn inspect_container(&self, name: &str) -> EngineResult<ContainerInspectResponse> {
        let entry = self.enter("inspect_container", name, String::new()).await?;
        let r = self.world().inspect_container(name);
        self.answer(entry, r)
    }

    async fn create_container(
        &self,
        options: query::CreateContainerOptions,
        body: ContainerCreateBody,
    ) -> EngineResult<ContainerCreateResponse> {
        let name = options.name.clone().unwrap_or_default();
        let entry = self
            .enter(
                "create_container",
                &name,
                body.image.clone().unwrap_or_default(),
            )
            .await?;
        let r = self.world().create_container(options.name, body);
        self.answer(entry, r)
    }

    async fn start_container(&self, name: &str) -> EngineResult<()> {
        let entry = self.enter("start_container", name, String::new()).await?;
        let r = self.world().start_container(name);
        self.answer(entry, r)
    }

    async fn stop_container(&self, name: &str) -> EngineResult<()> {
        let _leaving = self.leave().await;
        let entry = self.enter("stop_container", name, String::new()).await?;
        let r = self.world().stop_container(name);
        self.answer(entry, r)
    }

    async fn remove_container(
        &self,
        name: &str,
        options: query::RemoveContainerOptions,
    ) -> EngineResult<()> {
        let _leaving = self.leave().await;
        let entry = self.enter("remove_container", name, String::new()).await?;
        let r = self
            .world()
            .remove_container(name, options.force, options.v);
        self.answer(entry, r)
    }

    async fn update_container(&self, name: &str, body: ContainerUpdateBody) -> EngineResult<()> {
        let entry = self.enter("update_container", name, String::new()).await?;
        let r = self.world().update_container(name, body);
        self.answer(entry, r)
    }

    fn logs(
        &self,
        name: &str,
        options: query::LogsOptions,
    ) -> BoxStream<'static, EngineResult<Bytes>> {
        let decided = self.decide("logs", name, String::new());
        let items = self.world().logs(name, &options);
        self.stream_call(decided, items)
    }

    async fn download_archive(&self, name: &str, path: &str) -> EngineResult<Vec<u8>> {
        let entry = self
            .enter("download_archive", name, path.to_string())
            .await?;
        let r = self.world().download_archive(name, path);
        self.answer(entry, r)
    }

    async fn upload_archive(&self, name: &str, tar: Vec<u8>) -> EngineResult<()> {
        let entry = self.enter("upload_archive", name, String::new()).await?;
        let r = self.world().upload_archive(name, &tar);
        self.answer(entry, r)
    }

    async fn exec(&self, name: &str, request: ExecRequest) -> EngineResult<ExecOutput> {
        let entry = self.enter("exec", name, request.cmd.join(" ")).await?;
        let r = self.world().exec(name, &request);
        self.answer(entry, r)
    }

    fn events(
        &self,
        options: query::EventsOptions,
    ) -> BoxStream<'static, EngineResult<EventMessage>> {
        let decided = self.decide("events", &filter_text(&options.filters), String::new());
        self.stream_call(decided, Ok(Vec::new()))
    }

    async fn create_network(
        &self,
        request: NetworkCreateRequest,
    ) -> EngineResult<NetworkCreateResponse> {
        let entry = self
            .enter("create_network", &request.name.clone(), String::new())
            .await?;
        let r = self.world().create_network(request);
        self.answer(entry, r)
    }

    async fn inspect_network(&self, name_or_id: &str) -> EngineResult<NetworkInspect> {
        let entry = self
            .enter("inspect_network", name_or_id, String::new())
            .await?;
        let r = self.world().inspect_network(name_or_id);
        self.answer(entry, r)
    }

    async fn list_networks(
        &self,
        options: query::ListNetworksOptions,
    ) -> EngineResult<Vec<Network>> {
        let entry = self
            .enter(
                "list_networks",
                &filter_text(&options.filters),
                String::new(),
            )
            .await?;
        let r = self.world().list_networks(&options);
        self.answer(entry, r)
    }

    async fn remove_network(&self, name_or_id: &str) -> EngineResult<()> {
        let entry = self
            .enter("remove_network", name_or_id, String::new())
            .await?;
        let r = self.world().remove_network(name_or_id);
        self.answer(entry, r)
    }

    async fn connect_network(
        &self,
        name_or_id: &str,
        request: NetworkConnectRequest,
    ) -> EngineResult<()> {
        let entry = self
            .enter("connect_network", name_or_id, request.container.clone())
            .await?;
        let r = self.world().connect_network(name_or_id, request);
        self.answer(entry, r)
    }

    async fn disconnect_network(
        &self,
        name_or_id: &str,
        request: NetworkDisconnectRequest,
    ) -> EngineResult<()> {
        let entry = self
            .enter("disconnect_network", name_or_id, request.container.clone())
            .await?;
        let r = self.world().disconnect_network(name_or_id, request);
        self.answer(entry, r)
    }

    async fn create_volume(&self, request: VolumeCreateRequest) -> EngineResult<Volume> {
        let name = request.name.clone().unwrap_or_default();
        let entry = self.enter("create_volume", &name, String::new()).await?;
        let r = self.world().create_volume(request);
        self.answer(entry, r)
    }

    async fn inspect_volume(&self, name: &str) -> EngineResult<Volume> {
        let entry = self.enter("inspect_volume", name, String::new()).await?;
        let r = self.world().inspect_volume(name);
        self.answer(entry, r)
    }

    async fn list_volumes(
        &self,
        options: query::ListVolumesOptions,
    ) -> EngineResult<VolumeListResponse> {
        let entry = self
            .enter(
                "list_volumes",
                &filter_text(&options.filters),
                String::new(),
            )
            .await?;
        let r = self.world().list_volumes(&options);
        self.answer(entry, r)
    }

    async fn remove_volume(&self, name: &str, _force: bool) -> EngineResult<()> {
        let entry = self.enter("remove_volume", name, String::new()).await?;
        let r = self.world().remove_volume(name);
        self.answer(entry, r)
    }

    async fn inspect_image(&self, image: &str) -> EngineResult<ImageInspect> {
        let entry = self.enter("inspect_image", image, String::new()).await?;
        let r = self.world().inspect_image(image);
        self.answer(entry, r)
    }

    fn one_leave_at_a_time(&self) -> bool {
        self.inner.one_leave_at_a_time.load(Ordering::Relaxed)
    }

    fn pull_image(&self, image: &str) -> BoxStream<'static, EngineResult<CreateImageInfo>> {
        let decided = self.decide("pull_image", image, String::new());
        // a pull that fails before the engine acts leaves the image missing
        let items = match decided.1 {
            Some(FaultKind::ServerError | FaultKind::Conflict | FaultKind::ConnectionReset) => {
                Ok(Vec::new())
            }
            _ => self.world().pull_image(image),
        };
        self.stream_call(decided, items)
    }
}

// ---------------------------------------------------------------------------
// The Kubernetes API stand-in

/// A kubeconfig as k3s or kubeadm writes one: entries named `cluster`, user
/// `user` with a bearer token, server on 127.0.0.1:6443 (the providers rewrite
/// names and server), trusting the stand-in API's CA.
pub(crate) fn kubeconfig_yaml(cluster: &str, user: &str) -> String {
    let ca = base64(kube_api().ca_pem.as_bytes());
    format!(
        "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: https://127.0.0.1:6443
  name: {cluster}
contexts:
- context:
    cluster: {cluster}
    user: {user}
  name: {user}@{cluster}
current-context: {user}@{cluster}
kind: Config
preferences: {{}}
users:
- name: {user}
  user:
    token: fake-token
"
    )
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A Kubernetes API over TLS on 127.0.0.1 for the whole test process: GET
/// `/api/v1/nodes` lists 64 Ready nodes (so any expected count is met), GET
/// `/version` answers a version; anything else is 404. Its own thread and
/// runtime, so it serves whatever runtime the test uses.
pub(crate) struct KubeApi {
    pub port: u16,
    ca_pem: String,
}

static KUBE_API: once_cell::sync::Lazy<KubeApi> = once_cell::sync::Lazy::new(KubeApi::start);

/// The process's Kubernetes API stand-in, started on first use.
pub(crate) fn kube_api() -> &'static KubeApi {
    &KUBE_API
}

impl KubeApi {
    fn start() -> KubeApi {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose, SanType,
        };
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        let ca_params = || {
            let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
            p.distinguished_name
                .push(DnType::CommonName, "fake-kube-ca");
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            p
        };
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_pem = ca_params()
            .self_signed(&ca_key)
            .expect("CA certificate")
            .pem();
        let issuer = Issuer::new(ca_params(), ca_key);
        let key = KeyPair::generate().expect("serving key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        params.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params
            .signed_by(&key, &issuer)
            .expect("serving certificate");
        let cert_der = rustls::pki_types::CertificateDer::from_pem_slice(cert.pem().as_bytes())
            .expect("serving certificate PEM");
        let key_der =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())
                .expect("serving key PEM");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert_der], key_der)
            .expect("TLS server configuration");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("loopback listener");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("listener address").port();
        std::thread::Builder::new()
            .name("fake-kube-api".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime of the fake Kubernetes API");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                let _ = serve_kube(tls).await;
                            }
                        });
                    }
                })
            })
            .expect("thread of the fake Kubernetes API");
        KubeApi { port, ca_pem }
    }
}

/// HTTP/1.1 requests on one connection, answered one after another.
async fn serve_kube(
    mut conn: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(p) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            pending.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&pending[..end]).into_owned();
        pending.drain(..end);
        // a request body (none expected from GETs) is skipped
        let body_len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        while pending.len() < body_len {
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            pending.extend_from_slice(&chunk[..n]);
        }
        pending.drain(..body_len);
        let path = head.split_whitespace().nth(1).unwrap_or("/");
        let (status, body) = kube_answer(path);
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(response.as_bytes()).await?;
        conn.flush().await?;
    }
}

fn kube_answer(path: &str) -> (&'static str, String) {
    let path = path.split('?').next().unwrap_or(path);
    match path {
        "/api/v1/nodes" => {
            let items: Vec<serde_json::Value> = (0..64)
                .map(|i| {
                    serde_json::json!({
                        "metadata": {"name": format!("node-{i}")},
                        "status": {"conditions": [{"type": "Ready", "status": "True"}]}
                    })
                })
                .collect();
            let list = serde_json::json!({
                "kind": "NodeList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": "1"},
                "items": items
            });
            ("200 OK", list.to_string())
        }
        "/version" => (
            "200 OK",
            serde_json::json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.1+fake",
                "gitCommit": "0", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"
            })
            .to_string(),
        ),
        _ => (
            "404 Not Found",
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": format!("{path} not found")
            })
            .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::models::{HostConfig, NetworkingConfig};
    use crate::engine::{server_message, status_code};

    fn body(image: &str, network: &str, labels: &[(&str, &str)]) -> ContainerCreateBody {
        ContainerCreateBody {
            image: Some(image.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            exposed_ports: Some(vec!["6443/tcp".into()]),
            host_config: Some(HostConfig {
                network_mode: Some(network.into()),
                port_bindings: Some(HashMap::from([(
                    "6443/tcp".to_string(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(String::new()),
                    }]),
                )])),
                binds: Some(vec!["data:/data".into()]),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network.to_string(),
                    EndpointSettings::default(),
                )])),
            }),
            ..Default::default()
        }
    }

    fn named(name: &str) -> query::CreateContainerOptions {
        query::CreateContainerOptions {
            name: Some(name.into()),
            ..Default::default()
        }
    }

    fn net(name: &str, labels: &[(&str, &str)]) -> NetworkCreateRequest {
        NetworkCreateRequest {
            name: name.into(),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn label_filter(terms: &[&str]) -> Option<HashMap<String, Vec<String>>> {
        Some(HashMap::from([(
            "label".to_string(),
            terms.iter().map(|t| t.to_string()).collect(),
        )]))
    }

    async fn log_text(e: &FakeEngine, name: &str, options: query::LogsOptions) -> String {
        let chunks: Vec<EngineResult<Bytes>> = e.logs(name, options).collect().await;
        chunks
            .into_iter()
            .map(|c| String::from_utf8_lossy(&c.expect("log chunk")).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn containers_live_as_in_docker() {
        let e = FakeEngine::new();
        let labels = [("app", "k3d"), ("k3d.role", "server")];
        // the network must exist first
        let err = e
            .create_container(named("n0"), body("img", "k3d-x", &labels))
            .await
            .unwrap_err();
        assert_eq!(status_code(&err), Some(404), "{err}");
        e.create_network(net("k3d-x", &[])).await.unwrap();
        let id = e
            .create_container(named("n0"), body("img", "k3d-x", &labels))
            .await
            .unwrap()
            .id;
        let err = e
            .create_container(named("n0"), body("img", "k3d-x", &labels))
            .await
            .unwrap_err();
        assert_eq!(status_code(&err), Some(409));
        assert!(server_message(&err).contains("\"/n0\" is already in use by container"));
        // created: no port, no address, never started
        let info = e.inspect_container("n0").await.unwrap();
        assert_eq!(
            info.state.as_ref().unwrap().started_at.as_deref(),
            Some(ZERO_TIME)
        );
        assert!(info
            .network_settings
            .as_ref()
            .unwrap()
            .ports
            .as_ref()
            .unwrap()
            .is_empty());
        e.start_container(&id[..12]).await.unwrap();
        let err = e.start_container("n0").await.unwrap_err();
        assert_eq!(status_code(&err), Some(304));
        let info = e.inspect_container("/n0").await.unwrap();
        let ns = info.network_settings.unwrap();
        let bound = ns.ports.unwrap()["6443/tcp"].clone().unwrap();
        assert_eq!(bound[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert!(
            bound[0]
                .host_port
                .as_deref()
                .unwrap()
                .parse::<u16>()
                .unwrap()
                > 0
        );
        assert!(!ns.networks.unwrap()["k3d-x"]
            .ip_address
            .clone()
            .unwrap()
            .is_empty());
        // the bind's named volume was made on the fly, unlabelled
        assert!(e.inspect_volume("data").await.unwrap().labels.is_empty());
        // a second container on a taken concrete port cannot start
        let mut b = body("img", "k3d-x", &[]);
        let pb = b
            .host_config
            .as_mut()
            .unwrap()
            .port_bindings
            .as_mut()
            .unwrap();
        pb.insert(
            "6443/tcp".into(),
            Some(vec![PortBinding {
                host_ip: Some("0.0.0.0".into()),
                host_port: Some(bound[0].host_port.clone().unwrap()),
            }]),
        );
        e.create_container(named("n1"), b).await.unwrap();
        let err = e.start_container("n1").await.unwrap_err();
        assert!(
            server_message(&err).contains("port is already allocated"),
            "{err}"
        );
        // list: label terms all match, `all` includes stopped ones
        let list = |all: bool, terms: &[&str]| query::ListContainersOptions {
            all,
            filters: label_filter(terms),
            ..Default::default()
        };
        assert_eq!(
            e.list_containers(list(true, &["app=k3d"]))
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            e.list_containers(list(true, &["app"])).await.unwrap().len(),
            1
        );
        assert_eq!(
            e.list_containers(list(true, &["app=kind"]))
                .await
                .unwrap()
                .len(),
            0
        );
        assert_eq!(e.list_containers(list(false, &[])).await.unwrap().len(), 1);
        assert_eq!(e.list_containers(list(true, &[])).await.unwrap().len(), 2);
        let bad = query::ListContainersOptions {
            filters: Some(HashMap::from([("nope".to_string(), vec![])])),
            ..Default::default()
        };
        assert_eq!(
            status_code(&e.list_containers(bad).await.unwrap_err()),
            Some(400)
        );
        let s = &e.list_containers(list(true, &["app=k3d"])).await.unwrap()[0];
        assert_eq!(s.names.as_ref().unwrap()[0], "/n0");
        let port = s.ports.as_ref().unwrap()[0].clone();
        assert_eq!(
            (port.private_port, port.public_port.is_some()),
            (6443, true)
        );
        // stop: FinishedAt after StartedAt, then 304; remove with force
        e.stop_container("n0").await.unwrap();
        assert_eq!(
            status_code(&e.stop_container("n0").await.unwrap_err()),
            Some(304)
        );
        let st = e.inspect_container("n0").await.unwrap().state.unwrap();
        assert!(st.finished_at.unwrap() > st.started_at.unwrap());
        // the volume is in use until both containers are gone
        assert_eq!(
            status_code(&e.remove_volume("data", true).await.unwrap_err()),
            Some(409)
        );
        let force = query::RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        e.remove_container("n0", force.clone()).await.unwrap();
        e.remove_container("n1", force.clone()).await.unwrap();
        assert_eq!(
            status_code(&e.remove_container("n0", force).await.unwrap_err()),
            Some(404)
        );
        e.remove_volume("data", false).await.unwrap();
        assert_eq!(
            e.snapshot(),
            vec![Object {
                kind: "network",
                name: "k3d-x".into(),
                labels: BTreeMap::new()
            }]
        );
    }

    #[tokio::test]
    async fn networks_share_names_and_keep_endpoints() {
        let e = FakeEngine::new();
        let a = e
            .create_network(net("k3d-x", &[("k3d.cluster", "x")]))
            .await
            .unwrap()
            .id;
        let b = e
            .create_network(net("k3d-x", &[("k3d.cluster", "x")]))
            .await
            .unwrap()
            .id;
        assert_ne!(a, b);
        let err = e.inspect_network("k3d-x").await.unwrap_err();
        assert_eq!(status_code(&err), Some(400));
        assert_eq!(
            server_message(&err),
            "network k3d-x is ambiguous (2 matches found based on name)"
        );
        assert_eq!(e.inspect_network(&a).await.unwrap().id, Some(a.clone()));
        let missing = e.inspect_network("nope").await.unwrap_err();
        assert_eq!(status_code(&missing), Some(404));
        let by = |key: &str, v: &str| query::ListNetworksOptions {
            filters: Some(HashMap::from([(key.to_string(), vec![v.to_string()])])),
        };
        assert_eq!(
            e.list_networks(by("label", "k3d.cluster=x"))
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(e.list_networks(by("name", "3d-")).await.unwrap().len(), 2);
        assert_eq!(
            e.list_networks(by("name", "bridge")).await.unwrap().len(),
            1
        );
        // a container on one of them holds it
        e.create_container(named("c"), body("img", &a, &[]))
            .await
            .unwrap();
        let err = e.remove_network(&a).await.unwrap_err();
        assert_eq!(status_code(&err), Some(403));
        assert!(server_message(&err).contains("has active endpoints"));
        let req = NetworkDisconnectRequest {
            container: "c".into(),
            force: Some(true),
        };
        e.disconnect_network(&a, req.clone()).await.unwrap();
        assert_eq!(
            status_code(&e.disconnect_network(&a, req).await.unwrap_err()),
            Some(403)
        );
        e.remove_network(&a).await.unwrap();
        e.remove_network("k3d-x").await.unwrap();
        assert_eq!(
            status_code(&e.remove_network("bridge").await.unwrap_err()),
            Some(403)
        );
        // connect twice: 403, as Docker 20.10
        let conn = NetworkConnectRequest {
            container: "c".into(),
            endpoint_config: None,
        };
        e.create_network(net("other", &[])).await.unwrap();
        e.connect_network("other", conn.clone()).await.unwrap();
        assert_eq!(
            status_code(&e.connect_network("other", conn).await.unwrap_err()),
            Some(403)
        );
        let inspected = e.inspect_network("other").await.unwrap();
        assert_eq!(inspected.containers.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn volumes_and_images() {
        let e = FakeEngine::new();
        let req = |labels: &[(&str, &str)]| VolumeCreateRequest {
            name: Some("v".into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        };
        e.create_volume(req(&[("app", "k3d")])).await.unwrap();
        // the existing one, labels unchanged
        let again = e.create_volume(req(&[("app", "other")])).await.unwrap();
        assert_eq!(again.labels["app"], "k3d");
        let list = |terms: &[&str]| query::ListVolumesOptions {
            filters: label_filter(terms),
        };
        assert_eq!(
            e.list_volumes(list(&["app=k3d"]))
                .await
                .unwrap()
                .volumes
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            e.list_volumes(list(&["app=x"]))
                .await
                .unwrap()
                .volumes
                .unwrap()
                .len(),
            0
        );
        e.remove_volume("v", true).await.unwrap();
        assert_eq!(
            status_code(&e.inspect_volume("v").await.unwrap_err()),
            Some(404)
        );

        e.inspect_image("any/image:1").await.unwrap();
        e.remove_image("gone:1");
        assert_eq!(
            status_code(&e.inspect_image("gone:1").await.unwrap_err()),
            Some(404)
        );
        let pulled: Vec<_> = e.pull_image("gone:1").collect().await;
        assert!(pulled[0].is_err());
        e.make_pullable("gone:1");
        let pulled: Vec<_> = e.pull_image("gone:1").collect().await;
        assert!(pulled.iter().all(|p| p.is_ok()));
        e.inspect_image("gone:1").await.unwrap();
    }

    #[tokio::test]
    async fn logs_exec_and_archives_serve_the_providers() {
        let e = FakeEngine::new();
        e.create_network(net("kind", &[])).await.unwrap();
        let mut b = body(
            "kind-node",
            "kind",
            &[("io.x-k8s.kind.role", "control-plane")],
        );
        b.volumes = Some(vec!["/var".into()]);
        e.create_container(named("cp"), b).await.unwrap();
        let exec = |cmd: &[&str], stdin: Option<&str>| ExecRequest {
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            stdin: stdin.map(|s| s.as_bytes().to_vec()),
            privileged: false,
        };
        // not running: 409
        let err = e
            .exec("cp", exec(&["cat", "/kind/version"], None))
            .await
            .unwrap_err();
        assert_eq!(status_code(&err), Some(409));
        e.start_container("cp").await.unwrap();
        let all = query::LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        assert!(log_text(&e, "cp", all.clone())
            .await
            .contains("Multi-User System"));
        let out = e
            .exec("cp", exec(&["cat", "/kind/version"], None))
            .await
            .unwrap();
        assert_eq!((out.exit_code, out.output.trim()), (0, KIND_VERSION));
        let out = e.exec("cp", exec(&["cat", "/nope"], None)).await.unwrap();
        assert_eq!(out.exit_code, 1);
        let init = exec(&["kubeadm", "init", "--config=/kind/kubeadm.conf"], None);
        assert_eq!(e.exec("cp", init.clone()).await.unwrap().exit_code, 1);
        let cp = exec(&["cp", "/dev/stdin", "/kind/kubeadm.conf"], Some("conf"));
        e.exec("cp", cp).await.unwrap();
        assert_eq!(e.file("cp", "/kind/kubeadm.conf").unwrap(), b"conf");
        assert_eq!(e.exec("cp", init).await.unwrap().exit_code, 0);
        // admin.conf through the archive API: a tar of one file, a valid kubeconfig
        let tar = e
            .download_archive("cp", "/etc/kubernetes/admin.conf")
            .await
            .unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("admin.conf"));
        let mut conf = String::new();
        entry.read_to_string(&mut conf).unwrap();
        let names = crate::kubeconfig::EntryNames {
            cluster: "kind-x".into(),
            context: "kind-x".into(),
            user: "kind-x".into(),
        };
        let rewritten = crate::kubeconfig::rewrite(&conf, &names, "https://127.0.0.1:1").unwrap();
        assert!(rewritten.contains("https://127.0.0.1:1"));
        let err = e.download_archive("cp", "/nope").await.unwrap_err();
        assert_eq!(status_code(&err), Some(404));
        // upload: files land at their paths
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(2);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "etc/x.yaml", &b"hi"[..])
            .unwrap();
        e.upload_archive("cp", builder.into_inner().unwrap())
            .await
            .unwrap();
        assert_eq!(e.file("cp", "/etc/x.yaml").unwrap(), b"hi");
        // a restart logs again, after FinishedAt; `since` and timestamps apply
        e.stop_container("cp").await.unwrap();
        let finished = e
            .inspect_container("cp")
            .await
            .unwrap()
            .state
            .unwrap()
            .finished_at
            .unwrap();
        e.start_container("cp").await.unwrap();
        let since = crate::docker::parse_timestamp(&finished).unwrap().0;
        let stamped = query::LogsOptions {
            since: since as i32,
            timestamps: true,
            ..all.clone()
        };
        let text = log_text(&e, "cp", stamped).await;
        assert_eq!(text.lines().count(), 1, "{text}");
        let (at, _) = text.split_once(' ').unwrap();
        assert!(
            crate::docker::parse_timestamp(at).unwrap()
                > crate::docker::parse_timestamp(&finished).unwrap()
        );
        assert_eq!(log_text(&e, "cp", all).await.lines().count(), 2);
        // the anonymous volume goes with the container (v=true)
        assert_eq!(
            e.snapshot().iter().filter(|o| o.kind == "volume").count(),
            2
        );
        let rm = query::RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        e.remove_container("cp", rm).await.unwrap();
        let volumes: Vec<String> = e
            .snapshot()
            .into_iter()
            .filter(|o| o.kind == "volume")
            .map(|o| o.name)
            .collect();
        assert_eq!(volumes, vec!["data".to_string()]);
    }

    #[tokio::test]
    async fn faults_fire_once_where_asked() {
        let e = FakeEngine::new();
        e.inject(When::At(1), FaultKind::ServerError);
        e.inject(When::Op("create_volume"), FaultKind::Conflict);
        e.inject(
            When::OpOn("inspect_image", "b:".into()),
            FaultKind::ConnectionReset,
        );
        e.inspect_image("a:1").await.unwrap();
        let err = e.inspect_image("a:1").await.unwrap_err();
        assert_eq!(
            (status_code(&err), server_message(&err)),
            (Some(500), "injected failure")
        );
        e.inspect_image("a:1").await.unwrap();
        let err = e.inspect_image("b:1").await.unwrap_err();
        match err {
            EngineError::IOError { err } => {
                assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset)
            }
            other => panic!("not a reset: {other:?}"),
        }
        e.inspect_image("b:1").await.unwrap();
        let vol = VolumeCreateRequest {
            name: Some("v".into()),
            ..Default::default()
        };
        assert_eq!(
            status_code(&e.create_volume(vol.clone()).await.unwrap_err()),
            Some(409)
        );
        assert!(e.snapshot().is_empty(), "a failed call changes nothing");
        e.create_volume(vol.clone()).await.unwrap();
        let fired = e.fired();
        assert_eq!(
            fired
                .iter()
                .map(|f| (f.index, f.call.op, f.kind))
                .collect::<Vec<_>>(),
            vec![
                (1, "inspect_image", FaultKind::ServerError),
                (3, "inspect_image", FaultKind::ConnectionReset),
                (5, "create_volume", FaultKind::Conflict),
            ]
        );
        assert_eq!(e.calls().len(), 7);
        // a lost answer: the engine acted, the caller saw a reset
        e.clear_calls();
        e.inject(When::At(0), FaultKind::LostResponse);
        let err = e.remove_volume("v", false).await.unwrap_err();
        assert!(matches!(err, EngineError::IOError { .. }));
        assert!(e.snapshot().is_empty());
        // streams: the fault is the stream's only item
        e.inject(When::Op("logs"), FaultKind::ServerError);
        let items: Vec<_> = e.logs("x", Default::default()).collect().await;
        assert_eq!(items.len(), 1);
        assert_eq!(status_code(items[0].as_ref().unwrap_err()), Some(500));
        // a fork copies the objects, not the log or the faults
        e.create_volume(vol).await.unwrap();
        e.inject(When::Op("inspect_volume"), FaultKind::ServerError);
        let f = e.fork();
        assert!(f.calls().is_empty());
        assert_eq!(f.snapshot(), e.snapshot());
        f.inspect_volume("v").await.unwrap();
    }

    #[tokio::test]
    async fn a_hang_waits_for_its_release() {
        let e = FakeEngine::new();
        e.inject(When::Op("create_volume"), FaultKind::Hang);
        let vol = VolumeCreateRequest {
            name: Some("v".into()),
            ..Default::default()
        };
        let (made, ()) = tokio::join!(e.create_volume(vol), async {
            e.hang_reached().await;
            // still hanging: nothing made yet
            assert!(e.snapshot().is_empty());
            e.release_hang();
        });
        made.unwrap();
        assert_eq!(e.snapshot().len(), 1);
        // a hung stream
        e.inject(When::Op("events"), FaultKind::Hang);
        let (events, ()) = tokio::join!(e.events(Default::default()).collect::<Vec<_>>(), async {
            e.hang_reached().await;
            e.release_hang();
        });
        assert!(events.is_empty());
    }

    #[test]
    fn times_and_base64() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_795_665_600), "2026-11-26T04:00:00.000000000Z");
        assert_eq!(
            crate::docker::parse_timestamp(&rfc3339(EPOCH)),
            Some((EPOCH, 0))
        );
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[tokio::test]
    async fn the_kube_api_lists_ready_nodes() {
        let names = crate::kubeconfig::EntryNames {
            cluster: "c".into(),
            context: "c".into(),
            user: "c".into(),
        };
        let server = format!("https://127.0.0.1:{}", kube_api().port);
        let kc =
            crate::kubeconfig::rewrite(&kubeconfig_yaml("default", "default"), &names, &server)
                .unwrap();
        let guard = crate::guard::Guard::new(
            "fake",
            tokio_util::sync::CancellationToken::new(),
            Some(std::time::Duration::from_secs(20)),
            None,
        );
        let client = crate::readiness::wait_nodes_ready(&kc, 3, &guard)
            .await
            .unwrap();
        assert_eq!(crate::readiness::version_of(&client).await, "v1.33.1+fake");
    }
}
