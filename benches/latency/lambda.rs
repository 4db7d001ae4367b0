//! Lambda's interfaces: warm round trips through the Runtime API bridge in
//! the sandbox with three unmodified Lambda runtime clients, each held
//! against sprout's ring runtime of the same language, and pooled cold
//! starts of a `provided` Rust function and of a zip-deployed python
//! function.
//!
//! The clients are the end-to-end tests' functions
//! (tests/functions/lambda-rust, built with the `lambda_runtime` crate;
//! tests/fixtures/lambda/awslambdaric, the official Python runtime client
//! installed beside the handler with pip; tests/fixtures/lambda/curl, a
//! shell loop with curl opening one connection per request). Given the
//! bench's payload, a JSON string, each echoes it back, like the ring
//! runtimes' no-op functions.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sprout::client::Client;
use sprout::protocol::DeploySpec;

use crate::functions::{install_stripped, Functions, Runtime};
use crate::markdown::{q, t};
use crate::results::{size_label, Results, SMALL};
use crate::stats::{Samples, Summary};

/// A Lambda runtime client serving the Runtime API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LambdaClient {
    RustRuntime,
    Awslambdaric,
    Curl,
}

impl LambdaClient {
    pub const ALL: [LambdaClient; 3] = [
        LambdaClient::RustRuntime,
        LambdaClient::Awslambdaric,
        LambdaClient::Curl,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LambdaClient::RustRuntime => "lambda_runtime (Rust)",
            LambdaClient::Awslambdaric => "awslambdaric (python)",
            LambdaClient::Curl => "curl (shell)",
        }
    }

    fn dir_name(self) -> &'static str {
        match self {
            LambdaClient::RustRuntime => "lambda-rust",
            LambdaClient::Awslambdaric => "lambda-awslambdaric",
            LambdaClient::Curl => "lambda-curl",
        }
    }

    /// The ring runtime of the same language, which it is held against.
    pub fn ring(self) -> Option<Runtime> {
        match self {
            LambdaClient::RustRuntime => Some(Runtime::Native),
            LambdaClient::Awslambdaric => Some(Runtime::Python),
            LambdaClient::Curl => None,
        }
    }

    /// The deployed name of its warm function.
    pub fn warm_name(self) -> String {
        format!("warm-{}", self.dir_name())
    }
}

/// The cold starts this module measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LambdaCold {
    /// The `lambda_runtime` binary as a `provided` function.
    ProvidedRust,
    /// The no-op python handler, deployed as a zip package.
    PythonZip,
}

impl LambdaCold {
    pub const ALL: [LambdaCold; 2] = [LambdaCold::ProvidedRust, LambdaCold::PythonZip];

    pub fn as_str(self) -> &'static str {
        match self {
            LambdaCold::ProvidedRust => "provided, lambda_runtime (Rust)",
            LambdaCold::PythonZip => "python, zip package",
        }
    }

    /// The pool it is served from.
    pub fn runtime(self) -> &'static str {
        match self {
            LambdaCold::ProvidedRust => "provided",
            LambdaCold::PythonZip => "python",
        }
    }
}

/// The functions' code for this run, and the clients that cannot run here.
pub struct LambdaFunctions {
    dirs: BTreeMap<LambdaClient, PathBuf>,
    python_zip: PathBuf,
    pub unavailable: BTreeMap<LambdaClient, String>,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

impl LambdaFunctions {
    /// Build the Rust function, vendor awslambdaric, copy the curl loop and
    /// zip the python handler, under `work`.
    pub fn prepare(work: &Path, functions: &Functions) -> LambdaFunctions {
        let mut dirs = BTreeMap::new();
        let mut unavailable = BTreeMap::new();
        for client in LambdaClient::ALL {
            let dir = work.join(client.dir_name());
            std::fs::create_dir_all(&dir).expect("create a lambda function dir");
            match lay_out(client, &dir) {
                Ok(()) => {
                    dirs.insert(client, dir);
                }
                Err(reason) => {
                    unavailable.insert(client, reason);
                }
            }
        }
        let python_zip = work.join("noop-python.zip");
        zip_dir(functions.code_dir(Runtime::Python), &python_zip);
        LambdaFunctions {
            dirs,
            python_zip,
            unavailable,
        }
    }

    pub fn available(&self) -> impl Iterator<Item = LambdaClient> + '_ {
        self.dirs.keys().copied()
    }

