//! The Runtime API's state machine: what the bootstrap may do when, and
//! which ring record each accepted step becomes. No I/O: the server feeds
//! it requests and ring messages and carries out what it returns.
//!
//! ```text
//!  Init ──/next──► (INIT_OK) Idle ──INVOKE──► Running(id) ──/response, /error──► Idle
//!    │                                        (the /next waiting gets the invocation)
//!    └──/init/error──► (INIT_ERROR) InitFailed
//! ```
//!
//! A `/next` that comes while an invocation runs (a client polling on one
//! connection while it posts on another) waits for the invocation after
//! it. As Lambda does, a post is checked against the state first (403
//! `InvalidStateTransition`: no invocation running, init already done),
//! then against the running invocation's id (400 `InvalidRequestID`).

use crate::ring::Invoke;

use super::http::Answer;

/// Identifies a connection to the server.
pub type ConnId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The bootstrap is initialising: no `/next` yet.
    Init,
    /// Initialised; no invocation is running.
    Idle,
    /// This invocation was handed out and is not answered yet.
    Running(u64),
    /// The bootstrap reported an init error; nothing more is accepted.
    InitFailed,
}

/// What the server must do for a `/next`.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Push INIT_OK first (this is the first `/next`), then, if `invoke`
    /// is there, answer with it; otherwise the connection waits.
    Accept {
        init_ok: bool,
        invoke: Option<Invoke>,
    },
    Refuse(Answer),
}

/// Why the daemon's side broke the contract (the bridge stops).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("the daemon pushed invocation {new} while invocation {old} was not answered")]
    Overlap { old: u64, new: u64 },
    #[error("the daemon pushed invocation {id} before the runtime finished init")]
    BeforeInit { id: u64 },
}

#[derive(Debug)]
pub struct Machine {
    phase: Phase,
    /// The connection whose `/next` waits for an invocation.
    waiting: Option<ConnId>,
    /// An invocation that arrived while no `/next` was waiting.
    queued: Option<Invoke>,
}

impl Default for Machine {
    fn default() -> Self {
        Machine::new()
    }
}

impl Machine {
    pub fn new() -> Machine {
        Machine {
            phase: Phase::Init,
            waiting: None,
            queued: None,
        }
    }

    #[cfg(test)]
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// `GET /next` on `conn`.
    pub fn next(&mut self, conn: ConnId) -> Next {
        let init_ok = match self.phase {
            Phase::Init => true,
            // While an invocation runs, a `/next` (on another connection
            // than the one posting its answer) waits: the daemon pushes
            // the next invocation only once this one is answered.
            Phase::Idle | Phase::Running(_) => false,
            Phase::InitFailed => {
                return Next::Refuse(state_error("init failed: no invocation will come"))
            }
        };
        if self.waiting.is_some_and(|w| w != conn) {
            return Next::Refuse(state_error(
                "another connection is already waiting for the next invocation",
            ));
        }
        if let Phase::Running(_) = self.phase {
            self.waiting = Some(conn);
            return Next::Accept {
                init_ok,
                invoke: None,
            };
        }
        self.phase = Phase::Idle;
        match self.queued.take() {
            Some(invoke) => {
                self.waiting = None;
                self.phase = Phase::Running(invoke.id);
                Next::Accept {
                    init_ok,
                    invoke: Some(invoke),
                }
            }
            None => {
                self.waiting = Some(conn);
                Next::Accept {
                    init_ok,
                    invoke: None,
                }
            }
        }
    }

    /// An INVOKE came on the ring: `Some` names the connection to answer
    /// with it (its `/next` was waiting); `None` keeps it for the next
    /// `/next`.
    pub fn invoke(&mut self, invoke: Invoke) -> Result<Option<(ConnId, Invoke)>, Violation> {
        match self.phase {
            Phase::Idle if self.queued.is_none() => {}
            Phase::Idle => {
                return Err(Violation::Overlap {
                    old: self.queued.as_ref().map_or(0, |q| q.id),
                    new: invoke.id,
                })
            }
            Phase::Running(old) => {
                return Err(Violation::Overlap {
                    old,
                    new: invoke.id,
                })
            }
            Phase::Init | Phase::InitFailed => return Err(Violation::BeforeInit { id: invoke.id }),
        }
        match self.waiting.take() {
            Some(conn) => {
                self.phase = Phase::Running(invoke.id);
                Ok(Some((conn, invoke)))
            }
            None => {
                self.queued = Some(invoke);
                Ok(None)
            }
        }
    }

    /// `POST /invocation/{id}/response` or `/error`: the running
    /// invocation's id when `id` names it (it is answered: back to Idle),
    /// or the refusal.
    pub fn answer(&mut self, id: &str) -> Result<u64, Answer> {
        let Phase::Running(current) = self.phase else {
            return Err(state_error(match self.phase {
                Phase::Init => "no invocation was handed out yet",
                Phase::InitFailed => "init failed",
                _ => "no invocation is running (it was answered already)",
            }));
        };
        if id.parse::<u64>().ok() != Some(current) {
            return Err(Answer::error(400, "InvalidRequestID", "Invalid request ID"));
        }
        self.phase = Phase::Idle;
        Ok(current)
    }

