package rabbittest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

// StartCluster starts size nodes for tb and joins them into one cluster
// (the others stop_app, reset and join_cluster the first), waits until the
// first lists every node as running, and stops and deletes them all when tb
// ends.
func StartCluster(tb testing.TB, size int) []*Node {
	tb.Helper()
	nodes, err := NewCluster(size)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		for _, n := range nodes {
			if err := n.Stop(); err != nil {
				tb.Errorf("stop node %s: %v", n.Name, err)
			}
		}
	})
	return nodes
}

// NewCluster starts size nodes and joins them into one cluster. The caller
// must Stop every node.
func NewCluster(size int) ([]*Node, error) {
	cookie := randomCookie()
	nodes := make([]*Node, size)
	errs := make([]error, size)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			nodes[i], errs[i] = NewNode(cookie)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		stopAll(nodes)
		return nil, fmt.Errorf("start cluster: %w", err)
	}
	for i := 1; i < size; i++ {
		wg.Go(func() { errs[i] = nodes[i].join(nodes[0]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		stopAll(nodes)
		return nil, fmt.Errorf("join cluster: %w", err)
	}
	var running []struct {
		Name    string `json:"name"`
		Running bool   `json:"running"`
	}
	if err := nodes[0].get("/api/nodes?columns=name,running", &running); err != nil {
		stopAll(nodes)
		return nil, err
	}
	up := 0
	for _, r := range running {
		if r.Running {
			up++
		}
	}
	if up != size {
		stopAll(nodes)
		return nil, fmt.Errorf("cluster of %d lists %d running nodes: %v", size, up, running)
	}
	return nodes, nil
}

// join makes n a member of first's cluster: before RabbitMQ 4.1 a node
// must stop its application and reset to join.
func (n *Node) join(first *Node) error {
	for _, args := range [][]string{{"stop_app"}, {"reset"}, {"join_cluster", first.Name}} {
		if _, err := n.Ctl(args...); err != nil {
			return err
		}
	}
	return n.StartApp()
}

func stopAll(nodes []*Node) {
	for _, n := range nodes {
		if n != nil {
			_ = n.Stop()
		}
	}
}
