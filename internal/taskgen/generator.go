package taskgen

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// maxGroups is how many task groups are in flight at once, so that a
// watcher sees groups both start and resolve within minutes at a few
// messages a second.
const maxGroups = 3

// missing stands for an absent value in a routing key.
const missing = "_"

// timeFormat is how the queue writes times: UTC, milliseconds.
const timeFormat = "2006-01-02T15:04:05.000Z"

// Generator simulates Taskcluster's queue: task groups whose tasks go
// through their lifecycles, one message at a time. It is not safe for
// concurrent use.
type Generator struct {
	rnd      *rand.Rand
	groups   int          // groups in flight
	active   []*task      // tasks with messages still to come
	resolved []*taskGroup // groups whose task-group-resolved is due
}

// NewGenerator returns a Generator that draws everything from rnd, so that
// a seeded rnd gives the same messages for the same times.
func NewGenerator(rnd *rand.Rand) *Generator {
	return &Generator{rnd: rnd}
}

// taskGroup is a group of tasks, as a decision task creates for a push.
type taskGroup struct {
	id, schedulerID string
	project         string
	user            string   // who pushed
	routes          []string // Treeherder route of every task; nil for an unrouted group
	revision        string
	unresolved      int
}

// step is what a task's next message is.
type step int

const (
	stepDefine   step = iota // task-defined
	stepSchedule             // task-pending for a new run
	stepClaim                // task-running, or task-exception when the deadline passes
	stepWork                 // artifact-created, or the run's resolution
)

// task is one task and its runs so far.
type task struct {
	group    *taskGroup
	id       string
	kind     *kind
	routes   []string
	deadline string
	expires  string
	retries  int
	runs     []run
	step     step
	// artifacts are those the current run has still to create.
	artifacts []string
}

// kind is a sort of task that the generator makes.
type kind struct {
	name, label, os   string
	provisionerID     string
	workerType        string
	workerGroups      []string
	workerIDPrefix    string
	index             string   // index route suffix; "" for none
	artifacts         []string // created in this order by a run
	completed, failed float64  // chances of these resolutions; the rest is exceptions
	deadlineRisk      float64  // chance that no worker claims a run before its deadline
}

var kinds = []*kind{
	{
		name: "build", label: "build-linux64/opt", os: "linux",
		provisionerID: "gecko-3", workerType: "b-linux-gcp",
		workerGroups: []string{"us-central1", "us-west1"}, workerIDPrefix: "gcp-",
		index:     "firefox.linux64-opt",
		artifacts: []string{"public/logs/live.log", "public/logs/live_backing.log", "public/build/target.tar.bz2", "public/build/target.json"},
		completed: 0.85, failed: 0.1, deadlineRisk: 0.01,
	},
	{
		name: "build", label: "build-win64/debug", os: "windows",
		provisionerID: "gecko-3", workerType: "b-win2012",
		workerGroups: []string{"us-east-1", "us-west-2"}, workerIDPrefix: "i-",
		index:     "firefox.win64-debug",
		artifacts: []string{"public/logs/live.log", "public/logs/live_backing.log", "public/build/target.zip"},
		completed: 0.8, failed: 0.12, deadlineRisk: 0.01,
	},
	{
		name: "test", label: "test-linux64/opt-mochitest-browser-chrome-e10s-3", os: "linux",
		provisionerID: "aws-provisioner-v1", workerType: "gecko-t-linux-large",
		workerGroups: []string{"us-east-1", "us-west-2", "eu-central-1"}, workerIDPrefix: "i-",
		artifacts: []string{"public/logs/live.log", "public/logs/live_backing.log", "public/test_info/mochitest-browser-chrome_errorsummary.log"},
		completed: 0.75, failed: 0.15, deadlineRisk: 0.02,
	},
	{
		name: "test", label: "test-windows10-64/opt-xpcshell-2", os: "windows",
		provisionerID: "aws-provisioner-v1", workerType: "gecko-t-win10-64",
		workerGroups: []string{"us-east-1", "us-west-2"}, workerIDPrefix: "i-",
		artifacts: []string{"public/logs/live.log", "public/logs/live_backing.log", "public/test_info/xpcshell_raw.log"},
		completed: 0.75, failed: 0.15, deadlineRisk: 0.08,
	},
	{
		name: "test", label: "test-macosx1015-64/debug-reftest-1", os: "macosx",
		provisionerID: "releng-hardware", workerType: "gecko-t-osx-1015",
		workerGroups: []string{"mdc1", "mdc2"}, workerIDPrefix: "macmini-r8-",
		artifacts: []string{"public/logs/live.log", "public/logs/live_backing.log", "public/test_info/reftest-no-accel_errorsummary.log"},
		completed: 0.75, failed: 0.2, deadlineRisk: 0.03,
	},
	{
		name: "source-test", label: "source-test-mozlint-eslint", os: "linux",
		provisionerID: "gecko-t", workerType: "t-linux-xlarge",
		workerGroups: []string{"us-central1"}, workerIDPrefix: "gcp-",
		artifacts: []string{"public/logs/live.log", "public/code-review/mozlint.json"},
		completed: 0.9, failed: 0.08,
	},
}

