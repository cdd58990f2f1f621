//! `crictl pull IMAGE` (also `k3s crictl pull`): resolves IMAGE the way the node's
//! containerd would and fetches its manifest over HTTP(S), printing which endpoint
//! served it. Only the manifest is fetched (no layers): enough to show that a
//! registry or mirror configuration reaches the image.
//!
//! - k3s node: `/etc/rancher/k3s/registries.yaml` — `mirrors.<host>.endpoint` in
//!   order (a `"*"` mirror when the host has none; `rewrite` rules of the form
//!   `^prefix(.*)` → `replacement$1` on the repository), then the default endpoint;
//!   `configs.<host>.tls` (`insecure_skip_verify`, `ca_file`) and `auth`
//!   (`username`/`password`).
//! - kind node (`/kind` exists): containerd's `config_path`,
//!   `/etc/containerd/certs.d/<host>/hosts.toml` (else `_default/hosts.toml`) —
//!   each `[host."<url>"]` in file order, then `server` (`skip_verify`, `ca`).
//!
//! The default endpoint is `https://<host>` (`https://registry-1.docker.io` for
//! docker.io). The simulator carries no system CA roots: an https endpoint is
//! verified only against a configured CA file, or not at all when the
//! configuration says to skip verification.

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const REGISTRIES_YAML: &str = "/etc/rancher/k3s/registries.yaml";
const CERTS_D: &str = "/etc/containerd/certs.d";
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// `crictl` as the multi-call binary; only `pull` is simulated.
pub async fn main(args: &[String]) -> i32 {
    let words: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    match words.as_slice() {
        ["pull", image] => match pull(image).await {
            Ok(msg) => {
                println!("{msg}");
                0
            }
            Err(e) => {
                eprintln!(
                    "E {} pulling image failed: {e}",
                    crate::logfmt::rfc3339_now()
                );
                1
            }
        },
        _ => {
            eprintln!("crictl (kecs node simulator): only `crictl pull IMAGE` is simulated");
            1
        }
    }
}

/// An image reference split as containerd normalises it.
#[derive(Debug, PartialEq)]
pub struct ImageRef {
    pub host: String,
    pub repo: String,
    /// tag or digest (`sha256:…`)
    pub reference: String,
}

impl ImageRef {
    pub fn parse(image: &str) -> Result<Self, String> {
        if image.is_empty() || image.contains(char::is_whitespace) {
            return Err(format!("invalid reference format: {image:?}"));
        }
        let (host, rest) = match image.split_once('/') {
            // the first component is a registry when it looks like a host
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => ("docker.io".to_string(), image.to_string()),
        };
        let (path, reference) = if let Some((p, d)) = rest.split_once('@') {
            (p.to_string(), d.to_string())
        } else {
            match rest.rsplit_once(':') {
                Some((p, t)) if !t.contains('/') => (p.to_string(), t.to_string()),
                _ => (rest.clone(), "latest".to_string()),
            }
        };
        let repo = if host == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if repo.is_empty() || repo.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!("invalid reference format: {image:?}"));
        }
        Ok(ImageRef {
            host,
            repo,
            reference,
        })
    }

    fn display(&self) -> String {
        let sep = if self.reference.contains(':') {
            '@'
        } else {
            ':'
        };
        format!("{}/{}{sep}{}", self.host, self.repo, self.reference)
    }
}

/// One place to ask, in containerd's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// scheme://host[:port][/path prefix, "/v2" when none]
    pub base: String,
    /// the repository as this endpoint knows it (after rewrites)
    pub repo: String,
    pub skip_verify: bool,
    pub ca_file: Option<String>,
    /// HTTP basic credentials
    pub auth: Option<(String, String)>,
    pub what: &'static str,
}

fn default_server(host: &str) -> String {
    if host == "docker.io" {
        "https://registry-1.docker.io".into()
    } else {
        format!("https://{host}")
    }
}

/// `http://h:5000` → `http://h:5000/v2`; a path given is kept (containerd's hosts.toml).
fn with_v2(url: &str, append: bool) -> String {
    let url = if url.contains("://") {
        url.trim_end_matches('/').to_string()
    } else {
        format!("https://{}", url.trim_end_matches('/'))
    };
    let has_path = url
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'));
    if append && !has_path {
        format!("{url}/v2")
    } else {
        url
    }
}

