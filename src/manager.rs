//! The facade callers use: owns the resolved configuration and one Docker client
//! (connected lazily, API version negotiated once), normalises and validates
//! names before any Docker call, serialises operations on the same cluster,
//! writes and removes kubeconfig files, and dispatches to the provider.
//!
//! Every operation that changes something (create, delete, stop, start, ports,
//! registries) runs as a task on the caller's tokio runtime, counted so that
//! [`ClusterManager::shutdown`] can wait for it. The caller's future only waits
//! for that task: when the caller cancels, the task is cancelled too and given
//! [`CANCEL_GRACE`] to finish (a create removes what it made); a task still
//! inside a Docker request that has not been answered then goes on in the
//! background, and a create rolls back as soon as the engine answers. Dropping
//! the caller's future cancels the task the same way, and a panic inside a
//! create is caught and rolled back, so no path skips the rollback.

use bollard::Docker;
use futures_util::FutureExt;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, OnceCell};
use tokio_util::sync::CancellationToken;

use crate::config::{ClusterManagerConfig, ResolvedConfig};
use crate::docker;
use crate::error::{Error, Result};
use crate::guard::{Guard, Reporter, StepLog};
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
/// How long a cancelled operation's caller waits for the operation to stop (a
/// create: to remove what it made) before returning `Cancelled` and leaving the
/// rest to the background. Ordinary cancels finish well within it, so they
/// return with everything removed; only a Docker request the engine does not
/// answer makes a caller return first.
pub const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// Creates, deletes and inspects clusters: the library's entry point. One per
/// configuration; `Send + Sync`, so share it (`Arc`) between tasks. Operations
/// on the same cluster name are serialised; on different names they run
/// concurrently. Every operation takes a [`CancellationToken`]: cancelling it
/// ends the operation with `Cancelled` (a create first removes what it made) —
/// within about [`CANCEL_GRACE`] even when the Docker Engine hangs. Methods must
/// be called from inside a tokio runtime; operations that change something run
/// as tasks on it. Call [`shutdown`](Self::shutdown) before dropping the
/// runtime to let background rollbacks finish.
pub struct ClusterManager {
    shared: Arc<Shared>,
    reporter: Option<Reporter>,
    /// Set on the handle an operation's task runs with: where its guards
    /// record the step they are at, so a caller that stops waiting can say it.
    steps: Option<StepLog>,
}

/// What the manager and the tasks of its operations share.
struct Shared {
    config: ResolvedConfig,
    provider: AnyProvider,
    docker: OnceCell<Docker>,
    self_container: OnceCell<Option<String>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Cancelled by `shutdown`: every operation's token descends from it.
    closing: CancellationToken,
    /// Operations running as tasks, and whether new ones are refused.
    ops: watch::Sender<Ops>,
}

#[derive(Clone, Copy, Default)]
struct Ops {
    running: usize,
    closed: bool,
}

impl Shared {
    fn new(config: ResolvedConfig) -> Result<Shared> {
        let provider = AnyProvider::for_kind(config.provider)?;
        Ok(Shared {
            config,
            provider,
            docker: OnceCell::new(),
            self_container: OnceCell::new(),
            locks: Mutex::new(HashMap::new()),
            closing: CancellationToken::new(),
            ops: watch::Sender::new(Ops::default()),
        })
    }
}

/// One running operation, counted until it drops (when its task ends).
struct OpTicket(Arc<Shared>);

impl OpTicket {
    /// None once the manager shuts down. Counting and the check happen under
    /// one lock, so `shutdown` never misses an operation admitted before it.
    fn admit(shared: &Arc<Shared>) -> Option<OpTicket> {
        let mut admitted = false;
        shared.ops.send_if_modified(|ops| {
            admitted = !ops.closed;
            if admitted {
                ops.running += 1;
            }
            admitted
        });
        admitted.then(|| OpTicket(shared.clone()))
    }
}

