//! The watch set: which paths are watched, and which directories lead to them.
//!
//! Configured paths are patterns matched one component at a time (`*`, `?`, `[..]` within a
//! component), so a tree that does not exist yet, or one removed and made again, is still
//! recognised when it appears. Excludes are globs over the whole path.

use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// Builds the exclude matcher; the error names the bad glob.
pub fn exclude_set(globs: &[String]) -> Result<GlobSet, String> {
    let mut set = GlobSetBuilder::new();
    for g in globs {
        let glob = GlobBuilder::new(g)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("`{g}`: {e}"))?;
        set.add(glob);
    }
    set.build().map_err(|e| e.to_string())
}

/// One component of a configured path.
#[derive(Debug, Clone)]
enum Part {
    Literal(Vec<u8>),
    Glob(glob::Pattern),
}

impl Part {
    fn matches(&self, component: &[u8]) -> bool {
        match self {
            Part::Literal(l) => l == component,
            Part::Glob(p) => std::str::from_utf8(component).is_ok_and(|c| p.matches(c)),
        }
    }
}

/// The configured watch set.
#[derive(Debug, Clone)]
pub struct Watch {
    patterns: Vec<(String, Vec<Part>)>,
    exclude: GlobSet,
}

impl Watch {
    /// The set for `paths` and `exclude`, both already validated by the configuration.
    pub fn new(paths: &[String], exclude: &[String]) -> Result<Self, String> {
        let mut patterns = Vec::new();
        for path in paths {
            let parts = components(path.as_bytes())
                .map(|c| {
                    let text = String::from_utf8_lossy(c);
                    if text.contains(['*', '?', '[']) {
                        glob::Pattern::new(&text)
                            .map(Part::Glob)
                            .map_err(|e| format!("`{path}`: {e}"))
                    } else {
                        Ok(Part::Literal(c.to_vec()))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            patterns.push((path.clone(), parts));
        }
        Ok(Self {
            patterns,
            exclude: exclude_set(exclude)?,
        })
    }

    /// True when no path is configured.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (absolute) is a watched path: a configured path or inside one, and not
    /// excluded.
    pub fn contains(&self, path: &[u8]) -> bool {
        let parts: Vec<&[u8]> = components(path).collect();
        let hit = self.patterns.iter().any(|(_, pattern)| {
            parts.len() >= pattern.len() && pattern.iter().zip(&parts).all(|(p, c)| p.matches(c))
        });
        hit && !self.excluded(path)
    }

    /// Whether `path` is a directory on the way to a watched path (a proper ancestor of one).
    pub fn leads_to(&self, path: &[u8]) -> bool {
        let parts: Vec<&[u8]> = components(path).collect();
        self.patterns.iter().any(|(_, pattern)| {
            parts.len() < pattern.len() && pattern.iter().zip(&parts).all(|(p, c)| p.matches(c))
        })
    }

    /// Whether an exclude glob matches `path`.
    pub fn excluded(&self, path: &[u8]) -> bool {
        use std::os::unix::ffi::OsStrExt;
        self.exclude
            .is_match(Path::new(std::ffi::OsStr::from_bytes(path)))
    }

    /// The configured paths that exist now, wildcards expanded.
    pub fn roots(&self) -> Vec<Vec<u8>> {
        use std::os::unix::ffi::OsStrExt;
        let mut out = Vec::new();
        for (text, parts) in &self.patterns {
            if parts.iter().all(|p| matches!(p, Part::Literal(_))) {
                out.push(text.as_bytes().to_vec());
                continue;
            }
            let Ok(found) = glob::glob(text) else {
                continue;
            };
            out.extend(found.flatten().map(|p| p.as_os_str().as_bytes().to_vec()));
        }
        out.sort();
        out.dedup();
        out
    }

    /// The literal directories every configured path starts from, with their ancestors:
    /// where a watched path that does not exist yet would appear.
    pub fn anchors(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (_, parts) in &self.patterns {
            let mut path = Vec::new();
            out.push(b"/".to_vec());
            for part in &parts[..parts.len().saturating_sub(1)] {
                let Part::Literal(l) = part else {
                    break;
                };
                path.push(b'/');
                path.extend_from_slice(l);
                out.push(path.clone());
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Non-empty components of a path.
fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

/// The parent directory of an absolute path (`/` for a top-level name).
pub fn parent(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) | None => b"/",
        Some(i) => &path[..i],
    }
}

/// Whether `path` is `dir` or inside it.
pub fn is_within(path: &[u8], dir: &[u8]) -> bool {
    if dir == b"/" {
        return path.starts_with(b"/");
    }
    path.starts_with(dir) && (path.len() == dir.len() || path[dir.len()] == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(paths: &[&str], exclude: &[&str]) -> Watch {
        let s = |v: &[&str]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        Watch::new(&s(paths), &s(exclude)).unwrap()
    }

    #[test]
    fn trees_contain_their_files_and_ancestors_lead_to_them() {
        let w = watch(&["/tmp/case/watched", "/home/*/.ssh"], &["**/*.swp"]);

        assert!(w.contains(b"/tmp/case/watched"));
        assert!(w.contains(b"/tmp/case/watched/a/b"));
        assert!(!w.contains(b"/tmp/case/watchedx"));
        assert!(!w.contains(b"/tmp/case/watched/x.swp"), "excluded");
        assert!(w.contains(b"/home/alice/.ssh/authorized_keys"));
        assert!(w.leads_to(b"/tmp/case") && w.leads_to(b"/") && w.leads_to(b"/home/bob"));
        assert!(!w.leads_to(b"/tmp/other"));
    }

    #[test]
    fn anchors_stop_at_the_first_wildcard() {
        let w = watch(&["/home/*/.ssh", "/etc/shadow"], &[]);

        assert_eq!(
            w.anchors(),
            vec![b"/".to_vec(), b"/etc".to_vec(), b"/home".to_vec()]
        );
    }

    #[test]
    fn parent_and_within() {
        assert_eq!(parent(b"/a/b"), b"/a");
        assert_eq!(parent(b"/a"), b"/");
        assert!(is_within(b"/a/b", b"/a") && is_within(b"/a", b"/a"));
        assert!(!is_within(b"/ab", b"/a"));
    }
}
