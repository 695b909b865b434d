//! What the bench loads: a [`LoadTarget`] says what one write, one read and the final read-back are
//! on its system; the load itself, and the check that every acknowledged write survived, are the same
//! for all.

use crate::http1::Http1Connection;
use anyhow::{bail, Result};
use flotilla_tests::wait_until;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Size of every benchmark message's text, in bytes.
pub const MESSAGE_BYTES: usize = 100;
/// Longer than a node's own request timeout: a node answers 504 itself before this fires.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The outcome of one write.
pub enum Written {
    /// Committed at this index (Flotilla's log index, etcd's revision).
    Acked(u64),
    /// Refused or unknown; the run goes on.
    Failed,
}

/// What a read-back hands over for each entry of the run it finds: its request id, its text, and its
/// index where the system keeps one.
pub type Mark<'a> = dyn FnMut(&str, Option<&str>, Option<u64>) + Send + 'a;

/// A system the bench can load: Flotilla, or etcd for comparison.
pub trait LoadTarget: Send + Sync + 'static {
    /// The URLs of all its nodes.
    fn endpoints(&self) -> &[String];

    /// The URL of the node that leads now, if one does.
    fn leader_url(&self) -> impl Future<Output = Option<String>> + Send;

    /// One write, on the client's own connection.
    fn write(
        &self,
        connection: &mut Http1Connection,
        request_id: &str,
        text: &str,
    ) -> impl Future<Output = Written> + Send;

    /// One linearizable read; whether it succeeded.
    fn read(&self, connection: &mut Http1Connection) -> impl Future<Output = bool> + Send;

    /// Reads back, linearizably from `leader`, every entry `run` wrote, handing each to `mark`.
    fn read_back(
        &self,
        leader: &str,
        run: &RunIds,
        mark: &mut Mark<'_>,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// The URLs clients send to: the leader, or the followers with `via_followers`.
pub async fn targets(target: &impl LoadTarget, via_followers: bool) -> Result<Vec<String>> {
    let what = format!("a leader among {:?}", target.endpoints());
    let leader = wait_until(Duration::from_secs(20), &what, async || {
        target.leader_url().await
    })
    .await?;
    if !via_followers {
        return Ok(vec![leader]);
    }
    let followers: Vec<String> = target
        .endpoints()
        .iter()
        .filter(|url| **url != leader)
        .cloned()
        .collect();
    if followers.is_empty() {
        bail!("--via-followers needs more than one endpoint");
    }
    Ok(followers)
}

/// Reads back everything the run wrote (linearizably, from the leader) and checks it against the
/// acknowledgements: every acked write present exactly once, with its text, at its index.
pub async fn verify(target: &impl LoadTarget, run: &RunIds, acked: &[Vec<u64>]) -> Result<Verdict> {
    let leader = targets(target, false).await?.remove(0);
    let mut seen: Vec<Vec<u32>> = acked.iter().map(|a| vec![0; a.len()]).collect();
    let mut wrong = 0u64;
    let mut mark = |request_id: &str, text: Option<&str>, index: Option<u64>| {
        let Some((client, seq)) = run.parse(request_id) else {
            return;
        };
        let Some(count) = seen.get_mut(client).and_then(|s| s.get_mut(seq)) else {
            return;
        };
        *count += 1;
        let acked_at = acked[client][seq];
        let text_ok = text.is_none_or(|t| t == run.text(request_id));
        let index_ok = index.is_none_or(|i| acked_at == 0 || acked_at == i);
        if !(text_ok && index_ok) {
            wrong += 1;
        }
    };
    target.read_back(&leader, run, &mut mark).await?;
    let mut verdict = Verdict {
        lost: 0,
        duplicated: 0,
        wrong,
    };
    for (client, indexes) in acked.iter().enumerate() {
        for (seq, &index) in indexes.iter().enumerate() {
            let count = seen[client][seq];
            if index != 0 && count == 0 {
                verdict.lost += 1;
            }
            if count > 1 {
                verdict.duplicated += 1;
            }
        }
    }
    Ok(verdict)
}

pub struct Verdict {
    pub lost: u64,
    pub duplicated: u64,
    pub wrong: u64,
}

/// Request ids and texts of one run: `<prefix>-<client>-<seq>`, text padded to [`MESSAGE_BYTES`].
pub struct RunIds {
    pub prefix: String,
}

impl RunIds {
    pub fn new(label: &str) -> Self {
        static RUN: AtomicU64 = AtomicU64::new(0);
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Self {
            prefix: format!(
                "bench{millis}r{}{label}",
                RUN.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    pub fn request_id(&self, client: usize, seq: usize) -> String {
        format!("{}-{client}-{seq}", self.prefix)
    }

    pub fn parse(&self, request_id: &str) -> Option<(usize, usize)> {
        let rest = request_id.strip_prefix(&self.prefix)?.strip_prefix('-')?;
        let (client, seq) = rest.split_once('-')?;
        Some((client.parse().ok()?, seq.parse().ok()?))
    }

    pub fn text(&self, request_id: &str) -> String {
        let mut text = format!("{request_id} ");
        while text.len() < MESSAGE_BYTES {
            text.push('x');
        }
        text
    }
}
