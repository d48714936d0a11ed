//! What nodes say to each other on NATS: packets on the subject from one node to another
//! and heartbeats on the sender's subject (see [`super::space`]), as JSON. No packet names
//! its sender: the subject does, and a server with a user per node lets a node publish
//! only on its own subjects. Every pid an operation names is checked against that sender
//! ([`apply`]): a node speaks only for its own processes, and acts only on the receiver's.
//!
//! A [`Frame`] carries a run of operations from one node to another, numbered: the
//! stream from node A to node B is identified by A's incarnation (`c`) and a session
//! number (`s`) that A starts again whenever either side declares the other lost; its
//! operations are numbered from 1 (`q` is the number of the frame's first one). The
//! receiver accepts only the next number, so a lost or repeated frame is seen.

use crate::process::{Exit, ExitError, Node, Pid, ProcessError, RemoteOp};
use crate::value::{self, Value};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A heartbeat: a node is alive, in this incarnation.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Beat {
    /// The sender's incarnation.
    pub c: u64,
    /// It leaves the cluster.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bye: bool,
    /// It has just joined: the others answer with a beat at once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hello: bool,
}

/// What arrives on a node's subject.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "k")]
pub enum Packet {
    /// Operations, in order.
    F(Frame),
    /// "I have declared you lost": the receiver declares the sender lost too and starts a
    /// new session towards it.
    Reset {
        /// The sender's incarnation.
        c: u64,
    },
}

/// A numbered run of operations from one node to another.
#[derive(Serialize, Deserialize, Debug)]
pub struct Frame {
    /// The sender's incarnation.
    pub c: u64,
    /// The session of this stream.
    pub s: u64,
    /// The number of the first operation.
    pub q: u64,
    /// The operations.
    pub o: Vec<Op>,
}

/// One operation; pids of the sending node travel as text, processes of the receiving
/// node as their local number.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "k")]
pub enum Op {
    /// A data message.
    M {
        /// The sender's pid.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        f: Option<String>,
        /// The receiving process.
        to: u64,
        /// Topic.
        tp: String,
        /// Payload.
        p: Vec<serde_json::Value>,
    },
    /// A relation or control operation.
    C(Control),
    /// "Grant me `n` pids to spawn on you with."
    Ask {
        /// How many.
        n: u64,
    },
    /// Pids `s`..`s + n` of the sender are the receiver's to spawn with.
    Grant {
        /// The first local number.
        s: u64,
        /// How many.
        n: u64,
    },
    /// Processes of the sender joined (`j`) or left group `g` of `pg` scope `s`.
    Pg {
        /// Scope id.
        s: String,
        /// Join (else leave).
        j: bool,
        /// Group.
        g: String,
        /// The processes, once per join.
        p: Vec<String>,
    },
    /// Every join of the sender's processes in scope `s`, by group.
    PgSync {
        /// Scope id.
        s: String,
        /// Groups and their members of the sender.
        g: Vec<(String, Vec<String>)>,
    },
    /// Spawn entry `e` on host `h` as pid number `id` (one the receiver granted).
    Spawn {
        /// The granted local number.
        id: u64,
        /// Entry id.
        e: String,
        /// Host id.
        h: String,
        /// Arguments.
        a: Vec<serde_json::Value>,
        /// Link it with this process of the sender.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        l: Option<String>,
        /// Let this process of the sender monitor it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        m: Option<String>,
    },
}

/// [`RemoteOp`] on the wire.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "c")]
pub enum Control {
    /// See [`RemoteOp::Monitor`].
    Monitor {
        /// Watcher.
        w: String,
        /// Target.
        t: String,
    },
    /// See [`RemoteOp::Demonitor`].
    Demonitor {
        /// Watcher.
        w: String,
        /// Target.
        t: String,
    },
    /// See [`RemoteOp::Link`].
    Link {
        /// From.
        f: String,
        /// To.
        t: String,
    },
    /// See [`RemoteOp::Unlink`].
    Unlink {
        /// From.
        f: String,
        /// To.
        t: String,
    },
    /// See [`RemoteOp::Cancel`].
    Cancel {
        /// Who asks.
        f: Option<String>,
        /// The process.
        t: String,
        /// Why.
        r: Option<String>,
    },
    /// See [`RemoteOp::Terminate`].
    Terminate {
        /// The process.
        t: String,
        /// Why.
        r: Option<String>,
    },
    /// See [`RemoteOp::Down`].
    Down {
        /// Watcher.
        t: String,
        /// The process that ended.
        f: String,
        /// How.
        e: WireExit,
    },
    /// See [`RemoteOp::LinkExit`].
    LinkExit {
        /// The linked process.
        t: String,
        /// The process that ended.
        f: String,
        /// How.
        e: WireExit,
    },
}

