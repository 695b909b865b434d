//! Saving a session to a recording file and reading one back (format: `flotilla_shared::recording`),
//! and exporting the desktop's client history for outside linearizability checkers.

use crate::model::checks::invoked_ms;
use crate::model::{ProcessState, Record, SubmitRecord, Timeline};
use anyhow::{bail, Context as _};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use flotilla_shared::recording::{Header, Line, ProcessLine, FORMAT, VERSION};
use flotilla_shared::NodeId;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

/// A recording read back.
#[derive(Debug)]
pub struct Opened {
    pub header: Header,
    pub records: Vec<Record>,
    /// Lines of kinds this version does not know, skipped.
    pub skipped: usize,
}

/// The recording's line for `record`.
pub fn line_of(record: &Record) -> Line {
    match record {
        Record::Event(event) => Line::Event {
            event: event.clone(),
        },
        Record::Status { at_ms, status } => Line::Status {
            at_ms: *at_ms,
            status: status.clone(),
        },
        Record::Reachable {
            at_ms,
            node,
            reachable,
        } => Line::Reachable {
            at_ms: *at_ms,
            node: *node,
            reachable: *reachable,
        },
        Record::Process { at_ms, node, state } => Line::Process {
            at_ms: *at_ms,
            node: *node,
            state: match state {
                ProcessState::Running => ProcessLine::Running,
                ProcessState::Paused => ProcessLine::Paused,
                ProcessState::Dead => ProcessLine::Dead,
            },
        },
        Record::Submitted(submit) => {
            let (index, term, error) = match &submit.outcome {
                Ok((index, term)) => (Some(*index), Some(*term), None),
                Err(error) => (None, None, Some(error.clone())),
            };
            Line::Submit {
                invoked_ms: invoked_ms(submit),
                completed_ms: submit.at_ms,
                text: submit.text.clone(),
                index,
                term,
                error,
                latency_ms: Some(submit.latency_ms),
            }
        }
    }
}

/// The record a line stands for (`None` for the header).
pub fn record_of(line: Line) -> anyhow::Result<Option<Record>> {
    Ok(Some(match line {
        Line::Header(_) => return Ok(None),
        Line::Event { event } => Record::Event(event),
        Line::Status { at_ms, status } => Record::Status { at_ms, status },
        Line::Reachable {
            at_ms,
            node,
            reachable,
        } => Record::Reachable {
            at_ms,
            node,
            reachable,
        },
        Line::Process { at_ms, node, state } => Record::Process {
            at_ms,
            node,
            state: match state {
                ProcessLine::Running => ProcessState::Running,
                ProcessLine::Paused => ProcessState::Paused,
                ProcessLine::Dead => ProcessState::Dead,
            },
        },
        Line::Submit {
            invoked_ms,
            completed_ms,
            text,
            index,
            term,
            error,
            latency_ms,
        } => {
            let outcome = match (index, term, error) {
                (Some(index), Some(term), None) => Ok((index, term)),
                (_, _, Some(error)) => Err(error),
                _ => bail!("a submit line needs both index and term, or an error"),
            };
            Record::Submitted(SubmitRecord {
                at_ms: completed_ms,
                text,
                outcome,
                latency_ms: latency_ms
                    .unwrap_or_else(|| completed_ms.saturating_sub(invoked_ms) as f64),
            })
        }
    }))
}

