//! A classic-BPF assembler that writes the program backwards, from its last instruction to its
//! first: every jump goes forward, so its target is always written already and its offset
//! known. A conditional jump reaches at most 255 instructions: a farther target gets an
//! unconditional `ja` (32-bit offset) right after the test.

/// An instruction already written, by its distance from the end of the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Label(usize);

/// The program being written, last instruction first.
#[derive(Default)]
pub(super) struct Asm {
    reversed: Vec<libc::sock_filter>,
}

/// `BPF_LD | BPF_W | BPF_ABS`: load the 32-bit word at offset `k` of `seccomp_data`.
const LD_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
/// `BPF_ALU | BPF_AND | BPF_K`.
const AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
/// `BPF_RET | BPF_K`.
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// `BPF_JMP | BPF_JA`.
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;

/// The conditional jumps (against the constant `k`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Jump {
    /// `A == k`.
    Eq,
    /// `A > k` (unsigned).
    Gt,
    /// `A >= k` (unsigned).
    Ge,
    /// `A & k != 0`.
    Set,
}

impl Jump {
    fn code(self) -> u16 {
        let op = match self {
            Jump::Eq => libc::BPF_JEQ,
            Jump::Gt => libc::BPF_JGT,
            Jump::Ge => libc::BPF_JGE,
            Jump::Set => libc::BPF_JSET,
        };
        (libc::BPF_JMP | op | libc::BPF_K) as u16
    }
}

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

impl Asm {
    fn push(&mut self, i: libc::sock_filter) -> Label {
        self.reversed.push(i);
        Label(self.reversed.len() - 1)
    }

    /// How many instructions an instruction written next skips to reach `to`.
    fn offset(&self, to: Label) -> usize {
        self.reversed.len() - 1 - to.0
    }

    /// `ret k`.
    pub(super) fn ret(&mut self, k: u32) -> Label {
        self.push(insn(RET_K, 0, 0, k))
    }

    /// `ld [offset]`: a word of `seccomp_data`.
    pub(super) fn load(&mut self, offset: u32) -> Label {
        self.push(insn(LD_ABS, 0, 0, offset))
    }

    /// `and k`.
    pub(super) fn and(&mut self, k: u32) -> Label {
        self.push(insn(AND_K, 0, 0, k))
    }

    /// `ja to` (nothing when `to` is the next instruction already).
    pub(super) fn goto(&mut self, to: Label) -> Label {
        if self.offset(to) == 0 {
            return to;
        }
        self.push(insn(JA, 0, 0, self.offset(to) as u32))
    }

    /// `j<op> k, then, otherwise`, with a `ja` after it for a target out of reach.
    pub(super) fn jump(&mut self, op: Jump, k: u32, then: Label, otherwise: Label) -> Label {
        if then == otherwise {
            return self.goto(then);
        }
        let far = |asm: &Asm, to: Label| asm.offset(to) > usize::from(u8::MAX);
        let (mut then, mut otherwise) = (then, otherwise);
        if far(self, then) {
            then = self.push(insn(JA, 0, 0, self.offset(then) as u32));
        }
        if far(self, otherwise) {
            otherwise = self.push(insn(JA, 0, 0, self.offset(otherwise) as u32));
            // One more instruction in between may have put `then` out of reach.
            if far(self, then) {
                then = self.push(insn(JA, 0, 0, self.offset(then) as u32));
            }
        }
        let (jt, jf) = (self.offset(then) as u8, self.offset(otherwise) as u8);
        self.push(insn(op.code(), jt, jf, k))
    }

    /// The program, first instruction first.
    pub(super) fn finish(mut self) -> Vec<libc::sock_filter> {
        self.reversed.reverse();
        self.reversed
    }
}
