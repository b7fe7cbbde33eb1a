"""Validates docker-compose.yml against the Compose specification's JSON schema.

No Docker engine runs here, so the file is checked the way `docker compose config` would
start: schema validation of the YAML (with `x-` extension fields and merge keys resolved).
The schema is the Compose spec JSON schema shipped inside the docker-compose 1.29.2 wheel.
Usage: python check-compose.py SCHEMA.json docker-compose.yml
"""
import json
import sys

import jsonschema
import yaml


def main() -> int:
    schema_path, compose_path = sys.argv[1], sys.argv[2]
    with open(schema_path) as f:
        schema = json.load(f)
    with open(compose_path) as f:
        doc = yaml.safe_load(f)
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    for e in errors:
        where = "/".join(str(p) for p in e.path) or "(top level)"
        print(f"{compose_path}: {where}: {e.message}", file=sys.stderr)
    services = doc.get("services", {})
    # The spec allows any service names; Sluice's scrape config expects these two workers.
    for name in ("sluice-worker-1", "sluice-worker-2", "kafka", "azurite", "prometheus", "grafana", "producer"):
        if name not in services:
            print(f"{compose_path}: services: missing '{name}'", file=sys.stderr)
            errors.append(name)
    if errors:
        return 1
    print(f"{compose_path}: valid against the Compose specification ({len(services)} services)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
