//! Conversions between CRI messages and the runtime's types, and the CRI list filters.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use podway_runtime::images::Image;
use podway_runtime::{
    ContainerInfo, ContainerSpec, ContainerState, MountSpec, PidNamespace, PodNamespaces,
    ResourceSpec, SandboxInfo, SandboxSpec, SandboxState, SeccompProfile, SecuritySpec,
};

/// CRI label/annotation map → the runtime's ordered map.
pub(crate) fn to_btree(map: HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

/// The runtime's ordered map → CRI map.
pub(crate) fn to_hash(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Whether every `selector` pair is among `labels` (CRI label selectors are plain equality).
pub(crate) fn labels_match(
    selector: &HashMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Builds the runtime's sandbox spec from a CRI sandbox config.
pub(crate) fn sandbox_spec(config: cri::PodSandboxConfig) -> Result<SandboxSpec, tonic::Status> {
    let metadata = config
        .metadata
        .ok_or_else(|| tonic::Status::invalid_argument("pod sandbox config has no metadata"))?;
    if metadata.name.is_empty() {
        // As containerd: only the name is mandatory.
        return Err(tonic::Status::invalid_argument(
            "pod sandbox config has no name in its metadata",
        ));
    }
    let hostname = if config.hostname.is_empty() {
        // As containerd: without a hostname the pod's UTS namespace is named after the pod.
        metadata.name.clone()
    } else {
        config.hostname
    };
    // No options at all means the kubelet's usual pod (a PID namespace per container); a zeroed
    // NamespaceOption would mean POD for all three, since POD is the enum's zero.
    let namespaces = match config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|sc| sc.namespace_options.as_ref())
    {
        Some(options) => pod_namespaces(options)?,
        None => PodNamespaces::default(),
    };
    Ok(SandboxSpec {
        namespaces,
        name: metadata.name,
        namespace: metadata.namespace,
        uid: metadata.uid,
        attempt: metadata.attempt,
        hostname,
        log_directory: non_empty(config.log_directory).map(PathBuf::from),
        labels: to_btree(config.labels),
        annotations: to_btree(config.annotations),
    })
}

/// The runtime's namespace choices from the CRI's: network and IPC are the pod's or the
/// host's; PID is the container's, the pod's or the host's (a target container's is for
/// ephemeral containers, which podway does not run).
fn pod_namespaces(options: &cri::NamespaceOption) -> Result<PodNamespaces, tonic::Status> {
    let mode = |value: i32, what: &str| {
        cri::NamespaceMode::try_from(value).map_err(|_| {
            tonic::Status::invalid_argument(format!("unknown {what} namespace mode {value}"))
        })
    };
    let pid = match mode(options.pid, "pid")? {
        cri::NamespaceMode::Container => PidNamespace::Container,
        cri::NamespaceMode::Pod => PidNamespace::Pod,
        cri::NamespaceMode::Node => PidNamespace::Host,
        cri::NamespaceMode::Target => {
            return Err(tonic::Status::invalid_argument(
                "pid namespace mode TARGET (ephemeral containers) is not supported by podway",
            ));
        }
    };
    Ok(PodNamespaces {
        host_network: mode(options.network, "network")? == cri::NamespaceMode::Node,
        host_ipc: mode(options.ipc, "ipc")? == cri::NamespaceMode::Node,
        pid,
    })
}

/// The CRI's namespace options of a sandbox.
fn namespace_option(namespaces: &PodNamespaces) -> cri::NamespaceOption {
    let pod_or_node = |host: bool| {
        if host {
            cri::NamespaceMode::Node
        } else {
            cri::NamespaceMode::Pod
        }
    };
    cri::NamespaceOption {
        network: pod_or_node(namespaces.host_network) as i32,
        ipc: pod_or_node(namespaces.host_ipc) as i32,
        pid: match namespaces.pid {
            PidNamespace::Container => cri::NamespaceMode::Container,
            PidNamespace::Pod => cri::NamespaceMode::Pod,
            PidNamespace::Host => cri::NamespaceMode::Node,
        } as i32,
        ..Default::default()
    }
}

pub(crate) fn sandbox_metadata(spec: &SandboxSpec) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: spec.name.clone(),
        uid: spec.uid.clone(),
        namespace: spec.namespace.clone(),
        attempt: spec.attempt,
    }
}

