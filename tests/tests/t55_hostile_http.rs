//! Attacks on the HTTP layer of a live cluster: web pages reaching for a node, peers without the
//! cluster token sending huge bodies, connections that dribble or pile up, too many event streams, a
//! leader that cannot commit, and a leader stopping with writes pending. After each, every node is
//! alive, there is a leader, a write commits, and the log holds only what clients submitted.

use anyhow::{bail, ensure, Context as _, Result};
use flotilla_shared::{LogIndex, NodeId};
use flotilla_tests::{
    count_by_request_id, node_binary, wait_until, Cluster, Options, Reply, RetryingClient,
    Submitted,
};
use reqwest::{Method, StatusCode};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
const EVIL: &str = "http://evil.example";

fn error_code(reply: &Reply) -> String {
    reply.error().map(|body| body.error).unwrap_or_default()
}

/// `POST` with any content type and extra headers.
async fn post(
    cluster: &Cluster,
    id: NodeId,
    path: &str,
    content_type: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Result<Reply> {
    cluster
        .api()
        .request(
            Method::POST,
            &format!("{}{path}", cluster.url(id)),
            Some((content_type, body.as_bytes().to_vec())),
            headers,
            Some(Duration::from_secs(15)),
        )
        .await
}

/// Sends `head` (a request without its body) on a new connection and reads the answer, which must
/// come while the body is still unsent.
async fn answer_to_head(addr: &str, head: &str) -> Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(head.as_bytes()).await?;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buffer = [0u8; 4096];
        loop {
            let n = stream.read(&mut buffer).await?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&answer);
            if text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                break;
            }
        }
        std::io::Result::Ok(())
    })
    .await;
    ensure!(
        read.is_ok(),
        "no answer within 5 s to a request whose body was never sent: the node waited for it"
    );
    read.unwrap_or(Ok(()))?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

