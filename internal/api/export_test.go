package api

// MinPace is minPace, for the stream tests outside the package.
const MinPace = minPace

// SelfUsage is selfUsage, for the benchmarks outside the package.
var SelfUsage = selfUsage