fn sandbox_state(state: SandboxState) -> cri::PodSandboxState {
    match state {
        SandboxState::Ready => cri::PodSandboxState::SandboxReady,
        SandboxState::NotReady => cri::PodSandboxState::SandboxNotready,
    }
}

/// A sandbox as `ListPodSandbox` reports it.
pub(crate) fn pod_sandbox(info: &SandboxInfo) -> cri::PodSandbox {
    cri::PodSandbox {
        id: info.id.clone(),
        metadata: Some(sandbox_metadata(&info.spec)),
        state: sandbox_state(info.state) as i32,
        created_at: info.created_at,
        labels: to_hash(&info.spec.labels),
        annotations: to_hash(&info.spec.annotations),
        runtime_handler: String::new(),
    }
}

/// A sandbox as `PodSandboxStatus` reports it.
pub(crate) fn pod_sandbox_status(info: &SandboxInfo) -> cri::PodSandboxStatus {
    cri::PodSandboxStatus {
        id: info.id.clone(),
        metadata: Some(sandbox_metadata(&info.spec)),
        state: sandbox_state(info.state) as i32,
        created_at: info.created_at,
        // The pod's network namespace has only loopback (no CNI): there is no pod IP to report.
        network: Some(cri::PodSandboxNetworkStatus::default()),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(namespace_option(&info.spec.namespaces)),
            }),
        }),
        labels: to_hash(&info.spec.labels),
        annotations: to_hash(&info.spec.annotations),
        runtime_handler: String::new(),
    }
}

/// Whether a sandbox passes a `ListPodSandbox` filter.
pub(crate) fn sandbox_matches(filter: &cri::PodSandboxFilter, info: &SandboxInfo) -> bool {
    (filter.id.is_empty() || filter.id == info.id)
        && filter
            .state
            .as_ref()
            .is_none_or(|s| s.state == sandbox_state(info.state) as i32)
        && labels_match(&filter.label_selector, &info.spec.labels)
}

/// Builds the runtime's container spec from a CRI container config; `log_directory` is the
/// sandbox's log folder, which the CRI's relative `log_path` is joined to.
pub(crate) fn container_spec(
    config: cri::ContainerConfig,
    log_directory: Option<&Path>,
) -> Result<ContainerSpec, tonic::Status> {
    let metadata = config
        .metadata
        .ok_or_else(|| tonic::Status::invalid_argument("container config has no metadata"))?;
    if metadata.name.is_empty() {
        return Err(tonic::Status::invalid_argument(
            "container config has no name in its metadata",
        ));
    }
    let image = config
        .image
        .map(|i| i.image)
        .filter(|i| !i.is_empty())
        .ok_or_else(|| {
            tonic::Status::invalid_argument(format!(
                "container {:?} has no image in its config",
                metadata.name
            ))
        })?;
    // As containerd: a log file only when both the sandbox's folder and the container's
    // relative path are set.
    let log_path = match (log_directory, non_empty(config.log_path)) {
        (Some(dir), Some(rel)) => Some(dir.join(rel)),
        _ => None,
    };
    let linux = config.linux.unwrap_or_default();
    let security = security_spec(linux.security_context.unwrap_or_default())?;
    let resources = match &linux.resources {
        Some(r) => ResourceSpec {
            oom_score_adj: Some(oom_score_adj(r.oom_score_adj)?),
            ..resource_spec(r)?
        },
        None => ResourceSpec::default(),
    };
    Ok(ContainerSpec {
        name: metadata.name,
        attempt: metadata.attempt,
        image,
        command: config.command,
        args: config.args,
        env: config
            .envs
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect(),
        working_dir: non_empty(config.working_dir),
        tty: config.tty,
        stdin: config.stdin,
        stdin_once: config.stdin_once,
        log_path,
        mounts: config
            .mounts
            .into_iter()
            .map(|m| MountSpec {
                host_path: m.host_path.into(),
                container_path: m.container_path.into(),
                readonly: m.readonly,
            })
            .collect(),
        labels: to_btree(config.labels),
        annotations: to_btree(config.annotations),
        security,
        resources,
    })
}

