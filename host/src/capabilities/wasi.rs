//! The WASI a recipe gets: enough for an embedded interpreter to start, nothing
//! that reaches the host.
//!
//! Recipes built with componentize-py or componentize-js import WASI (clocks,
//! random, streams, a filesystem, sockets) because their language runtimes do.
//! Every interface is linked so such components instantiate, but the context
//! gives them nothing to act on: no preopened directories, no environment, no
//! arguments, empty stdin, and every socket refused (no TCP, no UDP, no name
//! lookups, no address allowed). What the guest prints goes to the job's log,
//! a line at a time: stdout as `info`, stderr as `warn`.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime::component::Linker;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::RunState;
use crate::events::{EventSink, LogLevel};

/// A guest line longer than this is logged in pieces: the longest message an
/// event holds. (Long, because each piece is redacted on its own, and a
/// secret cut in two would not be recognised.)
const MAX_LINE_BYTES: usize = crate::events::MAX_MESSAGE_BYTES;
/// Printed bytes a run may log; the rest is counted, then dropped.
const MAX_PRINTED_BYTES: usize = 1024 * 1024;

/// Links every WASI preview 2 interface, answered from [`RunState`]'s context.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<RunState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker as &mut Linker<RunState>)
}

/// The context for one run: see the module's comment for what it denies.
pub fn sandbox_ctx(events: &EventSink) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(GuestOutput::new(events.clone(), LogLevel::Info))
        .stderr(GuestOutput::new(events.clone(), LogLevel::Warn))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    builder.build()
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// One of the guest's output streams, turned into log events.
///
/// Every stream the guest opens on it shares one line buffer, so a line
/// written in pieces is logged once. What is left without a newline is
/// logged when the run's store is dropped.
#[derive(Clone)]
pub struct GuestOutput {
    lines: Arc<Mutex<LineBuffer>>,
}

impl GuestOutput {
    pub fn new(events: EventSink, level: LogLevel) -> Self {
        GuestOutput { lines: Arc::new(Mutex::new(LineBuffer { events, level, pending: Vec::new(), logged: 0 })) }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.lines.lock().expect("guest output lock").write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

struct LineBuffer {
    events: EventSink,
    level: LogLevel,
    pending: Vec<u8>,
    /// Bytes logged so far, against [`MAX_PRINTED_BYTES`].
    logged: usize,
}

impl LineBuffer {
    fn write(&mut self, mut buf: &[u8]) {
        while let Some(newline) = buf.iter().position(|&b| b == b'\n') {
            self.push(&buf[..newline]);
            self.emit();
            buf = &buf[newline + 1..];
        }
        self.push(buf);
    }

    /// Adds to the current line, logging it in pieces of [`MAX_LINE_BYTES`].
    fn push(&mut self, mut bytes: &[u8]) {
        while self.pending.len() + bytes.len() >= MAX_LINE_BYTES {
            let room = MAX_LINE_BYTES - self.pending.len();
            self.pending.extend_from_slice(&bytes[..room]);
            self.emit();
            bytes = &bytes[room..];
        }
        self.pending.extend_from_slice(bytes);
    }

    fn emit(&mut self) {
        let line = std::mem::take(&mut self.pending);
        let before = self.logged;
        self.logged = self.logged.saturating_add(line.len() + 1);
        if self.logged <= MAX_PRINTED_BYTES {
            let text = String::from_utf8_lossy(&line);
            self.events.log(self.level, text.trim_end_matches('\r'));
        } else if before <= MAX_PRINTED_BYTES {
            self.events.host(&format!(
                "the recipe printed more than {} KiB: the rest is not logged",
                MAX_PRINTED_BYTES / 1024
            ));
        }
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.emit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventKind, Redactor};

    fn logged(writes: &[&[u8]]) -> Vec<(LogLevel, String)> {
        let (sink, mut rx) = EventSink::channel(Redactor::default());
        let mut buffer = LineBuffer { events: sink, level: LogLevel::Info, pending: Vec::new(), logged: 0 };
        for write in writes {
            buffer.write(write);
        }
        drop(buffer);
        let mut out = Vec::new();
        while let Ok(event) = rx.try_recv() {
            match event.kind {
                EventKind::Log { level, message } => out.push((level, message)),
                EventKind::Host { message } => out.push((LogLevel::Debug, format!("host: {message}"))),
                other => panic!("unexpected event {other:?}"),
            }
        }
        out
    }

    /// What a guest can ask WASI for: no variables, arguments or directories.
    #[test]
    fn the_context_has_no_environment_arguments_or_directories() {
        use wasmtime_wasi::cli::WasiCliView as _;
        use wasmtime_wasi::filesystem::WasiFilesystemView as _;
        use wasmtime_wasi::p2::bindings::cli::environment::Host as _;
        use wasmtime_wasi::p2::bindings::filesystem::preopens::Host as _;

        struct View(WasiCtx, wasmtime::component::ResourceTable);
        impl WasiView for View {
            fn ctx(&mut self) -> WasiCtxView<'_> {
                WasiCtxView { ctx: &mut self.0, table: &mut self.1 }
            }
        }
        let mut view = View(sandbox_ctx(&EventSink::discard()), wasmtime::component::ResourceTable::new());
        assert!(view.cli().get_environment().unwrap().is_empty(), "no environment");
        assert!(view.cli().get_arguments().unwrap().is_empty(), "no arguments");
        assert!(view.filesystem().get_directories().unwrap().is_empty(), "no preopened directory");
    }

    #[test]
    fn lines_written_in_pieces_are_logged_once_and_a_last_partial_line_is_kept() {
        let lines = logged(&[b"hel", b"lo\nwor", b"ld\r\n", b"no newline"]);
        let texts: Vec<&str> = lines.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(texts, ["hello", "world", "no newline"]);
        assert!(lines.iter().all(|(level, _)| *level == LogLevel::Info));
    }

    #[test]
    fn long_lines_are_split_and_a_flood_is_cut_with_one_notice() {
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        let lines = logged(&[&long]);
        assert_eq!(lines.iter().map(|(_, m)| m.len()).collect::<Vec<_>>(), [MAX_LINE_BYTES, 10]);
        let mut with_newline = vec![b'y'; 2 * MAX_LINE_BYTES + 1];
        with_newline.push(b'\n');
        let lines = logged(&[b"ab", &with_newline]);
        assert_eq!(lines.iter().map(|(_, m)| m.len()).collect::<Vec<_>>(), [MAX_LINE_BYTES, MAX_LINE_BYTES, 3]);

        let line = [b'y'; 1023];
        let mut flood: Vec<&[u8]> = Vec::new();
        for _ in 0..(MAX_PRINTED_BYTES / 1024 + 5) {
            flood.push(&line);
            flood.push(b"\n");
        }
        let lines = logged(&flood);
        assert_eq!(lines.len(), MAX_PRINTED_BYTES / 1024 + 1, "1024 lines of 1 KiB, then one notice");
        assert!(
            lines.last().unwrap().1.starts_with("host: the recipe printed more than 1024 KiB"),
            "{:?}",
            lines.last()
        );
    }
}
