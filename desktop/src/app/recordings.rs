//! The app's side of recordings: saving and reading files off the UI thread, showing a recording in
//! place of the live cluster (which goes on being recorded), and going back.

use super::FlotillaApp;
use crate::backend::unix_ms;
use crate::model::checks::Checks;
use crate::model::{ClusterModel, Record, ViewMode};
use crate::recording::{self, Opened};
use crate::ui::RecordingIntent;
use flotilla_shared::NodeId;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// What the window shows while a recording is open, and the live cluster it set aside.
pub struct Viewing {
    pub name: String,
    /// The live cluster, still recorded; `None` when the window was opened on a file alone.
    live: Option<SetAside>,
}

struct SetAside {
    model: ClusterModel,
    checks: Checks,
    nodes: Vec<NodeId>,
    description: String,
}

/// A file job's outcome, for the UI thread.
pub enum FileDone {
    Saved { path: PathBuf, records: usize },
    Opened { path: PathBuf, opened: Opened },
    Failed(String),
}

impl Viewing {
    /// The live cluster set aside, if there is one.
    pub fn live_model(&mut self) -> Option<&mut ClusterModel> {
        self.live.as_mut().map(|live| &mut live.model)
    }
}

impl FlotillaApp {
    /// The name of the recording shown, if one is.
    pub fn viewing_name(&self) -> Option<&str> {
        self.viewing.as_ref().map(|viewing| viewing.name.as_str())
    }

    pub(super) fn apply_recording(&mut self, intent: RecordingIntent) {
        match intent {
            RecordingIntent::Save(path) => {
                let records: Vec<Record> = self
                    .model
                    .timeline
                    .iter()
                    .map(|(_, record)| record.clone())
                    .collect();
                let complete = self.model.timeline.start() == 0;
                let nodes = self.nodes.clone();
                let description = self.bar.description.clone();
                self.notice(
                    format!("saving {} records to {}…", records.len(), path.display()),
                    false,
                );
                self.run_file_job(move || {
                    match recording::save(
                        &path,
                        &nodes,
                        &description,
                        unix_ms(),
                        complete,
                        &records,
                    ) {
                        Ok(records) => FileDone::Saved { path, records },
                        Err(error) => FileDone::Failed(format!("could not save: {error:#}")),
                    }
                });
            }
            RecordingIntent::Open(path) => {
                self.notice(format!("reading {}…", path.display()), false);
                self.run_file_job(move || match recording::open(&path) {
                    Ok(opened) => FileDone::Opened { path, opened },
                    Err(error) => FileDone::Failed(format!("could not open: {error:#}")),
                });
            }
            RecordingIntent::ExportHistory(path) => {
                let history = recording::export_history(&self.model.timeline);
                let written = serde_json::to_vec_pretty(&history)
                    .map_err(anyhow::Error::from)
                    .and_then(|bytes| Ok(std::fs::write(&path, bytes)?));
                match written {
                    Ok(()) => self.notice(
                        format!(
                            "client history ({} operations) written to {}",
                            history.as_array().map_or(0, Vec::len),
                            path.display()
                        ),
                        false,
                    ),
                    Err(error) => self.notice(format!("could not export: {error:#}"), true),
                }
            }
            RecordingIntent::BackToCluster => self.back_to_cluster(),
        }
    }

    fn notice(&mut self, text: String, error: bool) {
        self.bar.notice = Some((text, error));
    }

    fn run_file_job(&mut self, job: impl FnOnce() -> FileDone + Send + 'static) {
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(job());
        });
        self.file_jobs.push(done_rx);
    }

    /// Takes in finished file jobs; returns whether some are still running.
    pub(super) fn poll_file_jobs(&mut self) -> bool {
        let mut finished = Vec::new();
        self.file_jobs.retain(|job| match job.try_recv() {
            Ok(done) => {
                finished.push(done);
                false
            }
            Err(mpsc::TryRecvError::Empty) => true,
            Err(mpsc::TryRecvError::Disconnected) => false,
        });
        for done in finished {
            match done {
                FileDone::Saved { path, records } => self.notice(
                    format!("saved {records} records to {}", path.display()),
                    false,
                ),
                FileDone::Opened { path, opened } => self.show_recording(&path, opened),
                FileDone::Failed(text) => self.notice(text, true),
            }
        }
        !self.file_jobs.is_empty()
    }

    /// Shows `opened` in every view, paused at its first record; the live cluster is set aside.
    pub fn show_recording(&mut self, path: &Path, opened: Opened) {
        let mut model = ClusterModel::new(&opened.header.nodes);
        let count = opened.records.len();
        for record in opened.records {
            model.record(record);
        }
        model.mode = ViewMode::Paused {
            position: model.timeline.start(),
        };
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        let model = std::mem::replace(&mut self.model, model);
        let checks = std::mem::take(&mut self.checks);
        let nodes = std::mem::replace(&mut self.nodes, opened.header.nodes.clone());
        let description = std::mem::replace(
            &mut self.bar.description,
            format!("recording {name}: {}", opened.header.description),
        );
        let live = match self.viewing.take() {
            // Another recording was shown: the live cluster stays set aside as it was.
            Some(viewing) => viewing.live,
            None if self.updates.is_some() => Some(SetAside {
                model,
                checks,
                nodes,
                description,
            }),
            None => None,
        };
        self.viewing = Some(Viewing {
            name: name.clone(),
            live,
        });
        self.selected = None;
        let partial = if opened.header.complete {
            ""
        } else {
            " (the newest part of a longer session)"
        };
        self.notice(
            format!("showing {name}: {count} records{partial}; Replay or scrub to move"),
            false,
        );
    }

    fn back_to_cluster(&mut self) {
        let Some(viewing) = self.viewing.take() else {
            return;
        };
        match viewing.live {
            Some(live) => {
                self.model = live.model;
                self.checks = live.checks;
                self.nodes = live.nodes;
                self.bar.description = live.description;
                self.selected = None;
                self.notice("back to the live cluster".into(), false);
            }
            None => {
                self.notice("this window was opened on a recording alone".into(), true);
                self.viewing = Some(viewing);
            }
        }
    }
}
