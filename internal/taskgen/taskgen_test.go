package taskgen

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestExchanges(t *testing.T) {
	t.Parallel()
	want := []string{
		"exchange/taskcluster-queue/v1/task-defined",
		"exchange/taskcluster-queue/v1/task-pending",
		"exchange/taskcluster-queue/v1/task-running",
		"exchange/taskcluster-queue/v1/artifact-created",
		"exchange/taskcluster-queue/v1/task-completed",
		"exchange/taskcluster-queue/v1/task-failed",
		"exchange/taskcluster-queue/v1/task-exception",
		"exchange/taskcluster-queue/v1/task-group-resolved",
	}
	if got := Exchanges(); !slices.Equal(got, want) {
		t.Fatalf("Exchanges() = %q, want %q", got, want)
	}
}

func TestSlugID(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	seen := map[string]bool{}
	for range 1000 {
		id := SlugID(r)
		checkSlugID(t, "slug", id)
		if seen[id] {
			t.Fatalf("SlugID repeated %q", id)
		}
		seen[id] = true
	}
}

func checkSlugID(t *testing.T, what, id string) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(id)
	if len(id) != 22 || err != nil || len(b) != 16 {
		t.Fatalf("%s %q is not 22 characters of URL-safe base64 of 16 bytes (%v)", what, id, err)
	}
	if id[0] == '-' || b[6]>>4 != 4 || b[8]>>6 != 2 {
		t.Fatalf("%s %q is not a nice v4 slug ID", what, id)
	}
}

// decoded is a generated body, decoded for the checks.
type decoded struct {
	Version     int         `json:"version"`
	Status      *taskStatus `json:"status"`
	Task        *taskInfo   `json:"task"`
	RunID       *int        `json:"runId"`
	WorkerGroup string      `json:"workerGroup"`
	WorkerID    string      `json:"workerId"`
	TakenUntil  string      `json:"takenUntil"`
	Artifact    *artifact   `json:"artifact"`
	TaskGroupID string      `json:"taskGroupId"`
	SchedulerID string      `json:"schedulerId"`
}

func generate(t *testing.T, seed uint64, n int) []Message {
	t.Helper()
	g := NewGenerator(rand.New(rand.NewPCG(seed, 7)))
	now := time.Date(2018, 11, 20, 13, 4, 11, 513e6, time.UTC)
	ms := make([]Message, n)
	for i := range ms {
		ms[i] = g.Next(now)
		now = now.Add(333 * time.Millisecond)
	}
	return ms
}