fn raft_head(addr: &str, token: Option<&str>, length: u64) -> String {
    let token = token
        .map(|token| format!("x-flotilla-cluster-token: {token}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /raft/append_entries HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         {token}content-length: {length}\r\n\r\n"
    )
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .context("no VmRSS in /proc status")
}

/// Every node alive, one leader, and a write commits.
async fn cluster_still_serves(cluster: &mut Cluster, label: &str) -> Result<()> {
    for id in cluster.ids() {
        ensure!(
            cluster.node(id).pid().is_some(),
            "node {id} exited after {label}"
        );
        // A pooled connection may meet a node's read deadline on the way: ask again then.
        wait_until(
            Duration::from_secs(5),
            &format!("node {id} answers after {label}"),
            async || cluster.client(id).status().await.ok(),
        )
        .await?;
    }
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    RetryingClient::new(cluster)
        .submit(
            &format!("after {label}"),
            &format!("after-{label}"),
            LEADER_TIMEOUT,
        )
        .await
        .with_context(|| format!("a write after {label}"))?;
    Ok(())
}

fn other_than(cluster: &Cluster, id: NodeId) -> Vec<NodeId> {
    cluster.ids().into_iter().filter(|&o| o != id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_pages_and_peers_without_the_token_are_refused_before_anything_is_read() {
    let options = Options {
        advertise_host: Some("localhost".into()),
        ..Options::default()
    };
    let mut cluster = Cluster::start(3, options).await.expect("start 3 nodes");
    let result = async {
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let follower = other_than(&cluster, leader)[0];

        // Cross-site requests of every content type, to the leader and to a follower, are refused
        // whatever their route, even carrying valid credentials.
        for id in [leader, follower] {
            for content_type in ["text/plain", "application/json", "application/x-www-form-urlencoded"] {
                let body = format!(r#"{{"text":"evil {id} {content_type}"}}"#);
                let reply =
                    post(&cluster, id, "/v1/messages", content_type, &body, &[("origin", EVIL)]).await?;
                ensure!(
                    reply.status == StatusCode::FORBIDDEN && error_code(&reply) == "cross_origin",
                    "cross-site {content_type} POST to node {id}: {} {}",
                    reply.status,
                    reply.text()
                );
            }
            let admin = post(
                &cluster,
                id,
                "/v1/admin/partition",
                "text/plain",
                r#"{"isolate_from":[]}"#,
                &[("origin", EVIL), ("authorization", "Bearer e2e-admin-token")],
            )
            .await?;
            let raft = post(
                &cluster,
                id,
                "/raft/request_vote",
                "text/plain",
                "{}",
                &[("origin", EVIL), ("x-flotilla-cluster-token", "e2e-cluster-token")],
            )
            .await?;
            let read = cluster
                .api()
                .request(
                    Method::GET,
                    &format!("{}/v1/messages", cluster.url(id)),
                    None,
                    &[("origin", "null")],
                    None,
                )
                .await?;
            for (what, reply) in [("admin", admin), ("raft", raft), ("read", read)] {
                ensure!(
                    reply.status == StatusCode::FORBIDDEN && error_code(&reply) == "cross_origin",
                    "cross-site {what} request to node {id}: {} {}",
                    reply.status,
                    reply.text()
                );
            }
        }

        // The node's own origins and requests without one still work.
        let leader_port = cluster.node(leader).port;
        for (n, origin) in [
            Some(format!("http://127.0.0.1:{leader_port}")),
            Some(format!("http://localhost:{leader_port}")),
            None,
        ]
        .into_iter()
        .enumerate()
        {
            let headers: Vec<(&str, &str)> =
                origin.as_deref().map(|o| vec![("origin", o)]).unwrap_or_default();
            let body = format!(r#"{{"text":"own origin {n}","request_id":"own-{n}"}}"#);
            let reply =
                post(&cluster, leader, "/v1/messages", "application/json", &body, &headers).await?;
            ensure!(
                reply.status == StatusCode::CREATED,
                "a request from {origin:?}: {} {}",
                reply.status,
                reply.text()
            );
        }

        // A follower's forwarded answer names the leader by its advertise URL, not its peer address.
        let forwarded = cluster
            .client(follower)
            .submit("through a follower", Some("via-follower"))
            .await?;
        let Submitted::Committed { leader_header, .. } = forwarded else {
            bail!("a submit through follower {follower} failed: {forwarded:?}");
        };
        let expected = format!("{leader} http://localhost:{leader_port}");
        ensure!(
            leader_header.as_deref() == Some(expected.as_str()),
            "X-Raft-Leader on a forwarded answer: {leader_header:?}, expected {expected:?}"
        );

        // Paging is the window [from, from+limit): from=0&limit=2 covers indexes 0 and 1 only.
        let page = cluster.client(leader).messages(0, 2, false).await?;
        ensure!(
            page.entries.iter().all(|entry| entry.index.0 < 2),
            "from=0&limit=2 listed {:?}",
            page.entries.iter().map(|e| e.index.0).collect::<Vec<_>>()
        );

        // Raft requests without the token, or with a wrong one, are answered before their body is
        // sent; so is a body declared over the limit even with the token.
        let addr = cluster.node(follower).addr();
        for (token, status) in [
            (None, "401"),
            (Some("wrong-token"), "403"),
            (Some("e2e-cluster-token-but-longer"), "403"),
        ] {
            let answer = answer_to_head(&addr, &raft_head(&addr, token, 60 << 20)).await?;
            // The answer ends the connection: the unread body must not be taken for a request.
            ensure!(
                answer.starts_with(&format!("HTTP/1.1 {status}"))
                    && answer.contains("\"error\"")
                    && answer.to_ascii_lowercase().contains("connection: close"),
                "a 60 MiB Raft body with token {token:?}: {answer}"
            );
        }
        let answer =
            answer_to_head(&addr, &raft_head(&addr, Some("e2e-cluster-token"), 100 << 20)).await?;
        ensure!(
            answer.starts_with("HTTP/1.1 413") && answer.contains("payload_too_large"),
            "a 100 MiB Raft body with the token: {answer}"
        );

        // Sending the bodies anyway: the node does not take them in.
        let pid = cluster.node(follower).pid().context("follower pid")?;
        let before = rss_kib(pid)?;
        let mut senders = Vec::new();
        for _ in 0..16 {
            let addr = addr.clone();
            senders.push(tokio::spawn(async move {
                let mut stream = TcpStream::connect(&addr).await?;
                stream
                    .write_all(raft_head(&addr, Some("wrong-token"), 64 << 20).as_bytes())
                    .await?;
                let chunk = vec![b'x'; 1 << 20];
                let mut sent = 0usize;
                while sent < 64 << 20 {
                    match tokio::time::timeout(Duration::from_secs(2), stream.write_all(&chunk)).await
                    {
                        Ok(Ok(())) => sent += chunk.len(),
                        _ => break,
                    }
                }
                anyhow::Ok(sent)
            }));
        }
        let mut sent = 0;
        for sender in senders {
            sent += sender.await??;
        }
        let after = rss_kib(pid)?;
        println!(
            "[measure] 16 unauthenticated 64 MiB bodies: {} MiB got onto the wire, follower RSS {} -> {} MiB",
            sent >> 20,
            before / 1024,
            after / 1024
        );
        ensure!(
            after < before + 48 * 1024,
            "the follower's memory grew from {before} KiB to {after} KiB"
        );

        cluster.wait_converged(LogIndex(1), LEADER_TIMEOUT).await?;
        let messages = cluster.identical_logs(&cluster.ids()).await?;
        ensure!(
            messages.iter().all(|m| !m.text.contains("evil")),
            "a cross-site write was stored: {messages:?}"
        );
        cluster_still_serves(&mut cluster, "origin-and-token-attacks").await
    }
    .await;
    cluster.finish(result);
}

/// Opens a connection that sends a request's first line and then one header byte every 200 ms, and
/// returns how long the node kept it open (`None`: still open after `give_up`).
async fn slowloris(addr: String, give_up: Duration) -> Result<Option<Duration>> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(&addr).await?;
    stream
        .write_all(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await?;
    let mut buffer = [0u8; 1024];
    while started.elapsed() < give_up {
        if stream.write_all(b"a").await.is_err() {
            return Ok(Some(started.elapsed()));
        }
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(Some(started.elapsed())),
            // An answer (the node gave up on the request) ends it too.
            Ok(Ok(_)) => return Ok(Some(started.elapsed())),
            Err(_) => {}
        }
    }
    Ok(None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_surplus_connections_and_streams_are_cut_off_and_clients_recover() {
    let options = Options {
        extra_args: [
            "--read-timeout-ms",
            "1000",
            "--max-connections",
            "48",
            "--max-event-streams",
            "2",
        ]
        .map(String::from)
        .to_vec(),
        ..Options::default()
    };
    let mut cluster = Cluster::start(3, options).await.expect("start 3 nodes");
    let result = async {
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let addr = cluster.node(leader).addr();

        // Slowloris: headers dribbled forever are cut off after the read deadline, and clients
        // meanwhile are served.
        let give_up = Duration::from_secs(10);
        let slow: Vec<_> = (0..20)
            .map(|_| tokio::spawn(slowloris(addr.clone(), give_up)))
            .collect();
        let mut client = RetryingClient::new(&cluster);
        for n in 0..10 {
            client
                .submit(
                    &format!("beside slowloris {n}"),
                    &format!("slow-{n}"),
                    LEADER_TIMEOUT,
                )
                .await?;
        }
        for connection in slow {
            let kept = connection.await??;
            let Some(kept) = kept else {
                bail!("a connection dribbling its headers was still open after {give_up:?}");
            };
            ensure!(
                kept >= Duration::from_millis(900),
                "a slow connection was closed after {kept:?}, before the 1 s deadline"
            );
        }

        // A body that stops halfway is answered 408 after the same deadline.
        let head = format!(
            "POST /v1/messages HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             content-length: 100\r\n\r\n{{\"text\":\""
        );
        let answer = answer_to_head(&addr, &head).await?;
        ensure!(
            answer.starts_with("HTTP/1.1 408") && answer.contains("request_timeout"),
            "a body that never finished: {answer}"
        );

        // Connections beyond the cap are answered 503 at once; the ones within it are served.
        let mut held = Vec::new();
        for _ in 0..60 {
            held.push(TcpStream::connect(&addr).await?);
        }
        // Refused ones were answered at once; the others stay silent (until the read deadline).
        let first_words = held.iter_mut().map(|stream| async move {
            let mut buffer = [0u8; 512];
            match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buffer)).await {
                Ok(Ok(n)) => String::from_utf8_lossy(&buffer[..n]).into_owned(),
                _ => String::new(),
            }
        });
        let mut refused = 0;
        for text in futures_util::future::join_all(first_words).await {
            if text.is_empty() {
                continue;
            }
            ensure!(
                text.starts_with("HTTP/1.1 503") && text.contains("too_many_connections"),
                "an unexpected answer to an idle connection: {text}"
            );
            refused += 1;
        }
        ensure!(
            refused >= 60 - 48,
            "only {refused} of 60 connections were refused with a cap of 48"
        );
        drop(held);
        wait_until(
            LEADER_TIMEOUT,
            "a write after the connection flood",
            async || {
                client
                    .submit("after the flood", "after-flood", Duration::from_secs(2))
                    .await
                    .ok()
            },
        )
        .await?;

        // Event streams: two at once; a third is answered 503 JSON until one closes.
        let events_url = format!("{}/v1/events", cluster.url(leader));
        let http = reqwest::Client::new();
        let opened = Instant::now();
        let first = http.get(&events_url).send().await?;
        let mut second = http.get(&events_url).send().await?;
        ensure!(
            first.status() == StatusCode::OK && second.status() == StatusCode::OK,
            "the first two streams: {} {}",
            first.status(),
            second.status()
        );
        let third = wait_until(
            Duration::from_secs(5),
            "an answer to a third stream",
            async || {
                let api = cluster.api();
                let timeout = Some(Duration::from_secs(5));
                api.request(Method::GET, &events_url, None, &[], timeout)
                    .await
                    .ok()
            },
        )
        .await?;
        ensure!(
            third.status == StatusCode::SERVICE_UNAVAILABLE
                && error_code(&third) == "too_many_streams",
            "a third stream: {} {}",
            third.status,
            third.text()
        );
        drop(first);
        let reopened = wait_until(LEADER_TIMEOUT, "a stream after one closed", async || {
            let answer = http.get(&events_url).send().await.ok()?;
            (answer.status() == StatusCode::OK).then_some(answer)
        })
        .await?;
        // A stream outlives the read deadline: it only ever applies to requests being read.
        while opened.elapsed() < Duration::from_millis(2500) {
            let chunk = tokio::time::timeout(Duration::from_secs(2), second.chunk()).await;
            ensure!(
                matches!(chunk, Ok(Ok(Some(_)))),
                "an event stream ended after {:?}: {chunk:?}",
                opened.elapsed()
            );
        }
        drop((second, reopened));

        cluster_still_serves(&mut cluster, "connection-attacks").await
    }
    .await;
    cluster.finish(result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_leader_refuses_what_it_cannot_hold_and_a_stopping_one_answers_only_what_is_certain(
) {
    let options = Options {
        advertise_host: Some("localhost".into()),
        extra_args: [
            "--max-uncommitted-entries",
            "6",
            "--request-timeout-ms",
            "30000",
        ]
        .map(String::from)
        .to_vec(),
        ..Options::default()
    };
    let mut cluster = Cluster::start(3, options).await.expect("start 3 nodes");
    let result = async {
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let followers = other_than(&cluster, leader);
        let via = followers[0];
        RetryingClient::new(&cluster)
            .submit("before the stall", "before-stall", LEADER_TIMEOUT)
            .await?;

        // Slow elections everywhere, so that nobody takes over while the leader is cut off; then the
        // leader drops all Raft traffic: it can append but never commit.
        for id in cluster.ids() {
            cluster.client(id).set_timing(50, [30_000, 36_000]).await?;
        }
        cluster.client(leader).partition(&followers).await?;

        // Six writes wait on the leader: three sent to it, three forwarded by a follower.
        let mut pending = Vec::new();
        for n in 0..6 {
            let to = if n < 3 { leader } else { via };
            let client = cluster.client(to);
            let (api, url) = (cluster.api().clone(), client.url.clone());
            let request_id = format!("unknown-{n}");
            pending.push(tokio::spawn(async move {
                let body = format!(r#"{{"text":"{request_id}","request_id":"{request_id}"}}"#);
                api.request(
                    Method::POST,
                    &format!("{url}/v1/messages"),
                    Some(("application/json", body.into_bytes())),
                    &[],
                    Some(Duration::from_secs(60)),
                )
                .await
            }));
        }
        wait_until(
            Duration::from_secs(8),
            "six entries pending on the leader",
            async || {
                let status = cluster.client(leader).status().await.ok()?;
                (status.last_log_index.0 - status.commit_index.0 >= 6).then_some(())
            },
        )
        .await?;

        // Beyond the bound: 503 overloaded, to the leader and through the follower (not retried).
        for (n, to) in [leader, leader, via].into_iter().enumerate() {
            let reply = cluster
                .client(to)
                .post_raw(
                    "/v1/messages",
                    format!(r#"{{"text":"overloaded {n}","request_id":"overloaded-{n}"}}"#)
                        .into_bytes(),
                )
                .await?;
            ensure!(
                reply.status == StatusCode::SERVICE_UNAVAILABLE
                    && error_code(&reply) == "overloaded",
                "a write beyond the bound through node {to}: {} {}",
                reply.status,
                reply.text()
            );
            let expected = format!("{leader} http://localhost:{}", cluster.node(leader).port);
            ensure!(
                reply.leader_header.as_deref() == Some(expected.as_str()),
                "X-Raft-Leader on the overloaded answer through node {to}: {:?}",
                reply.leader_header
            );
        }

        // The leader stops: writes that may be in its log are 504, never 503, and the follower
        // passes the leader's 504 on instead of proposing the write again.
        let stopping = Instant::now();
        ensure!(
            cluster.terminate(leader, Duration::from_secs(10)).await?,
            "the leader did not stop gracefully"
        );
        let mut answers = BTreeMap::new();
        for (n, waiting) in pending.into_iter().enumerate() {
            let reply = waiting.await??;
            answers.insert(n, (reply.status, error_code(&reply)));
        }
        let waited = stopping.elapsed();
        ensure!(
            answers
                .values()
                .all(|(status, code)| *status == StatusCode::GATEWAY_TIMEOUT && code == "timeout"),
            "answers to writes pending when the leader stopped: {answers:?}"
        );
        ensure!(
            waited < Duration::from_secs(20),
            "the pending writes were answered only after {waited:?} (the request timeout is 30 s)"
        );

        for &id in &followers {
            cluster.client(id).set_timing(50, [150, 300]).await?;
        }
        cluster.restart(leader).await?;
        cluster_still_serves(&mut cluster, "a-stalled-leader").await?;

        cluster.wait_converged(LogIndex(1), LEADER_TIMEOUT).await?;
        let messages = cluster.identical_logs(&cluster.ids()).await?;
        ensure!(
            messages.iter().all(|m| !m.text.starts_with("overloaded")),
            "a write answered 503 overloaded was stored: {messages:?}"
        );
        for (request_id, count) in count_by_request_id(&messages) {
            ensure!(count == 1, "{request_id} is stored {count} times");
        }
        Ok(())
    }
    .await;
    cluster.finish(result);
}

/// Starts one node without a token on `listen` and returns its log up to the line saying it serves.
async fn startup_log(listen: &str) -> Result<String> {
    let data = tempfile::tempdir()?;
    let mut child = tokio::process::Command::new(node_binary()?)
        .args(["--id", "1", "--listen", listen, "--data-dir"])
        .arg(data.path())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("CLUSTER_TOKEN")
        .env_remove("CLUSTER_TOKEN_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stderr.take().context("stderr")?).lines();
    let mut log = String::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await? {
            log.push_str(&line);
            log.push('\n');
            if line.contains("serving") {
                break;
            }
        }
        std::io::Result::Ok(())
    })
    .await;
    child.kill().await?;
    ensure!(read.is_ok(), "the node did not start within 20 s:\n{log}");
    Ok(log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_a_token_file_and_an_open_node_without_a_token_warns() {
    let open = startup_log(&format!("0.0.0.0:{}", free_port()))
        .await
        .expect("a node on 0.0.0.0");
    assert!(open.contains("NO CLUSTER TOKEN"), "no warning in:\n{open}");
    let local = startup_log(&format!("127.0.0.1:{}", free_port()))
        .await
        .expect("a node on 127.0.0.1");
    assert!(
        !local.contains("NO CLUSTER TOKEN"),
        "a loopback node warned:\n{local}"
    );

    // Three nodes told only where the token file is: the first to start writes it, all agree.
    let secrets = tempfile::tempdir().expect("temp dir");
    let token_file = secrets.path().join("cluster-token");
    let options = Options {
        cluster_token: None,
        extra_args: vec![
            "--cluster-token-file".into(),
            token_file.display().to_string(),
        ],
        ..Options::default()
    };
    let mut cluster = Cluster::start(3, options).await.expect("start 3 nodes");
    let result = async {
        let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
        let token = std::fs::read_to_string(&token_file)?.trim().to_string();
        ensure!(token.len() == 32, "a 128-bit token, got {token:?}");
        let without = post(
            &cluster,
            leader,
            "/raft/request_vote",
            "application/json",
            "{}",
            &[],
        )
        .await?;
        ensure!(
            without.status == StatusCode::UNAUTHORIZED,
            "without the token: {}",
            without.status
        );
        let with = post(
            &cluster,
            leader,
            "/raft/request_vote",
            "application/json",
            "{}",
            &[("x-flotilla-cluster-token", &token)],
        )
        .await?;
        ensure!(
            with.status == StatusCode::BAD_REQUEST,
            "with the file's token, a malformed vote is judged on its body: {} {}",
            with.status,
            with.text()
        );
        cluster_still_serves(&mut cluster, "a-shared-token-file").await
    }
    .await;
    cluster.finish(result);
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}
