package app_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/kgrpc/platform/internal/app"
	"github.com/kgrpc/platform/internal/cli"
)

// repoRoot is the module root, seen from this package's directory.
const repoRoot = "../.."

// TestCompose checks docker-compose.yml against the binaries it runs and the
// Dockerfile that builds them: every KGRPC_ variable a unit sets is one its
// binary reads, the shared settings pass the binaries' own validation
// (Flags.Common), each service has its own PostgreSQL database, health checks
// probe the address the binary serves /readyz on, dependencies exist and
// nothing blocks `--scale`. TestObservability checks the observability
// profile.
func TestCompose(t *testing.T) {
	cf := loadCompose(t)
	df := loadDockerfile(t)

	if len(cf.Services) == 0 {
		t.Fatal("docker-compose.yml: no services")
	}
	t.Run("depends_on", func(t *testing.T) {
		for name, svc := range cf.Services {
			for dep, d := range svc.DependsOn {
				target, ok := cf.Services[dep]
				if !ok {
					t.Errorf("%s depends on %q, which is not a service", name, dep)
					continue
				}
				switch d.Condition {
				case "service_healthy":
					if target.Healthcheck == nil {
						t.Errorf("%s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
					}
				case "service_started", "service_completed_successfully":
				default:
					t.Errorf("%s depends on %s with condition %q", name, dep, d.Condition)
				}
			}
		}
	})
	t.Run("bind mounts exist", func(t *testing.T) {
		for name, svc := range cf.Services {
			for _, v := range svc.Volumes {
				src := v.Source
				if !strings.HasPrefix(src, ".") {
					continue // a named volume
				}
				if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			}
		}
	})

	var units []string // the services built from this repository
	for name, svc := range cf.Services {
		if svc.Build != nil && name != "keys" { // keys is a one-shot job, checked below
			units = append(units, name)
		}
	}
	slices.Sort(units)
	if len(units) == 0 {
		t.Fatal("docker-compose.yml: no service is built from the Dockerfile")
	}
	databases := map[string]string{}
	// The keys the units would find in the keys volume, made as the keys
	// service makes them.
	keyDir := t.TempDir()
	if _, err := app.EnsureKeys(keyDir, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	t.Run("keys", func(t *testing.T) {
		keys, ok := cf.Services["keys"]
		switch {
		case !ok:
			t.Fatal("no keys service: nothing makes the units' keys")
		case len(keys.Command) < 4 || keys.Command[0] != "kgrpc-keys" || keys.Command[1] != "init":
			t.Errorf("keys runs %v, want kgrpc-keys init --dir <volume>", keys.Command)
		case !df.builds["kgrpc-keys"]:
			t.Error("the Dockerfile does not build ./cmd/kgrpc-keys")
		}
	})
	for _, name := range units {
		svc := cf.Services[name]
		t.Run(name, func(t *testing.T) {
			if len(svc.Command) == 0 {
				t.Fatal("no command: the image's default command is not a per-service unit")
			}
			bin := svc.Command[0]
			u, err := readBinary(bin)
			if err != nil {
				t.Fatalf("command %q: %v", bin, err)
			}
			if !df.builds[bin] {
				t.Errorf("the Dockerfile does not build ./cmd/%s (it builds %v)", bin, sortedKeys(df.builds))
			}
			var probe app.Settings
			reads := map[string]cli.Flag{}
			for _, f := range u.FlagTable(&probe) {
				reads[f.Env()] = f
			}
			env := svc.env(t)
			for k := range env {
				if _, ok := reads[k]; !ok && !otelEnv[k] {
					t.Errorf("sets %s, which %s does not read (it reads %v and the OTEL_ variables %v)", k, bin, sortedKeys(reads), sortedKeys(otelEnv))
				}
			}
			if _, ok := env["KGRPC_INSTANCE_ID"]; ok {
				t.Error("sets KGRPC_INSTANCE_ID: every replica would share it, and with it the prefix of its correlation ids")
			}
			if svc.ContainerName != "" {
				t.Errorf("container_name %q stops `docker compose up --scale %s=N`", svc.ContainerName, name)
			}
			if len(svc.Ports) > 0 && bin != "gateway" {
				t.Errorf("publishes host ports %v: replicas would collide on them", svc.Ports)
			}
			// The binary's own parsing and checks, with exactly the unit's
			// environment: every value parses, required settings (brokers,
			// keys) are there, log level and format and the librdkafka
			// properties are valid. The key files are the unit's own, and
			// the keyring, mounted from the keys volume.
			settings, err := u.Parse(nil, cli.MapLookup(env))
			if err != nil {
				t.Fatalf("the binary would refuse its environment: %v", err)
			}
			checkKeyMount(t, svc, "unit key", settings.UnitKey, bin+".key")
			checkKeyMount(t, svc, "keyring", settings.Keyring, app.KeyringFile)
			settings.UnitKey, settings.Keyring = filepath.Join(keyDir, bin+".key"), filepath.Join(keyDir, app.KeyringFile)
			if _, err := settings.Common(bin); err != nil {
				t.Errorf("the binary would refuse to start: %v", err)
			}
			if db, ok := reads["KGRPC_DB"]; ok {
				dsn, ok := env["KGRPC_DB"]
				if !ok {
					t.Errorf("KGRPC_DB is not set: %s would keep its data in %s inside the container", bin, db.Default)
				} else {
					databases[name] = checkPostgres(t, cf, name, dsn)
				}
			}
			checkHealth(t, svc, settings.HTTPAddr, df)
		})
	}
	t.Run("shared settings", func(t *testing.T) {
		seen := map[string]string{}
		for name, db := range databases {
			if other, ok := seen[db]; ok && db != "" {
				t.Errorf("%s and %s share database %s; each service owns its data", name, other, db)
			}
			seen[db] = name
		}
	})
	t.Run("docker compose config", func(t *testing.T) {
		if _, err := exec.LookPath("docker"); err != nil {
			t.Log("docker not installed: `docker compose config -q` not run")
			return
		}
		if err := exec.Command("docker", "compose", "version").Run(); err != nil {
			t.Log("the docker compose plugin is not available: `docker compose config -q` not run")
			return
		}
		cmd := exec.Command("docker", "compose", "-f", "docker-compose.yml", "--profile", observabilityProfile, "config", "-q")
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("docker compose config -q: %v\n%s", err, out)
		}
	})
}

// checkPostgres checks a unit's KGRPC_DB: a PostgreSQL DSN naming a compose
// service the unit depends on, with that service's credentials and a
// database its init script creates. It returns host/database.
func checkPostgres(t *testing.T, cf *composeFile, unit, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Errorf("KGRPC_DB %q is not a postgres:// DSN: a SQLite file inside a container is lost with it", dsn)
		return ""
	}
	host, db := u.Hostname(), strings.TrimPrefix(u.Path, "/")
	pg, ok := cf.Services[host]
	if !ok {
		t.Errorf("KGRPC_DB names host %q, which is not a service", host)
		return ""
	}
	if _, ok := cf.Services[unit].DependsOn[host]; !ok {
		t.Errorf("KGRPC_DB names %s, but %s does not depend on it", host, unit)
	}
	pgEnv := pg.env(t)
	pass, _ := u.User.Password()
	if u.User.Username() != pgEnv["POSTGRES_USER"] || pass != pgEnv["POSTGRES_PASSWORD"] {
		t.Errorf("KGRPC_DB credentials %q differ from %s's POSTGRES_USER and POSTGRES_PASSWORD", u.User.String(), host)
	}
	created := map[string]bool{pgEnv["POSTGRES_DB"]: true}
	createDB := regexp.MustCompile(`(?i)\bCREATE\s+DATABASE\s+"?(\w+)"?`)
	for _, v := range pg.Volumes {
		src, dst := v.Source, v.Target
		if !strings.HasPrefix(dst, "/docker-entrypoint-initdb.d") || !strings.HasPrefix(src, ".") {
			continue
		}
		sql, err := os.ReadFile(filepath.Join(repoRoot, src))
		if err != nil {
			t.Errorf("init script of %s: %v", host, err)
			continue
		}
		for _, m := range createDB.FindAllStringSubmatch(string(sql), -1) {
			created[m[1]] = true
		}
	}
	if db == "" || !created[db] {
		t.Errorf("KGRPC_DB names database %q, which %s does not create (it creates %v)", db, host, sortedKeys(created))
	}
	return host + "/" + db
}

