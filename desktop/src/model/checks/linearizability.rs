//! The linearizability search over a history of completed operations, against a sequential model.

use std::collections::HashSet;
use std::hash::Hash;

/// The search's work budget (steps times operations, each step scans them): past it the verdict is
/// "not known" rather than a frozen window.
pub const SEARCH_BUDGET: usize = 20_000_000;

/// A sequential specification for the search.
pub trait Model {
    type State: Clone + Eq + Hash;
    type Input;
    fn init() -> Self::State;
    /// The state after `input` (with its recorded result), or `None` if it cannot happen there.
    fn step(state: &Self::State, input: &Self::Input) -> Option<Self::State>;
}

/// The replicated log as the desktop's appends see it: each acknowledged append returns the index its
/// entry got, and later appends get later indexes (other clients and leaders' no-op entries may take
/// the indexes between). The state is the highest index handed out so far.
pub struct AppendLog;

impl Model for AppendLog {
    type State = u64;
    type Input = u64;
    fn init() -> u64 {
        0
    }
    fn step(last: &u64, index: &u64) -> Option<u64> {
        (*index > *last).then_some(*index)
    }
}

/// One completed operation of a history.
#[derive(Clone, Debug, PartialEq)]
pub struct Operation<I> {
    pub invoked_ms: u64,
    pub completed_ms: u64,
    pub input: I,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order works; `stuck` are the operations (indexes into the history) that could go next at
    /// the deepest point the search reached, none of which fits.
    NotLinearizable {
        stuck: Vec<usize>,
    },
    Undecided,
}

/// Wing & Gong's search with Lowe's memo (as Porcupine does): linearize, one at a time, an operation
/// invoked before every pending one completed, whose step the model accepts; back up when none fits;
/// never visit the same (set linearized, state) twice. Times are milliseconds, so operations at the same
/// millisecond count as concurrent.
pub fn linearizable<M: Model>(history: &[Operation<M::Input>], budget: usize) -> Verdict {
    let count = history.len();
    let words = count.div_ceil(64).max(1);
    let mut done = vec![0u64; words];
    let is_done = |done: &[u64], at: usize| done[at / 64] & (1 << (at % 64)) != 0;
    let candidates = |done: &[u64]| -> Vec<usize> {
        let earliest_completion = (0..count)
            .filter(|at| !is_done(done, *at))
            .map(|at| history[at].completed_ms)
            .min()
            .unwrap_or(u64::MAX);
        (0..count)
            .filter(|at| !is_done(done, *at) && history[*at].invoked_ms <= earliest_completion)
            .collect()
    };
    struct Frame<S> {
        candidates: Vec<usize>,
        cursor: usize,
        state: S,
        via: Option<usize>,
    }
    let mut seen: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut stack = vec![Frame {
        candidates: candidates(&done),
        cursor: 0,
        state: M::init(),
        via: None,
    }];
    let mut deepest = (0, stack[0].candidates.clone());
    let mut steps = 0;
    loop {
        let depth = stack.len().saturating_sub(1);
        let Some(top) = stack.last_mut() else {
            break;
        };
        if depth == count {
            return Verdict::Linearizable;
        }
        // Each step scans every operation for the next candidates.
        steps += count.max(1);
        if steps > budget {
            return Verdict::Undecided;
        }
        if top.cursor < top.candidates.len() {
            let at = top.candidates[top.cursor];
            top.cursor += 1;
            if let Some(next) = M::step(&top.state, &history[at].input) {
                done[at / 64] |= 1 << (at % 64);
                if seen.insert((done.clone(), next.clone())) {
                    let frame = Frame {
                        candidates: candidates(&done),
                        cursor: 0,
                        state: next,
                        via: Some(at),
                    };
                    if depth + 1 > deepest.0 {
                        deepest = (depth + 1, frame.candidates.clone());
                    }
                    stack.push(frame);
                } else {
                    done[at / 64] &= !(1 << (at % 64));
                }
            }
        } else if let Some(frame) = stack.pop() {
            if let Some(at) = frame.via {
                done[at / 64] &= !(1 << (at % 64));
            }
        }
    }
    Verdict::NotLinearizable { stuck: deepest.1 }
}
