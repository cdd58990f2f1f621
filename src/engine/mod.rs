//! The one seam between the providers and Docker. Providers (and the helpers in
//! `docker.rs` and `registry.rs`) reach the engine only through [`Engine`], which
//! names every Docker call they make, one method per API request (an exec is
//! one method for its create/start/inspect requests). `bollard::Docker` is the
//! real implementation; tests put a fault-injecting in-memory engine behind the
//! same trait. Dispatch is static: providers are generic over the engine.
//!
//! The request and response bodies are the Engine API's own types, re-exported
//! here as [`models`] and [`query`], so nothing outside this module and
//! `docker.rs` names the client library.

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use std::future::Future;

pub use bollard::errors::Error as EngineError;
pub use bollard::models;
pub use bollard::query_parameters as query;
/// The real engine: a Docker Engine API client.
pub use bollard::Docker as DockerEngine;

use models::{
    ContainerCreateBody, ContainerCreateResponse, ContainerInspectResponse, ContainerSummary,
    ContainerUpdateBody, CreateImageInfo, EventMessage, ImageInspect, Network,
    NetworkConnectRequest, NetworkCreateRequest, NetworkCreateResponse, NetworkDisconnectRequest,
    NetworkInspect, Volume, VolumeCreateRequest, VolumeListResponse,
};

pub type EngineResult<T> = std::result::Result<T, EngineError>;

/// One command run in a container through the exec API.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub cmd: Vec<String>,
    /// Written to the process's stdin, which is then closed.
    pub stdin: Option<Vec<u8>>,
    pub privileged: bool,
}

/// What an exec printed (stdout and stderr interleaved) and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub output: String,
}

/// Every Docker Engine request the providers make. Each future is `Send` (the
/// C ABI runs operations as tasks on its runtime).
pub trait Engine: Send + Sync {
    // containers
    fn list_containers(
        &self,
        options: query::ListContainersOptions,
    ) -> impl Future<Output = EngineResult<Vec<ContainerSummary>>> + Send;
    fn inspect_container(
        &self,
        name: &str,
    ) -> impl Future<Output = EngineResult<ContainerInspectResponse>> + Send;
    fn create_container(
        &self,
        options: query::CreateContainerOptions,
        body: ContainerCreateBody,
    ) -> impl Future<Output = EngineResult<ContainerCreateResponse>> + Send;
    fn start_container(&self, name: &str) -> impl Future<Output = EngineResult<()>> + Send;
    /// With the engine's default grace period and the image's stop signal.
    fn stop_container(&self, name: &str) -> impl Future<Output = EngineResult<()>> + Send;
    fn remove_container(
        &self,
        name: &str,
        options: query::RemoveContainerOptions,
    ) -> impl Future<Output = EngineResult<()>> + Send;
    fn update_container(
        &self,
        name: &str,
        body: ContainerUpdateBody,
    ) -> impl Future<Output = EngineResult<()>> + Send;
    /// The container's log stream (multiplexed frames already split).
    fn logs(
        &self,
        name: &str,
        options: query::LogsOptions,
    ) -> BoxStream<'static, EngineResult<Bytes>>;
    /// A tar archive of `path` in the container, whole.
    fn download_archive(
        &self,
        name: &str,
        path: &str,
    ) -> impl Future<Output = EngineResult<Vec<u8>>> + Send;
    /// Unpacks the tar archive `tar` at `/` in the container.
    fn upload_archive(
        &self,
        name: &str,
        tar: Vec<u8>,
    ) -> impl Future<Output = EngineResult<()>> + Send;
    fn exec(
        &self,
        name: &str,
        request: ExecRequest,
    ) -> impl Future<Output = EngineResult<ExecOutput>> + Send;
    fn events(
        &self,
        options: query::EventsOptions,
    ) -> BoxStream<'static, EngineResult<EventMessage>>;

    // networks
    fn create_network(
        &self,
        request: NetworkCreateRequest,
    ) -> impl Future<Output = EngineResult<NetworkCreateResponse>> + Send;
    fn inspect_network(
        &self,
        name_or_id: &str,
    ) -> impl Future<Output = EngineResult<NetworkInspect>> + Send;
    fn list_networks(
        &self,
        options: query::ListNetworksOptions,
    ) -> impl Future<Output = EngineResult<Vec<Network>>> + Send;
    fn remove_network(&self, name_or_id: &str) -> impl Future<Output = EngineResult<()>> + Send;
    fn connect_network(
        &self,
        name_or_id: &str,
        request: NetworkConnectRequest,
    ) -> impl Future<Output = EngineResult<()>> + Send;
    fn disconnect_network(
        &self,
        name_or_id: &str,
        request: NetworkDisconnectRequest,
    ) -> impl Future<Output = EngineResult<()>> + Send;

