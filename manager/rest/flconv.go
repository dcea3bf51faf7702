package rest

import (
	api "github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/orchestration/fl"
)

// The REST types mirror the coordinator's field by field (api/rest
// imports nothing but the standard library); these convert between them.

func fromJobSpec(s api.FederatedJobSpec) fl.JobSpec {
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

func toJobSpec(s fl.JobSpec) api.FederatedJobSpec {
	out := api.FederatedJobSpec{
		ExperimentID: s.ExperimentID, ModelRef: s.ModelRef, TaskWasmImage: s.TaskWasmImage,
		Selector: s.Selector, Count: s.Count, Fraction: s.Fraction, KOfN: s.KOfN, MinUpdates: s.MinUpdates,
		TimeoutSeconds: s.TimeoutSeconds, Rounds: api.Rounds{Total: s.Rounds.Total},
		Aggregator:     api.Aggregator{Algorithm: s.Aggregator.Algorithm, Config: s.Aggregator.Config},
		Hyperparams:    s.Hyperparams,
		OnRoundFailure: api.FailurePolicy{Action: s.OnRoundFailure.Action, MaxRetries: s.OnRoundFailure.MaxRetries},
		MemoryPages:    s.MemoryPages,
	}
	if m := s.Rounds.TargetMetric; m != nil {
		out.Rounds.TargetMetric = &api.TargetMetric{Name: m.Name, Value: m.Value, Mode: m.Mode}
	}
	for _, p := range s.Participants {
		out.Participants = append(out.Participants, api.Participant{PropletID: p.PropletID, Hyperparams: p.Hyperparams})
	}
	return out
}

func toJob(j fl.Job) api.FederatedJob {
	st := j.Status
	out := api.FederatedJob{ID: j.ID, Spec: toJobSpec(j.Spec), Status: api.FederatedJobStatus{
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
		out.Status.Rejected = append(out.Status.Rejected, api.Rejection{
			RoundID: r.RoundID, TaskID: r.TaskID, PropletID: r.PropletID, Attempt: r.Attempt,
			Reason: r.Reason, Message: r.Message, At: r.At,
		})
	}
	return out
}

func toRound(r fl.Round) api.Round {
	out := api.Round{
		Number: r.Number, Attempt: r.Attempt, ID: r.ID, Phase: string(r.Phase), ModelURI: r.ModelURI,
		KOfN: r.KOfN, MinUpdates: r.MinUpdates, Participants: make([]api.ParticipantStatus, 0, len(r.Participants)),
		TotalSamples: r.TotalSamples, Metrics: r.Metrics, Checkpoint: r.Checkpoint, Reason: r.Reason, Message: r.Message,
		StartedAt: r.StartedAt, Deadline: r.Deadline, ClosedAt: r.ClosedAt,
	}
	for _, p := range r.Participants {
		out.Participants = append(out.Participants, api.ParticipantStatus{
			PropletID: p.PropletID, TaskID: p.TaskID, State: p.State, Reason: p.Reason, Message: p.Message, EndedAt: p.EndedAt,
		})
	}
	for _, u := range r.Updates {
		out.Updates = append(out.Updates, api.AcceptedUpdate{
			TaskID: u.TaskID, PropletID: u.PropletID, Attempt: u.Attempt, NumSamples: u.NumSamples,
			Metrics: u.Metrics, Digest: u.Digest, Size: u.Size, ReceivedAt: u.ReceivedAt,
		})
	}
	return out
}

// toCheckpoints never returns nil: an empty list is [] in JSON.
func toCheckpoints(cps []fl.Checkpoint) []api.Checkpoint {
	out := make([]api.Checkpoint, 0, len(cps))
	for _, c := range cps {
		out = append(out, api.Checkpoint{
			Round: c.Round, Digest: c.Digest, Size: c.Size, Algorithm: c.Algorithm, Participants: c.Participants,
			TotalSamples: c.TotalSamples, Metrics: c.Metrics, CreatedAt: c.CreatedAt,
		})
	}
	return out
}
