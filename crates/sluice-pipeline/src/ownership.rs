//! Which partitions this worker may write for, as far as the lake is concerned.
//!
//! The group's assignment is not enough: a broker can hand a partition to a new worker while
//! the old one, still polling, never hears of it (seen with Tansu 0.6), and a paused process
//! can wake up after its session ended. So each assignment claims the partition's next epoch
//! in the lake (`sluice_lake::leases`) before any record of it is routed, and every landing
//! checks that no later epoch exists. Records of a partition whose claim is pending wait here.
//!
//! When the previous owner did not release the partition (it crashed, or may still be
//! writing), the new owner waits `takeover_grace` before it starts: longer than one write
//! attempt may take, so a write the old owner began before the takeover has landed by then and
//! shows in the listings that skip already-landed records.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sluice_core::{Record, TopicPartition};
use sluice_lake::{Claim, Handover};

/// Per partition, the epoch this worker holds in the lake; shared with the rebalance callback,
/// which releases the epochs of revoked partitions.
pub(crate) type SharedEpochs = Arc<Mutex<HashMap<TopicPartition, u64>>>;

/// One assignment of one partition.
pub(crate) struct Ownership {
    /// Tells this assignment's claim from an earlier one's that finishes late.
    pub(crate) assignment: u64,
    pub(crate) epoch: Option<u64>,
    /// When records may flow: set once the claim is in, later by the grace after an unclean
    /// handover.
    pub(crate) ready_at: Option<Instant>,
    pub(crate) ready: bool,
    /// Records fetched before the partition was ready, oldest first.
    pub(crate) waiting: VecDeque<Record>,
}

impl Ownership {
    pub(crate) fn new(assignment: u64) -> Self {
        Self {
            assignment,
            epoch: None,
            ready_at: None,
            ready: false,
            waiting: VecDeque::new(),
        }
    }
}

/// Whether a claim must wait out the grace before records flow. A takeover from this very
/// worker's own earlier epoch (re-assigned after a lost assignment) with nothing of it still
/// landing needs no wait.
pub(crate) fn must_wait(claim: &Claim, own_previous: Option<u64>, own_landings_idle: bool) -> bool {
    match claim.handover {
        Handover::First | Handover::Released => false,
        Handover::Unclean => !(own_previous == Some(claim.epoch - 1) && own_landings_idle),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unclean_handovers_from_others_wait() {
        let claim = |epoch, handover| Claim { epoch, handover };
        assert!(!must_wait(&claim(1, Handover::First), None, true));
        assert!(!must_wait(&claim(5, Handover::Released), None, true));
        assert!(must_wait(&claim(5, Handover::Unclean), None, true));
        assert!(must_wait(&claim(5, Handover::Unclean), Some(3), true));
        assert!(!must_wait(&claim(5, Handover::Unclean), Some(4), true));
        assert!(must_wait(&claim(5, Handover::Unclean), Some(4), false));
    }
}
