// Package proctest runs the shop's deployable binaries as processes for the
// suites that test them that way (internal/scaletest, internal/faulttest):
// it builds them with go build, starts them with the flags they share,
// waits for their health endpoints, kills them with SIGKILL and restarts
// them, keeps each one's output for the failure report, and calls the
// gateway's REST API. Everything a Cluster started is killed when its test
// ends.
package proctest
