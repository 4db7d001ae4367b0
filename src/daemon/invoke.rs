//! Invocations: accepted, queued, dispatched to a sandbox, answered.

use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Daemon, FnState, QUEUE_ALLOWANCE};
use crate::lambda::env::{InitType, SandboxIdentity};
use crate::pool::{FunctionKey, KillReason, Phase};
use crate::protocol::{
    CallerContext, DeploySpec, ErrorBody, ErrorKind, FunctionInfo, InvokeRequest, InvokeResponse,
    Response,
};
use crate::scheduler::{Dispatch, InvocationId, Refused, SandboxId};
use crate::trace::{Span, TraceContext};

/// One accepted invocation until its answer is queued for whoever waits.
pub(super) struct Invocation {
    origin: Origin,
    key: FunctionKey,
    /// Handed to the sandbox at dispatch.
    payload: Vec<u8>,
    affinity: Option<String>,
    /// Lambda's client context and Cognito identity (client invocations
    /// that carry any).
    caller: Option<Box<CallerContext>>,
    accepted: Instant,
    /// `accepted` on the wall clock, µs since the Unix epoch (spans).
    accepted_unix_us: u64,
    dispatched: Option<Instant>,
    pub(super) sandbox: Option<SandboxId>,
    cold: bool,
    affinity_hit: bool,
    pub(super) trace: TraceContext,
    /// When the invocation fails if still unanswered: while queued, the
    /// end of its wait for a sandbox (Timeout, or Throttled for a nested
    /// call); once dispatched, its handler's timeout (the sandbox is
    /// killed). Mirrored in [`Daemon::deadlines`].
    pub(super) expires: Instant,
    /// The synchronous call this invocation's handler waits on (its id in
    /// the runtime's numbering), if any.
    pub(super) calling: Option<u64>,
    /// A cold start's wait for its sandbox and that sandbox's init, µs.
    acquire_us: u64,
    init_us: u64,
}

/// What an invocation carries to its handler besides its payload.
#[derive(Debug, Default)]
pub(super) struct Carried {
    pub affinity: Option<String>,
    /// Lambda's client context and Cognito identity, when the client sent
    /// either.
    pub caller: Option<Box<CallerContext>>,
}

/// Who waits for an invocation's answer.
#[derive(Debug, Clone, Copy)]
pub(super) enum Origin {
    /// A client request on a connection.
    Client { conn: u64, request_id: u64 },
    /// A synchronous nested call: the answer goes into the caller's ring.
    Call {
        sandbox: SandboxId,
        caller: InvocationId,
        call_id: u64,
    },
    /// A fire-and-forget nested call: nobody waits.
    Detached,
}

impl Daemon {
    pub(super) fn deploy(&mut self, spec: &DeploySpec) -> anyhow::Result<FunctionInfo> {
        // The version served now, looked up before the registry moves on.
        let old = self.current_key(&spec.name);
        let function = self.registry.deploy(spec)?;
        let info = function.info();
        if let Err(err) = self.serve_version(function) {
            // The version is stored but cannot run: take it back out.
            self.registry.remove(&spec.name);
            return Err(err);
        }
        if let Some(old) = old {
            let moved = self.retire(&old);
            let new = (info.name.clone(), info.version);
            for invocation in moved {
                self.requeue(invocation, &new);
            }
            self.pump(&new);
        }
        tracing::info!(function = %info.name, version = info.version, "deployed");
        Ok(info)
    }

    /// Stop serving `name`: its queued invocations fail with NotFound.
    pub(super) fn remove_function(&mut self, name: &str) -> bool {
        let Some(key) = self.current_key(name) else {
            return false;
        };
        self.registry.remove(name);
        for invocation in self.retire(&key) {
            self.fail(
                invocation,
                ErrorKind::NotFound,
                format!("function {name} was removed"),
            );
        }
        self.counters.remove(name);
        tracing::info!(function = name, "removed");
        true
    }

    /// The live version of a function, if it is deployed and served.
    pub(super) fn current_key(&self, name: &str) -> Option<FunctionKey> {
        let function = self.registry.get(name)?;
        let key = (function.name.clone(), function.version);
        self.functions.contains_key(&key).then_some(key)
    }

