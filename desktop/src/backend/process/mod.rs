//! Node processes started by the app, and what the app does to them (kill, pause, resume), per
//! platform. Every node ends with the app, however the app ends:
//! - Everywhere: the node's standard input is a pipe whose other end only the app holds, and the node
//!   runs with `--exit-with-parent`, so it stops gracefully once that pipe closes (`flotilla_node::shutdown`).
//! - Unix, in addition: each node has a process group of its own, so the app's end orphans it and the
//!   kernel sends a paused (stopped) node SIGHUP and SIGCONT, which end it.
//! - Linux, in addition: `PR_SET_PDEATHSIG` kills the node when the app's thread that started it ends.
//! - Windows, in addition: the nodes are in a Job Object that kills them when its last handle, held by
//!   the app, closes; this reaches suspended nodes too.
//!
//! So on macOS a node paused in the very instant before the app is killed (before the stop took hold)
//! is the one case left: it would stop as an orphan that nothing resumes.
//!
//! Owns the platform calls on the app's own child processes; may not touch anything above it (the
//! local control decides what to start and when, and reports to the backend).

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as platform;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as platform;

use std::io;
use std::process::{Child, ChildStdin, Command, Stdio};

/// Starts the nodes of one cluster and ties them to the app.
pub struct NodeGroup {
    platform: platform::Group,
}

impl NodeGroup {
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            platform: platform::Group::new()?,
        })
    }

    /// Starts `command`, a `flotilla-node` command line (its program may carry it as a subcommand),
    /// adding the flag and the standard input that end the node with the app.
    pub fn spawn(&self, command: &mut Command) -> io::Result<NodeProcess> {
        command.arg("--exit-with-parent").stdin(Stdio::piped());
        let mut child = self.platform.spawn(command)?;
        let parent_link = child.stdin.take();
        Ok(NodeProcess {
            child,
            _parent_link: parent_link,
        })
    }
}

/// One started node process.
pub struct NodeProcess {
    child: Child,
    /// The write end of the node's standard input: dropping it (with the app) stops the node.
    _parent_link: Option<ChildStdin>,
}

impl NodeProcess {
    /// False once the process has ended (and then it has been reaped).
    pub fn is_running(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Ends the process at once (SIGKILL; TerminateProcess on Windows), paused or not, and reaps it.
    pub fn kill(&mut self) -> io::Result<()> {
        self.child.kill()?;
        self.child.wait().map(drop)
    }

    /// Freezes every thread of the process (SIGSTOP; every thread suspended on Windows).
    pub fn pause(&self) -> io::Result<()> {
        platform::pause(&self.child)
    }

    /// Undoes `pause`.
    pub fn resume(&self) -> io::Result<()> {
        platform::resume(&self.child)
    }
}
