// Command hello is the baseline for the size measurement: a Go hello world
// built with the same flags as the manager program, without this package.
package main

import "fmt"

func main() { fmt.Println("hello") }