/// k3s: the endpoints for `img` from a parsed registries.yaml.
pub fn k3s_endpoints(img: &ImageRef, conf: &Value) -> Vec<Endpoint> {
    let mirrors = &conf["mirrors"];
    let mirror = if mirrors[&img.host].is_object() {
        &mirrors[&img.host]
    } else {
        &mirrors["*"]
    };
    let config_for = |host: &str| -> (bool, Option<String>, Option<(String, String)>) {
        let c = &conf["configs"][host];
        let user = c["auth"]["username"].as_str();
        let pass = c["auth"]["password"].as_str();
        (
            c["tls"]["insecure_skip_verify"] == json!(true)
                || c["tls"]["insecure_skip_verify"] == json!("true"),
            c["tls"]["ca_file"].as_str().map(String::from),
            user.zip(pass).map(|(u, p)| (u.into(), p.into())),
        )
    };
    let mut out = Vec::new();
    for e in mirror["endpoint"].as_array().into_iter().flatten() {
        let Some(url) = e.as_str() else { continue };
        let base = with_v2(url, true);
        let host = base
            .split_once("://")
            .map(|(_, r)| r.split('/').next().unwrap_or(""))
            .unwrap_or("");
        let (skip_verify, ca_file, auth) = config_for(host);
        out.push(Endpoint {
            base,
            repo: rewrite(&img.repo, &mirror["rewrite"]),
            skip_verify,
            ca_file,
            auth,
            what: "mirror",
        });
    }
    let (skip_verify, ca_file, auth) = config_for(&img.host);
    let default = Endpoint {
        base: with_v2(&default_server(&img.host), true),
        repo: img.repo.clone(),
        skip_verify,
        ca_file,
        auth,
        what: "default endpoint",
    };
    // containerd asks the registry itself last, unless a mirror already is it
    if !out.iter().any(|e| e.base == default.base) {
        out.push(default);
    }
    out
}

/// k3s's `rewrite`: `^prefix(.*)` patterns with `$1` in the replacement.
fn rewrite(repo: &str, rules: &Value) -> String {
    for (pattern, replacement) in rules.as_object().into_iter().flatten() {
        let Some(repl) = replacement.as_str() else {
            continue;
        };
        let p = pattern.trim_start_matches('^');
        let Some(prefix) = p.strip_suffix("(.*)").or_else(|| p.strip_suffix("(.*)$")) else {
            continue;
        };
        if let Some(rest) = repo.strip_prefix(prefix) {
            return repl.replace("$1", rest);
        }
    }
    repo.to_string()
}

/// kind/containerd: the endpoints for `img` from a parsed hosts.toml.
pub fn hosts_toml_endpoints(img: &ImageRef, conf: &Value) -> Vec<Endpoint> {
    let mut out = Vec::new();
    let entry = |url: &str, t: &Value, what| Endpoint {
        base: with_v2(url, true),
        repo: img.repo.clone(),
        skip_verify: t["skip_verify"] == json!(true),
        ca_file: t["ca"].as_str().map(String::from),
        auth: None,
        what,
    };
    if let Some(hosts) = conf["__order"].as_array() {
        for url in hosts.iter().filter_map(Value::as_str) {
            let t = &conf["host"][url];
            let caps = t["capabilities"].as_array();
            // a host that may not pull or resolve is not asked
            if caps.is_some_and(|c| !c.iter().any(|c| c == "pull" || c == "resolve")) {
                continue;
            }
            out.push(entry(url, t, "host"));
        }
    }
    let server = conf["server"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| default_server(&img.host));
    out.push(entry(&server, conf, "server"));
    out
}

/// The endpoints this node would try for `image`, with the file they come from.
fn endpoints(img: &ImageRef) -> Result<(Vec<Endpoint>, String), String> {
    if std::path::Path::new("/kind").exists() {
        for dir in [img.host.as_str(), "_default"] {
            let path = format!("{CERTS_D}/{dir}/hosts.toml");
            if let Ok(text) = std::fs::read_to_string(&path) {
                let conf = parse_toml(&text).map_err(|e| format!("{path}: {e}"))?;
                return Ok((hosts_toml_endpoints(img, &conf), path));
            }
        }
        return Ok((
            hosts_toml_endpoints(img, &json!({})),
            "no hosts.toml".into(),
        ));
    }
    match std::fs::read_to_string(REGISTRIES_YAML) {
        Ok(text) => {
            let conf = parse_yaml(&text).map_err(|e| format!("{REGISTRIES_YAML}: {e}"))?;
            Ok((k3s_endpoints(img, &conf), REGISTRIES_YAML.into()))
        }
        Err(_) => Ok((k3s_endpoints(img, &json!({})), "no registries.yaml".into())),
    }
}

