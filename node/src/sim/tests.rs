use super::*;

/// Even seeds run three nodes, odd ones five.
fn size(seed: u64) -> usize {
    if seed.is_multiple_of(2) {
        3
    } else {
        5
    }
}

/// CI's seed range: both cluster sizes, every seed checked for safety and liveness.
#[test]
fn simulated_clusters_stay_safe_and_live_over_1000_seeds() {
    let mut failures = Vec::new();
    let (mut applied, mut snapshots, mut installs) = (0, 0, 0);
    for seed in 0..1000 {
        let nodes = size(seed);
        match run(SimOptions::ci(seed, nodes)) {
            Ok(stats) => {
                applied += stats.applied;
                snapshots += stats.snapshots;
                installs += stats.installs;
            }
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
    // Raft §7 under the same faults: logs were compacted and lagging nodes caught up from snapshots.
    assert!(
        snapshots > 1000 && installs > 50,
        "{snapshots} snapshots taken, {installs} installed"
    );
    println!("{snapshots} snapshots taken, {installs} installed");
}

/// Raft §6: membership changes (adds, promotions, removals of followers and leaders, re-adds) mixed
/// with crashes and partitions keep every safety property and liveness once calm.
#[test]
fn membership_changes_stay_safe_and_live_over_300_seeds() {
    let mut failures = Vec::new();
    let mut changes = 0;
    for seed in 0..300 {
        match run(SimOptions::membership(seed, size(seed))) {
            Ok(stats) => changes += stats.membership_changes,
            Err(failure) => failures.push(failure.to_string()),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing runs:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        changes > 300,
        "only {changes} membership changes in 300 runs"
    );
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

/// The simulator can fail on the paper's own example: with a bug planted that commits entries of an
/// earlier term by counting replicas (what Raft §5.4.2, Figure 8, forbids), the Figure 8 fault schedule
/// breaks a safety property within a few seeds, and the same run passes without the bug.
#[test]
fn planted_figure8_bug_is_caught_within_100_seeds() {
    let bugged = |seed: u64| SimOptions {
        planted_bug: Some(PlantedBug::CommitPreviousTermByCount),
        ..SimOptions::figure8(seed, size(seed))
    };
    let failure = (0..100)
        .find_map(|seed| run(bugged(seed)).err())
        .expect("the planted Figure 8 bug went unnoticed for 100 seeds");
    assert!(
        !failure.invariant.starts_with("liveness"),
        "caught by a liveness check, not a safety one: {failure}"
    );
    assert!(
        failure
            .replay_command()
            .contains("--profile figure8 --planted-bug commit-by-count"),
        "{failure}"
    );
    let clean = SimOptions {
        planted_bug: None,
        ..failure.options
    };
    if let Err(without_bug) = run(clean) {
        panic!("the run fails without the planted bug too: {without_bug}");
    }
    println!("caught: {failure}");
}

/// The Figure 8 schedule without a planted bug: safe, and live once the faults heal.
#[test]
fn figure8_schedule_stays_safe_and_live_over_100_seeds() {
    let failures: Vec<String> = (0..100)
        .filter_map(|seed| run(SimOptions::figure8(seed, size(seed))).err())
        .map(|failure| failure.to_string())
        .collect();
    assert!(
        failures.is_empty(),
        "{} failing runs:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Found by the Figure 8 schedule: a leader that crashed before its term was durable came back in
/// the old term, won the same term again and appended a different entry at an index its first reign
/// had already sent out. Candidates now ask for votes only once their term is durable (Raft §5.2).
#[test]
fn leader_crashing_before_its_term_is_durable_does_not_lead_that_term_twice() {
    if let Err(failure) = run(SimOptions::figure8(537, 3)) {
        panic!("{failure}");
    }
}

/// The mangled message stream (corrupted in transit so a receiver can tell, replayed, duplicated,
/// reordered; Byzantine-free) over both cluster sizes: every run safe and live, every mangled message
/// refused without changing its receiver (both checked inside each run), and replays really sent.
#[test]
fn mangled_message_stream_stays_safe_and_live_over_200_seeds() {
    let mut failures = Vec::new();
    let (mut mangled, mut replayed, mut applied) = (0, 0, 0);
    for seed in 0..200 {
        match run(SimOptions::mangled(seed, size(seed))) {
            Ok(stats) => {
                mangled += stats.mangled_delivered;
                replayed += stats.replayed;
                applied += stats.applied;
            }
            Err(failure) => failures.push(failure.to_string()),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing runs:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        mangled > 1000 && replayed > 1000 && applied > 0,
        "mangled {mangled}, replayed {replayed}, applied {applied}"
    );
    println!("{mangled} mangled messages refused, {replayed} replays, {applied} entries applied");
}

/// The mangled profile can fail: with the core's own checks switched off (a planted bug that trusts
/// every envelope), a mangled message breaks the core's invariants (a term no store can hold, or an
/// entry of a term above the node's), and the same run passes without the bug.
#[test]
fn planted_trust_envelopes_bug_is_caught_under_the_mangled_profile() {
    let bugged = |seed: u64| SimOptions {
        planted_bug: Some(PlantedBug::TrustEnvelopes),
        ..SimOptions::mangled(seed, size(seed))
    };
    let failure = (0..20)
        .find_map(|seed| run(bugged(seed)).err())
        .expect("the planted trust-envelopes bug went unnoticed for 20 seeds");
    assert!(
        !failure.invariant.starts_with("liveness"),
        "caught by a liveness check, not a safety one: {failure}"
    );
    assert!(
        failure
            .replay_command()
            .contains("--profile mangled --planted-bug trust-envelopes"),
        "{failure}"
    );
    let clean = SimOptions {
        planted_bug: None,
        ..failure.options
    };
    if let Err(without_bug) = run(clean) {
        panic!("the run fails without the planted bug too: {without_bug}");
    }
    println!("caught: {failure}");
}
