//! What the command line prints, written so that a closed pipe ends it quietly.
//!
//! Rust ignores SIGPIPE, so writing to a reader that went away (`cc-heartbeat check | head -1`)
//! is an `EPIPE` error, and `println!` panics on it (exit 101, "failed printing to stdout").
//! SIGPIPE stays ignored, because the HTTP server's sockets rely on that: a scraper that hangs
//! up must cost one connection, not the process. The one-shot commands print through these
//! functions instead: once the reader has gone, the rest of the output is dropped and the
//! command ends with the exit code it would have had.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once standard output's reader has gone: nothing more is written to it.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` to standard output and flushes it. A closed pipe is not an error: the reader
/// had what it wanted. Any other failure (a full disk) is said on standard error.
pub fn print(text: &str) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if error.kind() != ErrorKind::BrokenPipe {
            eprint(&format!(
                "cc-heartbeat: cannot write to standard output: {error}\n"
            ));
        }
    }
}

/// [`print`] with a line end.
pub fn print_line(text: &str) {
    print(&format!("{text}\n"));
}

/// Writes `text` to standard error; nothing is left to tell if that fails too.
pub fn eprint(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr
        .write_all(text.as_bytes())
        .and_then(|()| stderr.flush());
}

/// [`eprint`] with a line end.
pub fn eprint_line(text: &str) {
    eprint(&format!("{text}\n"));
}
