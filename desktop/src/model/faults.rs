//! Link and disk faults as the nodes report them.

use super::state::ClusterState;
use flotilla_shared::api::LinkFault;
use flotilla_shared::NodeId;

/// The fault on `from`'s outgoing link to `to`, as the state knows it (`None`: healthy).
pub fn link_fault(state: &ClusterState, from: NodeId, to: NodeId) -> Option<LinkFault> {
    state
        .nodes
        .get(&from)?
        .link_faults
        .iter()
        .find(|link| link.to == to)
        .map(|link| link.fault)
        .filter(|fault| !fault.is_healed())
}

/// A link fault in a few words.
pub fn fault_words(fault: Option<&LinkFault>) -> String {
    let Some(fault) = fault.filter(|fault| !fault.is_healed()) else {
        return "healthy".into();
    };
    let mut parts = Vec::new();
    if fault.cut {
        parts.push("cut".to_string());
    }
    if fault.delay_ms > 0 || fault.jitter_ms > 0 {
        parts.push(format!("slow {}±{} ms", fault.delay_ms, fault.jitter_ms));
    }
    if fault.loss > 0.0 {
        parts.push(format!("lossy {:.0}%", fault.loss * 100.0));
    }
    parts.join(", ")
}
