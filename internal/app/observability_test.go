package app_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/codes"

	"github.com/kgrpc/platform/internal/cli"
)

// otelEnv are the OpenTelemetry variables the units read besides their
// KGRPC_ ones (README.md, "Observability"); TestCompose accepts them.
var otelEnv = map[string]bool{
	"OTEL_EXPORTER_OTLP_ENDPOINT":        true,
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": true,
	"OTEL_EXPORTER_OTLP_PROTOCOL":        true,
	"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": true,
	"OTEL_TRACES_SAMPLER":                true,
	"OTEL_TRACES_SAMPLER_ARG":            true,
	"OTEL_SERVICE_NAME":                  true,
	"OTEL_RESOURCE_ATTRIBUTES":           true,
}

// observabilityProfile is the compose profile of Jaeger, Prometheus and
// Grafana.
const observabilityProfile = "observability"

// TestObservability checks docker-compose.yml's observability profile and
// the files of deploy/ it mounts: the units send their spans to the
// profile's Jaeger, Prometheus scrapes every unit on the port the binary
// serves HTTP on, Grafana's provisioned data sources point at those
// services, and every query of the provisioned dashboards names metrics
// and labels the units export (metricContract).
func TestObservability(t *testing.T) {
	cf := loadCompose(t)
	var units []string
	for name, svc := range cf.Services {
		if svc.Build != nil && name != "keys" {
			units = append(units, name)
		}
	}
	slices.Sort(units)
	jaeger := imageService(t, cf, "jaegertracing/jaeger:")
	prom := imageService(t, cf, "prom/prometheus:")
	grafana := imageService(t, cf, "grafana/grafana:")

	t.Run("profile", func(t *testing.T) {
		for _, name := range []string{jaeger, prom, grafana} {
			svc := cf.Services[name]
			if !slices.Contains(svc.Profiles, observabilityProfile) {
				t.Errorf("%s is not in profile %q (profiles %v)", name, observabilityProfile, svc.Profiles)
			}
			for _, p := range svc.Ports {
				if !strings.HasPrefix(p, "127.0.0.1:") {
					t.Errorf("%s publishes %q on every interface; it has no authentication, publish it on 127.0.0.1", name, p)
				}
			}
		}
		for name, svc := range cf.Services {
			for dep := range svc.DependsOn {
				for _, p := range cf.Services[dep].Profiles {
					if !slices.Contains(svc.Profiles, p) {
						t.Errorf("%s depends on %s, which only runs with profile %q: a plain `docker compose up` would fail", name, dep, p)
					}
				}
			}
		}
		for _, name := range units {
			if len(cf.Services[name].Profiles) > 0 {
				t.Errorf("unit %s is in profiles %v: `docker compose up` would not start it", name, cf.Services[name].Profiles)
			}
		}
	})
	t.Run("tracing", func(t *testing.T) {
		for _, name := range units {
			for _, p := range otlpProblems(name, cf.Services[name].env(t), jaeger) {
				t.Errorf("%s: %s", name, p)
			}
		}
	})

	ports := map[string]string{} // unit → port it serves /metrics on
	for _, name := range units {
		ports[name] = unitHTTPPort(t, cf, name)
	}
	var scrapeInterval string
	t.Run("prometheus", func(t *testing.T) {
		svc := cf.Services[prom]
		file := "/etc/prometheus/prometheus.yml"
		for _, a := range svc.Command {
			if v, ok := strings.CutPrefix(a, "--config.file="); ok {
				file = v
			}
		}
		var cfg promConfig
		readConfig(t, svc, file, yaml.Unmarshal, &cfg)
		scrapeInterval = cfg.Global.ScrapeInterval
		for _, p := range scrapeProblems(cfg, ports, sortedKeys(cf.Services)) {
			t.Error(p)
		}
	})
	t.Run("grafana", func(t *testing.T) {
		svc := cf.Services[grafana]
		env := svc.env(t)
		if env["GF_AUTH_ANONYMOUS_ENABLED"] != "true" || env["GF_AUTH_ANONYMOUS_ORG_ROLE"] != "Viewer" {
			t.Errorf("anonymous access is %q with role %q, want true and Viewer",
				env["GF_AUTH_ANONYMOUS_ENABLED"], env["GF_AUTH_ANONYMOUS_ORG_ROLE"])
		}
		sources := grafanaSources(t, svc)
		uids := map[string]string{} // uid → type
		for _, ds := range sources {
			uids[ds.UID] = ds.Type
			u, err := url.Parse(ds.URL)
			if err != nil {
				t.Errorf("data source %s: url %q: %v", ds.Name, ds.URL, err)
				continue
			}
			switch ds.Type {
			case "prometheus":
				checkURL(t, "Prometheus data source", u, prom, "9090")
				if got, _ := ds.JSONData["timeInterval"].(string); got != scrapeInterval {
					t.Errorf("Prometheus data source timeInterval %q, want the scrape interval %q ($__rate_interval depends on it)", got, scrapeInterval)
				}
			case "jaeger":
				checkURL(t, "Jaeger data source", u, jaeger, "16686")
			}
		}
		for _, typ := range []string{"prometheus", "jaeger"} {
			if !slices.Contains(sortedValues(uids), typ) {
				t.Errorf("no %s data source", typ)
			}
		}
		dashboards := grafanaDashboards(t, svc)
		if home := env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != "" {
			if p, ok := hostPath(svc, home); !ok {
				t.Errorf("home dashboard %s is not mounted", home)
			} else if _, err := os.Stat(p); err != nil {
				t.Errorf("home dashboard: %v", err)
			}
		}
		queried := map[string]bool{}
		for file, d := range dashboards {
			for _, p := range dashboardProblems(d, uids, queried) {
				t.Errorf("%s: %s", file, p)
			}
		}
		// The panels the issue asks for: RED per method and route,
		// consumer lag, dead letters, outbox, reply wait, broker RTT.
		for _, m := range []string{
			"grpc_server_handled_total", "grpc_server_handling_seconds_bucket",
			"http_requests_total", "http_request_duration_seconds_bucket",
			"kgrpc_consumer_lag", "kgrpc_dead_letters_total",
			"kgrpc_outbox_backlog", "kgrpc_outbox_oldest_age_seconds",
			"kgrpc_client_reply_wait_seconds_bucket", "kgrpc_kafka_broker_rtt_seconds",
		} {
			if !queried[m] {
				t.Errorf("no dashboard queries %s", m)
			}
		}
	})
}

