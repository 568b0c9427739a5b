//! Planning a MintIds call, apart from any database: deduplicate the batch, then, once the known
//! identifiers are looked up, decide for each new identifier whether it needs a fresh ID or inherits
//! one from its predecessor. The store carries the plan out; this module only decides.
//!
//! Predecessors may chain inside one request (`a` inherits from `b`, which is new and inherits from
//! `c`); chains are flattened to their root here, so the store needs the same number of round trips
//! whatever their length.

use std::collections::HashMap;
use std::fmt;

use super::{CanonicalId, SourceIdentifier, Violations};

/// One entry of a MintIds request, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintItem {
    pub source_identifier: SourceIdentifier,
    pub predecessor: Option<SourceIdentifier>,
}

/// How an identifier came by its canonical ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MintOutcome {
    /// It already had one.
    Existing,
    /// This call minted one for it.
    Minted,
    /// This call gave it its predecessor's.
    Inherited,
}

impl MintOutcome {
    /// The label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            MintOutcome::Existing => "existing",
            MintOutcome::Minted => "minted",
            MintOutcome::Inherited => "inherited",
        }
    }
}

/// The answer for one request entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    pub source_identifier: SourceIdentifier,
    pub canonical_id: CanonicalId,
    pub outcome: MintOutcome,
}

