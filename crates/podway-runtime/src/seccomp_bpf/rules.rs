//! From an OCI profile to what each ABI does with each system call, the way runc (1.1) and
//! libseccomp (2.5) read it: one rule per name; a rule whose action is the default one is
//! dropped; a rule naming one argument twice becomes one rule per condition (ORed), else its
//! conditions are ANDed; names a table lacks are skipped for that ABI; on i386 a socket or
//! SysV IPC call also matches its `socketcall`/`ipc` form (first argument = the sub-call); and
//! when the default action refuses, calls numbered above the profile's highest one return
//! ENOSYS (runc's stub, so that new system calls look absent rather than forbidden).
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use super::{CompileError, tables};

/// `SECCOMP_RET_KILL_THREAD`.
pub(super) const RET_KILL_THREAD: u32 = 0x0000_0000;
/// `SECCOMP_RET_KILL_PROCESS`.
const RET_KILL_PROCESS: u32 = 0x8000_0000;
/// `SECCOMP_RET_TRAP`.
const RET_TRAP: u32 = 0x0003_0000;
/// `SECCOMP_RET_ERRNO`, the errno in the low 16 bits.
pub(super) const RET_ERRNO: u32 = 0x0005_0000;
/// `SECCOMP_RET_TRACE`, the tracer's message in the low 16 bits.
const RET_TRACE: u32 = 0x7ff0_0000;
/// `SECCOMP_RET_LOG`.
const RET_LOG: u32 = 0x7ffc_0000;
/// `SECCOMP_RET_ALLOW`.
pub(super) const RET_ALLOW: u32 = 0x7fff_0000;

/// `SECCOMP_FILTER_FLAG_LOG`.
const FLAG_LOG: u32 = 1 << 1;
/// `SECCOMP_FILTER_FLAG_SPEC_ALLOW`.
const FLAG_SPEC_ALLOW: u32 = 1 << 2;

/// `__X32_SYSCALL_BIT`.
pub(super) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The three system call ABIs of an x86-64 kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Abi {
    /// 64-bit calls (`AUDIT_ARCH_X86_64`, numbers without the x32 bit).
    X86_64,
    /// x32 calls (`AUDIT_ARCH_X86_64` too, numbers with `__X32_SYSCALL_BIT`).
    X32,
    /// 32-bit calls (`AUDIT_ARCH_I386`).
    I386,
}

impl Abi {
    pub(super) fn table(self) -> &'static [(&'static str, u32)] {
        match self {
            Abi::X86_64 => tables::X86_64,
            Abi::X32 => tables::X32,
            Abi::I386 => tables::I386,
        }
    }

    /// The number of system call `name` in this ABI.
    pub(super) fn number(self, name: &str) -> Option<u32> {
        let table = self.table();
        table
            .binary_search_by(|(n, _)| (*n).cmp(name))
            .ok()
            .map(|i| table[i].1)
    }

    /// Whether arguments are 64-bit (libseccomp compares only the low half on x86 and x32).
    pub(super) fn wide(self) -> bool {
        self == Abi::X86_64
    }
}

/// A comparison operator on an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `arg & value == value_two & value`.
    MaskedEq,
}

/// One condition on argument `index` (0 to 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cond {
    pub index: u8,
    pub op: Op,
    pub value: u64,
    pub value_two: u64,
}

/// What an ABI does with one system call: `action` when one of the alternatives matches
/// (every condition of it holds; an empty one always matches), else the default action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SyscallRule {
    pub nr: u32,
    pub action: u32,
    pub alternatives: Vec<Vec<Cond>>,
}

/// The rules of one ABI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AbiRules {
    pub abi: Abi,
    /// By number.
    pub syscalls: Vec<SyscallRule>,
    /// runc's ENOSYS stub: calls numbered above this one return ENOSYS.
    pub enosys_above: Option<u32>,
}

/// A profile resolved for the three ABIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Resolved {
    /// The action of calls no rule matches.
    pub default: u32,
    /// The action of calls from an ABI the profile does not cover (libseccomp's default, which
    /// runc keeps: kill the thread).
    pub bad_arch: u32,
    /// x86-64 (always: libseccomp's filter holds the native architecture), then x32 and i386
    /// when listed.
    pub abis: Vec<AbiRules>,
    /// `SECCOMP_FILTER_FLAG_*` bits to load the filter with.
    pub flags: u32,
}

