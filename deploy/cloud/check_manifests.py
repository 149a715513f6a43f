#!/usr/bin/env python3
"""Checks deploy/cloud/ against the code (CI: .ci/run).

- every YAML file parses (PyYAML, Debian package python3-yaml);
- the kustomization's resources and ConfigMap files exist, and every TOML
  config parses;
- every container image is o2c/cloud:<workspace version>;
- each container (of a Deployment or a StatefulSet) runs an o2c-cloud
  subcommand that exists in cloud/cli/src/main.rs, and exposes the port the
  code listens on by default (ingest: http.listen, saga: saga.http_listen in
  cloud/common/src/config.rs, catalog: catalog.http_listen in
  cloud/common/src/config/catalog.rs, analytics: analytics.http_listen in
  cloud/common/src/config/analytics.rs, fleet: fleet.http_listen in
  cloud/common/src/config/fleet.rs), overriding the loopback default to
  0.0.0.0 on that port;
- readiness probes hit /readyz and liveness probes /healthz on that port;
- the --config file is mounted from the generated ConfigMap, the TLS
  material from a Secret, and the ingest runs more than one replica;
- the analytics runs as a StatefulSet whose pods take analytics.instance from
  their ordinal (the apps.kubernetes.io/pod-index label) and whose
  analytics.instances equals its replicas (partitions are split by number,
  cloud/analytics/src/assign.rs);
- the systemd units under deploy/cloud/systemd run existing subcommands.

Usage: deploy/cloud/check_manifests.py [REPO_ROOT]
"""
import pathlib
import re
import sys
import tomllib

import yaml

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[2])
CLOUD = ROOT / "deploy" / "cloud"
errors = []


def fail(msg):
    errors.append(msg)


