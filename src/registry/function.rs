//! One deployed function version and its validation.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::package;
use crate::protocol::{self, AffinityMode, DeploySpec, FunctionInfo};
use crate::sandbox::RuntimeKind;

/// Why a deploy request was refused.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error("invalid function name: {0}")]
    Name(String),
    /// The runtime name was refused; the text says why and what is
    /// accepted ([`RuntimeKind::parse_name`]).
    #[error("{0}")]
    Runtime(String),
    #[error("the python runtime needs --handler MODULE.FUNCTION, got {0:?}")]
    Handler(String),
    #[error("memory {0} MB is outside {min}..={max} MB", min = Function::MIN_MEMORY_MB, max = Function::MAX_MEMORY_MB)]
    Memory(u32),
    #[error("timeout {0} s is outside 1..={max} s", max = Function::MAX_TIMEOUT_SECS)]
    Timeout(u32),
    #[error("concurrency {0} is outside 1..={max}", max = Function::MAX_CONCURRENCY)]
    Concurrency(u32),
    #[error("queue length {0} is outside 1..={max}", max = Function::MAX_QUEUE)]
    Queue(u32),
    #[error("idle timeout {0} s is outside 1..={max} s", max = Function::MAX_IDLE_TIMEOUT_SECS)]
    IdleTimeout(u32),
    #[error("invalid environment variable name {0:?}")]
    EnvName(String),
    #[error("environment variable {0} is reserved: Lambda sets it for every function")]
    EnvReserved(String),
    #[error("ephemeral storage {0} MB is outside {min}..={max} MB", min = Function::MIN_EPHEMERAL_STORAGE_MB, max = Function::MAX_EPHEMERAL_STORAGE_MB)]
    EphemeralStorage(u32),
    #[error("{0} layers given, at most {max}", max = package::MAX_LAYERS)]
    Layers(usize),
    #[error("code {code} has no {file} (needed by handler {handler:?})")]
    HandlerModule {
        code: String,
        file: String,
        handler: String,
    },
    #[error("code {0} has no executable `bootstrap` (build one with runtimes/native)")]
    Bootstrap(String),
    #[error("code {0} and its layers have no executable `bootstrap` (the provided runtime executes /var/task/bootstrap, else /opt/bootstrap, which talks to the Lambda Runtime API)")]
    ProvidedBootstrap(String),
}

/// Where a function's `bootstrap` is, looked up as Lambda looks for a
/// custom runtime's: the code's own (`/var/task/bootstrap`), else the
/// layers' (`/opt/bootstrap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootstrapIn {
    Code,
    Layers,
}

/// Find an executable `bootstrap` in the unpacked `code`, then in the
/// merged layers `opt` (if the function has any).
pub fn find_bootstrap(code: &Path, opt: Option<&Path>) -> Option<BootstrapIn> {
    let executable = |dir: &Path| {
        std::fs::metadata(dir.join("bootstrap"))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if executable(code) {
        Some(BootstrapIn::Code)
    } else if opt.is_some_and(executable) {
        Some(BootstrapIn::Layers)
    } else {
        None
    }
}

/// A function version as stored in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Function {
    pub name: String,
    pub version: u64,
    pub runtime: RuntimeKind,
    /// `module.function` for python; empty for native.
    pub handler: String,
    pub memory_mb: u32,
    pub timeout_secs: u32,
    pub env: BTreeMap<String, String>,
    /// Bytes of the unpacked code.
    pub code_bytes: u64,
    /// Bytes of each layer, unpacked, in order (empty: no layers).
    #[serde(default)]
    pub layer_bytes: Vec<u64>,
    /// Size of the sandbox's `/tmp`.
    #[serde(default = "defaults::ephemeral_storage")]
    pub ephemeral_storage_mb: u32,
    pub deployed_at_unix: u64,
    /// Most sandboxes at once.
    #[serde(default = "defaults::concurrency")]
    pub concurrency: u32,
    /// Most invocations waiting for a sandbox; more are Throttled.
    #[serde(default = "defaults::max_queue")]
    pub max_queue: u32,
    /// A sandbox idle this long is destroyed.
    #[serde(default = "defaults::idle_timeout")]
    pub idle_timeout_secs: u32,
    #[serde(default)]
    pub affinity_mode: AffinityMode,
    /// Pre-warm the usual callees on a cold start.
    #[serde(default)]
    pub prewarm_callees: bool,
}

