//! End to end: a real daemon, the client library and the CLI, python and
//! native functions in real sandboxes. Every test runs on both event-loop
//! backends.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use common::*;
use sprout::protocol::ErrorKind;

fn python_hello(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    let info = client
        .deploy(&sprout::protocol::DeploySpec {
            code: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-python"),
            ..python_spec("hello", "app.handler")
        })
        .unwrap();
    assert_eq!(info.version, 1);
    let first = client.invoke("hello", br#"{"name":"sprout"}"#).unwrap();
    assert!(first.error.is_none(), "{:?}\n{}", first.error, daemon.log());
    assert!(first.cold, "first invocation starts a sandbox");
    assert!(String::from_utf8_lossy(&first.result).contains("sprout"));
    let second = client.invoke("hello", br#"{"name":"again"}"#).unwrap();
    assert!(!second.cold, "second invocation reuses the warm sandbox");
    assert_eq!(second.sandbox, first.sandbox);
    assert!(second.total_us >= second.duration_us);
}

fn native_hello(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    client.deploy(&native_spec("native-hello")).unwrap();
    let first = client
        .invoke("native-hello", br#"{"name":"rust"}"#)
        .unwrap();
    assert!(first.error.is_none(), "{:?}\n{}", first.error, daemon.log());
    assert!(first.cold);
    assert!(String::from_utf8_lossy(&first.result).contains("rust"));
    let second = client.invoke("native-hello", b"{}").unwrap();
    assert!(second.error.is_none());
    assert!(!second.cold);
    assert_eq!(second.sandbox, first.sandbox);
}

fn function_error_then_recovers(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    deploy_python(&client, "boom", "app.boom");
    let response = client.invoke("boom", b"42").unwrap();
    let error = response.error.expect("function error");
    assert_eq!(error.kind, ErrorKind::FunctionError);
    assert_eq!(error.error_type.as_deref(), Some("ValueError"));
    assert!(error.message.contains("bad input: 42"), "{}", error.message);
    assert!(error
        .stack_trace
        .unwrap_or_default()
        .contains("raise ValueError"));
    // The sandbox survives a function error and serves again.
    let again = client.invoke("boom", b"1").unwrap();
    assert_eq!(again.sandbox, response.sandbox);
    assert!(!again.cold);
}

fn init_error_is_reported(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    deploy_python(&client, "nohandler", "app.does_not_exist");
    let response = client.invoke("nohandler", b"{}").unwrap();
    let error = response.error.expect("init error");
    assert_eq!(error.kind, ErrorKind::FunctionError, "{error:?}");
    assert!(
        error.error_type.unwrap_or_default().starts_with("Runtime."),
        "{}",
        error.message
    );
}

fn timeout_kills_and_recovers(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    client
        .deploy(&sprout::protocol::DeploySpec {
            timeout_secs: Some(1),
            ..python_spec("sleepy", "app.sleep")
        })
        .unwrap();
    let response = client.invoke("sleepy", b"30").unwrap();
    let error = response.error.expect("timeout");
    assert_eq!(error.kind, ErrorKind::Timeout, "{}", error.message);
    let again = client.invoke("sleepy", b"0").unwrap();
    assert!(again.error.is_none(), "{:?}", again.error);
    assert_ne!(
        again.sandbox, response.sandbox,
        "the timed-out sandbox was killed"
    );
    assert!(again.cold);
}

fn crash_is_runtime_crash(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    deploy_python(&client, "crash", "app.crash");
    deploy_python(&client, "echo", "app.echo");
    let response = client.invoke("crash", b"{}").unwrap();
    assert_eq!(response.error.unwrap().kind, ErrorKind::RuntimeCrash);
    let response = client.invoke("crash", b"{}").unwrap();
    assert_eq!(
        response.error.unwrap().kind,
        ErrorKind::RuntimeCrash,
        "a second crash is reported the same way"
    );
    let ok = client.invoke("echo", b"1").unwrap();
    assert!(ok.error.is_none());
}

fn hostile_ring_is_runtime_crash(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    client
        .deploy(&sprout::protocol::DeploySpec {
            timeout_secs: Some(20),
            ..python_spec("hostile", "app.corrupt_ring")
        })
        .unwrap();
    deploy_python(&client, "echo", "app.echo");
    let response = client.invoke("hostile", b"{}").unwrap();
    let error = response.error.expect("ring violation");
    assert_eq!(error.kind, ErrorKind::RuntimeCrash, "{}", error.message);
    assert!(error.message.contains("ring"), "{}", error.message);
    // The sandbox is gone, and everyone else is served.
    let again = client.invoke("hostile", b"{}").unwrap();
    assert_ne!(again.sandbox, response.sandbox);
    assert!(client.invoke("echo", b"1").unwrap().error.is_none());
}

fn out_of_memory_from_cgroup(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    client
        .deploy(&sprout::protocol::DeploySpec {
            memory_mb: Some(64),
            timeout_secs: Some(20),
            ..python_spec("hog", "app.hog")
        })
        .unwrap();
    let response = client.invoke("hog", b"{}").unwrap();
    let error = response.error.expect("oom");
    assert_eq!(error.kind, ErrorKind::OutOfMemory, "{}", error.message);
    assert!(error.message.contains("64 MiB"), "{}", error.message);
    // The function still works for a small request (a fresh sandbox).
    client
        .deploy(&sprout::protocol::DeploySpec {
            memory_mb: Some(64),
            ..python_spec("hog", "app.echo")
        })
        .unwrap();
    assert!(client.invoke("hog", b"1").unwrap().error.is_none());
}

fn not_found_and_too_large(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    assert_eq!(
        error_kind(client.invoke("nope", b"{}")),
        Some(ErrorKind::NotFound)
    );
    deploy_python(&client, "echo", "app.echo");
    let big = vec![b'x'; 7 * 1024 * 1024];
    assert_eq!(
        error_kind(client.invoke("echo", &big)),
        Some(ErrorKind::TooLarge)
    );
    // Past the client's own check: the daemon refuses it too.
    let lenient =
        sprout::client::Client::connect_with_max_payload(&daemon.socket, 8 << 20).unwrap();
    assert_eq!(
        error_kind(lenient.invoke("echo", &big)),
        Some(ErrorKind::TooLarge)
    );
    assert!(lenient.invoke("echo", b"{}").unwrap().error.is_none());
    // A large result over the daemon's limit is TooLarge too.
    deploy_python(&client, "big", "app.big");
    let response = client.invoke("big", b"7000000").unwrap();
    assert_eq!(response.error.unwrap().kind, ErrorKind::TooLarge);
    assert!(client.invoke("big", b"1000").unwrap().error.is_none());
    // A 5 MiB payload passes through the ring.
    let payload = serde_json::to_vec(&"y".repeat(5 * 1024 * 1024)).unwrap();
    let echoed = client.invoke("echo", &payload).unwrap();
    assert!(echoed.error.is_none(), "{:?}", echoed.error);
    assert!(echoed.result.len() > 5 * 1024 * 1024);
}

fn malformed_frames_do_not_hurt(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    deploy_python(&client, "echo", "app.echo");
    // Garbage: the daemon answers with an error frame and closes.
    let mut raw = UnixStream::connect(&daemon.socket).unwrap();
    raw.write_all(b"\x10\x00\x00\x00garbage-garbage!").unwrap();
    let mut answer = Vec::new();
    raw.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    raw.read_to_end(&mut answer).unwrap();
    assert!(
        answer.len() >= 16,
        "an error frame came back before the close"
    );
    // A truncated frame followed by a disconnect.
    let mut raw = UnixStream::connect(&daemon.socket).unwrap();
    raw.write_all(&[0xff, 0xff, 0x00, 0x00, 0x53, 0x50])
        .unwrap();
    drop(raw);
    // A header announcing a frame far over the limit.
    let mut raw = UnixStream::connect(&daemon.socket).unwrap();
    raw.write_all(&u32::MAX.to_le_bytes()).unwrap();
    drop(raw);
    // The daemon still serves everyone else.
    let ok = client.invoke("echo", b"{}").unwrap();
    assert!(ok.error.is_none());
}

fn concurrent_threads_share_a_connection(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = Arc::new(daemon.client());
    deploy_python(&client, "echo", "app.echo");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    let payload = format!(r#"{{"t":{t},"i":{i}}}"#);
                    let response = client.invoke("echo", payload.as_bytes()).unwrap();
                    assert!(response.error.is_none(), "{:?}", response.error);
                    let value = json(&response.result);
                    assert_eq!(value["event"]["t"], t);
                    assert_eq!(value["event"]["i"], i);
                }
            })
        })
        .collect();
    // A second connection in parallel.
    let other = daemon.client();
    for i in 0..10 {
        let response = other.invoke("echo", format!("{i}").as_bytes()).unwrap();
        assert_eq!(json(&response.result)["event"], i);
    }
    for thread in threads {
        thread.join().unwrap();
    }
}

