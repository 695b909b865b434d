//! HTTP to the nodes: the event stream, status polls, client submits and admin calls.

use super::{unix_ms, NodeEndpoint, Statuses, UiSender};
use crate::model::{Record, SubmitRecord};
use flotilla_shared::api::{
    ErrorBody, PartitionRequest, Status, SubmitRequest, SubmitResponse, TimingRequest,
    TransferRequest,
};
use flotilla_shared::event::{Event, Role};
use flotilla_shared::NodeId;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

mod faults;
pub use faults::{set_disk_delay, set_link_fault};
mod cluster_admin;
pub use cluster_admin::*;

/// Events replayed from a node's buffer when (re)connecting; duplicates are skipped.
const HISTORY_EVENTS: u32 = 2_000;
const STATUS_EVERY: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    urls: BTreeMap<NodeId, String>,
    admin_token: Option<String>,
}

impl Client {
    pub fn new(nodes: Vec<NodeEndpoint>, admin_token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(500))
            .build()
            .unwrap_or_default();
        Self {
            http,
            urls: nodes
                .into_iter()
                .map(|node| (node.id, node.base_url))
                .collect(),
            admin_token,
        }
    }

    /// Whether `node` is one of the nodes this client talks to (not one that left the cluster).
    fn knows(&self, node: NodeId) -> bool {
        self.urls.contains_key(&node)
    }

    fn url(&self, node: NodeId, path: &str) -> Result<String, CallError> {
        self.urls
            .get(&node)
            .map(|base| format!("{base}{path}"))
            .ok_or(CallError::NotInCluster(node))
    }

    fn admin(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, CallError> {
        let token = self.admin_token.as_ref().ok_or(CallError::NoAdminToken)?;
        Ok(builder.bearer_auth(token).timeout(Duration::from_secs(3)))
    }

    /// Sends an admin request; anything but a success is an error.
    async fn admin_call(&self, builder: reqwest::RequestBuilder) -> Result<(), CallError> {
        let response = self
            .admin(builder)?
            .send()
            .await
            .map_err(CallError::Transport)?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(CallError::refused(response).await)
    }

    async fn partition(&self, node: NodeId, isolate_from: Vec<NodeId>) -> Result<(), CallError> {
        let url = self.url(node, "/v1/admin/partition")?;
        let builder = if isolate_from.is_empty() {
            self.http.delete(url)
        } else {
            self.http.post(url).json(&PartitionRequest { isolate_from })
        };
        self.admin_call(builder).await
    }
}

/// Why a call to a node did not succeed; the messages are what the window shows.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("node {0} is not in this cluster")]
    NotInCluster(NodeId),
    #[error("no admin token: start with --admin-token to use admin actions")]
    NoAdminToken,
    #[error("no node answers: the cluster is down")]
    NoNodeAnswers,
    #[error("{}", transport_words(.0))]
    Transport(reqwest::Error),
    /// The node answered with an error status, and its JSON error body when it sent one.
    #[error("{}", refusal_words(*.status, .body.as_ref()))]
    Refused {
        status: u16,
        body: Option<ErrorBody>,
    },
    #[error("unreadable answer: {0}")]
    Unreadable(reqwest::Error),
}

impl CallError {
    async fn refused(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        Self::Refused {
            status,
            body: response.json::<ErrorBody>().await.ok(),
        }
    }
}

fn transport_words(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "cannot connect".into()
    } else {
        error.to_string()
    }
}

fn refusal_words(status: u16, body: Option<&ErrorBody>) -> String {
    match body {
        Some(body) => format!("{} ({status}): {}", body.error, body.message),
        None => format!("HTTP {status}"),
    }
}

