// Package metrics provides eventsproxy's Prometheus collectors, registered
// on a Registerer that main hands over (no global registry). Labels take
// values from small fixed sets only: never a client, an exchange or a
// routing key.
package metrics
