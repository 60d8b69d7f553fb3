//! Job events (and the job state changes that go with them) on their way to
//! the store and then to live readers.
//!
//! One writer thread takes whatever is queued, of any jobs, stores it in one
//! transaction and only then broadcasts the events: a busy server commits
//! once for many writes, an event a client sees is always in the store (so a
//! restarted server replays it), and each job's writes keep their order.

use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::{broadcast, oneshot};

use crate::api;
use crate::store::{JobWrite, Store};

/// Events stored per transaction at most, so one commit stays short.
const MAX_BATCH: usize = 512;

enum Entry {
    Event {
        job_id: Arc<str>,
        event: api::JobEvent,
        live: broadcast::Sender<api::JobEvent>,
    },
    /// The job has started running.
    Running {
        job_id: Arc<str>,
    },
    /// The job's final state, then its `end` event (which gets the final job).
    Finish {
        job_id: Arc<str>,
        state: api::JobState,
        result: Option<serde_json::Value>,
        error: Option<serde_json::Value>,
        end: api::JobEvent,
        live: broadcast::Sender<api::JobEvent>,
    },
    /// Answered once everything queued before it is stored and broadcast.
    Flush(oneshot::Sender<()>),
}

impl Entry {
    fn job_id(&self) -> Option<&str> {
        match self {
            Entry::Event { job_id, .. } | Entry::Running { job_id } | Entry::Finish { job_id, .. } => Some(job_id),
            Entry::Flush(_) => None,
        }
    }

    fn write(&self) -> Option<JobWrite<'_>> {
        Some(match self {
            Entry::Event { job_id, event, .. } => JobWrite::Event { job_id, event },
            Entry::Running { job_id } => JobWrite::State { job_id, state: api::JobState::Running },
            Entry::Finish { job_id, state, result, error, end, .. } => {
                JobWrite::Finish { job_id, state: *state, result: result.as_ref(), error: error.as_ref(), end }
            }
            Entry::Flush(_) => return None,
        })
    }
}

/// The queue to the writer thread. Cheap to clone; the thread ends when the
/// last clone is dropped.
#[derive(Clone)]
pub(super) struct Journal {
    queue: mpsc::Sender<Entry>,
}

impl Journal {
    pub(super) fn start(store: Arc<Store>) -> Journal {
        let (queue, entries) = mpsc::channel();
        std::thread::Builder::new()
            .name("proximity-events".into())
            .spawn(move || write(&store, entries))
            .expect("cannot start the job event writer thread");
        Journal { queue }
    }

    /// Queue an event: stored, then sent on `live`.
    pub(super) fn append(&self, job_id: &Arc<str>, event: api::JobEvent, live: &broadcast::Sender<api::JobEvent>) {
        self.send(Entry::Event { job_id: job_id.clone(), event, live: live.clone() });
    }

    /// Queue the job's move to `running`.
    pub(super) fn running(&self, job_id: &Arc<str>) {
        self.send(Entry::Running { job_id: job_id.clone() });
    }

    /// Queue the job's final state and its `end` event, which is sent on
    /// `live` with the job as stored.
    pub(super) fn finish(
        &self,
        job_id: &Arc<str>,
        (state, result, error): (api::JobState, Option<serde_json::Value>, Option<serde_json::Value>),
        end: api::JobEvent,
        live: &broadcast::Sender<api::JobEvent>,
    ) {
        self.send(Entry::Finish { job_id: job_id.clone(), state, result, error, end, live: live.clone() });
    }

    fn send(&self, entry: Entry) {
        if let Err(mpsc::SendError(entry)) = self.queue.send(entry) {
            tracing::error!(job = entry.job_id().unwrap_or_default(), "the event writer has stopped: a write is lost");
        }
    }

    /// Wait until every event queued so far is stored and broadcast.
    pub(super) async fn flush(&self) {
        let (done, stored) = oneshot::channel();
        if self.queue.send(Entry::Flush(done)).is_ok() {
            let _ = stored.await;
        }
    }
}

/// The writer thread: batch, store, broadcast, until the queue closes.
fn write(store: &Store, entries: mpsc::Receiver<Entry>) {
    let mut batch = Vec::new();
    while let Ok(first) = entries.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match entries.try_recv() {
                Ok(entry) => batch.push(entry),
                Err(_) => break,
            }
        }
        let mut stored = store_batch(store, &batch).into_iter();
        for entry in batch.drain(..) {
            let Entry::Flush(done) = entry else {
                // Not stored, not sent: no client may see what a restarted
                // server would not replay. Nobody listening is fine: late
                // readers replay from the store.
                match (entry, stored.next()) {
                    (Entry::Event { event, live, .. }, Some(Stored::Yes)) => {
                        let _ = live.send(event);
                    }
                    (Entry::Finish { live, .. }, Some(Stored::End(end))) => {
                        let _ = live.send(end);
                    }
                    _ => {}
                }
                continue;
            };
            let _ = done.send(());
        }
    }
}