async fn pull(image: &str) -> Result<String, String> {
    let img = ImageRef::parse(image)?;
    let (eps, source) = endpoints(&img)?;
    let mut tried = Vec::new();
    for ep in &eps {
        let url = format!("{}/{}/manifests/{}", ep.base, ep.repo, img.reference);
        match fetch(ep, &url).await {
            Ok((200, headers, body)) => {
                let digest = header(&headers, "docker-content-digest")
                    .map(String::from)
                    .unwrap_or_else(|| sha256_digest(&body));
                let media = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["mediaType"].as_str().map(String::from))
                    .or_else(|| header(&headers, "content-type").map(String::from))
                    .unwrap_or_default();
                return Ok(format!(
                    "Image is up to date for {} (manifest {digest}, {media}) from {} ({}, {source})",
                    img.display(),
                    ep.base.trim_end_matches("/v2"),
                    ep.what
                ));
            }
            Ok((code, _, _)) => tried.push(format!("{url}: HTTP {code}")),
            Err(e) => tried.push(format!("{url}: {e}")),
        }
    }
    Err(format!(
        "rpc error: code = NotFound desc = failed to pull and unpack image \"{}\": failed to resolve reference: not found on any endpoint ({source}): {}",
        img.display(),
        tried.join("; ")
    ))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// SHA-256 through rustls's ring provider (the hash of a SHA-256 cipher suite),
/// so no hashing crate of its own is needed.
fn sha256_digest(body: &[u8]) -> String {
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
    let d = suite
        .tls13()
        .expect("a TLS 1.3 suite")
        .common
        .hash_provider
        .hash(body);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

type Fetched = (u16, Vec<(String, String)>, Vec<u8>);

/// One GET, over plain TCP or TLS, with the manifest media types accepted.
async fn fetch(ep: &Endpoint, url: &str) -> Result<Fetched, String> {
    let (scheme, rest) = url.split_once("://").ok_or("invalid URL")?;
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => (h.to_string(), p.parse().map_err(|_| "bad port")?),
        _ => (
            hostport.to_string(),
            if scheme == "https" { 443 } else { 80 },
        ),
    };
    let mut head = format!(
        "GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nAccept: {MANIFEST_TYPES}\r\nUser-Agent: containerd/v1.7.23-k3s2 (kecs node simulator)\r\nConnection: close\r\n"
    );
    if let Some((u, p)) = &ep.auth {
        head.push_str(&format!(
            "Authorization: Basic {}\r\n",
            crate::pki::base64(format!("{u}:{p}").as_bytes())
        ));
    }
    head.push_str("\r\n");
    let tcp = tokio::time::timeout(
        Duration::from_secs(5),
        TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| format!("dial tcp {hostport}: i/o timeout"))?
    .map_err(|e| format!("dial tcp {hostport}: {e}"))?;
    let io = async {
        if scheme == "https" {
            let tls = tls_connector(ep)?;
            let name =
                rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls: {e}"))?;
            exchange(stream, &head).await
        } else {
            exchange(tcp, &head).await
        }
    };
    tokio::time::timeout(Duration::from_secs(15), io)
        .await
        .map_err(|_| "timed out".to_string())?
}

fn tls_connector(ep: &Endpoint) -> Result<tokio_rustls::TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let cfg = if ep.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::join::AcceptAny(provider)))
            .with_no_client_auth()
    } else {
        let Some(ca) = &ep.ca_file else {
            return Err("x509: certificate signed by unknown authority (the simulator has no system CA roots: configure a CA file or skip verification)".into());
        };
        let pem = std::fs::read(ca).map_err(|e| format!("reading {ca}: {e}"))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots
                .add(cert.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    head: &str,
) -> Result<Fetched, String> {
    s.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    // a server may close without TLS close_notify: what was read counts
    let _ = s.read_to_end(&mut raw).await;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let code: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("malformed status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    if header(&headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        body = dechunk(&body);
    }
    Ok((code, headers, body))
}

fn dechunk(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(nl) = b[i..].windows(2).position(|w| w == b"\r\n") {
        let size_line = String::from_utf8_lossy(&b[i..i + nl]);
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        i += nl + 2;
        if size == 0 || i + size > b.len() {
            break;
        }
        out.extend_from_slice(&b[i..i + size]);
        i += size + 2;
    }
    out
}

// ---- the configuration files' formats, as far as these files use them ----

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')))
    {
        s[1..s.len() - 1].to_string()
    } else {
        s.to_string()
    }
}

