//! What the nodes agree on, and waiting until they do: one leader, one applied commit index, the
//! same messages.

use super::*;

impl Cluster {
    /// Polls each node in `among` for its status; nodes that do not answer are left out.
    pub async fn statuses(&self, among: &[NodeId]) -> BTreeMap<NodeId, Status> {
        let mut statuses = BTreeMap::new();
        for &id in among {
            if let Ok(status) = self.client(id).status().await {
                statuses.insert(id, status);
            }
        }
        statuses
    }

    /// Waits until the nodes in `among` all answer and agree on one leader in one term, and that
    /// leader (one of `among`) says it leads. Returns the leader.
    pub async fn wait_for_leader_among(
        &self,
        among: &[NodeId],
        timeout: Duration,
    ) -> Result<NodeId> {
        let mut seen = String::new();
        let found = wait_until(
            timeout,
            "one leader agreed by all reachable nodes",
            async || {
                let statuses = self.statuses(among).await;
                seen = format!("{:?}", summarize(&statuses));
                if statuses.len() != among.len() {
                    return None;
                }
                let leader = agreed_leader(&statuses)?;
                among.contains(&leader).then_some(leader)
            },
        )
        .await;
        found.with_context(|| format!("last statuses: {seen}"))
    }

    /// [`Cluster::wait_for_leader_among`] all running nodes.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId> {
        self.wait_for_leader_among(&self.running(), timeout).await
    }

    /// Waits until the nodes in `among` have applied the same commit index, at least `at_least`.
    /// Returns that index.
    pub async fn wait_converged_among(
        &self,
        among: &[NodeId],
        at_least: LogIndex,
        timeout: Duration,
    ) -> Result<LogIndex> {
        let mut seen = String::new();
        let found = wait_until(
            timeout,
            "all nodes applied the same commit index",
            async || {
                let statuses = self.statuses(among).await;
                seen = format!("{:?}", summarize(&statuses));
                if statuses.len() != among.len() {
                    return None;
                }
                let commit = statuses.values().map(|s| s.commit_index).max()?;
                let converged = commit >= at_least
                    && statuses
                        .values()
                        .all(|s| s.commit_index == commit && s.last_applied == commit);
                converged.then_some(commit)
            },
        )
        .await;
        found.with_context(|| format!("last statuses: {seen}"))
    }

    /// [`Cluster::wait_converged_among`] all running nodes.
    pub async fn wait_converged(&self, at_least: LogIndex, timeout: Duration) -> Result<LogIndex> {
        self.wait_converged_among(&self.running(), at_least, timeout)
            .await
    }

    /// Every applied message of node `id` (`stale=true`: this node's own state machine), by paging.
    pub async fn all_messages(&self, id: NodeId, stale: bool) -> Result<Vec<MessageEntry>> {
        self.client(id).all_messages(stale).await
    }

    /// Checks that every node in `among` holds exactly the same applied messages, and returns them.
    pub async fn identical_logs(&self, among: &[NodeId]) -> Result<Vec<MessageEntry>> {
        let mut reference: Option<(NodeId, Vec<MessageEntry>)> = None;
        for &id in among {
            let messages = self.all_messages(id, true).await?;
            match &reference {
                None => reference = Some((id, messages)),
                Some((first, expected)) => {
                    if *expected != messages {
                        let at = expected
                            .iter()
                            .zip(&messages)
                            .position(|(a, b)| a != b)
                            .unwrap_or(expected.len().min(messages.len()));
                        bail!(
                            "node {id} ({} messages) differs from node {first} ({} messages) at \
                             position {at}: {:?} vs {:?}",
                            messages.len(),
                            expected.len(),
                            messages.get(at),
                            expected.get(at)
                        );
                    }
                }
            }
        }
        Ok(reference.map(|(_, messages)| messages).unwrap_or_default())
    }
}

/// `(role, term, leader, commit, applied)` per node, for messages.
pub(crate) fn summarize(
    statuses: &BTreeMap<NodeId, Status>,
) -> BTreeMap<u64, (Role, u64, Option<u64>, u64, u64)> {
    statuses
        .iter()
        .map(|(id, s)| {
            (
                id.0,
                (
                    s.role,
                    s.term.0,
                    s.leader_id.map(|l| l.0),
                    s.commit_index.0,
                    s.last_applied.0,
                ),
            )
        })
        .collect()
}

/// The leader every status names, if they all name the same one in the same term and it says it leads.
pub fn agreed_leader(statuses: &BTreeMap<NodeId, Status>) -> Option<NodeId> {
    let first = statuses.values().next()?;
    let leader = first.leader_id?;
    let term = first.term;
    let agreed = statuses
        .values()
        .all(|s| s.leader_id == Some(leader) && s.term == term);
    let leads = statuses
        .get(&leader)
        .is_some_and(|s| s.role == Role::Leader);
    (agreed && leads).then_some(leader)
}
