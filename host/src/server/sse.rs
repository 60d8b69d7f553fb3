//! A job's events as Server-Sent Events: the stored ones first, then the live
//! ones, each once and in order, ending after the `end` event.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::header::HeaderMap;
use axum::response::sse::Event;
use futures_util::Stream;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use crate::api;

/// Stored events after a sequence number, to fill a gap in the live feed
/// (a lagging receiver, a closed channel).
pub(crate) type Refill = Arc<dyn Fn(u64) -> Pin<Box<dyn Future<Output = Vec<api::JobEvent>> + Send>> + Send + Sync>;

/// The SSE message of one job event: `id` is its seq, `event` its kind, the data its JSON.
pub(crate) fn sse_event(event: &api::JobEvent) -> Event {
    let kind: String = event.kind.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect();
    let kind = if kind.is_empty() { "message".to_string() } else { kind };
    let base = Event::default().id(event.seq.to_string()).event(kind);
    match serde_json::to_string(event) {
        Ok(json) => base.data(json),
        // Cannot happen for these types; say so on the wire rather than panic.
        Err(err) => base.comment(format!("unencodable event: {err}")),
    }
}

/// Where to resume: the larger of a `Last-Event-ID` header and an `?after=N`
/// query parameter; 0 (from the start) when neither is there.
pub(crate) fn resume_after(headers: &HeaderMap, query: Option<&str>) -> Result<u64, ApiError> {
    let mut after = 0;
    if let Some(value) = headers.get("last-event-id") {
        let text = value.to_str().map_err(|_| ApiError::bad_request("Last-Event-ID is not a sequence number"))?;
        let text = text.trim();
        if !text.is_empty() {
            let seq = text
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("Last-Event-ID `{text}` is not a sequence number")))?;
            after = after.max(seq);
        }
    }
    for pair in query.unwrap_or("").split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "after" {
            continue;
        }
        let seq = value
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("`after={value}` is not a sequence number")))?;
        after = after.max(seq);
    }
    Ok(after)
}

/// The events to send, in order, each at most once.
pub(crate) struct EventFeed {
    queue: VecDeque<api::JobEvent>,
    live: Option<broadcast::Receiver<api::JobEvent>>,
    /// The seq of the last event sent (or the one to resume after).
    last: u64,
    refill: Refill,
    /// Ends the feed early: the server is going away.
    stop: Option<CancellationToken>,
    done: bool,
}

impl EventFeed {
    pub(crate) fn new(
        after: u64,
        replay: Vec<api::JobEvent>,
        live: Option<broadcast::Receiver<api::JobEvent>>,
        refill: Refill,
        stop: Option<CancellationToken>,
    ) -> Self {
        EventFeed { queue: replay.into(), live, last: after, refill, stop, done: false }
    }

