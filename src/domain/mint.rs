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

/// A deduplicated batch: each distinct identifier once, in order of first appearance.
///
/// Built without copying an identifier: the deduplication maps borrow the request's items, and the
/// identifiers are then moved out of them. Everything after refers to an identifier by its index.
#[derive(Debug)]
pub struct MintPlan {
    identifiers: Vec<SourceIdentifier>,
    /// Predecessors that are not items themselves, each once, in order of first appearance.
    extra: Vec<SourceIdentifier>,
    /// For each distinct identifier, the look-up index of its predecessor: below
    /// `identifiers.len()` an identifier of the batch, from there on an entry of `extra`.
    predecessors: Vec<Option<usize>>,
    /// For each request entry, the index of its identifier in `identifiers`.
    positions: Vec<usize>,
    /// For each distinct identifier, its first request position (to name it in errors).
    first_position: Vec<usize>,
}

impl MintPlan {
    /// Deduplicates the items. An identifier repeated with and without a predecessor takes the
    /// predecessor, so that a document naming a work both as a subject and as itself works.
    ///
    /// # Errors
    /// An identifier repeated with two different predecessors: there is no one answer for it.
    pub fn new(items: Vec<MintItem>) -> Result<Self, Violations> {
        let mut violations = Violations::default();
        let mut positions = Vec::with_capacity(items.len());
        let mut first_position: Vec<usize> = Vec::with_capacity(items.len());
        // For each distinct identifier, the position of the item whose predecessor it takes.
        let mut predecessor_at: Vec<Option<usize>> = Vec::with_capacity(items.len());
        let mut index: HashMap<&SourceIdentifier, usize> = HashMap::with_capacity(items.len());
        for (position, item) in items.iter().enumerate() {
            let i = *index.entry(&item.source_identifier).or_insert_with(|| {
                first_position.push(position);
                predecessor_at.push(None);
                first_position.len() - 1
            });
            if let Some(p) = &item.predecessor {
                match predecessor_at[i].and_then(|at| items[at].predecessor.as_ref()) {
                    None => predecessor_at[i] = Some(position),
                    Some(existing) if existing == p => {}
                    Some(_) => violations.push(
                        format!("items[{position}].predecessor"),
                        format!(
                            "differs from the predecessor named for the same identifier at items[{}]",
                            first_position[i]
                        ),
                    ),
                }
            }
            positions.push(i);
        }

        // Predecessors by look-up index: an identifier of the batch, or a new entry of `extra`.
        let n = first_position.len();
        let mut extra_index: HashMap<&SourceIdentifier, usize> = HashMap::new();
        // For each request position, the `extra` entry its predecessor fills, if any.
        let mut extra_from: Vec<Option<usize>> = vec![None; items.len()];
        let predecessors: Vec<Option<usize>> = predecessor_at
            .iter()
            .map(|at| {
                let at = (*at)?;
                let p = items[at].predecessor.as_ref()?;
                Some(match index.get(p) {
                    Some(&j) => j,
                    None => {
                        let k = extra_index.len();
                        let k = *extra_index.entry(p).or_insert_with(|| {
                            extra_from[at] = Some(k);
                            k
                        });
                        n + k
                    }
                })
            })
            .collect();
        let extra_len = extra_index.len();
        drop((index, extra_index));

        let mut is_first = vec![false; items.len()];
        for &p in &first_position {
            is_first[p] = true;
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
            positions,
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

    /// The identifier at look-up index `j`.
    fn looked_up(&self, j: usize) -> &SourceIdentifier {
        let n = self.identifiers.len();
        if j < n {
            &self.identifiers[j]
        } else {
            &self.extra[j - n]
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
            let Some(predecessor) = self.predecessors[i] else {
                roots.push(i);
                continue;
            };
            let mut path = Vec::new();
            let mut current = predecessor;
            let end = loop {
                if current >= n {
                    break known_extra[current - n]
                        .clone()
                        .map_or(ChainEnd::Unminted, ChainEnd::Known);
                }
                if let Some((id, _)) = &answers[current] {
                    break ChainEnd::Known(id.clone());
                }
                if let Some(end) = &ends[current] {
                    break end.clone();
                }
                match self.predecessors[current] {
                    None => break ChainEnd::Root(current),
                    Some(_) if on_path[current] => break ChainEnd::Unminted, // a cycle
                    Some(next) => {
                        on_path[current] = true;
                        path.push(current);
                        current = next;
                    }
                }
            };
            for &j in &path {
                on_path[j] = false;
                ends[j] = Some(end.clone());
            }
            match end {
                ChainEnd::Known(id) => inherit_known.push((i, id)),
                ChainEnd::Root(root) => inherit_new.push((i, root)),
                ChainEnd::Unminted => unminted.push(UnmintedPredecessor {
                    position: self.first_position[i],
                    identifier: self.identifiers[i].clone(),
                    predecessor: self.looked_up(predecessor).clone(),
                }),
            }
        }
        if !unminted.is_empty() {
            return Err(PlanError(unminted));
        }
        answers.shrink_to_fit();
        Ok(Pending {
            identifiers: self.identifiers,
            positions: self.positions,
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
    Root(usize),
    /// Outside the request at an identifier never minted, or in a cycle.
    Unminted,
}

/// A new identifier whose predecessor has no canonical ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmintedPredecessor {
    /// The request position of the (first) item naming it.
    pub position: usize,
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
    identifiers: Vec<SourceIdentifier>,
    positions: Vec<usize>,
    answers: Vec<Option<(CanonicalId, MintOutcome)>>,
    roots: Vec<usize>,
    inherit_known: Vec<(usize, CanonicalId)>,
    inherit_new: Vec<(usize, usize)>,
}

impl Pending {
    /// True when every identifier already had a canonical ID: nothing needs writing.
    pub fn is_complete(&self) -> bool {
        self.roots.is_empty() && self.inherit_known.is_empty() && self.inherit_new.is_empty()
    }

    /// The distinct identifier at index `i`.
    pub fn identifier(&self, i: usize) -> &SourceIdentifier {
        &self.identifiers[i]
    }

    /// New identifiers that need a freshly minted ID.
    pub fn roots(&self) -> &[usize] {
        &self.roots
    }

    /// New identifiers inheriting from a predecessor that was already minted, with its ID.
    pub fn inherit_known(&self) -> &[(usize, CanonicalId)] {
        &self.inherit_known
    }

    /// New identifiers inheriting from a root of this request: (identifier, root).
    pub fn inherit_new(&self) -> &[(usize, usize)] {
        &self.inherit_new
    }

    /// The settled canonical ID of identifier `i`, if any yet.
    pub fn answer(&self, i: usize) -> Option<&CanonicalId> {
        self.answers[i].as_ref().map(|(id, _)| id)
    }

    /// Records how identifier `i` came by its canonical ID.
    pub fn settle(&mut self, i: usize, id: CanonicalId, outcome: MintOutcome) {
        self.answers[i] = Some((id, outcome));
    }

    /// The response in request order, or the index of an identifier left unsettled (a bug).
    /// Each identifier and ID is moved into the entry that names it last and copied only into
    /// earlier repeats.
    ///
    /// # Errors
    /// The index of the first identifier that was never settled.
    pub fn into_answers(mut self) -> Result<Vec<Minted>, usize> {
        if let Some(i) = self.answers.iter().position(Option::is_none) {
            return Err(i);
        }
        let mut last_use = vec![0; self.identifiers.len()];
        for (position, &i) in self.positions.iter().enumerate() {
            last_use[i] = position;
        }
        let mut minted = Vec::with_capacity(self.positions.len());
        for (position, &i) in self.positions.iter().enumerate() {
            let answer = if last_use[i] == position {
                self.answers[i].take()
            } else {
                self.answers[i].clone()
            };
            // Settled, as checked above, and taken only at its last use.
            let Some((canonical_id, outcome)) = answer else {
                return Err(i);
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
        assert_eq!(pending.roots(), &[0, 1], "one fresh ID each for a and b");
    }

    #[test]
    fn a_repeat_without_predecessor_takes_the_predecessor_named_elsewhere() {
        let plan = MintPlan::new(vec![item("a", None), item("a", Some("p"))]).unwrap();
        let known = HashMap::from([(id("p"), cid("pppppppp"))]);
        let pending = resolve(plan, &known).unwrap();
        assert_eq!(pending.inherit_known(), &[(0, cid("pppppppp"))]);
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
        assert_eq!(pending.roots(), &[2]);
        assert_eq!(pending.inherit_new(), &[(0, 2), (1, 2)]);
    }

    #[test]
    fn a_chain_ending_in_a_known_identifier_inherits_its_id() {
        let plan = MintPlan::new(vec![item("a", Some("b")), item("b", Some("k"))]).unwrap();
        let known = HashMap::from([(id("k"), cid("kkkkkkkk"))]);
        let pending = resolve(plan, &known).unwrap();
        assert_eq!(
            pending.inherit_known(),
            &[(0, cid("kkkkkkkk")), (1, cid("kkkkkkkk"))]
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
        assert_eq!(positions, [1, 2, 3, 4]);
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
        pending.settle(0, cid("aaaaaaaa"), MintOutcome::Minted);
        pending.settle(1, cid("bbbbbbbb"), MintOutcome::Minted);
        let answers = pending.into_answers().unwrap();
        let ids: Vec<_> = answers.iter().map(|m| m.canonical_id.as_str()).collect();
        assert_eq!(ids, ["aaaaaaaa", "bbbbbbbb", "aaaaaaaa"]);
    }

    #[test]
    fn an_unsettled_identifier_is_reported_not_invented() {
        let plan = MintPlan::new(vec![item("a", None)]).unwrap();
        let pending = resolve(plan, &HashMap::new()).unwrap();
        assert_eq!(pending.into_answers().unwrap_err(), 0);
    }
}
