//! The control plane's processes and scratch directory, which never outlive the
//! test binary: each child gets SIGKILL when the thread that started it ends
//! (`PR_SET_PDEATHSIG`), and an exit handler stops them and removes the scratch
//! directory when the binary exits normally.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, Once, PoisonError};

use tempfile::TempDir;

const SCRATCH_PREFIX: &str = "bedrock-gateway-control-plane-";

struct NamedChild {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// Started processes and their scratch directory; dropping it stops and removes both.
pub struct ProcessGroup {
    children: Vec<NamedChild>,
    scratch: TempDir,
}

impl ProcessGroup {
    pub fn new() -> Result<Self, String> {
        remove_scratch_of_dead_processes();
        let scratch = tempfile::Builder::new()
            .prefix(&format!("{SCRATCH_PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(|error| format!("cannot create a scratch directory: {error}"))?;
        Ok(Self {
            children: Vec::new(),
            scratch,
        })
    }

    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// Starts `command` with its output in `<scratch>/<name>.log`. Call it only from
    /// a thread that lives as long as the process should.
    pub fn spawn(&mut self, name: &'static str, command: &mut Command) -> Result<(), String> {
        let log = self.scratch().join(format!("{name}.log"));
        // Appended to, so a restarted process keeps the log of its predecessor.
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|error| format!("cannot create {}: {error}", log.display()))?;
        let log_copy = log_file
            .try_clone()
            .map_err(|error| format!("cannot share {}: {error}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(log_copy)
            .stderr(log_file);
        // SAFETY: the closure only calls prctl, which is async-signal-safe.
        unsafe {
            command.pre_exec(kill_me_when_my_parent_thread_ends);
        }
        let child = command
            .spawn()
            .map_err(|error| format!("cannot start {name}: {error}"))?;
        self.children.push(NamedChild { name, child, log });
        Ok(())
    }

    /// Names the first process that has already exited, with the end of its log.
    pub fn exited_process(&mut self) -> Option<String> {
        self.children
            .iter_mut()
            .find_map(|named| match named.child.try_wait() {
                Ok(Some(status)) => Some(format!(
                    "{} exited ({status}):\n{}",
                    named.name,
                    log_tail(&named.log)
                )),
                _ => None,
            })
    }

    /// The end of every process's log, for error messages.
    pub fn log_tails(&self) -> String {
        self.children
            .iter()
            .map(|named| format!("--- {} ---\n{}", named.name, log_tail(&named.log)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Kills the process started as `name` (SIGKILL, as a crash would) and
    /// waits until it is gone; the others keep running.
    pub fn kill(&mut self, name: &str) -> Result<(), String> {
        let index = self
            .children
            .iter()
            .position(|named| named.name == name)
            .ok_or_else(|| format!("no running process named {name}"))?;
        let mut named = self.children.remove(index);
        named
            .child
            .kill()
            .map_err(|error| format!("cannot kill {name}: {error}"))?;
        named
            .child
            .wait()
            .map_err(|error| format!("cannot wait for {name}: {error}"))?;
        Ok(())
    }

    fn stop(&mut self) {
        for named in &mut self.children {
            let _ = named.child.kill();
            let _ = named.child.wait();
        }
        self.children.clear();
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.stop();
    }
}

static KEPT_UNTIL_EXIT: Mutex<Option<ProcessGroup>> = Mutex::new(None);

/// Keeps the group running until the test binary exits, then stops it.
pub fn keep_until_exit(group: ProcessGroup) {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registers a plain function with no arguments, as atexit requires.
        unsafe {
            libc::atexit(stop_kept_group);
        }
    });
    *KEPT_UNTIL_EXIT
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(group);
}

extern "C" fn stop_kept_group() {
    if let Ok(mut kept) = KEPT_UNTIL_EXIT.try_lock() {
        drop(kept.take());
    }
}

fn kill_me_when_my_parent_thread_ends() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and no pointers.
    let result = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn log_tail(log: &Path) -> String {
    const TAIL_LINES: usize = 30;
    let contents = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = contents.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// Scratch directories of test binaries that were killed before their exit
/// handler ran (etcd's write-ahead log alone takes 64 MiB).
fn remove_scratch_of_dead_processes() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner_pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(SCRATCH_PREFIX))
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(owner_pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
