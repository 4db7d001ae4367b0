//! The entries of an archive as a tree, checked before anything is
//! written: names that stay inside the root, one entry per path, nothing
//! under a file or a symlink, and symlinks that resolve inside the root.

use std::collections::{HashMap, VecDeque};

use nix::sys::stat::SFlag;

use super::MAX_RATIO;

/// Longest entry name, and longest symlink target, in bytes (PATH_MAX less
/// the NUL): nothing longer can be created, and it bounds the work one
/// name costs.
pub const MAX_NAME_BYTES: usize = 4095;

/// Most links followed while resolving one symlink's target, as the
/// kernel's limit (ELOOP).
const MAX_LINK_HOPS: u32 = 40;

/// Most path components walked resolving all the symlinks of one archive.
const MAX_LINK_STEPS: u32 = 1_000_000;

/// Why one entry of an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum EntryRule {
    #[error("a `..` component would leave the package")]
    ParentDir,
    #[error("an absolute path")]
    Absolute,
    #[error("a drive letter or backslash in the name (re-create the archive with `/` separators)")]
    Windows,
    #[error("a NUL byte in the name")]
    Nul,
    #[error("an empty name")]
    Empty,
    #[error("a name longer than {max} bytes", max = MAX_NAME_BYTES)]
    NameTooLong,
    #[error("a second entry for the same path")]
    Duplicate,
    #[error("written through the symlink {0:?}")]
    ThroughSymlink(String),
    #[error("its parent {0:?} is a file")]
    UnderFile(String),
    #[error("a symlink to the absolute path {0:?}")]
    LinkAbsolute(String),
    #[error("a symlink to {0:?}, which leads outside the package")]
    LinkEscapes(String),
    #[error("a symlink to {0:?}, which resolves through more than {max} links", max = MAX_LINK_HOPS)]
    LinkLoop(String),
    #[error("a symlink that takes the package's links past {max} steps to resolve", max = MAX_LINK_STEPS)]
    LinkWork,
    #[error("a symlink whose target is empty, not UTF-8, holds a NUL or passes {max} bytes", max = MAX_NAME_BYTES)]
    LinkTarget,
    #[error("a {0} (only files, directories and symlinks are taken)")]
    Special(&'static str),
    #[error("encrypted (sprout takes no password)")]
    Encrypted,
    #[error(
        "{declared} bytes from {compressed} compressed, more than {max} times as much (a zip bomb?)",
        max = MAX_RATIO
    )]
    Ratio { declared: u64, compressed: u64 },
    #[error("it unpacks to more than the {declared} bytes its header declares")]
    SizeMismatch { declared: u64 },
    #[error("unreadable entry")]
    Zip(#[source] zip::result::ZipError),
    #[error("read")]
    Read(#[source] std::io::Error),
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File { mode: u32 },
    Link,
}

/// An entry's name as a relative path of normal components joined by `/`
/// (`.` and empty components dropped; empty for the root itself), anything
/// that could leave the root refused.
pub fn normalize(name: &str) -> Result<String, EntryRule> {
    if name.len() > MAX_NAME_BYTES {
        return Err(EntryRule::NameTooLong);
    }
    if name.contains('\0') {
        return Err(EntryRule::Nul);
    }
    if name.contains('\\') {
        return Err(EntryRule::Windows);
    }
    if name.starts_with('/') {
        return Err(EntryRule::Absolute);
    }
    let bytes = name.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err(EntryRule::Windows);
    }
    let mut parts = Vec::new();
    for component in name.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(EntryRule::ParentDir),
            normal => parts.push(normal),
        }
    }
    Ok(parts.join("/"))
}

/// What an entry is, from the type bits of its Unix mode (none: a
/// directory when its name ends in `/`, else a file).
pub fn classify(mode: Option<u32>, dir_name: bool) -> Result<Kind, EntryRule> {
    let mode = mode.unwrap_or(0);
    let kind = SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits());
    Ok(match kind {
        k if k.is_empty() || k == SFlag::S_IFREG => {
            if dir_name {
                Kind::Dir
            } else {
                Kind::File { mode }
            }
        }
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFLNK => Kind::Link,
        SFlag::S_IFIFO => return Err(EntryRule::Special("fifo")),
        SFlag::S_IFCHR => return Err(EntryRule::Special("character device")),
        SFlag::S_IFBLK => return Err(EntryRule::Special("block device")),
        SFlag::S_IFSOCK => return Err(EntryRule::Special("socket")),
        _ => return Err(EntryRule::Special("file of unknown type")),
    })
}

/// The paths of an archive's entries, with the directories they imply.
#[derive(Debug, Default)]
pub struct Tree {
    root: Node,
    /// Components walked so far by [`Tree::check_link`].
    link_steps: u32,
}

#[derive(Debug, Default)]
struct Node {
    /// `None`: a directory only implied by the entries under it.
    kind: Option<Kind>,
    /// A link's target, once read.
    target: Option<String>,
    children: HashMap<String, Node>,
}

impl Tree {
    /// Add the entry at the normalised, non-empty `path`.
    pub fn insert(&mut self, path: &str, kind: Kind) -> Result<(), EntryRule> {
        let node = path.split('/').fold(&mut self.root, |node, name| {
            node.children.entry(name.to_owned()).or_default()
        });
        match node.kind.replace(kind) {
            Some(_) => Err(EntryRule::Duplicate),
            None => Ok(()),
        }
    }

