//! The classic-BPF program of a resolved profile:
//!
//! ```text
//! ld arch
//! jeq AUDIT_ARCH_X86_64 → x86-64 region; jeq AUDIT_ARCH_I386 → i386 region; else bad-arch action
//! region: ld nr
//!         runc's ENOSYS stub (x86-64 and x32 told apart by __X32_SYSCALL_BIT)
//!         without x32 listed: nr ≥ __X32_SYSCALL_BIT → bad-arch action (-1 → default)
//!         binary search on nr → per-call block (its argument tests, ORed alternatives), else default
//! ```
//!
//! Arguments are 64-bit on x86-64 (the high and low words compared in turn, as libseccomp
//! does) and their low word only on i386 and x32 (as libseccomp does for 32-bit ABIs).
use super::asm::{Asm, Jump, Label};
use super::rules::{Abi, AbiRules, Cond, Op, RET_ERRNO, Resolved, SyscallRule, X32_SYSCALL_BIT};

/// `AUDIT_ARCH_X86_64`.
pub(super) const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386`.
pub(super) const AUDIT_ARCH_I386: u32 = 0x4000_0003;

/// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARGS: u32 = 16;

/// The program of `profile` (its length unchecked).
pub(super) fn generate(profile: &Resolved) -> Vec<libc::sock_filter> {
    let mut asm = Asm::default();
    let bad_arch = asm.ret(profile.bad_arch);
    let default = asm.ret(profile.default);
    let region = |asm: &mut Asm, abis: &[&AbiRules]| region(asm, abis, default, bad_arch);

    let i386: Vec<&AbiRules> = profile.abis.iter().filter(|a| a.abi == Abi::I386).collect();
    let i386 = if i386.is_empty() {
        bad_arch
    } else {
        region(&mut asm, &i386)
    };
    let x86_64: Vec<&AbiRules> = profile.abis.iter().filter(|a| a.abi != Abi::I386).collect();
    let x86_64 = region(&mut asm, &x86_64);

    let not_64 = asm.jump(Jump::Eq, AUDIT_ARCH_I386, i386, bad_arch);
    asm.jump(Jump::Eq, AUDIT_ARCH_X86_64, x86_64, not_64);
    asm.load(ARCH);
    asm.finish()
}

/// The code of one `seccomp_data.arch` value: i386, or x86-64 with or without x32.
fn region(asm: &mut Asm, abis: &[&AbiRules], default: Label, bad_arch: Label) -> Label {
    let mut rets: Vec<(u32, Label)> = Vec::new();
    let mut blocks: Vec<(u32, Label)> = Vec::new();
    for rule in abis
        .iter()
        .flat_map(|a| a.syscalls.iter().map(move |r| (a.abi, r)))
    {
        let (abi, rule) = rule;
        let block = block(asm, abi, rule, default, &mut rets);
        blocks.push((rule.nr, block));
    }
    blocks.sort_by_key(|(nr, _)| *nr);
    let mut start = dispatch(asm, &blocks, default);

    let find = |abi: Abi| abis.iter().find(|a| a.abi == abi);
    let is_32 = abis.iter().any(|a| a.abi == Abi::I386);
    if !is_32 && find(Abi::X32).is_none() {
        // libseccomp's x86-64-only filter: x32 calls get the bad-arch action, but -1 (what a
        // tracer sets to skip a call) goes on to the rules.
        let minus_one = asm.jump(Jump::Eq, u32::MAX, default, bad_arch);
        start = asm.jump(Jump::Ge, X32_SYSCALL_BIT, minus_one, start);
    }

    // runc's ENOSYS stub comes first, before any other test.
    let stubbed: Vec<(Abi, u32)> = abis
        .iter()
        .filter_map(|a| a.enosys_above.map(|max| (a.abi, max)))
        .collect();
    if !stubbed.is_empty() {
        let enosys = asm.ret(RET_ERRNO | libc::ENOSYS as u32);
        let above =
            |asm: &mut Asm, abi: Abi, start: Label| match stubbed.iter().find(|(a, _)| *a == abi) {
                Some((_, max)) => asm.jump(Jump::Gt, *max, enosys, start),
                None => start,
            };
        start = if is_32 {
            above(asm, Abi::I386, start)
        } else {
            let x32 = above(asm, Abi::X32, start);
            let x86_64 = above(asm, Abi::X86_64, start);
            asm.jump(Jump::Set, X32_SYSCALL_BIT, x32, x86_64)
        };
    }
    asm.goto(start);
    asm.load(NR)
}

/// The binary search on the call number (in A) for its block; `default` when it has none.
fn dispatch(asm: &mut Asm, blocks: &[(u32, Label)], default: Label) -> Label {
    if blocks.len() <= 3 {
        let mut next = default;
        for (nr, block) in blocks.iter().rev() {
            next = asm.jump(Jump::Eq, *nr, *block, next);
        }
        return next;
    }
    let (low, high) = blocks.split_at(blocks.len() / 2);
    let high_start = dispatch(asm, high, default);
    let low_start = dispatch(asm, low, default);
    asm.jump(Jump::Ge, high[0].0, high_start, low_start)
}

/// The code of one call: its action when an alternative matches, else the default action.
fn block(
    asm: &mut Asm,
    abi: Abi,
    rule: &SyscallRule,
    default: Label,
    rets: &mut Vec<(u32, Label)>,
) -> Label {
    if rule.alternatives.iter().any(Vec::is_empty) {
        // Shared by the unconditional calls of the region with the same action.
        if let Some((_, ret)) = rets.iter().find(|(a, _)| *a == rule.action) {
            return *ret;
        }
        let ret = asm.ret(rule.action);
        rets.push((rule.action, ret));
        return ret;
    }
    let matched = asm.ret(rule.action);
    let mut next = default;
    for alternative in rule.alternatives.iter().rev() {
        let mut then = matched;
        for cond in alternative.iter().rev() {
            then = condition(asm, abi.wide(), cond, then, next);
        }
        next = then;
    }
    next
}

/// The test of one condition: to `then` when it holds, else to `otherwise`.
fn condition(asm: &mut Asm, wide: bool, cond: &Cond, then: Label, otherwise: Label) -> Label {
    let lo_offset = ARGS + 8 * u32::from(cond.index);
    let hi_offset = lo_offset + 4;
    let lo = |v: u64| v as u32;
    let hi = |v: u64| (v >> 32) as u32;
    // The negated operators are their counterparts with the targets swapped.
    let (op, then, otherwise) = match cond.op {
        Op::Ne => (Op::Eq, otherwise, then),
        Op::Lt => (Op::Ge, otherwise, then),
        Op::Le => (Op::Gt, otherwise, then),
        op => (op, then, otherwise),
    };
    let value = cond.value;
    if !wide {
        match op {
            Op::MaskedEq => {
                asm.jump(Jump::Eq, lo(cond.value_two & value), then, otherwise);
                asm.and(lo(value));
            }
            Op::Gt => {
                asm.jump(Jump::Gt, lo(value), then, otherwise);
            }
            Op::Ge => {
                asm.jump(Jump::Ge, lo(value), then, otherwise);
            }
            _ => {
                asm.jump(Jump::Eq, lo(value), then, otherwise);
            }
        }
        return asm.load(lo_offset);
    }
    match op {
        Op::MaskedEq => {
            let datum = cond.value_two & value;
            asm.jump(Jump::Eq, lo(datum), then, otherwise);
            asm.and(lo(value));
            let low = asm.load(lo_offset);
            asm.jump(Jump::Eq, hi(datum), low, otherwise);
            asm.and(hi(value));
        }
        Op::Gt | Op::Ge => {
            let low_op = if op == Op::Gt { Jump::Gt } else { Jump::Ge };
            asm.jump(low_op, lo(value), then, otherwise);
            let low = asm.load(lo_offset);
            let same_high = asm.jump(Jump::Eq, hi(value), low, otherwise);
            asm.jump(Jump::Gt, hi(value), then, same_high);
        }
        _ => {
            asm.jump(Jump::Eq, lo(value), then, otherwise);
            let low = asm.load(lo_offset);
            asm.jump(Jump::Eq, hi(value), low, otherwise);
        }
    }
    asm.load(hi_offset)
}
