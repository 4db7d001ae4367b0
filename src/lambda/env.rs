//! Lambda's environment variables, set in every sandbox as AWS Lambda sets
//! them, and the names a function may not override.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use crate::sandbox::RuntimeKind;

/// Where the Runtime API listens inside every sandbox.
pub const RUNTIME_API: &str = "127.0.0.1:9001";
/// The function's code (`LAMBDA_TASK_ROOT`), also the runtime's working
/// directory.
pub const TASK_ROOT: &str = "/var/task";
/// The runtime's own files (`LAMBDA_RUNTIME_DIR`).
pub const RUNTIME_DIR: &str = "/var/runtime";
/// The region sandboxes report when `serve --region` is not given.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The account id in the ARNs sprout reports: it has no AWS account.
pub const ACCOUNT_ID: &str = "000000000000";

/// Variables Lambda reserves: set by the platform, refused in `--env`
/// (AWS's list of reserved environment variables; the credentials are
/// reserved too, though sprout invents none).
pub const RESERVED: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_REGION",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "LAMBDA_RUNTIME_DIR",
    "LAMBDA_TASK_ROOT",
];

/// Whether `name` is one of [`RESERVED`].
pub fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name)
}

/// How a sandbox came to run its function (`AWS_LAMBDA_INITIALIZATION_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitType {
    /// Started for an invocation that was waiting.
    OnDemand,
    /// Started ahead of invocations by a pre-trigger.
    Provisioned,
}

impl InitType {
    pub fn as_str(self) -> &'static str {
        match self {
            InitType::OnDemand => "on-demand",
            InitType::Provisioned => "provisioned-concurrency",
        }
    }
}

/// One sandbox of one function version, as its environment describes it.
#[derive(Debug, Clone, Copy)]
pub struct SandboxIdentity<'a> {
    pub function: &'a str,
    pub version: u64,
    pub runtime: RuntimeKind,
    pub handler: &'a str,
    pub memory_mb: u32,
    pub region: &'a str,
    pub sandbox: u64,
    pub init_type: InitType,
    /// Seconds since the epoch when the sandbox was assigned (the date in
    /// its log stream's name).
    pub assigned_unix: u64,
    /// Its package's library directories ([`package_library_dirs`]).
    pub library_dirs: &'a [&'static str],
}

/// The function's ARN, as Lambda spells it.
pub fn function_arn(region: &str, function: &str) -> String {
    format!("arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function}")
}

/// The environment of `who`'s runtime: Lambda's variables, then the
/// function's own (`user`, which may override the non-reserved ones Lambda
/// sets — `PATH`, `LD_LIBRARY_PATH`, `LANG`, `TZ` — but never a reserved
/// name; the registry refuses those at deploy).
pub fn environment(
    who: &SandboxIdentity<'_>,
    user: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut set = |key: &str, value: String| {
        env.insert(key.to_owned(), value);
    };
    for (key, value) in tenant_neutral(who.runtime, who.region) {
        set(key, value);
    }
    set("AWS_LAMBDA_FUNCTION_NAME", who.function.to_owned());
    set("AWS_LAMBDA_FUNCTION_VERSION", who.version.to_string());
    set("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", who.memory_mb.to_string());
    set(
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        who.init_type.as_str().to_owned(),
    );
    set(
        "AWS_LAMBDA_LOG_GROUP_NAME",
        format!("/aws/lambda/{}", who.function),
    );
    set("AWS_LAMBDA_LOG_STREAM_NAME", log_stream_name(who));
    set("_HANDLER", who.handler.to_owned());
    if let Some(path) = library_path(who.library_dirs) {
        set("LD_LIBRARY_PATH", path);
    }
    for (key, value) in user {
        if !is_reserved(key) {
            env.insert(key.clone(), value.clone());
        }
    }
    env
}

