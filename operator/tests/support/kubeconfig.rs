//! The admin kubeconfig of the control plane, and clients made from it.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Writes (unless it is already there) a kubeconfig that trusts `ca_pem` and authenticates with a bearer token.
pub fn write(path: &Path, server_url: &str, ca_pem: &[u8], token: &str) -> Result<(), String> {
    let ca_data = BASE64.encode(ca_pem);
    let contents = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster:
    server: {server_url}
    certificate-authority-data: {ca_data}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: envtest
  context:
    cluster: envtest
    user: admin
    namespace: default
current-context: envtest
"
    );
    // A restarted apiserver serves the same certificate: the file is left
    // alone then, as clients may be reading it.
    if std::fs::read_to_string(path).is_ok_and(|existing| existing == contents) {
        return Ok(());
    }
    std::fs::write(path, contents)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// A client bound to the tokio runtime it is created in.
pub async fn client(path: &Path) -> Result<kube::Client, String> {
    let kubeconfig = Kubeconfig::read_from(path)
        .map_err(|error| format!("cannot read kubeconfig {}: {error}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|error| format!("invalid kubeconfig {}: {error}", path.display()))?;
    kube::Client::try_from(config).map_err(|error| format!("cannot build a client: {error}"))
}
