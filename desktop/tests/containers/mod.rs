//! What the Docker tests share: the repository they build from, the engine check that skips loudly
//! (or fails under CI), and compose projects that take themselves down, volumes and all.

#![allow(dead_code)] // each test file uses its own share of these

use anyhow::{bail, Context as _, Result};
use flotilla::backend::docker::{Compose, DockerCli};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The checkout's root, where the Dockerfile and the compose files live.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// A `docker` made in `folder` that waits `delay` before each `docker <verb>`, as a slow daemon
/// does (a slow disk, Docker Desktop's VM).
pub fn slowed_docker(folder: &Path, verb: &str, delay: Duration) -> Result<PathBuf> {
    let docker = std::env::var("DOCKER").unwrap_or_else(|_| "docker".into());
    let path = folder.join(format!("docker-slow-{verb}"));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nif [ \"$1\" = {verb} ]; then sleep {:.1}; fi\nexec '{docker}' \"$@\"\n",
            delay.as_secs_f64()
        ),
    )?;
    let status = Command::new("chmod").arg("+x").arg(&path).status()?;
    if !status.success() {
        bail!("chmod +x {} failed", path.display());
    }
    Ok(path)
}

/// How to start the engine the test cluster needs.
pub const START_ENGINE: &str =
    ".ci/docker.sh starts one (as root): . .ci/docker.sh && start_dockerd";

/// The engine, or `None` after saying loudly that `test` is skipped and how to start one (`setup`);
/// under `CI=true` a missing engine is a failure instead.
pub fn engine(test: &str, setup: &str) -> Option<DockerCli> {
    let cli = DockerCli::from_env();
    match cli.ping() {
        Ok(()) => Some(cli),
        Err(error) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("CI=true but no Docker engine is reachable: {error}")
        }
        Err(error) => {
            eprintln!(
                "\n==========================================================================\n\
                 {test} SKIPPED: no Docker daemon reachable ({error}).\n\
                 {setup}\n\
                 ==========================================================================\n"
            );
            None
        }
    }
}

/// A compose project of the test's own name, taken down with its volumes when the test ends,
/// however it ends.
pub struct ComposeProject {
    pub compose: Compose,
    pub name: &'static str,
    pub files: Vec<PathBuf>,
    pub envs: Vec<(String, String)>,
}

impl ComposeProject {
    /// `files` are relative to the repository.
    pub fn new(
        compose: &Compose,
        name: &'static str,
        files: &[&str],
        envs: Vec<(String, String)>,
    ) -> Self {
        Self {
            compose: compose.clone(),
            name,
            files: files.iter().map(|file| repository().join(file)).collect(),
            envs,
        }
    }

    pub fn up(&self, timeout: Duration) -> Result<()> {
        self.compose
            .up(&self.files, self.name, &self.envs, timeout)
            .context("compose up")
    }

    pub fn down(&self) {
        let timeout = Duration::from_secs(120);
        if let Err(error) =
            self.compose
                .down_with_volumes(&self.files, self.name, &self.envs, timeout)
        {
            eprintln!("{}: down -v failed: {error}", self.name);
        }
        // Nodes added from the window have volumes the compose file does not know.
        let cli = DockerCli::from_env();
        let filter = format!("name={}_", self.name);
        let listed = cli.run(&["volume", "ls", "-q", "--filter", &filter], timeout);
        for volume in listed.unwrap_or_default().lines() {
            let _ = cli.run(&["volume", "rm", "-f", volume.trim()], timeout);
        }
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        self.down();
    }
}

/// The label `docker/compose.test.yml` gives its containers.
pub const TEST_CLUSTER: &str = "flotilla-test";

/// A fresh cluster from `docker/compose.test.yml` under project `name`: the scratch image `image`
/// built from this checkout's node binary, three nodes on free host ports (returned) with
/// `admin_token`. Leftovers of an earlier run that was cut short are removed first.
pub fn test_cluster(
    cli: &DockerCli,
    name: &'static str,
    image: &str,
    admin_token: &str,
) -> Result<(ComposeProject, Vec<u16>)> {
    let compose = Compose::detect(cli).context("the Docker test needs docker compose")?;
    let binary = flotilla_tests::node_binary()?;
    let built = Command::new("bash")
        .arg(repository().join("docker/build-scratch-image.sh"))
        .arg(&binary)
        .arg(image)
        .status()
        .context("running build-scratch-image.sh")?;
    if !built.success() {
        bail!("building the test image failed");
    }
    let ports = flotilla_tests::free_ports(3)?;
    let mut envs = vec![
        ("FLOTILLA_TEST_IMAGE".to_owned(), image.to_owned()),
        ("ADMIN_TOKEN".to_owned(), admin_token.to_owned()),
    ];
    for (index, port) in ports.iter().enumerate() {
        envs.push((format!("FLOTILLA_TEST_PORT{}", index + 1), port.to_string()));
    }
    let project = ComposeProject::new(&compose, name, &["docker/compose.test.yml"], envs);
    // Leftovers under any project name would hold the container names.
    project.down();
    for leftover in cli.list(TEST_CLUSTER)? {
        cli.run(&["rm", "-f", "-v", &leftover.id], Duration::from_secs(30))?;
    }
    Ok((project, ports))
}
