//! cgroup limits of containers: a [`ResourceSpec`] checked and written into the OCI
//! `linux.resources`, and changed later (`runc update` while the container runs).
use std::process::Stdio;

use oci_spec::runtime::{LinuxCpu, LinuxPids, LinuxResources, Spec};
use tokio::io::AsyncWriteExt as _;

use crate::api::Inner;
use crate::{ContainerState, Error, ResourceSpec, Result};

/// The CFS period bounds the kernel accepts, microseconds.
const CPU_PERIOD_RANGE: std::ops::RangeInclusive<u64> = 1_000..=1_000_000;
/// The smallest CFS quota the kernel accepts, microseconds (-1 = unlimited).
const CPU_QUOTA_MIN: i64 = 1_000;
/// Fewer bytes than this cannot even start a process (runc refuses less than 6 MiB as well).
const MEMORY_MIN: i64 = 6 * 1024 * 1024;

/// Checks `r`'s values; the error names the field and the value.
pub(crate) fn validate(r: &ResourceSpec) -> Result<()> {
    let bad = |what: String| Err(Error::InvalidArgument(what));
    if let Some(p) = r.cpu_period
        && !CPU_PERIOD_RANGE.contains(&p)
    {
        return bad(format!(
            "cpu_period {p} is outside {}..={} microseconds",
            CPU_PERIOD_RANGE.start(),
            CPU_PERIOD_RANGE.end()
        ));
    }
    if let Some(q) = r.cpu_quota
        && q != -1
        && q < CPU_QUOTA_MIN
    {
        return bad(format!(
            "cpu_quota {q} is below {CPU_QUOTA_MIN} microseconds (-1 = unlimited)"
        ));
    }
    if let Some(m) = r.memory_limit_bytes
        && m != -1
        && m < MEMORY_MIN
    {
        return bad(format!(
            "memory_limit_in_bytes {m} is below {MEMORY_MIN} (6 MiB)"
        ));
    }
    if let (Some(swap), Some(m)) = (r.memory_swap_limit_bytes, r.memory_limit_bytes)
        && swap != -1
        && swap < m
    {
        return bad(format!(
            "memory_swap_limit_in_bytes {swap} is below memory_limit_in_bytes {m}"
        ));
    }
    for (field, list) in [
        ("cpuset_cpus", &r.cpuset_cpus),
        ("cpuset_mems", &r.cpuset_mems),
    ] {
        if let Some(list) = list
            && !list
                .split(',')
                .all(|part| !part.is_empty() && part.split('-').all(is_number))
        {
            return bad(format!("{field} {list:?} is not a list like 0-2,4"));
        }
    }
    if let Some(p) = r.pids_limit
        && p == 0
    {
        return bad("pids_limit 0 would forbid every process (-1 = unlimited)".into());
    }
    Ok(())
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `r`'s fields where set, else `base`'s (as containerd applies an update over the spec).
pub(crate) fn merged(base: &ResourceSpec, r: &ResourceSpec) -> ResourceSpec {
    ResourceSpec {
        cpu_shares: r.cpu_shares.or(base.cpu_shares),
        cpu_quota: r.cpu_quota.or(base.cpu_quota),
        cpu_period: r.cpu_period.or(base.cpu_period),
        memory_limit_bytes: r.memory_limit_bytes.or(base.memory_limit_bytes),
        memory_swap_limit_bytes: r.memory_swap_limit_bytes.or(base.memory_swap_limit_bytes),
        cpuset_cpus: r.cpuset_cpus.clone().or_else(|| base.cpuset_cpus.clone()),
        cpuset_mems: r.cpuset_mems.clone().or_else(|| base.cpuset_mems.clone()),
        pids_limit: r.pids_limit.or(base.pids_limit),
        oom_score_adj: r.oom_score_adj.or(base.oom_score_adj),
    }
}

/// Writes `r`'s memory, CPU and pids limits into `into` (other fields, e.g. devices, stay).
pub(crate) fn apply(r: &ResourceSpec, into: &mut LinuxResources) {
    if r.memory_limit_bytes.is_some() || r.memory_swap_limit_bytes.is_some() {
        let mut memory = into.memory().unwrap_or_default();
        memory.set_limit(r.memory_limit_bytes);
        memory.set_swap(r.memory_swap_limit_bytes);
        into.set_memory(Some(memory));
    }
    let cpu_set = r.cpu_shares.is_some()
        || r.cpu_quota.is_some()
        || r.cpu_period.is_some()
        || r.cpuset_cpus.is_some()
        || r.cpuset_mems.is_some();
    if cpu_set {
        let mut cpu: LinuxCpu = into.cpu().clone().unwrap_or_default();
        cpu.set_shares(r.cpu_shares);
        cpu.set_quota(r.cpu_quota);
        cpu.set_period(r.cpu_period);
        cpu.set_cpus(r.cpuset_cpus.clone());
        cpu.set_mems(r.cpuset_mems.clone());
        into.set_cpu(Some(cpu));
    }
    if let Some(limit) = r.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        into.set_pids(Some(pids));
    }
}

