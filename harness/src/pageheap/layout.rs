//! Where a block goes in its pages: the block ends at the start of the guard page (rounded down
//! to its alignment), so an overrun of more than the alignment's slack hits the guard.

/// malloc's alignment on 64-bit targets (`max_align_t`): every block gets at least this.
pub const MIN_ALIGN: usize = 16;

/// The pages one block needs: `data` readable and writable bytes, then one guard page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub data: usize,
    pub total: usize,
}

/// The pages for a block of `n` bytes aligned to `align` (a power of two), or None when the
/// size overflows or the alignment is not a power of two.
pub fn span(n: usize, align: usize, page: usize) -> Option<Span> {
    if !align.is_power_of_two() {
        return None;
    }
    let align = align.max(MIN_ALIGN);
    let mut data = n.max(1).checked_next_multiple_of(page)?;
    if align > page {
        // The mapping is only page-aligned: leave room to move the block down to `align`.
        data = data.checked_add(align)?;
    }
    Some(Span {
        data,
        total: data.checked_add(page)?,
    })
}

/// The block's address in a mapping at `base` laid out by `span`.
pub fn place(base: usize, span: Span, n: usize, align: usize) -> usize {
    let align = align.max(MIN_ALIGN);
    (base + span.data - n) & !(align - 1)
}

/// The quarantine: freed blocks kept inaccessible, oldest first, until their pages exceed the
/// budget; then the oldest go back to the system. Its queue is sized once, so that holding
/// blocks never grows the harness's own heap (which the probe measures).
#[derive(Debug)]
pub struct Quarantine<T> {
    budget: usize,
    held: usize,
    queue: std::collections::VecDeque<(T, usize)>,
}

impl<T: Copy> Quarantine<T> {
    /// A quarantine of `budget` bytes for mappings of at least `smallest` bytes each.
    pub fn new(budget: usize, smallest: usize) -> Quarantine<T> {
        let most = (budget / smallest.max(1)).saturating_add(1).min(1 << 16);
        Quarantine {
            budget,
            held: 0,
            queue: std::collections::VecDeque::with_capacity(most),
        }
    }

    /// Adds a freed mapping of `len` bytes; hands each one that leaves the quarantine to
    /// `evict`, oldest first.
    pub fn push(&mut self, item: T, len: usize, mut evict: impl FnMut(T, usize)) {
        self.queue.push_back((item, len));
        self.held += len;
        while self.held > self.budget {
            let Some((old, l)) = self.queue.pop_front() else {
                break;
            };
            self.held -= l;
            evict(old, l);
        }
    }

    /// Empties the quarantine, to make room when the system has no more pages.
    pub fn drain(&mut self, mut evict: impl FnMut(T, usize)) {
        self.held = 0;
        while let Some((old, l)) = self.queue.pop_front() {
            evict(old, l);
        }
    }

    /// The newest held item that `matches`.
    pub fn find(&self, matches: impl Fn(&T) -> bool) -> Option<T> {
        self.queue
            .iter()
            .rev()
            .map(|(t, _)| *t)
            .find(|t| matches(t))
    }

    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 4096;

    #[test]
    fn a_small_block_ends_at_the_guard_page() {
        let s = span(48, 16, PAGE).unwrap();
        assert_eq!(
            s,
            Span {
                data: PAGE,
                total: 2 * PAGE
            }
        );
        let p = place(0x10000, s, 48, 16);
        assert_eq!(p + 48, 0x10000 + PAGE);
    }

    #[test]
    fn an_odd_size_ends_within_the_alignment_of_the_guard() {
        let s = span(13, 1, PAGE).unwrap();
        let p = place(0x10000, s, 13, 1);
        assert_eq!(p % MIN_ALIGN, 0);
        assert!(0x10000 + PAGE - (p + 13) < MIN_ALIGN);
    }

    #[test]
    fn a_page_sized_block_takes_one_page_and_the_guard() {
        let s = span(PAGE, 16, PAGE).unwrap();
        assert_eq!(s.total, 2 * PAGE);
        assert_eq!(place(0x10000, s, PAGE, 16), 0x10000);
    }

    #[test]
    fn zero_bytes_still_get_a_page_of_their_own() {
        let s = span(0, 16, PAGE).unwrap();
        assert_eq!(s.data, PAGE);
        assert_eq!(place(0x10000, s, 0, 16), 0x10000 + PAGE);
    }

    #[test]
    fn an_alignment_above_a_page_is_honoured_inside_the_mapping() {
        let align = 4 * PAGE;
        let s = span(100, align, PAGE).unwrap();
        for base in [0x10000, 0x11000, 0x13000] {
            let p = place(base, s, 100, align);
            assert_eq!(p % align, 0);
            assert!(p >= base && p + 100 <= base + s.data, "{base:#x}");
        }
    }

    #[test]
    fn sizes_that_overflow_and_bad_alignments_get_nothing() {
        assert_eq!(span(usize::MAX - 10, 16, PAGE), None);
        assert_eq!(span(10, 24, PAGE), None);
    }

    #[test]
    fn the_quarantine_returns_the_oldest_once_over_budget() {
        let mut q = Quarantine::new(3 * PAGE, PAGE);
        let mut out = Vec::new();
        q.push(1, PAGE, |b, l| out.push((b, l)));
        q.push(2, 2 * PAGE, |b, l| out.push((b, l)));
        assert!(out.is_empty());
        q.push(3, PAGE, |b, l| out.push((b, l)));
        assert_eq!(out, vec![(1, PAGE)]);
        assert_eq!(q.bytes(), 3 * PAGE);
        out.clear();
        q.push(4, 3 * PAGE, |b, l| out.push((b, l)));
        assert_eq!(out, vec![(2, 2 * PAGE), (3, PAGE)]);
        assert_eq!(q.find(|&b| b == 4), Some(4));
        assert_eq!(q.find(|&b| b == 2), None);
        out.clear();
        q.drain(|b, l| out.push((b, l)));
        assert_eq!(out, vec![(4, 3 * PAGE)]);
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn the_quarantine_is_sized_once_for_its_smallest_mappings() {
        let mut q: Quarantine<usize> = Quarantine::new(64 * PAGE, 2 * PAGE);
        let cap = q.queue.capacity();
        for i in 0..1000 {
            q.push(i, 2 * PAGE, |_, _| {});
        }
        assert_eq!(q.queue.capacity(), cap, "holding blocks grew the queue");
    }
}
