//! The live checks: one line per safety property, green while it holds, red with the records that
//! break it and a button that shows that moment.

use super::{palette, Intent};
use crate::model::checks::CheckStatus;
use egui::RichText;

/// What each check's line starts with.
pub const HOLDS: &str = "holds";
pub const BROKEN: &str = "BROKEN";
pub const UNDECIDED: &str = "undecided";

/// The button that jumps to a violation.
pub const SHOW_VIOLATION: &str = "Show";

pub fn checks_ui(ui: &mut egui::Ui, statuses: &[CheckStatus]) -> Vec<Intent> {
    let mut intents = Vec::new();
    for status in statuses {
        ui.horizontal_wrapped(|ui| {
            let (mark, color) = match (&status.violation, status.undecided) {
                (Some(_), _) => (BROKEN, palette::BAD),
                (None, true) => (UNDECIDED, palette::TIMER),
                (None, false) => (HOLDS, palette::GOOD),
            };
            ui.label(RichText::new(mark).color(color).strong());
            ui.label(RichText::new(status.check.title()).color(color));
            let covered = if status.undecided {
                format!("{} · too many to decide", status.covered)
            } else {
                status.covered.clone()
            };
            ui.label(RichText::new(covered).size(10.0).color(palette::DIM_TEXT));
        });
        if let Some(violation) = &status.violation {
            ui.horizontal_wrapped(|ui| {
                ui.add_space(16.0);
                ui.label(
                    RichText::new(&violation.text)
                        .size(11.0)
                        .color(palette::BAD),
                );
                let records: Vec<String> = violation
                    .positions
                    .iter()
                    .map(|p| format!("#{p}"))
                    .collect();
                if let Some(first) = violation.positions.first() {
                    if ui
                        .small_button(SHOW_VIOLATION)
                        .on_hover_text(format!(
                            "Pause at the first record that shows it (records {})",
                            records.join(", ")
                        ))
                        .clicked()
                    {
                        intents.push(Intent::Scrub(*first));
                    }
                }
            });
        }
    }
    intents
}
