"""Renders and lints a chart with Helm's own engine (the helm-python-sdk wheel bundles Helm's
Go SDK), for the chart tests: no helm binary is needed.

    python render.py CHART_DIR RELEASE NAMESPACE < values.json

prints one JSON object: {"manifests": {template path: YAML}, "crds": [YAML], "lint": report}.
Invalid values or a failing template print {"error": message} and exit with status 2.
"""

import json
import sys

import helm_python as helm


def main() -> int:
    chart_dir, release, namespace = sys.argv[1:4]
    values = json.load(sys.stdin)
    try:
        chart = helm.Chart.load(chart_dir)
        chart.validate_schema(values)
        manifests = chart.render(
            values, name=release, namespace=namespace, is_install=True
        )
        crds = [c["data"] for c in chart.crds]
        report = helm.lint(chart_dir, values, strict=True, namespace=namespace)
    except helm.HelmError as e:
        json.dump({"error": str(e)}, sys.stdout)
        return 2
    json.dump({"manifests": manifests, "crds": crds, "lint": report}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
