// Command greeter serves and calls the greeter service over Kafka.
//
//	greeter dev   [--addr 127.0.0.1:9092]   an embedded broker and the server on it
//	greeter serve --brokers HOST:PORT       the server, on a Kafka cluster
//	greeter hello --brokers HOST:PORT NAME  one call: prints the greeting
//
// serve and dev run until interrupted (Ctrl-C, SIGTERM), then stop
// gracefully.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kgrpc/platform/kafkatransport"
	"github.com/kgrpc/platform/kafkatransport/embedkafka"

	"example.com/greeter"
	greeterv1 "example.com/greeter/gen/greeter/v1"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "greeter:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: greeter dev|serve|hello [flags]")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka bootstrap servers")
	addr := fs.String("addr", "127.0.0.1:9092", "dev: the embedded broker's listen address")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "dev":
		b, err := embedkafka.Start(embedkafka.Config{Addr: *addr})
		if err != nil {
			return err
		}
		defer b.Close()
		fmt.Println("embedded Kafka broker at", b.Addr())
		return serve(ctx, b.Addr())
	case "serve":
		return serve(ctx, *brokers)
	case "hello":
		if fs.NArg() != 1 {
			return errors.New("usage: greeter hello --brokers HOST:PORT NAME")
		}
		return hello(ctx, *brokers, fs.Arg(0))
	}
	return fmt.Errorf("unknown command %q: want dev, serve or hello", args[0])
}

// serve serves the greeter service on brokers until ctx ends.
func serve(ctx context.Context, brokers string) error {
	srv, err := kafkatransport.NewServer(brokers, kafkatransport.WithLogger(slog.Default()))
	if err != nil {
		return err
	}
	greeterv1.RegisterGreeterServiceKafkaServer(srv, greeter.Server{})
	go func() {
		select {
		case <-srv.Ready():
			fmt.Println("serving greeter.v1.GreeterService on", brokers)
		case <-ctx.Done():
		}
	}()
	return srv.Serve(ctx)
}

// hello calls SayHello once and prints the greeting.
func hello(ctx context.Context, brokers, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := kafkatransport.Dial(ctx, brokers)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := greeterv1.NewGreeterServiceKafkaClient(conn).SayHello(ctx, &greeterv1.SayHelloRequest{Name: name})
	if err != nil {
		return err
	}
	fmt.Println(resp.GetMessage())
	return nil
}
