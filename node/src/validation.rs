//! Input checks at the node's boundary: Raft messages from peers and client bodies. Peers are input too.
//!
//! Every rule here is one a correct sender never breaks, so a message that breaks one is refused whole
//! before anything in it is acted on (no term adopted, no timer reset, nothing stored). The HTTP layer
//! runs [`check_envelope`] on every Raft RPC and [`check_submit`] on every submit; the core runs
//! [`check_envelope`] again on everything it steps, so a message that reaches it another way (a reply in
//! an HTTP response body, a test) meets the same rules. The checks allocate only to describe a refusal.

use crate::raft::{Envelope, LogIndex, Message, NodeId, Term};
use flotilla_shared::api::{Member, MemberRole, SubmitRequest};
use flotilla_shared::rpc::{
    snapshot_record_bytes, AppendEntries, AppendEntriesResponse, InstallSnapshot,
    InstallSnapshotResponse, Payload, RequestVote,
};
use std::fmt;

/// The highest term or index storage can hold: SQLite integers are i64.
pub const MAX_STORABLE: u64 = i64::MAX as u64;
/// The highest log index a message may name.
pub const MAX_INDEX: LogIndex = LogIndex(MAX_STORABLE);
/// The highest term a node takes from a peer: half the storable range. Whatever one message claims, the
/// cluster keeps room for 2^62 more elections (each takes a term), so no message can bring it to the end
/// of its terms, where it could never elect a leader again.
pub const MAX_PEER_TERM: Term = Term(MAX_STORABLE / 2);
/// The highest term a node ever holds: a campaign that would go past it does not start.
pub const MAX_TERM: Term = Term(MAX_STORABLE);
/// Longest `request_id`, in bytes.
pub const MAX_REQUEST_ID_LEN: usize = 256;
/// Most members a configuration may hold.
pub const MAX_MEMBERS: usize = 64;
/// Longest member address, in bytes.
pub const MAX_ADDR_LEN: usize = 256;

/// Why an input was refused: the `error` code of the `400`/`409` answer and the `reason` label of the
/// `flotilla_rejected_total` metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The body is not a JSON envelope.
    BadJson,
    /// A message POSTed to another message type's route.
    WrongRoute,
    /// `to` is not this node.
    WrongNode,
    /// `from` is not a member of the cluster.
    UnknownPeer,
    /// `from` is this node.
    FromSelf,
    /// A term above what a node takes from a peer.
    TermOutOfRange,
    /// An index above what storage holds (or that a message's entries would run past).
    IndexOutOfRange,
    /// Entries do not follow `prev_log_index` one by one (a gap, an overlap, a duplicate, a reorder).
    EntriesNotContiguous,
    /// An entry's term is 0, or lower than the term before it.
    EntryTermsDecrease,
    /// An entry's term is above the term of the message carrying it.
    EntryTermAboveMessage,
    /// `prev_log_term` is above the message's term, or index 0 claims a term.
    PrevLogInconsistent,
    /// A vote request's `last_log_term` is not below its term, or index 0 claims a term.
    LastLogInconsistent,
    /// A response's `conflict_term` is above the responder's term.
    ResponseInconsistent,
    /// TimeoutNow from a node that is not this node's leader in its term.
    NotFromLeader,
    /// A response to something this node never sent: an acknowledged index past its log, or a read round
    /// it has not started.
    UnknownReply,
    /// Entries the log refused to take (a hole, or removing committed entries): a last line of defence.
    LogRefused,
    /// A submit whose text is empty or only whitespace.
    EmptyText,
    /// A submit whose `request_id` is empty, too long or holds control characters.
    BadRequestId,
    /// A configuration (in a log entry or an admin request) no correct node writes: no voter, a
    /// member twice, a bad id or address, a promotion of a non-learner, too many members.
    BadConfiguration,
    /// A snapshot chunk that does not describe a part of a state machine's image: records out of
    /// order or past the snapshot, sizes that do not add up, a message no submit could have made.
    SnapshotInconsistent,
}

