//! The lifecycle of a canonical ID: ACTIVE, REDIRECTED to another ID (merged records), or WITHDRAWN
//! (a tombstone), and the rules of changing it, applied in memory to the states of the IDs one
//! call involves. The store loads those states under the lifecycle lock, lets a [`Ledger`] apply
//! the call's entries in order, and writes back what the ledger changed; the database re-checks
//! the same invariants at commit.
//!
//! Invariant: a redirect always points at an ACTIVE ID. Redirecting to an ID that is itself
//! redirected points at the end of its chain, and redirecting an ID moves every ID that pointed at
//! it along, so chains stay one step long ("collapsed") and a cycle is impossible by construction.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use time::OffsetDateTime;

use super::CanonicalId;

/// The longest reason we accept, in bytes; the database enforces the same bound.
pub const MAX_REASON_BYTES: usize = 1000;

/// The lifecycle status of an ID, as answers report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdState {
    Active,
    /// Merged into this ACTIVE ID.
    Redirected(CanonicalId),
    Withdrawn,
}

impl IdState {
    /// The name used in JSON answers, events and the database: `active`, `redirected`, `withdrawn`.
    pub fn as_str(&self) -> &'static str {
        match self {
            IdState::Active => "active",
            IdState::Redirected(_) => "redirected",
            IdState::Withdrawn => "withdrawn",
        }
    }

    /// The target when redirected.
    pub fn redirect_target(&self) -> Option<&CanonicalId> {
        match self {
            IdState::Redirected(target) => Some(target),
            _ => None,
        }
    }
}

/// The recorded state of an ID that was ever changed: its state and its last change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRecord {
    pub state: IdState,
    pub reason: String,
    pub changed_at: OffsetDateTime,
    pub changed_by: String,
}

/// The states of every ID that was ever changed; any other ID is ACTIVE and was never changed.
#[derive(Debug, Clone, Default)]
pub struct KnownStates(HashMap<CanonicalId, StateRecord>);

static ACTIVE: IdState = IdState::Active;

impl KnownStates {
    pub fn new(states: HashMap<CanonicalId, StateRecord>) -> Self {
        Self(states)
    }

    /// The record of `id`, if it was ever changed.
    pub fn record(&self, id: &CanonicalId) -> Option<&StateRecord> {
        self.0.get(id)
    }

    /// The state of `id` (ACTIVE when it was never changed). The cheap case, no recorded state at
    /// all, costs no hashing.
    pub fn state(&self, id: &CanonicalId) -> &IdState {
        if self.0.is_empty() {
            return &ACTIVE;
        }
        self.0.get(id).map_or(&ACTIVE, |r| &r.state)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A caller's reason for a change: 1 to 1000 bytes without control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    /// # Errors
    /// What is wrong with it.
    pub fn parse(text: String) -> Result<Self, String> {
        if text.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if text.len() > MAX_REASON_BYTES {
            return Err(format!(
                "must be at most {MAX_REASON_BYTES} bytes (is {})",
                text.len()
            ));
        }
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(format!(
                "must not contain control characters (found U+{:04X})",
                c as u32
            ));
        }
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Redirect,
    Withdraw,
    Restore,
}

impl Action {
    /// The name in the event log: `redirect`, `withdraw`, `restore`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Redirect => "redirect",
            Action::Withdraw => "withdraw",
            Action::Restore => "restore",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s names.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "redirect" => Some(Action::Redirect),
            "withdraw" => Some(Action::Withdraw),
            "restore" => Some(Action::Restore),
            _ => None,
        }
    }

    /// The request field whose entries carry this action, for error paths.
    pub fn field(self) -> &'static str {
        match self {
            Action::Redirect => "redirects",
            Action::Withdraw => "withdrawals",
            Action::Restore => "restorations",
        }
    }
}

/// One entry of a lifecycle call, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub action: Action,
    pub canonical_id: CanonicalId,
    /// The requested target of a redirect; `None` for the other actions.
    pub target: Option<CanonicalId>,
    pub reason: Reason,
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub canonical_id: CanonicalId,
    pub action: Action,
    /// For a redirect, the ACTIVE ID it was pointed at (the end of the requested target's chain).
    pub target: Option<CanonicalId>,
    pub reason: String,
    pub changed_at: OffsetDateTime,
    pub changed_by: String,
}

