//! A process's relations: who monitors it, whom it monitors, its links and its names.
//! This is the only code that edits them; the node calls these methods under the
//! process's relations lock.

use super::exit::Exit;
use super::mailbox::Signal;
use super::pid::Pid;
use std::sync::Arc;

/// Called once with the exit of a process watched from outside any process (e.g. by the
/// CLI or a supervisor actor).
pub type ExitCallback = Box<dyn FnOnce(&Pid, &Arc<Exit>) + Send>;

/// Who hears of a process's exit.
pub(super) enum Watcher {
    /// A process, with an EXIT signal.
    Process(Pid),
    /// Code outside any process, called once.
    Callback(ExitCallback),
}

/// The relations of one live process.
#[derive(Default)]
pub(super) struct Relations {
    exited: bool,
    monitors: Vec<Watcher>,
    watching: Vec<Pid>,
    links: Vec<Pid>,
    names: Vec<String>,
}

/// What a process's relations were when it exited (taken once, by the exit).
pub(super) struct Ended {
    /// Those that monitored it.
    pub(super) monitors: Vec<Watcher>,
    /// Those it monitored.
    pub(super) watching: Vec<Pid>,
    /// Those it was linked with.
    pub(super) links: Vec<Pid>,
    /// Its names.
    pub(super) names: Vec<String>,
}

fn add(list: &mut Vec<Pid>, p: &Pid) {
    if !list.contains(p) {
        list.push(p.clone());
    }
}

/// Removes `p`; whether it was there.
fn remove(list: &mut Vec<Pid>, p: &Pid) -> bool {
    let before = list.len();
    list.retain(|x| x != p);
    list.len() < before
}

impl Relations {
    /// The relations a process is spawned with: linked with `link_to`, monitored by
    /// `monitor_by`, and `on_exit` called when it ends.
    pub(super) fn starting(
        link_to: Option<&Pid>,
        monitor_by: Option<&Pid>,
        on_exit: Option<ExitCallback>,
    ) -> Relations {
        let mut r = Relations::default();
        if let Some(l) = link_to {
            r.links.push(l.clone());
        }
        if let Some(m) = monitor_by {
            r.monitors.push(Watcher::Process(m.clone()));
        }
        if let Some(cb) = on_exit {
            r.monitors.push(Watcher::Callback(cb));
        }
        r
    }

    /// Whether the process has exited (its relations are gone).
    pub(super) fn exited(&self) -> bool {
        self.exited
    }

    /// `watcher` monitors this process (once, however often it asks). False when the
    /// process has exited.
    pub(super) fn add_monitor(&mut self, watcher: &Pid) -> bool {
        if self.exited {
            return false;
        }
        let already = self
            .monitors
            .iter()
            .any(|m| matches!(m, Watcher::Process(p) if p == watcher));
        if !already {
            self.monitors.push(Watcher::Process(watcher.clone()));
        }
        true
    }

    /// `cb` is called when this process exits; given back when it has exited already.
    pub(super) fn add_callback(&mut self, cb: ExitCallback) -> Result<(), ExitCallback> {
        if self.exited {
            return Err(cb);
        }
        self.monitors.push(Watcher::Callback(cb));
        Ok(())
    }

    /// `watcher` no longer monitors this process.
    pub(super) fn remove_monitor(&mut self, watcher: &Pid) {
        self.monitors
            .retain(|m| !matches!(m, Watcher::Process(p) if p == watcher));
    }

    /// Whether this process monitors `target`.
    pub(super) fn is_watching(&self, target: &Pid) -> bool {
        self.watching.contains(target)
    }

    /// This process monitors `target`.
    pub(super) fn watch(&mut self, target: &Pid) {
        add(&mut self.watching, target);
    }

    /// This process no longer monitors `target`; whether it did.
    pub(super) fn unwatch(&mut self, target: &Pid) -> bool {
        remove(&mut self.watching, target)
    }

    /// Whether this process is linked with `p`.
    pub(super) fn is_linked(&self, p: &Pid) -> bool {
        self.links.contains(p)
    }

    /// This process is linked with `p`.
    pub(super) fn link(&mut self, p: &Pid) {
        add(&mut self.links, p);
    }

    /// This process is no longer linked with `p`; whether it was.
    pub(super) fn unlink(&mut self, p: &Pid) -> bool {
        remove(&mut self.links, p)
    }

    /// This process holds `name`.
    pub(super) fn add_name(&mut self, name: &str) {
        self.names.push(name.to_string());
    }

    /// This process no longer holds `name`.
    pub(super) fn remove_name(&mut self, name: &str) {
        self.names.retain(|n| n != name);
    }

    /// Its links, the number of its monitors (watchers of it), and its names.
    pub(super) fn snapshot(&self) -> (Vec<Pid>, usize, Vec<String>) {
        (self.links.clone(), self.monitors.len(), self.names.clone())
    }

    /// The process exited: its relations, taken once (None the second time).
    pub(super) fn end(&mut self) -> Option<Ended> {
        if self.exited {
            return None;
        }
        let r = std::mem::take(self);
        // stays marked: a monitor, link or name that comes after finds it ended
        self.exited = true;
        Some(Ended {
            monitors: r.monitors,
            watching: r.watching,
            links: r.links,
            names: r.names,
        })
    }

    /// Forgets every relation with a process for which `lost` holds (its node is lost):
    /// the signals this process gets for them, an EXIT for each it monitored and a
    /// LINK_DOWN for each it was linked with, all with `exit`. Nothing once it exited.
    pub(super) fn forget(&mut self, lost: impl Fn(&Pid) -> bool, exit: &Arc<Exit>) -> Vec<Signal> {
        let mut signals = Vec::new();
        if self.exited {
            return signals;
        }
        self.watching.retain(|t| {
            if lost(t) {
                signals.push(Signal::Down {
                    from: t.clone(),
                    exit: exit.clone(),
                });
                false
            } else {
                true
            }
        });
        self.links.retain(|l| {
            if lost(l) {
                signals.push(Signal::LinkDown {
                    from: l.clone(),
                    exit: exit.clone(),
                });
                false
            } else {
                true
            }
        });
        self.monitors
            .retain(|m| !matches!(m, Watcher::Process(w) if lost(w)));
        signals
    }
}
