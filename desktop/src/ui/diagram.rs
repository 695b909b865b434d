//! The space-time diagram: a lane per node, time flowing down, an arrow per message, marks for what
//! happened on each node. It shows the window ending at (live) or around (paused, replay) the moment the
//! rest of the window shows; a click moves that moment, so the timeline and the ring follow.

use super::graph::flight_style;
use super::labels::LabelPlaces;
use super::{clock_text, palette, Intent};
use crate::model::diagram::{self, Arrow, Layout, MarkKind, Options, Window};
use crate::model::{ProcessState, Timeline, ViewMode};
use egui::{pos2, vec2, Align2, Color32, FontId, Pos2, Rect, Sense, Shape, Stroke};
use flotilla_shared::NodeId;
use std::collections::BTreeMap;

/// The spans the user can choose, in milliseconds.
pub const SPANS_MS: [u64; 6] = [1_000, 2_000, 5_000, 10_000, 30_000, 60_000];
const HEADER: f32 = 20.0;
/// The diagram's name for assistive technology (and UI tests).
pub const DIAGRAM_LABEL: &str = "space-time diagram";
const HIT_PX: f32 = 6.0;
/// A mark label's line height.
const LABEL_PX: f32 = 11.0;

/// What the diagram keeps across frames.
pub struct DiagramState {
    pub heartbeats: bool,
    pub span_ms: u64,
    /// The last layout and what it was computed from, reused while nothing changed.
    cache: Option<(CacheKey, Layout)>,
}

#[derive(Clone, PartialEq, Eq)]
struct CacheKey {
    window: Window,
    end: u64,
    start: u64,
    heartbeats: bool,
    clocks: BTreeMap<NodeId, i64>,
}

impl Default for DiagramState {
    fn default() -> Self {
        Self {
            heartbeats: false,
            span_ms: 5_000,
            cache: None,
        }
    }
}

/// The window shown when the rest of the window shows `now_ms`: ending there live, around it otherwise.
pub fn window_at(now_ms: u64, span_ms: u64, mode: ViewMode) -> Window {
    let before = match mode {
        ViewMode::Live => span_ms,
        _ => span_ms * 3 / 4,
    };
    let from_ms = now_ms.saturating_sub(before);
    Window {
        from_ms,
        to_ms: from_ms + span_ms,
    }
}

impl DiagramState {
    /// The layout for `window` (records up to position `through`, on the nodes' `clocks`), computed
    /// again only when the window, the recording or the clocks moved.
    pub fn layout(
        &mut self,
        timeline: &Timeline,
        nodes: &[NodeId],
        window: Window,
        through: u64,
        clocks: &BTreeMap<NodeId, i64>,
    ) -> &Layout {
        let key = CacheKey {
            window,
            end: timeline.end().min(through.saturating_add(1)),
            start: timeline.start(),
            heartbeats: self.heartbeats,
            clocks: clocks.clone(),
        };
        if self.cache.as_ref().is_none_or(|(cached, _)| *cached != key) {
            let layout = diagram::layout(
                diagram::window_records(timeline, window, through),
                nodes,
                window,
                Options {
                    heartbeats: self.heartbeats,
                },
                clocks,
            );
            self.cache = Some((key, layout));
        }
        &self.cache.as_ref().expect("just filled").1
    }
}

