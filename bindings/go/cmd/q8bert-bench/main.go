// Command q8bert-bench times one short-text classification per call through the Go binding:
//
//	q8bert-bench MODEL.q8b [CALLS]
//
// and prints "go <median µs>".
package main

import (
	"fmt"
	"log"
	"os"
	"sort"
	"strconv"
	"time"

	"q8bert"
)

func main() {
	calls := 2000
	if len(os.Args) > 2 {
		calls, _ = strconv.Atoi(os.Args[2])
	}
	m, err := q8bert.Open(os.Args[1], &q8bert.Options{NumThreads: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	texts := []string{"a gripping, funny film."}
	for i := 0; i < calls/10; i++ {
		m.Classify(texts)
	}
	times := make([]float64, calls)
	for i := range times {
		t0 := time.Now()
		if _, err := m.Classify(texts); err != nil {
			log.Fatal(err)
		}
		times[i] = float64(time.Since(t0).Nanoseconds()) / 1e3
	}
	sort.Float64s(times)
	fmt.Printf("go %.2f\n", times[len(times)/2])
}
