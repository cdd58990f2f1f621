//! Docker Engine access shared by the providers: connecting (API version
//! negotiated once per client), label queries, removing objects, reading files out
//! of containers through the archive API, making sure an image is present, and
//! following a container's log stream to a line.

use bollard::Docker;
use futures_util::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::time::Duration;

use crate::docker_host::{self, DockerEndpoint};
use crate::engine::models::{ContainerInspectResponse, ContainerSummary};
use crate::engine::query::{
    ListContainersOptions, ListVolumesOptions, LogsOptions, RemoveContainerOptions,
};
pub use crate::engine::ExecOutput;
use crate::engine::{self, Engine, ExecRequest};
use crate::error::{is_docker_not_found, Error, Result};
use crate::guard::Guard;

/// How long connecting (and negotiating the API version) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects to `host` (`unix://…`, `tcp://…`, `http://…`, or a socket path;
/// default the local socket), without TLS, and negotiates the API version.
/// The manager resolves TLS and Docker contexts first and calls
/// [`connect_endpoint`].
pub async fn connect(host: Option<&str>) -> Result<Docker> {
    let endpoint = match host {
        Some(h) => DockerEndpoint::plain(h)?,
        None => DockerEndpoint::local(),
    };
    connect_endpoint(&endpoint).await
}

