//! Prefixes of `io.l5d.static` configs (`service.configs[].prefix`, and
//! `client.configs[].prefix`): a path whose segments may be `*` (any one
//! segment) or `{name}` (any one segment, captured). A prefix matches every
//! path that starts with segments it matches.

use std::fmt;
use std::str::FromStr;

use crate::dtab::Path;

/// One segment of a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// Exactly this label.
    Label(Vec<u8>),
    /// `*`: any one label.
    Any,
    /// `{name}`: any one label, captured as `name`.
    Capture(String),
}

/// A prefix pattern such as `/svc/{service}/*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixPattern {
    segments: Vec<Segment>,
}

/// A prefix that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a prefix such as /svc/* or /#/io.l5d.fs/{{service}}, found '{text}': {why}")]
pub struct BadPrefix {
    /// The text.
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl PrefixPattern {
    /// The segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The captures if `path` starts with this prefix, else `None`.
    pub fn matches(&self, path: &Path) -> Option<Vec<(String, String)>> {
        let elems = path.elems();
        if elems.len() < self.segments.len() {
            return None;
        }
        let mut caps = Vec::new();
        for (seg, label) in self.segments.iter().zip(elems) {
            match seg {
                Segment::Label(l) if l.as_slice() == label.as_bytes() => {}
                Segment::Label(_) => return None,
                Segment::Any => {}
                Segment::Capture(name) => caps.push((name.clone(), label.to_string())),
            }
        }
        Some(caps)
    }
}

impl FromStr for PrefixPattern {
    type Err = BadPrefix;

    fn from_str(text: &str) -> Result<PrefixPattern, BadPrefix> {
        let bad = |why| BadPrefix {
            text: text.to_string(),
            why,
        };
        let rest = text
            .trim()
            .strip_prefix('/')
            .ok_or(bad("it must start with '/'"))?;
        let mut segments = Vec::new();
        for s in rest.split('/').filter(|s| !s.is_empty()) {
            let seg = if s == "*" {
                Segment::Any
            } else if let Some(name) = s.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
                if name.is_empty() || name.contains(['{', '}']) {
                    return Err(bad("a capture is {name}"));
                }
                Segment::Capture(name.to_string())
            } else if s.contains(['{', '}', '*']) {
                return Err(bad("'*' and '{name}' must be whole segments"));
            } else {
                // One path label, with Finagle's \xHH escapes.
                let p: Path = format!("/{s}")
                    .parse()
                    .map_err(|_| bad("not a path label"))?;
                match p.elems() {
                    [l] => Segment::Label(l.as_bytes().to_vec()),
                    _ => return Err(bad("not a path label")),
                }
            };
            segments.push(seg);
        }
        Ok(PrefixPattern { segments })
    }
}

impl fmt::Display for PrefixPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for s in &self.segments {
            match s {
                Segment::Label(l) => {
                    let p = crate::dtab::Label::new(l.clone())
                        .map(|l| Path::from_labels(vec![l]).to_string())
                        .unwrap_or_default();
                    f.write_str(&p)?;
                }
                Segment::Any => f.write_str("/*")?,
                Segment::Capture(n) => write!(f, "/{{{n}}}")?,
            }
        }
        Ok(())
    }
}

impl serde::Serialize for PrefixPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        s.parse().unwrap()
    }

    #[test]
    fn matches_prefixes_wildcards_and_captures() {
        let all: PrefixPattern = "/".parse().unwrap();
        assert_eq!(all.matches(&p("/svc/a")), Some(vec![]));
        let svc: PrefixPattern = "/svc".parse().unwrap();
        assert!(svc.matches(&p("/svc/users/x")).is_some());
        assert!(svc.matches(&p("/other")).is_none());
        let star: PrefixPattern = "/svc/*/v1".parse().unwrap();
        assert!(star.matches(&p("/svc/users/v1/x")).is_some());
        assert!(star.matches(&p("/svc/users/v2")).is_none());
        assert!(star.matches(&p("/svc/users")).is_none());
        let cap: PrefixPattern = "/#/io.l5d.fs/{service}".parse().unwrap();
        assert_eq!(
            cap.matches(&p("/#/io.l5d.fs/web")),
            Some(vec![("service".to_string(), "web".to_string())])
        );
        assert_eq!(cap.to_string(), "/#/io.l5d.fs/{service}");
        assert_eq!(star.to_string(), "/svc/*/v1");
    }

    #[test]
    fn bad_prefixes() {
        for bad in ["svc", "/svc/a*", "/{}", "/x{y}"] {
            assert!(bad.parse::<PrefixPattern>().is_err(), "{bad}");
        }
    }
}