/// An [`Exit`] on the wire.
#[derive(Serialize, Deserialize, Debug)]
pub enum WireExit {
    /// A normal return with its value.
    N(serde_json::Value),
    /// An error: kind, message.
    E(String, String),
    /// Stopped from outside, with the reason.
    K(String),
}

fn exit_out(e: &Exit) -> WireExit {
    match e {
        Exit::Normal(v) => WireExit::N(value::to_json(v).unwrap_or(serde_json::Value::Null)),
        Exit::Error(e) => WireExit::E(e.kind.to_string(), e.message.clone()),
        Exit::Killed(r) => WireExit::K(r.clone()),
    }
}

fn exit_in(e: WireExit) -> Exit {
    match e {
        WireExit::N(v) => Exit::Normal(value::from_json(&v)),
        WireExit::E(k, m) => Exit::Error(ExitError::new(
            crate::process::error_kind(&k).unwrap_or("UNKNOWN"),
            m,
        )),
        WireExit::K(r) => Exit::Killed(r),
    }
}

/// A data message as an operation (an error when the payload cannot cross nodes).
pub fn message(
    from: Option<&Pid>,
    to: &Pid,
    topic: String,
    payload: &[Value],
) -> Result<Op, String> {
    let p: Result<Vec<_>, _> = payload.iter().map(value::to_json).collect();
    Ok(Op::M {
        f: from.map(|p| p.to_string()),
        to: to.id,
        tp: topic,
        p: p.map_err(|e| e.to_string())?,
    })
}

/// A control operation on the wire.
pub fn control(op: &RemoteOp) -> Op {
    let s = |p: &Pid| p.to_string();
    Op::C(match op {
        RemoteOp::Monitor { watcher, target } => Control::Monitor {
            w: s(watcher),
            t: s(target),
        },
        RemoteOp::Demonitor { watcher, target } => Control::Demonitor {
            w: s(watcher),
            t: s(target),
        },
        RemoteOp::Link { from, to } => Control::Link {
            f: s(from),
            t: s(to),
        },
        RemoteOp::Unlink { from, to } => Control::Unlink {
            f: s(from),
            t: s(to),
        },
        RemoteOp::Cancel { from, to, reason } => Control::Cancel {
            f: from.as_ref().map(s),
            t: s(to),
            r: reason.clone(),
        },
        RemoteOp::Terminate { to, reason } => Control::Terminate {
            t: s(to),
            r: reason.clone(),
        },
        RemoteOp::Down { to, from, exit } => Control::Down {
            t: s(to),
            f: s(from),
            e: exit_out(exit),
        },
        RemoteOp::LinkExit { to, from, exit } => Control::LinkExit {
            t: s(to),
            f: s(from),
            e: exit_out(exit),
        },
    })
}

/// Applies a received operation from node `from` (incarnation `creation`) on `node`; one
/// that names a pid it may not (a pid of a third node as its own, or another node's
/// process as the one to act on) is dropped with a warning.
pub fn apply(node: &Node, from: &str, creation: u64, op: Op) {
    let sender = Origin {
        node,
        name: from,
        creation,
    };
    match op {
        Op::M { f, to, tp, p } => {
            let dest = Pid {
                node: node.name.clone(),
                id: to,
            };
            let source = match f {
                Some(f) => match sender.theirs(&f) {
                    Some(p) => Some(p),
                    None => return sender.refuse("a message", &f),
                },
                None => None,
            };
            let payload = p.iter().map(value::from_json).collect();
            // as in Erlang, a message to a process that is gone is dropped; one to a full
            // mailbox is dropped too (the sender was told "sent" long ago), with a warning
            if let Err(ProcessError::Busy(why)) = node.send(source.as_ref(), &dest, tp, payload) {
                dropped_full(node, from, &why);
            }
        }
        Op::C(c) => match remote_op(&sender, c) {
            Ok(op) => node.apply_remote(op),
            Err(pid) => sender.refuse("a control operation", &pid),
        },
        // handled by the cluster itself
        Op::Ask { .. }
        | Op::Grant { .. }
        | Op::Spawn { .. }
        | Op::Pg { .. }
        | Op::PgSync { .. } => {}
    }
}

