#!/usr/bin/env python3
"""Writes the PrometheusRule resource from ops/prometheus/rules/herald.rules.yml to standard output."""
import pathlib

root = pathlib.Path(__file__).resolve().parents[2]
rules = (root / "ops/prometheus/rules/herald.rules.yml").read_text()
print("""# Generated from ops/prometheus/rules/herald.rules.yml (the test suite checks that they are equal):
#   python3 k8s/base/prometheusrule.py > k8s/base/prometheusrule.yaml
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: herald
spec:""")
for line in rules.splitlines():
    if not line.startswith("#"):
        print(("  " + line) if line.strip() else line)
