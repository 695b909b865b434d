//! Faults injected through the admin API: per outgoing link (a one-way cut, delay with jitter, loss)
//! and a slow disk. In memory only: a restart heals them all.
//!
//! Owns the fault settings and each message's fate under them. The transport asks [`Faults::fate`]
//! for every request it sends and the Raft route for every reply it sends back; the storage writer
//! reads [`Faults::disk_write_delay`] before each write that fsyncs. A node without link faults pays
//! one relaxed atomic load per message.

use crate::raft::rng::SplitMix64;
use flotilla_shared::api::{LinkFault, LinkFaultStatus};
use flotilla_shared::event::DropReason;
use flotilla_shared::NodeId;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Longest disk delay the admin API accepts (the same bound as a link's delay).
pub const MAX_DISK_WRITE_DELAY_MS: u64 = 60_000;

/// What becomes of one message on its way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    /// Deliver after this long.
    Delay(Duration),
    /// Never sent.
    Drop(DropReason),
}

pub struct Faults {
    links: Mutex<Links>,
    /// Whether any link is faulty, so that a healthy node takes no lock per message.
    any_link: AtomicBool,
    disk_write_delay_ms: AtomicU64,
}

struct Links {
    faults: BTreeMap<NodeId, LinkFault>,
    /// Loss and jitter draws; seeded per process (fault injection needs no reproducibility here,
    /// the simulator has its own network).
    rng: SplitMix64,
}

impl Faults {
    pub fn new(seed: u64) -> Self {
        Self {
            links: Mutex::new(Links {
                faults: BTreeMap::new(),
                rng: SplitMix64::new(seed),
            }),
            any_link: AtomicBool::new(false),
            disk_write_delay_ms: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Links> {
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the faults on the link to `to`; a healed fault removes them. Returns what is in force now
    /// (`None`: healed).
    pub fn set_link(&self, to: NodeId, fault: LinkFault) -> Option<LinkFault> {
        let mut links = self.lock();
        if fault.is_healed() {
            links.faults.remove(&to);
        } else {
            links.faults.insert(to, fault);
        }
        self.any_link
            .store(!links.faults.is_empty(), Ordering::Relaxed);
        (!fault.is_healed()).then_some(fault)
    }

    /// The faulty links, by peer.
    pub fn links(&self) -> Vec<LinkFaultStatus> {
        if !self.any_link.load(Ordering::Relaxed) {
            return Vec::new();
        }
        self.lock()
            .faults
            .iter()
            .map(|(&to, &fault)| LinkFaultStatus { to, fault })
            .collect()
    }

    /// Decides the fate of one message to `to`: each call draws loss and jitter anew.
    pub fn fate(&self, to: NodeId) -> Fate {
        if !self.any_link.load(Ordering::Relaxed) {
            return Fate::Deliver;
        }
        let mut links = self.lock();
        let Links { faults, rng } = &mut *links;
        match faults.get(&to) {
            Some(fault) => fate_under(fault, rng),
            None => Fate::Deliver,
        }
    }

    pub fn set_disk_write_delay_ms(&self, delay_ms: u64) {
        self.disk_write_delay_ms.store(delay_ms, Ordering::Relaxed);
    }

    pub fn disk_write_delay_ms(&self) -> u64 {
        self.disk_write_delay_ms.load(Ordering::Relaxed)
    }

    /// How long a write that fsyncs waits first (`None`: a healthy disk).
    pub fn disk_write_delay(&self) -> Option<Duration> {
        match self.disk_write_delay_ms() {
            0 => None,
            delay_ms => Some(Duration::from_millis(delay_ms)),
        }
    }
}

/// A cut drops everything; otherwise the message is lost with probability `loss`, and what is not
/// lost waits `delay_ms` give or take up to `jitter_ms` (uniform, never below zero).
fn fate_under(fault: &LinkFault, rng: &mut SplitMix64) -> Fate {
    if fault.cut {
        return Fate::Drop(DropReason::LinkCut);
    }
    // 53 random bits: uniform in [0, 1), so loss 1.0 loses everything and 0.0 nothing.
    if fault.loss > 0.0 && ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < fault.loss {
        return Fate::Drop(DropReason::Loss);
    }
    let low = fault.delay_ms.saturating_sub(fault.jitter_ms);
    let high = fault.delay_ms + fault.jitter_ms;
    match rng.range_inclusive(low, high) {
        0 => Fate::Deliver,
        delay_ms => Fate::Delay(Duration::from_millis(delay_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(cut: bool, delay_ms: u64, jitter_ms: u64, loss: f64) -> LinkFault {
        LinkFault {
            cut,
            delay_ms,
            jitter_ms,
            loss,
        }
    }

    #[test]
    fn only_the_faulty_link_is_affected_and_healing_clears_it() {
        let faults = Faults::new(1);
        assert_eq!(faults.fate(NodeId(2)), Fate::Deliver);
        assert_eq!(
            faults.set_link(NodeId(2), fault(true, 0, 0, 0.0)),
            Some(fault(true, 0, 0, 0.0))
        );
        assert_eq!(faults.fate(NodeId(2)), Fate::Drop(DropReason::LinkCut));
        assert_eq!(faults.fate(NodeId(3)), Fate::Deliver);
        assert_eq!(faults.links().len(), 1);
        assert_eq!(faults.set_link(NodeId(2), LinkFault::default()), None);
        assert_eq!(faults.fate(NodeId(2)), Fate::Deliver);
        assert!(faults.links().is_empty());
    }

    #[test]
    fn delay_stays_within_its_jitter_and_loss_follows_its_probability() {
        let faults = Faults::new(7);
        faults.set_link(NodeId(2), fault(false, 100, 20, 0.0));
        for _ in 0..1_000 {
            let Fate::Delay(delay) = faults.fate(NodeId(2)) else {
                panic!("a delayed link delivers late")
            };
            assert!((80..=120).contains(&delay.as_millis()), "{delay:?}");
        }
        faults.set_link(NodeId(2), fault(false, 0, 0, 0.25));
        let lost = (0..10_000)
            .filter(|_| faults.fate(NodeId(2)) == Fate::Drop(DropReason::Loss))
            .count();
        assert!((2_000..3_000).contains(&lost), "{lost} of 10000 lost");
        faults.set_link(NodeId(2), fault(false, 0, 0, 1.0));
        assert!((0..1_000).all(|_| faults.fate(NodeId(2)) == Fate::Drop(DropReason::Loss)));
    }

    #[test]
    fn jitter_never_makes_a_delay_negative() {
        let faults = Faults::new(3);
        faults.set_link(NodeId(2), fault(false, 5, 50, 0.0));
        for _ in 0..1_000 {
            match faults.fate(NodeId(2)) {
                Fate::Deliver => {}
                Fate::Delay(delay) => assert!(delay.as_millis() <= 55),
                other => panic!("{other:?}"),
            }
        }
    }
}
