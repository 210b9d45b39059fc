//! The OCI runtime bundle of a container: `config.json` built with `oci-spec`.
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder, LinuxNamespace, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder,
    Spec, UserBuilder,
};

use crate::images::ImageProcess;
use crate::{ContainerSpec, Error, PidNamespace, PodNamespaces, Result};

/// Default `PATH` when neither the image nor the request sets one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a container's `config.json` is made from.
pub(crate) struct BundleParams<'a> {
    /// Container id (names the cgroup).
    pub id: &'a str,
    /// The request.
    pub spec: &'a ContainerSpec,
    /// The image's process defaults.
    pub image: &'a ImageProcess,
    /// The mounted rootfs (to resolve user names).
    pub rootfs: &'a Path,
    /// Hostname of the pod.
    pub hostname: &'a str,
    /// Pid of the sandbox's pause process, whose namespaces are joined.
    pub pause_pid: u32,
    /// Which of the pause process's namespaces exist and are shared (else the host's).
    pub namespaces: PodNamespaces,
    /// The pod's files and folders bound into the container: `/etc/hostname`, `/etc/hosts`,
    /// `/etc/resolv.conf`, `/dev/shm` (these replace the default mounts of the same place).
    pub pod_mounts: &'a [(PathBuf, &'static str)],
}

/// The process arguments by Kubernetes rules: `command` replaces the Entrypoint, `args` the Cmd.
pub(crate) fn process_args(spec: &ContainerSpec, image: &ImageProcess) -> Vec<String> {
    let entrypoint = image.entrypoint.clone().unwrap_or_default();
    let cmd = image.cmd.clone().unwrap_or_default();
    match (spec.command.is_empty(), spec.args.is_empty()) {
        (false, _) => spec.command.iter().chain(&spec.args).cloned().collect(),
        (true, false) => entrypoint
            .into_iter()
            .chain(spec.args.iter().cloned())
            .collect(),
        (true, true) => entrypoint.into_iter().chain(cmd).collect(),
    }
}