    /// Mark a version retired: idle sandboxes end now, busy ones when they
    /// finish. Returns the invocations still queued for it.
    fn retire(&mut self, key: &FunctionKey) -> Vec<InvocationId> {
        let Some(state) = self.functions.get_mut(key) else {
            return Vec::new();
        };
        state.retired = true;
        let pending = state.queue.drain_pending();
        // Idle ones end now; those still starting too: they never served.
        for sandbox in state.queue.retire() {
            self.pool.kill(sandbox, KillReason::Retired);
        }
        self.forget_if_drained(key);
        pending
    }

    /// Drop a retired version once none of its sandboxes is left.
    pub(super) fn forget_if_drained(&mut self, key: &FunctionKey) {
        let drained = self
            .functions
            .get(key)
            .is_some_and(|s| s.retired && s.queue.live() == 0);
        if drained {
            self.functions.remove(key);
            self.registry.prune(&key.0);
        }
    }

    fn requeue(&mut self, id: InvocationId, key: &FunctionKey) {
        let Some(invocation) = self.invocations.get_mut(&id) else {
            return;
        };
        invocation.key = key.clone();
        let queued = self
            .functions
            .get_mut(key)
            .map(|state| state.queue.enqueue(id, invocation.affinity.as_deref()));
        match queued {
            Some(Ok(())) => {}
            Some(Err(refused)) => self.fail(id, refused_kind(refused), refused.to_string()),
            None => self.fail(id, ErrorKind::NotFound, "function is gone".into()),
        }
    }

    pub(super) fn start_invocation(&mut self, conn: u64, request_id: u64, request: InvokeRequest) {
        // The codec validated it already.
        let parent = request
            .traceparent
            .as_deref()
            .and_then(|p| crate::trace::parse_traceparent(p).ok());
        let trace = TraceContext::root(&mut self.trace_ids, parent);
        let admitted = self.admit(
            Origin::Client { conn, request_id },
            &request.function,
            request.payload,
            Carried {
                affinity: request.affinity,
                caller: (!request.caller.is_empty()).then(|| Box::new(request.caller)),
            },
            trace,
            None,
        );
        if let Err(error) = admitted {
            // Refused before reaching a sandbox: an Error frame
            // (docs/protocol.md).
            self.respond(conn, request_id, &Response::Error(error));
        }
    }

