//! The status a remotecommand server reports at the end of a session: a `metav1.Status` JSON
//! document (v4/v5) or a plain text on failure only (v1–v3 and the old WebSocket protocols).
use serde::Serialize;

use crate::remotecommand::Outcome;

#[derive(Serialize)]
struct Metadata {}

#[derive(Serialize)]
struct Cause<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    message: String,
}

#[derive(Serialize)]
struct Details<'a> {
    causes: Vec<Cause<'a>>,
}

#[derive(Serialize)]
struct Status<'a> {
    metadata: Metadata,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

/// Formats an argv the way Go's `%v` prints a `[]string`: `[sh -c exit 3]`.
fn argv(command: &[String]) -> String {
    format!("[{}]", command.join(" "))
}

/// The message of a non-zero exit, as the kubelet and containerd word it.
fn exit_message(code: i32, command: &[String]) -> String {
    if command.is_empty() {
        format!(
            "command terminated with non-zero exit code: error executing command, exit code {code}"
        )
    } else {
        format!(
            "command terminated with non-zero exit code: error executing command {}, exit code {code}",
            argv(command)
        )
    }
}

/// The v4/v5 error-stream document for `outcome` (`command` is the argv, if known, for the text).
pub fn status_json(outcome: &Outcome, command: &[String]) -> Vec<u8> {
    let status = match outcome {
        Outcome::Exited(0) => Status {
            metadata: Metadata {},
            status: "Success",
            message: None,
            reason: None,
            details: None,
            code: None,
        },
        Outcome::Exited(code) => Status {
            metadata: Metadata {},
            status: "Failure",
            message: Some(exit_message(*code, command)),
            reason: Some("NonZeroExitCode"),
            details: Some(Details {
                causes: vec![Cause {
                    reason: Some("ExitCode"),
                    message: code.to_string(),
                }],
            }),
            code: None,
        },
        Outcome::Error(text) => Status {
            metadata: Metadata {},
            status: "Failure",
            message: Some(format!("Internal error occurred: {text}")),
            reason: Some("InternalError"),
            details: Some(Details {
                causes: vec![Cause {
                    reason: None,
                    message: text.clone(),
                }],
            }),
            code: Some(500),
        },
    };
    // Serializing these plain structs cannot fail; fall back to a minimal document regardless.
    serde_json::to_vec(&status)
        .unwrap_or_else(|_| br#"{"metadata":{},"status":"Failure"}"#.to_vec())
}

/// The v1–v3 error-stream text for `outcome`: `None` on success (nothing is written).
pub fn status_text(outcome: &Outcome, command: &[String]) -> Option<Vec<u8>> {
    match outcome {
        Outcome::Exited(0) => None,
        Outcome::Exited(code) => Some(exit_message(*code, command).into_bytes()),
        Outcome::Error(text) => Some(format!("Internal error occurred: {text}").into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> Vec<String> {
        ["sh", "-c", "exit 3"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn success_exact_bytes() {
        assert_eq!(
            String::from_utf8(status_json(&Outcome::Exited(0), &cmd())).unwrap(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        assert_eq!(status_text(&Outcome::Exited(0), &cmd()), None);
    }

    #[test]
    fn exit_code_exact_bytes() {
        assert_eq!(
            String::from_utf8(status_json(&Outcome::Exited(3), &cmd())).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
        assert_eq!(
            status_text(&Outcome::Exited(3), &cmd()).unwrap(),
            b"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
    }

    #[test]
    fn internal_error_exact_bytes() {
        let o = Outcome::Error("error executing command in container: no such file".into());
        assert_eq!(
            String::from_utf8(status_json(&o, &[])).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"Internal error occurred: error executing command in container: no such file","reason":"InternalError","details":{"causes":[{"message":"error executing command in container: no such file"}]},"code":500}"#
        );
    }
}
