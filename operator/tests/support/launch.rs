//! Starts etcd and kube-apiserver on free loopback ports and waits until the
//! apiserver is ready. Only the API server and its storage run: no scheduler,
//! no controller manager, no kubelet, so nothing acts on Pods, Deployments or
//! namespace deletion.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::assets::Binaries;
use super::kubeconfig;
use super::processes::ProcessGroup;

const READY_TIMEOUT: Duration = Duration::from_secs(120);
const POLL_INTERVAL: Duration = Duration::from_millis(250);
const ADMIN_USER: &str = "admin";
/// Bound to cluster-admin by the apiserver's bootstrap RBAC policy.
const ADMIN_GROUP: &str = "system:masters";

const APISERVER: &str = "kube-apiserver";

pub struct Launched {
    pub kubeconfig_path: PathBuf,
    pub processes: ProcessGroup,
    pub apiserver: Apiserver,
}

/// What it takes to start kube-apiserver again exactly as before: the same
/// port, etcd, certificates (its cert dir keeps the serving certificate, so
/// the kubeconfig stays valid) and admin token.
pub struct Apiserver {
    binary: PathBuf,
    args: Vec<String>,
    kubeconfig_path: PathBuf,
    server_url: String,
    serving_cert: PathBuf,
    token: String,
}

impl Apiserver {
    /// Starts kube-apiserver and waits until it is ready. Call it only from a
    /// thread that lives as long as the process should.
    pub fn start(&self, processes: &mut ProcessGroup) -> Result<(), String> {
        processes.spawn(APISERVER, Command::new(&self.binary).args(&self.args))?;
        wait_until_ready(
            processes,
            &self.kubeconfig_path,
            &self.server_url,
            &self.serving_cert,
            &self.token,
        )
    }

    /// Kills kube-apiserver; etcd and its data stay.
    pub fn kill(&self, processes: &mut ProcessGroup) -> Result<(), String> {
        processes.kill(APISERVER)
    }
}

/// Must run on a thread that lives as long as the control plane should.
pub fn launch(binaries: &Binaries) -> Result<Launched, String> {
    let mut processes = ProcessGroup::new()?;
    let scratch = processes.scratch().to_path_buf();
    let etcd_url = format!("http://127.0.0.1:{}", free_port()?);
    let etcd_peer_url = format!("http://127.0.0.1:{}", free_port()?);
    let apiserver_port = free_port()?;
    let server_url = format!("https://127.0.0.1:{apiserver_port}");

    processes.spawn(
        "etcd",
        Command::new(&binaries.etcd).args([
            "--name=default".to_string(),
            format!("--data-dir={}", scratch.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={etcd_peer_url}"),
            format!("--initial-advertise-peer-urls={etcd_peer_url}"),
            format!("--initial-cluster=default={etcd_peer_url}"),
            "--unsafe-no-fsync=true".to_string(),
            "--log-level=warn".to_string(),
        ]),
    )?;

    let token = uuid::Uuid::new_v4().simple().to_string();
    let token_file = scratch.join("tokens.csv");
    write_file(
        &token_file,
        &format!("{token},{ADMIN_USER},{ADMIN_USER},\"{ADMIN_GROUP}\"\n"),
    )?;
    let signing_key = scratch.join("service-account.key");
    generate_signing_key(&signing_key)?;
    let cert_dir = scratch.join("certs");

    let apiserver = Apiserver {
        binary: binaries.kube_apiserver.clone(),
        args: vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".to_string(),
            format!("--secure-port={apiserver_port}"),
            format!("--cert-dir={}", cert_dir.display()),
            format!("--token-auth-file={}", token_file.display()),
            "--authorization-mode=RBAC".to_string(),
            "--service-cluster-ip-range=10.0.0.0/16".to_string(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
            format!("--service-account-key-file={}", signing_key.display()),
            format!(
                "--service-account-signing-key-file={}",
                signing_key.display()
            ),
            // Needs the token controller of kube-controller-manager, which does not run.
            "--disable-admission-plugins=ServiceAccount".to_string(),
            "--allow-privileged=true".to_string(),
        ],
        kubeconfig_path: scratch.join("kubeconfig"),
        server_url,
        serving_cert: cert_dir.join("apiserver.crt"),
        token,
    };
    apiserver.start(&mut processes)?;
    Ok(Launched {
        kubeconfig_path: apiserver.kubeconfig_path.clone(),
        processes,
        apiserver,
    })
}

/// Polls `/readyz` with the admin token, trusting the certificate the apiserver
/// generated for itself in its cert dir, until it answers `ok`.
fn wait_until_ready(
    processes: &mut ProcessGroup,
    kubeconfig_path: &Path,
    server_url: &str,
    serving_cert: &Path,
    token: &str,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start a tokio runtime: {error}"))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last_problem = String::from("the apiserver has not written its certificate yet");
    loop {
        if let Some(exited) = processes.exited_process() {
            return Err(format!("the control plane did not start: {exited}"));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "kube-apiserver was not ready within {READY_TIMEOUT:?} ({last_problem})\n{}",
                processes.log_tails()
            ));
        }
        if let Ok(ca_pem) = std::fs::read(serving_cert) {
            kubeconfig::write(kubeconfig_path, server_url, &ca_pem, token)?;
            match runtime.block_on(readyz(kubeconfig_path)) {
                Ok(()) => return Ok(()),
                Err(problem) => last_problem = problem,
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

async fn readyz(kubeconfig_path: &Path) -> Result<(), String> {
    let client = kubeconfig::client(kubeconfig_path).await?;
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|error| error.to_string())?;
    let body = client
        .request_text(request)
        .await
        .map_err(|error| format!("/readyz: {error}"))?;
    if body.trim() == "ok" {
        Ok(())
    } else {
        Err(format!("/readyz answered {body}"))
    }
}

/// A loopback port nothing listens on right now. Another process could take it
/// before the child binds it; the child then exits and the error says so.
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("cannot find a free loopback port: {error}"))
}

/// The RSA key that signs and verifies service account tokens.
fn generate_signing_key(path: &Path) -> Result<(), String> {
    let output = Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(path)
        .output()
        .map_err(|error| {
            format!("cannot run openssl to make the service account key (Debian: apt-get install openssl): {error}")
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl genpkey failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn write_file(path: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}
