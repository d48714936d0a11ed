//! Pids: the node that runs a process, its incarnation and its local number.

use std::fmt;
use std::sync::Arc;

/// A process id: the node that runs it and a local number. Its text form is `{node|N}`,
/// so processes on other nodes can be addressed later without changing the Lua API.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pid {
    /// Node name.
    pub node: Arc<str>,
    /// Local number, unique on the node.
    pub id: u64,
}

/// Bits of a pid's local number that count processes; the bits above hold the node's
/// incarnation (its creation) when the node is in a cluster, and are 0 otherwise.
pub const CREATION_SHIFT: u32 = 40;

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut numbers = itoa::Buffer::new();
        f.write_str("{")?;
        f.write_str(&self.node)?;
        f.write_str("|")?;
        match self.creation() {
            0 => f.write_str(numbers.format(self.id))?,
            c => {
                f.write_str(numbers.format(c))?;
                f.write_str(".")?;
                f.write_str(numbers.format(self.seq()))?;
            }
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Pid {
    /// Parses the text form `{node|N}` (or `{node|C.N}`: process N of incarnation C of a
    /// clustered node).
    pub fn parse(s: &str) -> Option<Pid> {
        let (node, id) = split_pid(s)?;
        Some(Pid {
            node: Arc::from(node),
            id,
        })
    }

    /// The text form, `{node|N}` or `{node|C.N}` (what `Display` writes; made at every
    /// spawn, so without the formatting machinery).
    pub fn text(&self) -> String {
        let mut numbers = itoa::Buffer::new();
        let mut out = String::with_capacity(self.node.len() + 24);
        out.push('{');
        out.push_str(&self.node);
        out.push('|');
        match self.creation() {
            0 => out.push_str(numbers.format(self.id)),
            c => {
                out.push_str(numbers.format(c));
                out.push('.');
                out.push_str(numbers.format(self.seq()));
            }
        }
        out.push('}');
        out
    }

    /// The incarnation of the node that made this pid (0 outside a cluster).
    pub fn creation(&self) -> u64 {
        self.id >> CREATION_SHIFT
    }

    /// The process's number within its node's incarnation.
    pub fn seq(&self) -> u64 {
        self.id & ((1 << CREATION_SHIFT) - 1)
    }
}

/// `{node|N}` / `{node|C.N}` -> (node, local number).
pub(super) fn split_pid(s: &str) -> Option<(&str, u64)> {
    let inner = s.strip_prefix('{')?.strip_suffix('}')?;
    let (node, id) = inner.rsplit_once('|')?;
    if node.is_empty() {
        return None;
    }
    let id = match id.split_once('.') {
        None => id.parse().ok()?,
        Some((c, n)) => {
            let (c, n): (u64, u64) = (c.parse().ok()?, n.parse().ok()?);
            if c == 0 || c >= 1 << (64 - CREATION_SHIFT) || n >= 1 << CREATION_SHIFT {
                return None;
            }
            c << CREATION_SHIFT | n
        }
    };
    Some((node, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_reads_back_from_its_text() {
        let plain = Pid {
            node: Arc::from("n1"),
            id: 42,
        };
        assert_eq!(plain.to_string(), "{n1|42}");
        let clustered = Pid {
            node: Arc::from("n1"),
            id: 3 << CREATION_SHIFT | 7,
        };
        assert_eq!(clustered.to_string(), "{n1|3.7}");
        for p in [plain, clustered] {
            assert_eq!(Pid::parse(&p.text()), Some(p));
        }
    }
}