/// Values for functions stored before these options existed.
mod defaults {
    pub fn concurrency() -> u32 {
        crate::protocol::DEFAULT_CONCURRENCY
    }

    pub fn max_queue() -> u32 {
        crate::protocol::DEFAULT_MAX_QUEUE
    }

    pub fn idle_timeout() -> u32 {
        crate::protocol::DEFAULT_IDLE_TIMEOUT_SECS
    }

    pub fn ephemeral_storage() -> u32 {
        crate::protocol::DEFAULT_EPHEMERAL_STORAGE_MB
    }
}

impl Function {
    pub const DEFAULT_MEMORY_MB: u32 = 128;
    pub const MIN_MEMORY_MB: u32 = 64;
    pub const MAX_MEMORY_MB: u32 = 10_240;
    pub const DEFAULT_TIMEOUT_SECS: u32 = 3;
    pub const MAX_TIMEOUT_SECS: u32 = 900;
    pub const MAX_CONCURRENCY: u32 = 1000;
    pub const MAX_QUEUE: u32 = 100_000;
    pub const MAX_IDLE_TIMEOUT_SECS: u32 = 86_400;
    /// `/tmp` sizes Lambda allows.
    pub const MIN_EPHEMERAL_STORAGE_MB: u32 = 512;
    pub const MAX_EPHEMERAL_STORAGE_MB: u32 = 10_240;

    /// Validate a deploy request into version `version` (code not yet
    /// checked: see [`Function::check_code`]).
    pub fn from_spec(spec: &DeploySpec, version: u64) -> Result<Function, FunctionError> {
        protocol::validate_function_name(&spec.name).map_err(FunctionError::Name)?;
        let runtime: RuntimeKind = spec.runtime.parse().map_err(FunctionError::Runtime)?;
        let handler = match runtime {
            RuntimeKind::Python => {
                let handler = spec.handler.clone().unwrap_or_default();
                let valid = handler
                    .rsplit_once('.')
                    .is_some_and(|(module, func)| is_dotted_name(module) && is_identifier(func));
                if !valid {
                    return Err(FunctionError::Handler(handler));
                }
                handler
            }
            RuntimeKind::Native => String::new(),
            // Lambda hands the handler to the bootstrap as `_HANDLER`; any
            // text is the bootstrap's business.
            RuntimeKind::Provided => spec.handler.clone().unwrap_or_default(),
        };
        let memory_mb = spec.memory_mb.unwrap_or(Self::DEFAULT_MEMORY_MB);
        if !(Self::MIN_MEMORY_MB..=Self::MAX_MEMORY_MB).contains(&memory_mb) {
            return Err(FunctionError::Memory(memory_mb));
        }
        let timeout_secs = spec.timeout_secs.unwrap_or(Self::DEFAULT_TIMEOUT_SECS);
        if !(1..=Self::MAX_TIMEOUT_SECS).contains(&timeout_secs) {
            return Err(FunctionError::Timeout(timeout_secs));
        }
        if let Some(bad) = spec.env.keys().find(|k| !is_env_name(k)) {
            return Err(FunctionError::EnvName(bad.clone()));
        }
        if let Some(reserved) = spec.env.keys().find(|k| crate::lambda::env::is_reserved(k)) {
            return Err(FunctionError::EnvReserved(reserved.clone()));
        }
        let concurrency = spec.concurrency.unwrap_or(protocol::DEFAULT_CONCURRENCY);
        if !(1..=Self::MAX_CONCURRENCY).contains(&concurrency) {
            return Err(FunctionError::Concurrency(concurrency));
        }
        let max_queue = spec.max_queue.unwrap_or(protocol::DEFAULT_MAX_QUEUE);
        if !(1..=Self::MAX_QUEUE).contains(&max_queue) {
            return Err(FunctionError::Queue(max_queue));
        }
        let idle_timeout_secs = spec
            .idle_timeout_secs
            .unwrap_or(protocol::DEFAULT_IDLE_TIMEOUT_SECS);
        if !(1..=Self::MAX_IDLE_TIMEOUT_SECS).contains(&idle_timeout_secs) {
            return Err(FunctionError::IdleTimeout(idle_timeout_secs));
        }
        let ephemeral_storage_mb = spec
            .ephemeral_storage_mb
            .unwrap_or(protocol::DEFAULT_EPHEMERAL_STORAGE_MB);
        if !(Self::MIN_EPHEMERAL_STORAGE_MB..=Self::MAX_EPHEMERAL_STORAGE_MB)
            .contains(&ephemeral_storage_mb)
        {
            return Err(FunctionError::EphemeralStorage(ephemeral_storage_mb));
        }
        if spec.layers.len() > package::MAX_LAYERS {
            return Err(FunctionError::Layers(spec.layers.len()));
        }
        Ok(Function {
            name: spec.name.clone(),
            version,
            runtime,
            handler,
            memory_mb,
            timeout_secs,
            env: spec.env.clone(),
            code_bytes: 0,
            layer_bytes: Vec::new(),
            ephemeral_storage_mb,
            deployed_at_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            concurrency,
            max_queue,
            idle_timeout_secs,
            affinity_mode: spec.affinity_mode.unwrap_or_default(),
            prewarm_callees: spec.prewarm_callees.unwrap_or(false),
        })
    }

