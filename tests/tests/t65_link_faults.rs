//! Link and disk faults on real processes, seen through the wire events: a one-way cut kills messages
//! at the sender and none land, a slow link shows in receive times, a slow disk in fsync and commit
//! latency, and a storm of kills, pauses and partitions over faulty links loses nothing.

use anyhow::{ensure, Context as _, Result};
use flotilla_shared::api::{LinkFault, LinkFaultStatus};
use flotilla_shared::event::{DropReason, Event, EventKind};
use flotilla_shared::NodeId;
use flotilla_tests::{
    check_acked_exactly_once, wait_until, Cluster, EventTap, NodeClient, Options, RetryingClient,
    Writers,
};
use reqwest::{Method, StatusCode};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const LEADER_TIMEOUT: Duration = Duration::from_secs(15);
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

fn cut() -> LinkFault {
    LinkFault {
        cut: true,
        ..LinkFault::default()
    }
}

fn delay(delay_ms: u64, jitter_ms: u64) -> LinkFault {
    LinkFault {
        delay_ms,
        jitter_ms,
        ..LinkFault::default()
    }
}

fn loss(loss: f64) -> LinkFault {
    LinkFault {
        loss,
        ..LinkFault::default()
    }
}

fn received_from(event: &Event, sender: NodeId) -> Option<u64> {
    match &event.kind {
        EventKind::MessageReceived { from, msg, .. } if *from == sender => Some(*msg),
        _ => None,
    }
}

/// Waits until `log` holds an event `found` picks.
async fn wait_for_event<T>(
    log: &EventTap,
    what: &str,
    found: impl Fn(&[Event]) -> Option<T>,
) -> Result<T> {
    wait_until(Duration::from_secs(10), what, async || found(&log.events())).await
}

