//! The file format: schema, migrations between formats, and how Raft values map to SQLite values.

use super::*;

/// Bumped whenever the schema changes incompatibly; an unknown version is refused, older known ones
/// are migrated on open.
pub(super) const FORMAT_VERSION: i64 = 4;
/// `PRAGMA application_id`: marks the file as Flotilla's ("Flot").
pub(super) const APPLICATION_ID: i64 = 0x466C_6F74;

pub(super) const KIND_NOOP: i64 = 0;
pub(super) const KIND_MESSAGE: i64 = 1;
/// A cluster configuration: `text` holds its members (and learners to promote) as JSON.
pub(super) const KIND_CONFIGURATION: i64 = 2;

/// How a configuration entry's `text` is stored.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredConfiguration {
    members: Vec<flotilla_shared::api::Member>,
    #[serde(default)]
    promoting: Vec<NodeId>,
}

pub(super) const SCHEMA: &str = "
CREATE TABLE meta (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    format_version INTEGER NOT NULL,
    node_id INTEGER NOT NULL,
    cluster_id TEXT NOT NULL,
    created_unix_ms INTEGER NOT NULL
);
CREATE TABLE hard_state (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    term INTEGER NOT NULL,
    voted_for INTEGER,
    commit_index INTEGER NOT NULL
);
CREATE TABLE log (
    idx INTEGER PRIMARY KEY,
    term INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    text TEXT,
    request_id TEXT
);
CREATE TABLE duplicates (idx INTEGER PRIMARY KEY);
CREATE TABLE request_ids (
    request_id TEXT PRIMARY KEY,
    idx INTEGER NOT NULL,
    term INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE applied (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    idx INTEGER NOT NULL,
    request_ids_up_to INTEGER NOT NULL
);
INSERT INTO hard_state (id, term, voted_for, commit_index) VALUES (0, 0, NULL, 0);
INSERT INTO applied (id, idx, request_ids_up_to) VALUES (0, 0, 0);
CREATE VIEW messages AS
    SELECT idx, term, text, request_id FROM log
    WHERE kind = 1 AND idx <= (SELECT idx FROM applied WHERE id = 0)
      AND NOT EXISTS (SELECT 1 FROM duplicates WHERE duplicates.idx = log.idx);
";

/// The staging area for the chunks of a snapshot being received: the same columns as
/// `compacted_messages`, which it becomes when the snapshot is installed.
macro_rules! create_snapshot_staging {
    () => {
        "CREATE TABLE snapshot_staging (
    idx INTEGER PRIMARY KEY,
    term INTEGER NOT NULL,
    text TEXT NOT NULL,
    request_id TEXT
);"
    };
}

/// The state machine since format 4: the compacted messages, then the log's applied ones.
macro_rules! create_messages_view {
    () => {
        "CREATE VIEW messages AS
    SELECT idx, term, text, request_id FROM compacted_messages
    UNION ALL
    SELECT idx, term, text, request_id FROM log
    WHERE kind = 1 AND idx <= (SELECT idx FROM applied WHERE id = 0)
      AND NOT EXISTS (SELECT 1 FROM duplicates WHERE duplicates.idx = log.idx);"
    };
}

/// Installing a snapshot: the staged image becomes `compacted_messages` by renaming its table rather
/// than copying every row, and an empty staging area takes its place. SQLite refuses a rename while a
/// view names a missing table, so the view goes first and is made again. Run inside the installing
/// transaction: DDL is transactional, a crash leaves all of it or none.
pub(super) const SWAP_IN_STAGED_IMAGE: &str = concat!(
    "DROP VIEW messages;
DROP TABLE compacted_messages;
ALTER TABLE snapshot_staging RENAME TO compacted_messages;
",
    create_snapshot_staging!(),
    create_messages_view!()
);

/// Format 4: snapshots and compaction (Raft §7). Compacting moves the messages of the removed log
/// entries into `compacted_messages`, so the state machine (`messages`) is that table followed by the
/// log's applied messages; `snapshot` records the latest snapshot; `snapshot_staging` holds the chunks
/// of one being received until it is installed in one transaction.
pub(super) const MIGRATE_FROM_3: &str = concat!(
    "
CREATE TABLE compacted_messages (
    idx INTEGER PRIMARY KEY,
    term INTEGER NOT NULL,
    text TEXT NOT NULL,
    request_id TEXT
);
CREATE TABLE snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    idx INTEGER NOT NULL,
    term INTEGER NOT NULL,
    config_index INTEGER NOT NULL,
    members TEXT NOT NULL,
    bytes INTEGER NOT NULL
);
INSERT INTO snapshot (id, idx, term, config_index, members, bytes) VALUES (0, 0, 0, 0, '[]', 0);
",
    create_snapshot_staging!(),
    "
DROP VIEW messages;
",
    create_messages_view!(),
    "