/// Draws the diagram; returns what a click asked for. `shown` is the newest record the rest of the
/// window has drawn: live, nothing after it is drawn here either. `clocks` are the live view's clock
/// corrections ([`crate::model::ClockOffsets::all`]). `highlight` holds record positions to draw in
/// red (a failed check's events).
#[allow(clippy::too_many_arguments)]
pub fn diagram_ui(
    ui: &mut egui::Ui,
    timeline: &Timeline,
    clocks: &BTreeMap<NodeId, i64>,
    nodes: &[NodeId],
    now_ms: u64,
    mode: ViewMode,
    shown: u64,
    selected: Option<NodeId>,
    state: &mut DiagramState,
    highlight: &[u64],
) -> Vec<Intent> {
    let mut intents = Vec::new();
    ui.horizontal(|ui| {
        ui.checkbox(&mut state.heartbeats, "heartbeats")
            .on_hover_text("Show heartbeats and the acks that answer them");
        egui::ComboBox::new("diagram-span", "shown")
            .width(60.0)
            .selected_text(span_text(state.span_ms))
            .show_ui(ui, |ui| {
                for span in SPANS_MS {
                    ui.selectable_value(&mut state.span_ms, span, span_text(span));
                }
            });
    });
    let span_ms = state.span_ms;
    let window = window_at(now_ms, span_ms, mode);
    // Paused or replaying, what follows the moment shown is worth seeing too.
    let through = if mode == ViewMode::Live {
        shown
    } else {
        u64::MAX
    };
    let layout = state.layout(timeline, nodes, window, through, clocks);
    let size = ui.available_size().max(vec2(160.0, 200.0));
    let (rect, response) = ui.allocate_exact_size(size, Sense::click());
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Canvas, true, DIAGRAM_LABEL));
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 6.0, palette::BACKGROUND);
    let plot = Rect::from_min_max(pos2(rect.left() + 4.0, rect.top() + HEADER), rect.max);
    let lanes = &layout.lanes;
    let lane_x = |node: NodeId| -> f32 {
        let slot = lanes.iter().position(|n| *n == node).unwrap_or(0);
        plot.left() + plot.width() * (slot as f32 + 0.5) / lanes.len().max(1) as f32
    };
    let span = (window.to_ms - window.from_ms).max(1) as f32;
    let y_of = |at_ms: u64| {
        plot.top() + (at_ms.saturating_sub(window.from_ms)) as f32 / span * plot.height()
    };
    let time_at = |y: f32| {
        window.from_ms + (((y - plot.top()) / plot.height()).clamp(0.0, 1.0) * span) as u64
    };

    // Lanes and their names.
    for node in lanes {
        let x = lane_x(*node);
        let chosen = selected == Some(*node);
        painter.line_segment(
            [pos2(x, plot.top()), pos2(x, plot.bottom())],
            Stroke::new(if chosen { 2.0 } else { 1.0 }, palette::EDGE),
        );
        painter.text(
            pos2(x, rect.top() + 3.0),
            Align2::CENTER_TOP,
            format!("node {node}"),
            FontId::proportional(12.0),
            if chosen {
                palette::TEXT
            } else {
                palette::DIM_TEXT
            },
        );
    }
    // A tick every second (or every 10 s on long spans), labelled at the left.
    let tick = if span_ms > 20_000 { 10_000 } else { 1_000 };
    let mut at = window.from_ms.div_ceil(tick) * tick;
    while at <= window.to_ms {
        let y = y_of(at);
        painter.line_segment(
            [pos2(plot.left(), y), pos2(plot.right(), y)],
            Stroke::new(0.5, palette::EDGE.gamma_multiply(0.5)),
        );
        painter.text(
            pos2(plot.left() + 2.0, y),
            Align2::LEFT_BOTTOM,
            &clock_text(at)[3..8],
            FontId::monospace(9.0),
            palette::DIM_TEXT,
        );
        at += tick;
    }
    // The moment the rest of the window shows.
    let cursor = y_of(now_ms);
    painter.line_segment(
        [pos2(plot.left(), cursor), pos2(plot.right(), cursor)],
        Stroke::new(1.0, palette::TIMER),
    );

    let pointer = response.hover_pos();
    let mut hovered: Option<(f32, String, u64)> = None;
    for arrow in &layout.arrows {
        let (color, _) = flight_style(arrow.kind);
        let red = highlight.contains(&arrow.position());
        let color = if red { palette::BAD } else { color };
        let segment = arrow_segment(arrow, &lane_x, &y_of);
        draw_arrow(&painter, arrow, segment, color);
        if let Some(pointer) = pointer {
            let distance = distance_to_segment(pointer, segment.0, segment.1);
            if distance < HIT_PX && hovered.as_ref().is_none_or(|(best, ..)| distance < *best) {
                hovered = Some((distance, arrow.describe(), arrow.position()));
            }
        }
    }
    let label_all = layout.marks.len() <= 40;
    let mut clicked_mark = None;
    let mut labels = LabelPlaces::default();
    for mark in &layout.marks {
        let center = pos2(lane_x(mark.node), y_of(mark.at_ms));
        let color = if highlight.contains(&mark.position) {
            palette::BAD
        } else {
            mark_color(mark.kind)
        };
        painter.add(Shape::convex_polygon(
            vec![
                center + vec2(0.0, -5.0),
                center + vec2(5.0, 0.0),
                center + vec2(0.0, 5.0),
                center + vec2(-5.0, 0.0),
            ],
            color,
            Stroke::new(1.0, palette::BACKGROUND),
        ));
        let near = pointer.is_some_and(|p| p.distance(center) < HIT_PX + 2.0);
        if label_all || near || !matches!(mark.kind, MarkKind::Commit) {
            // The last lane's labels go to its left, inside the panel.
            let (offset, align) = if lanes.last() == Some(&mark.node) && lanes.len() > 1 {
                (vec2(-7.0, 0.0), Align2::RIGHT_CENTER)
            } else {
                (vec2(7.0, 0.0), Align2::LEFT_CENTER)
            };
            let galley =
                painter.layout_no_wrap(mark.label.clone(), FontId::proportional(10.0), color);
            let wanted = align.anchor_size(center + offset, vec2(galley.size().x, LABEL_PX));
            // Labels at one moment (a node's commit and snapshot, two nodes committing at once, one
            // lane's label reaching into the next) stack downwards, by at most two lines: further
            // down a label no longer reads as its mark's. One that finds no place is left to the
            // hover.
            let at_or_below =
                (0..=2).map(|below| wanted.translate(vec2(0.0, below as f32 * LABEL_PX)));
            if let Some(place) = labels.place(at_or_below) {
                let top = place.center().y - galley.size().y / 2.0;
                painter.galley(pos2(place.min.x, top), galley, color);
            }
        }
        if near {
            hovered = Some((
                0.0,
                format!("node {}: {}", mark.node, mark.label),
                mark.position,
            ));
            clicked_mark = Some((mark.node, mark.position));
        }
    }
    if layout.hidden_heartbeats > 0 || layout.truncated {
        let mut note = String::new();
        if layout.hidden_heartbeats > 0 {
            note.push_str(&format!("{} heartbeats hidden", layout.hidden_heartbeats));
        }
        if layout.truncated {
            note.push_str(" · oldest left out");
        }
        painter.text(
            rect.right_bottom() + vec2(-4.0, -4.0),
            Align2::RIGHT_BOTTOM,
            note,
            FontId::proportional(10.0),
            palette::DIM_TEXT,
        );
    }

    if response.clicked() {
        if let Some(pointer) = response.interact_pointer_pos() {
            let nearest_lane = lanes
                .iter()
                .min_by(|a, b| {
                    (lane_x(**a) - pointer.x)
                        .abs()
                        .total_cmp(&(lane_x(**b) - pointer.x).abs())
                })
                .copied();
            let (node, position) = match (clicked_mark, &hovered) {
                (Some((node, position)), _) => (Some(node), position),
                (None, Some((_, _, position))) => (nearest_lane, *position),
                (None, None) => (nearest_lane, timeline.position_at_time(time_at(pointer.y))),
            };
            if let Some(node) = node {
                intents.push(Intent::Select(node));
            }
            intents.push(Intent::Scrub(position));
        }
    }
    if let Some((_, text, _)) = hovered {
        response.on_hover_text_at_pointer(text);
    }
    intents
}