    /// Queue an invocation of `function`, or say why it was refused. It
    /// waits for a sandbox until its own timeout plus an allowance, or
    /// until `wait_until` if that comes first (a nested call waits no
    /// longer than its caller may run).
    pub(super) fn admit(
        &mut self,
        origin: Origin,
        function: &str,
        payload: Vec<u8>,
        carried: Carried,
        trace: TraceContext,
        wait_until: Option<Instant>,
    ) -> Result<InvocationId, ErrorBody> {
        let Carried { affinity, caller } = carried;
        if payload.len() > self.config.max_payload {
            let message = format!(
                "payload of {} bytes is over the {} byte limit",
                payload.len(),
                self.config.max_payload
            );
            return Err(ErrorBody::new(ErrorKind::TooLarge, message));
        }
        let Some(key) = self.current_key(function) else {
            let message = format!("no function named {function}");
            return Err(ErrorBody::new(ErrorKind::NotFound, message));
        };
        let id = self.next_invocation;
        self.next_invocation += 1;
        let state = self.functions.get_mut(&key).expect("current key is served");
        if let Err(refused) = state.queue.enqueue(id, affinity.as_deref()) {
            if let Some(counters) = self.counters.get_mut(&key.0) {
                counters.refused(refused);
            }
            return Err(ErrorBody::new(refused_kind(refused), refused.to_string()));
        }
        let now = Instant::now();
        let mut wait = Duration::from_secs(state.function.timeout_secs.into()) + QUEUE_ALLOWANCE;
        if let Some(limit) = wait_until {
            wait = wait.min(limit.saturating_duration_since(now));
        }
        let prewarm = state.function.prewarm_callees && state.queue.wanted_starts() > 0;
        if let Some(counters) = self.counters.get_mut(&key.0) {
            counters.invocations += 1;
        }
        self.invocations.insert(
            id,
            Invocation {
                origin,
                key: key.clone(),
                payload,
                affinity,
                caller,
                accepted: now,
                accepted_unix_us: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, micros),
                dispatched: None,
                sandbox: None,
                cold: false,
                affinity_hit: false,
                trace,
                expires: now + wait,
                calling: None,
                acquire_us: 0,
                init_us: 0,
            },
        );
        self.deadlines.insert((now + wait, id));
        self.pump(&key);
        if prewarm {
            self.prewarm_callees(&key.0);
        }
        Ok(id)
    }

    /// Pair queued invocations with idle sandboxes, then start as many
    /// sandboxes as the queue depth calls for (in strict affinity mode at
    /// its limit, after ending idle sandboxes of other keys).
    pub(super) fn pump(&mut self, key: &FunctionKey) {
        while let Some(dispatch) = self
            .functions
            .get_mut(key)
            .and_then(|s| s.queue.next_dispatch())
        {
            self.run_on(dispatch);
        }
        let Some(state) = self.functions.get_mut(key).filter(|s| !s.retired) else {
            return;
        };
        for sandbox in state.queue.evictions() {
            tracing::debug!(sandbox, function = %key.0, "evicting an idle sandbox of another key");
            self.pool.kill(sandbox, KillReason::Reaped);
        }
        for _ in 0..state.queue.wanted_starts() {
            if self.provision(key, None).is_none() {
                break;
            }
        }
    }

    /// Write an invocation into an idle sandbox's ring.
    fn run_on(&mut self, dispatch: Dispatch) {
        let Dispatch {
            invocation: id,
            sandbox,
            affinity_hit,
        } = dispatch;
        let Some(invocation) = self.invocations.get_mut(&id) else {
            // Its deadline passed in the queue; the sandbox pulls again.
            self.sandbox_idle(sandbox);
            return;
        };
        let Some(state) = self.functions.get(&invocation.key) else {
            return;
        };
        let timeout = Duration::from_secs(state.function.timeout_secs.into());
        let Some(slot) = self.pool.get_mut(sandbox) else {
            return;
        };
        let deadline_ms = (SystemTime::now() + timeout)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let trace = invocation.trace.meta_fields(id);
        let mut meta = format!(r#"{{"id":{id},"deadline_ms":{deadline_ms}{trace}"#);
        let extra = [
            ("affinity_key", invocation.affinity.as_deref()),
            (
                "client_context",
                invocation
                    .caller
                    .as_ref()
                    .and_then(|c| c.client_context.as_deref()),
            ),
            (
                "cognito_identity",
                invocation
                    .caller
                    .as_ref()
                    .and_then(|c| c.cognito_identity.as_deref()),
            ),
        ];
        for (key, value) in extra {
            if let Some(value) = value {
                meta.push_str(&format!(r#","{key}":{}"#, serde_json::Value::from(value)));
            }
        }
        meta.push('}');
        let payload = std::mem::take(&mut invocation.payload);
        let now = Instant::now();
        invocation.dispatched = Some(now);
        self.deadlines.remove(&(invocation.expires, id));
        invocation.expires = now + timeout;
        self.deadlines.insert((invocation.expires, id));
        invocation.sandbox = Some(sandbox);
        invocation.cold = slot.is_cold_for(invocation.accepted);
        if invocation.cold {
            let assigned = slot.assigned_at.max(invocation.accepted);
            let ready = slot.ready_at.unwrap_or(now).max(assigned);
            invocation.acquire_us = micros(assigned - invocation.accepted);
            invocation.init_us = micros(ready - assigned);
        }
        invocation.affinity_hit = affinity_hit;
        let prewarmed = self.prewarmed.remove(&sandbox);
        if let Some(counters) = self.counters.get_mut(&invocation.key.0) {
            counters.dispatched(invocation, slot.from_pool, now);
            if prewarmed && !invocation.cold {
                counters.cold_starts_avoided += 1;
            }
        }
        slot.phase = Phase::Busy(id);
        let sent = slot.ring.send_invoke(id, meta.as_bytes(), &payload);
        if let Err(err) = sent {
            if let Some(suppressed) = super::log_limit::admit() {
                tracing::warn!(sandbox, suppressed, %err, "ring refused an invocation");
            }
            self.pool.kill(sandbox, KillReason::RingViolation);
            self.fail(
                id,
                ErrorKind::RuntimeCrash,
                format!("sandbox ring failed: {err}"),
            );
        }
    }

    /// A sandbox finished an invocation (or an invocation it was meant for
    /// vanished): it pulls the next one, or ends if its version is retired.
    pub(super) fn sandbox_idle(&mut self, sandbox: SandboxId) {
        let Some(slot) = self.pool.get_mut(sandbox) else {
            return;
        };
        let Some(key) = slot.function.clone() else {
            return;
        };
        slot.phase = Phase::Idle;
        match self.functions.get_mut(&key) {
            Some(state) if !state.retired => {
                state.queue.sandbox_idle(sandbox, Instant::now());
                self.pump(&key);
            }
            _ => self.pool.kill(sandbox, KillReason::Retired),
        }
    }

    /// Answer an invocation with the function's result.
    pub(super) fn succeed(&mut self, id: InvocationId, result: Vec<u8>) {
        if result.len() > self.config.max_payload {
            let message = format!(
                "result of {} bytes is over the {} byte limit",
                result.len(),
                self.config.max_payload
            );
            return self.fail(id, ErrorKind::TooLarge, message);
        }
        self.finish(id, result, None);
    }

    pub(super) fn fail(&mut self, id: InvocationId, kind: ErrorKind, message: String) {
        self.finish(id, Vec::new(), Some(ErrorBody::new(kind, message)));
    }

    pub(super) fn fail_with(&mut self, id: InvocationId, error: ErrorBody) {
        self.finish(id, Vec::new(), Some(error));
    }

    fn finish(&mut self, id: InvocationId, result: Vec<u8>, error: Option<ErrorBody>) {
        let Some(invocation) = self.invocations.remove(&id) else {
            return;
        };
        let now = Instant::now();
        self.deadlines.remove(&(invocation.expires, id));
        if invocation.dispatched.is_none() {
            if let Some(state) = self.functions.get_mut(&invocation.key) {
                state.queue.withdraw(id);
            }
        }
        if let Some(error) = &error {
            tracing::debug!(invocation = id, kind = %error.kind, message = %error.message, "invocation failed");
        }
        if let Some(counters) = self.counters.get_mut(&invocation.key.0) {
            counters.finished(&invocation, now, error.as_ref().map(|e| e.kind));
        }
        self.record_span(id, &invocation, now, error.as_ref().map(|e| e.kind));
        let (conn, request_id) = match invocation.origin {
            Origin::Client { conn, request_id } => (conn, request_id),
            Origin::Call {
                sandbox,
                caller,
                call_id,
            } => {
                let outcome = error.map_or(Ok(result), Err);
                return self.answer_call(sandbox, caller, call_id, id, outcome);
            }
            Origin::Detached => return,
        };
        let response = Response::Invoked(InvokeResponse {
            invocation_id: id,
            result,
            error,
            cold: invocation.cold,
            sandbox: invocation.sandbox.unwrap_or(0),
            duration_us: invocation
                .dispatched
                .map_or(0, |d| micros(now.duration_since(d))),
            total_us: micros(now.duration_since(invocation.accepted)),
            affinity_hit: invocation.affinity_hit,
        });
        self.respond(conn, request_id, &response);
    }

    /// Keep the finished invocation's span (a small record: the function
    /// is a shared handle).
    fn record_span(
        &mut self,
        id: InvocationId,
        invocation: &Invocation,
        now: Instant,
        error: Option<ErrorKind>,
    ) {
        let Some(state) = self.functions.get(&invocation.key) else {
            return;
        };
        let total_us = micros(now.duration_since(invocation.accepted));
        let waited_us = invocation
            .dispatched
            .map_or(total_us, |d| micros(d.duration_since(invocation.accepted)));
        let span = Span {
            trace_id: invocation.trace.trace_id,
            invocation: id,
            parent: invocation.trace.parent,
            depth: invocation.trace.depth,
            function: Rc::clone(&state.function),
            sandbox: invocation.sandbox.unwrap_or(0),
            cold: invocation.cold,
            detached: matches!(invocation.origin, Origin::Detached),
            start_unix_us: invocation.accepted_unix_us,
            queue_us: waited_us.saturating_sub(invocation.acquire_us + invocation.init_us),
            acquire_us: invocation.acquire_us,
            init_us: invocation.init_us,
            run_us: invocation
                .dispatched
                .map_or(0, |d| micros(now.duration_since(d))),
            total_us,
            error,
        };
        if let Some(otlp) = &mut self.otlp {
            otlp.add(&span);
        }
        self.spans.record(span);
    }

    /// Fail every invocation whose deadline has passed.
    pub(super) fn expire_deadlines(&mut self) {
        let now = Instant::now();
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            match self.invocations.get(&id).map(|i| i.dispatched) {
                Some(None) => self.on_queue_deadline(id),
                Some(Some(_)) => self.on_run_deadline(id),
                None => {}
            }
        }
    }

    /// A queued invocation found no sandbox in time.
    fn on_queue_deadline(&mut self, id: InvocationId) {
        let Some(invocation) = self.invocations.get(&id) else {
            return;
        };
        let waited = invocation.accepted.elapsed().as_millis();
        let (kind, message) = match invocation.origin {
            // The caller's deadline came first: its callee's sandboxes
            // may all be held by callers waiting like it (a deadlock).
            Origin::Call { .. } => (
                ErrorKind::Throttled,
                format!(
                    "no sandbox of {} became free within {waited} ms, before the caller's \
                     deadline (its concurrency may be held by its own callers)",
                    invocation.key.0
                ),
            ),
            _ => (
                ErrorKind::Timeout,
                format!("no sandbox became free within {waited} ms"),
            ),
        };
        self.fail(id, kind, message);
    }

    /// A handler ran past its timeout: kill its sandbox.
    fn on_run_deadline(&mut self, id: InvocationId) {
        let Some(invocation) = self.invocations.get(&id) else {
            return;
        };
        let (Some(sandbox), Some(started)) = (invocation.sandbox, invocation.dispatched) else {
            return;
        };
        let timeout = self
            .functions
            .get(&invocation.key)
            .map_or(0, |s| s.function.timeout_secs);
        tracing::info!(
            invocation = id,
            sandbox,
            "handler timed out, killing its sandbox"
        );
        self.pool.kill(sandbox, KillReason::Timeout);
        self.fail(
            id,
            ErrorKind::Timeout,
            format!(
                "handler ran past its {timeout} s timeout (killed after {} ms)",
                started.elapsed().as_millis()
            ),
        );
    }
}

pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The error a refused invocation gets.
fn refused_kind(refused: Refused) -> ErrorKind {
    match refused {
        Refused::Throttled { .. } => ErrorKind::Throttled,
        Refused::KeyRequired => ErrorKind::BadRequest,
    }
}

impl Invocation {
    pub(super) fn accepted(&self) -> Instant {
        self.accepted
    }

    pub(super) fn dispatched(&self) -> Option<Instant> {
        self.dispatched
    }

    pub(super) fn cold(&self) -> bool {
        self.cold
    }

    pub(super) fn has_key(&self) -> bool {
        self.affinity.is_some()
    }

    pub(super) fn affinity_hit(&self) -> bool {
        self.affinity_hit
    }
}

impl FnState {
    /// A read-only tree of the code for a sandbox's /var/task: the spare
    /// one when there is one (see [`FnState::prepare_spare`]).
    pub(super) fn code_tree(&mut self) -> Result<OwnedFd, crate::sandbox::SandboxError> {
        match self.spare_code.take() {
            Some(tree) => Ok(tree),
            None => crate::sandbox::open_code_mount(&self.code_dir),
        }
    }

    /// What a sandbox of this version mounts, with `code` at /var/task.
    pub(super) fn package(&self, code: OwnedFd) -> crate::sandbox::Package<'_> {
        crate::sandbox::Package {
            code,
            layers: self.opt_dir.as_deref(),
            tmp_bytes: u64::from(self.function.ephemeral_storage_mb) << 20,
        }
    }

    /// Clone the code's read-only tree for the next cold start ahead of
    /// it: at deploy, and each time a sandbox has its assignment (its
    /// runtime is busy loading then, and the daemon's time is free).
    pub(super) fn prepare_spare(&mut self) {
        if self.spare_code.is_none() {
            match crate::sandbox::open_code_mount(&self.code_dir) {
                Ok(tree) => self.spare_code = Some(tree),
                Err(err) => tracing::warn!(function = %self.function.name, %err, "clone the code"),
            }
        }
    }

    /// What sandbox `sandbox` is told when it is given this version, with
    /// Lambda's environment (see [`crate::lambda::env`]).
    pub(super) fn assignment(
        &self,
        region: &str,
        sandbox: SandboxId,
        init_type: InitType,
    ) -> crate::sandbox::Assignment {
        let f = &self.function;
        let who = SandboxIdentity {
            function: &f.name,
            version: f.version,
            runtime: f.runtime,
            handler: &f.handler,
            memory_mb: f.memory_mb,
            region,
            sandbox,
            init_type,
            assigned_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            library_dirs: &self.library_dirs,
        };
        crate::sandbox::Assignment {
            function: f.name.clone(),
            version: f.version,
            handler: f.handler.clone(),
            env: crate::lambda::env::environment(&who, &f.env),
            memory_mb: f.memory_mb,
            timeout_ms: u64::from(f.timeout_secs) * 1000,
        }
    }
}
