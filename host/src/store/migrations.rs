//! The database schema, as an ordered list of migrations.
//!
//! `PRAGMA user_version` counts the migrations applied. Append new ones at the
//! end; never edit one that has shipped, since databases already carry it.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Migration `i` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE tokens (
        id           INTEGER PRIMARY KEY,
        name         TEXT NOT NULL,
        -- sha256 hex of the plaintext; the plaintext is never stored.
        hash         TEXT NOT NULL UNIQUE,
        created_at   TEXT NOT NULL,
        last_used_at TEXT,
        revoked_at   TEXT
    );
    -- A name is unique among live tokens; revoked ones keep theirs for the record.
    CREATE UNIQUE INDEX tokens_live_name ON tokens(name) WHERE revoked_at IS NULL;

    CREATE TABLE recipes (
        id         TEXT NOT NULL,
        version    TEXT NOT NULL,
        digest     TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen  TEXT NOT NULL,
        PRIMARY KEY (id, version, digest)
    );

    CREATE TABLE jobs (
        id          TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,
        recipe      TEXT NOT NULL,
        version     TEXT NOT NULL,
        app_id      TEXT NOT NULL,
        state       TEXT NOT NULL,
        dry_run     INTEGER NOT NULL,
        created_at  TEXT NOT NULL,
        started_at  TEXT,
        finished_at TEXT,
        result_json TEXT,
        error_json  TEXT
    );
    CREATE INDEX jobs_state ON jobs(state);
    CREATE INDEX jobs_created_at ON jobs(created_at);

    CREATE TABLE job_events (
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        seq    INTEGER NOT NULL,
        json   TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
    ) WITHOUT ROWID;

    -- The wire `App` as JSON; the columns are what queries need, and they win
    -- over the JSON's copies (`set_app_state` updates only the columns).
    CREATE TABLE apps (
        id              TEXT PRIMARY KEY,
        state           TEXT NOT NULL,
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL,
        backend         TEXT NOT NULL,
        app_json        TEXT NOT NULL,
        containers_json TEXT NOT NULL,
        params_json     TEXT NOT NULL
    );
    CREATE INDEX apps_created_at ON apps(created_at);

    CREATE TABLE app_secrets (
        app_id     TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        name       TEXT NOT NULL,
        nonce      BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        PRIMARY KEY (app_id, name)
    ) WITHOUT ROWID;
    "#,
];

/// The schema version this build writes.
pub fn latest() -> u32 {
    MIGRATIONS.len() as u32
}

pub(super) fn user_version(conn: &Connection) -> Result<u32, StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    u32::try_from(version).map_err(|_| StoreError::Corrupt(format!("schema version {version} is out of range")))
}

/// Applies the missing migrations, each in its own transaction, and returns
/// the resulting version. Refuses a database from a newer build rather than
/// write to a schema it does not know.
///
/// Each step takes the write lock first (`BEGIN IMMEDIATE`) and re-reads the
/// version inside it, so two processes opening a new database at once apply
/// every migration exactly once.
pub(super) fn migrate(conn: &mut Connection) -> Result<u32, StoreError> {
    loop {
        let version = user_version(conn)?;
        check_known(version)?;
        if version == latest() {
            return Ok(version);
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version = user_version(&tx)?;
        check_known(version)?;
        if version == latest() {
            return Ok(version);
        }
        tx.execute_batch(MIGRATIONS[version as usize])?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}

fn check_known(version: u32) -> Result<(), StoreError> {
    if version > latest() {
        return Err(StoreError::TooNew { found: version, known: latest() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(conn: &Connection) -> Vec<String> {
        let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").unwrap();
        stmt.query_map([], |row| row.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn migrations_apply_on_new_file_and_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let mut conn = Connection::open(&path).unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), latest());
        assert_eq!(tables(&conn), ["app_secrets", "apps", "job_events", "jobs", "recipes", "tokens"]);
        drop(conn);
        let mut conn = Connection::open(&path).unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), latest());
        assert_eq!(user_version(&conn).unwrap(), latest());
    }

    #[test]
    fn too_new_database_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("store.db")).unwrap();
        conn.pragma_update(None, "user_version", latest() + 1).unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { found, known } if found == latest() + 1 && known == latest()));
        // Nothing was created.
        assert!(tables(&conn).is_empty());
    }
}
