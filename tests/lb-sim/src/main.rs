//! Test infrastructure: one static multi-call binary standing in for the load
//! balancers k3d and kind run in front of their nodes. What it does depends on the
//! name it is started under (argv0), as busybox does:
//!
//! - `nginx-proxy` (entrypoint of `kecs-sim/k3d-proxy:test`): k3d's proxy image,
//!   confd + nginx, driven by `/etc/confd/values.yaml`.
//! - `envoy` (in `kecs-sim/kind-lb:test`): envoy as kind runs it, driven by a
//!   bootstrap file and file-based LDS/CDS.
//! - `bash`: kind starts its load balancer with `bash -c <bootstrap>`; busybox has
//!   no bash applet, so this runs `/bin/sh` with the same arguments.
//! - `kecs-lb-sim echo NAME PORT...`: a test upstream that tells who answered.
//!
//! It proxies real TCP and UDP traffic; it is not nginx or envoy and reads only the
//! fields k3d and kind write.

mod bash;
mod echo;
mod envoy;
mod k3d;
mod logfmt;
mod proxy;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let argv0 = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    let rest = args.get(1..).unwrap_or_default().to_vec();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kecs-lb-sim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        match argv0.as_str() {
            "nginx-proxy" => k3d::run().await,
            "envoy" => envoy::run(&rest).await,
            "bash" => bash::run(&rest).await,
            _ => match rest.first().map(String::as_str) {
                Some("nginx-proxy") => k3d::run().await,
                Some("envoy") => envoy::run(&rest[1..]).await,
                Some("echo") => echo::run(&rest[1..]).await,
                _ => {
                    eprintln!(
                        "usage: kecs-lb-sim nginx-proxy | envoy -c FILE | echo NAME PORT... \
                         (or run as nginx-proxy, envoy, bash)"
                    );
                    2
                }
            },
        }
    });
    // Connection tasks may still be running; do not wait for them on the way out.
    runtime.shutdown_background();
    ExitCode::from(code)
}

/// Resolves when the process gets one of the signals `docker stop` may send
/// (nginx's image stops with SIGQUIT, Docker's default is SIGTERM, Ctrl-C is
/// SIGINT), so the stand-ins exit at once instead of waiting for SIGKILL.
/// Registration happens on the first poll: call it once, early, and keep the future.
pub async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let register = |kind| signal(kind).expect("registering a signal handler");
    let mut quit = register(SignalKind::quit());
    let mut term = register(SignalKind::terminate());
    let mut int = register(SignalKind::interrupt());
    tokio::select! {
        _ = quit.recv() => "SIGQUIT",
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
