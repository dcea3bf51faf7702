package operator

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/absmach/propeller/manager/broker"
)

// PropletCredentialsSecret, in the operator's namespace, keeps the
// SHA-256 digests (never the secrets) of the secrets proplets were issued
// when they enrolled with the join token on the embedded broker: key =
// proplet id, value = hex digest, prefixed "pending:" until the proplet
// first logged in with it (see broker.Enroller). It is the operator's
// counterpart of the standalone manager's proplet-credentials.json.
// Deleting a key revokes that proplet's secret (the id may enroll again)
// once the leading replica reloads the Secret, at its next start.
const PropletCredentialsSecret = "propeller-proplet-credentials"

const pendingPrefix = "pending:"

// The operator reads and rewrites this one Secret only (create is the
// rule jointoken.go already has).
//
// +kubebuilder:rbac:groups="",namespace=propeller,resources=secrets,resourceNames=propeller-proplet-credentials,verbs=get;update

// secretCredentials is the embedded broker's Credentials and Enroller
// over PropletCredentialsSecret. Checks are in memory; an enrollment or
// confirmation is in the Secret before the broker accepts it.
type secretCredentials struct {
	c    client.Client
	key  client.ObjectKey
	auth *broker.TokenCredentials
	mu   sync.Mutex // serialises read-modify-write of the Secret
}

// openSecretCredentials loads the Secret of namespace ns (absent means
// none enrolled) into credentials accepting joinToken for enrollment.
func openSecretCredentials(ctx context.Context, c client.Client, ns, joinToken string) (*secretCredentials, error) {
	s := &secretCredentials{c: c, key: client.ObjectKey{Namespace: ns, Name: PropletCredentialsSecret}, auth: broker.NewTokenCredentials(joinToken)}
	sec := &corev1.Secret{}
	err := c.Get(ctx, s.key, sec)
	if apierrors.IsNotFound(err) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read secret %s: %w", s.key, err)
	}
	for id, v := range sec.Data {
		raw, pending := strings.CutPrefix(string(v), pendingPrefix)
		sum, err := hex.DecodeString(raw)
		if err == nil {
			load := s.auth.IssueDigest
			if pending {
				load = s.auth.PendingDigest
			}
			err = load(id, sum)
		}
		if err != nil {
			return nil, fmt.Errorf("secret %s: entry for %q is not a SHA-256 digest: %w", s.key, id, err)
		}
	}
	return s, nil
}

func (s *secretCredentials) Check(id, secret string) broker.Login { return s.auth.Check(id, secret) }

var errNoChange = errors.New("no change")

// Enroll implements broker.Enroller.
func (s *secretCredentials) Enroll(id string) (string, error) {
	secret, err := broker.NewSecret()
	if err != nil {
		return "", err
	}
	sum := broker.Digest(secret)
	err = s.update(func(data map[string][]byte) error {
		if v, ok := data[id]; ok && !strings.HasPrefix(string(v), pendingPrefix) {
			return fmt.Errorf("proplet %q is enrolled already", id)
		}
		data[id] = []byte(pendingPrefix + hex.EncodeToString(sum))
		return nil
	})
	if err != nil {
		return "", err
	}
	if err := s.auth.PendingDigest(id, sum); err != nil {
		return "", err
	}
	return secret, nil
}

// Confirm implements broker.Enroller.
func (s *secretCredentials) Confirm(id string) error {
	err := s.update(func(data map[string][]byte) error {
		raw, pending := strings.CutPrefix(string(data[id]), pendingPrefix)
		if !pending {
			return errNoChange
		}
		data[id] = []byte(raw)
		return nil
	})
	if errors.Is(err, errNoChange) {
		return nil
	}
	if err != nil {
		return err
	}
	s.auth.Confirm(id)
	return nil
}

// update applies mutate to the Secret's data, creating the Secret if it
// does not exist, retrying on a conflicting write.
func (s *secretCredentials) update(mutate func(map[string][]byte) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sec := &corev1.Secret{}
		err := s.c.Get(ctx, s.key, sec)
		if apierrors.IsNotFound(err) {
			sec = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{
					Namespace: s.key.Namespace, Name: s.key.Name,
					Labels: map[string]string{"app.kubernetes.io/managed-by": "propeller-operator"},
				},
				Type: corev1.SecretTypeOpaque,
				Data: map[string][]byte{},
			}
			if err := mutate(sec.Data); err != nil {
				return err
			}
			err = s.c.Create(ctx, sec)
			if apierrors.IsAlreadyExists(err) {
				// Created meanwhile: read it and apply mutate to it.
				return apierrors.NewConflict(corev1.Resource("secrets"), s.key.Name, err)
			}
			return err
		}
		if err != nil {
			return err
		}
		if sec.Data == nil {
			sec.Data = map[string][]byte{}
		}
		if err := mutate(sec.Data); err != nil {
			return err
		}
		return s.c.Update(ctx, sec)
	})
}
