//! `kecs-cluster`: the library's API on the command line (cargo feature `cli`).

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use kecs_cluster::options::parse_port_spec;
use kecs_cluster::{
    ClusterInfo, ClusterManager, ClusterManagerConfig, CreateOptions, ErrorCode, RegistryCreate,
    RegistryOptions,
};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "kecs-cluster",
    version,
    about = "Create, delete, stop, start and inspect local Kubernetes clusters in Docker (k3s nodes as k3d makes them, or Kubernetes nodes as kind makes them)"
)]
struct Cli {
    /// Node image (default: k3d: $KECS_K3S_IMAGE, else rancher/k3s:v1.31.4-k3s1;
    /// kind: $KECS_KIND_IMAGE, else kindest/node:v1.31.4).
    #[arg(long, global = true)]
    image: Option<String>,
    /// Run nodes unprivileged (k3s and kind nodes normally need privileged containers).
    #[arg(long, global = true)]
    no_privileged: bool,
    /// Provider (default: $KECS_CLUSTER_PROVIDER, else k3d).
    #[arg(long, global = true, value_enum)]
    provider: Option<Provider>,
    /// Directory for kubeconfig files (default: $KECS_KUBECONFIG_PATH, else ~/.kube).
    #[arg(long, global = true)]
    kubeconfig_dir: Option<String>,
    /// Cluster name prefix (default "kecs-").
    #[arg(long, global = true)]
    prefix: Option<String>,
    /// Do not print progress on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Provider {
    /// k3s nodes as k3d makes them
    K3d,
    /// Kubernetes nodes as kind makes them
    Kind,
}

impl Provider {
    fn as_str(self) -> &'static str {
        match self {
            Provider::K3d => "k3d",
            Provider::Kind => "kind",
        }
    }
}

/// How list and info commands print.
#[derive(Clone, Copy, ValueEnum)]
enum Output {
    /// aligned columns for people
    #[value(alias = "text")]
    Table,
    Json,
    Yaml,
}

/// Prints `value` as JSON or YAML, or with `table` for people.
fn print_as<T: Serialize>(output: Output, value: &T, table: impl FnOnce(&T)) {
    match output {
        Output::Table => table(value),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).expect("serialisable")
        ),
        Output::Yaml => print!("{}", serde_saphyr::to_string(value).expect("serialisable")),
    }
}