    /// `POST /init/error`: accepted only during init.
    pub fn init_error(&mut self) -> Result<(), Answer> {
        if self.phase != Phase::Init {
            return Err(state_error("init already finished (or failed)"));
        }
        self.phase = Phase::InitFailed;
        Ok(())
    }

    /// `conn` closed: a `/next` it was waiting on is forgotten.
    pub fn closed(&mut self, conn: ConnId) {
        if self.waiting == Some(conn) {
            self.waiting = None;
        }
    }
}

fn state_error(message: &str) -> Answer {
    Answer::error(403, "InvalidStateTransition", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoke(id: u64) -> Invoke {
        Invoke {
            id,
            deadline_ms: Some(1),
            meta: Vec::new(),
            payload: b"{}".to_vec(),
        }
    }

    fn status(answer: Answer) -> u16 {
        answer.status
    }

    #[test]
    fn first_next_ends_init_and_waits() {
        let mut m = Machine::new();
        assert_eq!(m.phase(), Phase::Init);
        assert_eq!(
            m.next(1),
            Next::Accept {
                init_ok: true,
                invoke: None
            }
        );
        assert_eq!(m.phase(), Phase::Idle);
        assert_eq!(m.invoke(invoke(7)).unwrap(), Some((1, invoke(7))));
        assert_eq!(m.phase(), Phase::Running(7));
        assert_eq!(m.answer("7"), Ok(7));
        assert_eq!(m.phase(), Phase::Idle);
        // Later /next calls do not push INIT_OK again.
        assert_eq!(
            m.next(2),
            Next::Accept {
                init_ok: false,
                invoke: None
            }
        );
    }

    #[test]
    fn an_invocation_before_next_is_queued() {
        let mut m = Machine::new();
        let _ = m.next(1);
        m.closed(1);
        assert_eq!(m.invoke(invoke(3)).unwrap(), None);
        assert_eq!(
            m.next(2),
            Next::Accept {
                init_ok: false,
                invoke: Some(invoke(3))
            }
        );
        assert_eq!(m.phase(), Phase::Running(3));
    }

    #[test]
    fn posts_check_state_then_id() {
        let mut m = Machine::new();
        assert_eq!(m.answer("1").map_err(status), Err(403));
        let _ = m.next(1);
        assert_eq!(m.answer("1").map_err(status), Err(403));
        m.invoke(invoke(5)).unwrap();
        assert_eq!(m.answer("6").map_err(status), Err(400));
        assert_eq!(m.answer("abc").map_err(status), Err(400));
        assert_eq!(m.answer("5"), Ok(5));
        // A second answer for the same invocation is a state error.
        assert_eq!(m.answer("5").map_err(status), Err(403));
    }

    #[test]
    fn a_second_waiting_connection_is_refused() {
        let mut m = Machine::new();
        let _ = m.next(1);
        assert!(matches!(m.next(2), Next::Refuse(a) if a.status == 403));
        // The same connection asking again (a retry) is fine.
        assert!(matches!(m.next(1), Next::Accept { .. }));
    }

    #[test]
    fn next_while_running_waits_for_the_answer() {
        let mut m = Machine::new();
        let _ = m.next(1);
        m.invoke(invoke(9)).unwrap();
        assert_eq!(
            m.next(2),
            Next::Accept {
                init_ok: false,
                invoke: None
            }
        );
        assert_eq!(m.phase(), Phase::Running(9));
        assert_eq!(m.answer("9"), Ok(9));
        assert_eq!(m.invoke(invoke(10)).unwrap(), Some((2, invoke(10))));
    }

    #[test]
    fn init_error_only_during_init() {
        let mut m = Machine::new();
        assert_eq!(m.init_error(), Ok(()));
        assert_eq!(m.phase(), Phase::InitFailed);
        assert_eq!(m.init_error().map_err(status), Err(403));
        assert!(matches!(m.next(1), Next::Refuse(a) if a.status == 403));
        assert_eq!(m.answer("1").map_err(status), Err(403));

        let mut m = Machine::new();
        let _ = m.next(1);
        assert_eq!(m.init_error().map_err(status), Err(403));
    }

    #[test]
    fn daemon_violations_are_reported() {
        let mut m = Machine::new();
        assert_eq!(m.invoke(invoke(1)), Err(Violation::BeforeInit { id: 1 }));
        let _ = m.next(1);
        m.closed(1);
        m.invoke(invoke(1)).unwrap();
        assert_eq!(
            m.invoke(invoke(2)),
            Err(Violation::Overlap { old: 1, new: 2 })
        );
        let _ = m.next(2);
        assert_eq!(
            m.invoke(invoke(3)),
            Err(Violation::Overlap { old: 1, new: 3 })
        );
    }
}
