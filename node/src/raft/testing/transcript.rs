//! One-line text forms of messages, entries and events for the scenario transcripts.

use crate::raft::{Entry, Envelope, EventKind, Message, NodeId, Payload};
use flotilla_shared::api::{Member, MemberRole};

/// `[1/1, 2/1 "hi"]`; long runs are shortened to their ends.
pub fn fmt_entries(entries: &[Entry], with_payload: bool) -> String {
    let one = |e: &Entry| match (&e.payload, with_payload) {
        (Payload::Message { text, .. }, true) => format!("{}/{} {text:?}", e.index, e.term),
        (Payload::Configuration { members, promoting }, true) => format!(
            "{}/{} config{}",
            e.index,
            e.term,
            fmt_members(members, promoting)
        ),
        _ => format!("{}/{}", e.index, e.term),
    };
    if entries.len() > 6 {
        let (first, last) = (&entries[0], &entries[entries.len() - 1]);
        return format!(
            "[{} .. {} ({} entries)]",
            one(first),
            one(last),
            entries.len()
        );
    }
    let parts: Vec<String> = entries.iter().map(one).collect();
    format!("[{}]", parts.join(", "))
}

/// `{1 2 3l 4l+}`: voters by id, learners with `l`, learners to promote with `+`.
pub fn fmt_members(members: &[Member], promoting: &[NodeId]) -> String {
    let parts: Vec<String> = members
        .iter()
        .map(|m| {
            let learner = if m.role == MemberRole::Learner {
                "l"
            } else {
                ""
            };
            let promote = if promoting.contains(&m.id) { "+" } else { "" };
            format!("{}{learner}{promote}", m.id)
        })
        .collect();
    format!("{{{}}}", parts.join(" "))
}

/// `1->2 append_entries term=2 prev=3/1 entries=[4/2] commit=3`.
pub fn fmt_message(m: &Envelope) -> String {
    let head = format!("{}->{} {} term={}", m.from, m.to, m.message.name(), m.term);
    let body = match &m.message {
        Message::RequestVote(rv) => format!(
            "{} last={}/{}{}",
            if rv.pre_vote { " pre_vote" } else { "" },
            rv.last_log_index,
            rv.last_log_term,
            if rv.leadership_transfer {
                " transfer"
            } else {
                ""
            }
        ),
        Message::RequestVoteResponse(r) => format!(
            "{}{}{}",
            if r.pre_vote { " pre_vote" } else { "" },
            if r.granted { " granted" } else { " denied" },
            r.reason
                .as_ref()
                .map_or(String::new(), |why| format!(" ({why})"))
        ),
        Message::AppendEntries(ae) => format!(
            " prev={}/{} entries={} commit={}{}",
            ae.prev_log_index,
            ae.prev_log_term,
            fmt_entries(&ae.entries, false),
            ae.leader_commit,
            read_ctx(ae.read_ctx)
        ),
        Message::InstallSnapshot(is) => format!(
            " last={}/{} offset={} after={} records={} total={}{}",
            is.last_index,
            is.last_term,
            is.offset,
            is.after,
            is.records.len(),
            is.total_bytes,
            if is.done { " done" } else { "" }
        ),
        Message::InstallSnapshotResponse(r) => format!(
            " {} last={} next={}/{}{}{}",
            if r.success { "ok" } else { "refused" },
            r.last_index,
            r.next_offset,
            r.next_after,
            if r.done { " done" } else { "" },
            r.reason
                .as_ref()
                .map_or(String::new(), |why| format!(" ({why})"))
        ),
        Message::AppendEntriesResponse(r) if r.success => {
            format!(" ok match={}{}", r.index, read_ctx(r.read_ctx))
        }
        Message::AppendEntriesResponse(r) => format!(
            " reject prev={}{}{}{} ({})",
            r.index,
            r.conflict_index
                .map_or(String::new(), |i| format!(" hint_index={i}")),
            r.conflict_term
                .map_or(String::new(), |t| format!(" hint_term={t}")),
            read_ctx(r.read_ctx),
            r.reason.as_deref().unwrap_or("")
        ),
        Message::TimeoutNow => String::new(),
    };
    head + &body
}

fn read_ctx(ctx: u64) -> String {
    if ctx == 0 {
        String::new()
    } else {
        format!(" read_ctx={ctx}")
    }
}

/// The events worth reading in a transcript. Timer resets, vote requests and append sends are left out:
/// the messages printed next to them already say the same.
pub fn fmt_event(event: &EventKind) -> Option<String> {
    let text = match event {
        EventKind::RoleChanged {
            role,
            term,
            leader_id,
        } => format!(
            "became {} term={term}{}",
            role.as_str(),
            leader_id.map_or(String::new(), |l| format!(" leader={l}"))
        ),
        EventKind::TermChanged { term } => format!("term_changed {term}"),
        EventKind::VoteGranted {
            to, term, pre_vote, ..
        } => format!(
            "{}vote granted to {to} term={term}",
            if *pre_vote { "pre_" } else { "" }
        ),
        EventKind::VoteDenied {
            to,
            term,
            pre_vote,
            reason,
            ..
        } => format!(
            "{}vote denied to {to} term={term} ({reason})",
            if *pre_vote { "pre_" } else { "" }
        ),
        EventKind::AppendRejected { to, reason, .. } => {
            format!("append from {to} rejected ({reason})")
        }
        EventKind::EntryAppended { first, last, term } => {
            format!("appended {first}..={last} term={term}")
        }
        EventKind::LogTruncated { index } => format!("log truncated after {index}"),
        EventKind::EntryPersisted { index } => format!("persisted up to {index}"),
        EventKind::CommitAdvanced { commit_index } => format!("commit -> {commit_index}"),
        EventKind::Applied { index } => format!("applied up to {index}"),
        EventKind::ElectionTimeout { term } => format!("election timeout in term {term}"),
        EventKind::CheckQuorumFailed { term } => {
            format!("check quorum failed in term {term}: stepping down")
        }
        EventKind::TimeoutNowSent { to, term, .. } => {
            format!("timeout_now sent to {to} term={term}")
        }
        EventKind::ReadReleased { read_index } => format!("read released at {read_index}"),
        EventKind::MembershipChanged {
            members,
            config_index,
            committed,
        } => format!(
            "membership {} at {config_index} {}",
            fmt_members(members, &[]),
            if *committed { "committed" } else { "in force" }
        ),
        EventKind::SnapshotTaken { index, term, bytes } => {
            format!("snapshot taken at {index}/{term} ({bytes} bytes)")
        }
        EventKind::LogCompacted { first_log_index } => {
            format!("log compacted: starts at {first_log_index}")
        }
        EventKind::SnapshotInstalled {
            from,
            index,
            term,
            bytes,
        } => format!("snapshot {index}/{term} from {from} installed ({bytes} bytes)"),
        EventKind::ElectionTimerReset { .. }
        | EventKind::VoteRequested { .. }
        | EventKind::AppendSent { .. }
        | EventKind::AppendAcked { .. }
        | EventKind::MessageReceived { .. } => return None,
        other => other.name().to_string(),
    };
    Some(text)
}
