//! What changes the ring's shape: members placed on it (moving smoothly when the configuration
//! changes), learners drawn hollow with their catch-up, and snapshots travelling along the edges.

use super::palette;
use crate::model::{bytes_words, ClusterState, MAX_NODES};
use egui::{vec2, Align2, Color32, FontId, Pos2, Rect, Stroke, Vec2};
use flotilla_shared::api::MemberRole;
use flotilla_shared::NodeId;
use std::collections::BTreeMap;
use std::f32::consts::TAU;

/// How long the ring takes to move to a new layout.
const RELAYOUT_SECONDS: f32 = 0.6;
const SNAPSHOT_COLOR: Color32 = Color32::from_rgb(0xe6, 0xa1, 0xf0);

/// Where each node sits on the ring (at most [`MAX_NODES`]). When nodes come or go the others glide
/// to their new places instead of jumping.
pub fn ring_positions(
    ctx: &egui::Context,
    state: &ClusterState,
    center: Pos2,
    radius: f32,
) -> BTreeMap<NodeId, Pos2> {
    let shown: Vec<NodeId> = state.nodes.keys().copied().take(MAX_NODES).collect();
    let count = shown.len().max(1);
    shown
        .iter()
        .enumerate()
        .map(|(slot, id)| {
            let target = -TAU / 4.0 + TAU * slot as f32 / count as f32;
            let angle = ctx.animate_value_with_time(
                egui::Id::unique(("flotilla-ring-angle", id.0)),
                target,
                RELAYOUT_SECONDS,
            );
            (*id, center + radius * Vec2::angled(angle))
        })
        .collect()
}

/// Draws a learner (or a node not yet in the configuration) hollow, with an arc showing how far it
/// has caught up with the leader's log.
pub fn member_overlay(
    painter: &egui::Painter,
    state: &ClusterState,
    node: NodeId,
    at: Pos2,
    radius: f32,
    fill: Color32,
) {
    let role = state.member_role(node);
    if role == Some(MemberRole::Voter) {
        return;
    }
    painter.circle_filled(at, radius - 5.0, palette::BACKGROUND);
    painter.circle_stroke(at, radius - 2.5, Stroke::new(5.0, fill));
    // Outside the configuration: never in one yet (joining), or taken out of it (leaving).
    let had_configuration = state
        .nodes
        .get(&node)
        .is_some_and(|view| !view.config.members.is_empty());
    let label = match role {
        Some(_) => "learner",
        None if had_configuration => "leaving",
        None => "joining",
    };
    painter.text(
        at + vec2(0.0, radius + 12.0),
        Align2::CENTER_CENTER,
        label,
        FontId::proportional(11.0),
        palette::DIM_TEXT,
    );
    if let Some(catch_up) = state.catch_up(node) {
        let sweep = TAU * catch_up.fraction();
        let steps = ((sweep / TAU) * 64.0).ceil().max(2.0) as usize;
        let points: Vec<Pos2> = (0..=steps)
            .map(|step| {
                at + (radius - 10.0) * Vec2::angled(-TAU / 4.0 + sweep * step as f32 / steps as f32)
            })
            .collect();
        painter.add(egui::Shape::line(points, Stroke::new(3.0, palette::GOOD)));
        painter.text(
            at + vec2(0.0, radius + 24.0),
            Align2::CENTER_CENTER,
            format!("{}/{}", catch_up.match_index, catch_up.leader_last),
            FontId::monospace(10.0),
            palette::GOOD,
        );
    }
}

/// Snapshots on their way: a box along the edge at the share sent, with bytes; returns the hover
/// text of the one under the pointer.
pub fn draw_transfers(
    painter: &egui::Painter,
    state: &ClusterState,
    positions: &BTreeMap<NodeId, Pos2>,
    node_radius: f32,
    now_ms: u64,
    pointer: Option<Pos2>,
) -> Option<String> {
    let mut hovered = None;
    for transfer in state.transfers.iter().filter(|t| t.is_shown(now_ms)) {
        let (Some(from), Some(to)) = (positions.get(&transfer.from), positions.get(&transfer.to))
        else {
            continue;
        };
        let dir = (*to - *from).normalized();
        let start = *from + dir * node_radius;
        let end = *to - dir * node_radius;
        painter.line_segment(
            [start, start + (end - start) * transfer.progress()],
            Stroke::new(3.0, SNAPSHOT_COLOR.gamma_multiply(0.5)),
        );
        let at = start + (end - start) * transfer.progress() - dir.rot90() * 10.0;
        let block = Rect::from_center_size(at, vec2(16.0, 12.0));
        painter.rect_filled(block, 2.0, SNAPSHOT_COLOR);
        painter.rect_stroke(
            block,
            2.0,
            Stroke::new(1.0, Color32::from_black_alpha(160)),
            egui::StrokeKind::Inside,
        );
        let words = if transfer.done {
            format!("snapshot {} sent", bytes_words(transfer.total_bytes))
        } else {
            format!(
                "snapshot {}/{}",
                bytes_words(transfer.sent_bytes),
                bytes_words(transfer.total_bytes)
            )
        };
        painter.text(
            at + vec2(0.0, -14.0),
            Align2::CENTER_CENTER,
            &words,
            FontId::proportional(11.0),
            palette::TEXT,
        );
        if pointer.is_some_and(|p| block.expand(4.0).contains(p)) {
            hovered = Some(format!(
                "snapshot at index {} (term {}) from node {} to node {}: {} of {} in {} chunks ({:.0}%)",
                transfer.index,
                transfer.term,
                transfer.from,
                transfer.to,
                bytes_words(transfer.sent_bytes),
                bytes_words(transfer.total_bytes),
                transfer.chunks,
                transfer.progress() * 100.0
            ));
        }
    }
    hovered
}
