//! A client for the HTTP API of the nodes, as tests use it: every answer kept whole.

use anyhow::{bail, Context as _, Result};
use flotilla_shared::api::{
    AddMemberRequest, DiskFaultRequest, ErrorBody, LinkFault, MemberRole, MembersResponse,
    MessageEntry, MessagesPage, PartitionRequest, SnapshotResponse, Status, SubmitRequest,
    SubmitResponse, TimingRequest, TransferRequest, LEADER_HEADER,
};
use flotilla_shared::NodeId;
use reqwest::{Method, StatusCode};
use std::time::Duration;

/// Most messages one `GET /v1/messages` page may hold (the contract's maximum).
pub const MAX_PAGE: usize = 1000;
/// The page size the harness reads whole logs with: the contract's default, so that logs of a few
/// hundred messages take several pages and paging itself is exercised.
pub const PAGE: usize = 100;

/// The HTTP API of any node, by URL. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Api {
    http: reqwest::Client,
    admin_token: Option<String>,
}

/// An answer from a node: status, the `X-Raft-Leader` header and the body.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub leader_header: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("unexpected body for {}: {}", self.status, self.text()))
    }

    /// The `{"error","message"}` body every error answer carries.
    pub fn error(&self) -> Result<ErrorBody> {
        self.json()
    }

    /// The leader id from `X-Raft-Leader: <id> <url>`.
    pub fn leader_hint(&self) -> Option<(NodeId, String)> {
        let header = self.leader_header.as_deref()?;
        let (id, url) = header.split_once(' ')?;
        Some((NodeId(id.trim().parse().ok()?), url.trim().to_string()))
    }
}

impl Api {
    pub fn new(admin_token: Option<String>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            // Below the nodes' read timeout (10 s by default), after which they close idle connections.
            .pool_idle_timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        Ok(Self { http, admin_token })
    }

    /// A handle on the node answering at `url` (`http://host:port`).
    pub fn node(&self, id: NodeId, url: impl Into<String>) -> NodeClient<'_> {
        NodeClient {
            api: self,
            id,
            url: url.into(),
        }
    }

    /// Any request; `admin` adds the bearer token this `Api` was made with.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, &str)],
        timeout: Option<Duration>,
    ) -> Result<Reply> {
        let mut request = self.http.request(method.clone(), url);
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status();
        let leader_header = response
            .headers()
            .get(LEADER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("reading the body of {method} {url}"))?;
        Ok(Reply {
            status,
            leader_header,
            body: bytes.to_vec(),
        })
    }

    fn bearer(&self) -> Option<String> {
        self.admin_token.as_ref().map(|t| format!("Bearer {t}"))
    }
}

/// The API of one node.
#[derive(Clone, Debug)]
pub struct NodeClient<'a> {
    pub(crate) api: &'a Api,
    pub id: NodeId,
    pub url: String,
}

/// Outcome of a submit: committed (201 new, 200 duplicate) or refused with an error body.
#[derive(Clone, Debug)]
pub enum Submitted {
    Committed {
        response: SubmitResponse,
        leader_header: Option<String>,
        status: StatusCode,
    },
    Refused {
        status: StatusCode,
        error: ErrorBody,
    },
}

