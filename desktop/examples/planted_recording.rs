//! Writes a recording with a safety violation planted in it, to see the checks turn red:
//! node 1 wins term 2 and replicates; then node 3 also claims term 2 and commits a different entry at
//! index 2. `flotilla --open FILE` shows it.
//!
//! `cargo run -p flotilla --example planted_recording -- /tmp/planted.ndjson.gz`

use flotilla::model::{Record, SubmitRecord};
use flotilla_shared::event::{Event, EventKind, Role};
use flotilla_shared::{LogIndex, NodeId, Term};

struct Stream {
    at_ms: u64,
    seq: [u64; 4],
    records: Vec<Record>,
}

impl Stream {
    fn event(&mut self, node: u64, kind: EventKind) {
        self.seq[node as usize] += 1;
        self.records.push(Record::Event(Event {
            node: NodeId(node),
            seq: self.seq[node as usize],
            at_ms: self.at_ms,
            kind,
        }));
    }

    /// `from` sends `to` an append of `entries` at `term`; it arrives 3 ms later.
    fn append(&mut self, from: u64, to: u64, term: u64, prev: u64, entries: u64) {
        let msg = self.seq[from as usize] + 1;
        self.event(
            from,
            EventKind::AppendSent {
                to: NodeId(to),
                term: Term(term),
                prev_log_index: LogIndex(prev),
                entries,
                commit: LogIndex(prev),
                msg,
            },
        );
        self.at_ms += 3;
        self.event(
            to,
            EventKind::MessageReceived {
                from: NodeId(from),
                msg,
                message: "append_entries".into(),
            },
        );
        if entries > 0 {
            self.event(
                to,
                EventKind::EntryAppended {
                    first: LogIndex(prev + 1),
                    last: LogIndex(prev + entries),
                    term: Term(term),
                },
            );
        }
    }

    fn leader(&mut self, node: u64, term: u64) {
        self.event(
            node,
            EventKind::RoleChanged {
                role: Role::Leader,
                term: Term(term),
                leader_id: Some(NodeId(node)),
            },
        );
    }
}

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: planted_recording FILE.ndjson.gz"))?;
    let mut stream = Stream {
        at_ms: flotilla::backend::unix_ms() - 4_000,
        seq: [0; 4],
        records: Vec::new(),
    };
    for node in 1..=3 {
        stream.event(node, EventKind::TermChanged { term: Term(2) });
    }
    for voter in [2, 3] {
        let msg = stream.seq[1] + 1;
        stream.event(
            1,
            EventKind::VoteRequested {
                to: NodeId(voter),
                term: Term(2),
                pre_vote: false,
                last_log_index: LogIndex(0),
                last_log_term: Term(0),
                msg,
            },
        );
        stream.at_ms += 2;
        stream.event(
            voter,
            EventKind::MessageReceived {
                from: NodeId(1),
                msg,
                message: "request_vote".into(),
            },
        );
    }
    stream.at_ms += 5;
    stream.leader(1, 2);
    stream.event(
        1,
        EventKind::EntryAppended {
            first: LogIndex(1),
            last: LogIndex(2),
            term: Term(2),
        },
    );
    stream.at_ms += 400;
    stream.append(1, 2, 2, 0, 2);
    stream.at_ms += 10;
    for node in [1, 2] {
        stream.event(
            node,
            EventKind::CommitAdvanced {
                commit_index: LogIndex(2),
            },
        );
    }
    stream.records.push(Record::Submitted(SubmitRecord {
        at_ms: stream.at_ms,
        text: "kept?".into(),
        outcome: Ok((LogIndex(2), Term(2))),
        latency_ms: 20.0,
    }));
    // The planted bug: node 3 also leads term 2 and commits its own entry at index 2.
    stream.at_ms += 600;
    stream.leader(3, 2);
    stream.event(
        3,
        EventKind::EntryAppended {
            first: LogIndex(1),
            last: LogIndex(1),
            term: Term(2),
        },
    );
    stream.event(
        3,
        EventKind::EntryAppended {
            first: LogIndex(2),
            last: LogIndex(2),
            term: Term(3),
        },
    );
    stream.at_ms += 5;
    stream.event(
        3,
        EventKind::CommitAdvanced {
            commit_index: LogIndex(2),
        },
    );
    let written = flotilla::recording::save(
        std::path::Path::new(&path),
        &[NodeId(1), NodeId(2), NodeId(3)],
        "a planted violation",
        flotilla::backend::unix_ms(),
        true,
        &stream.records,
    )?;
    println!("{written} records written to {path}");
    Ok(())
}
