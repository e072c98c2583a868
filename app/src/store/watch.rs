//! What long-polling agents wait on, kept in memory per replica.
//!
//! An agent waits for news of its own VM only: a change wakes the polls of the VMs it
//! touched and no other (with one channel for every VM, each change woke every waiting
//! poll, 10,000 wake-ups for one grant). The VM's entry also keeps the desired state last
//! read for it, valid until the VM's next change, so that an idle agent's poll is
//! answered without reading the database again.
//!
//! Changes arrive from this replica's commits directly, and from other replicas' through
//! PostgreSQL's notifications. While that listener is not known to be connected, no kept
//! state is trusted: a missed notification must not leave an agent with an old state.

use super::requests::Grant;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A VM's desired state as an agent receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredState {
    pub generation: i64,
    /// The policy's ports: (port, protocol).
    pub rules: Vec<(u16, &'static str)>,
    /// Grants in force when it was read; the ones ended since by time are dropped when
    /// answering (an expiry that the expiry job has not yet written changes nothing else).
    pub grants: Vec<Grant>,
}

#[derive(Default)]
struct Entry {
    notify: tokio::sync::Notify,
    /// Moves forward at every change of the VM: a kept state read at an older epoch is
    /// stale.
    epoch: AtomicU64,
    kept: Mutex<Option<(u64, Arc<DesiredState>)>>,
    /// When an agent last polled for it (seconds of the process clock), so that entries
    /// of VMs nobody polls any more are dropped.
    used: AtomicU64,
}

/// A poll's hold on its VM's entry.
pub struct VmWatch {
    vm_id: Arc<str>,
    entry: Arc<Entry>,
}

impl VmWatch {
    pub fn vm_id(&self) -> &str {
        &self.vm_id
    }

    /// Resolves at the VM's next change. Enable it (`Notified::enable`) before reading
    /// the state, so that a change between the read and the wait is not lost.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.entry.notify.notified()
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.entry.epoch.load(Ordering::SeqCst)
    }

    /// The state kept for the VM, if it was read at the current epoch.
    pub(crate) fn kept(&self) -> Option<Arc<DesiredState>> {
        let kept = lock(&self.entry.kept);
        match &*kept {
            Some((epoch, state)) if *epoch == self.epoch() => Some(state.clone()),
            _ => None,
        }
    }

    /// Keeps a state read after `epoch` was current, unless the VM changed since.
    pub(crate) fn keep(&self, epoch: u64, state: Arc<DesiredState>) {
        let mut kept = lock(&self.entry.kept);
        if epoch == self.epoch() {
            *kept = Some((epoch, state));
        }
    }
}

pub(crate) struct Watchers {
    entries: Mutex<HashMap<Arc<str>, Arc<Entry>>>,
    /// False while notifications from other replicas may be missed (PostgreSQL's listener
    /// is reconnecting); always true on SQLite, where every change is this process's.
    /// A store is handed out only once its listener listens, hence true at first.
    trusted: AtomicBool,
    /// The server is stopping: polls do not wait.
    closed: AtomicBool,
    started: std::sync::OnceLock<std::time::Instant>,
}

impl std::fmt::Debug for Watchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchers")
            .field("vms", &lock(&self.entries).len())
            .field("trusted", &self.trusted())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for Watchers {
    fn default() -> Self {
        Self {
            entries: Default::default(),
            trusted: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            started: Default::default(),
        }
    }
}

impl Watchers {
    fn seconds(&self) -> u64 {
        self.started
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_secs()
    }

    pub(crate) fn watch(&self, vm_id: &str) -> VmWatch {
        let now = self.seconds();
        let mut entries = lock(&self.entries);
        let (vm_id, entry) = match entries.get_key_value(vm_id) {
            Some((k, e)) => (k.clone(), e.clone()),
            None => {
                let k: Arc<str> = Arc::from(vm_id);
                let e = Arc::new(Entry::default());
                entries.insert(k.clone(), e.clone());
                (k, e)
            }
        };
        entry.used.store(now, Ordering::Relaxed);
        VmWatch { vm_id, entry }
    }

    /// Whether kept states may be used.
    pub(crate) fn trusted(&self) -> bool {
        self.trusted.load(Ordering::SeqCst)
    }

    pub(crate) fn set_trusted(&self, trusted: bool) {
        self.trusted.store(trusted, Ordering::SeqCst);
    }

    /// The VM changed: its kept state is stale and its waiting polls wake.
    pub(crate) fn wake(&self, vm_id: &str) {
        if vm_id == super::ALL_VMS {
            self.wake_all();
            return;
        }
        let entry = lock(&self.entries).get(vm_id).cloned();
        if let Some(entry) = entry {
            entry.epoch.fetch_add(1, Ordering::SeqCst);
            entry.notify.notify_waiters();
        }
    }

    pub(crate) fn wake_all(&self) {
        let entries: Vec<Arc<Entry>> = lock(&self.entries).values().cloned().collect();
        for entry in entries {
            entry.epoch.fetch_add(1, Ordering::SeqCst);
            entry.notify.notify_waiters();
        }
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    pub(crate) fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Drops the entries of VMs that no poll holds and none asked for in `idle_secs`.
    pub(crate) fn prune(&self, idle_secs: u64) {
        let now = self.seconds();
        lock(&self.entries).retain(|_, e| {
            Arc::strong_count(e) > 1
                || now.saturating_sub(e.used.load(Ordering::Relaxed)) < idle_secs
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.entries).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(generation: i64) -> Arc<DesiredState> {
        Arc::new(DesiredState {
            generation,
            rules: vec![(22, "tcp")],
            grants: Vec::new(),
        })
    }

    #[tokio::test]
    async fn a_change_wakes_the_polls_of_its_vm_and_no_other() {
        let w = Watchers::default();
        let a = w.watch("a");
        let b = w.watch("b");
        let wa = a.changed();
        let wb = b.changed();
        tokio::pin!(wa, wb);
        wa.as_mut().enable();
        wb.as_mut().enable();
        w.wake("a");
        assert!(futures::poll!(wa.as_mut()).is_ready());
        assert!(futures::poll!(wb.as_mut()).is_pending());
        w.wake(crate::store::ALL_VMS);
        assert!(futures::poll!(wb.as_mut()).is_ready());
    }

    #[test]
    fn a_kept_state_is_stale_after_a_change_even_if_read_before_it() {
        let w = Watchers::default();
        let a = w.watch("a");
        let epoch = a.epoch();
        a.keep(epoch, state(1));
        assert_eq!(a.kept().unwrap().generation, 1);
        w.wake("a");
        assert!(a.kept().is_none());
        // Read before the change, kept after it: refused.
        a.keep(epoch, state(1));
        assert!(a.kept().is_none());
        a.keep(a.epoch(), state(2));
        assert_eq!(a.kept().unwrap().generation, 2);
        // Another poll of the same VM shares what was kept.
        assert_eq!(w.watch("a").kept().unwrap().generation, 2);
    }

    #[test]
    fn entries_nobody_polls_are_dropped_and_held_ones_kept() {
        let w = Watchers::default();
        let held = w.watch("held");
        drop(w.watch("gone"));
        w.prune(0);
        assert_eq!(w.len(), 1);
        drop(held);
        w.prune(0);
        assert_eq!(w.len(), 0);
    }
}
