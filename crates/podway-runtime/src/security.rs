//! A container process's user and privileges from its [`SecuritySpec`] and the image: the user
//! and groups (names resolved in the image's `/etc/passwd` and `/etc/group`), the capability
//! sets, and the masked and read-only paths. containerd's CRI rules are followed throughout.
use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;

use oci_spec::runtime::{
    Arch, Capability, LinuxDevice, LinuxDeviceBuilder, LinuxDeviceType, LinuxSeccomp,
    LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscallBuilder,
};

use crate::{Error, Result, SeccompProfile, SecuritySpec};

/// Capabilities every unprivileged container gets (containerd's default set).
const DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability `oci-spec` knows, by number (`CAP_CHOWN` = 0 … `CAP_CHECKPOINT_RESTORE` = 40).
const ALL_CAPS: [Capability; 41] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// The capabilities "all" stands for: those in the runtime's own bounding set (as containerd,
/// which gives a privileged container the capabilities it has itself; asking runc for one
/// outside that set fails the start).
fn all_capabilities() -> HashSet<Capability> {
    static ALL: std::sync::OnceLock<HashSet<Capability>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let bounding = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("CapBnd:"))
                    .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            })
            .unwrap_or(u64::MAX);
        ALL_CAPS
            .iter()
            .enumerate()
            .filter(|(bit, _)| bounding & (1 << bit) != 0)
            .map(|(_, cap)| *cap)
            .collect()
    })
    .clone()
}

/// The user a container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcessUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Every group of the process: the primary one, those of `/etc/group` naming the user, the
    /// requested supplemental ones (no repeats).
    pub additional_gids: Vec<u32>,
}

/// The process's user: `run_as_user` / `run_as_username` (with `run_as_group`) when set, else
/// the image's `user[:group]`; the groups as [`ProcessUser::additional_gids`] says.
pub(crate) fn process_user(
    rootfs: &Path,
    image_user: &str,
    security: &SecuritySpec,
) -> Result<ProcessUser> {
    let passwd = read_etc(rootfs, "passwd");
    let (uid, primary, name) = match (&security.run_as_user, &security.run_as_username) {
        (Some(uid), _) => {
            let entry = find_entry(&passwd, |f| field_u32(f, 2) == Some(*uid));
            let gid = entry.as_ref().and_then(|f| field_u32(f, 3)).unwrap_or(0);
            let name = entry.and_then(|f| f.first().map(|s| s.to_string()));
            (*uid, gid, name)
        }
        (None, Some(name)) if !name.is_empty() => {
            let (uid, gid) = user_by_name(&passwd, name)?;
            (uid, gid, Some(name.clone()))
        }
        _ => {
            if security.run_as_group.is_some() {
                // As containerd: a group alone does not say which user.
                return Err(Error::InvalidArgument(
                    "run_as_group is set without run_as_user or run_as_username".into(),
                ));
            }
            let (uid, gid) = resolve_user(rootfs, image_user)?;
            let name = find_entry(&passwd, |f| field_u32(f, 2) == Some(uid))
                .and_then(|f| f.first().map(|s| s.to_string()));
            (uid, gid, name)
        }
    };
    let gid = security.run_as_group.unwrap_or(primary);
    let mut additional_gids = vec![gid];
    if let Some(name) = name {
        let group = read_etc(rootfs, "group");
        for line in group.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            let member = fields
                .get(3)
                .is_some_and(|m| m.split(',').any(|m| m.trim() == name));
            if let (true, Some(g)) = (member, field_u32(&fields, 2)) {
                additional_gids.push(g);
            }
        }
    }
    additional_gids.extend(&security.supplemental_groups);
    let mut seen = HashSet::new();
    additional_gids.retain(|g| seen.insert(*g));
    Ok(ProcessUser {
        uid,
        gid,
        additional_gids,
    })
}

/// Resolves `user[:group]` (names or numbers) against the rootfs's `/etc/passwd` and `/etc/group`.
pub(crate) fn resolve_user(rootfs: &Path, user: &str) -> Result<(u32, u32)> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read_etc(rootfs, "passwd");
    let (uid, primary_gid) = match u.parse::<u32>() {
        Ok(uid) => {
            let gid = find_entry(&passwd, |f| f.get(2) == Some(&u)).and_then(|f| field_u32(&f, 3));
            (uid, gid.unwrap_or(0))
        }
        Err(_) => user_by_name(&passwd, u)?,
    };
    let gid = match g {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => find_entry(&read_etc(rootfs, "group"), |f| f.first() == Some(&g))
                .and_then(|f| field_u32(&f, 2))
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "group {g:?} not found in the image's /etc/group"
                    ))
                })?,
        },
    };
    Ok((uid, gid))
}

