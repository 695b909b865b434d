//! The recording menu: save the session, open a recording, export the client history, and go back to
//! the live cluster. A chosen action asks for a path on one line, then goes out as an intent.

use super::{palette, Intent, RecordingIntent};
use egui::RichText;
use std::path::PathBuf;

/// What the menu is asking a path for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileAction {
    Save,
    Open,
    ExportHistory,
}

impl FileAction {
    /// The menu item and the confirming button.
    pub fn words(self) -> (&'static str, &'static str) {
        match self {
            FileAction::Save => ("Save recording…", "Save"),
            FileAction::Open => ("Open recording…", "Open"),
            FileAction::ExportHistory => ("Export client history…", "Export"),
        }
    }
}

/// The menu's state across frames.
#[derive(Clone, Debug, Default)]
pub struct RecordingDialog {
    pub action: Option<FileAction>,
    pub path: String,
    /// Where recordings go by default.
    pub folder: PathBuf,
}

/// A file name for a new recording or export, after the moment it is made.
pub fn default_name(action: FileAction, now_ms: u64) -> String {
    let clock = super::clock_text(now_ms).replace([':', '.'], "");
    let day = now_ms / 86_400_000;
    match action {
        FileAction::ExportHistory => format!("flotilla-history-{day}-{clock}.json"),
        _ => format!("flotilla-{day}-{clock}.ndjson.gz"),
    }
}

/// `viewing`: the name of the recording shown instead of the live cluster, if one is.
pub fn recording_menu_ui(
    ui: &mut egui::Ui,
    dialog: &mut RecordingDialog,
    viewing: Option<&str>,
    now_ms: u64,
) -> Vec<Intent> {
    let mut intents = Vec::new();
    ui.horizontal(|ui| {
        ui.menu_button("Recording", |ui| {
            for action in [
                FileAction::Save,
                FileAction::Open,
                FileAction::ExportHistory,
            ] {
                if ui.button(action.words().0).clicked() {
                    dialog.action = Some(action);
                    dialog.path = match action {
                        FileAction::Open => dialog.folder.display().to_string() + "/",
                        _ => dialog
                            .folder
                            .join(default_name(action, now_ms))
                            .display()
                            .to_string(),
                    };
                    ui.close();
                }
            }
            if viewing.is_some() && ui.button("Back to the live cluster").clicked() {
                intents.push(Intent::Recording(RecordingIntent::BackToCluster));
                ui.close();
            }
        });
        if let Some(name) = viewing {
            ui.label(RichText::new(format!("showing {name}")).color(palette::TIMER));
        }
    });
    if let Some(action) = dialog.action {
        ui.horizontal(|ui| {
            let (_, confirm) = action.words();
            ui.add(
                egui::TextEdit::singleline(&mut dialog.path)
                    .desired_width(ui.available_width() - 110.0)
                    .hint_text("file path"),
            );
            if ui.button(confirm).clicked() && !dialog.path.trim().is_empty() {
                let path = PathBuf::from(dialog.path.trim());
                intents.push(Intent::Recording(match action {
                    FileAction::Save => RecordingIntent::Save(path),
                    FileAction::Open => RecordingIntent::Open(path),
                    FileAction::ExportHistory => RecordingIntent::ExportHistory(path),
                }));
                dialog.action = None;
            }
            if ui.button("Cancel").clicked() {
                dialog.action = None;
            }
        });
    }
    intents
}