    /// `client`'s function as a `provided` deploy.
    pub fn spec(&self, name: &str, client: LambdaClient) -> DeploySpec {
        serde_json::from_value(json!({
            "name": name,
            "runtime": "provided",
            "handler": "app.handler",
            "code": self.dirs[&client].to_str().expect("utf-8 work dir"),
        }))
        .expect("a valid deploy spec")
    }

    /// The cold starts that can run here.
    pub fn colds(&self) -> Vec<LambdaCold> {
        LambdaCold::ALL
            .into_iter()
            .filter(|cold| match cold {
                LambdaCold::ProvidedRust => self.dirs.contains_key(&LambdaClient::RustRuntime),
                LambdaCold::PythonZip => true,
            })
            .collect()
    }

    /// What a cold start of `cold` (one of [`Self::colds`]) deploys.
    pub fn cold_spec(&self, name: &str, cold: LambdaCold) -> DeploySpec {
        match cold {
            LambdaCold::ProvidedRust => self.spec(name, LambdaClient::RustRuntime),
            LambdaCold::PythonZip => serde_json::from_value(json!({
                "name": name,
                "runtime": "python",
                "handler": "app.handler",
                "code": self.python_zip.to_str().expect("utf-8 work dir"),
            }))
            .expect("a valid deploy spec"),
        }
    }

    /// Deploy each client's warm function on `client` and run it once.
    pub fn deploy_warm(&self, client: &Client) {
        for lambda in self.available() {
            let name = lambda.warm_name();
            client.deploy(&self.spec(&name, lambda)).expect("deploy");
            let first = client.invoke(&name, b"\"x\"").expect("first invoke");
            assert!(first.error.is_none(), "{name}: {:?}", first.error);
            assert_eq!(first.result, b"\"x\"", "{name} echoes a string");
        }
    }
}