/// The uid and primary gid of user `name` in `passwd`.
fn user_by_name(passwd: &str, name: &str) -> Result<(u32, u32)> {
    let fields = find_entry(passwd, |f| f.first() == Some(&name)).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "user {name:?} not found in the image's /etc/passwd"
        ))
    })?;
    let uid = field_u32(&fields, 2)
        .ok_or_else(|| Error::InvalidArgument(format!("bad /etc/passwd entry for {name:?}")))?;
    Ok((uid, field_u32(&fields, 3).unwrap_or(0)))
}

/// `/etc/NAME` of the rootfs (empty when the image has none).
fn read_etc(rootfs: &Path, name: &str) -> String {
    std::fs::read_to_string(rootfs.join("etc").join(name)).unwrap_or_default()
}

fn field_u32(fields: &[&str], i: usize) -> Option<u32> {
    fields.get(i).and_then(|s| s.parse().ok())
}

fn find_entry<'a>(file: &'a str, matches: impl Fn(&Vec<&'a str>) -> bool) -> Option<Vec<&'a str>> {
    file.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| matches(f))
}

/// The capability set of the process: every one when privileged, else the default set with
/// `ALL` handled first (add `ALL` = every one, drop `ALL` = none), then the adds, then the drops.
pub(crate) fn capabilities(security: &SecuritySpec) -> Result<HashSet<Capability>> {
    if security.privileged {
        return Ok(all_capabilities());
    }
    let is_all = |c: &String| c.eq_ignore_ascii_case("ALL");
    let mut caps: HashSet<Capability> = if security.add_capabilities.iter().any(is_all) {
        all_capabilities()
    } else {
        DEFAULT_CAPS.into_iter().collect()
    };
    if security.drop_capabilities.iter().any(is_all) {
        caps.clear();
    }
    for name in security.add_capabilities.iter().filter(|c| !is_all(c)) {
        caps.insert(parse_capability(name)?);
    }
    for name in security.drop_capabilities.iter().filter(|c| !is_all(c)) {
        caps.remove(&parse_capability(name)?);
    }
    Ok(caps)
}

/// `NET_RAW`, `net_raw` or `CAP_NET_RAW`.
fn parse_capability(name: &str) -> Result<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Capability::from_str(bare)
        .map_err(|_| Error::InvalidArgument(format!("unknown capability {name:?}")))
}

/// The masked and read-only paths: none when privileged, else the requested ones, else the
/// defaults (as containerd, an empty list in the request means "the defaults").
pub(crate) fn masked_and_readonly_paths(security: &SecuritySpec) -> (Vec<String>, Vec<String>) {
    if security.privileged {
        return (Vec::new(), Vec::new());
    }
    let or_default = |given: &Option<Vec<String>>, default: fn() -> Vec<String>| {
        given
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(default)
    };
    (
        or_default(
            &security.masked_paths,
            oci_spec::runtime::get_default_maskedpaths,
        ),
        or_default(
            &security.readonly_paths,
            oci_spec::runtime::get_default_readonly_paths,
        ),
    )
}

/// System calls podway's `RuntimeDefault` filter refuses with EPERM, each group unless the
/// container holds the capability that guards it (as Docker's default profile does): they act
/// on the host beyond the container (kernel modules, kexec, reboot, clocks, accounting, raw
/// I/O ports), mount or pivot filesystems, open files by handle, or read other processes'
/// memory. The ungated group reaches kernel interfaces containers have no use for (keyrings,
/// BPF, perf, io_uring, userfaultfd, swap, obsolete calls). Names a kernel or architecture lacks
/// are skipped by the OCI runtime.
const DENIED_SYSCALLS: &[(Option<Capability>, &[&str])] = &[
    (
        Some(Capability::SysAdmin),
        &[
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "pivot_root",
            "quotactl",
            "quotactl_fd",
            "setns",
            "umount",
            "umount2",
        ],
    ),
    (
        Some(Capability::SysModule),
        &[
            "create_module",
            "delete_module",
            "finit_module",
            "init_module",
        ],
    ),
    (
        Some(Capability::SysBoot),
        &["kexec_file_load", "kexec_load", "reboot"],
    ),
    (
        Some(Capability::SysTime),
        &[
            "adjtimex",
            "clock_adjtime",
            "clock_settime",
            "settimeofday",
            "stime",
        ],
    ),
    (
        Some(Capability::SysPtrace),
        &["kcmp", "process_vm_readv", "process_vm_writev"],
    ),
    (Some(Capability::SysRawio), &["ioperm", "iopl"]),
    (Some(Capability::SysPacct), &["acct"]),
    (Some(Capability::Syslog), &["syslog"]),
    (Some(Capability::DacReadSearch), &["open_by_handle_at"]),
    (
        None,
        &[
            "add_key",
            "bpf",
            "get_kernel_syms",
            "io_uring_enter",
            "io_uring_register",
            "io_uring_setup",
            "keyctl",
            "name_to_handle_at",
            "nfsservctl",
            "perf_event_open",
            "query_module",
            "request_key",
            "swapoff",
            "swapon",
            "_sysctl",
            "sysfs",
            "uselib",
            "userfaultfd",
            "ustat",
            "vm86",
            "vm86old",
        ],
    ),
];

