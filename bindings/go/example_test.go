package q8bert_test

import (
	"fmt"
	"log"

	"q8bert"
)

func Example() {
	model, err := q8bert.Open("model.q8b", &q8bert.Options{Truncate: true})
	if err != nil {
		log.Fatal(err) // e.g. "q8bert: I/O error: ...", with err.(*q8bert.Error).Status
	}
	defer model.Close()
	logits, err := model.Classify([]string{"a gripping, funny film.", "dull and far too long."})
	if err != nil {
		log.Fatal(err)
	}
	labels := model.Labels()
	for _, l := range logits {
		best := 0
		for j := range l {
			if l[j] > l[best] {
				best = j
			}
		}
		fmt.Println(labels[best])
	}
}
