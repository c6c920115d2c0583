package taskgen

// The JSON shapes of the queue's messages, as Taskcluster publishes them
// (schemas v1/task-*-message.json of taskcluster-queue).

// taskMessage is the body of every task exchange's message.
type taskMessage struct {
	Version int        `json:"version"`
	Status  taskStatus `json:"status"`
	// Task is sent with resolutions only.
	Task        *taskInfo `json:"task,omitempty"`
	RunID       *int      `json:"runId,omitempty"`
	WorkerGroup string    `json:"workerGroup,omitempty"`
	WorkerID    string    `json:"workerId,omitempty"`
	// TakenUntil is sent with task-running only.
	TakenUntil string `json:"takenUntil,omitempty"`
	// Artifact is sent with artifact-created only.
	Artifact *artifact `json:"artifact,omitempty"`
}

// taskStatus is a task's status structure.
type taskStatus struct {
	TaskID        string `json:"taskId"`
	ProvisionerID string `json:"provisionerId"`
	WorkerType    string `json:"workerType"`
	SchedulerID   string `json:"schedulerId"`
	TaskGroupID   string `json:"taskGroupId"`
	Deadline      string `json:"deadline"`
	Expires       string `json:"expires"`
	RetriesLeft   int    `json:"retriesLeft"`
	// State is "unscheduled" before the first run, else its last run's.
	State string `json:"state"`
	Runs  []run  `json:"runs"`
}

// run is one run of a task.
type run struct {
	RunID          int    `json:"runId"`
	State          string `json:"state"`
	ReasonCreated  string `json:"reasonCreated"`
	ReasonResolved string `json:"reasonResolved,omitempty"`
	Scheduled      string `json:"scheduled"`
	WorkerGroup    string `json:"workerGroup,omitempty"`
	WorkerID       string `json:"workerId,omitempty"`
	TakenUntil     string `json:"takenUntil,omitempty"`
	Started        string `json:"started,omitempty"`
	Resolved       string `json:"resolved,omitempty"`
}

// taskInfo is the part of the task definition that resolutions carry.
type taskInfo struct {
	Tags map[string]string `json:"tags"`
}

// artifact is the artifact of an artifact-created message.
type artifact struct {
	StorageType string `json:"storageType"`
	Name        string `json:"name"`
	Expires     string `json:"expires"`
	ContentType string `json:"contentType"`
}

// groupResolved is the body of a task-group-resolved message.
type groupResolved struct {
	Version     int    `json:"version"`
	TaskGroupID string `json:"taskGroupId"`
	SchedulerID string `json:"schedulerId"`
}
