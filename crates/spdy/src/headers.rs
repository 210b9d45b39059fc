//! [`Headers`]: the ordered name/value pairs carried by SYN_STREAM, SYN_REPLY and HEADERS.

use std::fmt;

/// Ordered header name/value pairs of a stream.
///
/// A name may appear several times; on the wire the values of one name travel as a single entry
/// joined by NUL bytes, and names are sent lower-cased.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// An empty header set.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// Appends a pair; an existing name keeps its values and gains another one.
    pub fn insert(&mut self, name: &str, value: &str) {
        self.0.push((name.to_owned(), value.to_owned()));
    }

    /// The first value of `name`, compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All pairs in insertion (or wire) order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Groups the pairs by lower-cased name, in order of first appearance, for the wire.
    pub(crate) fn grouped(&self) -> Vec<(String, Vec<&str>)> {
        let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
        for (name, value) in &self.0 {
            let lower = name.to_ascii_lowercase();
            match groups.iter_mut().find(|(n, _)| *n == lower) {
                Some((_, values)) => values.push(value),
                None => groups.push((lower, vec![value])),
            }
        }
        groups
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for Headers {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> Self {
        let mut headers = Headers::new();
        for (n, v) in iter {
            headers.insert(n, v);
        }
        headers
    }
}
