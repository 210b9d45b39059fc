//! The CRI Linux security context and resources over real gRPC (root, runc): the user and
//! groups `id` shows, a read-only rootfs, dropped capabilities in `/proc/1/status`, limits in
//! the container's cgroup files and `UpdateContainerResources`, and the errors for bad values.
mod common;

use std::path::PathBuf;

use common::{Clients, Daemon, container_config, sandbox_config};
use k8s_cri::v1 as cri;

const SLEEPER: &[&str] = &["sleep", "1000"];

/// Runs a sandbox named `pod`; returns its id.
async fn sandbox(c: &mut Clients, daemon: &Daemon, pod: &str) -> String {
    c.runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox_config(pod, &daemon.dir.path().join("logs"))),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id
}

/// Creates a sleeping container `name` with `linux`, without starting it.
async fn create(
    c: &mut Clients,
    sandbox: &str,
    name: &str,
    linux: cri::LinuxContainerConfig,
) -> Result<String, tonic::Status> {
    let config = cri::ContainerConfig {
        linux: Some(linux),
        ..container_config(name, SLEEPER)
    };
    c.runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.to_owned(),
            config: Some(config),
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().container_id)
}

/// Creates and starts a sleeping container `name` with `linux`.
async fn run(
    c: &mut Clients,
    sandbox: &str,
    name: &str,
    linux: cri::LinuxContainerConfig,
) -> String {
    let id = create(c, sandbox, name, linux).await.unwrap();
    c.runtime
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    id
}