// imageService returns the one compose service running an image whose
// name starts with prefix.
func imageService(t *testing.T, cf *composeFile, prefix string) string {
	t.Helper()
	var found []string
	for name, svc := range cf.Services {
		if strings.HasPrefix(svc.Image, prefix) {
			found = append(found, name)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one service running %s*, found %v", prefix, found)
	}
	return found[0]
}

// unitHTTPPort is the port unit's binary serves HTTP (and so /metrics) on,
// with its compose environment.
func unitHTTPPort(t *testing.T, cf *composeFile, unit string) string {
	t.Helper()
	svc := cf.Services[unit]
	if len(svc.Command) == 0 {
		t.Fatalf("%s has no command", unit)
	}
	u, err := readBinary(svc.Command[0])
	if err != nil {
		t.Fatalf("%s: %v", unit, err)
	}
	settings, err := u.Parse(nil, cli.MapLookup(svc.env(t)))
	if err != nil {
		t.Fatalf("%s: %v", unit, err)
	}
	_, port, err := net.SplitHostPort(settings.HTTPAddr)
	if err != nil {
		t.Fatalf("%s: http address %q: %v", unit, settings.HTTPAddr, err)
	}
	return port
}

// otlpProblems checks a unit's OpenTelemetry environment: only variables
// the units read, an OTLP endpoint on the jaeger service with the port of
// the protocol, a known sampler.
func otlpProblems(unit string, env map[string]string, jaeger string) []string {
	var problems []string
	for k := range env {
		if strings.HasPrefix(k, "OTEL_") && !otelEnv[k] {
			problems = append(problems, fmt.Sprintf("sets %s, which the units do not read (they read %v)", k, sortedKeys(otelEnv)))
		}
	}
	proto := cmp(cmp(env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"], env["OTEL_EXPORTER_OTLP_PROTOCOL"]), "http/protobuf")
	ports := map[string]string{"http/protobuf": "4318", "grpc": "4317"}
	if ports[proto] == "" {
		problems = append(problems, fmt.Sprintf("OTEL_EXPORTER_OTLP_PROTOCOL %q: the units speak http/protobuf or grpc", proto))
	}
	endpoint, wantPath := env["OTEL_EXPORTER_OTLP_ENDPOINT"], []string{"", "/"}
	if e := env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]; e != "" {
		endpoint, wantPath = e, []string{"/v1/traces"}
	}
	if proto == "grpc" {
		wantPath = []string{"", "/"}
	}
	if endpoint == "" {
		problems = append(problems, "no OTEL_EXPORTER_OTLP_ENDPOINT: the unit exports no spans")
	} else if u, err := url.Parse(endpoint); err != nil || u.Scheme != "http" {
		problems = append(problems, fmt.Sprintf("OTLP endpoint %q is not an http:// URL", endpoint))
	} else {
		if u.Hostname() != jaeger || u.Port() != ports[proto] {
			problems = append(problems, fmt.Sprintf("OTLP endpoint %q: want host %s, port %s (%s)", endpoint, jaeger, ports[proto], proto))
		}
		if !slices.Contains(wantPath, u.Path) {
			problems = append(problems, fmt.Sprintf("OTLP endpoint %q has path %q, want one of %q", endpoint, u.Path, wantPath))
		}
	}
	if name := env["OTEL_SERVICE_NAME"]; name != "" && name != unit {
		problems = append(problems, fmt.Sprintf("OTEL_SERVICE_NAME %q: the unit's spans would not say they come from %s", name, unit))
	}
	samplers := []string{"always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"}
	if s := env["OTEL_TRACES_SAMPLER"]; s != "" && !slices.Contains(samplers, s) {
		problems = append(problems, fmt.Sprintf("OTEL_TRACES_SAMPLER %q is none of %v", s, samplers))
	}
	if a := env["OTEL_TRACES_SAMPLER_ARG"]; a != "" {
		if f, err := strconv.ParseFloat(a, 64); err != nil || f < 0 || f > 1 {
			problems = append(problems, fmt.Sprintf("OTEL_TRACES_SAMPLER_ARG %q is not a ratio in [0, 1]", a))
		}
	}
	return problems
}

func cmp(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// promConfig is the part of a Prometheus configuration the test reads.
type promConfig struct {
	Global struct {
		ScrapeInterval string `yaml:"scrape_interval"`
	} `yaml:"global"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		Scheme        string `yaml:"scheme"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
		DNSSDConfigs []struct {
			Names []string `yaml:"names"`
			Type  string   `yaml:"type"`
			Port  int      `yaml:"port"`
		} `yaml:"dns_sd_configs"`
	} `yaml:"scrape_configs"`
}

// scrapeProblems checks that cfg scrapes every unit's /metrics every 5s
// on the unit's port (ports: unit → port), in exactly one job named after
// the unit, and targets only compose services.
func scrapeProblems(cfg promConfig, ports map[string]string, services []string) []string {
	var problems []string
	if cfg.Global.ScrapeInterval != "5s" {
		problems = append(problems, fmt.Sprintf("global scrape_interval %q, want 5s", cfg.Global.ScrapeInterval))
	}
	jobs := map[string][]string{} // unit → jobs scraping it on its port
	for _, sc := range cfg.ScrapeConfigs {
		if p := sc.MetricsPath; p != "" && p != "/metrics" {
			problems = append(problems, fmt.Sprintf("job %s scrapes %s; the units serve /metrics", sc.JobName, p))
		}
		if s := sc.Scheme; s != "" && s != "http" {
			problems = append(problems, fmt.Sprintf("job %s uses scheme %s; the units serve plain HTTP", sc.JobName, s))
		}
		var targets []string
		for _, s := range sc.StaticConfigs {
			targets = append(targets, s.Targets...)
		}
		for _, d := range sc.DNSSDConfigs {
			if d.Type != "A" && d.Type != "AAAA" {
				problems = append(problems, fmt.Sprintf("job %s: dns_sd_configs type %q; Docker's DNS answers A queries (the default is SRV)", sc.JobName, d.Type))
			}
			for _, n := range d.Names {
				targets = append(targets, net.JoinHostPort(n, strconv.Itoa(d.Port)))
			}
		}
		for _, target := range targets {
			host, port, err := net.SplitHostPort(target)
			switch {
			case err != nil:
				problems = append(problems, fmt.Sprintf("job %s: target %q: %v", sc.JobName, target, err))
			case !slices.Contains(services, host):
				problems = append(problems, fmt.Sprintf("job %s scrapes %s, which is not a compose service", sc.JobName, host))
			case ports[host] == "":
			case port != ports[host]:
				problems = append(problems, fmt.Sprintf("job %s scrapes %s on port %s; the unit serves /metrics on %s", sc.JobName, host, port, ports[host]))
			default:
				jobs[host] = append(jobs[host], sc.JobName)
				if sc.JobName != host {
					problems = append(problems, fmt.Sprintf("job %s scrapes %s: name it %[2]s, the dashboards' unit selector takes job names for unit names", sc.JobName, host))
				}
			}
		}
	}
	for _, unit := range sortedKeys(ports) {
		if n := len(jobs[unit]); n != 1 {
			problems = append(problems, fmt.Sprintf("%s is scraped on port %s by %d jobs %v, want 1", unit, ports[unit], n, jobs[unit]))
		}
	}
	return problems
}

// hostPath maps a path inside svc's container to the repository file bind
// mounted there.
func hostPath(svc composeService, inContainer string) (string, bool) {
	best, found := -1, ""
	for _, v := range svc.Volumes {
		if !strings.HasPrefix(v.Source, ".") || len(v.Target) <= best {
			continue
		}
		if rel, ok := strings.CutPrefix(inContainer, v.Target); ok && (rel == "" || strings.HasPrefix(rel, "/")) {
			best, found = len(v.Target), filepath.Join(repoRoot, v.Source, rel)
		}
	}
	return found, best >= 0
}

// mounted is hostPath, failing the test when nothing is mounted there.
func mounted(t *testing.T, svc composeService, inContainer string) string {
	t.Helper()
	p, ok := hostPath(svc, inContainer)
	if !ok {
		t.Fatalf("%s is not mounted from the repository", inContainer)
	}
	return p
}

// readConfig decodes the file svc reads at path inContainer.
func readConfig(t *testing.T, svc composeService, inContainer string, unmarshal func([]byte, any) error, v any) {
	t.Helper()
	p := mounted(t, svc, inContainer)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
}

// configFiles lists the files with one of exts in the repository directory
// mounted at dir in svc's container.
func configFiles(t *testing.T, svc composeService, dir string, exts ...string) []string {
	t.Helper()
	p := mounted(t, svc, dir)
	entries, err := os.ReadDir(p)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && slices.Contains(exts, filepath.Ext(e.Name())) {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	if len(files) == 0 {
		t.Fatalf("no %v files in %s", exts, p)
	}
	return files
}

type grafanaSource struct {
	Name     string         `yaml:"name"`
	UID      string         `yaml:"uid"`
	Type     string         `yaml:"type"`
	URL      string         `yaml:"url"`
	JSONData map[string]any `yaml:"jsonData"`
}

// grafanaSources reads the provisioned data sources.
func grafanaSources(t *testing.T, svc composeService) []grafanaSource {
	t.Helper()
	var all []grafanaSource
	for _, f := range configFiles(t, svc, "/etc/grafana/provisioning/datasources", ".yml", ".yaml") {
		var doc struct {
			Datasources []grafanaSource `yaml:"datasources"`
		}
		readConfig(t, svc, f, yaml.Unmarshal, &doc)
		all = append(all, doc.Datasources...)
	}
	return all
}

// grafanaDashboards reads the dashboards the file providers load, by file.
func grafanaDashboards(t *testing.T, svc composeService) map[string]grafanaDashboard {
	t.Helper()
	dashboards := map[string]grafanaDashboard{}
	for _, f := range configFiles(t, svc, "/etc/grafana/provisioning/dashboards", ".yml", ".yaml") {
		var doc struct {
			Providers []struct {
				Type    string `yaml:"type"`
				Options struct {
					Path string `yaml:"path"`
				} `yaml:"options"`
			} `yaml:"providers"`
		}
		readConfig(t, svc, f, yaml.Unmarshal, &doc)
		for _, p := range doc.Providers {
			if p.Type != "file" {
				continue
			}
			for _, df := range configFiles(t, svc, p.Options.Path, ".json") {
				var d grafanaDashboard
				readConfig(t, svc, df, json.Unmarshal, &d)
				dashboards[df] = d
			}
		}
	}
	if len(dashboards) == 0 {
		t.Fatal("no dashboard is provisioned")
	}
	return dashboards
}

func checkURL(t *testing.T, what string, u *url.URL, host, port string) {
	t.Helper()
	if u.Hostname() != host || u.Port() != port {
		t.Errorf("%s %s: want host %s port %s", what, u, host, port)
	}
}

func sortedValues(m map[string]string) []string {
	var vs []string
	for _, v := range m {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	return vs
}

// grafanaDashboard is the part of a dashboard's JSON the test reads.
type grafanaDashboard struct {
	UID        string         `json:"uid"`
	Title      string         `json:"title"`
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string      `json:"name"`
			Type       string      `json:"type"`
			Datasource *grafanaRef `json:"datasource"`
			Definition string      `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type grafanaPanel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *grafanaRef    `json:"datasource"`
	Panels     []grafanaPanel `json:"panels"` // of a collapsed row
	Targets    []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *grafanaRef `json:"datasource"`
	} `json:"targets"`
}

type grafanaRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// dashboardProblems checks a dashboard: a uid and title, unique panel ids,
// every query on a provisioned data source (uids: uid → type), every
// PromQL query naming metrics and labels of metricContract. It adds the
// metric names queried to queried.
func dashboardProblems(d grafanaDashboard, uids map[string]string, queried map[string]bool) []string {
	var problems []string
	if d.UID == "" || d.Title == "" {
		problems = append(problems, "no uid or title")
	}
	checkDS := func(where string, ref *grafanaRef) {
		if ref == nil {
			problems = append(problems, where+": no data source")
		} else if uids[ref.UID] != ref.Type {
			problems = append(problems, fmt.Sprintf("%s: data source %s/%s is not provisioned (%v)", where, ref.Type, ref.UID, uids))
		}
	}
	check := func(where, expr string) {
		metrics, _, _, _ := parsePromQL(expr)
		for _, m := range metrics {
			queried[m] = true
		}
		for _, p := range promqlProblems(expr) {
			problems = append(problems, fmt.Sprintf("%s: %s", where, p))
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		where := "variable " + v.Name
		checkDS(where, v.Datasource)
		m := regexp.MustCompile(`^label_values\((\w+),\s*(\w+)\)$`).FindStringSubmatch(v.Definition)
		if m == nil {
			problems = append(problems, fmt.Sprintf("%s: query %q is not label_values(metric, label)", where, v.Definition))
			continue
		}
		check(where, fmt.Sprintf("count by (%s) (%s)", m[2], m[1]))
	}
	ids := map[int]string{}
	var walk func([]grafanaPanel)
	walk = func(panels []grafanaPanel) {
		for _, p := range panels {
			where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if other, ok := ids[p.ID]; ok {
				problems = append(problems, fmt.Sprintf("%s has the id of panel %q", where, other))
			}
			ids[p.ID] = p.Title
			walk(p.Panels)
			if p.Type == "row" || p.Type == "text" {
				continue
			}
			if len(p.Targets) == 0 {
				problems = append(problems, where+": no query")
			}
			checkDS(where, p.Datasource)
			for _, q := range p.Targets {
				ref := q.Datasource
				if ref == nil {
					ref = p.Datasource
				}
				checkDS(where, ref)
				if ref != nil && ref.Type == "prometheus" {
					check(where+" query "+q.RefID, q.Expr)
				}
			}
		}
	}
	walk(d.Panels)
	return problems
}

// metricSpec is a metric the units export: its kind and its labels, with
// the values of enumerated ones.
type metricSpec struct {
	histogram bool
	labels    []string
}

var grpcLabels = []string{"grpc_type", "grpc_service", "grpc_method"}

// metricContract is every metric the units export besides go_* and
// process_* (all of them with the label unit), as README.md lists them.
var metricContract = map[string]metricSpec{
	"grpc_server_started_total":                   {labels: grpcLabels},
	"grpc_server_handled_total":                   {labels: append(slices.Clone(grpcLabels), "grpc_code")},
	"grpc_server_handling_seconds":                {histogram: true, labels: grpcLabels},
	"grpc_client_started_total":                   {labels: grpcLabels},
	"grpc_client_handled_total":                   {labels: append(slices.Clone(grpcLabels), "grpc_code")},
	"grpc_client_handling_seconds":                {histogram: true, labels: grpcLabels},
	"http_requests_total":                         {labels: []string{"route", "method", "code"}},
	"http_request_duration_seconds":               {histogram: true, labels: []string{"route", "method"}},
	"kgrpc_server_requests_in_flight":             {labels: []string{"service"}},
	"kgrpc_server_requests_expired_total":         {labels: []string{"service"}},
	"kgrpc_client_calls_in_flight":                {labels: []string{"service"}},
	"kgrpc_client_reply_wait_seconds":             {histogram: true, labels: []string{"service"}},
	"kgrpc_consumer_lag":                          {labels: []string{"group", "topic", "partition"}},
	"kgrpc_dead_letters_total":                    {labels: []string{"topic"}},
	"kgrpc_outbox_backlog":                        {},
	"kgrpc_outbox_oldest_age_seconds":             {},
	"kgrpc_kafka_queue_messages":                  {labels: []string{"client"}},
	"kgrpc_kafka_broker_rtt_seconds":              {labels: []string{"client", "broker", "stat"}},
	"kgrpc_kafka_broker_internal_latency_seconds": {labels: []string{"client", "broker", "stat"}},
}

// labelValues are the values of enumerated labels.
var labelValues = map[string][]string{
	"stat":      {"avg", "p99"},
	"unit":      {"gateway", "usersvc", "productsvc", "ordersvc"},
	"grpc_type": {"unary", "client_stream", "server_stream", "bidi_stream"},
	"grpc_code": grpcCodes(),
}

func grpcCodes() []string {
	var names []string
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		names = append(names, c.String())
	}
	return names
}

// promqlProblems checks that a PromQL query names only series the units
// export (histograms by their _bucket, _sum or _count series, Prometheus's
// own up) and only labels those series have, with valid values for
// enumerated labels.
func promqlProblems(expr string) []string {
	metrics, labels, matchers, err := parsePromQL(expr)
	if err != nil {
		return []string{err.Error()}
	}
	if len(metrics) == 0 {
		return []string{fmt.Sprintf("%q queries no metric", expr)}
	}
	var problems []string
	have := map[string]bool{"job": true, "instance": true, "unit": true, "__name__": true}
	anyLabel := false // a metric whose labels the contract does not list
	for _, m := range metrics {
		base, suffix := m, ""
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(m, s); ok && metricContract[b].histogram {
				base, suffix = b, s
			}
		}
		spec, ok := metricContract[base]
		switch {
		case m == "up":
		case strings.HasPrefix(m, "go_") || strings.HasPrefix(m, "process_"):
			anyLabel = true
		case !ok:
			problems = append(problems, fmt.Sprintf("%s is not a metric the units export", m))
			anyLabel = true // its labels are unknown, not wrong
		case spec.histogram && suffix == "":
			problems = append(problems, fmt.Sprintf("%s is a histogram: query %[1]s_bucket, %[1]s_sum or %[1]s_count", m))
		default:
			for _, l := range spec.labels {
				have[l] = true
			}
			have["le"] = have["le"] || suffix == "_bucket"
		}
	}
	for _, l := range labels {
		if !have[l] && !anyLabel {
			problems = append(problems, fmt.Sprintf("label %s is on none of %v", l, metrics))
		}
	}
	for _, m := range matchers {
		allowed, ok := labelValues[m.label]
		if ok && (m.op == "=" || m.op == "!=") && !strings.Contains(m.value, "$") && !slices.Contains(allowed, m.value) {
			problems = append(problems, fmt.Sprintf("%s%s%q: %s is one of %v", m.label, m.op, m.value, m.label, allowed))
		}
	}
	return problems
}

type promqlMatcher struct{ label, op, value string }

// promqlWords are PromQL's keywords and aggregation operators: names that
// are not metrics although no parenthesis follows them.
var promqlWords = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true, "and": true, "or": true, "unless": true, "atan2": true,
	"bool": true, "offset": true, "inf": true, "nan": true,
}

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// promqlGrouping are the modifiers followed by a list of labels.
var promqlGrouping = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// parsePromQL returns the metric names, the label names (in matchers and
// grouping modifiers) and the label matchers of a PromQL query in which
// Grafana variables may stand for durations or label values. It reads
// names, not the grammar: promtool checks the syntax.
func parsePromQL(expr string) (metrics, labels []string, matchers []promqlMatcher, err error) {
	isStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isPart := func(c byte) bool { return isStart(c) || c >= '0' && c <= '9' }
	ident := func(i int) int {
		for i < len(expr) && isPart(expr[i]) {
			i++
		}
		return i
	}
	space := func(i int) int {
		for i < len(expr) && strings.IndexByte(" \t\n\r", expr[i]) >= 0 {
			i++
		}
		return i
	}
	str := func(i int) (string, int, error) {
		q := expr[i]
		for j := i + 1; j < len(expr); j++ {
			switch expr[j] {
			case '\\':
				j++
			case q:
				s, err := strconv.Unquote(`"` + strings.ReplaceAll(expr[i+1:j], `"`, `\"`) + `"`)
				return s, j + 1, err
			}
		}
		return "", len(expr), fmt.Errorf("%q: unterminated string", expr)
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			if _, i, err = str(i); err != nil {
				return nil, nil, nil, err
			}
		case c == '[': // a range or subquery: durations and Grafana variables
			j := strings.IndexByte(expr[i:], ']')
			if j < 0 {
				return nil, nil, nil, fmt.Errorf("%q: unclosed [", expr)
			}
			i += j + 1
		case c == '{':
			for i = space(i + 1); i < len(expr) && expr[i] != '}'; i = space(i) {
				if expr[i] == ',' {
					i++
					continue
				}
				j := ident(i)
				if j == i {
					return nil, nil, nil, fmt.Errorf("%q: no label name at %d", expr, i)
				}
				m := promqlMatcher{label: expr[i:j]}
				i = space(j)
				for _, op := range []string{"=~", "!~", "!=", "="} {
					if strings.HasPrefix(expr[i:], op) {
						m.op, i = op, i+len(op)
						break
					}
				}
				if i = space(i); m.op == "" || i >= len(expr) || strings.IndexByte("\"'`", expr[i]) < 0 {
					return nil, nil, nil, fmt.Errorf("%q: label %s has no matcher", expr, m.label)
				}
				if m.value, i, err = str(i); err != nil {
					return nil, nil, nil, err
				}
				matchers, labels = append(matchers, m), append(labels, m.label)
			}
			if i >= len(expr) {
				return nil, nil, nil, fmt.Errorf("%q: unclosed {", expr)
			}
			i++
		case c == '$': // a Grafana variable
			i = ident(i + 1)
		case c >= '0' && c <= '9' || c == '.': // a number or a duration
			for i++; i < len(expr) && (isPart(expr[i]) || expr[i] == '.'); i++ {
			}
		case isStart(c):
			j := ident(i)
			name, next := expr[i:j], space(j)
			switch {
			case promqlGrouping[name] && next < len(expr) && expr[next] == '(':
				end := strings.IndexByte(expr[next:], ')')
				if end < 0 {
					return nil, nil, nil, fmt.Errorf("%q: unclosed %s (", expr, name)
				}
				for l := range strings.SplitSeq(expr[next+1:next+end], ",") {
					if l = strings.TrimSpace(l); l == "" {
						continue
					}
					if !labelName.MatchString(l) {
						return nil, nil, nil, fmt.Errorf("%q: %s (%s) is not a list of labels", expr, name, expr[next+1:next+end])
					}
					labels = append(labels, l)
				}
				j = next + end + 1
			case promqlGrouping[name] || promqlWords[name]:
			case next < len(expr) && expr[next] == '(': // a function
			default:
				metrics = append(metrics, name)
			}
			i = j
		default:
			i++
		}
	}
	return metrics, labels, matchers, nil
}

