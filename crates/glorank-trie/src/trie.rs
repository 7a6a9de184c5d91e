//! The per-request prefix trie and the no-repeat list state.

use crate::{Result, TrieError};

/// A prefix trie over the semantic-ID tuples of one request's candidates.
///
/// Every candidate is a path of `depth` tokens from the root to a leaf; token `t` at level
/// `l` must be below `vocab_sizes[l]`. Nodes are stored breadth-first, so the children of a
/// node are a contiguous, token-sorted range of node ids and every subtree covers a
/// contiguous range of candidates in lexicographic order. The trie is immutable; decoding
/// progress lives in [`ListState`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateTrie {
    depth: usize,
    vocab_sizes: Vec<usize>,
    num_candidates: usize,
    /// Token on the edge into each node (unused for the root).
    token: Vec<u32>,
    /// First child of each node (children are contiguous).
    first_child: Vec<u32>,
    /// Number of children of each node.
    num_children: Vec<u32>,
    /// Candidates below each node.
    leaf_count: Vec<u32>,
    /// Candidate index of each leaf node (`u32::MAX` for inner nodes).
    candidate: Vec<u32>,
    /// Leaf node of each candidate.
    leaf_of: Vec<u32>,
    /// Parent of each node (the root is its own parent).
    parent: Vec<u32>,
}

impl CandidateTrie {
    /// Builds the trie of `tuples` (one semantic-ID tuple per candidate, all of length
    /// `vocab_sizes.len()`).
    ///
    /// # Errors
    /// [`TrieError::EmptyCandidates`], [`TrieError::DepthMismatch`],
    /// [`TrieError::TokenOutOfRange`], [`TrieError::DuplicateTuple`] (naming both candidates),
    /// or [`TrieError::InvalidConfig`] for an empty or zero-sized vocabulary.
    pub fn new<T: AsRef<[u32]>>(tuples: &[T], vocab_sizes: &[usize]) -> Result<Self> {
        let depth = vocab_sizes.len();
        if depth == 0 {
            return Err(TrieError::InvalidConfig(
                "vocab_sizes is empty (depth 0)".into(),
            ));
        }
        if let Some(l) = vocab_sizes.iter().position(|&v| v == 0) {
            return Err(TrieError::InvalidConfig(format!(
                "vocabulary of level {l} is empty"
            )));
        }
        if tuples.is_empty() {
            return Err(TrieError::EmptyCandidates);
        }
        if tuples.len() >= u32::MAX as usize {
            return Err(TrieError::InvalidConfig("too many candidates".into()));
        }
        for (c, t) in tuples.iter().enumerate() {
            let t = t.as_ref();
            if t.len() != depth {
                return Err(TrieError::DepthMismatch {
                    candidate: c,
                    expected: depth,
                    found: t.len(),
                });
            }
            if let Some((level, &token)) = t
                .iter()
                .enumerate()
                .find(|(l, tok)| **tok as usize >= vocab_sizes[*l])
            {
                return Err(TrieError::TokenOutOfRange {
                    candidate: c,
                    level,
                    token,
                    vocab: vocab_sizes[level],
                });
            }
        }
        let mut order: Vec<u32> = (0..tuples.len() as u32).collect();
        order.sort_by(|&a, &b| {
            tuples[a as usize]
                .as_ref()
                .cmp(tuples[b as usize].as_ref())
                .then(a.cmp(&b))
        });
        if let Some(w) = order
            .windows(2)
            .find(|w| tuples[w[0] as usize].as_ref() == tuples[w[1] as usize].as_ref())
        {
            return Err(TrieError::DuplicateTuple {
                first: w[0] as usize,
                second: w[1] as usize,
            });
        }

        // Breadth-first construction over ranges of the sorted order.
        let mut trie = Self {
            depth,
            vocab_sizes: vocab_sizes.to_vec(),
            num_candidates: tuples.len(),
            token: vec![0],
            first_child: vec![0],
            num_children: vec![0],
            leaf_count: vec![tuples.len() as u32],
            candidate: vec![u32::MAX],
            leaf_of: vec![0; tuples.len()],
            parent: vec![0],
        };
        // (node, lo, hi) of the current level.
        let mut level_nodes: Vec<(u32, usize, usize)> = vec![(0, 0, order.len())];
        for level in 0..depth {
            let mut next = Vec::new();
            for &(node, lo, hi) in &level_nodes {
                trie.first_child[node as usize] = trie.token.len() as u32;
                let mut start = lo;
                while start < hi {
                    let tok = tuples[order[start] as usize].as_ref()[level];
                    let mut end = start + 1;
                    while end < hi && tuples[order[end] as usize].as_ref()[level] == tok {
                        end += 1;
                    }
                    let child = trie.token.len() as u32;
                    trie.token.push(tok);
                    trie.first_child.push(0);
                    trie.num_children.push(0);
                    trie.leaf_count.push((end - start) as u32);
                    trie.parent.push(node);
                    if level + 1 == depth {
                        let c = order[start];
                        trie.candidate.push(c);
                        trie.leaf_of[c as usize] = child;
                    } else {
                        trie.candidate.push(u32::MAX);
                    }
                    trie.num_children[node as usize] += 1;
                    next.push((child, start, end));
                    start = end;
                }
            }
            level_nodes = next;
        }
        Ok(trie)
    }

