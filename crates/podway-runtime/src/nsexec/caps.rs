//! Capability numbers (`linux/capability.h`) of the OCI spec's names, as bit masks.
use oci_spec::runtime::{Capabilities, Capability};

/// The kernel's number of a capability.
fn number(cap: Capability) -> u32 {
    use Capability::*;
    match cap {
        Chown => 0,
        DacOverride => 1,
        DacReadSearch => 2,
        Fowner => 3,
        Fsetid => 4,
        Kill => 5,
        Setgid => 6,
        Setuid => 7,
        Setpcap => 8,
        LinuxImmutable => 9,
        NetBindService => 10,
        NetBroadcast => 11,
        NetAdmin => 12,
        NetRaw => 13,
        IpcLock => 14,
        IpcOwner => 15,
        SysModule => 16,
        SysRawio => 17,
        SysChroot => 18,
        SysPtrace => 19,
        SysPacct => 20,
        SysAdmin => 21,
        SysBoot => 22,
        SysNice => 23,
        SysResource => 24,
        SysTime => 25,
        SysTtyConfig => 26,
        Mknod => 27,
        Lease => 28,
        AuditWrite => 29,
        AuditControl => 30,
        Setfcap => 31,
        MacOverride => 32,
        MacAdmin => 33,
        Syslog => 34,
        WakeAlarm => 35,
        BlockSuspend => 36,
        AuditRead => 37,
        Perfmon => 38,
        Bpf => 39,
        CheckpointRestore => 40,
    }
}

/// The mask of a set, leaving out capabilities above `last_cap` (unknown to this kernel; runc
/// ignores them too).
pub(crate) fn mask(set: Option<&Capabilities>, last_cap: u32) -> u64 {
    set.into_iter()
        .flatten()
        .map(|c| number(*c))
        .filter(|&n| n <= last_cap && n < 64)
        .fold(0, |m, n| m | (1 << n))
}

/// The highest capability this kernel knows (`/proc/sys/kernel/cap_last_cap`, read once).
pub(crate) fn last_cap() -> u32 {
    static LAST: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *LAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            // CAP_CHECKPOINT_RESTORE, the last one of Linux 5.9 to 6.x.
            .unwrap_or(40)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_by_kernel_number() {
        let set: Capabilities = [Capability::Chown, Capability::Kill, Capability::Bpf]
            .into_iter()
            .collect();
        assert_eq!(mask(Some(&set), 40), 1 | (1 << 5) | (1 << 39));
        assert_eq!(mask(Some(&set), 38), 1 | (1 << 5));
        assert_eq!(mask(None, 40), 0);
    }
}
