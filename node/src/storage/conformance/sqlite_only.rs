//! SQLite-only checks: the file format and its migrations, identity, damaged files, a reader on
//! another connection, and surviving SIGKILL mid-write.

use super::*;
use std::io::Write as _;
use std::time::{Duration, Instant};

fn open_err(path: &Path, node: u64, cluster: &str) -> StorageError {
    match SqliteStore::open(path, NodeId(node), cluster) {
        Ok(_) => panic!(
            "opening {} as node {node} of {cluster:?} succeeded",
            path.display()
        ),
        Err(e) => e,
    }
}

#[test]
fn creates_the_file_with_wal_and_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = SqliteStore::path_in(dir.path(), NodeId(4));
    assert!(path.ends_with("node-4.db"));
    let store = SqliteStore::open(&path, NodeId(4), "c").unwrap();
    assert!(path.is_file());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(store);
}

/// What formats 1 and 2 share: the file's marks, `meta`, `hard_state` and `log`.
const OLD_FORMATS_BASE: &str = "PRAGMA journal_mode = WAL;
    PRAGMA application_id = 1181511540;
    CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 0), format_version INTEGER NOT NULL,
        node_id INTEGER NOT NULL, cluster_id TEXT NOT NULL, created_unix_ms INTEGER NOT NULL);
    CREATE TABLE hard_state (id INTEGER PRIMARY KEY CHECK (id = 0), term INTEGER NOT NULL,
        voted_for INTEGER, commit_index INTEGER NOT NULL);
    CREATE TABLE log (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, kind INTEGER NOT NULL,
        text TEXT, request_id TEXT);";

/// Writes a database of an old format at `path`: `OLD_FORMATS_BASE`, then `tables_and_rows`.
fn write_old_format(path: &Path, tables_and_rows: &str) {
    let old = rusqlite::Connection::open(path).unwrap();
    old.execute_batch(&format!("{OLD_FORMATS_BASE}\n{tables_and_rows}"))
        .unwrap();
}

/// The format version recorded in the file, read without opening it as a store.
fn recorded_format(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT format_version FROM meta", [], |row| row.get(0))
        .unwrap()
}

/// A database written by format 1 (request ids kept unique by an index on the applied table) opens,
/// is migrated in place, and keeps its messages and its dedupe.
#[test]
fn migrates_format_1_data_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node-1.db");
    write_old_format(
        &path,
        "CREATE TABLE applied_messages (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL,
             text TEXT NOT NULL, request_id TEXT UNIQUE);
         CREATE TABLE applied (id INTEGER PRIMARY KEY CHECK (id = 0), idx INTEGER NOT NULL);
         INSERT INTO meta VALUES (0, 1, 1, 'blue', 0);
         INSERT INTO hard_state VALUES (0, 2, 1, 3);
         INSERT INTO log VALUES (1, 1, 0, NULL, NULL), (2, 1, 1, 'hello', 'a'), (3, 2, 1, 'world', NULL);
         INSERT INTO applied_messages VALUES (2, 1, 'hello', 'a'), (3, 2, 'world', NULL);
         INSERT INTO applied VALUES (0, 3);",
    );

    let mut store = SqliteStore::open(&path, NodeId(1), "blue").unwrap();
    assert_eq!(store.initial_state().unwrap().applied, LogIndex(3));
    assert_eq!(
        all_messages(&store),
        [
            as_message(&message(2, 1, "hello", Some("a"))),
            as_message(&message(3, 2, "world", None))
        ]
    );
    assert_eq!(store.find_request("a").unwrap(), Some(log_id(2, 1)));
    let retry = [message(4, 2, "hello", Some("a"))];
    append(&mut store, &retry);
    assert_eq!(
        apply(&mut store, &retry),
        [ApplyOutcome::Duplicate {
            index: LogIndex(4),
            original: log_id(2, 1)
        }]
    );
    drop(store);
    assert_eq!(recorded_format(&path), 4);
    // Opening again is a plain open of current data.
    drop(SqliteStore::open(&path, NodeId(1), "blue").unwrap());
}

