//! The server's embedded store: API tokens, recipes seen, jobs and their
//! events, apps, and the apps' secrets (encrypted at rest).
//!
//! One SQLite file in WAL mode, so that the CLI and a running server can open
//! it at once. [`Store`] serializes its writes on one connection and its reads
//! on another (WAL lets a read run while a write commits): each is a short
//! local query, so async callers may call it directly or through
//! `spawn_blocking` as they prefer. Nothing here logs, and no error carries a
//! secret value or token plaintext.

pub mod migrations;
pub mod secrets;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use rusqlite::{params, params_from_iter, Connection, ErrorCode, OptionalExtension, Row};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::{App, AppState, Job, JobEvent, JobKind, JobState};
use crate::backend::ContainerRef;
use secrets::SecretBox;

/// Prefix of every API token's plaintext.
pub const TOKEN_PREFIX: &str = "prx_";
/// Random characters after the prefix: 40 of 36 symbols is about 206 bits.
const TOKEN_RANDOM_LEN: usize = 40;
const TOKEN_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// `last_used_at` is rewritten at most this often per token: a token check
/// is then a read, and `token ls` is still right to the minute.
const TOKEN_TOUCH_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {}: {source}", path.display())]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("database {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("key file {}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    #[error(
        "database schema version {found} is newer than this build of Proximity knows ({known}); upgrade Proximity"
    )]
    TooNew { found: u32, known: u32 },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("secret {name} of app {app}: cannot decrypt (wrong key file?)")]
    Decrypt { app: String, name: String },
    /// A unique name or id is already taken.
    #[error("{0}")]
    Conflict(String),
    /// The caller passed something the store cannot hold.
    #[error("{0}")]
    Invalid(String),
    /// The row an update refers to does not exist.
    #[error("{0}")]
    NotFound(String),
}

/// An API token as listed; the plaintext is only ever returned by [`Store::create_token`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// An installed app: its wire shape plus what only the server needs.
#[derive(Clone, Debug)]
pub struct AppRecord {
    pub app: App,
    /// Name of the backend its containers live on (`lxc`, `proxmox`, ...).
    pub backend: String,
    pub container_refs: Vec<ContainerRef>,
    /// Non-secret parameter values, in clear, as text. Secret ones live in
    /// [`Store::put_secrets`].
    pub param_values: BTreeMap<String, String>,
}

