// Command hello is the smallest useful command module: it shows that argv,
// the environment, stdin, stdout, stderr and the exit code all reach the
// guest and come back to the proplet.
//
// Usage: hello [-exit N] [args...]; it greets $GREETING (default "hello"),
// echoes its arguments, copies stdin to stdout and exits with N. With
// $HELLO_READ it prints that file, with $HELLO_WRITE it writes one, to show
// which host directories the proplet mounted.
package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
)

func main() {
	code := 0
	var rest []string
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		if args[i] == "-exit" && i+1 < len(args) {
			n, err := strconv.Atoi(args[i+1])
			if err != nil {
				fmt.Fprintf(os.Stderr, "bad exit code %q\n", args[i+1])
				os.Exit(2)
			}
			code = n
			i++
			continue
		}
		rest = append(rest, args[i])
	}

	greeting := os.Getenv("GREETING")
	if greeting == "" {
		greeting = "hello"
	}
	fmt.Printf("%s from wasm\n", greeting)
	for i, a := range rest {
		fmt.Printf("arg[%d]=%s\n", i, a)
	}
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "read stdin: %v\n", err)
		os.Exit(1)
	}
	if len(in) > 0 {
		fmt.Printf("stdin=%s\n", in)
	}
	if path := os.Getenv("HELLO_READ"); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "read %s: %v\n", path, err)
			os.Exit(1)
		}
		fmt.Printf("file=%s\n", data)
	}
	if path := os.Getenv("HELLO_WRITE"); path != "" {
		if err := os.WriteFile(path, []byte("written by hello"), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "write %s: %v\n", path, err)
			os.Exit(1)
		}
	}
	fmt.Fprintf(os.Stderr, "exiting with %d\n", code)
	os.Exit(code)
}
