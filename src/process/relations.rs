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

/// The relations of one live process. The lists are boxed, made by the first relation:
/// most processes have none, and every process's handle carries this (one word instead of
/// four vectors, 88 bytes less a process).
#[derive(Default)]
pub(super) struct Relations {
    exited: bool,
    lists: Option<Box<Ended>>,
}

/// A process's relations, and what they were when it exited (taken once, by the exit).
#[derive(Default)]
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
            r.lists().links.push(l.clone());
        }
        if let Some(m) = monitor_by {
            r.lists().monitors.push(Watcher::Process(m.clone()));
        }
        if let Some(cb) = on_exit {
            r.lists().monitors.push(Watcher::Callback(cb));
        }
        r
    }

    /// The lists, made on first use.
    fn lists(&mut self) -> &mut Ended {
        self.lists.get_or_insert_with(Default::default)
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
            .lists()
            .monitors
            .iter()
            .any(|m| matches!(m, Watcher::Process(p) if p == watcher));
        if !already {
            self.lists()
                .monitors
                .push(Watcher::Process(watcher.clone()));
        }
        true
    }

    /// `cb` is called when this process exits; given back when it has exited already.
    pub(super) fn add_callback(&mut self, cb: ExitCallback) -> Result<(), ExitCallback> {
        if self.exited {
            return Err(cb);
        }
        self.lists().monitors.push(Watcher::Callback(cb));
        Ok(())
    }

    /// `watcher` no longer monitors this process.
    pub(super) fn remove_monitor(&mut self, watcher: &Pid) {
        if let Some(l) = &mut self.lists {
            l.monitors
                .retain(|m| !matches!(m, Watcher::Process(p) if p == watcher));
        }
    }

    /// Whether this process monitors `target`.
    pub(super) fn is_watching(&self, target: &Pid) -> bool {
        self.lists
            .as_ref()
            .is_some_and(|l| l.watching.contains(target))
    }

    /// This process monitors `target`.
    pub(super) fn watch(&mut self, target: &Pid) {
        add(&mut self.lists().watching, target);
    }

    /// This process no longer monitors `target`; whether it did.
    pub(super) fn unwatch(&mut self, target: &Pid) -> bool {
        self.lists
            .as_mut()
            .is_some_and(|l| remove(&mut l.watching, target))
    }

    /// Whether this process is linked with `p`.
    pub(super) fn is_linked(&self, p: &Pid) -> bool {
        self.lists.as_ref().is_some_and(|l| l.links.contains(p))
    }

    /// This process is linked with `p`.
    pub(super) fn link(&mut self, p: &Pid) {
        add(&mut self.lists().links, p);
    }

    /// This process is no longer linked with `p`; whether it was.
    pub(super) fn unlink(&mut self, p: &Pid) -> bool {
        self.lists.as_mut().is_some_and(|l| remove(&mut l.links, p))
    }

    /// This process holds `name`.
    pub(super) fn add_name(&mut self, name: &str) {
        self.lists().names.push(name.to_string());
    }

    /// This process no longer holds `name`.
    pub(super) fn remove_name(&mut self, name: &str) {
        if let Some(l) = &mut self.lists {
            l.names.retain(|n| n != name);
        }
    }

    /// Its links, the number of its monitors (watchers of it), and its names.
    pub(super) fn snapshot(&self) -> (Vec<Pid>, usize, Vec<String>) {
        match &self.lists {
            Some(l) => (l.links.clone(), l.monitors.len(), l.names.clone()),
            None => (Vec::new(), 0, Vec::new()),
        }
    }

    /// The process exited: its relations, taken once (None the second time).
    pub(super) fn end(&mut self) -> Option<Ended> {
        if self.exited {
            return None;
        }
        // stays marked: a monitor, link or name that comes after finds it ended
        self.exited = true;
        Some(self.lists.take().map(|l| *l).unwrap_or_default())
    }

    /// Forgets every relation with a process for which `lost` holds (its node is lost):
    /// the signals this process gets for them, an EXIT for each it monitored and a
    /// LINK_DOWN for each it was linked with, all with `exit`. Nothing once it exited.
    pub(super) fn forget(&mut self, lost: impl Fn(&Pid) -> bool, exit: &Arc<Exit>) -> Vec<Signal> {
        let mut signals = Vec::new();
        let Some(l) = self.lists.as_mut().filter(|_| !self.exited) else {
            return signals;
        };
        l.watching.retain(|t| {
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
        l.links.retain(|p| {
            if lost(p) {
                signals.push(Signal::LinkDown {
                    from: p.clone(),
                    exit: exit.clone(),
                });
                false
            } else {
                true
            }
        });
        l.monitors
            .retain(|m| !matches!(m, Watcher::Process(w) if lost(w)));
        signals
    }
}
