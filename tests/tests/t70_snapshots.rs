//! Snapshots and compaction (Raft §7) with real processes: a follower whose disk is wiped is rebuilt
//! through InstallSnapshot, and `kill -9` of either side during an install loses nothing.

use anyhow::{ensure, Result};
use flotilla_shared::event::EventKind;
use flotilla_shared::{LogIndex, NodeId};
use flotilla_tests::{check_acked_exactly_once, Ack, Cluster, EventTap, Options, RetryingClient};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

const LEADER_TIMEOUT: Duration = Duration::from_secs(15);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Every replayable event of a process that just started.
const ALL_HISTORY: usize = 10_000;

fn options(threshold: u64) -> Options {
    Options {
        extra_args: vec!["--snapshot-threshold".into(), threshold.to_string()],
        ..Options::default()
    }
}

/// Writers whose messages carry `pad` bytes of text each, so the snapshot's image is large.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Ack>>>,
    handles: Vec<tokio::task::JoinHandle<Result<()>>>,
}

impl Load {
    fn start(cluster: &Cluster, writers: usize, prefix: &str, pad: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let client = RetryingClient::new(cluster);
        let handles = (0..writers)
            .map(|writer| {
                let (mut client, stop, acked) = (client.clone(), stop.clone(), acked.clone());
                let prefix = format!("{prefix}-w{writer}");
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let text = format!("{prefix} message {n} {}", "x".repeat(pad));
                        let ack = client
                            .submit_acked(text, format!("{prefix}-{n}"), WRITE_TIMEOUT)
                            .await?;
                        acked
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(ack);
                        n += 1;
                    }
                    Ok(())
                })
            })
            .collect();
        Self {
            stop,
            acked,
            handles,
        }
    }

    fn acked(&self) -> usize {
        self.acked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    async fn wait_for(&self, count: usize) -> Result<()> {
        flotilla_tests::wait_until(WRITE_TIMEOUT * 4, "writes acknowledged", async || {
            (self.acked() >= count).then_some(())
        })
        .await
    }

    async fn stop(self) -> Result<Vec<Ack>> {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.handles {
            handle.await??;
        }
        Ok(std::mem::take(
            &mut *self.acked.lock().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// Kills `id`, deletes its data dir and starts it again: a node that lost its disk.
async fn wipe_and_restart(cluster: &mut Cluster, id: NodeId) -> Result<()> {
    cluster.kill(id)?;
    std::fs::remove_dir_all(&cluster.node(id).data_dir)?;
    cluster.restart(id).await
}

/// Everything acknowledged is applied exactly once, identically on every node; every node compacted.
async fn check_nothing_lost(cluster: &Cluster, acked: &[Ack]) -> Result<()> {
    let last = acked.iter().map(|a| a.index).max().unwrap_or_default();
    cluster.wait_converged(last, CONVERGE_TIMEOUT).await?;
    let messages = cluster.identical_logs(&cluster.ids()).await?;
    check_acked_exactly_once(&messages, acked)?;
    for id in cluster.ids() {
        let status = cluster.client(id).status().await?;
        ensure!(
            status.first_log_index > LogIndex(1) && status.snapshot_index > LogIndex(0),
            "node {id} never compacted: first_log_index {}, snapshot_index {}",
            status.first_log_index,
            status.snapshot_index
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_follower_is_rebuilt_through_install_snapshot() {
    let mut cluster = Cluster::start(3, options(200))
        .await
        .expect("start 3 nodes");
    let result =
        async {
            let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
            let load = Load::start(&cluster, 4, "rebuild", 16);
            load.wait_for(1_500).await?;
            let follower = *cluster
                .ids()
                .iter()
                .find(|&&id| id != leader)
                .expect("3 nodes");
            let leader_events = EventTap::start(&cluster.url(leader), 0).await?;

            wipe_and_restart(&mut cluster, follower).await?;
            let follower_events = EventTap::start(&cluster.url(follower), ALL_HISTORY).await?;
            let installed = follower_events
            .wait_for("snapshot_installed on the wiped follower", INSTALL_TIMEOUT, |kind| {
                matches!(kind, EventKind::SnapshotInstalled { from, .. } if *from == leader)
            })
            .await?;
            leader_events
            .wait_for("the leader's last snapshot chunk to the follower", INSTALL_TIMEOUT, |kind| {
                matches!(kind, EventKind::SnapshotSent { to, done: true, .. } if *to == follower)
            })
            .await?;
            let chunks = leader_events
                .events()
                .iter()
                .filter(|e| matches!(e.kind, EventKind::SnapshotSent { to, .. } if to == follower))
                .count();
            let more = load.acked() + 300;
            load.wait_for(more).await?;
            let acked = load.stop().await?;
            check_nothing_lost(&cluster, &acked).await?;
            println!(
            "[measure] wiped follower {follower} rebuilt from leader {leader}: {:?} in {chunks} \
             chunk(s); {} writes acknowledged",
            installed.kind,
            acked.len()
        );
            Ok(())
        }
        .await;
    cluster.finish(result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_either_side_during_an_install_loses_nothing() {
    let mut cluster = Cluster::start(3, options(500))
        .await
        .expect("start 3 nodes");
    let result = async {
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        // About 1 KiB a message: an image of a few MiB, sent in several 512 KiB chunks.
        let load = Load::start(&cluster, 4, "install-kill", 1_000);
        load.wait_for(3_000).await?;
        let follower = *cluster
            .ids()
            .iter()
            .find(|&&id| id != leader)
            .expect("3 nodes");

        // The receiving side dies mid-transfer and comes back with what it had staged.
        let leader_events = EventTap::start(&cluster.url(leader), 0).await?;
        wipe_and_restart(&mut cluster, follower).await?;
        let sent = leader_events
            .wait_for(
                "a snapshot chunk to the wiped follower",
                INSTALL_TIMEOUT,
                |kind| matches!(kind, EventKind::SnapshotSent { to, .. } if *to == follower),
            )
            .await?;
        cluster.kill(follower)?;
        let follower_mid_transfer =
            !matches!(sent.kind, EventKind::SnapshotSent { done: true, .. });
        cluster.restart(follower).await?;

        // The sending side dies mid-transfer: a new leader sends its own snapshot.
        let leader_events = EventTap::start(&cluster.url(leader), 0).await?;
        wipe_and_restart(&mut cluster, follower).await?;
        let sent = leader_events
            .wait_for(
                "a snapshot chunk from the leader",
                INSTALL_TIMEOUT,
                |kind| matches!(kind, EventKind::SnapshotSent { to, .. } if *to == follower),
            )
            .await?;
        cluster.kill(leader)?;
        let leader_mid_transfer = !matches!(sent.kind, EventKind::SnapshotSent { done: true, .. });
        let survivors = cluster.running();
        let new_leader = cluster
            .wait_for_leader_among(&survivors, LEADER_TIMEOUT)
            .await?;
        ensure!(
            new_leader != follower,
            "the wiped follower cannot win an election"
        );
        let more = load.acked() + 200;
        load.wait_for(more).await?;
        cluster.restart(leader).await?;
        let more = load.acked() + 200;
        load.wait_for(more).await?;
        let acked = load.stop().await?;
        check_nothing_lost(&cluster, &acked).await?;
        println!(
            "[measure] kill -9 during install: follower killed mid-transfer: \
             {follower_mid_transfer}; leader killed mid-transfer: {leader_mid_transfer}; {} writes \
             acknowledged",
            acked.len()
        );
        Ok(())
    }
    .await;
    cluster.finish(result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_snapshot_compacts_on_demand_and_survives_a_restart() {
    let mut cluster = Cluster::start(1, options(0)).await.expect("start 1 node");
    let result = async {
        let id = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let load = Load::start(&cluster, 2, "admin", 8);
        load.wait_for(50).await?;
        let acked = load.stop().await?;
        let before = cluster.client(id).status().await?;
        ensure!(
            before.snapshot_index == LogIndex(0) && before.first_log_index == LogIndex(1),
            "threshold 0 never snapshots by itself: {before:?}"
        );
        let taken = cluster.client(id).take_snapshot().await?;
        ensure!(taken.snapshot_index >= LogIndex(50), "{taken:?}");
        let after = cluster.client(id).status().await?;
        ensure!(
            after.snapshot_index == taken.snapshot_index
                && after.snapshot_term == taken.snapshot_term,
            "status {after:?} after {taken:?}"
        );
        // Threshold 0 keeps no tail: the whole log up to the snapshot goes.
        let client = cluster.client(id);
        flotilla_tests::wait_until(
            WRITE_TIMEOUT,
            "the log compacted up to the snapshot",
            async || {
                let status = client.status().await.ok()?;
                (status.first_log_index == taken.snapshot_index.next()).then_some(())
            },
        )
        .await?;
        cluster.kill(id)?;
        cluster.restart(id).await?;
        cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let restarted = cluster.client(id).status().await?;
        ensure!(
            restarted.snapshot_index == taken.snapshot_index,
            "{restarted:?}"
        );
        let messages = cluster.all_messages(id, true).await?;
        check_acked_exactly_once(&messages, &acked)?;
        Ok(())
    }
    .await;
    cluster.finish(result);
}