/// Writes `records` (what the timeline holds) to `path` as a gzip-compressed recording; returns how
/// many records were written. `complete`: whether they start at the session's beginning.
pub fn save<'a>(
    path: &Path,
    nodes: &[NodeId],
    description: &str,
    created_ms: u64,
    complete: bool,
    records: impl IntoIterator<Item = &'a Record>,
) -> anyhow::Result<usize> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    // Written beside the target and renamed, so a failed save never leaves half a file under its name.
    let partial = path.with_extension("partial");
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let mut out = GzEncoder::new(BufWriter::new(file), Compression::fast());
    let header = Line::Header(Header {
        format: FORMAT.into(),
        version: VERSION,
        nodes: nodes.to_vec(),
        created_ms,
        description: description.into(),
        complete,
    });
    let mut write_line = |line: &Line| -> anyhow::Result<()> {
        serde_json::to_writer(&mut out, line)?;
        out.write_all(b"\n")?;
        Ok(())
    };
    write_line(&header)?;
    let mut count = 0;
    for record in records {
        write_line(&line_of(record))?;
        count += 1;
    }
    let file = out.finish()?.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(count)
}

/// Saves what `timeline` holds.
pub fn save_timeline(
    path: &Path,
    nodes: &[NodeId],
    description: &str,
    created_ms: u64,
    timeline: &Timeline,
) -> anyhow::Result<usize> {
    let records: Vec<&Record> = timeline.iter().map(|(_, record)| record).collect();
    save(
        path,
        nodes,
        description,
        created_ms,
        timeline.start() == 0,
        records,
    )
}

/// Reads a recording; a clear error names the line that is wrong.
pub fn open(path: &Path) -> anyhow::Result<Opened> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = BufReader::new(GzDecoder::new(file));
    let mut lines = reader.lines().enumerate();
    let not_a_recording = || format!("{} is not a Flotilla recording", path.display());
    let (_, first) = lines.next().with_context(not_a_recording)?;
    let first = first.with_context(not_a_recording)?;
    let header = match serde_json::from_str::<Line>(&first) {
        Ok(Line::Header(header)) if header.format == FORMAT => header,
        _ => bail!(not_a_recording()),
    };
    if header.version != VERSION {
        bail!(
            "{} is a version {} recording; this build reads version {VERSION}",
            path.display(),
            header.version
        );
    }
    let mut records = Vec::new();
    let mut skipped = 0;
    for (number, line) in lines {
        let line = line.with_context(|| format!("{}: line {}", path.display(), number + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}: line {} is not JSON", path.display(), number + 1))?;
        let known = matches!(
            value.get("line").and_then(|tag| tag.as_str()),
            Some("event" | "status" | "reachable" | "process" | "submit")
        );
        if !known {
            skipped += 1;
            continue;
        }
        let parsed: Line = serde_json::from_value(value)
            .with_context(|| format!("{}: line {}", path.display(), number + 1))?;
        let record = record_of(parsed)
            .with_context(|| format!("{}: line {}", path.display(), number + 1))?;
        records.extend(record);
    }
    Ok(Opened {
        header,
        records,
        skipped,
    })
}

