//! Link and disk faults: the editor a click on a link opens (each direction on its own, since a
//! fault lives on one node's outgoing link), the presets, and how a faulty link or disk is drawn.

use super::labels::LabelPlaces;
use super::{palette, ClusterIntent, Intent};
use crate::model::{fault_words, link_fault, ClusterState, NodeView, ProcessState};
use egui::{vec2, Align2, Color32, FontId, Pos2, RichText, Shape, Stroke};
use flotilla_shared::api::LinkFault;
use flotilla_shared::NodeId;
use std::collections::BTreeMap;

/// The open link editor and what is being edited in it, across frames.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkEditor {
    /// The link shown, by its two nodes (lower id first).
    pub link: Option<(NodeId, NodeId)>,
    /// Each direction's values being edited, starting from what the nodes report.
    drafts: BTreeMap<(NodeId, NodeId), LinkFault>,
}

impl LinkEditor {
    pub fn open(&mut self, a: NodeId, b: NodeId) {
        self.link = Some((a.min(b), a.max(b)));
        self.drafts.clear();
    }

    pub fn close(&mut self) {
        self.link = None;
        self.drafts.clear();
    }
}

/// The label of a direction's buttons and headings: `1->2`.
pub fn direction(from: NodeId, to: NodeId) -> String {
    format!("{}->{}", from.0, to.0)
}

/// The window of the open link: both directions, each with its own values, Apply and Heal.
pub fn link_editor_ui(
    ctx: &egui::Context,
    editor: &mut LinkEditor,
    state: &ClusterState,
    live: bool,
) -> Vec<Intent> {
    let mut intents = Vec::new();
    let Some((a, b)) = editor.link else {
        return intents;
    };
    let mut open = true;
    egui::Window::new(format!("Link between node {a} and node {b}"))
        .id(egui::Id::unique("flotilla-link-editor"))
        .open(&mut open)
        .collapsible(false)
        .resizable(false)
        .default_width(300.0)
        .show(ctx, |ui| {
            ui.label(
                RichText::new(
                    "A fault lives on the sending node's outgoing link: each direction is set on \
                     its own.",
                )
                .size(11.0)
                .color(palette::DIM_TEXT),
            );
            for (from, to) in [(a, b), (b, a)] {
                ui.separator();
                let current = link_fault(state, from, to);
                let draft = editor
                    .drafts
                    .entry((from, to))
                    .or_insert_with(|| current.unwrap_or_default());
                ui.horizontal(|ui| {
                    ui.label(RichText::new(format!("node {from} -> node {to}")).strong());
                    let color = if current.is_some() {
                        palette::CUT
                    } else {
                        palette::GOOD
                    };
                    ui.label(RichText::new(fault_words(current.as_ref())).color(color));
                });
                ui.checkbox(&mut draft.cut, format!("cut {}", direction(from, to)));
                ui.add(
                    egui::Slider::new(&mut draft.delay_ms, 0..=5_000)
                        .text("delay ms")
                        .logarithmic(true),
                );
                ui.add(
                    egui::Slider::new(&mut draft.jitter_ms, 0..=2_000)
                        .text("jitter ms")
                        .logarithmic(true),
                );
                ui.add(egui::Slider::new(&mut draft.loss, 0.0..=1.0).text("loss"));
                let why_not = (!live).then_some("the view shows the recording: go live to act");
                ui.horizontal(|ui| {
                    let apply = ui
                        .add_enabled(
                            why_not.is_none(),
                            egui::Button::new(format!("Apply {}", direction(from, to))),
                        )
                        .on_disabled_hover_text(why_not.unwrap_or_default());
                    if apply.clicked() {
                        let fault = Some(*draft).filter(|fault| !fault.is_healed());
                        intents.push(Intent::Cluster(ClusterIntent::SetLinkFault {
                            from,
                            to,
                            fault,
                        }));
                    }
                    let heal = ui
                        .add_enabled(
                            why_not.is_none(),
                            egui::Button::new(format!("Heal {}", direction(from, to))),
                        )
                        .on_disabled_hover_text(why_not.unwrap_or_default());
                    if heal.clicked() {
                        *draft = LinkFault::default();
                        intents.push(Intent::Cluster(ClusterIntent::SetLinkFault {
                            from,
                            to,
                            fault: None,
                        }));
                    }
                });
            }
        });
    if !open {
        intents.push(Intent::CloseLink);
    }
    intents
}

