// Command arith is a reactor (library) module: built with
// -buildmode=c-shared it has no _start, and the proplet calls its exported
// functions by name with numeric inputs. See arith/buildflags.
package main

//go:wasmexport add
func add(a, b int32) int32 { return a + b }

//go:wasmexport mul
func mul(a, b float64) float64 { return a * b }

//go:wasmexport fib
func fib(n int64) int64 {
	a, b := int64(0), int64(1)
	for ; n > 0; n-- {
		a, b = b, a+b
	}
	return a
}

// main is never run in a reactor; the Go toolchain still wants it.
func main() {}