fn span_text(span_ms: u64) -> String {
    format!("{} s", span_ms / 1_000)
}

fn mark_color(kind: MarkKind) -> Color32 {
    match kind {
        MarkKind::Role(role) => palette::role(role),
        MarkKind::ElectionTimeout => palette::TIMER,
        MarkKind::Commit => palette::COMMIT_LINE,
        MarkKind::Truncated => palette::BAD,
        MarkKind::Snapshot => Color32::from_rgb(0x3a, 0xa6, 0xc2),
        MarkKind::Membership => Color32::from_rgb(0x9b, 0x6b, 0xdf),
        MarkKind::Fault => palette::CUT,
        MarkKind::Process(ProcessState::Running) => palette::GOOD,
        MarkKind::Process(_) => palette::DIM_TEXT,
    }
}

/// Where an arrow is drawn: from its send (or, send unknown, a stub a third of the way out) to its
/// receive (or its drop, or, arrival unknown, a stub a third of the way).
fn arrow_segment(
    arrow: &Arrow,
    lane_x: &impl Fn(NodeId) -> f32,
    y_of: &impl Fn(u64) -> f32,
) -> (Pos2, Pos2) {
    let (from_x, to_x) = (lane_x(arrow.from), lane_x(arrow.to));
    let part = |fraction: f32| from_x + (to_x - from_x) * fraction;
    match (arrow.sent, arrow.received, &arrow.dropped) {
        (Some(sent), _, Some((drop, _))) => (
            pos2(from_x, y_of(sent.at_ms)),
            pos2(part(0.6), y_of(drop.at_ms.max(sent.at_ms)) + 4.0),
        ),
        (Some(sent), Some(received), _) => (
            pos2(from_x, y_of(sent.at_ms)),
            pos2(to_x, y_of(received.at_ms)),
        ),
        (Some(sent), None, None) => {
            let y = y_of(sent.at_ms);
            (pos2(from_x, y), pos2(part(0.35), y + 6.0))
        }
        (None, Some(received), _) => {
            let y = y_of(received.at_ms);
            (pos2(part(0.65), y - 6.0), pos2(to_x, y))
        }
        (None, None, Some((drop, _))) => {
            let y = y_of(drop.at_ms);
            (pos2(from_x, y), pos2(part(0.6), y + 4.0))
        }
        (None, None, None) => {
            let y = y_of(0);
            (pos2(from_x, y), pos2(from_x, y))
        }
    }
}

