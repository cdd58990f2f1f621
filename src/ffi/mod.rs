//! C ABI (see include/kecs_cluster.h).