    /// Tokens per item (levels, including a dedupe level if the IDs have one).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Vocabulary size of each level.
    pub fn vocab_sizes(&self) -> &[usize] {
        &self.vocab_sizes
    }

    /// Number of candidates.
    pub fn num_candidates(&self) -> usize {
        self.num_candidates
    }

    /// Number of nodes, root included.
    pub fn num_nodes(&self) -> usize {
        self.token.len()
    }

    /// The root node id (0).
    pub fn root(&self) -> u32 {
        0
    }

    /// Child node ids of `node` (token-sorted).
    pub fn children(&self, node: u32) -> std::ops::Range<u32> {
        let f = self.first_child[node as usize];
        f..f + self.num_children[node as usize]
    }

    /// Token on the edge into `node`.
    pub fn token(&self, node: u32) -> u32 {
        self.token[node as usize]
    }

    /// The child of `node` reached by `token`, if any.
    pub fn child(&self, node: u32, token: u32) -> Option<u32> {
        let r = self.children(node);
        let slice = &self.token[r.start as usize..r.end as usize];
        slice.binary_search(&token).ok().map(|k| r.start + k as u32)
    }

    /// The candidate a leaf node stands for, `None` for inner nodes.
    pub fn candidate_at(&self, node: u32) -> Option<usize> {
        let c = self.candidate[node as usize];
        (c != u32::MAX).then_some(c as usize)
    }

    /// The token tuple of candidate `c`.
    pub fn tuple_of(&self, c: usize) -> Vec<u32> {
        let mut out = vec![0; self.depth];
        let mut node = self.leaf_of[c];
        for l in (0..self.depth).rev() {
            out[l] = self.token[node as usize];
            node = self.parent[node as usize];
        }
        out
    }

    /// A fresh decoding state for a list of `list_len` items.
    ///
    /// # Errors
    /// [`TrieError::ListTooLong`] when `list_len` exceeds the number of candidates.
    pub fn start(&self, list_len: usize) -> Result<ListState> {
        if list_len > self.num_candidates {
            return Err(TrieError::ListTooLong {
                list_len,
                candidates: self.num_candidates,
            });
        }
        let mut s = ListState::with_capacity(self, list_len);
        s.reset(self, list_len);
        Ok(s)
    }

