//! Recordings: a watched session saved to a file, so it can be reopened, replayed and shared.
//!
//! # Format (version 1)
//!
//! A recording is gzip-compressed NDJSON: one JSON object per line, each with a `"line"` tag.
//! The first line is the [`Header`] (`"line":"header"`); every other line is one thing the desktop
//! learned, in the order it learned it:
//!
//! | `line`      | fields                                                                  |
//! |-------------|-------------------------------------------------------------------------|
//! | `header`    | `format` (`"flotilla-recording"`), `version` (`1`), `nodes`, `created_ms`, `description`, `complete` |
//! | `event`     | `event`: one node event exactly as `/v1/events` sends it                 |
//! | `status`    | `at_ms` (the desktop's clock), `status`: a `/v1/status` answer           |
//! | `reachable` | `at_ms`, `node`, `reachable`: whether the node answered its status poll  |
//! | `process`   | `at_ms`, `node`, `state` (`running`, `paused`, `dead`): a fault action on the process |
//! | `submit`    | `invoked_ms`, `completed_ms`, `text`, and `index`+`term` when acknowledged or `error`; `latency_ms` |
//!
//! Link faults, partitions and disk faults travel as the events the nodes emit for them
//! (`partition_changed`, `link_fault_changed`, `disk_fault_changed`). Times are Unix milliseconds.
//! A reader must refuse a `version` it does not know, and should skip lines whose `line` tag it does
//! not know (later versions may add kinds). `complete` is false when the session was longer than the
//! desktop keeps and the file holds only its newest part.

use crate::api::Status;
use crate::event::Event;
use crate::ids::{LogIndex, NodeId, Term};
use serde::{Deserialize, Serialize};

/// The `format` every recording's header names.
pub const FORMAT: &str = "flotilla-recording";
/// The version this build writes and reads.
pub const VERSION: u32 = 1;

/// The first line of a recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// The cluster's nodes when the recording starts.
    pub nodes: Vec<NodeId>,
    pub created_ms: u64,
    /// What was watched, e.g. "3 local processes".
    pub description: String,
    /// Whether the file holds the whole session from its start.
    pub complete: bool,
}

/// A process as the desktop left it after a fault action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessLine {
    Running,
    Paused,
    Dead,
}

/// One line of a recording.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "line", rename_all = "snake_case")]
pub enum Line {
    Header(Header),
    Event {
        event: Event,
    },
    Status {
        at_ms: u64,
        status: Box<Status>,
    },
    Reachable {
        at_ms: u64,
        node: NodeId,
        reachable: bool,
    },
    Process {
        at_ms: u64,
        node: NodeId,
        state: ProcessLine,
    },
    /// A message the desktop submitted, and its answer.
    Submit {
        invoked_ms: u64,
        completed_ms: u64,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<LogIndex>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        term: Option<Term>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The latency as measured, finer than the two times' difference.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        latency_ms: Option<f64>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    #[test]
    fn a_line_reads_back_as_written_and_names_its_kind() {
        let line = Line::Event {
            event: Event {
                node: NodeId(2),
                seq: 7,
                at_ms: 1_000,
                kind: EventKind::CommitAdvanced {
                    commit_index: LogIndex(4),
                },
            },
        };
        let text = serde_json::to_string(&line).unwrap();
        assert!(
            text.starts_with(r#"{"line":"event","event":{"node":2"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Line>(&text).unwrap(), line);
        let submit =
            r#"{"line":"submit","invoked_ms":5,"completed_ms":9,"text":"hi","error":"no leader"}"#;
        match serde_json::from_str::<Line>(submit).unwrap() {
            Line::Submit { index, error, .. } => {
                assert_eq!(index, None);
                assert_eq!(error.as_deref(), Some("no leader"));
            }
            other => panic!("read as {other:?}"),
        }
    }
}