/// A change the rules refuse: the entry's path and why. Nothing of the call is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct Refused {
    pub path: String,
    pub message: String,
}

/// The states of the IDs one call involves (each entry's ID and target, and every ID that
/// redirects to one of them), with the rules to change them.
#[derive(Debug)]
pub struct Ledger {
    /// Which of the involved IDs are minted.
    known: HashSet<CanonicalId>,
    states: HashMap<CanonicalId, StateRecord>,
    /// For each ID, the IDs redirected to it (kept in step with `states`).
    pointers: HashMap<CanonicalId, Vec<CanonicalId>>,
    /// The IDs whose record this call changed, to write back.
    changed: BTreeSet<CanonicalId>,
    events: Vec<Event>,
    now: OffsetDateTime,
    principal: String,
}

impl Ledger {
    /// `known`: the involved IDs that are minted; `states`: the recorded states of the involved
    /// IDs and of every ID redirected to one of them; `now` and `principal` stamp the changes.
    pub fn new(
        known: HashSet<CanonicalId>,
        states: impl IntoIterator<Item = (CanonicalId, StateRecord)>,
        now: OffsetDateTime,
        principal: String,
    ) -> Self {
        let states: HashMap<_, _> = states.into_iter().collect();
        let mut pointers: HashMap<CanonicalId, Vec<CanonicalId>> = HashMap::new();
        for (id, record) in &states {
            if let IdState::Redirected(target) = &record.state {
                pointers.entry(target.clone()).or_default().push(id.clone());
            }
        }
        Self {
            known,
            states,
            pointers,
            changed: BTreeSet::new(),
            events: Vec::new(),
            now,
            principal,
        }
    }

    /// The state of `id` now.
    pub fn state(&self, id: &CanonicalId) -> &IdState {
        self.states.get(id).map_or(&ACTIVE, |r| &r.state)
    }

    /// The record of `id` now, if it was ever changed.
    pub fn record(&self, id: &CanonicalId) -> Option<&StateRecord> {
        self.states.get(id)
    }

    /// Applies the entry at `position` of the call.
    ///
    /// # Errors
    /// The rules refuse it; the ledger is then to be dropped, as the call writes nothing.
    pub fn apply(&mut self, position: usize, change: &Change) -> Result<(), Refused> {
        let refuse = |message: String| Refused {
            path: format!("{}[{position}]", change.action.field()),
            message,
        };
        let id = &change.canonical_id;
        if !self.known.contains(id) {
            return Err(refuse(format!("{id} is not a minted canonical ID")));
        }
        match change.action {
            Action::Redirect => {
                let Some(requested) = &change.target else {
                    return Err(refuse("a redirect needs a target".to_owned()));
                };
                self.redirect(id, requested, &change.reason).map_err(refuse)
            }
            Action::Withdraw => self.withdraw(id, &change.reason).map_err(refuse),
            Action::Restore => {
                self.restore(id, &change.reason);
                Ok(())
            }
        }
    }

    fn redirect(
        &mut self,
        id: &CanonicalId,
        requested: &CanonicalId,
        reason: &Reason,
    ) -> Result<(), String> {
        if id == requested {
            return Err(format!("{id} cannot be redirected to itself"));
        }
        if !self.known.contains(requested) {
            return Err(format!(
                "the target {requested} is not a minted canonical ID"
            ));
        }
        // The end of the target's chain: one step, as chains are collapsed.
        let target = match self.state(requested) {
            IdState::Active => requested.clone(),
            IdState::Redirected(end) => end.clone(),
            IdState::Withdrawn => {
                return Err(format!("the target {requested} is withdrawn"));
            }
        };
        if &target == id {
            return Err(format!(
                "redirecting {id} to {requested} would make a cycle ({requested} redirects to {id})"
            ));
        }
        match self.state(id) {
            IdState::Redirected(current) if *current == target => return Ok(()),
            IdState::Redirected(current) => {
                return Err(format!(
                    "{id} is already redirected to {current}; restore it first"
                ));
            }
            IdState::Withdrawn => {
                return Err(format!("{id} is withdrawn; restore it first"));
            }
            IdState::Active => {}
        }
        // Everything that pointed at `id` now points at the end of the chain.
        for pointer in self.pointers.remove(id).unwrap_or_default() {
            if let Some(record) = self.states.get_mut(&pointer) {
                record.state = IdState::Redirected(target.clone());
                self.changed.insert(pointer.clone());
                self.pointers
                    .entry(target.clone())
                    .or_default()
                    .push(pointer);
            }
        }
        self.pointers
            .entry(target.clone())
            .or_default()
            .push(id.clone());
        self.record_change(id, IdState::Redirected(target.clone()), reason);
        self.log(id, Action::Redirect, Some(target), reason);
        Ok(())
    }

