// Package scaletest holds the scale-out and crash test of the shop: the
// deployable binaries as separate processes (two gateways, two instances of
// each service) under mixed load, with one instance of each service killed
// with SIGKILL mid-load. It runs on the broker of KAFKA_BROKERS, or an
// in-process kfake broker when that is unset. With KAFKA_BROKERS and
// TEST_POSTGRES_DSN both set (the real-Kafka pass of scripts/test.sh) the
// services keep their data in PostgreSQL, as in production; otherwise in
// SQLite files shared by the instances of a service.
package scaletest