/// A fault preset, chosen with one click.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    OneWayCut,
    FlakyNetwork,
    SlowLeaderDisk,
    HealAll,
}

impl Preset {
    pub const ALL: [Preset; 4] = [
        Preset::OneWayCut,
        Preset::FlakyNetwork,
        Preset::SlowLeaderDisk,
        Preset::HealAll,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Preset::OneWayCut => "One-way cut leader->follower",
            Preset::FlakyNetwork => "Flaky network",
            Preset::SlowLeaderDisk => "Slow disk on the leader",
            Preset::HealAll => "Heal all links and disks",
        }
    }

    pub fn explain(self) -> &'static str {
        match self {
            Preset::OneWayCut => {
                "Cuts the leader's outgoing link to one follower (the selected one, else the \
                 first): the follower stops hearing the leader, the leader still hears it"
            }
            Preset::FlakyNetwork => {
                "Every link: delay of half a heartbeat with as much jitter, and 10% loss"
            }
            Preset::SlowLeaderDisk => {
                "Every write on the leader waits a heartbeat before its fsync"
            }
            Preset::HealAll => "Removes every link and disk fault the nodes report",
        }
    }
}

/// A heartbeat of the cluster, for faults sized to its tempo.
fn heartbeat_ms(state: &ClusterState) -> u64 {
    state
        .nodes
        .values()
        .map(|node| node.heartbeat_ms)
        .max()
        .filter(|ms| *ms > 0)
        .unwrap_or(50)
}

fn up(node: &NodeView) -> bool {
    node.process != ProcessState::Dead
}

/// What a preset asks of the cluster, or why it cannot apply now.
pub fn preset_intents(
    preset: Preset,
    state: &ClusterState,
    selected: Option<NodeId>,
) -> Result<Vec<ClusterIntent>, String> {
    let leader = state.leader().map(|leader| leader.id);
    let heartbeat = heartbeat_ms(state);
    match preset {
        Preset::OneWayCut => {
            let leader = leader.ok_or("no leader known")?;
            let follower = selected
                .filter(|id| *id != leader && state.nodes.get(id).is_some_and(up))
                .or_else(|| {
                    state
                        .nodes
                        .values()
                        .find(|node| node.id != leader && up(node))
                        .map(|node| node.id)
                })
                .ok_or("no follower to cut off")?;
            Ok(vec![ClusterIntent::SetLinkFault {
                from: leader,
                to: follower,
                fault: Some(LinkFault {
                    cut: true,
                    ..LinkFault::default()
                }),
            }])
        }
        Preset::FlakyNetwork => {
            let ids: Vec<NodeId> = state.nodes.keys().copied().collect();
            let fault = LinkFault {
                cut: false,
                delay_ms: heartbeat / 2,
                jitter_ms: heartbeat / 2,
                loss: 0.1,
            };
            Ok(ids
                .iter()
                .flat_map(|from| {
                    ids.iter().filter(move |to| *to != from).map(move |to| {
                        ClusterIntent::SetLinkFault {
                            from: *from,
                            to: *to,
                            fault: Some(fault),
                        }
                    })
                })
                .collect())
        }
        Preset::SlowLeaderDisk => Ok(vec![ClusterIntent::SetDiskDelay {
            node: leader.ok_or("no leader known")?,
            write_delay_ms: heartbeat,
        }]),
        Preset::HealAll => {
            let mut intents = Vec::new();
            for node in state.nodes.values() {
                for link in &node.link_faults {
                    intents.push(ClusterIntent::SetLinkFault {
                        from: node.id,
                        to: link.to,
                        fault: None,
                    });
                }
                if node.disk_write_delay_ms > 0 {
                    intents.push(ClusterIntent::SetDiskDelay {
                        node: node.id,
                        write_delay_ms: 0,
                    });
                }
            }
            if intents.is_empty() {
                return Err("no link or disk fault to heal".into());
            }
            Ok(intents)
        }
    }
}