// TestMessages checks each message's exchange, routing key, CC routes and
// body against each other and against the queue's conventions.
func TestMessages(t *testing.T) {
	t.Parallel()
	seen := map[string]int{}
	for i, m := range generate(t, 1, 2000) {
		if !slices.Contains(Exchanges(), m.Exchange) {
			t.Fatalf("message %d: exchange %q", i, m.Exchange)
		}
		seen[m.Exchange]++
		if !json.Valid(m.Body) {
			t.Fatalf("message %d: body is not JSON: %s", i, m.Body)
		}
		var d decoded
		dec := json.NewDecoder(strings.NewReader(string(m.Body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("message %d: %v: %s", i, err, m.Body)
		}
		if d.Version != 1 {
			t.Fatalf("message %d: version %d", i, d.Version)
		}
		for _, c := range m.CC {
			if !strings.HasPrefix(c, "route.") || len(c) == len("route.") {
				t.Fatalf("message %d: CC %q is not a route", i, c)
			}
		}
		words := strings.Split(m.RoutingKey, ".")
		if m.Exchange == TaskGroupResolved {
			want := []string{"primary", d.TaskGroupID, d.SchedulerID, "_"}
			if !slices.Equal(words, want) || d.Status != nil || m.CC != nil {
				t.Fatalf("message %d: task-group-resolved %q CC %q body %s", i, m.RoutingKey, m.CC, m.Body)
			}
			checkSlugID(t, "taskGroupId", d.TaskGroupID)
			continue
		}
		if len(words) != 10 {
			t.Fatalf("message %d: routing key %q has %d words, want 10", i, m.RoutingKey, len(words))
		}
		s := d.Status
		if s == nil {
			t.Fatalf("message %d: no status: %s", i, m.Body)
		}
		runID := "_"
		if d.RunID != nil {
			runID = strconv.Itoa(*d.RunID)
			if *d.RunID != len(s.Runs)-1 || s.Runs[*d.RunID].RunID != *d.RunID {
				t.Fatalf("message %d: runId %d with %d runs", i, *d.RunID, len(s.Runs))
			}
		}
		want := []string{"primary", s.TaskID, runID, orMissing(d.WorkerGroup), orMissing(d.WorkerID),
			s.ProvisionerID, s.WorkerType, s.SchedulerID, s.TaskGroupID, "_"}
		if !slices.Equal(words, want) {
			t.Fatalf("message %d: routing key %q, want %q from %s", i, m.RoutingKey, strings.Join(want, "."), m.Body)
		}
		checkSlugID(t, "taskId", s.TaskID)
		checkSlugID(t, "taskGroupId", s.TaskGroupID)
		for _, ts := range []string{s.Deadline, s.Expires} {
			if _, err := time.Parse(time.RFC3339, ts); err != nil || !strings.HasSuffix(ts, "Z") {
				t.Fatalf("message %d: time %q: %v", i, ts, err)
			}
		}
		checkShape(t, i, m.Exchange, &d)
	}
	for _, ex := range Exchanges() {
		if seen[ex] == 0 {
			t.Errorf("no message on %s in 2000", ex)
		}
	}
	t.Logf("messages by exchange: %v", seen)
}

// checkShape checks the fields that the queue sends with each exchange's
// messages.
func checkShape(t *testing.T, i int, exchange string, d *decoded) {
	t.Helper()
	s := d.Status
	last := run{State: "unscheduled"}
	if len(s.Runs) > 0 {
		last = s.Runs[len(s.Runs)-1]
	}
	wantState := map[string]string{
		TaskDefined: "unscheduled", TaskPending: "pending", TaskRunning: "running", ArtifactCreated: "running",
		TaskCompleted: "completed", TaskFailed: "failed", TaskException: "exception",
	}[exchange]
	ok := s.State == wantState && last.State == wantState &&
		(exchange == TaskDefined) == (d.RunID == nil) &&
		(exchange == TaskRunning) == (d.TakenUntil != "") &&
		(exchange == ArtifactCreated) == (d.Artifact != nil) &&
		(exchange == TaskCompleted || exchange == TaskFailed || exchange == TaskException) == (d.Task != nil) &&
		d.WorkerGroup == last.WorkerGroup && d.WorkerID == last.WorkerID
	if exchange == TaskRunning || exchange == ArtifactCreated || exchange == TaskCompleted || exchange == TaskFailed {
		ok = ok && d.WorkerGroup != "" && d.WorkerID != ""
	}
	if d.Task != nil {
		ok = ok && d.Task.Tags["label"] != "" && last.ReasonResolved != "" && last.Resolved != ""
	}
	if !ok {
		t.Fatalf("message %d on %s has the wrong shape: %+v", i, exchange, d)
	}
}

// TestLifecycles checks that every task goes through the queue's states
// in order and that a group is resolved once, after all its tasks.
func TestLifecycles(t *testing.T) {
	t.Parallel()
	next := map[string][]string{
		"":              {TaskDefined},
		TaskDefined:     {TaskPending},
		TaskPending:     {TaskRunning, TaskException},
		TaskRunning:     {ArtifactCreated, TaskCompleted, TaskFailed, TaskException},
		ArtifactCreated: {ArtifactCreated, TaskCompleted, TaskFailed, TaskException},
		TaskException:   {TaskPending}, // a retry
	}
	lastOf := map[string]string{}       // task → its last exchange
	groupOf := map[string]string{}      // task → its group
	tasksOf := map[string][]string{}    // group → its tasks
	resolvedGroups := map[string]bool{} // groups resolved
	resolvedTasks := map[string]bool{}  // tasks resolved for good
	var retries, resolutions int
	for i, m := range generate(t, 2, 5000) {
		var d decoded
		if err := json.Unmarshal(m.Body, &d); err != nil {
			t.Fatal(err)
		}
		if m.Exchange == TaskGroupResolved {
			if resolvedGroups[d.TaskGroupID] {
				t.Fatalf("message %d: group %s resolved twice", i, d.TaskGroupID)
			}
			resolvedGroups[d.TaskGroupID] = true
			if len(tasksOf[d.TaskGroupID]) == 0 {
				t.Fatalf("message %d: group %s resolved without tasks", i, d.TaskGroupID)
			}
			for _, task := range tasksOf[d.TaskGroupID] {
				if !slices.Contains([]string{TaskCompleted, TaskFailed, TaskException}, lastOf[task]) {
					t.Fatalf("message %d: group %s resolved while task %s is at %s", i, d.TaskGroupID, task, lastOf[task])
				}
				resolvedTasks[task] = true
			}
			resolutions++
			continue
		}
		task, group := d.Status.TaskID, d.Status.TaskGroupID
		if resolvedGroups[group] || resolvedTasks[task] {
			t.Fatalf("message %d: %s for task %s of resolved group %s", i, m.Exchange, task, group)
		}
		if _, ok := groupOf[task]; !ok {
			groupOf[task] = group
			tasksOf[group] = append(tasksOf[group], task)
		}
		if prev := lastOf[task]; !slices.Contains(next[prev], m.Exchange) {
			t.Fatalf("message %d: task %s went from %q to %s", i, task, prev, m.Exchange)
		}
		if m.Exchange == TaskPending && *d.RunID > 0 {
			retries++
		}
		lastOf[task] = m.Exchange
	}
	if resolutions < 10 || retries == 0 {
		t.Fatalf("in 5000 messages: %d groups resolved and %d retries; want more", resolutions, retries)
	}
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	a, b := generate(t, 3, 500), generate(t, 3, 500)
	for i := range a {
		if a[i].RoutingKey != b[i].RoutingKey || string(a[i].Body) != string(b[i].Body) {
			t.Fatalf("message %d differs for the same seed", i)
		}
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		rate float64
		want int // messages in ten seconds, give or take one
	}{
		{"no messages at rate zero", 0, 0},
		{"slow", 3, 30},
		{"ten a second", 10, 100},
		{"faster than the ticker", 1000, 10000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				n := 0
				done := make(chan error)
				go func() {
					done <- Run(ctx, tt.rate, rand.New(rand.NewPCG(1, 2)), func(exchange, key string, cc []string, body []byte) error {
						n++
						return nil
					})
				}()
				time.Sleep(10 * time.Second)
				synctest.Wait()
				cancel()
				if err := <-done; err != nil {
					t.Fatalf("Run: %v", err)
				}
				if n < tt.want-1 || n > tt.want {
					t.Fatalf("published %d in ten seconds, want %d", n, tt.want)
				}
			})
		})
	}
}

func TestRunPublishError(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		boom := errors.New("boom")
		err := Run(t.Context(), 100, rand.New(rand.NewPCG(1, 2)), func(string, string, []string, []byte) error { return boom })
		if !errors.Is(err, boom) {
			t.Fatalf("Run returned %v, want it to wrap the publish error", err)
		}
	})
}