var (
	projects = []string{"mozilla-central", "autoland", "try", "mozilla-beta"}
	users    = []string{"someone@example.com", "dev@example.org", "sheriff@example.com"}
)

// Next returns the next message, with times taken from now.
func (g *Generator) Next(now time.Time) Message {
	if len(g.resolved) > 0 {
		tg := g.resolved[0]
		g.resolved = g.resolved[1:]
		return g.groupResolved(tg)
	}
	if len(g.active) == 0 || (g.groups < maxGroups && g.rnd.Float64() < 0.05) {
		g.newGroup(now)
	}
	i := g.rnd.IntN(len(g.active))
	t := g.active[i]
	m, done := g.advance(t, now)
	if done {
		g.active[i] = g.active[len(g.active)-1]
		g.active[len(g.active)-1] = nil
		g.active = g.active[:len(g.active)-1]
		t.group.unresolved--
		if t.group.unresolved == 0 {
			g.groups--
			g.resolved = append(g.resolved, t.group)
		}
	}
	return m
}

// newGroup starts a task group of a few tasks, all to be defined.
func (g *Generator) newGroup(now time.Time) {
	r := g.rnd
	tg := &taskGroup{
		id:          SlugID(r),
		schedulerID: "gecko-level-3",
		project:     projects[r.IntN(len(projects))],
		user:        users[r.IntN(len(users))],
		revision:    hexDigits(r, 40),
	}
	if tg.project == "try" {
		tg.schedulerID = "gecko-level-1"
	}
	// Most pushes report to Treeherder; a few groups have no routes.
	if r.Float64() < 0.85 {
		tg.routes = []string{fmt.Sprintf("tc-treeherder.v2.%s.%s.%d", tg.project, tg.revision, 10000+r.IntN(90000))}
	}
	n := 3 + r.IntN(8)
	for range n {
		k := kinds[r.IntN(len(kinds))]
		t := &task{
			group:    tg,
			id:       SlugID(r),
			kind:     k,
			deadline: now.Add(24 * time.Hour).UTC().Format(timeFormat),
			expires:  now.AddDate(1, 0, 0).UTC().Format(timeFormat),
			retries:  5,
		}
		if k.index != "" && tg.routes != nil {
			t.routes = append(t.routes,
				"index.gecko.v2."+tg.project+".latest."+k.index,
				"index.gecko.v2."+tg.project+".revision."+tg.revision+"."+k.index)
		}
		t.routes = append(t.routes, tg.routes...)
		g.active = append(g.active, t)
	}
	tg.unresolved = n
	g.groups++
}

// advance returns t's next message, and whether t is resolved for good.
func (g *Generator) advance(t *task, now time.Time) (m Message, done bool) {
	r := g.rnd
	ts := now.UTC().Format(timeFormat)
	switch t.step {
	case stepDefine:
		t.step = stepSchedule
		return g.taskMessage(t, TaskDefined, taskMessage{}), false

	case stepSchedule:
		reason := "scheduled"
		if len(t.runs) > 0 {
			reason = "retry"
		}
		t.runs = append(t.runs, run{RunID: len(t.runs), State: "pending", ReasonCreated: reason, Scheduled: ts})
		t.step = stepClaim
		return g.taskMessage(t, TaskPending, taskMessage{RunID: t.runID()}), false

	case stepClaim:
		cur := &t.runs[len(t.runs)-1]
		if r.Float64() < t.kind.deadlineRisk {
			cur.State, cur.ReasonResolved, cur.Resolved = "exception", "deadline-exceeded", ts
			return g.taskMessage(t, TaskException, taskMessage{Task: t.info(), RunID: t.runID()}), true
		}
		cur.State = "running"
		cur.WorkerGroup = t.kind.workerGroups[r.IntN(len(t.kind.workerGroups))]
		cur.WorkerID = g.workerID(t.kind)
		cur.Started = ts
		cur.TakenUntil = now.Add(20 * time.Minute).UTC().Format(timeFormat)
		// Some runs get as far as some of their artifacts.
		t.artifacts = t.kind.artifacts[:r.IntN(len(t.kind.artifacts)+1)]
		t.step = stepWork
		return g.taskMessage(t, TaskRunning, taskMessage{
			RunID: t.runID(), WorkerGroup: cur.WorkerGroup, WorkerID: cur.WorkerID, TakenUntil: cur.TakenUntil,
		}), false

	default: // stepWork
		cur := &t.runs[len(t.runs)-1]
		if len(t.artifacts) > 0 {
			name := t.artifacts[0]
			t.artifacts = t.artifacts[1:]
			return g.taskMessage(t, ArtifactCreated, taskMessage{
				RunID: t.runID(), WorkerGroup: cur.WorkerGroup, WorkerID: cur.WorkerID,
				Artifact: newArtifact(name, t.expires),
			}), false
		}
		exchange, state, reason := TaskCompleted, "completed", "completed"
		switch x := r.Float64(); {
		case x < t.kind.completed:
		case x < t.kind.completed+t.kind.failed:
			exchange, state, reason = TaskFailed, "failed", "failed"
		default:
			exchange, state = TaskException, "exception"
			reason = []string{"worker-shutdown", "claim-expired", "malformed-payload", "canceled"}[r.IntN(4)]
		}
		cur.State, cur.ReasonResolved, cur.Resolved = state, reason, ts
		m := g.taskMessage(t, exchange, taskMessage{
			Task: t.info(), RunID: t.runID(), WorkerGroup: cur.WorkerGroup, WorkerID: cur.WorkerID,
		})
		// The queue retries runs lost with their worker.
		if (reason == "worker-shutdown" || reason == "claim-expired") && t.retries > 0 {
			t.retries--
			t.step = stepSchedule
			return m, false
		}
		return m, true
	}
}

