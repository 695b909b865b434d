//! Drawing. Each `*_ui` function draws one part from the model and returns what the user asked for;
//! the app applies those intents in one place after drawing.
//!
//! Owns the drawing, the window's own words for what the user asks ([`Intent`], [`Tempo`]) and the
//! little state the panels edit across frames. May read the model, never change it, and may not touch
//! the backend: what the user asks of the cluster goes out as an intent the app translates.

mod chart;
mod checks;
mod cluster_ops;
mod diagram;
mod events;
mod failover;
mod faults;
mod graph;
mod intent;
mod labels;
mod logs;
pub mod palette;
mod panels;
mod recording;
mod reshape;
mod scenarios;

pub use chart::chart_ui;
pub use checks::{checks_ui, BROKEN, HOLDS, SHOW_VIOLATION, UNDECIDED};
pub use cluster_ops::{cluster_ops_ui, ADD_NODE};
pub use diagram::{diagram_ui, window_at, DiagramState, DIAGRAM_LABEL};
pub use events::{events_ui, EventFilter};
pub use failover::failover_ui;
pub use faults::{faults_ui, link_editor_ui, preset_intents, LinkEditor, Preset};
pub use graph::{graph_ui, is_animating};
pub use intent::{ClusterIntent, Intent, RecordingIntent, ScenarioIntent, Tempo};
pub use logs::logs_ui;
pub use panels::{node_actions_ui, timeline_ui, top_bar_ui, TopBarState};
pub use recording::{default_name, recording_menu_ui, FileAction, RecordingDialog};
pub use scenarios::{scenario_run_ui, scenarios_ui};

/// `HH:MM:SS.mmm` (UTC) of a Unix time in milliseconds.
pub fn clock_text(at_ms: u64) -> String {
    let day_ms = at_ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}