/// The return value of `action` (`errno` for ERRNO and TRACE; EPERM when unset, as runc).
fn action(action: LinuxSeccompAction, errno: Option<u32>) -> Result<u32, CompileError> {
    let data = errno.unwrap_or(libc::EPERM as u32) & 0xffff;
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => RET_ERRNO | data,
        LinuxSeccompAction::ScmpActTrace => RET_TRACE | data,
        LinuxSeccompAction::ScmpActLog => RET_LOG,
        LinuxSeccompAction::ScmpActAllow => RET_ALLOW,
        LinuxSeccompAction::ScmpActNotify => return Err(CompileError::Notify),
    })
}

fn op(op: LinuxSeccompOperator) -> Op {
    match op {
        LinuxSeccompOperator::ScmpCmpEq => Op::Eq,
        LinuxSeccompOperator::ScmpCmpNe => Op::Ne,
        LinuxSeccompOperator::ScmpCmpLt => Op::Lt,
        LinuxSeccompOperator::ScmpCmpLe => Op::Le,
        LinuxSeccompOperator::ScmpCmpGt => Op::Gt,
        LinuxSeccompOperator::ScmpCmpGe => Op::Ge,
        LinuxSeccompOperator::ScmpCmpMaskedEq => Op::MaskedEq,
    }
}

/// The flags the filter is loaded with.
fn flags(list: &[LinuxSeccompFilterFlag]) -> Result<u32, CompileError> {
    let mut bits = 0;
    for flag in list {
        bits |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
            // The filter is loaded by a single-threaded process right before execve.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 0,
            other => return Err(CompileError::Flag(other.to_string())),
        };
    }
    Ok(bits)
}

/// `socketcall` and `ipc` on i386, and the sub-call numbers of the calls they multiplex.
const SOCKETCALL: (&str, &[&str]) = (
    "socketcall",
    &[
        "socket",
        "bind",
        "connect",
        "listen",
        "accept",
        "getsockname",
        "getpeername",
        "socketpair",
        "send",
        "recv",
        "sendto",
        "recvfrom",
        "shutdown",
        "setsockopt",
        "getsockopt",
        "sendmsg",
        "recvmsg",
        "accept4",
        "recvmmsg",
        "sendmmsg",
    ],
);
/// SysV IPC sub-calls by number (gaps are unused numbers).
const IPC: (&str, &[&str]) = (
    "ipc",
    &[
        "semop",
        "semget",
        "semctl",
        "semtimedop",
        "",
        "",
        "",
        "",
        "",
        "",
        "msgsnd",
        "msgrcv",
        "msgget",
        "msgctl",
        "",
        "",
        "",
        "",
        "",
        "",
        "shmat",
        "shmdt",
        "shmget",
        "shmctl",
    ],
);

/// On i386: the multiplexer (`socketcall` or `ipc`) and sub-call number of `name`.
fn multiplexed(name: &str) -> Option<(&'static str, u64)> {
    [SOCKETCALL, IPC].into_iter().find_map(|(mux, calls)| {
        calls
            .iter()
            .position(|c| !c.is_empty() && *c == name)
            .map(|i| (mux, i as u64 + 1))
    })
}

/// One rule of the profile for one name.
struct NamedRule<'a> {
    name: &'a str,
    action: u32,
    alternatives: Vec<Vec<Cond>>,
}

/// The architectures the profile lists, as ABIs (the native one for `SCMP_ARCH_NATIVE`).
fn listed_abis(profile: &LinuxSeccomp) -> Result<Vec<Abi>, CompileError> {
    let mut abis = Vec::new();
    for arch in profile.architectures().iter().flatten() {
        let abi = match arch {
            Arch::ScmpArchNative | Arch::ScmpArchX86_64 => Abi::X86_64,
            Arch::ScmpArchX32 => Abi::X32,
            Arch::ScmpArchX86 => Abi::I386,
            other => return Err(CompileError::Arch(other.to_string())),
        };
        if !abis.contains(&abi) {
            abis.push(abi);
        }
    }
    Ok(abis)
}

