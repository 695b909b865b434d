//! Writers that retry until acknowledged, and the check that every acknowledgement holds.

use crate::*;
use anyhow::{anyhow, bail, Context as _, Result};
use flotilla_shared::api::{MessageEntry, SubmitResponse};
use flotilla_shared::{LogIndex, NodeId};
use reqwest::StatusCode;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A client that keeps trying until its message commits: on `503`, `504` or a connection error it
/// tries again (another node, after a short pause) with the **same** `request_id`, so a retry can never
/// add a second copy.
#[derive(Clone, Debug)]
pub struct RetryingClient {
    api: Api,
    urls: BTreeMap<NodeId, String>,
    /// Where the last success came from; tried first.
    preferred: Option<NodeId>,
    pub pause: Duration,
}

/// What a retrying submit ended with.
#[derive(Clone, Debug)]
pub struct Acknowledged {
    pub response: SubmitResponse,
    pub attempts: u32,
    pub by: NodeId,
}

impl RetryingClient {
    pub fn new(cluster: &Cluster) -> Self {
        Self {
            api: cluster.api().clone(),
            urls: cluster
                .ids()
                .into_iter()
                .map(|id| (id, cluster.url(id)))
                .collect(),
            preferred: None,
            pause: Duration::from_millis(25),
        }
    }

    /// Sends only to the nodes in `ids` (e.g. one side of a partition).
    pub fn only(mut self, ids: &[NodeId]) -> Self {
        self.urls.retain(|id, _| ids.contains(id));
        self
    }

    /// [`RetryingClient::submit`], kept as the [`Ack`] that [`check_acked_exactly_once`] checks.
    pub async fn submit_acked(
        &mut self,
        text: String,
        request_id: String,
        timeout: Duration,
    ) -> Result<Ack> {
        let ack = self.submit(&text, &request_id, timeout).await?;
        Ok(Ack {
            request_id,
            text,
            index: ack.response.index,
            attempts: ack.attempts,
        })
    }

    /// Submits until acknowledged or `timeout` passes. Errors other than "try again" end at once.
    pub async fn submit(
        &mut self,
        text: &str,
        request_id: &str,
        timeout: Duration,
    ) -> Result<Acknowledged> {
        let deadline = Instant::now() + timeout;
        let mut attempts = 0u32;
        let mut last = String::new();
        let ids: Vec<NodeId> = self.urls.keys().copied().collect();
        if ids.is_empty() {
            bail!("the retrying client has no node to send to");
        }
        let mut next = self
            .preferred
            .and_then(|p| ids.iter().position(|&id| id == p))
            .unwrap_or(0);
        while Instant::now() < deadline {
            let id = ids[next % ids.len()];
            attempts += 1;
            let client = NodeClient {
                api: &self.api,
                id,
                url: self.urls[&id].clone(),
            };
            match client.submit(text, Some(request_id)).await {
                Ok(Submitted::Committed { response, .. }) => {
                    self.preferred = response.leader_id.or(Some(id));
                    return Ok(Acknowledged {
                        response,
                        attempts,
                        by: id,
                    });
                }
                Ok(Submitted::Refused { status, error })
                    if status == StatusCode::SERVICE_UNAVAILABLE
                        || status == StatusCode::GATEWAY_TIMEOUT =>
                {
                    last = format!("node {id}: {status} {}", error.message);
                }
                Ok(Submitted::Refused { status, error }) => {
                    bail!("node {id} refused {request_id:?}: {status} {error:?}");
                }
                Err(error) => last = format!("node {id}: {error:#}"),
            }
            next += 1;
            tokio::time::sleep(self.pause).await;
        }
        bail!("{request_id:?} not acknowledged within {timeout:?} after {attempts} attempts; last: {last}")
    }
}

/// Text of a message from a test: short, unique, and saying where it came from.
pub fn unique_text(prefix: &str, n: u64) -> String {
    format!("{prefix}-{n}")
}

/// Applied messages counted by `request_id` (`None` ids are counted under "").
pub fn count_by_request_id(messages: &[MessageEntry]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for message in messages {
        *counts
            .entry(message.request_id.clone().unwrap_or_default())
            .or_insert(0) += 1;
    }
    counts
}

/// One acknowledged write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub request_id: String,
    pub text: String,
    pub index: LogIndex,
    pub attempts: u32,
}

/// Concurrent retrying writers, each submitting unique messages one after another until stopped.
pub struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Ack>>>,
    handles: Vec<tokio::task::JoinHandle<Result<()>>>,
}

impl Writers {
    /// Starts `count` writers whose request ids start with `prefix`. Each message must be
    /// acknowledged within `per_write_timeout` or its writer fails.
    pub fn start(
        client: &RetryingClient,
        count: usize,
        prefix: &str,
        per_write_timeout: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let handles = (0..count)
            .map(|writer| {
                let mut client = client.clone();
                let stop = stop.clone();
                let acked = acked.clone();
                let prefix = format!("{prefix}-w{writer}");
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let request_id = format!("{prefix}-{n}");
                        let text = format!("message {n} from {prefix}");
                        let ack = client
                            .submit_acked(text, request_id, per_write_timeout)
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

    /// How many writes were acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Waits until `more` writes beyond `since` were acknowledged; returns the new count.
    pub async fn wait_for(&self, since: usize, more: usize, timeout: Duration) -> Result<usize> {
        let found = wait_until(
            timeout,
            &format!("{more} more acknowledged writes (had {since})"),
            async || {
                if self.handles.iter().any(|h| h.is_finished()) {
                    // A writer gave up: stop waiting; `stop` reports its error.
                    return Some(None);
                }
                let now = self.acked();
                (now >= since + more).then_some(Some(now))
            },
        )
        .await?;
        found
            .ok_or_else(|| anyhow!("a writer stopped early (its error comes from `Writers::stop`)"))
    }

    /// Stops the writers after their current write and returns every acknowledged write.
    pub async fn stop(self) -> Result<Vec<Ack>> {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.handles {
            handle.await.context("a writer panicked")??;
        }
        let acked = self.acked.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(acked.clone())
    }
}

/// Checks that every acknowledged write is in `messages` exactly once, at the index it was
/// acknowledged with, and that no request id appears twice.
pub fn check_acked_exactly_once(messages: &[MessageEntry], acked: &[Ack]) -> Result<()> {
    let counts = count_by_request_id(messages);
    if let Some((id, count)) = counts
        .iter()
        .find(|(id, count)| !id.is_empty() && **count > 1)
    {
        bail!("request id {id:?} applied {count} times");
    }
    let by_id: BTreeMap<&str, &MessageEntry> = messages
        .iter()
        .filter_map(|m| m.request_id.as_deref().map(|id| (id, m)))
        .collect();
    for ack in acked {
        let Some(message) = by_id.get(ack.request_id.as_str()) else {
            bail!(
                "acknowledged write {:?} (index {}) is missing ({} messages present)",
                ack.request_id,
                ack.index,
                messages.len()
            );
        };
        if message.index != ack.index || message.text != ack.text {
            bail!("acknowledged write {ack:?} is stored as {message:?}");
        }
    }
    Ok(())
}
