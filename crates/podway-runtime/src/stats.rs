//! Resource figures of containers and sandboxes, read from the kernel: the container's cgroup
//! (`/podway/<id>` in every hierarchy, as the bundle names it; cgroup v1 or v2), its writable
//! layer (`DATA/containers/<id>/upper`) and a process's network interfaces (`/proc/PID/net/dev`).
//!
//! Every figure is optional: a container that is not running has no cgroup, and a kernel
//! without a controller lacks its files; callers report what is there.
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Result;
use crate::util::io_ctx;

/// Where cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// A v1 memory limit at or above this means "no limit" (the kernel's PAGE_COUNTER_MAX in bytes).
const UNLIMITED: u64 = 1 << 62;

/// CPU, memory and process figures of one container's cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Cumulative CPU time of all its tasks, nanoseconds (`cpuacct.usage`).
    pub cpu_usage_ns: Option<u64>,
    /// Memory charged to the cgroup, page cache included (`memory.usage_in_bytes`).
    pub memory_usage_bytes: Option<u64>,
    /// Usage minus inactive file pages, as the kubelet computes the working set.
    pub memory_working_set_bytes: Option<u64>,
    /// Anonymous memory (`total_rss` / `anon`).
    pub memory_rss_bytes: Option<u64>,
    /// The memory limit, when one is set.
    pub memory_limit_bytes: Option<u64>,
    /// Page faults.
    pub page_faults: Option<u64>,
    /// Major page faults.
    pub major_page_faults: Option<u64>,
    /// Number of tasks (`pids.current`).
    pub pids: Option<u64>,
}

/// Disk use of a container's writable layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerUsage {
    /// The folder measured (the overlay's upper dir).
    pub path: PathBuf,
    /// Bytes of disk blocks used, each inode counted once (as `du`).
    pub used_bytes: u64,
    /// Inodes used.
    pub inodes_used: u64,
}

/// Byte and error counters of one network interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    /// Interface name.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Send errors.
    pub tx_errors: u64,
}

/// The figures of container `id`'s cgroup (all `None` when it has none, e.g. not running).
pub fn container_cgroup(id: &str) -> CgroupStats {
    let root = Path::new(CGROUP_ROOT);
    if root.join("cgroup.controllers").exists() {
        v2_stats(&root.join("podway").join(id))
    } else {
        v1_stats(root, &Path::new("podway").join(id))
    }
}

/// The disk use of container `id`'s writable layer under the runtime's data folder.
pub fn writable_layer(data_dir: &Path, id: &str) -> Result<LayerUsage> {
    let path = data_dir.join("containers").join(id).join("upper");
    let mut seen = HashSet::new();
    let (mut used_bytes, mut inodes_used) = (0, 0);
    let mut pending = vec![path.clone()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(io_ctx(format!("reading {}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(io_ctx(format!("reading {}", dir.display())))?;
            // A file removed while we walk is simply not counted.
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            }
            if seen.insert((meta.dev(), meta.ino())) {
                inodes_used += 1;
                used_bytes += meta.blocks() * 512;
            }
        }
    }
    Ok(LayerUsage {
        path,
        used_bytes,
        inodes_used,
    })
}

/// Writable-layer usage with a time to live: walking every container's upper dir on each stats
/// call is what made `ListContainerStats` slow, and disk use moves slowly (containerd refreshes
/// its snapshot usage every 10 s as well).
pub struct LayerUsageCache {
    data_dir: PathBuf,
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, LayerUsage)>>,
}

impl LayerUsageCache {
    /// Most entries kept; past this, expired ones are dropped (removed containers' among them).
    const MAX_ENTRIES: usize = 4096;

    /// A cache of the layers under the runtime's `data_dir`, each figure kept for `ttl`.
    pub fn new(data_dir: PathBuf, ttl: Duration) -> LayerUsageCache {
        LayerUsageCache {
            data_dir,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Container `id`'s writable-layer usage, measured at most `ttl` ago. Blocking.
    pub fn get(&self, id: &str) -> Result<LayerUsage> {
        let now = Instant::now();
        if let Some((at, usage)) = self.lock().get(id)
            && now.duration_since(*at) < self.ttl
        {
            return Ok(usage.clone());
        }
        // Measured without the lock: other containers' figures stay readable meanwhile.
        let usage = writable_layer(&self.data_dir, id)?;
        let mut entries = self.lock();
        if entries.len() >= Self::MAX_ENTRIES {
            entries.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
        }
        entries.insert(id.to_string(), (now, usage.clone()));
        Ok(usage)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, LayerUsage)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The interfaces of process `pid`'s network namespace (loopback excluded).
pub fn network(pid: u32) -> Result<Vec<InterfaceStats>> {
    let path = format!("/proc/{pid}/net/dev");
    let text = std::fs::read_to_string(&path).map_err(io_ctx(format!("reading {path}")))?;
    Ok(parse_net_dev(&text)
        .into_iter()
        .filter(|i| i.name != "lo")
        .collect())
}

/// Parses `/proc/net/dev`: two header lines, then `name: rx_bytes packets errs ... tx_bytes packets errs ...`.
fn parse_net_dev(text: &str) -> Vec<InterfaceStats> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let n: Vec<u64> = rest
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            Some(InterfaceStats {
                name: name.trim().to_owned(),
                rx_bytes: *n.first()?,
                rx_errors: *n.get(2)?,
                tx_bytes: *n.get(8)?,
                tx_errors: *n.get(10)?,
            })
        })
        .collect()
}