    /// Refuse `path` when one of its ancestors is a file or a symlink: it
    /// would be written under a file, or through a link.
    pub fn check_parents(&self, path: &str) -> Result<(), EntryRule> {
        let names: Vec<&str> = path.split('/').collect();
        let mut node = &self.root;
        for (depth, name) in names[..names.len() - 1].iter().enumerate() {
            node = &node.children[*name];
            let prefix = || names[..=depth].join("/");
            match node.kind {
                Some(Kind::Link) => return Err(EntryRule::ThroughSymlink(prefix())),
                Some(Kind::File { .. }) => return Err(EntryRule::UnderFile(prefix())),
                Some(Kind::Dir) | None => {}
            }
        }
        Ok(())
    }

    /// Record the target of the link at `path` (inserted before).
    pub fn set_target(&mut self, path: &str, target: String) {
        let node = path.split('/').fold(&mut self.root, |node, name| {
            node.children.get_mut(name).expect("inserted")
        });
        node.target = Some(target);
    }

    /// The target of the link at `path`, once set.
    pub fn target(&self, path: &str) -> &str {
        let node = path
            .split('/')
            .fold(&self.root, |node, name| &node.children[name]);
        node.target.as_deref().expect("targets set")
    }

    /// Follow the link at `path` as the kernel would, through the other
    /// links of the tree (every target set), and refuse it if it leaves
    /// the root. A path that stops existing partway cannot lead anywhere.
    pub fn check_link(&mut self, path: &str) -> Result<(), EntryRule> {
        let names: Vec<&str> = path.split('/').collect();
        let (_, parents) = names.split_last().expect("non-empty path");
        let mut at: Vec<&Node> = vec![&self.root];
        for name in parents {
            at.push(&at.last().expect("root").children[*name]);
        }
        let link = &at.last().expect("root").children[*names.last().expect("non-empty")];
        let target = link.target.as_deref().expect("targets set");
        if target.starts_with('/') {
            return Err(EntryRule::LinkAbsolute(target.to_owned()));
        }
        let mut todo: VecDeque<&str> = target.split('/').collect();
        let mut hops = 0;
        while let Some(component) = todo.pop_front() {
            self.link_steps += 1;
            if self.link_steps > MAX_LINK_STEPS {
                return Err(EntryRule::LinkWork);
            }
            match component {
                "" | "." => {}
                ".." => {
                    if at.len() == 1 {
                        return Err(EntryRule::LinkEscapes(target.to_owned()));
                    }
                    at.pop();
                }
                name => {
                    let Some(child) = at.last().expect("root").children.get(name) else {
                        return Ok(());
                    };
                    match child.kind {
                        Some(Kind::Link) => {
                            hops += 1;
                            if hops > MAX_LINK_HOPS {
                                return Err(EntryRule::LinkLoop(target.to_owned()));
                            }
                            let next = child.target.as_deref().expect("targets set");
                            if next.starts_with('/') {
                                return Err(EntryRule::LinkEscapes(target.to_owned()));
                            }
                            for c in next.split('/').rev() {
                                todo.push_front(c);
                            }
                        }
                        Some(Kind::File { .. }) => return Ok(()),
                        Some(Kind::Dir) | None => at.push(child),
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: &[(&str, Kind, Option<&str>)]) -> Tree {
        let mut tree = Tree::default();
        for (path, kind, target) in entries {
            tree.insert(path, *kind).unwrap();
            if let Some(target) = target {
                tree.set_target(path, (*target).to_owned());
            }
        }
        tree
    }

    #[test]
    fn names_normalise_or_are_refused() {
        assert_eq!(normalize("./a//b/./c/").unwrap(), "a/b/c");
        assert_eq!(normalize("./").unwrap(), "");
        assert!(matches!(normalize("a\0b"), Err(EntryRule::Nul)));
        let long = "a/".repeat(MAX_NAME_BYTES);
        assert!(matches!(normalize(&long), Err(EntryRule::NameTooLong)));
    }

    #[test]
    fn links_resolve_like_the_kernel() {
        let file = Kind::File { mode: 0o644 };
        let mut t = tree(&[
            ("lib/libz.so.1.3", file, None),
            ("lib/libz.so.1", Kind::Link, Some("libz.so.1.3")),
            ("lib/libz.so", Kind::Link, Some("libz.so.1")),
            ("up", Kind::Link, Some("lib/..")),
            ("dangling", Kind::Link, Some("missing/../../..")),
            ("through-file", Kind::Link, Some("lib/libz.so.1.3/../../..")),
            ("root-parent", Kind::Link, Some("up/..")),
            ("chain", Kind::Link, Some("lib/../up/lib/libz.so")),
        ]);
        for ok in [
            "lib/libz.so.1",
            "lib/libz.so",
            "up",
            "chain",
            "dangling",
            "through-file",
        ] {
            t.check_link(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        // `up` is the root (lexically `lib/..`), so `up/..` leaves it.
        assert!(matches!(
            t.check_link("root-parent"),
            Err(EntryRule::LinkEscapes(_))
        ));
    }

    #[test]
    fn link_work_is_bounded() {
        let mut t = tree(&[("a", Kind::Link, Some("b")), ("b", Kind::Link, Some("a"))]);
        assert!(matches!(t.check_link("a"), Err(EntryRule::LinkLoop(_))));
        let mut t = Tree {
            link_steps: MAX_LINK_STEPS,
            ..tree(&[("x", Kind::Link, Some("y"))])
        };
        assert!(matches!(t.check_link("x"), Err(EntryRule::LinkWork)));
    }
}