/// Format 2 kept a copy of each applied message; format 3 reads messages from the log. A format 2
/// file keeps its messages, the entry that applied as a duplicate stays out of them, and ids both
/// in the `request_ids` index and applied after its last flush still dedupe.
#[test]
fn migrates_format_2_data_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node-1.db");
    write_old_format(
        &path,
        "CREATE TABLE applied_messages (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL,
             text TEXT NOT NULL, request_id TEXT);
         CREATE TABLE request_ids (request_id TEXT PRIMARY KEY, idx INTEGER NOT NULL,
             term INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TABLE applied (id INTEGER PRIMARY KEY CHECK (id = 0), idx INTEGER NOT NULL,
             request_ids_up_to INTEGER NOT NULL);
         INSERT INTO meta VALUES (0, 2, 1, 'blue', 0);
         INSERT INTO hard_state VALUES (0, 2, 1, 4);
         INSERT INTO log VALUES (1, 1, 0, NULL, NULL), (2, 1, 1, 'hello', 'a'),
             (3, 2, 1, 'hello', 'a'), (4, 2, 1, 'world', 'b'), (5, 2, 1, 'later', NULL);
         INSERT INTO applied_messages VALUES (2, 1, 'hello', 'a'), (4, 2, 'world', 'b');
         INSERT INTO request_ids VALUES ('a', 2, 1);
         INSERT INTO applied VALUES (0, 4, 2);",
    );

    let mut store = SqliteStore::open(&path, NodeId(1), "blue").unwrap();
    assert_eq!(store.initial_state().unwrap().applied, LogIndex(4));
    // Entry 5 is in the log but not applied: not a message yet.
    assert_eq!(
        all_messages(&store),
        [
            as_message(&message(2, 1, "hello", Some("a"))),
            as_message(&message(4, 2, "world", Some("b")))
        ]
    );
    assert_eq!(store.find_request("a").unwrap(), Some(log_id(2, 1)));
    assert_eq!(store.find_request("b").unwrap(), Some(log_id(4, 2)));
    let retries = [
        message(6, 2, "hello", Some("a")),
        message(7, 2, "world", Some("b")),
    ];
    append(&mut store, &retries);
    let later = [message(5, 2, "later", None)];
    assert_eq!(
        apply(&mut store, &later),
        [ApplyOutcome::Applied {
            index: LogIndex(5),
            term: Term(2)
        }]
    );
    assert_eq!(
        apply(&mut store, &retries),
        [
            ApplyOutcome::Duplicate {
                index: LogIndex(6),
                original: log_id(2, 1)
            },
            ApplyOutcome::Duplicate {
                index: LogIndex(7),
                original: log_id(4, 2)
            }
        ]
    );
    assert_eq!(all_messages(&store).len(), 3);
    drop(store);
    assert_eq!(recorded_format(&path), 4);
}

#[test]
fn refuses_a_second_writer_while_the_first_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node-1.db");
    let first = SqliteStore::open(&path, NodeId(1), "blue").unwrap();
    let error = open_err(&path, 1, "blue");
    let text = error.to_string();
    assert!(
        text.contains("node-1.db") && text.contains("in use"),
        "{text}"
    );
    assert!(!text.contains('\n'), "one line: {text}");
    // Readers are not writers: they still open while the writer holds the lock.
    SqliteReader::open(&path).unwrap();
    drop(first);
    drop(SqliteStore::open(&path, NodeId(1), "blue").unwrap());
}

#[test]
fn refuses_another_nodes_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node-1.db");
    drop(SqliteStore::open(&path, NodeId(1), "blue").unwrap());
    let error = open_err(&path, 2, "blue");
    let text = error.to_string();
    assert!(matches!(error, StorageError::Mismatch(_)), "{error:?}");
    assert!(text.contains("node-1.db"), "names the file: {text}");
    assert!(
        text.contains("node 1") && text.contains("node 2"),
        "names both ids: {text}"
    );
    assert!(!text.contains('\n'), "one line: {text}");
}

