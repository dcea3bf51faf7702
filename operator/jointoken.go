package operator

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/absmach/propeller/manager/broker"
)

// The Secret, in the operator's namespace, that holds the proplets' join
// token on the embedded broker when none is configured: the operator's
// counterpart of the standalone manager's <data-dir>/join-token file.
const (
	JoinTokenSecret = "propeller-join-token"
	JoinTokenKey    = "token"
)

// Reading one named Secret and creating it is all the operator does with
// Secrets, in its own namespace only: a Role, not the ClusterRole (a rule
// with resourceNames cannot allow create, whose name the authorizer does
// not know yet, hence two rules). Cluster-wide, create plus get would let
// the operator mint a service-account token Secret in any namespace and
// read it.
//
// +kubebuilder:rbac:groups="",namespace=propeller,resources=secrets,resourceNames=propeller-join-token,verbs=get
// +kubebuilder:rbac:groups="",namespace=propeller,resources=secrets,verbs=create

// resolveJoinToken fills cfg.JoinToken for an embedded broker when it is
// empty: from the Secret, which the first replica to start creates with a
// random token. A configured token wins and leaves the Secret alone.
func resolveJoinToken(ctx context.Context, c client.Client, cfg *Config, log *slog.Logger) error {
	if cfg.Broker != "" || cfg.JoinToken != "" {
		return nil
	}
	tok, err := ensureJoinToken(ctx, c, cfg.Namespace, log)
	if err != nil {
		return fmt.Errorf("operator: join token: %w", err)
	}
	cfg.JoinToken = tok
	return nil
}

// ensureJoinToken reads the join token Secret of namespace ns, creating it
// if absent. Create is the lock: of replicas starting together one
// creates it, the others get AlreadyExists and read what it wrote.
func ensureJoinToken(ctx context.Context, c client.Client, ns string, log *slog.Logger) (string, error) {
	key := client.ObjectKey{Namespace: ns, Name: JoinTokenSecret}
	// Two rounds: a create that lost the race reads the winner's Secret.
	// A third would mean the Secret was deleted in between, which is an
	// operator of the cluster's doing, not a race to paper over.
	for range 2 {
		s := &corev1.Secret{}
		err := c.Get(ctx, key, s)
		if err == nil {
			tok := strings.TrimSpace(string(s.Data[JoinTokenKey]))
			if tok == "" {
				return "", fmt.Errorf("secret %s has no %q key or it is empty; set it, or delete the Secret to get a new token", key, JoinTokenKey)
			}
			return tok, nil
		}
		if !apierrors.IsNotFound(err) {
			return "", fmt.Errorf("read secret %s: %w", key, err)
		}
		tok, err := broker.NewSecret()
		if err != nil {
			return "", err
		}
		s = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: ns, Name: JoinTokenSecret,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "propeller-operator"},
			},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{JoinTokenKey: []byte(tok)},
		}
		err = c.Create(ctx, s)
		if err == nil {
			log.Info("generated the proplets' join token", "secret", key.String(), "key", JoinTokenKey)
			return tok, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return "", fmt.Errorf("create secret %s: %w", key, err)
		}
	}
	return "", fmt.Errorf("secret %s was deleted while the operator was reading it; start again", key)
}
