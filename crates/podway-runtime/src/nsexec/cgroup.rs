//! The cgroups of a process and the files that put another process in them (cgroup v1: one
//! per hierarchy; v2: the unified one; hybrid setups: both).
//!
//! In a v1 hierarchy the (single-threaded) child writes "0" to `tasks`, not `cgroup.procs`:
//! the kernel moves just the calling thread then, without the global threadgroup lock whose
//! write side waits for an RCU grace period (milliseconds on a busy machine, on every exec).
//! For a process of one thread both files do the same. v2 has only `cgroup.procs`.
use std::path::{Path, PathBuf};

/// The files that move the writer into the cgroups of `pid` that differ from the caller's own.
pub(crate) fn files_to_join(pid: u32) -> std::io::Result<Vec<PathBuf>> {
    let theirs = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let ours = std::fs::read_to_string("/proc/self/cgroup")?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mounts = cgroup_mounts(&mountinfo);
    Ok(memberships(&theirs)
        .filter(|m| !memberships(&ours).any(|o| o == *m))
        .filter_map(|(controllers, path)| {
            let mount = mounts
                .iter()
                .find(|m| m.serves(controllers) && path.starts_with(m.root))?;
            let relative = path[mount.root.len()..].trim_start_matches('/');
            let file = if mount.options.is_some() {
                "tasks"
            } else {
                "cgroup.procs"
            };
            Some(Path::new(mount.mount_point).join(relative).join(file))
        })
        .collect())
}

/// `(controllers, path)` of each line of a `/proc/PID/cgroup` (controllers empty for v2).
fn memberships(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|line| {
        let mut fields = line.splitn(3, ':');
        let _id = fields.next()?;
        Some((fields.next()?, fields.next()?))
    })
}

/// A mounted cgroup hierarchy.
struct CgroupMount<'a> {
    mount_point: &'a str,
    /// The hierarchy's folder mounted there (`/` on the host).
    root: &'a str,
    /// Super options: the controllers (and `name=…`) of a v1 hierarchy; `None` for v2.
    options: Option<Vec<&'a str>>,
}

impl CgroupMount<'_> {
    /// Whether this mount is the hierarchy of a `/proc/PID/cgroup` controller list.
    fn serves(&self, controllers: &str) -> bool {
        match &self.options {
            None => controllers.is_empty(),
            Some(options) => {
                !controllers.is_empty() && controllers.split(',').all(|c| options.contains(&c))
            }
        }
    }
}

/// The cgroup mounts of a mountinfo text.
fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount<'_>> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut left = left.split(' ');
            let root = left.nth(3)?;
            let mount_point = left.next()?;
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let _source = right.next()?;
            let options = right.next()?;
            let options = match fstype {
                "cgroup" => Some(options.split(',').collect()),
                "cgroup2" => None,
                _ => return None,
            };
            // Mount points with spaces are octal-escaped; cgroup ones never have any.
            (!mount_point.contains('\\')).then_some(CgroupMount {
                mount_point,
                root,
                options,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
31 25 0:27 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
32 25 0:28 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
33 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn hierarchies_by_controllers() {
        let mounts = cgroup_mounts(MOUNTINFO);
        let find = |c: &str| mounts.iter().find(|m| m.serves(c)).map(|m| m.mount_point);
        assert_eq!(find("cpu"), Some("/sys/fs/cgroup/cpu"));
        assert_eq!(find("name=systemd"), Some("/sys/fs/cgroup/systemd"));
        assert_eq!(find(""), Some("/sys/fs/cgroup/unified"));
        assert_eq!(find("cpu,cpuacct"), Some("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(find("memory"), None);
        let lines: Vec<_> = memberships("4:memory:/podway/x\n0::/\n").collect();
        assert_eq!(lines, [("memory", "/podway/x"), ("", "/")]);
    }
}