    /// For a given list (candidate indices), the allowed tokens at every decoding step given
    /// the list's own prefix: what teacher forcing must mask. Returns `(tokens, allowed)` with
    /// `tokens.len() == allowed.len() == list.len() * depth`.
    ///
    /// # Errors
    /// [`TrieError::InvalidList`] for an out-of-range or repeated candidate;
    /// [`TrieError::ListTooLong`] when the list is longer than the candidate set.
    pub fn teacher_forcing(&self, list: &[usize]) -> Result<(Vec<u32>, Vec<Vec<u32>>)> {
        let mut state = self.start(list.len())?;
        let mut tokens = Vec::with_capacity(list.len() * self.depth);
        let mut allowed = Vec::with_capacity(list.len() * self.depth);
        for (slot, &c) in list.iter().enumerate() {
            if c >= self.num_candidates {
                return Err(TrieError::InvalidList(format!(
                    "slot {slot}: candidate {c} is out of range ({} candidates)",
                    self.num_candidates
                )));
            }
            for tok in self.tuple_of(c) {
                allowed.push(state.allowed_tokens(self).collect());
                if !state.advance(self, tok) {
                    return Err(TrieError::InvalidList(format!(
                        "slot {slot}: candidate {c} is already in the list"
                    )));
                }
                tokens.push(tok);
            }
        }
        Ok((tokens, allowed))
    }
}

/// Decoding progress of one list: the current node, how many unused candidates remain under
/// every node, and what was emitted.
///
/// A child is allowed only while an unused candidate remains below it, so every allowed
/// token leads to at least one unused candidate: decoding never reaches a dead end, and no
/// item repeats. Buffers are sized once; [`ListState::reset`] and `clone_from` reuse them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListState {
    node: u32,
    remaining: Vec<u32>,
    items: Vec<u32>,
    list_len: usize,
}

impl ListState {
    /// An empty state with buffers for `trie` and lists of `list_len`.
    fn with_capacity(trie: &CandidateTrie, list_len: usize) -> Self {
        Self {
            node: 0,
            remaining: Vec::with_capacity(trie.num_nodes()),
            items: Vec::with_capacity(list_len),
            list_len,
        }
    }

    /// Restarts at the root with every candidate unused, reusing the buffers.
    pub fn reset(&mut self, trie: &CandidateTrie, list_len: usize) {
        self.node = 0;
        self.remaining.clear();
        self.remaining.extend_from_slice(&trie.leaf_count);
        self.items.clear();
        self.list_len = list_len;
    }

    /// The current node (the root between items).
    pub fn node(&self) -> u32 {
        self.node
    }

    /// Candidate indices emitted so far.
    pub fn items(&self) -> &[u32] {
        &self.items
    }

    /// Whether the list has all its items.
    pub fn is_done(&self) -> bool {
        self.items.len() == self.list_len
    }

    /// Whether `child` still leads to an unused candidate.
    #[inline]
    pub fn is_open(&self, child: u32) -> bool {
        self.remaining[child as usize] > 0
    }

    /// Allowed next tokens (token-sorted).
    pub fn allowed_tokens<'a>(&'a self, trie: &'a CandidateTrie) -> impl Iterator<Item = u32> + 'a {
        trie.children(self.node)
            .filter(|&c| self.is_open(c))
            .map(|c| trie.token(c))
    }

    /// Writes `true` at every allowed token of `mask` (cleared first); `mask.len()` must be the
    /// vocabulary size of the current level.
    pub fn fill_mask(&self, trie: &CandidateTrie, mask: &mut [bool]) {
        mask.fill(false);
        for t in self.allowed_tokens(trie) {
            if let Some(m) = mask.get_mut(t as usize) {
                *m = true;
            }
        }
    }

    /// Follows `token` from the current node. Returns `false` (and changes nothing) when the
    /// token is not allowed. Completing a leaf emits its candidate and returns to the root.
    pub fn advance(&mut self, trie: &CandidateTrie, token: u32) -> bool {
        if self.is_done() {
            return false;
        }
        match trie.child(self.node, token) {
            Some(child) if self.is_open(child) => {
                self.step_to(trie, child);
                true
            }
            _ => false,
        }
    }

