//! The compose command found on this machine (v2 plugin or v1 program), and what it is asked to do.

use super::*;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// The compose command found on this machine: `docker compose` (the v2 plugin) or `docker-compose`
/// (v1, Python).
#[derive(Clone, Debug)]
pub struct Compose {
    program: OsString,
    plugin: bool,
    envs: Vec<(String, String)>,
}

impl Compose {
    /// Prefers `docker compose` (v2), falls back to `docker-compose` (v1; `$DOCKER_COMPOSE` if set).
    pub fn detect(cli: &DockerCli) -> Result<Self, CliError> {
        if cli.run(&["compose", "version"], QUICK_TIMEOUT).is_ok() {
            return Ok(Self {
                program: cli.program.clone(),
                plugin: true,
                envs: cli.envs.clone(),
            });
        }
        let standalone =
            std::env::var_os("DOCKER_COMPOSE").unwrap_or_else(|| "docker-compose".into());
        let finished = run_with_timeout(
            &standalone,
            &["version", "--short"],
            &cli.envs,
            QUICK_TIMEOUT,
        )?;
        if finished.status.success() {
            Ok(Self {
                program: standalone,
                plugin: false,
                envs: cli.envs.clone(),
            })
        } else {
            Err(CliError::Failed {
                command: "docker-compose version".into(),
                detail: "neither `docker compose` nor `docker-compose` works".into(),
            })
        }
    }

    /// The command a person would type: `docker compose` or `docker-compose`.
    pub fn display(&self) -> &'static str {
        if self.plugin {
            "docker compose"
        } else {
            "docker-compose"
        }
    }

    fn run(
        &self,
        files: &[PathBuf],
        project: &str,
        action: &[&str],
        envs: &[(String, String)],
        timeout: Duration,
    ) -> Result<String, CliError> {
        let mut args: Vec<String> = Vec::new();
        if self.plugin {
            args.push("compose".into());
        }
        for file in files {
            args.push("-f".into());
            args.push(file.to_string_lossy().into_owned());
        }
        args.push("-p".into());
        args.push(project.into());
        args.extend(action.iter().map(|arg| (*arg).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let envs: Vec<(String, String)> = self.envs.iter().chain(envs).cloned().collect();
        let finished = run_with_timeout(&self.program, &args, &envs, timeout)?;
        if finished.status.success() {
            Ok(finished.stdout)
        } else {
            Err(classify_failure(
                &format!("{} {}", self.display(), action.join(" ")),
                &finished.stderr,
            ))
        }
    }

    /// `up -d --no-build`: the images must exist already.
    pub fn up(
        &self,
        files: &[PathBuf],
        project: &str,
        envs: &[(String, String)],
        timeout: Duration,
    ) -> Result<(), CliError> {
        self.run(files, project, &["up", "-d", "--no-build"], envs, timeout)
            .map(drop)
    }

    /// `down -v --remove-orphans -t 2`: removes the project's containers (those added from the
    /// window too) and volumes.
    pub fn down_with_volumes(
        &self,
        files: &[PathBuf],
        project: &str,
        envs: &[(String, String)],
        timeout: Duration,
    ) -> Result<(), CliError> {
        // Nodes added from the window are the project's orphans: they go too.
        self.run(
            files,
            project,
            &["down", "-v", "--remove-orphans", "-t", "2"],
            envs,
            timeout,
        )
        .map(drop)
    }

    /// `rm -s -f <service>`: stops and removes one service's container (its volumes stay).
    pub(super) fn remove_service(
        &self,
        files: &[PathBuf],
        project: &str,
        project_dir: Option<&std::path::Path>,
        service: &str,
        envs: &[(String, String)],
        timeout: Duration,
    ) -> Result<(), CliError> {
        let action = in_project_dir(project_dir, &["rm", "-s", "-f", service]);
        let action: Vec<&str> = action.iter().map(String::as_str).collect();
        self.run(files, project, &action, envs, timeout).map(drop)
    }

    /// `up -d --no-deps --no-build <service>`: creates one service's container again, alone.
    pub(super) fn up_service(
        &self,
        files: &[PathBuf],
        project: &str,
        project_dir: Option<&std::path::Path>,
        service: &str,
        envs: &[(String, String)],
        timeout: Duration,
    ) -> Result<(), CliError> {
        let action = in_project_dir(
            project_dir,
            &["up", "-d", "--no-deps", "--no-build", service],
        );
        let action: Vec<&str> = action.iter().map(String::as_str).collect();
        self.run(files, project, &action, envs, timeout).map(drop)
    }
}

/// `action` run as if from `project_dir` (`--project-directory`, a global option both compose
/// versions take before the command), so relative paths in the files resolve as they did at `up`.
fn in_project_dir(project_dir: Option<&std::path::Path>, action: &[&str]) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(dir) = project_dir {
        args.push("--project-directory".to_owned());
        args.push(dir.to_string_lossy().into_owned());
    }
    args.extend(action.iter().map(|arg| (*arg).to_owned()));
    args
}
