//! The cluster as a ring of nodes with messages travelling along the edges.

use super::{faults, palette, Intent};
use crate::model::{link_fault, Arrival, ClusterState, FlightKind, NodeView, ProcessState};
use egui::{pos2, vec2, Align2, Color32, FontId, Pos2, Sense, Shape, Stroke, Vec2};
use flotilla_shared::event::Role;
use flotilla_shared::NodeId;
use std::f32::consts::TAU;

const NODE_RADIUS: f32 = 40.0;

fn is_cut(state: &ClusterState, a: NodeId, b: NodeId) -> bool {
    let isolates = |x: NodeId, y: NodeId| {
        state
            .nodes
            .get(&x)
            .is_some_and(|node| node.isolated_from.contains(&y))
    };
    isolates(a, b) || isolates(b, a)
}

pub(super) fn flight_style(kind: FlightKind) -> (Color32, f32) {
    match kind {
        FlightKind::PreVoteRequest => (Color32::from_rgb(0xd8, 0xb0, 0x6a), 5.0),
        FlightKind::VoteRequest => (Color32::from_rgb(0xf2, 0x9e, 0x2e), 6.5),
        FlightKind::VoteGranted => (palette::GOOD, 6.5),
        FlightKind::VoteDenied => (palette::BAD, 6.5),
        FlightKind::Heartbeat => (Color32::from_rgb(0x9f, 0xb4, 0xd9), 4.0),
        FlightKind::Append { .. } => (Color32::from_rgb(0x5b, 0x9d, 0xff), 8.0),
        FlightKind::Ack => (Color32::from_rgb(0x5c, 0xd6, 0xc0), 4.5),
        FlightKind::Reject => (Color32::from_rgb(0xff, 0x6b, 0x3d), 6.0),
        FlightKind::TimeoutNow => (Color32::from_rgb(0xc0, 0x7b, 0xff), 7.0),
    }
}

fn ease(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

fn arc_points(center: Pos2, radius: f32, from_angle: f32, sweep: f32) -> Vec<Pos2> {
    let steps = ((sweep.abs() / TAU) * 64.0).ceil().max(2.0) as usize;
    (0..=steps)
        .map(|step| {
            let angle = from_angle + sweep * step as f32 / steps as f32;
            center + radius * Vec2::angled(angle)
        })
        .collect()
}

fn crown(painter: &egui::Painter, top_center: Pos2) {
    let w = 14.0;
    let h = 11.0;
    let base = top_center.y;
    let points = vec![
        pos2(top_center.x - w, base),
        pos2(top_center.x - w, base - h),
        pos2(top_center.x - w / 2.0, base - h * 0.45),
        pos2(top_center.x, base - h * 1.25),
        pos2(top_center.x + w / 2.0, base - h * 0.45),
        pos2(top_center.x + w, base - h),
        pos2(top_center.x + w, base),
    ];
    painter.add(Shape::convex_polygon(
        points,
        palette::CROWN,
        Stroke::new(1.0, Color32::from_rgb(0x8a, 0x6a, 0x10)),
    ));
}

fn node_fill(node: &NodeView) -> Color32 {
    match node.process {
        ProcessState::Dead => palette::DEAD,
        ProcessState::Paused => palette::role(node.role).gamma_multiply(0.45),
        ProcessState::Running if !node.reachable => palette::DEAD,
        ProcessState::Running => palette::role(node.role),
    }
}

/// Cut off from every other node (not just from some).
fn is_isolated(node: &NodeView, cluster_size: usize) -> bool {
    !node.isolated_from.is_empty() && node.isolated_from.len() + 1 >= cluster_size
}

fn status_word(node: &NodeView, cluster_size: usize) -> &'static str {
    match node.process {
        ProcessState::Dead => "dead",
        ProcessState::Paused => "paused",
        ProcessState::Running if !node.reachable => "unreachable",
        ProcessState::Running if is_isolated(node, cluster_size) => "isolated",
        ProcessState::Running => match node.role {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        },
    }
}