/// What became of one write.
enum Stored {
    Yes,
    /// A `Finish`: its end event, with the job, as stored.
    End(api::JobEvent),
    No,
}

/// Store the batch's writes in one transaction or, if that fails, each on
/// its own, so that one job's problem does not cost the others their events.
/// One answer per write, in order.
fn store_batch(store: &Store, batch: &[Entry]) -> Vec<Stored> {
    let writes: Vec<JobWrite<'_>> = batch.iter().filter_map(Entry::write).collect();
    if writes.is_empty() {
        return Vec::new();
    }
    if let Ok(ends) = store.write_jobs(&writes) {
        let mut ends = ends.into_iter();
        let mut answer = |write: &JobWrite<'_>| match write {
            JobWrite::Finish { .. } => ends.next().map_or(Stored::No, Stored::End),
            _ => Stored::Yes,
        };
        return writes.iter().map(&mut answer).collect();
    }
    writes.iter().map(|write| store_one(store, write)).collect()
}

fn store_one(store: &Store, write: &JobWrite<'_>) -> Stored {
    match *write {
        JobWrite::Event { job_id, event } => match store.append_event(job_id, event) {
            Ok(()) => Stored::Yes,
            Err(err) => {
                tracing::error!(job = %job_id, "cannot store an event: {err}");
                Stored::No
            }
        },
        JobWrite::State { job_id, state } => match store.set_job_state(job_id, state, None, None) {
            Ok(_) => Stored::Yes,
            Err(err) => {
                tracing::error!(job = %job_id, "cannot mark the job {}: {err}", state.as_str());
                Stored::No
            }
        },
        JobWrite::Finish { job_id, state, result, error, end } => {
            // The end is recorded even when the state is not: it carries the
            // job as the store has it, and readers wait for it.
            let job = match store.set_job_state(job_id, state, result, error) {
                Ok(job) => Some(job),
                Err(err) => {
                    tracing::error!(job = %job_id, "cannot record the job's end: {err}");
                    store.job(job_id).ok().flatten()
                }
            };
            let end = api::JobEvent { job: job.map(Box::new), ..end.clone() };
            match store.append_event(job_id, &end) {
                Ok(()) => Stored::End(end),
                Err(err) => {
                    tracing::error!(job = %job_id, "cannot store the end event: {err}");
                    Stored::No
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str) -> api::Job {
        api::Job::queued(id, api::JobKind::Install, "nginx", "0.1.0", id, false)
    }

    #[tokio::test]
    async fn events_are_sent_only_once_stored_and_the_end_carries_the_final_job() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("p.db"), &dir.path().join("k")).unwrap());
        store.insert_job(&job("a")).unwrap();
        let journal = Journal::start(store.clone());
        let (live, mut rx) = broadcast::channel(16);
        let id: Arc<str> = "a".into();
        journal.running(&id);
        for seq in 1..=3 {
            journal.append(&id, api::JobEvent::new(seq, 0, "log"), &live);
        }
        // An event of a job the store does not know is neither stored nor sent.
        let (other, mut other_rx) = broadcast::channel(4);
        journal.append(&"nope".into(), api::JobEvent::new(1, 0, "log"), &other);
        let outcome = (api::JobState::Succeeded, Some(serde_json::json!({"ok": true})), None);
        journal.finish(&id, outcome, api::JobEvent::new(4, 0, "end"), &live);
        journal.flush().await;

        let mut sent = Vec::new();
        while let Ok(event) = rx.try_recv() {
            sent.push(event);
        }
        assert_eq!(sent.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
        let stored = store.events_after("a", 0).unwrap();
        assert_eq!(serde_json::to_value(&stored).unwrap(), serde_json::to_value(&sent).unwrap());
        let end_job = sent[3].job.as_ref().expect("the end carries the job");
        assert_eq!((end_job.state, end_job.started_at.is_some()), (api::JobState::Succeeded, true));
        assert_eq!(serde_json::to_value(&**end_job).unwrap(), serde_json::to_value(store.job("a").unwrap()).unwrap());
        assert!(other_rx.try_recv().is_err(), "not stored, not sent");
    }
}
