use super::*;

/// CI's seed range: both cluster sizes, every seed checked for safety and liveness.
#[test]
fn simulated_clusters_stay_safe_and_live_over_1000_seeds() {
    let mut failures = Vec::new();
    let mut applied = 0;
    for seed in 0..1000 {
        let nodes = if seed % 2 == 0 { 3 } else { 5 };
        match run(SimOptions::ci(seed, nodes)) {
            Ok(stats) => applied += stats.applied,
            Err(failure) => failures.push(failure.to_string()),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing runs:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(applied > 0, "the runs applied nothing");
}

#[test]
fn same_seed_same_run() {
    let a = run(SimOptions::new(43, 5)).expect("seed 43 passes");
    let b = run(SimOptions::new(43, 5)).expect("seed 43 passes");
    assert_eq!(a, b);
    assert!(a.crashes > 0 && a.final_commit > 0, "{a:?}");
    assert_ne!(run(SimOptions::new(44, 5)).expect("seed 44 passes"), a);
}

/// The simulator can fail: with a bug planted that breaks Raft §5.4.1 (votes granted without comparing
/// logs), some seed breaks a safety property, and the failure names the command that replays it.
#[test]
fn planted_vote_ignoring_log_bug_is_caught_within_100_seeds() {
    let caught = (0..100).find_map(|seed| {
        let opts = SimOptions {
            planted_bug: Some(PlantedBug::VoteIgnoringLog),
            ..SimOptions::new(seed, 3)
        };
        run(opts).err()
    });
    let failure = caught.expect("the planted bug went unnoticed for 100 seeds");
    assert!(
        failure
            .replay_command()
            .contains("--planted-bug vote-ignoring-log"),
        "{failure}"
    );
    println!("caught: {failure}");
}
