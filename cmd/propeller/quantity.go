package main

import (
	"fmt"
	"math"
	"regexp"

	"k8s.io/apimachinery/pkg/api/resource"
)

// quantityPattern is the schema pattern the kube-apiserver checks a
// quantity against before parsing it (deploy/crd: resources.requests);
// ParseQuantity alone accepts "Mi" or "." as zero.
var quantityPattern = regexp.MustCompile(`^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$`)

// parseBytes reads a memory size exactly as the WasmTask CRD does: a
// Kubernetes quantity (128974848, 129e6, 129M, 128Mi, 1.5Gi) matching the
// CRD's pattern, counted in bytes and rounded up to a whole byte, as
// resource.Quantity.Value does. "" is zero. Negative sizes and ones past
// int64 are errors.
func parseBytes(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	q, err := resource.ParseQuantity(v)
	if err != nil || !quantityPattern.MatchString(v) {
		return 0, fmt.Errorf("%q: want bytes or a Kubernetes quantity such as 128Mi, 1.5Gi or 500M", v)
	}
	if q.Sign() < 0 {
		return 0, fmt.Errorf("%q: a size cannot be negative", v)
	}
	if q.Cmp(*resource.NewQuantity(math.MaxInt64, resource.BinarySI)) > 0 {
		return 0, fmt.Errorf("%q: larger than %d bytes", v, int64(math.MaxInt64))
	}
	return q.Value(), nil
}

// quantityFlag is an int64 byte count flag that takes Kubernetes
// quantities (--cache-bytes 512Mi).
type quantityFlag struct{ p *int64 }

func newQuantityFlag(p *int64, def int64) *quantityFlag {
	*p = def
	return &quantityFlag{p: p}
}

func (q *quantityFlag) String() string {
	if q.p == nil {
		return "0"
	}
	return resource.NewQuantity(*q.p, resource.BinarySI).String()
}

func (q *quantityFlag) Set(s string) error {
	n, err := parseBytes(s)
	if err != nil {
		return err
	}
	*q.p = n
	return nil
}

func (q *quantityFlag) Type() string { return "quantity" }