/// Reads a node's `/v1/events` for as long as the app runs, reconnecting with backoff.
pub async fn follow_events(node: NodeEndpoint, ui: UiSender) {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap_or_default();
    // Newest (at_ms, seq) delivered: a reconnect replays the buffer, and a restarted process starts
    // its seq at 1 again but later in time.
    let mut newest: (u64, u64) = (0, 0);
    let mut backoff = Duration::from_millis(100);
    loop {
        let url = format!("{}/v1/events?history={HISTORY_EVENTS}", node.base_url);
        if let Ok(mut response) = client.get(&url).send().await {
            if response.status().is_success() {
                backoff = Duration::from_millis(100);
                let mut buffer: Vec<u8> = Vec::new();
                while let Ok(Some(chunk)) = response.chunk().await {
                    buffer.extend_from_slice(&chunk);
                    while let Some(end) = buffer.iter().position(|byte| *byte == b'\n') {
                        let line: Vec<u8> = buffer.drain(..=end).collect();
                        let Some(event) = parse_data_line(&line) else {
                            continue;
                        };
                        let key = (event.at_ms, event.seq);
                        if key <= newest {
                            continue;
                        }
                        newest = key;
                        if !ui.record(Record::Event(event)) {
                            return;
                        }
                    }
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One SSE line: `data: <json>` gives an event; anything else (ids, comments, blanks) gives none.
pub fn parse_data_line(line: &[u8]) -> Option<Event> {
    let text = std::str::from_utf8(line).ok()?.trim_end();
    let json = text.strip_prefix("data:")?.trim_start();
    serde_json::from_str(json).ok()
}

/// Polls `/v1/status` every 250 ms; a failed poll marks the node unreachable.
pub async fn poll_status(node: NodeEndpoint, client: Client, statuses: Statuses, ui: UiSender) {
    let mut tick = tokio::time::interval(STATUS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_reachable = None;
    loop {
        tick.tick().await;
        let url = format!("{}/v1/status", node.base_url);
        let answer = client
            .http
            .get(&url)
            .timeout(Duration::from_millis(600))
            .send()
            .await;
        let status = match answer {
            Ok(response) if response.status().is_success() => response.json::<Status>().await.ok(),
            _ => None,
        };
        let delivered = match status {
            Some(status) => {
                if let Ok(mut all) = statuses.lock() {
                    all.insert(node.id, status.clone());
                }
                was_reachable = Some(true);
                ui.record(Record::Status {
                    at_ms: unix_ms(),
                    status: Box::new(status),
                })
            }
            None => {
                if let Ok(mut all) = statuses.lock() {
                    all.remove(&node.id);
                }
                if was_reachable == Some(false) {
                    continue;
                }
                was_reachable = Some(false);
                ui.record(Record::Reachable {
                    at_ms: unix_ms(),
                    node: node.id,
                    reachable: false,
                })
            }
        };
        if !delivered {
            return;
        }
    }
}

fn snapshot(statuses: &Statuses) -> BTreeMap<NodeId, Status> {
    statuses.lock().map(|all| all.clone()).unwrap_or_default()
}

/// The node the reachable majority names as leader, if any.
/// The leader the statuses name, if it is still one of `client`'s nodes: a status polled just before
/// a membership change may name a leader that has left.
fn known_leader(client: &Client, statuses: &Statuses) -> Option<NodeId> {
    let all = snapshot(statuses);
    all.values()
        .filter(|status| status.role == Role::Leader)
        .max_by_key(|status| status.term)
        .map(|status| status.id)
        .or_else(|| all.values().find_map(|status| status.leader_id))
        .filter(|leader| client.knows(*leader))
}

/// Where a request any member forwards goes: the leader if known (saving a hop), else a member that
/// answers its status polls, other than `avoid`.
fn request_target(client: &Client, statuses: &Statuses, avoid: Option<NodeId>) -> Option<NodeId> {
    known_leader(client, statuses).or_else(|| {
        snapshot(statuses)
            .keys()
            .copied()
            .find(|node| client.knows(*node) && Some(*node) != avoid)
    })
}

pub async fn submit(client: &Client, text: String, statuses: &Statuses, ui: &UiSender) {
    let started = Instant::now();
    let sent_ms = unix_ms();
    let target = request_target(client, statuses, None);
    let outcome = match target {
        None => Err(CallError::NoNodeAnswers),
        Some(node) => match client.url(node, "/v1/messages") {
            Err(error) => Err(error),
            Ok(url) => {
                let request = SubmitRequest {
                    text: text.clone(),
                    request_id: Some(format!(
                        "desktop-{sent_ms}-{}",
                        started.elapsed().as_nanos()
                    )),
                };
                match client
                    .http
                    .post(url)
                    .json(&request)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                {
                    Err(error) => Err(CallError::Transport(error)),
                    Ok(response) if response.status().is_success() => response
                        .json::<SubmitResponse>()
                        .await
                        .map(|answer| (answer.index, answer.term))
                        .map_err(CallError::Unreadable),
                    Ok(response) => Err(CallError::refused(response).await),
                }
            }
        },
    };
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    // Stamped when the answer came, so the live view says it after drawing the commit it reports;
    // the top bar shows it, no notice needed.
    let at_ms = unix_ms();
    ui.record(Record::Submitted(SubmitRecord {
        at_ms,
        text,
        // The record keeps the words: it is what the window shows and replays.
        outcome: outcome.map_err(|error| error.to_string()),
        latency_ms,
    }));
}

pub async fn isolate(client: &Client, node: NodeId, statuses: &Statuses, ui: &UiSender) {
    // A partition is one-sided per node: tell the node and every other node.
    let all = snapshot(statuses);
    let others: Vec<NodeId> = client
        .urls
        .keys()
        .copied()
        .filter(|id| *id != node)
        .collect();
    let mut failures = Vec::new();
    if let Err(error) = client.partition(node, others.clone()).await {
        failures.push(format!("node {node}: {error}"));
    }
    for other in others {
        let mut list = all
            .get(&other)
            .map(|status| status.isolated_from.clone())
            .unwrap_or_default();
        if !list.contains(&node) {
            list.push(node);
        }
        if let Err(error) = client.partition(other, list).await {
            failures.push(format!("node {other}: {error}"));
        }
    }
    report(ui, format!("isolate node {node}"), failures);
}

pub async fn heal(client: &Client, node: NodeId, statuses: &Statuses, ui: &UiSender) {
    let all = snapshot(statuses);
    let mut failures = Vec::new();
    if let Err(error) = client.partition(node, Vec::new()).await {
        failures.push(format!("node {node}: {error}"));
    }
    for other in client.urls.keys().copied().filter(|id| *id != node) {
        let list: Vec<NodeId> = all
            .get(&other)
            .map(|status| status.isolated_from.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|id| *id != node)
            .collect();
        if let Err(error) = client.partition(other, list).await {
            failures.push(format!("node {other}: {error}"));
        }
    }
    report(ui, format!("heal node {node}"), failures);
}

fn report(ui: &UiSender, action: String, failures: Vec<String>) {
    if failures.is_empty() {
        ui.notice(action, false);
    } else {
        ui.notice(format!("{action}: failed on {}", failures.join("; ")), true);
    }
}

pub async fn transfer(client: &Client, to: NodeId, statuses: &Statuses, ui: &UiSender) {
    let Some(leader) = known_leader(client, statuses) else {
        ui.notice("transfer leadership: no leader known", true);
        return;
    };
    let result = match client.url(leader, "/v1/admin/transfer-leadership") {
        Ok(url) => {
            client
                .admin_call(client.http.post(url).json(&TransferRequest { to }))
                .await
        }
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => ui.notice(
            format!("leader {leader} hands leadership to node {to}"),
            false,
        ),
        Err(error) => ui.notice(format!("transfer to node {to} failed: {error}"), true),
    }
}

pub async fn set_timing(client: &Client, timing: TimingRequest, ui: &UiSender) {
    let mut failures = Vec::new();
    for node in client.urls.keys().copied() {
        let result = match client.url(node, "/v1/admin/timing") {
            Ok(url) => client.admin_call(client.http.put(url).json(&timing)).await,
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            failures.push(format!("node {node}: {error}"));
        }
    }
    report(
        ui,
        format!(
            "tempo: heartbeat {} ms, election timeout {}-{} ms",
            timing.heartbeat_ms, timing.election_timeout_ms[0], timing.election_timeout_ms[1]
        ),
        failures,
    );
}

/// Applies the tempo once every node answers (attached clusters start at their own tempo).
pub async fn set_timing_when_up(client: &Client, timing: TimingRequest, ui: &UiSender) {
    for _ in 0..100 {
        let mut all_up = true;
        for node in client.urls.keys().copied() {
            let Ok(url) = client.url(node, "/v1/status") else {
                continue;
            };
            let up = client
                .http
                .get(url)
                .timeout(Duration::from_millis(500))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            all_up &= up;
        }
        if all_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    set_timing(client, timing, ui).await;
}

/// How long [`timing_when_up`] waits for nodes that do not answer yet.
const FOUND_TIMING_DEADLINE: Duration = Duration::from_secs(10);

/// Each node's timing as it runs now, read from `/v1/status` (nodes that stay silent for
/// [`FOUND_TIMING_DEADLINE`] are left out).
pub async fn timing_when_up(client: &Client) -> BTreeMap<NodeId, TimingRequest> {
    let started = Instant::now();
    let mut found = BTreeMap::new();
    while found.len() < client.urls.len() && started.elapsed() < FOUND_TIMING_DEADLINE {
        for (node, base) in &client.urls {
            if found.contains_key(node) {
                continue;
            }
            let answer = client
                .http
                .get(format!("{base}/v1/status"))
                .timeout(Duration::from_millis(500))
                .send()
                .await;
            let Ok(response) = answer else { continue };
            let Ok(status) = response.json::<Status>().await else {
                continue;
            };
            // A node too old to report its timing has nothing to restore.
            if status.heartbeat_ms > 0 {
                found.insert(
                    *node,
                    TimingRequest {
                        heartbeat_ms: status.heartbeat_ms,
                        election_timeout_ms: status.election_timeout_ms,
                    },
                );
            }
        }
        if found.len() < client.urls.len() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    found
}

/// Puts back the timing found on each node; a node that was silent then gets what the others had.
pub async fn restore_timing(client: &Client, found: &BTreeMap<NodeId, TimingRequest>) {
    let Some(fallback) = found.values().next() else {
        return;
    };
    let calls: Vec<_> = client
        .urls
        .keys()
        .map(|node| {
            let timing = found.get(node).unwrap_or(fallback).clone();
            let client = client.clone();
            let node = *node;
            let call = tokio::spawn(async move {
                let url = client.url(node, "/v1/admin/timing")?;
                client.admin_call(client.http.put(url).json(&timing)).await
            });
            (node, call)
        })
        .collect();
    for (node, call) in calls {
        if let Ok(Err(error)) = call.await {
            tracing::warn!("could not put back the timing found: node {node}: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_data_lines_parse_and_other_lines_are_skipped() {
        let line =
            br#"data: {"node":2,"seq":9,"at_ms":5,"kind":"commit_advanced","commit_index":4}"#;
        let event = parse_data_line(line).expect("a data line");
        assert_eq!(event.node, NodeId(2));
        assert_eq!(event.seq, 9);
        assert!(parse_data_line(b"id: 9").is_none());
        assert!(parse_data_line(b": keep-alive").is_none());
        assert!(parse_data_line(b"data: {not json").is_none());
    }

    #[test]
    fn refusals_read_as_the_node_worded_them() {
        let refused = CallError::Refused {
            status: 503,
            body: Some(ErrorBody {
                error: "shutting_down".into(),
                message: "the node is stopping".into(),
            }),
        };
        assert_eq!(
            refused.to_string(),
            "shutting_down (503): the node is stopping"
        );
        let bare = CallError::Refused {
            status: 502,
            body: None,
        };
        assert_eq!(bare.to_string(), "HTTP 502");
        assert_eq!(
            CallError::NotInCluster(NodeId(7)).to_string(),
            "node 7 is not in this cluster"
        );
    }
}
