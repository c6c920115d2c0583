// Package api provides eventsproxy's HTTP surface: the connect endpoint that
// streams a client's messages as Server-Sent Events, the health endpoints,
// and JSON errors for everything else. It turns every error into the text a
// client may see in one place (clientText), so that no broker address,
// credential or Go error text ever reaches a client.
package api
