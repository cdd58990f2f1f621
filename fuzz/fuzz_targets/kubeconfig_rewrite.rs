//! Kubeconfig rewriting: the file a node writes (k3s's
//! /etc/rancher/k3s/k3s.yaml, kind's admin.conf) is renamed and re-pointed for
//! the host and for the cluster network (`kubeconfig::rewrite`), and read back
//! by `server_url` and `has_cluster_entry`. Input: the node's kubeconfig.
//!
//! Never a panic. What `rewrite` returns is YAML that reads back with the new
//! names and server, and rewriting it again changes nothing.
#![no_main]

use kecs_cluster::kubeconfig::{self, EntryNames};
use kecs_cluster::provider::{k3d, kind};
use libfuzzer_sys::fuzz_target;

const CLUSTER: &str = "kecs-fuzz";

fn check(raw: &str, names: &EntryNames, server: &str) {
    let Ok(out) = kubeconfig::rewrite(raw, names, server) else {
        return;
    };
    assert_eq!(
        kubeconfig::server_url(&out).as_deref(),
        Some(server),
        "{out}"
    );
    assert!(kubeconfig::has_cluster_entry(&out, &names.cluster), "{out}");
    let again = kubeconfig::rewrite(&out, names, server).expect("a rewritten kubeconfig rewrites");
    assert_eq!(again, out, "rewriting twice changed it");
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let _ = kubeconfig::server_url(raw);
    let _ = kubeconfig::has_cluster_entry(raw, "default");
    let k3d_names = EntryNames {
        cluster: k3d::spec::context_name(CLUSTER),
        context: k3d::spec::context_name(CLUSTER),
        user: k3d::spec::user_name(CLUSTER),
    };
    // for the host, and for the cluster network (container mode)
    check(raw, &k3d_names, "https://127.0.0.1:40000");
    check(raw, &k3d_names, &k3d::spec::internal_url(CLUSTER));
    let kind_entry = kind::spec::entry_name(CLUSTER);
    let kind_names = EntryNames {
        cluster: kind_entry.clone(),
        context: kind_entry.clone(),
        user: kind_entry,
    };
    check(raw, &kind_names, &kind::spec::internal_url(CLUSTER, true));
});
