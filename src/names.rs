//! Cluster names: one normalisation (the prefix is added once, so "web" and
//! "kecs-web" name the same cluster, as in KECS) and one validation, applied
//! before any Docker call.

use crate::error::{Error, Result};

/// k3d's limit on cluster names (`DefaultClusterNameMaxLength`): node names such as
/// `k3d-<name>-server-0` must stay valid hostnames.
pub const MAX_CLUSTER_NAME_LEN: usize = 32;

/// Adds `prefix` unless `name` already starts with it.
pub fn normalize(prefix: &str, name: &str) -> String {
    if name.starts_with(prefix) {
        name.to_string()
    } else {
        format!("{prefix}{name}")
    }
}

/// Normalises and validates a user-supplied cluster name.
pub fn cluster_name(prefix: &str, name: &str) -> Result<String> {
    if name.is_empty() {
        return Err(Error::InvalidArgument("cluster name is empty".into()));
    }
    let full = normalize(prefix, name);
    if full.len() == prefix.len() {
        return Err(Error::InvalidArgument(format!(
            "cluster name {name:?} is only the prefix {prefix:?}: add a name after it"
        )));
    }
    if full.len() > MAX_CLUSTER_NAME_LEN {
        return Err(Error::InvalidArgument(format!(
            "cluster name {full:?} has {} characters; at most {MAX_CLUSTER_NAME_LEN} are allowed (prefix included)",
            full.len()
        )));
    }
    if !is_rfc1123_label(&full) {
        return Err(Error::InvalidArgument(format!(
            "cluster name {full:?} is not a valid RFC 1123 label: use lower-case letters, digits and '-', starting and ending with a letter or digit"
        )));
    }
    Ok(full)
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, at most 63 characters.
pub fn is_rfc1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Validates a configured name prefix: empty, or the start of an RFC 1123 label.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    let ok = prefix.len() < MAX_CLUSTER_NAME_LEN
        && prefix
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !prefix.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "namePrefix {prefix:?} must be lower-case letters, digits and '-', not start with '-', and be shorter than {MAX_CLUSTER_NAME_LEN} characters"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_added_once() {
        assert_eq!(cluster_name("kecs-", "web").unwrap(), "kecs-web");
        assert_eq!(cluster_name("kecs-", "kecs-web").unwrap(), "kecs-web");
        assert_eq!(cluster_name("", "web").unwrap(), "web");
    }

    #[test]
    fn rejects_bad_names() {
        for bad in ["", "kecs-", "Web", "a_b", "a-", "a.b", "ü", "a b"] {
            let e = cluster_name("kecs-", bad).unwrap_err();
            assert_eq!(e.code(), crate::ErrorCode::InvalidArgument, "{bad:?}");
        }
        let long = "a".repeat(28);
        assert!(cluster_name("kecs-", &long).is_err()); // 33 with the prefix
        assert!(cluster_name("kecs-", &"a".repeat(27)).is_ok());
    }

    #[test]
    fn validates_prefix() {
        assert!(validate_prefix("kecs-").is_ok());
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("-x").is_err());
        assert!(validate_prefix("UP").is_err());
    }
}
