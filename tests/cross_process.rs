//! Two processes on one engine (issue #14, cross-process safety): two
//! `kecs-cluster create` runs of one name at the same moment, and a create
//! racing a delete. Each run is its own OS process with its own manager, so the
//! manager's in-process lock does not order them: only the claim in Docker does
//! (k3d: the image volume; kind: the first control plane's container name) and
//! the creation id every object carries (a rollback removes only its own).

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kecs_cluster::ErrorCode;
use support::*;

const CLI: &str = env!("CARGO_BIN_EXE_kecs-cluster");

/// `kecs-cluster <args>` for `provider` with the simulator images, the
/// kubeconfig directory in `home`, and no merge into a default kubeconfig.
fn cli(home: &Path, provider: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(CLI);
    cmd.env("HOME", home)
        .env_remove("KUBECONFIG")
        .env("KECS_K3S_IMAGE", SIM_IMAGE)
        .env("KECS_LB_IMAGE", SIM_LB_IMAGE)
        .env("KECS_KIND_IMAGE", SIM_KIND_IMAGE)
        .env("KECS_KIND_LB_IMAGE", SIM_KIND_LB_IMAGE)
        .env(
            "KECS_PRIVILEGED",
            if privileged() { "true" } else { "false" },
        )
        .arg("--provider")
        .arg(provider)
        .arg("--kubeconfig-dir")
        .arg(home.join("clusters"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn create_args(name: &str) -> Vec<&str> {
    vec![
        "create",
        name,
        "--agents",
        "1",
        "--kubeconfig-update-default=false",
    ]
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Exit status 10 + the error's code (the CLI's documented table).
fn failed_with(out: &Output, code: ErrorCode) -> bool {
    out.status.code() == Some(10 + code as i32)
}

/// Every container of `cluster` (by its provider's cluster label), with state.
async fn containers(cluster: &str) -> Vec<(String, String)> {
    let docker = docker().await;
    let mut all = Vec::new();
    for label in ["k3d.cluster", "io.x-k8s.kind.cluster"] {
        for c in kecs_cluster::docker::containers_with_labels(&docker, &[(label, cluster)])
            .await
            .expect("listing containers")
        {
            all.push((
                kecs_cluster::docker::summary_name(&c),
                c.state.map(|s| s.to_string()).unwrap_or_default(),
            ));
        }
    }
    all.sort();
    all
}

/// After the race: the cluster is complete (every expected container, running)
/// or entirely gone (nothing left at all).
async fn assert_whole_or_gone(cluster: &str, expected: &[String], what: &str) -> bool {
    let now = containers(cluster).await;
    if now.is_empty() {
        let left = leftovers(cluster).await;
        assert!(left.is_empty(), "{what}: no containers, but left: {left:?}");
        return false;
    }
    let names: Vec<&String> = now.iter().map(|(n, _)| n).collect();
    let mut want: Vec<&String> = expected.iter().collect();
    want.sort();
    assert_eq!(names, want, "{what}: a half cluster remains: {now:?}");
    assert!(
        now.iter().all(|(_, s)| s == "running"),
        "{what}: not every container runs: {now:?}"
    );
    true
}

fn expected_containers(provider: &str, cluster: &str) -> Vec<String> {
    match provider {
        "kind" => vec![
            format!("{cluster}-control-plane"),
            format!("{cluster}-worker"),
        ],
        _ => vec![
            format!("k3d-{cluster}-agent-0"),
            format!("k3d-{cluster}-server-0"),
            format!("k3d-{cluster}-serverlb"),
        ],
    }
}

/// Two creates of one name at once, three rounds: one makes the cluster, the
/// other returns it or AlreadyExists, and the cluster is whole afterwards
/// (neither rollback took the other's objects). Then one delete leaves nothing.
async fn racing_creates(provider: &str) {
    ensure_sim_image().await;
    let _gate = shared_for(provider);
    let home = TempDir::new("xproc-create");
    for round in 0..3 {
        let name = unique_name(&format!("xc{round}"));
        let cluster = format!("kecs-{name}");
        let _cleanup = ClusterGuard {
            config: config(home.path(), provider),
            name: name.clone(),
        };
        let a = cli(home.path(), provider, &create_args(&name))
            .spawn()
            .unwrap();
        let b = cli(home.path(), provider, &create_args(&name))
            .spawn()
            .unwrap();
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let outcomes = [&a, &b];
        eprintln!(
            "{provider} round {round}: exits {:?} and {:?}",
            a.status.code(),
            b.status.code()
        );
        assert!(
            outcomes.iter().any(|o| o.status.success()),
            "round {round}: neither create succeeded\nA: {}\nB: {}",
            text(&a),
            text(&b)
        );
        for o in outcomes {
            assert!(
                o.status.success() || failed_with(o, ErrorCode::AlreadyExists),
                "round {round}: the other create must return the cluster or AlreadyExists: {}",
                text(o)
            );
        }
        let whole = assert_whole_or_gone(
            &cluster,
            &expected_containers(provider, &cluster),
            &format!("{provider} round {round}"),
        )
        .await;
        assert!(
            whole,
            "round {round}: a create succeeded but the cluster is gone"
        );
        // the winner's kubeconfig works
        let kubeconfig = home
            .path()
            .join("clusters")
            .join(format!("{cluster}.config"));
        let nodes = kubectl(&kubeconfig, &["get", "nodes", "--no-headers"]);
        assert_eq!(nodes.lines().count(), 2, "round {round}: {nodes}");
        let del = cli(home.path(), provider, &["delete", &name])
            .output()
            .unwrap();
        assert!(del.status.success(), "delete: {}", text(&del));
        let left = leftovers(&cluster).await;
        assert!(
            left.is_empty(),
            "round {round}: left after delete: {left:?}"
        );
    }
    if provider == "kind" {
        // the shared network is never left duplicated (every call by name would fail)
        let docker = docker().await;
        let named_kind = docker
            .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
            .await
            .unwrap()
            .into_iter()
            .filter(|n| n.name.as_deref() == Some("kind"))
            .count();
        assert!(named_kind <= 1, "{named_kind} networks named kind");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_create_one_k3d_cluster() {
    racing_creates("k3d").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_create_one_kind_cluster() {
    racing_creates("kind").await;
}

/// Waits until `child`'s progress (stderr) shows a line containing `needle`,
/// returning the lines seen; the rest of its stderr is drained in a thread.
fn wait_for_progress(child: &mut Child, needle: &str, limit: Duration) -> Vec<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    // keep draining so the child never blocks on a full pipe
                    std::thread::spawn(move || while rx.recv().is_ok() {});
                    return seen;
                }
            }
            Err(_) => panic!("no progress line {needle:?} within {limit:?}: {seen:?}"),
        }
    }
}

/// A create in one process and a delete in another, the delete started at
/// several points of the create: whatever the interleaving, the end state is
/// the whole cluster or nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_racing_delete_ends_whole_or_gone() {
    ensure_sim_image().await;
    let _gate = shared();
    let home = TempDir::new("xproc-delete");
    let provider = "k3d";
    for (round, point) in [
        "created volume",
        "created network",
        "started node",
        "wrote kubeconfig",
    ]
    .iter()
    .enumerate()
    {
        let name = unique_name(&format!("xd{round}"));
        let cluster = format!("kecs-{name}");
        let _cleanup = ClusterGuard {
            config: config(home.path(), provider),
            name: name.clone(),
        };
        let mut create = cli(home.path(), provider, &create_args(&name))
            .spawn()
            .unwrap();
        wait_for_progress(&mut create, point, Duration::from_secs(120));
        let delete = cli(home.path(), provider, &["delete", &name])
            .output()
            .unwrap();
        let create = create.wait_with_output().unwrap();
        let what = format!("delete at {point:?}");
        eprintln!(
            "{what}: create exit {:?}, delete exit {:?}",
            create.status.code(),
            delete.status.code()
        );
        assert!(
            delete.status.success(),
            "{what}: delete failed: {}",
            text(&delete)
        );
        let whole =
            assert_whole_or_gone(&cluster, &expected_containers(provider, &cluster), &what).await;
        // a create that reports success left a whole cluster (unless the
        // delete came after it); a failed one left nothing
        if !create.status.success() {
            assert!(!whole, "{what}: the create failed but its cluster remains");
        }
        // the state is consistent: one more delete always finishes it
        let again = cli(home.path(), provider, &["delete", &name])
            .output()
            .unwrap();
        assert!(
            again.status.success(),
            "{what}: second delete: {}",
            text(&again)
        );
        let left = leftovers(&cluster).await;
        assert!(left.is_empty(), "{what}: left after delete: {left:?}");
    }
}