/// Drops a `#` comment that is not inside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (c, quote) {
            ('"' | '\'', None) => quote = Some(c),
            (q, Some(open)) if q == open => quote = None,
            ('#', None) if i == 0 || line[..i].ends_with(' ') => return &line[..i],
            _ => {}
        }
    }
    line
}

fn yaml_scalar(s: &str) -> Value {
    let s = s.trim();
    if s.starts_with('[') && s.ends_with(']') {
        let inner = &s[1..s.len() - 1];
        return Value::Array(
            inner
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(yaml_scalar)
                .collect(),
        );
    }
    if s == "{}" {
        return json!({});
    }
    match s {
        "true" => json!(true),
        "false" => json!(false),
        _ => json!(unquote(s)),
    }
}

/// Block-style YAML: nested maps, `- ` lists (of scalars or maps), quoted and
/// plain scalars, `[a, b]` and `{}`.
pub fn parse_yaml(text: &str) -> Result<Value, String> {
    let lines: Vec<(usize, String)> = text
        .lines()
        .map(strip_comment)
        .filter(|l| !l.trim().is_empty() && l.trim() != "---")
        .map(|l| (l.len() - l.trim_start().len(), l.trim().to_string()))
        .collect();
    let mut pos = 0;
    let v = yaml_block(&lines, &mut pos, 0)?;
    if pos < lines.len() {
        return Err(format!("unexpected indentation at {:?}", lines[pos].1));
    }
    Ok(v)
}

fn yaml_block(lines: &[(usize, String)], pos: &mut usize, indent: usize) -> Result<Value, String> {
    let Some((first_indent, first)) = lines.get(*pos) else {
        return Ok(Value::Null);
    };
    if *first_indent < indent {
        return Ok(Value::Null);
    }
    let indent = *first_indent;
    if first.starts_with("- ") || first == "-" {
        let mut items = Vec::new();
        while let Some((i, line)) = lines.get(*pos) {
            if *i != indent || !(line.starts_with("- ") || line == "-") {
                break;
            }
            let rest = line[1..].trim().to_string();
            *pos += 1;
            if rest.is_empty() {
                items.push(yaml_block(lines, pos, indent + 1)?);
            } else if rest.contains(": ") || rest.ends_with(':') {
                // "- key: value" starts a map whose other keys sit under the dash
                let mut sub = vec![(indent + 2, rest)];
                while let Some((i, l)) = lines.get(*pos) {
                    if *i <= indent {
                        break;
                    }
                    sub.push((*i, l.clone()));
                    *pos += 1;
                }
                let mut p = 0;
                items.push(yaml_block(&sub, &mut p, 0)?);
            } else {
                items.push(yaml_scalar(&rest));
            }
        }
        return Ok(Value::Array(items));
    }
    let mut map = serde_json::Map::new();
    while let Some((i, line)) = lines.get(*pos) {
        if *i < indent {
            break;
        }
        if *i > indent {
            return Err(format!("unexpected indentation at {line:?}"));
        }
        let (key, value) =
            split_key(line).ok_or_else(|| format!("expected `key: value`, got {line:?}"))?;
        *pos += 1;
        let v = if value.is_empty() {
            match lines.get(*pos) {
                Some((ni, nl)) if *ni > indent || (*ni == indent && nl.starts_with('-')) => {
                    yaml_block(lines, pos, *ni)?
                }
                _ => Value::Null,
            }
        } else {
            yaml_scalar(&value)
        };
        map.insert(key, v);
    }
    Ok(Value::Object(map))
}

/// `key: value` with a possibly quoted key (which may hold `:` itself).
fn split_key(line: &str) -> Option<(String, String)> {
    if line.starts_with('"') || line.starts_with('\'') {
        let q = line.chars().next()?;
        let end = line[1..].find(q)? + 1;
        let rest = line[end + 1..].trim_start().strip_prefix(':')?;
        return Some((line[1..end].to_string(), rest.trim().to_string()));
    }
    let (k, v) = line
        .split_once(": ")
        .or_else(|| line.strip_suffix(':').map(|k| (k, "")))?;
    Some((k.trim().to_string(), v.trim().to_string()))
}

