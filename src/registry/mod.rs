//! Deployed functions: name, version, runtime, handler, code, limits and
//! environment, persisted under the state directory.
//!
//! Layout: `STATE/functions/NAME/VERSION/{function.json,code/,opt/}` plus
//! `STATE/functions/NAME/current` holding the live version number. A
//! version's code (and `opt`, its layers merged, when it has layers) is
//! unpacked once at deploy (see [`package`]) and never changes.

#![deny(unsafe_code)]

mod function;
pub mod package;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use function::{find_bootstrap, BootstrapIn, Function, FunctionError};
pub use package::PackageError;

use crate::protocol::DeploySpec;

/// Deploy-time validation failures and storage errors.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Invalid(#[from] FunctionError),
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error("store function {name} under {path}: {source}")]
    Store {
        name: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("load registry from {path}: {source}")]
    Load {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The live version of every deployed function.
pub struct Registry {
    root: PathBuf,
    functions: BTreeMap<String, Function>,
}

impl Registry {
    /// Open (or create) the registry under `state_dir`, loading the live
    /// version of each function and deleting versions no longer live.
    pub fn open(state_dir: &Path) -> Result<Registry, RegistryError> {
        let root = state_dir.join("functions");
        let load_err = |source| RegistryError::Load {
            path: root.clone(),
            source,
        };
        fs::create_dir_all(&root).map_err(load_err)?;
        let mut functions = BTreeMap::new();
        for entry in fs::read_dir(&root).map_err(load_err)? {
            let dir = entry.map_err(load_err)?.path();
            match load_current(&dir) {
                Ok(Some(function)) => {
                    prune_versions(&dir, function.version);
                    functions.insert(function.name.clone(), function);
                }
                Ok(None) => {
                    tracing::warn!(path = %dir.display(), "removing function directory without a live version");
                    let _ = fs::remove_dir_all(&dir);
                }
                Err(err) => {
                    tracing::warn!(path = %dir.display(), %err, "skipping unreadable function")
                }
            }
        }
        Ok(Registry { root, functions })
    }

    pub fn get(&self, name: &str) -> Option<&Function> {
        self.functions.get(name)
    }

    pub fn list(&self) -> impl Iterator<Item = &Function> {
        self.functions.values()
    }

    /// Validate `spec`, unpack its code and layers into a new immutable
    /// version and make that version live. A refused deploy leaves no
    /// trace in the state directory.
    pub fn deploy(&mut self, spec: &DeploySpec) -> Result<Function, RegistryError> {
        let previous = self.functions.get(&spec.name).map_or(0, |f| f.version);
        let mut function = Function::from_spec(spec, previous + 1)?;
        let dir = self.root.join(&function.name);
        let version_dir = self.version_dir(&function);
        let name = function.name.clone();
        let store_err = |source| RegistryError::Store {
            name: name.clone(),
            path: version_dir.clone(),
            source,
        };
        if version_dir.exists() {
            fs::remove_dir_all(&version_dir).map_err(store_err)?;
        }
        fs::create_dir_all(&version_dir).map_err(store_err)?;
        if let Err(err) = self.unpack(&mut function, spec) {
            let _ = fs::remove_dir_all(&version_dir);
            if previous == 0 {
                let _ = fs::remove_dir(&dir);
            }
            return Err(err);
        }
        write_atomic(
            &version_dir.join("function.json"),
            &serde_json::to_vec_pretty(&function).expect("function serializes"),
        )
        .map_err(store_err)?;
        write_atomic(
            &dir.join("current"),
            function.version.to_string().as_bytes(),
        )
        .map_err(store_err)?;
        self.functions
            .insert(function.name.clone(), function.clone());
        Ok(function)
    }

    /// Unpack the code and layers of `spec` into `function`'s version
    /// directory, one budget for all, and check the result.
    fn unpack(&self, function: &mut Function, spec: &DeploySpec) -> Result<(), RegistryError> {
        let mut budget = package::Budget::default();
        let code = self.code_dir(function);
        function.code_bytes = package::unpack(&spec.code, &code, &mut budget)?;
        if !spec.layers.is_empty() {
            let opt = self.version_dir(function).join("opt");
            function.layer_bytes = package::unpack_layers(&spec.layers, &opt, &mut budget)?;
        }
        function.check_code(&code, self.opt_dir(function).as_deref(), &spec.code)?;
        Ok(())
    }

    /// Forget `name` and delete every version of its code. Sandboxes that
    /// still run it hold their own mount of the code until they end.
    pub fn remove(&mut self, name: &str) -> Option<Function> {
        let function = self.functions.remove(name)?;
        let dir = self.root.join(name);
        if let Err(err) = fs::remove_dir_all(&dir) {
            tracing::warn!(path = %dir.display(), %err, "could not delete removed function's files");
        }
        Some(function)
    }

    /// Delete the code of versions of `name` older than the live one.
    pub fn prune(&self, name: &str) {
        if let Some(function) = self.functions.get(name) {
            prune_versions(&self.root.join(name), function.version);
        }
    }

    /// Where the code of `function`'s version lives (Lambda's `/var/task`).
    pub fn code_dir(&self, function: &Function) -> PathBuf {
        self.version_dir(function).join("code")
    }

    /// Where the merged layers of `function`'s version live (Lambda's
    /// `/opt`); `None` when it has no layers.
    pub fn opt_dir(&self, function: &Function) -> Option<PathBuf> {
        (!function.layer_bytes.is_empty()).then(|| self.version_dir(function).join("opt"))
    }

    fn version_dir(&self, function: &Function) -> PathBuf {
        self.root
            .join(&function.name)
            .join(function.version.to_string())
    }
}

fn load_current(dir: &Path) -> io::Result<Option<Function>> {
    let current = match fs::read_to_string(dir.join("current")) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let version = current.trim();
    let meta = fs::read(dir.join(version).join("function.json"))?;
    let function: Function = serde_json::from_slice(&meta)
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
    Ok(Some(function))
}

fn prune_versions(dir: &Path, live: u64) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|v| v < live);
        if stale {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(code: &Path) -> DeploySpec {
        DeploySpec {
            name: "hello".into(),
            runtime: "python".into(),
            handler: Some("app.handler".into()),
            code: code.to_path_buf(),
            memory_mb: None,
            timeout_secs: None,
            env: BTreeMap::from([("K".into(), "V".into())]),
            concurrency: Some(3),
            max_queue: Some(7),
            idle_timeout_secs: Some(2),
            affinity_mode: Some(crate::protocol::AffinityMode::Strict),
            prewarm_callees: None,
            layers: Vec::new(),
            ephemeral_storage_mb: Some(1024),
        }
    }

    #[test]
    fn deploy_persists_versions_and_reloads() {
        let state = tempfile::tempdir().unwrap();
        let code = tempfile::tempdir().unwrap();
        fs::write(code.path().join("app.py"), "def handler(e, c): return e\n").unwrap();
        fs::create_dir(code.path().join("pkg")).unwrap();
        fs::write(code.path().join("pkg/data.txt"), "x").unwrap();

        let mut registry = Registry::open(state.path()).unwrap();
        let v1 = registry.deploy(&spec(code.path())).unwrap();
        assert_eq!(v1.version, 1);
        let v2 = registry.deploy(&spec(code.path())).unwrap();
        assert_eq!(v2.version, 2);
        assert!(registry.code_dir(&v2).join("pkg/data.txt").is_file());
        registry.prune("hello");
        assert!(!registry.code_dir(&v1).exists());

        let reopened = Registry::open(state.path()).unwrap();
        let loaded = reopened.get("hello").unwrap();
        assert_eq!(loaded, &v2, "every field survives the reload");
        assert_eq!(loaded.version, 2);
        assert_eq!(loaded.env.get("K").map(String::as_str), Some("V"));
        assert_eq!(loaded.code_bytes, v2.code_bytes);
    }

    #[test]
    fn deploy_rejects_missing_handler_module() {
        let state = tempfile::tempdir().unwrap();
        let code = tempfile::tempdir().unwrap();
        let mut registry = Registry::open(state.path()).unwrap();
        let err = registry.deploy(&spec(code.path())).unwrap_err();
        assert!(err.to_string().contains("app.py"), "{err}");
        assert!(registry.get("hello").is_none());
    }

    #[test]
    fn deploy_unpacks_layers_and_a_refused_one_leaves_nothing() {
        let state = tempfile::tempdir().unwrap();
        let code = tempfile::tempdir().unwrap();
        let layer = tempfile::tempdir().unwrap();
        fs::write(code.path().join("app.py"), "").unwrap();
        fs::create_dir(layer.path().join("python")).unwrap();
        fs::write(layer.path().join("python/dep.py"), "x = 1\n").unwrap();
        let mut registry = Registry::open(state.path()).unwrap();
        let plain = registry.deploy(&spec(code.path())).unwrap();
        assert_eq!(registry.opt_dir(&plain), None);

        let layered = DeploySpec {
            layers: vec![layer.path().to_path_buf(), layer.path().to_path_buf()],
            ..spec(code.path())
        };
        let v2 = registry.deploy(&layered).unwrap();
        assert_eq!(v2.layer_bytes, [6, 6]);
        assert_eq!(v2.ephemeral_storage_mb, 1024);
        let opt = registry.opt_dir(&v2).expect("layers give an opt dir");
        assert!(opt.join("python/dep.py").is_file());

        // A handler found only in a layer's python directory, as Lambda's
        // python runtime imports it.
        let in_layer = DeploySpec {
            name: "from-layer".into(),
            handler: Some("dep.handler".into()),
            ..layered.clone()
        };
        registry.deploy(&in_layer).unwrap();

        let missing = DeploySpec {
            name: "refused".into(),
            layers: vec![code.path().join("nope.zip")],
            ..spec(code.path())
        };
        let err = registry.deploy(&missing).unwrap_err();
        assert!(err.to_string().contains("nope.zip"), "{err}");
        assert!(registry.get("refused").is_none());
        assert!(
            !state.path().join("functions/refused").exists(),
            "a refused first version leaves no function directory"
        );
        let err = registry
            .deploy(&DeploySpec {
                layers: vec![code.path().join("nope.zip")],
                ..spec(code.path())
            })
            .unwrap_err();
        assert!(matches!(err, RegistryError::Package(_)), "{err}");
        let versions: Vec<_> = fs::read_dir(state.path().join("functions/hello"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(versions, ["1", "2", "current"], "the live version stays");
        assert_eq!(registry.get("hello").unwrap().version, 2);
    }

    #[test]
    fn remove_deletes_files() {
        let state = tempfile::tempdir().unwrap();
        let code = tempfile::tempdir().unwrap();
        fs::write(code.path().join("app.py"), "").unwrap();
        let mut registry = Registry::open(state.path()).unwrap();
        registry.deploy(&spec(code.path())).unwrap();
        assert!(registry.remove("hello").is_some());
        assert!(!state.path().join("functions/hello").exists());
        assert!(Registry::open(state.path()).unwrap().get("hello").is_none());
    }
}
