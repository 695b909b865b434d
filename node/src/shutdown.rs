//! When a node stops: on the platform's stop signals, and, for a node started by the desktop, when its
//! parent is gone.
//!
//! The parent watchdog is a pipe: the parent holds the write end of the node's standard input and never
//! writes. However the parent ends (quit, crash, SIGKILL, TerminateProcess), the operating system closes
//! that end and the node reads end-of-file. The same mechanism works on Linux, macOS and Windows, needs
//! no polling and no parent pid (so no race with pid reuse, or with a parent that died before the
//! node looked), and costs one blocked thread.

use std::future::Future;
use std::time::Duration;

/// How long an orphaned node may take over its graceful stop before it exits anyway.
const ORPHAN_STOP_LIMIT: Duration = Duration::from_secs(10);

/// Completes when the node should stop: a stop signal, or (with `exit_with_parent`) end-of-file on
/// standard input. Fails only if the watchdog thread cannot start.
pub fn requested(exit_with_parent: bool) -> std::io::Result<impl Future<Output = ()> + Send> {
    let parent_gone = if exit_with_parent {
        Some(watch_parent()?)
    } else {
        None
    };
    Ok(async move {
        match parent_gone {
            Some(parent_gone) => {
                tokio::select! {
                    _ = stop_signal() => {}
                    _ = parent_gone => {}
                }
            }
            None => stop_signal().await,
        }
    })
}

/// Completes when standard input ends. A plain thread reads it: a tokio blocking task would hold the
/// runtime's shutdown until the read returned.
fn watch_parent() -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    let (gone, parent_gone) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("parent-watchdog".into())
        .spawn(move || {
            wait_for_end_of_input(&mut std::io::stdin().lock());
            tracing::info!("standard input closed: the parent is gone, stopping");
            let _ = gone.send(());
            // The graceful stop normally ends the process long before this.
            std::thread::sleep(ORPHAN_STOP_LIMIT);
            eprintln!(
                "flotilla-node: the parent is gone and the graceful stop took over {}s: exiting",
                ORPHAN_STOP_LIMIT.as_secs()
            );
            std::process::exit(1);
        })?;
    Ok(parent_gone)
}

/// Reads and discards `input` until end-of-file or an error (a broken pipe on Windows).
fn wait_for_end_of_input(input: &mut impl std::io::Read) {
    let mut buffer = [0u8; 64];
    loop {
        match input.read(&mut buffer) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Completes on the platform's request to stop: Ctrl-C everywhere; SIGTERM on Unix; on Windows
/// Ctrl-Break, the console closing, logoff and system shutdown.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = platform_stop_signal() => {}
    }
}

#[cfg(unix)]
async fn platform_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            term.recv().await;
        }
        // Without a SIGTERM handler Ctrl-C still stops the node.
        Err(_) => std::future::pending().await,
    }
}

#[cfg(windows)]
async fn platform_stop_signal() {
    use tokio::signal::windows::{ctrl_break, ctrl_close, ctrl_logoff, ctrl_shutdown};
    // Each listener is optional: a process without a console may not get some of them.
    macro_rules! received {
        ($listener:expr) => {
            async {
                match $listener {
                    Ok(mut listener) => {
                        listener.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            }
        };
    }
    tokio::select! {
        _ = received!(ctrl_break()) => {}
        _ = received!(ctrl_close()) => {}
        _ = received!(ctrl_logoff()) => {}
        _ = received!(ctrl_shutdown()) => {}
    }
}

#[cfg(not(any(unix, windows)))]
async fn platform_stop_signal() {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that yields some bytes, is interrupted once, then reports end-of-file.
    struct Script(Vec<std::io::Result<Vec<u8>>>);

    impl std::io::Read for Script {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let bytes = self.0.remove(0)?;
            buffer[..bytes.len()].copy_from_slice(&bytes);
            Ok(bytes.len())
        }
    }

    #[test]
    fn end_of_input_is_waited_for_through_data_and_interruptions() {
        let mut script = Script(vec![
            Ok(b"ignored".to_vec()),
            Err(std::io::ErrorKind::Interrupted.into()),
            Ok(b"x".to_vec()),
        ]);
        wait_for_end_of_input(&mut script);
        assert!(
            script.0.is_empty(),
            "stopped before the end: {:?}",
            script.0.len()
        );
    }

    #[test]
    fn a_broken_input_counts_as_the_end() {
        let mut script = Script(vec![
            Err(std::io::ErrorKind::BrokenPipe.into()),
            Ok(b"never read".to_vec()),
        ]);
        wait_for_end_of_input(&mut script);
        assert_eq!(script.0.len(), 1, "read past a broken pipe");
    }
}
