//! Bugs that tests and the simulator switch on, to show that their checks catch a broken Raft. They
//! exist only in test builds and with the `sim` feature; without them every question below is a
//! constant `false` and the production core carries none of it.

use super::*;

/// A bug that can be switched on in tests and the simulator only, to show that the checks catch it.
#[cfg(any(test, feature = "sim"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlantedBug {
    /// Commit an entry of an earlier term by counting replicas (what Raft §5.4.2, Figure 8, forbids),
    /// and so skip the new leader's no-op.
    #[value(name = "commit-by-count")]
    CommitPreviousTermByCount,
    /// Grant votes without comparing logs (what Raft §5.4.1 forbids).
    #[value(name = "vote-ignoring-log")]
    VoteIgnoringLog,
    /// Step every message without the checks of [`crate::validation`]: trust whatever a peer sends.
    #[value(name = "trust-envelopes")]
    TrustEnvelopes,
}

#[cfg(any(test, feature = "sim"))]
impl<S: LogRead> Raft<S> {
    /// Switches on a planted bug: it breaks Raft on purpose.
    pub fn plant_bug(&mut self, bug: PlantedBug) {
        self.planted_bug = Some(bug);
    }

    pub(super) fn commits_by_count(&self) -> bool {
        self.planted_bug == Some(PlantedBug::CommitPreviousTermByCount)
    }

    pub(super) fn votes_ignoring_log(&self) -> bool {
        self.planted_bug == Some(PlantedBug::VoteIgnoringLog)
    }

    pub(super) fn trusts_envelopes(&self) -> bool {
        self.planted_bug == Some(PlantedBug::TrustEnvelopes)
    }
}

/// The production core: no bug can be planted.
#[cfg(not(any(test, feature = "sim")))]
impl<S: LogRead> Raft<S> {
    pub(super) fn commits_by_count(&self) -> bool {
        false
    }

    pub(super) fn votes_ignoring_log(&self) -> bool {
        false
    }

    pub(super) fn trusts_envelopes(&self) -> bool {
        false
    }
}
