//! A container's Linux settings for CRI, derived from the pod and container specs as the kubelet
//! derives them: the effective security context (the container's fields over the pod's) and the
//! cgroup resources and OOM score of its requests and limits.
use k8s_cri::v1::{
    Capability, Int64Value, LinuxContainerConfig, LinuxContainerResources,
    LinuxContainerSecurityContext, NamespaceMode, NamespaceOption, SecurityProfile,
    security_profile::ProfileType,
};
use k8s_openapi::api::core::v1::{
    Container, Pod, PodSecurityContext, ResourceRequirements, SeccompProfile, SecurityContext,
};

use super::quantity::Quantity;
use Side::{Limit, Request};

/// CFS period the kubelet pairs with a CPU limit (100 ms).
const CPU_PERIOD_US: i64 = 100_000;
/// Smallest CFS quota the kubelet sets (1 ms).
const MIN_CPU_QUOTA_US: i64 = 1_000;
/// Smallest and largest `cpu.shares`.
const MIN_CPU_SHARES: i64 = 2;
const MAX_CPU_SHARES: i64 = 262_144;
/// OOM score adjustments of the QoS classes (Burstable lies between, by memory request).
const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;
/// Folder below which `Localhost` seccomp profiles are looked up, as the kubelet's.
const SECCOMP_PROFILE_ROOT: &str = "/var/lib/kubelet/seccomp";

/// The pod's QoS class, as the API reports it (computed when the status doesn't say yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QosClass {
    /// Every container has equal CPU and memory requests and limits.
    Guaranteed,
    /// Some request or limit, but not Guaranteed.
    Burstable,
    /// No request or limit anywhere.
    BestEffort,
}

impl QosClass {
    /// The class of `pod`: its status's when set, else computed by the API's rules.
    pub(crate) fn of(pod: &Pod) -> Self {
        match pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
            Some("Guaranteed") => Self::Guaranteed,
            Some("Burstable") => Self::Burstable,
            Some("BestEffort") => Self::BestEffort,
            _ => Self::computed(pod),
        }
    }

    fn computed(pod: &Pod) -> Self {
        let containers: Vec<&Container> = pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .collect();
        let limits = |c: &Container| resource_map(c.resources.as_ref(), Limit);
        let requests = |c: &Container| resource_map(c.resources.as_ref(), Request);
        if containers
            .iter()
            .all(|c| limits(c).is_empty() && requests(c).is_empty())
        {
            return Self::BestEffort;
        }
        let guaranteed = containers.iter().all(|c| {
            let (limits, requests) = (limits(c), requests(c));
            ["cpu", "memory"].iter().all(|r| {
                limits
                    .get(*r)
                    .is_some_and(|limit| requests.get(*r).is_none_or(|req| req == limit))
            })
        });
        if guaranteed {
            Self::Guaranteed
        } else {
            Self::Burstable
        }
    }
}

/// Which half of a container's resources.
#[derive(Clone, Copy)]
enum Side {
    Request,
    Limit,
}

fn resource_map(
    resources: Option<&ResourceRequirements>,
    side: Side,
) -> std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity> {
    resources
        .and_then(|r| match side {
            Request => r.requests.clone(),
            Limit => r.limits.clone(),
        })
        .unwrap_or_default()
}

/// One resource of the container, parsed; a request falls back to the limit, as the API server
/// defaults it. `Ok(None)` when neither is set.
fn resource(c: &Container, name: &str, side: Side) -> Result<Option<Quantity>, String> {
    let find = |side| resource_map(c.resources.as_ref(), side).get(name).cloned();
    let text = match side {
        Limit => find(Limit),
        Request => find(Request).or_else(|| find(Limit)),
    };
    text.map(|q| {
        Quantity::parse(&q.0).map_err(|e| format!("container {:?}: resources {name}: {e}", c.name))
    })
    .transpose()
}

/// The container's Linux config for `CreateContainer`. `memory_capacity` is the node's memory
/// in bytes (a Burstable container's OOM score depends on its share of it). The error says
/// which field is wrong, for a `CreateContainerConfigError`.
pub(crate) fn container_config(
    pod: &Pod,
    c: &Container,
    memory_capacity: i64,
) -> Result<LinuxContainerConfig, String> {
    Ok(LinuxContainerConfig {
        resources: Some(resources(pod, c, memory_capacity)?),
        security_context: Some(security_context(pod, c)),
    })
}

