//go:build !linux

package media

// relayGoroutines is how many goroutines the relay runs for streams live
// streams: a reader per socket.
func relayGoroutines(_ *Manager, streams int) int { return 4 * streams }