// checkHealth checks that the unit's health check probes /readyz on the
// port the binary serves it on (addr), with a tool the image has.
func checkHealth(t *testing.T, svc composeService, addr string, df *dockerfile) {
	t.Helper()
	if svc.Healthcheck == nil || len(svc.Healthcheck.Test) < 2 {
		t.Error("no healthcheck")
		return
	}
	_, wantPort, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("http address %q: %v", addr, err)
		return
	}
	test := strings.Join(svc.Healthcheck.Test, " ")
	m := regexp.MustCompile(`http://[^/\s:]+:(\d+)(/\S*)`).FindStringSubmatch(test)
	if m == nil {
		t.Errorf("healthcheck %q requests no http://host:port/ URL", test)
		return
	}
	if m[1] != wantPort || m[2] != "/readyz" {
		t.Errorf("healthcheck requests port %s path %s; the binary serves /readyz on %s", m[1], m[2], addr)
	}
	if tool := svc.Healthcheck.Test[1]; svc.Healthcheck.Test[0] == "CMD" && !df.installs[tool] {
		t.Errorf("healthcheck runs %s, which the runtime image does not install (it installs %v)", tool, sortedKeys(df.installs))
	}
}

// composeFile is the part of docker-compose.yml the test reads.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Build         any                          `yaml:"build"`
	Image         string                       `yaml:"image"`
	Profiles      []string                     `yaml:"profiles"`
	Command       []string                     `yaml:"command"`
	Environment   map[string]any               `yaml:"environment"`
	DependsOn     map[string]composeDependency `yaml:"depends_on"`
	Healthcheck   *composeHealthcheck          `yaml:"healthcheck"`
	Ports         []string                     `yaml:"ports"`
	Volumes       []composeVolume              `yaml:"volumes"`
	ContainerName string                       `yaml:"container_name"`
}