#[test]
fn refuses_another_clusters_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node-1.db");
    drop(SqliteStore::open(&path, NodeId(1), "blue").unwrap());
    let error = open_err(&path, 1, "green");
    let text = error.to_string();
    assert!(matches!(error, StorageError::Mismatch(_)), "{error:?}");
    assert!(text.contains("node-1.db"), "{text}");
    assert!(
        text.contains("\"blue\"") && text.contains("\"green\""),
        "{text}"
    );
    // And the data is untouched: the right node still opens it.
    drop(SqliteStore::open(&path, NodeId(1), "blue").unwrap());
}

#[test]
fn refuses_a_file_that_is_not_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node-1.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    let error = open_err(&path, 1, "c");
    assert!(matches!(error, StorageError::Mismatch(_)), "{error:?}");
    assert!(
        error.to_string().contains("not a SQLite database"),
        "{error}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "the file is untouched"
    );
}

#[test]
fn refuses_a_sqlite_database_that_is_not_flotillas() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node-1.db");
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch("CREATE TABLE recipes (name TEXT); INSERT INTO recipes VALUES ('soup');")
        .unwrap();
    drop(other);
    let error = open_err(&path, 1, "c");
    assert!(matches!(error, StorageError::Mismatch(_)), "{error:?}");
    assert!(error.to_string().contains("not Flotilla data"), "{error}");
    let other = rusqlite::Connection::open(&path).unwrap();
    let rows: i64 = other
        .query_row("SELECT COUNT(*) FROM recipes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1, "the foreign database is untouched");
}

#[test]
fn refuses_a_damaged_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node-1.db");
    let mut store = SqliteStore::open(&path, NodeId(1), "c").unwrap();
    append(&mut store, &messages_in(1, 2000, 1));
    drop(store);
    // Fold the WAL into the main file, then overwrite pages in the middle of it.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    drop(conn);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes.len() > 16 * 4096,
        "the database is big enough to damage"
    );
    for byte in &mut bytes[8 * 4096..12 * 4096] {
        *byte = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let error = open_err(&path, 1, "c");
    assert!(matches!(error, StorageError::Corrupt(_)), "{error:?}");
    assert!(error.to_string().contains("node-1.db"), "{error}");
}

#[test]
fn refuses_a_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("node-1.db");
    let error = open_err(&path, 1, "c");
    assert!(matches!(error, StorageError::Io(_)), "{error:?}");
    assert!(error.to_string().contains("does not exist"), "{error}");
}

#[test]
fn reader_on_another_connection_sees_committed_writes() {
    let mut backend = SqliteBackend::new();
    let mut store = backend.open();
    let reader = store.reader().unwrap();
    assert_eq!(reader.term(LogIndex(1)).unwrap(), None);
    let entries = messages_in(1, 50, 3);
    append(&mut store, &entries);
    apply(&mut store, &entries[..10]);
    assert_eq!(reader.term(LogIndex(50)).unwrap(), Some(Term(3)));
    assert_eq!(
        reader
            .entries(LogIndex(1), LogIndex(50), usize::MAX)
            .unwrap(),
        entries
    );
    assert_eq!(
        reader.entries(LogIndex(5), LogIndex(50), 0).unwrap(),
        entries[4..5]
    );
    assert_eq!(
        reader.messages(LogIndex(1), LogIndex(100), 100).unwrap(),
        all_messages(&store)
    );
    assert_eq!(reader.find_request("r7").unwrap(), Some(log_id(7, 3)));
    assert_eq!(reader.find_request("r11").unwrap(), None);
    assert_eq!(reader.applied().unwrap(), LogIndex(10));

    // A reader opened by path works from another thread while the writer keeps writing.
    let path = backend.path();
    let handle = std::thread::spawn(move || {
        let reader = SqliteReader::open(&path).unwrap();
        let mut seen = 0;
        for _ in 0..200 {
            let entries = reader
                .entries(LogIndex(1), LogIndex(u64::MAX), usize::MAX)
                .unwrap();
            assert!(
                entries.len() >= seen,
                "a reader never sees the log shrink here"
            );
            for (offset, entry) in entries.iter().enumerate() {
                assert_eq!(entry.index, LogIndex(offset as u64 + 1), "no holes");
            }
            seen = entries.len();
        }
        seen
    });
    for start in (51..=250).step_by(10) {
        append(&mut store, &messages_in(start, start + 9, 3));
    }
    let seen = handle.join().unwrap();
    assert!(seen >= 50);
}

