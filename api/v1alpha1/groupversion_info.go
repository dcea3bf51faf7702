// Package v1alpha1 holds the custom resources of propeller.absmach.io:
// WasmTask (the primary kind), PropletGroup, and the federated-learning
// kinds FederatedJob, TrainingRound and ModelCheckpoint. Field names follow
// the operator README's YAML, which must keep applying as written.
//
// +kubebuilder:object:generate=true
// +groupName=propeller.absmach.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API group and version of every kind here.
	GroupVersion = schema.GroupVersion{Group: "propeller.absmach.io", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the kinds to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// Condition types shared by the kinds.
const (
	// ConditionReady is True when the object reached the state it asks
	// for: a WasmTask succeeded, a PropletGroup has live members, a
	// FederatedJob completed its rounds.
	ConditionReady = "Ready"
	// ConditionScheduled is True once a WasmTask was placed on a proplet.
	ConditionScheduled = "Scheduled"
	// ConditionProgressing is True while work is under way.
	ConditionProgressing = "Progressing"
	// ConditionPushed is True once a ModelCheckpoint was pushed to the
	// operator's checkpoint registry, False (reason PushFailed) when the
	// push failed; absent without a registry.
	ConditionPushed = "Pushed"
)

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}
