package topic_test

import (
	"fmt"

	"eventsproxy/internal/topic"
)

func ExamplePattern_Match() {
	p, err := topic.Compile("primary.*.#")
	if err != nil {
		panic(err)
	}
	for _, key := range []string{"primary.abc", "primary.abc.0.us-east-1", "primary", "secondary.abc"} {
		fmt.Println(key, p.Match(topic.SplitKey(key)))
	}
	// Output:
	// primary.abc true
	// primary.abc.0.us-east-1 true
	// primary false
	// secondary.abc false
}

func ExampleValidate() {
	fmt.Println(topic.Validate("primary.*.#"))
	fmt.Println(topic.Validate("primary*"))
	// Output:
	// <nil>
	// routingKeyPattern "primary*" is not a valid topic pattern: * and # must stand alone as a whole word
}