/// The TOML of containerd's hosts.toml: `key = value` (strings, booleans,
/// numbers, arrays of strings) and `[host."url"]` tables; `__order` keeps the
/// hosts in file order, as containerd tries them.
pub fn parse_toml(text: &str) -> Result<Value, String> {
    let mut root = json!({});
    let mut order: Vec<Value> = Vec::new();
    let mut table: Vec<String> = Vec::new();
    for raw in text.lines() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = toml_key_path(h)?;
            if table.len() == 2 && table[0] == "host" {
                order.push(json!(table[1]));
            }
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("expected `key = value`, got {line:?}"))?;
        let mut path = table.clone();
        path.extend(toml_key_path(k.trim())?);
        let value = yaml_scalar(v.trim());
        let mut slot = &mut root;
        for part in &path {
            slot = &mut slot[part.as_str()];
            if slot.is_null() {
                *slot = json!({});
            }
        }
        *slot = value;
    }
    root["__order"] = Value::Array(order);
    Ok(root)
}

/// `host."http://a:5000"` → ["host", "http://a:5000"]
fn toml_key_path(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('"') {
            let end = r
                .find('"')
                .ok_or_else(|| format!("unclosed quote in {s:?}"))?;
            out.push(r[..end].to_string());
            rest = r[end + 1..].trim_start();
        } else {
            let end = rest.find('.').unwrap_or(rest.len());
            out.push(rest[..end].trim().to_string());
            rest = &rest[end..];
        }
        rest = rest.strip_prefix('.').unwrap_or(rest).trim_start();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_with_sha256() {
        assert_eq!(
            sha256_digest(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn normalises_references_as_containerd() {
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(
            (r.host.as_str(), r.repo.as_str(), r.reference.as_str()),
            ("docker.io", "library/busybox", "latest")
        );
        let r = ImageRef::parse("reg:5000/team/app:v1").unwrap();
        assert_eq!(
            (r.host.as_str(), r.repo.as_str(), r.reference.as_str()),
            ("reg:5000", "team/app", "v1")
        );
        let r = ImageRef::parse("rancher/k3s@sha256:abc").unwrap();
        assert_eq!(
            (r.repo.as_str(), r.reference.as_str()),
            ("rancher/k3s", "sha256:abc")
        );
        assert!(ImageRef::parse("Bad/Name").is_err());
    }

    #[test]
    fn registries_yaml_mirrors_then_default() {
        let conf = parse_yaml(
            "# k3d-style\nmirrors:\n  \"docker.io\":\n    endpoint:\n      - http://a:5000\n      - \"https://b\"\n    rewrite:\n      \"^rancher/(.*)\": \"mirrored/rancher/$1\"\n  \"*\":\n    endpoint: [\"http://any:5000\"]\nconfigs:\n  \"b\":\n    tls:\n      insecure_skip_verify: true\n    auth:\n      username: u\n      password: p\n",
        )
        .unwrap();
        let img = ImageRef::parse("rancher/k3s:v1").unwrap();
        let eps = k3s_endpoints(&img, &conf);
        let bases: Vec<&str> = eps.iter().map(|e| e.base.as_str()).collect();
        assert_eq!(
            bases,
            [
                "http://a:5000/v2",
                "https://b/v2",
                "https://registry-1.docker.io/v2"
            ]
        );
        assert_eq!(eps[0].repo, "mirrored/rancher/k3s");
        assert_eq!(
            eps[2].repo, "rancher/k3s",
            "no rewrite for the registry itself"
        );
        assert!(eps[1].skip_verify && eps[1].auth == Some(("u".into(), "p".into())));
        let other = k3s_endpoints(&ImageRef::parse("quay.io/x/y").unwrap(), &conf);
        assert_eq!(other[0].base, "http://any:5000/v2", "the * mirror");
        assert_eq!(other[1].base, "https://quay.io/v2");
    }

    #[test]
    fn hosts_toml_hosts_in_order_then_server() {
        let conf = parse_toml(
            "server = \"https://registry-1.docker.io\"\n\n[host.\"http://kind-registry:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n\n[host.\"https://push-only\"]\n  capabilities = [\"push\"]\n[host.\"https://m2/v2/prefix\"]\n  skip_verify = true\n",
        )
        .unwrap();
        let eps = hosts_toml_endpoints(&ImageRef::parse("nginx").unwrap(), &conf);
        let bases: Vec<&str> = eps.iter().map(|e| e.base.as_str()).collect();
        assert_eq!(
            bases,
            [
                "http://kind-registry:5000/v2",
                "https://m2/v2/prefix",
                "https://registry-1.docker.io/v2"
            ]
        );
        assert!(eps[1].skip_verify);
    }
}
