//! Reading a command's output pipes without a buffer per pipe.
//!
//! With hundreds of commands running, one read buffer each adds up, and
//! most commands are silent most of the time. So a pipe is read only once
//! it is readable, into one buffer that every pipe of the thread shares,
//! and the bytes read are copied out at once: no buffer waits per command.

use std::cell::RefCell;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Bytes read at most at once: an SSH data packet's worth. One buffer per
/// thread, whatever the number of commands.
const READ_SIZE: usize = 32 * 1024;

thread_local! {
    static SHARED: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_SIZE].into_boxed_slice());
}

/// The read end of a child's stdout or stderr.
#[derive(Debug)]
pub struct OutputPipe {
    fd: AsyncFd<File>,
}

impl OutputPipe {
    /// Takes over a pipe (e.g. from `tokio::process::ChildStdout::into_owned_fd`,
    /// which hands it back in blocking mode) and watches it with the runtime.
    pub fn new(fd: OwnedFd) -> std::io::Result<OutputPipe> {
        set_nonblocking(&fd)?;
        // SAFETY: the File owns the descriptor and keeps it open, as the
        // same file, for as long as the AsyncFd that owns the File.
        let fd = unsafe { AsyncFd::register_with_interest(File::from(fd), Interest::READABLE) }?;
        Ok(OutputPipe { fd })
    }

    /// The next bytes; `None` at the end of the pipe, or when it fails.
    pub async fn read(&self) -> Option<Vec<u8>> {
        loop {
            let mut guard = self.fd.readable().await.ok()?;
            match guard.try_io(|file| read_shared(file.get_ref())) {
                Ok(Ok(data)) => return (!data.is_empty()).then_some(data),
                Ok(Err(_)) => return None,
                // Not readable after all: wait for the next readiness.
                Err(_would_block) => continue,
            }
        }
    }
}

fn read_shared(mut file: &File) -> std::io::Result<Vec<u8>> {
    SHARED.with_borrow_mut(|buffer| {
        let n = file.read(buffer)?;
        Ok(buffer[..n].to_vec())
    })
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl(2) on a descriptor this function borrows, with integer
    // arguments only; no memory is passed.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[tokio::test]
    async fn reads_what_was_written_then_the_end() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        let pipe = OutputPipe::new(OwnedFd::from(reader)).unwrap();
        writer.write_all(b"hello").unwrap();
        assert_eq!(pipe.read().await.as_deref(), Some(&b"hello"[..]));
        let big = vec![7u8; 3 * READ_SIZE];
        let writing = std::thread::spawn(move || {
            writer.write_all(&big).unwrap();
        });
        let mut total = 0;
        while let Some(data) = pipe.read().await {
            assert!(data.len() <= READ_SIZE && data.iter().all(|b| *b == 7));
            total += data.len();
        }
        writing.join().unwrap();
        assert_eq!(total, 3 * READ_SIZE);
    }
}
