//! Windows: a Job Object ties the nodes to the app; pause and resume suspend and resume every thread.
//!
//! Suspension uses documented calls only (a Toolhelp thread snapshot, `SuspendThread`,
//! `ResumeThread`); the one-call `NtSuspendProcess` is an undocumented ntdll export that `windows-sys`
//! does not carry. Suspending threads of another process cannot deadlock the app, which shares no lock
//! with it; the node's own threads all stop together and go on where they were, as with SIGSTOP.

use std::collections::BTreeMap;
use std::io;
use std::os::windows::io::{AsRawHandle as _, FromRawHandle as _, OwnedHandle, RawHandle};
use std::process::{Child, Command};
use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
    SetInformationJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
};
use windows_sys::Win32::System::Threading::{
    OpenThread, ResumeThread, SuspendThread, THREAD_SUSPEND_RESUME,
};

/// `SuspendThread` and `ResumeThread` answer this on failure.
const SUSPEND_FAILED: u32 = u32::MAX;

/// A Job Object whose processes are killed when its handle closes: the app holds the only handle, so
/// the operating system closes it when the app ends, however it ends.
pub struct Group {
    job: OwnedHandle,
}

/// Takes ownership of a handle a Win32 call returned, or the call's error.
#[allow(unsafe_code)]
fn owned(handle: RawHandle) -> io::Result<OwnedHandle> {
    if handle.is_null() || handle == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the handle is valid (checked above), freshly returned to us and owned by nobody else.
    Ok(unsafe { OwnedHandle::from_raw_handle(handle) })
}

impl Group {
    #[allow(unsafe_code)]
    pub fn new() -> io::Result<Self> {
        // SAFETY: null attributes and name create an unnamed job whose handle is not inheritable.
        let job = owned(unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) })?;
        let mut limits = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
        limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
        // SAFETY: the pointer and length describe `limits`, a live value of the type the class names.
        let set = unsafe {
            SetInformationJobObject(
                job.as_raw_handle(),
                JobObjectExtendedLimitInformation,
                std::ptr::from_ref(&limits).cast(),
                std::mem::size_of_val(&limits) as u32,
            )
        };
        if set == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { job })
    }

    #[allow(unsafe_code)]
    pub fn spawn(&self, command: &mut Command) -> io::Result<Child> {
        let mut child = command.spawn()?;
        // SAFETY: both handles are open for the duration of the call (owned by `self` and `child`).
        let assigned =
            unsafe { AssignProcessToJobObject(self.job.as_raw_handle(), child.as_raw_handle()) };
        if assigned == 0 {
            let error = io::Error::last_os_error();
            // A node outside the job could outlive the app: do not keep it.
            let _ = child.kill();
            let _ = child.wait();
            return Err(error);
        }
        Ok(child)
    }
}

/// The ids of the threads of process `pid` right now.
#[allow(unsafe_code)]
fn threads_of(pid: u32) -> io::Result<Vec<u32>> {
    // SAFETY: a plain call; the snapshot handle it returns is owned below.
    let snapshot = owned(unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) })?;
    let mut entry = THREADENTRY32 {
        dwSize: std::mem::size_of::<THREADENTRY32>() as u32,
        ..Default::default()
    };
    let mut threads = Vec::new();
    // SAFETY: `entry` is a live THREADENTRY32 with `dwSize` set, as both calls require.
    let mut more = unsafe { Thread32First(snapshot.as_raw_handle(), &mut entry) } != 0;
    while more {
        if entry.th32OwnerProcessID == pid {
            threads.push(entry.th32ThreadID);
        }
        // SAFETY: as above.
        more = unsafe { Thread32Next(snapshot.as_raw_handle(), &mut entry) } != 0;
    }
    Ok(threads)
}

/// Opens a thread for suspending and resuming; `None` if it ended meanwhile.
#[allow(unsafe_code)]
fn open_thread(id: u32) -> Option<OwnedHandle> {
    // SAFETY: a plain call; the handle it returns is owned by the result.
    owned(unsafe { OpenThread(THREAD_SUSPEND_RESUME, 0, id) }).ok()
}

/// Suspends every thread of the process. Threads can start while the snapshot is walked, so the walk
/// repeats until it finds no thread it has not suspended: by then no running thread is left to start
/// another.
#[allow(unsafe_code)]
pub fn pause(child: &Child) -> io::Result<()> {
    let mut suspended: BTreeMap<u32, OwnedHandle> = BTreeMap::new();
    loop {
        let mut found_new = false;
        let threads = match threads_of(child.id()) {
            Ok(threads) => threads,
            Err(error) => {
                resume_all(suspended.values());
                return Err(error);
            }
        };
        for id in threads {
            if suspended.contains_key(&id) {
                continue;
            }
            let Some(thread) = open_thread(id) else {
                continue;
            };
            // SAFETY: `thread` is an open handle with THREAD_SUSPEND_RESUME access.
            if unsafe { SuspendThread(thread.as_raw_handle()) } == SUSPEND_FAILED {
                let error = io::Error::last_os_error();
                resume_all(suspended.values());
                return Err(error);
            }
            suspended.insert(id, thread);
            found_new = true;
        }
        if !found_new {
            break;
        }
    }
    if suspended.is_empty() {
        return Err(io::Error::other("the process has no threads left"));
    }
    Ok(())
}

/// Resumes every thread of the process, however often it was suspended.
pub fn resume(child: &Child) -> io::Result<()> {
    let threads: Vec<OwnedHandle> = threads_of(child.id())?
        .into_iter()
        .filter_map(open_thread)
        .collect();
    resume_all(threads.iter());
    Ok(())
}

#[allow(unsafe_code)]
fn resume_all<'a>(threads: impl Iterator<Item = &'a OwnedHandle>) {
    for thread in threads {
        // ResumeThread answers the count before the call: above 1, the thread is still suspended.
        loop {
            // SAFETY: `thread` is an open handle with THREAD_SUSPEND_RESUME access.
            let before = unsafe { ResumeThread(thread.as_raw_handle()) };
            if before == SUSPEND_FAILED || before <= 1 {
                break;
            }
        }
    }
}