/// `--flag`, `--flag=true` and `--flag=false` (k3d's boolean flags), default true.
fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{s:?}: use true or false")),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Create a cluster and wait until it is ready; then merge it into the default
    /// kubeconfig and switch to it, as k3d does.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        servers: u32,
        #[arg(long, default_value_t = 0)]
        agents: u32,
        /// K=V, set on every node (repeatable).
        #[arg(long = "env", short = 'e')]
        env: Vec<String>,
        /// HOSTPORT:CONTAINERPORT[/PROTO][@loadbalancer|@server:0|@agent:N] (repeatable;
        /// default: the load balancer).
        #[arg(long = "port", short = 'p')]
        ports: Vec<String>,
        /// k3s argument, optionally with a node filter (`--disable=traefik@server:*`).
        #[arg(long = "k3s-arg")]
        k3s_args: Vec<String>,
        /// Host port for the API (0: a free one, chosen once and kept across restarts).
        #[arg(long, default_value_t = 0)]
        api_port: u16,
        #[arg(long, default_value = "120s", value_parser = parse_duration)]
        timeout: Duration,
        /// Return once server-0 is up, without waiting for every node.
        #[arg(long)]
        no_wait: bool,
        /// No server load balancer (k3d's --no-lb): server-0 publishes the API.
        #[arg(long)]
        no_lb: bool,
        /// Create a registry with the cluster: NAME[:HOSTPORT] (used verbatim,
        /// as k3d's --registry-create; deleted with the cluster).
        #[arg(long)]
        registry_create: Option<String>,
        /// Use an existing registry (repeatable; never deleted with the cluster).
        #[arg(long)]
        registry_use: Vec<String>,
        /// Merge the cluster into the default kubeconfig ($KUBECONFIG's first
        /// file, else ~/.kube/config); `=false` leaves that file alone.
        #[arg(long, value_name = "BOOL", default_value = "true", num_args = 0..=1,
              require_equals = true, default_missing_value = "true", value_parser = parse_bool)]
        kubeconfig_update_default: bool,
        /// Make the cluster kubectl's current context (with the merge).
        #[arg(long, value_name = "BOOL", default_value = "true", num_args = 0..=1,
              require_equals = true, default_missing_value = "true", value_parser = parse_bool)]
        kubeconfig_switch_context: bool,
    },
    /// Local image registries (k3d's `registry` commands).
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Port mappings of a running cluster (through its load balancer).
    Port {
        #[command(subcommand)]
        command: PortCommand,
    },
    /// Delete a cluster (nothing to do is not an error) and remove its entries
    /// from the default kubeconfig.
    Delete { name: String },
    /// Exit 0 if the cluster exists, 1 if not.
    Exists { name: String },
    /// List clusters.
    List {
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Show one cluster.
    Info {
        name: String,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Print the cluster's kubeconfig (`kubeconfig NAME`, `kubeconfig get NAME`)
    /// or merge it into a kubeconfig file.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Kubeconfig {
        #[command(subcommand)]
        command: Option<KubeconfigCommand>,
        #[arg(required = true)]
        name: Option<String>,
    },
    /// Print a shell completion script (e.g. `source <(kecs-cluster completion bash)`).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the CLI's and the library's versions.
    Version,
    /// Stop a cluster's containers (kept: ports, volumes, kubeconfig).
    Stop { name: String },
    /// Start a stopped cluster and wait until every node is Ready.
    Start {
        name: String,
        #[arg(long, default_value = "120s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Wait until an existing cluster is ready.
    Wait {
        name: String,
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        timeout: Duration,
    },
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Create and start a registry `k3d-NAME` (standalone: no cluster deletes it).
    Create {
        name: String,
        /// [HOSTIP:]HOSTPORT (default 127.0.0.1:5000).
        #[arg(long)]
        port: Option<String>,
        /// More names it answers to on cluster networks (repeatable).
        #[arg(long)]
        alias: Vec<String>,
    },
    /// Delete a registry and its data (`k3d-` prefix optional).
    Delete { name: String },
    /// List registries.
    List {
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Connect a registry to a running cluster (its nodes restart to use it).
    Connect {
        registry: String,
        cluster: String,
        #[arg(long, default_value = "120s", value_parser = parse_duration)]
        timeout: Duration,
    },
}

/// k3d's CLI names registries `k3d-NAME`; the prefix is optional on input.
fn registry_name(name: &str) -> String {
    if name.starts_with("k3d-") {
        name.to_string()
    } else {
        format!("k3d-{name}")
    }
}

/// `[HOSTIP:]HOSTPORT`.
fn parse_registry_port(spec: &str) -> Result<(Option<String>, u16), String> {
    let (ip, port) = match spec.rsplit_once(':') {
        Some((ip, port)) => (Some(ip.to_string()), port),
        None => (None, spec),
    };
    let port = port
        .parse()
        .map_err(|_| format!("invalid registry port {spec:?}: use [HOSTIP:]HOSTPORT"))?;
    Ok((ip, port))
}

#[derive(Subcommand)]
enum PortCommand {
    /// Map HOSTPORT:CONTAINERPORT[/udp] to every server and agent, without
    /// interrupting the API or other mappings.
    Add { name: String, spec: String },
    /// Remove a mapping `port add` made: HOSTPORT[/udp].
    Remove { name: String, port: String },
    /// List the cluster's host-port mappings.
    List {
        name: String,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Subcommand)]
enum KubeconfigCommand {
    /// Print the cluster's kubeconfig (YAML) on stdout.
    Get { name: String },
    /// Merge the cluster's cluster, user and context entries into a kubeconfig
    /// file, keeping everything else in it, under kubectl's lock (<file>.lock).
    Merge {
        name: String,
        /// The file (default: $KUBECONFIG's first file, else ~/.kube/config).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Also make it kubectl's current context.
        #[arg(short, long)]
        switch_context: bool,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: use e.g. 90s, 2m, 500ms"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?}: use ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn print_table(clusters: &[ClusterInfo]) {
    println!(
        "{:<34} {:<9} {:>7} {:>6}  API",
        "NAME", "STATUS", "SERVERS", "AGENTS"
    );
    for c in clusters {
        // k3d roles server/agent, kind roles control-plane/worker
        let count = |role: &str, alias: &str| {
            c.nodes
                .iter()
                .filter(|n| n.role == role || n.role == alias)
                .count()
        };
        let api = if c.api_port != 0 {
            format!("{}:{}", c.api_host, c.api_port)
        } else {
            "-".into()
        };
        println!(
            "{:<34} {:<9} {:>7} {:>6}  {api}",
            c.name,
            c.status,
            count("server", "control-plane"),
            count("agent", "worker")
        );
    }
}

fn print_info(c: &ClusterInfo) {
    println!("name:        {}", c.name);
    println!("status:      {}", c.status);
    println!("provider:    {}", c.provider);
    println!(
        "version:     {}",
        if c.version.is_empty() {
            "-"
        } else {
            &c.version
        }
    );
    println!("api:         {}:{}", c.api_host, c.api_port);
    println!("kubeconfig:  {}", c.kubeconfig_path);
    if !c.load_balancer.is_empty() {
        println!("lb:          {}", c.load_balancer);
    }
    for p in &c.ports {
        println!(
            "port:        {}:{} -> {}/{}",
            p.host_ip, p.host_port, p.container_port, p.protocol
        );
    }
    println!("nodes:");
    for n in &c.nodes {
        println!("  {:<40} {:<8} {}", n.name, n.role, n.state);
    }
}

async fn run(cli: Cli, cancel: CancellationToken) -> Result<ExitCode, kecs_cluster::Error> {
    let config = ClusterManagerConfig {
        provider: cli.provider.map(|p| p.as_str().to_string()),
        image: cli.image,
        privileged: cli.no_privileged.then_some(false),
        kubeconfig_path: cli.kubeconfig_dir,
        name_prefix: cli.prefix,
        ..Default::default()
    };
    let mut manager = ClusterManager::new(&config)?;
    if !cli.quiet {
        manager = manager.with_reporter(Arc::new(|t: Duration, msg: &str| {
            eprintln!("[{:>6.2}s] {msg}", t.as_secs_f64())
        }));
    }
    let bad = |m: String| kecs_cluster::Error::InvalidArgument(m);
    let outcome = async {
        match cli.command {
            Command::Create {
                name,
                servers,
                agents,
                env,
                ports,
                k3s_args,
                api_port,
                timeout,
                no_wait,
                no_lb,
                registry_create,
                registry_use,
                kubeconfig_update_default,
                kubeconfig_switch_context,
            } => {
                let create = match registry_create {
                    Some(spec) => {
                        let (name, port) = match spec.split_once(':') {
                            Some((n, p)) => (n.to_string(), parse_registry_port(p).map_err(bad)?.1),
                            None => (spec.clone(), 0),
                        };
                        Some(RegistryCreate {
                            name,
                            host_port: port,
                            ..Default::default()
                        })
                    }
                    None => None,
                };
                let registry =
                    (create.is_some() || !registry_use.is_empty()).then_some(RegistryOptions {
                        create,
                        use_existing: registry_use,
                    });
                let env = env
                    .iter()
                    .map(|kv| {
                        kv.split_once('=')
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .ok_or_else(|| bad(format!("invalid --env {kv:?}: use K=V")))
                    })
                    .collect::<Result<_, _>>()?;
                let ports = ports
                    .iter()
                    .map(|p| parse_port_spec(p))
                    .collect::<Result<_, _>>()?;
                let opts = CreateOptions {
                    servers,
                    agents,
                    env,
                    ports,
                    k3s_args,
                    api_port,
                    wait_ready: !no_wait,
                    timeout_ms: timeout.as_millis() as u64,
                    load_balancer: no_lb.then_some(false),
                    registry,
                    ..Default::default()
                };
                let info = manager.create(&name, &opts, &cancel).await?;
                if !cli.quiet {
                    eprintln!(
                        "cluster {} is {}; kubeconfig: {}",
                        info.name, info.status, info.kubeconfig_path
                    );
                }
                if kubeconfig_update_default {
                    // as in k3d, the cluster stands even when the merge fails: a
                    // warning, and its own kubeconfig file is there
                    match manager
                        .merge_kubeconfig(&name, None, kubeconfig_switch_context, &cancel)
                        .await
                    {
                        Ok(path) if !cli.quiet => eprintln!(
                            "merged into {}{}",
                            path.display(),
                            if kubeconfig_switch_context {
                                " (now kubectl's current context)"
                            } else {
                                ""
                            }
                        ),
                        Ok(_) => {}
                        Err(e) => eprintln!("warning: not merged into the default kubeconfig: {e}"),
                    }
                } else if !cli.quiet {
                    eprintln!("use it with: export KUBECONFIG={}", info.kubeconfig_path);
                }
            }
            Command::Delete { name } => {
                manager.delete(&name, &cancel).await?;
                // as in k3d: the cluster is gone; entries left behind only warn
                if let Err(e) = manager.unmerge_kubeconfig(&name, None, &cancel).await {
                    eprintln!(
                        "warning: the default kubeconfig still has the cluster's entries: {e}"
                    );
                }
            }
            Command::Exists { name } => {
                return Ok(if manager.exists(&name, &cancel).await? {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                });
            }
            Command::List { output } => {
                print_as(output, &manager.list(&cancel).await?, |l| print_table(l))
            }
            Command::Info { name, output } => {
                print_as(output, &manager.info(&name, &cancel).await?, print_info)
            }
            Command::Kubeconfig { command, name } => match (command, name) {
                (Some(KubeconfigCommand::Get { name }), _) | (None, Some(name)) => {
                    print!("{}", manager.kubeconfig(&name, &cancel).await?)
                }
                (
                    Some(KubeconfigCommand::Merge {
                        name,
                        output,
                        switch_context,
                    }),
                    _,
                ) => {
                    let path = manager
                        .merge_kubeconfig(&name, output.as_deref(), switch_context, &cancel)
                        .await?;
                    println!("{}", path.display());
                }
                (None, None) => return Err(bad("kubeconfig: give a cluster name".into())),
            },
            Command::Completion { .. } | Command::Version => {
                unreachable!("handled before the manager is made")
            }
            Command::Registry { command } => match command {
                RegistryCommand::Create { name, port, alias } => {
                    let (host_ip, host_port) = match port {
                        Some(p) => parse_registry_port(&p).map_err(bad)?,
                        None => (None, 0),
                    };
                    let r = manager
                        .registry_create(
                            &RegistryCreate {
                                name: registry_name(&name),
                                host_port,
                                host_ip,
                                aliases: alias,
                            },
                            &cancel,
                        )
                        .await?;
                    println!(
                        "{} on {}:{} (push to localhost:{}/IMAGE)",
                        r.name, r.host_ip, r.host_port, r.host_port
                    );
                }
                RegistryCommand::Delete { name } => {
                    let exact = manager.registry_get(&name, &cancel).await.is_ok();
                    let name = if exact { name } else { registry_name(&name) };
                    manager.registry_delete(&name, &cancel).await?
                }
                RegistryCommand::List { output } => {
                    let list = manager.registry_list(&cancel).await?;
                    print_as(output, &list, |list| {
                        println!("{:<30} {:<22} {:<8} CLUSTER", "NAME", "HOST", "STATE");
                        for r in list {
                            println!(
                                "{:<30} {:<22} {:<8} {}",
                                r.name,
                                format!("{}:{}", r.host_ip, r.host_port),
                                if r.running { "running" } else { "stopped" },
                                r.cluster
                            );
                        }
                    })
                }
                RegistryCommand::Connect {
                    registry,
                    cluster,
                    timeout,
                } => {
                    let exact = manager.registry_get(&registry, &cancel).await.is_ok();
                    let registry = if exact {
                        registry
                    } else {
                        registry_name(&registry)
                    };
                    manager
                        .registry_connect(&registry, &cluster, timeout, &cancel)
                        .await?
                }
            },
            Command::Port { command } => match command {
                PortCommand::Add { name, spec } => {
                    let p = manager
                        .port_add(&name, &parse_port_spec(&spec)?, &cancel)
                        .await?;
                    println!(
                        "{}:{} -> {}/{}",
                        p.host_ip, p.host_port, p.container_port, p.protocol
                    );
                }
                PortCommand::Remove { name, port } => {
                    let (port, protocol) = port.split_once('/').unwrap_or((&port, "tcp"));
                    let port: u16 = port
                        .parse()
                        .map_err(|_| bad(format!("invalid port {port:?}: use HOSTPORT[/udp]")))?;
                    manager.port_remove(&name, port, protocol, &cancel).await?;
                }
                PortCommand::List { name, output } => {
                    let ports = manager.ports(&name, &cancel).await?;
                    print_as(output, &ports, |ports| {
                        println!("{:<22} {:<10} {:<6} CONTAINER", "HOST", "TO", "PROTO");
                        for p in ports {
                            println!(
                                "{:<22} {:<10} {:<6} {}{}",
                                format!("{}:{}", p.host_ip, p.host_port),
                                p.container_port,
                                p.protocol,
                                p.container,
                                if p.added { " (added)" } else { "" }
                            );
                        }
                    })
                }
            },
            Command::Stop { name } => manager.stop(&name, &cancel).await?,
            Command::Start { name, timeout } => manager.start(&name, timeout, &cancel).await?,
            Command::Wait { name, timeout } => manager.wait_ready(&name, timeout, &cancel).await?,
        }
        Ok(ExitCode::SUCCESS)
    }
    .await;
    // a rollback still waiting on the engine (Ctrl-C during a create) finishes
    // on this runtime before the process exits
    manager.shutdown().await;
    outcome
}

/// The process exit status for each library error code: 10 + the code's number
/// (its C status number). 0 is success, 1 is `exists` saying no, 2 a usage
/// error (clap's). The help text's table is made from this.
fn exit_status(code: ErrorCode) -> u8 {
    10 + code as u8
}

fn exit_status_help() -> String {
    let mut help = String::from(
        "Exit status:\n  0   success\n  1   `exists`: the cluster does not exist\n  2   usage error (bad flags or arguments)\n",
    );
    for code in ErrorCode::all() {
        help.push_str(&format!("  {:<3} {}\n", exit_status(code), code.as_str()));
    }
    help.push_str(&format!(
        "Ctrl-C cancels the operation in progress (a create is rolled back): exit status {}.",
        exit_status(ErrorCode::Cancelled)
    ));
    help
}

fn command() -> clap::Command {
    Cli::command().after_long_help(exit_status_help())
}

fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match &cli.command {
        Command::Completion { shell } => {
            clap_complete::generate(
                *shell,
                &mut command(),
                "kecs-cluster",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("kecs-cluster {}", env!("CARGO_PKG_VERSION"));
            println!("C ABI version {}", kecs_cluster::ffi::ABI_VERSION);
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(exit_status(ErrorCode::Internal));
        }
    };
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    rt.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: cancelling (a create in progress is rolled back)");
            on_signal.cancel();
        }
    });
    match rt.block_on(run(cli, cancel)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(exit_status(e.code()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_has_its_own_exit_status() {
        let mut seen: Vec<u8> = ErrorCode::all().iter().map(|&c| exit_status(c)).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), ErrorCode::all().len());
        assert!(
            seen.iter().all(|&s| s > 2),
            "0, 1 and 2 have other meanings"
        );
        // documented numbers: scripts depend on them
        assert_eq!(exit_status(ErrorCode::InvalidArgument), 11);
        assert_eq!(exit_status(ErrorCode::Internal), 20);
        assert_eq!(exit_status(ErrorCode::NodeFailed), 22);
        let help = exit_status_help();
        for code in ErrorCode::all() {
            assert!(help.contains(&format!("{:<3} {}", exit_status(code), code.as_str())));
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        command().debug_assert();
    }
}
