//! Pure pod-status computation: container states → phase, conditions, JSON.
use serde_json::{Value, json};

/// A container that ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Terminated {
    /// Exit code.
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, … (the runtime's, or derived from the exit code).
    pub reason: String,
    /// The runtime's message.
    pub message: String,
    /// RFC 3339 start time.
    pub started_at: Option<String>,
    /// RFC 3339 end time.
    pub finished_at: Option<String>,
    /// `<runtime>://<id>`.
    pub container_id: String,
}

/// The current state of one container.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum State {
    /// Not running yet (or waiting to be restarted).
    Waiting {
        /// Why (`ContainerCreating`, `ErrImagePull`, `CrashLoopBackOff`, …).
        reason: String,
        /// Details.
        message: String,
    },
    /// Running since `started_at`.
    Running {
        /// RFC 3339 start time.
        started_at: Option<String>,
    },
    /// Ended.
    Terminated(Terminated),
}

/// What the pod status says about one container.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ContainerView {
    /// Spec name.
    pub name: String,
    /// Spec image.
    pub image: String,
    /// The image the runtime resolved (`imageID`).
    pub image_id: String,
    /// `<runtime>://<id>` of the current instance.
    pub container_id: Option<String>,
    /// Restarts so far.
    pub restart_count: u32,
    /// Current state.
    pub state: State,
    /// The previous instance's end.
    pub last_terminated: Option<Terminated>,
}

/// The pod phase by the kubelet's rules for `restart_policy` (`Always`, `OnFailure`, `Never`).
pub(crate) fn phase(restart_policy: &str, containers: &[ContainerView]) -> &'static str {
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in containers {
        match &c.state {
            State::Running { .. } => running += 1,
            State::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            State::Waiting { .. } if c.last_terminated.is_some() => stopped += 1,
            State::Waiting { .. } => waiting += 1,
        }
    }
    if waiting > 0 || containers.is_empty() {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if restart_policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if restart_policy == "OnFailure" {
            return "Running";
        }
        return "Failed";
    }
    "Pending"
}

fn terminated_json(t: &Terminated) -> Value {
    let mut v = json!({
        "exitCode": t.exit_code,
        "reason": t.reason,
        "containerID": t.container_id,
    });
    if !t.message.is_empty() {
        v["message"] = json!(t.message);
    }
    if let Some(s) = &t.started_at {
        v["startedAt"] = json!(s);
    }
    if let Some(f) = &t.finished_at {
        v["finishedAt"] = json!(f);
    }
    v
}

/// The `containerStatuses` entry of one container.
pub(crate) fn container_json(c: &ContainerView) -> Value {
    let (state, running) = match &c.state {
        State::Waiting { reason, message } => {
            let mut w = json!({ "reason": reason });
            if !message.is_empty() {
                w["message"] = json!(message);
            }
            (json!({ "waiting": w }), false)
        }
        State::Running { started_at } => {
            let mut r = json!({});
            if let Some(s) = started_at {
                r["startedAt"] = json!(s);
            }
            (json!({ "running": r }), true)
        }
        State::Terminated(t) => (json!({ "terminated": terminated_json(t) }), false),
    };
    let mut v = json!({
        "name": c.name,
        "state": state,
        "lastState": c.last_terminated.as_ref().map_or(json!({}), |t| json!({ "terminated": terminated_json(t) })),
        "ready": running,
        "started": running,
        "restartCount": c.restart_count,
        "image": c.image,
        "imageID": c.image_id,
    });
    if let Some(id) = &c.container_id {
        v["containerID"] = json!(id);
    }
    v
}

/// Whether every container is ready (running; no probes yet).
pub(crate) fn all_ready(containers: &[ContainerView]) -> bool {
    !containers.is_empty()
        && containers
            .iter()
            .all(|c| matches!(c.state, State::Running { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: State, last: bool) -> ContainerView {
        let t = Terminated {
            exit_code: 1,
            reason: "Error".into(),
            message: String::new(),
            started_at: None,
            finished_at: None,
            container_id: "podway://a".into(),
        };
        ContainerView {
            name: "c".into(),
            image: "busybox".into(),
            image_id: String::new(),
            container_id: None,
            restart_count: 0,
            state,
            last_terminated: last.then_some(t),
        }
    }

    fn exited(code: i32) -> State {
        State::Terminated(Terminated {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: String::new(),
            started_at: None,
            finished_at: None,
            container_id: "podway://b".into(),
        })
    }

    fn waiting() -> State {
        State::Waiting {
            reason: "ContainerCreating".into(),
            message: String::new(),
        }
    }

    #[test]
    fn phases() {
        let running = State::Running { started_at: None };
        assert_eq!(phase("Always", &[view(waiting(), false)]), "Pending");
        assert_eq!(phase("Always", &[view(running.clone(), false)]), "Running");
        assert_eq!(
            phase("Always", &[view(running, false), view(waiting(), false)]),
            "Pending"
        );
        assert_eq!(phase("Never", &[view(exited(0), false)]), "Succeeded");
        assert_eq!(
            phase("Never", &[view(exited(0), false), view(exited(2), false)]),
            "Failed"
        );
        assert_eq!(phase("OnFailure", &[view(exited(2), false)]), "Running");
        assert_eq!(phase("OnFailure", &[view(exited(0), false)]), "Succeeded");
        assert_eq!(phase("Always", &[view(exited(0), false)]), "Running");
        // Waiting for a restart counts as stopped, not pending.
        assert_eq!(phase("Always", &[view(waiting(), true)]), "Running");
    }

    #[test]
    fn container_status_json() {
        let mut c = view(exited(3), true);
        c.container_id = Some("podway://b".into());
        let v = container_json(&c);
        assert_eq!(v["state"]["terminated"]["exitCode"], 3);
        assert_eq!(v["state"]["terminated"]["reason"], "Error");
        assert_eq!(v["lastState"]["terminated"]["containerID"], "podway://a");
        assert_eq!(v["containerID"], "podway://b");
        assert_eq!(v["ready"], false);
        let v = container_json(&view(waiting(), false));
        assert_eq!(v["state"]["waiting"]["reason"], "ContainerCreating");
        assert_eq!(v["lastState"], json!({}));
    }
}
