// Package clientjs carries the JavaScript client library for pages
// (index.js, an npm package in this directory), so that the service can
// serve the very file that the package publishes.
package clientjs
