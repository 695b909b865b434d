//! A node's `/v1/events` stream, collected in the background for tests to inspect.

use anyhow::{bail, Context as _, Result};
use flotilla_shared::event::Event;
use futures_util::StreamExt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Every event a node published since the log was opened, in order.
pub struct EventLog {
    events: Arc<Mutex<Vec<Event>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl EventLog {
    /// Subscribes to `<url>/v1/events` (no replay) and collects until dropped.
    pub async fn open(url: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        let response = http
            .get(format!("{url}/v1/events?history=0"))
            .send()
            .await
            .with_context(|| format!("GET {url}/v1/events"))?;
        if !response.status().is_success() {
            bail!("{url}/v1/events answered {}", response.status());
        }
        let events = Arc::new(Mutex::new(Vec::new()));
        let collected = events.clone();
        let reader = tokio::spawn(async move {
            let mut body = response.bytes_stream();
            let mut pending = Vec::new();
            while let Some(Ok(chunk)) = body.next().await {
                pending.extend_from_slice(&chunk);
                while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                    let block: Vec<u8> = pending.drain(..end + 2).collect();
                    if let Some(event) = parse_block(&block) {
                        collected
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(event);
                    }
                }
            }
        });
        Ok(Self { events, reader })
    }

    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// One SSE block's `data:` lines as an event (keep-alive comments and unknown kinds are skipped).
fn parse_block(block: &[u8]) -> Option<Event> {
    let text = std::str::from_utf8(block).ok()?;
    let data: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| data.strip_prefix(' ').unwrap_or(data))
        .collect();
    if data.is_empty() {
        return None;
    }
    serde_json::from_str(&data.join("\n")).ok()
}
