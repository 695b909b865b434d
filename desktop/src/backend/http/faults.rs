//! Link and disk faults on the real nodes (admin API): one-way link cuts, delay, loss, slow disks.

use super::{report, CallError, Client, UiSender};
use crate::model::fault_words;
use flotilla_shared::api::{DiskFaultRequest, LinkFault};
use flotilla_shared::NodeId;

/// A node without the endpoint answers 404: say so rather than "HTTP 404".
fn words(error: &CallError) -> String {
    match error {
        CallError::Refused { status: 404, .. } => {
            "the node does not support link and disk faults (an older node)".into()
        }
        error => error.to_string(),
    }
}

impl Client {
    /// `PUT /v1/admin/links/{to}` on `from` (faults on its outgoing link), or `DELETE` to heal.
    async fn link_fault(
        &self,
        from: NodeId,
        to: NodeId,
        fault: Option<LinkFault>,
    ) -> Result<(), CallError> {
        let url = self.url(from, &format!("/v1/admin/links/{}", to.0))?;
        let builder = match fault {
            Some(fault) => self.http.put(url).json(&fault),
            None => self.http.delete(url),
        };
        self.admin_call(builder).await
    }

    /// `PUT /v1/admin/disk` on `node`.
    async fn disk_delay(&self, node: NodeId, write_delay_ms: u64) -> Result<(), CallError> {
        let url = self.url(node, "/v1/admin/disk")?;
        self.admin_call(
            self.http
                .put(url)
                .json(&DiskFaultRequest { write_delay_ms }),
        )
        .await
    }
}

pub async fn set_link_fault(
    client: &Client,
    from: NodeId,
    to: NodeId,
    fault: Option<LinkFault>,
    ui: &UiSender,
) {
    if let Some(Err(message)) = fault.as_ref().map(LinkFault::validate) {
        ui.notice(format!("link {from}->{to}: {message}"), true);
        return;
    }
    let action = format!("link {from}->{to}: {}", fault_words(fault.as_ref()));
    let failures = match client.link_fault(from, to, fault).await {
        Ok(()) => Vec::new(),
        Err(error) => vec![format!("node {from}: {}", words(&error))],
    };
    report(ui, action, failures);
}

pub async fn set_disk_delay(client: &Client, node: NodeId, write_delay_ms: u64, ui: &UiSender) {
    let action = match write_delay_ms {
        0 => format!("disk of node {node} healed"),
        ms => format!("disk of node {node}: every write waits {ms} ms"),
    };
    let failures = match client.disk_delay(node, write_delay_ms).await {
        Ok(()) => Vec::new(),
        Err(error) => vec![format!("node {node}: {}", words(&error))],
    };
    report(ui, action, failures);
}