fn confinement_seen_from_inside(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    deploy_python(&client, "probe", "app.probe");
    let response = client.invoke("probe", b"{}").unwrap();
    assert!(response.error.is_none(), "{:?}", response.error);
    let probe = json(&response.result);

    let uid_map = probe["uid_map"].as_array().unwrap();
    assert_eq!(uid_map.len(), 3, "one mapping line: {uid_map:?}");
    assert_eq!(uid_map[0], "0");
    assert_ne!(uid_map[1], "0", "host root is never mapped");
    assert_eq!(uid_map[2], "1");
    assert_eq!(probe["gid_map"][1], uid_map[1]);
    for caps in ["cap_eff", "cap_prm", "cap_bnd", "cap_amb"] {
        assert_eq!(probe[caps], "0000000000000000", "{caps}");
    }
    assert_eq!(probe["no_new_privs"], "1");
    assert_eq!(probe["seccomp"], "2");
    assert_eq!(probe["interfaces"], serde_json::json!(["lo"]));
    assert_eq!(probe["outside"], "Network is unreachable");
    assert_eq!(probe["root_writable"], "Read-only file system");
    assert_eq!(probe["tmp_writable"], "yes");
    assert_eq!(
        probe["dev"],
        serde_json::json!(["full", "null", "random", "urandom", "zero"])
    );
    assert!(probe["cwd"].as_str().unwrap().starts_with('/'));
    // Only the sandbox's own processes are visible: the runtime, pid 2
    // (its reaper, pid 1, is not dumpable, so hidepid=invisible hides it).
    assert_eq!(probe["pids"], serde_json::json!([2]));
    // Every namespace differs from the host's.
    for (ns, inside) in probe["namespaces"].as_object().unwrap() {
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(
            inside.as_str().unwrap(),
            host.to_str().unwrap(),
            "{ns} namespace"
        );
    }
    // No host environment leaks in: the runtime's variables and Lambda's,
    // with the function's values, and no credentials.
    let env = probe["env"].as_object().unwrap();
    let lambda = [
        ("AWS_LAMBDA_FUNCTION_NAME", "probe"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "1"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/probe"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("_HANDLER", "app.probe"),
        ("LAMBDA_TASK_ROOT", "/var/task"),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime"),
        ("TZ", ":UTC"),
        ("LANG", "C.UTF-8"),
        ("PATH", "/usr/local/bin:/usr/bin:/bin:/opt/bin"),
    ];
    for (key, value) in lambda {
        assert_eq!(env.get(key), Some(&serde_json::json!(value)), "{key}");
    }
    // The probe's package holds no shared library.
    assert_eq!(env.get("LD_LIBRARY_PATH"), None);
    let stream = env["AWS_LAMBDA_LOG_STREAM_NAME"].as_str().unwrap();
    assert!(stream.contains("/[1]") && stream.len() == 46, "{stream}");
    assert!(env["AWS_EXECUTION_ENV"]
        .as_str()
        .unwrap()
        .starts_with("AWS_Lambda_python3"));
    // The runtime sets X-Ray's header per invocation, from the INVOKE meta.
    let xray = env["_X_AMZN_TRACE_ID"].as_str().unwrap();
    assert!(
        xray.len() == 74 && xray.starts_with("Root=1-") && xray.ends_with(";Sampled=1"),
        "{xray}"
    );
    for key in env.keys() {
        assert!(
            [
                "HOME",
                "_X_AMZN_TRACE_ID",
                "LC_CTYPE",
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "AWS_EXECUTION_ENV",
                "SPROUT_RUNTIME",
                "SPROUT_FUNCTION",
                "SPROUT_FUNCTION_VERSION",
                "SPROUT_MEMORY_MB",
                "SPROUT_TIMEOUT_MS",
            ]
            .contains(&key.as_str())
                || lambda.iter().any(|(k, _)| k == key),
            "unexpected variable {key} inside the sandbox"
        );
    }
    // Open fds: stdin on /dev/null, stdout and stderr on the pipe to the
    // reaper, the ring memfd (and Python's mmap dup
    // of it), the two doorbells, the control socket, the code directory,
    // and the one listdir used; nothing of the host's.
    let fds = probe["fds"].as_object().unwrap();
    assert!(fds.len() <= 10, "unexpected open fds {fds:?}");
    for n in 0..=6 {
        assert!(fds.contains_key(&n.to_string()), "fd {n} missing: {fds:?}");
    }
    for (fd, target) in fds {
        let target = target.as_str().unwrap();
        // The code directory is a detached mount: its path reads "/".
        let expected = ["/dev/null", "anon_inode:[eventfd]", "/", "closed"].contains(&target)
            || target.starts_with("/memfd:sprout-ring")
            || target.starts_with("socket:[")
            || target.starts_with("pipe:[");
        assert!(expected, "fd {fd} -> {target}");
    }
    // The mount table shows a read-only root.
    let mounts = probe["mounts"].as_array().unwrap();
    let root = mounts
        .iter()
        .map(|m| m.as_str().unwrap())
        .find(|m| m.split(' ').nth(4) == Some("/"))
        .expect("a root mount");
    assert!(root.split(' ').nth(5).unwrap().starts_with("ro"), "{root}");
}

fn cli_round_trip(backend: &str) {
    let daemon = Daemon::start(backend);
    let code = fixtures().join("pyfuncs");
    let out = daemon.cli(
        &[
            "deploy",
            "echo",
            "--runtime",
            "python",
            "--handler",
            "app.echo",
            "--code",
            code.to_str().unwrap(),
            "--env",
            "GREETING=hi",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = daemon.cli(&["invoke", "echo", r#"{"a":1}"#, "--json"], None);
    assert_eq!(out.status.code(), Some(0));
    let value = json(&out.stdout);
    assert_eq!(value["ok"], true);
    assert_eq!(value["result"]["event"]["a"], 1);
    assert_eq!(value["cold"], true);
    for key in ["request_id", "sandbox", "duration_us", "total_us"] {
        assert!(value[key].is_number(), "{key} in {value}");
    }
    assert!(value["error"].is_null());

    let out = daemon.cli(&["invoke", "echo", "-"], Some(b"[1,2]"));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out.stdout)["event"], serde_json::json!([1, 2]));

    let out = daemon.cli(
        &[
            "deploy",
            "boom",
            "--runtime",
            "python",
            "--handler",
            "app.boom",
            "--code",
            code.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success());
    let out = daemon.cli(&["invoke", "boom", "{}", "--json"], None);
    assert_eq!(out.status.code(), Some(1), "function errors exit 1");
    let value = json(&out.stdout);
    assert_eq!(value["ok"], false);
    assert_eq!(value["error"]["type"], "FunctionError");

    let out = daemon.cli(&["invoke", "missing", "{}"], None);
    assert_eq!(out.status.code(), Some(2), "other errors exit 2");
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"));

    let out = daemon.cli(&["list", "--json"], None);
    let list = json(&out.stdout);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["boom", "echo"]);

    let out = daemon.cli(&["rm", "boom"], None);
    assert!(out.status.success());
    let out = daemon.cli(&["rm", "boom"], None);
    assert_eq!(out.status.code(), Some(2));
}

fn teardown_leaves_nothing(backend: &str) {
    let mut daemon = Daemon::start(backend);
    let client = daemon.client();
    deploy_python(&client, "echo", "app.echo");
    deploy_python(&client, "other", "app.count");
    assert!(client.invoke("echo", b"{}").unwrap().error.is_none());
    assert!(client.invoke("other", b"{}").unwrap().error.is_none());
    let instance = instance_of(&daemon.state);
    assert!(!sandbox_processes(&instance).is_empty());

    // rm ends the function's sandbox: its cgroup and process go away.
    let sandbox = client.invoke("echo", b"{}").unwrap().sandbox;
    let cgroup = daemon
        .cgroup_dirs()
        .into_iter()
        .find(|d| d.ends_with(format!("sandbox-{sandbox}")))
        .expect("the sandbox's cgroup");
    let pids: Vec<i32> = std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(!pids.is_empty());
    client.remove("echo").unwrap();
    assert_eq!(
        error_kind(client.invoke("echo", b"{}")),
        Some(ErrorKind::NotFound)
    );
    for pid in pids {
        assert!(
            wait_gone(pid),
            "process {pid} of a removed function survived"
        );
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while cgroup.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!cgroup.exists(), "{} survived rm", cgroup.display());
    drop(client);

    daemon.stop();
    assert!(
        sandbox_processes(&instance).is_empty(),
        "no sandbox process outlives the daemon"
    );
    assert!(
        daemon.cgroup_dirs().is_empty(),
        "{:?}",
        daemon.cgroup_dirs()
    );
    // Sandbox mounts lived in their own namespaces and code mounts were
    // detached: nothing under the state directory is mounted on the host.
    let state = std::fs::canonicalize(&daemon.state).unwrap();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(state.to_str().unwrap()),
        "host mounts under the state dir remain:\n{mountinfo}"
    );
    assert!(
        !daemon.socket.exists(),
        "the socket file is removed at stop"
    );
}

fn restart_after_crash_cleans_up(backend: &str) {
    let mut daemon = Daemon::start(backend);
    let client = daemon.client();
    deploy_python(&client, "counter", "app.count");
    assert_eq!(json(&client.invoke("counter", b"{}").unwrap().result), 1);
    drop(client);
    let instance = instance_of(&daemon.state);
    let old_pids = sandbox_processes(&instance);
    assert!(!old_pids.is_empty());
    daemon.crash();
    daemon.spawn(backend, &[]);
    // The function is still deployed and starts from scratch.
    let client = daemon.client();
    let response = client.invoke("counter", b"{}").unwrap();
    assert_eq!(json(&response.result), 1, "{:?}", response.error);
    assert!(response.cold);
    // Nothing of the crashed run is left: its processes are gone and every
    // process in the instance's cgroups is a sandbox of the new daemon.
    for pid in &old_pids {
        assert!(
            wait_gone(*pid),
            "sandbox process {pid} of the crashed daemon survived"
        );
    }
    for dir in daemon.cgroup_dirs() {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let ppid = |pid: &str| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            status
                .lines()
                .find_map(|l| l.strip_prefix("PPid:"))
                .map(|v| v.trim().parse::<i32>().unwrap())
        };
        for pid in procs.lines() {
            // The sandbox's reaper is the daemon's child, the runtime the
            // reaper's, a provided runtime's bootstrap the runtime's.
            let ancestors: Vec<i32> = std::iter::successors(ppid(pid), |p| ppid(&p.to_string()))
                .take(3)
                .collect();
            assert!(
                ancestors.is_empty() || ancestors.contains(&daemon.pid()),
                "process {pid} in {} belongs to no live daemon",
                dir.display()
            );
        }
    }
    daemon.stop();
    assert!(sandbox_processes(&instance).is_empty());
    assert!(daemon.cgroup_dirs().is_empty());
}

on_both_backends!(
    python_hello,
    native_hello,
    function_error_then_recovers,
    init_error_is_reported,
    timeout_kills_and_recovers,
    crash_is_runtime_crash,
    hostile_ring_is_runtime_crash,
    out_of_memory_from_cgroup,
    not_found_and_too_large,
    malformed_frames_do_not_hurt,
    concurrent_threads_share_a_connection,
    confinement_seen_from_inside,
    cli_round_trip,
    teardown_leaves_nothing,
    restart_after_crash_cleans_up,
);
