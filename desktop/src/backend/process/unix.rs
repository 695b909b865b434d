//! Linux and macOS: signals, a process group per node, and on Linux the parent-death signal.

use rustix::process::{kill_process, Pid, Signal};
use std::io;
use std::process::{Child, Command};

/// Nothing to hold on Unix: each node is tied to the app on its own.
pub struct Group;

impl Group {
    pub fn new() -> io::Result<Self> {
        Ok(Self)
    }

    /// Starts the node in a process group of its own. When the app ends, however it ends, that group
    /// is orphaned (the node's new parent, init or launchd, is in another session), and POSIX has the
    /// kernel send SIGHUP and then SIGCONT to an orphaned group with a stopped member: a paused node,
    /// which cannot read its parent pipe, is ended that way (on macOS this is its only way out).
    pub fn spawn(&self, command: &mut Command) -> io::Result<Child> {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0);
        die_with_parent_thread(command);
        command.spawn()
    }
}

/// Linux: SIGKILL when the app's thread that started the node ends, paused or not.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_parent_thread(command: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs in the forked child before exec; it makes one prctl system call and
    // builds an io::Error from an errno, neither of which allocates or takes a lock.
    unsafe {
        command.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
                .map_err(io::Error::from)
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent_thread(_command: &mut Command) {}

fn send(child: &Child, signal: Signal) -> io::Result<()> {
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::other("process id out of range"))?;
    kill_process(pid, signal).map_err(io::Error::from)
}

pub fn pause(child: &Child) -> io::Result<()> {
    send(child, Signal::STOP)
}

pub fn resume(child: &Child) -> io::Result<()> {
    send(child, Signal::CONT)
}