/// A distinct identifier of a plan: its index among the batch's identifiers, each counted once.
/// Only the plan makes them, so that one cannot be mistaken for a request position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(usize);

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A position in the request: the index of an item of the MintIds call (as in `items[3]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(pub usize);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a distinct identifier's predecessor is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Predecessor {
    /// It is an identifier of the batch too.
    Item(Slot),
    /// It is not: the entry of `extra` at this index.
    Extra(usize),
}

/// A new identifier inheriting from a root of the same request, which gets a fresh ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inheritance {
    pub heir: Slot,
    pub root: Slot,
}

/// A deduplicated batch: each distinct identifier once, in order of first appearance.
///
/// Built without copying an identifier: the deduplication maps borrow the request's items, and the
/// identifiers are then moved out of them. Everything after refers to an identifier by its
/// [`Slot`].
#[derive(Debug)]
pub struct MintPlan {
    /// By slot.
    identifiers: Vec<SourceIdentifier>,
    /// Predecessors that are not items themselves, each once, in order of first appearance.
    extra: Vec<SourceIdentifier>,
    /// By slot: where its predecessor is looked up.
    predecessors: Vec<Option<Predecessor>>,
    /// By request position: the slot of its identifier.
    slots: Vec<Slot>,
    /// By slot: its first request position (to name it in errors).
    first_position: Vec<Position>,
}

impl MintPlan {
    /// Deduplicates the items. An identifier repeated with and without a predecessor takes the
    /// predecessor, so that a document naming a work both as a subject and as itself works.
    ///
    /// # Errors
    /// An identifier repeated with two different predecessors: there is no one answer for it.
    pub fn new(items: Vec<MintItem>) -> Result<Self, Violations> {
        let mut violations = Violations::default();
        let mut slots = Vec::with_capacity(items.len());
        let mut first_position: Vec<Position> = Vec::with_capacity(items.len());
        // By slot: the position of the item whose predecessor it takes.
        let mut predecessor_at: Vec<Option<usize>> = Vec::with_capacity(items.len());
        let mut index: HashMap<&SourceIdentifier, Slot> = HashMap::with_capacity(items.len());
        for (position, item) in items.iter().enumerate() {
            let slot = *index.entry(&item.source_identifier).or_insert_with(|| {
                first_position.push(Position(position));
                predecessor_at.push(None);
                Slot(first_position.len() - 1)
            });
            if let Some(p) = &item.predecessor {
                match predecessor_at[slot.0].and_then(|at| items[at].predecessor.as_ref()) {
                    None => predecessor_at[slot.0] = Some(position),
                    Some(existing) if existing == p => {}
                    Some(_) => violations.push(
                        format!("items[{position}].predecessor"),
                        format!(
                            "differs from the predecessor named for the same identifier at items[{}]",
                            first_position[slot.0]
                        ),
                    ),
                }
            }
            slots.push(slot);
        }

        // Predecessors: an identifier of the batch, or a new entry of `extra`.
        let mut extra_index: HashMap<&SourceIdentifier, usize> = HashMap::new();
        // For each request position, the `extra` entry its predecessor fills, if any.
        let mut extra_from: Vec<Option<usize>> = vec![None; items.len()];
        let predecessors: Vec<Option<Predecessor>> = predecessor_at
            .iter()
            .map(|at| {
                let at = (*at)?;
                let p = items[at].predecessor.as_ref()?;
                Some(match index.get(p) {
                    Some(&slot) => Predecessor::Item(slot),
                    None => {
                        let k = extra_index.len();
                        let k = *extra_index.entry(p).or_insert_with(|| {
                            extra_from[at] = Some(k);
                            k
                        });
                        Predecessor::Extra(k)
                    }
                })
            })
            .collect();
        let n = first_position.len();
        let extra_len = extra_index.len();
        drop((index, extra_index));

        let mut is_first = vec![false; items.len()];
        for p in &first_position {
            is_first[p.0] = true;
        }
        let mut identifiers = Vec::with_capacity(n);
        let mut extra: Vec<Option<SourceIdentifier>> = vec![None; extra_len];
        for (position, item) in items.into_iter().enumerate() {
            if is_first[position] {
                identifiers.push(item.source_identifier);
            }
            if let Some(k) = extra_from[position] {
                extra[k] = item.predecessor;
            }
        }
        let plan = MintPlan {
            identifiers,
            // Every slot was filled from the item that first named it.
            extra: extra.into_iter().flatten().collect(),
            predecessors,
            slots,
            first_position,
        };
        violations.into_result(plan)
    }

    /// Every identifier whose canonical ID must be known to answer: the items, then the
    /// predecessors that are not items, each once. [`resolve`](Self::resolve) takes their IDs in
    /// this order.
    pub fn to_look_up(&self) -> impl Iterator<Item = &SourceIdentifier> + Clone {
        self.identifiers.iter().chain(self.extra.iter())
    }

    /// The identifier a predecessor names.
    fn predecessor(&self, p: Predecessor) -> &SourceIdentifier {
        match p {
            Predecessor::Item(slot) => &self.identifiers[slot.0],
            Predecessor::Extra(k) => &self.extra[k],
        }
    }

    /// Decides what each distinct identifier needs, given the canonical IDs already stored, in the
    /// order of [`to_look_up`](Self::to_look_up) (`None` for an identifier without one).
    ///
    /// # Errors
    /// New identifiers whose predecessor is neither minted nor minted by this request (directly or
    /// through a chain of new predecessors). Nothing may be written then.
    pub fn resolve(self, known: Vec<Option<CanonicalId>>) -> Result<Pending, PlanError> {
        let n = self.identifiers.len();
        let mut known = known.into_iter();
        let mut answers: Vec<Option<(CanonicalId, MintOutcome)>> = (0..n)
            .map(|_| known.next().flatten().map(|c| (c, MintOutcome::Existing)))
            .collect();
        let known_extra: Vec<Option<CanonicalId>> = (0..self.extra.len())
            .map(|_| known.next().flatten())
            .collect();
        let mut roots = Vec::new();
        let mut inherit_known = Vec::new();
        let mut inherit_new = Vec::new();
        let mut unminted = Vec::new();

        // Where the chain of new predecessors from each identifier ends, memoised so that every
        // identifier is walked once however long the chains (a 10,000-item cycle would otherwise
        // cost 10^8 steps).
        let mut ends: Vec<Option<ChainEnd>> = vec![None; n];
        let mut on_path = vec![false; n];
        for i in 0..n {
            if answers[i].is_some() {
                continue;
            }
            let heir = Slot(i);
            let Some(predecessor) = self.predecessors[i] else {
                roots.push(heir);
                continue;
            };
            let mut path = Vec::new();
            let mut current = predecessor;
            let end = loop {
                let slot = match current {
                    Predecessor::Extra(k) => {
                        break known_extra[k]
                            .clone()
                            .map_or(ChainEnd::Unminted, ChainEnd::Known);
                    }
                    Predecessor::Item(slot) => slot,
                };
                if let Some((id, _)) = &answers[slot.0] {
                    break ChainEnd::Known(id.clone());
                }
                if let Some(end) = &ends[slot.0] {
                    break end.clone();
                }
                match self.predecessors[slot.0] {
                    None => break ChainEnd::Root(slot),
                    Some(_) if on_path[slot.0] => break ChainEnd::Unminted, // a cycle
                    Some(next) => {
                        on_path[slot.0] = true;
                        path.push(slot);
                        current = next;
                    }
                }
            };
            for slot in &path {
                on_path[slot.0] = false;
                ends[slot.0] = Some(end.clone());
            }
            match end {
                ChainEnd::Known(id) => inherit_known.push((heir, id)),
                ChainEnd::Root(root) => inherit_new.push(Inheritance { heir, root }),
                ChainEnd::Unminted => unminted.push(UnmintedPredecessor {
                    position: self.first_position[i],
                    identifier: self.identifiers[i].clone(),
                    predecessor: self.predecessor(predecessor).clone(),
                }),
            }
        }
        if !unminted.is_empty() {
            return Err(PlanError(unminted));
        }
        answers.shrink_to_fit();
        Ok(Pending {
            identifiers: self.identifiers,
            slots: self.slots,
            answers,
            roots,
            inherit_known,
            inherit_new,
        })
    }
}

/// Where a chain of new predecessors ends.
#[derive(Debug, Clone)]
enum ChainEnd {
    /// At an identifier that has this canonical ID.
    Known(CanonicalId),
    /// At a new identifier of this request without a predecessor, which gets a fresh ID.
    Root(Slot),
    /// Outside the request at an identifier never minted, or in a cycle.
    Unminted,
}

/// A new identifier whose predecessor has no canonical ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmintedPredecessor {
    /// The request position of the (first) item naming it.
    pub position: Position,
    pub identifier: SourceIdentifier,
    pub predecessor: SourceIdentifier,
}

/// The items of a MintIds call that cannot be answered because their predecessors are not minted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError(pub Vec<UnmintedPredecessor>);

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 10;
        f.write_str("predecessor not minted: ")?;
        for (k, u) in self.0.iter().take(SHOWN).enumerate() {
            if k > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "items[{}] ({}) names predecessor {}",
                u.position, u.identifier, u.predecessor
            )?;
        }
        if self.0.len() > SHOWN {
            write!(f, "; and {} more", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}

impl std::error::Error for PlanError {}

/// A resolved plan being carried out: the store settles each identifier's answer and then asks for
/// the response.
#[derive(Debug)]
pub struct Pending {
    /// By slot.
    identifiers: Vec<SourceIdentifier>,
    /// By request position: the slot of its identifier.
    slots: Vec<Slot>,
    /// By slot.
    answers: Vec<Option<(CanonicalId, MintOutcome)>>,
    roots: Vec<Slot>,
    inherit_known: Vec<(Slot, CanonicalId)>,
    inherit_new: Vec<Inheritance>,
}

impl Pending {
    /// True when every identifier already had a canonical ID: nothing needs writing.
    pub fn is_complete(&self) -> bool {
        self.roots.is_empty() && self.inherit_known.is_empty() && self.inherit_new.is_empty()
    }

    /// The distinct identifier in `slot`.
    pub fn identifier(&self, slot: Slot) -> &SourceIdentifier {
        &self.identifiers[slot.0]
    }

    /// New identifiers that need a freshly minted ID.
    pub fn roots(&self) -> &[Slot] {
        &self.roots
    }

    /// New identifiers inheriting from a predecessor that was already minted, with its ID.
    pub fn inherit_known(&self) -> &[(Slot, CanonicalId)] {
        &self.inherit_known
    }

    /// New identifiers inheriting from a root of this request.
    pub fn inherit_new(&self) -> &[Inheritance] {
        &self.inherit_new
    }

    /// The settled canonical ID of the identifier in `slot`, if any yet.
    pub fn answer(&self, slot: Slot) -> Option<&CanonicalId> {
        self.answers[slot.0].as_ref().map(|(id, _)| id)
    }

    /// Records how the identifier in `slot` came by its canonical ID.
    pub fn settle(&mut self, slot: Slot, id: CanonicalId, outcome: MintOutcome) {
        self.answers[slot.0] = Some((id, outcome));
    }

    /// The response in request order, or the slot of an identifier left unsettled (a bug).
    /// Each identifier and ID is moved into the entry that names it last and copied only into
    /// earlier repeats.
    ///
    /// # Errors
    /// The slot of the first identifier that was never settled.
    pub fn into_answers(mut self) -> Result<Vec<Minted>, Slot> {
        if let Some(i) = self.answers.iter().position(Option::is_none) {
            return Err(Slot(i));
        }
        let mut last_use = vec![0; self.identifiers.len()];
        for (position, &Slot(i)) in self.slots.iter().enumerate() {
            last_use[i] = position;
        }
        let mut minted = Vec::with_capacity(self.slots.len());
        for (position, &Slot(i)) in self.slots.iter().enumerate() {
            let answer = if last_use[i] == position {
                self.answers[i].take()
            } else {
                self.answers[i].clone()
            };
            // Settled, as checked above, and taken only at its last use.
            let Some((canonical_id, outcome)) = answer else {
                return Err(Slot(i));
            };
            let source_identifier = if last_use[i] == position {
                std::mem::replace(&mut self.identifiers[i], SourceIdentifier::empty())
            } else {
                self.identifiers[i].clone()
            };
            minted.push(Minted {
                source_identifier,
                canonical_id,
                outcome,
            });
        }
        Ok(minted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(v: &str) -> SourceIdentifier {
        SourceIdentifier::parse("t".into(), "Work".into(), v.into()).unwrap()
    }

    fn cid(s: &str) -> CanonicalId {
        CanonicalId::parse(s.into()).unwrap()
    }

    fn item(v: &str, p: Option<&str>) -> MintItem {
        MintItem {
            source_identifier: id(v),
            predecessor: p.map(id),
        }
    }

    /// What the plan asks to look up.
    fn look_up(plan: &MintPlan) -> Vec<SourceIdentifier> {
        plan.to_look_up().cloned().collect()
    }

    /// Resolves `plan` as the store does, with `known` standing for the table.
    fn resolve(
        plan: MintPlan,
        known: &HashMap<SourceIdentifier, CanonicalId>,
    ) -> Result<Pending, PlanError> {
        let ids = plan.to_look_up().map(|id| known.get(id).cloned()).collect();
        plan.resolve(ids)
    }

    #[test]
    fn repeated_identifiers_are_planned_once() {
        let plan = MintPlan::new(vec![item("a", None), item("b", None), item("a", None)]).unwrap();
        assert_eq!(look_up(&plan), vec![id("a"), id("b")]);
        let pending = resolve(plan, &HashMap::new()).unwrap();
        assert_eq!(
            pending.roots(),
            &[Slot(0), Slot(1)],
            "one fresh ID each for a and b"
        );
    }

    #[test]
    fn a_repeat_without_predecessor_takes_the_predecessor_named_elsewhere() {
        let plan = MintPlan::new(vec![item("a", None), item("a", Some("p"))]).unwrap();
        let known = HashMap::from([(id("p"), cid("pppppppp"))]);
        let pending = resolve(plan, &known).unwrap();
        assert_eq!(pending.inherit_known(), &[(Slot(0), cid("pppppppp"))]);
    }

    #[test]
    fn a_repeat_with_a_different_predecessor_is_a_violation_at_its_path() {
        let err = MintPlan::new(vec![
            item("a", Some("p")),
            item("b", None),
            item("a", Some("q")),
        ])
        .unwrap_err();
        assert_eq!(err.as_slice()[0].path, "items[2].predecessor");
        assert!(err.as_slice()[0].message.contains("items[0]"), "{err}");
    }

    #[test]
    fn predecessors_outside_the_items_are_looked_up_too() {
        let plan = MintPlan::new(vec![item("a", Some("p")), item("b", Some("a"))]).unwrap();
        assert_eq!(look_up(&plan), vec![id("a"), id("b"), id("p")]);
    }

    #[test]
    fn known_identifiers_keep_their_ids_whatever_predecessor_is_named() {
        let plan = MintPlan::new(vec![item("a", Some("never-minted"))]).unwrap();
        let known = HashMap::from([(id("a"), cid("aaaaaaaa"))]);
        let pending = resolve(plan, &known).unwrap();
        assert!(pending.is_complete());
        let answers = pending.into_answers().unwrap();
        assert_eq!(answers[0].canonical_id, cid("aaaaaaaa"));
        assert_eq!(answers[0].outcome, MintOutcome::Existing);
    }

    #[test]
    fn a_chain_of_new_predecessors_is_flattened_to_its_root() {
        // c <- b <- a, all new: c is minted, b and a inherit from c.
        let plan = MintPlan::new(vec![
            item("a", Some("b")),
            item("b", Some("c")),
            item("c", None),
        ])
        .unwrap();
        let pending = resolve(plan, &HashMap::new()).unwrap();
        assert_eq!(pending.roots(), &[Slot(2)]);
        let heirs = |heir| Inheritance {
            heir: Slot(heir),
            root: Slot(2),
        };
        assert_eq!(pending.inherit_new(), &[heirs(0), heirs(1)]);
    }

    #[test]
    fn a_chain_ending_in_a_known_identifier_inherits_its_id() {
        let plan = MintPlan::new(vec![item("a", Some("b")), item("b", Some("k"))]).unwrap();
        let known = HashMap::from([(id("k"), cid("kkkkkkkk"))]);
        let pending = resolve(plan, &known).unwrap();
        assert_eq!(
            pending.inherit_known(),
            &[(Slot(0), cid("kkkkkkkk")), (Slot(1), cid("kkkkkkkk"))]
        );
    }

    #[test]
    fn unminted_predecessors_and_cycles_are_refused_with_every_item_named() {
        let plan = MintPlan::new(vec![
            item("ok", None),
            item("a", Some("nowhere")),
            item("x", Some("y")),
            item("y", Some("x")),
            item("self", Some("self")),
        ])
        .unwrap();
        let err = resolve(plan, &HashMap::new()).unwrap_err();
        let positions: Vec<_> = err.0.iter().map(|u| u.position).collect();
        assert_eq!(
            positions,
            [Position(1), Position(2), Position(3), Position(4)]
        );
        assert!(
            err.to_string().starts_with(
                "predecessor not minted: items[1] (t/Work/a) names predecessor t/Work/nowhere"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_cycle_through_the_whole_batch_is_refused_naming_every_item() {
        // 20,000 new identifiers, each naming the next, the last naming the first.
        let n = 20_000;
        let items = (0..n)
            .map(|k| item(&k.to_string(), Some(&((k + 1) % n).to_string())))
            .collect();
        let plan = MintPlan::new(items).unwrap();
        let known = vec![None; plan.to_look_up().count()];
        let err = plan.resolve(known).unwrap_err();
        assert_eq!(err.0.len(), n, "every item of the cycle is named");
    }

    #[test]
    fn answers_come_back_in_request_order_with_repeats() {
        let plan = MintPlan::new(vec![item("a", None), item("b", None), item("a", None)]).unwrap();
        let mut pending = resolve(plan, &HashMap::new()).unwrap();
        pending.settle(Slot(0), cid("aaaaaaaa"), MintOutcome::Minted);
        pending.settle(Slot(1), cid("bbbbbbbb"), MintOutcome::Minted);
        let answers = pending.into_answers().unwrap();
        let ids: Vec<_> = answers.iter().map(|m| m.canonical_id.as_str()).collect();
        assert_eq!(ids, ["aaaaaaaa", "bbbbbbbb", "aaaaaaaa"]);
    }

    #[test]
    fn an_unsettled_identifier_is_reported_not_invented() {
        let plan = MintPlan::new(vec![item("a", None)]).unwrap();
        let pending = resolve(plan, &HashMap::new()).unwrap();
        assert_eq!(pending.into_answers().unwrap_err(), Slot(0));
    }
}