/// The directories of a function's package that can hold a shared
/// library for it, in Lambda's order: `/var/task` when its top level holds
/// one, `/var/task/lib`, `/opt/lib` (from `code` and `layers`, the
/// version's directories on the host; both are read-only in the sandbox,
/// so what is found now holds for the version's life).
pub fn package_library_dirs(code: &Path, layers: Option<&Path>) -> Vec<&'static str> {
    let holds_library = |dir: &Path| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.ends_with(".so") || name.contains(".so.")
            })
        })
    };
    let mut dirs = Vec::new();
    if holds_library(code) {
        dirs.push(TASK_ROOT);
    }
    if code.join("lib").is_dir() {
        dirs.push("/var/task/lib");
    }
    if layers.is_some_and(|l| l.join("lib").is_dir()) {
        dirs.push("/opt/lib");
    }
    dirs
}

/// `LD_LIBRARY_PATH` for a package whose library directories are `dirs`
/// ([`package_library_dirs`]), as Lambda orders it: the system's library
/// directories first (Lambda's `/lib64:/usr/lib64`; on the host root the
/// sandboxes are built from, the one that holds its libc), then the
/// package's. None when the package has none: every directory on the path
/// costs each exec in the sandbox a failed lookup of each of its
/// subdirectories the dynamic loader tries (tens of system calls, a tenth
/// of a millisecond on a cold start), and a library can only be found in a
/// directory that holds one.
pub fn library_path(dirs: &[&str]) -> Option<String> {
    static SYSTEM: OnceLock<Option<String>> = OnceLock::new();
    if dirs.is_empty() {
        return None;
    }
    let system = SYSTEM.get_or_init(|| {
        let arch = std::env::consts::ARCH;
        [
            "/lib64".to_owned(),
            "/usr/lib64".to_owned(),
            format!("/usr/lib/{arch}-linux-gnu"),
        ]
        .into_iter()
        .find(|dir| Path::new(dir).join("libc.so.6").exists())
    });
    Some(
        system
            .iter()
            .map(String::as_str)
            .chain(dirs.iter().copied())
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// Lambda's variables that are the same for every function of a runtime
/// on this daemon: a sandbox starts with them before it knows its function
/// (`sandbox::confine`), so a cold start does not spend time setting them.
pub fn tenant_neutral(runtime: RuntimeKind, region: &str) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        ("AWS_LAMBDA_RUNTIME_API", RUNTIME_API.to_owned()),
        ("AWS_REGION", region.to_owned()),
        ("AWS_DEFAULT_REGION", region.to_owned()),
        ("LAMBDA_TASK_ROOT", TASK_ROOT.to_owned()),
        ("LAMBDA_RUNTIME_DIR", RUNTIME_DIR.to_owned()),
        ("TZ", ":UTC".to_owned()),
        ("LANG", "C.UTF-8".to_owned()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin:/opt/bin".to_owned()),
    ];
    if let Some(execution_env) = execution_env(runtime) {
        vars.push(("AWS_EXECUTION_ENV", execution_env));
    }
    vars
}

/// `YYYY/MM/DD/[VERSION]<32 hex>`, unique per sandbox as on Lambda.
fn log_stream_name(who: &SandboxIdentity<'_>) -> String {
    let (year, month, day) = civil_date(who.assigned_unix / 86_400);
    format!(
        "{year:04}/{month:02}/{day:02}/[{}]{:032x}",
        who.version,
        (u128::from(who.assigned_unix) << 64) | u128::from(who.sandbox)
    )
}

/// Managed runtimes name themselves (`AWS_Lambda_python3.11`); `provided`
/// and native functions bring their own runtime and get none, as on Lambda.
fn execution_env(runtime: RuntimeKind) -> Option<String> {
    match runtime {
        RuntimeKind::Python => Some(format!(
            "AWS_Lambda_{}",
            crate::sandbox::host_python().unwrap_or("python3")
        )),
        _ => None,
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> SandboxIdentity<'static> {
        SandboxIdentity {
            function: "greeter",
            version: 3,
            runtime: RuntimeKind::Native,
            handler: "app.handler",
            memory_mb: 256,
            region: "eu-west-1",
            sandbox: 0x2a,
            init_type: InitType::Provisioned,
            assigned_unix: 1_764_892_800, // 2025-12-05T00:00:00Z
            library_dirs: &["/var/task/lib", "/opt/lib"],
        }
    }

    #[test]
    fn lambda_variables_are_set() {
        let env = environment(&who(), &BTreeMap::new());
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("AWS_LAMBDA_FUNCTION_NAME"), Some("greeter"));
        assert_eq!(get("AWS_LAMBDA_FUNCTION_VERSION"), Some("3"));
        assert_eq!(get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), Some("256"));
        assert_eq!(get("AWS_LAMBDA_RUNTIME_API"), Some("127.0.0.1:9001"));
        assert_eq!(
            get("AWS_LAMBDA_INITIALIZATION_TYPE"),
            Some("provisioned-concurrency")
        );
        assert_eq!(
            get("AWS_LAMBDA_LOG_GROUP_NAME"),
            Some("/aws/lambda/greeter")
        );
        assert_eq!(
            get("AWS_LAMBDA_LOG_STREAM_NAME"),
            Some("2025/12/05/[3]0000000069322080000000000000002a")
        );
        assert_eq!(get("AWS_REGION"), Some("eu-west-1"));
        assert_eq!(get("AWS_DEFAULT_REGION"), Some("eu-west-1"));
        assert_eq!(get("_HANDLER"), Some("app.handler"));
        assert_eq!(get("LAMBDA_TASK_ROOT"), Some("/var/task"));
        assert_eq!(get("LAMBDA_RUNTIME_DIR"), Some("/var/runtime"));
        assert_eq!(get("TZ"), Some(":UTC"));
        assert_eq!(get("PATH"), Some("/usr/local/bin:/usr/bin:/bin:/opt/bin"));
        let libs = get("LD_LIBRARY_PATH").unwrap();
        assert!(libs.ends_with(":/var/task/lib:/opt/lib"), "{libs}");
        let system = libs.split(':').next().unwrap();
        assert!(
            Path::new(system).join("libc.so.6").exists(),
            "{libs}: the system's libraries come first"
        );
        assert_eq!(get("AWS_EXECUTION_ENV"), None, "native brings its own");
        for secret in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        ] {
            assert_eq!(get(secret), None, "no credentials are invented");
        }
    }

    #[test]
    fn a_package_without_libraries_gets_no_library_path() {
        let who = SandboxIdentity {
            library_dirs: &[],
            ..who()
        };
        assert_eq!(
            environment(&who, &BTreeMap::new()).get("LD_LIBRARY_PATH"),
            None
        );
    }

    #[test]
    fn library_dirs_are_those_that_can_hold_one() {
        let code = tempfile::tempdir().unwrap();
        let layers = tempfile::tempdir().unwrap();
        std::fs::write(code.path().join("app.py"), "").unwrap();
        assert!(package_library_dirs(code.path(), Some(layers.path())).is_empty());
        std::fs::write(code.path().join("libfoo.so.1"), "").unwrap();
        std::fs::create_dir(code.path().join("lib")).unwrap();
        std::fs::create_dir(layers.path().join("lib")).unwrap();
        assert_eq!(
            package_library_dirs(code.path(), Some(layers.path())),
            ["/var/task", "/var/task/lib", "/opt/lib"]
        );
        assert_eq!(
            package_library_dirs(code.path(), None),
            ["/var/task", "/var/task/lib"]
        );
    }

    #[test]
    fn the_function_overrides_only_what_is_not_reserved() {
        let user = BTreeMap::from([
            ("PATH".to_owned(), "/var/task/bin:/usr/bin".to_owned()),
            ("TABLE".to_owned(), "orders".to_owned()),
            ("AWS_REGION".to_owned(), "mars-1".to_owned()),
        ]);
        let env = environment(&who(), &user);
        assert_eq!(env["PATH"], "/var/task/bin:/usr/bin");
        assert_eq!(env["TABLE"], "orders");
        assert_eq!(env["AWS_REGION"], "eu-west-1");
    }

    #[test]
    fn reserved_names_are_lambdas() {
        assert!(is_reserved("AWS_LAMBDA_FUNCTION_NAME"));
        assert!(is_reserved("_HANDLER"));
        assert!(!is_reserved("PATH"));
        assert!(!is_reserved("TZ"));
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(20_427), (2025, 12, 5));
    }

    #[test]
    fn arns_are_lambdas() {
        assert_eq!(
            function_arn("us-east-1", "f"),
            "arn:aws:lambda:us-east-1:000000000000:function:f"
        );
    }
}
