//! Attaching to nodes that run elsewhere: only the admin API acts on them.

use super::{ClusterControl, NodeEndpoint};
use anyhow::{bail, Context as _};
use flotilla_shared::api::Status;
use flotilla_shared::NodeId;
use std::time::Duration;

pub struct AttachedCluster {
    nodes: Vec<NodeEndpoint>,
    admin_token: Option<String>,
}

impl AttachedCluster {
    /// Asks each URL's `/v1/status` for its node id.
    pub fn discover(urls: &[String], admin_token: Option<String>) -> anyhow::Result<Self> {
        if urls.is_empty() {
            bail!("--attach needs at least one URL");
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let nodes = runtime.block_on(async {
            let client = reqwest::Client::new();
            let mut nodes = Vec::new();
            for url in urls {
                let base_url = url.trim_end_matches('/').to_string();
                let status: Status = client
                    .get(format!("{base_url}/v1/status"))
                    .timeout(Duration::from_secs(3))
                    .send()
                    .await
                    .with_context(|| format!("cannot reach {base_url}"))?
                    .json()
                    .await
                    .with_context(|| format!("{base_url}/v1/status is not a Flotilla status"))?;
                nodes.push(NodeEndpoint {
                    id: status.id,
                    base_url,
                });
            }
            anyhow::Ok(nodes)
        })?;
        Ok(Self { nodes, admin_token })
    }
}

fn not_here(node: NodeId) -> anyhow::Result<()> {
    bail!("node {node} runs elsewhere: attached clusters allow admin-API actions only")
}

impl ClusterControl for AttachedCluster {
    fn describe(&self) -> String {
        format!("attached to {} nodes", self.nodes.len())
    }

    fn nodes(&self) -> Vec<NodeEndpoint> {
        self.nodes.clone()
    }

    fn admin_token(&self) -> Option<String> {
        self.admin_token.clone()
    }

    fn controls_processes(&self) -> bool {
        false
    }

    fn kill(&mut self, node: NodeId) -> anyhow::Result<()> {
        not_here(node)
    }

    fn restart(&mut self, node: NodeId) -> anyhow::Result<()> {
        not_here(node)
    }

    fn pause(&mut self, node: NodeId) -> anyhow::Result<()> {
        not_here(node)
    }

    fn resume(&mut self, node: NodeId) -> anyhow::Result<()> {
        not_here(node)
    }
}
