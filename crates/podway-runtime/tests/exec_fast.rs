//! The fast exec path (the runtime enters the container itself, no `runc exec`) against real
//! runc containers: same namespaces, cgroups, credentials, limits, env and cwd as `runc exec`
//! gives; exit codes, stdin, terminals, errors, cleanup. Needs root, runc, umoci,
//! busybox-static and the `podway` binary (`cargo build -p podway`; or set `PODWAY_BIN`).
mod common;

use std::time::Duration;

use common::{Fixture, alive, eventually, processes_running, strings};
use podway_runtime::{Error, ProcessIo, Runtime, SeccompProfile, WindowSize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `runc exec ID cmd…` run by hand on the fixture's runc root, whatever its outcome.
fn runc_exec_output(f: &Fixture, id: &str, cmd: &[&str]) -> std::process::Output {
    std::process::Command::new(&f.config.oci_runtime)
        .arg("--root")
        .arg(f.config.state_dir.join("runc"))
        .arg("exec")
        .arg(id)
        .args(cmd)
        .output()
        .unwrap_or_else(|e| panic!("runc exec: {e}"))
}

/// `runc exec ID cmd…` run by hand on the fixture's runc root: the reference.
fn runc_exec(f: &Fixture, id: &str, cmd: &[&str]) -> String {
    let out = runc_exec_output(f, id, cmd);
    assert!(
        out.status.success(),
        "runc exec {cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cmd` through the runtime; its stdout (the exit code must be 0).
async fn fast_exec(rt: &Runtime, id: &str, cmd: &[&str]) -> String {
    let out = rt
        .exec_sync(id, strings(cmd), None)
        .await
        .unwrap_or_else(|e| panic!("exec {cmd:?}: {e}"));
    assert_eq!(
        out.exit_code,
        0,
        "exec {cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lines of `/proc/self/status` that describe credentials and confinement.
fn credentials(status: &str) -> Vec<String> {
    const KEYS: [&str; 11] = [
        "Uid:",
        "Gid:",
        "Groups:",
        "CapInh:",
        "CapPrm:",
        "CapEff:",
        "CapBnd:",
        "CapAmb:",
        "NoNewPrivs:",
        "Seccomp:",
        "Umask:",
    ];
    let lines: Vec<String> = status
        .lines()
        .filter(|l| KEYS.iter().any(|k| l.starts_with(k)))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(lines.len(), KEYS.len(), "{status}");
    lines
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// Pids of the direct children of this (test) process whose command line is `args`.
fn our_children_running(args: &str) -> Vec<u32> {
    let tasks = std::fs::read_dir("/proc/self/task").unwrap_or_else(|e| panic!("{e}"));
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim() == args)
                .unwrap_or(false)
        })
        .collect()
}

#[tokio::test]
async fn fast_exec_enters_the_container_like_runc_exec() {
    let f = Fixture::new().await;
    f.import_demo();
    let sandbox = f.sandbox("same").await;
    let id = f
        .container_with(&sandbox, "main", &["sleep", "1000"], |s| {
            s.working_dir = Some("/var/www".into());
            s.env.push(("DUP".into(), "first".into()));
            s.env.push(("DUP".into(), "second".into()));
        })
        .await;
    let rt = f.rt().clone();
    let init = rt
        .container(&id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .pid;

    // The process is our own child (no runc in between), born in the container.
    let exec = tokio::spawn({
        let rt = rt.clone();
        let id = id.clone();
        async move {
            rt.exec(
                &id,
                strings(&["sleep", "4321"]),
                false,
                ProcessIo::default(),
            )
            .await
        }
    });
    let child = eventually("the exec'd sleep as our child", || {
        our_children_running("sleep 4321").first().copied()
    })
    .await;
    let ns = |pid: u32, name: &str| {
        std::fs::read_link(format!("/proc/{pid}/ns/{name}"))
            .unwrap_or_else(|e| panic!("ns {name} of {pid}: {e}"))
    };
    for name in ["mnt", "pid", "net", "ipc", "uts", "cgroup", "user"] {
        assert_eq!(ns(child, name), ns(init, name), "{name} namespace");
    }
    let cgroups = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(cgroups(child), cgroups(init));
    assert!(cgroups(init).contains(&id), "{}", cgroups(init));
    exec.abort();
    let _ = exec.await;
    eventually("the aborted exec's process gone", || {
        (!alive(child)).then_some(())
    })
    .await;

    // Seen from inside: the same as `runc exec` gives.
    for cmd in [
        &["cat", "/proc/self/status"][..],
        &["cat", "/proc/self/limits"],
        &["env"],
        &["pwd"],
        &["hostname"],
        &["cat", "/proc/self/cgroup"],
        &[
            "sh",
            "-c",
            "for n in mnt pid net ipc uts cgroup user; do readlink /proc/self/ns/$n; done",
        ],
        &["sh", "-c", "ls / /proc/1/root/ | md5sum"],
    ] {
        let fast = fast_exec(&rt, &id, cmd).await;
        let reference = runc_exec(&f, &id, cmd);
        match cmd[0] {
            "cat" if cmd[1] == "/proc/self/status" => {
                assert_eq!(credentials(&fast), credentials(&reference), "{cmd:?}");
            }
            "env" => assert_eq!(sorted_lines(&fast), sorted_lines(&reference), "{cmd:?}"),
            _ => assert_eq!(fast, reference, "{cmd:?}"),
        }
    }
    let env = fast_exec(&rt, &id, &["env"]).await;
    assert!(
        env.contains("DUP=second\n") && !env.contains("DUP=first"),
        "{env}"
    );
    assert!(env.contains("HOME=/root\n"), "{env}");
    assert_eq!(fast_exec(&rt, &id, &["pwd"]).await, "/var/www\n");
    // Root with the container's 14 capabilities, not the runtime's full set.
    let status = fast_exec(&rt, &id, &["cat", "/proc/self/status"]).await;
    assert!(status.contains("CapEff:\t00000000a80425fb"), "{status}");
    // The process sees itself in the container's pid namespace, parented outside it.
    let stat = fast_exec(&rt, &id, &["cat", "/proc/self/stat"]).await;
    let ppid = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().nth(1));
    assert_eq!(ppid, Some("0"), "{stat}");
}

#[tokio::test]
async fn fast_exec_gives_a_non_root_user_what_runc_exec_gives() {
    let f = Fixture::new().await;
    f.import_demo();
    let sandbox = f.sandbox("user").await;
    let id = f
        .container_with(&sandbox, "main", &["sleep", "1000"], |s| {
            s.working_dir = Some("/tmp".into());
            s.security.run_as_user = Some(1234);
            s.security.run_as_group = Some(2345);
            s.security.supplemental_groups = vec![3456, 4567];
            s.security.no_new_privs = true;
            s.security.add_capabilities = vec!["NET_ADMIN".into()];
            s.security.drop_capabilities = vec!["CHOWN".into()];
            s.security.readonly_rootfs = true;
        })
        .await;
    let rt = f.rt().clone();
    for cmd in [
        &["cat", "/proc/self/status"][..],
        &["id"],
        &["env"],
        &["pwd"],
        // Pipes are handed to the user (so it may reopen /proc/self/fd/N).
        &["stat", "-L", "-c", "%u", "/proc/self/fd/1"],
        &["sh", "-c", "touch /x 2>&1; cat /proc/self/limits"],
    ] {
        let fast = fast_exec(&rt, &id, cmd).await;
        let reference = runc_exec(&f, &id, cmd);
        match cmd[0] {
            "cat" => assert_eq!(credentials(&fast), credentials(&reference), "{cmd:?}"),
            "env" => assert_eq!(sorted_lines(&fast), sorted_lines(&reference), "{cmd:?}"),
            _ => assert_eq!(fast, reference, "{cmd:?}"),
        }
    }
    let status = fast_exec(&rt, &id, &["cat", "/proc/self/status"]).await;
    let creds = credentials(&status);
    assert!(
        creds.contains(&"Uid: 1234 1234 1234 1234".to_string()),
        "{creds:?}"
    );
    assert!(
        creds.contains(&"Gid: 2345 2345 2345 2345".to_string()),
        "{creds:?}"
    );
    assert!(creds.contains(&"NoNewPrivs: 1".to_string()), "{creds:?}");
    assert_eq!(fast_exec(&rt, &id, &["pwd"]).await, "/tmp\n");
    assert_eq!(
        fast_exec(&rt, &id, &["stat", "-L", "-c", "%u", "/proc/self/fd/1"]).await,
        "1234\n"
    );
}

#[tokio::test]
async fn exit_codes_stdin_errors_and_cleanup() {
    let f = Fixture::new().await;
    f.import_demo();
    let sandbox = f.sandbox("codes").await;
    let id = f.container(&sandbox, "main", &["sleep", "1000"]).await;
    let rt = f.rt().clone();

    for (cmd, code) in [
        (&["true"][..], 0),
        (&["false"], 1),
        (&["sh", "-c", "exit 42"], 42),
        (&["sh", "-c", "kill -9 $$"], 137),
    ] {
        let out = rt
            .exec_sync(&id, strings(cmd), None)
            .await
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert_eq!(out.exit_code, code, "{cmd:?}");
    }
    let out = rt
        .exec_sync(&id, strings(&["sh", "-c", "echo out; echo err >&2"]), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (out.stdout, out.stderr),
        (b"out\n".to_vec(), b"err\n".to_vec())
    );

    // stdin: read until EOF; no stdin at all reads EOF at once.
    let (mut client_in, exec_in) = tokio::io::duplex(1 << 16);
    let (exec_out, mut client_out) = tokio::io::duplex(1 << 16);
    let io = ProcessIo {
        stdin: Some(Box::new(exec_in)),
        stdout: Some(Box::new(exec_out)),
        ..ProcessIo::default()
    };
    let exec = tokio::spawn({
        let rt = rt.clone();
        let id = id.clone();
        async move { rt.exec(&id, strings(&["wc", "-c"]), false, io).await }
    });
    client_in
        .write_all(&[b'x'; 100_000])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(client_in);
    let code = exec
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("exec: {e}"));
    let mut counted = String::new();
    client_out
        .read_to_string(&mut counted)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((code, counted.trim()), (0, "100000"));
    assert_eq!(fast_exec(&rt, &id, &["wc", "-c"]).await.trim(), "0");

    // Errors name the container and the cause, as runc's do.
    let err = |cmd: &'static [&'static str]| {
        let rt = rt.clone();
        let id = id.clone();
        async move {
            rt.exec_sync(&id, strings(cmd), None)
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        }
    };
    let missing = err(&["no-such-command"]).await;
    assert!(
        missing.starts_with(&format!("exec in container {id} failed: "))
            && missing.contains("\"no-such-command\": executable file not found in $PATH"),
        "{missing}"
    );
    let missing = err(&["/no/such/file"]).await;
    assert!(
        missing.contains("/no/such/file") && missing.contains("No such file or directory"),
        "{missing}"
    );
    let not_executable = err(&["/etc/passwd"]).await;
    assert!(
        not_executable.contains("Permission denied"),
        "{not_executable}"
    );

    // A timed-out exec_sync is killed (-1), background children and all output given up.
    let out = rt
        .exec_sync(
            &id,
            strings(&["sh", "-c", "sleep 997 & exec sleep 998"]),
            Some(Duration::from_millis(300)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.exit_code, -1);
    assert!(our_children_running("sleep 998").is_empty());

    // A caller that goes away takes its process with it (no process left, no zombie).
    let gone = tokio::time::timeout(
        Duration::from_millis(500),
        rt.exec(&id, strings(&["sleep", "999"]), false, ProcessIo::default()),
    )
    .await;
    assert!(gone.is_err());
    let mut ps = String::from("sleep 999");
    for _ in 0..100 {
        ps = fast_exec(&rt, &id, &["ps", "-o", "args"]).await;
        if !ps.contains("sleep 999") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !ps.contains("sleep 999") && ps.contains("sleep 1000"),
        "{ps}"
    );
    eventually("no zombie child", || {
        our_children_running("").is_empty().then_some(())
    })
    .await;

    // Into a stopped container: the clear error, whatever the path.
    rt.stop_container(&id, Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = rt.exec_sync(&id, strings(&["true"]), None).await.err();
    assert!(
        matches!(&err, Some(Error::FailedPrecondition(m)) if m == &format!("container {id} is not running")),
        "{err:?}"
    );
}

#[tokio::test]
async fn terminal_exec_sizes_and_resizes() {
    let f = Fixture::new().await;
    f.import_demo();
    let sandbox = f.sandbox("tty").await;
    let id = f.container(&sandbox, "main", &["sleep", "1000"]).await;
    let rt = f.rt().clone();

    let (mut client_in, exec_in) = tokio::io::duplex(1 << 16);
    let (exec_out, mut client_out) = tokio::io::duplex(1 << 20);
    let (resize_tx, resize_rx) = tokio::sync::mpsc::channel(4);
    let io = ProcessIo {
        stdin: Some(Box::new(exec_in)),
        stdout: Some(Box::new(exec_out)),
        stderr: None,
        resize: Some(resize_rx),
    };
    // The first size is there before the process starts.
    resize_tx
        .send(WindowSize {
            cols: 120,
            rows: 30,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Session leader ($6 = $$) with the terminal's foreground group its own ($8 = $5).
    let script = "tty; stty size; echo $TERM; set -- $(cat /proc/$$/stat); \
                  [ $6 = $1 ] && [ $8 = $5 ] && echo leader; read x; stty size; echo err >&2; exit 5";
    let exec = tokio::spawn({
        let rt = rt.clone();
        let id = id.clone();
        async move { rt.exec(&id, strings(&["sh", "-c", script]), true, io).await }
    });
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("leader") {
        let n = client_out
            .read(&mut buf)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(n > 0, "output ended: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    // Started by the runtime itself (no `runc exec` in between).
    assert_eq!(our_children_running(&format!("sh -c {script}")).len(), 1);
    resize_tx
        .send(WindowSize {
            cols: 100,
            rows: 40,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    client_in
        .write_all(b"go\r")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let code = exec
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("tty exec: {e}"));
    client_out
        .read_to_end(&mut seen)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = String::from_utf8_lossy(&seen).replace("\r\n", "\n");
    assert_eq!(code, 5, "{seen}");
    // A terminal of the container's own devpts, the process its session's leader.
    let lines: Vec<&str> = seen.lines().collect();
    assert!(lines[0].starts_with("/dev/pts/"), "{seen:?}");
    let pts = lines[0].trim_start_matches("/dev/pts/");
    assert!(pts.parse::<u32>().is_ok(), "{seen:?}");
    assert_eq!(&lines[1..4], ["30 120", "xterm", "leader"], "{seen:?}");
    // The resize reached it; stderr goes to the terminal.
    assert!(seen.ends_with("40 100\nerr\n"), "{seen:?}");
}

#[tokio::test]
async fn exec_sync_output_is_capped_at_16_mib() {
    let f = Fixture::new().await;
    f.import_demo();
    let sandbox = f.sandbox("cap").await;
    let id = f.container(&sandbox, "main", &["sleep", "1000"]).await;
    let out = f
        .rt()
        .exec_sync(
            &id,
            strings(&[
                "sh",
                "-c",
                "head -c 20000000 /dev/zero; head -c 17000000 /dev/zero >&2; exit 3",
            ]),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.exit_code, 3);
    assert_eq!(out.stdout.len(), 16 * 1024 * 1024);
    assert_eq!(out.stderr.len(), 16 * 1024 * 1024);
}

/// The `Seccomp:` and `Seccomp_filters:` lines of `/proc/self/status`.
fn seccomp_lines(status: &str) -> Vec<String> {
    status
        .lines()
        .filter(|l| l.starts_with("Seccomp:") || l.starts_with("Seccomp_filters:"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// Runs `sleep SECONDS` in `id` (a number no other test uses) and tells whether the fast path
/// started it: then it is a direct child of this process (through runc it is not); then ends it.
async fn fast_path_taken(rt: &Runtime, id: &str, seconds: &str) -> bool {
    let cmdline = format!("sleep {seconds}");
    let exec = tokio::spawn({
        let rt = rt.clone();
        let id = id.to_string();
        let seconds = seconds.to_string();
        async move {
            rt.exec(
                &id,
                strings(&["sleep", &seconds]),
                false,
                ProcessIo::default(),
            )
            .await
        }
    });
    let pid = eventually("the exec'd sleep", || {
        processes_running(&cmdline).first().copied()
    })
    .await;
    let ours = our_children_running(&cmdline).contains(&pid);
    exec.abort();
    let _ = exec.await;
    eventually("the aborted exec's process gone", || {
        (!alive(pid)).then_some(())
    })
    .await;
    ours
}

/// Both paths refuse `cmd` with "Operation not permitted" (EPERM from the filter).
async fn assert_refused_by_both(f: &Fixture, id: &str, cmd: &[&str]) {
    let fast = f
        .rt()
        .exec_sync(id, strings(cmd), None)
        .await
        .unwrap_or_else(|e| panic!("exec {cmd:?}: {e}"));
    let fast_err = String::from_utf8_lossy(&fast.stderr);
    assert!(
        fast.exit_code != 0 && fast_err.contains("Operation not permitted"),
        "fast {cmd:?}: {} {fast_err}",
        fast.exit_code
    );
    let runc = runc_exec_output(f, id, cmd);
    let runc_err = String::from_utf8_lossy(&runc.stderr);
    assert!(
        !runc.status.success() && runc_err.contains("Operation not permitted"),
        "runc {cmd:?}: {runc_err}"
    );
}

#[tokio::test]
async fn fast_exec_applies_the_runtime_default_seccomp_filter() {
    let f = Fixture::new().await;
    f.import_demo();
    let sandbox = f.sandbox("seccomp").await;
    let rt = f.rt().clone();
    // Without no_new_privs the filter is loaded before the capabilities drop; with it, last.
    for no_new_privs in [false, true] {
        let name = format!("main-{no_new_privs}");
        let id = f
            .container_with(&sandbox, &name, &["sleep", "1000"], |s| {
                s.security.seccomp = SeccompProfile::RuntimeDefault;
                s.security.no_new_privs = no_new_privs;
            })
            .await;
        assert!(fast_path_taken(&rt, &id, "4322").await);

        let status = fast_exec(&rt, &id, &["cat", "/proc/self/status"]).await;
        let reference = runc_exec(&f, &id, &["cat", "/proc/self/status"]);
        // Filter mode (2), one filter, as runc loads one.
        assert_eq!(
            seccomp_lines(&status),
            ["Seccomp: 2", "Seccomp_filters: 1"],
            "{status}"
        );
        assert_eq!(seccomp_lines(&status), seccomp_lines(&reference));
        assert_eq!(credentials(&status), credentials(&reference));

        assert_refused_by_both(&f, &id, &["unshare", "-U", "true"]).await;
        assert_eq!(
            fast_exec(&rt, &id, &["echo", "still", "fine"]).await,
            "still fine\n"
        );
        // clone without CLONE_NEWUSER passes.
        let forked = fast_exec(&rt, &id, &["sh", "-c", "echo $(echo forked) | cat"]).await;
        assert_eq!(forked, "forked\n");
    }
}

#[tokio::test]
async fn fast_exec_applies_a_localhost_allow_list_profile() {
    let f = Fixture::new().await;
    f.import_demo();
    // Every x86-64 system call of this machine's headers but mkdir and mkdirat; the rest fail
    // with EPERM (and runc's stub makes calls numbered above them fail with ENOSYS).
    let header = std::fs::read_to_string("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
        .unwrap_or_else(|e| panic!("unistd_64.h: {e}"));
    let names: Vec<&str> = header
        .lines()
        .filter_map(|l| l.strip_prefix("#define __NR_"))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "mkdir" && *n != "mkdirat")
        .collect();
    assert!(names.len() > 300, "{header}");
    let profile = serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{ "names": names, "action": "SCMP_ACT_ALLOW" }],
    });
    let path = f.tmp.path().join("allow-list.json");
    std::fs::write(&path, profile.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let sandbox = f.sandbox("allowlist").await;
    let id = f
        .container_with(&sandbox, "main", &["sleep", "1000"], |s| {
            s.security.seccomp = SeccompProfile::Localhost(path.clone());
        })
        .await;
    let rt = f.rt().clone();
    assert!(fast_path_taken(&rt, &id, "4323").await);

    let status = fast_exec(&rt, &id, &["cat", "/proc/self/status"]).await;
    let reference = runc_exec(&f, &id, &["cat", "/proc/self/status"]);
    assert_eq!(seccomp_lines(&status), seccomp_lines(&reference));
    assert_refused_by_both(&f, &id, &["mkdir", "/tmp/new"]).await;
    assert_eq!(fast_exec(&rt, &id, &["ls", "/tmp"]).await, "");
    assert_eq!(fast_exec(&rt, &id, &["echo", "allowed"]).await, "allowed\n");
}

#[tokio::test]
async fn a_profile_the_fast_path_does_not_reproduce_goes_through_runc() {
    let f = Fixture::new().await;
    f.import_demo();
    // Another CPU family's architecture: runc takes it, the compiler refuses it.
    let profile = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO" }],
    });
    let path = f.tmp.path().join("arm.json");
    std::fs::write(&path, profile.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let sandbox = f.sandbox("fallback").await;
    let id = f
        .container_with(&sandbox, "main", &["sleep", "1000"], |s| {
            s.security.seccomp = SeccompProfile::Localhost(path.clone());
        })
        .await;
    let rt = f.rt().clone();
    assert!(!fast_path_taken(&rt, &id, "4324").await);
    assert_refused_by_both(&f, &id, &["mkdir", "/tmp/new"]).await;
    assert_eq!(
        fast_exec(&rt, &id, &["echo", "via runc"]).await,
        "via runc\n"
    );
}
