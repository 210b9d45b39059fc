//! Everything an exec needs, read and opened before the fork: the container's config.json
//! (process user, capabilities, rlimits, env, cwd, seccomp filter, compiled here), its init
//! process's namespaces and cgroups, and what the fast path does not reproduce (then the exec
//! goes through runc).
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;

use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Process, Spec};

use super::child::{CapSets, ChildSetup};
use crate::api::Inner;
use crate::util::process_alive;

/// Why an exec goes through `runc exec` instead (a sentence for the debug log).
pub(crate) type Fallback = String;

/// An exec ready to be spawned.
pub(crate) struct Plan {
    /// The init's pid namespace, joined by the spawning thread (None: it is ours).
    pub pid_ns: Option<OwnedFd>,
    /// argv.
    pub args: Vec<String>,
    /// The environment, `KEY=VALUE` split.
    pub env: Vec<(String, String)>,
    /// What the child applies to itself.
    pub setup: ChildSetup,
    /// Read end of the child's failure report pipe.
    pub report: OwnedFd,
    /// The container's root (`/proc/PID/root`) for opening its terminal.
    pub root: OwnedFd,
}

/// The namespaces joined, by their `/proc/PID/ns` name; the mount namespace last (after it,
/// paths are the container's).
const NAMESPACES: [(&str, libc::c_int); 6] = [
    ("net", libc::CLONE_NEWNET),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", libc::CLONE_NEWTIME),
    ("mnt", libc::CLONE_NEWNS),
];