    /// Moves to an open `child` of the current node (no checks).
    #[inline]
    pub(crate) fn step_to(&mut self, trie: &CandidateTrie, child: u32) {
        if let Some(c) = trie.candidate_at(child) {
            // Mark the leaf and its ancestors as having one fewer unused candidate.
            let mut n = child;
            loop {
                self.remaining[n as usize] -= 1;
                if n == 0 {
                    break;
                }
                n = trie.parent[n as usize];
            }
            self.items.push(c as u32);
            self.node = 0;
        } else {
            self.node = child;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> CandidateTrie {
        // Candidates 0..4 over vocab [3, 2, 4].
        CandidateTrie::new(&[[0, 1, 2], [0, 1, 3], [2, 0, 0], [0, 0, 1]], &[3, 2, 4]).unwrap()
    }

    #[test]
    fn structure_and_lookup() {
        let t = small();
        assert_eq!(t.num_candidates(), 4);
        // root, level0 {0, 2}, level1 {0/0, 0/1, 2/0}, level2 4 leaves.
        assert_eq!(t.num_nodes(), 1 + 2 + 3 + 4);
        for c in 0..4 {
            let tup = t.tuple_of(c);
            let mut n = t.root();
            for &tok in &tup {
                n = t.child(n, tok).unwrap();
            }
            assert_eq!(t.candidate_at(n), Some(c));
        }
        assert_eq!(t.child(0, 1), None);
    }

    #[test]
    fn no_repeats_and_no_dead_ends() {
        let t = small();
        let mut s = t.start(4).unwrap();
        assert!(s.advance(&t, 0) && s.advance(&t, 1) && s.advance(&t, 2));
        assert_eq!(s.items(), &[0]);
        // Candidate 0 is used: path 0/1/2 is closed, 0/1/3 is still open.
        assert!(s.advance(&t, 0) && s.advance(&t, 1));
        assert_eq!(s.allowed_tokens(&t).collect::<Vec<_>>(), vec![3]);
        assert!(!s.advance(&t, 2));
        assert!(s.advance(&t, 3));
        // Prefix 0/1 is now exhausted: at level 1 under 0 only token 0 remains.
        assert!(s.advance(&t, 0));
        assert_eq!(s.allowed_tokens(&t).collect::<Vec<_>>(), vec![0]);
        let mut mask = [true; 2];
        s.fill_mask(&t, &mut mask);
        assert_eq!(mask, [true, false]);
    }

    #[test]
    fn construction_errors() {
        assert!(matches!(
            CandidateTrie::new::<[u32; 2]>(&[], &[2, 2]),
            Err(TrieError::EmptyCandidates)
        ));
        assert!(matches!(
            CandidateTrie::new(&[vec![0, 1], vec![0]], &[2, 2]),
            Err(TrieError::DepthMismatch {
                candidate: 1,
                expected: 2,
                found: 1
            })
        ));
        assert!(matches!(
            CandidateTrie::new(&[[0, 1], [1, 1], [0, 1]], &[2, 2]),
            Err(TrieError::DuplicateTuple {
                first: 0,
                second: 2
            })
        ));
        assert!(matches!(
            CandidateTrie::new(&[[0, 5]], &[2, 2]),
            Err(TrieError::TokenOutOfRange {
                candidate: 0,
                level: 1,
                token: 5,
                vocab: 2
            })
        ));
        assert!(matches!(
            small().start(5),
            Err(TrieError::ListTooLong { .. })
        ));
    }

    #[test]
    fn teacher_forcing_masks_follow_the_list() {
        let t = small();
        let (tokens, allowed) = t.teacher_forcing(&[3, 0]).unwrap();
        assert_eq!(tokens, vec![0, 0, 1, 0, 1, 2]);
        assert_eq!(allowed[0], vec![0, 2]);
        assert_eq!(allowed[1], vec![0, 1]);
        // After candidate 3 (0/0/1) is used, prefix 0/0 is exhausted.
        assert_eq!(allowed[4], vec![1]);
        assert!(t.teacher_forcing(&[1, 1]).is_err());
        assert!(t.teacher_forcing(&[9]).is_err());
    }
}
