//! The floor: a raw Unix-socket ping-pong between two processes, with the
//! same length-prefixed framing idea and payload sizes as an invocation.
//! Nothing can round-trip between a client and a daemon on this machine
//! faster than this.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The argument that turns this binary into the floor's echo process.
pub const ECHO_ARG: &str = "--floor-echo";

/// The peer process: echo length-prefixed messages until the client hangs
/// up. Runs in the re-executed bench binary.
pub fn echo_main(socket: &Path) -> ! {
    let mut stream = UnixStream::connect(socket).expect("floor echo: connect");
    let mut buf = Vec::new();
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).is_err() {
            std::process::exit(0);
        }
        buf.resize(u32::from_le_bytes(len) as usize, 0);
        stream.read_exact(&mut buf).expect("floor echo: read");
        stream.write_all(&len).expect("floor echo: write");
        stream.write_all(&buf).expect("floor echo: write");
    }
}

/// A connected echo process.
pub struct Floor {
    stream: UnixStream,
    child: Child,
    buf: Vec<u8>,
}

impl Floor {
    pub fn start(dir: &Path) -> Floor {
        let socket = dir.join("floor.sock");
        let listener = UnixListener::bind(&socket).expect("bind the floor socket");
        let child = Command::new(std::env::current_exe().expect("own path"))
            .arg(ECHO_ARG)
            .arg(&socket)
            .spawn()
            .expect("spawn the floor echo process");
        let (stream, _) = listener.accept().expect("accept the floor echo process");
        Floor {
            stream,
            child,
            buf: Vec::new(),
        }
    }

    /// One round trip of `payload`.
    pub fn round_trip(&mut self, payload: &[u8]) -> Duration {
        let start = Instant::now();
        let len = (payload.len() as u32).to_le_bytes();
        self.stream.write_all(&len).expect("floor: write");
        self.stream.write_all(payload).expect("floor: write");
        let mut back = [0u8; 4];
        self.stream.read_exact(&mut back).expect("floor: read");
        self.buf.resize(u32::from_le_bytes(back) as usize, 0);
        self.stream.read_exact(&mut self.buf).expect("floor: read");
        let elapsed = start.elapsed();
        assert_eq!(self.buf.len(), payload.len());
        elapsed
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        let _ = self.child.wait();
    }
}