/// The environment: the image's, overridden by the request's, with a default `PATH`.
pub(crate) fn environment(
    spec: &ContainerSpec,
    image: &ImageProcess,
    hostname: &str,
) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match env.iter_mut().find(|(key, _)| key == k) {
        Some(slot) => slot.1 = v.to_string(),
        None => env.push((k.to_string(), v.to_string())),
    };
    set("PATH", DEFAULT_PATH);
    if !hostname.is_empty() {
        set("HOSTNAME", hostname);
    }
    if spec.tty {
        set("TERM", "xterm");
    }
    for kv in image.env.iter().flatten() {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        set(k, v);
    }
    for (k, v) in &spec.env {
        set(k, v);
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Builds the `config.json` of a container.
pub(crate) fn build_spec(p: &BundleParams<'_>) -> Result<Spec> {
    let oci = |e: oci_spec::OciSpecError| {
        Error::Command(format!("building config.json of container {}: {e}", p.id))
    };
    let args = process_args(p.spec, p.image);
    if args.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "container {:?}: no command given and the image has neither Entrypoint nor Cmd",
            p.spec.name
        )));
    }
    let security = &p.spec.security;
    let user =
        crate::security::process_user(p.rootfs, p.image.user.as_deref().unwrap_or(""), security)?;
    crate::resources::validate(&p.spec.resources)?;
    let cwd = p
        .spec
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| p.image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_string());
    let caps = crate::security::capabilities(security)?;
    // As containerd: the bounding, effective and permitted sets are the same; the inheritable
    // and ambient sets stay empty (a non-root user keeps no capability across exec).
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(std::collections::HashSet::new())
        .ambient(std::collections::HashSet::new())
        .build()
        .map_err(oci)?;
    let process = ProcessBuilder::default()
        .terminal(p.spec.tty)
        .args(args)
        .env(environment(p.spec, p.image, p.hostname))
        .cwd(cwd)
        .user(
            UserBuilder::default()
                .uid(user.uid)
                .gid(user.gid)
                .additional_gids(user.additional_gids)
                .build()
                .map_err(oci)?,
        )
        .capabilities(capabilities)
        .no_new_privileges(security.no_new_privs)
        .build()
        .map_err(oci)?;
    let mut process = process;
    process.set_oom_score_adj(crate::resources::effective_oom_score_adj(
        p.spec.resources.oom_score_adj,
    ));

    let mut mounts: Vec<Mount> = oci_spec::runtime::get_default_mounts();
    if security.privileged {
        // A privileged container may write to /sys (as containerd's privileged spec).
        for m in &mut mounts {
            if let Some(options) = m.options_mut() {
                options.retain(|o| o != "ro");
            }
        }
    }
    mounts.retain(|m| {
        !p.pod_mounts
            .iter()
            .any(|(_, dest)| m.destination() == Path::new(dest))
    });
    for (source, destination) in p.pod_mounts {
        let mut mount = bind_mount(source, Path::new(destination), false).map_err(oci)?;
        if let Some(options) = mount.options_mut() {
            options.extend(["nosuid".to_string(), "nodev".to_string()]);
        }
        mounts.push(mount);
    }
    for m in &p.spec.mounts {
        mounts.push(bind_mount(&m.host_path, &m.container_path, m.readonly).map_err(oci)?);
    }

    let namespaces = namespaces(p.pause_pid, &p.namespaces).map_err(oci)?;
    // Every device is denied (runc adds the standard ones); a privileged container may use all.
    let mut resources = LinuxResourcesBuilder::default()
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(security.privileged)
                .access("rwm")
                .build()
                .map_err(oci)?,
        ])
        .build()
        .map_err(oci)?;
    crate::resources::apply(&p.spec.resources, &mut resources);
    let (masked_paths, readonly_paths) = crate::security::masked_and_readonly_paths(security);
    let seccomp = crate::security::seccomp(security)?;

    let mut spec = Spec::default();
    spec.set_hostname(None);
    spec.set_process(Some(process));
    spec.set_root(Some(
        RootBuilder::default()
            .path("rootfs")
            .readonly(security.readonly_rootfs)
            .build()
            .map_err(oci)?,
    ));
    spec.set_mounts(Some(mounts));
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_namespaces(Some(namespaces));
    linux.set_resources(Some(resources));
    linux.set_masked_paths(Some(masked_paths));
    linux.set_readonly_paths(Some(readonly_paths));
    linux.set_seccomp(seccomp);
    if security.privileged {
        linux.set_devices(Some(crate::security::host_devices()));
    }
    linux.set_cgroups_path(Some(PathBuf::from(format!("/podway/{}", p.id))));
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// The container's namespaces: its own mount namespace; the pod's network, UTS and IPC
/// namespaces (the pause process's) unless the pod uses the host's; its own PID namespace, the
/// pod's, or the host's.
fn namespaces(
    pause_pid: u32,
    pod: &PodNamespaces,
) -> Result<Vec<LinuxNamespace>, oci_spec::OciSpecError> {
    let own = |typ| LinuxNamespaceBuilder::default().typ(typ).build();
    let pod_ns = |typ, name: &str| {
        LinuxNamespaceBuilder::default()
            .typ(typ)
            .path(PathBuf::from(format!("/proc/{pause_pid}/ns/{name}")))
            .build()
    };
    let mut list = vec![own(LinuxNamespaceType::Mount)?];
    match pod.pid {
        PidNamespace::Container => list.push(own(LinuxNamespaceType::Pid)?),
        PidNamespace::Pod => list.push(pod_ns(LinuxNamespaceType::Pid, "pid")?),
        PidNamespace::Host => {}
    }
    if !pod.host_network {
        list.push(pod_ns(LinuxNamespaceType::Network, "net")?);
        list.push(pod_ns(LinuxNamespaceType::Uts, "uts")?);
    }
    if !pod.host_ipc {
        list.push(pod_ns(LinuxNamespaceType::Ipc, "ipc")?);
    }
    Ok(list)
}

fn bind_mount(
    source: &Path,
    destination: &Path,
    readonly: bool,
) -> Result<Mount, oci_spec::OciSpecError> {
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    if readonly {
        options.push("ro".to_string());
    }
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(options)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageProcess {
        let v = |s: &[&str]| Some(s.iter().map(|s| s.to_string()).collect());
        ImageProcess {
            entrypoint: v(entrypoint),
            cmd: v(cmd),
            env: Some(vec!["A=1".into(), "PATH=/bin".into()]),
            ..Default::default()
        }
    }

    fn spec(command: &[&str], args: &[&str]) -> ContainerSpec {
        ContainerSpec {
            command: command.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![("A".into(), "2".into()), ("B".into(), "3".into())],
            ..Default::default()
        }
    }

    #[test]
    fn kubernetes_command_rules() {
        let img = image(&["/ep"], &["c1"]);
        assert_eq!(process_args(&spec(&[], &[]), &img), ["/ep", "c1"]);
        assert_eq!(process_args(&spec(&[], &["a"]), &img), ["/ep", "a"]);
        assert_eq!(process_args(&spec(&["x"], &[]), &img), ["x"]);
        assert_eq!(process_args(&spec(&["x"], &["y"]), &img), ["x", "y"]);
    }

    #[test]
    fn env_overrides_image() {
        let env = environment(&spec(&[], &[]), &image(&[], &[]), "pod");
        assert_eq!(env, ["PATH=/bin", "HOSTNAME=pod", "A=2", "B=3"]);
    }
}