fn draw_arrow(painter: &egui::Painter, arrow: &Arrow, (from, to): (Pos2, Pos2), color: Color32) {
    let known = arrow.sent.is_some() && (arrow.received.is_some() || arrow.dropped.is_some());
    let stroke = Stroke::new(if arrow.heartbeat { 0.8 } else { 1.3 }, color);
    if known {
        painter.line_segment([from, to], stroke);
    } else {
        painter.add(Shape::dashed_line(&[from, to], stroke, 3.0, 3.0));
    }
    if arrow.dropped.is_some() {
        let r = 4.0;
        let cross = Stroke::new(1.6, palette::BAD);
        painter.line_segment([to + vec2(-r, -r), to + vec2(r, r)], cross);
        painter.line_segment([to + vec2(-r, r), to + vec2(r, -r)], cross);
    } else if arrow.received.is_some() {
        let direction = (to - from).normalized();
        let side = vec2(-direction.y, direction.x);
        let back = to - direction * 7.0;
        painter.add(Shape::convex_polygon(
            vec![to, back + side * 3.0, back - side * 3.0],
            color,
            Stroke::NONE,
        ));
    }
}

fn distance_to_segment(point: Pos2, a: Pos2, b: Pos2) -> f32 {
    let ab = b - a;
    let length = ab.length_sq();
    if length < f32::EPSILON {
        return point.distance(a);
    }
    let t = ((point - a).dot(ab) / length).clamp(0.0, 1.0);
    point.distance(a + ab * t)
}