/// The presets and the selected node's disk.
pub fn faults_ui(
    ui: &mut egui::Ui,
    state: &ClusterState,
    selected: Option<NodeId>,
    live: bool,
) -> Vec<Intent> {
    let mut intents = Vec::new();
    ui.label(
        RichText::new("Click a link on the ring to edit its faults.")
            .size(11.0)
            .color(palette::DIM_TEXT),
    );
    ui.horizontal_wrapped(|ui| {
        for preset in Preset::ALL {
            let outcome = if live {
                preset_intents(preset, state, selected)
            } else {
                Err("the view shows the recording: go live to act".into())
            };
            let response = ui
                .add_enabled(outcome.is_ok(), egui::Button::new(preset.label()))
                .on_hover_text(preset.explain());
            let response = match &outcome {
                Err(why) => response.on_disabled_hover_text(why),
                Ok(_) => response,
            };
            if response.clicked() {
                if let Ok(cluster) = outcome {
                    intents.extend(cluster.into_iter().map(Intent::Cluster));
                }
            }
        }
    });
    let links: Vec<(String, String)> = state
        .nodes
        .values()
        .flat_map(|node| {
            node.link_faults
                .iter()
                .map(move |link| (direction(node.id, link.to), fault_words(Some(&link.fault))))
        })
        .collect();
    let every_link = state.nodes.len() * state.nodes.len().saturating_sub(1);
    let faulty: Vec<String> = links_in_words(&links, every_link)
        .into_iter()
        .chain(
            state
                .nodes
                .values()
                .filter(|node| node.disk_write_delay_ms > 0)
                .map(|node| format!("disk of node {}: +{} ms", node.id, node.disk_write_delay_ms)),
        )
        .collect();
    if !faulty.is_empty() {
        ui.label(
            RichText::new(faulty.join(" · "))
                .color(palette::CUT)
                .size(11.5),
        );
    }
    intents
}

/// A fault in as few words as fit beside a link: `cut`, `+100±20 ms`, `10% lost`.
fn ring_words(fault: &LinkFault) -> String {
    let mut parts = Vec::new();
    if fault.cut {
        parts.push("cut".to_string());
    }
    if fault.delay_ms > 0 || fault.jitter_ms > 0 {
        parts.push(format!("+{}±{} ms", fault.delay_ms, fault.jitter_ms));
    }
    if fault.loss > 0.0 {
        parts.push(format!("{:.0}% lost", fault.loss * 100.0));
    }
    parts.join(" ")
}

/// "20 links: +250±250 ms 10% lost" when three links or more carry the very same fault (a preset),
/// with its colour.
fn one_fault_on_many_links(labels: &[RingLabel]) -> Option<(String, Color32)> {
    let [first, rest @ ..] = labels else {
        return None;
    };
    (rest.len() >= 2 && rest.iter().all(|label| label.text == first.text)).then(|| {
        (
            format!("{} links: {}", labels.len(), first.text),
            first.color,
        )
    })
}

/// Faulty link directions `(direction, fault)` in words, one fault at a time: "1->2, 3->1: cut", or
/// "every link (20): …" when all `every_link` directions carry the same one (a preset).
fn links_in_words(links: &[(String, String)], every_link: usize) -> Vec<String> {
    let mut by_fault: Vec<(&str, Vec<&str>)> = Vec::new();
    for (direction, fault) in links {
        match by_fault.iter_mut().find(|(words, _)| words == fault) {
            Some((_, directions)) => directions.push(direction),
            None => by_fault.push((fault, vec![direction])),
        }
    }
    by_fault
        .into_iter()
        .map(|(fault, directions)| {
            if directions.len() == every_link && every_link > 2 {
                format!("every link ({every_link}): {fault}")
            } else {
                format!("{}: {fault}", directions.join(", "))
            }
        })
        .collect()
}

/// Colour of a link direction with faults.
const SLOW: Color32 = Color32::from_rgb(0xf2, 0x9e, 0x2e);
const LOSSY: Color32 = Color32::from_rgb(0xd0, 0x7b, 0xe0);

/// The words of a faulty link direction, where they would go and in what colour.
pub struct RingLabel {
    pub at: Pos2,
    pub text: String,
    pub color: Color32,
}

