package rest

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/orchestration/fl"
)

// fill sets every field reachable from v to a value that is not zero, so
// a field the conversion forgets shows up as a difference.
func fill(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, *n, time.UTC)))
			return
		}
		for i := range v.NumField() {
			fill(v.Field(i), n)
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(v.Index(i), n)
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, n)
		if v.Type().Elem().Kind() == reflect.Interface {
			e.Set(reflect.ValueOf(float64(*n)))
		} else {
			fill(e, n)
		}
		v.SetMapIndex(k, e)
	case reflect.String:
		v.SetString("s" + string(rune('a'+*n%26)))
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint32:
		v.SetUint(uint64(*n))
	case reflect.Float64:
		v.SetFloat(float64(*n) + 0.5)
	case reflect.Bool:
		v.SetBool(true)
	default:
		panic("fill: " + v.Kind().String())
	}
}

func asJSON(t *testing.T, v any) map[string]any {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

// TestJobConversionKeepsEveryField: the REST mirror of a job encodes as
// the coordinator's type does, field for field, and a spec survives the
// round trip through it.
func TestJobConversionKeepsEveryField(t *testing.T) {
	var j fl.Job
	n := 0
	fill(reflect.ValueOf(&j).Elem(), &n)
	require.Equal(t, asJSON(t, j), asJSON(t, toJob(j)))
	require.Equal(t, j.Spec, fromJobSpec(toJobSpec(j.Spec)))
}
