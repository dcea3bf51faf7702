// Command spin announces itself on stdout and then burns CPU forever. Tests
// wait for its first line to know it is running before they stop it or let
// its deadline pass; only the proplet can end it.
package main

import "fmt"

func main() {
	fmt.Println("spinning")
	x := uint64(1)
	for {
		x = x*6364136223846793005 + 1442695040888963407
		if x == 0 {
			fmt.Println("impossible")
		}
	}
}
