//! Each node's log side by side: cells coloured by term, the commit line, durability, and the leader's
//! match/next index for each follower.

use super::palette;
use crate::model::{ClusterState, ProcessState};
use egui::{pos2, vec2, Align2, FontId, Rect, Sense, Stroke};
use flotilla_shared::event::Role;

const CELL: f32 = 16.0;
const ROW: f32 = 30.0;
const LABEL_WIDTH: f32 = 64.0;

const SNAPSHOT_FILL: egui::Color32 = egui::Color32::from_rgb(0x5a, 0x3d, 0x66);
const SNAPSHOT_EDGE: egui::Color32 = egui::Color32::from_rgb(0xe6, 0xa1, 0xf0);

/// The snapshot block at the start of a row: over the compacted cells in view, or a narrow tab
/// before the first cell when the compacted prefix is scrolled out of view.
fn snapshot_block(rect: Rect, top: f32, first: u64, cells: u64, compacted: u64) -> Rect {
    let left = rect.left() + LABEL_WIDTH;
    if compacted < first {
        return Rect::from_min_size(pos2(left - 7.0, top + 1.0), vec2(5.0, CELL + 2.0));
    }
    let shown = (compacted - first + 1).min(cells);
    Rect::from_min_size(
        pos2(left, top + 1.0),
        vec2(shown as f32 * CELL - 2.0, CELL + 2.0),
    )
}

