// Command initmodel writes the initial global model of the digits example,
// all zeros (softmax regression needs no symmetry breaking), as safetensors
// to stdout.
package main

import (
	"fmt"
	"os"

	"github.com/absmach/propeller/examples/fl/digits"
)

func main() {
	var m digits.Model
	b, err := m.Encode(map[string]string{"model": "digits-softmax"})
	if err == nil {
		_, err = os.Stdout.Write(b)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "initmodel:", err)
		os.Exit(1)
	}
}
