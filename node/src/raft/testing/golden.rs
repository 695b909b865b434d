//! The golden files: each script in `testdata/` run block by block and compared with (or, with
//! `UPDATE_GOLDEN=1`, rewritten to) what its commands print.

use super::*;

/// Runs one script; returns the file as it should read (commands with their actual output).
fn run_script(script: &str) -> Result<String, String> {
    let mut env = Env::default();
    let mut rewritten = String::new();
    let mut lines = script.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            rewritten.push_str(line);
            rewritten.push('\n');
            continue;
        }
        // Skip the old expected output: `----` up to the next blank line.
        if lines.peek().is_some_and(|l| l.trim() == "----") {
            lines.next();
            while lines.peek().is_some_and(|l| !l.trim().is_empty()) {
                lines.next();
            }
        }
        let output = env.run(trimmed).unwrap_or_else(|e| format!("error: {e}\n"));
        rewritten.push_str(trimmed);
        rewritten.push_str("\n----\n");
        rewritten.push_str(if output.is_empty() { "ok\n" } else { &output });
        // Blocks are separated by one blank line: keep the script's own, or add one.
        if lines.peek().is_some_and(|l| !l.trim().is_empty()) {
            rewritten.push('\n');
        }
    }
    Ok(rewritten)
}

fn check_golden(name: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/raft/testing/testdata")
        .join(format!("{name}.txt"));
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let actual = run_script(&expected).unwrap_or_else(|e| panic!("{name}: {e}"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    if actual != expected {
        let first_diff = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name}: transcript differs from {} at line {} (rerun with UPDATE_GOLDEN=1 and review the diff)\n\
             expected: {:?}\nactual:   {:?}",
            path.display(),
            first_diff + 1,
            expected.lines().nth(first_diff),
            actual.lines().nth(first_diff)
        );
    }
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { check_golden(stringify!($name)); })*
    };
}

scenarios!(
    election_replication,
    figure8,
    prevote,
    check_quorum,
    leadership_transfer,
    read_index,
    vote_denied,
    log_conflict,
    membership_single_node,
    membership_remove_leader,
    membership_partition,
    membership_racing,
    membership_removed_votes,
    membership_truncated,
    snapshot_install_during_append,
    snapshot_stale,
    snapshot_old_term,
    snapshot_wiped_follower,
    snapshot_pipelined_lost_chunk,
    snapshot_pipelined_reordered,
    snapshot_pipelined_unanswered,
);

#[test]
fn unknown_commands_are_reported_not_ignored() {
    let out = run_script("frobnicate 1\n").unwrap();
    assert!(
        out.contains("error: unknown command \"frobnicate\""),
        "{out}"
    );
}