/// The desktop's client history as a JSON array of operations in the Jepsen/Knossos style that
/// Porcupine's and Knossos' JSON readers take: an `invoke` and then an `ok` (acknowledged: `value` is
/// `[text, index]`) or `info` (unknown outcome) per submit, `process` a client that never has two
/// operations at once, `time` in nanoseconds since the first invocation.
pub fn export_history(timeline: &Timeline) -> serde_json::Value {
    let submits: Vec<&SubmitRecord> = timeline
        .iter()
        .filter_map(|(_, record)| match record {
            Record::Submitted(submit) => Some(submit),
            _ => None,
        })
        .collect();
    let mut operations: Vec<(u64, u64, &SubmitRecord)> = submits
        .iter()
        .map(|submit| (invoked_ms(submit), submit.at_ms, *submit))
        .collect();
    operations.sort_by_key(|(invoked, completed, _)| (*invoked, *completed));
    let origin = operations.first().map_or(0, |(invoked, ..)| *invoked);
    // Each process is busy until its operation completes.
    let mut busy_until: Vec<u64> = Vec::new();
    let mut entries: Vec<(u64, u8, serde_json::Value)> = Vec::new();
    for (invoked, completed, submit) in operations {
        let process = match busy_until.iter().position(|until| *until < invoked) {
            Some(free) => free,
            None => {
                busy_until.push(0);
                busy_until.len() - 1
            }
        };
        busy_until[process] = completed;
        let nanos = |ms: u64| (ms - origin) * 1_000_000;
        entries.push((
            invoked,
            0,
            serde_json::json!({
                "process": process, "type": "invoke", "f": "append",
                "value": submit.text, "time": nanos(invoked),
            }),
        ));
        let done = match &submit.outcome {
            Ok((index, _)) => serde_json::json!({
                "process": process, "type": "ok", "f": "append",
                "value": [submit.text, index.0], "time": nanos(completed),
            }),
            Err(error) => serde_json::json!({
                "process": process, "type": "info", "f": "append",
                "value": submit.text, "error": error, "time": nanos(completed),
            }),
        };
        entries.push((completed, 1, done));
    }
    entries.sort_by_key(|(at, order, _)| (*at, *order));
    serde_json::Value::Array(entries.into_iter().map(|(.., entry)| entry).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ClusterModel;
    use flotilla_shared::api::Status;
    use flotilla_shared::event::{Event, EventKind, Role};
    use flotilla_shared::{LogIndex, Term};

    /// A varied session of `count` records: elections, replication, statuses, kills, submits.
    fn session(count: u64) -> Vec<Record> {
        let mut records = Vec::new();
        let mut seq = [0u64; 4];
        for step in 0..count {
            let node = step % 3 + 1;
            let at_ms = 1_000 + step;
            seq[node as usize] += 1;
            let kind = match step % 11 {
                0 => EventKind::RoleChanged {
                    role: if node == 1 {
                        Role::Leader
                    } else {
                        Role::Follower
                    },
                    term: Term(step / 500 + 1),
                    leader_id: Some(NodeId(1)),
                },
                1 | 2 => EventKind::EntryAppended {
                    first: LogIndex(step / 3 + 1),
                    last: LogIndex(step / 3 + 1),
                    term: Term(step / 500 + 1),
                },
                3 => EventKind::CommitAdvanced {
                    commit_index: LogIndex(step / 4),
                },
                4 => EventKind::AppendSent {
                    to: NodeId(node % 3 + 1),
                    term: Term(1),
                    prev_log_index: LogIndex(0),
                    entries: step % 2,
                    commit: LogIndex(0),
                    msg: step,
                },
                5 => {
                    records.push(Record::Status {
                        at_ms,
                        status: Box::new(Status {
                            id: NodeId(node),
                            role: Role::Follower,
                            term: Term(1),
                            voted_for: None,
                            leader_id: Some(NodeId(1)),
                            commit_index: LogIndex(step / 5),
                            last_applied: LogIndex(step / 6),
                            last_log_index: LogIndex(step / 3),
                            last_log_term: Term(1),
                            persisted_index: LogIndex(step / 4),
                            peers: Vec::new(),
                            isolated_from: Vec::new(),
                            heartbeat_ms: 500,
                            election_timeout_ms: [1_500, 3_000],
                            snapshot_index: LogIndex(0),
                            snapshot_term: Term(0),
                            first_log_index: LogIndex(1),
                            members: Vec::new(),
                            config_index: LogIndex(0),
                            link_faults: Vec::new(),
                            disk_write_delay_ms: 0,
                        }),
                    });
                    continue;
                }
                6 => {
                    records.push(Record::Process {
                        at_ms,
                        node: NodeId(node),
                        state: [ProcessState::Dead, ProcessState::Running][(step % 2) as usize],
                    });
                    continue;
                }
                7 => {
                    records.push(Record::Submitted(SubmitRecord {
                        at_ms,
                        text: format!("message {step}"),
                        outcome: if step % 3 == 0 {
                            Err("no leader".into())
                        } else {
                            Ok((LogIndex(step), Term(1)))
                        },
                        // Measured latencies use every bit of an f64; they must read back exactly.
                        latency_ms: 367.776_83 + step as f64 / 7.0,
                    }));
                    continue;
                }
                8 => {
                    records.push(Record::Reachable {
                        at_ms,
                        node: NodeId(node),
                        reachable: step % 2 == 0,
                    });
                    continue;
                }
                _ => EventKind::ElectionTimerReset {
                    deadline_ms: at_ms + 1_500,
                    timeout_ms: 1_500,
                },
            };
            records.push(Record::Event(Event {
                node: NodeId(node),
                seq: seq[node as usize],
                at_ms,
                kind,
            }));
        }
        records
    }

    #[test]
    fn a_saved_recording_reopens_to_the_same_state_at_every_checkpoint() {
        let nodes = [NodeId(1), NodeId(2), NodeId(3)];
        let mut model = ClusterModel::new(&nodes);
        for record in session(7_000) {
            model.record(record);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/session.ndjson.gz");
        let written = save_timeline(&path, &nodes, "3 test nodes", 42, &model.timeline).unwrap();
        assert_eq!(written, model.timeline.len());
        let opened = open(&path).unwrap();
        assert_eq!(opened.header.nodes, nodes);
        assert_eq!(opened.header.description, "3 test nodes");
        assert!(opened.header.complete);
        assert_eq!(opened.skipped, 0);
        let mut reopened = ClusterModel::new(&opened.header.nodes);
        for record in opened.records {
            reopened.record(record);
        }
        assert_eq!(reopened.timeline.len(), model.timeline.len());
        let end = model.timeline.end();
        for position in (0..end).step_by(1_000).chain([end - 1]) {
            assert_eq!(
                reopened.timeline.state_at(position),
                model.timeline.state_at(position),
                "state after record {position}"
            );
        }
        assert_eq!(reopened.live, model.live);
    }

    #[test]
    fn a_file_that_is_not_a_recording_or_of_another_version_is_refused_plainly() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.txt");
        std::fs::write(&plain, "hello").unwrap();
        let error = format!("{:#}", open(&plain).unwrap_err());
        assert!(error.contains("is not a Flotilla recording"), "{error}");
        let path = dir.path().join("future.ndjson.gz");
        let mut out = GzEncoder::new(std::fs::File::create(&path).unwrap(), Compression::fast());
        out.write_all(
            br#"{"line":"header","format":"flotilla-recording","version":9,"nodes":[1],"created_ms":0,"description":"","complete":true}"#,
        )
        .unwrap();
        out.finish().unwrap();
        let error = format!("{:#}", open(&path).unwrap_err());
        assert!(error.contains("version 9 recording"), "{error}");
        assert!(open(&dir.path().join("missing.gz")).is_err());
    }

    #[test]
    fn the_history_export_pairs_each_invoke_with_its_completion_on_a_free_process() {
        let mut model = ClusterModel::new(&[NodeId(1)]);
        let submit = |at_ms: u64, text: &str, latency_ms: f64, outcome| {
            Record::Submitted(SubmitRecord {
                at_ms,
                text: text.into(),
                outcome,
                latency_ms,
            })
        };
        model.record(submit(1_100, "a", 100.0, Ok((LogIndex(3), Term(1)))));
        model.record(submit(1_150, "b", 100.0, Err("timed out".into())));
        model.record(submit(1_300, "c", 50.0, Ok((LogIndex(5), Term(1)))));
        let history = export_history(&model.timeline);
        let summary: Vec<String> = history
            .as_array()
            .unwrap()
            .iter()
            .map(|op| {
                format!(
                    "{} {} {} {}",
                    op["process"], op["type"], op["value"], op["time"]
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                r#"0 "invoke" "a" 0"#,
                r#"1 "invoke" "b" 50000000"#,
                r#"0 "ok" ["a",3] 100000000"#,
                r#"1 "info" "b" 150000000"#,
                r#"0 "invoke" "c" 250000000"#,
                r#"0 "ok" ["c",5] 300000000"#,
            ]
        );
    }
}
