//! Hostile Raft RPCs against a live cluster: each attack that once crashed or bricked nodes (a term no
//! store can hold, a gap after prev_log_index, entries back at index 1 with a higher term), and the
//! families they stand for (wrong receiver, unknown or own sender, huge indexes, a vote with the
//! highest term, TimeoutNow from a non-leader or a stranger, garbage JSON), sent to every node with the
//! cluster token, so that they reach validation. Each must be answered 4xx with a JSON error; then every
//! process is alive, a leader is elected, a write commits, the messages are only the clients' own,
//! and every node restarts from its data.

use anyhow::{bail, ensure, Context as _, Result};
use flotilla_shared::api::{ErrorBody, Status};
use flotilla_shared::rpc::{AppendEntries, Entry, Envelope, Message, Payload, RequestVote};
use flotilla_shared::{LogIndex, NodeId, Term};
use flotilla_tests::{check_acked_exactly_once, wait_until, Ack, Cluster, Options, RetryingClient};
use reqwest::{Method, StatusCode};
use std::time::Duration;

const LEADER_TIMEOUT: Duration = Duration::from_secs(15);
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);
const CLUSTER_TOKEN_HEADER: &str = "x-flotilla-cluster-token";
/// The largest value SQLite stores (i64::MAX): the term that once bricked clusters.
const I64_MAX: u64 = i64::MAX as u64;

/// One attack: where it goes, what it carries, and the error code it must get.
struct Attack {
    name: &'static str,
    route: &'static str,
    body: Vec<u8>,
    status: StatusCode,
    code: &'static str,
}

fn append(
    from: NodeId,
    to: NodeId,
    term: u64,
    prev: (u64, u64),
    entries: &[(u64, u64)],
    leader_commit: u64,
) -> Envelope {
    Envelope {
        msg: 0,
        from,
        to,
        term: Term(term),
        message: Message::AppendEntries(AppendEntries {
            prev_log_index: LogIndex(prev.0),
            prev_log_term: Term(prev.1),
            entries: entries
                .iter()
                .map(|&(index, term)| Entry {
                    index: LogIndex(index),
                    term: Term(term),
                    payload: Payload::Message {
                        text: format!("evil {index}"),
                        request_id: Some(format!("evil-{index}")),
                    },
                })
                .collect(),
            leader_commit: LogIndex(leader_commit),
            read_ctx: 0,
        }),
    }
}

fn vote(from: NodeId, to: NodeId, term: u64, last: (u64, u64)) -> Envelope {
    Envelope {
        msg: 0,
        from,
        to,
        term: Term(term),
        message: Message::RequestVote(RequestVote {
            pre_vote: false,
            last_log_index: LogIndex(last.0),
            last_log_term: Term(last.1),
            leadership_transfer: false,
        }),
    }
}

fn timeout_now(from: NodeId, to: NodeId, term: u64) -> Envelope {
    Envelope {
        msg: 0,
        from,
        to,
        term: Term(term),
        message: Message::TimeoutNow,
    }
}

fn json(envelope: &Envelope) -> Vec<u8> {
    serde_json::to_vec(envelope).expect("an envelope encodes")
}