    /// Check that the unpacked `code` (deployed from `shown`), with the
    /// merged layers `opt`, holds what the runtime will load.
    pub fn check_code(
        &self,
        code: &Path,
        opt: Option<&Path>,
        shown: &Path,
    ) -> Result<(), FunctionError> {
        let shown = shown.display().to_string();
        match self.runtime {
            RuntimeKind::Python => {
                let (module, _) = self.handler.rsplit_once('.').expect("validated handler");
                let rel = module.replace('.', "/");
                let file = format!("{rel}.py");
                // As Lambda's python runtime imports it: from the code, or
                // from the layers' `python` directory.
                let python_layers = opt.map(|opt| opt.join("python"));
                let found = std::iter::once(code)
                    .chain(python_layers.as_deref())
                    .any(|root| {
                        root.join(&file).is_file() || root.join(&rel).join("__init__.py").is_file()
                    });
                if found {
                    Ok(())
                } else {
                    Err(FunctionError::HandlerModule {
                        code: shown,
                        file,
                        handler: self.handler.clone(),
                    })
                }
            }
            // The native runtime runs the code's own bootstrap.
            RuntimeKind::Native => match find_bootstrap(code, None) {
                Some(BootstrapIn::Code) => Ok(()),
                _ => Err(FunctionError::Bootstrap(shown)),
            },
            // Lambda's custom runtime: the code's bootstrap, else a layer's.
            RuntimeKind::Provided => match find_bootstrap(code, opt) {
                Some(_) => Ok(()),
                None => Err(FunctionError::ProvidedBootstrap(shown)),
            },
        }
    }

