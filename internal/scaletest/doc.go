// Package scaletest holds the scale-out and crash test of the shop: the
// deployable binaries as separate processes (two gateways, two instances of
// each service) under mixed load, with one instance of each service killed
// with SIGKILL mid-load. It runs on the broker of KAFKA_BROKERS, or an
// in-process kfake broker when that is unset.
package scaletest