fn resources(
    pod: &Pod,
    c: &Container,
    memory_capacity: i64,
) -> Result<LinuxContainerResources, String> {
    let cpu_request = resource(c, "cpu", Request)?.map_or(0, Quantity::milli_value);
    let cpu_limit = resource(c, "cpu", Limit)?.map_or(0, Quantity::milli_value);
    let memory_request = resource(c, "memory", Request)?.map_or(0, Quantity::value);
    let memory_limit = resource(c, "memory", Limit)?.map_or(0, Quantity::value);
    let cpu_quota = match cpu_limit {
        0 => 0,
        milli => (milli.saturating_mul(CPU_PERIOD_US) / 1000).max(MIN_CPU_QUOTA_US),
    };
    Ok(LinuxContainerResources {
        cpu_shares: (cpu_request.saturating_mul(1024) / 1000).clamp(MIN_CPU_SHARES, MAX_CPU_SHARES),
        cpu_quota,
        cpu_period: if cpu_quota > 0 { CPU_PERIOD_US } else { 0 },
        memory_limit_in_bytes: memory_limit,
        oom_score_adj: oom_score_adj(QosClass::of(pod), memory_request, memory_capacity),
        ..Default::default()
    })
}

/// The kubelet's OOM score rule: Guaranteed pods are the last to go, BestEffort the first, and a
/// Burstable container the later the more memory it requested.
fn oom_score_adj(qos: QosClass, memory_request: i64, memory_capacity: i64) -> i64 {
    match qos {
        QosClass::Guaranteed => GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => BEST_EFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {
            let share = if memory_capacity > 0 {
                i64::try_from(i128::from(memory_request) * 1000 / i128::from(memory_capacity))
                    .unwrap_or(1000)
            } else {
                0
            };
            (1000 - share).clamp(
                1000 + GUARANTEED_OOM_SCORE_ADJ,
                BEST_EFFORT_OOM_SCORE_ADJ - 1,
            )
        }
    }
}

/// The effective security context: user, group and seccomp from the container when it sets
/// them, else from the pod; supplemental groups (and the fsGroup) from the pod; the rest from
/// the container.
fn security_context(pod: &Pod, c: &Container) -> LinuxContainerSecurityContext {
    let pod_sc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let run_as_user = sc.run_as_user.or(pod_sc.run_as_user);
    let run_as_group = sc.run_as_group.or(pod_sc.run_as_group);
    let mut supplemental_groups = pod_sc.supplemental_groups.clone().unwrap_or_default();
    supplemental_groups.extend(pod_sc.fs_group);
    let capabilities = sc.capabilities.clone().unwrap_or_default();
    LinuxContainerSecurityContext {
        capabilities: Some(Capability {
            add_capabilities: capabilities.add.unwrap_or_default(),
            drop_capabilities: capabilities.drop.unwrap_or_default(),
            ..Default::default()
        }),
        privileged: sc.privileged.unwrap_or(false),
        run_as_user: run_as_user.map(|value| Int64Value { value }),
        run_as_group: run_as_group.map(|value| Int64Value { value }),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups,
        // Set only when the pod says `allowPrivilegeEscalation: false`.
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        seccomp: Some(seccomp(&sc, &pod_sc)),
        namespace_options: Some(namespace_options(pod)),
        ..Default::default()
    }
}

/// The pod's namespaces: the host's network, IPC or PID namespace when the spec asks
/// (`hostNetwork`, `hostIPC`, `hostPID`), one PID namespace for the whole pod with
/// `shareProcessNamespace`, else the pod's network and IPC and a PID namespace per container.
pub(crate) fn namespace_options(pod: &Pod) -> NamespaceOption {
    let spec = pod.spec.as_ref();
    let flag = |get: fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>| {
        spec.and_then(get).unwrap_or(false)
    };
    let node_or = |host: bool, otherwise: NamespaceMode| {
        (if host { NamespaceMode::Node } else { otherwise }) as i32
    };
    let pid = if flag(|s| s.share_process_namespace) {
        NamespaceMode::Pod
    } else {
        NamespaceMode::Container
    };
    NamespaceOption {
        network: node_or(flag(|s| s.host_network), NamespaceMode::Pod),
        pid: node_or(flag(|s| s.host_pid), pid),
        ipc: node_or(flag(|s| s.host_ipc), NamespaceMode::Pod),
        ..Default::default()
    }
}