impl Reason {
    pub const ALL: [Reason; 20] = [
        Reason::BadJson,
        Reason::WrongRoute,
        Reason::WrongNode,
        Reason::UnknownPeer,
        Reason::FromSelf,
        Reason::TermOutOfRange,
        Reason::IndexOutOfRange,
        Reason::EntriesNotContiguous,
        Reason::EntryTermsDecrease,
        Reason::EntryTermAboveMessage,
        Reason::PrevLogInconsistent,
        Reason::LastLogInconsistent,
        Reason::ResponseInconsistent,
        Reason::NotFromLeader,
        Reason::UnknownReply,
        Reason::LogRefused,
        Reason::EmptyText,
        Reason::BadRequestId,
        Reason::BadConfiguration,
        Reason::SnapshotInconsistent,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::BadJson => "bad_json",
            Reason::WrongRoute => "wrong_route",
            Reason::WrongNode => "wrong_node",
            Reason::UnknownPeer => "unknown_peer",
            Reason::FromSelf => "from_self",
            Reason::TermOutOfRange => "term_out_of_range",
            Reason::IndexOutOfRange => "index_out_of_range",
            Reason::EntriesNotContiguous => "entries_not_contiguous",
            Reason::EntryTermsDecrease => "entry_terms_decrease",
            Reason::EntryTermAboveMessage => "entry_term_above_message",
            Reason::PrevLogInconsistent => "prev_log_inconsistent",
            Reason::LastLogInconsistent => "last_log_inconsistent",
            Reason::ResponseInconsistent => "response_inconsistent",
            Reason::NotFromLeader => "not_from_leader",
            Reason::UnknownReply => "unknown_reply",
            Reason::LogRefused => "log_refused",
            Reason::EmptyText => "empty_text",
            Reason::BadRequestId => "bad_request_id",
            Reason::BadConfiguration => "bad_configuration",
            Reason::SnapshotInconsistent => "snapshot_inconsistent",
        }
    }

    /// Whether the input is wrong in itself (answered `400`) rather than wrong for this node's state
    /// (answered `409`).
    pub fn is_malformed(self) -> bool {
        !matches!(
            self,
            Reason::NotFromLeader | Reason::UnknownReply | Reason::LogRefused
        )
    }

    /// Position in [`Reason::ALL`], for per-reason counters.
    pub fn slot(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refused input: why, and the offending values in words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejected {
    pub reason: Reason,
    pub detail: String,
}

impl Rejected {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// Checks one Raft message for node `me`, whose peers are those `is_peer` accepts. Allocation-free
/// unless the message is refused.
pub fn check_envelope(
    envelope: &Envelope,
    me: NodeId,
    is_peer: impl Fn(NodeId) -> bool,
) -> Result<(), Rejected> {
    let (from, to, term) = (envelope.from, envelope.to, envelope.term);
    if to != me {
        return Err(Rejected::new(
            Reason::WrongNode,
            format!("message for node {to} reached node {me}"),
        ));
    }
    if from == me {
        return Err(Rejected::new(
            Reason::FromSelf,
            format!("node {me} does not send messages to itself"),
        ));
    }
    if NodeId::new(from.0).is_err() {
        return Err(Rejected::new(
            Reason::UnknownPeer,
            format!(
                "node id {from} is outside 1..={}: no node has it",
                NodeId::MAX
            ),
        ));
    }
    if !is_peer(from) {
        return Err(Rejected::new(
            Reason::UnknownPeer,
            format!("node {from} is not a peer of node {me}"),
        ));
    }
    if term > MAX_PEER_TERM {
        return Err(Rejected::new(
            Reason::TermOutOfRange,
            format!("term {term} is above the highest a peer may send ({MAX_PEER_TERM})"),
        ));
    }
    match &envelope.message {
        Message::AppendEntries(append) => check_append(term, append),
        Message::RequestVote(vote) => check_vote(term, vote),
        Message::AppendEntriesResponse(response) => check_append_response(term, response),
        Message::InstallSnapshot(install) => check_install_snapshot(term, install),
        Message::InstallSnapshotResponse(response) => check_install_response(response),
        Message::RequestVoteResponse(_) | Message::TimeoutNow => Ok(()),
    }
}

fn inconsistent(detail: String) -> Rejected {
    Rejected::new(Reason::SnapshotInconsistent, detail)
}

/// Raft §7: a chunk of the image of the leader's state machine at `last_index`: applied messages in
/// index order, each of a term no later than the snapshot's, after the previous chunk's last, with
/// sizes that add up to at most the image's.
fn check_install_snapshot(term: Term, install: &InstallSnapshot) -> Result<(), Rejected> {
    check_index("last_index", install.last_index)?;
    check_index("config_index", install.config_index)?;
    if install.last_index == LogIndex::ZERO || install.last_term == Term(0) {
        return Err(inconsistent(format!(
            "a snapshot covers at least entry 1 of a term of at least 1, not entry {} of term {}",
            install.last_index, install.last_term
        )));
    }
    if install.last_term > term {
        return Err(Rejected::new(
            Reason::EntryTermAboveMessage,
            format!(
                "the snapshot's last term {} is above the message's term {term}",
                install.last_term
            ),
        ));
    }
    // The configuration in force at the snapshot: one a leader can be a voter of. A core run without
    // addresses (the simulator's) records its seed configuration (index 0) without them.
    let addressless_seed = install.config_index == LogIndex::ZERO
        && install.members.iter().all(|member| member.addr.is_empty());
    if addressless_seed {
        if !install.members.iter().any(|m| m.role == MemberRole::Voter) {
            return Err(Rejected::new(
                Reason::BadConfiguration,
                "a snapshot's configuration without a voter".to_string(),
            ));
        }
    } else {
        check_configuration(&install.members, &[])?;
    }
    if install.config_index > install.last_index || install.after > install.last_index {
        return Err(inconsistent(format!(
            "config_index {} or after {} past the snapshot's last entry {}",
            install.config_index, install.after, install.last_index
        )));
    }
    if (install.offset == 0) != (install.after == LogIndex::ZERO) {
        return Err(inconsistent(format!(
            "offset {} after message {}: only the first chunk starts at 0, after nothing",
            install.offset, install.after
        )));
    }
    let mut previous = install.after;
    let mut bytes = install.offset;
    for record in &install.records {
        if record.index <= previous || record.index > install.last_index {
            return Err(inconsistent(format!(
                "message {} follows {}: messages come in index order, up to the snapshot's last \
                 entry {}",
                record.index, previous, install.last_index
            )));
        }
        if record.term == Term(0) || record.term > install.last_term {
            return Err(inconsistent(format!(
                "message {} has term {}, outside 1..={}",
                record.index, record.term, install.last_term
            )));
        }
        if record.text.trim().is_empty() {
            return Err(inconsistent(format!(
                "message {} has no text",
                record.index
            )));
        }
        if let Some(id) = &record.request_id {
            check_request_id(id)
                .map_err(|why| inconsistent(format!("message {}: {}", record.index, why.detail)))?;
        }
        previous = record.index;
        bytes = bytes.saturating_add(snapshot_record_bytes(record));
    }
    if bytes > install.total_bytes || (install.done && bytes != install.total_bytes) {
        return Err(inconsistent(format!(
            "the chunk ends at byte {bytes} of a {}-byte image{}",
            install.total_bytes,
            if install.done {
                " but is marked the last"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

fn check_install_response(response: &InstallSnapshotResponse) -> Result<(), Rejected> {
    check_index("last_index", response.last_index)?;
    if response.next_after > response.last_index {
        return Err(inconsistent(format!(
            "next_after {} past the snapshot's last entry {}",
            response.next_after, response.last_index
        )));
    }
    Ok(())
}

fn check_index(what: &str, index: LogIndex) -> Result<(), Rejected> {
    if index > MAX_INDEX {
        return Err(Rejected::new(
            Reason::IndexOutOfRange,
            format!("{what} {index} is above the highest log index ({MAX_INDEX})"),
        ));
    }
    Ok(())
}

/// Raft §5.3: an append carries the leader's entries right after `prev_log_index`. A leader appends only
/// entries of its own term (§5.3, §5.4.2), so its log's terms never decrease and never pass its term.
fn check_append(term: Term, append: &AppendEntries) -> Result<(), Rejected> {
    let prev = append.prev_log_index;
    check_index("prev_log_index", prev)?;
    // `leader_commit` may lie past the entries sent: a follower far behind gets its entries in
    // several appends, each with the leader's commit index (it takes min(leader_commit, last new)).
    check_index("leader_commit", append.leader_commit)?;
    if append.prev_log_term > term {
        return Err(Rejected::new(
            Reason::PrevLogInconsistent,
            format!(
                "prev_log_term {} is above the message's term {term}",
                append.prev_log_term
            ),
        ));
    }
    if prev == LogIndex::ZERO && append.prev_log_term != Term(0) {
        return Err(Rejected::new(
            Reason::PrevLogInconsistent,
            format!(
                "prev_log_index 0 (before the log) has term 0, not {}",
                append.prev_log_term
            ),
        ));
    }
    let count = append.entries.len() as u64;
    if prev
        .0
        .checked_add(count)
        .is_none_or(|last| last > MAX_INDEX.0)
    {
        return Err(Rejected::new(
            Reason::IndexOutOfRange,
            format!(
                "{count} entries after index {prev} run past the highest log index ({MAX_INDEX})"
            ),
        ));
    }
    // Every entry has a term of at least 1 (term 0 is before the first election).
    let mut floor = append.prev_log_term.max(Term(1));
    for (offset, entry) in append.entries.iter().enumerate() {
        let expected = LogIndex(prev.0 + 1 + offset as u64);
        if entry.index != expected {
            return Err(Rejected::new(
                Reason::EntriesNotContiguous,
                format!(
                    "entry {offset} has index {} but follows index {}: entries start at \
                     prev_log_index + 1 ({}) without gaps or repeats",
                    entry.index,
                    expected.prev(),
                    prev.next()
                ),
            ));
        }
        if entry.term > term {
            return Err(Rejected::new(
                Reason::EntryTermAboveMessage,
                format!(
                    "entry {} has term {}, above the message's term {term}",
                    entry.index, entry.term
                ),
            ));
        }
        if entry.term < floor {
            return Err(Rejected::new(
                Reason::EntryTermsDecrease,
                format!(
                    "entry {} has term {}, below the term {floor} before it",
                    entry.index, entry.term
                ),
            ));
        }
        floor = entry.term;
        if let Payload::Configuration { members, promoting } = &entry.payload {
            check_configuration(members, promoting).map_err(|rejected| {
                Rejected::new(
                    rejected.reason,
                    format!("entry {}: {}", entry.index, rejected.detail),
                )
            })?;
        }
    }
    Ok(())
}

/// `HOST:PORT`, as peers are dialled: a host without a scheme or path (`http://a:1` would be dialled
/// as the host `http`), and a port.
pub fn is_host_port(addr: &str) -> bool {
    addr.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok()
    })
}

/// One member as a configuration or an admin request names it: an id in range and a `HOST:PORT`
/// address (it is dialled and shown).
pub fn check_member(member: &Member) -> Result<(), Rejected> {
    let bad = |detail: String| Err(Rejected::new(Reason::BadConfiguration, detail));
    if let Err(why) = NodeId::new(member.id.0) {
        return bad(why);
    }
    let addr = &member.addr;
    if addr.len() > MAX_ADDR_LEN
        || !addr.bytes().all(|b| b.is_ascii_graphic())
        || !is_host_port(addr)
    {
        return bad(format!(
            "member {}: address must be HOST:PORT, at most {MAX_ADDR_LEN} printable bytes, got {:?}",
            member.id,
            addr.chars().take(80).collect::<String>()
        ));
    }
    Ok(())
}

/// A configuration a correct leader can write: 1 to [`MAX_MEMBERS`] distinct valid members, at least
/// one voter, and only learners waiting for promotion.
pub fn check_configuration(members: &[Member], promoting: &[NodeId]) -> Result<(), Rejected> {
    let bad = |detail: String| Err(Rejected::new(Reason::BadConfiguration, detail));
    if members.len() > MAX_MEMBERS {
        return bad(format!(
            "{} members, at most {MAX_MEMBERS} allowed",
            members.len()
        ));
    }
    if !members.iter().any(|m| m.role == MemberRole::Voter) {
        return bad("a configuration without a voter".into());
    }
    for (at, member) in members.iter().enumerate() {
        check_member(member)?;
        if members[..at].iter().any(|m| m.id == member.id) {
            return bad(format!("member {} is listed twice", member.id));
        }
    }
    for id in promoting {
        let is_learner = members
            .iter()
            .any(|m| m.id == *id && m.role == MemberRole::Learner);
        if !is_learner {
            return bad(format!("node {id} is to be promoted but is not a learner"));
        }
    }
    Ok(())
}

/// Raft §5.2, §5.4.1: a candidate campaigns in a term above every term in its log (a PreVote names the
/// term it would campaign in, thesis §9.6).
fn check_vote(term: Term, vote: &RequestVote) -> Result<(), Rejected> {
    check_index("last_log_index", vote.last_log_index)?;
    if vote.last_log_term >= term {
        return Err(Rejected::new(
            Reason::LastLogInconsistent,
            format!(
                "last_log_term {} is not below the campaign's term {term}",
                vote.last_log_term
            ),
        ));
    }
    if vote.last_log_index == LogIndex::ZERO && vote.last_log_term != Term(0) {
        return Err(Rejected::new(
            Reason::LastLogInconsistent,
            format!(
                "an empty log (last_log_index 0) has term 0, not {}",
                vote.last_log_term
            ),
        ));
    }
    Ok(())
}

fn check_append_response(term: Term, response: &AppendEntriesResponse) -> Result<(), Rejected> {
    check_index("index", response.index)?;
    if let Some(hint) = response.conflict_index {
        check_index("conflict_index", hint)?;
    }
    // The conflicting entry is in the responder's log, whose terms never pass its own term.
    if let Some(conflict_term) = response.conflict_term.filter(|t| *t > term) {
        return Err(Rejected::new(
            Reason::ResponseInconsistent,
            format!("conflict_term {conflict_term} is above the responder's term {term}"),
        ));
    }
    Ok(())
}

/// Checks a `POST /v1/messages` body: text that is not blank; a `request_id` of 1 to
/// [`MAX_REQUEST_ID_LEN`] bytes without control characters (it is echoed in logs, events and lists).
/// The text's size is bounded by the body limit (`413`).
pub fn check_submit(request: &SubmitRequest) -> Result<(), Rejected> {
    if request.text.trim().is_empty() {
        return Err(Rejected::new(Reason::EmptyText, "text must not be empty"));
    }
    if let Some(id) = &request.request_id {
        check_request_id(id)?;
    }
    Ok(())
}

fn check_request_id(id: &str) -> Result<(), Rejected> {
    if id.is_empty() || id.len() > MAX_REQUEST_ID_LEN {
        return Err(Rejected::new(
            Reason::BadRequestId,
            format!(
                "request_id must be 1 to {MAX_REQUEST_ID_LEN} bytes, got {}",
                id.len()
            ),
        ));
    }
    if let Some(at) = id.find(char::is_control) {
        return Err(Rejected::new(
            Reason::BadRequestId,
            format!("request_id must not hold control characters (one at byte {at})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