    pub fn info(&self) -> FunctionInfo {
        FunctionInfo {
            name: self.name.clone(),
            version: self.version,
            runtime: self.runtime.to_string(),
            handler: (!self.handler.is_empty()).then(|| self.handler.clone()),
            memory_mb: self.memory_mb,
            timeout_secs: self.timeout_secs,
            env: self.env.clone(),
            code_bytes: self.code_bytes,
            layer_bytes: self.layer_bytes.clone(),
            ephemeral_storage_mb: self.ephemeral_storage_mb,
            deployed_at_unix: self.deployed_at_unix,
            concurrency: self.concurrency,
            max_queue: self.max_queue,
            idle_timeout_secs: self.idle_timeout_secs,
            affinity_mode: self.affinity_mode,
            prewarm_callees: self.prewarm_callees,
        }
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_dotted_name(s: &str) -> bool {
    s.split('.').all(is_identifier)
}

fn is_env_name(s: &str) -> bool {
    is_identifier(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(runtime: &str, handler: Option<&str>) -> DeploySpec {
        DeploySpec {
            name: "f".into(),
            runtime: runtime.into(),
            handler: handler.map(Into::into),
            code: "/nonexistent".into(),
            ..Default::default()
        }
    }

    #[test]
    fn validates_handler_runtime_and_limits() {
        assert!(Function::from_spec(&spec("python", Some("app.handler")), 1).is_ok());
        assert!(Function::from_spec(&spec("python", Some("pkg.mod.fn")), 1).is_ok());
        for bad in [None, Some("app"), Some("app."), Some(".fn"), Some("a-b.fn")] {
            assert!(matches!(
                Function::from_spec(&spec("python", bad), 1),
                Err(FunctionError::Handler(_))
            ));
        }
        assert!(matches!(
            Function::from_spec(&spec("cobol", None), 1),
            Err(FunctionError::Runtime(_))
        ));
        let native = Function::from_spec(&spec("native", None), 1).unwrap();
        assert_eq!(native.memory_mb, Function::DEFAULT_MEMORY_MB);
        assert_eq!(native.timeout_secs, Function::DEFAULT_TIMEOUT_SECS);

        let mut s = spec("native", None);
        s.memory_mb = Some(1);
        assert!(matches!(
            Function::from_spec(&s, 1),
            Err(FunctionError::Memory(1))
        ));
        s.memory_mb = None;
        s.timeout_secs = Some(0);
        assert!(matches!(
            Function::from_spec(&s, 1),
            Err(FunctionError::Timeout(0))
        ));
        s.timeout_secs = None;
        for (field, bad) in [(0, 0), (0, 1001), (1, 0), (2, 0), (2, 86_401)] {
            let mut s = s.clone();
            match field {
                0 => s.concurrency = Some(bad),
                1 => s.max_queue = Some(bad),
                _ => s.idle_timeout_secs = Some(bad),
            }
            assert!(Function::from_spec(&s, 1).is_err(), "{field} {bad}");
        }
        s.affinity_mode = Some(AffinityMode::Strict);
        s.concurrency = Some(8);
        let strict = Function::from_spec(&s, 1).unwrap();
        assert_eq!(strict.affinity_mode, AffinityMode::Strict);
        assert_eq!(
            (
                strict.concurrency,
                strict.max_queue,
                strict.idle_timeout_secs
            ),
            (8, 100, 300)
        );
        s.env.insert("BAD=NAME".into(), "v".into());
        assert!(matches!(
            Function::from_spec(&s, 1),
            Err(FunctionError::EnvName(_))
        ));
        s.env.clear();
        s.env
            .insert("AWS_LAMBDA_FUNCTION_NAME".into(), "other".into());
        let err = Function::from_spec(&s, 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable AWS_LAMBDA_FUNCTION_NAME is reserved: Lambda sets it for every function"
        );
    }

    #[test]
    fn native_code_needs_executable_bootstrap() {
        let dir = tempfile::tempdir().unwrap();
        let f = Function::from_spec(&spec("native", None), 1).unwrap();
        let check = |opt| f.check_code(dir.path(), opt, Path::new("/src"));
        assert!(matches!(check(None), Err(FunctionError::Bootstrap(s)) if s == "/src"));
        let bootstrap = dir.path().join("bootstrap");
        std::fs::write(&bootstrap, "#!/bin/sh\n").unwrap();
        assert!(check(None).is_err());
        std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(check(None).is_ok());
    }

    #[test]
    fn bootstrap_is_found_in_code_then_layers() {
        let code = tempfile::tempdir().unwrap();
        let opt = tempfile::tempdir().unwrap();
        let make = |dir: &Path| {
            std::fs::write(dir.join("bootstrap"), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(
                dir.join("bootstrap"),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
        };
        assert_eq!(find_bootstrap(code.path(), Some(opt.path())), None);
        make(opt.path());
        assert_eq!(
            find_bootstrap(code.path(), Some(opt.path())),
            Some(BootstrapIn::Layers)
        );
        assert_eq!(find_bootstrap(code.path(), None), None);
        make(code.path());
        assert_eq!(
            find_bootstrap(code.path(), Some(opt.path())),
            Some(BootstrapIn::Code)
        );
    }

    #[test]
    fn ephemeral_storage_and_layer_count() {
        let f = Function::from_spec(&spec("native", None), 1).unwrap();
        assert_eq!(f.ephemeral_storage_mb, 512, "Lambda's default");
        for (mb, ok) in [(511, false), (512, true), (10_240, true), (10_241, false)] {
            let mut s = spec("native", None);
            s.ephemeral_storage_mb = Some(mb);
            match Function::from_spec(&s, 1) {
                Ok(f) => assert!(ok && f.ephemeral_storage_mb == mb, "{mb}"),
                Err(err) => {
                    assert!(!ok, "{mb}: {err}");
                    assert!(matches!(err, FunctionError::EphemeralStorage(m) if m == mb));
                }
            }
        }
        let mut s = spec("native", None);
        s.layers = vec!["/l".into(); 5];
        assert!(Function::from_spec(&s, 1).is_ok());
        s.layers.push("/l".into());
        let err = Function::from_spec(&s, 1).unwrap_err();
        assert_eq!(err.to_string(), "6 layers given, at most 5");
    }

    #[test]
    fn functions_stored_before_layers_load_with_defaults() {
        let f = Function::from_spec(&spec("native", None), 1).unwrap();
        let mut json = serde_json::to_value(&f).unwrap();
        let object = json.as_object_mut().unwrap();
        object.remove("layer_bytes");
        object.remove("ephemeral_storage_mb");
        let loaded: Function = serde_json::from_value(json).unwrap();
        assert_eq!(loaded, f);
    }

    #[test]
    fn provided_takes_lambda_names_and_needs_a_bootstrap() {
        let dir = tempfile::tempdir().unwrap();
        let code = dir.path().join("code");
        let opt = dir.path().join("opt");
        std::fs::create_dir_all(&code).unwrap();
        std::fs::create_dir_all(&opt).unwrap();
        for name in ["provided", "provided.al2", "provided.al2023"] {
            let f = Function::from_spec(&spec(name, None), 1).unwrap();
            assert_eq!(f.runtime, RuntimeKind::Provided);
            assert_eq!(f.info().runtime, "provided");
            assert!(matches!(
                f.check_code(&code, Some(&opt), Path::new("/src")),
                Err(FunctionError::ProvidedBootstrap(s)) if s == "/src"
            ));
        }
        let with_handler = Function::from_spec(&spec("provided", Some("function.handler")), 1);
        assert_eq!(with_handler.unwrap().handler, "function.handler");
        let f = Function::from_spec(&spec("provided.al2023", None), 1).unwrap();
        // A layer's bootstrap (Lambda's /opt/bootstrap) does, as does the
        // code's own.
        let executable = |dir: &Path| {
            let bootstrap = dir.join("bootstrap");
            std::fs::write(&bootstrap, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        executable(&opt);
        assert!(f.check_code(&code, Some(&opt), Path::new("/src")).is_ok());
        assert!(f.check_code(&code, None, Path::new("/src")).is_err());
        executable(&code);
        assert!(f.check_code(&code, None, Path::new("/src")).is_ok());
        let err = Function::from_spec(&spec("nodejs20.x", None), 1).unwrap_err();
        assert!(err.to_string().contains("not supported yet"), "{err}");
    }
}
