//! CRI container and pod sandbox stats from [`podway_runtime::stats`]: cgroup CPU and memory,
//! the writable layer's disk use, the pod's network interfaces and process count.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use k8s_cri::v1 as cri;
use podway_runtime::stats::{self, CgroupStats};
use podway_runtime::{ContainerInfo, ContainerState, SandboxInfo};

use crate::convert;

/// Past CPU samples kept for `usage_nano_cores`; beyond this the table is cleared (ids of
/// removed containers would otherwise stay forever).
const MAX_SAMPLES: usize = 4096;

/// How long a writable layer's measured usage is reported before it is measured again (as
/// containerd, whose snapshot usage is refreshed every 10 s).
const LAYER_USAGE_TTL: Duration = Duration::from_secs(10);

/// Reads stats; remembers the last CPU sample of each container and sandbox so that
/// `usage_nano_cores` is the rate since the previous call (as containerd computes it).
pub(crate) struct StatsReader {
    layers: stats::LayerUsageCache,
    last_cpu: Mutex<HashMap<String, (i64, u64)>>,
}

impl StatsReader {
    /// A reader for the containers kept under the runtime's `data_dir`.
    pub(crate) fn new(data_dir: PathBuf) -> StatsReader {
        StatsReader {
            layers: stats::LayerUsageCache::new(data_dir, LAYER_USAGE_TTL),
            last_cpu: Mutex::new(HashMap::new()),
        }
    }

    /// A container's stats: CPU and memory while it runs, its writable layer always.
    /// Blocking (reads cgroup files and walks the layer).
    pub(crate) fn container(&self, info: &ContainerInfo, now: i64) -> cri::ContainerStats {
        let cgroup = self.cgroup_of(info);
        self.container_with(info, &cgroup, now)
    }

    /// A pod's stats: the sums over its running containers, its network and process count.
    /// Blocking.
    pub(crate) fn sandbox(
        &self,
        info: &SandboxInfo,
        containers: &[ContainerInfo],
        now: i64,
    ) -> cri::PodSandboxStats {
        let mut total = CgroupStats::default();
        let containers: Vec<cri::ContainerStats> = containers
            .iter()
            .filter(|c| c.sandbox_id == info.id && c.state == ContainerState::Running)
            .map(|c| {
                let cgroup = self.cgroup_of(c);
                add(&mut total, &cgroup);
                self.container_with(c, &cgroup, now)
            })
            .collect();
        cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: info.id.clone(),
                metadata: Some(convert::sandbox_metadata(&info.spec)),
                labels: convert::to_hash(&info.spec.labels),
                annotations: convert::to_hash(&info.spec.annotations),
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: Some(self.cpu(&info.id, &total, now)),
                memory: Some(memory(&total, now)),
                network: (info.pid != 0).then(|| network(info.pid, now)),
                process: Some(cri::ProcessUsage {
                    timestamp: now,
                    process_count: total.pids.map(value),
                }),
                containers,
            }),
            windows: None,
        }
    }

    fn cgroup_of(&self, info: &ContainerInfo) -> CgroupStats {
        if info.state == ContainerState::Running {
            stats::container_cgroup(&info.id)
        } else {
            CgroupStats::default()
        }
    }

    fn container_with(
        &self,
        info: &ContainerInfo,
        cgroup: &CgroupStats,
        now: i64,
    ) -> cri::ContainerStats {
        let writable_layer = match self.layers.get(&info.id) {
            Ok(usage) => Some(cri::FilesystemUsage {
                timestamp: now,
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: usage.path.display().to_string(),
                }),
                used_bytes: Some(value(usage.used_bytes)),
                inodes_used: Some(value(usage.inodes_used)),
            }),
            Err(err) => {
                tracing::debug!(container = %info.id, %err, "writable layer usage");
                None
            }
        };
        let running = info.state == ContainerState::Running;
        cri::ContainerStats {
            attributes: Some(cri::ContainerAttributes {
                id: info.id.clone(),
                metadata: Some(convert::container_metadata(&info.spec)),
                labels: convert::to_hash(&info.spec.labels),
                annotations: convert::to_hash(&info.spec.annotations),
            }),
            cpu: running.then(|| self.cpu(&info.id, cgroup, now)),
            memory: running.then(|| memory(cgroup, now)),
            writable_layer,
            swap: None,
        }
    }

    /// CPU usage of `key` (a container or sandbox id), with the rate since its last sample.
    fn cpu(&self, key: &str, cgroup: &CgroupStats, now: i64) -> cri::CpuUsage {
        let usage_nano_cores = cgroup.cpu_usage_ns.and_then(|usage| {
            let mut last = self
                .last_cpu
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.len() >= MAX_SAMPLES {
                last.clear();
            }
            let previous = last.insert(key.to_owned(), (now, usage));
            let (then, before) = previous?;
            let elapsed = u64::try_from(now - then).ok().filter(|&e| e > 0)?;
            let used = u128::from(usage.checked_sub(before)?);
            u64::try_from(used * 1_000_000_000 / u128::from(elapsed)).ok()
        });
        cri::CpuUsage {
            timestamp: now,
            usage_core_nano_seconds: cgroup.cpu_usage_ns.map(value),
            usage_nano_cores: usage_nano_cores.map(value),
        }
    }
}

