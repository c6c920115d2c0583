package binding_test

import (
	"fmt"

	"eventsproxy/internal/binding"
)

func ExampleParse() {
	bindings, err := binding.Parse(`{"bindings": [
		{"exchange": "exchange/taskcluster-queue/v1/task-completed", "routingKeyPattern": "primary.*.#"},
		{"exchange": "exchange/taskcluster-queue/v1/task-completed", "routingKeyPattern": "primary.*.#"}
	]}`, binding.Limits{})
	fmt.Println(bindings, err)

	_, err = binding.Parse(`{"bindings": [{"exchange": "exchange/taskcluster-queue/v1/task-completed"}]}`, binding.Limits{})
	fmt.Println(err)

	_, err = binding.Parse(`{"bindings": [{"exchange": "amq.topic", "routingKeyPattern": "#"}]}`,
		binding.Limits{AllowedExchanges: []string{"exchange/"}})
	fmt.Println(err)
	// Output:
	// [{exchange/taskcluster-queue/v1/task-completed primary.*.#}] <nil>
	// Binding must include `exchange` and `routingKeyPattern` fields
	// bindings[0]: exchange "amq.topic" is not allowed; it must start with "exchange/".
}
