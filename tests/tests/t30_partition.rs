//! A network partition made with the admin API: the majority side commits, the minority cannot, and
//! after healing everyone converges on the majority's log.

use anyhow::{bail, ensure, Result};
use flotilla_shared::NodeId;
use flotilla_tests::{
    check_acked_exactly_once, count_by_request_id, wait_until, Ack, Cluster, Options,
    RetryingClient, Submitted,
};
use reqwest::StatusCode;
use std::time::{Duration, Instant};

const LEADER_TIMEOUT: Duration = Duration::from_secs(15);
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_partition_cannot_commit_and_heals() {
    let cluster = Cluster::start(
        3,
        // Snapshots every 20 entries: the minority catches up after healing through a snapshot
        // when the majority compacted what it missed (Raft §7).
        Options {
            extra_args: vec!["--snapshot-threshold".into(), "20".into()],
            ..Options::default()
        },
    )
    .await
    .expect("start 3 nodes");
    let result = async {
        cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let mut client = RetryingClient::new(&cluster);
        let mut acked = Vec::new();
        let write = async |client: &mut RetryingClient, n: u64| -> Result<Ack> {
            let request_id = format!("part-{n}");
            let text = format!("partition test {n}");
            client.submit_acked(text, request_id, WRITE_TIMEOUT).await
        };
        for n in 0..5 {
            acked.push(write(&mut client, n).await?);
        }
        // Everyone has applied those five; cut off whoever leads now (leadership may have moved).
        let before_cut = acked.iter().map(|a| a.index).max().unwrap_or_default();
        cluster
            .wait_converged(before_cut, Duration::from_secs(20))
            .await?;
        let old_leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;

        // Cut the leader off from both others, on both sides.
        let minority = old_leader;
        let majority: Vec<NodeId> = cluster.ids().into_iter().filter(|&id| id != minority).collect();
        cluster.client(minority).partition(&majority).await?;
        for &id in &majority {
            cluster.client(id).partition(&[minority]).await?;
        }
        let cut_at = Instant::now();
        let mut isolated = Vec::new();
        let shown = wait_until(
            Duration::from_secs(3),
            "the minority's /v1/status lists the partition",
            async || {
                isolated = cluster.client(minority).status().await.ok()?.isolated_from;
                (isolated == majority).then_some(())
            },
        )
        .await;
        ensure!(shown.is_ok(), "node {minority} reports isolated_from {isolated:?}, expected {majority:?}");

        // The majority elects a leader of its own and commits.
        let new_leader = cluster
            .wait_for_leader_among(&majority, LEADER_TIMEOUT)
            .await?;
        println!(
            "[measure] partition: majority leader {new_leader} {} ms after cutting off leader {minority}",
            cut_at.elapsed().as_millis()
        );
        let mut majority_client = client.clone().only(&majority);
        for n in 5..15 {
            acked.push(write(&mut majority_client, n).await?);
        }

        // The minority cannot commit: its submit fails with 503 (no leader) or 504 (unknown outcome).
        let refused = cluster
            .client(minority)
            .submit("from the minority", Some("minority-1"))
            .await?;
        match refused {
            Submitted::Refused { status, error }
                if status == StatusCode::SERVICE_UNAVAILABLE
                    || status == StatusCode::GATEWAY_TIMEOUT =>
            {
                println!("minority submit refused as expected: {status} {}", error.error);
            }
            other => bail!("the isolated node {minority} accepted a write: {other:?}"),
        }
        // Its own state machine has none of the majority's new writes.
        let minority_view = cluster.all_messages(minority, true).await?;
        ensure!(
            minority_view.len() == 5,
            "the isolated node applied {} messages, expected the 5 from before the cut",
            minority_view.len()
        );

        // Heal both sides: everyone converges on the majority's log.
        for id in cluster.ids() {
            cluster.client(id).heal().await?;
        }
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        acked.push(write(&mut client, 15).await?);
        let last = acked.iter().map(|a| a.index).max().unwrap_or_default();
        cluster.wait_converged(last, Duration::from_secs(20)).await?;
        let messages = cluster.identical_logs(&cluster.ids()).await?;
        check_acked_exactly_once(&messages, &acked)?;
        // Raft §5.3/§5.4: the minority's uncommitted entry was overwritten, never applied.
        let counts = count_by_request_id(&messages);
        ensure!(
            !counts.contains_key("minority-1"),
            "the minority's write was applied after healing"
        );
        ensure!(messages.len() == acked.len(), "{} messages for {} acks", messages.len(), acked.len());
        println!("after healing: leader {leader}, {} messages on every node", messages.len());
        Ok(())
    }
    .await;
    cluster.finish(result);
}