/// Draws one direction of a link that has a fault, on its side of the edge (as its messages fly):
/// cut red and broken at the middle, slow orange and wavy, lossy dotted. Returns its words, to go
/// near the middle once the ring knows where there is room.
pub fn draw_faulty_direction(
    painter: &egui::Painter,
    from: Pos2,
    to: Pos2,
    fault: &LinkFault,
) -> RingLabel {
    let dir = (to - from).normalized();
    let side = dir.rot90() * 4.0;
    let (a, b) = (from + side, to + side);
    let mid = a + (b - a) * 0.5;
    if fault.cut {
        let gap = dir * 10.0;
        let stroke = Stroke::new(2.2, palette::CUT);
        painter.line_segment([a, mid - gap], stroke);
        painter.line_segment([mid + gap, b], stroke);
        let normal = dir.rot90() * 7.0;
        painter.line_segment([mid - gap + normal, mid - gap - normal], stroke);
    } else if fault.loss > 0.0 {
        let color = if fault.delay_ms > 0 { SLOW } else { LOSSY };
        painter.extend(Shape::dotted_line(&[a, b], color, 7.0, 1.6));
    } else {
        painter.extend(Shape::dashed_line(
            &[a, b],
            Stroke::new(2.0, SLOW),
            10.0,
            3.0,
        ));
    }
    RingLabel {
        // Nearer the sender than the middle, so the two directions' words do not overlap.
        at: a + (b - a) * 0.36 + dir.rot90() * 13.0,
        text: ring_words(fault),
        color: if fault.cut { palette::CUT } else { SLOW },
    }
}

/// Puts the links' words on the ring where they overprint neither each other nor a node; says in a
/// corner of `rect` how many found no room (the Faults panel lists every link in words). Many links
/// with the same fault (a preset) are said once, in that corner.
pub fn draw_ring_labels(
    painter: &egui::Painter,
    rect: egui::Rect,
    labels: Vec<RingLabel>,
    node_circles: impl IntoIterator<Item = egui::Rect>,
) {
    let corner = |text: String, color: Color32| {
        painter.text(
            rect.left_bottom() + vec2(6.0, -6.0),
            Align2::LEFT_BOTTOM,
            text,
            FontId::proportional(10.5),
            color,
        );
    };
    if let Some((text, color)) = one_fault_on_many_links(&labels) {
        corner(text, color);
        return;
    }
    let mut places = LabelPlaces::default();
    for circle in node_circles {
        places.block(circle);
    }
    let mut left_out = 0;
    for label in labels {
        let galley = painter.layout_no_wrap(label.text, FontId::proportional(10.5), label.color);
        let wanted = egui::Rect::from_center_size(label.at, galley.size());
        // Where it belongs, else a little further out from the edge.
        let normal = (label.at - rect.center()).normalized() * galley.size().y;
        match places.place([wanted, wanted.translate(normal)]) {
            Some(place) => painter.galley(place.min, galley, label.color),
            None => left_out += 1,
        }
    }
    if left_out > 0 {
        corner(
            format!("{left_out} link labels left out for room: see Faults"),
            palette::DIM_TEXT,
        );
    }
}

/// A slow disk under a node: a small drum and its extra write time.
pub fn draw_slow_disk(
    painter: &egui::Painter,
    node_center: Pos2,
    radius: f32,
    write_delay_ms: u64,
) {
    let at = node_center + vec2(0.0, radius + 14.0);
    let rect = egui::Rect::from_center_size(at, vec2(16.0, 11.0));
    painter.rect_filled(rect, 3.0, SLOW);
    painter.text(
        at + vec2(12.0, 0.0),
        Align2::LEFT_CENTER,
        format!("slow disk +{write_delay_ms} ms"),
        FontId::proportional(10.5),
        SLOW,
    );
}