/// Plans `cmd` in container `id`; `Err` says why the fast path does not apply.
pub(crate) fn plan(inner: &Inner, id: &str, cmd: &[String], tty: bool) -> Result<Plan, Fallback> {
    let record = inner.container_record(id).map_err(|e| e.to_string())?;
    let pid = record.pid;
    if !process_alive(pid, record.pid_start) {
        return Err(format!("the init process {pid} of container {id} is gone"));
    }
    let config = inner.container_dir(id).join("config.json");
    let spec = Spec::load(&config).map_err(|e| format!("reading {}: {e}", config.display()))?;
    unsupported(&spec)?;
    let seccomp = seccomp_filter(&spec)?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| format!("container {id} has no process in config.json"))?;
    let os = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| format!("{what}: {e}")
    };

    if ns_differs(pid, "user").map_err(os("comparing user namespaces"))? {
        return Err("the container has its own user namespace".into());
    }
    let pid_ns = if ns_differs(pid, "pid").map_err(os("comparing pid namespaces"))? {
        Some(open_ns(pid, "pid").map_err(os("opening the pid namespace"))?)
    } else {
        None
    };
    let mut namespaces = Vec::new();
    for (name, kind) in NAMESPACES {
        if !std::path::Path::new(&format!("/proc/self/ns/{name}")).exists() {
            continue; // this kernel has no such namespace
        }
        if ns_differs(pid, name).map_err(os("comparing namespaces"))? {
            namespaces.push((open_ns(pid, name).map_err(os("opening a namespace"))?, kind));
        }
    }
    let cgroups = super::cgroup::files_to_join(pid)
        .map_err(os("reading cgroups"))?
        .iter()
        .map(|path| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map(OwnedFd::from)
                .map_err(|e| format!("opening {}: {e}", path.display()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let root = std::fs::File::open(format!("/proc/{pid}/root"))
        .map(OwnedFd::from)
        .map_err(os("opening the container's root"))?;
    // Everything above was opened from the process `pid`: make sure it is still the init
    // (not a new process that reused the pid).
    if !process_alive(pid, record.pid_start) {
        return Err(format!("the init process {pid} of container {id} is gone"));
    }

    let user = process.user();
    let last_cap = super::caps::last_cap();
    let caps = process.capabilities().as_ref();
    let mask = |f: fn(
        &oci_spec::runtime::LinuxCapabilities,
    ) -> &Option<oci_spec::runtime::Capabilities>| {
        super::caps::mask(caps.and_then(|c| f(c).as_ref()), last_cap)
    };
    let caps = CapSets {
        // No capabilities section at all: runc keeps the bounding set as it is.
        bounding: if caps.is_some() {
            mask(|c| c.bounding())
        } else {
            u64::MAX
        },
        effective: mask(|c| c.effective()),
        permitted: mask(|c| c.permitted()),
        inheritable: mask(|c| c.inheritable()),
        ambient: mask(|c| c.ambient()),
        last_cap,
    };
    let env = environment(process, tty, &root);
    let cstring =
        |what: &str, s: &str| CString::new(s).map_err(|_| format!("{what} {s:?} holds a NUL byte"));
    let cwd = process.cwd().to_string_lossy().into_owned();
    let (report, report_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let setup = ChildSetup {
        terminal: tty,
        cgroups,
        namespaces,
        keyring: cstring("session keyring name", &format!("_ses.{id}"))?,
        cwd: cstring("working directory", &cwd)?,
        rlimits: process
            .rlimits()
            .iter()
            .flatten()
            .map(|r| {
                (
                    rlimit_resource(r.typ()),
                    libc::rlimit {
                        rlim_cur: r.soft(),
                        rlim_max: r.hard(),
                    },
                )
            })
            .collect(),
        umask: user.umask().map(|m| m as libc::mode_t),
        uid: user.uid(),
        gid: user.gid(),
        groups: user.additional_gids().clone().unwrap_or_default(),
        caps,
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
        seccomp,
        report: report_write,
    };
    Ok(Plan {
        pid_ns,
        args: cmd.to_vec(),
        env,
        setup,
        report,
        root,
    })
}

/// What the fast path does not reproduce: runc applies these (or refuses them) itself.
fn unsupported(spec: &Spec) -> Result<(), Fallback> {
    let mut found = Vec::new();
    if let Some(p) = spec.process() {
        let set = |o: &Option<String>| o.as_ref().is_some_and(|s| !s.is_empty());
        if set(p.apparmor_profile()) {
            found.push("an AppArmor profile");
        }
        if set(p.selinux_label()) {
            found.push("an SELinux label");
        }
        if p.io_priority().is_some() {
            found.push("an I/O priority");
        }
        if p.scheduler().is_some() {
            found.push("a scheduler policy");
        }
        if p.exec_cpu_affinity().is_some() {
            found.push("an exec CPU affinity");
        }
    }
    if let Some(linux) = spec.linux() {
        if linux.intel_rdt().is_some() {
            found.push("an Intel RDT group");
        }
        if linux.personality().is_some() {
            found.push("a personality");
        }
        let user_ns = linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == LinuxNamespaceType::User);
        if user_ns || linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty()) {
            found.push("a user namespace");
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!("the container's spec has {}", found.join(", ")))
    }
}

/// The container's seccomp filter, compiled (per exec: about 35 µs for `RuntimeDefault`);
/// `Err` when it has what the compiler does not reproduce or flags this kernel does not take.
fn seccomp_filter(spec: &Spec) -> Result<Option<crate::seccomp_bpf::Filter>, Fallback> {
    let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    let filter = crate::seccomp_bpf::compile(profile)
        .map_err(|e| format!("the container's seccomp filter: {e}"))?;
    if !crate::seccomp_bpf::kernel_takes_flags(filter.flags) {
        return Err(format!(
            "the kernel does not take the seccomp filter flags {:#x}",
            filter.flags
        ));
    }
    Ok(Some(filter))
}

fn ns_id(path: &str) -> std::io::Result<(u64, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// Whether the namespace `name` of `pid` is another than the caller's.
fn ns_differs(pid: u32, name: &str) -> std::io::Result<bool> {
    Ok(ns_id(&format!("/proc/{pid}/ns/{name}"))? != ns_id(&format!("/proc/self/ns/{name}"))?)
}

fn open_ns(pid: u32, name: &str) -> std::io::Result<OwnedFd> {
    std::fs::File::open(format!("/proc/{pid}/ns/{name}")).map(OwnedFd::from)
}

/// The environment as runc's exec gives it: the spec's (a later duplicate replaces an earlier
/// one in place), `TERM=xterm` on a terminal when unset, and `HOME` from the container's
/// `/etc/passwd` entry of the process user when unset (`/` without one).
fn environment(process: &Process, tty: bool, root: &OwnedFd) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match env.iter_mut().find(|(key, _)| key == k) {
        Some(slot) => slot.1 = v.to_string(),
        None => env.push((k.to_string(), v.to_string())),
    };
    for kv in process.env().iter().flatten() {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        set(k, v);
    }
    let has = |env: &[(String, String)], k: &str| env.iter().any(|(key, _)| key == k);
    if tty && !has(&env, "TERM") {
        env.push(("TERM".into(), "xterm".into()));
    }
    if !has(&env, "HOME") {
        let home = home_of(root, process.user().uid()).unwrap_or_else(|| "/".into());
        env.push(("HOME".into(), home));
    }
    env
}

/// The home folder of `uid` in the container's `/etc/passwd`.
fn home_of(root: &OwnedFd, uid: u32) -> Option<String> {
    use std::io::Read;
    let fd =
        super::pty::open_in_root(root, c"etc/passwd", libc::O_RDONLY | libc::O_NONBLOCK).ok()?;
    let mut file = std::fs::File::from(fd);
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.by_ref().take(4 << 20).read_to_string(&mut text).ok()?;
    let uid = uid.to_string();
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.get(2) == Some(&uid.as_str()))
        .and_then(|f| f.get(5).map(|h| h.to_string()))
}

fn rlimit_resource(typ: PosixRlimitType) -> libc::c_int {
    use PosixRlimitType::*;
    (match typ {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }) as libc::c_int
}