    fn withdraw(&mut self, id: &CanonicalId, reason: &Reason) -> Result<(), String> {
        match self.state(id) {
            IdState::Withdrawn => return Ok(()),
            IdState::Redirected(target) => {
                return Err(format!("{id} is redirected to {target}; restore it first"));
            }
            IdState::Active => {}
        }
        if let Some(pointers) = self.pointers.get(id).filter(|p| !p.is_empty()) {
            let mut named: Vec<&str> = pointers.iter().map(CanonicalId::as_str).collect();
            named.sort_unstable();
            let more = named.len().saturating_sub(5);
            named.truncate(5);
            return Err(format!(
                "{id} cannot be withdrawn while other IDs redirect to it ({}{})",
                named.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        self.record_change(id, IdState::Withdrawn, reason);
        self.log(id, Action::Withdraw, None, reason);
        Ok(())
    }

    fn restore(&mut self, id: &CanonicalId, reason: &Reason) {
        match self.state(id).clone() {
            IdState::Active => {}
            IdState::Redirected(target) => {
                if let Some(pointers) = self.pointers.get_mut(&target) {
                    pointers.retain(|p| p != id);
                }
                self.record_change(id, IdState::Active, reason);
                self.log(id, Action::Restore, None, reason);
            }
            IdState::Withdrawn => {
                self.record_change(id, IdState::Active, reason);
                self.log(id, Action::Restore, None, reason);
            }
        }
    }

    fn record_change(&mut self, id: &CanonicalId, state: IdState, reason: &Reason) {
        self.states.insert(
            id.clone(),
            StateRecord {
                state,
                reason: reason.as_str().to_owned(),
                changed_at: self.now,
                changed_by: self.principal.clone(),
            },
        );
        self.changed.insert(id.clone());
    }

    fn log(
        &mut self,
        id: &CanonicalId,
        action: Action,
        target: Option<CanonicalId>,
        reason: &Reason,
    ) {
        self.events.push(Event {
            canonical_id: id.clone(),
            action,
            target,
            reason: reason.as_str().to_owned(),
            changed_at: self.now,
            changed_by: self.principal.clone(),
        });
    }

    /// The records this call changed, in ID order (the order rows are written and locked), and
    /// its events, in the order they happened.
    pub fn changes(&self) -> (Vec<(&CanonicalId, &StateRecord)>, &[Event]) {
        let rows = self
            .changed
            .iter()
            .filter_map(|id| self.states.get(id).map(|r| (id, r)))
            .collect();
        (rows, &self.events)
    }
}

impl fmt::Display for IdState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(s: &str) -> CanonicalId {
        CanonicalId::parse(s.into()).unwrap()
    }

    fn ledger(known: &[&str], states: Vec<(&str, IdState)>) -> Ledger {
        Ledger::new(
            known.iter().map(|s| cid(s)).collect(),
            states.into_iter().map(|(id, state)| {
                (
                    cid(id),
                    StateRecord {
                        state,
                        reason: "earlier".into(),
                        changed_at: OffsetDateTime::UNIX_EPOCH,
                        changed_by: "someone".into(),
                    },
                )
            }),
            OffsetDateTime::UNIX_EPOCH,
            "admin".into(),
        )
    }

    fn change(action: Action, id: &str, target: Option<&str>) -> Change {
        Change {
            action,
            canonical_id: cid(id),
            target: target.map(cid),
            reason: Reason::parse("because".into()).unwrap(),
        }
    }

    fn redirect(id: &str, target: &str) -> Change {
        change(Action::Redirect, id, Some(target))
    }

    const A: &str = "aaaaaaaa";
    const B: &str = "bbbbbbbb";
    const C: &str = "cccccccc";
    const D: &str = "dddddddd";

    #[test]
    fn chains_collapse_to_the_final_active_id_whichever_order_they_are_made_in() {
        // A -> B, then B -> C: A follows to C.
        let mut l = ledger(&[A, B, C], vec![]);
        l.apply(0, &redirect(A, B)).unwrap();
        l.apply(1, &redirect(B, C)).unwrap();
        assert_eq!(l.state(&cid(A)), &IdState::Redirected(cid(C)));
        assert_eq!(l.state(&cid(B)), &IdState::Redirected(cid(C)));
        // D -> A (redirected to C) lands on C.
        let mut l = ledger(&[A, C, D], vec![(A, IdState::Redirected(cid(C)))]);
        l.apply(0, &redirect(D, A)).unwrap();
        assert_eq!(l.state(&cid(D)), &IdState::Redirected(cid(C)));
        assert_eq!(l.changes().1[0].target, Some(cid(C)));
    }

    #[test]
    fn a_redirect_that_would_close_a_cycle_is_refused() {
        let mut l = ledger(&[A, B], vec![(B, IdState::Redirected(cid(A)))]);
        let refused = l.apply(3, &redirect(A, B)).unwrap_err();
        assert_eq!(refused.path, "redirects[3]");
        assert!(refused.message.contains("cycle"), "{refused}");
    }

    #[test]
    fn redirects_to_itself_unknown_or_withdrawn_ids_are_refused() {
        let mut l = ledger(&[A, B], vec![(B, IdState::Withdrawn)]);
        assert!(
            l.apply(0, &redirect(A, A))
                .unwrap_err()
                .message
                .contains("itself")
        );
        assert!(
            l.apply(0, &redirect(A, C))
                .unwrap_err()
                .message
                .contains("not a minted")
        );
        assert!(
            l.apply(0, &redirect(C, A))
                .unwrap_err()
                .message
                .contains("not a minted")
        );
        assert!(
            l.apply(0, &redirect(A, B))
                .unwrap_err()
                .message
                .contains("withdrawn")
        );
    }

    #[test]
    fn the_same_redirect_again_is_a_no_op_and_another_target_is_refused() {
        let mut l = ledger(&[A, B, C], vec![(A, IdState::Redirected(cid(B)))]);
        l.apply(0, &redirect(A, B)).unwrap();
        assert!(l.changes().0.is_empty() && l.changes().1.is_empty());
        let refused = l.apply(1, &redirect(A, C)).unwrap_err();
        assert!(refused.message.contains("restore it first"), "{refused}");
    }

    #[test]
    fn an_id_others_redirect_to_cannot_be_withdrawn() {
        let mut l = ledger(&[A, B], vec![(A, IdState::Redirected(cid(B)))]);
        let refused = l.apply(0, &change(Action::Withdraw, B, None)).unwrap_err();
        assert!(refused.message.contains(A), "{refused}");
        // Once A is restored, B may go.
        l.apply(1, &change(Action::Restore, A, None)).unwrap();
        l.apply(2, &change(Action::Withdraw, B, None)).unwrap();
        assert_eq!(l.state(&cid(B)), &IdState::Withdrawn);
    }

    #[test]
    fn withdrawing_twice_and_restoring_an_active_id_change_nothing() {
        let mut l = ledger(&[A, B], vec![(A, IdState::Withdrawn)]);
        l.apply(0, &change(Action::Withdraw, A, None)).unwrap();
        l.apply(1, &change(Action::Restore, B, None)).unwrap();
        assert!(l.changes().1.is_empty());
    }

    #[test]
    fn a_redirected_id_must_be_restored_before_it_is_withdrawn() {
        let mut l = ledger(&[A, B], vec![(A, IdState::Redirected(cid(B)))]);
        assert!(l.apply(0, &change(Action::Withdraw, A, None)).is_err());
        l.apply(1, &change(Action::Restore, A, None)).unwrap();
        l.apply(2, &change(Action::Withdraw, A, None)).unwrap();
        let (rows, events) = l.changes();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            events.iter().map(|e| e.action).collect::<Vec<_>>(),
            [Action::Restore, Action::Withdraw]
        );
    }

    #[test]
    fn reasons_are_bounded_and_plain_text() {
        assert!(Reason::parse(String::new()).is_err());
        assert!(Reason::parse("x".repeat(1001)).is_err());
        assert!(Reason::parse("a\u{0}b".into()).is_err());
        assert!(Reason::parse("merged: duplicate of LCSH sh85".into()).is_ok());
    }
}
