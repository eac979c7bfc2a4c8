// k8s-validate reads rendered Kubernetes manifests (YAML documents, from `helm template` or
// files) and decodes each strictly against the API types of Kubernetes (client-go's scheme)
// and of the Prometheus Operator (ServiceMonitor, PrometheusRule): an unknown or misspelt
// field, a wrong type, a duplicate key or an unknown kind is an error. With -rules DIR it also
// checks that every PrometheusRule carries exactly the rule groups of DIR's files.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

func main() {
	rules := flag.String("rules", "", "directory of Prometheus rule files every PrometheusRule must equal")
	flag.Parse()
	if err := monitoringv1.AddToScheme(scheme.Scheme); err != nil {
		fail(err)
	}
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var want []interface{}
	if *rules != "" {
		var err error
		if want, err = ruleGroups(*rules); err != nil {
			fail(err)
		}
	}
	inputs := flag.Args()
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	kinds := map[string]int{}
	for _, input := range inputs {
		var reader io.Reader = os.Stdin
		if input != "-" {
			file, err := os.Open(input)
			if err != nil {
				fail(err)
			}
			defer file.Close()
			reader = file
		}
		documents := utilyaml.NewYAMLReader(bufio.NewReader(reader))
		for index := 0; ; index++ {
			document, err := documents.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				fail(fmt.Errorf("%s: document %d: %w", input, index, err))
			}
			if len(bytes.TrimSpace(stripComments(document))) == 0 {
				continue
			}
			object, kind, err := decoder.Decode(document, nil, nil)
			if err != nil {
				fail(fmt.Errorf("%s: document %d: %w", input, index, err))
			}
			kinds[kind.Kind]++
			if rule, ok := object.(*monitoringv1.PrometheusRule); ok && want != nil {
				if err := sameGroups(rule, want); err != nil {
					fail(fmt.Errorf("%s: PrometheusRule %s: %w", input, rule.Name, err))
				}
			}
			_ = runtime.Object(object)
		}
	}
	names := make([]string, 0, len(kinds))
	for kind, count := range kinds {
		names = append(names, fmt.Sprintf("%s ×%d", kind, count))
	}
	sort.Strings(names)
	if len(names) == 0 {
		fail(errors.New("no objects"))
	}
	fmt.Printf("valid: %v\n", names)
}

func stripComments(document []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(document, []byte("\n")) {
		trimmed := bytes.TrimSpace(line)
		if len(trimmed) > 0 && trimmed[0] != '#' && !bytes.Equal(trimmed, []byte("---")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// ruleGroups reads the groups of every *.yml in dir, in name order, as plain data.
func ruleGroups(dir string) ([]interface{}, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("%s: no rule files", dir)
	}
	sort.Strings(files)
	var groups []interface{}
	for _, file := range files {
		text, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		var parsed struct {
			Groups []interface{} `json:"groups"`
		}
		if err := yaml.UnmarshalStrict(text, &parsed); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		groups = append(groups, parsed.Groups...)
	}
	return groups, nil
}

func sameGroups(rule *monitoringv1.PrometheusRule, want []interface{}) error {
	text, err := yaml.Marshal(rule.Spec.Groups)
	if err != nil {
		return err
	}
	var got []interface{}
	if err := yaml.Unmarshal(text, &got); err != nil {
		return err
	}
	wantText, _ := yaml.Marshal(want)
	var normalized []interface{}
	if err := yaml.Unmarshal(wantText, &normalized); err != nil {
		return err
	}
	if !reflect.DeepEqual(got, normalized) {
		gotText, _ := yaml.Marshal(got)
		return fmt.Errorf("its groups differ from the rule files:\n--- chart\n%s\n--- files\n%s", gotText, wantText)
	}
	return nil
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "k8s-validate: %v\n", err)
	os.Exit(1)
}