/// A CRI user or group id as the kernel's (`0..=u32::MAX`).
fn linux_id(field: &str, id: i64) -> Result<u32, tonic::Status> {
    u32::try_from(id).map_err(|_| {
        tonic::Status::invalid_argument(format!("{field} {id} is not a valid Linux id"))
    })
}

/// The runtime's security spec from a CRI Linux security context. Names (users, capabilities)
/// are checked by the runtime against the image and the kernel's list.
pub(crate) fn security_spec(
    sc: cri::LinuxContainerSecurityContext,
) -> Result<SecuritySpec, tonic::Status> {
    let seccomp = seccomp_profile(sc.seccomp.as_ref())?;
    let capabilities = sc.capabilities.unwrap_or_default();
    if !capabilities.add_ambient_capabilities.is_empty() {
        return Err(tonic::Status::invalid_argument(
            "add_ambient_capabilities is not supported by podway",
        ));
    }
    Ok(SecuritySpec {
        run_as_user: sc
            .run_as_user
            .map(|v| linux_id("run_as_user", v.value))
            .transpose()?,
        run_as_username: non_empty(sc.run_as_username),
        run_as_group: sc
            .run_as_group
            .map(|v| linux_id("run_as_group", v.value))
            .transpose()?,
        supplemental_groups: sc
            .supplemental_groups
            .into_iter()
            .map(|g| linux_id("supplemental group", g))
            .collect::<Result<_, _>>()?,
        readonly_rootfs: sc.readonly_rootfs,
        privileged: sc.privileged,
        add_capabilities: capabilities.add_capabilities,
        drop_capabilities: capabilities.drop_capabilities,
        no_new_privs: sc.no_new_privs,
        // As containerd: an empty list means the runtime's defaults (proto3 cannot tell an
        // absent list from an empty one).
        masked_paths: Some(sc.masked_paths).filter(|p| !p.is_empty()),
        readonly_paths: Some(sc.readonly_paths).filter(|p| !p.is_empty()),
        seccomp,
    })
}

/// The seccomp profile from the CRI's `SecurityProfile` (none = unconfined, as the kubelet
/// means it; the deprecated `seccomp_profile_path` is not read).
fn seccomp_profile(
    profile: Option<&cri::SecurityProfile>,
) -> Result<SeccompProfile, tonic::Status> {
    use cri::security_profile::ProfileType;
    let Some(profile) = profile else {
        return Ok(SeccompProfile::Unconfined);
    };
    match ProfileType::try_from(profile.profile_type) {
        Ok(ProfileType::RuntimeDefault) => Ok(SeccompProfile::RuntimeDefault),
        Ok(ProfileType::Unconfined) => Ok(SeccompProfile::Unconfined),
        Ok(ProfileType::Localhost) => {
            let path = Path::new(&profile.localhost_ref);
            if path.is_absolute() {
                Ok(SeccompProfile::Localhost(path.to_path_buf()))
            } else {
                Err(tonic::Status::invalid_argument(format!(
                    "seccomp localhost profile {:?} is not an absolute path",
                    profile.localhost_ref
                )))
            }
        }
        Err(_) => Err(tonic::Status::invalid_argument(format!(
            "unknown seccomp profile type {}",
            profile.profile_type
        ))),
    }
}

/// The runtime's limits from CRI resources, where 0 (or an empty string) means "not set", as
/// the kubelet sends them. The OOM score adjustment is left out (see [`oom_score_adj`]).
pub(crate) fn resource_spec(
    r: &cri::LinuxContainerResources,
) -> Result<ResourceSpec, tonic::Status> {
    let positive = |field: &str, v: i64| -> Result<Option<u64>, tonic::Status> {
        match v {
            0 => Ok(None),
            v => u64::try_from(v).map(Some).map_err(|_| {
                tonic::Status::invalid_argument(format!("{field} {v} must not be negative"))
            }),
        }
    };
    let set = |v: i64| (v != 0).then_some(v);
    Ok(ResourceSpec {
        cpu_shares: positive("cpu_shares", r.cpu_shares)?,
        cpu_quota: set(r.cpu_quota),
        cpu_period: positive("cpu_period", r.cpu_period)?,
        memory_limit_bytes: set(r.memory_limit_in_bytes),
        memory_swap_limit_bytes: set(r.memory_swap_limit_in_bytes),
        cpuset_cpus: non_empty(r.cpuset_cpus.clone()),
        cpuset_mems: non_empty(r.cpuset_mems.clone()),
        pids_limit: None,
        oom_score_adj: None,
    })
}