// composeVolume is a mount, in the short ("src:dst[:ro]") or the long
// syntax.
type composeVolume struct {
	Type     string `yaml:"type"`
	Source   string `yaml:"source"`
	Target   string `yaml:"target"`
	ReadOnly bool   `yaml:"read_only"`
	Volume   struct {
		Subpath string `yaml:"subpath"`
	} `yaml:"volume"`
}

// UnmarshalYAML reads either syntax.
func (v *composeVolume) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		parts := strings.Split(n.Value, ":")
		v.Source, v.Target = parts[0], parts[len(parts)-1]
		if len(parts) == 3 {
			v.Target, v.ReadOnly = parts[1], parts[2] == "ro"
		}
		return nil
	}
	type plain composeVolume
	return n.Decode((*plain)(v))
}

// checkKeyMount checks that path, a key file a unit reads, is mounted
// read-only from file in the keys service's volume.
func checkKeyMount(t *testing.T, svc composeService, what, path, file string) {
	t.Helper()
	if path == "" {
		t.Errorf("no %s configured", what)
		return
	}
	for _, v := range svc.Volumes {
		if v.Target == path {
			if v.Type != "volume" || v.Source != "unit-keys" || v.Volume.Subpath != file || !v.ReadOnly {
				t.Errorf("%s %s is mounted as %+v, want file %s of volume unit-keys, read-only", what, path, v, file)
			}
			return
		}
	}
	t.Errorf("%s %s is not mounted", what, path)
}

type composeDependency struct {
	Condition string `yaml:"condition"`
}

type composeHealthcheck struct {
	Test []string `yaml:"test"`
}

func loadCompose(t *testing.T) *composeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(b, &cf); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return &cf
}

// env returns the service's environment as docker compose would pass it
// with no variables set in the calling shell: ${NAME:-default} becomes
// default.
func (s composeService) env(t *testing.T) map[string]string {
	t.Helper()
	env := map[string]string{}
	for k, v := range s.Environment {
		if v == nil {
			t.Errorf("environment %s has no value: it would come from the calling shell", k)
			continue
		}
		env[k] = interpolate(fmt.Sprint(v))
	}
	return env
}