pub struct Store {
    /// Writes, and reads that belong to a write.
    conn: Mutex<Connection>,
    /// Plain reads (`query_only`), so they never wait behind a commit.
    reader: Mutex<Connection>,
    cipher: SecretBox,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating parent dirs and the file) the SQLite database: WAL,
    /// synchronous=NORMAL, foreign_keys=ON, busy_timeout 5s; runs migrations;
    /// loads the key file or creates it (32 random bytes, mode 0600). A key
    /// file that is not exactly 32 bytes or that group/others can access is
    /// refused.
    pub fn open(db_path: &Path, key_path: &Path) -> Result<Store, StoreError> {
        let io_error = |source| StoreError::Io { path: db_path.to_path_buf(), source };
        if let Some(parent) = db_path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_error)?;
        }
        // Create the file private before SQLite does (with the umask's mode):
        // it holds token hashes and sealed secrets. SQLite gives its -wal and
        // -shm files the database file's mode.
        match OpenOptions::new().write(true).create_new(true).mode(0o600).open(db_path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(e)),
        }
        let open_error = |source| StoreError::Open { path: db_path.to_path_buf(), source };
        let mut conn = Connection::open(db_path).map_err(open_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).map_err(open_error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "cannot switch {} to WAL (journal_mode {mode})",
                db_path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_error)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open_error)?;
        migrations::migrate(&mut conn)?;
        let reader = Connection::open(db_path).map_err(open_error)?;
        reader.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        reader.pragma_update(None, "query_only", "ON").map_err(open_error)?;
        let mut key = secrets::load_or_create_key(key_path)?;
        let cipher = SecretBox::new(&key);
        // Best effort: the key lives on in the cipher only.
        key.fill(0);
        std::hint::black_box(&key);
        Ok(Store { conn: Mutex::new(conn), reader: Mutex::new(reader), cipher })
    }

    pub fn schema_version(&self) -> Result<u32, StoreError> {
        migrations::user_version(&self.conn())
    }

    /// The connection. A panic while it was held cannot leave a transaction
    /// open (dropping one rolls it back), so a poisoned lock is still usable.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The read-only connection; it sees every write committed before the call.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // ---- API tokens ----

    /// Creates a token and returns it with its plaintext, which is not stored
    /// (only its sha256) and cannot be shown again.
    pub fn create_token(&self, name: &str) -> Result<(TokenInfo, String), StoreError> {
        validate_token_name(name)?;
        let plaintext = new_token_plaintext();
        let created_at = now_rfc3339();
        let conn = self.conn();
        let inserted = conn.execute(
            "INSERT INTO tokens (name, hash, created_at) VALUES (?1, ?2, ?3)",
            params![name, token_hash(&plaintext), created_at],
        );
        match inserted {
            Ok(_) => {}
            Err(e) if is_constraint(&e) => {
                return Err(StoreError::Conflict(format!("a token named `{name}` already exists")))
            }
            Err(e) => return Err(e.into()),
        }
        let info = TokenInfo {
            id: conn.last_insert_rowid(),
            name: name.to_string(),
            created_at,
            last_used_at: None,
            revoked_at: None,
        };
        Ok((info, plaintext))
    }

    /// All tokens, revoked ones included, oldest first.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare("SELECT id, name, created_at, last_used_at, revoked_at FROM tokens ORDER BY id")?;
        let tokens = stmt.query_map([], token_from_row)?.collect::<Result<_, _>>()?;
        Ok(tokens)
    }

    /// Revokes the live token of that name; false when there is none.
    pub fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
            params![name, now_rfc3339()],
        )?;
        Ok(changed > 0)
    }

    /// The live token with this plaintext, after recording its use (see
    /// [`Store::token_use_is_stale`]); `None` for an unknown or revoked token.
    pub fn verify_token(&self, plaintext: &str) -> Result<Option<TokenInfo>, StoreError> {
        let Some(mut token) = self.find_token(plaintext)? else {
            return Ok(None);
        };
        if !token_use_is_stale(&token) {
            return Ok(Some(token));
        }
        let now = now_rfc3339();
        // Only while it is still live: a revocation since the read wins.
        let touched = self
            .conn()
            .prepare_cached("UPDATE tokens SET last_used_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")?
            .execute(params![token.id, now])?;
        if touched == 0 {
            return Ok(None);
        }
        token.last_used_at = Some(now);
        Ok(Some(token))
    }

    /// The live token with this plaintext, without recording its use: a read
    /// only. [`Store::verify_token`] is the check that also records it.
    pub fn find_token(&self, plaintext: &str) -> Result<Option<TokenInfo>, StoreError> {
        if !looks_like_token(plaintext) {
            return Ok(None);
        }
        let token = self
            .reader()
            .prepare_cached(
                "SELECT id, name, created_at, last_used_at, revoked_at FROM tokens
                 WHERE hash = ?1 AND revoked_at IS NULL",
            )?
            .query_row([token_hash(plaintext)], token_from_row)
            .optional()?;
        Ok(token)
    }

    // ---- recipes ----

    /// Records that the server saw this recipe version with this digest:
    /// inserts it, or moves `last_seen` of a known one (keeping `first_seen`).
    /// A version whose digest changes gets a row per digest.
    pub fn record_recipe(&self, id: &str, version: &str, digest: &str) -> Result<(), StoreError> {
        record_recipe(&self.conn(), id, version, digest)
    }

    // ---- jobs ----

    pub fn insert_job(&self, job: &Job) -> Result<(), StoreError> {
        insert_job(&self.conn(), job)
    }

    /// [`Store::record_recipe`] for the job's recipe and version with
    /// `digest`, then [`Store::insert_job`], in one transaction.
    pub fn insert_job_of_recipe(&self, job: &Job, digest: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        record_recipe(&tx, &job.recipe, &job.version, digest)?;
        insert_job(&tx, job)?;
        tx.commit()?;
        Ok(())
    }

    /// Moves a job to `state` and returns it as it now is. Entering `Running`
    /// sets `started_at` (the first time only); a finished state sets
    /// `finished_at` (the first time only), an unfinished one clears it.
    /// `result` and `error` are replaced only when given.
    pub fn set_job_state(
        &self,
        id: &str,
        state: JobState,
        result: Option<&serde_json::Value>,
        error: Option<&serde_json::Value>,
    ) -> Result<Job, StoreError> {
        set_job_state(&self.conn(), id, state, result, error)
    }

    pub fn job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let row = self
            .reader()
            .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?
            .query_row([id], JobRow::read)
            .optional()?;
        row.map(JobRow::into_job).transpose()
    }

    /// The `limit` newest jobs, newest first.
    pub fn jobs(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query_jobs(
            &format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?1"),
            [limit],
        )
    }

    /// Jobs in any of `states`, oldest first (the order to resume or clean them up in).
    pub fn jobs_in_states(&self, states: &[JobState]) -> Result<Vec<Job>, StoreError> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = vec!["?"; states.len()].join(", ");
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ({placeholders}) ORDER BY created_at, rowid");
        self.query_jobs(&sql, params_from_iter(states.iter().map(|state| state.as_str())))
    }

    fn query_jobs(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Job>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(sql)?;
        let rows: Vec<JobRow> = stmt.query_map(params, JobRow::read)?.collect::<Result<_, _>>()?;
        rows.into_iter().map(JobRow::into_job).collect()
    }

    pub fn append_event(&self, job_id: &str, event: &JobEvent) -> Result<(), StoreError> {
        self.append_events(job_id, std::slice::from_ref(event))
    }

    /// Appends events in one transaction: all or none. A `seq` the job
    /// already has is a conflict.
    pub fn append_events(&self, job_id: &str, events: &[JobEvent]) -> Result<(), StoreError> {
        let batch: Vec<(&str, &JobEvent)> = events.iter().map(|event| (job_id, event)).collect();
        self.append_event_batch(&batch)
    }

    /// Appends events of any jobs, as (job id, event), in one transaction:
    /// all or none.
    pub fn append_event_batch(&self, events: &[(&str, &JobEvent)]) -> Result<(), StoreError> {
        let writes: Vec<JobWrite<'_>> =
            events.iter().map(|(job_id, event)| JobWrite::Event { job_id, event }).collect();
        self.write_jobs(&writes).map(|_| ())
    }

    /// Applies job writes in order in one transaction: all or none. One
    /// commit for many writes is what keeps a busy server's job log cheap.
    /// Returns the `end` event of each [`JobWrite::Finish`], in order.
    pub fn write_jobs(&self, writes: &[JobWrite<'_>]) -> Result<Vec<JobEvent>, StoreError> {
        // Plain events are encoded before the connection is taken.
        let encoded = writes
            .iter()
            .map(|write| match write {
                JobWrite::Event { event, .. } => to_json(event),
                _ => Ok(String::new()),
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut ends = Vec::new();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (write, json) in writes.iter().zip(encoded) {
            match *write {
                JobWrite::Event { job_id, event } => insert_event(&tx, job_id, event.seq, &json)?,
                JobWrite::State { job_id, state } => {
                    set_job_state(&tx, job_id, state, None, None)?;
                }
                JobWrite::Finish { job_id, state, result, error, end } => {
                    let job = set_job_state(&tx, job_id, state, result, error)?;
                    let end = JobEvent { job: Some(Box::new(job)), ..end.clone() };
                    insert_event(&tx, job_id, end.seq, &to_json(&end)?)?;
                    ends.push(end);
                }
            }
        }
        tx.commit()?;
        Ok(ends)
    }

    /// The job's events with `seq > after_seq`, in order.
    pub fn events_after(&self, job_id: &str, after_seq: u64) -> Result<Vec<JobEvent>, StoreError> {
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let rows: Vec<(i64, String)> = {
            let conn = self.reader();
            let mut stmt =
                conn.prepare_cached("SELECT seq, json FROM job_events WHERE job_id = ?1 AND seq > ?2 ORDER BY seq")?;
            let rows = stmt.query_map(params![job_id, after], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        // Parsed after the connection is released.
        rows.into_iter()
            .map(|(seq, json)| {
                let mut event: JobEvent = from_json(&json, || format!("event {seq} of job `{job_id}`"))?;
                event.seq = seq_from_sql(seq)?;
                Ok(event)
            })
            .collect()
    }

    /// The job's highest event `seq`; 0 when it has none.
    pub fn last_seq(&self, job_id: &str) -> Result<u64, StoreError> {
        let seq: i64 = self
            .reader()
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM job_events WHERE job_id = ?1")?
            .query_row([job_id], |row| row.get(0))?;
        seq_from_sql(seq)
    }

    // ---- apps ----

    /// Inserts the app, or replaces the one with its id. Replacing keeps its
    /// secrets (an update, not delete-and-insert, so nothing cascades).
    pub fn put_app(&self, record: &AppRecord) -> Result<(), StoreError> {
        let app = &record.app;
        self.conn()
            .prepare_cached(
                "INSERT INTO apps (id, state, created_at, updated_at, backend, app_json, containers_json, params_json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (id) DO UPDATE SET
                state = excluded.state, created_at = excluded.created_at, updated_at = excluded.updated_at,
                backend = excluded.backend, app_json = excluded.app_json,
                containers_json = excluded.containers_json, params_json = excluded.params_json",
            )?
            .execute(params![
                app.id,
                app.state.as_str(),
                app.created_at,
                app.updated_at,
                record.backend,
                to_json(app)?,
                to_json(&record.container_refs)?,
                to_json(&record.param_values)?,
            ])?;
        Ok(())
    }

    pub fn app(&self, id: &str) -> Result<Option<AppRecord>, StoreError> {
        let row = self
            .reader()
            .prepare_cached(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = ?1"))?
            .query_row([id], AppRow::read)
            .optional()?;
        row.map(AppRow::into_record).transpose()
    }

    /// All apps, oldest first.
    pub fn apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!("SELECT {APP_COLUMNS} FROM apps ORDER BY created_at, rowid"))?;
        let rows: Vec<AppRow> = stmt.query_map([], AppRow::read)?.collect::<Result<_, _>>()?;
        rows.into_iter().map(AppRow::into_record).collect()
    }

    /// Sets the app's state and `updated_at`; false if there is no such app.
    pub fn set_app_state(&self, id: &str, state: AppState) -> Result<bool, StoreError> {
        let changed = self
            .conn()
            .prepare_cached("UPDATE apps SET state = ?2, updated_at = ?3 WHERE id = ?1")?
            .execute(params![id, state.as_str(), now_rfc3339()])?;
        Ok(changed > 0)
    }

    /// Deletes the app and its secrets; false if there is no such app. Its
    /// jobs stay, as history.
    pub fn delete_app(&self, id: &str) -> Result<bool, StoreError> {
        let changed = self.conn().execute("DELETE FROM apps WHERE id = ?1", [id])?;
        Ok(changed > 0)
    }

    // ---- secrets ----

    /// Stores the app's secret values, sealed, adding to or replacing those of
    /// the same names (others stay). The app must exist.
    pub fn put_secrets(&self, app_id: &str, secrets: &BTreeMap<String, String>) -> Result<(), StoreError> {
        if app_id.contains('\0') || secrets.keys().any(|name| name.contains('\0')) {
            return Err(StoreError::Invalid("app ids and secret names cannot contain NUL".to_string()));
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let exists: bool =
            tx.query_row("SELECT EXISTS (SELECT 1 FROM apps WHERE id = ?1)", [app_id], |row| row.get(0))?;
        if !exists {
            return Err(StoreError::NotFound(format!("no app `{app_id}`")));
        }
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO app_secrets (app_id, name, nonce, ciphertext) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (app_id, name) DO UPDATE SET nonce = excluded.nonce, ciphertext = excluded.ciphertext",
            )?;
            for (name, value) in secrets {
                let sealed = self.cipher.seal(app_id, name, value.as_bytes());
                stmt.execute(params![app_id, name, &sealed.nonce[..], sealed.ciphertext])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The app's secret values in clear; empty for an app without any.
    pub fn secrets(&self, app_id: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let rows: Vec<(String, Vec<u8>, Vec<u8>)> = {
            let conn = self.reader();
            let mut stmt = conn.prepare_cached("SELECT name, nonce, ciphertext FROM app_secrets WHERE app_id = ?1")?;
            let rows = stmt
                .query_map([app_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect::<Result<_, _>>()?;
            rows
        };
        let mut secrets = BTreeMap::new();
        for (name, nonce, ciphertext) in rows {
            let decrypt_error = || StoreError::Decrypt { app: app_id.to_string(), name: name.clone() };
            let plaintext = self.cipher.open(app_id, &name, &nonce, &ciphertext).map_err(|_| decrypt_error())?;
            // Authenticated, so not corruption on disk; say nothing of the bytes.
            let value = String::from_utf8(plaintext)
                .map_err(|_| StoreError::Corrupt(format!("secret {name} of app {app_id} is not UTF-8")))?;
            secrets.insert(name, value);
        }
        Ok(secrets)
    }
}

/// One write of [`Store::write_jobs`].
#[derive(Clone, Copy, Debug)]
pub enum JobWrite<'a> {
    /// [`Store::append_event`].
    Event { job_id: &'a str, event: &'a JobEvent },
    /// [`Store::set_job_state`], without result or error.
    State { job_id: &'a str, state: JobState },
    /// [`Store::set_job_state`], then `end` appended with the job as it now is.
    Finish {
        job_id: &'a str,
        state: JobState,
        result: Option<&'a serde_json::Value>,
        error: Option<&'a serde_json::Value>,
        end: &'a JobEvent,
    },
}

/// See [`Store::set_job_state`].
fn set_job_state(
    conn: &Connection,
    id: &str,
    state: JobState,
    result: Option<&serde_json::Value>,
    error: Option<&serde_json::Value>,
) -> Result<Job, StoreError> {
    let result = result.map(to_json).transpose()?;
    let error = error.map(to_json).transpose()?;
    let row = conn
        .prepare_cached(&format!(
            "UPDATE jobs SET
                state = ?2,
                started_at = CASE WHEN ?3 AND started_at IS NULL THEN ?5 ELSE started_at END,
                finished_at = CASE WHEN ?4 THEN COALESCE(finished_at, ?5) ELSE NULL END,
                result_json = COALESCE(?6, result_json),
                error_json = COALESCE(?7, error_json)
             WHERE id = ?1
             RETURNING {JOB_COLUMNS}"
        ))?
        .query_row(
            params![id, state.as_str(), state == JobState::Running, state.is_finished(), now_rfc3339(), result, error],
            JobRow::read,
        )
        .optional()?;
    row.ok_or_else(|| StoreError::NotFound(format!("no job `{id}`")))?.into_job()
}

/// Inserts one event row; a `seq` the job already has is a conflict.
fn insert_event(conn: &Connection, job_id: &str, seq: u64, json: &str) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached("INSERT INTO job_events (job_id, seq, json) VALUES (?1, ?2, ?3)")?;
    match stmt.execute(params![job_id, seq_to_sql(seq)?, json]) {
        Ok(_) => Ok(()),
        Err(e) if is_foreign_key(&e) => Err(StoreError::NotFound(format!("no job `{job_id}`"))),
        Err(e) if is_constraint(&e) => Err(StoreError::Conflict(format!("job `{job_id}` already has event {seq}"))),
        Err(e) => Err(e.into()),
    }
}

/// Inserts a job row (see [`Store::insert_job`]).
fn insert_job(conn: &Connection, job: &Job) -> Result<(), StoreError> {
    let result = job.result.as_ref().map(to_json).transpose()?;
    let error = job.error.as_ref().map(to_json).transpose()?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO jobs (id, kind, recipe, version, app_id, state, dry_run, created_at, started_at,
                               finished_at, result_json, error_json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            job.id,
            enum_text(&job.kind)?,
            job.recipe,
            job.version,
            job.app_id,
            job.state.as_str(),
            job.dry_run,
            job.created_at,
            job.started_at,
            job.finished_at,
            result,
            error,
        ]);
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if is_constraint(&e) => Err(StoreError::Conflict(format!("job `{}` already exists", job.id))),
        Err(e) => Err(e.into()),
    }
}

/// Upserts a recipe row (see [`Store::record_recipe`]).
fn record_recipe(conn: &Connection, id: &str, version: &str, digest: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO recipes (id, version, digest, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (id, version, digest) DO UPDATE SET last_seen = excluded.last_seen",
    )?
    .execute(params![id, version, digest, now_rfc3339()])?;
    Ok(())
}

/// Whether a use of this token should be written down: never used, or not in
/// the last [`TOKEN_TOUCH_INTERVAL`] (or "in the future": the clock moved back).
pub fn token_use_is_stale(token: &TokenInfo) -> bool {
    let Some(last) = token.last_used_at.as_deref() else {
        return true;
    };
    let now = SystemTime::now();
    let since = now.checked_sub(TOKEN_TOUCH_INTERVAL).unwrap_or(UNIX_EPOCH);
    // Fixed-width RFC 3339 texts compare as the instants do.
    last < rfc3339_at(since).as_str() || last > rfc3339_at(now).as_str()
}

const JOB_COLUMNS: &str =
    "id, kind, recipe, version, app_id, state, dry_run, created_at, started_at, finished_at, result_json, error_json";

/// A `jobs` row as read, before its text is parsed (which may fail as `Corrupt`).
struct JobRow {
    id: String,
    kind: String,
    recipe: String,
    version: String,
    app_id: String,
    state: String,
    dry_run: bool,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    result_json: Option<String>,
    error_json: Option<String>,
}

impl JobRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<JobRow> {
        Ok(JobRow {
            id: row.get(0)?,
            kind: row.get(1)?,
            recipe: row.get(2)?,
            version: row.get(3)?,
            app_id: row.get(4)?,
            state: row.get(5)?,
            dry_run: row.get(6)?,
            created_at: row.get(7)?,
            started_at: row.get(8)?,
            finished_at: row.get(9)?,
            result_json: row.get(10)?,
            error_json: row.get(11)?,
        })
    }

    fn into_job(self) -> Result<Job, StoreError> {
        let id = self.id;
        let kind: JobKind = parse_enum(&self.kind, || format!("kind of job `{id}`"))?;
        let state = JobState::parse(&self.state)
            .ok_or_else(|| StoreError::Corrupt(format!("job `{id}` has unknown state `{}`", self.state)))?;
        let result = self.result_json.map(|json| from_json(&json, || format!("result of job `{id}`"))).transpose()?;
        let error = self.error_json.map(|json| from_json(&json, || format!("error of job `{id}`"))).transpose()?;
        Ok(Job {
            id,
            kind,
            recipe: self.recipe,
            version: self.version,
            app_id: self.app_id,
            state,
            dry_run: self.dry_run,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            result,
            error,
        })
    }
}

const APP_COLUMNS: &str = "id, state, updated_at, backend, app_json, containers_json, params_json";

struct AppRow {
    id: String,
    state: String,
    updated_at: String,
    backend: String,
    app_json: String,
    containers_json: String,
    params_json: String,
}

impl AppRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<AppRow> {
        Ok(AppRow {
            id: row.get(0)?,
            state: row.get(1)?,
            updated_at: row.get(2)?,
            backend: row.get(3)?,
            app_json: row.get(4)?,
            containers_json: row.get(5)?,
            params_json: row.get(6)?,
        })
    }

    fn into_record(self) -> Result<AppRecord, StoreError> {
        let id = self.id;
        let mut app: App = from_json(&self.app_json, || format!("app `{id}`"))?;
        // The columns are authoritative: `set_app_state` updates only them.
        app.state = AppState::parse(&self.state)
            .ok_or_else(|| StoreError::Corrupt(format!("app `{id}` has unknown state `{}`", self.state)))?;
        app.updated_at = self.updated_at;
        app.id = id.clone();
        Ok(AppRecord {
            app,
            backend: self.backend,
            container_refs: from_json(&self.containers_json, || format!("containers of app `{id}`"))?,
            param_values: from_json(&self.params_json, || format!("parameters of app `{id}`"))?,
        })
    }
}

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<TokenInfo> {
    Ok(TokenInfo {
        id: row.get(0)?,
        name: row.get(1)?,
        created_at: row.get(2)?,
        last_used_at: row.get(3)?,
        revoked_at: row.get(4)?,
    })
}

fn validate_token_name(name: &str) -> Result<(), StoreError> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 64 || !name.chars().all(valid_char) {
        return Err(StoreError::Invalid(format!(
            "token name `{name}` must be 1 to 64 characters of letters, digits, `.`, `_` and `-`"
        )));
    }
    Ok(())
}

fn new_token_plaintext() -> String {
    let mut rng = rand::rng();
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + TOKEN_RANDOM_LEN);
    token.push_str(TOKEN_PREFIX);
    for _ in 0..TOKEN_RANDOM_LEN {
        token.push(TOKEN_ALPHABET[rng.random_range(0..TOKEN_ALPHABET.len())] as char);
    }
    token
}

