package standalone

import (
	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/orchestration/fl"
)

// The REST types mirror the coordinator's field by field (api/rest
// imports nothing but the standard library); these convert between them.

func fromJobSpec(s rest.FederatedJobSpec) fl.JobSpec {
	out := fl.JobSpec{
		ExperimentID: s.ExperimentID, ModelRef: s.ModelRef, TaskWasmImage: s.TaskWasmImage,
		Selector: s.Selector, Count: s.Count, Fraction: s.Fraction, KOfN: s.KOfN, MinUpdates: s.MinUpdates,
		TimeoutSeconds: s.TimeoutSeconds, Rounds: fl.Rounds{Total: s.Rounds.Total},
		Aggregator:     fl.AggregatorSpec{Algorithm: s.Aggregator.Algorithm, Config: s.Aggregator.Config},
		Hyperparams:    s.Hyperparams,
		OnRoundFailure: fl.FailurePolicy{Action: s.OnRoundFailure.Action, MaxRetries: s.OnRoundFailure.MaxRetries},
		MemoryPages:    s.MemoryPages,
	}
	if m := s.Rounds.TargetMetric; m != nil {
		out.Rounds.TargetMetric = &fl.TargetMetric{Name: m.Name, Value: m.Value, Mode: m.Mode}
	}
	for _, p := range s.Participants {
		out.Participants = append(out.Participants, fl.Participant{PropletID: p.PropletID, Hyperparams: p.Hyperparams})
	}
	return out
}

func toJobSpec(s fl.JobSpec) rest.FederatedJobSpec {
	out := rest.FederatedJobSpec{
		ExperimentID: s.ExperimentID, ModelRef: s.ModelRef, TaskWasmImage: s.TaskWasmImage,
		Selector: s.Selector, Count: s.Count, Fraction: s.Fraction, KOfN: s.KOfN, MinUpdates: s.MinUpdates,
		TimeoutSeconds: s.TimeoutSeconds, Rounds: rest.Rounds{Total: s.Rounds.Total},
		Aggregator:     rest.Aggregator{Algorithm: s.Aggregator.Algorithm, Config: s.Aggregator.Config},
		Hyperparams:    s.Hyperparams,
		OnRoundFailure: rest.FailurePolicy{Action: s.OnRoundFailure.Action, MaxRetries: s.OnRoundFailure.MaxRetries},
		MemoryPages:    s.MemoryPages,
	}
	if m := s.Rounds.TargetMetric; m != nil {
		out.Rounds.TargetMetric = &rest.TargetMetric{Name: m.Name, Value: m.Value, Mode: m.Mode}
	}
	for _, p := range s.Participants {
		out.Participants = append(out.Participants, rest.Participant{PropletID: p.PropletID, Hyperparams: p.Hyperparams})
	}
	return out
}

func toJob(j fl.Job) rest.FederatedJob {
	st := j.Status
	out := rest.FederatedJob{ID: j.ID, Spec: toJobSpec(j.Spec), Status: rest.FederatedJobStatus{
		Phase: string(st.Phase), Reason: st.Reason, Message: st.Message, CurrentRound: st.CurrentRound,
		ModelDigest: st.ModelDigest, StateDigest: st.StateDigest, Checkpoints: toCheckpoints(st.Checkpoints),
		RejectedTotal: st.RejectedTotal, CreatedAt: st.CreatedAt, UpdatedAt: st.UpdatedAt, FinishedAt: st.FinishedAt,
	}}
	if len(st.Checkpoints) == 0 {
		out.Status.Checkpoints = nil
	}
	for _, r := range st.Rounds {
		out.Status.Rounds = append(out.Status.Rounds, toRound(r))
	}
	for _, r := range st.Rejected {
		out.Status.Rejected = append(out.Status.Rejected, rest.Rejection{
			RoundID: r.RoundID, TaskID: r.TaskID, PropletID: r.PropletID, Attempt: r.Attempt,
			Reason: r.Reason, Message: r.Message, At: r.At,
		})
	}
	return out
}

func toRound(r fl.Round) rest.Round {
	out := rest.Round{
		Number: r.Number, Attempt: r.Attempt, ID: r.ID, Phase: string(r.Phase), ModelURI: r.ModelURI,
		KOfN: r.KOfN, MinUpdates: r.MinUpdates, Participants: make([]rest.ParticipantStatus, 0, len(r.Participants)),
		TotalSamples: r.TotalSamples, Metrics: r.Metrics, Checkpoint: r.Checkpoint, Reason: r.Reason, Message: r.Message,
		StartedAt: r.StartedAt, Deadline: r.Deadline, ClosedAt: r.ClosedAt,
	}
	for _, p := range r.Participants {
		out.Participants = append(out.Participants, rest.ParticipantStatus{
			PropletID: p.PropletID, TaskID: p.TaskID, State: p.State, Reason: p.Reason, Message: p.Message, EndedAt: p.EndedAt,
		})
	}
	for _, u := range r.Updates {
		out.Updates = append(out.Updates, rest.AcceptedUpdate{
			TaskID: u.TaskID, PropletID: u.PropletID, Attempt: u.Attempt, NumSamples: u.NumSamples,
			Metrics: u.Metrics, Digest: u.Digest, Size: u.Size, ReceivedAt: u.ReceivedAt,
		})
	}
	return out
}

// toCheckpoints never returns nil: an empty list is [] in JSON.
func toCheckpoints(cps []fl.Checkpoint) []rest.Checkpoint {
	out := make([]rest.Checkpoint, 0, len(cps))
	for _, c := range cps {
		out = append(out, rest.Checkpoint{
			Round: c.Round, Digest: c.Digest, Size: c.Size, Algorithm: c.Algorithm, Participants: c.Participants,
			TotalSamples: c.TotalSamples, Metrics: c.Metrics, CreatedAt: c.CreatedAt,
		})
	}
	return out
}
