//! What the forked child does between `fork` and `execve`: only raw system calls on data
//! prepared before the fork (no allocation, no lock, no formatting: async-signal-safe).
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

/// The step of the child's setup that failed, reported to the parent through a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Step {
    Dumpable = 1,
    Session,
    Cgroup,
    Namespace,
    Keyring,
    Chdir,
    Rlimit,
    Umask,
    Stdio,
    Bounding,
    KeepCaps,
    Groups,
    Gid,
    Uid,
    Capabilities,
    Ambient,
    NoNewPrivileges,
    CloseFds,
    Seccomp,
}

impl Step {
    /// The step of a byte read from the report pipe.
    pub(crate) fn from_byte(b: u8) -> Option<Step> {
        use Step::*;
        [
            Dumpable,
            Session,
            Cgroup,
            Namespace,
            Keyring,
            Chdir,
            Rlimit,
            Umask,
            Stdio,
            Bounding,
            KeepCaps,
            Groups,
            Gid,
            Uid,
            Capabilities,
            Ambient,
            NoNewPrivileges,
            CloseFds,
            Seccomp,
        ]
        .into_iter()
        .find(|s| *s as u8 == b)
    }

    /// What the step does, for error messages.
    pub(crate) fn what(self) -> &'static str {
        match self {
            Step::Dumpable => "making the process non-dumpable",
            Step::Session => "starting a session on the terminal",
            Step::Cgroup => "joining the container's cgroups",
            Step::Namespace => "joining the container's namespaces",
            Step::Keyring => "joining the container's session keyring",
            Step::Chdir => "changing to the working directory",
            Step::Rlimit => "setting resource limits",
            Step::Umask => "setting the umask",
            Step::Stdio => "handing stdio to the process user",
            Step::Bounding => "dropping capabilities from the bounding set",
            Step::KeepCaps => "keeping capabilities across the user change",
            Step::Groups => "setting supplementary groups",
            Step::Gid => "setting the group id",
            Step::Uid => "setting the user id",
            Step::Capabilities => "setting capabilities",
            Step::Ambient => "setting ambient capabilities",
            Step::NoNewPrivileges => "setting no_new_privs",
            Step::CloseFds => "marking inherited descriptors close-on-exec",
            Step::Seccomp => "loading the seccomp filter",
        }
    }
}

/// The capability sets of the process, as bit masks (bit N = capability N).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
    /// The highest capability the kernel knows (`/proc/sys/kernel/cap_last_cap`).
    pub last_cap: u32,
}

/// Everything the child applies to itself before `execve`, prepared by the parent.
pub(crate) struct ChildSetup {
    /// Make the stdio terminal the controlling terminal of a new session.
    pub terminal: bool,
    /// `tasks` (v1) or `cgroup.procs` (v2) of each cgroup to join (written with "0": the
    /// writer itself).
    pub cgroups: Vec<OwnedFd>,
    /// Namespaces to join, in order (the mount namespace last), with their `CLONE_NEW*` type.
    pub namespaces: Vec<(OwnedFd, libc::c_int)>,
    /// The container's session keyring (`_ses.<id>`, as runc names it).
    pub keyring: CString,
    /// The working directory inside the container.
    pub cwd: CString,
    /// `(resource, limit)` pairs to set.
    pub rlimits: Vec<(libc::c_int, libc::rlimit)>,
    /// The umask, if the spec sets one.
    pub umask: Option<libc::mode_t>,
    /// The process user.
    pub uid: libc::uid_t,
    /// The process group.
    pub gid: libc::gid_t,
    /// Supplementary groups (set even when empty: nothing of the runtime's is kept).
    pub groups: Vec<libc::gid_t>,
    /// Capabilities.
    pub caps: CapSets,
    /// `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privileges: bool,
    /// The seccomp filter: loaded where runc's exec loads it (see [`ChildSetup::load_seccomp`]).
    pub seccomp: Option<crate::seccomp_bpf::Filter>,
    /// Write end of the pipe the failing step is reported through.
    pub report: OwnedFd,
}

/// `major:minor` of `/dev/null` (1:3), whose stdio is never handed to the user.
const DEV_NULL: libc::dev_t = (1 << 8) | 3;

type StepResult = Result<(), (Step, std::io::Error)>;

fn check(step: Step, ret: libc::c_long) -> StepResult {
    if ret < 0 {
        Err((step, std::io::Error::last_os_error()))
    } else {
        Ok(())
    }
}

impl ChildSetup {
    /// Runs in the child: applies everything, or reports the failing step and returns its error.
    pub(crate) fn run(&self) -> std::io::Result<()> {
        match self.apply() {
            Ok(()) => Ok(()),
            Err((step, error)) => {
                let byte = step as u8;
                // SAFETY: write(2) of one byte from a live stack variable.
                unsafe { libc::write(self.report.as_raw_fd(), (&raw const byte).cast(), 1) };
                Err(error)
            }
        }
    }