/// Cheap shape check, so arbitrary input is not hashed and looked up.
fn looks_like_token(text: &str) -> bool {
    text.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == TOKEN_RANDOM_LEN && rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

fn token_hash(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

fn is_constraint(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(ErrorCode::ConstraintViolation)
}

fn is_foreign_key(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(e, _) if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
}

fn seq_to_sql(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Invalid(format!("event seq {seq} is too large")))
}

fn seq_from_sql(seq: i64) -> Result<u64, StoreError> {
    u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("negative event seq {seq}")))
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(format!("cannot encode as JSON: {e}")))
}

fn from_json<T: DeserializeOwned>(json: &str, what: impl FnOnce() -> String) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("{}: {e}", what())))
}

/// A unit enum's serde name (`install`), as stored in text columns.
fn enum_text<T: Serialize>(value: &T) -> Result<String, StoreError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => Ok(text),
        _ => Err(StoreError::Invalid("expected a unit enum".to_string())),
    }
}

fn parse_enum<T: DeserializeOwned>(text: &str, what: impl FnOnce() -> String) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|_| StoreError::Corrupt(format!("{} is unknown: `{text}`", what())))
}

/// The current UTC time as RFC 3339 with milliseconds, `2026-11-24T18:00:00.123Z`.
/// Fixed width, so these strings sort as the instants do.
pub fn now_rfc3339() -> String {
    rfc3339_at(SystemTime::now())
}

