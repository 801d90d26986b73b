// Package k8s_test renders the Kubernetes manifests of deploy/k8s with
// `kustomize build` (the CLI, and its library, which must agree) and checks every
// object against the Kubernetes API types of k8s.io/api, strictly (an
// unknown or mistyped field fails), and against what the shop needs.
package k8s_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// units are the shop's deployable units.
var units = []string{"gateway", "usersvc", "productsvc", "ordersvc"}

// copyTree copies the manifests into dir, where the keys and db.env an
// operator makes can be written without touching the repository.
func copyTree(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".env") && !strings.HasSuffix(path, ".example") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// object is a rendered manifest: its kind and name, and its YAML.
type object struct {
	kind, name string
	body       []byte
}

// build renders overlay as `kustomize build` does, after making what the
// overlay's comments tell an operator to make: the units' key files (here
// placeholders: kgrpc-keys makes the real ones, and rendering only copies
// them into Secrets), and for production the .env files from their
// examples.
func build(t *testing.T, overlay string) []object {
	t.Helper()
	dir := t.TempDir()
	copyTree(t, dir)
	od := filepath.Join(dir, "overlays", overlay)
	if err := os.MkdirAll(filepath.Join(od, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range append(slices.Clone(units), "keyring") {
		name := f + ".key"
		if f == "keyring" {
			name = "keyring.json"
		}
		if err := os.WriteFile(filepath.Join(od, "keys", name), []byte("placeholder of "+name+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	examples, err := filepath.Glob(filepath.Join(od, "*.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range examples { // db.env, kafka-credentials.env, admin.env
		b, err := os.ReadFile(ex)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(strings.TrimSuffix(ex, ".example"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), od)
	if err != nil {
		t.Fatalf("kustomize build overlays/%s: %v", overlay, err)
	}
	var objs []object
	cli := kustomizeCLI(t, od)
	for _, r := range res.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, object{kind: r.GetKind(), name: r.GetName(), body: b})
	}
	if got := names(objs); !slices.Equal(got, cli) {
		t.Fatalf("kustomize build (the CLI) rendered %v, kustomize's library %v", cli, got)
	}
	return objs
}

// names returns "Kind/name" of each object, sorted.
func names(objs []object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.kind+"/"+o.name)
	}
	slices.Sort(out)
	return out
}

// kustomizeCLI renders dir with `kustomize build`, the CLI of the Go
// module sigs.k8s.io/kustomize/kustomize/v5 pinned as a tool of this
// module, and returns "Kind/name" of each object, sorted.
func kustomizeCLI(t *testing.T, dir string) []string {
	t.Helper()
	cmd := exec.Command("go", "tool", "kustomize", "build", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kustomize build %s: %v\n%s", dir, err, stderr.String())
	}
	var got []string
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var m struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("kustomize build printed a document that is not YAML: %v", err)
		}
		got = append(got, m.Kind+"/"+m.Metadata.Name)
	}
	slices.Sort(got)
	return got
}

// strict decodes an object's YAML into v, refusing unknown fields.
func strict(t *testing.T, o object, v any) {
	t.Helper()
	j, err := yaml.YAMLToJSON(o.body)
	if err != nil {
		t.Fatalf("%s %s: %v", o.kind, o.name, err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Errorf("%s %s does not match the Kubernetes API: %v", o.kind, o.name, err)
	}
}

func TestOverlays(t *testing.T) {
	for _, overlay := range []string{"local", "production"} {
		t.Run(overlay, func(t *testing.T) {
			objs := build(t, overlay)
			names := map[string]bool{} // "Kind/name"
			for _, o := range objs {
				names[o.kind+"/"+o.name] = true
			}
			deployments := map[string]*appsv1.Deployment{}
			for _, o := range objs {
				switch o.kind {
				case "Deployment":
					var d appsv1.Deployment
					strict(t, o, &d)
					deployments[d.Name] = &d
				case "StatefulSet":
					strict(t, o, &appsv1.StatefulSet{})
				case "Service":
					strict(t, o, &corev1.Service{})
				case "ConfigMap":
					strict(t, o, &corev1.ConfigMap{})
				case "Secret":
					strict(t, o, &corev1.Secret{})
				case "PodDisruptionBudget":
					var p policyv1.PodDisruptionBudget
					strict(t, o, &p)
					if d, ok := deployments[p.Name]; !ok || p.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != d.Spec.Selector.MatchLabels["app.kubernetes.io/name"] {
						t.Errorf("PodDisruptionBudget %s selects no Deployment", p.Name)
					}
				case "HorizontalPodAutoscaler":
					var h autoscalingv2.HorizontalPodAutoscaler
					strict(t, o, &h)
					if !names["Deployment/"+h.Spec.ScaleTargetRef.Name] {
						t.Errorf("HorizontalPodAutoscaler %s scales %s, which is not rendered", h.Name, h.Spec.ScaleTargetRef.Name)
					}
					if h.Spec.MaxReplicas > 6 && overlay == "local" {
						t.Errorf("HorizontalPodAutoscaler %s goes past the topics' 6 partitions", h.Name)
					}
				default:
					t.Errorf("unexpected %s %s", o.kind, o.name)
				}
			}
			for _, u := range units {
				d, ok := deployments[u]
				if !ok {
					t.Errorf("no Deployment %s", u)
					continue
				}
				checkUnit(t, d, u, names)
			}
			for _, kind := range []string{"PodDisruptionBudget/", "HorizontalPodAutoscaler/"} {
				for _, u := range units {
					wantHPA := u == "gateway" || u == "productsvc"
					if has := names[kind+u]; has != (kind == "PodDisruptionBudget/" || wantHPA) {
						t.Errorf("%s%s rendered: %v", kind, u, has)
					}
				}
			}
			if !names["Service/gateway"] {
				t.Error("no Service for the gateway")
			}
			t.Logf("overlays/%s: %d objects", overlay, len(objs))
		})
	}
}

// checkUnit checks what a unit's Deployment must have: its command,
// probes on /readyz and /healthz, requests and limits, the instance id
// from the pod's name, its own key only, and every Secret and ConfigMap
// it reads rendered.
func checkUnit(t *testing.T, d *appsv1.Deployment, unit string, names map[string]bool) {
	t.Helper()
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: %d containers", unit, len(spec.Containers))
	}
	c := spec.Containers[0]
	if !slices.Equal(c.Command, []string{unit}) {
		t.Errorf("%s runs %v", unit, c.Command)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("%s: readiness probe %v, want /readyz", unit, c.ReadinessProbe)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("%s: liveness probe %v, want /healthz", unit, c.LivenessProbe)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("%s: no %s request", unit, r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("%s: no %s limit", unit, r)
		}
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if e := env["KGRPC_INSTANCE_ID"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("%s: KGRPC_INSTANCE_ID is not the pod's name: %+v", unit, e)
	}
	for _, k := range []string{"KGRPC_UNIT_KEY", "KGRPC_KEYRING", "KGRPC_HTTP_ADDR"} {
		if _, ok := env[k]; !ok {
			t.Errorf("%s: no %s", unit, k)
		}
	}
	if _, ok := env["KGRPC_DB"]; ok == (unit == "gateway") {
		t.Errorf("%s: KGRPC_DB set: %v", unit, ok)
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && !names["Secret/"+e.ValueFrom.SecretKeyRef.Name] {
			t.Errorf("%s: %s reads Secret %s, which is not rendered", unit, e.Name, e.ValueFrom.SecretKeyRef.Name)
		}
	}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil && !names["ConfigMap/"+ef.ConfigMapRef.Name] {
			t.Errorf("%s: reads ConfigMap %s, which is not rendered", unit, ef.ConfigMapRef.Name)
		}
	}
	var secrets []string
	for _, v := range spec.Volumes {
		switch {
		case v.Secret != nil:
			secrets = append(secrets, v.Secret.SecretName)
			if !names["Secret/"+v.Secret.SecretName] {
				t.Errorf("%s: mounts Secret %s, which is not rendered", unit, v.Secret.SecretName)
			}
			if m := v.Secret.DefaultMode; m == nil || *m&0o027 != 0 {
				t.Errorf("%s: the key's mode %v lets others read it; the unit refuses such a key", unit, m)
			}
		case v.ConfigMap != nil && !names["ConfigMap/"+v.ConfigMap.Name]:
			t.Errorf("%s: mounts ConfigMap %s, which is not rendered", unit, v.ConfigMap.Name)
		}
	}
	if len(secrets) != 1 || !strings.HasPrefix(secrets[0], "kgrpc-key-"+unit) {
		t.Errorf("%s mounts Secrets %v, want its own key only", unit, secrets)
	}
	if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("%s may run as root", unit)
	}
	if fmt.Sprint(d.Spec.Selector.MatchLabels) != fmt.Sprint(map[string]string{"app.kubernetes.io/name": unit}) {
		t.Errorf("%s selects %v", unit, d.Spec.Selector.MatchLabels)
	}
}
