package app

import (
	"bytes"
	"flag"
	"strings"
	"testing"
)

// Secrets taken from the environment are used but never printed by --help.
func TestSecretsStayOutOfHelp(t *testing.T) {
	const secret = "s3cret-signing-key-0123456789"
	const sasl = "security.protocol=SASL_SSL,sasl.password=hunter2-hunter2"
	t.Setenv("KGRPC_AUTH_SECRET", secret)
	t.Setenv("KGRPC_KAFKA_CONFIG", sasl)
	t.Setenv("KGRPC_BROKERS", "kafka:9092")
	fs := flag.NewFlagSet("unit", flag.ContinueOnError)
	var f Flags
	f.Register(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if f.AuthSecret != secret || f.KafkaConfig != sasl {
		t.Fatalf("values from the environment not used: %q, %q", f.AuthSecret, f.KafkaConfig)
	}
	var help bytes.Buffer
	fs.SetOutput(&help)
	fs.PrintDefaults()
	for _, leak := range []string{secret, "hunter2"} {
		if strings.Contains(help.String(), leak) {
			t.Fatalf("--help prints a secret:\n%s", help.String())
		}
	}
	for _, want := range []string{"$KGRPC_AUTH_SECRET", "$KGRPC_KAFKA_CONFIG", `"kafka:9092"`} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("--help lacks %s:\n%s", want, help.String())
		}
	}
	// A flag on the command line still wins.
	fs2 := flag.NewFlagSet("unit", flag.ContinueOnError)
	var g Flags
	g.Register(fs2)
	if err := fs2.Parse([]string{"--auth-secret", "from-the-command-line"}); err != nil || g.AuthSecret != "from-the-command-line" {
		t.Fatalf("flag = %q, %v", g.AuthSecret, err)
	}
}