/// An instant as [`now_rfc3339`] writes it.
fn rfc3339_at(when: SystemTime) -> String {
    let since_epoch = when.duration_since(UNIX_EPOCH).unwrap_or_default();
    format_rfc3339(since_epoch.as_secs() as i64, since_epoch.subsec_millis())
}

/// Formats seconds since the Unix epoch (UTC) plus milliseconds.
fn format_rfc3339(secs: i64, millis: u32) -> String {
    let days = secs.div_euclid(86_400);
    let second_of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// (year, month, day) of a count of days since 1970-01-01 in the proleptic
/// Gregorian calendar: the inverse of Howard Hinnant's `days_from_civil`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    struct Fixture {
        dir: tempfile::TempDir,
        db: PathBuf,
        key: PathBuf,
        store: Store,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let (db, key) = (dir.path().join("db/proximity.db"), dir.path().join("store.key"));
            let store = Store::open(&db, &key).unwrap();
            Fixture { dir, db, key, store }
        }

        fn reopen(&self) -> Store {
            Store::open(&self.db, &self.key).unwrap()
        }
    }

    /// The database file and its WAL and shared-memory files, concatenated.
    fn db_bytes(db: &Path) -> Vec<u8> {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let mut path = db.as_os_str().to_owned();
            path.push(suffix);
            if let Ok(content) = fs::read(&path) {
                bytes.extend(content);
            }
        }
        bytes
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|window| window == needle)
    }

    fn job(id: &str, created_at: &str) -> Job {
        Job {
            created_at: created_at.to_string(),
            ..Job::queued(id, JobKind::Install, "gitea", "1.0.0", "gitea-1", false)
        }
    }

    fn event(seq: u64, message: &str) -> JobEvent {
        JobEvent {
            seq,
            elapsed_ms: seq * 10,
            kind: "log".to_string(),
            name: None,
            level: Some("info".to_string()),
            message: Some(message.to_string()),
            job: None,
        }
    }

    fn app_record(id: &str, created_at: &str) -> AppRecord {
        AppRecord {
            app: App {
                id: id.to_string(),
                recipe: "gitea".to_string(),
                version: "1.0.0".to_string(),
                digest: "sha256:abc".to_string(),
                state: AppState::Deploying,
                url: Some("http://10.0.0.5:3000".to_string()),
                address: Some("10.0.0.5".to_string()),
                ports: vec![3000],
                outputs: BTreeMap::from([("admin".to_string(), "root".to_string())]),
                containers: vec!["101".to_string()],
                params: BTreeMap::from([
                    ("title".to_string(), "Git".to_string()),
                    ("admin_password".to_string(), "«secret:admin_password»".to_string()),
                ]),
                secrets: vec!["admin_password".to_string()],
                node: Some("pve1".to_string()),
                deployment_id: "job-1".to_string(),
                created_at: created_at.to_string(),
                updated_at: created_at.to_string(),
            },
            backend: "lxc".to_string(),
            container_refs: vec![ContainerRef {
                id: "101".to_string(),
                hostname: "gitea".to_string(),
                node: Some("pve1".to_string()),
            }],
            param_values: BTreeMap::from([("title".to_string(), "Git".to_string())]),
        }
    }

    #[test]
    fn store_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Store>();
    }

    #[test]
    fn open_applies_migrations_and_reopen_is_idempotent() {
        let fixture = Fixture::new();
        assert_eq!(fixture.store.schema_version().unwrap(), migrations::latest());
        fixture.store.create_token("ci").unwrap();
        drop(fixture.store);
        let store = Store::open(&fixture.db, &fixture.key).unwrap();
        assert_eq!(store.schema_version().unwrap(), migrations::latest());
        assert_eq!(store.tokens().unwrap().len(), 1);
    }

    #[test]
    fn open_sets_pragmas_and_private_files() {
        let fixture = Fixture::new();
        let conn = fixture.store.conn();
        let journal: String = conn.pragma_query_value(None, "journal_mode", |row| row.get(0)).unwrap();
        let foreign_keys: i64 = conn.pragma_query_value(None, "foreign_keys", |row| row.get(0)).unwrap();
        let synchronous: i64 = conn.pragma_query_value(None, "synchronous", |row| row.get(0)).unwrap();
        assert_eq!((journal.as_str(), foreign_keys, synchronous), ("wal", 1, 1));
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&fixture.db), 0o600);
        assert_eq!(mode(&fixture.key), 0o600);
    }

    #[test]
    fn too_new_schema_refused() {
        let fixture = Fixture::new();
        drop(fixture.store);
        let conn = Connection::open(&fixture.db).unwrap();
        conn.pragma_update(None, "user_version", migrations::latest() + 5).unwrap();
        drop(conn);
        let err = Store::open(&fixture.db, &fixture.key).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
        assert!(err.to_string().contains("newer than this build"), "{err}");
    }

    #[test]
    fn key_file_open_to_others_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("store.key");
        fs::write(&key_path, [9u8; 32]).unwrap();
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Store::open(&dir.path().join("proximity.db"), &key_path).unwrap_err();
        assert!(matches!(err, StoreError::Key { .. }), "{err}");
    }

    #[test]
    fn tokens_create_verify_revoke() {
        let fixture = Fixture::new();
        let store = &fixture.store;
        let (info, plaintext) = store.create_token("ci-runner").unwrap();
        assert!(looks_like_token(&plaintext), "{plaintext}");
        assert_eq!(info.name, "ci-runner");
        assert_eq!(info.last_used_at, None);

        let verified = store.verify_token(&plaintext).unwrap().expect("token verifies");
        assert_eq!(verified.id, info.id);
        assert!(verified.last_used_at.is_some());
        assert_eq!(store.tokens().unwrap()[0].last_used_at, verified.last_used_at);
        assert_eq!(store.verify_token("prx_0000000000000000000000000000000000000000").unwrap(), None);
        assert_eq!(store.verify_token("nonsense").unwrap(), None);

        // Plaintext is never stored; only its hash is.
        let bytes = db_bytes(&fixture.db);
        assert!(!contains(&bytes, plaintext.as_bytes()));
        assert!(!contains(&bytes, &plaintext.as_bytes()[TOKEN_PREFIX.len()..]));

        assert!(matches!(store.create_token("ci-runner"), Err(StoreError::Conflict(_))));
        assert!(store.revoke_token("ci-runner").unwrap());
        assert!(!store.revoke_token("ci-runner").unwrap());
        assert!(!store.revoke_token("nobody").unwrap());
        assert_eq!(store.verify_token(&plaintext).unwrap(), None);

        // The name is free again once revoked; the old token stays listed.
        let (again, second) = store.create_token("ci-runner").unwrap();
        assert_ne!(again.id, info.id);
        assert!(store.verify_token(&second).unwrap().is_some());
        let tokens = store.tokens().unwrap();
        assert_eq!(tokens.len(), 2);
        assert!(tokens[0].revoked_at.is_some() && tokens[1].revoked_at.is_none());
    }

    #[test]
    fn token_use_written_at_most_once_a_minute() {
        let fixture = Fixture::new();
        let store = &fixture.store;
        let (_, plaintext) = store.create_token("ci").unwrap();
        assert_eq!(store.find_token(&plaintext).unwrap().unwrap().last_used_at, None, "finding is not using");
        let first = store.verify_token(&plaintext).unwrap().unwrap().last_used_at.unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let again = store.verify_token(&plaintext).unwrap().unwrap();
        assert_eq!(again.last_used_at.as_deref(), Some(first.as_str()), "not rewritten within the minute");
        assert!(!token_use_is_stale(&again));

        // A use older than the interval is written again.
        let old = "2020-01-01T00:00:00.000Z";
        store.conn().execute("UPDATE tokens SET last_used_at = ?1", [old]).unwrap();
        let token = store.find_token(&plaintext).unwrap().unwrap();
        assert!(token_use_is_stale(&token));
        let used = store.verify_token(&plaintext).unwrap().unwrap().last_used_at.unwrap();
        assert!(used.as_str() >= first.as_str(), "{used} >= {first}");
        assert_eq!(store.tokens().unwrap()[0].last_used_at.as_deref(), Some(used.as_str()));

        store.revoke_token("ci").unwrap();
        assert_eq!(store.find_token(&plaintext).unwrap(), None);
        assert_eq!(store.verify_token(&plaintext).unwrap(), None);
    }

    #[test]
    fn token_names_validated() {
        let fixture = Fixture::new();
        for bad in ["", "has space", "ünïcode", "a/b", &"x".repeat(65)] {
            assert!(matches!(fixture.store.create_token(bad), Err(StoreError::Invalid(_))), "{bad:?}");
        }
        fixture.store.create_token(&"x".repeat(64)).unwrap();
        fixture.store.create_token("A.b_c-9").unwrap();
    }

    #[test]
    fn recipes_upsert_keeps_first_seen() {
        let fixture = Fixture::new();
        fixture.store.record_recipe("gitea", "1.0.0", "sha256:abc").unwrap();
        let first: String = fixture
            .store
            .conn()
            .query_row("SELECT first_seen FROM recipes WHERE id = 'gitea'", [], |row| row.get(0))
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        fixture.store.record_recipe("gitea", "1.0.0", "sha256:abc").unwrap();
        let (count, first_after, last): (i64, String, String) = fixture
            .store
            .conn()
            .query_row("SELECT COUNT(*), MIN(first_seen), MAX(last_seen) FROM recipes", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .unwrap();
        assert_eq!(count, 1);
        assert_eq!(first_after, first);
        assert!(last > first, "{last} > {first}");
    }

    #[test]
    fn jobs_insert_and_state_transitions() {
        let fixture = Fixture::new();
        let store = &fixture.store;
        store.insert_job(&job("job-1", "2026-01-01T00:00:00.000Z")).unwrap();
        assert!(matches!(store.insert_job(&job("job-1", "2026-01-01T00:00:00.000Z")), Err(StoreError::Conflict(_))));

        let queued = store.job("job-1").unwrap().unwrap();
        assert_eq!((queued.state, queued.kind, &queued.started_at), (JobState::Queued, JobKind::Install, &None));

        store.set_job_state("job-1", JobState::Running, None, None).unwrap();
        let running = store.job("job-1").unwrap().unwrap();
        let started = running.started_at.clone().expect("started_at set");
        assert_eq!((running.state, &running.finished_at), (JobState::Running, &None));

        std::thread::sleep(Duration::from_millis(5));
        store.set_job_state("job-1", JobState::Running, None, None).unwrap();
        assert_eq!(store.job("job-1").unwrap().unwrap().started_at.as_ref(), Some(&started), "started_at set once");

        let result = serde_json::json!({"url": "http://x"});
        store.set_job_state("job-1", JobState::Succeeded, Some(&result), None).unwrap();
        let done = store.job("job-1").unwrap().unwrap();
        assert_eq!(done.state, JobState::Succeeded);
        assert_eq!(done.started_at.as_ref(), Some(&started));
        assert!(done.finished_at.as_ref().is_some_and(|finished| *finished >= started));
        assert_eq!(done.result, Some(result.clone()));
        assert_eq!(done.error, None);

        // Result kept when not given.
        let error = serde_json::json!({"step": "health"});
        store.set_job_state("job-1", JobState::Failed, None, Some(&error)).unwrap();
        let failed = store.job("job-1").unwrap().unwrap();
        assert_eq!((failed.result, failed.error), (Some(result), Some(error)));

        assert!(matches!(store.set_job_state("nope", JobState::Running, None, None), Err(StoreError::NotFound(_))));
        assert!(store.job("nope").unwrap().is_none());
    }

    #[test]
    fn jobs_listed_newest_first_and_by_state() {
        let fixture = Fixture::new();
        let store = &fixture.store;
        for (id, at) in
            [("a", "2026-01-01T00:00:00.000Z"), ("b", "2026-01-02T00:00:00.000Z"), ("c", "2026-01-03T00:00:00.000Z")]
        {
            store.insert_job(&job(id, at)).unwrap();
        }
        store.set_job_state("b", JobState::Running, None, None).unwrap();
        store.set_job_state("c", JobState::Failed, None, None).unwrap();
        let ids = |jobs: Vec<Job>| jobs.into_iter().map(|job| job.id).collect::<Vec<_>>();
        assert_eq!(ids(store.jobs(10).unwrap()), ["c", "b", "a"]);
        assert_eq!(ids(store.jobs(2).unwrap()), ["c", "b"]);
        assert_eq!(ids(store.jobs_in_states(&[JobState::Queued, JobState::Running]).unwrap()), ["a", "b"]);
        assert_eq!(ids(store.jobs_in_states(&[JobState::Failed]).unwrap()), ["c"]);
        assert!(store.jobs_in_states(&[]).unwrap().is_empty());
    }

    #[test]
    fn events_appended_and_read_after_seq() {
        let fixture = Fixture::new();
        let store = &fixture.store;
        store.insert_job(&job("job-1", "2026-01-01T00:00:00.000Z")).unwrap();
        assert_eq!(store.last_seq("job-1").unwrap(), 0);
        store.append_event("job-1", &event(1, "one")).unwrap();
        store.append_events("job-1", &[event(2, "two"), event(3, "three")]).unwrap();
        let mut end = event(4, "done");
        end.kind = "end".to_string();
        end.job = Some(Box::new(store.job("job-1").unwrap().unwrap()));
        store.append_event("job-1", &end).unwrap();

        assert_eq!(store.last_seq("job-1").unwrap(), 4);
        let all = store.events_after("job-1", 0).unwrap();
        assert_eq!(all.iter().map(|event| event.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(serde_json::to_value(&all[1]).unwrap(), serde_json::to_value(event(2, "two")).unwrap());
        assert_eq!(all[3].job.as_ref().unwrap().id, "job-1");
        let later = store.events_after("job-1", 2).unwrap();
        assert_eq!(later.iter().map(|event| event.seq).collect::<Vec<_>>(), [3, 4]);
        assert!(store.events_after("job-1", 4).unwrap().is_empty());

        // A duplicate seq fails the whole batch.
        assert!(matches!(
            store.append_events("job-1", &[event(5, "five"), event(2, "dup")]),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.last_seq("job-1").unwrap(), 4);
        assert!(matches!(store.append_event("nope", &event(1, "x")), Err(StoreError::NotFound(_))));
        assert_eq!(store.last_seq("nope").unwrap(), 0);
    }

    #[test]
    fn event_batches_span_jobs_all_or_none() {
        let fixture = Fixture::new();
        let store = &fixture.store;
        store.insert_job(&job("a", "2026-01-01T00:00:00.000Z")).unwrap();
        store.insert_job(&job("b", "2026-01-01T00:00:00.000Z")).unwrap();
        let (one, two) = (event(1, "one"), event(2, "two"));
        store.append_event_batch(&[("a", &one), ("b", &one), ("a", &two)]).unwrap();
        assert_eq!((store.last_seq("a").unwrap(), store.last_seq("b").unwrap()), (2, 1));
        let three = event(3, "three");
        assert!(matches!(store.append_event_batch(&[("b", &three), ("a", &two)]), Err(StoreError::Conflict(_))));
        assert!(matches!(store.append_event_batch(&[("b", &three), ("c", &one)]), Err(StoreError::NotFound(_))));
        assert_eq!(store.last_seq("b").unwrap(), 1, "nothing of a failed batch is kept");
    }

    #[test]
    fn a_job_is_inserted_with_its_recipe_and_returned_by_state_changes() {
        let fixture = Fixture::new();
        let store = &fixture.store;
        store.insert_job_of_recipe(&job("job-1", "2026-01-01T00:00:00.000Z"), "sha256:abc").unwrap();
        let seen: i64 = store
            .conn()
            .query_row("SELECT COUNT(*) FROM recipes WHERE id = 'gitea' AND digest = 'sha256:abc'", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(seen, 1);
        let conflict = store.insert_job_of_recipe(&job("job-1", "2026-01-01T00:00:00.000Z"), "sha256:def");
        assert!(matches!(conflict, Err(StoreError::Conflict(_))));
        let digests: i64 = store.conn().query_row("SELECT COUNT(*) FROM recipes", [], |row| row.get(0)).unwrap();
        assert_eq!(digests, 1, "the recipe is recorded with its job or not at all");

        let running = store.set_job_state("job-1", JobState::Running, None, None).unwrap();
        assert_eq!((running.state, running.started_at.is_some()), (JobState::Running, true));
        let done = store.set_job_state("job-1", JobState::Succeeded, None, None).unwrap();
        assert_eq!(serde_json::to_value(&done).unwrap(), serde_json::to_value(store.job("job-1").unwrap()).unwrap());
    }

    #[test]
    fn apps_put_get_list_state_delete() {
        let fixture = Fixture::new();
        let store = &fixture.store;
        let first = app_record("gitea-1", "2026-01-02T00:00:00.000Z");
        let second = app_record("gitea-0", "2026-01-01T00:00:00.000Z");
        store.put_app(&first).unwrap();
        store.put_app(&second).unwrap();

        let read = store.app("gitea-1").unwrap().unwrap();
        assert_eq!(serde_json::to_value(&read.app).unwrap(), serde_json::to_value(&first.app).unwrap());
        assert_eq!(read.backend, "lxc");
        assert_eq!(read.container_refs, first.container_refs);
        assert_eq!(read.param_values, first.param_values);
        assert!(store.app("nope").unwrap().is_none());

        let ids = |records: Vec<AppRecord>| records.into_iter().map(|record| record.app.id).collect::<Vec<_>>();
        assert_eq!(ids(store.apps().unwrap()), ["gitea-0", "gitea-1"]);

        assert!(store.set_app_state("gitea-1", AppState::Running).unwrap());
        assert!(!store.set_app_state("nope", AppState::Running).unwrap());
        let running = store.app("gitea-1").unwrap().unwrap();
        assert_eq!(running.app.state, AppState::Running);
        assert!(running.app.updated_at > first.app.updated_at);

        // Replacing keeps the app's secrets.
        store.put_secrets("gitea-1", &BTreeMap::from([("admin_password".to_string(), "pw".to_string())])).unwrap();
        let mut upgraded = running.clone();
        upgraded.app.version = "1.1.0".to_string();
        store.put_app(&upgraded).unwrap();
        assert_eq!(store.app("gitea-1").unwrap().unwrap().app.version, "1.1.0");
        assert_eq!(store.secrets("gitea-1").unwrap().len(), 1);

        assert!(store.delete_app("gitea-1").unwrap());
        assert!(!store.delete_app("gitea-1").unwrap());
        assert!(store.app("gitea-1").unwrap().is_none());
        assert!(store.secrets("gitea-1").unwrap().is_empty());
        let left: i64 = store.conn().query_row("SELECT COUNT(*) FROM app_secrets", [], |row| row.get(0)).unwrap();
        assert_eq!(left, 0, "secrets cascade with their app");
        assert_eq!(ids(store.apps().unwrap()), ["gitea-0"]);
    }

    #[test]
    fn secrets_round_trip_encrypted_at_rest() {
        let fixture = Fixture::new();
        let store = &fixture.store;
        store.put_app(&app_record("gitea-1", "2026-01-01T00:00:00.000Z")).unwrap();
        let value = "correct-horse-battery-staple-3f9a";
        let secrets = BTreeMap::from([
            ("admin_password".to_string(), value.to_string()),
            ("db_password".to_string(), "other-secret-value-77".to_string()),
        ]);
        store.put_secrets("gitea-1", &secrets).unwrap();
        assert_eq!(store.secrets("gitea-1").unwrap(), secrets);
        assert!(!contains(&db_bytes(&fixture.db), value.as_bytes()));

        // Adding one keeps the others; putting one again replaces it.
        store.put_secrets("gitea-1", &BTreeMap::from([("db_password".to_string(), "new".to_string())])).unwrap();
        let read = store.secrets("gitea-1").unwrap();
        assert_eq!((read["admin_password"].as_str(), read["db_password"].as_str()), (value, "new"));

        let err = store.put_secrets("nope", &secrets).unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)));
        assert!(!err.to_string().contains(value));
        assert!(matches!(
            store.put_secrets("gitea-1", &BTreeMap::from([("a\0b".to_string(), "x".to_string())])),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn secrets_with_other_key_file_fail_to_decrypt() {
        let fixture = Fixture::new();
        fixture.store.put_app(&app_record("gitea-1", "2026-01-01T00:00:00.000Z")).unwrap();
        let value = "s3cret-value-for-key-test";
        fixture
            .store
            .put_secrets("gitea-1", &BTreeMap::from([("admin_password".to_string(), value.to_string())]))
            .unwrap();
        drop(fixture.store);
        let other = Store::open(&fixture.db, &fixture.dir.path().join("other.key")).unwrap();
        let err = other.secrets("gitea-1").unwrap_err();
        assert!(
            matches!(&err, StoreError::Decrypt { app, name } if app == "gitea-1" && name == "admin_password"),
            "{err}"
        );
        assert!(!err.to_string().contains(value));
    }

    #[test]
    fn tampered_or_moved_secret_fails_to_decrypt() {
        let fixture = Fixture::new();
        let store = &fixture.store;
        store.put_app(&app_record("gitea-1", "2026-01-01T00:00:00.000Z")).unwrap();
        store.put_app(&app_record("gitea-2", "2026-01-01T00:00:00.000Z")).unwrap();
        store.put_secrets("gitea-1", &BTreeMap::from([("admin_password".to_string(), "pw-1".to_string())])).unwrap();

        // Copied to another app: its associated data no longer matches.
        store
            .conn()
            .execute(
                "INSERT INTO app_secrets (app_id, name, nonce, ciphertext)
                 SELECT 'gitea-2', name, nonce, ciphertext FROM app_secrets WHERE app_id = 'gitea-1'",
                [],
            )
            .unwrap();
        assert!(matches!(store.secrets("gitea-2"), Err(StoreError::Decrypt { .. })));

        // One flipped bit.
        let mut ciphertext: Vec<u8> = store
            .conn()
            .query_row("SELECT ciphertext FROM app_secrets WHERE app_id = 'gitea-1'", [], |row| row.get(0))
            .unwrap();
        ciphertext[0] ^= 0x01;
        store.conn().execute("UPDATE app_secrets SET ciphertext = ?1 WHERE app_id = 'gitea-1'", [ciphertext]).unwrap();
        assert!(matches!(store.secrets("gitea-1"), Err(StoreError::Decrypt { .. })));
    }

    #[test]
    fn two_stores_on_one_file_see_each_others_writes() {
        let fixture = Fixture::new();
        let other = fixture.reopen();
        let (_, plaintext) = fixture.store.create_token("shared").unwrap();
        assert!(other.verify_token(&plaintext).unwrap().is_some());
        other.insert_job(&job("job-1", "2026-01-01T00:00:00.000Z")).unwrap();
        other.append_event("job-1", &event(1, "hello")).unwrap();
        assert_eq!(fixture.store.last_seq("job-1").unwrap(), 1);
        fixture.store.put_app(&app_record("gitea-1", "2026-01-01T00:00:00.000Z")).unwrap();
        fixture.store.put_secrets("gitea-1", &BTreeMap::from([("pw".to_string(), "v".to_string())])).unwrap();
        assert_eq!(other.secrets("gitea-1").unwrap()["pw"], "v");
        assert!(other.delete_app("gitea-1").unwrap());
        assert!(fixture.store.app("gitea-1").unwrap().is_none());
    }

    #[test]
    fn concurrent_first_open_agrees_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("proximity.db");
        let key = dir.path().join("store.key");
        let stores: Vec<Store> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4).map(|_| scope.spawn(|| Store::open(&db, &key).unwrap())).collect();
            handles.into_iter().map(|handle| handle.join().unwrap()).collect()
        });
        stores[0].put_app(&app_record("gitea-1", "2026-01-01T00:00:00.000Z")).unwrap();
        stores[0].put_secrets("gitea-1", &BTreeMap::from([("pw".to_string(), "v".to_string())])).unwrap();
        for store in &stores {
            assert_eq!(store.schema_version().unwrap(), migrations::latest());
            assert_eq!(store.secrets("gitea-1").unwrap()["pw"], "v");
        }
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(format_rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(68_169_600, 0), "1972-02-29T00:00:00.000Z");
        assert_eq!(format_rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(format_rfc3339(951_868_799, 999), "2000-02-29T23:59:59.999Z");
        assert_eq!(format_rfc3339(1_700_000_000, 123), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_rfc3339(1_709_251_199, 0), "2024-02-29T23:59:59.000Z");
        assert_eq!(format_rfc3339(4_102_444_799, 0), "2099-12-31T23:59:59.000Z");
        assert_eq!(format_rfc3339(253_402_300_799, 0), "9999-12-31T23:59:59.000Z");
        assert_eq!(format_rfc3339(-1, 0), "1969-12-31T23:59:59.000Z");
    }

    #[test]
    fn now_rfc3339_has_fixed_shape() {
        let now = now_rfc3339();
        assert_eq!(now.len(), 24, "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z') && now.as_bytes()[10] == b'T', "{now}");
    }
}