/// Connects to `endpoint` and negotiates the API version with the engine, so
/// older engines (Docker 20.10 speaks 1.41) and newer ones both work. Over TLS,
/// a failed handshake (an unknown CA, a refused client certificate) is reported
/// as such.
pub async fn connect_endpoint(endpoint: &DockerEndpoint) -> Result<Docker> {
    let host = &endpoint.url;
    let via = match &endpoint.context {
        Some(ctx) => format!(" (Docker context {ctx:?})"),
        None => String::new(),
    };
    let over = if endpoint.uses_tls() { " over TLS" } else { "" };
    let unavailable = |detail: String| {
        Error::DockerUnavailable(format!(
            "cannot reach the Docker Engine at {host}{via}{over}: {detail} (is the daemon running? set dockerHost or DOCKER_HOST)"
        ))
    };
    let docker = endpoint.client()?;
    match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => match docker_host::tls_failure(&e) {
            Some(tls) => Err(Error::DockerUnavailable(format!(
                "TLS handshake with the Docker Engine at {host}{via} failed: {tls} (check that ca.pem is the engine's CA and that the engine trusts cert.pem)"
            ))),
            None => Err(unavailable(e.to_string())),
        },
        Err(_) => Err(unavailable(format!(
            "no answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// `{"label": ["k=v", …]}` for Docker list filters; an empty value matches any
/// container that has the key.
pub fn label_filter(labels: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    let terms = labels
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.to_string()
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    HashMap::from([("label".to_string(), terms)])
}

/// All containers (running or not) carrying every one of `labels`: one API call.
pub async fn containers_with_labels(
    docker: &impl Engine,
    labels: &[(&str, &str)],
) -> Result<Vec<ContainerSummary>> {
    let opts = ListContainersOptions {
        all: true,
        filters: Some(label_filter(labels)),
        ..Default::default()
    };
    docker
        .list_containers(opts)
        .await
        .map_err(|e| Error::docker("listing containers", e))
}

/// A container's name without Docker's leading '/'.
pub fn summary_name(c: &ContainerSummary) -> String {
    c.names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default()
}

pub fn summary_label<'a>(c: &'a ContainerSummary, key: &str) -> Option<&'a str> {
    c.labels.as_ref()?.get(key).map(String::as_str)
}

/// Force-removes containers with their anonymous volumes, concurrently (in
/// sequence on an engine that needs it: [`Engine::one_leave_at_a_time`]); a
/// container that is already gone counts as removed.
pub async fn remove_containers(
    docker: &impl Engine,
    names: &[String],
    guard: &Guard,
) -> Result<()> {
    let removals = names.iter().map(|name| async move {
        let opts = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match docker.remove_container(name, opts).await {
            Ok(()) => {
                guard.report(&format!("removed node {name}"));
                Ok(())
            }
            Err(e) if is_docker_not_found(&e) => Ok(()),
            // 409 "removal already in progress" (a concurrent delete): gone soon
            Err(e) if engine::status_code(&e) == Some(409) => Ok(()),
            Err(e) => Err(Error::docker(format!("removing container {name}"), e)),
        }
    });
    engine::all_leaves_finish(docker, removals)
        .await
        .map(|_| ())
}

/// Removes every volume carrying all `labels` (used for the cluster's own volumes).
pub async fn remove_volumes_with_labels(
    docker: &impl Engine,
    labels: &[(&str, &str)],
    guard: &Guard,
) -> Result<()> {
    let opts = ListVolumesOptions {
        filters: Some(label_filter(labels)),
    };
    let list = docker
        .list_volumes(opts)
        .await
        .map_err(|e| Error::docker("listing volumes", e))?;
    for v in list.volumes.unwrap_or_default() {
        match docker.remove_volume(&v.name, true).await {
            Ok(()) => guard.report(&format!("removed volume {}", v.name)),
            Err(e) if is_docker_not_found(&e) => {}
            Err(e) => return Err(Error::docker(format!("removing volume {}", v.name), e)),
        }
    }
    Ok(())
}

pub async fn inspect(docker: &impl Engine, container: &str) -> Result<ContainerInspectResponse> {
    docker
        .inspect_container(container)
        .await
        .map_err(|e| Error::docker(format!("inspecting container {container}"), e))
}

/// The host port Docker bound for `port` (e.g. "6443/tcp") of a started container.
pub fn published_port(info: &ContainerInspectResponse, port: &str) -> Option<u16> {
    info.network_settings
        .as_ref()?
        .ports
        .as_ref()?
        .get(port)?
        .as_ref()?
        .iter()
        .find_map(|b| b.host_port.as_deref()?.parse().ok())
}

/// Reads one file out of a container through the archive API (a tar stream).
pub async fn read_file(docker: &impl Engine, container: &str, path: &str) -> Result<Vec<u8>> {
    let tarball = docker
        .download_archive(container, path)
        .await
        .map_err(|e| Error::docker(format!("copying {path} out of {container}"), e))?;
    let mut archive = tar::Archive::new(tarball.as_slice());
    let entries = archive
        .entries()
        .map_err(|e| Error::io(format!("reading the archive of {path} from {container}"), e))?;
    for entry in entries {
        let mut entry = entry
            .map_err(|e| Error::io(format!("reading the archive of {path} from {container}"), e))?;
        if entry.header().entry_type().is_file() {
            let mut out = Vec::new();
            entry
                .read_to_end(&mut out)
                .map_err(|e| Error::io(format!("reading {path} from {container}"), e))?;
            return Ok(out);
        }
    }
    Err(Error::NotFound(format!(
        "{path} in container {container} is not a regular file"
    )))
}

/// Makes sure `image` is present: used as is when local, else pulled. Fails with
/// ImageUnavailable before anything of the cluster exists.
pub async fn ensure_image(docker: &impl Engine, image: &str, guard: &Guard) -> Result<()> {
    match docker.inspect_image(image).await {
        Ok(_) => return Ok(()),
        Err(e) if is_docker_not_found(&e) => {}
        Err(e) => return Err(Error::docker(format!("inspecting image {image}"), e)),
    }
    guard.report(&format!("pulling image {image}"));
    let pull = async {
        let mut stream = docker.pull_image(image);
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(err) = info.error_detail.and_then(|d| d.message) {
                        return Err(err);
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    };
    let pulled = guard
        .wait("pulling the image", async { Ok(pull.await) })
        .await?;
    let unavailable = |why: String| {
        Error::ImageUnavailable(format!(
            "image {image} is not present locally and could not be pulled: {why} (load it with `docker load` or choose another image)"
        ))
    };
    pulled.map_err(unavailable)?;
    match docker.inspect_image(image).await {
        Ok(_) => Ok(()),
        Err(e) => Err(unavailable(e.to_string())),
    }
}

/// How a log wait ended without the line.
fn exit_description(info: &ContainerInspectResponse) -> String {
    let state = info.state.as_ref();
    let status = state
        .and_then(|s| s.status)
        .map(|s| s.to_string())
        .unwrap_or_else(|| "unknown".into());
    let code = state.and_then(|s| s.exit_code).unwrap_or(-1);
    let err = state
        .and_then(|s| s.error.clone())
        .filter(|e| !e.is_empty());
    match err {
        Some(e) => format!("status {status}, exit code {code}, error {e:?}"),
        None => format!("status {status}, exit code {code}"),
    }
}

/// Follows `container`'s log (from `since`, whole Unix seconds; 0 = the
/// beginning) until a line contains one of `needles` (case-insensitive). Fails,
/// naming the exit code and the last lines, when the container stops first.
pub async fn wait_for_log_line(
    docker: &impl Engine,
    container: &str,
    needles: &[&str],
    since: i64,
) -> Result<String> {
    follow_log_to_line(docker, container, needles, since, None).await
}

/// `wait_for_log_line` for lines logged after `after` (an RFC 3339 time with
/// nanoseconds, such as the previous run's `State.FinishedAt`): on a restart the
/// previous run's lines, even those of the same second, never count. Docker's
/// zero time (`0001-01-01…`, never ran) counts every line.
pub async fn wait_for_log_line_after(
    docker: &impl Engine,
    container: &str,
    needles: &[&str],
    after: &str,
) -> Result<String> {
    let after = parse_timestamp(after).filter(|(s, _)| *s > 0);
    let since = after.map(|(s, _)| s).unwrap_or(0);
    follow_log_to_line(docker, container, needles, since, after).await
}

/// Docker's RFC 3339 timestamps (`2026-11-26T08:00:00.123456789Z`) as
/// (Unix seconds, nanoseconds).
pub fn parse_timestamp(rfc3339: &str) -> Option<(i64, u32)> {
    let (date, time) = rfc3339.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.get(..8)?.split(':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let nanos = match time.get(8..).and_then(|r| r.strip_prefix('.')) {
        Some(frac) => {
            let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
            let padded = format!("{digits:0<9}");
            padded.get(..9)?.parse::<u32>().ok()?
        }
        None => 0,
    };
    // days from civil (Howard Hinnant)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60 + ss, nanos))
}

async fn follow_log_to_line(
    docker: &impl Engine,
    container: &str,
    needles: &[&str],
    since: i64,
    after: Option<(i64, u32)>,
) -> Result<String> {
    let needles: Vec<String> = needles.iter().map(|n| n.to_lowercase()).collect();
    let opts = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        since: since.clamp(0, i32::MAX as i64) as i32,
        timestamps: after.is_some(),
        ..Default::default()
    };
    let mut stream = docker.logs(container, opts);
    let mut pending = String::new();
    let mut tail: VecDeque<String> = VecDeque::new();
    let check_line = |line: &str, tail: &mut VecDeque<String>| -> bool {
        let line = match after {
            // "<timestamp> <line>": lines from before the start do not count
            Some(after) => match line.split_once(' ') {
                Some((ts, rest)) => match parse_timestamp(ts) {
                    Some(at) if at < after => return false,
                    Some(_) => rest,
                    None => line,
                },
                None => line,
            },
            None => line,
        };
        let lower = line.to_lowercase();
        if needles.iter().any(|n| lower.contains(n.as_str())) {
            return true;
        }
        if tail.len() == 5 {
            tail.pop_front();
        }
        tail.push_back(line.trim_end().to_string());
        false
    };
    while let Some(item) = stream.next().await {
        let out =
            item.map_err(|e| Error::docker(format!("following the log of {container}"), e))?;
        pending.push_str(&String::from_utf8_lossy(&out));
        while let Some(pos) = pending.find('\n') {
            let line: String = pending.drain(..=pos).collect();
            if check_line(&line, &mut tail) {
                return Ok(line.trim_end().to_string());
            }
        }
    }
    if !pending.is_empty() && check_line(&pending.clone(), &mut tail) {
        return Ok(pending.trim_end().to_string());
    }
    let how = match inspect(docker, container).await {
        Ok(info) => exit_description(&info),
        Err(e) => e.to_string(),
    };
    let last = if tail.is_empty() {
        "no log output".to_string()
    } else {
        format!("last log lines: {}", Vec::from(tail).join(" | "))
    };
    Err(Error::NodeFailed(format!(
        "node {container} stopped before it was ready ({how}); {last}"
    )))
}

/// The container this process runs in, when it runs in one we can identify
/// (Docker sets the hostname to the short container ID).
pub async fn self_container(docker: &impl Engine) -> Option<String> {
    if !std::path::Path::new("/.dockerenv").exists() {
        return None;
    }
    let hostname = std::fs::read_to_string("/etc/hostname")
        .ok()?
        .trim()
        .to_string();
    if hostname.is_empty() {
        return None;
    }
    let info = docker.inspect_container(&hostname).await.ok()?;
    info.id
}

/// Runs `cmd` in `container` through the Engine's exec API (no Docker CLI),
/// writing `stdin` (then closing it) when given, and collects its output.
/// `privileged` follows the nodes' own setting (kind execs privileged).
pub async fn exec(
    docker: &impl Engine,
    container: &str,
    cmd: &[&str],
    stdin: Option<&[u8]>,
    privileged: bool,
) -> Result<ExecOutput> {
    let request = ExecRequest {
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stdin: stdin.map(<[u8]>::to_vec),
        privileged,
    };
    docker
        .exec(container, request)
        .await
        .map_err(|e| Error::docker(format!("running `{}` in {container}", cmd.join(" ")), e))
}

/// `exec` that fails unless the command exits 0; the error carries the command,
/// its exit code and the tail of its output.
pub async fn exec_ok(
    docker: &impl Engine,
    container: &str,
    cmd: &[&str],
    stdin: Option<&[u8]>,
    privileged: bool,
) -> Result<String> {
    let out = exec(docker, container, cmd, stdin, privileged).await?;
    if out.exit_code == 0 {
        return Ok(out.output);
    }
    let lines: Vec<&str> = out.output.lines().collect();
    let tail = lines[lines.len().saturating_sub(8)..].join(" | ");
    Err(Error::NodeFailed(format!(
        "`{}` in {container} exited with code {}: {}",
        cmd.join(" "),
        out.exit_code,
        if tail.is_empty() {
            "no output".to_string()
        } else {
            tail
        }
    )))
}

/// Stops a container (the engine's default grace period and the image's stop
/// signal, as `docker stop` without `-t`); one already stopped is fine.
pub async fn stop_container(docker: &impl Engine, container: &str) -> Result<()> {
    match docker.stop_container(container).await {
        Ok(()) => Ok(()),
        Err(e) if engine::status_code(&e) == Some(304) => Ok(()),
        Err(e) => Err(Error::docker(format!("stopping {container}"), e)),
    }
}

/// A host port nothing listens on right now, chosen the way k3d and kind choose
/// one (bind port 0 on `ip`, read it, close): concrete ports are re-bound by
/// Docker on every start, so the API URL never moves (an empty host port would
/// get a new ephemeral port at each start).
pub fn free_host_port(ip: std::net::IpAddr) -> Result<u16> {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::io(format!("finding a free host port on {ip}"), e))
}

/// Writes one file into a container through the archive API (a one-entry tar),
/// as k3d writes its files before a node's first start.
pub async fn write_file(
    docker: &impl Engine,
    container: &str,
    path: &str,
    content: &[u8],
    mode: u32,
) -> Result<()> {
    let what = || format!("writing {path} into {container}");
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(mode);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_data(&mut header, path.trim_start_matches('/'), content)
        .map_err(|e| Error::io(what(), e))?;
    let tarball = builder.into_inner().map_err(|e| Error::io(what(), e))?;
    docker
        .upload_archive(container, tarball)
        .await
        .map_err(|e| Error::docker(what(), e))
}

/// The exit code of `container`'s last exit since `since` (Unix seconds), from
/// the engine's `die` events: a node restarted by its restart policy shows
/// "running" again, but its event says how it ended.
pub async fn last_exit_code(docker: &impl Engine, container: &str, since: i64) -> Option<i64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs()
        + 1;
    let opts = crate::engine::query::EventsOptions {
        since: Some(since.to_string()),
        until: Some(now.to_string()),
        filters: Some(HashMap::from([
            ("container".to_string(), vec![container.to_string()]),
            ("event".to_string(), vec!["die".to_string()]),
        ])),
    };
    let mut events = docker.events(opts);
    let mut code = None;
    while let Some(Ok(ev)) = events.next().await {
        if let Some(c) = ev
            .actor
            .and_then(|a| a.attributes)
            .and_then(|a| a.get("exitCode").and_then(|c| c.parse().ok()))
        {
            code = Some(c);
        }
    }
    code
}