/// Changes container `id`'s limits: `runc update` while it runs, its `config.json` while only
/// created; the record keeps the merged figures. An exited container cannot be changed.
pub(crate) async fn update(inner: &Inner, id: &str, resources: ResourceSpec) -> Result<()> {
    validate(&resources)?;
    let mut record = inner.container_record(id)?;
    let state = inner.container_info(&record)?.state;
    let wanted = merged(&record.spec.resources, &resources);
    validate(&wanted)?;
    match state {
        ContainerState::Running => runc_update(inner, id, &wanted).await?,
        ContainerState::Created => {
            let path = inner.container_dir(id).join("config.json");
            let failed = |e: oci_spec::OciSpecError| {
                Error::Command(format!("updating {}: {e}", path.display()))
            };
            let mut spec = Spec::load(&path).map_err(failed)?;
            let mut linux = spec.linux().clone().unwrap_or_default();
            let mut current = linux.resources().clone().unwrap_or_default();
            apply(&wanted, &mut current);
            linux.set_resources(Some(current));
            spec.set_linux(Some(linux));
            spec.save(&path).map_err(failed)?;
        }
        state => {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is {state:?}: only a created or running container's resources \
                 can be updated"
            )));
        }
    }
    record.spec.resources = wanted;
    inner.save_container(&record)?;
    tracing::info!(container = %id, "container resources updated");
    Ok(())
}

/// `runc update --resources - ID` with the limits as OCI JSON on its stdin.
async fn runc_update(inner: &Inner, id: &str, wanted: &ResourceSpec) -> Result<()> {
    let mut linux = LinuxResources::default();
    apply(wanted, &mut linux);
    let json = serde_json::to_vec(&linux)
        .map_err(|e| Error::Command(format!("encoding the resources of container {id}: {e}")))?;
    let runtime = &inner.config.oci_runtime;
    let what = format!("{} update {id}", runtime.display());
    let mut child = crate::oci_runtime::command(runtime, &inner.runc_root())
        .args(["update", "--resources", "-", id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Io {
            context: format!("running {what}"),
            source: e,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&json).await.map_err(|e| Error::Io {
            context: format!("writing the resources to {what}"),
            source: e,
        })?;
    }
    let out = child.wait_with_output().await.map_err(|e| Error::Io {
        context: format!("running {what}"),
        source: e,
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Command(format!(
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// `CAP_SYS_RESOURCE`, needed to lower an OOM score adjustment below one's own.
const CAP_SYS_RESOURCE: u32 = 24;

/// The OOM score adjustment the container can get: the requested one, raised to the runtime's
/// own when the runtime may not lower it (it lacks `CAP_SYS_RESOURCE`, as in many containers
/// and sandboxes). The kernel would refuse the lower value and the container would not start;
/// containerd's `restrict_oom_score_adj` makes the same trade.
pub(crate) fn effective_oom_score_adj(requested: Option<i32>) -> Option<i32> {
    let requested = requested?;
    let own: Option<i32> = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    match own {
        Some(own) if requested < own && !has_effective_capability(CAP_SYS_RESOURCE) => {
            tracing::debug!(
                requested,
                own,
                "no CAP_SYS_RESOURCE: OOM score adjustment raised to the runtime's"
            );
            Some(own)
        }
        _ => Some(requested),
    }
}

fn has_effective_capability(cap: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << cap) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_named() {
        let err = |r: ResourceSpec| match validate(&r) {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(
            err(ResourceSpec {
                cpu_period: Some(10),
                ..Default::default()
            })
            .contains("cpu_period 10")
        );
        assert!(
            err(ResourceSpec {
                cpu_quota: Some(5),
                ..Default::default()
            })
            .contains("cpu_quota 5")
        );
        assert!(
            err(ResourceSpec {
                memory_limit_bytes: Some(4096),
                ..Default::default()
            })
            .contains("memory_limit_in_bytes 4096")
        );
        assert!(
            err(ResourceSpec {
                cpuset_cpus: Some("0-a".into()),
                ..Default::default()
            })
            .contains("cpuset_cpus")
        );
        let good = ResourceSpec {
            cpu_period: Some(100_000),
            cpu_quota: Some(50_000),
            memory_limit_bytes: Some(64 << 20),
            cpuset_cpus: Some("0-1,3".into()),
            ..Default::default()
        };
        assert!(validate(&good).is_ok());
    }

    #[test]
    fn update_merges_and_applies() {
        let base = ResourceSpec {
            cpu_shares: Some(512),
            memory_limit_bytes: Some(64 << 20),
            ..Default::default()
        };
        let new = ResourceSpec {
            memory_limit_bytes: Some(128 << 20),
            cpu_quota: Some(20_000),
            ..Default::default()
        };
        let m = merged(&base, &new);
        assert_eq!(m.cpu_shares, Some(512));
        assert_eq!(m.memory_limit_bytes, Some(128 << 20));
        let mut linux = LinuxResources::default();
        apply(&m, &mut linux);
        assert_eq!(linux.memory().and_then(|m| m.limit()), Some(128 << 20));
        let cpu = linux.cpu().clone().unwrap_or_default();
        assert_eq!((cpu.shares(), cpu.quota()), (Some(512), Some(20_000)));
        assert!(linux.pids().is_none());
    }
}
