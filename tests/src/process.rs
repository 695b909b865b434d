//! Child processes and their files: signals, free ports, log tails, and the node binary.

use anyhow::{anyhow, bail, Context as _, Result};
use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub(crate) enum Signal {
    Term,
    Stop,
    Cont,
}

#[cfg(unix)]
#[allow(unsafe_code)]
pub(crate) fn send_signal(pid: i32, signal: Signal) -> Result<()> {
    let number = match signal {
        Signal::Term => libc::SIGTERM,
        Signal::Stop => libc::SIGSTOP,
        Signal::Cont => libc::SIGCONT,
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; `pid` is our own child,
    // not yet reaped, so the number cannot belong to another process.
    let result = unsafe { libc::kill(pid, number) };
    if result != 0 {
        bail!(
            "kill({pid}, {signal:?}) failed: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The end-to-end tests stop and pause nodes with signals, which Windows lacks; the crate still builds
/// there because the desktop's tests share its helpers.
#[cfg(not(unix))]
pub(crate) fn send_signal(pid: i32, signal: Signal) -> Result<()> {
    bail!("cannot send {signal:?} to process {pid}: signals exist on Unix only")
}

/// Whether a `/proc/<pid>/stat` line says the process is stopped (state `T`).
pub(crate) fn process_stopped(stat: &str) -> bool {
    // The state follows the command name, which is in parentheses and may contain spaces.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "T")
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(free_ports(1)?[0])
}

/// `count` distinct loopback ports that were free a moment ago (all held at once while found, so
/// they differ).
pub fn free_ports(count: usize) -> Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("finding free ports")?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}

pub(crate) fn tail(path: &Path, max_bytes: u64) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(max_bytes)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Finds (building once if missing) the `flotilla-node` binary. See the crate docs.
pub fn node_binary() -> Result<PathBuf> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| locate_or_build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

pub(crate) fn locate_or_build() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("FLOTILLA_NODE_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("FLOTILLA_NODE_BIN={} is not a file", path.display());
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("locating the test binary")?;
    let name = format!("flotilla-node{}", std::env::consts::EXE_SUFFIX);
    // Test binaries live in <target>/<profile>/deps/, other binaries in <target>/<profile>/.
    let profile_dir = exe
        .ancestors()
        .skip(1)
        .find(|dir| dir.join(&name).is_file() || dir.join("deps").is_dir())
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("cannot find the target directory from {}", exe.display()))?;
    let candidate = profile_dir.join(&name);
    // Always (once per test process) ask cargo to bring the binary up to date: a stale node binary
    // would test old code. When nothing changed this takes well under a second.
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("the tests crate has no parent directory"))?;
    let mut build = Command::new(&cargo);
    build.current_dir(workspace).args([
        "build",
        "--quiet",
        "-p",
        "flotilla-node",
        "--bin",
        "flotilla-node",
    ]);
    if release {
        build.arg("--release");
    }
    let output = build.stdin(Stdio::null()).output();
    let built = match &output {
        Ok(output) if output.status.success() => true,
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
            eprintln!(
                "`cargo build -p flotilla-node` failed ({}):\n{}",
                output.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
            false
        }
        Err(error) => {
            eprintln!("cannot run {cargo:?} to build the node: {error}");
            false
        }
    };
    if !candidate.is_file() {
        bail!(
            "{} is missing and could not be built; run `cargo build -p flotilla-node{}` first, or \
             set FLOTILLA_NODE_BIN to the node binary",
            candidate.display(),
            if release { " --release" } else { "" }
        );
    }
    if !built {
        eprintln!(
            "warning: using the existing {}, which may be out of date",
            candidate.display()
        );
    }
    Ok(candidate)
}

/// Runs `command` (output captured) and waits for it to exit; kills it and fails after `timeout`.
pub async fn run_to_exit(mut command: Command, timeout: Duration) -> Result<std::process::Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning")?;
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait()?.is_some() {
            return child.wait_with_output().context("collecting output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output()?;
            bail!(
                "still running after {timeout:?}; output:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