/// The CRI OOM score adjustment (set at creation, as containerd; an update ignores it).
fn oom_score_adj(v: i64) -> Result<i32, tonic::Status> {
    i32::try_from(v)
        .ok()
        .filter(|v| (-1000..=1000).contains(v))
        .ok_or_else(|| {
            tonic::Status::invalid_argument(format!("oom_score_adj {v} is outside -1000..=1000"))
        })
}

/// The runtime's limits as CRI resources (unset = 0), for `ContainerStatus`.
fn cri_resources(r: &ResourceSpec) -> cri::LinuxContainerResources {
    let unsigned = |v: Option<u64>| v.and_then(|v| i64::try_from(v).ok()).unwrap_or(0);
    cri::LinuxContainerResources {
        cpu_period: unsigned(r.cpu_period),
        cpu_quota: r.cpu_quota.unwrap_or(0),
        cpu_shares: unsigned(r.cpu_shares),
        memory_limit_in_bytes: r.memory_limit_bytes.unwrap_or(0),
        oom_score_adj: r.oom_score_adj.map_or(0, i64::from),
        cpuset_cpus: r.cpuset_cpus.clone().unwrap_or_default(),
        cpuset_mems: r.cpuset_mems.clone().unwrap_or_default(),
        memory_swap_limit_in_bytes: r.memory_swap_limit_bytes.unwrap_or(0),
        ..Default::default()
    }
}

pub(crate) fn container_metadata(spec: &ContainerSpec) -> cri::ContainerMetadata {
    cri::ContainerMetadata {
        name: spec.name.clone(),
        attempt: spec.attempt,
    }
}

fn container_state(state: ContainerState) -> cri::ContainerState {
    match state {
        ContainerState::Created => cri::ContainerState::ContainerCreated,
        ContainerState::Running => cri::ContainerState::ContainerRunning,
        ContainerState::Exited => cri::ContainerState::ContainerExited,
        ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
    }
}

fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.to_owned(),
        ..Default::default()
    }
}

/// The image reference reported for a container: as containerd, the image's first repo digest
/// when it has one, else its id.
pub(crate) fn image_ref(image: &Image) -> String {
    image
        .repo_digests
        .first()
        .cloned()
        .unwrap_or_else(|| image.id.clone())
}

/// A container as `ListContainers` reports it.
pub(crate) fn container(info: &ContainerInfo, image_ref: String) -> cri::Container {
    cri::Container {
        id: info.id.clone(),
        pod_sandbox_id: info.sandbox_id.clone(),
        metadata: Some(container_metadata(&info.spec)),
        image: Some(image_spec(&info.spec.image)),
        image_ref,
        state: container_state(info.state) as i32,
        created_at: info.created_at,
        labels: to_hash(&info.spec.labels),
        annotations: to_hash(&info.spec.annotations),
        image_id: info.image_id.clone(),
    }
}

/// A container as `ContainerStatus` reports it.
pub(crate) fn container_status(info: &ContainerInfo, image_ref: String) -> cri::ContainerStatus {
    cri::ContainerStatus {
        id: info.id.clone(),
        metadata: Some(container_metadata(&info.spec)),
        state: container_state(info.state) as i32,
        created_at: info.created_at,
        started_at: info.started_at,
        finished_at: info.finished_at,
        exit_code: info.exit_code,
        image: Some(image_spec(&info.spec.image)),
        image_ref,
        reason: info.reason.clone(),
        message: info.message.clone(),
        labels: to_hash(&info.spec.labels),
        annotations: to_hash(&info.spec.annotations),
        mounts: info
            .spec
            .mounts
            .iter()
            .map(|m| cri::Mount {
                container_path: m.container_path.to_string_lossy().into_owned(),
                host_path: m.host_path.to_string_lossy().into_owned(),
                readonly: m.readonly,
                ..Default::default()
            })
            .collect(),
        log_path: info
            .spec
            .log_path
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        resources: Some(cri::ContainerResources {
            linux: Some(cri_resources(&info.spec.resources)),
            windows: None,
        }),
        image_id: info.image_id.clone(),
        user: None,
    }
}

