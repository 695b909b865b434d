use super::*;

/// CI's seed range: both cluster sizes, every seed checked for safety and liveness.
#[test]
fn simulated_clusters_stay_safe_and_live_over_1000_seeds() {
    let mut failures = Vec::new();
    let mut applied = 0;
    for seed in 0..500 {
        for nodes in [3, 5] {
            match run(SimOptions::new(seed, nodes)) {
                Ok(stats) => applied += stats.applied,
                Err(failure) => failures.push(failure.to_string()),
            }
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
    let a = run(SimOptions::new(42, 5)).expect("seed 42 passes");
    let b = run(SimOptions::new(42, 5)).expect("seed 42 passes");
    assert_eq!(a, b);
    assert!(a.crashes > 0 && a.final_commit > 0, "{a:?}");
    assert_ne!(run(SimOptions::new(43, 5)).expect("seed 43 passes"), a);
}

/// The simulator can fail: with Figure 8's bug planted (an earlier term's entry committed by counting
/// replicas, what Raft §5.4.2 forbids), some seed breaks a safety property.
#[test]
fn planted_commit_by_count_bug_is_caught_within_300_seeds() {
    let caught = (0..300).find_map(|seed| {
        let opts = SimOptions {
            planted_bug: Some(PlantedBug::CommitPreviousTermByCount),
            ..SimOptions::new(seed, 3)
        };
        run(opts).err()
    });
    let failure = caught.expect("the planted bug went unnoticed for 300 seeds");
    assert!(
        failure.replay_command().contains("--planted-bug"),
        "{failure}"
    );
    println!("caught: {failure}");
}
