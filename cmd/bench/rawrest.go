package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/kgrpc/platform/kafkatransport/kafkatest/rawkafka"
)

// runRawREST serves the floor of a REST path over Kafka: a net/http handler
// that sends the fixed body as a raw request record (kafkatransport/kafkatest/rawkafka),
// waits for the reply and writes the reply's value as the JSON response; a
// raw responder echoes every request. Nothing else: no routing, no
// protobuf, no envelope, no sealing, no middleware. A load generator
// pointed at it (scripts/compare.sh) measures what HTTP and confluent-kafka-go
// alone cost on this machine and broker, the part of the gateway and
// service path no implementation on this stack can remove.
//
// --role both runs bridge and responder in one process; bridge and
// responder run them as two processes, as the gateway and a service are.
func runRawREST(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench rawrest", flag.ContinueOnError)
	brokers := fs.String("brokers", os.Getenv("KAFKA_BROKERS"), "Kafka bootstrap servers (KAFKA_BROKERS)")
	addr := fs.String("http-addr", "127.0.0.1:19770", "listen address of the bridge")
	role := fs.String("role", "both", "bridge (HTTP to Kafka), responder (Kafka echo) or both")
	prefix := fs.String("topic-prefix", "", "prefix of the request and reply topics; bridge and responder must agree (default: rawrest-<unix time>-, new topics each run)")
	bodyFile := fs.String("body-file", "", "file whose bytes are the request value and so the response body (default: a 204-byte JSON object)")
	timeout := fs.Duration("timeout", 10*time.Second, "deadline of each call")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *brokers == "" {
		return errors.New("--brokers (or KAFKA_BROKERS) is required")
	}
	if *role != "both" && *role != "bridge" && *role != "responder" {
		return fmt.Errorf("--role %q: want both, bridge or responder", *role)
	}
	if *prefix == "" {
		// A responder reads its group from the earliest offset: topics of
		// an earlier run would be answered again.
		*prefix = fmt.Sprintf("rawrest-%d-", time.Now().Unix())
	}
	body := []byte(fmt.Sprintf(`{"id":"floor","name":"%0180d"}`, 0))
	if *bodyFile != "" {
		b, err := os.ReadFile(*bodyFile)
		if err != nil {
			return err
		}
		body = b
	}
	request, reply := *prefix+"request", *prefix+"reply"
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := rawkafka.CreateTopics(setup, *brokers, request, reply); err != nil {
		return err
	}

	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	var srv *rawkafka.Server
	if *role != "bridge" {
		var err error
		if srv, err = rawkafka.NewServer(*brokers, *prefix+"responder", request, reply); err != nil {
			return err
		}
		wg.Go(func() { srv.Run(runCtx) })
		fmt.Fprintf(os.Stderr, "rawrest: responder on %s\n", request)
	}
	if *role == "responder" {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return srv.Err()
			case <-tick.C:
				if err := srv.Err(); err != nil {
					return err
				}
			}
		}
	}

	cli, err := rawkafka.NewClient(setup, *brokers, *prefix+"bridge", request, reply)
	if err != nil {
		return err
	}
	wg.Go(func() { cli.Run(runCtx) })
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	hs := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cctx, cancel := context.WithTimeout(r.Context(), *timeout)
		v, err := cli.Call(cctx, body)
		cancel()
		if err != nil {
			http.Error(w, err.Error(), http.StatusGatewayTimeout)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(v)
	})}
	fmt.Fprintf(os.Stderr, "rawrest: bridge on http://%s/\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(context.Background(), *timeout+time.Second) // calls in flight end by then
	defer scancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	if srv != nil {
		return srv.Err()
	}
	return nil
}
