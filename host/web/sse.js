// Server-Sent Events read with fetch, because EventSource cannot send an
// Authorization header. The parser follows the event-stream format: fields
// `data`, `event`, `id`, `retry`; comments start with `:`; lines end with
// CRLF, LF or CR; a blank line ends an event. Uses no DOM: node imports it
// for the parser's tests.

export class SseParser {
  /** `onEvent({type, data, id})` is called once per complete event. */
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = '';
    this.data = [];
    this.type = '';
    this.lastEventId = '';
    this.retry = null;
    this.started = false;
    this.pendingCR = false;
  }

  /** Feeds decoded text; any split of the stream gives the same events. */
  push(text) {
    if (!this.started && text.length) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    // A CR that ended the previous chunk already ended its line: a LF
    // starting this one is the rest of that CRLF, not an empty line.
    if (this.pendingCR && text.startsWith('\n')) text = text.slice(1);
    this.pendingCR = false;
    this.buffer += text;
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer[i];
      if (c !== '\n' && c !== '\r') continue;
      const line = this.buffer.slice(start, i);
      if (c === '\r') {
        if (i + 1 < this.buffer.length) {
          if (this.buffer[i + 1] === '\n') i++;
        } else {
          this.pendingCR = true;
        }
      }
      start = i + 1;
      this.line(line);
    }
    this.buffer = this.buffer.slice(start);
  }

  line(line) {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    let field = line;
    let value = '';
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
    }
    switch (field) {
      case 'data':
        this.data.push(value);
        break;
      case 'event':
        this.type = value;
        break;
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default:
        break;
    }
  }

  dispatch() {
    if (this.data.length === 0) {
      this.type = '';
      return;
    }
    const event = { type: this.type || 'message', data: this.data.join('\n'), id: this.lastEventId };
    this.data = [];
    this.type = '';
    this.onEvent(event);
  }
}

/**
 * Follows a job's event stream until its `end` event. Each job event (the
 * JSON of the SSE data) goes to `onEvent`. When the connection drops before
 * `end`, it reconnects after a pause with `Last-Event-ID` set to the last
 * event seen, so the server resumes after it: no event is lost or repeated.
 * `onState('connected' | 'reconnecting')` tells the page. Resolves with the
 * `end` event; rejects on an answer that retrying cannot fix (401, 404), and
 * with whatever `onEvent` throws (only fetching and reading are retried).
 */
/** An error thrown by `onEvent`: passed on to the caller, never retried. */
class HandlerFailed {
  constructor(cause) {
    this.cause = cause;
  }
}

export async function followJob(url, { headers = {}, onEvent, onState = () => {}, signal } = {}) {
  let lastId = '';
  let pause = 500;
  for (;;) {
    if (signal && signal.aborted) throw new DOMException('stopped', 'AbortError');
    let ended = null;
    try {
      const requestHeaders = { ...headers, Accept: 'text/event-stream' };
      if (lastId) requestHeaders['Last-Event-ID'] = lastId;
      const response = await fetch(url, { headers: requestHeaders, signal, cache: 'no-store' });
      if (!response.ok) {
        let message = `HTTP ${response.status}`;
        try {
          const body = await response.json();
          if (body && body.error) message = body.error.message;
        } catch {
          // not JSON: keep the status
        }
        const err = new Error(message);
        err.status = response.status;
        if (response.status >= 400 && response.status < 500) err.fatal = true;
        throw err;
      }
      onState('connected');
      pause = 500;
      const parser = new SseParser((message) => {
        let event;
        try {
          event = JSON.parse(message.data);
        } catch {
          if (message.id) lastId = message.id;
          return;
        }
        try {
          onEvent(event);
        } catch (err) {
          throw new HandlerFailed(err);
        }
        // Only once handled: a resumed stream starts after what the page saw.
        if (message.id) lastId = message.id;
        if (event.kind === 'end') ended = event;
      });
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      while (!ended) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.push(decoder.decode(value, { stream: true }));
      }
      if (ended) {
        reader.cancel().catch(() => {});
        return ended;
      }
    } catch (err) {
      // The page's own handler failing is a bug, not a dropped connection.
      if (err instanceof HandlerFailed) throw err.cause;
      if (err.name === 'AbortError' || err.fatal) throw err;
    }
    onState('reconnecting');
    await new Promise((resolve) => setTimeout(resolve, pause));
    pause = Math.min(pause * 2, 8000);
  }
}
