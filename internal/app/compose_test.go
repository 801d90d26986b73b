package app_test

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kgrpc/platform/internal/app"
)

// repoRoot is the module root, seen from this package's directory.
const repoRoot = "../.."

// appImport is the import path whose Main gives a binary the shared flags.
const appImport = "github.com/kgrpc/platform/internal/app"

// TestCompose checks docker-compose.yml against the binaries it runs and the
// Dockerfile that builds them: every KGRPC_ variable a unit sets is one its
// binary reads, the shared settings pass the binaries' own validation
// (Flags.Common), each service has its own PostgreSQL database, health checks
// probe the address the binary serves /readyz on, dependencies exist and
// nothing blocks `--scale`.
func TestCompose(t *testing.T) {
	cf := loadCompose(t)
	df := loadDockerfile(t)
	shared := sharedVars(t)

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
				src, _, _ := strings.Cut(v, ":")
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
		if svc.Build != nil {
			units = append(units, name)
		}
	}
	slices.Sort(units)
	if len(units) == 0 {
		t.Fatal("docker-compose.yml: no service is built from the Dockerfile")
	}
	databases := map[string]string{}
	secrets := map[string]string{}
	for _, name := range units {
		svc := cf.Services[name]
		t.Run(name, func(t *testing.T) {
			if len(svc.Command) == 0 {
				t.Fatal("no command: the image's default command is not a per-service unit")
			}
			bin := svc.Command[0]
			b, err := readBinary(bin)
			if err != nil {
				t.Fatalf("command %q: %v", bin, err)
			}
			if !df.builds[bin] {
				t.Errorf("the Dockerfile does not build ./cmd/%s (it builds %v)", bin, sortedKeys(df.builds))
			}
			reads := maps.Clone(b.vars)
			if b.usesApp {
				for v, fl := range shared {
					reads[v] = envVar{def: fl.DefValue}
				}
			}
			env := svc.env(t)
			for k, v := range env {
				r, ok := reads[k]
				if !ok {
					t.Errorf("sets %s, which %s does not read (it reads %v)", k, bin, sortedKeys(reads))
				}
				if err := r.check(v); err != nil {
					t.Errorf("%s=%q: %v", k, v, err)
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

			if b.usesApp {
				checkCommon(t, shared, env)
				secrets[name] = env["KGRPC_AUTH_SECRET"]
			}
			if _, ok := reads["KGRPC_DB"]; ok {
				dsn, ok := env["KGRPC_DB"]
				if !ok {
					t.Errorf("KGRPC_DB is not set: %s would keep its data in %s inside the container", bin, reads["KGRPC_DB"].def)
				} else {
					databases[name] = checkPostgres(t, cf, name, dsn)
				}
			}

			addr, ok := env["KGRPC_HTTP_ADDR"]
			if !ok {
				addr = reads["KGRPC_HTTP_ADDR"].def
			}
			checkHealth(t, svc, addr, df)
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
		var first string
		for _, name := range sortedKeys(secrets) {
			if first == "" {
				first = name
			} else if secrets[name] != secrets[first] {
				t.Errorf("KGRPC_AUTH_SECRET of %s differs from %s's: tokens would not verify across units", name, first)
			}
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
		cmd := exec.Command("docker", "compose", "-f", "docker-compose.yml", "config", "-q")
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("docker compose config -q: %v\n%s", err, out)
		}
	})
}

// checkCommon runs the shared flags of every deployable through the
// binaries' own Register and Common with exactly the unit's environment:
// required settings (brokers, auth secret) present, the secret long enough,
// log level and format and the librdkafka properties valid.
func checkCommon(t *testing.T, shared map[string]*flag.Flag, env map[string]string) {
	t.Helper()
	for v := range shared {
		if val, ok := env[v]; ok {
			t.Setenv(v, val)
		} else {
			unsetenv(t, v)
		}
	}
	fs := flag.NewFlagSet("compose", flag.ContinueOnError)
	var f app.Flags
	f.Register(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Common(); err != nil {
		t.Errorf("the binary would refuse to start: %v", err)
	}
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
		src, dst, _ := strings.Cut(v, ":")
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
	Command       []string                     `yaml:"command"`
	Environment   map[string]any               `yaml:"environment"`
	DependsOn     map[string]composeDependency `yaml:"depends_on"`
	Healthcheck   *composeHealthcheck          `yaml:"healthcheck"`
	Ports         []string                     `yaml:"ports"`
	Volumes       []string                     `yaml:"volumes"`
	ContainerName string                       `yaml:"container_name"`
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
		if _, err := readBinary(name); err != nil {
			t.Errorf("Dockerfile builds ./cmd/%s: %v", name, err)
		}
	}
	return df
}

// sharedVars returns the KGRPC_ variables of the flags every deployable
// shares, each with the flag it sets. The candidates are the KGRPC_ names
// internal/app passes to Env; each is confirmed by setting it and seeing
// which flag Flags.Register (what app.Main calls) takes its default from,
// and every flag Register defines must have one.
func sharedVars(t *testing.T) map[string]*flag.Flag {
	t.Helper()
	candidates, err := envReads(".")
	if err != nil {
		t.Fatal(err)
	}
	if len(candidates) == 0 {
		t.Fatal("internal/app reads no KGRPC_ variable")
	}
	for v := range candidates {
		unsetenv(t, v)
	}
	vars := map[string]*flag.Flag{}
	covered := map[string]bool{}
	probe := 7331000
	for v := range candidates {
		// A number, unique per variable: string and integer flags both
		// take it (an integer variable that does not parse ends the process).
		probe++
		sentinel := strconv.Itoa(probe)
		t.Setenv(v, sentinel)
		fs := flag.NewFlagSet("probe", flag.ContinueOnError)
		new(app.Flags).Register(fs)
		fs.VisitAll(func(f *flag.Flag) {
			if f.Value.String() == sentinel { // not DefValue: secrets hide it from --help
				vars[v] = f
				covered[f.Name] = true
			}
		})
		unsetenv(t, v)
	}
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	new(app.Flags).Register(fs)
	fs.VisitAll(func(f *flag.Flag) {
		if !covered[f.Name] {
			t.Errorf("shared flag --%s takes its default from no KGRPC_ variable found in internal/app", f.Name)
		}
		for v, g := range vars {
			if g.Name == f.Name {
				vars[v] = f // the default with the variable unset
			}
		}
	})
	if len(vars) == 0 {
		t.Fatal("Flags.Register takes no default from a KGRPC_ variable")
	}
	return vars
}

// envVar is a variable a binary reads: its default when known, and the
// kind of value it must parse as ("duration", "int", "bool"; "" for any).
type envVar struct {
	def, kind string
}

// binary is what a cmd/ package reads from the environment.
type binary struct {
	vars    map[string]envVar // KGRPC_ variables it reads itself
	usesApp bool              // it runs through app.Main, so it has the shared flags
}

// readBinary reads cmd/NAME's source: the KGRPC_ variables it reads and
// whether it runs through app.Main.
func readBinary(name string) (binary, error) {
	dir := filepath.Join(repoRoot, "cmd", name)
	if name == "" || strings.ContainsAny(name, `/\`) {
		return binary{}, fmt.Errorf("not a command name")
	}
	files, err := parseDir(dir)
	if err != nil {
		return binary{}, err
	}
	var b binary
	for _, f := range files {
		if f.Name.Name != "main" {
			return binary{}, fmt.Errorf("%s is package %s, not a command", dir, f.Name.Name)
		}
	}
	for _, f := range files {
		alias := ""
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == appImport {
				alias = "app"
				if imp.Name != nil {
					alias = imp.Name.Name
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if call, ok := n.(*ast.CallExpr); ok && alias != "" {
				if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Main" {
					if id, ok := sel.X.(*ast.Ident); ok && id.Name == alias {
						b.usesApp = true
					}
				}
			}
			return true
		})
	}
	b.vars = envReadsIn(files)
	return b, nil
}

// envReads returns the KGRPC_ variables the package in dir reads.
func envReads(dir string) (map[string]envVar, error) {
	files, err := parseDir(dir)
	if err != nil {
		return nil, err
	}
	return envReadsIn(files), nil
}

// envVarName is the shape of a variable name the binaries read.
var envVarName = regexp.MustCompile(`^KGRPC_[A-Z0-9_]+$`)

// envReadsIn finds the KGRPC_ variables a package reads: every call argument
// that is exactly a KGRPC_ name (a literal or a package constant), whatever
// the function (Env, os.Getenv, DurationVar, ...). When the next argument is
// a string it is the default. A variable passed to DurationVar, or read
// inside time.ParseDuration, strconv.Atoi or strconv.ParseBool, has to parse
// as one.
func envReadsIn(files []*ast.File) map[string]envVar {
	consts := map[string]string{}
	for _, f := range files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i < len(vs.Values) {
						if s, ok := stringLit(vs.Values[i], nil); ok {
							consts[n.Name] = s
						}
					}
				}
			}
		}
	}
	kinds := map[string]string{"DurationVar": "duration", "ParseDuration": "duration", "Atoi": "int", "ParseBool": "bool"}
	vars := map[string]envVar{}
	// names returns the KGRPC_ names among call's arguments, recording them.
	names := func(call *ast.CallExpr) []string {
		var found []string
		for i, arg := range call.Args {
			name, ok := stringLit(arg, consts)
			if !ok || !envVarName.MatchString(name) {
				continue
			}
			v := vars[name]
			if i+1 < len(call.Args) {
				if def, ok := stringLit(call.Args[i+1], consts); ok {
					v.def = def
				}
			}
			vars[name] = v
			found = append(found, name)
		}
		return found
	}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			kind := kinds[funcName(call)]
			for _, name := range names(call) {
				if kind != "" {
					vars[name] = envVar{def: vars[name].def, kind: kind}
				}
			}
			if kind != "" && len(call.Args) > 0 {
				if inner, ok := call.Args[0].(*ast.CallExpr); ok {
					for _, name := range names(inner) {
						vars[name] = envVar{def: vars[name].def, kind: kind}
					}
				}
			}
			return true
		})
	}
	return vars
}

// check reports whether value parses as the variable's kind.
func (v envVar) check(value string) error {
	var err error
	switch v.kind {
	case "duration":
		_, err = time.ParseDuration(value)
	case "int":
		_, err = strconv.Atoi(value)
	case "bool":
		_, err = strconv.ParseBool(value)
	}
	return err
}

// funcName is the name of the function call calls, without its qualifier.
func funcName(call *ast.CallExpr) string {
	switch x := call.Fun.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		return x.Sel.Name
	}
	return ""
}

func stringLit(e ast.Expr, consts map[string]string) (string, bool) {
	switch x := e.(type) {
	case *ast.BasicLit:
		if x.Kind == token.STRING {
			s, err := strconv.Unquote(x.Value)
			return s, err == nil
		}
	case *ast.Ident:
		s, ok := consts[x.Name]
		return s, ok
	}
	return "", false
}

// parseDir parses the non-test Go files of dir.
func parseDir(dir string) ([]*ast.File, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no Go files in %s", dir)
	}
	return files, nil
}

// unsetenv unsets v for the rest of the test and restores it afterwards.
func unsetenv(t *testing.T, v string) {
	t.Helper()
	t.Setenv(v, "")
	if err := os.Unsetenv(v); err != nil {
		t.Fatal(err)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
