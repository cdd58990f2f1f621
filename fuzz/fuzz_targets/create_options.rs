//! Create options as the C ABI takes them (`kecs_cluster_create`): UTF-8, then
//! serde JSON (`CreateOptions::from_json`), then `validate` into a plan. Never
//! a panic; every refusal is an InvalidArgument; what is accepted respects the
//! limits the providers rely on.
#![no_main]

use kecs_cluster::config::{DEFAULT_K3S_IMAGE, DEFAULT_KIND_IMAGE};
use kecs_cluster::options::{CreateOptions, MAX_AGENTS, MAX_SERVERS};
use kecs_cluster::options::{NodeFilter, Role};
use kecs_cluster::ErrorCode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // the C ABI refuses non-UTF-8 before any parsing
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let options = match CreateOptions::from_json(json) {
        Ok(o) => o,
        Err(e) => {
            assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
            return;
        }
    };
    // Go marshals options back and forth: what was read reads back the same
    let again = serde_json::to_string(&options).expect("parsed options serialise");
    assert_eq!(
        CreateOptions::from_json(&again).expect("serialised options parse"),
        options,
        "round trip through {again}"
    );
    for default_image in [DEFAULT_K3S_IMAGE, DEFAULT_KIND_IMAGE] {
        let plan = match options.validate(default_image) {
            Ok(p) => p,
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
                continue;
            }
        };
        assert!((1..=MAX_SERVERS).contains(&plan.servers));
        assert!(plan.agents <= MAX_AGENTS);
        assert!(!plan.image.is_empty());
        assert!(!plan.timeout.is_zero());
        let count = |role| match role {
            Role::Server => plan.servers,
            Role::Agent => plan.agents,
        };
        for port in &plan.ports {
            assert_ne!(port.container_port, 0);
            assert!(["tcp", "udp", "sctp"].contains(&port.protocol.as_str()));
            assert!(port.node.index < count(port.node.role), "{port:?}");
        }
        for (arg, filter) in &plan.k3s_args {
            assert!(!arg.contains('\0'));
            if let NodeFilter::One(node) = filter {
                assert!(node.index < count(node.role), "{arg:?} {node:?}");
            }
        }
        for v in &plan.volumes {
            assert!(v.container_path.starts_with('/') && !v.container_path.contains(':'));
        }
        // the registries a plan names are ones the registry code accepts
        let refs: Vec<_> = plan
            .registry
            .create
            .iter()
            .map(|c| c.validate().expect("validated registry"))
            .collect();
        let _ = kecs_cluster::registry::k3s_registries_yaml(&refs);
    }
});
