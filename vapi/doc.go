// Package vapi is the worker's side of VAPI, the voice-agent layer: the
// Server URL VAPI posts its server messages to (tool calls of an assistant
// mid-call, status updates, end-of-call reports), its authentication, and a
// small client of VAPI's REST API for calls an assistant conducts. It talks
// HTTP with the standard library: VAPI's Go SDK types function arguments as
// a string, and real traffic sends an object.
package vapi
