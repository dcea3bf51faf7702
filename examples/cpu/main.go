// Command cpu is a CPU-bound workload for benchmarks and slot tests: it
// counts the primes below N (first argument, default 100000) with a plain
// sieve and prints the count.
package main

import (
	"fmt"
	"os"
	"strconv"
)

func main() {
	n := 100000
	if len(os.Args) > 1 {
		v, err := strconv.Atoi(os.Args[1])
		if err != nil || v < 0 {
			fmt.Fprintf(os.Stderr, "bad N %q\n", os.Args[1])
			os.Exit(2)
		}
		n = v
	}
	fmt.Println(countPrimes(n))
}

func countPrimes(n int) int {
	if n < 3 {
		return 0
	}
	composite := make([]bool, n)
	count := 0
	for i := 2; i < n; i++ {
		if composite[i] {
			continue
		}
		count++
		for j := i * i; j < n; j += i {
			composite[j] = true
		}
	}
	return count
}
