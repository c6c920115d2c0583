// Package taskgen generates realistic Taskcluster-like messages, for
// `eventsproxy dev` and for tests: task groups whose tasks go through the
// queue's lifecycle (task-defined, task-pending, task-running, some
// artifact-created, then task-completed, task-failed or task-exception, with
// retries), and task-group-resolved once every task of a group is resolved.
//
// Messages look like what Taskcluster's queue publishes on Pulse: exchanges
// exchange/taskcluster-queue/v1/<name>, routing keys
// primary.<taskId>.<runId>.<workerGroup>.<workerId>.<provisionerId>.<workerType>.<schedulerId>.<taskGroupId>._
// ("_" for a missing value; primary.<taskGroupId>.<schedulerId>._ for
// task-group-resolved), CC keys "route.<route>" for index and Treeherder
// routes, and JSON bodies of the same shape as the queue's, with slug IDs
// (22 characters of URL-safe base64, as Taskcluster's slugid makes them).
// IDs and times are made up.
package taskgen
