//! Finds the `kube-apiserver` and `etcd` binaries: `KUBEBUILDER_ASSETS` when it is
//! set, otherwise the directory `scripts/envtest-assets.sh` builds and caches.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Binaries {
    pub kube_apiserver: PathBuf,
    pub etcd: PathBuf,
}

pub fn locate() -> Result<Binaries, String> {
    let directory = match std::env::var_os("KUBEBUILDER_ASSETS") {
        Some(directory) if !directory.is_empty() => PathBuf::from(directory),
        _ => directory_from_script()?,
    };
    let binaries = Binaries {
        kube_apiserver: directory.join("kube-apiserver"),
        etcd: directory.join("etcd"),
    };
    for binary in [&binaries.kube_apiserver, &binaries.etcd] {
        if !binary.is_file() {
            return Err(format!("{} does not exist", binary.display()));
        }
    }
    Ok(binaries)
}

/// Runs the script with its progress on this process's stderr (the first run
/// builds the binaries, which takes minutes) and reads the directory it prints.
fn directory_from_script() -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/envtest-assets.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|error| format!("cannot run {}: {error}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}); see its messages above",
            script.display(),
            output.status
        ));
    }
    let printed = String::from_utf8_lossy(&output.stdout);
    let directory = printed.trim();
    if directory.is_empty() {
        return Err(format!("{} printed no directory", script.display()));
    }
    Ok(PathBuf::from(directory))
}
