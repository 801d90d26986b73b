// Command kafkaacl grants the shop's units their ACLs (internal/kafkaacl)
// for one topic prefix on a broker that authorizes requests, connecting as
// its super user. scripts/kafka.sh runs it for `KAFKA_SECURE=1
// scripts/kafka.sh acls PREFIX`.
//
// Usage:
//
//	kafkaacl --brokers HOST:PORT --kafka-config-file admin.properties [--topic-prefix P] [--dry-run]
//
// It prints each grant, one a line, and exits 0 once the broker has
// accepted all of them (granting again is harmless); with --dry-run it
// only prints them. Each flag can also come from its KGRPC_ variable
// (KGRPC_BROKERS, KGRPC_TOPIC_PREFIX, ...), as the units' flags do; mind
// that KGRPC_KAFKA_CONFIG_FILE then names the super user's properties, not
// a unit's.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kgrpc/platform/internal/app"
	"github.com/kgrpc/platform/internal/cli"
	"github.com/kgrpc/platform/internal/kafkaacl"
)

func main() {
	var brokers, file, prefix string
	var dryRun bool
	flags := []cli.Flag{
		{Name: "brokers", Value: &brokers, Default: "127.0.0.1:19292", Usage: "bootstrap servers of the secure broker"},
		{Name: "kafka-config-file", Value: &file, Usage: "librdkafka properties of the super user (SASL_SSL credentials, CA)"},
		{Name: "topic-prefix", Value: &prefix, Usage: "the units' --topic-prefix"},
		{Name: "dry-run", Value: &dryRun, Default: "false", Usage: "print the grants only"},
	}
	cli.Main("kafkaacl", flags, cli.NonEmpty(os.LookupEnv), func(ctx context.Context) error {
		grants := kafkaacl.Grants(prefix)
		for _, g := range grants {
			fmt.Println(g)
		}
		if dryRun {
			return nil
		}
		cfg := kafka.ConfigMap{}
		if file != "" {
			var err error
			if cfg, err = app.ReadKafkaConfigFile(file); err != nil {
				return cli.UsageError{Err: err}
			}
		}
		cfg["bootstrap.servers"] = brokers
		admin, err := kafka.NewAdminClient(&cfg)
		if err != nil {
			return fmt.Errorf("admin client: %w", err)
		}
		defer admin.Close()
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if err := kafkaacl.Apply(ctx, admin, grants); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "kafkaacl: %d grants (%d ACL bindings) in place on %s for topic prefix %q\n",
			len(grants), len(kafkaacl.Bindings(grants)), brokers, prefix)
		return nil
	})
}
