//! The resources the server serves and where they live in the store.

/// A served resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// core/v1 Pod (namespaced).
    Pod,
    /// core/v1 Node (cluster-scoped).
    Node,
    /// core/v1 Namespace (cluster-scoped).
    Namespace,
}

impl Kind {
    /// Every served kind.
    pub const ALL: [Kind; 3] = [Kind::Pod, Kind::Node, Kind::Namespace];

    /// The resource name in URLs, e.g. `pods`.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::Node => "nodes",
            Kind::Namespace => "namespaces",
        }
    }

    /// The kind, e.g. `Pod`.
    pub fn kind(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Node => "Node",
            Kind::Namespace => "Namespace",
        }
    }

    /// Whether objects live in a namespace.
    pub fn namespaced(self) -> bool {
        matches!(self, Kind::Pod)
    }

    /// Looks a kind up by its plural.
    pub fn from_plural(plural: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.plural() == plural)
    }

    /// The store key of one object.
    pub fn key(self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced() => format!("/{}/{ns}/{name}", self.plural()),
            _ => format!("/{}/{name}", self.plural()),
        }
    }

    /// The store prefix of a collection (`None`: every namespace).
    pub fn prefix(self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced() => format!("/{}/{ns}/", self.plural()),
            _ => format!("/{}/", self.plural()),
        }
    }
}

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The resource type.
    pub kind: Kind,
    /// The namespace, for namespaced kinds addressed through `/namespaces/{ns}/…`.
    pub namespace: Option<String>,
    /// The object's name (absent: the collection).
    pub name: Option<String>,
    /// The subresource (`status`, `exec`, `log`, …).
    pub subresource: Option<String>,
}

impl Target {
    /// Parses the part of a path after `/api/v1/`.
    pub fn parse(segments: &[&str]) -> Option<Target> {
        let owned = |s: &&str| s.to_string();
        match segments {
            ["namespaces", ns, plural, rest @ ..]
                if Kind::from_plural(plural).is_some_and(Kind::namespaced) && rest.len() <= 2 =>
            {
                Some(Target {
                    kind: Kind::from_plural(plural)?,
                    namespace: Some(ns.to_string()),
                    name: rest.first().map(owned),
                    subresource: rest.get(1).map(owned),
                })
            }
            [plural, rest @ ..] if rest.len() <= 2 => {
                let kind = Kind::from_plural(plural)?;
                if kind.namespaced() && !rest.is_empty() {
                    return None;
                }
                Some(Target {
                    kind,
                    namespace: None,
                    name: rest.first().map(owned),
                    subresource: rest.get(1).map(owned),
                })
            }
            _ => None,
        }
    }

    /// The namespace for display and keys (`None` for cluster-scoped kinds).
    pub fn ns(&self) -> Option<&str> {
        self.namespace.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths() {
        let t = Target::parse(&["namespaces", "default", "pods", "web", "exec"]);
        assert_eq!(
            t,
            Some(Target {
                kind: Kind::Pod,
                namespace: Some("default".into()),
                name: Some("web".into()),
                subresource: Some("exec".into()),
            })
        );
        let ns = Target::parse(&["namespaces", "default"]);
        assert_eq!(
            ns.map(|t| (t.kind, t.name)),
            Some((Kind::Namespace, Some("default".into())))
        );
        let status = Target::parse(&["namespaces", "default", "status"]);
        assert_eq!(status.and_then(|t| t.subresource), Some("status".into()));
        assert_eq!(Target::parse(&["pods"]).map(|t| t.namespace), Some(None));
        assert_eq!(Target::parse(&["pods", "x"]), None);
        assert_eq!(
            Target::parse(&["nodes", "n1", "status"]).map(|t| t.kind),
            Some(Kind::Node)
        );
    }
}