/// Runs `cmd` in the container: (exit code, stdout, stderr).
async fn exec(c: &mut Clients, id: &str, cmd: &[&str]) -> (i32, String, String) {
    let out = c
        .runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.to_owned(),
            cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    (
        out.exit_code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn security(sc: cri::LinuxContainerSecurityContext) -> cri::LinuxContainerConfig {
    cri::LinuxContainerConfig {
        security_context: Some(sc),
        resources: None,
    }
}

/// The effective capability mask of the container's init process.
async fn cap_eff(c: &mut Clients, id: &str) -> u64 {
    let (code, status, _) = exec(c, id, &["cat", "/proc/1/status"]).await;
    assert_eq!(code, 0);
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap_or_else(|| panic!("no CapEff in {status}"))
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

const CAP_CHOWN: u64 = 1 << 0;
const CAP_KILL: u64 = 1 << 5;
const CAP_NET_RAW: u64 = 1 << 13;
const CAP_SYS_ADMIN: u64 = 1 << 21;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_context_user_groups_rootfs_and_capabilities() {
    let daemon = Daemon::start().await;
    let mut c = daemon.clients.clone();
    let pod = sandbox(&mut c, &daemon, "secure").await;

    // A user and groups that the image does not name: numeric, as `id` prints them.
    let user = run(
        &mut c,
        &pod,
        "user",
        security(cri::LinuxContainerSecurityContext {
            run_as_user: Some(cri::Int64Value { value: 1000 }),
            run_as_group: Some(cri::Int64Value { value: 1000 }),
            supplemental_groups: vec![2000, 3000],
            no_new_privs: true,
            ..Default::default()
        }),
    )
    .await;
    let (code, id, _) = exec(&mut c, &user, &["id"]).await;
    assert_eq!(code, 0);
    assert_eq!(id.trim(), "uid=1000 gid=1000 groups=1000,2000,3000");
    let (_, status, _) = exec(&mut c, &user, &["cat", "/proc/1/status"]).await;
    assert!(
        status
            .lines()
            .any(|l| l.replace(' ', "") == "NoNewPrivs:\t1"),
        "{status}"
    );
    // A non-root user keeps no capability: nothing inheritable, ambient or effective.
    for set in ["CapInh", "CapAmb", "CapEff"] {
        assert!(
            status.contains(&format!("{set}:\t0000000000000000")),
            "{set} not empty: {status}"
        );
    }
    let info = c.container_status(&user).await;
    assert_eq!(info.state, cri::ContainerState::ContainerRunning as i32);

    // A user named in the image's /etc/passwd.
    let nobody = run(
        &mut c,
        &pod,
        "nobody",
        security(cri::LinuxContainerSecurityContext {
            run_as_username: "nobody".into(),
            ..Default::default()
        }),
    )
    .await;
    let (_, id, _) = exec(&mut c, &nobody, &["id", "-u"]).await;
    assert_eq!(id.trim(), "65534");

    // A read-only rootfs: writes fail, the pod's /dev/shm and /tmp-less paths stay as mounted.
    let readonly = run(
        &mut c,
        &pod,
        "readonly",
        security(cri::LinuxContainerSecurityContext {
            readonly_rootfs: true,
            ..Default::default()
        }),
    )
    .await;
    let (code, _, err) = exec(&mut c, &readonly, &["touch", "/written"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    let (code, _, _) = exec(&mut c, &readonly, &["touch", "/dev/shm/ok"]).await;
    assert_eq!(code, 0, "the pod's /dev/shm stays writable");

    // Dropped capabilities: gone from the effective set, and chown is refused.
    let dropped = run(
        &mut c,
        &pod,
        "dropped",
        security(cri::LinuxContainerSecurityContext {
            capabilities: Some(cri::Capability {
                drop_capabilities: vec!["CHOWN".into(), "CAP_NET_RAW".into()],
                add_capabilities: vec!["SYS_ADMIN".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
    )
    .await;
    let caps = cap_eff(&mut c, &dropped).await;
    assert_eq!(caps & (CAP_CHOWN | CAP_NET_RAW), 0, "{caps:#x}");
    assert_eq!(
        caps & (CAP_KILL | CAP_SYS_ADMIN),
        CAP_KILL | CAP_SYS_ADMIN,
        "{caps:#x}"
    );
    let (code, _, err) = exec(&mut c, &dropped, &["chown", "1000", "/tmp"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("Operation not permitted"), "{err}");

    // The default set keeps CHOWN and NET_RAW; privileged has every capability.
    let plain = run(&mut c, &pod, "plain", security(Default::default())).await;
    let caps = cap_eff(&mut c, &plain).await;
    assert_eq!(caps & (CAP_CHOWN | CAP_NET_RAW), CAP_CHOWN | CAP_NET_RAW);
    assert_eq!(caps & CAP_SYS_ADMIN, 0);
    let privileged = run(
        &mut c,
        &pod,
        "privileged",
        security(cri::LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        }),
    )
    .await;
    // Every capability the runtime has itself (this test runs as the same root).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
        .unwrap();
    assert_eq!(cap_eff(&mut c, &privileged).await, bounding);

    daemon.stop().await.unwrap();
}

/// The file `name` of the container's cgroup under `controller` (v1), or `v2_name` (v2).
fn cgroup_file(id: &str, controller: &str, name: &str, v2_name: &str) -> String {
    let root = PathBuf::from("/sys/fs/cgroup");
    let path = if root.join("cgroup.controllers").exists() {
        root.join("podway").join(id).join(v2_name)
    } else {
        root.join(controller).join("podway").join(id).join(name)
    };
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

fn limits(memory: i64, quota: i64) -> cri::LinuxContainerResources {
    cri::LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: quota,
        cpu_shares: 512,
        memory_limit_in_bytes: memory,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_reach_the_cgroup_and_update_changes_them() {
    let daemon = Daemon::start().await;
    let mut c = daemon.clients.clone();
    let pod = sandbox(&mut c, &daemon, "limited").await;
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let mib = 1024 * 1024;

    let id = run(
        &mut c,
        &pod,
        "limited",
        cri::LinuxContainerConfig {
            resources: Some(limits(64 * mib, 50_000)),
            security_context: None,
        },
    )
    .await;
    let memory = || cgroup_file(&id, "memory", "memory.limit_in_bytes", "memory.max");
    let quota = || {
        let v1 = cgroup_file(&id, "cpu", "cpu.cfs_quota_us", "cpu.max");
        // v2 writes "QUOTA PERIOD".
        v1.split_whitespace().next().unwrap_or_default().to_owned()
    };
    assert_eq!(memory(), (64 * mib).to_string());
    assert_eq!(quota(), "50000");
    if !v2 {
        assert_eq!(cgroup_file(&id, "cpu", "cpu.shares", ""), "512");
    }
    let status = |c: &mut Clients| {
        let mut c = c.clone();
        let id = id.clone();
        async move {
            c.container_status(&id)
                .await
                .resources
                .unwrap()
                .linux
                .unwrap()
        }
    };
    assert_eq!(status(&mut c).await.memory_limit_in_bytes, 64 * mib);

    // Update while it runs: the cgroup files and the status change; unset fields stay.
    c.runtime
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 128 * mib,
                cpu_quota: 20_000,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(memory(), (128 * mib).to_string());
    assert_eq!(quota(), "20000");
    let after = status(&mut c).await;
    assert_eq!(
        (
            after.memory_limit_in_bytes,
            after.cpu_quota,
            after.cpu_shares
        ),
        (128 * mib, 20_000, 512)
    );
    // The process inside sees its limit too.
    if !v2 {
        let (code, out, _) = exec(
            &mut c,
            &id,
            &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
        )
        .await;
        if code == 0 {
            assert_eq!(out.trim(), (128 * mib).to_string());
        }
    }

    // Update of a created container rewrites its spec: the limit holds once started.
    let created = create(&mut c, &pod, "later", cri::LinuxContainerConfig::default())
        .await
        .unwrap();
    c.runtime
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: created.clone(),
            linux: Some(limits(96 * mib, 30_000)),
            ..Default::default()
        })
        .await
        .unwrap();
    c.runtime
        .start_container(cri::StartContainerRequest {
            container_id: created.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        cgroup_file(&created, "memory", "memory.limit_in_bytes", "memory.max"),
        (96 * mib).to_string()
    );

    // Bad values and unknown containers.
    let err = c
        .runtime
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(limits(4096, 20_000)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("memory_limit_in_bytes 4096"),
        "{err:?}"
    );
    assert_eq!(
        memory(),
        (128 * mib).to_string(),
        "a refused update changes nothing"
    );
    let err = c
        .runtime
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: "0".repeat(64),
            linux: Some(limits(64 * mib, 20_000)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");

    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_security_values_are_invalid_arguments() {
    let daemon = Daemon::start().await;
    let mut c = daemon.clients.clone();
    let pod = sandbox(&mut c, &daemon, "refused").await;
    let cases = [
        (
            security(cri::LinuxContainerSecurityContext {
                capabilities: Some(cri::Capability {
                    add_capabilities: vec!["NET_FLY".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            "NET_FLY",
        ),
        (
            security(cri::LinuxContainerSecurityContext {
                run_as_username: "ghost".into(),
                ..Default::default()
            }),
            "ghost",
        ),
        (
            security(cri::LinuxContainerSecurityContext {
                run_as_user: Some(cri::Int64Value { value: -5 }),
                ..Default::default()
            }),
            "run_as_user -5",
        ),
        (
            security(cri::LinuxContainerSecurityContext {
                run_as_group: Some(cri::Int64Value { value: 5 }),
                ..Default::default()
            }),
            "run_as_group",
        ),
        (
            cri::LinuxContainerConfig {
                resources: Some(limits(64 * 1024 * 1024, 10)),
                security_context: None,
            },
            "cpu_quota 10",
        ),
    ];
    for (i, (linux, named)) in cases.into_iter().enumerate() {
        let err = create(&mut c, &pod, &format!("bad{i}"), linux)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(named), "{named}: {err:?}");
    }
    // Nothing was left behind: no container record, no rootfs mount.
    let left = c
        .runtime
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(left.is_empty(), "{left:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let data = daemon.dir.path().display().to_string();
    assert!(
        !mounts
            .lines()
            .any(|l| l.contains(&data) && l.contains("rootfs")),
        "a rootfs mount of a refused container is left"
    );

    daemon.stop().await.unwrap();
}

/// The `Seccomp:` mode of a process in the container (0 = none, 2 = filter).
async fn seccomp_mode(c: &mut Clients, id: &str, pid: &str) -> String {
    let (code, status, _) = exec(c, id, &["cat", &format!("/proc/{pid}/status")]).await;
    assert_eq!(code, 0);
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .unwrap_or_else(|| panic!("no Seccomp in {status}"))
        .trim()
        .to_owned()
}

fn seccomp(
    profile_type: cri::security_profile::ProfileType,
    localhost_ref: &str,
) -> cri::LinuxContainerConfig {
    security(cri::LinuxContainerSecurityContext {
        seccomp: Some(cri::SecurityProfile {
            profile_type: profile_type as i32,
            localhost_ref: localhost_ref.to_owned(),
        }),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seccomp_profiles_filter_the_container_and_its_execs() {
    use cri::security_profile::ProfileType;
    let daemon = Daemon::start().await;
    let mut c = daemon.clients.clone();
    let pod = sandbox(&mut c, &daemon, "seccomp").await;

    // Unconfined (and no profile at all): no filter; a new user namespace is allowed.
    let plain = run(&mut c, &pod, "plain", seccomp(ProfileType::Unconfined, "")).await;
    assert_eq!(seccomp_mode(&mut c, &plain, "1").await, "0");
    let (code, _, err) = exec(&mut c, &plain, &["unshare", "-U", "true"]).await;
    assert_eq!(code, 0, "{err}");

    // RuntimeDefault: the init and every exec are filtered; user namespaces and swapoff are
    // refused, ordinary work is not.
    let default = run(
        &mut c,
        &pod,
        "default",
        seccomp(ProfileType::RuntimeDefault, ""),
    )
    .await;
    assert_eq!(seccomp_mode(&mut c, &default, "1").await, "2");
    assert_eq!(seccomp_mode(&mut c, &default, "self").await, "2");
    let (code, _, err) = exec(&mut c, &default, &["unshare", "-U", "true"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("Operation not permitted"), "{err}");
    let (code, _, err) = exec(&mut c, &default, &["swapoff", "-a"]).await;
    assert_ne!(code, 0, "{err}");
    let (code, out, err) = exec(&mut c, &default, &["sh", "-c", "mkdir /tmp/d && echo ok"]).await;
    assert_eq!((code, out.trim()), (0, "ok"), "{err}");

    // Localhost: the profile file on the host decides (here: mkdir fails with EACCES).
    let profile = daemon.dir.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let local = run(
        &mut c,
        &pod,
        "local",
        seccomp(ProfileType::Localhost, profile.to_str().unwrap()),
    )
    .await;
    let (code, _, err) = exec(&mut c, &local, &["mkdir", "/tmp/d"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("Permission denied"), "{err}");

    // A profile that isn't there, or isn't absolute, is refused up front, naming it.
    let missing = daemon.dir.path().join("missing.json");
    let err = create(
        &mut c,
        &pod,
        "missing",
        seccomp(ProfileType::Localhost, missing.to_str().unwrap()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("missing.json"), "{}", err.message());
    let err = create(
        &mut c,
        &pod,
        "relative",
        seccomp(ProfileType::Localhost, "p.json"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_containers_see_the_host_devices() {
    let daemon = Daemon::start().await;
    let mut c = daemon.clients.clone();
    let pod = sandbox(&mut c, &daemon, "devices").await;
    // A host device outside the standard set every container gets.
    let host_device = ["/dev/kmsg", "/dev/loop-control", "/dev/mem", "/dev/fuse"]
        .into_iter()
        .find(|d| std::path::Path::new(d).exists())
        .expect("a host device to look for");
    let plain = run(&mut c, &pod, "plain", security(Default::default())).await;
    let (code, _, _) = exec(&mut c, &plain, &["test", "-c", host_device]).await;
    assert_ne!(code, 0, "an unprivileged container sees {host_device}");
    let privileged = run(
        &mut c,
        &pod,
        "privileged",
        cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                privileged: true,
                // A privileged container is never filtered, whatever it asks.
                seccomp: Some(cri::SecurityProfile::default()),
                ..Default::default()
            }),
            resources: None,
        },
    )
    .await;
    let (code, _, err) = exec(&mut c, &privileged, &["test", "-c", host_device]).await;
    assert_eq!(
        code, 0,
        "{host_device} missing in the privileged container: {err}"
    );
    assert_eq!(seccomp_mode(&mut c, &privileged, "1").await, "0");
    let (code, out, _) = exec(&mut c, &privileged, &["ls", "/dev/pts"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("ptmx"),
        "the container keeps its own devpts: {out}"
    );
    daemon.stop().await.unwrap();
}