var interpolation = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}`)

// interpolate resolves $$, ${NAME}, ${NAME-default}, ${NAME:-default},
// ${NAME?error} and ${NAME:?error} as if no NAME were set.
func interpolate(s string) string {
	return interpolation.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := interpolation.FindStringSubmatch(m)
		if strings.HasSuffix(sub[2], "-") {
			return sub[3]
		}
		return ""
	})
}

// dockerfile is what the test reads from the Dockerfile.
type dockerfile struct {
	builds   map[string]bool // cmd/ directories built into the output
	installs map[string]bool // packages the runtime stage installs with apt-get
}

// loadDockerfile reads the Dockerfile: the ./cmd/NAME packages its `go
// build -o /out/` builds, that the last stage copies /out/ into
// /usr/local/bin and has no ENTRYPOINT (so a compose command names the
// binary), and what it installs with apt-get.
func loadDockerfile(t *testing.T) *dockerfile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var insts []string // instructions, continuation lines joined
	var cur strings.Builder
	for line := range strings.SplitSeq(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue // comments may also sit inside a continued instruction
		}
		if body, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		insts = append(insts, cur.String())
		cur.Reset()
	}
	df := &dockerfile{builds: map[string]bool{}, installs: map[string]bool{}}
	var last []string // the instructions of the last stage
	cmdPkg := regexp.MustCompile(`\./cmd/([A-Za-z0-9_-]+)`)
	for _, in := range insts {
		op, _, _ := strings.Cut(in, " ")
		switch strings.ToUpper(op) {
		case "FROM":
			last = nil
		case "RUN":
			if strings.Contains(in, "go build") && strings.Contains(in, "-o /out/") {
				for _, m := range cmdPkg.FindAllStringSubmatch(in, -1) {
					df.builds[m[1]] = true
				}
			}
		}
		last = append(last, in)
	}
	copied := false
	for _, in := range last {
		f := strings.Fields(in)
		switch strings.ToUpper(f[0]) {
		case "ENTRYPOINT":
			t.Errorf("Dockerfile: the runtime stage has %q: compose commands would become its arguments", in)
		case "COPY":
			if slices.Contains(f, "/out/") && f[len(f)-1] == "/usr/local/bin/" {
				copied = true
			}
		case "RUN":
			for seg := range strings.SplitSeq(in, "&&") {
				if args, ok := strings.CutPrefix(strings.TrimSpace(strings.TrimPrefix(seg, "RUN ")), "apt-get install"); ok {
					for _, a := range strings.Fields(args) {
						if !strings.HasPrefix(a, "-") {
							df.installs[a] = true
						}
					}
				}
			}
		}
	}
	if !copied {
		t.Error("Dockerfile: the runtime stage does not COPY the build's /out/ into /usr/local/bin/")
	}
	if len(df.builds) == 0 {
		t.Fatal("Dockerfile: no `go build ... -o /out/ ./cmd/...`")
	}
	for name := range df.builds {
		if err := isCommand(name); err != nil {
			t.Errorf("Dockerfile builds ./cmd/%s: %v", name, err)
		}
	}
	return df
}

// readBinary returns the Unit that cmd/NAME runs: its main must be
// app.Main of an exported Unit whose Name is NAME.
func readBinary(name string) (app.Unit, error) {
	if name == "" || strings.ContainsAny(name, `/\`) {
		return app.Unit{}, fmt.Errorf("not a command name")
	}
	u, ok := app.Deployables[name]
	if !ok {
		return app.Unit{}, fmt.Errorf("not a deployable unit (those are %v)", sortedKeys(app.Deployables))
	}
	dir := filepath.Join(repoRoot, "cmd", name)
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return app.Unit{}, err
	}
	fset := token.NewFileSet()
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return app.Unit{}, err
		}
		var runs string
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 1 {
				return true
			}
			if fn, ok := call.Fun.(*ast.SelectorExpr); ok && fn.Sel.Name == "Main" {
				if arg, ok := call.Args[0].(*ast.SelectorExpr); ok {
					runs = arg.Sel.Name
				}
			}
			return true
		})
		if runs != "" {
			if got := exportedUnits[runs]; got.Name != name {
				return app.Unit{}, fmt.Errorf("%s runs app.Main(app.%s), the unit %q", p, runs, got.Name)
			}
			return u, nil
		}
	}
	return app.Unit{}, fmt.Errorf("no app.Main call in %s", dir)
}

// isCommand reports whether cmd/NAME holds a main package.
func isCommand(name string) error {
	if name == "" || strings.ContainsAny(name, `/\`) {
		return fmt.Errorf("not a command name")
	}
	paths, err := filepath.Glob(filepath.Join(repoRoot, "cmd", name, "*.go"))
	if err != nil || len(paths) == 0 {
		return fmt.Errorf("no Go files in cmd/%s", name)
	}
	fset := token.NewFileSet()
	for _, p := range paths {
		f, err := parser.ParseFile(fset, p, nil, parser.PackageClauseOnly)
		if err != nil {
			return err
		}
		if f.Name.Name != "main" && !strings.HasSuffix(f.Name.Name, "_test") {
			return fmt.Errorf("%s is package %s, not a command", p, f.Name.Name)
		}
	}
	return nil
}

// exportedUnits are internal/app's Unit variables by name.
var exportedUnits = map[string]app.Unit{"Gateway": app.Gateway, "Users": app.Users, "Products": app.Products, "Orders": app.Orders}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
