//! What a run reports while it happens: steps and log lines, in order.
//!
//! Every message passes through the run's [`Redactor`] before anyone sees it,
//! so a secret parameter that a recipe echoes never reaches a terminal, a
//! log file or an event stream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EventKind {
    /// The recipe started a new step.
    Step { name: String },
    /// A line from the recipe.
    Log { level: LogLevel, message: String },
    /// Something the host did on the run's behalf (cleanup, limits).
    Host { message: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Time since the run started.
    #[serde(with = "millis")]
    pub elapsed: Duration,
    #[serde(flatten)]
    pub kind: EventKind,
}

mod millis {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

/// Replaces secret values with `«secret:NAME»`.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// (value, name), longest value first so that a secret containing
    /// another is replaced whole.
    secrets: Vec<(String, String)>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut secrets: Vec<(String, String)> = secrets.into_iter().filter(|(value, _)| !value.is_empty()).collect();
        secrets.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        Redactor { secrets }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (value, name) in &self.secrets {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), &format!("«secret:{name}»"));
            }
        }
        out
    }
}

/// Longest message kept from a recipe; the rest is cut with a marker.
pub(crate) const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Events kept per run: a recipe that logs in a loop cannot exhaust the host.
const MAX_EVENTS: usize = 100_000;

/// Where a run's events go. Cheap to clone.
#[derive(Clone)]
pub struct EventSink {
    tx: Option<mpsc::UnboundedSender<Event>>,
    started: Instant,
    redactor: Arc<Redactor>,
    sent: Arc<AtomicUsize>,
}

impl EventSink {
    /// A sink and the receiving end of its events.
    pub fn channel(redactor: Redactor) -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink =
            EventSink { tx: Some(tx), started: Instant::now(), redactor: Arc::new(redactor), sent: Arc::default() };
        (sink, rx)
    }

    /// A sink that drops everything (benchmarks, callers that only want the result).
    pub fn discard() -> Self {
        EventSink { tx: None, started: Instant::now(), redactor: Arc::default(), sent: Arc::default() }
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub fn step(&self, name: &str) {
        self.send(|s| EventKind::Step { name: s.clean(name) });
    }

    pub fn log(&self, level: LogLevel, message: &str) {
        self.send(|s| EventKind::Log { level, message: s.clean(message) });
    }

    pub fn host(&self, message: &str) {
        self.send(|s| EventKind::Host { message: s.clean(message) });
    }

    fn clean(&self, text: &str) -> String {
        // Redacted whole, then cut: a cut first could split a secret and
        // leave its first part unrecognised.
        let text = self.redactor.redact(text);
        if text.len() > MAX_MESSAGE_BYTES {
            let mut cut = MAX_MESSAGE_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}… [{} bytes cut]", &text[..cut], text.len() - cut)
        } else {
            text
        }
    }

    fn send(&self, make: impl FnOnce(&Self) -> EventKind) {
        let Some(tx) = &self.tx else { return };
        let n = self.sent.fetch_add(1, Ordering::Relaxed);
        let kind = match n.cmp(&MAX_EVENTS) {
            std::cmp::Ordering::Less => make(self),
            std::cmp::Ordering::Equal => {
                EventKind::Host { message: format!("more than {MAX_EVENTS} events: later ones are dropped") }
            }
            std::cmp::Ordering::Greater => return,
        };
        // A receiver that went away (a client that disconnected) is not the run's problem.
        let _ = tx.send(Event { elapsed: self.started.elapsed(), kind });
    }
}