/// Whether a container passes a `ListContainers` filter.
pub(crate) fn container_matches(filter: &cri::ContainerFilter, info: &ContainerInfo) -> bool {
    (filter.id.is_empty() || filter.id == info.id)
        && (filter.pod_sandbox_id.is_empty() || filter.pod_sandbox_id == info.sandbox_id)
        && filter
            .state
            .as_ref()
            .is_none_or(|s| s.state == container_state(info.state) as i32)
        && labels_match(&filter.label_selector, &info.spec.labels)
}

/// An image as the ImageService reports it; the image config's user becomes `uid` when numeric
/// (the part before `:`), else `username`, as containerd does.
pub(crate) fn image(image: &Image) -> cri::Image {
    let user = image.user.split(':').next().unwrap_or_default();
    let (uid, username) = match user.parse::<i64>() {
        Ok(uid) => (Some(cri::Int64Value { value: uid }), String::new()),
        Err(_) if user.is_empty() => (None, String::new()),
        Err(_) => (None, user.to_owned()),
    };
    cri::Image {
        id: image.id.clone(),
        repo_tags: image.repo_tags.clone(),
        repo_digests: image.repo_digests.clone(),
        size: image.size,
        uid,
        username,
        spec: Some(image_spec(&image.id)),
        pinned: false,
    }
}

/// `None` for an empty string.
pub(crate) fn non_empty(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(log_path: &str) -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "web".into(),
                attempt: 2,
            }),
            image: Some(image_spec("busybox:1.35")),
            log_path: log_path.into(),
            working_dir: String::new(),
            envs: vec![cri::KeyValue {
                key: "A".into(),
                value: "b".into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn log_path_is_joined_to_the_sandbox_log_directory() {
        let spec = container_spec(config("web/2.log"), Some(Path::new("/var/log/pods/x"))).unwrap();
        assert_eq!(
            spec.log_path,
            Some(PathBuf::from("/var/log/pods/x/web/2.log"))
        );
        assert_eq!(spec.working_dir, None);
        assert_eq!(spec.env, vec![("A".to_owned(), "b".to_owned())]);
        assert_eq!(spec.attempt, 2);
    }

    #[test]
    fn no_log_file_without_a_log_directory_or_path() {
        assert_eq!(
            container_spec(config("web/0.log"), None).unwrap().log_path,
            None
        );
        assert_eq!(
            container_spec(config(""), Some(Path::new("/logs")))
                .unwrap()
                .log_path,
            None
        );
    }

    #[test]
    fn container_config_without_image_is_invalid() {
        let mut c = config("");
        c.image = None;
        let err = container_spec(c, None).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("\"web\""), "{}", err.message());
    }

    #[test]
    fn label_selector_is_equality_on_every_pair() {
        let labels: BTreeMap<_, _> = [("app".to_owned(), "web".to_owned())].into();
        let mut sel = HashMap::new();
        assert!(labels_match(&sel, &labels));
        sel.insert("app".to_owned(), "web".to_owned());
        assert!(labels_match(&sel, &labels));
        sel.insert("tier".to_owned(), "x".to_owned());
        assert!(!labels_match(&sel, &labels));
    }

    #[test]
    fn numeric_image_user_becomes_uid() {
        let mut img = Image {
            id: "sha256:ab".into(),
            repo_tags: vec![],
            repo_digests: vec![],
            size: 1,
            user: "1000:1000".into(),
        };
        assert_eq!(image(&img).uid, Some(cri::Int64Value { value: 1000 }));
        img.user = "nobody".into();
        let i = image(&img);
        assert_eq!((i.uid, i.username.as_str()), (None, "nobody"));
        img.user = String::new();
        let i = image(&img);
        assert_eq!((i.uid, i.username.as_str()), (None, ""));
    }
}