/// The seccomp profile: the container's, else the pod's, else Unconfined.
fn seccomp(sc: &SecurityContext, pod_sc: &PodSecurityContext) -> SecurityProfile {
    let profile: Option<&SeccompProfile> = sc
        .seccomp_profile
        .as_ref()
        .or(pod_sc.seccomp_profile.as_ref());
    match profile.map(|p| (p.type_.as_str(), p.localhost_profile.as_deref())) {
        Some(("RuntimeDefault", _)) => SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            ..Default::default()
        },
        Some(("Localhost", Some(path))) => SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: format!("{SECCOMP_PROFILE_ROOT}/{path}"),
        },
        _ => SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            ..Default::default()
        },
    }
}

/// The kubelet's `runAsNonRoot` check, once the user is known: `image_user` is the image's
/// configured user (`uid` when numeric, else the name) for a container that sets no
/// `runAsUser`. The error is the kubelet's message, for a `CreateContainerConfigError`.
pub(crate) fn check_run_as_non_root(
    pod: &Pod,
    c: &Container,
    image_user: &ImageUser,
) -> Result<(), String> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let required = sc
        .and_then(|s| s.run_as_non_root)
        .or(pod_sc.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    if !required {
        return Ok(());
    }
    let uid = match sc
        .and_then(|s| s.run_as_user)
        .or(pod_sc.and_then(|s| s.run_as_user))
    {
        Some(uid) => Some(uid),
        None => match image_user {
            ImageUser::Uid(uid) => Some(*uid),
            ImageUser::Name(name) => {
                return Err(format!(
                    "container has runAsNonRoot and image has non-numeric user ({name}), \
                     cannot verify user is non-root (pod: {:?}, container: {})",
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    c.name
                ));
            }
            ImageUser::Unset => None,
        },
    };
    match uid {
        Some(uid) if uid != 0 => Ok(()),
        _ => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {:?}, container: {})",
            pod.metadata.name.as_deref().unwrap_or_default(),
            c.name
        )),
    }
}