/// `CLONE_NEWUSER`: creating a user namespace opens most of the kernel's privileged code to
/// the container, so `clone` and `unshare` with it fail.
const CLONE_NEWUSER: u64 = 0x1000_0000;

/// The OCI seccomp filter of a container: none when privileged (as containerd) or Unconfined,
/// podway's default filter for `RuntimeDefault`, the file's profile for `Localhost`.
pub(crate) fn seccomp(security: &SecuritySpec) -> Result<Option<LinuxSeccomp>> {
    if security.privileged {
        return Ok(None);
    }
    match &security.seccomp {
        SeccompProfile::Unconfined => Ok(None),
        SeccompProfile::RuntimeDefault => default_seccomp(&capabilities(security)?).map(Some),
        SeccompProfile::Localhost(path) => {
            let text = std::fs::read(path).map_err(|e| {
                Error::InvalidArgument(format!(
                    "cannot read the seccomp profile {}: {e}",
                    path.display()
                ))
            })?;
            serde_json::from_slice(&text).map(Some).map_err(|e| {
                Error::InvalidArgument(format!(
                    "the seccomp profile {} is not an OCI seccomp profile: {e}",
                    path.display()
                ))
            })
        }
    }
}

fn default_seccomp(held: &HashSet<Capability>) -> Result<LinuxSeccomp> {
    let oci =
        |e: oci_spec::OciSpecError| Error::Command(format!("building the seccomp filter: {e}"));
    let eperm = |names: Vec<String>, args: Option<Vec<LinuxSeccompArg>>| {
        let mut b = LinuxSyscallBuilder::default()
            .names(names)
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(nix::errno::Errno::EPERM as u32);
        if let Some(args) = args {
            b = b.args(args);
        }
        b.build().map_err(oci)
    };
    let new_user_namespace = |index: usize| {
        LinuxSeccompArgBuilder::default()
            .index(index)
            .value(CLONE_NEWUSER)
            .value_two(CLONE_NEWUSER)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()
            .map_err(oci)
    };
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let denied: Vec<&str> = DENIED_SYSCALLS
        .iter()
        .filter(|(guard, _)| guard.is_none_or(|cap| !held.contains(&cap)))
        .flat_map(|(_, calls)| calls.iter().copied())
        .collect();
    let mut syscalls = vec![eperm(names(&denied), None)?];
    if !held.contains(&Capability::SysAdmin) {
        // clone's flags are its first argument on x86 and x86-64.
        syscalls.push(eperm(
            names(&["clone", "unshare"]),
            Some(vec![new_user_namespace(0)?]),
        )?);
        // clone3 passes its flags in memory a filter cannot read: ENOSYS makes libc fall back
        // to clone, which the rule above checks.
        syscalls.push(
            LinuxSyscallBuilder::default()
                .names(names(&["clone3"]))
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(nix::errno::Errno::ENOSYS as u32)
                .build()
                .map_err(oci)?,
        );
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
        ])
        .syscalls(syscalls)
        .build()
        .map_err(oci)
}

/// Folders of the host's `/dev` a privileged container does not get: they are mounted anew in
/// every container (or are private to the host's device manager).
const SKIPPED_DEV_DIRS: [&str; 6] = ["pts", "shm", "mqueue", "fd", ".lxc", ".udev"];

/// The host's device nodes (character and block, below `/dev`), for a privileged container.
pub(crate) fn host_devices() -> Vec<LinuxDevice> {
    let mut devices = Vec::new();
    collect_devices(Path::new("/dev"), &mut devices);
    devices.sort_by(|a, b| a.path().cmp(b.path()));
    devices
}