/// Lay out `client`'s function in `dir`, or say why it cannot run here.
fn lay_out(client: LambdaClient, dir: &Path) -> Result<(), String> {
    let fixtures = repo().join("tests/fixtures/lambda");
    let copy = |from: &Path, name: &str| {
        std::fs::copy(from, dir.join(name))
            .map(drop)
            .map_err(|e| format!("copy {}: {e}", from.display()))
    };
    match client {
        LambdaClient::RustRuntime => {
            let built = build_package_binary("lambda-rust", "lambda-rust-bootstrap")?;
            install_stripped(&built, &dir.join("bootstrap"));
            Ok(())
        }
        LambdaClient::Curl => {
            if !Path::new("/usr/bin/curl").exists() {
                return Err("/usr/bin/curl is not installed".into());
            }
            copy(&fixtures.join("curl/bootstrap"), "bootstrap")
        }
        LambdaClient::Awslambdaric => {
            copy(&fixtures.join("awslambdaric/bootstrap"), "bootstrap")?;
            copy(&fixtures.join("awslambdaric/app.py"), "app.py")?;
            let out = Command::new("/usr/bin/python3")
                .args(["-m", "pip", "install", "-q", "--target"])
                .arg(dir.join("vendor"))
                .arg("awslambdaric")
                .output()
                .map_err(|e| format!("run pip: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "pip install awslambdaric failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        }
    }
}

/// `cargo build --profile bench -p PACKAGE`, and its binary `bin`.
fn build_package_binary(package: &str, bin: &str) -> Result<PathBuf, String> {
    let output = Command::new(env!("CARGO"))
        .args(["build", "-q", "--profile", "bench", "-p", package])
        .args(["--message-format", "json-render-diagnostics"])
        .current_dir(repo())
        .output()
        .map_err(|e| format!("run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "building {package} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["target"]["name"] == bin)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("cargo named no {bin} executable"))
}

/// Zip every file of `dir` (flat) into `to`, as a Lambda user would.
fn zip_dir(dir: &Path, to: &Path) {
    let file = std::fs::File::create(to).expect("create the zip");
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    for entry in std::fs::read_dir(dir).expect("read the python dir") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().unwrap().to_str().expect("utf-8 name");
        zip.start_file(name, options).expect("zip entry");
        zip.write_all(&std::fs::read(&path).expect("read a file"))
            .expect("zip write");
    }
    zip.finish().expect("finish the zip");
}

/// The warm Runtime API round trip of `client`, `n` times.
pub fn warm(client: &Client, lambda: LambdaClient, payload: &[u8], n: usize) -> Vec<Duration> {
    crate::sprout_runs::warm(client, &lambda.warm_name(), payload, n)
}

fn ratio(r: &Results, lambda: LambdaClient, s: &Summary) -> Option<f64> {
    let ring = r.warm_p50(lambda.ring()?, SMALL)?;
    Some(s.p50 / ring)
}

fn times(v: Option<f64>, sign: &str) -> String {
    v.map(|v| format!("{v:.2}{sign}")).unwrap_or_default()
}

pub fn print(r: &Results) {
    if r.lambda_warm.is_empty() && r.lambda_cold.is_empty() {
        return;
    }
    println!(
        "\n== Lambda Runtime API, warm round trip, {} (microseconds; x ring = ratio to sprout's ring runtime of the same language)",
        size_label(SMALL)
    );
    println!(
        "{:<34} {:>6} {:>9} {:>9} {:>9} {:>9}  {:>9}",
        "", "n", "p50", "p90", "p99", "max", "x ring"
    );
    for (lambda, samples) in &r.lambda_warm {
        if let Some(s) = samples.summary() {
            println!(
                "{:<34} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.1}  {:>9}",
                lambda.as_str(),
                s.n,
                s.p50,
                s.p90,
                s.p99,
                s.max,
                times(ratio(r, *lambda, &s), "x")
            );
        }
    }
    for (lambda, reason) in &r.lambda_unavailable {
        println!("{:<34} not run here: {reason}", lambda.as_str());
    }
    println!("\n== Lambda functions, cold start from the pool (microseconds)");
    for (cold, samples) in &r.lambda_cold {
        if let Some(s) = samples.summary() {
            println!(
                "{:<34} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                cold.as_str(),
                s.n,
                s.p50,
                s.p90,
                s.p99,
                s.max
            );
        }
    }
}

pub fn to_json(r: &Results) -> Value {
    let sum = |s: &Samples| s.summary().map(Summary::to_json);
    json!({
        "runtime_api_warm": r.lambda_warm.iter().map(|(lambda, s)| json!({
            "client": lambda.as_str(),
            "payload_bytes": SMALL,
            "latency": sum(s),
            "ring_runtime": lambda.ring().map(Runtime::as_str),
            "ratio_p50_to_ring_runtime": s.summary().and_then(|s| ratio(r, *lambda, &s)),
        })).collect::<Vec<_>>(),
        "unavailable": r.lambda_unavailable.iter().map(|(lambda, reason)| json!({
            "client": lambda.as_str(), "reason": reason,
        })).collect::<Vec<_>>(),
        "cold_from_pool": r.lambda_cold.iter().map(|(cold, s)| json!({
            "function": cold.as_str(), "payload_bytes": SMALL, "latency": sum(s),
        })).collect::<Vec<_>>(),
    })
}

pub fn markdown(r: &Results, md: &mut String) {
    if r.lambda_warm.is_empty() && r.lambda_cold.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n**Lambda Runtime API**, warm round trip, {} (an unmodified Lambda runtime client in the sandbox, through the Runtime API bridge, echoing the payload), held against sprout's ring runtime of the same language:\n",
        size_label(SMALL)
    );
    let _ = writeln!(
        md,
        "| runtime client | n | p50 | p90 | p99 | p50 ÷ ring runtime |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for (lambda, samples) in &r.lambda_warm {
        if let Some(s) = samples.summary() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                lambda.as_str(),
                s.n,
                t(s.p50),
                t(s.p90),
                q(&s, 0.99, s.p99),
                times(ratio(r, *lambda, &s), "×"),
            );
        }
    }
    for (lambda, reason) in &r.lambda_unavailable {
        let _ = writeln!(
            md,
            "| {}: not run here ({reason}) | | | | | |",
            lambda.as_str()
        );
    }
    let _ = writeln!(
        md,
        "\n**Lambda functions, cold start from the pool** (a just-deployed function's first invocation):\n"
    );
    let _ = writeln!(md, "| function | n | p50 | p90 | p99 |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    for (cold, samples) in &r.lambda_cold {
        if let Some(s) = samples.summary() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                cold.as_str(),
                s.n,
                t(s.p50),
                t(s.p90),
                q(&s, 0.99, s.p99),
            );
        }
    }
}

/// p50 of `lambda`'s warm round trip and of its ring runtime's.
pub fn warm_p50s(r: &Results, lambda: LambdaClient) -> (Option<f64>, Option<f64>) {
    let own = r
        .lambda_warm
        .get(&lambda)
        .and_then(Samples::summary)
        .map(|s| s.p50);
    (own, lambda.ring().and_then(|ring| r.warm_p50(ring, SMALL)))
}

pub fn cold_p50(r: &Results, cold: LambdaCold) -> Option<f64> {
    r.lambda_cold
        .get(&cold)
        .and_then(Samples::summary)
        .map(|s| s.p50)
}