pub fn logs_ui(ui: &mut egui::Ui, state: &ClusterState) {
    let rows = state.nodes.len() as f32;
    let width = ui.available_width().max(200.0);
    let (rect, response) = ui.allocate_exact_size(vec2(width, rows * ROW + 26.0), Sense::hover());
    let painter = ui.painter_at(rect);
    let cells = ((width - LABEL_WIDTH - 8.0) / CELL).floor().max(4.0) as u64;
    let newest = state
        .nodes
        .values()
        .map(|node| node.log.last_index())
        .max()
        .unwrap_or(0);
    let first = newest.saturating_sub(cells - 1).max(1);
    let leader = state.leader();
    let mut hovered = None;
    for (row, (id, node)) in state.nodes.iter().enumerate() {
        let top = rect.top() + row as f32 * ROW;
        let label_color = if node.process == ProcessState::Dead {
            palette::DIM_TEXT
        } else {
            palette::role(node.role)
        };
        painter.text(
            pos2(rect.left() + 2.0, top + CELL / 2.0 + 2.0),
            Align2::LEFT_CENTER,
            format!("node {}", id.0),
            FontId::proportional(13.0),
            label_color,
        );
        let compacted = node.snapshot.compacted();
        if compacted > 0 {
            let block = snapshot_block(rect, top, first, cells, compacted);
            painter.rect_filled(block, 3.0, SNAPSHOT_FILL);
            painter.rect_stroke(
                block,
                3.0,
                Stroke::new(1.0, SNAPSHOT_EDGE),
                egui::StrokeKind::Inside,
            );
            if block.width() > 60.0 {
                painter.text(
                    block.center(),
                    Align2::CENTER_CENTER,
                    format!("snapshot ≤ {compacted}"),
                    FontId::proportional(11.0),
                    palette::TEXT,
                );
            }
            if response.hover_pos().is_some_and(|p| block.contains(p)) {
                hovered = Some(format!(
                    "node {}: entries 1-{compacted} compacted into its snapshot at index {} (term {}); its log starts at {}",
                    id.0, node.snapshot.index, node.snapshot.term, node.snapshot.first_log_index
                ));
            }
        }
        for index in first..=first + cells - 1 {
            let x = rect.left() + LABEL_WIDTH + (index - first) as f32 * CELL;
            let cell = Rect::from_min_size(pos2(x, top + 2.0), vec2(CELL - 2.0, CELL));
            if index <= compacted {
                continue;
            }
            let Some(term) = node.log.term_at(index) else {
                painter.rect_stroke(
                    cell,
                    2.0,
                    Stroke::new(1.0, palette::EDGE.gamma_multiply(0.5)),
                    egui::StrokeKind::Inside,
                );
                continue;
            };
            let durable = index <= node.persisted_index;
            let color = palette::term(term);
            if durable {
                painter.rect_filled(cell, 2.0, color);
            } else {
                // Not yet fsynced: outlined only.
                painter.rect_filled(cell, 2.0, color.gamma_multiply(0.25));
                painter.rect_stroke(cell, 2.0, Stroke::new(1.5, color), egui::StrokeKind::Inside);
            }
            if response.hover_pos().is_some_and(|p| cell.contains(p)) {
                let term_text = if term == 0 {
                    "term not seen yet".to_string()
                } else {
                    format!("term {term}")
                };
                hovered = Some(format!(
                    "node {} entry {index}: {term_text}, {}, {}",
                    id.0,
                    if durable {
                        "durable"
                    } else {
                        "not yet durable"
                    },
                    if index <= node.commit_index {
                        "committed"
                    } else {
                        "not committed"
                    }
                ));
            }
        }
        // Configuration entries: a diamond on the cell.
        for index in &node.config.entries {
            if *index < first.max(compacted + 1) || *index > first + cells - 1 {
                continue;
            }
            let center = pos2(
                rect.left() + LABEL_WIDTH + (index - first) as f32 * CELL + CELL / 2.0 - 1.0,
                top + 2.0 + CELL / 2.0,
            );
            let r = 4.5;
            painter.add(egui::Shape::convex_polygon(
                vec![
                    center + vec2(0.0, -r),
                    center + vec2(r, 0.0),
                    center + vec2(0.0, r),
                    center + vec2(-r, 0.0),
                ],
                palette::TEXT,
                Stroke::new(1.0, palette::BACKGROUND),
            ));
            if response
                .hover_pos()
                .is_some_and(|p| p.distance(center) <= CELL / 2.0)
            {
                hovered = Some(format!(
                    "node {} entry {index}: a configuration change{}",
                    id.0,
                    if *index == node.config.config_index {
                        " (the configuration in force on this node)"
                    } else {
                        ""
                    }
                ));
            }
        }
        // The commit index as a line after the last committed cell.
        if node.commit_index + 1 >= first {
            let x = rect.left() + LABEL_WIDTH + (node.commit_index + 1 - first) as f32 * CELL - 1.0;
            painter.line_segment(
                [pos2(x, top - 1.0), pos2(x, top + CELL + 5.0)],
                Stroke::new(2.5, palette::COMMIT_LINE),
            );
        }
        // The leader's view of this follower.
        if let Some(leader) = leader.filter(|leader| leader.id != *id) {
            if let Some(peer) = leader.peers.iter().find(|peer| peer.id == *id) {
                for (index, mark) in [(peer.match_index.0, "m"), (peer.next_index.0, "n")] {
                    if index < first || index > first + cells {
                        continue;
                    }
                    let x = rect.left() + LABEL_WIDTH + (index - first) as f32 * CELL + CELL / 2.0
                        - 1.0;
                    let y = top + CELL + 9.0;
                    let color = if mark == "m" {
                        palette::GOOD
                    } else {
                        palette::DIM_TEXT
                    };
                    painter.text(
                        pos2(x, y),
                        Align2::CENTER_CENTER,
                        mark,
                        FontId::monospace(10.0),
                        color,
                    );
                }
            }
        }
        if node.role == Role::Leader && node.process == ProcessState::Running {
            painter.text(
                pos2(rect.left() + 2.0, top + CELL + 9.0),
                Align2::LEFT_CENTER,
                "leader",
                FontId::proportional(10.0),
                palette::CROWN,
            );
        }
    }
    let legend_y = rect.top() + rows * ROW + 12.0;
    painter.text(
        pos2(rect.left() + 2.0, legend_y),
        Align2::LEFT_CENTER,
        format!(
            "entries {first}-{}: colour = term · outlined = not yet durable · yellow line = commit index · m/n = leader's match/next index · block = compacted into a snapshot · diamond = configuration entry",
            first + cells - 1
        ),
        FontId::proportional(11.0),
        palette::DIM_TEXT,
    );
    if let Some(text) = hovered {
        response.on_hover_text_at_pointer(text);
    }
}
