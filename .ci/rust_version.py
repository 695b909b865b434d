#!/usr/bin/env python3
"""Checks that each workspace crate's declared rust-version is at least the highest rust-version any
crate it builds with declares (normal and build dependencies, every platform, from Cargo.lock via
`cargo metadata`). A user on an older toolchain would otherwise meet a cargo error instead of the
stated minimum. Prints the real minimum per crate; exits 1 on any crate that claims too little."""

import json
import subprocess
import sys


def version_key(version):
    """`1.89` and `1.89.0` are the same minimum."""
    parts = [int(part) for part in version.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    packages = {package["id"]: package for package in metadata["packages"]}
    deps = {
        node["id"]: [
            dep["pkg"]
            for dep in node["deps"]
            if any(kind["kind"] in (None, "build") for kind in dep["dep_kinds"])
        ]
        for node in metadata["resolve"]["nodes"]
    }
    failed = False
    for member in metadata["workspace_members"]:
        seen, stack = set(), [member]
        while stack:
            package_id = stack.pop()
            if package_id not in seen:
                seen.add(package_id)
                stack.extend(deps[package_id])
        needed = max(
            (
                packages[package_id]
                for package_id in seen - {member}
                if packages[package_id]["rust_version"]
            ),
            # On a tie, name the outside crate that sets the bar rather than a workspace sibling.
            key=lambda package: (
                version_key(package["rust_version"]),
                package["id"] not in metadata["workspace_members"],
            ),
        )
        crate = packages[member]
        declared = crate["rust_version"]
        line = (
            f"{crate['name']}: declares rust-version {declared}, needs "
            f"{needed['rust_version']} ({needed['name']} {needed['version']})"
        )
        if declared is None or version_key(declared) < version_key(needed["rust_version"]):
            failed = True
            line += "  <-- too low"
        print(line)
    if failed:
        print("a crate states a lower minimum Rust than its dependencies need", file=sys.stderr)
        sys.exit(1)


main()