/// The folder of a v1 controller's hierarchy (`cpuacct` may be co-mounted as `cpu,cpuacct`).
fn v1_hierarchy(root: &Path, controller: &str) -> Option<PathBuf> {
    let direct = root.join(controller);
    if direct.is_dir() {
        return Some(direct);
    }
    std::fs::read_dir(root).ok()?.flatten().find_map(|e| {
        let name = e.file_name();
        name.to_str()?
            .split(',')
            .any(|c| c == controller)
            .then(|| e.path())
    })
}

fn v1_stats(root: &Path, cgroup: &Path) -> CgroupStats {
    let dir = |controller: &str| v1_hierarchy(root, controller).map(|h| h.join(cgroup));
    let cpu_usage_ns = dir("cpuacct").and_then(|d| read_u64(&d.join("cpuacct.usage")));
    let memory = dir("memory");
    let stat = memory
        .as_ref()
        .and_then(|d| std::fs::read_to_string(d.join("memory.stat")).ok())
        .unwrap_or_default();
    let usage = memory
        .as_ref()
        .and_then(|d| read_u64(&d.join("memory.usage_in_bytes")));
    let limit = memory
        .as_ref()
        .and_then(|d| read_u64(&d.join("memory.limit_in_bytes")))
        .filter(|&l| l < UNLIMITED);
    CgroupStats {
        cpu_usage_ns,
        memory_usage_bytes: usage,
        memory_working_set_bytes: working_set(usage, stat_field(&stat, "total_inactive_file")),
        memory_rss_bytes: stat_field(&stat, "total_rss"),
        memory_limit_bytes: limit,
        page_faults: stat_field(&stat, "total_pgfault"),
        major_page_faults: stat_field(&stat, "total_pgmajfault"),
        pids: dir("pids").and_then(|d| read_u64(&d.join("pids.current"))),
    }
}

fn v2_stats(dir: &Path) -> CgroupStats {
    let cpu = std::fs::read_to_string(dir.join("cpu.stat")).unwrap_or_default();
    let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
    let usage = read_u64(&dir.join("memory.current"));
    CgroupStats {
        cpu_usage_ns: stat_field(&cpu, "usage_usec").map(|us| us.saturating_mul(1000)),
        memory_usage_bytes: usage,
        memory_working_set_bytes: working_set(usage, stat_field(&stat, "inactive_file")),
        memory_rss_bytes: stat_field(&stat, "anon"),
        // "max" (no limit) does not parse.
        memory_limit_bytes: read_u64(&dir.join("memory.max")),
        page_faults: stat_field(&stat, "pgfault"),
        major_page_faults: stat_field(&stat, "pgmajfault"),
        pids: read_u64(&dir.join("pids.current")),
    }
}

/// The kubelet's working set: usage less inactive file pages (never below zero).
fn working_set(usage: Option<u64>, inactive_file: Option<u64>) -> Option<u64> {
    usage.map(|u| u.saturating_sub(inactive_file.unwrap_or(0)))
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a `key value` per line file (`memory.stat`, `cpu.stat`).
fn stat_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_counters() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  eth0: 5000 10 1 0 0 0 0 0 7000 12 3 0 0 0 0 0\n";
        let all = parse_net_dev(text);
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[1],
            InterfaceStats {
                name: "eth0".into(),
                rx_bytes: 5000,
                rx_errors: 1,
                tx_bytes: 7000,
                tx_errors: 3,
            }
        );
    }

    #[test]
    fn working_set_subtracts_inactive_file() {
        let stat = "cache 10\ntotal_inactive_file 300\ntotal_rss 50\n";
        assert_eq!(stat_field(stat, "total_inactive_file"), Some(300));
        assert_eq!(working_set(Some(1000), Some(300)), Some(700));
        assert_eq!(working_set(Some(100), Some(300)), Some(0));
        assert_eq!(working_set(None, Some(300)), None);
    }

    #[test]
    fn writable_layer_counts_blocks_and_inodes() {
        let data = tempfile::tempdir().unwrap();
        let upper = data.path().join("containers/c1/upper");
        std::fs::create_dir_all(upper.join("d")).unwrap();
        std::fs::write(upper.join("d/f"), vec![1u8; 100_000]).unwrap();
        std::fs::hard_link(upper.join("d/f"), upper.join("g")).unwrap();
        let usage = writable_layer(data.path(), "c1").unwrap();
        assert_eq!(usage.inodes_used, 2, "folder d and the file (linked twice)");
        assert!(usage.used_bytes >= 100_000, "{usage:?}");
        assert!(writable_layer(data.path(), "nope").is_err());
    }

    #[test]
    fn layer_usage_is_cached_for_its_ttl() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let upper = tmp.path().join("containers/c1/upper");
        std::fs::create_dir_all(&upper).unwrap_or_else(|e| panic!("{e}"));
        let cache = LayerUsageCache::new(tmp.path().to_path_buf(), Duration::from_secs(3600));
        let first = cache.get("c1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.inodes_used, 0);
        std::fs::write(upper.join("f"), [1u8; 8192]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cache.get("c1").ok(), Some(first), "within the ttl");
        let fresh = LayerUsageCache::new(tmp.path().to_path_buf(), Duration::ZERO);
        assert_eq!(fresh.get("c1").map(|u| u.inodes_used).ok(), Some(1));
        assert!(cache.get("missing").is_err());
    }
}
