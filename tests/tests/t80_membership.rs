//! Membership changes (Raft §6) on real processes: nodes started with `--join` are added (as learners,
//! then promoted), the leader and a follower are removed, and every acknowledged write stays on every
//! remaining member exactly once; a removed node that comes back does not disturb the cluster.

use anyhow::{bail, ensure, Context as _, Result};
use flotilla_shared::api::{MemberRole, MembersResponse, Status};
use flotilla_shared::event::Role;
use flotilla_shared::NodeId;
use flotilla_tests::{
    check_acked_exactly_once, wait_until, Cluster, Options, RetryingClient, Writers,
};
use reqwest::{Method, StatusCode};
use std::time::Duration;

const LEADER_TIMEOUT: Duration = Duration::from_secs(15);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const CHANGE_TIMEOUT: Duration = Duration::from_secs(20);

fn voters(status: &Status) -> Vec<NodeId> {
    status
        .members
        .iter()
        .filter(|m| m.role == MemberRole::Voter)
        .map(|m| m.id)
        .collect()
}

/// Waits until every node in `among` reports `expected` as its voters, with no learner left.
async fn wait_members(cluster: &Cluster, among: &[NodeId], expected: &[NodeId]) -> Result<()> {
    wait_until(
        CHANGE_TIMEOUT,
        "every member reports the new configuration",
        async || {
            let statuses = cluster.statuses(among).await;
            let agreed = statuses.len() == among.len()
                && statuses
                    .values()
                    .all(|s| voters(s) == expected && s.members.len() == expected.len());
            agreed.then_some(())
        },
    )
    .await
}

/// Adds node `id` (started with `--join`) as a voter through node `via`: the answer comes once it
/// votes.
async fn add_voter(cluster: &Cluster, via: NodeId, id: NodeId) -> Result<MembersResponse> {
    let addr = cluster.node(id).addr();
    let added = cluster
        .client(via)
        .add_member(id, &addr, MemberRole::Voter)
        .await?;
    ensure!(
        added
            .members
            .iter()
            .any(|m| m.id == id && m.role == MemberRole::Voter),
        "the answer comes once node {id} is a voter: {added:?}"
    );
    Ok(added)
}