impl NodeClient<'_> {
    /// `POST /v1/messages`, expecting it committed (`201`, or `200` for a duplicate).
    pub async fn submit_committed(
        &self,
        text: &str,
        request_id: Option<&str>,
    ) -> Result<SubmitResponse> {
        match self.submit(text, request_id).await? {
            Submitted::Committed { response, .. } => Ok(response),
            Submitted::Refused { status, error } => anyhow::bail!(
                "submit to node {} answered {status}: {} ({})",
                self.id,
                error.error,
                error.message
            ),
        }
    }

    pub async fn status(&self) -> Result<Status> {
        let reply = self
            .api
            .request(
                Method::GET,
                &format!("{}/v1/status", self.url),
                None,
                &[],
                Some(Duration::from_secs(2)),
            )
            .await?;
        if reply.status != StatusCode::OK {
            bail!(
                "node {}: status answered {}: {}",
                self.id,
                reply.status,
                reply.text()
            );
        }
        reply.json()
    }

    /// `POST /v1/messages` with a JSON body made from `text` and `request_id`.
    pub async fn submit(&self, text: &str, request_id: Option<&str>) -> Result<Submitted> {
        let body = serde_json::to_vec(&SubmitRequest {
            text: text.into(),
            request_id: request_id.map(Into::into),
        })?;
        let reply = self.post_raw("/v1/messages", body).await?;
        submitted(reply)
    }

    /// `POST` raw bytes as JSON to `path` (for malformed-input tests).
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> Result<Reply> {
        self.api
            .request(
                Method::POST,
                &format!("{}{path}", self.url),
                Some(("application/json", body)),
                &[],
                None,
            )
            .await
    }

    /// `GET /v1/messages?from=&limit=[&stale=true]`.
    pub async fn messages(&self, from: u64, limit: usize, stale: bool) -> Result<MessagesPage> {
        let stale = if stale { "&stale=true" } else { "" };
        let url = format!("{}/v1/messages?from={from}&limit={limit}{stale}", self.url);
        let reply = self.api.request(Method::GET, &url, None, &[], None).await?;
        if reply.status != StatusCode::OK {
            bail!(
                "node {}: GET messages answered {}: {}",
                self.id,
                reply.status,
                reply.text()
            );
        }
        reply.json()
    }

    /// All messages up to one read point, by paging (a short page means the end).
    pub async fn all_messages(&self, stale: bool) -> Result<Vec<MessageEntry>> {
        let mut all = Vec::new();
        let mut from = 1u64;
        loop {
            let page = self.messages(from, PAGE, stale).await?;
            // The page covers [from, from + limit) up to its read point.
            let end = from + PAGE as u64;
            for entry in &page.entries {
                let after_previous = all
                    .last()
                    .is_none_or(|last: &MessageEntry| last.index < entry.index);
                if entry.index.0 < from
                    || entry.index.0 >= end
                    || entry.index > page.commit_index
                    || !after_previous
                {
                    bail!(
                        "node {}: page from={from} limit={PAGE} (read point {}) holds entry {} out \
                         of range or order",
                        self.id,
                        page.commit_index,
                        entry.index
                    );
                }
                all.push(entry.clone());
            }
            if end > page.commit_index.0 {
                return Ok(all);
            }
            from = end;
        }
    }

    /// Any admin request with the bearer token, its answer whatever it is (for refusal tests).
    pub async fn admin(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Reply> {
        let bearer = self.api.bearer();
        let headers: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|b| vec![("authorization", b)])
            .unwrap_or_default();
        self.api
            .request(
                method,
                &format!("{}{path}", self.url),
                body.map(|b| ("application/json", b)),
                &headers,
                None,
            )
            .await
    }

    async fn admin_ok(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Reply> {
        let reply = self.admin(method.clone(), path, body).await?;
        if !reply.status.is_success() {
            bail!(
                "node {}: {method} {path} answered {}: {}",
                self.id,
                reply.status,
                reply.text()
            );
        }
        Ok(reply)
    }

    /// `POST /v1/admin/partition`: this node drops Raft traffic to and from `isolate_from`.
    pub async fn partition(&self, isolate_from: &[NodeId]) -> Result<()> {
        let body = serde_json::to_vec(&PartitionRequest {
            isolate_from: isolate_from.to_vec(),
        })?;
        self.admin_ok(Method::POST, "/v1/admin/partition", Some(body))
            .await
            .map(drop)
    }

    /// `DELETE /v1/admin/partition`.
    pub async fn heal(&self) -> Result<()> {
        self.admin_ok(Method::DELETE, "/v1/admin/partition", None)
            .await
            .map(drop)
    }

    /// `POST /v1/admin/transfer-leadership`.
    pub async fn transfer_leadership(&self, to: NodeId) -> Result<()> {
        let body = serde_json::to_vec(&TransferRequest { to })?;
        self.admin_ok(Method::POST, "/v1/admin/transfer-leadership", Some(body))
            .await
            .map(drop)
    }

    /// `PUT /v1/admin/links/{to}`: faults on this node's outgoing link to `to`.
    pub async fn set_link_fault(&self, to: NodeId, fault: LinkFault) -> Result<()> {
        let body = serde_json::to_vec(&fault)?;
        self.admin_ok(Method::PUT, &format!("/v1/admin/links/{to}"), Some(body))
            .await
            .map(drop)
    }

    /// `DELETE /v1/admin/links/{to}`.
    pub async fn heal_link(&self, to: NodeId) -> Result<()> {
        self.admin_ok(Method::DELETE, &format!("/v1/admin/links/{to}"), None)
            .await
            .map(drop)
    }

    /// `PUT /v1/admin/disk`: every storage write waits `write_delay_ms` before its fsync.
    pub async fn set_disk_delay(&self, write_delay_ms: u64) -> Result<()> {
        let body = serde_json::to_vec(&DiskFaultRequest { write_delay_ms })?;
        self.admin_ok(Method::PUT, "/v1/admin/disk", Some(body))
            .await
            .map(drop)
    }

    /// `GET /metrics`, as text.
    pub async fn metrics(&self) -> Result<String> {
        let reply = self
            .api
            .request(
                Method::GET,
                &format!("{}/metrics", self.url),
                None,
                &[],
                Some(Duration::from_secs(2)),
            )
            .await?;
        if reply.status != StatusCode::OK {
            bail!("node {}: /metrics answered {}", self.id, reply.status);
        }
        Ok(reply.text())
    }

    /// `POST /v1/admin/members`: answered once the final configuration is committed.
    pub async fn add_member(
        &self,
        id: NodeId,
        addr: &str,
        role: MemberRole,
    ) -> Result<MembersResponse> {
        let body = serde_json::to_vec(&AddMemberRequest {
            id,
            addr: addr.to_string(),
            role,
        })?;
        self.admin_ok(Method::POST, "/v1/admin/members", Some(body))
            .await?
            .json()
    }

    /// `DELETE /v1/admin/members/{id}`: answered once the configuration without it is committed.
    pub async fn remove_member(&self, id: NodeId) -> Result<MembersResponse> {
        self.admin_ok(Method::DELETE, &format!("/v1/admin/members/{id}"), None)
            .await?
            .json()
    }

    /// `POST /v1/admin/snapshot`: a snapshot at the node's applied index, now.
    pub async fn take_snapshot(&self) -> Result<SnapshotResponse> {
        self.admin_ok(Method::POST, "/v1/admin/snapshot", None)
            .await?
            .json()
    }

    /// `PUT /v1/admin/timing`.
    pub async fn set_timing(&self, heartbeat_ms: u64, election_timeout_ms: [u64; 2]) -> Result<()> {
        let body = serde_json::to_vec(&TimingRequest {
            heartbeat_ms,
            election_timeout_ms,
        })?;
        self.admin_ok(Method::PUT, "/v1/admin/timing", Some(body))
            .await
            .map(drop)
    }
}

pub(crate) fn submitted(reply: Reply) -> Result<Submitted> {
    if reply.status == StatusCode::CREATED || reply.status == StatusCode::OK {
        Ok(Submitted::Committed {
            response: reply.json()?,
            leader_header: reply.leader_header,
            status: reply.status,
        })
    } else {
        Ok(Submitted::Refused {
            status: reply.status,
            error: reply.error()?,
        })
    }
}