/// Every attack on `target`, whose status is `status` and whose leader is `leader`.
fn attacks(target: &Status, leader: NodeId, ids: &[NodeId]) -> Vec<Attack> {
    let me = target.id;
    let peer = ids.iter().copied().find(|&id| id != me).expect("a peer");
    // A peer that does not lead: TimeoutNow from it is not the leader's.
    let not_leader = ids
        .iter()
        .copied()
        .find(|&id| id != me && id != leader)
        .expect("a follower peer");
    // The leader speaks for itself everywhere but to itself.
    let sender = if leader != me { leader } else { peer };
    let term = target.term.0;
    let (last, last_term) = (target.last_log_index.0, target.last_log_term.0);
    let bad = |name, route, envelope: Envelope, code| Attack {
        name,
        route,
        body: json(&envelope),
        status: StatusCode::BAD_REQUEST,
        code,
    };
    let garbage = |name, body: &[u8]| Attack {
        name,
        route: "append_entries",
        body: body.to_vec(),
        status: StatusCode::BAD_REQUEST,
        code: "bad_json",
    };
    vec![
        bad(
            "append with term 9223372036854775807",
            "append_entries",
            append(sender, me, I64_MAX, (last, last_term), &[], 0),
            "term_out_of_range",
        ),
        bad(
            "append with term u64::MAX and an entry",
            "append_entries",
            append(peer, me, u64::MAX, (0, 0), &[(1, u64::MAX)], 1),
            "term_out_of_range",
        ),
        bad(
            "append leaving a gap after prev_log_index (7 after 2)",
            "append_entries",
            append(sender, me, term, (2, 1), &[(7, term)], 0),
            "entries_not_contiguous",
        ),
        bad(
            "append leaving a gap after the real last entry",
            "append_entries",
            append(sender, me, term, (last, last_term), &[(last + 5, term)], 0),
            "entries_not_contiguous",
        ),
        bad(
            "entry at index 1 with a higher term after the last entry",
            "append_entries",
            append(sender, me, term + 1, (last, last_term), &[(1, term + 1)], last),
            "entries_not_contiguous",
        ),
        bad(
            "entry at index 1 with a term above the message's",
            "append_entries",
            append(sender, me, term, (0, 0), &[(1, term + 1)], 1),
            "entry_term_above_message",
        ),
        bad(
            "duplicated entries",
            "append_entries",
            append(sender, me, term, (last, last_term), &[(last + 1, term), (last + 1, term)], 0),
            "entries_not_contiguous",
        ),
        bad(
            "append addressed to another node",
            "append_entries",
            append(sender, peer, term, (last, last_term), &[], 0),
            "wrong_node",
        ),
        bad(
            "append from an unknown node",
            "append_entries",
            append(NodeId(200), me, term, (last, last_term), &[], 0),
            "unknown_peer",
        ),
        bad(
            "append from the receiver itself",
            "append_entries",
            append(me, me, term, (last, last_term), &[], 0),
            "from_self",
        ),
        bad(
            "append with prev_log_index u64::MAX",
            "append_entries",
            append(sender, me, term, (u64::MAX, term), &[], 0),
            "index_out_of_range",
        ),
        bad(
            "append with leader_commit past i64::MAX",
            "append_entries",
            append(sender, me, term, (last, last_term), &[], I64_MAX + 1),
            "index_out_of_range",
        ),
        bad(
            "vote request with term 9223372036854775807",
            "request_vote",
            vote(peer, me, I64_MAX, (last, last_term)),
            "term_out_of_range",
        ),
        bad(
            "vote request with term u64::MAX",
            "request_vote",
            vote(peer, me, u64::MAX, (u64::MAX, u64::MAX)),
            "term_out_of_range",
        ),
        bad(
            "vote request with last_log_index u64::MAX",
            "request_vote",
            vote(peer, me, term + 1, (u64::MAX, last_term)),
            "index_out_of_range",
        ),
        bad(
            "vote request whose log is of its own term",
            "request_vote",
            vote(peer, me, term + 1, (last + 1, term + 1)),
            "last_log_inconsistent",
        ),
        bad(
            "timeout_now from a stranger",
            "timeout_now",
            timeout_now(NodeId(77), me, term),
            "unknown_peer",
        ),
        Attack {
            name: "timeout_now from a node that does not lead",
            route: "timeout_now",
            body: json(&timeout_now(not_leader, me, term)),
            status: StatusCode::CONFLICT,
            code: "not_from_leader",
        },
        Attack {
            name: "timeout_now in a term above the receiver's",
            route: "timeout_now",
            body: json(&timeout_now(sender, me, term + 1)),
            status: StatusCode::CONFLICT,
            code: "not_from_leader",
        },
        bad(
            "a vote request sent to the append route",
            "append_entries",
            vote(peer, me, term + 1, (last, last_term)),
            "wrong_route",
        ),
        garbage("garbage JSON", b"{not json at all"),
        garbage("an empty body", b""),
        garbage("a JSON array", b"[1, 2, 3]"),
        garbage(
            "an envelope without a message",
            br#"{"from": 2, "to": 1, "term": 3}"#,
        ),
        garbage(
            "a negative term",
            br#"{"from": 2, "to": 1, "term": -1, "message": {"type": "timeout_now"}}"#,
        ),
        garbage(
            "a term past u64::MAX",
            br#"{"from": 2, "to": 1, "term": 18446744073709551616, "message": {"type": "timeout_now"}}"#,
        ),
    ]
}

