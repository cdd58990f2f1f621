//! Cluster names: the prefix check (`validate_prefix`, as `resolve` applies it)
//! and the one normalisation and validation every operation starts with
//! (`cluster_name`). Input: `PREFIX\nNAME`; without a newline the whole input
//! is the name and the prefix is the default `kecs-`.
//!
//! What is accepted must be what the providers build hostnames from: an RFC
//! 1123 label of at most 32 characters starting with the prefix, the same when
//! given again with its prefix ("web" and "kecs-web" are one cluster), and
//! every node and network name made from it a valid label too.
#![no_main]

use kecs_cluster::config::DEFAULT_NAME_PREFIX;
use kecs_cluster::names::{self, MAX_CLUSTER_NAME_LEN};
use kecs_cluster::options::{NodeRef, Role};
use kecs_cluster::provider::{k3d, kind};
use kecs_cluster::ErrorCode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (prefix, name) = text.split_once('\n').unwrap_or((DEFAULT_NAME_PREFIX, text));
    if let Err(e) = names::validate_prefix(prefix) {
        // a manager with this prefix is never made
        assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
        return;
    }
    let full = match names::cluster_name(prefix, name) {
        Ok(full) => full,
        Err(e) => {
            assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
            return;
        }
    };
    assert!(full.starts_with(prefix), "{full:?}");
    assert!(full.len() <= MAX_CLUSTER_NAME_LEN, "{full:?}");
    assert!(names::is_rfc1123_label(&full), "{full:?}");
    if !name.starts_with(prefix) {
        assert_eq!(full, format!("{prefix}{name}"));
    }
    assert_eq!(
        names::cluster_name(prefix, &full).ok().as_ref(),
        Some(&full)
    );
    // the longest node names either provider makes from it
    for node in [
        NodeRef {
            role: Role::Server,
            index: 8,
        },
        NodeRef {
            role: Role::Agent,
            index: 98,
        },
    ] {
        let k3d_node = k3d::spec::node_name(&full, node);
        assert!(names::is_rfc1123_label(&k3d_node), "{k3d_node:?}");
        let kind_node = kind::spec::node_name(&full, node);
        assert!(names::is_rfc1123_label(&kind_node), "{kind_node:?}");
    }
    for derived in [
        k3d::spec::network_name(&full),
        k3d::spec::lb_name(&full),
        k3d::spec::port_proxy_name(&full, 65535, "tcp"),
        kind::spec::lb_name(&full),
    ] {
        assert!(names::is_rfc1123_label(&derived), "{derived:?}");
    }
});