// taskMessage completes body with t's status and returns it as a message
// on exchange, routed as the queue routes it.
func (g *Generator) taskMessage(t *task, exchange string, body taskMessage) Message {
	body.Version = 1
	body.Status = t.status()
	runID := missing
	if body.RunID != nil {
		runID = strconv.Itoa(*body.RunID)
	}
	key := strings.Join([]string{
		"primary", t.id, runID, orMissing(body.WorkerGroup), orMissing(body.WorkerID),
		t.kind.provisionerID, t.kind.workerType, t.group.schedulerID, t.group.id, missing,
	}, ".")
	return Message{Exchange: exchange, RoutingKey: key, CC: cc(t.routes), Body: mustJSON(body)}
}

func (g *Generator) groupResolved(tg *taskGroup) Message {
	return Message{
		Exchange:   TaskGroupResolved,
		RoutingKey: strings.Join([]string{"primary", tg.id, tg.schedulerID, missing}, "."),
		Body:       mustJSON(groupResolved{Version: 1, TaskGroupID: tg.id, SchedulerID: tg.schedulerID}),
	}
}

// status returns t's status structure as it stands.
func (t *task) status() taskStatus {
	state := "unscheduled"
	if len(t.runs) > 0 {
		state = t.runs[len(t.runs)-1].State
	}
	runs := make([]run, len(t.runs))
	copy(runs, t.runs)
	return taskStatus{
		TaskID:        t.id,
		ProvisionerID: t.kind.provisionerID,
		WorkerType:    t.kind.workerType,
		SchedulerID:   t.group.schedulerID,
		TaskGroupID:   t.group.id,
		Deadline:      t.deadline,
		Expires:       t.expires,
		RetriesLeft:   t.retries,
		State:         state,
		Runs:          runs,
	}
}

// runID returns the ID of t's current run.
func (t *task) runID() *int {
	id := len(t.runs) - 1
	return &id
}

func (t *task) info() *taskInfo {
	return &taskInfo{Tags: map[string]string{
		"kind": t.kind.name, "label": t.kind.label, "os": t.kind.os, "createdForUser": t.group.user,
	}}
}

func (g *Generator) workerID(k *kind) string {
	switch k.workerIDPrefix {
	case "i-":
		return "i-" + hexDigits(g.rnd, 17)
	case "gcp-":
		// GCP instance IDs have 19 digits.
		return strconv.FormatUint(1e18+g.rnd.Uint64N(9e18), 10)
	}
	return k.workerIDPrefix + strconv.Itoa(1+g.rnd.IntN(400))
}

func newArtifact(name, expires string) *artifact {
	a := &artifact{StorageType: "s3", Name: name, Expires: expires, ContentType: "application/octet-stream"}
	switch {
	case strings.HasSuffix(name, "/live.log"):
		a.StorageType, a.ContentType = "reference", "text/plain; charset=utf-8"
	case strings.HasSuffix(name, ".log"):
		a.ContentType = "text/plain; charset=utf-8"
	case strings.HasSuffix(name, ".json"):
		a.ContentType = "application/json"
	}
	return a
}

func cc(routes []string) []string {
	if len(routes) == 0 {
		return nil
	}
	out := make([]string, len(routes))
	for i, r := range routes {
		out[i] = "route." + r
	}
	return out
}

func orMissing(s string) string {
	if s == "" {
		return missing
	}
	return s
}

func hexDigits(r *rand.Rand, n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[r.IntN(len(digits))]
	}
	return string(b)
}

// mustJSON marshals v, which holds only strings, numbers, slices and maps
// of them and so cannot fail.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("taskgen: marshal %T: %v", v, err))
	}
	return b
}
