package api

// MinPace is minPace, for the stream tests outside the package.
const MinPace = minPace
