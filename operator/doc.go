// Package operator is Propeller's Kubernetes frontend: the orchestration
// engine over a CRD-backed store, controllers for the propeller.absmach.io
// kinds, and the same MQTT link to proplets as the standalone manager.
//
// The RBAC the operator needs is declared here and generated into
// deploy/rbac by `make manifests`.
//
// +kubebuilder:rbac:groups=propeller.absmach.io,resources=wasmtasks;propletgroups;federatedjobs;trainingrounds;modelcheckpoints,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=propeller.absmach.io,resources=wasmtasks/status;propletgroups/status;federatedjobs/status;trainingrounds/status;modelcheckpoints/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=propeller.absmach.io,resources=wasmtasks/finalizers;propletgroups/finalizers;federatedjobs/finalizers;trainingrounds/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete
package operator
