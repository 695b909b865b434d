//! "Wipe disk and restart" for a compose-made node: its container and its data volume are removed,
//! and compose creates the service's container again, which starts on a new, empty volume. Only the
//! volume mounted at the node's data dir goes: the project's shared `cluster-token` volume stays, so
//! the new container still knows the peers' secret.

use super::*;
use anyhow::{bail, Context as _};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

const PROJECT_LABEL: &str = "com.docker.compose.project";
const SERVICE_LABEL: &str = "com.docker.compose.service";
const CONFIG_FILES_LABEL: &str = "com.docker.compose.project.config_files";
const WORKING_DIR_LABEL: &str = "com.docker.compose.project.working_dir";
/// The node's data dir when the container does not set `DATA_DIR` (the image's default).
const DEFAULT_DATA_DIR: &str = "/data";
/// The container's environment that compose interpolates into the services: recreated with the
/// values the container has, so the new one gets the same tokens whatever the shell has now.
const KEPT_ENV: [&str; 2] = ["ADMIN_TOKEN", "CLUSTER_TOKEN"];

/// Where a compose-made node's container came from, and the volume holding its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComposeOrigin {
    pub project: String,
    pub service: String,
    /// As compose recorded them: absolute (v2), or relative to the folder it ran in (v1).
    pub config_files: Vec<PathBuf>,
    /// The project folder: relative paths inside the compose files start there.
    pub working_dir: Option<PathBuf>,
    pub data_volume: String,
    /// The container's values of [`KEPT_ENV`].
    pub env: Vec<(String, String)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspected {
    config: InspectedConfig,
    #[serde(default)]
    mounts: Vec<Mount>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedConfig {
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Mount {
    #[serde(rename = "Type", default)]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    destination: String,
}

/// Reads `docker inspect <container>` output: the compose project and service, and the named volume
/// mounted at the node's data dir.
pub fn parse_compose_origin(output: &str) -> anyhow::Result<ComposeOrigin> {
    let containers: Vec<Inspected> =
        serde_json::from_str(output).context("`docker inspect` output is not the expected JSON")?;
    let Some(container) = containers.into_iter().next() else {
        bail!("`docker inspect` found no such container");
    };
    let labels = container.config.labels.unwrap_or_default();
    let label = |key: &str| {
        labels
            .get(key)
            .filter(|value| !value.is_empty())
            .cloned()
            .with_context(|| {
                format!("the container was not made by compose (no {key} label): it cannot be recreated")
            })
    };
    let project = label(PROJECT_LABEL)?;
    let service = label(SERVICE_LABEL)?;
    let working_dir = labels.get(WORKING_DIR_LABEL).map(PathBuf::from);
    let config_files = labels
        .get(CONFIG_FILES_LABEL)
        .map(|files| {
            files
                .split(',')
                .filter(|file| !file.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    let env: BTreeMap<&str, &str> = container
        .config
        .env
        .iter()
        .flatten()
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let data_dir = env.get("DATA_DIR").copied().unwrap_or(DEFAULT_DATA_DIR);
    let data_volume = container
        .mounts
        .iter()
        .find(|mount| {
            mount.kind == "volume"
                && mount.destination.trim_end_matches('/') == data_dir.trim_end_matches('/')
        })
        .and_then(|mount| mount.name.clone())
        .with_context(|| format!("no named volume is mounted at the node's data dir {data_dir}"))?;
    Ok(ComposeOrigin {
        project,
        service,
        config_files,
        working_dir,
        data_volume,
        env: KEPT_ENV
            .iter()
            .filter_map(|key| {
                env.get(key)
                    .map(|value| ((*key).to_owned(), (*value).to_owned()))
            })
            .collect(),
    })
}

impl ComposeOrigin {
    /// The compose files on this machine. A relative one (compose v1) was relative to the folder
    /// compose ran in, which is the project folder or one above it: the first of those that holds it.
    pub fn resolved_config_files(&self) -> anyhow::Result<Vec<PathBuf>> {
        self.config_files
            .iter()
            .map(|file| {
                if file.is_absolute() {
                    return Ok(file.clone());
                }
                let Some(dir) = &self.working_dir else {
                    bail!("compose recorded {} without its folder", file.display());
                };
                dir.ancestors()
                    .map(|folder| folder.join(file))
                    .find(|candidate| candidate.is_file())
                    .with_context(|| {
                        format!(
                            "cannot find the compose file {} from {} or above it",
                            file.display(),
                            dir.display()
                        )
                    })
            })
            .collect()
    }
}

/// Removes `container` and its data volume, and has compose create its service's container again.
/// Blocks for as long as the `docker` calls take (each bounded by its timeout).
pub fn wipe_container(cli: &DockerCli, container: &str) -> anyhow::Result<()> {
    let origin = parse_compose_origin(&cli.run(&["inspect", container], QUICK_TIMEOUT)?)?;
    let files = origin.resolved_config_files()?;
    let compose = Compose::detect(cli)?;
    compose
        .remove_service(
            &files,
            &origin.project,
            origin.working_dir.as_deref(),
            &origin.service,
            &origin.env,
            START_TIMEOUT,
        )
        .context("removing the container")?;
    cli.run(&["volume", "rm", &origin.data_volume], QUICK_TIMEOUT)
        .with_context(|| format!("removing the volume {}", origin.data_volume))?;
    compose
        .up_service(
            &files,
            &origin.project,
            origin.working_dir.as_deref(),
            &origin.service,
            &origin.env,
            START_TIMEOUT,
        )
        .context("creating the container again")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_compose_file_is_found_from_the_project_folder_or_above() {
        let root = tempfile::tempdir().expect("tempdir");
        let project = root.path().join("docker");
        std::fs::create_dir_all(&project).expect("mkdir");
        std::fs::write(project.join("compose.test.yml"), "services: {}").expect("write");
        let origin = |file: &str| ComposeOrigin {
            project: "p".into(),
            service: "node1".into(),
            config_files: vec![PathBuf::from(file)],
            working_dir: Some(project.clone()),
            data_volume: "p_node1-data".into(),
            env: Vec::new(),
        };
        let expected = vec![project.join("compose.test.yml")];
        // compose v1 run from the repository root, and from the project folder itself.
        let from_root = origin("docker/compose.test.yml").resolved_config_files();
        assert_eq!(
            from_root.expect("found"),
            vec![root.path().join("docker/compose.test.yml")]
        );
        assert_eq!(
            origin("compose.test.yml")
                .resolved_config_files()
                .expect("found"),
            expected
        );
        let missing = origin("elsewhere.yml").resolved_config_files();
        assert!(format!("{:#}", missing.expect_err("missing")).contains("cannot find"));
    }

    const INSPECTED: &str = r#"[{
        "Config": {
            "Env": ["NODE_ID=2", "DATA_DIR=/data", "ADMIN_TOKEN=secret", "CLUSTER_TOKEN_FILE=/cluster/token"],
            "Labels": {
                "com.docker.compose.project": "flotilla",
                "com.docker.compose.service": "node2",
                "com.docker.compose.project.working_dir": "/src/flotilla",
                "com.docker.compose.project.config_files": "docker-compose.yml,/abs/compose.5.yml"
            }
        },
        "Mounts": [
            {"Type": "volume", "Name": "flotilla_cluster-token", "Destination": "/cluster"},
            {"Type": "volume", "Name": "flotilla_node2-data", "Destination": "/data"}
        ]
    }]"#;

    #[test]
    fn the_data_volume_is_the_one_at_the_data_dir_never_the_shared_token() {
        let origin = parse_compose_origin(INSPECTED).expect("parses");
        assert_eq!(origin.project, "flotilla");
        assert_eq!(origin.service, "node2");
        assert_eq!(origin.data_volume, "flotilla_node2-data");
        assert_eq!(
            origin.config_files,
            vec![
                PathBuf::from("docker-compose.yml"),
                PathBuf::from("/abs/compose.5.yml")
            ]
        );
        assert_eq!(origin.working_dir, Some(PathBuf::from("/src/flotilla")));
        assert_eq!(
            origin.env,
            vec![("ADMIN_TOKEN".to_owned(), "secret".to_owned())]
        );
    }

    #[test]
    fn a_container_not_made_by_compose_or_without_a_data_volume_is_refused() {
        let no_compose = INSPECTED.replace("com.docker.compose.service", "other");
        let error = parse_compose_origin(&no_compose).expect_err("no service label");
        assert!(
            format!("{error:#}").contains("not made by compose"),
            "{error:#}"
        );
        let bind_mount = INSPECTED.replace(
            r#"{"Type": "volume", "Name": "flotilla_node2-data""#,
            r#"{"Type": "bind", "Name": null"#,
        );
        let error = parse_compose_origin(&bind_mount).expect_err("no volume at /data");
        assert!(
            format!("{error:#}").contains("no named volume"),
            "{error:#}"
        );
    }
}