/// The clickable handle in the middle of a link, which opens its editor.
pub fn link_handle(ui: &egui::Ui, a: NodeId, b: NodeId, pa: Pos2, pb: Pos2) -> Option<Intent> {
    let mid = pa + (pb - pa) * 0.5;
    let rect = egui::Rect::from_center_size(mid, vec2(22.0, 22.0));
    let response = ui.interact(
        rect,
        egui::Id::unique(("flotilla-ring-link", a.0, b.0)),
        egui::Sense::click(),
    );
    let label = format!("link between node {} and node {}", a.0, b.0);
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
    if response.hovered() {
        ui.painter()
            .circle_stroke(mid, 9.0, Stroke::new(1.5, palette::TEXT));
    }
    let response = response.on_hover_text("edit this link's faults (each direction)");
    response.clicked().then_some(Intent::OpenLink(a, b))
}

/// The link nearest `pointer`, if it passes within a few points of it.
pub fn link_at(pointer: Pos2, links: &[(NodeId, NodeId, Pos2, Pos2)]) -> Option<(NodeId, NodeId)> {
    links
        .iter()
        .map(|(a, b, pa, pb)| {
            let along = (*pb - *pa).length_sq().max(1.0);
            let t = ((pointer - *pa).dot(*pb - *pa) / along).clamp(0.0, 1.0);
            let nearest = *pa + (*pb - *pa) * t;
            (nearest.distance(pointer), t, *a, *b)
        })
        // Not near either node: a click there is the node's.
        .filter(|(distance, t, _, _)| *distance <= 6.0 && *t > 0.15 && *t < 0.85)
        .min_by(|x, y| x.0.total_cmp(&y.0))
        .map(|(_, _, a, b)| (a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use egui::pos2;

    fn label(text: &str) -> RingLabel {
        RingLabel {
            at: pos2(0.0, 0.0),
            text: text.into(),
            color: SLOW,
        }
    }

    #[test]
    fn the_panel_says_each_fault_once_with_the_links_that_carry_it() {
        let link = |direction: &str, fault: &str| (direction.to_owned(), fault.to_owned());
        let mixed = [
            link("1->2", "cut"),
            link("1->3", "slow 100±0 ms"),
            link("3->1", "cut"),
        ];
        assert_eq!(
            links_in_words(&mixed, 6),
            ["1->2, 3->1: cut", "1->3: slow 100±0 ms"]
        );
        let preset: Vec<(String, String)> = (1..=3)
            .flat_map(|from| {
                (1..=3)
                    .filter(move |to| *to != from)
                    .map(move |to| (from, to))
            })
            .map(|(from, to)| link(&format!("{from}->{to}"), "lossy 10%"))
            .collect();
        assert_eq!(links_in_words(&preset, 6), ["every link (6): lossy 10%"]);
        assert_eq!(
            links_in_words(&preset[..5], 6),
            ["1->2, 1->3, 2->1, 2->3, 3->1: lossy 10%"]
        );
    }

    #[test]
    fn many_links_with_one_fault_are_said_once_and_mixed_ones_each() {
        let preset: Vec<RingLabel> = (0..20).map(|_| label("+250±250 ms 10% lost")).collect();
        assert_eq!(
            one_fault_on_many_links(&preset).map(|(text, _)| text),
            Some("20 links: +250±250 ms 10% lost".to_owned())
        );
        let two = [label("cut"), label("cut")];
        assert_eq!(one_fault_on_many_links(&two), None, "two fit on the ring");
        let mixed = [label("cut"), label("+100±0 ms"), label("cut")];
        assert_eq!(one_fault_on_many_links(&mixed), None);
        assert_eq!(one_fault_on_many_links(&[]), None);
    }

    #[test]
    fn a_click_along_a_link_finds_it_but_not_near_its_nodes() {
        let links = [
            (NodeId(1), NodeId(2), pos2(0.0, 0.0), pos2(100.0, 0.0)),
            (NodeId(1), NodeId(3), pos2(0.0, 0.0), pos2(0.0, 100.0)),
        ];
        assert_eq!(
            link_at(pos2(60.0, 4.0), &links),
            Some((NodeId(1), NodeId(2)))
        );
        assert_eq!(
            link_at(pos2(3.0, 40.0), &links),
            Some((NodeId(1), NodeId(3)))
        );
        // Too far from any link, or where a node is drawn.
        assert_eq!(link_at(pos2(50.0, 20.0), &links), None);
        assert_eq!(link_at(pos2(5.0, 0.0), &links), None);
    }
}
