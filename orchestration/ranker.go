package orchestration

// Placement runs in the stages of Nomad's scheduler: feasibility (can this
// proplet take this task now: waiting.feasible), then ranking and selection
// (which feasible proplet the policy prefers), which are the policy's own.
// A policy is one ranker.

// feasibility is what a ranker chooses from: the known proplets in id
// order, each either feasible for one task or not.
type feasibility struct {
	order    []string
	proplets map[string]*propletState
	w        *waiting
}

func (f feasibility) len() int { return len(f.order) }

// at returns the i-th proplet in id order if it can take the task, else nil.
func (f feasibility) at(i int) *propletState {
	if p := f.proplets[f.order[i]]; f.w.feasible(p) {
		return p
	}
	return nil
}

// A ranker chooses a proplet among the feasible ones, or nil when none is.
// Callers hold e.mu, so a ranker may keep state between choices.
type ranker interface {
	choose(f feasibility) *propletState
}

func newRanker(p Policy) ranker {
	if p == PolicyLeastLoaded {
		return leastLoaded{}
	}
	return &roundRobin{}
}

// roundRobin takes the first feasible proplet after the one it chose last,
// so consecutive tasks spread over the proplets in id order.
type roundRobin struct {
	next int // index in id order where the next walk starts
}

func (r *roundRobin) choose(f feasibility) *propletState {
	n := f.len()
	for i := range n {
		idx := (r.next + i) % n
		if p := f.at(idx); p != nil {
			r.next = (idx + 1) % n
			return p
		}
	}
	return nil
}

// leastLoaded takes the feasible proplet with the lowest share of busy
// slots; ties go to more free slots, then to the lower id.
type leastLoaded struct{}

func (leastLoaded) choose(f feasibility) *propletState {
	var best *propletState
	for i := range f.len() {
		if p := f.at(i); p != nil && (best == nil || lessLoaded(p, best)) {
			best = p
		}
	}
	return best
}

// lessLoaded reports whether a ranks before b. Busy shares are compared
// cross-multiplied, which is exact where a division is not.
func lessLoaded(a, b *propletState) bool {
	aShare, bShare := len(a.assigned)*b.Slots, len(b.assigned)*a.Slots
	if aShare != bShare {
		return aShare < bShare
	}
	return a.Slots-len(a.assigned) > b.Slots-len(b.assigned)
}
