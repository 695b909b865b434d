use super::*;
use crate::raft::Payload;
use crate::storage::WriteBatch;
use std::sync::Mutex;

use crate::storage::memory::SharedMemoryStore;

/// A memory store whose writes can be made to panic (a bug or a failing disk library) or to hang
/// (a stalled disk) from some moment on.
struct FaultyStore {
    disk: SharedMemoryStore,
    fault: Arc<Mutex<Fault>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    Panic,
    /// Writes wait until the fault is cleared, then fail.
    Stall,
}

impl LogStore for FaultyStore {
    fn initial_state(&self) -> Result<crate::storage::InitialState, StorageError> {
        self.disk.initial_state()
    }
    fn write(&mut self, batch: WriteBatch<'_>) -> Result<Vec<ApplyOutcome>, StorageError> {
        let fault = *self.fault.lock().unwrap();
        match fault {
            Fault::None => self.disk.write(batch),
            Fault::Panic => panic!("the disk library fell over"),
            Fault::Stall => {
                while *self.fault.lock().unwrap() == Fault::Stall {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(StorageError::Io("the disk came back broken".into()))
            }
        }
    }
    fn term(&self, index: LogIndex) -> Result<Option<Term>, StorageError> {
        LogStore::term(&self.disk, index)
    }
    fn entries(&self, lo: LogIndex, hi: LogIndex, max: usize) -> Result<Vec<Entry>, StorageError> {
        LogStore::entries(&self.disk, lo, hi, max)
    }
    fn messages(
        &self,
        from: LogIndex,
        up_to: LogIndex,
        limit: usize,
    ) -> Result<Vec<flotilla_shared::api::MessageEntry>, StorageError> {
        self.disk.messages(from, up_to, limit)
    }
    fn find_request(&self, request_id: &str) -> Result<Option<LogId>, StorageError> {
        self.disk.find_request(request_id)
    }
    fn snapshot(&self) -> Result<crate::raft::SnapshotMeta, StorageError> {
        LogStore::snapshot(&self.disk)
    }
    fn take_snapshot(
        &mut self,
        at: LogId,
        members: &[flotilla_shared::api::Member],
        config_index: LogIndex,
    ) -> Result<crate::raft::SnapshotMeta, StorageError> {
        self.disk.take_snapshot(at, members, config_index)
    }
    fn compact(&mut self, up_to: LogIndex) -> Result<LogIndex, StorageError> {
        self.disk.compact(up_to)
    }
    fn stage_snapshot(
        &mut self,
        offset: u64,
        records: &[flotilla_shared::api::MessageEntry],
    ) -> Result<(), StorageError> {
        self.disk.stage_snapshot(offset, records)
    }
    fn install_snapshot(&mut self, meta: &crate::raft::SnapshotMeta) -> Result<(), StorageError> {
        self.disk.install_snapshot(meta)
    }
}

impl crate::http::StateReader for SharedMemoryStore {
    fn messages(
        &self,
        from: LogIndex,
        up_to: LogIndex,
        limit: usize,
    ) -> Result<Vec<flotilla_shared::api::MessageEntry>, StorageError> {
        LogStore::messages(self, from, up_to, limit)
    }
}

struct SingleNode {
    runtime: Runtime<SharedMemoryStore>,
    inbox: mpsc::Sender<Request>,
    status: watch::Receiver<Arc<Status>>,
    fault: Arc<Mutex<Fault>>,
}

/// A one-voter node (it elects itself) over a `FaultyStore`.
fn single_node(max_uncommitted: u64) -> SingleNode {
    let id = NodeId(1);
    let disk = SharedMemoryStore::default();
    let fault = Arc::new(Mutex::new(Fault::None));
    let clock = Clock::new();
    let raft = Raft::new(
        crate::raft::Config::new(id, vec![id]),
        disk.clone(),
        crate::raft::Restored::default(),
        clock.now_ms(),
    )
    .unwrap();
    let disk_reader = disk.clone();
    let (inbox_tx, inbox) = mpsc::channel(64);
    let metrics = Arc::new(Metrics::default());
    let partition = Arc::new(Partition::default());
    let faults = Arc::new(crate::faults::Faults::new(1));
    let transport = Transport::start(
        crate::transport::TransportConfig {
            id,
            peers: BTreeMap::new(),
            cluster_token: None,
            advertise: String::new(),
            max_inflight: 1,
            request_timeout: Duration::from_secs(1),
        },
        crate::transport::TransportShared {
            inbox: inbox_tx.clone(),
            partition: partition.clone(),
            faults: faults.clone(),
            metrics: metrics.clone(),
            events: EventHub::new(id, clock),
        },
    );
    let (status, status_rx) = watch::channel(Arc::new(Status {
        id,
        role: Role::Follower,
        term: Term(0),
        voted_for: None,
        leader_id: None,
        commit_index: LogIndex(0),
        last_applied: LogIndex(0),
        last_log_index: LogIndex(0),
        last_log_term: Term(0),
        persisted_index: LogIndex(0),
        peers: Vec::new(),
        isolated_from: Vec::new(),
        heartbeat_ms: 50,
        election_timeout_ms: [150, 300],
        ..Default::default()
    }));
    let runtime = Runtime::new(RuntimeParts {
        raft,
        info: NodeInfo {
            id,
            peers: Default::default(),
        },
        clock,
        inbox,
        store: Box::new(FaultyStore {
            disk,
            fault: fault.clone(),
        }),
        transport,
        partition,
        faults,
        events: EventHub::new(id, clock),
        status,
        metrics,
        stored_applied: LogIndex(0),
        max_uncommitted,
        snapshot: SnapshotConfig::default(),
        state_reader: Arc::new(disk_reader),
    })
    .unwrap();
    SingleNode {
        runtime,
        inbox: inbox_tx,
        status: status_rx,
        fault,
    }
}

/// A dead storage thread ends the runtime with an error (the node exits and is restarted), rather
/// than leaving a leader that heartbeats but never persists again.
#[tokio::test]
async fn a_storage_thread_that_panics_stops_the_runtime_with_an_error() {
    let node = single_node(16);
    *node.fault.lock().unwrap() = Fault::Panic;
    let (_stop, stopped) = watch::channel(false);
    // The lone voter campaigns, and its first write (its vote) kills the storage thread.
    let ended = tokio::time::timeout(Duration::from_secs(10), node.runtime.run(stopped))
        .await
        .expect("the runtime noticed the dead storage thread");
    let error = ended.expect_err("the runtime ends with an error");
    assert!(error.to_string().contains("storage thread"), "{error}");
}

fn propose(text: &str) -> (Request, oneshot::Receiver<ProposeOutcome>) {
    let (reply, answer) = oneshot::channel();
    let payload = Payload::Message {
        text: text.into(),
        request_id: None,
    };
    let request = Request::Propose {
        payload,
        received: Instant::now(),
        reply,
    };
    (request, answer)
}

/// When the leader's disk stalls, it takes entries only up to the bound and refuses the rest
/// without appending them.
#[tokio::test]
async fn a_leader_whose_disk_stalls_refuses_entries_beyond_the_bound() {
    let SingleNode {
        runtime,
        inbox,
        mut status,
        fault,
    } = single_node(3);
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(runtime.run(stopped));
    tokio::time::timeout(Duration::from_secs(10), async {
        while status.borrow_and_update().role != Role::Leader {
            status.changed().await.unwrap();
        }
    })
    .await
    .expect("the lone voter leads");
    // Let the new leader's no-op commit, then stall the disk.
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let now = status.borrow_and_update().clone();
            if now.commit_index >= now.last_log_index && now.last_log_index.0 > 0 {
                break;
            }
            status.changed().await.unwrap();
        }
    })
    .await
    .expect("the no-op commits");
    *fault.lock().unwrap() = Fault::Stall;
    let held_up_to = LogIndex(status.borrow().last_log_index.0 + 3);

    let mut held = Vec::new();
    for n in 0..3 {
        let (request, answer) = propose(&format!("held {n}"));
        inbox.send(request).await.unwrap();
        held.push(answer);
    }
    tokio::time::timeout(Duration::from_secs(10), async {
        while status.borrow_and_update().last_log_index < held_up_to {
            status.changed().await.unwrap();
        }
    })
    .await
    .expect("the three are appended");
    let (request, refused) = propose("one too many");
    inbox.send(request).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), refused).await {
        Ok(Ok(ProposeOutcome::Overloaded { pending, limit })) => {
            assert_eq!((pending, limit), (3, 3));
        }
        other => panic!("expected Overloaded, got {other:?}"),
    }
    for mut answer in held {
        assert!(
            matches!(answer.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
            "entries on a stalled disk are not answered"
        );
    }
    assert_eq!(
        status.borrow().last_log_index,
        held_up_to,
        "nothing appended"
    );

    let _ = stop.send(true);
    *fault.lock().unwrap() = Fault::None;
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
}
