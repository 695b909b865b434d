//! Drawing. Each `*_ui` function draws one part from the model and returns what the user asked for;
//! the app applies those intents in one place after drawing.

mod chart;
mod events;
mod graph;
mod logs;
pub mod palette;
mod panels;

pub use chart::chart_ui;
pub use events::{events_ui, EventFilter};
pub use graph::{graph_ui, is_animating};
pub use logs::logs_ui;
pub use panels::{node_actions_ui, timeline_ui, top_bar_ui, TopBarState};

use crate::backend::Command;
use flotilla_shared::NodeId;

/// What the user asked for this frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Intent {
    /// Something for the cluster: goes to the backend.
    Cluster(Command),
    Select(NodeId),
    PauseView,
    GoLive,
    /// Move the paused view by this many records.
    Step(i64),
    /// Show the recorded moment at this position.
    Scrub(u64),
    Replay {
        speed: f64,
    },
}

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
