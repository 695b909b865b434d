//! etcd v3's JSON gateway as a load target (`POST /v3/kv/put`, `/v3/kv/range`), to compare with.
//! The gateway carries keys and values as base64.

use crate::http1::{authority_of, url_path, Http1Connection};
use crate::target::{LoadTarget, Mark, RunIds, Written, REQUEST_TIMEOUT};
use anyhow::{bail, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};

pub struct Etcd {
    pub endpoints: Vec<String>,
}

impl Etcd {
    /// A JSON POST on a connection of its own (setup and checks; load clients keep theirs).
    async fn post_json(&self, url: &str, body: &Value) -> Result<Value> {
        post_json_on(
            &mut Http1Connection::new(authority_of(url)?),
            &url_path(url)?,
            body,
        )
        .await
    }
}

async fn post_json_on(connection: &mut Http1Connection, path: &str, body: &Value) -> Result<Value> {
    let body = serde_json::to_vec(body)?;
    let (status, reply) = connection
        .call("POST", path, Some(&body), REQUEST_TIMEOUT)
        .await?;
    if status != 200 {
        let reply = String::from_utf8_lossy(reply).into_owned();
        bail!(
            "{}{path} answered {status}: {reply}",
            connection.authority()
        );
    }
    Ok(serde_json::from_slice(reply)?)
}

fn unbase64(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text).ok()
}

impl LoadTarget for Etcd {
    fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    async fn leader_url(&self) -> Option<String> {
        for url in &self.endpoints {
            let Ok(value) = self
                .post_json(&format!("{url}/v3/maintenance/status"), &json!({}))
                .await
            else {
                continue;
            };
            let member = value["header"]["member_id"].as_str();
            if member.is_some() && member == value["leader"].as_str() {
                return Some(url.clone());
            }
        }
        None
    }

    async fn write(
        &self,
        connection: &mut Http1Connection,
        request_id: &str,
        text: &str,
    ) -> Written {
        let body = json!({ "key": BASE64.encode(request_id), "value": BASE64.encode(text) });
        match post_json_on(connection, "/v3/kv/put", &body).await {
            Ok(value) => Written::Acked(
                value["header"]["revision"]
                    .as_str()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0),
            ),
            Err(_) => Written::Failed,
        }
    }

    async fn read(&self, connection: &mut Http1Connection) -> bool {
        post_json_on(
            connection,
            "/v3/kv/range",
            &json!({ "key": BASE64.encode(b"bench-read"), "limit": 1 }),
        )
        .await
        .is_ok()
    }

    async fn read_back(&self, leader: &str, run: &RunIds, mark: &mut Mark<'_>) -> Result<()> {
        // Keys of this run sort between "<prefix>-" and "<prefix>." ('.' follows '-').
        let mut key = format!("{}-", run.prefix).into_bytes();
        let end = format!("{}.", run.prefix).into_bytes();
        loop {
            let value = self
                .post_json(
                    &format!("{leader}/v3/kv/range"),
                    &json!({ "key": BASE64.encode(&key), "range_end": BASE64.encode(&end), "limit": 10000 }),
                )
                .await?;
            let kvs = value["kvs"].as_array().cloned().unwrap_or_default();
            let mut last = None;
            for kv in &kvs {
                let k = kv["key"].as_str().and_then(unbase64).unwrap_or_default();
                let v = kv["value"].as_str().and_then(unbase64).unwrap_or_default();
                let k = String::from_utf8_lossy(&k).into_owned();
                mark(&k, Some(&String::from_utf8_lossy(&v)), None);
                last = Some(k);
            }
            match last {
                Some(last) if value["more"].as_bool() == Some(true) => {
                    key = last.into_bytes();
                    key.push(0);
                }
                _ => return Ok(()),
            }
        }
    }
}