    /// The next event to send; `None` after `end`, or when there is no more.
    pub(crate) async fn next(&mut self) -> Option<api::JobEvent> {
        if self.done {
            return None;
        }
        loop {
            while let Some(event) = self.queue.pop_front() {
                if event.seq > self.last {
                    return Some(self.sent(event));
                }
            }
            let live = self.live.as_mut()?;
            let received = match &self.stop {
                // Events already sent to the channel go out before the stop
                // is heeded: at shutdown a job's `end` is broadcast just
                // before the streams are told to stop.
                Some(stop) => tokio::select! {
                    biased;
                    received = live.recv() => Some(received),
                    () = stop.cancelled() => None,
                },
                None => Some(live.recv().await),
            };
            match received {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Ok(event)) => {
                    if event.seq > self.last {
                        return Some(self.sent(event));
                    }
                }
                Some(Err(RecvError::Lagged(missed))) => {
                    tracing::debug!(missed, after = self.last, "event stream lagged; reading the store");
                    self.queue.extend((self.refill)(self.last).await);
                }
                Some(Err(RecvError::Closed)) => {
                    // Whatever was stored after the last one we sent, then stop.
                    self.live = None;
                    self.queue.extend((self.refill)(self.last).await);
                }
            }
        }
    }

    fn sent(&mut self, event: api::JobEvent) -> api::JobEvent {
        self.last = event.seq;
        if event.kind == "end" {
            self.done = true;
        }
        event
    }

    /// The feed as the body of an [`axum::response::Sse`].
    pub(crate) fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
        futures_util::stream::unfold(self, |mut feed| async move {
            let event = feed.next().await?;
            Some((Ok(sse_event(&event)), feed))
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use axum::response::sse::Sse;
    use axum::response::IntoResponse;
    use futures_util::StreamExt;

    use super::*;

    fn event(seq: u64, kind: &str) -> api::JobEvent {
        api::JobEvent {
            seq,
            elapsed_ms: seq * 10,
            kind: kind.to_string(),
            name: (kind == "step").then(|| format!("step-{seq}")),
            level: None,
            message: Some(format!("event {seq}")),
            job: None,
        }
    }

    fn no_refill() -> Refill {
        Arc::new(|_| Box::pin(async { Vec::new() }))
    }

    fn refill_from(events: Vec<api::JobEvent>) -> Refill {
        Arc::new(move |after| {
            let events: Vec<_> = events.iter().filter(|e| e.seq > after).cloned().collect();
            Box::pin(async move { events })
        })
    }

    async fn collect(feed: EventFeed) -> Vec<u64> {
        let mut feed = feed;
        let mut seqs = Vec::new();
        while let Some(event) = feed.next().await {
            seqs.push(event.seq);
        }
        seqs
    }

    #[tokio::test]
    async fn sse_messages_carry_seq_kind_and_json() {
        let events = vec![event(1, "step"), event(2, "end")];
        let messages: Vec<_> = events.iter().map(|e| Ok::<_, Infallible>(sse_event(e))).collect();
        let stream = futures_util::stream::iter(messages);
        let response = Sse::new(stream).into_response();
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let messages: Vec<&str> = text.split("\n\n").filter(|m| !m.is_empty()).collect();
        assert_eq!(messages.len(), 2, "{text}");
        for (message, original) in messages.iter().zip(&events) {
            let lines: Vec<&str> = message.lines().collect();
            assert!(lines.contains(&format!("id: {}", original.seq).as_str()), "{message}");
            assert!(lines.contains(&format!("event: {}", original.kind).as_str()), "{message}");
            let data = lines.iter().find_map(|l| l.strip_prefix("data: ")).unwrap();
            let decoded: api::JobEvent = serde_json::from_str(data).unwrap();
            assert_eq!((decoded.seq, decoded.kind.as_str()), (original.seq, original.kind.as_str()));
            assert_eq!(decoded.message, original.message);
        }
    }

    #[test]
    fn event_kinds_cannot_break_the_framing() {
        // Must not panic on a kind with a newline.
        let _ = sse_event(&event(1, "bad\nkind"));
        let _ = sse_event(&event(1, ""));
    }

    #[test]
    fn resume_point_from_header_and_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(resume_after(&headers, None).unwrap(), 0);
        assert_eq!(resume_after(&headers, Some("after=7")).unwrap(), 7);
        assert_eq!(resume_after(&headers, Some("x=1&after=3")).unwrap(), 3);
        headers.insert("last-event-id", HeaderValue::from_static("12"));
        assert_eq!(resume_after(&headers, None).unwrap(), 12);
        assert_eq!(resume_after(&headers, Some("after=3")).unwrap(), 12);
        assert_eq!(resume_after(&headers, Some("after=30")).unwrap(), 30);
        assert_eq!(resume_after(&headers, Some("after=x")).unwrap_err().status.as_u16(), 400);
        headers.insert("last-event-id", HeaderValue::from_static("nope"));
        assert_eq!(resume_after(&headers, None).unwrap_err().code, "invalid-request");
        headers.insert("last-event-id", HeaderValue::from_static(""));
        assert_eq!(resume_after(&headers, None).unwrap(), 0);
    }

    #[tokio::test]
    async fn replay_then_live_without_duplicates_until_end() {
        let (tx, rx) = broadcast::channel(16);
        // The live channel repeats what the replay already holds (subscribe races).
        for seq in 2..=4 {
            tx.send(event(seq, "log")).unwrap();
        }
        tx.send(event(5, "end")).unwrap();
        tx.send(event(6, "log")).unwrap(); // never sent: after `end`
        let feed =
            EventFeed::new(1, vec![event(1, "step"), event(2, "log"), event(3, "log")], Some(rx), no_refill(), None);
        assert_eq!(collect(feed).await, vec![2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn finished_jobs_replay_and_stop() {
        let replay = vec![event(1, "step"), event(2, "end")];
        assert_eq!(collect(EventFeed::new(0, replay.clone(), None, no_refill(), None)).await, vec![1, 2]);
        assert_eq!(collect(EventFeed::new(2, Vec::new(), None, no_refill(), None)).await, Vec::<u64>::new());
    }

    #[tokio::test]
    async fn a_lagging_receiver_reads_the_gap_from_the_store() {
        let all: Vec<_> = (1..=9).map(|seq| event(seq, if seq == 9 { "end" } else { "log" })).collect();
        let (tx, rx) = broadcast::channel(2);
        for e in &all {
            tx.send(e.clone()).unwrap();
        }
        let feed = EventFeed::new(0, Vec::new(), Some(rx), refill_from(all.clone()), None);
        assert_eq!(collect(feed).await, (1..=9).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_closed_channel_falls_back_to_the_store() {
        let all: Vec<_> = (1..=4).map(|seq| event(seq, if seq == 4 { "end" } else { "log" })).collect();
        let (tx, rx) = broadcast::channel(8);
        tx.send(all[0].clone()).unwrap();
        drop(tx);
        let feed = EventFeed::new(0, Vec::new(), Some(rx), refill_from(all), None);
        assert_eq!(collect(feed).await, vec![1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_stop_signal_ends_a_waiting_feed() {
        let (tx, rx) = broadcast::channel(8);
        tx.send(event(1, "log")).unwrap();
        let stop = CancellationToken::new();
        let feed = EventFeed::new(0, Vec::new(), Some(rx), no_refill(), Some(stop.clone()));
        let mut stream = Box::pin(feed.into_stream());
        assert!(stream.next().await.is_some());
        stop.cancel();
        assert!(stream.next().await.is_none());
        drop(tx);
    }

    #[tokio::test]
    async fn events_sent_before_the_stop_are_still_delivered() {
        for _ in 0..50 {
            let (tx, rx) = broadcast::channel(8);
            let stop = CancellationToken::new();
            let feed = EventFeed::new(0, Vec::new(), Some(rx), no_refill(), Some(stop.clone()));
            tx.send(event(1, "log")).unwrap();
            tx.send(event(2, "end")).unwrap();
            stop.cancel();
            assert_eq!(collect(feed).await, vec![1, 2]);
        }
    }
}