/// Checks that `among` converged on identical logs holding every acknowledged write exactly once.
async fn check_nothing_lost(
    cluster: &Cluster,
    among: &[NodeId],
    acked: &[flotilla_tests::Ack],
) -> Result<()> {
    let at_least = acked.iter().map(|a| a.index).max().unwrap_or_default();
    cluster
        .wait_converged_among(among, at_least, Duration::from_secs(30))
        .await?;
    let messages = cluster.identical_logs(among).await?;
    check_acked_exactly_once(&messages, acked)?;
    println!(
        "{} acknowledged writes present exactly once on nodes {among:?} ({} messages)",
        acked.len(),
        messages.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_to_five_then_remove_the_leader_and_another() {
    let mut cluster = Cluster::start(3, Options::default())
        .await
        .expect("start 3 nodes");
    let result = async {
        let first_leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let status = cluster.client(first_leader).status().await?;
        ensure!(
            voters(&status) == [NodeId(1), NodeId(2), NodeId(3)],
            "a fresh cluster's configuration is its --peers: {:?}",
            status.members
        );
        let writers = Writers::start(&RetryingClient::new(&cluster), 2, "grow", WRITE_TIMEOUT);
        writers.wait_for(0, 20, WRITE_TIMEOUT).await?;

        // Node 4 waits to be added and never campaigns meanwhile.
        cluster.start_joining(NodeId(4)).await?;
        tokio::time::sleep(Duration::from_millis(800)).await;
        let waiting = cluster.client(NodeId(4)).status().await?;
        ensure!(
            waiting.members.is_empty() && waiting.term == flotilla_shared::Term(0),
            "a joining node has no configuration and never campaigns: {waiting:?}"
        );

        // Added through a follower: the request is forwarded to the leader.
        let follower = cluster
            .ids()
            .into_iter()
            .find(|&id| id != first_leader && id != NodeId(4))
            .context("a follower")?;
        let added = add_voter(&cluster, follower, NodeId(4)).await?;
        // Node 4 itself announced the configuration that promoted it, committed.
        let seen = membership_event(&cluster, NodeId(4), added.config_index.0).await?;
        ensure!(
            seen["members"].as_array().is_some_and(|m| m.len() == 4),
            "membership_changed lists the four members: {seen}"
        );

        // A change whose learner cannot catch up (nothing listens there) holds the cluster's one
        // change slot: a second change is refused 409 until it is removed.
        let asked = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let asked_url = cluster.url(asked);
        let dead_addr = format!("127.0.0.1:{}", free_port()?);
        let stuck = {
            let api = cluster.api().clone();
            let url = asked_url.clone();
            let body = serde_json::json!({"id": 9, "addr": dead_addr, "role": "voter"});
            tokio::spawn(async move {
                api.request(
                    Method::POST,
                    &format!("{url}/v1/admin/members"),
                    Some(("application/json", serde_json::to_vec(&body).unwrap())),
                    &[("authorization", "Bearer e2e-admin-token")],
                    None,
                )
                .await
            })
        };
        wait_until(CHANGE_TIMEOUT, "node 9 is a learner", async || {
            let status = cluster.client(asked).status().await.ok()?;
            status
                .members
                .iter()
                .any(|m| m.id == NodeId(9))
                .then_some(())
        })
        .await?;
        cluster.start_joining(NodeId(5)).await?;
        let addr5 = cluster.node(NodeId(5)).addr();
        let refused = cluster
            .api()
            .request(
                Method::POST,
                &format!("{asked_url}/v1/admin/members"),
                Some((
                    "application/json",
                    serde_json::to_vec(&serde_json::json!({"id": 5, "addr": addr5}))?,
                )),
                &[("authorization", "Bearer e2e-admin-token")],
                None,
            )
            .await?;
        ensure!(
            refused.status == StatusCode::CONFLICT
                && refused.error()?.error == "change_in_progress",
            "a second change while one is under way: {} {}",
            refused.status,
            refused.text()
        );
        cluster.client(asked).remove_member(NodeId(9)).await?;
        let stuck = stuck.await.context("the stuck add")??;
        ensure!(
            stuck.status == StatusCode::GATEWAY_TIMEOUT,
            "an add that never completes ends in 504: {} {}",
            stuck.status,
            stuck.text()
        );

        cluster
            .client(asked)
            .add_member(NodeId(5), &addr5, MemberRole::Voter)
            .await?;
        let five: Vec<NodeId> = (1..=5).map(NodeId).collect();
        wait_members(&cluster, &five, &five).await?;
        let grown = writers.acked();
        writers.wait_for(grown, 20, WRITE_TIMEOUT).await?;

        // Remove the leader: it leads until the change commits, then steps down.
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let removed = cluster.client(leader).remove_member(leader).await?;
        ensure!(
            !removed.members.iter().any(|m| m.id == leader),
            "the leader is gone from the configuration: {removed:?}"
        );
        let after_leader: Vec<NodeId> = five.iter().copied().filter(|&id| id != leader).collect();
        let new_leader = cluster
            .wait_for_leader_among(&after_leader, LEADER_TIMEOUT)
            .await?;
        let stepped_down = cluster.client(leader).status().await?;
        ensure!(
            stepped_down.role != Role::Leader,
            "a removed leader steps down: {stepped_down:?}"
        );
        let shrunk = writers.acked();
        writers.wait_for(shrunk, 20, WRITE_TIMEOUT).await?;

        // Remove a follower too.
        let follower = *after_leader
            .iter()
            .find(|&&id| id != new_leader)
            .context("a follower")?;
        cluster.client(new_leader).remove_member(follower).await?;
        let remaining: Vec<NodeId> = after_leader
            .iter()
            .copied()
            .filter(|&id| id != follower)
            .collect();
        wait_members(&cluster, &remaining, &remaining).await?;
        let shrunk = writers.acked();
        writers.wait_for(shrunk, 20, WRITE_TIMEOUT).await?;
        let acked = writers.stop().await?;
        check_nothing_lost(&cluster, &remaining, &acked).await?;

        // The removed leader comes back (its log says it is not a member): the cluster keeps its
        // leader and term, and the returning node never campaigns.
        let before = cluster.client(remaining[0]).status().await?;
        cluster.kill(leader)?;
        cluster.restart(leader).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let statuses = cluster.statuses(&remaining).await;
        for (id, status) in &statuses {
            ensure!(
                status.term == before.term && status.leader_id == before.leader_id,
                "node {id} was disturbed by the removed node's return: term {} leader {:?}, \
                 before term {} leader {:?}",
                status.term,
                status.leader_id,
                before.term,
                before.leader_id
            );
        }
        let returned = cluster.client(leader).status().await?;
        ensure!(
            returned.role == Role::Follower && !returned.members.iter().any(|m| m.id == leader),
            "the removed node restarts outside the configuration: {returned:?}"
        );
        Ok(())
    }
    .await;
    cluster.finish(result);
}

/// A node added once the log is compacted past its start can only be rebuilt by InstallSnapshot, which
/// it must take from a leader its empty configuration does not list yet; then it is promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_after_compaction_is_rebuilt_from_a_snapshot_and_promoted() {
    let options = Options {
        extra_args: vec!["--snapshot-threshold".into(), "50".into()],
        ..Options::default()
    };
    let mut cluster = Cluster::start(3, options).await.expect("start 3 nodes");
    let result = async {
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let writers = Writers::start(
            &RetryingClient::new(&cluster),
            4,
            "compacted",
            WRITE_TIMEOUT,
        );
        wait_until(WRITE_TIMEOUT, "the leader compacted its log", async || {
            let status = cluster.client(leader).status().await.ok()?;
            (status.first_log_index.0 > 100).then_some(())
        })
        .await?;
        cluster.start_joining(NodeId(4)).await?;
        add_voter(&cluster, leader, NodeId(4)).await?;
        let rebuilt = cluster.client(NodeId(4)).status().await?;
        ensure!(
            rebuilt.snapshot_index.0 > 0,
            "node 4 started from a snapshot: {rebuilt:?}"
        );
        let n = writers.acked();
        writers.wait_for(n, 20, WRITE_TIMEOUT).await?;
        let acked = writers.stop().await?;
        let four: Vec<NodeId> = (1..=4).map(NodeId).collect();
        wait_members(&cluster, &four, &four).await?;
        check_nothing_lost(&cluster, &four, &acked).await?;
        Ok(())
    }
    .await;
    cluster.finish(result);
}

/// Kill, partition and pause mixed with adds and removals: nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_mixed_with_membership_changes_lose_nothing() {
    let mut cluster = Cluster::start(3, Options::default())
        .await
        .expect("start 3 nodes");
    let result = async {
        cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        cluster.start_joining(NodeId(4)).await?;
        let writers = Writers::start(&RetryingClient::new(&cluster), 3, "mixed", WRITE_TIMEOUT);
        writers.wait_for(0, 10, WRITE_TIMEOUT).await?;

        // Add 4 while a follower is down.
        let first: Vec<NodeId> = (1..=3).map(NodeId).collect();
        let leader = cluster
            .wait_for_leader_among(&first, LEADER_TIMEOUT)
            .await?;
        let down = *[NodeId(1), NodeId(2), NodeId(3)]
            .iter()
            .find(|&&id| id != leader)
            .context("a follower")?;
        cluster.kill(down)?;
        let addr4 = cluster.node(NodeId(4)).addr();
        let up: Vec<NodeId> = first.iter().copied().filter(|&id| id != down).collect();
        change_with_retries(&cluster, &up, Change::Add(NodeId(4), addr4)).await?;
        cluster.restart(down).await?;
        let n = writers.acked();
        writers.wait_for(n, 10, WRITE_TIMEOUT).await?;

        // Cut the leader off from everyone, then heal: a new leader is elected among four voters.
        let members: Vec<NodeId> = (1..=4).map(NodeId).collect();
        let leader = cluster
            .wait_for_leader_among(&members, LEADER_TIMEOUT)
            .await?;
        let others: Vec<NodeId> = members.iter().copied().filter(|&id| id != leader).collect();
        cluster.client(leader).partition(&others).await?;
        for &id in &others {
            cluster.client(id).partition(&[leader]).await?;
        }
        cluster
            .wait_for_leader_among(&others, LEADER_TIMEOUT)
            .await?;
        for &id in &members {
            cluster.client(id).heal().await?;
        }
        let n = writers.acked();
        writers.wait_for(n, 10, WRITE_TIMEOUT).await?;

        // Remove that old leader while another node is paused, then add 5.
        let current = cluster
            .wait_for_leader_among(&others, LEADER_TIMEOUT)
            .await?;
        let paused = *others
            .iter()
            .find(|&&id| id != current)
            .context("a node to pause")?;
        cluster.pause(paused)?;
        let awake: Vec<NodeId> = members.iter().copied().filter(|&id| id != paused).collect();
        change_with_retries(&cluster, &awake, Change::Remove(leader)).await?;
        cluster.resume(paused)?;
        cluster.start_joining(NodeId(5)).await?;
        let addr5 = cluster.node(NodeId(5)).addr();
        let three: Vec<NodeId> = others.clone();
        change_with_retries(&cluster, &three, Change::Add(NodeId(5), addr5)).await?;
        let n = writers.acked();
        writers.wait_for(n, 10, WRITE_TIMEOUT).await?;
        let acked = writers.stop().await?;
        let remaining: Vec<NodeId> = (1..=5).map(NodeId).filter(|&id| id != leader).collect();
        wait_members(&cluster, &remaining, &remaining).await?;
        check_nothing_lost(&cluster, &remaining, &acked).await?;
        Ok(())
    }
    .await;
    cluster.finish(result);
}

