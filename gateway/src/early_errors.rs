//! Problem bodies for the answers hyper writes on its own. A request head
//! over `max_buf_size` or with more than hyper's 100 header fields (431), or
//! a request target over 64 KiB (414), is refused by hyper's HTTP/1 parser
//! before any request reaches the router, with an empty body; the README
//! promises a problem document for every error. [`ProblemBodies`] wraps a
//! connection's stream and, when hyper writes one of those bodiless heads,
//! writes the head with the problem body instead. Everything else passes
//! through untouched (one prefix comparison per write).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use convergio_schemas::problem::PROBLEM_JSON;
use convergio_schemas::{ErrorKind, Problem};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What hyper writes for a head it could not take: the status line and a
/// zero length (then `date`, then the blank line).
const ZERO_LENGTH: &[u8] = b"content-length: 0\r\n";

/// A connection stream that gives hyper's own 431/414 answers a problem
/// body.
pub(crate) struct ProblemBodies<S> {
    inner: S,
    /// The rewritten answer still to be written, from `written` on.
    pending: Vec<u8>,
    written: usize,
}

// === impl ProblemBodies ===

impl<S> ProblemBodies<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> ProblemBodies<S> {
    /// Writes what is pending; ready when nothing is.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let wrote =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if wrote == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += wrote;
        }
        if !self.pending.is_empty() {
            self.pending = Vec::new();
            self.written = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Queues the rewritten answer and reports all of `len` as written
    /// (the caller's bytes are in it); what the socket does not take now
    /// is written by the next write, flush or shutdown.
    fn queue(
        &mut self,
        answer: Vec<u8>,
        len: usize,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        self.pending = answer;
        self.written = 0;
        match self.poll_pending(cx) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            _ => Poll::Ready(Ok(len)),
        }
    }
}

/// The answer with its problem body, when `head` is hyper's bodiless
/// refusal of a request head; `None` for anything else.
pub(crate) fn with_problem_body(head: &[u8]) -> Option<Vec<u8>> {
    let (kind, detail) = if head.starts_with(b"HTTP/1.1 431 ") {
        (
            ErrorKind::HeadersTooLarge,
            "request head over the server's limit (server.max_header_bytes, or more than 100 header fields)",
        )
    } else if head.starts_with(b"HTTP/1.1 414 ") {
        (ErrorKind::UriTooLong, "request target over 64 KiB")
    } else {
        return None;
    };
    if !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let at = head
        .windows(ZERO_LENGTH.len())
        .position(|window| window.eq_ignore_ascii_case(ZERO_LENGTH))?;
    let body = serde_json::to_vec(&Problem::new(kind, detail)).ok()?;
    let mut answer = Vec::with_capacity(head.len() + body.len() + 64);
    answer.extend_from_slice(&head[..at]);
    answer.extend_from_slice(b"content-type: ");
    answer.extend_from_slice(PROBLEM_JSON.as_bytes());
    answer.extend_from_slice(format!("\r\ncontent-length: {}\r\n", body.len()).as_bytes());
    answer.extend_from_slice(&head[at + ZERO_LENGTH.len()..]);
    answer.extend_from_slice(&body);
    Some(answer)
}

/// Whether `first` can start one of the answers [`with_problem_body`]
/// rewrites (the cheap test every write pays).
fn may_be_refusal(first: &[u8]) -> bool {
    first.starts_with(b"HTTP/1.1 4")
}

impl<S: AsyncRead + Unpin> AsyncRead for ProblemBodies<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ProblemBodies<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        if may_be_refusal(buf) {
            if let Some(answer) = with_problem_body(buf) {
                return this.queue(answer, buf.len(), cx);
            }
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        let first = bufs.iter().find(|buf| !buf.is_empty());
        if first.is_some_and(|first| may_be_refusal(first)) {
            let joined: Vec<u8> = bufs.iter().flat_map(|buf| buf.iter().copied()).collect();
            if let Some(answer) = with_problem_body(&joined) {
                return this.queue(answer, joined.len(), cx);
            }
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_bodiless_431_gets_a_problem_body() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n";
        let answer = with_problem_body(head).expect("rewritten");
        let text = String::from_utf8(answer).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(
            head.contains("content-type: application/problem+json"),
            "{head}"
        );
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert!(body.contains("headers-too-large"), "{body}");
    }

    #[test]
    fn other_answers_pass_through() {
        assert!(with_problem_body(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(with_problem_body(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 5\r\n\r\nhello"
        )
        .is_none());
    }
}