/// A message from node `from` found its process's mailbox full: counted on the node, and
/// logged the first time and then once in every 10,000.
fn dropped_full(node: &Node, from: &str, why: &str) {
    let n = node.stats.remote_dropped.fetch_add(1, Ordering::Relaxed) + 1;
    if n == 1 || n.is_multiple_of(10_000) {
        tracing::warn!(
            node = %from,
            dropped = n,
            "cluster: a message from node {from} was dropped: {why} ({n} dropped so far)"
        );
    }
}

/// Who sent a frame, and what it may name.
pub(super) struct Origin<'a> {
    pub(super) node: &'a Node,
    pub(super) name: &'a str,
    pub(super) creation: u64,
}

impl Origin<'_> {
    /// `s` as a pid of the sender: of the incarnation that sent the frame, or of an
    /// earlier one (a monitor of a process of that one ends with `noproc` from it).
    pub(super) fn theirs(&self, s: &str) -> Option<Pid> {
        let p = self.node.parse_pid(s)?;
        (&*p.node == self.name && p.creation() <= self.creation).then_some(p)
    }

    /// `s` as a pid of the receiving node.
    fn ours(&self, s: &str) -> Option<Pid> {
        let p = self.node.parse_pid(s)?;
        (p.node == self.node.name).then_some(p)
    }

    fn refuse(&self, what: &str, pid: &str) {
        tracing::warn!(
            node = %self.name,
            "cluster: {what} naming {pid:?} was dropped (a node speaks only for its own processes, and acts only on the receiver's)"
        );
    }
}

