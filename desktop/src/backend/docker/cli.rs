//! Running the `docker` CLI: every call with a timeout, and failures turned into errors that say
//! what to do.

use super::*;
use std::ffi::OsString;
use std::io::Read as _;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a quick CLI call (`ps`, `inspect`, `kill`, `pause`) may take.
pub(super) const QUICK_TIMEOUT: Duration = Duration::from_secs(10);
/// `docker start` waits for the container's process to be set up, which can take a while on slow disks.
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `docker` command line: which program, and the timeout of each call.
#[derive(Clone, Debug)]
pub struct DockerCli {
    pub(super) program: OsString,
    /// Extra environment for every call (e.g. `DOCKER_HOST`).
    pub(super) envs: Vec<(String, String)>,
}

/// What went wrong running a CLI command; the messages say what to do.
#[derive(Debug)]
pub enum CliError {
    /// The program is not installed (or not on PATH).
    NotFound {
        program: String,
    },
    /// The daemon does not answer (not running, or no permission on its socket).
    NoDaemon {
        detail: String,
    },
    TimedOut {
        command: String,
        after: Duration,
    },
    Failed {
        command: String,
        detail: String,
    },
    Io {
        command: String,
        error: String,
    },
}

/// How a user starts the Docker engine on this platform.
const START_DOCKER: &str = if cfg!(any(target_os = "macos", windows)) {
    "open Docker Desktop"
} else {
    "e.g. `sudo systemctl start docker`"
};

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::NotFound { program } => write!(
                f,
                "`{program}` was not found: install Docker (https://docs.docker.com/engine/install/) \
                 or set DOCKER to the docker program's path"
            ),
            CliError::NoDaemon { detail } => write!(
                f,
                "the Docker daemon is not reachable ({detail}): start it ({START_DOCKER}), or set \
                 DOCKER_HOST to its socket"
            ),
            CliError::TimedOut { command, after } => write!(
                f,
                "`{command}` did not finish within {} s: is the Docker daemon stuck?",
                after.as_secs()
            ),
            CliError::Failed { command, detail } => write!(f, "`{command}` failed: {detail}"),
            CliError::Io { command, error } => write!(f, "cannot run `{command}`: {error}"),
        }
    }
}

impl std::error::Error for CliError {}

/// Output of a finished command.
pub(super) struct Finished {
    pub(super) status: ExitStatus,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

/// Runs `program args` with no stdin and waits at most `timeout`; on timeout the process is killed.
pub(super) fn run_with_timeout(
    program: &OsString,
    args: &[&str],
    envs: &[(String, String)],
    timeout: Duration,
) -> Result<Finished, CliError> {
    let command_line = format!("{} {}", program.to_string_lossy(), args.join(" "));
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(envs.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            CliError::NotFound {
                program: program.to_string_lossy().into_owned(),
            }
        } else {
            CliError::Io {
                command: command_line.clone(),
                error: error.to_string(),
            }
        }
    })?;
    // Pipes are drained on their own threads so a chatty command cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CliError::TimedOut {
                    command: command_line,
                    after: timeout,
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(error) => {
                return Err(CliError::Io {
                    command: command_line,
                    error: error.to_string(),
                })
            }
        }
    };
    Ok(Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Turns a failed command's stderr into an error that says what to do.
pub fn classify_failure(command: &str, stderr: &str) -> CliError {
    let detail = stderr
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with("WARNING"))
        .unwrap_or("no error message")
        .to_owned();
    let lower = stderr.to_ascii_lowercase();
    if lower.contains("cannot connect to the docker daemon")
        || lower.contains("is the docker daemon running")
        || (lower.contains("permission denied") && lower.contains("docker.sock"))
    {
        CliError::NoDaemon { detail }
    } else {
        CliError::Failed {
            command: command.to_owned(),
            detail,
        }
    }
}

impl DockerCli {
    /// `$DOCKER` if set, else `docker` from PATH.
    pub fn from_env() -> Self {
        Self::new(std::env::var_os("DOCKER").unwrap_or_else(|| "docker".into()))
    }

    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
            envs: Vec::new(),
        }
    }

    /// Sets `key=value` in the environment of every call.
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs `docker args` and returns its stdout, or a clear error.
    pub fn run(&self, args: &[&str], timeout: Duration) -> Result<String, CliError> {
        let finished = run_with_timeout(&self.program, args, &self.envs, timeout)?;
        if finished.status.success() {
            Ok(finished.stdout)
        } else {
            let command = format!("docker {}", args.join(" "));
            Err(classify_failure(&command, &finished.stderr))
        }
    }

    /// Checks that the CLI exists and the daemon answers.
    pub fn ping(&self) -> Result<(), CliError> {
        self.run(
            &["version", "--format", "{{.Server.Version}}"],
            QUICK_TIMEOUT,
        )
        .map(drop)
    }

    /// Every container of `cluster`, running or not.
    pub fn list(&self, cluster: &str) -> Result<Vec<ContainerSummary>, CliError> {
        let filter = format!("label={CLUSTER_LABEL}={cluster}");
        let output = self.run(
            &["ps", "-a", "--filter", &filter, "--format", "{{json .}}"],
            QUICK_TIMEOUT,
        )?;
        parse_ps(&output).map_err(|error| CliError::Failed {
            command: "docker ps".into(),
            detail: format!("{error:#}"),
        })
    }

    /// Details of the given containers.
    pub fn inspect(&self, containers: &[&str]) -> Result<Vec<ContainerDetails>, CliError> {
        let mut args = vec!["inspect", "--type", "container"];
        args.extend_from_slice(containers);
        let output = self.run(&args, QUICK_TIMEOUT)?;
        parse_inspect(&output).map_err(|error| CliError::Failed {
            command: "docker inspect".into(),
            detail: format!("{error:#}"),
        })
    }
}
