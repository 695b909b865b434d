//! Crashes: `kill -9` of the leader, of nodes in the middle of concurrent writes, and of two nodes out
//! of five. Nothing acknowledged may be lost or applied twice.

use anyhow::ensure;
use flotilla_shared::NodeId;
use flotilla_tests::{check_acked_exactly_once, Cluster, Options, RetryingClient, Writers};
use std::time::{Duration, Instant};

const LEADER_TIMEOUT: Duration = Duration::from_secs(15);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(20);
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);

/// Snapshots every 20 entries: the faults also strike while logs are compacted and followers that
/// fell behind catch up from snapshots (Raft §7).
fn compacting() -> Options {
    Options {
        extra_args: vec!["--snapshot-threshold".into(), "20".into()],
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_fails_over_and_the_restarted_node_catches_up() {
    let mut cluster = Cluster::start(3, Options::default())
        .await
        .expect("start 3 nodes");
    let result = async {
        let old_leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let old_term = cluster.client(old_leader).status().await?.term;
        let writers = Writers::start(&RetryingClient::new(&cluster), 1, "failover", WRITE_TIMEOUT);
        let before_kill = writers.wait_for(0, 20, WRITE_TIMEOUT).await?;

        let killed_at = Instant::now();
        cluster.kill(old_leader)?;
        let survivors = cluster.running();
        let new_leader = cluster
            .wait_for_leader_among(&survivors, LEADER_TIMEOUT)
            .await?;
        let failover = killed_at.elapsed();
        let new_term = cluster.client(new_leader).status().await?.term;
        println!(
            "[measure] failover after kill -9 of leader {old_leader}: new leader {new_leader} agreed \
             by the survivors after {} ms (term {old_term} -> {new_term}; election timeout {:?} ms)",
            failover.as_millis(),
            cluster.options().election_timeout_ms
        );
        ensure!(new_leader != old_leader && new_term > old_term);

        // The retrying client keeps going through the new leader.
        let after_failover = writers.wait_for(before_kill, 20, WRITE_TIMEOUT).await?;
        cluster.restart(old_leader).await?;
        writers.wait_for(after_failover, 10, WRITE_TIMEOUT).await?;
        let acked = writers.stop().await?;

        let last = acked.iter().map(|a| a.index).max().unwrap_or_default();
        cluster.wait_converged(last, CONVERGE_TIMEOUT).await?;
        let messages = cluster.identical_logs(&cluster.ids()).await?;
        check_acked_exactly_once(&messages, &acked)?;
        println!(
            "[measure] {} writes acknowledged across the failover; {} needed a retry",
            acked.len(),
            acked.iter().filter(|a| a.attempts > 1).count()
        );
        Ok(())
    }
    .await;
    cluster.finish(result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_concurrent_writes_ten_times_loses_nothing() {
    let mut cluster = Cluster::start(3, compacting())
        .await
        .expect("start 3 nodes");
    let result = async {
        cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let writers = Writers::start(&RetryingClient::new(&cluster), 4, "storm", WRITE_TIMEOUT);
        let mut acked_so_far = writers.wait_for(0, 10, WRITE_TIMEOUT).await?;
        let mut failovers = Vec::new();
        for round in 0..10 {
            // Alternate between killing the leader and killing a follower.
            let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
            let victim = if round % 2 == 0 {
                leader
            } else {
                *cluster
                    .ids()
                    .iter()
                    .find(|&&id| id != leader)
                    .expect("a follower")
            };
            cluster.kill(victim)?;
            if victim == leader {
                let killed_at = Instant::now();
                let survivors = cluster.running();
                cluster
                    .wait_for_leader_among(&survivors, LEADER_TIMEOUT)
                    .await?;
                failovers.push(killed_at.elapsed().as_millis());
            }
            // The other two keep committing while it is down...
            acked_so_far = writers.wait_for(acked_so_far, 15, WRITE_TIMEOUT).await?;
            // ...and it comes back on its own data, in the middle of the stream.
            cluster.restart(victim).await?;
            acked_so_far = writers.wait_for(acked_so_far, 10, WRITE_TIMEOUT).await?;
        }
        let acked = writers.stop().await?;
        let last = acked.iter().map(|a| a.index).max().unwrap_or_default();
        cluster.wait_converged(last, CONVERGE_TIMEOUT).await?;
        // Every node's own state machine, read page by page, holds each acknowledged write once.
        let messages = cluster.identical_logs(&cluster.ids()).await?;
        check_acked_exactly_once(&messages, &acked)?;
        // And the linearizable view through each node agrees.
        for id in cluster.ids() {
            let linearizable = cluster.all_messages(id, false).await?;
            ensure!(
                linearizable == messages,
                "linearizable read on node {id} differs from the converged logs"
            );
        }
        println!(
            "[measure] kill storm: {} acknowledged writes over 10 kill -9 rounds, {} retried, {} \
             messages applied in total",
            acked.len(),
            acked.iter().filter(|a| a.attempts > 1).count(),
            messages.len()
        );
        failovers.sort();
        println!(
            "[measure] kill storm: failover after each leader kill (ms, sorted, under concurrent \
             writes): {failovers:?}"
        );
        Ok(())
    }
    .await;
    cluster.finish(result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_tolerate_two_dead() {
    let mut cluster = Cluster::start(5, Options::default())
        .await
        .expect("start 5 nodes");
    let result = async {
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let mut client = RetryingClient::new(&cluster);
        client
            .submit("before the crash", "five-0", WRITE_TIMEOUT)
            .await?;
        // Kill the leader and one follower: three of five remain, still a majority.
        let follower = *cluster
            .ids()
            .iter()
            .find(|&&id| id != leader)
            .expect("a follower");
        let dead: [NodeId; 2] = [leader, follower];
        for id in dead {
            cluster.kill(id)?;
        }
        let killed_at = Instant::now();
        let survivors = cluster.running();
        ensure!(survivors.len() == 3);
        let new_leader = cluster
            .wait_for_leader_among(&survivors, LEADER_TIMEOUT)
            .await?;
        println!(
            "[measure] 5 nodes, leader {leader} and node {follower} killed: leader {new_leader} after {} ms",
            killed_at.elapsed().as_millis()
        );
        let mut client = client.only(&survivors);
        let mut acked = Vec::new();
        for n in 1..=20 {
            let id = format!("five-{n}");
            let text = format!("with two dead {n}");
            acked.push(client.submit_acked(text, id, WRITE_TIMEOUT).await?);
        }
        // Linearizable reads from every survivor see all of it.
        for &id in &survivors {
            let messages = cluster.all_messages(id, false).await?;
            check_acked_exactly_once(&messages, &acked)?;
        }
        // The dead come back and catch up.
        for id in dead {
            cluster.restart(id).await?;
        }
        let last = acked.iter().map(|a| a.index).max().unwrap_or_default();
        cluster.wait_converged(last, CONVERGE_TIMEOUT).await?;
        let messages = cluster.identical_logs(&cluster.ids()).await?;
        check_acked_exactly_once(&messages, &acked)?;
        ensure!(messages.len() == 21, "{} messages", messages.len());
        Ok(())
    }
    .await;
    cluster.finish(result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_replaced_and_steps_down_when_resumed() {
    let mut cluster = Cluster::start(3, Options::default())
        .await
        .expect("start 3 nodes");
    let result = async {
        let old_leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let others: Vec<NodeId> = cluster
            .ids()
            .into_iter()
            .filter(|&id| id != old_leader)
            .collect();
        let mut client = RetryingClient::new(&cluster).only(&others);
        client
            .submit("before the pause", "pause-0", WRITE_TIMEOUT)
            .await?;

        // SIGSTOP: the leader is frozen, not dead; its sockets stay open.
        let old_term = cluster.client(old_leader).status().await?.term;
        cluster.pause(old_leader)?;
        let paused_at = Instant::now();
        let new_leader = cluster
            .wait_for_leader_among(&others, LEADER_TIMEOUT)
            .await?;
        println!(
            "[measure] leader {old_leader} SIGSTOPped: leader {new_leader} after {} ms",
            paused_at.elapsed().as_millis()
        );
        let during = client
            .submit("while the old leader sleeps", "pause-1", WRITE_TIMEOUT)
            .await?;

        // SIGCONT: the old leader wakes up in an old term, learns of the new one and follows it.
        cluster.resume(old_leader)?;
        cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let woke = cluster.client(old_leader).status().await?;
        ensure!(
            woke.term > old_term,
            "node {old_leader} still in term {} after resuming (paused in {old_term})",
            woke.term
        );
        cluster
            .wait_converged(during.response.index, CONVERGE_TIMEOUT)
            .await?;
        let messages = cluster.identical_logs(&cluster.ids()).await?;
        ensure!(messages.len() == 2, "{messages:?}");
        Ok(())
    }
    .await;
    cluster.finish(result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_every_node_at_once_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start(3, compacting())
        .await
        .expect("start 3 nodes");
    let result = async {
        cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let writers = Writers::start(&RetryingClient::new(&cluster), 3, "blackout", WRITE_TIMEOUT);
        writers.wait_for(0, 30, WRITE_TIMEOUT).await?;
        // Power cut: every node dies mid-stream; only what reached the disks survives.
        for id in cluster.ids() {
            cluster.kill(id)?;
        }
        let killed_at = Instant::now();
        for id in cluster.ids() {
            cluster.restart(id).await?;
        }
        cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        println!(
            "[measure] whole-cluster kill -9: serving again with a leader {} ms after the kill",
            killed_at.elapsed().as_millis()
        );
        // The writers' in-flight requests failed and were retried with the same request id.
        let before = writers.acked();
        writers.wait_for(before, 10, WRITE_TIMEOUT).await?;
        let acked = writers.stop().await?;
        let last = acked.iter().map(|a| a.index).max().unwrap_or_default();
        cluster.wait_converged(last, CONVERGE_TIMEOUT).await?;
        let messages = cluster.identical_logs(&cluster.ids()).await?;
        check_acked_exactly_once(&messages, &acked)?;
        Ok(())
    }
    .await;
    cluster.finish(result);
}
