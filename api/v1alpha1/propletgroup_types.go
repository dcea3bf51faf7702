package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GroupPhase summarises a PropletGroup.
// +kubebuilder:validation:Enum=Empty;Degraded;Ready
type GroupPhase string

// Group phases.
const (
	// GroupEmpty: no member proplet is alive.
	GroupEmpty GroupPhase = "Empty"
	// GroupDegraded: fewer live members than spec.minMembers.
	GroupDegraded GroupPhase = "Degraded"
	// GroupReady: enough live members.
	GroupReady GroupPhase = "Ready"
)

// PropletGroupSpec says which proplets belong to the group.
//
// +kubebuilder:validation:XValidation:rule="has(self.selector) || has(self.propletIds)",message="set selector or propletIds"
type PropletGroupSpec struct {
	// Selector takes in every proplet carrying all these labels.
	// +optional
	Selector map[string]string `json:"selector,omitempty"`
	// PropletIDs takes in these proplets by id.
	// +optional
	// +listType=set
	PropletIDs []string `json:"propletIds,omitempty"`
	// MinMembers live members make the group Ready.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=1
	MinMembers int32 `json:"minMembers,omitempty"`
}

// PropletMember is one proplet of a group as the engine sees it.
type PropletMember struct {
	ID    string `json:"id"`
	Alive bool   `json:"alive"`
	Slots int32  `json:"slots"`
	// Running is how many tasks the engine placed on it.
	Running int32 `json:"running"`
	// +optional
	Runtime string `json:"runtime,omitempty"`
	// +optional
	Version string `json:"version,omitempty"`
	// +optional
	LastSeen *metav1.Time `json:"lastSeen,omitempty"`
}

// PropletGroupStatus lists the group's members and capacity.
type PropletGroupStatus struct {
	// +optional
	Phase GroupPhase `json:"phase,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=id
	Members []PropletMember `json:"members,omitempty"`
	// Total proplets matched, alive or not.
	// +optional
	Total int32 `json:"total"`
	// +optional
	Alive int32 `json:"alive"`
	// Capacity is the slots of live members; Free those not in use.
	// +optional
	Capacity int32 `json:"capacity"`
	// +optional
	Free int32 `json:"free"`
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// PropletGroup is a set of proplets that WasmTasks can target.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pg,categories=propeller
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Alive",type=integer,JSONPath=`.status.alive`
// +kubebuilder:printcolumn:name="Total",type=integer,JSONPath=`.status.total`
// +kubebuilder:printcolumn:name="Free",type=integer,JSONPath=`.status.free`
// +kubebuilder:printcolumn:name="Capacity",type=integer,JSONPath=`.status.capacity`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PropletGroup struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec PropletGroupSpec `json:"spec"`
	// +optional
	Status PropletGroupStatus `json:"status,omitempty"`
}

// PropletGroupList is a list of PropletGroups.
//
// +kubebuilder:object:root=true
type PropletGroupList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PropletGroup `json:"items"`
}

func init() {
	SchemeBuilder.Register(&PropletGroup{}, &PropletGroupList{})
}