async fn status_link_faults(client: &NodeClient<'_>) -> Result<Vec<LinkFaultStatus>> {
    Ok(client.status().await?.link_faults)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_cut_drops_at_the_leader_and_nothing_lands_on_the_follower() {
    let cluster = Cluster::start(3, Options::default())
        .await
        .expect("start 3 nodes");
    let result = async {
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let follower = cluster.ids().into_iter().find(|&id| id != leader).context("a follower")?;
        let leader_log = EventTap::start(&cluster.url(leader), 0).await?;
        let follower_log = EventTap::start(&cluster.url(follower), 0).await?;
        // Before the cut the leader's messages land on the follower, numbered.
        wait_for_event(&follower_log, "a message from the leader lands", |events| {
            events.iter().find_map(|e| received_from(e, leader).filter(|&msg| msg > 0))
        })
        .await?;

        cluster.client(leader).set_link_fault(follower, cut()).await?;
        let faults = status_link_faults(&cluster.client(leader)).await?;
        ensure!(
            faults == [LinkFaultStatus { to: follower, fault: cut() }],
            "the leader's status shows link faults {faults:?}"
        );
        // The last message the leader sent before the cut took effect: anything after dies.
        let last_before_cut = wait_for_event(&leader_log, "link_fault_changed on the leader", |events| {
            let at = events.iter().position(|e| {
                matches!(e.kind, EventKind::LinkFaultChanged { to, fault: Some(f) } if to == follower && f == cut())
            })?;
            Some(events[..at].iter().filter_map(|e| e.kind.sent_message()).map(|(_, msg)| msg).max().unwrap_or(0))
        })
        .await?;
        let dropped = wait_for_event(&leader_log, "20 messages to the follower dropped at the cut", |events| {
            let dropped: Vec<u64> = events
                .iter()
                .filter_map(|e| match e.kind {
                    EventKind::MessageDropped { to, msg, reason: DropReason::LinkCut } if to == follower => Some(msg),
                    _ => None,
                })
                .collect();
            (dropped.len() >= 20).then_some(dropped)
        })
        .await?;
        // Each drop names a message the leader announced sending to that follower.
        let leader_events = leader_log.events();
        let sent: BTreeSet<u64> = leader_events
            .iter()
            .filter_map(|e| e.kind.sent_message())
            .filter(|&(to, _)| to == follower)
            .map(|(_, msg)| msg)
            .collect();
        let unannounced = dropped.iter().filter(|msg| !sent.contains(msg)).count();
        println!("[measure] one-way cut: {} messages to the follower dropped at the leader", dropped.len());
        ensure!(unannounced == 0, "{unannounced} dropped messages were never announced as sent: {dropped:?}");
        // Nothing the leader sent after the cut reached the follower.
        let landed: Vec<u64> = follower_log
            .events()
            .iter()
            .filter_map(|e| received_from(e, leader))
            .filter(|&msg| msg > last_before_cut)
            .collect();
        ensure!(landed.is_empty(), "messages {landed:?} from the leader landed across the cut");
        // The other direction still works: the follower's messages reach the leader.
        let from_follower = leader_events.iter().filter(|e| received_from(e, follower).is_some()).count();
        ensure!(from_follower > 0, "the leader heard nothing from the follower over the open direction");

        // Healing lets the leader's messages land again.
        cluster.client(leader).heal_link(follower).await?;
        ensure!(status_link_faults(&cluster.client(leader)).await?.is_empty(), "healed link still listed");
        let healed_at = leader_log.events().iter().filter_map(|e| e.kind.sent_message()).map(|(_, m)| m).max().unwrap_or(0);
        wait_for_event(&follower_log, "a message from the leader lands after healing", |events| {
            events.iter().find_map(|e| received_from(e, leader).filter(|&msg| msg > healed_at))
        })
        .await?;
        Ok(())
    }
    .await;
    cluster.finish(result);
}

/// Waits until the leader announced `count` drops of messages to `to` for `reason`.
async fn wait_for_drops(
    log: &EventTap,
    to: NodeId,
    reason: DropReason,
    count: usize,
) -> Result<()> {
    let what = format!(
        "{count} messages to node {to} dropped as {}",
        reason.as_str()
    );
    wait_for_event(log, &what, |events| {
        let dropped = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::MessageDropped { to: t, reason: r, .. } if t == to && r == reason))
            .count();
        (dropped >= count).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_paused_and_dead_peers_drop_messages_with_their_reason() {
    let mut cluster = Cluster::start(3, Options::default())
        .await
        .expect("start 3 nodes");
    let result = async {
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let followers: Vec<NodeId> = cluster
            .ids()
            .into_iter()
            .filter(|&id| id != leader)
            .collect();
        let (first, second) = (followers[0], followers[1]);
        let leader_log = EventTap::start(&cluster.url(leader), 0).await?;

        // Isolated on the follower's side only: the leader's messages are refused there.
        cluster.client(first).partition(&[leader]).await?;
        wait_for_drops(&leader_log, first, DropReason::Partition, 3).await?;
        cluster.client(first).heal().await?;

        // A paused process never answers: each message times out.
        cluster.pause(second)?;
        wait_for_drops(&leader_log, second, DropReason::Timeout, 3).await?;
        cluster.resume(second)?;

        // A dead one refuses the connection.
        cluster.kill(first)?;
        wait_for_drops(&leader_log, first, DropReason::Unreachable, 3).await?;
        Ok(())
    }
    .await;
    cluster.finish(result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_fault_requests_are_refused_clearly() {
    let cluster = Cluster::start(2, Options::default())
        .await
        .expect("start 2 nodes");
    let result = async {
        let node = cluster.client(NodeId(1));
        let cases: [(Method, &str, Option<&str>, StatusCode, &str); 9] = [
            (
                Method::PUT,
                "/v1/admin/links/2",
                Some(r#"{"loss":1.5}"#),
                StatusCode::BAD_REQUEST,
                "bad_fault",
            ),
            (
                Method::PUT,
                "/v1/admin/links/2",
                Some(r#"{"delay_ms":60001}"#),
                StatusCode::BAD_REQUEST,
                "bad_fault",
            ),
            (
                Method::PUT,
                "/v1/admin/links/2",
                Some(r#"{"lost":0.5}"#),
                StatusCode::BAD_REQUEST,
                "bad_request",
            ),
            (
                Method::PUT,
                "/v1/admin/links/2",
                Some("not json"),
                StatusCode::BAD_REQUEST,
                "bad_request",
            ),
            (
                Method::PUT,
                "/v1/admin/links/9",
                Some(r#"{"cut":true}"#),
                StatusCode::NOT_FOUND,
                "unknown_peer",
            ),
            (
                Method::DELETE,
                "/v1/admin/links/1",
                None,
                StatusCode::BAD_REQUEST,
                "bad_peer",
            ),
            (
                Method::PUT,
                "/v1/admin/links/two",
                Some(r#"{"cut":true}"#),
                StatusCode::BAD_REQUEST,
                "bad_peer",
            ),
            (
                Method::PUT,
                "/v1/admin/disk",
                Some(r#"{"write_delay_ms":-1}"#),
                StatusCode::BAD_REQUEST,
                "bad_request",
            ),
            (
                Method::PUT,
                "/v1/admin/disk",
                Some(r#"{"write_delay_ms":60001}"#),
                StatusCode::BAD_REQUEST,
                "bad_fault",
            ),
        ];
        for (method, path, body, status, code) in cases {
            let reply = node
                .admin(method.clone(), path, body.map(|b| b.as_bytes().to_vec()))
                .await?;
            ensure!(
                reply.status == status && reply.error()?.error == code,
                "{method} {path} {body:?}: expected {status} {code}, got {} {}",
                reply.status,
                reply.text()
            );
        }
        let reply = node.admin(Method::POST, "/v1/admin/links/2", None).await?;
        ensure!(
            reply.status == StatusCode::METHOD_NOT_ALLOWED,
            "POST links answered {}",
            reply.status
        );
        // Nothing was applied by the refused requests.
        let status = node.status().await?;
        ensure!(
            status.link_faults.is_empty() && status.disk_write_delay_ms == 0,
            "refused requests changed the faults: {:?}, disk {}",
            status.link_faults,
            status.disk_write_delay_ms
        );
        // A good one is answered with what is now in force, and listed.
        node.set_link_fault(NodeId(2), delay(30, 10)).await?;
        let listed = node.admin(Method::GET, "/v1/admin/links", None).await?;
        let listed: Vec<LinkFaultStatus> = listed.json()?;
        ensure!(
            listed
                == [LinkFaultStatus {
                    to: NodeId(2),
                    fault: delay(30, 10)
                }],
            "listed {listed:?}"
        );
        Ok(())
    }
    .await;
    cluster.finish(result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_delay_shows_in_the_followers_receive_times() {
    let cluster = Cluster::start(3, Options::default())
        .await
        .expect("start 3 nodes");
    let result = async {
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let follower = cluster.ids().into_iter().find(|&id| id != leader).context("a follower")?;
        let leader_log = EventTap::start(&cluster.url(leader), 0).await?;
        let follower_log = EventTap::start(&cluster.url(follower), 0).await?;
        cluster.client(leader).set_link_fault(follower, delay(100, 0)).await?;
        let delayed_from = wait_for_event(&leader_log, "link_fault_changed on the leader", |events| {
            let at = events.iter().position(|e| matches!(e.kind, EventKind::LinkFaultChanged { .. }))?;
            Some(events[at].at_ms)
        })
        .await?;
        // Heartbeats every 50 ms: 30 delayed appends arrive within a few seconds.
        let pairs = wait_until(Duration::from_secs(15), "30 delayed appends received", async || {
            let sends: BTreeMap<u64, u64> = leader_log
                .events()
                .iter()
                .filter(|e| e.at_ms > delayed_from)
                .filter_map(|e| match e.kind {
                    EventKind::AppendSent { to, msg, .. } if to == follower => Some((msg, e.at_ms)),
                    _ => None,
                })
                .collect();
            let pairs: Vec<(u64, u64)> = follower_log
                .events()
                .iter()
                .filter_map(|e| {
                    let msg = received_from(e, leader)?;
                    sends.get(&msg).map(|sent| (msg, e.at_ms.saturating_sub(*sent)))
                })
                .collect();
            (pairs.len() >= 30).then_some(pairs)
        })
        .await?;
        let mut flight: Vec<u64> = pairs.iter().map(|&(_, ms)| ms).collect();
        flight.sort();
        println!(
            "[measure] 100 ms link delay: receive minus send over {} appends: min {} ms, median {} ms, max {} ms",
            flight.len(),
            flight[0],
            flight[flight.len() / 2],
            flight[flight.len() - 1]
        );
        // Both clocks are this machine's Unix time in whole milliseconds: allow 2 ms of rounding.
        ensure!(flight[0] >= 98, "a delayed append landed {} ms after it was sent", flight[0]);

        cluster.client(leader).heal_link(follower).await?;
        ensure!(status_link_faults(&cluster.client(leader)).await?.is_empty(), "healed link still listed");
        Ok(())
    }
    .await;
    cluster.finish(result);
}

/// A Prometheus histogram as the test reads it.
#[derive(Clone, Copy, Debug)]
struct Latency {
    sum: f64,
    count: u64,
    /// Observations above 50 ms.
    slow: u64,
}

fn histogram(metrics: &str, name: &str) -> Result<Latency> {
    let value = |series: &str| -> Result<f64> {
        let key = format!("{name}{series} ");
        let text = metrics
            .lines()
            .find_map(|line| line.strip_prefix(&key))
            .with_context(|| format!("{name}{series} missing from /metrics"))?;
        Ok(text.trim().parse()?)
    };
    let count = value("_count")? as u64;
    Ok(Latency {
        sum: value("_sum")?,
        count,
        slow: count - value("_bucket{le=\"0.05\"}")? as u64,
    })
}

/// Mean seconds per observation between two scrapes.
fn mean_between(before: Latency, after: Latency) -> f64 {
    (after.sum - before.sum) / (after.count - before.count).max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_disk_shows_in_fsync_and_commit_latency() {
    let cluster = Cluster::start(3, Options::default())
        .await
        .expect("start 3 nodes");
    let result = async {
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let client = cluster.client(leader);
        let leader_log = EventTap::start(&cluster.url(leader), 0).await?;
        let mut writer = RetryingClient::new(&cluster).only(&[leader]);
        let scrape = async || -> Result<(Latency, Latency)> {
            let metrics = client.metrics().await?;
            Ok((
                histogram(&metrics, "flotilla_fsync_latency_seconds")?,
                histogram(&metrics, "flotilla_append_latency_seconds")?,
            ))
        };
        let mut write_ten = async |round: &str| -> Result<()> {
            for n in 0..10 {
                writer
                    .submit_acked(format!("{round} {n}"), format!("{round}-{n}"), WRITE_TIMEOUT)
                    .await?;
            }
            Ok(())
        };
        let (fsync_0, commit_0) = scrape().await?;
        write_ten("healthy").await?;
        let (fsync_1, commit_1) = scrape().await?;

        client.set_disk_delay(100).await?;
        ensure!(client.status().await?.disk_write_delay_ms == 100, "status does not show the slow disk");
        wait_for_event(&leader_log, "disk_fault_changed", |events| {
            events.iter().find(|e| e.kind == EventKind::DiskFaultChanged { write_delay_ms: 100 }).map(drop)
        })
        .await?;
        let (fsync_2, commit_2) = scrape().await?;
        write_ten("slow").await?;
        let (fsync_3, commit_3) = scrape().await?;
        client.set_disk_delay(0).await?;

        let (healthy_fsync, slow_fsync) = (mean_between(fsync_0, fsync_1), mean_between(fsync_2, fsync_3));
        let (healthy_commit, slow_commit) = (mean_between(commit_0, commit_1), mean_between(commit_2, commit_3));
        println!(
            "[measure] slow disk (100 ms): mean fsync {:.1} ms -> {:.1} ms, mean commit latency {:.1} ms -> {:.1} ms",
            healthy_fsync * 1e3,
            slow_fsync * 1e3,
            healthy_commit * 1e3,
            slow_commit * 1e3
        );
        // Every entry costs the leader one fsynced write (writes that only apply need no fsync and
        // are not held back, so the mean alone would not tell).
        let slow_fsyncs = fsync_3.slow - fsync_2.slow;
        ensure!(slow_fsyncs >= 10, "{slow_fsyncs} storage writes over 50 ms for 10 entries on a 100 ms disk");
        // The leader answers a client once the entry is applied, which waits for its own disk.
        let slow_commits = commit_3.slow - commit_2.slow;
        let commits = commit_3.count - commit_2.count;
        ensure!(
            commits >= 10 && slow_commits == commits,
            "{slow_commits} of {commits} commits over 50 ms on a 100 ms disk"
        );
        ensure!(slow_commit >= 0.1, "mean commit latency {slow_commit} s with a 100 ms disk delay");
        ensure!(client.status().await?.disk_write_delay_ms == 0, "the disk was not healed");
        Ok(())
    }
    .await;
    cluster.finish(result);
}

/// Kills, pauses and partitions over links that delay, lose and cut one way: every acknowledged write
/// is in every log exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_pauses_and_partitions_over_faulty_links_lose_nothing() {
    let mut cluster = Cluster::start(3, Options::default())
        .await
        .expect("start 3 nodes");
    let result = async {
        cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let ids = cluster.ids();
        // Every link is slow and jittery, and node 3's links lose a tenth of what they carry.
        for &from in &ids {
            for &to in ids.iter().filter(|&&to| to != from) {
                let fault = if from == NodeId(3) {
                    LinkFault { loss: 0.1, ..delay(15, 10) }
                } else {
                    delay(15, 10)
                };
                cluster.client(from).set_link_fault(to, fault).await?;
            }
        }
        let writers = Writers::start(&RetryingClient::new(&cluster), 4, "faulty", WRITE_TIMEOUT);
        let mut acked = writers.wait_for(0, 10, WRITE_TIMEOUT).await?;
        for round in 0..8 {
            let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
            let follower = *ids.iter().find(|&&id| id != leader).context("a follower")?;
            println!("round {round}: leader {leader}, follower {follower}, {acked} acknowledged");
            match round % 4 {
                0 => {
                    // A one-way cut from the leader to a follower, while it is written to.
                    cluster.client(leader).set_link_fault(follower, cut()).await?;
                    acked = writers.wait_for(acked, 10, WRITE_TIMEOUT).await?;
                    cluster.client(leader).set_link_fault(follower, delay(15, 10)).await?;
                }
                1 => {
                    cluster.kill(leader)?;
                    let survivors = cluster.running();
                    cluster.wait_for_leader_among(&survivors, LEADER_TIMEOUT).await?;
                    acked = writers.wait_for(acked, 10, WRITE_TIMEOUT).await?;
                    // A restart forgets its faults: it comes back with clean links.
                    cluster.restart(leader).await?;
                }
                2 => {
                    cluster.pause(leader)?;
                    let others: Vec<NodeId> = ids.iter().copied().filter(|&id| id != leader).collect();
                    cluster.wait_for_leader_among(&others, LEADER_TIMEOUT).await?;
                    // Writers waiting on the paused node get their answers once it wakes (and
                    // steps down): resume it before counting on them.
                    cluster.resume(leader)?;
                }
                _ => {
                    // The leader's outgoing links lose a lot while a follower is partitioned away.
                    for &to in ids.iter().filter(|&&to| to != leader) {
                        cluster.client(leader).set_link_fault(to, loss(0.3)).await?;
                    }
                    cluster.client(follower).partition(&[leader]).await?;
                    cluster.client(leader).partition(&[follower]).await?;
                    acked = writers.wait_for(acked, 10, WRITE_TIMEOUT).await?;
                    cluster.client(follower).heal().await?;
                    cluster.client(leader).heal().await?;
                    for &to in ids.iter().filter(|&&to| to != leader) {
                        cluster.client(leader).set_link_fault(to, delay(15, 10)).await?;
                    }
                }
            }
            acked = writers.wait_for(acked, 10, WRITE_TIMEOUT).await?;
        }
        let acked = writers.stop().await?;
        for &id in &ids {
            for &to in ids.iter().filter(|&&to| to != id) {
                cluster.client(id).heal_link(to).await?;
            }
        }
        let last = acked.iter().map(|a| a.index).max().unwrap_or_default();
        cluster.wait_converged(last, CONVERGE_TIMEOUT).await?;
        let messages = cluster.identical_logs(&ids).await?;
        check_acked_exactly_once(&messages, &acked)?;
        println!(
            "[measure] faulty links storm: {} acknowledged writes over 8 rounds, {} retried, {} messages applied",
            acked.len(),
            acked.iter().filter(|a| a.attempts > 1).count(),
            messages.len()
        );
        Ok(())
    }
    .await;
    cluster.finish(result);
}