impl Drop for OpTicket {
    fn drop(&mut self) {
        self.0.ops.send_modify(|ops| ops.running -= 1);
    }
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
        Ok(ClusterManager {
            shared: Arc::new(Shared::new(config)?),
            reporter: None,
            steps: None,
        })
    }

    /// Reports each step of create and delete (the CLI prints them).
    pub fn with_reporter(mut self, reporter: Reporter) -> ClusterManager {
        self.reporter = Some(reporter);
        self
    }

    pub fn config(&self) -> &ResolvedConfig {
        &self.shared.config
    }

    /// The full cluster name for `name` (prefix added once), validated.
    pub fn cluster_name(&self, name: &str) -> Result<String> {
        names::cluster_name(&self.shared.config.name_prefix, name)
    }

    /// `<kubeconfigPath>/<cluster>.config`; pure, no Docker call.
    pub fn kubeconfig_path(&self, name: &str) -> Result<PathBuf> {
        let cluster = self.cluster_name(name)?;
        Ok(self
            .shared
            .config
            .kubeconfig_dir
            .join(format!("{cluster}.config")))
    }

    fn host_kubeconfig_path(&self, cluster: &str) -> PathBuf {
        self.shared
            .config
            .kubeconfig_dir
            .join(format!("{cluster}.host.config"))
    }

    fn lock_for(&self, cluster: &str) -> NameLock<'_> {
        let mut locks = self.shared.locks.lock().unwrap_or_else(|p| p.into_inner());
        let lock = locks.entry(cluster.to_string()).or_default().clone();
        NameLock {
            locks: &self.shared.locks,
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
        let endpoint = &self.shared.config.docker;
        guard
            .wait("connecting to the Docker Engine", async {
                self.shared
                    .docker
                    .get_or_try_init(|| docker::connect_endpoint(endpoint))
                    .await
            })
            .await
    }

    /// Connected (see [`docker`](Self::docker)), the context providers work in.
    async fn connected(&self, guard: &Guard) -> Result<ProviderCtx<'_>> {
        let docker = self.docker(guard).await?;
        Ok(self.ctx(docker).await)
    }

    async fn ctx<'a>(&'a self, docker: &'a Docker) -> ProviderCtx<'a> {
        let me = if self.shared.config.container_mode {
            self.shared
                .self_container
                .get_or_init(|| docker::self_container(docker))
                .await
                .as_deref()
        } else {
            None
        };
        ProviderCtx {
            docker,
            config: &self.shared.config,
            self_container: me,
        }
    }

    fn guard(&self, subject: &str, cancel: &CancellationToken, timeout: Option<Duration>) -> Guard {
        let guard = Guard::new(subject, cancel.clone(), timeout, self.reporter.clone());
        match &self.steps {
            Some(steps) => guard.with_step_log(steps.clone()),
            None => guard,
        }
    }

    /// Another handle on the same manager, for a task: same connection, locks
    /// and reporter; its guards record their steps in `steps`.
    fn task_handle(&self, steps: Option<StepLog>) -> ClusterManager {
        ClusterManager {
            shared: self.shared.clone(),
            reporter: self.reporter.clone(),
            steps,
        }
    }

    fn shut_down_error(&self, subject: &str) -> Error {
        Error::Cancelled(format!(
            "{subject}: the cluster manager is shut down (shutdown, kecs_manager_free or Close was called)"
        ))
    }

    /// Runs an operation that changes something as a counted task on the
    /// current runtime and waits for it. The task gets its own token (a child of
    /// the manager's): the caller's cancel, the manager's shutdown and dropping
    /// this future all cancel it. A cancelled task is waited for at most
    /// [`CANCEL_GRACE`]; then the caller gets `Cancelled` naming the step the
    /// task is at and `afterwards` (what the task still does), and the task goes
    /// on until its Docker request is answered. Likewise a task still running
    /// [`CANCEL_GRACE`] after its own `limit` (its guard's deadline, which it can
    /// only see between requests) answers the caller `Timeout`. A panic in the
    /// task becomes `Internal`.
    async fn tracked<T, Fut>(
        &self,
        subject: &str,
        cancel: &CancellationToken,
        limit: Option<Duration>,
        afterwards: &str,
        op: impl FnOnce(ClusterManager, CancellationToken) -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Internal(format!(
                "{subject}: ClusterManager operations run on the tokio runtime they are called from, and there is none"
            ))
        })?;
        let Some(ticket) = OpTicket::admit(&self.shared) else {
            return Err(self.shut_down_error(subject));
        };
        let token = self.shared.closing.child_token();
        let steps = StepLog::default();
        let work = op(self.task_handle(Some(steps.clone())), token.clone());
        let mut task = runtime.spawn(async move {
            let _ticket = ticket;
            AssertUnwindSafe(work).catch_unwind().await
        });
        // the caller dropping this future cancels the work; the task's own
        // error path then rolls back
        let _cancel_on_drop = token.clone().drop_guard();
        let closing = &self.shared.closing;
        let stop_asked = async {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = closing.cancelled() => {}
            }
        };
        let overdue = async {
            match limit {
                Some(limit) => tokio::time::sleep(limit + CANCEL_GRACE).await,
                None => std::future::pending().await,
            }
        };
        // what the caller is told when it stops waiting for the task
        let left_running = |what: String| {
            let step = steps.current();
            // steps often start with the subject already
            let step = step.strip_prefix(&format!("{subject}: ")).unwrap_or(&step);
            let at = if step.is_empty() {
                String::new()
            } else {
                format!(" while {step}")
            };
            format!(
                "{subject}: {what}{at}; it had not finished {:.1}s later (a Docker request in flight is never abandoned, and the engine has not answered one yet, or the rollback is still running), so {afterwards}",
                CANCEL_GRACE.as_secs_f64()
            )
        };
        let joined = tokio::select! {
            biased;
            joined = &mut task => joined,
            () = stop_asked => {
                token.cancel();
                match tokio::time::timeout(CANCEL_GRACE, &mut task).await {
                    Ok(joined) => joined,
                    Err(_) => {
                        let why = if cancel.is_cancelled() {
                            "cancelled"
                        } else {
                            "cancelled by the cluster manager's shutdown"
                        };
                        return Err(Error::Cancelled(left_running(why.into())));
                    }
                }
            }
            () = overdue => {
                // the task sees its own deadline once the engine answers
                let limit = limit.unwrap_or_default().as_secs_f64();
                return Err(Error::Timeout(left_running(format!("timed out after {limit:.1}s"))));
            }
        };
        match joined {
            Ok(Ok(result)) => result,
            Ok(Err(payload)) => Err(Error::Internal(format!(
                "{subject}: internal panic: {}",
                panic_message(payload.as_ref())
            ))),
            Err(e) => Err(Error::Internal(format!(
                "{subject}: the operation's task ended early: {e}"
            ))),
        }
    }

    /// Runs an operation that only reads, racing it against the caller's
    /// cancel and the manager's shutdown: dropping a read half-way is harmless,
    /// so a hung engine never holds the caller.
    async fn read<T>(
        &self,
        subject: &str,
        cancel: &CancellationToken,
        what: &str,
        op: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::select! {
            // the operation's own error (it names the step) wins a tie
            biased;
            r = op => r,
            _ = cancel.cancelled() => Err(Error::Cancelled(format!("{subject}: cancelled while {what}"))),
            _ = self.shared.closing.cancelled() => Err(self.shut_down_error(subject)),
        }
    }

    /// Cancels every operation in flight, waits until each has ended —
    /// including the rollbacks of cancelled creates that wait for the Docker
    /// Engine to answer (bounded by the client's request timeout) — and refuses
    /// new ones (`Cancelled`). Idempotent. `kecs_manager_free` and Go's `Close`
    /// call it; a Rust caller calls it before its runtime goes away.
    pub async fn shutdown(&self) {
        self.shared.closing.cancel();
        self.shared.ops.send_modify(|ops| ops.closed = true);
        let mut ops = self.shared.ops.subscribe();
        // the sender lives in `shared`, which we hold: this cannot fail
        let _ = ops.wait_for(|ops| ops.running == 0).await;
    }

    /// Removes what the create `creation` made of `cluster` (only objects
    /// labelled with its id: never another process's create of the same name)
    /// and our kubeconfig files for it: the cleanup of a create that cannot
    /// finish (its kubeconfig could not be written, it panicked, or its runtime
    /// went away). The one place that says what a failed create's cleanup is.
    /// The caller holds the name lock.
    async fn roll_back(
        &self,
        cx: &ProviderCtx<'_>,
        cluster: &str,
        creation: &str,
        rb: &Guard,
    ) -> Result<()> {
        let mut failed = self.remove_kubeconfigs(cluster);
        self.shared
            .provider
            .rollback_create(cx, cluster, creation, rb)
            .await?;
        match failed.pop() {
            Some(e) => Err(e.context(format!("cluster {cluster}"))),
            None => Ok(()),
        }
    }

    fn rollback_guard(&self, cluster: &str) -> Guard {
        Guard::uncancellable(
            format!("rolling back cluster {cluster}"),
            DELETE_TIMEOUT,
            self.reporter.clone(),
        )
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
        let plan = options.validate(&self.shared.config.image)?;
        self.shared.provider.check_plan(&plan)?;
        let limit = plan.timeout;
        self.tracked(
            &format!("cluster {cluster}"),
            cancel,
            Some(limit),
            "what the create made is removed in the background once the engine answers",
            move |this, token| this.create_task(cluster, plan, token),
        )
        .await
    }

    /// The create's task: the build, with a panic caught and rolled back, and
    /// a rollback on a thread of its own if the runtime drops the task half-way.
    async fn create_task(
        self,
        cluster: String,
        mut plan: CreatePlan,
        token: CancellationToken,
    ) -> Result<ClusterInfo> {
        // every object this create makes carries this id; every rollback of it
        // (the provider's own, a panic's, an abandoned task's) removes only those
        plan.creation_id = crate::provider::new_creation_id()?;
        let creation = plan.creation_id.clone();
        // set while objects of this create may exist: only then is there
        // anything to roll back (an existing cluster returned as it is is not ours)
        let building = Arc::new(AtomicBool::new(false));
        let abandoned = RollbackIfAbandoned {
            manager: &self,
            cluster: &cluster,
            creation: &creation,
            building: &building,
        };
        let outcome = AssertUnwindSafe(self.create_in(&cluster, plan, &token, &building))
            .catch_unwind()
            .await;
        let result = match outcome {
            Ok(result) => result,
            Err(payload) => {
                let err = Error::Internal(format!(
                    "cluster {cluster}: internal panic while creating the cluster: {}",
                    panic_message(payload.as_ref())
                ));
                if building.load(Ordering::SeqCst) {
                    // the unwinding released the name lock: take it again
                    let rb = self.rollback_guard(&cluster);
                    let cleaned = async {
                        let _held = self.hold(&cluster, &rb).await?;
                        let cx = self.connected(&rb).await?;
                        self.roll_back(&cx, &cluster, &creation, &rb).await
                    }
                    .await;
                    match cleaned {
                        Ok(()) => Err(err.with_suffix("what the create made has been removed")),
                        Err(rb_err) => Err(err.with_suffix(format!(
                            "rolling back also failed, objects may remain: {rb_err}"
                        ))),
                    }
                } else {
                    Err(err)
                }
            }
        };
        building.store(false, Ordering::SeqCst);
        drop(abandoned);
        result
    }

    async fn create_in(
        &self,
        cluster: &str,
        mut plan: CreatePlan,
        cancel: &CancellationToken,
        building: &AtomicBool,
    ) -> Result<ClusterInfo> {
        let cluster = cluster.to_string();
        let guard = self.guard(&format!("cluster {cluster}"), cancel, Some(plan.timeout));
        let _held = self.hold(&cluster, &guard).await?;
        let cx = self.connected(&guard).await?;
        guard.check("checking whether the cluster exists")?;
        if self.shared.provider.exists(&cx, &cluster).await? {
            guard.report(&format!("cluster {cluster} already exists"));
            return self.info_in(&cx, &cluster).await;
        }
        if self.shared.config.enable_registry
            && plan.registry.create.is_none()
            && plan.registry.use_existing.is_empty()
        {
            // KECS's shared registry: made once, standalone, used by every cluster
            registry::ensure_shared(
                cx.docker,
                &self.shared.config.registry_image,
                self.shared.config.registry_port,
                &guard,
            )
            .await?;
            plan.registry
                .use_existing
                .push(registry::SHARED_NAME.into());
        }
        building.store(true, Ordering::SeqCst);
        let created = self
            .create_on_fixed_port(&cx, &cluster, &mut plan, &guard)
            .await?;
        if let Err(err) = self.write_kubeconfigs(&cluster, &created.kubeconfigs, &guard) {
            return Err(self
                .failed_after_build(&cx, &cluster, &plan.creation_id, err)
                .await);
        }
        // one list call; the version was asked while waiting for readiness
        let mut info = match self.shared.provider.info(&cx, &cluster).await {
            Ok(Some(info)) => info,
            // the cluster is up and its kubeconfig written: a failed read-back of
            // its description does not make the create a failure
            _ => ClusterInfo {
                name: cluster.clone(),
                status: "running".into(),
                running: true,
                provider: self.shared.config.provider.as_str().into(),
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
        // a caller that stopped waiting (cancel, deadline, dropped future) was
        // told the create failed: it must not have succeeded behind its back
        if let Err(err) = guard.check("finishing the create") {
            return Err(self
                .failed_after_build(&cx, &cluster, &plan.creation_id, err)
                .await);
        }
        Ok(info)
    }

    /// Rolls back a create that failed after the provider built the cluster;
    /// `err` (with a note when the rollback failed too) is what the caller gets.
    async fn failed_after_build(
        &self,
        cx: &ProviderCtx<'_>,
        cluster: &str,
        creation: &str,
        err: Error,
    ) -> Error {
        let rb = self.rollback_guard(cluster);
        match self.roll_back(cx, cluster, creation, &rb).await {
            Ok(()) => err,
            Err(rb_err) => err.with_suffix(format!(
                "rolling back also failed, objects may remain: {rb_err}"
            )),
        }
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
            return self.shared.provider.create(cx, cluster, plan, guard).await;
        }
        let mut attempt = 1;
        loop {
            plan.api_port = docker::free_host_port(self.shared.config.api_host_ip)?;
            match self.shared.provider.create(cx, cluster, plan, guard).await {
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
        self.shared
            .config
            .kubeconfig_dir
            .join(format!("{cluster}.config"))
            .display()
            .to_string()
    }

    fn write_kubeconfigs(&self, cluster: &str, kcs: &Kubeconfigs, guard: &Guard) -> Result<()> {
        let main = self
            .shared
            .config
            .kubeconfig_dir
            .join(format!("{cluster}.config"));
        if self.shared.config.container_mode {
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
        let entry = self.shared.provider.kubeconfig_cluster_entry(cluster);
        let main = self
            .shared
            .config
            .kubeconfig_dir
            .join(format!("{cluster}.config"));
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
        self.tracked(
            &format!("cluster {cluster}"),
            cancel,
            Some(DELETE_TIMEOUT),
            "the delete stops at its next step once the engine answers; delete again to remove what is left",
            move |this, token| async move {
                let guard = this.guard(&format!("cluster {cluster}"), &token, Some(DELETE_TIMEOUT));
                let _held = this.hold(&cluster, &guard).await?;
                let cx = this.connected(&guard).await?;
                guard.check("deleting the cluster")?;
                let removed = this.shared.provider.delete(&cx, &cluster, &guard).await?;
                if let Some(e) = this.remove_kubeconfigs(&cluster).into_iter().next() {
                    return Err(e.context(format!("cluster {cluster}")));
                }
                if !removed {
                    guard.report(&format!("cluster {cluster} did not exist"));
                }
                Ok(())
            },
        )
        .await
    }

    pub async fn exists(&self, name: &str, cancel: &CancellationToken) -> Result<bool> {
        let cluster = self.cluster_name(name)?;
        let subject = format!("cluster {cluster}");
        let step = "checking whether the cluster exists";
        self.read(&subject, cancel, step, async {
            let guard = self.guard(&subject, cancel, None);
            let cx = self.connected(&guard).await?;
            guard
                .wait(step, self.shared.provider.exists(&cx, &cluster))
                .await
        })
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
        let subject = format!("cluster {cluster}");
        self.read(
            &subject,
            cancel,
            "waiting for the nodes to be ready",
            async {
                let guard = self.guard(&subject, cancel, Some(timeout));
                let cx = self.connected(&guard).await?;
                self.shared.provider.wait_ready(&cx, &cluster, &guard).await
            },
        )
        .await
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
        let subject = format!("cluster {cluster}");
        let step = "reading the kubeconfig";
        let kcs = self
            .read(&subject, cancel, step, async {
                let guard = self.guard(&subject, cancel, None);
                let cx = self.connected(&guard).await?;
                // the provider's own lookup says NotFound when the cluster does not exist
                guard
                    .wait(step, self.shared.provider.kubeconfig(&cx, &cluster))
                    .await
            })
            .await?;
        Ok(if self.shared.config.container_mode {
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
            provider: self.shared.config.provider.as_str(),
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
            provider: self.shared.config.provider.as_str(),
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
        let subject = format!("cluster {cluster}");
        let step = "reading cluster info";
        self.read(&subject, cancel, step, async {
            let guard = self.guard(&subject, cancel, None);
            let cx = self.connected(&guard).await?;
            guard.wait(step, self.info_in(&cx, &cluster)).await
        })
        .await
    }

    async fn info_in(&self, cx: &ProviderCtx<'_>, cluster: &str) -> Result<ClusterInfo> {
        let mut info = self
            .shared
            .provider
            .info(cx, cluster)
            .await?
            .ok_or_else(|| not_found(cluster))?;
        info.kubeconfig_path = self.kubeconfig_file(cluster);
        if info.status == "running" {
            if let Ok(kcs) = self.shared.provider.kubeconfig(cx, cluster).await {
                let reach =
                    reachable_kubeconfig(cx, &self.shared.provider.network_name(cluster), &kcs)
                        .await;
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
        self.tracked(
            &format!("cluster {cluster}"),
            cancel,
            Some(STOP_TIMEOUT),
            UNFINISHED,
            move |this, token| async move {
                let guard = this.guard(&format!("cluster {cluster}"), &token, Some(STOP_TIMEOUT));
                let _held = this.hold(&cluster, &guard).await?;
                let cx = this.connected(&guard).await?;
                if !this.shared.provider.stop(&cx, &cluster, &guard).await? {
                    return Err(not_found(&cluster));
                }
                Ok(())
            },
        )
        .await
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
        self.tracked(
            &format!("cluster {cluster}"),
            cancel,
            Some(timeout),
            UNFINISHED,
            move |this, token| async move {
                let guard = this.guard(&format!("cluster {cluster}"), &token, Some(timeout));
                let _held = this.hold(&cluster, &guard).await?;
                let cx = this.connected(&guard).await?;
                if !this.shared.provider.start(&cx, &cluster, &guard).await? {
                    return Err(not_found(&cluster));
                }
                Ok(())
            },
        )
        .await
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
        self.tracked(
            &format!("cluster {cluster}"),
            cancel,
            Some(PORT_TIMEOUT),
            UNFINISHED,
            move |this, token| async move {
                let guard = this.guard(&format!("cluster {cluster}"), &token, Some(PORT_TIMEOUT));
                let _held = this.hold(&cluster, &guard).await?;
                let cx = this.connected(&guard).await?;
                this.shared
                    .provider
                    .port_add(&cx, &cluster, &port, &guard)
                    .await
            },
        )
        .await
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
        self.tracked(
            &format!("cluster {cluster}"),
            cancel,
            Some(PORT_TIMEOUT),
            UNFINISHED,
            move |this, token| async move {
                let guard = this.guard(&format!("cluster {cluster}"), &token, Some(PORT_TIMEOUT));
                let _held = this.hold(&cluster, &guard).await?;
                let cx = this.connected(&guard).await?;
                this.shared
                    .provider
                    .port_remove(&cx, &cluster, host_port, &protocol, &guard)
                    .await
            },
        )
        .await
    }

    /// The cluster's host-port mappings (the API port excepted).
    pub async fn ports(&self, name: &str, cancel: &CancellationToken) -> Result<Vec<PortInfo>> {
        let cluster = self.cluster_name(name)?;
        let subject = format!("cluster {cluster}");
        let step = "reading the port mappings";
        let info = self
            .read(&subject, cancel, step, async {
                let guard = self.guard(&subject, cancel, None);
                let cx = self.connected(&guard).await?;
                guard
                    .wait(step, self.shared.provider.info(&cx, &cluster))
                    .await
            })
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
        let opts = opts.clone();
        self.tracked(
            &format!("registry {}", opts.name),
            cancel,
            Some(PORT_TIMEOUT),
            "what the create made is removed once the engine answers",
            move |this, token| async move {
                let guard = this.guard(
                    &format!("registry {}", opts.name),
                    &token,
                    Some(PORT_TIMEOUT),
                );
                let _held = this
                    .hold(&format!("registry/{}", opts.name), &guard)
                    .await?;
                let docker = this.docker(&guard).await?;
                registry::create(
                    docker,
                    &opts,
                    &this.shared.config.registry_image,
                    "",
                    &guard,
                )
                .await
            },
        )
        .await
    }

    /// Removes a registry and its data; a missing one is fine.
    pub async fn registry_delete(&self, name: &str, cancel: &CancellationToken) -> Result<()> {
        registry::validate_name(name)?;
        let name = name.to_string();
        self.tracked(
            &format!("registry {name}"),
            cancel,
            Some(DELETE_TIMEOUT),
            UNFINISHED,
            move |this, token| async move {
                let guard = this.guard(&format!("registry {name}"), &token, Some(DELETE_TIMEOUT));
                let docker = this.docker(&guard).await?;
                registry::delete(docker, &name, &guard).await.map(|_| ())
            },
        )
        .await
    }

    /// Every registry (k3d's `registry list`).
    pub async fn registry_list(&self, cancel: &CancellationToken) -> Result<Vec<RegistryInfo>> {
        let step = "listing registries";
        let all = self
            .read(step, cancel, step, async {
                let guard = self.guard(step, cancel, None);
                let docker = self.docker(&guard).await?;
                guard.wait(step, registry::all(docker)).await
            })
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
        let subject = format!("registry {name}");
        let step = "reading the registry";
        let found = self
            .read(&subject, cancel, step, async {
                let guard = self.guard(&subject, cancel, None);
                let docker = self.docker(&guard).await?;
                guard.wait(step, registry::find(docker, name)).await
            })
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
        let registry_name = registry_name.to_string();
        self.tracked(
            &format!("cluster {cluster}"),
            cancel,
            Some(timeout),
            UNFINISHED,
            move |this, token| async move {
                let guard = this.guard(&format!("cluster {cluster}"), &token, Some(timeout));
                let _held = this.hold(&cluster, &guard).await?;
                let cx = this.connected(&guard).await?;
                let reg = registry::reference(cx.docker, &registry_name).await?;
                this.shared
                    .provider
                    .registry_connect(&cx, &cluster, &reg, &guard)
                    .await
            },
        )
        .await
    }

    /// True when every container of the cluster runs; NotFound when it does not exist.
    pub async fn is_running(&self, name: &str, cancel: &CancellationToken) -> Result<bool> {
        let cluster = self.cluster_name(name)?;
        let subject = format!("cluster {cluster}");
        let step = "reading cluster state";
        let info = self
            .read(&subject, cancel, step, async {
                let guard = self.guard(&subject, cancel, None);
                let cx = self.connected(&guard).await?;
                guard
                    .wait(step, self.shared.provider.info(&cx, &cluster))
                    .await
            })
            .await?
            .ok_or_else(|| not_found(&cluster))?;
        Ok(info.running)
    }

    /// Clusters of this provider whose names start with the configured prefix.
    pub async fn list(&self, cancel: &CancellationToken) -> Result<Vec<ClusterInfo>> {
        let step = "listing clusters";
        let mut list = self
            .read(step, cancel, step, async {
                let guard = self.guard(step, cancel, None);
                let cx = self.connected(&guard).await?;
                guard.wait(step, self.shared.provider.list(&cx)).await
            })
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

/// What an operation other than a create still does after its caller was
/// answered `Cancelled` (see [`ClusterManager::tracked`]).
const UNFINISHED: &str = "it stops at its next step once the engine answers";

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".into()
    }
}

/// Lives in a create's task: when the task ends normally `building` is false
/// by then. A task dropped while building means its runtime is going away
/// (nothing else drops it half-way): the rollback then runs on a thread with a
/// runtime and a Docker connection of its own (the old connections lived on the
/// runtime that is going), and the drop waits for it.
struct RollbackIfAbandoned<'a> {
    manager: &'a ClusterManager,
    cluster: &'a str,
    creation: &'a str,
    building: &'a AtomicBool,
}

impl Drop for RollbackIfAbandoned<'_> {
    fn drop(&mut self) {
        if !self.building.load(Ordering::SeqCst) {
            return;
        }
        let config = self.manager.shared.config.clone();
        let reporter = self.manager.reporter.clone();
        let cluster = self.cluster.to_string();
        let creation = self.creation.to_string();
        let worker = std::thread::Builder::new()
            .name("kecs-rollback".into())
            .spawn(move || -> Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| {
                        Error::Internal(format!("starting the rollback's runtime: {e}"))
                    })?;
                let manager = ClusterManager {
                    shared: Arc::new(Shared::new(config)?),
                    reporter,
                    steps: None,
                };
                runtime.block_on(async {
                    let rb = manager.rollback_guard(&cluster);
                    let cx = manager.connected(&rb).await?;
                    manager.roll_back(&cx, &cluster, &creation, &rb).await
                })
            });
        // nobody is left to tell about a failure: the reporter saw the steps
        if let Ok(worker) = worker {
            let _ = worker.join();
        }
    }
}

/// Hooks for the library's own tests of paths nothing else reaches.
#[doc(hidden)]
pub mod testing {
    /// Makes the next progress line containing `substring` (e.g. "created node
    /// k3d-<cluster>-server-0") panic where it is reported, inside the
    /// operation; fires once. Only tests call it.
    pub fn panic_when_step_reported(substring: &str) {
        crate::guard::arm_panic_hook(substring);
    }
}
