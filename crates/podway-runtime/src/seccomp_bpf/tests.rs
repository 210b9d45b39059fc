//! The compiled programs run by a small classic-BPF interpreter over (arch, nr, args) cases.
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Act, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator as CmpOp, LinuxSyscallBuilder,
};

use super::codegen::{AUDIT_ARCH_I386, AUDIT_ARCH_X86_64};
use super::rules::{Abi, X32_SYSCALL_BIT};
use super::*;
use crate::{SeccompProfile, SecuritySpec};

const ALLOW: u32 = 0x7fff_0000;
const KILL_THREAD: u32 = 0;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
const CLONE_NEWUSER: u64 = 0x1000_0000;
const SIGCHLD: u64 = 17;

fn errno(e: i32) -> u32 {
    0x0005_0000 | e as u32
}

/// Runs `program` over one call; panics on anything a kernel would refuse to run.
fn run(program: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_ne_bytes());
    data[4..8].copy_from_slice(&arch.to_ne_bytes());
    for (i, arg) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_ne_bytes());
    }
    let (mut a, mut pc) = (0u32, 0usize);
    loop {
        let i = program
            .get(pc)
            .unwrap_or_else(|| panic!("fell off at {pc}"));
        let code = u32::from(i.code);
        let jump = |taken: bool| pc + 1 + usize::from(if taken { i.jt } else { i.jf });
        pc = match code {
            c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                let k = i.k as usize;
                assert!(k.is_multiple_of(4) && k + 4 <= data.len(), "load at {k}");
                a = u32::from_ne_bytes([data[k], data[k + 1], data[k + 2], data[k + 3]]);
                pc + 1
            }
            c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => {
                a &= i.k;
                pc + 1
            }
            c if c == libc::BPF_RET | libc::BPF_K => return i.k,
            c if c == libc::BPF_JMP | libc::BPF_JA => pc + 1 + i.k as usize,
            c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => jump(a == i.k),
            c if c == libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K => jump(a > i.k),
            c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => jump(a >= i.k),
            c if c == libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K => jump(a & i.k != 0),
            c => panic!("unexpected instruction {c:#x} at {pc}"),
        };
    }
}

/// A compiled profile and its verdicts.
struct Prog(Vec<libc::sock_filter>);

impl Prog {
    fn of(profile: &LinuxSeccomp) -> Prog {
        let filter = compile(profile).unwrap_or_else(|e| panic!("{e}"));
        assert!(filter.program.len() <= MAX_INSNS);
        Prog(filter.program)
    }

    /// The verdict of call `name` of `abi` with `args`.
    fn call(&self, abi: Abi, name: &str, args: &[u64]) -> u32 {
        let nr = abi
            .number(name)
            .unwrap_or_else(|| panic!("no {name} on {abi:?}"));
        self.nr(abi, nr, args)
    }

    fn nr(&self, abi: Abi, nr: u32, args: &[u64]) -> u32 {
        let arch = if abi == Abi::I386 {
            AUDIT_ARCH_I386
        } else {
            AUDIT_ARCH_X86_64
        };
        let mut all = [0u64; 6];
        all[..args.len()].copy_from_slice(args);
        run(&self.0, arch, nr, all)
    }
}

fn runtime_default(caps: &[&str]) -> LinuxSeccomp {
    let spec = SecuritySpec {
        seccomp: SeccompProfile::RuntimeDefault,
        add_capabilities: caps.iter().map(|c| c.to_string()).collect(),
        ..SecuritySpec::default()
    };
    crate::security::seccomp(&spec)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no profile"))
}

type Arg = (usize, CmpOp, u64, u64);

