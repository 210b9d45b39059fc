#!/usr/bin/env python3
"""Differential check of the seccomp compiler against libseccomp (run by hand, not in CI).

Builds a set of OCI profiles (every operator on 64-bit values, every action, ORed and ANDed
conditions, i386 socketcall/ipc multiplexing, x86-64 alone, x32 or i386 alone, no architecture,
podway's RuntimeDefault with and without CAP_SYS_ADMIN), has podway's compiler write their
programs (the ignored unit test `dump_programs`), builds the same profiles with the installed
libseccomp (libseccomp2, which runc links) the way runc 1.1 adds them, and runs both programs
in a small classic-BPF interpreter over every call number of the three x86 ABIs (plus -1,
unknown numbers and another architecture) with arguments around the profiles' values.
Only profiles without runc's ENOSYS stub are compared (permissive default action, or no
architecture listed), so that libseccomp's program is exactly what runc loads.

    crates/podway-runtime/src/seccomp_bpf/diff_libseccomp.py

Prints one line per profile and exits 1 on any verdict that differs.
"""
import ctypes
import glob
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

HEADERS = "/usr/include/x86_64-linux-gnu/asm/"
ARCHES = {"SCMP_ARCH_X86_64": 0xC000003E, "SCMP_ARCH_X86": 0x40000003, "SCMP_ARCH_X32": 0x4000003E}
OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
       "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
AUDIT_X86_64, AUDIT_I386, AUDIT_AARCH64 = 0xC000003E, 0x40000003, 0xC00000B7
X86 = list(ARCHES)
U64 = (1 << 64) - 1


def action(name, errno):
    errno = 1 if errno is None else errno  # EPERM, as runc
    return {"SCMP_ACT_KILL": 0, "SCMP_ACT_KILL_THREAD": 0, "SCMP_ACT_KILL_PROCESS": 0x80000000,
            "SCMP_ACT_TRAP": 0x30000, "SCMP_ACT_ERRNO": 0x50000 | (errno & 0xFFFF),
            "SCMP_ACT_TRACE": 0x7FF00000 | (errno & 0xFFFF), "SCMP_ACT_LOG": 0x7FFC0000,
            "SCMP_ACT_ALLOW": 0x7FFF0000}[name]


def profiles():
    big = 0x0000000500000010
    out = {}
    for i, op in enumerate(OPS):
        value = 0xFF00000000FF if op == "SCMP_CMP_MASKED_EQ" else big
        arg = {"index": 2, "value": value, "valueTwo": 0x120000000034, "op": op}
        out[f"op-{i}"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": X86, "syscalls": [
            {"names": ["read", "pread64"], "action": "SCMP_ACT_ERRNO", "errnoRet": 99, "args": [arg]}]}
    eq = lambda index, value: {"index": index, "value": value, "op": "SCMP_CMP_EQ"}
    out["mixed"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": X86, "syscalls": [
        {"names": ["write"], "action": "SCMP_ACT_ERRNO",
         "args": [eq(0, 1), {"index": 2, "value": 10, "op": "SCMP_CMP_GT"}]},
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [eq(0, 3), eq(0, 4)]},
        {"names": ["write"], "action": "SCMP_ACT_ERRNO", "args": [eq(0, 7)]},
        {"names": ["socket", "recv", "shmget", "semop"], "action": "SCMP_ACT_TRAP"},
        {"names": ["connect"], "action": "SCMP_ACT_TRAP", "args": [eq(0, 5), eq(1, 6)]},
        {"names": ["mount", "vm86", "kill"], "action": "SCMP_ACT_KILL_PROCESS"},
        {"names": ["kill"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["getpid"], "action": "SCMP_ACT_LOG"},
        {"names": ["getppid"], "action": "SCMP_ACT_TRACE", "errnoRet": 5},
        {"names": ["no_such_call"], "action": "SCMP_ACT_KILL"}]}
    deny = {"names": ["mount", "socket"], "action": "SCMP_ACT_ERRNO"}
    out["x86-64-only"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                          "syscalls": [deny]}
    out["x32-only"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X32"],
                       "syscalls": [deny]}
    out["i386-only"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"],
                        "syscalls": [deny]}
    out["no-arch-kill"] = {"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [
        {"names": ["mount", "read", "write"], "action": "SCMP_ACT_ALLOW"}]}
    return out


