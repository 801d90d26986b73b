// Package guidetest runs docs/guide.md word for word and checks
// examples/greeter, the module the guide builds: its tests pass on the
// embedded broker, and its module graph carries nothing of the shop.
package guidetest