fn remote_op(s: &Origin, c: Control) -> Result<RemoteOp, String> {
    let theirs = |p: String| s.theirs(&p).ok_or(p);
    let ours = |p: String| s.ours(&p).ok_or(p);
    Ok(match c {
        Control::Monitor { w, t } => RemoteOp::Monitor {
            watcher: theirs(w)?,
            target: ours(t)?,
        },
        Control::Demonitor { w, t } => RemoteOp::Demonitor {
            watcher: theirs(w)?,
            target: ours(t)?,
        },
        Control::Link { f, t } => RemoteOp::Link {
            from: theirs(f)?,
            to: ours(t)?,
        },
        Control::Unlink { f, t } => RemoteOp::Unlink {
            from: theirs(f)?,
            to: ours(t)?,
        },
        Control::Cancel { f, t, r } => RemoteOp::Cancel {
            from: match f {
                Some(f) => Some(theirs(f)?),
                None => None,
            },
            to: ours(t)?,
            reason: r,
        },
        Control::Terminate { t, r } => RemoteOp::Terminate {
            to: ours(t)?,
            reason: r,
        },
        Control::Down { t, f, e } => RemoteOp::Down {
            to: ours(t)?,
            from: theirs(f)?,
            exit: Arc::new(exit_in(e)),
        },
        Control::LinkExit { t, f, e } => RemoteOp::LinkExit {
            to: ours(t)?,
            from: theirs(f)?,
            exit: Arc::new(exit_in(e)),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes on a node's subject are a packet or an error, never a panic; any
        /// operation read from them is applied or dropped, never a panic (issue 36).
        #[test]
        fn any_bytes_are_read_without_harm(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = serde_json::from_slice::<Packet>(&bytes);
        }

        #[test]
        fn any_operation_is_applied_or_dropped(
            pids in proptest::collection::vec(
                prop_oneof![
                    "[{}|a-z0-9.]{0,14}",
                    (0u64..4, any::<u64>()).prop_map(|(c, n)| format!("{{a|{c}.{n}}}")),
                    (any::<u64>(), any::<u64>()).prop_map(|(c, n)| format!("{{b|{c}.{n}}}")),
                ],
                4,
            ),
            to in any::<u64>(),
            pick in 0usize..9,
        ) {
            let node = Arc::new(Node::new("b", Default::default(), Default::default()));
            let (p, q) = (pids[0].clone(), pids[1].clone());
            let op = match pick {
                0 => Op::M { f: Some(p), to, tp: "t".into(), p: vec![] },
                1 => Op::C(Control::Monitor { w: p, t: q }),
                2 => Op::C(Control::Demonitor { w: p, t: q }),
                3 => Op::C(Control::Link { f: p, t: q }),
                4 => Op::C(Control::Unlink { f: p, t: q }),
                5 => Op::C(Control::Cancel { f: Some(p), t: q, r: None }),
                6 => Op::C(Control::Terminate { t: q, r: Some(p) }),
                7 => Op::C(Control::Down { t: q, f: p, e: WireExit::K("x".into()) }),
                _ => Op::C(Control::LinkExit { t: q, f: p, e: WireExit::N(serde_json::Value::Null) }),
            };
            let text = serde_json::to_string(&op).unwrap();
            let back: Op = serde_json::from_str(&text).unwrap();
            apply(&node, "a", 2, back);
        }
    }

    fn pid(s: &str) -> Pid {
        Pid::parse(s).unwrap()
    }

    /// Every operation survives the trip through JSON (the tags of the nested enums and
    /// the fields must not collide).
    /// A node may name only its own processes as the actor and only the receiver's as
    /// the one acted on (issue 36: a client that could publish as a node linked two of
    /// the receiver's processes, or reported another node's process as ended).
    #[test]
    fn a_node_speaks_only_for_its_own_processes() {
        let node = Node::new("b", Default::default(), Default::default());
        let sender = Origin {
            node: &node,
            name: "a",
            creation: 2,
        };
        let bad = [
            // two of b's processes linked by "a"
            Control::Link {
                f: "{b|3.1}".into(),
                t: "{b|3.2}".into(),
            },
            // a process of a third node as the watcher
            Control::Monitor {
                w: "{c|5.1}".into(),
                t: "{b|3.2}".into(),
            },
            // a later incarnation of a
            Control::LinkExit {
                t: "{b|3.2}".into(),
                f: "{a|9.4}".into(),
                e: WireExit::K("x".into()),
            },
            // a process of another node terminated through b
            Control::Terminate {
                t: "{c|5.1}".into(),
                r: None,
            },
        ];
        for c in bad {
            let text = format!("{c:?}");
            assert!(remote_op(&sender, c).is_err(), "{text} was accepted");
        }
        let ok = Control::Link {
            f: "{a|2.1}".into(),
            t: "{b|3.2}".into(),
        };
        assert!(remote_op(&sender, ok).is_ok());
    }

    #[test]
    fn every_operation_round_trips() {
        let (a, b) = (pid("{a|2.1}"), pid("{b|3.9}"));
        let exit = Arc::new(Exit::Error(ExitError::new("NOT_FOUND", "gone")));
        let ops = vec![
            RemoteOp::Monitor {
                watcher: a.clone(),
                target: b.clone(),
            },
            RemoteOp::Demonitor {
                watcher: a.clone(),
                target: b.clone(),
            },
            RemoteOp::Link {
                from: a.clone(),
                to: b.clone(),
            },
            RemoteOp::Unlink {
                from: a.clone(),
                to: b.clone(),
            },
            RemoteOp::Cancel {
                from: Some(a.clone()),
                to: b.clone(),
                reason: Some("why".into()),
            },
            RemoteOp::Terminate {
                to: b.clone(),
                reason: None,
            },
            RemoteOp::Down {
                to: a.clone(),
                from: b.clone(),
                exit: exit.clone(),
            },
            RemoteOp::LinkExit {
                to: a.clone(),
                from: b.clone(),
                exit,
            },
        ];
        for op in ops {
            let want = format!("{op:?}");
            let text = serde_json::to_string(&control(&op)).unwrap();
            let Op::C(c) = serde_json::from_str::<Op>(&text).unwrap() else {
                panic!("{text}")
            };
            // received by the node of the process acted on, from the other one
            let (here, there, creation) = match &op {
                RemoteOp::Down { .. } | RemoteOp::LinkExit { .. } => ("a", "b", 3),
                _ => ("b", "a", 2),
            };
            let node = Node::new(here, Default::default(), Default::default());
            let sender = Origin {
                node: &node,
                name: there,
                creation,
            };
            let back = remote_op(&sender, c).unwrap();
            assert_eq!(format!("{back:?}"), want, "{text}");
        }
        let m = message(Some(&a), &b, "t".into(), &[Value::Int(1)]).unwrap();
        let text = serde_json::to_string(&m).unwrap();
        assert!(matches!(
            serde_json::from_str::<Op>(&text).unwrap(),
            Op::M { to, .. } if to == b.id
        ));
        for op in [
            Op::Ask { n: 3 },
            Op::Grant { s: 5, n: 3 },
            Op::Spawn {
                id: 7,
                e: "app:w".into(),
                h: "app:h".into(),
                a: vec![],
                l: Some(a.to_string()),
                m: None,
            },
        ] {
            let text = serde_json::to_string(&op).unwrap();
            let back = serde_json::to_string(&serde_json::from_str::<Op>(&text).unwrap()).unwrap();
            assert_eq!(back, text);
        }
    }
}