// ---- crash safety: a child process writes batches until it is SIGKILLed ----

const CRASH_CHILD_ENV: &str = "FLOTILLA_STORAGE_CRASH_CHILD";

/// The deterministic content of entry `index` in the crash test: every seventh is a no-op.
fn crash_entry(index: u64) -> Entry {
    let term = 1 + index / 97;
    if index.is_multiple_of(7) {
        noop(index, term)
    } else {
        message(
            index,
            term,
            &format!("message {index} {}", "x".repeat((index % 13) as usize)),
            Some(&format!("req-{index}")),
        )
    }
}

/// The child: continues the log where the file ends, one transaction per batch, forever.
/// Each batch appends 1..=64 new entries, raises the commit to the previous batch's end and
/// applies up to it (entries become committed only once durable, as in Raft).
fn crash_child(path: &Path) -> ! {
    let mut store = SqliteStore::open(path, NodeId(1), CLUSTER).expect("child: open");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut stdout = std::io::stdout();
    let mut round = 0u64;
    while Instant::now() < deadline {
        let state = store.initial_state().expect("child: state");
        let last = state.last.index.0;
        let count = 1 + (round * 31 + last) % 64;
        let new: Vec<Entry> = (last + 1..=last + count).map(crash_entry).collect();
        let apply: Vec<Entry> = (state.applied.0 + 1..=last).map(crash_entry).collect();
        let term = crash_entry(last + count).term;
        store
            .write(WriteBatch {
                hard_state: Some(HardState {
                    term,
                    voted_for: Some(NodeId(1)),
                    commit: LogIndex(last),
                }),
                entries: &new,
                apply: &apply,
            })
            .expect("child: write");
        // Tell the parent how far the durable log got (the parent waits for progress).
        let _ = writeln!(stdout, "durable {}", last + count);
        let _ = stdout.flush();
        round += 1;
    }
    std::process::exit(0)
}

fn check_after_crash(path: &Path) -> InitialState {
    let store = SqliteStore::open(path, NodeId(1), CLUSTER).expect("reopen after SIGKILL");
    let state = store.initial_state().unwrap();
    let last = state.last.index.0;
    let log = all_entries(&store);
    assert_eq!(
        log.len() as u64,
        last,
        "the log is contiguous from 1 to last"
    );
    for entry in &log {
        assert_eq!(
            *entry,
            crash_entry(entry.index.0),
            "entry {} intact",
            entry.index
        );
    }
    assert_eq!(state.last.term, crash_entry(last).term);
    assert!(
        state.applied.0 <= last,
        "applied {} <= last {last}",
        state.applied
    );
    assert!(
        state.applied <= state.hard_state.commit && state.hard_state.commit.0 <= last,
        "applied {} <= commit {} <= last {last}",
        state.applied,
        state.hard_state.commit
    );
    // The hard state and the log come from the same transaction.
    assert_eq!(state.hard_state.term, crash_entry(last).term);
    let expected: Vec<MessageEntry> = (1..=state.applied.0)
        .map(crash_entry)
        .filter(|e| matches!(e.payload, Payload::Message { .. }))
        .map(|e| as_message(&e))
        .collect();
    assert_eq!(
        all_messages(&store),
        expected,
        "the state machine is exactly the applied prefix"
    );
    state
}

