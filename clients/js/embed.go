package clientjs

import _ "embed"

// Source is index.js: an ES module with no imports.
//
//go:embed index.js
var Source []byte