/// Resolves `profile` for the ABIs of an x86-64 host.
pub(super) fn resolve(profile: &LinuxSeccomp) -> Result<Resolved, CompileError> {
    if let Some(path) = profile.listener_path() {
        return Err(CompileError::Listener(path.display().to_string()));
    }
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let flags = flags(profile.flags().as_deref().unwrap_or_default())?;
    let listed = listed_abis(profile)?;

    let mut named = Vec::new();
    for syscall in profile.syscalls().iter().flatten() {
        let act = action(syscall.action(), syscall.errno_ret())?;
        let mut conds = Vec::new();
        for arg in syscall.args().iter().flatten() {
            let index = u8::try_from(arg.index())
                .ok()
                .filter(|i| *i < 6)
                .ok_or_else(|| CompileError::ArgIndex(arg.index()))?;
            conds.push(Cond {
                index,
                op: op(arg.op()),
                value: arg.value(),
                value_two: arg.value_two().unwrap_or(0),
            });
        }
        // runc: an argument named twice makes one rule per condition.
        let repeated = (0..6).any(|i| conds.iter().filter(|c| c.index == i).count() > 1);
        let alternatives = if repeated {
            conds.iter().map(|c| vec![*c]).collect()
        } else {
            vec![conds]
        };
        for name in syscall.names() {
            named.push(NamedRule {
                name,
                action: act,
                alternatives: alternatives.clone(),
            });
        }
    }

    // runc's ENOSYS stub, for every listed ABI, when the default action refuses.
    let permissive =
        default == RET_ALLOW || default == RET_LOG || default & 0xffff_0000 == RET_TRACE;
    let enosys_above = |abi: Abi| -> Option<u32> {
        if permissive || !listed.contains(&abi) {
            return None;
        }
        named
            .iter()
            // libseccomp numbers the multiplexed i386 calls below zero.
            .filter(|r| abi != Abi::I386 || multiplexed(r.name).is_none())
            .filter_map(|r| abi.number(r.name))
            .max()
            .filter(|max| *max > 0)
    };

    let mut abis = vec![Abi::X86_64];
    abis.extend(listed.iter().filter(|a| **a != Abi::X86_64));
    let abis = abis
        .into_iter()
        .map(|abi| {
            Ok(AbiRules {
                abi,
                syscalls: abi_rules(abi, &named, default)?,
                enosys_above: enosys_above(abi),
            })
        })
        .collect::<Result<Vec<_>, CompileError>>()?;
    Ok(Resolved {
        default,
        bad_arch: RET_KILL_THREAD,
        abis,
        flags,
    })
}

/// The rules of `abi`, by number.
fn abi_rules(
    abi: Abi,
    named: &[NamedRule],
    default: u32,
) -> Result<Vec<SyscallRule>, CompileError> {
    let mut found: Vec<Found> = Vec::new();
    for rule in named.iter().filter(|r| r.action != default) {
        if let Some(nr) = abi.number(rule.name) {
            merge(
                &mut found,
                (nr, rule.name, rule.action, rule.alternatives.clone()),
            )?;
        }
        if abi == Abi::I386
            && let Some((mux, sub)) = multiplexed(rule.name)
            && let Some(nr) = abi.number(mux)
        {
            // libseccomp's multiplexed rule: the first argument is the sub-call.
            let alternatives = rule
                .alternatives
                .iter()
                .map(|alt| {
                    let mut alt: Vec<Cond> = alt.iter().filter(|c| c.index != 0).copied().collect();
                    alt.insert(
                        0,
                        Cond {
                            index: 0,
                            op: Op::Eq,
                            value: sub,
                            value_two: 0,
                        },
                    );
                    alt
                })
                .collect();
            merge(&mut found, (nr, mux, rule.action, alternatives))?;
        }
    }
    let mut rules: Vec<SyscallRule> = found
        .into_iter()
        .map(|(nr, _, action, alternatives)| SyscallRule {
            nr,
            action,
            // An unconditional alternative makes the others moot.
            alternatives: if alternatives.iter().any(Vec::is_empty) {
                vec![Vec::new()]
            } else {
                alternatives
            },
        })
        .collect();
    rules.sort_by_key(|r| r.nr);
    Ok(rules)
}

/// The rules of one call number so far: (nr, first name, action, alternatives).
type Found<'a> = (u32, &'a str, u32, Vec<Vec<Cond>>);

/// Adds a rule to those of its call number: alternatives of one action are ORed; another
/// action is an error.
fn merge<'a>(found: &mut Vec<Found<'a>>, rule: Found<'a>) -> Result<(), CompileError> {
    let (nr, name, action, alternatives) = rule;
    match found.iter_mut().find(|(n, ..)| *n == nr) {
        Some((_, first, act, _)) if *act != action => {
            return Err(CompileError::MixedActions((*first).to_string()));
        }
        Some((.., alts)) => alts.extend(alternatives),
        None => found.push((nr, name, action, alternatives)),
    }
    Ok(())
}