#[test]
fn survives_sigkill_mid_write() {
    if let Some(path) = std::env::var_os(CRASH_CHILD_ENV) {
        crash_child(Path::new(&path));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node-1.db");
    let exe = std::env::current_exe().unwrap();
    let mut previous_last = 0;
    for round in 0..5 {
        let mut child = std::process::Command::new(&exe)
            .args([
                "storage::conformance::sqlite_only::survives_sigkill_mid_write",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_ENV, &path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn the writer");
        // Let it commit a few batches past where the last round ended, then kill it mid-stream.
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        let target = previous_last + 500 + round * 137;
        let mut durable = 0;
        while durable < target {
            let Some(Ok(line)) = lines.next() else {
                let status = child.wait();
                panic!("the writer stopped early ({status:?}) at {durable}");
            };
            if let Some(n) = line.strip_prefix("durable ") {
                durable = n.trim().parse().unwrap();
            }
        }
        child.kill().expect("SIGKILL the writer");
        child.wait().unwrap();
        let state = check_after_crash(&path);
        assert!(
            state.last.index.0 >= durable,
            "round {round}: a write acknowledged durable at {durable} was lost (last {})",
            state.last.index
        );
        previous_last = state.last.index.0;
    }
}

// ---- crash safety: a child process stages and installs a snapshot until it is SIGKILLed ----

const INSTALL_CRASH_CHILD_ENV: &str = "FLOTILLA_STORAGE_INSTALL_CRASH_CHILD";
/// Messages in the image the install crash test receives: enough that installing it takes a while.
const CRASH_IMAGE_MESSAGES: u64 = 20_000;
const CRASH_IMAGE_CHUNK: usize = 1_000;

/// The leader's image in the install crash test: messages 1..=`CRASH_IMAGE_MESSAGES` of term 2,
/// every fifth without a request id.
fn crash_image() -> Vec<MessageEntry> {
    (1..=CRASH_IMAGE_MESSAGES)
        .map(|i| MessageEntry {
            index: LogIndex(i),
            term: Term(2),
            text: format!("image message {i}"),
            request_id: (!i.is_multiple_of(5)).then(|| format!("image-{i}")),
        })
        .collect()
}

fn crash_image_meta(image: &[MessageEntry]) -> crate::raft::SnapshotMeta {
    crate::raft::SnapshotMeta {
        last: log_id(CRASH_IMAGE_MESSAGES, 2),
        members: Vec::new(),
        config_index: LogIndex(0),
        bytes: image
            .iter()
            .map(flotilla_shared::rpc::snapshot_record_bytes)
            .sum(),
    }
}

/// The follower's own state before the snapshot: three entries of term 1, the first applied.
fn own_log() -> Vec<Entry> {
    vec![
        message(1, 1, "own 1", Some("image-4")),
        message(2, 1, "own 2", None),
        message(3, 1, "own 3", None),
    ]
}

/// The child: stages the image chunk by chunk and installs it, saying where it is on stdout.
fn install_crash_child(path: &Path) -> ! {
    let mut store = SqliteStore::open(path, NodeId(1), CLUSTER).expect("child: open");
    let image = crash_image();
    let mut stdout = std::io::stdout();
    let mut offset = 0;
    for chunk in image.chunks(CRASH_IMAGE_CHUNK) {
        store.stage_snapshot(offset, chunk).expect("child: stage");
        offset += chunk
            .iter()
            .map(flotilla_shared::rpc::snapshot_record_bytes)
            .sum::<u64>();
        let _ = writeln!(stdout, "staged {offset}");
        let _ = stdout.flush();
    }
    let _ = writeln!(stdout, "installing");
    let _ = stdout.flush();
    store
        .install_snapshot(&crash_image_meta(&image))
        .expect("child: install");
    let _ = writeln!(stdout, "installed");
    let _ = stdout.flush();
    std::thread::sleep(Duration::from_secs(60));
    std::process::exit(0)
}

/// Killed at any point of receiving a snapshot, a store comes back with its old state or the whole
/// new one, never a mix, and an empty staging area; once the install returned, with the new one.
#[test]
fn survives_sigkill_while_staging_and_installing_a_snapshot() {
    if let Some(path) = std::env::var_os(INSTALL_CRASH_CHILD_ENV) {
        install_crash_child(Path::new(&path));
    }
    let exe = std::env::current_exe().unwrap();
    let image = crash_image();
    let chunks = CRASH_IMAGE_MESSAGES as usize / CRASH_IMAGE_CHUNK;
    // Where to kill: after some chunks, as the install starts (then a little later), once it is done.
    let kill_points: Vec<(Option<usize>, u64)> = vec![
        (Some(1), 0),
        (Some(chunks / 2), 0),
        (Some(chunks), 0),
        (None, 0),
        (None, 2),
        (None, 5),
        (None, 10),
        (None, 20),
    ];
    let (mut old_seen, mut new_seen) = (0, 0);
    for (staged_chunks, delay_ms) in kill_points {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node-1.db");
        let mut store = SqliteStore::open(&path, NodeId(1), CLUSTER).unwrap();
        store
            .write(WriteBatch {
                hard_state: Some(HardState {
                    term: Term(2),
                    voted_for: None,
                    commit: LogIndex(1),
                }),
                entries: &own_log(),
                apply: &own_log()[..1],
            })
            .unwrap();
        let before = observe(&store);
        drop(store);

        let mut child = std::process::Command::new(&exe)
            .args([
                "storage::conformance::sqlite_only::survives_sigkill_while_staging_and_installing_a_snapshot",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(INSTALL_CRASH_CHILD_ENV, &path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn the installer");
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        let mut staged = 0;
        let mut installed = false;
        loop {
            let Some(Ok(line)) = lines.next() else {
                let status = child.wait();
                panic!("the installer stopped early ({status:?}) after {staged} chunks");
            };
            if line.starts_with("staged ") {
                staged += 1;
                if staged_chunks == Some(staged) {
                    break;
                }
            } else if line == "installing" && staged_chunks.is_none() {
                std::thread::sleep(Duration::from_millis(delay_ms));
                break;
            } else if line == "installed" {
                installed = true;
                break;
            }
        }
        child.kill().expect("SIGKILL the installer");
        child.wait().unwrap();

        let store = SqliteStore::open(&path, NodeId(1), CLUSTER).expect("reopen after SIGKILL");
        let after = observe(&store);
        if after == before {
            assert!(!installed, "an install that returned was lost");
            assert_eq!(
                store.snapshot().unwrap(),
                crate::raft::SnapshotMeta::default()
            );
            assert_eq!(store.find_request("image-4").unwrap(), Some(log_id(1, 1)));
            old_seen += 1;
        } else {
            assert_eq!(
                after.messages, image,
                "killed after {staged} chunks (+{delay_ms} ms): neither the old state nor the image"
            );
            assert_eq!(store.snapshot().unwrap(), crash_image_meta(&image));
            let state = after.initial;
            assert_eq!(
                (state.applied, state.hard_state.commit, state.last),
                (
                    LogIndex(CRASH_IMAGE_MESSAGES),
                    LogIndex(CRASH_IMAGE_MESSAGES),
                    log_id(CRASH_IMAGE_MESSAGES, 2)
                )
            );
            assert!(after.entries.is_empty(), "the conflicting log is gone");
            assert_eq!(store.find_request("image-4").unwrap(), Some(log_id(4, 2)));
            assert_eq!(store.find_request("image-5").unwrap(), None);
            new_seen += 1;
        }
        let staging: i64 = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM snapshot_staging", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(staging, 0, "opening empties the staging area");
    }
    assert!(old_seen >= 3, "kills while staging leave the old state");
    assert!(new_seen >= 1, "a finished install survives");
}