fn rule(
    names: &[&str],
    action: Act,
    errno: Option<u32>,
    args: &[Arg],
) -> oci_spec::runtime::LinuxSyscall {
    let mut b = LinuxSyscallBuilder::default()
        .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .action(action);
    if let Some(e) = errno {
        b = b.errno_ret(e);
    }
    if !args.is_empty() {
        let args = args
            .iter()
            .map(|&(index, op, value, value_two)| {
                LinuxSeccompArgBuilder::default()
                    .index(index)
                    .op(op)
                    .value(value)
                    .value_two(value_two)
                    .build()
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect::<Vec<_>>();
        b = b.args(args);
    }
    b.build().unwrap_or_else(|e| panic!("{e}"))
}

fn profile(
    default: Act,
    arches: &[Arch],
    syscalls: Vec<oci_spec::runtime::LinuxSyscall>,
) -> LinuxSeccomp {
    let mut b = LinuxSeccompBuilder::default()
        .default_action(default)
        .syscalls(syscalls);
    if !arches.is_empty() {
        b = b.architectures(arches.to_vec());
    }
    b.build().unwrap_or_else(|e| panic!("{e}"))
}

const X86: [Arch; 3] = [Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32];

#[test]
fn tables_are_sorted_and_numbered_per_abi() {
    for abi in [Abi::X86_64, Abi::I386, Abi::X32] {
        let table = abi.table();
        assert!(table.windows(2).all(|w| w[0].0 < w[1].0), "{abi:?}");
    }
    assert_eq!(Abi::X86_64.number("read"), Some(0));
    assert_eq!(Abi::I386.number("read"), Some(3));
    assert_eq!(Abi::X32.number("read"), Some(X32_SYSCALL_BIT));
    assert_eq!(Abi::X32.number("rt_sigaction"), Some(X32_SYSCALL_BIT | 512));
    assert_eq!(Abi::X86_64.number("clone3"), Some(435));
    assert_eq!(Abi::I386.number("socketcall"), Some(102));
    assert_eq!(Abi::X86_64.number("vm86"), None);
    assert_eq!(Abi::X86_64.number("no_such_call"), None);
}

#[test]
fn runtime_default_without_sys_admin() {
    let p = Prog::of(&runtime_default(&[]));
    let eperm = errno(libc::EPERM);
    for abi in [Abi::X86_64, Abi::I386, Abi::X32] {
        assert_eq!(p.call(abi, "read", &[]), ALLOW, "{abi:?}");
        assert_eq!(p.call(abi, "mount", &[]), eperm, "{abi:?}");
        assert_eq!(p.call(abi, "keyctl", &[]), eperm, "{abi:?}");
        assert_eq!(p.call(abi, "setns", &[]), eperm, "{abi:?}");
        assert_eq!(p.call(abi, "clone3", &[]), errno(libc::ENOSYS), "{abi:?}");
        assert_eq!(p.call(abi, "clone", &[SIGCHLD]), ALLOW, "{abi:?}");
        let new_user = CLONE_NEWUSER | SIGCHLD;
        assert_eq!(p.call(abi, "clone", &[new_user]), eperm, "{abi:?}");
        assert_eq!(p.call(abi, "unshare", &[CLONE_NEWUSER]), eperm, "{abi:?}");
        assert_eq!(p.call(abi, "unshare", &[0x2_0000]), ALLOW, "{abi:?}");
        // Bits above the mask do not matter.
        assert_eq!(
            p.call(abi, "clone", &[(7 << 32) | new_user]),
            eperm,
            "{abi:?}"
        );
    }
    // i386-only names resolve there only.
    assert_eq!(p.call(Abi::I386, "vm86", &[]), eperm);
    assert_eq!(p.call(Abi::I386, "vm86old", &[]), eperm);
    // Another architecture: killed.
    let all = [0; 6];
    assert_eq!(run(&p.0, AUDIT_ARCH_AARCH64, 40, all), KILL_THREAD);
    // A tracer's "skip this call" (-1) and unknown numbers get the default action.
    assert_eq!(p.nr(Abi::X86_64, u32::MAX, &[]), ALLOW);
    assert_eq!(p.nr(Abi::X86_64, 1000, &[]), ALLOW);
}

#[test]
fn runtime_default_with_sys_admin() {
    let p = Prog::of(&runtime_default(&["SYS_ADMIN"]));
    for abi in [Abi::X86_64, Abi::I386, Abi::X32] {
        assert_eq!(p.call(abi, "mount", &[]), ALLOW, "{abi:?}");
        assert_eq!(p.call(abi, "setns", &[]), ALLOW, "{abi:?}");
        assert_eq!(p.call(abi, "unshare", &[CLONE_NEWUSER]), ALLOW, "{abi:?}");
        assert_eq!(p.call(abi, "clone3", &[]), ALLOW, "{abi:?}");
        assert_eq!(p.call(abi, "keyctl", &[]), errno(libc::EPERM), "{abi:?}");
        assert_eq!(
            p.call(abi, "init_module", &[]),
            errno(libc::EPERM),
            "{abi:?}"
        );
    }
}

#[test]
fn every_operator_on_64_and_32_bit_arguments() {
    let big = 0x0000_0005_0000_0010u64;
    // (operator, value, [(argument, matches)]).
    type Case<'a> = (CmpOp, u64, &'a [(u64, bool)]);
    let cases: [Case; 7] = [
        (
            CmpOp::ScmpCmpEq,
            big,
            &[(big, true), (0x10, false), (big + (1 << 32), false)],
        ),
        (
            CmpOp::ScmpCmpNe,
            big,
            &[(big, false), (0x10, true), (big + 1, true)],
        ),
        (
            CmpOp::ScmpCmpLt,
            big,
            &[
                (big - 1, true),
                (big, false),
                (0x4_ffff_ffff, true),
                (0x6_0000_0000, false),
                (0x20, true),
            ],
        ),
        (
            CmpOp::ScmpCmpLe,
            big,
            &[
                (big, true),
                (big + 1, false),
                (0x5_0000_0011, false),
                (0x4_ffff_ffff, true),
            ],
        ),
        (
            CmpOp::ScmpCmpGt,
            big,
            &[
                (big, false),
                (big + 1, true),
                (0x6_0000_0000, true),
                (0x4_ffff_ffff, false),
            ],
        ),
        (
            CmpOp::ScmpCmpGe,
            big,
            &[
                (big, true),
                (big - 1, false),
                (0x5_0000_0000, false),
                (0x5_ffff_ffff, true),
            ],
        ),
        (
            CmpOp::ScmpCmpMaskedEq,
            0xff00_0000_00ff,
            &[
                (0x1200_0000_0034, true),
                (0x1200_0000_0035, false),
                (0x1300_ffff_0034, false),
            ],
        ),
    ];
    for (op, value, checks) in cases {
        // MASKED_EQ: value is the mask, value_two what the masked argument must equal.
        let rules = vec![rule(
            &["read"],
            Act::ScmpActErrno,
            Some(99),
            &[(2, op, value, 0x1200_0000_0034)],
        )];
        let p = Prog::of(&profile(Act::ScmpActAllow, &X86, rules));
        for &(arg, expect) in checks {
            let want = if expect { errno(99) } else { ALLOW };
            assert_eq!(
                p.call(Abi::X86_64, "read", &[0, 0, arg]),
                want,
                "{op:?} {arg:#x}"
            );
        }
        // i386 and x32: libseccomp compares the low words only.
        for abi in [Abi::I386, Abi::X32] {
            for &(arg, _) in checks {
                let (lo, v) = (arg as u32, value as u32);
                let expect = match op {
                    CmpOp::ScmpCmpEq => lo == v,
                    CmpOp::ScmpCmpNe => lo != v,
                    CmpOp::ScmpCmpLt => lo < v,
                    CmpOp::ScmpCmpLe => lo <= v,
                    CmpOp::ScmpCmpGt => lo > v,
                    CmpOp::ScmpCmpGe => lo >= v,
                    CmpOp::ScmpCmpMaskedEq => lo & v == 0x34 & v,
                };
                let want = if expect { errno(99) } else { ALLOW };
                assert_eq!(
                    p.call(abi, "read", &[0, 0, arg]),
                    want,
                    "{abi:?} {op:?} {arg:#x}"
                );
            }
        }
    }
}

#[test]
fn arguments_of_one_rule_are_anded_a_repeated_one_ored_and_rules_ored() {
    let rules = vec![
        rule(
            &["write"],
            Act::ScmpActErrno,
            None,
            &[(0, CmpOp::ScmpCmpEq, 1, 0), (2, CmpOp::ScmpCmpGt, 10, 0)],
        ),
        // runc: the same argument twice makes one rule per condition.
        rule(
            &["read"],
            Act::ScmpActErrno,
            None,
            &[(0, CmpOp::ScmpCmpEq, 3, 0), (0, CmpOp::ScmpCmpEq, 4, 0)],
        ),
        rule(
            &["write"],
            Act::ScmpActErrno,
            None,
            &[(0, CmpOp::ScmpCmpEq, 7, 0)],
        ),
    ];
    let p = Prog::of(&profile(Act::ScmpActAllow, &[], rules));
    let eperm = errno(libc::EPERM);
    let x = Abi::X86_64;
    assert_eq!(p.call(x, "write", &[1, 0, 11]), eperm);
    assert_eq!(p.call(x, "write", &[1, 0, 10]), ALLOW);
    assert_eq!(p.call(x, "write", &[2, 0, 11]), ALLOW);
    assert_eq!(p.call(x, "write", &[7, 0, 0]), eperm);
    assert_eq!(p.call(x, "read", &[3]), eperm);
    assert_eq!(p.call(x, "read", &[4]), eperm);
    assert_eq!(p.call(x, "read", &[5]), ALLOW);
}

#[test]
fn every_action() {
    let cases = [
        (Act::ScmpActAllow, None, ALLOW),
        (Act::ScmpActErrno, None, errno(libc::EPERM)),
        (Act::ScmpActErrno, Some(13), errno(13)),
        (Act::ScmpActKill, None, 0),
        (Act::ScmpActKillThread, None, 0),
        (Act::ScmpActKillProcess, None, 0x8000_0000),
        (Act::ScmpActTrap, None, 0x0003_0000),
        (Act::ScmpActLog, None, 0x7ffc_0000),
        (Act::ScmpActTrace, None, 0x7ff0_0001),
        (Act::ScmpActTrace, Some(42), 0x7ff0_002a),
    ];
    for (action, errno_ret, want) in cases {
        // As the default action…
        let mut p = profile(
            action,
            &[],
            vec![rule(&["getpid"], Act::ScmpActAllow, None, &[])],
        );
        p.set_default_errno_ret(errno_ret);
        let p = Prog::of(&p);
        assert_eq!(
            p.call(Abi::X86_64, "getppid", &[]),
            want,
            "default {action:?}"
        );
        // …and in a rule.
        let rules = vec![rule(&["getppid"], action, errno_ret, &[])];
        let default = if action == Act::ScmpActKillProcess {
            Act::ScmpActAllow
        } else {
            Act::ScmpActKillProcess
        };
        let p = Prog::of(&profile(default, &[], rules));
        assert_eq!(p.call(Abi::X86_64, "getppid", &[]), want, "rule {action:?}");
    }
}

#[test]
fn x32_calls_and_unlisted_architectures() {
    let rules = vec![rule(&["mount"], Act::ScmpActErrno, None, &[])];
    let eperm = errno(libc::EPERM);
    // x86-64 only: x32 calls and i386 are another architecture (killed), but -1 is not.
    let p = Prog::of(&profile(
        Act::ScmpActAllow,
        &[Arch::ScmpArchX86_64],
        rules.clone(),
    ));
    assert_eq!(p.call(Abi::X86_64, "mount", &[]), eperm);
    assert_eq!(p.call(Abi::X86_64, "read", &[]), ALLOW);
    assert_eq!(p.call(Abi::X32, "read", &[]), KILL_THREAD);
    assert_eq!(p.call(Abi::X32, "mount", &[]), KILL_THREAD);
    assert_eq!(p.call(Abi::I386, "read", &[]), KILL_THREAD);
    assert_eq!(p.nr(Abi::X86_64, u32::MAX, &[]), ALLOW);
    // No architecture listed: the native one.
    let p = Prog::of(&profile(Act::ScmpActAllow, &[], rules.clone()));
    assert_eq!(p.call(Abi::X86_64, "mount", &[]), eperm);
    assert_eq!(p.call(Abi::X32, "read", &[]), KILL_THREAD);
    // x32 listed (x86-64 comes with it, as libseccomp keeps the native one): each its own rules.
    let p = Prog::of(&profile(
        Act::ScmpActAllow,
        &[Arch::ScmpArchX32],
        rules.clone(),
    ));
    assert_eq!(p.call(Abi::X32, "mount", &[]), eperm);
    assert_eq!(p.call(Abi::X32, "read", &[]), ALLOW);
    assert_eq!(p.call(Abi::X86_64, "mount", &[]), eperm);
    // An x32 call numbered like an x86-64 rule without the bit is not matched by it.
    let p = Prog::of(&profile(
        Act::ScmpActAllow,
        &[Arch::ScmpArchX86_64, Arch::ScmpArchX32],
        vec![rule(&["read"], Act::ScmpActErrno, None, &[])],
    ));
    assert_eq!(p.nr(Abi::X86_64, 0, &[]), eperm);
    assert_eq!(p.nr(Abi::X86_64, X32_SYSCALL_BIT, &[]), eperm);
    assert_eq!(p.nr(Abi::X86_64, X32_SYSCALL_BIT | 1, &[]), ALLOW);
    // i386 listed alone: x86-64 is still there, x32 is not.
    let p = Prog::of(&profile(Act::ScmpActAllow, &[Arch::ScmpArchX86], rules));
    assert_eq!(p.call(Abi::I386, "mount", &[]), eperm);
    assert_eq!(p.call(Abi::X86_64, "mount", &[]), eperm);
    assert_eq!(p.call(Abi::X32, "read", &[]), KILL_THREAD);
}

#[test]
fn refusing_default_gets_runcs_enosys_stub() {
    // An allow list: the highest listed call per ABI bounds the ENOSYS range.
    let allowed = ["read", "write", "exit_group", "socket"];
    let rules = vec![rule(&allowed, Act::ScmpActAllow, None, &[])];
    let p = Prog::of(&profile(Act::ScmpActErrno, &X86, rules.clone()));
    let (eperm, enosys) = (errno(libc::EPERM), errno(libc::ENOSYS));
    for abi in [Abi::X86_64, Abi::I386, Abi::X32] {
        // (i386's direct `socket` is checked below.)
        let direct = |n: &&&str| abi.number(n).is_some() && !(abi == Abi::I386 && **n == "socket");
        for name in allowed.iter().filter(direct) {
            assert_eq!(p.call(abi, name, &[]), ALLOW, "{abi:?} {name}");
        }
        assert_eq!(p.call(abi, "close", &[]), eperm, "{abi:?}");
    }
    let max_64 = Abi::X86_64.number("exit_group").unwrap_or_default();
    assert_eq!(p.nr(Abi::X86_64, max_64 + 1, &[]), enosys);
    assert_eq!(p.nr(Abi::X32, X32_SYSCALL_BIT | (max_64 + 1), &[]), enosys);
    // On i386 `socket` is also numbered below zero by libseccomp: exit_group bounds it.
    let max_32 = Abi::I386.number("exit_group").unwrap_or_default();
    assert_eq!(p.nr(Abi::I386, max_32 + 1, &[]), enosys);
    // …and it matches through socketcall too, by sub-call number.
    assert_eq!(p.call(Abi::I386, "socketcall", &[1]), ALLOW);
    assert_eq!(p.call(Abi::I386, "socketcall", &[2]), eperm);
    // The direct `socket` call is above that bound: ENOSYS, and libc falls back to socketcall.
    assert_eq!(p.call(Abi::I386, "socket", &[]), enosys);
    // No architectures listed: no stub.
    let p = Prog::of(&profile(Act::ScmpActErrno, &[], rules.clone()));
    assert_eq!(p.nr(Abi::X86_64, max_64 + 1, &[]), eperm);
    // A permissive default: no stub.
    let p = Prog::of(&profile(
        Act::ScmpActLog,
        &X86,
        vec![rule(&["read"], Act::ScmpActErrno, None, &[])],
    ));
    assert_eq!(p.nr(Abi::X86_64, 400, &[]), 0x7ffc_0000);
}

#[test]
fn far_jumps_and_long_programs() {
    // Hundreds of calls with conditions: jumps farther than 255 instructions.
    let names: Vec<&str> = super::tables::X86_64
        .iter()
        .map(|(n, _)| *n)
        .take(150)
        .collect();
    let rules = vec![rule(
        &names,
        Act::ScmpActErrno,
        Some(7),
        &[(1, CmpOp::ScmpCmpEq, 5, 0)],
    )];
    let filter =
        compile(&profile(Act::ScmpActAllow, &X86, rules)).unwrap_or_else(|e| panic!("{e}"));
    assert!(filter.program.len() > 1000, "{}", filter.program.len());
    assert_eq!(in_child(&filter, || 0), 0, "the kernel refused the program");
    let p = Prog(filter.program);
    for name in &names {
        for abi in [Abi::X86_64, Abi::I386, Abi::X32] {
            if abi.number(name).is_some() {
                assert_eq!(p.call(abi, name, &[0, 5]), errno(7), "{abi:?} {name}");
                assert_eq!(p.call(abi, name, &[0, 6]), ALLOW, "{abi:?} {name}");
            }
        }
    }
    // Too long for the kernel: an error, not a truncated filter.
    let many: Vec<_> = (0..1500)
        .map(|i| {
            rule(
                &["read"],
                Act::ScmpActErrno,
                None,
                &[(0, CmpOp::ScmpCmpEq, i, 0)],
            )
        })
        .collect();
    let err = compile(&profile(Act::ScmpActAllow, &X86, many)).err();
    assert!(
        matches!(err, Some(CompileError::TooLong(n)) if n > MAX_INSNS),
        "{err:?}"
    );
}

#[test]
fn what_is_not_reproduced_is_an_error() {
    let errors = |p: LinuxSeccomp| compile(&p).err().map(|e| e.to_string()).unwrap_or_default();
    let notify = profile(
        Act::ScmpActAllow,
        &[],
        vec![rule(&["read"], Act::ScmpActNotify, None, &[])],
    );
    assert!(errors(notify).contains("SCMP_ACT_NOTIFY"));
    let mut listener = profile(Act::ScmpActAllow, &[], vec![]);
    listener.set_listener_path(Some("/run/agent.sock".into()));
    assert!(errors(listener).contains("/run/agent.sock"));
    let arm = profile(Act::ScmpActAllow, &[Arch::ScmpArchAarch64], vec![]);
    assert!(errors(arm).contains("SCMP_ARCH_AARCH64"));
    let mixed = profile(
        Act::ScmpActAllow,
        &[],
        vec![
            rule(
                &["read"],
                Act::ScmpActErrno,
                None,
                &[(0, CmpOp::ScmpCmpEq, 1, 0)],
            ),
            rule(&["read"], Act::ScmpActKillProcess, None, &[]),
        ],
    );
    assert!(errors(mixed).contains("read"));
    let index = profile(
        Act::ScmpActAllow,
        &[],
        vec![rule(
            &["read"],
            Act::ScmpActErrno,
            None,
            &[(6, CmpOp::ScmpCmpEq, 1, 0)],
        )],
    );
    assert!(errors(index).contains("index 6"));
    let mut killable = profile(Act::ScmpActAllow, &[], vec![]);
    killable.set_flags(Some(vec![
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
    ]));
    assert!(errors(killable).contains("WAIT_KILLABLE_RECV"));
    // A rule with the default action is dropped, so it conflicts with nothing (as in runc).
    let same = profile(
        Act::ScmpActAllow,
        &[],
        vec![
            rule(&["read"], Act::ScmpActAllow, None, &[]),
            rule(&["read"], Act::ScmpActErrno, None, &[]),
        ],
    );
    assert_eq!(errors(same), "");
}

#[test]
fn flags_and_names_unknown_everywhere() {
    let mut p = profile(
        Act::ScmpActAllow,
        &[],
        vec![rule(
            &["no_such_call", "read"],
            Act::ScmpActErrno,
            None,
            &[],
        )],
    );
    p.set_flags(Some(vec![
        LinuxSeccompFilterFlag::SeccompFilterFlagLog,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
    ]));
    let filter = compile(&p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(filter.flags, 0b110);
    assert_eq!(
        Prog(filter.program).call(Abi::X86_64, "read", &[]),
        errno(libc::EPERM)
    );
    assert!(kernel_takes_flags(0));
    assert!(!kernel_takes_flags(1 << 31));
}

/// Forks a child that loads `filter` and exits with what `check` returns (100 + errno when the
/// kernel refuses the filter).
fn in_child(filter: &Filter, check: fn() -> i32) -> i32 {
    // SAFETY: the child makes raw system calls only, then _exit.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                libc::_exit(99);
            }
            if filter.install() != 0 {
                libc::_exit(100 + *libc::__errno_location());
            }
            libc::_exit(check());
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert!(libc::WIFEXITED(status), "{status:#x}");
        libc::WEXITSTATUS(status)
    }
}