    // volumes
    fn create_volume(
        &self,
        request: VolumeCreateRequest,
    ) -> impl Future<Output = EngineResult<Volume>> + Send;
    fn inspect_volume(&self, name: &str) -> impl Future<Output = EngineResult<Volume>> + Send;
    fn list_volumes(
        &self,
        options: query::ListVolumesOptions,
    ) -> impl Future<Output = EngineResult<VolumeListResponse>> + Send;
    fn remove_volume(
        &self,
        name: &str,
        force: bool,
    ) -> impl Future<Output = EngineResult<()>> + Send;

    // images
    fn inspect_image(&self, image: &str)
        -> impl Future<Output = EngineResult<ImageInspect>> + Send;
    /// Pulls `image`; the stream ends when the pull does.
    fn pull_image(&self, image: &str) -> BoxStream<'static, EngineResult<CreateImageInfo>>;

    /// Whether containers must leave their networks one at a time (stops and
    /// forced removals in sequence). Docker 20.10 before 20.10.27 (Debian 12's
    /// engine among them) can deadlock its network controller when one
    /// container's endpoint is being deleted while another container leaves or
    /// joins the same network (moby/moby#46661); from then on every request
    /// that touches networks (create, start, stop, remove, network calls)
    /// hangs until the engine is restarted. Such engines speak API 1.41 or
    /// older (Podman's compatible API says 1.41 too, and is sequenced without
    /// need).
    fn one_leave_at_a_time(&self) -> bool {
        false
    }
}

