//! [`CappedLog`]: the sandbox's output log, written by the reaper and
//! never larger than [`LOG_CAP`]. What does not fit is counted, and one
//! line at the end says how much was dropped.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

/// The most a sandbox's log file ever holds, notice included.
pub const LOG_CAP: u64 = 1 << 20;

/// Room kept for the notice: "\n[output truncated: N bytes dropped]\n"
/// with a 20-digit N is 56 bytes.
const NOTICE_ROOM: u64 = 64;

/// While output keeps coming, the notice is rewritten once this many more
/// bytes were dropped (and whenever the pipe runs dry).
const NOTICE_EVERY: u64 = 1 << 20;

#[derive(Debug)]
pub struct CappedLog {
    file: File,
    /// Bytes of output in the file (the notice not included).
    kept: u64,
    dropped: u64,
    /// `dropped` as the notice in the file last said.
    noted: u64,
    /// Whether the last byte kept ends a line.
    at_line_start: bool,
    /// A write failed (EFBIG under a small RLIMIT_FSIZE, ENOSPC): keep
    /// counting, stop writing.
    broken: bool,
}

impl CappedLog {
    pub fn new(file: File) -> CappedLog {
        CappedLog {
            file,
            kept: 0,
            dropped: 0,
            noted: 0,
            at_line_start: true,
            broken: false,
        }
    }

    /// Keep what fits under the cap, count the rest.
    pub fn push(&mut self, bytes: &[u8]) {
        let room = (LOG_CAP - NOTICE_ROOM - self.kept) as usize;
        let (keep, drop) = bytes.split_at(bytes.len().min(room));
        if !keep.is_empty() && !self.broken {
            match self.file.write_all(keep) {
                Ok(()) => {
                    self.kept += keep.len() as u64;
                    self.at_line_start = keep.ends_with(b"\n");
                }
                Err(_) => self.broken = true,
            }
        }
        if self.broken {
            self.dropped += keep.len() as u64;
        }
        self.dropped += drop.len() as u64;
        if self.dropped >= self.noted + NOTICE_EVERY {
            self.note();
        }
    }

    /// Bring the notice up to date: written in place after the kept
    /// output, so it stays the file's last line and only grows with N.
    pub fn note(&mut self) {
        if self.dropped == self.noted || self.broken {
            return;
        }
        let newline = if self.at_line_start { "" } else { "\n" };
        let line = format!(
            "{newline}[output truncated: {} bytes dropped]\n",
            self.dropped
        );
        if self.file.write_all_at(line.as_bytes(), self.kept).is_ok() {
            self.noted = self.dropped;
        }
    }

    #[cfg(test)]
    fn kept(&self) -> u64 {
        self.kept
    }

    #[cfg(test)]
    fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};

    fn in_tempfile() -> (CappedLog, File) {
        let file = tempfile::tempfile().unwrap();
        (CappedLog::new(file.try_clone().unwrap()), file)
    }

    fn contents(mut file: &File) -> Vec<u8> {
        let mut out = Vec::new();
        file.rewind().unwrap();
        file.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn small_output_is_kept_as_is() {
        let (mut log, file) = in_tempfile();
        log.push(b"hello\n");
        log.push(b"world\n");
        log.note();
        assert_eq!(contents(&file), b"hello\nworld\n");
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn a_flood_stops_at_the_cap_with_one_exact_notice() {
        let (mut log, file) = in_tempfile();
        let chunk = vec![b'y'; 64 * 1024];
        let total = 100u64 << 20;
        for _ in 0..total / chunk.len() as u64 {
            log.push(&chunk);
            assert!(file.metadata().unwrap().len() <= LOG_CAP);
        }
        log.note();
        let bytes = contents(&file);
        assert!(bytes.len() as u64 <= LOG_CAP, "{}", bytes.len());
        let text = String::from_utf8(bytes).unwrap();
        let dropped = total - log.kept();
        assert_eq!(log.dropped(), dropped);
        assert!(
            text.ends_with(&format!("y\n[output truncated: {dropped} bytes dropped]\n")),
            "{}",
            &text[text.len() - 80..]
        );
        assert_eq!(text.matches("[output truncated").count(), 1);
    }

    #[test]
    fn the_notice_starts_its_own_line() {
        let (mut log, file) = in_tempfile();
        let mut line = vec![b'x'; LOG_CAP as usize];
        line.push(b'\n');
        log.push(&line);
        log.note();
        let text = String::from_utf8(contents(&file)).unwrap();
        let last: Vec<&str> = text.lines().rev().take(2).collect();
        assert_eq!(
            last[0],
            format!("[output truncated: {} bytes dropped]", log.dropped())
        );
        assert!(last[1].bytes().all(|b| b == b'x'));
    }
}