/// The kernel itself takes the program and gives the verdicts.
#[test]
fn the_kernel_runs_the_runtime_default_filter() {
    let filter = compile(&runtime_default(&[])).unwrap_or_else(|e| panic!("{e}"));
    let code = in_child(&filter, || {
        // SAFETY: plain system calls.
        unsafe {
            if libc::unshare(libc::CLONE_NEWUSER) == 0 || *libc::__errno_location() != libc::EPERM {
                return 12;
            }
            if libc::syscall(libc::SYS_clone3, 0, 0) == 0
                || *libc::__errno_location() != libc::ENOSYS
            {
                return 13;
            }
            if libc::getpid() <= 0 {
                return 14;
            }
        }
        0
    });
    assert_eq!(code, 0);
}

/// For `diff_libseccomp.py`: writes the `RuntimeDefault` profiles (`rd.json`, `rd-admin.json`)
/// to `$SECCOMP_DIFF_DIR`, then the program of every `*.json` profile there as `*.bpf`.
#[test]
#[ignore = "run by diff_libseccomp.py"]
fn dump_programs() {
    let Some(dir) = std::env::var_os("SECCOMP_DIFF_DIR") else {
        panic!("SECCOMP_DIFF_DIR is not set");
    };
    let dir = std::path::Path::new(&dir);
    let write = |path: std::path::PathBuf, bytes: Vec<u8>| {
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    for (name, caps) in [("rd", &[][..]), ("rd-admin", &["SYS_ADMIN"][..])] {
        let json = serde_json::to_vec(&runtime_default(caps)).unwrap_or_else(|e| panic!("{e}"));
        write(dir.join(format!("{name}.json")), json);
    }
    for entry in std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
        let profile: LinuxSeccomp = serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{e}"));
        let filter = compile(&profile).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let bytes = filter
            .program
            .iter()
            .flat_map(|i| {
                let mut b = i.code.to_ne_bytes().to_vec();
                b.extend([i.jt, i.jf]);
                b.extend(i.k.to_ne_bytes());
                b
            })
            .collect();
        write(path.with_extension("bpf"), bytes);
    }
}
