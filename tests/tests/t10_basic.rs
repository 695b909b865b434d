//! A healthy three-node cluster: election, writes through any node, reads, dedupe, bad input.

use anyhow::{bail, ensure, Context as _, Result};
use flotilla_shared::event::Role;
use flotilla_shared::{LogIndex, NodeId};
use flotilla_tests::{count_by_request_id, wait_until, Cluster, Options, Reply, Submitted};
use reqwest::{Method, StatusCode};
use std::time::{Duration, Instant};

const LEADER_TIMEOUT: Duration = Duration::from_secs(15);

/// The response of a submit that must have committed, with its HTTP status and leader header.
fn committed(
    submitted: Submitted,
    what: &str,
) -> Result<(
    StatusCode,
    flotilla_shared::api::SubmitResponse,
    Option<String>,
)> {
    match submitted {
        Submitted::Committed {
            response,
            leader_header,
            status,
        } => Ok((status, response, leader_header)),
        Submitted::Refused { status, error } => bail!("{what}: refused with {status}: {error:?}"),
    }
}

fn is_error_body(reply: &Reply) -> Result<()> {
    let body = reply.error().with_context(|| {
        format!(
            "a {} answer must carry {{\"error\",\"message\"}}",
            reply.status
        )
    })?;
    ensure!(
        !body.error.is_empty() && !body.message.is_empty(),
        "empty error fields in {}",
        reply.text()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_one_leader_and_serve_reads_and_writes() {
    let spawned = Instant::now();
    let cluster = Cluster::start(3, Options::default())
        .await
        .expect("start 3 nodes");
    let answering = spawned.elapsed();
    let result = async {
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        println!(
            "[measure] election after start: {} ms from spawning 3 nodes ({} ms after all answered); \
             election timeout {:?} ms",
            spawned.elapsed().as_millis(),
            (spawned.elapsed() - answering).as_millis(),
            cluster.options().election_timeout_ms
        );
        let statuses = cluster.statuses(&cluster.ids()).await;
        let leaders: Vec<NodeId> = statuses
            .values()
            .filter(|s| s.role == Role::Leader)
            .map(|s| s.id)
            .collect();
        ensure!(leaders == vec![leader], "exactly one leader, got {leaders:?}");
        let term = statuses[&leader].term;

        // Through the leader.
        let (status, first, _) = committed(
            cluster
                .client(leader)
                .submit("hello through the leader", Some("basic-leader"))
                .await?,
            "submit through the leader",
        )?;
        ensure!(status == StatusCode::CREATED, "a new entry answers 201, got {status}");
        ensure!(first.leader_id == Some(leader), "leader_id {:?}", first.leader_id);
        ensure!(first.term == term && !first.duplicate, "{first:?}");

        // Through a follower: forwarded, with the leader named in the header.
        let follower = *cluster.ids().iter().find(|&&id| id != leader).expect("a follower");
        let (status, second, header) = committed(
            cluster
                .client(follower)
                .submit("hello through a follower", Some("basic-follower"))
                .await?,
            "submit through a follower",
        )?;
        ensure!(status == StatusCode::CREATED, "forwarded submit answers 201, got {status}");
        let header = header.context("a forwarded submit carries X-Raft-Leader")?;
        let expected = format!("{} {}", leader, cluster.url(leader));
        ensure!(header == expected, "X-Raft-Leader is {header:?}, expected {expected:?}");
        ensure!(second.index > first.index, "{second:?} after {first:?}");

        // Linearizable reads on every node see both writes, in order.
        for id in cluster.ids() {
            let messages = cluster.all_messages(id, false).await?;
            let texts: Vec<(LogIndex, &str)> =
                messages.iter().map(|m| (m.index, m.text.as_str())).collect();
            ensure!(
                texts
                    == vec![
                        (first.index, "hello through the leader"),
                        (second.index, "hello through a follower")
                    ],
                "linearizable read on node {id}: {texts:?}"
            );
        }
        // Stale reads agree once every node has applied the second write.
        cluster
            .wait_converged(second.index, Duration::from_secs(10))
            .await?;
        let logs = cluster.identical_logs(&cluster.ids()).await?;
        ensure!(logs.len() == 2, "stale reads: {logs:?}");
        ensure!(
            logs[1].request_id.as_deref() == Some("basic-follower"),
            "{logs:?}"
        );
        Ok(())
    }
    .await;
    cluster.finish(result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_and_bad_input_get_clear_answers() {
    let cluster = Cluster::start(3, Options::default())
        .await
        .expect("start 3 nodes");
    let result = async {
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let follower = *cluster
            .ids()
            .iter()
            .find(|&&id| id != leader)
            .expect("a follower");
        let client = cluster.client(leader);

        // The same request_id twice: one entry; the second answer is 200 duplicate with the same index.
        let (status, original, _) = committed(
            client.submit("only once", Some("dup-1")).await?,
            "first submit",
        )?;
        ensure!(status == StatusCode::CREATED, "{status}");
        let (status, again, _) = committed(
            client.submit("only once", Some("dup-1")).await?,
            "second submit",
        )?;
        ensure!(
            status == StatusCode::OK,
            "a duplicate answers 200, got {status}"
        );
        ensure!(again.duplicate, "duplicate:true expected: {again:?}");
        ensure!(
            (again.index, again.term) == (original.index, original.term),
            "{again:?} vs {original:?}"
        );
        // Also when it arrives through a follower.
        let (status, via_follower, _) = committed(
            cluster
                .client(follower)
                .submit("only once", Some("dup-1"))
                .await?,
            "duplicate through a follower",
        )?;
        ensure!(
            status == StatusCode::OK
                && via_follower.duplicate
                && via_follower.index == original.index,
            "{status} {via_follower:?}"
        );

        // Bad input: the right 4xx with a JSON error body.
        let cases: Vec<(&str, Vec<u8>, StatusCode)> = vec![
            (
                "malformed JSON",
                br#"{"text": "cut off"#.to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "not JSON at all",
                b"hello".to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "empty text",
                br#"{"text": ""}"#.to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "text is a number",
                br#"{"text": 5}"#.to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "request_id is a number",
                br#"{"text": "a", "request_id": 7}"#.to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "no text field",
                br#"{"request_id": "x"}"#.to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "body over 64 KiB",
                serde_json::to_vec(&serde_json::json!({ "text": "x".repeat(70 * 1024) }))?,
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
        ];
        for (what, body, expected) in cases {
            for id in [leader, follower] {
                let reply = cluster
                    .client(id)
                    .post_raw("/v1/messages", body.clone())
                    .await?;
                ensure!(
                    reply.status == expected,
                    "{what} on node {id}: expected {expected}, got {} {}",
                    reply.status,
                    reply.text()
                );
                is_error_body(&reply).with_context(|| what.to_string())?;
            }
        }
        let bad_query = cluster
            .api()
            .request(
                Method::GET,
                &format!("{}/v1/messages?from=abc", cluster.url(leader)),
                None,
                &[],
                None,
            )
            .await?;
        ensure!(
            bad_query.status.is_client_error(),
            "from=abc: {} {}",
            bad_query.status,
            bad_query.text()
        );
        is_error_body(&bad_query)?;

        // Admin calls without a token or with a wrong one.
        let partition_url = format!("{}/v1/admin/partition", cluster.url(leader));
        let body = br#"{"isolate_from":[2]}"#.to_vec();
        let json = "application/json";
        for (what, headers, expected) in [
            ("no token", vec![], StatusCode::UNAUTHORIZED),
            (
                "wrong token",
                vec![("authorization", "Bearer not-the-token")],
                StatusCode::FORBIDDEN,
            ),
        ] {
            for method in [Method::POST, Method::DELETE] {
                let payload = (method == Method::POST).then(|| (json, body.clone()));
                let reply = cluster
                    .api()
                    .request(method.clone(), &partition_url, payload, &headers, None)
                    .await?;
                ensure!(
                    reply.status == expected,
                    "admin {method} with {what}: expected {expected}, got {} {}",
                    reply.status,
                    reply.text()
                );
                is_error_body(&reply)?;
            }
        }
        let status = cluster.client(leader).status().await?;
        ensure!(
            status.isolated_from.is_empty(),
            "a refused admin call changed nothing: {:?}",
            status.isolated_from
        );

        // The node keeps serving after all that.
        let (status, after, _) = committed(
            client
                .submit("still serving", Some("after-bad-input"))
                .await?,
            "submit after bad input",
        )?;
        ensure!(
            status == StatusCode::CREATED && after.index > original.index,
            "{after:?}"
        );
        let last = cluster
            .wait_converged(after.index, Duration::from_secs(10))
            .await?;
        ensure!(last >= after.index);
        let messages = cluster.identical_logs(&cluster.ids()).await?;
        let counts = count_by_request_id(&messages);
        ensure!(
            counts.get("dup-1") == Some(&1),
            "dup-1 appears once: {counts:?}"
        );
        ensure!(
            messages.len() == 2,
            "only two messages were accepted: {messages:?}"
        );
        // Every node has applied the entry, so a duplicate is recognised anywhere.
        wait_until(
            Duration::from_secs(5),
            "dedupe answered by every node",
            async || {
                for id in cluster.ids() {
                    match cluster.client(id).submit("only once", Some("dup-1")).await {
                        Ok(Submitted::Committed { response, .. }) if response.duplicate => {}
                        _ => return None,
                    }
                }
                Some(())
            },
        )
        .await?;
        Ok(())
    }
    .await;
    cluster.finish(result);
}

/// `201` means committed and applied (contract): the node that answered already shows the message in
/// its own state machine (a stale read) and in `last_applied`. Concurrent writers make the leader's
/// batches apply some entries while appending others, the case where it answers before the new
/// entries' fsync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_201_means_applied_on_the_node_that_answered() {
    let cluster = Cluster::start(3, Options::default())
        .await
        .expect("start 3 nodes");
    let result = async {
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let writers = (0..16).map(|writer| {
            let cluster = &cluster;
            async move {
                for n in 0..15 {
                    let id = format!("applied-{writer}-{n}");
                    let client = cluster.client(leader);
                    let (_, response, _) =
                        committed(client.submit(&id, Some(&id)).await?, "concurrent submit")?;
                    let page = client.messages(response.index.0, 1, true).await?;
                    ensure!(
                        page.entries.first().map(|m| (m.index, m.text.as_str()))
                            == Some((response.index, id.as_str())),
                        "answered 201 at {} but its stale read shows {:?}",
                        response.index,
                        page.entries
                    );
                    let applied = client.status().await?.last_applied;
                    ensure!(
                        applied >= response.index,
                        "answered 201 at {} but last_applied is {applied}",
                        response.index
                    );
                }
                anyhow::Ok(())
            }
        });
        let results = futures_util::future::join_all(writers).await;
        results.into_iter().collect::<Result<()>>()
    }
    .await;
    cluster.finish(result);
}
