//! Flotilla as a load target: `POST /v1/messages` with a request id, linearizable `GET /v1/messages`.

use crate::http1::Http1Connection;
use crate::target::{LoadTarget, Mark, RunIds, Written, REQUEST_TIMEOUT};
use anyhow::{bail, Result};
use flotilla_shared::api::{MessagesPage, Status, SubmitRequest, SubmitResponse};
use flotilla_tests::{agreed_leader, Api, MAX_PAGE};
use reqwest::{Method, StatusCode};
use std::collections::BTreeMap;
use std::time::Duration;

pub struct Flotilla {
    /// Setup and checks go through the harness's client; the load through [`Http1Connection`]s.
    pub api: Api,
    pub endpoints: Vec<String>,
}

impl LoadTarget for Flotilla {
    fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The leader every answering node names (the harness's [`agreed_leader`]).
    async fn leader_url(&self) -> Option<String> {
        let mut statuses = BTreeMap::new();
        let mut urls = BTreeMap::new();
        for url in &self.endpoints {
            let Ok(reply) = self
                .api
                .request(
                    Method::GET,
                    &format!("{url}/v1/status"),
                    None,
                    &[],
                    Some(Duration::from_secs(2)),
                )
                .await
            else {
                continue;
            };
            let Ok(status) = reply.json::<Status>() else {
                continue;
            };
            urls.insert(status.id, url.clone());
            statuses.insert(status.id, status);
        }
        agreed_leader(&statuses).and_then(|id| urls.remove(&id))
    }

    async fn write(
        &self,
        connection: &mut Http1Connection,
        request_id: &str,
        text: &str,
    ) -> Written {
        let Ok(body) = serde_json::to_vec(&SubmitRequest {
            text: text.into(),
            request_id: Some(request_id.into()),
        }) else {
            return Written::Failed;
        };
        match connection
            .call("POST", "/v1/messages", Some(&body), REQUEST_TIMEOUT)
            .await
        {
            Ok((status, reply)) if (200..300).contains(&status) => {
                match serde_json::from_slice::<SubmitResponse>(reply) {
                    Ok(response) => Written::Acked(response.index.0),
                    Err(_) => Written::Failed,
                }
            }
            _ => Written::Failed,
        }
    }

    async fn read(&self, connection: &mut Http1Connection) -> bool {
        connection
            .call("GET", "/v1/messages?from=1&limit=1", None, REQUEST_TIMEOUT)
            .await
            .is_ok_and(|(status, _)| status == 200)
    }

    async fn read_back(&self, leader: &str, _run: &RunIds, mark: &mut Mark<'_>) -> Result<()> {
        let mut from = 1u64;
        loop {
            let url = format!("{leader}/v1/messages?from={from}&limit={MAX_PAGE}");
            let reply = self
                .api
                .request(Method::GET, &url, None, &[], Some(Duration::from_secs(30)))
                .await?;
            if reply.status != StatusCode::OK {
                bail!(
                    "reading the log: {url} answered {}: {}",
                    reply.status,
                    reply.text()
                );
            }
            let page: MessagesPage = reply.json()?;
            for entry in &page.entries {
                if let Some(request_id) = &entry.request_id {
                    mark(request_id, Some(&entry.text), Some(entry.index.0));
                }
            }
            from += MAX_PAGE as u64;
            if from > page.commit_index.0 {
                return Ok(());
            }
        }
    }
}
