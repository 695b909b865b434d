//! The Dockerfile's dependency layer is built from `docker/skeleton.sh`'s output (every manifest, and a
//! stand-in for every target's file). Cargo must accept that skeleton whatever targets the manifests
//! declare, or `docker compose up --build` breaks; this checks it without a Docker engine.

mod containers;

use containers::repository;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn host_triple() -> String {
    let output = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_owned()
}

/// Cargo parses every manifest of the workspace at `root`, finding every target's file, as the image
/// build's `cargo build` does first (offline: the workspace's packages are in the local registry
/// cache once the workspace was built).
fn cargo_accepts(root: &Path) -> Result<(), String> {
    let output = cargo()
        .args(["fetch", "--offline", "--locked", "--target", &host_triple()])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .output()
        .expect("cargo runs");
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Every target file (lib, bins, benches, examples, tests) of every workspace member, relative to the
/// repository.
fn target_files(repository: &Path) -> BTreeSet<PathBuf> {
    let output = cargo()
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(repository)
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let root = PathBuf::from(metadata["workspace_root"].as_str().expect("workspace_root"));
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .flat_map(|package| package["targets"].as_array().expect("targets").iter())
        .map(|target| {
            let path = PathBuf::from(target["src_path"].as_str().expect("src_path"));
            path.strip_prefix(&root)
                .expect("targets live in the workspace")
                .to_path_buf()
        })
        .collect()
}

#[test]
fn the_image_builds_dependencies_from_a_skeleton_cargo_accepts() {
    let repository = repository();
    let dockerfile =
        std::fs::read_to_string(repository.join("docker/Dockerfile")).expect("docker/Dockerfile");
    assert!(
        dockerfile.contains("docker/skeleton.sh") && dockerfile.contains("COPY --from=skeleton"),
        "docker/Dockerfile no longer builds its dependency layer from docker/skeleton.sh"
    );
    let skeleton = tempfile::tempdir().expect("tempdir");
    let status = Command::new("sh")
        .arg(repository.join("docker/skeleton.sh"))
        .arg(&repository)
        .arg(skeleton.path())
        .status()
        .expect("sh runs");
    assert!(status.success(), "docker/skeleton.sh failed");

    let targets = target_files(&repository);
    assert!(
        targets.iter().any(|path| path.starts_with("node/benches")),
        "the node's benches are among the targets: {targets:?}"
    );
    for target in &targets {
        assert!(
            skeleton.path().join(target).is_file(),
            "the skeleton has no stand-in for {}",
            target.display()
        );
    }
    cargo_accepts(skeleton.path()).unwrap_or_else(|error| {
        panic!("cargo refuses the skeleton the image build uses:\n{error}")
    });

    // The check bites: without one bench's stand-in, cargo refuses the skeleton.
    let bench = targets
        .iter()
        .find(|path| path.starts_with("node/benches"))
        .expect("a bench");
    std::fs::remove_file(skeleton.path().join(bench)).expect("remove the bench's stand-in");
    let error = cargo_accepts(skeleton.path()).expect_err("a missing bench must be refused");
    assert!(error.contains("can't find"), "{error}");
}