/// The `membership_changed` event (replayed from node `id`'s recent history) announcing the
/// configuration at `config_index` as committed.
async fn membership_event(
    cluster: &Cluster,
    id: NodeId,
    config_index: u64,
) -> Result<serde_json::Value> {
    let url = format!("{}/v1/events?history=10000", cluster.url(id));
    let read = async {
        let mut stream = reqwest::Client::new().get(&url).send().await?;
        let mut text = String::new();
        while let Some(chunk) = stream.chunk().await? {
            text.push_str(&String::from_utf8_lossy(&chunk));
            for line in text.lines() {
                let Some(json) = line.strip_prefix("data:") else {
                    continue;
                };
                let Ok(event) = serde_json::from_str::<serde_json::Value>(json.trim()) else {
                    continue;
                };
                if event["kind"] == "membership_changed"
                    && event["config_index"] == config_index
                    && event["committed"] == true
                {
                    return Ok(event);
                }
            }
        }
        bail!("the event stream ended")
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .context("no committed membership_changed event within 10 s")?
}

enum Change {
    Add(NodeId, String),
    Remove(NodeId),
}

/// Sends a change to whoever leads, again while the answer is "no leader" or "timeout" (leadership
/// moved under the change); a retry of a change already in force is answered at once.
async fn change_with_retries(cluster: &Cluster, among: &[NodeId], change: Change) -> Result<()> {
    let mut last = None;
    for _ in 0..5 {
        let leader = cluster.wait_for_leader_among(among, LEADER_TIMEOUT).await?;
        let client = cluster.client(leader);
        let outcome = match &change {
            Change::Add(id, addr) => client
                .add_member(*id, addr, MemberRole::Voter)
                .await
                .map(drop),
            Change::Remove(id) => client.remove_member(*id).await.map(drop),
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(error) => {
                let text = format!("{error:#}");
                if !(text.contains("503") || text.contains("504") || text.contains("409")) {
                    return Err(error);
                }
                last = Some(error);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    match last {
        Some(error) => Err(error.context("the change did not go through in 5 attempts")),
        None => bail!("no attempt made"),
    }
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Bad membership requests get clear errors, and a 1-node cluster grows to two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_requests_are_checked_and_a_single_node_grows() {
    let mut cluster = Cluster::start(1, Options::default())
        .await
        .expect("start 1 node");
    let result = async {
        cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let url = cluster.url(NodeId(1));
        let own_addr = cluster.node(NodeId(1)).addr();
        let admin = [("authorization", "Bearer e2e-admin-token")];
        let ask =
            async |method: Method, path: &str, body: Option<serde_json::Value>, auth: bool| {
                let body = body.map(|b| ("application/json", serde_json::to_vec(&b).unwrap()));
                let headers: &[(&str, &str)] = if auth { &admin } else { &[] };
                cluster
                    .api()
                    .request(method, &format!("{url}{path}"), body, headers, None)
                    .await
            };
        let cases = [
            (
                Method::POST,
                "/v1/admin/members",
                Some(serde_json::json!({"id": 2, "addr": "no port"})),
                true,
                StatusCode::BAD_REQUEST,
                "bad_configuration",
            ),
            (
                Method::POST,
                "/v1/admin/members",
                Some(serde_json::json!({"id": 2, "addr": "http://127.0.0.1:7002"})),
                true,
                StatusCode::BAD_REQUEST,
                "bad_configuration",
            ),
            (
                Method::POST,
                "/v1/admin/members",
                Some(serde_json::json!({"id": 0, "addr": "a:1"})),
                true,
                StatusCode::BAD_REQUEST,
                "bad_configuration",
            ),
            (
                Method::POST,
                "/v1/admin/members",
                Some(serde_json::json!({"id": 2, "addr": "a:1", "role": "boss"})),
                true,
                StatusCode::BAD_REQUEST,
                "bad_request",
            ),
            (
                Method::POST,
                "/v1/admin/members",
                Some(serde_json::json!({"id": 1, "addr": "elsewhere:1"})),
                true,
                StatusCode::CONFLICT,
                "member_exists",
            ),
            (
                Method::POST,
                "/v1/admin/members",
                Some(serde_json::json!({"id": 2, "addr": "a:1"})),
                false,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
            (
                Method::DELETE,
                "/v1/admin/members/abc",
                None,
                true,
                StatusCode::BAD_REQUEST,
                "bad_request",
            ),
            (
                Method::DELETE,
                "/v1/admin/members/7",
                None,
                true,
                StatusCode::NOT_FOUND,
                "unknown_member",
            ),
            (
                Method::DELETE,
                "/v1/admin/members/1",
                None,
                true,
                StatusCode::CONFLICT,
                "last_voter",
            ),
            (
                Method::PUT,
                "/v1/admin/members",
                None,
                true,
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            ),
        ];
        for (method, path, body, auth, status, code) in cases {
            let shown = format!("{method} {path} {body:?}");
            let reply = ask(method, path, body, auth).await?;
            ensure!(
                reply.status == status && reply.error()?.error == code,
                "{shown}: expected {status} {code}, got {} {}",
                reply.status,
                reply.text()
            );
        }
        // The same member at the same address again changes nothing and is answered at once.
        let again = ask(
            Method::POST,
            "/v1/admin/members",
            Some(serde_json::json!({"id": 1, "addr": own_addr})),
            true,
        )
        .await?;
        ensure!(
            again.status == StatusCode::OK,
            "a retried add: {}",
            again.text()
        );

        // A single node adds a second: the lone voter commits the learner, then the promotion.
        cluster.start_joining(NodeId(2)).await?;
        let addr2 = cluster.node(NodeId(2)).addr();
        let grown = cluster
            .client(NodeId(1))
            .add_member(NodeId(2), &addr2, MemberRole::Voter)
            .await?;
        ensure!(grown.members.len() == 2, "{grown:?}");
        let both = [NodeId(1), NodeId(2)];
        wait_members(&cluster, &both, &both).await?;
        let mut client = RetryingClient::new(&cluster);
        let ack = client
            .submit_acked("two now".into(), "two-1".into(), WRITE_TIMEOUT)
            .await?;
        check_nothing_lost(&cluster, &both, &[ack]).await?;
        Ok(())
    }
    .await;
    cluster.finish(result);
}