/// The user an image runs as, from the runtime's image status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ImageUser {
    /// A numeric user id.
    Uid(i64),
    /// A user name the runtime resolves in the image.
    Name(String),
    /// No user configured (root).
    Unset,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).expect("pod yaml")
    }

    fn config(pod: &Pod) -> LinuxContainerConfig {
        let c = &pod.spec.as_ref().expect("spec").containers[0];
        container_config(pod, c, 8 << 30).expect("config")
    }

    #[test]
    fn best_effort_container_gets_minimum_shares_and_is_first_to_oom() {
        let r = config(&pod("spec: {containers: [{name: a}]}"))
            .resources
            .expect("resources");
        assert_eq!(
            (
                r.cpu_shares,
                r.cpu_quota,
                r.cpu_period,
                r.memory_limit_in_bytes,
                r.oom_score_adj
            ),
            (2, 0, 0, 0, 1000)
        );
    }

    #[test]
    fn limits_become_quota_and_memory_limit() {
        let p =
            pod("spec: {containers: [{name: a, resources: {limits: {cpu: 500m, memory: 64Mi}}}]}");
        let r = config(&p).resources.expect("resources");
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.cpu_period, 100_000);
        assert_eq!(r.cpu_shares, 512, "the request defaults to the limit");
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
        assert_eq!(r.oom_score_adj, -997, "Guaranteed");
        let tiny = pod("spec: {containers: [{name: a, resources: {limits: {cpu: 1m}}}]}");
        assert_eq!(config(&tiny).resources.expect("r").cpu_quota, 1000);
    }

    #[test]
    fn burstable_oom_score_follows_the_memory_request() {
        let p = pod("spec: {containers: [{name: a, resources: {requests: {memory: 2Gi}}}]}");
        assert_eq!(config(&p).resources.expect("r").oom_score_adj, 750);
        let huge = pod("spec: {containers: [{name: a, resources: {requests: {memory: 8Gi}}}]}");
        assert_eq!(config(&huge).resources.expect("r").oom_score_adj, 3);
        let small = pod("spec: {containers: [{name: a, resources: {requests: {cpu: 100m}}}]}");
        assert_eq!(config(&small).resources.expect("r").oom_score_adj, 999);
    }

    #[test]
    fn bad_quantity_names_the_container_and_resource() {
        let p = pod("spec: {containers: [{name: web, resources: {limits: {memory: 12MB}}}]}");
        let c = &p.spec.as_ref().expect("spec").containers[0];
        let err = container_config(&p, c, 1 << 30).expect_err("bad quantity");
        assert!(
            err.contains("\"web\"") && err.contains("memory") && err.contains("12MB"),
            "{err}"
        );
    }

    #[test]
    fn container_security_context_overrides_the_pod() {
        let p = pod(
            "spec: {securityContext: {runAsUser: 1000, runAsGroup: 3000, supplementalGroups: [4000], fsGroup: 2000, \
             seccompProfile: {type: RuntimeDefault}}, containers: [{name: a, securityContext: {runAsUser: 1001, \
             allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {add: [NET_ADMIN], drop: [ALL]}}}]}",
        );
        let sc = config(&p).security_context.expect("security context");
        assert_eq!(sc.run_as_user, Some(Int64Value { value: 1001 }));
        assert_eq!(sc.run_as_group, Some(Int64Value { value: 3000 }));
        assert_eq!(sc.supplemental_groups, vec![4000, 2000]);
        assert!(sc.no_new_privs && sc.readonly_rootfs && !sc.privileged);
        let caps = sc.capabilities.expect("capabilities");
        assert_eq!(
            (caps.add_capabilities, caps.drop_capabilities),
            (vec!["NET_ADMIN".to_string()], vec!["ALL".to_string()])
        );
        assert_eq!(
            sc.seccomp.expect("seccomp").profile_type,
            ProfileType::RuntimeDefault as i32
        );
    }

    #[test]
    fn unset_seccomp_is_unconfined_and_localhost_is_under_the_kubelet_root() {
        let plain = config(&pod("spec: {containers: [{name: a}]}"));
        let seccomp = plain
            .security_context
            .expect("sc")
            .seccomp
            .expect("seccomp");
        assert_eq!(seccomp.profile_type, ProfileType::Unconfined as i32);
        let local = pod(
            "spec: {containers: [{name: a, securityContext: {seccompProfile: {type: Localhost, localhostProfile: my.json}}}]}",
        );
        let seccomp = config(&local)
            .security_context
            .expect("sc")
            .seccomp
            .expect("seccomp");
        assert_eq!(seccomp.localhost_ref, "/var/lib/kubelet/seccomp/my.json");
    }

    #[test]
    fn namespace_options_follow_the_pod_spec() {
        let plain = namespace_options(&pod("spec: {containers: [{name: a}]}"));
        assert_eq!(
            (plain.network, plain.pid, plain.ipc),
            (
                NamespaceMode::Pod as i32,
                NamespaceMode::Container as i32,
                NamespaceMode::Pod as i32
            )
        );
        let shared = namespace_options(&pod(
            "spec: {shareProcessNamespace: true, containers: [{name: a}]}",
        ));
        assert_eq!(shared.pid, NamespaceMode::Pod as i32);
        let host = namespace_options(&pod(
            "spec: {hostNetwork: true, hostPID: true, hostIPC: true, shareProcessNamespace: true, containers: [{name: a}]}",
        ));
        assert_eq!(
            (host.network, host.pid, host.ipc),
            (
                NamespaceMode::Node as i32,
                NamespaceMode::Node as i32,
                NamespaceMode::Node as i32
            )
        );
    }

    #[test]
    fn run_as_non_root_is_checked_against_the_user_and_the_image() {
        let p = pod(
            "metadata: {name: p}\nspec: {securityContext: {runAsNonRoot: true}, containers: [{name: a}]}",
        );
        let c = &p.spec.as_ref().expect("spec").containers[0];
        let root = check_run_as_non_root(&p, c, &ImageUser::Unset).expect_err("root");
        assert!(root.contains("image will run as root"), "{root}");
        assert!(check_run_as_non_root(&p, c, &ImageUser::Uid(0)).is_err());
        assert!(check_run_as_non_root(&p, c, &ImageUser::Uid(65534)).is_ok());
        let named =
            check_run_as_non_root(&p, c, &ImageUser::Name("nobody".into())).expect_err("name");
        assert!(named.contains("non-numeric user (nobody)"), "{named}");
        let as_user = pod(
            "spec: {securityContext: {runAsNonRoot: true, runAsUser: 1000}, containers: [{name: a}]}",
        );
        let c = &as_user.spec.as_ref().expect("spec").containers[0];
        assert!(check_run_as_non_root(&as_user, c, &ImageUser::Unset).is_ok());
        let free = pod("spec: {containers: [{name: a}]}");
        let c = &free.spec.as_ref().expect("spec").containers[0];
        assert!(check_run_as_non_root(&free, c, &ImageUser::Unset).is_ok());
    }
}
