//! The facade callers use: owns the resolved configuration and one Docker client
//! (connected lazily, API version negotiated once), normalises and validates
//! names before any Docker call, serialises operations on the same cluster,
//! writes and removes kubeconfig files, and dispatches to the provider.

use bollard::Docker;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::config::{ClusterManagerConfig, ResolvedConfig};
use crate::docker;
use crate::error::{Error, Result};
use crate::guard::{Guard, Reporter};
use crate::kubeconfig;
use crate::names;
use crate::options::{validate_runtime_port, CreateOptions, CreatePlan, PortMapping};
use crate::provider::query::reachable_kubeconfig;
use crate::provider::{
    AnyProvider, ClusterInfo, Created, Kubeconfigs, PortInfo, Provider, ProviderCtx,
};
use crate::readiness;
use crate::registry::{self, RegistryCreate, RegistryInfo};

/// Upper bound for delete (and for the rollback a failed create runs).
const DELETE_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for stop: every node's grace period runs in parallel.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for adding or removing a port mapping.
const PORT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `info` waits for the API server's /version before leaving it empty.
const VERSION_TIMEOUT: Duration = Duration::from_secs(2);

/// Creates, deletes and inspects clusters: the library's entry point. One per
/// configuration; `Send + Sync`, so share it (`Arc`) between tasks. Operations
/// on the same cluster name are serialised; on different names they run
/// concurrently. Every operation takes a [`CancellationToken`]: cancelling it
/// ends the operation with `Cancelled` (a create first removes what it made).
pub struct ClusterManager {
    config: ResolvedConfig,
    provider: AnyProvider,
    docker: OnceCell<Docker>,
    self_container: OnceCell<Option<String>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    reporter: Option<Reporter>,
}

impl ClusterManager {
    /// Resolves `config` against the process environment. Makes no Docker call:
    /// the engine is contacted on first use.
    ///
    /// ```
    /// use kecs_cluster::{ClusterManager, ClusterManagerConfig};
    /// use std::path::Path;
    ///
    /// let manager = ClusterManager::new(&ClusterManagerConfig {
    ///     kubeconfig_path: Some("/tmp/kubeconfigs".into()), // a directory
    ///     ..Default::default() // the rest: $KECS_*, else the defaults
    /// })?;
    /// // names get the prefix ("kecs-") once; nothing has talked to Docker yet
    /// assert_eq!(manager.cluster_name("web")?, "kecs-web");
    /// assert_eq!(manager.cluster_name("kecs-web")?, "kecs-web");
    /// assert_eq!(
    ///     manager.kubeconfig_path("web")?,
    ///     Path::new("/tmp/kubeconfigs/kecs-web.config")
    /// );
    /// // bad input is refused before anything is created
    /// assert!(manager.cluster_name("Not_A_Name").is_err());
    /// # Ok::<(), kecs_cluster::Error>(())
    /// ```
    pub fn new(config: &ClusterManagerConfig) -> Result<ClusterManager> {
        Self::with_env(config, |k| std::env::var(k).ok())
    }

    pub fn with_env(
        config: &ClusterManagerConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ClusterManager> {
        let config = config.resolve(env)?;
        let provider = AnyProvider::for_kind(config.provider)?;
        Ok(ClusterManager {
            config,
            provider,
            docker: OnceCell::new(),
            self_container: OnceCell::new(),
            locks: Mutex::new(HashMap::new()),
            reporter: None,
        })
    }

    /// Reports each step of create and delete (the CLI prints them).
    pub fn with_reporter(mut self, reporter: Reporter) -> ClusterManager {
        self.reporter = Some(reporter);
        self
    }

    pub fn config(&self) -> &ResolvedConfig {
        &self.config
    }

    /// The full cluster name for `name` (prefix added once), validated.
    pub fn cluster_name(&self, name: &str) -> Result<String> {
        names::cluster_name(&self.config.name_prefix, name)
    }

    /// `<kubeconfigPath>/<cluster>.config`; pure, no Docker call.
    pub fn kubeconfig_path(&self, name: &str) -> Result<PathBuf> {
        let cluster = self.cluster_name(name)?;
        Ok(self.config.kubeconfig_dir.join(format!("{cluster}.config")))
    }

    fn host_kubeconfig_path(&self, cluster: &str) -> PathBuf {
        self.config
            .kubeconfig_dir
            .join(format!("{cluster}.host.config"))
    }

    fn lock_for(&self, cluster: &str) -> NameLock<'_> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        let lock = locks.entry(cluster.to_string()).or_default().clone();
        NameLock {
            locks: &self.locks,
            cluster: cluster.to_string(),
            lock,
        }
    }

