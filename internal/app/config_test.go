package app

import (
	"bytes"
	"flag"
	"os"
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

// Kafka properties come from a file (values may hold commas) and from
// --kafka-config, which wins; a malformed line is a clear error.
func TestKafkaConfigFile(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/kafka.properties"
	body := "# TLS and SASL\n\nsecurity.protocol = SASL_SSL\nssl.cipher.suites=ECDHE-RSA-AES128-GCM-SHA256,ECDHE-RSA-AES256-GCM-SHA384\nsasl.username=shop\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	f := Flags{Brokers: "kafka:9092", AuthSecret: "0123456789abcdef0123", LogLevel: "info", LogFormat: "json",
		KafkaConfigFile: file, KafkaConfig: "sasl.username=override"}
	if _, err := f.Common(); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.kafkaProperties()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"security.protocol": "SASL_SSL",
		"ssl.cipher.suites": "ECDHE-RSA-AES128-GCM-SHA256,ECDHE-RSA-AES256-GCM-SHA384",
		"sasl.username":     "override",
	}
	for k, v := range want {
		if cfg[k] != v {
			t.Errorf("%s = %v, want %q", k, cfg[k], v)
		}
	}
	if err := os.WriteFile(file, []byte("ok=1\nnot a property\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Common(); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("malformed file: %v, want an error naming line 2", err)
	}
	f.KafkaConfigFile = dir + "/missing.properties"
	if _, err := f.Common(); err == nil || !strings.Contains(err.Error(), "missing.properties") {
		t.Fatalf("missing file: %v, want an error naming it", err)
	}
}
