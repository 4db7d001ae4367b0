//! What each in-flight reactor operation is for, packed into its token.

use crate::reactor::Token;

/// The owner of an in-flight operation. The top byte of a token is the
/// tag, the rest the owner's id (connection, sandbox or invocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Accepting on the listening socket.
    Accept,
    /// Reading the signalfd (SIGTERM, SIGINT).
    Signal,
    /// The housekeeping tick: pool refill, stuck sandboxes.
    Tick,
    ConnRead(u64),
    ConnWrite(u64),
    /// A sandbox's response doorbell rang.
    Bell(u64),
    /// A sandbox's pidfd became readable: it exited.
    Exit(u64),
}

const ID_BITS: u32 = 56;
const ID_MASK: u64 = (1 << ID_BITS) - 1;

impl Event {
    pub fn token(self) -> Token {
        let (tag, id) = match self {
            Event::Accept => (1, 0),
            Event::Signal => (2, 0),
            Event::Tick => (3, 0),
            Event::ConnRead(id) => (4, id),
            Event::ConnWrite(id) => (5, id),
            Event::Bell(id) => (6, id),
            Event::Exit(id) => (7, id),
        };
        debug_assert!(id <= ID_MASK, "id {id} does not fit a token");
        (tag << ID_BITS) | (id & ID_MASK)
    }

    pub fn from_token(token: Token) -> Option<Event> {
        let id = token & ID_MASK;
        Some(match token >> ID_BITS {
            1 => Event::Accept,
            2 => Event::Signal,
            3 => Event::Tick,
            4 => Event::ConnRead(id),
            5 => Event::ConnWrite(id),
            6 => Event::Bell(id),
            7 => Event::Exit(id),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let events = [
            Event::Accept,
            Event::Signal,
            Event::Tick,
            Event::ConnRead(7),
            Event::ConnWrite(ID_MASK),
            Event::Bell(1),
            Event::Exit(2),
        ];
        for event in events {
            assert_eq!(Event::from_token(event.token()), Some(event));
        }
        assert_eq!(Event::from_token(0), None);
    }
}