UPDATE meta SET format_version = 4;
"
);

/// Format 1 kept a UNIQUE index on `applied_messages.request_id`: every apply inserted into it at a
/// random place, dirtying one page per entry (about two thirds of all bytes written under load).
pub(super) const MIGRATE_FROM_1: &str = "
CREATE TABLE applied_messages_v2 (
    idx INTEGER PRIMARY KEY,
    term INTEGER NOT NULL,
    text TEXT NOT NULL,
    request_id TEXT
);
INSERT INTO applied_messages_v2 SELECT idx, term, text, request_id FROM applied_messages;
DROP TABLE applied_messages;
ALTER TABLE applied_messages_v2 RENAME TO applied_messages;
CREATE TABLE request_ids (
    request_id TEXT PRIMARY KEY,
    idx INTEGER NOT NULL,
    term INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO request_ids SELECT request_id, idx, term FROM applied_messages WHERE request_id IS NOT NULL;
ALTER TABLE applied ADD COLUMN request_ids_up_to INTEGER NOT NULL DEFAULT 0;
UPDATE applied SET request_ids_up_to = idx;
UPDATE meta SET format_version = 2;
";

/// Format 2 copied every applied message into `applied_messages`; format 3 reads them from the log
/// and lists only the entries that applied as duplicates.
pub(super) const MIGRATE_FROM_2: &str = "
CREATE TABLE duplicates (idx INTEGER PRIMARY KEY);
INSERT INTO duplicates
    SELECT idx FROM log
    WHERE kind = 1 AND idx <= (SELECT idx FROM applied WHERE id = 0)
      AND idx NOT IN (SELECT idx FROM applied_messages);
DROP TABLE applied_messages;
CREATE VIEW messages AS
    SELECT idx, term, text, request_id FROM log
    WHERE kind = 1 AND idx <= (SELECT idx FROM applied WHERE id = 0)
      AND NOT EXISTS (SELECT 1 FROM duplicates WHERE duplicates.idx = log.idx);
UPDATE meta SET format_version = 3;
";

/// `MIGRATIONS[v - 1]` turns format `v` into `v + 1`.
pub(super) const MIGRATIONS: [&str; 3] = [MIGRATE_FROM_1, MIGRATE_FROM_2, MIGRATE_FROM_3];

pub(super) fn encode_payload(
    payload: &Payload,
) -> (i64, Option<std::borrow::Cow<'_, str>>, Option<&str>) {
    match payload {
        Payload::Noop => (KIND_NOOP, None, None),
        Payload::Message { text, request_id } => (
            KIND_MESSAGE,
            Some(text.as_str().into()),
            request_id.as_deref(),
        ),
        Payload::Configuration { members, promoting } => {
            let stored = StoredConfiguration {
                members: members.clone(),
                promoting: promoting.clone(),
            };
            let json = serde_json::to_string(&stored).unwrap_or_default();
            (KIND_CONFIGURATION, Some(json.into()), None)
        }
    }
}

pub(super) fn decode_payload(
    kind: i64,
    text: Option<String>,
    request_id: Option<String>,
) -> Result<Payload, String> {
    match (kind, text) {
        (KIND_NOOP, _) => Ok(Payload::Noop),
        (KIND_MESSAGE, Some(text)) => Ok(Payload::Message { text, request_id }),
        (KIND_MESSAGE, None) => Err("a message entry without text".into()),
        (KIND_CONFIGURATION, Some(text)) => {
            let stored: StoredConfiguration = serde_json::from_str(&text)
                .map_err(|e| format!("a configuration entry that does not parse: {e}"))?;
            Ok(Payload::Configuration {
                members: stored.members,
                promoting: stored.promoting,
            })
        }
        (KIND_CONFIGURATION, None) => Err("a configuration entry without members".into()),
        (other, _) => Err(format!("unknown entry kind {other}")),
    }
}

/// Indexes, terms and ids are u64 in Raft and i64 in SQLite; values past i64::MAX are refused.
pub(super) fn to_sql(value: u64) -> rusqlite::Result<i64> {
    i64::try_from(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

pub(super) fn sql_int(value: u64, what: &str) -> Result<i64, StorageError> {
    i64::try_from(value)
        .map_err(|_| StorageError::Invalid(format!("{what} {value} does not fit in SQLite")))
}

pub(super) fn from_sql(value: i64, what: &str) -> Result<u64, StorageError> {
    u64::try_from(value).map_err(|_| StorageError::Corrupt(format!("negative {what} {value}")))
}

pub(super) fn sql_error(shown: &str, doing: &str, error: rusqlite::Error) -> StorageError {
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            StorageError::Corrupt(format!("{shown}: damaged database while {doing}: {error}"))
        }
        _ => StorageError::Sqlite(Failed::new(shown, doing, error)),
    }
}
