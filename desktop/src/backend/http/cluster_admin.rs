//! Admin calls that change what the cluster is made of: snapshots and membership.

use super::{request_target, CallError, Client};
use crate::backend::{Statuses, UiSender};
use flotilla_shared::api::{AddMemberRequest, MemberRole, MembersResponse, SnapshotResponse};
use flotilla_shared::NodeId;
use std::time::Duration;

/// An added node must catch up before its promotion commits: the answer can take a while.
const ADD_MEMBER_TIMEOUT: Duration = Duration::from_secs(60);
const REMOVE_MEMBER_TIMEOUT: Duration = Duration::from_secs(30);
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30);

impl Client {
    /// Sends an admin request with `timeout` and reads its JSON answer.
    async fn admin_json<T: serde::de::DeserializeOwned>(
        &self,
        builder: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<T, CallError> {
        let response = self
            .admin(builder)?
            .timeout(timeout)
            .send()
            .await
            .map_err(CallError::Transport)?;
        if !response.status().is_success() {
            return Err(CallError::refused(response).await);
        }
        response.json::<T>().await.map_err(CallError::Unreadable)
    }
}

/// The node a membership change goes to (any member forwards it to the leader).
fn change_target(
    client: &Client,
    statuses: &Statuses,
    leaving: Option<NodeId>,
) -> Result<NodeId, CallError> {
    request_target(client, statuses, leaving).ok_or(CallError::NoNodeAnswers)
}

/// What a failed membership change means for the person who asked.
pub fn change_words(error: &CallError) -> String {
    match error {
        CallError::Refused {
            status: 409,
            body: Some(body),
        } if body.error == "change_in_progress" => {
            "another membership change is under way: try again once it has committed".into()
        }
        CallError::Refused { status: 404, .. } => {
            "the nodes do not support membership changes (no /v1/admin/members)".into()
        }
        CallError::Transport(transport) if transport.is_timeout() => {
            "no answer in time: the change may still commit (watch the configuration)".into()
        }
        other => other.to_string(),
    }
}

/// `POST /v1/admin/members` for `node` at `addr`, as a voter (a learner first, promoted once caught
/// up); answers once the final configuration committed.
pub async fn add_member(
    client: &Client,
    statuses: &Statuses,
    node: NodeId,
    addr: String,
) -> Result<MembersResponse, CallError> {
    let target = change_target(client, statuses, Some(node))?;
    let url = client.url(target, "/v1/admin/members")?;
    let request = AddMemberRequest {
        id: node,
        addr,
        role: MemberRole::Voter,
    };
    client
        .admin_json(client.http.post(url).json(&request), ADD_MEMBER_TIMEOUT)
        .await
}

/// `DELETE /v1/admin/members/{node}`; answers once the removal committed.
pub async fn remove_member(
    client: &Client,
    statuses: &Statuses,
    node: NodeId,
) -> Result<MembersResponse, CallError> {
    let target = change_target(client, statuses, None)?;
    let url = client.url(target, &format!("/v1/admin/members/{}", node.0))?;
    client
        .admin_json(client.http.delete(url), REMOVE_MEMBER_TIMEOUT)
        .await
}

/// `POST /v1/admin/snapshot` on `node`.
pub async fn take_snapshot(client: &Client, node: NodeId, ui: &UiSender) {
    let answer = match client.url(node, "/v1/admin/snapshot") {
        Ok(url) => {
            client
                .admin_json::<SnapshotResponse>(client.http.post(url), SNAPSHOT_TIMEOUT)
                .await
        }
        Err(error) => Err(error),
    };
    match answer {
        Ok(taken) => ui.notice(
            format!(
                "node {node} took a snapshot at index {} (term {})",
                taken.snapshot_index, taken.snapshot_term
            ),
            false,
        ),
        Err(CallError::Refused { status: 404, .. }) => ui.notice(
            format!("node {node} cannot take snapshots (no /v1/admin/snapshot)"),
            true,
        ),
        Err(error) => ui.notice(format!("node {node} took no snapshot: {error}"), true),
    }
}

/// Members in words: "1, 2, 3 and 4 (learner)".
pub fn members_words(answer: &MembersResponse) -> String {
    let names: Vec<String> = answer
        .members
        .iter()
        .map(|member| match member.role {
            MemberRole::Voter => member.id.to_string(),
            MemberRole::Learner => format!("{} (learner)", member.id),
        })
        .collect();
    format!(
        "configuration at index {}: nodes {}",
        answer.config_index,
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_shared::api::{ErrorBody, Member};
    use flotilla_shared::LogIndex;

    fn refused(status: u16, error: &str) -> CallError {
        CallError::Refused {
            status,
            body: Some(ErrorBody {
                error: error.into(),
                message: "from the node".into(),
            }),
        }
    }

    #[test]
    fn a_change_under_way_and_a_node_without_members_are_said_plainly() {
        assert_eq!(
            change_words(&refused(409, "change_in_progress")),
            "another membership change is under way: try again once it has committed"
        );
        assert_eq!(
            change_words(&refused(404, "not_found")),
            "the nodes do not support membership changes (no /v1/admin/members)"
        );
        // Anything else keeps the node's own words.
        assert_eq!(
            change_words(&refused(503, "no_leader")),
            "no_leader (503): from the node"
        );
    }

    #[test]
    fn members_are_listed_with_their_roles() {
        let answer = MembersResponse {
            config_index: LogIndex(12),
            members: vec![
                Member {
                    id: NodeId(1),
                    addr: "127.0.0.1:6500".into(),
                    role: MemberRole::Voter,
                },
                Member {
                    id: NodeId(4),
                    addr: "127.0.0.1:6503".into(),
                    role: MemberRole::Learner,
                },
            ],
        };
        assert_eq!(
            members_words(&answer),
            "configuration at index 12: nodes 1, 4 (learner)"
        );
    }
}