    /// Waits for (and then holds, until the result drops) the lock of one
    /// cluster or registry name: operations on the same name never interleave.
    async fn hold(&self, name: &str, guard: &Guard) -> Result<HeldName<'_>> {
        let lock = self.lock_for(name);
        let held = guard
            .wait("waiting for another operation on the same name", async {
                Ok(lock.lock.clone().lock_owned().await)
            })
            .await?;
        Ok(HeldName {
            _held: held,
            _lock: lock,
        })
    }

    async fn docker(&self, guard: &Guard) -> Result<&Docker> {
        let endpoint = &self.config.docker;
        guard
            .wait("connecting to the Docker Engine", async {
                self.docker
                    .get_or_try_init(|| docker::connect_endpoint(endpoint))
                    .await
            })
            .await
    }

    async fn ctx<'a>(&'a self, docker: &'a Docker) -> ProviderCtx<'a> {
        let me = if self.config.container_mode {
            self.self_container
                .get_or_init(|| docker::self_container(docker))
                .await
                .as_deref()
        } else {
            None
        };
        ProviderCtx {
            docker,
            config: &self.config,
            self_container: me,
        }
    }

    fn guard(&self, subject: &str, cancel: &CancellationToken, timeout: Option<Duration>) -> Guard {
        Guard::new(subject, cancel.clone(), timeout, self.reporter.clone())
    }

    /// Creates the cluster and waits until it is ready; an existing cluster is
    /// returned as it is (idempotent, as in KECS). On failure nothing remains.
    ///
    /// Errors: `InvalidArgument` for bad names or options (before any Docker
    /// call), `ImageUnavailable` when an image is neither present nor pullable,
    /// `Timeout` after `options.timeout_ms`, `Cancelled` when `cancel` fires; in
    /// every case what the create made has been removed.
    ///
    /// ```no_run
    /// # use kecs_cluster::{CancellationToken, ClusterManager, ClusterManagerConfig, CreateOptions, PortMapping};
    /// # async fn run() -> kecs_cluster::Result<()> {
    /// let manager = ClusterManager::new(&ClusterManagerConfig::default())?;
    /// let cancel = CancellationToken::new();
    /// // e.g. tokio::signal::ctrl_c() cancelling it from another task
    /// let options = CreateOptions {
    ///     agents: 2,
    ///     // host 8080 → NodePort 30080 on every node, through the load balancer
    ///     ports: vec![PortMapping {
    ///         host_port: 8080,
    ///         container_port: 30080,
    ///         protocol: None,
    ///         host_ip: None,
    ///         node: None,
    ///     }],
    ///     ..Default::default()
    /// };
    /// let info = manager.create("web", &options, &cancel).await?;
    /// assert_eq!(info.name, "kecs-web");
    /// println!("API at https://{}:{}", info.api_host, info.api_port);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create(
        &self,
        name: &str,
        options: &CreateOptions,
        cancel: &CancellationToken,
    ) -> Result<ClusterInfo> {
        let cluster = self.cluster_name(name)?;
        let mut plan = options.validate(&self.config.image)?;
        self.provider.check_plan(&plan)?;
        let guard = self.guard(&format!("cluster {cluster}"), cancel, Some(plan.timeout));
        let _held = self.hold(&cluster, &guard).await?;
        let docker = self.docker(&guard).await?;
        let cx = self.ctx(docker).await;
        guard.check("checking whether the cluster exists")?;
        if self.provider.exists(&cx, &cluster).await? {
            guard.report(&format!("cluster {cluster} already exists"));
            return self.info_in(&cx, &cluster).await;
        }
        if self.config.enable_registry
            && plan.registry.create.is_none()
            && plan.registry.use_existing.is_empty()
        {
            // KECS's shared registry: made once, standalone, used by every cluster
            registry::ensure_shared(
                docker,
                &self.config.registry_image,
                self.config.registry_port,
                &guard,
            )
            .await?;
            plan.registry
                .use_existing
                .push(registry::SHARED_NAME.into());
        }
        let created = self
            .create_on_fixed_port(&cx, &cluster, &mut plan, &guard)
            .await?;
        if let Err(err) = self.write_kubeconfigs(&cluster, &created.kubeconfigs, &guard) {
            let rb = Guard::uncancellable(
                format!("rolling back cluster {cluster}"),
                DELETE_TIMEOUT,
                self.reporter.clone(),
            );
            self.remove_kubeconfigs(&cluster);
            if let Err(rb_err) = self.provider.delete(&cx, &cluster, &rb).await {
                return Err(err.with_suffix(format!(
                    "rolling back also failed, objects may remain: {rb_err}"
                )));
            }
            return Err(err);
        }
        // one list call; the version was asked while waiting for readiness
        let mut info = match self.provider.info(&cx, &cluster).await {
            Ok(Some(info)) => info,
            // the cluster is up and its kubeconfig written: a failed read-back of
            // its description does not make the create a failure
            _ => ClusterInfo {
                name: cluster.clone(),
                status: "running".into(),
                running: true,
                provider: self.config.provider.as_str().into(),
                node_count: plan.servers as usize + plan.agents as usize,
                version: String::new(),
                metadata: Default::default(),
                kubeconfig_path: String::new(),
                api_host: String::new(),
                api_port: 0,
                nodes: Vec::new(),
                load_balancer: String::new(),
                ports: Vec::new(),
            },
        };
        info.kubeconfig_path = self.kubeconfig_file(&cluster);
        info.version = created.version;
        Ok(info)
    }

    /// Creates with a concrete API host port, so Docker binds the same one at
    /// every start and the kubeconfig never goes stale. A port we chose (the
    /// caller asked for 0) that someone takes before our start is chosen again;
    /// the failed attempt was rolled back.
    async fn create_on_fixed_port(
        &self,
        cx: &ProviderCtx<'_>,
        cluster: &str,
        plan: &mut CreatePlan,
        guard: &Guard,
    ) -> Result<Created> {
        if plan.api_port != 0 {
            return self.provider.create(cx, cluster, plan, guard).await;
        }
        let mut attempt = 1;
        loop {
            plan.api_port = docker::free_host_port(self.config.api_host_ip)?;
            match self.provider.create(cx, cluster, plan, guard).await {
                Err(e) if attempt < 3 && e.is_port_conflict(plan.api_port) => {
                    guard.report(&format!(
                        "API port {} was taken before the start; choosing another",
                        plan.api_port
                    ));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn kubeconfig_file(&self, cluster: &str) -> String {
        self.config
            .kubeconfig_dir
            .join(format!("{cluster}.config"))
            .display()
            .to_string()
    }

    fn write_kubeconfigs(&self, cluster: &str, kcs: &Kubeconfigs, guard: &Guard) -> Result<()> {
        let main = self.config.kubeconfig_dir.join(format!("{cluster}.config"));
        if self.config.container_mode {
            kubeconfig::write_atomic(&main, &kcs.internal)?;
            kubeconfig::write_atomic(&self.host_kubeconfig_path(cluster), &kcs.host)?;
        } else {
            kubeconfig::write_atomic(&main, &kcs.host)?;
        }
        guard.report(&format!("wrote kubeconfig {}", main.display()));
        Ok(())
    }

    /// Removes our kubeconfig files for `cluster`; never anything else (a file
    /// whose clusters do not include ours is left alone).
    fn remove_kubeconfigs(&self, cluster: &str) -> Vec<Error> {
        let entry = self.provider.kubeconfig_cluster_entry(cluster);
        let main = self.config.kubeconfig_dir.join(format!("{cluster}.config"));
        [main, self.host_kubeconfig_path(cluster)]
            .iter()
            .filter_map(|p| kubeconfig::remove_if_ours(p, &entry).err())
            .collect()
    }

    /// Deletes the cluster and our kubeconfig files; a missing cluster is fine.
    ///
    /// ```no_run
    /// # use kecs_cluster::{CancellationToken, ClusterManager};
    /// # async fn run(manager: &ClusterManager) -> kecs_cluster::Result<()> {
    /// manager.delete("web", &CancellationToken::new()).await?;
    /// assert!(!manager.exists("web", &CancellationToken::new()).await?);
    /// manager.delete("web", &CancellationToken::new()).await?; // again: still Ok
    /// # Ok(())
    /// # }
    /// ```
    pub async fn delete(&self, name: &str, cancel: &CancellationToken) -> Result<()> {
        let cluster = self.cluster_name(name)?;
        let guard = self.guard(&format!("cluster {cluster}"), cancel, Some(DELETE_TIMEOUT));
        let _held = self.hold(&cluster, &guard).await?;
        let docker = self.docker(&guard).await?;
        let cx = self.ctx(docker).await;
        guard.check("deleting the cluster")?;
        let removed = self.provider.delete(&cx, &cluster, &guard).await?;
        if let Some(e) = self.remove_kubeconfigs(&cluster).into_iter().next() {
            return Err(e.context(format!("cluster {cluster}")));
        }
        if !removed {
            guard.report(&format!("cluster {cluster} did not exist"));
        }
        Ok(())
    }

    pub async fn exists(&self, name: &str, cancel: &CancellationToken) -> Result<bool> {
        let cluster = self.cluster_name(name)?;
        let guard = self.guard(&format!("cluster {cluster}"), cancel, None);
        let docker = self.docker(&guard).await?;
        let cx = self.ctx(docker).await;
        guard
            .wait(
                "checking whether the cluster exists",
                self.provider.exists(&cx, &cluster),
            )
            .await
    }

    /// Waits until an existing cluster's nodes are ready, at most `timeout`.
    pub async fn wait_ready(
        &self,
        name: &str,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let cluster = self.cluster_name(name)?;
        let guard = self.guard(&format!("cluster {cluster}"), cancel, Some(timeout));
        let docker = self.docker(&guard).await?;
        let cx = self.ctx(docker).await;
        self.provider.wait_ready(&cx, &cluster, &guard).await
    }

    /// The cluster's kubeconfig as YAML: node names on the cluster network in
    /// container mode, the published host port otherwise. `NotFound` when there
    /// is no such cluster. (Create also writes it to
    /// [`kubeconfig_path`](Self::kubeconfig_path).)
    ///
    /// ```no_run
    /// # use kecs_cluster::{CancellationToken, ClusterManager, ErrorCode};
    /// # async fn run(manager: &ClusterManager) -> Result<(), Box<dyn std::error::Error>> {
    /// let cancel = CancellationToken::new();
    /// let yaml = manager.kubeconfig("web", &cancel).await?;
    /// std::fs::write("/tmp/web.kubeconfig", &yaml)?; // kubectl --kubeconfig /tmp/web.kubeconfig …
    /// let missing = manager.kubeconfig("no-such-cluster", &cancel).await;
    /// assert_eq!(missing.unwrap_err().code(), ErrorCode::NotFound);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn kubeconfig(&self, name: &str, cancel: &CancellationToken) -> Result<String> {
        let cluster = self.cluster_name(name)?;
        let guard = self.guard(&format!("cluster {cluster}"), cancel, None);
        let docker = self.docker(&guard).await?;
        let cx = self.ctx(docker).await;
        // the provider's own lookup says NotFound when the cluster does not exist
        let kcs = guard
            .wait(
                "reading the kubeconfig",
                self.provider.kubeconfig(&cx, &cluster),
            )
            .await?;
        Ok(if self.config.container_mode {
            kcs.internal
        } else {
            kcs.host
        })
    }

    /// Merges the cluster's kubeconfig entries (cluster, user, context: what
    /// [`kubeconfig`](Self::kubeconfig) returns) into the file `path`, by default
    /// the one kubectl uses (`$KUBECONFIG`'s first entry, else `~/.kube/config`);
    /// returns the file. Opt-in: nothing else in the library touches that file.
    ///
    /// Every other entry and field is kept; the file and its directory are
    /// created when missing; it is replaced atomically with mode 0600 while
    /// holding `<file>.lock`, the lock kubectl and kind take. A lock held by
    /// someone else is waited for at most [`kubeconfig::LOCK_WAIT`], then the
    /// merge fails with Timeout and the file is unchanged. An entry of ours
    /// (same name, marked by a previous merge or with the same server and CA) is
    /// replaced; a same-named entry that is not ours fails with AlreadyExists.
    /// `current-context` changes only with `switch_context`.
    pub async fn merge_kubeconfig(
        &self,
        name: &str,
        path: Option<&std::path::Path>,
        switch_context: bool,
        cancel: &CancellationToken,
    ) -> Result<PathBuf> {
        let cluster = self.cluster_name(name)?;
        let target = self.merge_target(path)?;
        let ours = self.kubeconfig(name, cancel).await?;
        let guard = self.guard(&format!("cluster {cluster}"), cancel, None);
        let owner = kubeconfig::merge::Owner {
            provider: self.config.provider.as_str(),
            cluster: &cluster,
        };
        kubeconfig::merge::merge_into(&target, &ours, &owner, switch_context, &guard).await?;
        Ok(target)
    }

    /// Removes exactly the entries [`merge_kubeconfig`](Self::merge_kubeconfig)
    /// wrote for this cluster (recognised by the marker extension it put on
    /// them) from `path` (default as there), under the same lock; restores the
    /// previous `current-context` when it pointed at ours. Needs no Docker: it
    /// works after the cluster is gone. A missing file or one without our
    /// entries is left untouched. Returns whether anything was removed.
    pub async fn unmerge_kubeconfig(
        &self,
        name: &str,
        path: Option<&std::path::Path>,
        cancel: &CancellationToken,
    ) -> Result<bool> {
        let cluster = self.cluster_name(name)?;
        let target = self.merge_target(path)?;
        let guard = self.guard(&format!("cluster {cluster}"), cancel, None);
        let owner = kubeconfig::merge::Owner {
            provider: self.config.provider.as_str(),
            cluster: &cluster,
        };
        kubeconfig::merge::unmerge_from(&target, &owner, &guard).await
    }

    fn merge_target(&self, path: Option<&std::path::Path>) -> Result<PathBuf> {
        match path {
            Some(p) if p.as_os_str().is_empty() => Err(Error::InvalidArgument(
                "kubeconfig file: the path is empty".into(),
            )),
            Some(p) => Ok(p.to_path_buf()),
            None => kubeconfig::default_path(|k| std::env::var(k).ok()),
        }
    }

    pub async fn info(&self, name: &str, cancel: &CancellationToken) -> Result<ClusterInfo> {
        let cluster = self.cluster_name(name)?;
        let guard = self.guard(&format!("cluster {cluster}"), cancel, None);
        let docker = self.docker(&guard).await?;
        let cx = self.ctx(docker).await;
        guard
            .wait("reading cluster info", self.info_in(&cx, &cluster))
            .await
    }

    async fn info_in(&self, cx: &ProviderCtx<'_>, cluster: &str) -> Result<ClusterInfo> {
        let mut info = self
            .provider
            .info(cx, cluster)
            .await?
            .ok_or_else(|| not_found(cluster))?;
        info.kubeconfig_path = self.kubeconfig_file(cluster);
        if info.status == "running" {
            if let Ok(kcs) = self.provider.kubeconfig(cx, cluster).await {
                let reach =
                    reachable_kubeconfig(cx, &self.provider.network_name(cluster), &kcs).await;
                if let Ok(v) = readiness::server_version(reach, VERSION_TIMEOUT).await {
                    info.version = v;
                }
            }
        }
        Ok(info)
    }

    /// Stops every container of the cluster (idempotent). Serialised with create,
    /// delete and start of the same name. NotFound when there is no such cluster.
    pub async fn stop(&self, name: &str, cancel: &CancellationToken) -> Result<()> {
        let cluster = self.cluster_name(name)?;
        let guard = self.guard(&format!("cluster {cluster}"), cancel, Some(STOP_TIMEOUT));
        let _held = self.hold(&cluster, &guard).await?;
        let docker = self.docker(&guard).await?;
        let cx = self.ctx(docker).await;
        if !self.provider.stop(&cx, &cluster, &guard).await? {
            return Err(not_found(&cluster));
        }
        Ok(())
    }

    /// Starts a stopped cluster (idempotent): its containers as they are (same
    /// host ports, volumes and kubeconfig), in the provider's order, then waits
    /// until every node is Ready, at most `timeout`. A node that does not come
    /// back is named in the error; nothing is removed.
    pub async fn start(
        &self,
        name: &str,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let cluster = self.cluster_name(name)?;
        let guard = self.guard(&format!("cluster {cluster}"), cancel, Some(timeout));
        let _held = self.hold(&cluster, &guard).await?;
        let docker = self.docker(&guard).await?;
        let cx = self.ctx(docker).await;
        if !self.provider.start(&cx, &cluster, &guard).await? {
            return Err(not_found(&cluster));
        }
        Ok(())
    }

    /// Maps a host port to a container port (a NodePort) on every server and
    /// agent, through the running cluster's load balancer, without interrupting
    /// the API or any other mapping. `port.hostPort` 0 picks a free one. An
    /// identical mapping is returned as it is; a failure changes nothing.
    pub async fn port_add(
        &self,
        name: &str,
        port: &PortMapping,
        cancel: &CancellationToken,
    ) -> Result<PortInfo> {
        let cluster = self.cluster_name(name)?;
        let port = validate_runtime_port(port)?;
        let guard = self.guard(&format!("cluster {cluster}"), cancel, Some(PORT_TIMEOUT));
        let _held = self.hold(&cluster, &guard).await?;
        let docker = self.docker(&guard).await?;
        let cx = self.ctx(docker).await;
        self.provider.port_add(&cx, &cluster, &port, &guard).await
    }

    /// Removes a mapping `port_add` made (`protocol`: "tcp" or "udp").
    pub async fn port_remove(
        &self,
        name: &str,
        host_port: u16,
        protocol: &str,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let cluster = self.cluster_name(name)?;
        let protocol = protocol.to_ascii_lowercase();
        if !matches!(protocol.as_str(), "tcp" | "udp") || host_port == 0 {
            return Err(Error::InvalidArgument(format!(
                "port {host_port}/{protocol}: give a host port and tcp or udp"
            )));
        }
        let guard = self.guard(&format!("cluster {cluster}"), cancel, Some(PORT_TIMEOUT));
        let _held = self.hold(&cluster, &guard).await?;
        let docker = self.docker(&guard).await?;
        let cx = self.ctx(docker).await;
        self.provider
            .port_remove(&cx, &cluster, host_port, &protocol, &guard)
            .await
    }

    /// The cluster's host-port mappings (the API port excepted).
    pub async fn ports(&self, name: &str, cancel: &CancellationToken) -> Result<Vec<PortInfo>> {
        let cluster = self.cluster_name(name)?;
        let guard = self.guard(&format!("cluster {cluster}"), cancel, None);
        let docker = self.docker(&guard).await?;
        let cx = self.ctx(docker).await;
        let info = guard
            .wait(
                "reading the port mappings",
                self.provider.info(&cx, &cluster),
            )
            .await?
            .ok_or_else(|| not_found(&cluster))?;
        Ok(info.ports)
    }

    /// Creates and starts a standalone registry (k3d's `registry create`): no
    /// cluster deletes it. AlreadyExists when the name is taken.
    pub async fn registry_create(
        &self,
        opts: &RegistryCreate,
        cancel: &CancellationToken,
    ) -> Result<RegistryInfo> {
        opts.validate()?;
        let guard = self.guard(
            &format!("registry {}", opts.name),
            cancel,
            Some(PORT_TIMEOUT),
        );
        let _held = self
            .hold(&format!("registry/{}", opts.name), &guard)
            .await?;
        let docker = self.docker(&guard).await?;
        registry::create(docker, opts, &self.config.registry_image, "", &guard).await
    }

    /// Removes a registry and its data; a missing one is fine.
    pub async fn registry_delete(&self, name: &str, cancel: &CancellationToken) -> Result<()> {
        registry::validate_name(name)?;
        let guard = self.guard(&format!("registry {name}"), cancel, Some(DELETE_TIMEOUT));
        let docker = self.docker(&guard).await?;
        registry::delete(docker, name, &guard).await.map(|_| ())
    }

    /// Every registry (k3d's `registry list`).
    pub async fn registry_list(&self, cancel: &CancellationToken) -> Result<Vec<RegistryInfo>> {
        let guard = self.guard("listing registries", cancel, None);
        let docker = self.docker(&guard).await?;
        let all = guard
            .wait("listing registries", registry::all(docker))
            .await?;
        let mut list: Vec<RegistryInfo> = all.iter().map(registry::info_of).collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    /// One registry; NotFound when there is none.
    pub async fn registry_get(
        &self,
        name: &str,
        cancel: &CancellationToken,
    ) -> Result<RegistryInfo> {
        registry::validate_name(name)?;
        let guard = self.guard(&format!("registry {name}"), cancel, None);
        let docker = self.docker(&guard).await?;
        let found = guard
            .wait("reading the registry", registry::find(docker, name))
            .await?;
        found
            .map(|c| registry::info_of(&c))
            .ok_or_else(|| Error::NotFound(format!("registry {name} does not exist")))
    }

    /// Connects an existing registry to a running cluster: network, then
    /// `registries.yaml` in every node and a restart of the nodes (k3s reads it
    /// only at start), waited for until every node is Ready, at most `timeout`.
    pub async fn registry_connect(
        &self,
        registry_name: &str,
        name: &str,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let cluster = self.cluster_name(name)?;
        registry::validate_name(registry_name)?;
        let guard = self.guard(&format!("cluster {cluster}"), cancel, Some(timeout));
        let _held = self.hold(&cluster, &guard).await?;
        let docker = self.docker(&guard).await?;
        let cx = self.ctx(docker).await;
        let reg = registry::reference(docker, registry_name).await?;
        self.provider
            .registry_connect(&cx, &cluster, &reg, &guard)
            .await
    }

    /// True when every container of the cluster runs; NotFound when it does not exist.
    pub async fn is_running(&self, name: &str, cancel: &CancellationToken) -> Result<bool> {
        let cluster = self.cluster_name(name)?;
        let guard = self.guard(&format!("cluster {cluster}"), cancel, None);
        let docker = self.docker(&guard).await?;
        let cx = self.ctx(docker).await;
        let info = guard
            .wait("reading cluster state", self.provider.info(&cx, &cluster))
            .await?
            .ok_or_else(|| not_found(&cluster))?;
        Ok(info.running)
    }

    /// Clusters of this provider whose names start with the configured prefix.
    pub async fn list(&self, cancel: &CancellationToken) -> Result<Vec<ClusterInfo>> {
        let guard = self.guard("listing clusters", cancel, None);
        let docker = self.docker(&guard).await?;
        let cx = self.ctx(docker).await;
        let mut list = guard
            .wait("listing clusters", self.provider.list(&cx))
            .await?;
        for c in &mut list {
            c.kubeconfig_path = self.kubeconfig_file(&c.name);
        }
        Ok(list)
    }
}

/// A held name lock. Fields drop in order: the mutex is released before the
/// map entry is looked at.
struct HeldName<'a> {
    _held: tokio::sync::OwnedMutexGuard<()>,
    _lock: NameLock<'a>,
}

/// One cluster name's lock; the map entry goes away with its last user, so the
/// map does not grow with every cluster a long-lived manager has seen.
struct NameLock<'a> {
    locks: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    cluster: String,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for NameLock<'_> {
    fn drop(&mut self) {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // the map's reference and ours: nobody else waits for this name
        if Arc::strong_count(&self.lock) <= 2 {
            locks.remove(&self.cluster);
        }
    }
}

fn not_found(cluster: &str) -> Error {
    Error::NotFound(format!("cluster {cluster} does not exist"))
}