fn collect_devices(dir: &Path, devices: &mut Vec<LinuxDevice>) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let file_type = meta.file_type();
        if file_type.is_dir() {
            let skipped = dir == Path::new("/dev")
                && SKIPPED_DEV_DIRS.iter().any(|d| entry.file_name() == *d);
            if !skipped {
                collect_devices(&path, devices);
            }
            continue;
        }
        // The console and the pty multiplexer belong to the container's own terminal and
        // devpts instance.
        if path == Path::new("/dev/console") || path == Path::new("/dev/ptmx") {
            continue;
        }
        let typ = if file_type.is_char_device() {
            LinuxDeviceType::C
        } else if file_type.is_block_device() {
            LinuxDeviceType::B
        } else {
            continue;
        };
        let rdev = meta.rdev();
        let device = LinuxDeviceBuilder::default()
            .path(path)
            .typ(typ)
            .major(i64::from(nix::sys::stat::major(rdev) as u32))
            .minor(i64::from(nix::sys::stat::minor(rdev) as u32))
            .file_mode(meta.mode() & 0o7777)
            .uid(meta.uid())
            .gid(meta.gid())
            .build();
        if let Ok(device) = device {
            devices.push(device);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(tmp.path().join("etc")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            tmp.path().join("etc/passwd"),
            "root:x:0:0::/:/bin/sh\nweb:x:33:44::/:/bin/false\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            tmp.path().join("etc/group"),
            "staff:x:50:\nwheel:x:10:root,web\naudio:x:29:web\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        tmp
    }

    #[test]
    fn users_from_passwd() {
        let tmp = rootfs();
        let r = |u: &str| resolve_user(tmp.path(), u).ok();
        assert_eq!(r(""), Some((0, 0)));
        assert_eq!(r("web"), Some((33, 44)));
        assert_eq!(r("33"), Some((33, 44)));
        assert_eq!(r("1000:7"), Some((1000, 7)));
        assert_eq!(r("web:staff"), Some((33, 50)));
        assert_eq!(r("nobody"), None);
    }

    #[test]
    fn security_context_user_overrides_the_image() {
        let tmp = rootfs();
        let user = |sec: SecuritySpec| process_user(tmp.path(), "0", &sec);
        let by_uid = user(SecuritySpec {
            run_as_user: Some(33),
            supplemental_groups: vec![7, 44],
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((by_uid.uid, by_uid.gid), (33, 44));
        assert_eq!(by_uid.additional_gids, [44, 10, 29, 7]);
        let by_name = user(SecuritySpec {
            run_as_username: Some("web".into()),
            run_as_group: Some(1000),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((by_name.uid, by_name.gid), (33, 1000));
        let unknown = user(SecuritySpec {
            run_as_username: Some("nobody".into()),
            ..Default::default()
        });
        assert!(matches!(unknown, Err(Error::InvalidArgument(m)) if m.contains("nobody")));
        let group_only = user(SecuritySpec {
            run_as_group: Some(5),
            ..Default::default()
        });
        assert!(matches!(group_only, Err(Error::InvalidArgument(_))));
        let image = process_user(tmp.path(), "web", &SecuritySpec::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((image.uid, image.gid), (33, 44));
    }

    #[test]
    fn capability_adds_and_drops() {
        let caps = |add: &[&str], drop: &[&str]| {
            capabilities(&SecuritySpec {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            })
        };
        let set = caps(&["NET_ADMIN"], &["CAP_NET_RAW", "chown"]).unwrap_or_default();
        assert!(set.contains(&Capability::NetAdmin));
        assert!(!set.contains(&Capability::NetRaw) && !set.contains(&Capability::Chown));
        assert_eq!(set.len(), DEFAULT_CAPS.len() - 1);
        let only = caps(&["KILL"], &["ALL"]).unwrap_or_default();
        assert_eq!(only, [Capability::Kill].into_iter().collect());
        assert_eq!(caps(&["ALL"], &[]).unwrap_or_default(), all_capabilities());
        let bad = caps(&["NET_FLY"], &[]);
        assert!(matches!(bad, Err(Error::InvalidArgument(m)) if m.contains("NET_FLY")));
    }

    #[test]
    fn privileged_has_every_capability_and_no_masks() {
        let sec = SecuritySpec {
            privileged: true,
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        };
        assert_eq!(capabilities(&sec).unwrap_or_default(), all_capabilities());
        assert!(all_capabilities().contains(&Capability::SysAdmin));
        assert_eq!(masked_and_readonly_paths(&sec), (vec![], vec![]));
        let (masked, readonly) = masked_and_readonly_paths(&SecuritySpec::default());
        assert!(masked.contains(&"/proc/kcore".to_string()));
        assert!(readonly.contains(&"/proc/sys".to_string()));
    }
}