    fn apply(&self) -> StepResult {
        // SAFETY (whole function): plain system calls on values owned by `self` or on the stack.
        unsafe {
            // First of all: processes of the container may see this one in its pid namespace
            // from now on; non-dumpable, its /proc files (fds, root, exe) stay closed to them.
            check(
                Step::Dumpable,
                libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0).into(),
            )?;
            if self.terminal {
                check(Step::Session, libc::setsid().into())?;
                check(Step::Session, libc::ioctl(0, libc::TIOCSCTTY, 0).into())?;
            }
            for fd in &self.cgroups {
                check(
                    Step::Cgroup,
                    libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) as libc::c_long,
                )?;
            }
            for (fd, kind) in &self.namespaces {
                check(Step::Namespace, libc::setns(fd.as_raw_fd(), *kind).into())?;
            }
            let joined = libc::syscall(
                libc::SYS_keyctl,
                libc::KEYCTL_JOIN_SESSION_KEYRING,
                self.keyring.as_ptr(),
            );
            if joined < 0 && *libc::__errno_location() != libc::ENOSYS {
                return Err((Step::Keyring, std::io::Error::last_os_error()));
            }
            // As root first (the user may not reach it); again as the user if that was denied.
            let mut chdir_later = false;
            if libc::chdir(self.cwd.as_ptr()) < 0 {
                let errno = *libc::__errno_location();
                if errno != libc::EACCES && errno != libc::EPERM {
                    return Err((Step::Chdir, std::io::Error::from_raw_os_error(errno)));
                }
                chdir_later = true;
            }
            for (resource, limit) in &self.rlimits {
                check(Step::Rlimit, libc::setrlimit(*resource as _, limit).into())?;
            }
            if let Some(mask) = self.umask {
                libc::umask(mask);
            }
            self.hand_stdio_to_user()?;
            if !self.no_new_privileges {
                self.load_seccomp()?;
            }
            for cap in 0..=self.caps.last_cap.min(63) {
                if self.caps.bounding & (1 << cap) == 0 {
                    check(
                        Step::Bounding,
                        libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0)
                            .into(),
                    )?;
                }
            }
            check(
                Step::KeepCaps,
                libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0).into(),
            )?;
            check(
                Step::Groups,
                libc::setgroups(self.groups.len(), self.groups.as_ptr()).into(),
            )?;
            check(
                Step::Gid,
                libc::setresgid(self.gid, self.gid, self.gid).into(),
            )?;
            check(
                Step::Uid,
                libc::setresuid(self.uid, self.uid, self.uid).into(),
            )?;
            check(
                Step::KeepCaps,
                libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0).into(),
            )?;
            self.set_capabilities()?;
            if chdir_later {
                check(Step::Chdir, libc::chdir(self.cwd.as_ptr()).into())?;
            }
            if self.no_new_privileges {
                check(
                    Step::NoNewPrivileges,
                    libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).into(),
                )?;
            }
            // Nothing of the runtime's (its sockets, its files, other execs' terminals) may
            // reach the container: every descriptor above stdio closes on exec.
            if libc::close_range(
                3,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
            ) < 0
            {
                self.cloexec_by_hand()?;
            }
            if self.no_new_privileges {
                self.load_seccomp()?;
            }
        }
        Ok(())
    }

    /// Loads the seccomp filter where runc's exec does: without `no_new_privs` loading one takes
    /// `CAP_SYS_ADMIN`, so before the capabilities and the user change (the calls after it must
    /// pass the filter, as runc's do); with it, last of all, right before `execve`, so that as
    /// few calls as possible of the setup have to pass it.
    fn load_seccomp(&self) -> StepResult {
        match &self.seccomp {
            Some(filter) => check(Step::Seccomp, filter.install()),
            None => Ok(()),
        }
    }

    /// As runc does: stdio not owned by the process user (and not `/dev/null`) is given to it,
    /// so that it may reopen `/proc/self/fd/N` (errors other than EINVAL/EPERM fail the exec).
    fn hand_stdio_to_user(&self) -> StepResult {
        for fd in 0..3 {
            // SAFETY: fstat into a zeroed stat on the stack; fchown with plain numbers.
            unsafe {
                let mut st: libc::stat = std::mem::zeroed();
                if libc::fstat(fd, &mut st) < 0 {
                    continue;
                }
                let is_null = st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == DEV_NULL;
                if st.st_uid == self.uid || is_null {
                    continue;
                }
                if libc::fchown(fd, self.uid, libc::gid_t::MAX) < 0 {
                    let errno = *libc::__errno_location();
                    if errno != libc::EINVAL && errno != libc::EPERM {
                        return Err((Step::Stdio, std::io::Error::from_raw_os_error(errno)));
                    }
                }
            }
        }
        Ok(())
    }

    fn set_capabilities(&self) -> StepResult {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: libc::c_int,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const VERSION_3: u32 = 0x2008_0522;
        let header = Header {
            version: VERSION_3,
            pid: 0,
        };
        let word = |mask: u64, i: u32| (mask >> (32 * i)) as u32;
        let data = [0, 1].map(|i| Data {
            effective: word(self.caps.effective, i),
            permitted: word(self.caps.permitted, i),
            inheritable: word(self.caps.inheritable, i),
        });
        // SAFETY: capset(2) reads the header and two data words that live across the call.
        unsafe {
            check(
                Step::Capabilities,
                libc::syscall(libc::SYS_capset, &raw const header, data.as_ptr()),
            )?;
            check(
                Step::Ambient,
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                    0,
                    0,
                    0,
                )
                .into(),
            )?;
            for cap in 0..=self.caps.last_cap.min(63) {
                if self.caps.ambient & (1 << cap) != 0 {
                    check(
                        Step::Ambient,
                        libc::prctl(
                            libc::PR_CAP_AMBIENT,
                            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                            libc::c_ulong::from(cap),
                            0,
                            0,
                        )
                        .into(),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Kernels without `close_range(CLOSE_RANGE_CLOEXEC)` (before 5.11): one fcntl per slot.
    fn cloexec_by_hand(&self) -> StepResult {
        // SAFETY: getrlimit into a stack value; fcntl on plain numbers (EBADF for free slots).
        unsafe {
            let mut limit: libc::rlimit = std::mem::zeroed();
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) < 0 {
                return Err((Step::CloseFds, std::io::Error::last_os_error()));
            }
            let top = limit.rlim_cur.min(1 << 20) as libc::c_int;
            for fd in 3..top {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                }
            }
        }
        Ok(())
    }
}
