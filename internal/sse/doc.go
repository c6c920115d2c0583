// Package sse writes and reads Server-Sent Events, the text/event-stream
// format of the HTML Living Standard.
//
// AppendEvent frames one event the way the server sends every event:
//
//	event: <kind>
//	data: <one line of JSON>
//	id: -
//	<blank line>
//
// Frame gives the bytes around one-line data, for a server that frames a
// message once for all the streams that send it.
//
// Reader parses a stream back into events exactly as a browser's EventSource
// does, for the tests, the load tool and the command-line client.
//
// The package knows nothing of AMQP and imports only the standard library.
package sse
