//! Process plumbing shared between the request handlers and the threads that pump pipes and
//! wait for exits: bounded stdio buffers (backpressure, never unbounded memory), exit cells and
//! the agent's own log ring.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// Bytes buffered per output stream before the pump stops reading (the process then blocks on
/// its pipe until the host reads).
const STREAM_CAP: usize = 1024 * 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct StreamState {
    buf: VecDeque<u8>,
    eof: bool,
}

/// One output stream of a process.
#[derive(Debug, Default)]
pub struct StreamBuf {
    state: Mutex<StreamState>,
    changed: Condvar,
}

impl StreamBuf {
    /// Starts a thread that moves `pipe` into a new buffer until end of file.
    pub fn pump(mut pipe: impl Read + Send + 'static) -> Arc<Self> {
        let this = Arc::new(Self::default());
        let sink = Arc::clone(&this);
        std::thread::spawn(move || {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = match pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut st = lock(&sink.state);
                while st.buf.len() >= STREAM_CAP {
                    st = sink
                        .changed
                        .wait(st)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                st.buf.extend(chunk.iter().take(n));
                sink.changed.notify_all();
            }
            lock(&sink.state).eof = true;
            sink.changed.notify_all();
        });
        this
    }

    /// Blocks until data or end of stream; returns up to `max` bytes and whether the stream
    /// has ended (only ever with no data).
    pub fn read(&self, max: usize) -> (Vec<u8>, bool) {
        let mut st = lock(&self.state);
        while st.buf.is_empty() && !st.eof {
            st = self
                .changed
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let n = max.min(st.buf.len());
        let out: Vec<u8> = st.buf.drain(..n).collect();
        let eof = out.is_empty() && st.eof;
        self.changed.notify_all();
        (out, eof)
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// Set once when the process exits; waited on by any number of requests.
#[derive(Debug, Default)]
pub struct ExitCell {
    exit: Mutex<Option<ExitInfo>>,
    changed: Condvar,
}

impl ExitCell {
    pub fn set(&self, info: ExitInfo) {
        *lock(&self.exit) = Some(info);
        self.changed.notify_all();
    }

    pub fn get(&self) -> Option<ExitInfo> {
        *lock(&self.exit)
    }

    pub fn wait(&self) -> ExitInfo {
        let mut g = lock(&self.exit);
        loop {
            if let Some(i) = *g {
                return i;
            }
            g = self.changed.wait(g).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Waits at most `timeout`.
    pub fn wait_for(&self, timeout: std::time::Duration) -> Option<ExitInfo> {
        let g = lock(&self.exit);
        let (g, _) = self
            .changed
            .wait_timeout_while(g, timeout, |e| e.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        *g
    }
}

/// The agent's own log: the last lines, handed to the host only under
/// `allow_runtime_logging` (the `runtime_logging` enforcement point).
#[derive(Debug, Default)]
pub struct LogRing {
    lines: Mutex<VecDeque<String>>,
}

const LOG_LINES: usize = 2000;

impl LogRing {
    pub fn log(&self, line: String) {
        let mut l = lock(&self.lines);
        if l.len() >= LOG_LINES {
            l.pop_front();
        }
        l.push_back(line);
    }

    pub fn tail(&self, max: usize) -> Vec<String> {
        let l = lock(&self.lines);
        l.iter()
            .skip(l.len().saturating_sub(max))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_delivers_then_eof() {
        let s = StreamBuf::pump(std::io::Cursor::new(b"hello".to_vec()));
        let (a, eof) = s.read(3);
        assert_eq!((a.as_slice(), eof), (&b"hel"[..], false));
        let mut rest = Vec::new();
        loop {
            let (d, eof) = s.read(100);
            if eof {
                break;
            }
            rest.extend(d);
        }
        assert_eq!(rest, b"lo");
    }

    #[test]
    fn log_ring_is_bounded() {
        let r = LogRing::default();
        for i in 0..(LOG_LINES + 5) {
            r.log(i.to_string());
        }
        let t = r.tail(usize::MAX);
        assert_eq!(t.len(), LOG_LINES);
        assert_eq!(t[0], "5");
        assert_eq!(r.tail(1), vec![(LOG_LINES + 4).to_string()]);
    }
}
