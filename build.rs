//! Generates the C header from src/ffi with cbindgen into OUT_DIR. The committed
//! copy in include/ is rewritten only when asked (KECS_UPDATE_HEADER=1), since a
//! build script should not modify the source tree; a test fails with a clear
//! message when the committed header is stale.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=KECS_UPDATE_HEADER");
    let crate_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("kecs_cluster.h");

    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("reading cbindgen.toml");
    let v = |k: &str| std::env::var(k).expect("cargo sets the version variables");
    config.after_includes = Some(format!(
        "\n#ifndef KECS_MUST_USE\n#if defined(__GNUC__) || defined(__clang__)\n#define KECS_MUST_USE __attribute__((warn_unused_result))\n#else\n#define KECS_MUST_USE\n#endif\n#endif\n\n\
         /** Version of the library this header belongs to. */\n\
         #define KECS_VERSION \"{}\"\n#define KECS_VERSION_MAJOR {}\n#define KECS_VERSION_MINOR {}\n#define KECS_VERSION_PATCH {}\n\
         /** ABI version; compare with kecs_abi_version() at run time. */\n#define KECS_ABI_VERSION {}\n\n\
         /** A cluster manager (opaque). Create with kecs_manager_new, free with kecs_manager_free. */\n\
         typedef struct kecs_manager kecs_manager_t;\n\
         /** An error: status and message (opaque). Free with kecs_error_free. */\n\
         typedef struct kecs_error kecs_error_t;\n\
         /** A cancellation token (opaque). Create with kecs_cancel_new, free with kecs_cancel_free. */\n\
         typedef struct kecs_cancel kecs_cancel_t;\n",
        v("CARGO_PKG_VERSION"),
        v("CARGO_PKG_VERSION_MAJOR"),
        v("CARGO_PKG_VERSION_MINOR"),
        v("CARGO_PKG_VERSION_PATCH"),
        abi_version(&crate_dir),
    ));
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the C header");
    bindings.write_to_file(&out);
    if std::env::var("KECS_UPDATE_HEADER").is_ok_and(|v| v == "1") {
        bindings.write_to_file(crate_dir.join("include/kecs_cluster.h"));
    }
}

/// Reads `ABI_VERSION` from src/ffi/types.rs so the header and the library agree.
fn abi_version(crate_dir: &std::path::Path) -> u32 {
    let src = std::fs::read_to_string(crate_dir.join("src/ffi/types.rs"))
        .expect("reading src/ffi/types.rs");
    src.lines()
        .find_map(|l| l.trim().strip_prefix("pub const ABI_VERSION: u32 = "))
        .and_then(|rest| rest.trim_end_matches(';').trim().parse().ok())
        .expect("src/ffi/types.rs defines `pub const ABI_VERSION: u32 = N;`")
}
