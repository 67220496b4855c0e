//! The control plane the operator's integration tests run against: a real
//! kube-apiserver backed by etcd, started once per test binary (or reused from
//! `BEDROCK_GATEWAY_TEST_KUBECONFIG`), with an admin token in `system:masters`.
//!
//! Each test file declares `mod support;` and uses what it needs, so parts of
//! this module go unused in some test binaries.
#![allow(dead_code)]

mod assets;
mod kubeconfig;
mod launch;
mod processes;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::mpsc;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};

/// Names a kubeconfig of an already running control plane to use instead of
/// starting one, so that a script can share one control plane between binaries.
pub const KUBECONFIG_ENV: &str = "BEDROCK_GATEWAY_TEST_KUBECONFIG";

/// Connection data only: a `kube::Client` is tied to the tokio runtime it was
/// made in, and every `#[tokio::test]` has its own, so each test makes its own.
pub struct ControlPlane {
    kubeconfig_path: PathBuf,
}

impl ControlPlane {
    /// Starts the control plane on first use in this test binary, or reuses the
    /// one named by `BEDROCK_GATEWAY_TEST_KUBECONFIG`. Blocks until it is ready.
    pub fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        match SHARED.get_or_init(start_or_reuse) {
            Ok(control_plane) => control_plane,
            Err(problem) => panic!("no control plane for the tests: {problem}"),
        }
    }

    /// A client with cluster-admin rights (group `system:masters`).
    pub async fn client(&self) -> kube::Client {
        kubeconfig::client(&self.kubeconfig_path)
            .await
            .unwrap_or_else(|problem| panic!("{problem}"))
    }

    /// The admin kubeconfig, for child processes such as the operator or kubectl.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// Installs the project's CRDs (from `crds/`) and waits until they are served.
    pub async fn install_crds(&self) {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        use kube::ResourceExt;
        use kube::api::{Patch, PatchParams};
        let crd: CustomResourceDefinition = serde_yaml::from_str(include_str!(
            "../../../crds/bedrockgateways.bedrock-gateway.io.yaml"
        ))
        .unwrap_or_else(|error| panic!("crds/ does not parse: {error}"));
        let api: kube::Api<CustomResourceDefinition> = kube::Api::all(self.client().await);
        api.patch(
            &crd.name_any(),
            &PatchParams::apply("bedrock-gateway-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|error| panic!("cannot install the CRD: {error}"));
        for _ in 0..300 {
            let established = api
                .get(&crd.name_any())
                .await
                .ok()
                .and_then(|crd| crd.status)
                .is_some_and(|status| {
                    status.conditions.iter().flatten().any(|condition| {
                        condition.type_ == "Established" && condition.status == "True"
                    })
                });
            if established {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the CRD was not established within 30 s");
    }

    /// Creates a namespace no other test uses, named `<prefix>-<random>`.
    pub async fn fresh_namespace(&self, prefix: &str) -> String {
        let name = unique_namespace_name(prefix);
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        kube::Api::<Namespace>::all(self.client().await)
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|error| panic!("cannot create namespace {name}: {error}"));
        name
    }
}

/// A control plane of one test's own, whose kube-apiserver the test can kill
/// and start again on the same port while etcd keeps running with its data.
/// Dropping it stops its processes and removes their scratch directory.
pub struct DedicatedControlPlane {
    plane: ControlPlane,
    requests: Option<mpsc::Sender<Request>>,
    keeper: Option<std::thread::JoinHandle<()>>,
}

enum Request {
    KillApiserver(tokio::sync::oneshot::Sender<Result<(), String>>),
    StartApiserver(tokio::sync::oneshot::Sender<Result<(), String>>),
}

impl DedicatedControlPlane {
    /// Starts etcd and kube-apiserver and waits until the apiserver is ready.
    pub async fn start() -> Self {
        let binaries = assets::locate().unwrap_or_else(|problem| panic!("{problem}"));
        let (started, outcome) = tokio::sync::oneshot::channel();
        let (requests, incoming) = mpsc::channel::<Request>();
        // The processes get SIGKILL when the thread that started them ends, so
        // this thread starts them, restarts the apiserver and lives until drop.
        let keeper = std::thread::Builder::new()
            .name("dedicated-control-plane".to_string())
            .spawn(move || {
                let mut launched = match launch::launch(&binaries) {
                    Ok(launched) => launched,
                    Err(problem) => {
                        let _ = started.send(Err(problem));
                        return;
                    }
                };
                let _ = started.send(Ok(launched.kubeconfig_path.clone()));
                while let Ok(request) = incoming.recv() {
                    match request {
                        Request::KillApiserver(reply) => {
                            let _ = reply.send(launched.apiserver.kill(&mut launched.processes));
                        }
                        Request::StartApiserver(reply) => {
                            let _ = reply.send(launched.apiserver.start(&mut launched.processes));
                        }
                    }
                }
            })
            .unwrap_or_else(|error| panic!("cannot start the control plane thread: {error}"));
        let kubeconfig_path = outcome
            .await
            .unwrap_or_else(|_| panic!("the control plane thread ended without a word"))
            .unwrap_or_else(|problem| panic!("no control plane for the test: {problem}"));
        Self {
            plane: ControlPlane { kubeconfig_path },
            requests: Some(requests),
            keeper: Some(keeper),
        }
    }

    /// Kills kube-apiserver (SIGKILL, as a crash would); etcd keeps running.
    pub async fn kill_apiserver(&self) {
        self.ask(Request::KillApiserver)
            .await
            .unwrap_or_else(|problem| panic!("cannot kill kube-apiserver: {problem}"));
    }

    /// Starts kube-apiserver again with the same port, storage and
    /// credentials, and waits until it is ready.
    pub async fn start_apiserver(&self) {
        self.ask(Request::StartApiserver)
            .await
            .unwrap_or_else(|problem| panic!("cannot restart kube-apiserver: {problem}"));
    }

    async fn ask(
        &self,
        request: impl FnOnce(tokio::sync::oneshot::Sender<Result<(), String>>) -> Request,
    ) -> Result<(), String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.requests
            .as_ref()
            .ok_or("the control plane is stopped")?
            .send(request(reply))
            .map_err(|_| "the control plane thread is gone".to_string())?;
        answer
            .await
            .map_err(|_| "the control plane thread did not answer".to_string())?
    }
}

impl std::ops::Deref for DedicatedControlPlane {
    type Target = ControlPlane;

    fn deref(&self) -> &ControlPlane {
        &self.plane
    }
}

impl Drop for DedicatedControlPlane {
    fn drop(&mut self) {
        // Closing the channel ends the keeper thread, which stops the processes.
        drop(self.requests.take());
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
    }
}

fn start_or_reuse() -> Result<ControlPlane, String> {
    if let Some(path) = std::env::var_os(KUBECONFIG_ENV).filter(|path| !path.is_empty()) {
        let kubeconfig_path = PathBuf::from(path);
        if !kubeconfig_path.is_file() {
            return Err(format!(
                "{KUBECONFIG_ENV}={} is not a file",
                kubeconfig_path.display()
            ));
        }
        return Ok(ControlPlane { kubeconfig_path });
    }
    start_on_keeper_thread()
}

/// Starts the processes from a thread that never ends: they get SIGKILL when
/// the thread that started them ends, and test threads end after each test.
fn start_on_keeper_thread() -> Result<ControlPlane, String> {
    let binaries = assets::locate()?;
    let (started, outcome) = mpsc::channel();
    std::thread::Builder::new()
        .name("control-plane".to_string())
        .spawn(move || match launch::launch(&binaries) {
            Ok(launched) => {
                let control_plane = ControlPlane {
                    kubeconfig_path: launched.kubeconfig_path,
                };
                processes::keep_until_exit(launched.processes);
                let _ = started.send(Ok(control_plane));
                loop {
                    std::thread::park();
                }
            }
            Err(problem) => {
                let _ = started.send(Err(problem));
            }
        })
        .map_err(|error| format!("cannot start the control plane thread: {error}"))?;
    outcome
        .recv()
        .map_err(|_| "the control plane thread ended without a word".to_string())?
}

/// A valid namespace name (a DNS label) made from `prefix` and a random suffix.
fn unique_namespace_name(prefix: &str) -> String {
    let cleaned: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let cleaned = cleaned.trim_matches('-');
    let prefix = if cleaned.is_empty() { "test" } else { cleaned };
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &suffix[..10])
}

/// The sum of a metric's series on an operator's `/metrics` at `address`, or
/// None while it does not answer (blocking).
pub fn metric_sum(address: std::net::SocketAddr, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(5)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: operator\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status_line = head.lines().next()?;
    if status_line.split(' ').nth(1) != Some("200") {
        return None;
    }
    Some(
        body.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with([' ', '{']))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

/// Polls `check` every 100 ms until it yields a value; fails the test with
/// `what` once `deadline` has passed.
pub async fn eventually<T, F, Fut>(deadline: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {deadline:?} waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