// TestObservabilityChecks shows that the checks of TestObservability catch
// what they are for.
func TestObservabilityChecks(t *testing.T) {
	t.Run("promql", func(t *testing.T) {
		for _, tc := range []struct {
			expr, want string // want: a part of the one problem, or "" for none
		}{
			{`histogram_quantile(0.99, sum by (le, grpc_service, grpc_method) (rate(grpc_server_handling_seconds_bucket{unit=~"$unit"}[$__rate_interval])))`, ""},
			{`sum(rate(grpc_server_handled_total{grpc_code!="OK"}[1m])) by (grpc_method) / on (grpc_method) group_left sum by (grpc_method) (rate(grpc_server_handled_total[1m]))`, ""},
			{`max by (group, topic, partition) (kgrpc_consumer_lag{unit="ordersvc"})`, ""},
			{`sum by (topic) (increase(kgrpc_dead_letters_total[$__range])) offset 5m`, ""},
			{`sum by (unit, instance) (go_goroutines) and on (job) up == 1`, ""},
			{`rate(grpc_server_handling_seconds[5m])`, "is a histogram"},
			{`kgrpc_consumer_lags`, "not a metric the units export"},
			{`rate(grpc_server_handling_seconds_buckets[5m])`, "not a metric the units export"},
			{`sum by (route) (rate(grpc_server_handled_total[5m]))`, "label route is on none"},
			{`rate(http_request_duration_seconds_bucket{code="200"}[1m])`, "label code is on none"},
			{`sum by (le) (rate(http_request_duration_seconds_sum[1m]))`, "label le is on none"},
			{`kgrpc_kafka_broker_rtt_seconds{stat="p95"}`, `stat="p95"`},
			{`grpc_server_handled_total{grpc_code!="Ok"}`, `grpc_code!="Ok"`},
			{`kgrpc_outbox_backlog{unit="orders"}`, `unit="orders"`},
			{`sum(rate(x{a="b"`, "unclosed {"},
			{`sum(rate(x{a="b}[1m]))`, "unterminated string"},
			{`sum by (unit (x)`, "not a list of labels"},
			{`sum by (unit (x`, "unclosed by ("},
			{`vector(1)`, "queries no metric"},
		} {
			t.Run(tc.expr, func(t *testing.T) {
				got := promqlProblems(tc.expr)
				switch {
				case tc.want == "" && len(got) > 0:
					t.Errorf("problems %q, want none", got)
				case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
					t.Errorf("problems %q, want one with %q", got, tc.want)
				}
			})
		}
	})
	t.Run("otlp", func(t *testing.T) {
		good := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
		for _, tc := range []struct {
			name string
			set  map[string]string
			want string
		}{
			{"good", nil, ""},
			{"grpc port", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "port 4317"},
			{"grpc", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317"}, ""},
			{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://jaeger:4318/v1/traces"}, ""},
			{"traces endpoint path", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://jaeger:4318"}, `want one of ["/v1/traces"]`},
			{"other host", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318"}, "want host jaeger"},
			{"no endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, "exports no spans"},
			{"protocol", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "http/protobuf or grpc"},
			{"service name", map[string]string{"OTEL_SERVICE_NAME": "shop"}, "come from ordersvc"},
			{"sampler", map[string]string{"OTEL_TRACES_SAMPLER": "ratio"}, "none of"},
			{"sampler arg", map[string]string{"OTEL_TRACES_SAMPLER_ARG": "10%"}, "not a ratio"},
			{"unread variable", map[string]string{"OTEL_METRICS_EXPORTER": "otlp"}, "do not read"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				env := map[string]string{}
				for k, v := range good {
					env[k] = v
				}
				for k, v := range tc.set {
					env[k] = v
				}
				got := otlpProblems("ordersvc", env, "jaeger")
				if (tc.want == "") != (len(got) == 0) || tc.want != "" && !strings.Contains(strings.Join(got, "\n"), tc.want) {
					t.Errorf("problems %q, want %q", got, tc.want)
				}
			})
		}
	})
	t.Run("scrape", func(t *testing.T) {
		load := func(interval, jobs string) promConfig {
			var cfg promConfig
			doc := "global: {scrape_interval: " + cmp(interval, "5s") + "}\nscrape_configs:" + jobs
			if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
				t.Fatal(err)
			}
			return cfg
		}
		ports := map[string]string{"gateway": "8080", "usersvc": "9090"}
		services := []string{"gateway", "usersvc", "kafka"}
		for _, tc := range []struct {
			name, interval, jobs, want string
		}{
			{"good", "", `
  - {job_name: gateway, static_configs: [{targets: ["gateway:8080"]}]}
  - {job_name: usersvc, dns_sd_configs: [{names: [usersvc], type: A, port: 9090}]}`, ""},
			{"interval", "15s", `
  - {job_name: all, static_configs: [{targets: ["gateway:8080", "usersvc:9090"]}]}`, "want 5s"},
			{"missing unit", "", `
  - {job_name: gateway, static_configs: [{targets: ["gateway:8080"]}]}`, "usersvc is scraped on port 9090 by 0 jobs"},
			{"wrong port", "", `
  - {job_name: gateway, static_configs: [{targets: ["gateway:9090", "usersvc:9090"]}]}`, "the unit serves /metrics on 8080"},
			{"twice", "", `
  - {job_name: a, static_configs: [{targets: ["gateway:8080", "usersvc:9090"]}]}
  - {job_name: b, static_configs: [{targets: ["usersvc:9090"]}]}`, "by 2 jobs"},
			{"srv", "", `
  - {job_name: a, static_configs: [{targets: ["gateway:8080"]}], dns_sd_configs: [{names: [usersvc], port: 9090}]}`, "type \"\""},
			{"unknown host", "", `
  - {job_name: a, static_configs: [{targets: ["gateway:8080", "usersvc:9090", "users:9090"]}]}`, "users, which is not a compose service"},
			{"job name", "", `
  - {job_name: gateway, static_configs: [{targets: ["gateway:8080"]}]}
  - {job_name: users, static_configs: [{targets: ["usersvc:9090"]}]}`, "job users scrapes usersvc: name it usersvc"},
			{"path", "", `
  - {job_name: a, metrics_path: /stats, static_configs: [{targets: ["gateway:8080", "usersvc:9090"]}]}`, "scrapes /stats"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got := scrapeProblems(load(tc.interval, tc.jobs), ports, services)
				if (tc.want == "") != (len(got) == 0) || tc.want != "" && !strings.Contains(strings.Join(got, "\n"), tc.want) {
					t.Errorf("problems %q, want %q", got, tc.want)
				}
			})
		}
	})
	t.Run("dashboard", func(t *testing.T) {
		var d grafanaDashboard
		if err := json.Unmarshal([]byte(`{"uid": "u", "title": "t", "panels": [
			{"id": 1, "type": "row", "title": "r"},
			{"id": 2, "type": "timeseries", "title": "a", "datasource": {"type": "prometheus", "uid": "prom"},
			 "targets": [{"refId": "A", "expr": "rate(kgrpc_dead_letters_total[1m])"}]},
			{"id": 2, "type": "timeseries", "title": "b", "datasource": {"type": "prometheus", "uid": "other"},
			 "targets": [{"refId": "A", "expr": "rate(kgrpc_dead_letter_total[1m])"}]},
			{"id": 3, "type": "stat", "title": "c", "datasource": {"type": "prometheus", "uid": "prom"}}]}`), &d); err != nil {
			t.Fatal(err)
		}
		queried := map[string]bool{}
		got := strings.Join(dashboardProblems(d, map[string]string{"prom": "prometheus"}, queried), "\n")
		for _, want := range []string{
			`panel 2 "b" has the id of panel "a"`,
			`panel 2 "b": data source prometheus/other is not provisioned`,
			`panel 2 "b" query A: kgrpc_dead_letter_total is not a metric`,
			`panel 3 "c": no query`,
		} {
			if !strings.Contains(got, want) {
				t.Errorf("problems %q\nlack %q", got, want)
			}
		}
		if !queried["kgrpc_dead_letters_total"] {
			t.Errorf("queried %v lacks kgrpc_dead_letters_total", queried)
		}
	})
}
