//go:build race

package search

// raceEnabled: the race detector slows the store and the engine about
// threefold, so long generated tests run fewer cases under it.
const raceEnabled = true