/// Whether a container matches a `ListContainerStats` filter (id, sandbox id, labels).
pub(crate) fn container_matches(filter: &cri::ContainerStatsFilter, info: &ContainerInfo) -> bool {
    (filter.id.is_empty() || filter.id == info.id)
        && (filter.pod_sandbox_id.is_empty() || filter.pod_sandbox_id == info.sandbox_id)
        && convert::labels_match(&filter.label_selector, &info.spec.labels)
}

/// Whether a sandbox matches a `ListPodSandboxStats` filter (id, labels).
pub(crate) fn sandbox_matches(filter: &cri::PodSandboxStatsFilter, info: &SandboxInfo) -> bool {
    (filter.id.is_empty() || filter.id == info.id)
        && convert::labels_match(&filter.label_selector, &info.spec.labels)
}

fn value(value: u64) -> cri::UInt64Value {
    cri::UInt64Value { value }
}

fn memory(cgroup: &CgroupStats, now: i64) -> cri::MemoryUsage {
    let available = cgroup
        .memory_limit_bytes
        .zip(cgroup.memory_working_set_bytes)
        .map(|(limit, ws)| limit.saturating_sub(ws));
    cri::MemoryUsage {
        timestamp: now,
        working_set_bytes: cgroup.memory_working_set_bytes.map(value),
        available_bytes: available.map(value),
        usage_bytes: cgroup.memory_usage_bytes.map(value),
        rss_bytes: cgroup.memory_rss_bytes.map(value),
        page_faults: cgroup.page_faults.map(value),
        major_page_faults: cgroup.major_page_faults.map(value),
    }
}

/// Adds `more` to `total`, figure by figure (a figure missing from both stays missing).
fn add(total: &mut CgroupStats, more: &CgroupStats) {
    fn sum(a: &mut Option<u64>, b: Option<u64>) {
        if let Some(b) = b {
            *a = Some(a.unwrap_or(0).saturating_add(b));
        }
    }
    sum(&mut total.cpu_usage_ns, more.cpu_usage_ns);
    sum(&mut total.memory_usage_bytes, more.memory_usage_bytes);
    sum(
        &mut total.memory_working_set_bytes,
        more.memory_working_set_bytes,
    );
    sum(&mut total.memory_rss_bytes, more.memory_rss_bytes);
    sum(&mut total.page_faults, more.page_faults);
    sum(&mut total.major_page_faults, more.major_page_faults);
    sum(&mut total.pids, more.pids);
}

/// The pod's network interfaces, seen from its pause process; the default one is `eth0`
/// when there is one (the CNI convention), else the first.
fn network(pid: u32, now: i64) -> cri::NetworkUsage {
    let interfaces: Vec<cri::NetworkInterfaceUsage> = stats::network(pid)
        .unwrap_or_default()
        .into_iter()
        .map(|i| cri::NetworkInterfaceUsage {
            name: i.name,
            rx_bytes: Some(value(i.rx_bytes)),
            rx_errors: Some(value(i.rx_errors)),
            tx_bytes: Some(value(i.tx_bytes)),
            tx_errors: Some(value(i.tx_errors)),
        })
        .collect();
    let default_interface = interfaces
        .iter()
        .find(|i| i.name == "eth0")
        .or_else(|| interfaces.first())
        .cloned();
    cri::NetworkUsage {
        timestamp: now,
        default_interface,
        interfaces,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nano_cores_is_the_rate_since_the_last_sample() {
        let reader = StatsReader::new(PathBuf::from("/nonexistent"));
        let cgroup = |ns| CgroupStats {
            cpu_usage_ns: Some(ns),
            ..Default::default()
        };
        let first = reader.cpu("c", &cgroup(1_000), 1_000_000_000);
        assert_eq!(first.usage_core_nano_seconds, Some(value(1_000)));
        assert_eq!(first.usage_nano_cores, None);
        // Half a core over two seconds.
        let second = reader.cpu("c", &cgroup(1_000 + 1_000_000_000), 3_000_000_000);
        assert_eq!(second.usage_nano_cores, Some(value(500_000_000)));
    }

    #[test]
    fn sums_skip_missing_figures() {
        let mut total = CgroupStats::default();
        add(
            &mut total,
            &CgroupStats {
                pids: Some(2),
                ..Default::default()
            },
        );
        add(
            &mut total,
            &CgroupStats {
                pids: Some(3),
                cpu_usage_ns: Some(7),
                ..Default::default()
            },
        );
        assert_eq!(total.pids, Some(5));
        assert_eq!(total.cpu_usage_ns, Some(7));
        assert_eq!(total.memory_usage_bytes, None);
    }
}
