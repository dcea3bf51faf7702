package rest

import (
	api "github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/orchestration"
)

// maxJSONMembers is the most members any object or array of a task request
// may have: four times the largest count limit (env, cliArgs, inputs,
// propletIds, a batch's tasks), so a list just over its limit still gets
// ValidateSpec's precise message. Checked on the raw bytes before decoding,
// since decoding a 15 MB body of a million env variables costs some 40
// times its size in maps before ValidateSpec could refuse it.
const maxJSONMembers = 4 * max(orchestration.MaxEnv, orchestration.MaxArgs, orchestration.MaxInputs,
	orchestration.MaxPropletIDs, orchestration.MaxBatchSize, orchestration.MaxLabels)

// maxJSONDepth bounds nesting; a task request nests four levels deep.
const maxJSONDepth = 16

// checkContainers scans raw JSON once, without allocating, and refuses an
// object or array with more than maxMembers members or nesting deeper than
// maxJSONDepth. Malformed JSON is left to the decoder.
func checkContainers(raw []byte, maxMembers int) error {
	var counts [maxJSONDepth + 1]int
	depth := 0
	inString, escaped := false, false
	for _, c := range raw {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > maxJSONDepth {
				return api.Problemf(api.CodeInvalidRequest, "request body nests deeper than %d levels", maxJSONDepth)
			}
			counts[depth] = 0
		case '}', ']':
			if depth > 0 {
				depth--
			}
		case ',':
			if depth > 0 {
				counts[depth]++
				// n commas separate n+1 members.
				if counts[depth]+1 > maxMembers {
					return api.Problemf(api.CodeInvalidRequest,
						"a JSON object or array in the body has more than %d members; every list and map of a task has a smaller limit (docs/rest.md#limits)", maxMembers)
				}
			}
		}
	}
	return nil
}
