//! Reading a node's `/v1/events` stream in the background, for tests that wait on what a node did.

use crate::wait_until;
use anyhow::{bail, Context as _, Result};
use flotilla_shared::event::{Event, EventKind};
use futures_util::StreamExt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Every event one node published since the tap started (and the replayed `history` before it).
pub struct EventTap {
    events: Arc<Mutex<Vec<Event>>>,
    task: tokio::task::JoinHandle<()>,
}

impl EventTap {
    /// Subscribes to `<url>/v1/events?history=<history>`; fails if the node does not answer 200.
    pub async fn start(url: &str, history: usize) -> Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .context("building the event client")?;
        let response = http
            .get(format!("{url}/v1/events?history={history}"))
            .send()
            .await
            .with_context(|| format!("subscribing to {url}/v1/events"))?;
        if !response.status().is_success() {
            bail!("{url}/v1/events answered {}", response.status());
        }
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let task = tokio::spawn(async move {
            let mut body = response.bytes_stream();
            let mut pending = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                pending.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = pending.find("\n\n") {
                    let frame: String = pending.drain(..end + 2).collect();
                    for line in frame.lines() {
                        let Some(data) = line.strip_prefix("data:") else {
                            continue;
                        };
                        if let Ok(event) = serde_json::from_str::<Event>(data.trim()) {
                            sink.lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(event);
                        }
                    }
                }
            }
        });
        Ok(Self { events, task })
    }

    /// The events seen so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until an event `matches`, and returns the first that does.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&EventKind) -> bool,
    ) -> Result<Event> {
        wait_until(timeout, what, async || {
            self.events
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .find(|event| matches(&event.kind))
                .cloned()
        })
        .await
    }
}

impl Drop for EventTap {
    fn drop(&mut self) {
        self.task.abort();
    }
}