def libseccomp_program(lib, profile):
    default = action(profile["defaultAction"], profile.get("defaultErrnoRet"))
    ctx = lib.seccomp_init(default)
    try:
        for arch in profile.get("architectures", []):
            rc = lib.seccomp_arch_add(ctx, ARCHES[arch])
            assert rc in (0, -17), (arch, rc)  # -EEXIST: the native one
        for rule in profile.get("syscalls", []):
            act = action(rule["action"], rule.get("errnoRet"))
            for name in rule["names"]:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if act == default or nr == -1:
                    continue  # runc skips both
                args = [Arg(a["index"], OPS[a["op"]], a.get("value", 0), a.get("valueTwo", 0))
                        for a in rule.get("args", [])]
                indexes = [a.arg for a in args]
                groups = [[a] for a in args] if len(set(indexes)) < len(indexes) else [args]
                for group in groups:
                    array = (Arg * len(group))(*group) if group else None
                    rc = lib.seccomp_rule_add_array(ctx, act, nr, len(group), array)
                    assert rc == 0, (name, rc)
        read_fd, write_fd = os.pipe()
        assert lib.seccomp_export_bpf(ctx, write_fd) == 0
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            return parse(f.read())
    finally:
        lib.seccomp_release(ctx)


def parse(data):
    return [struct.unpack("=HBBI", data[i:i + 8]) for i in range(0, len(data), 8)]


def run(program, arch, nr, args):
    data = struct.pack("=IIQ6Q", nr, arch, 0, *args)
    a, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == 0x20:
            a, pc = struct.unpack_from("=I", data, k)[0], pc + 1
        elif code == 0x54:
            a, pc = a & k, pc + 1
        elif code == 0x06:
            return k
        elif code == 0x05:
            pc += 1 + k
        elif code in (0x15, 0x25, 0x35, 0x45):
            taken = {0x15: a == k, 0x25: a > k, 0x35: a >= k, 0x45: a & k != 0}[code]
            pc += 1 + (jt if taken else jf)
        else:
            raise ValueError(f"instruction {code:#x}")


def numbers(header):
    out = []
    for line in open(HEADERS + header):
        if line.startswith("#define __NR_"):
            value = line.split(None, 2)[2].strip().strip("()")
            out.append(sum(int(p.strip()) if p.strip().isdigit() else 0x40000000
                           for p in value.split("+")))
    return out


def argument_values(profile):
    values = {0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 17, 0x10000000, 0x10000011, 0xFFFFFFFF, U64, 1 << 32}
    for rule in profile.get("syscalls", []):
        for arg in rule.get("args", []):
            for v in (arg.get("value", 0), arg.get("valueTwo", 0)):
                values.update({(v - 1) & U64, v, (v + 1) & U64, v & 0xFFFFFFFF,
                               v & 0xFFFFFFFF00000000, v ^ (1 << 33)})
    return sorted(values)


class Arg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def main():
    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(Arg)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../../.."))
    calls_64 = numbers("unistd_64.h") + numbers("unistd_x32.h") + [0xFFFFFFFF, 0x400003E7, 1000, 0x80000001]
    calls_32 = numbers("unistd_32.h") + [0xFFFFFFFF, 1000]
    cases = ([(AUDIT_X86_64, nr) for nr in calls_64] + [(AUDIT_I386, nr) for nr in calls_32]
             + [(AUDIT_AARCH64, 5)])
    rng = random.Random(1)
    mismatches = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, profile in profiles().items():
            with open(os.path.join(tmp, name + ".json"), "w") as f:
                json.dump(profile, f)
        subprocess.run(["cargo", "test", "-q", "-p", "podway-runtime", "--lib",
                        "seccomp_bpf::tests::dump_programs", "--", "--ignored"],
                       cwd=root, check=True, env=dict(os.environ, SECCOMP_DIFF_DIR=tmp),
                       stdout=subprocess.DEVNULL)
        print("| profile | cases | libseccomp insns | podway insns | mismatches |")
        print("|---|---:|---:|---:|---:|")
        for path in sorted(glob.glob(os.path.join(tmp, "*.json"))):
            profile = json.load(open(path))
            reference = libseccomp_program(lib, profile)
            ours = parse(open(path[:-5] + ".bpf", "rb").read())
            values, count, bad = argument_values(profile), 0, 0
            for arch, nr in cases:
                for _ in range(12):
                    args = [rng.choice(values) for _ in range(6)]
                    want, got = run(reference, arch, nr, args), run(ours, arch, nr, args)
                    count += 1
                    if want != got:
                        bad += 1
                        if bad <= 5:
                            print(f"  {os.path.basename(path)} arch {arch:#x} nr {nr:#x} "
                                  f"args {[hex(a) for a in args]}: libseccomp {want:#x}, podway {got:#x}",
                                  file=sys.stderr)
            mismatches += bad
            print(f"| {os.path.basename(path)[:-5]} | {count} | {len(reference)} | {len(ours)} | {bad} |")
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