/// Draws the ring at `now_ms` (cluster clock); returns a click's intent.
pub fn graph_ui(
    ui: &mut egui::Ui,
    state: &ClusterState,
    now_ms: u64,
    selected: Option<NodeId>,
) -> Vec<Intent> {
    let mut intents = Vec::new();
    let size = ui.available_size().max(vec2(200.0, 200.0));
    let (rect, response) = ui.allocate_exact_size(size, Sense::click());
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 8.0, palette::BACKGROUND);
    let ring_radius = (rect.width().min(rect.height()) / 2.0 - NODE_RADIUS - 26.0).max(40.0);
    let center = rect.center();
    let positions = super::reshape::ring_positions(ui.ctx(), state, center, ring_radius);

    // Edges: every pair talks; a partition on either side cuts the link.
    let ids: Vec<NodeId> = positions.keys().copied().collect();
    let mut links = Vec::new();
    let mut fault_labels = Vec::new();
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            let (pa, pb) = (positions[a], positions[b]);
            if is_cut(state, *a, *b) {
                let mid = pa + (pb - pa) * 0.5;
                let dir = (pb - pa).normalized();
                let gap = dir * 12.0;
                let stroke = Stroke::new(2.0, palette::CUT);
                painter.extend(Shape::dashed_line(&[pa, mid - gap], stroke, 6.0, 5.0));
                painter.extend(Shape::dashed_line(&[mid + gap, pb], stroke, 6.0, 5.0));
                let normal = dir.rot90() * 8.0;
                painter.line_segment([mid - gap + normal, mid - gap - normal], stroke);
                painter.line_segment([mid + gap + normal, mid + gap - normal], stroke);
            } else {
                painter.line_segment([pa, pb], Stroke::new(1.5, palette::EDGE));
            }
            // Link faults live on one node's outgoing link: each direction drawn on its side.
            for (from, to, pf, pt) in [(*a, *b, pa, pb), (*b, *a, pb, pa)] {
                if let Some(fault) = link_fault(state, from, to) {
                    fault_labels.push(faults::draw_faulty_direction(&painter, pf, pt, &fault));
                }
            }
            intents.extend(faults::link_handle(ui, *a, *b, pa, pb));
            links.push((*a, *b, pa, pb));
        }
    }
    // The nodes' circles with their selection ring and election timer.
    let circles = positions
        .values()
        .map(|at| egui::Rect::from_center_size(*at, Vec2::splat(2.0 * (NODE_RADIUS + 12.0))));
    faults::draw_ring_labels(&painter, rect, fault_labels, circles);
    if response.clicked() {
        let link = response
            .interact_pointer_pos()
            .and_then(|pointer| faults::link_at(pointer, &links));
        if let Some((a, b)) = link {
            intents.push(Intent::OpenLink(a, b));
        }
    }

    // Messages in flight: requests and replies on opposite sides of the edge.
    let pointer = response.hover_pos();
    let mut hovered: Option<String> = None;
    for flight in &state.flights {
        let Some(drawn) = flight.drawn(now_ms) else {
            continue;
        };
        let (Some(from), Some(to)) = (positions.get(&flight.from), positions.get(&flight.to))
        else {
            continue;
        };
        let dir = (*to - *from).normalized();
        let start = *from + dir * NODE_RADIUS;
        let end = *to - dir * NODE_RADIUS;
        let side = if flight.from < flight.to { 1.0 } else { -1.0 };
        // An older node does not report drops: its message into a cut link stops at the cut.
        let progress = if flight.msg == 0 && is_cut(state, flight.from, flight.to) {
            drawn.progress.min(0.5)
        } else {
            drawn.progress
        };
        let at = start + (end - start) * ease(progress) + dir.rot90() * 7.0 * side;
        let (color, radius) = flight_style(flight.kind);
        let color = color.gamma_multiply(drawn.alpha.clamp(0.0, 1.0));
        match flight.arrival {
            Arrival::Lands => {
                painter.circle_filled(at, radius, color);
            }
            // Nobody reported its arrival (yet): a ring, not a dot, short of the receiver.
            Arrival::Unknown => {
                painter.circle_filled(at, radius * 0.6, color.gamma_multiply(0.35));
                painter.circle_stroke(at, radius, Stroke::new(1.8, color));
            }
            Arrival::Dropped(_) => {
                painter.circle_filled(at, radius, color);
                if now_ms >= flight.end_ms {
                    let d = radius * 0.9;
                    let stroke = Stroke::new(2.0, palette::BAD.gamma_multiply(drawn.alpha));
                    painter.line_segment([at + vec2(-d, -d), at + vec2(d, d)], stroke);
                    painter.line_segment([at + vec2(d, -d), at + vec2(-d, d)], stroke);
                }
            }
        }
        if let FlightKind::Append { entries } = flight.kind {
            painter.text(
                at + vec2(0.0, -radius - 7.0),
                Align2::CENTER_CENTER,
                entries.to_string(),
                FontId::proportional(11.0),
                palette::TEXT,
            );
        }
        if pointer.is_some_and(|p| p.distance(at) <= radius + 4.0) {
            let mut text = format!(
                "{} from node {} to node {} (event #{} of node {})",
                flight.kind.label(),
                flight.from,
                flight.to,
                flight.seq,
                flight.node
            );
            if flight.msg != 0 {
                text.push_str(&format!(
                    " · message #{} of node {}",
                    flight.msg, flight.from
                ));
            }
            if !flight.detail.is_empty() {
                text.push_str(&format!("\n{}", flight.detail));
            }
            let receiver_down = state
                .nodes
                .get(&flight.to)
                .and_then(|node| match node.process {
                    ProcessState::Dead => Some("dead"),
                    ProcessState::Paused => Some("paused"),
                    ProcessState::Running => None,
                });
            text.push_str(&format!("\n{}", flight.arrival_words(receiver_down)));
            hovered = Some(text);
        }
    }

    hovered =
        super::reshape::draw_transfers(&painter, state, &positions, NODE_RADIUS, now_ms, pointer)
            .or(hovered);

    for (id, node) in &state.nodes {
        let Some(at) = positions.get(id).copied() else {
            continue;
        };
        let fill = node_fill(node);
        let node_rect = egui::Rect::from_center_size(at, Vec2::splat(NODE_RADIUS * 2.0));
        let node_response = ui.interact(
            node_rect,
            egui::Id::unique(("flotilla-ring-node", id.0)),
            Sense::click(),
        );
        node_response.widget_info(|| {
            egui::WidgetInfo::labeled(
                egui::Role::Button,
                true,
                format!("node {} on the ring", id.0),
            )
        });
        if node_response.clicked() {
            intents.push(Intent::Select(*id));
        }
        if selected == Some(*id) {
            painter.circle_stroke(at, NODE_RADIUS + 11.0, Stroke::new(2.0, palette::TEXT));
        }
        painter.circle_filled(at, NODE_RADIUS, fill);
        let outline = if node_response.hovered() {
            palette::TEXT
        } else {
            Color32::from_black_alpha(120)
        };
        painter.circle_stroke(at, NODE_RADIUS, Stroke::new(1.5, outline));
        super::reshape::member_overlay(&painter, state, *id, at, NODE_RADIUS, fill);
        if is_isolated(node, state.nodes.len()) && node.process != ProcessState::Dead {
            let ring = arc_points(at, NODE_RADIUS + 4.0, 0.0, TAU);
            painter.extend(Shape::dashed_line(
                &ring,
                Stroke::new(2.0, palette::CUT),
                5.0,
                4.0,
            ));
        }
        // The election timer: the ring shrinks as the real deadline approaches.
        if let (Some(deadline), ProcessState::Running) = (node.election_deadline_ms, node.process) {
            if node.election_timeout_ms > 0 && deadline > now_ms {
                let left = (deadline - now_ms) as f32 / node.election_timeout_ms as f32;
                let sweep = TAU * left.clamp(0.0, 1.0);
                let points = arc_points(at, NODE_RADIUS + 6.5, -TAU / 4.0, sweep);
                painter.add(Shape::line(points, Stroke::new(3.5, palette::TIMER)));
            }
        }
        let text_color = if node.process == ProcessState::Dead {
            palette::DIM_TEXT
        } else {
            palette::TEXT
        };
        painter.text(
            at + vec2(0.0, -11.0),
            Align2::CENTER_CENTER,
            format!("node {}", id.0),
            FontId::proportional(15.0),
            text_color,
        );
        painter.text(
            at + vec2(0.0, 7.0),
            Align2::CENTER_CENTER,
            format!("term {}", node.term.0),
            FontId::proportional(12.5),
            text_color,
        );
        painter.text(
            at + vec2(0.0, 22.0),
            Align2::CENTER_CENTER,
            status_word(node, state.nodes.len()),
            FontId::proportional(11.0),
            text_color.gamma_multiply(0.85),
        );
        if node.disk_write_delay_ms > 0 {
            faults::draw_slow_disk(&painter, at, NODE_RADIUS, node.disk_write_delay_ms);
        }
        match node.process {
            ProcessState::Dead => {
                let d = NODE_RADIUS * 0.55;
                let stroke = Stroke::new(3.0, palette::BAD.gamma_multiply(0.8));
                painter.line_segment([at + vec2(-d, -d), at + vec2(d, d)], stroke);
                painter.line_segment([at + vec2(d, -d), at + vec2(-d, d)], stroke);
            }
            ProcessState::Paused => {
                for dx in [-6.0, 6.0] {
                    painter.rect_filled(
                        egui::Rect::from_center_size(
                            at + vec2(dx, -NODE_RADIUS - 14.0),
                            vec2(5.0, 14.0),
                        ),
                        1.0,
                        palette::TEXT,
                    );
                }
            }
            ProcessState::Running => {
                if node.role == Role::Leader && node.reachable {
                    crown(&painter, at + vec2(0.0, -NODE_RADIUS - 6.0));
                }
            }
        }
    }
    if let Some(text) = hovered {
        response.on_hover_text_at_pointer(text);
    }
    intents
}

/// Whether anything on the ring moves at `now_ms`: a message in the air or a running timer.
pub fn is_animating(state: &ClusterState, now_ms: u64) -> bool {
    state
        .flights
        .iter()
        .any(|flight| flight.gone_ms() >= now_ms)
        || state
            .transfers
            .iter()
            .any(|transfer| transfer.is_shown(now_ms))
        || state.nodes.values().any(|node| {
            node.process == ProcessState::Running
                && node
                    .election_deadline_ms
                    .is_some_and(|deadline| deadline > now_ms)
        })
}
