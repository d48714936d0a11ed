//! Where the nodes of one cluster meet on a NATS server: every subject, queue group and
//! key-value bucket carries the cluster's name, so two apps on one account never meet.
//!
//! A subject a node publishes on ends with its own name, so a server that gives each node
//! a user allowed to publish only its own subjects (`examples/cluster/nats.conf`) makes
//! the sender known from where it may publish, not from what it writes:
//!
//! | subject | who publishes | who subscribes |
//! |---|---|---|
//! | `warden.<cluster>.msg.<to>.<from>` | node `from` | node `to` (`...msg.<to>.*`) |
//! | `warden.<cluster>.hb.<from>` | node `from` | every node (`...hb.*`) |
//! | `warden.<cluster>.alive.<node>` | a node claiming the name | node `node` |
//! | `warden.<cluster>.fn.<function>` | any node (a call) | the nodes serving it, queue group `warden.<cluster>` |
//! | `warden.<cluster>.fnat.<node>.<function>` | any node (a call) | node `node` |
//!
//! Buckets: `warden_<cluster>_nodes` (node names, their incarnations) and
//! `warden_<cluster>_names` (cluster names of processes).

/// The cluster name when none is given.
pub const DEFAULT: &str = "default";

/// The subjects and buckets of one cluster.
#[derive(Clone, Debug)]
pub struct Space {
    prefix: String,
    cluster: String,
}

impl Space {
    /// The space of cluster `name` (checked by `config::check_name`).
    pub fn new(name: &str) -> Space {
        Space {
            prefix: format!("warden.{name}"),
            cluster: name.to_string(),
        }
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.cluster
    }

    /// Frames and resets from node `from` to node `to`.
    pub fn msg(&self, to: &str, from: &str) -> String {
        format!("{}.msg.{to}.{from}", self.prefix)
    }

    /// Everything sent to node `to` (the sender is the last token).
    pub fn inbox(&self, to: &str) -> String {
        format!("{}.msg.{to}.*", self.prefix)
    }

    /// Node `from`'s heartbeats.
    pub fn beat(&self, from: &str) -> String {
        format!("{}.hb.{from}", self.prefix)
    }

    /// Every node's heartbeats.
    pub fn beats(&self) -> String {
        format!("{}.hb.*", self.prefix)
    }

    /// Where node `node` answers "are you running?" while it holds (or claims) its name.
    pub fn alive(&self, node: &str) -> String {
        format!("{}.alive.{node}", self.prefix)
    }

    /// Calls of function `key` (a subject token), served by any node that has it.
    pub fn function(&self, key: &str) -> String {
        format!("{}.fn.{key}", self.prefix)
    }

    /// Calls of function `key` on node `node` only.
    pub fn function_at(&self, node: &str, key: &str) -> String {
        format!("{}.fnat.{node}.{key}", self.prefix)
    }

    /// The queue group of the nodes serving a function.
    pub fn queue(&self) -> String {
        self.prefix.clone()
    }

    /// Key-value bucket `what` (`nodes`, `names`).
    pub fn bucket(&self, what: &str) -> String {
        format!("warden_{}_{what}", self.cluster)
    }

    /// The last token of `subject` when it is `prefix` + one token: the sender of a
    /// frame or a beat.
    pub fn sender<'a>(subject: &'a str, prefix_of: &str) -> Option<&'a str> {
        let tail = subject.strip_prefix(prefix_of.strip_suffix('*')?)?;
        (!tail.is_empty() && !tail.contains('.')).then_some(tail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sender_is_the_last_token() {
        let s = Space::new("shop");
        assert_eq!(s.msg("a", "b"), "warden.shop.msg.a.b");
        assert_eq!(Space::sender(&s.msg("a", "b"), &s.inbox("a")), Some("b"));
        assert_eq!(Space::sender(&s.beat("c"), &s.beats()), Some("c"));
        assert_eq!(Space::sender("warden.shop.msg.a.", &s.inbox("a")), None);
        assert_eq!(Space::sender("warden.other.msg.a.b", &s.inbox("a")), None);
        assert_eq!(s.bucket("names"), "warden_shop_names");
    }
}