/// Whether the process `pid` is there and not a zombie.
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_rpcs_are_refused_and_the_cluster_lives_on() {
    let mut cluster = Cluster::start(3, Options::default())
        .await
        .expect("start 3 nodes");
    let result = async {
        let token = cluster
            .options()
            .cluster_token
            .clone()
            .context("the harness sets a cluster token")?;
        let ids = cluster.ids();
        let mut client = RetryingClient::new(&cluster);
        let mut acked = Vec::new();
        let write = async |client: &mut RetryingClient, n: u64| -> Result<Ack> {
            let request_id = format!("hostile-{n}");
            let text = format!("a client's message {n}");
            client.submit_acked(text, request_id, WRITE_TIMEOUT).await
        };
        cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        for n in 0..3 {
            acked.push(write(&mut client, n).await?);
        }
        let before = acked.iter().map(|a| a.index).max().unwrap_or_default();
        cluster.wait_converged(before, WRITE_TIMEOUT).await?;
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let terms_before = cluster.statuses(&ids).await;
        let highest_term = terms_before
            .values()
            .map(|s| s.term)
            .max()
            .unwrap_or_default();

        let mut refused = 0;
        for &id in &ids {
            let status = cluster.client(id).status().await?;
            for attack in attacks(&status, leader, &ids) {
                let reply = cluster
                    .api()
                    .request(
                        Method::POST,
                        &format!("{}/raft/{}", cluster.url(id), attack.route),
                        Some(("application/json", attack.body.clone())),
                        &[(CLUSTER_TOKEN_HEADER, token.as_str())],
                        Some(Duration::from_secs(5)),
                    )
                    .await
                    .with_context(|| format!("node {id}: {}", attack.name))?;
                let error: ErrorBody = reply.json().with_context(|| {
                    format!(
                        "node {id}: {} got no JSON error ({})",
                        attack.name, reply.status
                    )
                })?;
                ensure!(
                    reply.status == attack.status && error.error == attack.code,
                    "node {id}: {} answered {} {:?}, expected {} {}",
                    attack.name,
                    reply.status,
                    error,
                    attack.status,
                    attack.code
                );
                ensure!(
                    !error.message.is_empty(),
                    "node {id}: {}: no message",
                    attack.name
                );
                refused += 1;
            }
        }
        println!("{refused} hostile RPCs refused, each with a 4xx JSON error");

        // Every process is alive, no term was taken from an attack, and the refusals are counted.
        for &id in &ids {
            let pid = cluster.node(id).pid().context("a running node has a pid")?;
            ensure!(
                process_alive(pid),
                "node {id} (pid {pid}) died under the attacks"
            );
        }
        let after = cluster.statuses(&ids).await;
        ensure!(
            after.len() == ids.len(),
            "not every node answers: {after:?}"
        );
        for (id, status) in &after {
            ensure!(
                status.term.0 <= highest_term.0 + 2,
                "node {id} went from term {highest_term} to {} under the attacks",
                status.term
            );
        }
        let metrics = cluster
            .api()
            .request(
                Method::GET,
                &format!("{}/metrics", cluster.url(leader)),
                None,
                &[],
                None,
            )
            .await?
            .text();
        for reason in [
            "term_out_of_range",
            "entries_not_contiguous",
            "bad_json",
            "not_from_leader",
        ] {
            let line = metrics
                .lines()
                .find(|l| l.starts_with(&format!("flotilla_rejected_total{{reason=\"{reason}\"}}")))
                .with_context(|| format!("no rejection counter for {reason}:\n{metrics}"))?;
            let count: u64 = line.rsplit(' ').next().unwrap_or_default().parse()?;
            ensure!(count >= 1, "{line}");
        }

        // A leader, a committed write, and only the clients' messages on every node.
        cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        acked.push(write(&mut client, 3).await?);
        let last = acked.iter().map(|a| a.index).max().unwrap_or_default();
        cluster.wait_converged(last, WRITE_TIMEOUT).await?;
        let messages = cluster.identical_logs(&ids).await?;
        check_acked_exactly_once(&messages, &acked)?;
        ensure!(
            messages.len() == acked.len(),
            "{} messages for {} client writes: {messages:?}",
            messages.len(),
            acked.len()
        );

        // Nothing poisoned on disk: every node restarts from its data and the cluster commits again.
        for &id in &ids {
            cluster.kill(id)?;
            cluster.restart(id).await?;
            cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        }
        acked.push(write(&mut client, 4).await?);
        let last = acked.iter().map(|a| a.index).max().unwrap_or_default();
        cluster.wait_converged(last, WRITE_TIMEOUT).await?;
        let messages = cluster.identical_logs(&ids).await?;
        check_acked_exactly_once(&messages, &acked)?;
        ensure!(
            messages.len() == acked.len(),
            "{} messages for {} writes",
            messages.len(),
            acked.len()
        );
        let alive = wait_until(Duration::from_secs(2), "every node answers", async || {
            (cluster.statuses(&ids).await.len() == ids.len()).then_some(())
        })
        .await;
        if alive.is_err() {
            bail!("not every node answers after the restarts");
        }
        println!(
            "after restarts: {} messages on every node, all the clients' own",
            messages.len()
        );
        Ok(())
    }
    .await;
    cluster.finish(result);
}
