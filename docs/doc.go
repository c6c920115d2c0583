// Package docs holds the repository's documentation (README.md at the
// root, and the pages here). It has no code: its tests check that every
// link between the documents stays inside the repository and lands on a
// file and heading that exist.
package docs