/// The Docker status code of an engine error, if the engine answered.
pub fn status_code(err: &EngineError) -> Option<u16> {
    match err {
        EngineError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The engine's message of an answered error ("" otherwise).
pub fn server_message(err: &EngineError) -> &str {
    match err {
        EngineError::DockerResponseServerError { message, .. } => message,
        _ => "",
    }
}

/// An answered error with this status code (for in-memory engines).
pub fn server_error(status_code: u16, message: impl Into<String>) -> EngineError {
    EngineError::DockerResponseServerError {
        status_code,
        message: message.into(),
    }
}

/// The rule for every fan-out that changes state: all started calls finish
/// (none is dropped half-way, so a rollback knows what exists), then the
/// results are collected; the first error in call order is returned.
pub async fn all_finish<T, F>(calls: impl IntoIterator<Item = F>) -> crate::Result<Vec<T>>
where
    F: Future<Output = crate::Result<T>>,
{
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .collect()
}

/// Held by each leave on an engine that needs them one at a time.
static ONE_LEAVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// [`all_finish`] for calls that take containers off their networks (stops,
/// forced removals): all together, or where the engine needs it
/// ([`Engine::one_leave_at_a_time`]) one at a time in this whole process, so
/// two clusters on one network (kind's) do not leave it together either. That
/// makes the engine's deadlock far less likely, not impossible: the engine
/// finishes an endpoint's deletion in the background, and another process may
/// use the network meanwhile. Either way every call runs, and the first error
/// in call order is returned.
pub fn all_leaves_finish<T, F>(
    docker: &impl Engine,
    calls: impl IntoIterator<Item = F>,
) -> impl Future<Output = crate::Result<Vec<T>>>
where
    F: Future<Output = crate::Result<T>>,
{
    // the calls are made here, outside the future: it holds only them, not
    // the closure that made them (which would not be Send for every lifetime)
    let calls: Vec<F> = calls.into_iter().collect();
    let in_sequence = docker.one_leave_at_a_time();
    async move {
        if !in_sequence {
            return all_finish(calls).await;
        }
        let mut results = Vec::with_capacity(calls.len());
        for call in calls {
            let _one_leave = ONE_LEAVE.lock().await;
            results.push(call.await);
        }
        results.into_iter().collect()
    }
}

impl Engine for bollard::Docker {
    fn one_leave_at_a_time(&self) -> bool {
        // the negotiated version: the engine's own when it is older than ours
        let v = self.client_version();
        (v.major_version, v.minor_version) <= (1, 41)
    }

    async fn list_containers(
        &self,
        options: query::ListContainersOptions,
    ) -> EngineResult<Vec<ContainerSummary>> {
        bollard::Docker::list_containers(self, Some(options)).await
    }

    async fn inspect_container(&self, name: &str) -> EngineResult<ContainerInspectResponse> {
        bollard::Docker::inspect_container(self, name, None::<query::InspectContainerOptions>).await
    }

    async fn create_container(
        &self,
        options: query::CreateContainerOptions,
        body: ContainerCreateBody,
    ) -> EngineResult<ContainerCreateResponse> {
        bollard::Docker::create_container(self, Some(options), body).await
    }

    async fn start_container(&self, name: &str) -> EngineResult<()> {
        bollard::Docker::start_container(self, name, None::<query::StartContainerOptions>).await
    }

    async fn stop_container(&self, name: &str) -> EngineResult<()> {
        bollard::Docker::stop_container(self, name, None::<query::StopContainerOptions>).await
    }

    async fn remove_container(
        &self,
        name: &str,
        options: query::RemoveContainerOptions,
    ) -> EngineResult<()> {
        bollard::Docker::remove_container(self, name, Some(options)).await
    }

    async fn update_container(&self, name: &str, body: ContainerUpdateBody) -> EngineResult<()> {
        bollard::Docker::update_container(self, name, body).await
    }

    fn logs(
        &self,
        name: &str,
        options: query::LogsOptions,
    ) -> BoxStream<'static, EngineResult<Bytes>> {
        bollard::Docker::logs(self, name, Some(options))
            .map(|item| item.map(|out| out.into_bytes()))
            .boxed()
    }

    async fn download_archive(&self, name: &str, path: &str) -> EngineResult<Vec<u8>> {
        let opts = query::DownloadFromContainerOptions {
            path: path.to_string(),
        };
        let mut stream = bollard::Docker::download_from_container(self, name, Some(opts));
        let mut tarball = Vec::new();
        while let Some(chunk) = stream.next().await {
            tarball.extend_from_slice(&chunk?);
        }
        Ok(tarball)
    }

    async fn upload_archive(&self, name: &str, tar: Vec<u8>) -> EngineResult<()> {
        let opts = query::UploadToContainerOptions {
            path: "/".into(),
            ..Default::default()
        };
        bollard::Docker::upload_to_container(
            self,
            name,
            Some(opts),
            bollard::body_full(Bytes::from(tar)),
        )
        .await
    }

    async fn exec(&self, name: &str, request: ExecRequest) -> EngineResult<ExecOutput> {
        use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
        use tokio::io::AsyncWriteExt;
        let opts = CreateExecOptions::<String> {
            cmd: Some(request.cmd),
            attach_stdin: Some(request.stdin.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            privileged: Some(request.privileged),
            ..Default::default()
        };
        let id = bollard::Docker::create_exec(self, name, opts).await?.id;
        let started = bollard::Docker::start_exec(
            self,
            &id,
            Some(StartExecOptions {
                detach: false,
                ..Default::default()
            }),
        )
        .await?;
        let mut output = String::new();
        if let StartExecResults::Attached {
            output: mut stream,
            mut input,
        } = started
        {
            if let Some(data) = request.stdin {
                input.write_all(&data).await?;
                input.shutdown().await?;
            }
            drop(input);
            while let Some(chunk) = stream.next().await {
                output.push_str(&String::from_utf8_lossy(&chunk?.into_bytes()));
            }
        }
        let info = bollard::Docker::inspect_exec(self, &id).await?;
        Ok(ExecOutput {
            exit_code: info.exit_code.unwrap_or(-1),
            output,
        })
    }

    fn events(
        &self,
        options: query::EventsOptions,
    ) -> BoxStream<'static, EngineResult<EventMessage>> {
        bollard::Docker::events(self, Some(options)).boxed()
    }

    async fn create_network(
        &self,
        request: NetworkCreateRequest,
    ) -> EngineResult<NetworkCreateResponse> {
        bollard::Docker::create_network(self, request).await
    }

    async fn inspect_network(&self, name_or_id: &str) -> EngineResult<NetworkInspect> {
        bollard::Docker::inspect_network(self, name_or_id, None::<query::InspectNetworkOptions>)
            .await
    }

    async fn list_networks(
        &self,
        options: query::ListNetworksOptions,
    ) -> EngineResult<Vec<Network>> {
        bollard::Docker::list_networks(self, Some(options)).await
    }

    async fn remove_network(&self, name_or_id: &str) -> EngineResult<()> {
        bollard::Docker::remove_network(self, name_or_id).await
    }

    async fn connect_network(
        &self,
        name_or_id: &str,
        request: NetworkConnectRequest,
    ) -> EngineResult<()> {
        bollard::Docker::connect_network(self, name_or_id, request).await
    }

    async fn disconnect_network(
        &self,
        name_or_id: &str,
        request: NetworkDisconnectRequest,
    ) -> EngineResult<()> {
        bollard::Docker::disconnect_network(self, name_or_id, request).await
    }

    async fn create_volume(&self, request: VolumeCreateRequest) -> EngineResult<Volume> {
        bollard::Docker::create_volume(self, request).await
    }

    async fn inspect_volume(&self, name: &str) -> EngineResult<Volume> {
        bollard::Docker::inspect_volume(self, name).await
    }

    async fn list_volumes(
        &self,
        options: query::ListVolumesOptions,
    ) -> EngineResult<VolumeListResponse> {
        bollard::Docker::list_volumes(self, Some(options)).await
    }

    async fn remove_volume(&self, name: &str, force: bool) -> EngineResult<()> {
        bollard::Docker::remove_volume(self, name, Some(query::RemoveVolumeOptions { force })).await
    }

    async fn inspect_image(&self, image: &str) -> EngineResult<ImageInspect> {
        bollard::Docker::inspect_image(self, image).await
    }

    fn pull_image(&self, image: &str) -> BoxStream<'static, EngineResult<CreateImageInfo>> {
        let opts = query::CreateImageOptions {
            from_image: Some(image.to_string()),
            ..Default::default()
        };
        bollard::Docker::create_image(self, Some(opts), None, None).boxed()
    }
}

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod fault_matrix;