def kebab(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def code_facts():
    version = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    config_rs = (ROOT / "cloud/common/src/config.rs").read_text()
    ports = {}
    catalog_rs = (ROOT / "cloud/common/src/config/catalog.rs").read_text()
    analytics_rs = (ROOT / "cloud/common/src/config/analytics.rs").read_text()
    fleet_rs = (ROOT / "cloud/common/src/config/fleet.rs").read_text()
    for sub, fn, file, text in (("fleet", "default_http_listen", "config/fleet.rs", fleet_rs),
                                ("ingest", "default_http", "config.rs", config_rs),
                                ("saga", "default_saga_http", "config.rs", config_rs),
                                ("catalog", "default_http_listen", "config/catalog.rs", catalog_rs),
                                ("analytics", "default_http_listen", "config/analytics.rs", analytics_rs)):
        m = re.search(fn + r"\(\) -> SocketAddr \{\s*SocketAddr::from\(\(\[[\d, ]+\], (\d+)\)\)", text)
        if not m:
            fail(f"cloud/common/src/{file}: cannot find {fn}()")
        else:
            ports[sub] = int(m.group(1))
    main_rs = (ROOT / "cloud/cli/src/main.rs").read_text()
    m = re.search(r"enum Command \{(.*?)\n\}", main_rs, re.S)
    subcommands = set()
    if m:
        subcommands = {kebab(v) for v in re.findall(r"^    ([A-Z]\w*)\s*[{,(]", m.group(1), re.M)}
    if not subcommands:
        fail("cloud/cli/src/main.rs: cannot find the subcommands of enum Command")
    return version, ports, subcommands


def load_yaml(path):
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        fail(f"{path.relative_to(ROOT)}: not valid YAML: {e}")
        return []


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


POD_INDEX = "metadata.labels['apps.kubernetes.io/pod-index']"


def check_deployment(path, dep, version, ports, subcommands, cm_name, cm_files):
    name = dep["metadata"]["name"]
    where = f"{path.relative_to(ROOT)}: {dep['kind']} {name}"
    spec = dep["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for c in spec["containers"]:
        image = c.get("image")
        if image != f"o2c/cloud:{version}":
            fail(f"{where}: image {image!r}, expected o2c/cloud:{version}")
        args = c.get("args", [])
        sub = args[0] if args else None
        if sub not in subcommands:
            fail(f"{where}: o2c-cloud has no subcommand {sub!r} ({sorted(subcommands)})")
            continue
        port = ports.get(sub)
        if port is None:
            fail(f"{where}: no known default port for {sub!r}")
            continue
        declared = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        if port not in declared.values():
            fail(f"{where}: containerPort {sorted(declared.values())}, the code listens on {port}")
        listen_var = {"ingest": "O2C_CLOUD__HTTP__LISTEN", "saga": "O2C_CLOUD__SAGA__HTTP_LISTEN",
                      "catalog": "O2C_CLOUD__CATALOG__HTTP_LISTEN",
                      "analytics": "O2C_CLOUD__ANALYTICS__HTTP_LISTEN",
                      "fleet": "O2C_CLOUD__FLEET__HTTP_LISTEN"}[sub]
        if env_of(c).get(listen_var) != f"0.0.0.0:{port}":
            fail(f"{where}: {listen_var} must be 0.0.0.0:{port} so probes reach it")
        for probe, path_ in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = c.get(probe, {}).get("httpGet", {})
            p = get.get("port")
            p = declared.get(p, p)
            if get.get("path") != path_ or p != port:
                fail(f"{where}: {probe} must GET {path_} on port {port}, has {get}")
        ann = dep["spec"]["template"]["metadata"].get("annotations", {})
        if ann.get("prometheus.io/port") not in (None, str(port)):
            fail(f"{where}: prometheus.io/port {ann.get('prometheus.io/port')} != {port}")
        if "--config" not in args:
            fail(f"{where}: no --config")
            continue
        config = args[args.index("--config") + 1]
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        m = mounts.get(config)
        vol = volumes.get(m["name"]) if m else None
        if not (m and vol and vol.get("configMap", {}).get("name") == cm_name and m.get("subPath") in cm_files):
            fail(f"{where}: {config} is not mounted from ConfigMap {cm_name} ({sorted(cm_files)})")
        tls_env = [v for k, v in env_of(c).items()
                   if k.startswith("O2C_CLOUD__MQTT__TLS__") or k.startswith("O2C_CLOUD__CATALOG__TLS__")]
        for f in tls_env:
            parent = str(pathlib.PurePosixPath(f).parent)
            tm = mounts.get(parent)
            if not (tm and "secret" in volumes.get(tm["name"], {})):
                fail(f"{where}: {f} is not in a mounted Secret")
        if sub == "ingest" and dep["spec"].get("replicas", 1) < 2:
            fail(f"{where}: the ingest should run several replicas sharing one group")
        if sub == "analytics":
            check_analytics_instances(where, dep, c)


def check_analytics_instances(where, dep, c):
    """Instance i of n reads the partitions p % n == i: every pod needs its own
    i (its ordinal) and the same n, the number of pods."""
    if dep["kind"] != "StatefulSet":
        fail(f"{where}: analytics must be a StatefulSet (analytics.instance is the pod ordinal)")
        return
    env = {e["name"]: e for e in c.get("env", [])}
    field = env.get("O2C_CLOUD__ANALYTICS__INSTANCE", {}).get("valueFrom", {}).get("fieldRef", {})
    if field.get("fieldPath") != POD_INDEX:
        fail(f"{where}: O2C_CLOUD__ANALYTICS__INSTANCE must come from fieldRef {POD_INDEX}")
    replicas = dep["spec"].get("replicas", 1)
    instances = env.get("O2C_CLOUD__ANALYTICS__INSTANCES", {}).get("value")
    if instances != str(replicas):
        fail(f"{where}: O2C_CLOUD__ANALYTICS__INSTANCES is {instances!r}, must equal replicas ({replicas})")


def main():
    version, ports, subcommands = code_facts()
    kust_path = CLOUD / "kustomization.yaml"
    kust = (load_yaml(kust_path) or [{}])[0]
    cm = (kust.get("configMapGenerator") or [{}])[0]
    cm_name = cm.get("name")
    cm_files = {}
    for f in cm.get("files", []):
        p = CLOUD / f
        if not p.is_file():
            fail(f"kustomization: ConfigMap file {f} missing")
            continue
        try:
            tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            fail(f"{f}: not valid TOML: {e}")
        cm_files[pathlib.PurePosixPath(f).name] = p
    for f in sorted((CLOUD / "config").glob("*.toml")):
        try:
            tomllib.loads(f.read_text())
        except tomllib.TOMLDecodeError as e:
            fail(f"{f.relative_to(ROOT)}: not valid TOML: {e}")
    resources = kust.get("resources", [])
    for f in resources:
        if not (CLOUD / f).is_file():
            fail(f"kustomization: resource {f} missing")
    yamls = sorted(CLOUD.rglob("*.yaml"))
    listed = {(CLOUD / r).resolve() for r in resources} | {kust_path.resolve()}
    workloads = {}
    for path in yamls:
        if path.resolve() not in listed:
            fail(f"{path.relative_to(ROOT)}: not listed in kustomization.yaml resources")
        for doc in load_yaml(path):
            if doc.get("kind") in ("Deployment", "StatefulSet"):
                workloads[doc["kind"]] = workloads.get(doc["kind"], 0) + 1
                check_deployment(path, doc, version, ports, subcommands, cm_name, cm_files)
    if workloads.get("Deployment", 0) < 2:
        fail(f"expected Deployments for ingest and saga, found {workloads.get('Deployment', 0)}")
    for unit in sorted((CLOUD / "systemd").glob("*.service")):
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                words = line.split("=", 1)[1].split()
                if words[0].endswith("o2c-cloud") and words[1] not in subcommands:
                    fail(f"{unit.relative_to(ROOT)}: o2c-cloud has no subcommand {words[1]!r}")
                if "--config" in words:
                    name = pathlib.PurePosixPath(words[words.index("--config") + 1]).name
                    if not (CLOUD / "config" / name).is_file():
                        fail(f"{unit.relative_to(ROOT)}: example config/{name} missing")
    if errors:
        for e in errors:
            print(f"check_manifests: {e}", file=sys.stderr)
        sys.exit(1)
    kinds = ", ".join(f"{n} {k}{'' if n == 1 else 's'}" for k, n in sorted(workloads.items()))
    print(f"check_manifests: {len(yamls)} YAML files, {kinds}: images o2c/cloud:{version}, "
          f"ports ingest {ports['ingest']} saga {ports['saga']} catalog {ports['catalog']} "
          f"analytics {ports['analytics']} fleet {ports['fleet']}, subcommands {sorted(subcommands)}: ok")


main()
