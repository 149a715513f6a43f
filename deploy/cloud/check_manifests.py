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
  cloud/common/src/config/fleet.rs, api: api.admin_listen in
  cloud/common/src/config/api.rs, notify: notify.admin_listen in
  cloud/common/src/config/notify.rs), overriding the loopback default to
  0.0.0.0 on that port;
- readiness probes hit /readyz and liveness probes /healthz on that port;
- a service port besides it (api: api.listen, the order API) is declared,
  overridden to 0.0.0.0 on the code's default port, and exposed by a Service
  selecting the pods;
- the --config file is mounted from the generated ConfigMap, the TLS
  material from a Secret, and the ingest runs more than one replica;
- the analytics runs as a StatefulSet whose pods take analytics.instance from
  their ordinal (the apps.kubernetes.io/pod-index label) and whose
  analytics.instances equals its replicas (partitions are split by number,
  cloud/analytics/src/assign.rs);
- the order API (subcommand api): several replicas; its example config
  has saga.toml's topic prefix, group prefix, central warehouse and
  auto_stock, spells out the code's default api.listen and api.admin_listen, verifies
  tokens with a public key (RS256 or ES256), never holds an HS256 secret (no
  config/*.toml may: the ConfigMap is not a Secret); the key file is in a
  Secret mounted read-only; its systemd unit names both ports and the key;
- the notification service (subcommand notify): several replicas; the SMTP
  URL and the webhook key reach the pod from a Secret (secretKeyRef), never
  as a literal value, and a webhook URL comes with a key; its example config
  has saga.toml's topic prefix and group prefix, names an smtp:// or
  smtps:// smtp_url, spells out the code's default notify.admin_listen,
  names every [notify] key of the code, and sets the numeric ones to the
  code's defaults; no config/*.toml holds notify.webhook_secret or an
  smtp_url with a password; its systemd unit names the admin port, stops
  restarting on exit 64 and takes its secrets from an EnvironmentFile, never
  an Environment= line;
- the systemd units under deploy/cloud/systemd run existing subcommands.

Usage: deploy/cloud/check_manifests.py [REPO_ROOT]
"""
import pathlib
import re
import sys
import tomllib
import urllib.parse

import yaml

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[2])
CLOUD = ROOT / "deploy" / "cloud"
errors = []


def fail(msg):
    errors.append(msg)


def kebab(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


# The probe (health and metrics) port of each subcommand: (subcommand, the
# function giving its default, its file under cloud/common/src/, the
# environment override of its address).
PROBE_PORTS = (
    ("fleet", "default_http_listen", "config/fleet.rs", "O2C_CLOUD__FLEET__HTTP_LISTEN"),
    ("ingest", "default_http", "config.rs", "O2C_CLOUD__HTTP__LISTEN"),
    ("saga", "default_saga_http", "config.rs", "O2C_CLOUD__SAGA__HTTP_LISTEN"),
    ("catalog", "default_http_listen", "config/catalog.rs", "O2C_CLOUD__CATALOG__HTTP_LISTEN"),
    ("analytics", "default_http_listen", "config/analytics.rs", "O2C_CLOUD__ANALYTICS__HTTP_LISTEN"),
    ("api", "default_admin_listen", "config/api.rs", "O2C_CLOUD__API__ADMIN_LISTEN"),
    ("notify", "default_admin_listen", "config/notify.rs", "O2C_CLOUD__NOTIFY__ADMIN_LISTEN"),
)
# Service ports besides the probe port whose default is loopback, so a pod
# must override it: (subcommand, function, file, override, config key).
SERVE_PORTS = (
    ("api", "default_listen", "config/api.rs", "O2C_CLOUD__API__LISTEN", "api.listen"),
)
LISTEN_VAR = {sub: var for sub, _, _, var in PROBE_PORTS}


def default_port(fn, file):
    text = (ROOT / "cloud/common/src" / file).read_text()
    m = re.search(r"fn " + fn + r"\(\) -> SocketAddr \{\s*SocketAddr::from\(\(\[[\d, ]+\], (\d+)\)\)", text)
    if not m:
        fail(f"cloud/common/src/{file}: cannot find {fn}()")
        return None
    return int(m.group(1))


def code_facts():
    version = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    ports = {}
    for sub, fn, file, _ in PROBE_PORTS:
        port = default_port(fn, file)
        if port is not None:
            ports[sub] = port
    serve = {}
    for sub, fn, file, var, key in SERVE_PORTS:
        port = default_port(fn, file)
        if port is not None:
            serve.setdefault(sub, []).append((port, var, key))
    main_rs = (ROOT / "cloud/cli/src/main.rs").read_text()
    m = re.search(r"enum Command \{(.*?)\n\}", main_rs, re.S)
    subcommands = set()
    if m:
        subcommands = {kebab(v) for v in re.findall(r"^    ([A-Z]\w*)\s*[{,(]", m.group(1), re.M)}
    if not subcommands:
        fail("cloud/cli/src/main.rs: cannot find the subcommands of enum Command")
    return version, ports, serve, subcommands


def load_yaml(path):
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        fail(f"{path.relative_to(ROOT)}: not valid YAML: {e}")
        return []


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


POD_INDEX = "metadata.labels['apps.kubernetes.io/pod-index']"


def check_deployment(path, dep, version, ports, serve, subcommands, cm_name, cm_files, services):
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
        listen_var = LISTEN_VAR[sub]
        if env_of(c).get(listen_var) != f"0.0.0.0:{port}":
            fail(f"{where}: {listen_var} must be 0.0.0.0:{port} so probes reach it")
        labels = dep["spec"]["template"]["metadata"].get("labels", {})
        for sport, var, key in serve.get(sub, []):
            if sport not in declared.values():
                fail(f"{where}: no containerPort {sport} ({key}, the code's default)")
            if env_of(c).get(var) != f"0.0.0.0:{sport}":
                fail(f"{where}: {var} must be 0.0.0.0:{sport} so the Service reaches {key}")
            targets = {n for n, p in declared.items() if p == sport} | {sport}
            if not any(selects(svc, labels) and any(sp.get("targetPort", sp.get("port")) in targets
                                                     for sp in svc["spec"].get("ports", []))
                       for svc in services):
                fail(f"{where}: no Service selecting its pods exposes {key} (port {sport})")
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
                   if k.startswith("O2C_CLOUD__MQTT__TLS__") or k.startswith("O2C_CLOUD__CATALOG__TLS__")
                   or k == "O2C_CLOUD__API__JWT__PUBLIC_KEY_FILE"]
        for f in tls_env:
            parent = str(pathlib.PurePosixPath(f).parent)
            tm = mounts.get(parent)
            if not (tm and "secret" in volumes.get(tm["name"], {})):
                fail(f"{where}: {f} is not in a mounted Secret")
        if sub == "ingest" and dep["spec"].get("replicas", 1) < 2:
            fail(f"{where}: the ingest should run several replicas sharing one group")
        if sub == "analytics":
            check_analytics_instances(where, dep, c)
        if sub == "api":
            check_api_pod(where, dep, c, volumes, mounts, cm_files.get(m.get("subPath")) if m else None)
        if sub == "notify":
            check_notify_pod(where, dep, c, cm_files.get(m.get("subPath")) if m else None)


def selects(svc, labels):
    """True if the Service's selector picks pods with these labels."""
    selector = svc.get("spec", {}).get("selector") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def secret_mount_of(file, mounts, volumes):
    """The mount holding `file` if it comes from a Secret, else None."""
    for parent in pathlib.PurePosixPath(file).parents:
        tm = mounts.get(str(parent))
        if tm:
            return tm if "secret" in volumes.get(tm["name"], {}) else None
    return None


def check_api_pod(where, dep, c, volumes, mounts, config_path):
    """The order API: replicas, and its token key from a read-only Secret."""
    if dep["spec"].get("replicas", 1) < 2:
        fail(f"{where}: the order API should run several replicas (it is stateless)")
    if config_path is None:
        return
    jwt = tomllib.loads(config_path.read_text()).get("api", {}).get("jwt", {})
    key = env_of(c).get("O2C_CLOUD__API__JWT__PUBLIC_KEY_FILE") or jwt.get("public_key_file")
    if not key:
        fail(f"{where}: api.jwt.public_key_file is not set (production verifies RS256/ES256)")
        return
    tm = secret_mount_of(key, mounts, volumes)
    if tm is None:
        fail(f"{where}: the JWT public key {key} is not in a mounted Secret")
    elif not tm.get("readOnly"):
        fail(f"{where}: the Secret holding {key} must be mounted readOnly")


def check_api_config(path, ports, serve):
    """The order API's example: the code's default ports, a public key."""
    where = path.relative_to(ROOT)
    api = tomllib.loads(path.read_text()).get("api", {})
    want = {"admin_listen": ports.get("api")}
    want.update({key.split(".", 1)[1]: p for p, _, key in serve.get("api", [])})
    for key, port in want.items():
        addr = api.get(key)
        if addr is None or port is None or not addr.endswith(f":{port}"):
            fail(f"{where}: api.{key} is {addr!r}, the code's default port is {port}")
    # It joins the saga: same topics, same group prefix, same stock rules.
    saga_toml = CLOUD / "config" / "saga.toml"
    if saga_toml.is_file():
        ours, theirs = tomllib.loads(path.read_text()), tomllib.loads(saga_toml.read_text())
        for table, key, default in (("kafka", "topic_prefix", ""), ("saga", "group_prefix", "o2c-saga"),
                                    ("saga", "central_warehouse", "central"), ("saga", "auto_stock", 0)):
            a = ours.get(table, {}).get(key, default)
            b = theirs.get(table, {}).get(key, default)
            if a != b:
                fail(f"{where}: {table}.{key} is {a!r}, config/saga.toml has {b!r}")
    jwt = api.get("jwt", {})
    if jwt.get("algorithm") not in ("RS256", "ES256") or not jwt.get("public_key_file"):
        fail(f"{where}: the production example must verify RS256 or ES256 with public_key_file")
    return jwt.get("public_key_file")


def check_api_unit(unit, text, ports, serve, key_file):
    """The order API's unit names both ports and the key path."""
    where = unit.relative_to(ROOT)
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for port in [ports.get("api")] + [p for p, _, _ in serve.get("api", [])]:
        if port is not None and f":{port}/" not in header:
            fail(f"{where}: the header does not name port {port} (the code's default)")
    if key_file and key_file not in header:
        fail(f"{where}: the header does not name the JWT public key {key_file}")


# The notification service's secrets: environment overrides that must come
# from a Secret (the SMTP URL carries the relay's password).
NOTIFY_SECRET_VARS = ("O2C_CLOUD__NOTIFY__SMTP_URL", "O2C_CLOUD__NOTIFY__WEBHOOK_SECRET")


def check_notify_pod(where, dep, c, config_path):
    """The notification service: replicas, and its secrets from a Secret."""
    if dep["spec"].get("replicas", 1) < 2:
        fail(f"{where}: the notification service should run several replicas (it is stateless)")
    env = {e["name"]: e for e in c.get("env", [])}
    for var in NOTIFY_SECRET_VARS:
        e = env.get(var)
        if e is None:
            continue
        if "value" in e or not e.get("valueFrom", {}).get("secretKeyRef"):
            fail(f"{where}: {var} must come from a Secret (valueFrom.secretKeyRef), not a literal value")
    if "O2C_CLOUD__NOTIFY__SMTP_URL" not in env:
        fail(f"{where}: O2C_CLOUD__NOTIFY__SMTP_URL is not set from a Secret (the relay's credentials)")
    notify = tomllib.loads(config_path.read_text()).get("notify", {}) if config_path else {}
    webhook = "O2C_CLOUD__NOTIFY__WEBHOOK_URL" in env or "webhook_url" in notify
    if webhook and "O2C_CLOUD__NOTIFY__WEBHOOK_SECRET" not in env:
        fail(f"{where}: a webhook URL without O2C_CLOUD__NOTIFY__WEBHOOK_SECRET (it exits 64)")


def notify_defaults():
    """The code's default of each [notify] key: {key: value or None (not a
    plain number)}, from cloud/common/src/config/notify.rs."""
    text = (ROOT / "cloud/common/src/config/notify.rs").read_text()
    m = re.search(r"pub struct NotifyConfig \{(.*?)\n\}", text, re.S)
    if not m:
        fail("cloud/common/src/config/notify.rs: cannot find struct NotifyConfig")
        return {}
    numbers = {fn: int(v.replace("_", "")) for fn, v in
               re.findall(r"fn (\w+)\(\) -> (?:u32|u64|usize) \{\s*([\d_]+)\s*\}", text)}
    keys = {}
    for attrs, key in re.findall(r"((?:\s*#\[[^\n]*\]\n)*)\s*pub (\w+):", m.group(1)):
        fn = re.search(r'default = "(\w+)"', attrs)
        keys[key] = numbers.get(fn.group(1)) if fn else None
    if not keys:
        fail("cloud/common/src/config/notify.rs: no fields in struct NotifyConfig")
    return keys


def check_notify_config(path, ports):
    """The notification service's example: the code's default admin port,
    every [notify] key named, numeric keys at their defaults, the saga's
    prefixes, an SMTP URL."""
    where = path.relative_to(ROOT)
    text = path.read_text()
    doc = tomllib.loads(text)
    notify = doc.get("notify", {})
    port = ports.get("notify")
    addr = notify.get("admin_listen")
    if addr is None or port is None or not addr.endswith(f":{port}"):
        fail(f"{where}: notify.admin_listen is {addr!r}, the code's default port is {port}")
    # Documented, set or commented out.
    for key, default in notify_defaults().items():
        if not re.search(rf"^#?\s*{key}\s*=", text, re.M):
            fail(f"{where}: [notify] {key} is neither set nor shown commented out")
        elif default is not None and key in notify and notify[key] != default:
            fail(f"{where}: notify.{key} is {notify[key]!r}, the code's default is {default} "
                 "(the example shows the defaults)")
    smtp = notify.get("smtp_url", "")
    if not smtp.startswith(("smtp://", "smtps://")):
        fail(f"{where}: notify.smtp_url {smtp!r} is not an smtp:// or smtps:// URL")
    if "webhook_url" in notify:
        fail(f"{where}: notify.webhook_url set in the example: it needs a webhook_secret, "
             "which only the environment may give (the check-config of the file would fail)")
    # It joins the saga's history: same topics, same group prefix.
    saga_toml = CLOUD / "config" / "saga.toml"
    if saga_toml.is_file():
        theirs = tomllib.loads(saga_toml.read_text())
        for table, key, default in (("kafka", "topic_prefix", ""), ("saga", "group_prefix", "o2c-saga")):
            a = doc.get(table, {}).get(key, default)
            b = theirs.get(table, {}).get(key, default)
            if a != b:
                fail(f"{where}: {table}.{key} is {a!r}, config/saga.toml has {b!r}")


def check_notify_unit(unit, text, ports):
    """The notification service's unit: its admin port, exit 64 final,
    secrets from an EnvironmentFile only."""
    where = unit.relative_to(ROOT)
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    port = ports.get("notify")
    if port is not None and f":{port}/" not in header:
        fail(f"{where}: the header does not name port {port} (the code's default)")
    lines = [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#")]
    if "RestartPreventExitStatus=64" not in lines:
        fail(f"{where}: no RestartPreventExitStatus=64 (bad config or templates exit 64)")
    if not any(line.startswith("EnvironmentFile=") for line in lines):
        fail(f"{where}: no EnvironmentFile= for {' / '.join(NOTIFY_SECRET_VARS)}")
    for line in lines:
        if line.startswith("Environment=") and any(v in line for v in NOTIFY_SECRET_VARS):
            fail(f"{where}: a secret in an Environment= line (systemctl show prints it): {line}")


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
    version, ports, serve, subcommands = code_facts()
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
            doc = tomllib.loads(f.read_text())
        except tomllib.TOMLDecodeError as e:
            fail(f"{f.relative_to(ROOT)}: not valid TOML: {e}")
            continue
        if "secret" in doc.get("api", {}).get("jwt", {}):
            fail(f"{f.relative_to(ROOT)}: api.jwt.secret in a config file (HS256 is for development; "
                 "the ConfigMap is not a Secret)")
        notify = doc.get("notify", {})
        if "webhook_secret" in notify:
            fail(f"{f.relative_to(ROOT)}: notify.webhook_secret in a config file (the ConfigMap is not "
                 "a Secret: set O2C_CLOUD__NOTIFY__WEBHOOK_SECRET)")
        if urllib.parse.urlsplit(notify.get("smtp_url", "")).password is not None:
            fail(f"{f.relative_to(ROOT)}: notify.smtp_url holds a password (the ConfigMap is not a "
                 "Secret: set O2C_CLOUD__NOTIFY__SMTP_URL)")
    resources = kust.get("resources", [])
    for f in resources:
        if not (CLOUD / f).is_file():
            fail(f"kustomization: resource {f} missing")
    yamls = sorted(CLOUD.rglob("*.yaml"))
    listed = {(CLOUD / r).resolve() for r in resources} | {kust_path.resolve()}
    workloads = {}
    docs = []
    for path in yamls:
        if path.resolve() not in listed:
            fail(f"{path.relative_to(ROOT)}: not listed in kustomization.yaml resources")
        docs += [(path, doc) for doc in load_yaml(path)]
    services = [doc for _, doc in docs if doc.get("kind") == "Service"]
    for path, doc in docs:
        if doc.get("kind") in ("Deployment", "StatefulSet"):
            workloads[doc["kind"]] = workloads.get(doc["kind"], 0) + 1
            check_deployment(path, doc, version, ports, serve, subcommands, cm_name, cm_files, services)
    if workloads.get("Deployment", 0) < 2:
        fail(f"expected Deployments for ingest and saga, found {workloads.get('Deployment', 0)}")
    api_units = notify_units = 0
    for unit in sorted((CLOUD / "systemd").glob("*.service")):
        text = unit.read_text()
        for line in text.splitlines():
            if line.startswith("ExecStart="):
                words = line.split("=", 1)[1].split()
                if words[0].endswith("o2c-cloud") and words[1] not in subcommands:
                    fail(f"{unit.relative_to(ROOT)}: o2c-cloud has no subcommand {words[1]!r}")
                if "--config" in words:
                    name = pathlib.PurePosixPath(words[words.index("--config") + 1]).name
                    config = CLOUD / "config" / name
                    if not config.is_file():
                        fail(f"{unit.relative_to(ROOT)}: example config/{name} missing")
                    elif words[0].endswith("o2c-cloud") and words[1] == "api":
                        api_units += 1
                        if name not in cm_files:
                            fail(f"kustomization: ConfigMap lacks config/{name} (the order API's)")
                        key_file = check_api_config(config, ports, serve)
                        check_api_unit(unit, text, ports, serve, key_file)
                    elif words[0].endswith("o2c-cloud") and words[1] == "notify":
                        notify_units += 1
                        if name not in cm_files:
                            fail(f"kustomization: ConfigMap lacks config/{name} (the notification service's)")
                        check_notify_config(config, ports)
                        check_notify_unit(unit, text, ports)
    if "api" in subcommands and api_units == 0:
        fail("deploy/cloud/systemd: no unit runs `o2c-cloud api`")
    if "notify" in subcommands and notify_units == 0:
        fail("deploy/cloud/systemd: no unit runs `o2c-cloud notify`")
    if errors:
        for e in errors:
            print(f"check_manifests: {e}", file=sys.stderr)
        sys.exit(1)
    kinds = ", ".join(f"{n} {k}{'' if n == 1 else 's'}" for k, n in sorted(workloads.items()))
    print(f"check_manifests: {len(yamls)} YAML files, {kinds}: images o2c/cloud:{version}, "
          f"ports ingest {ports['ingest']} saga {ports['saga']} catalog {ports['catalog']} "
          f"analytics {ports['analytics']} fleet {ports['fleet']} "
          f"api {'/'.join(str(p) for p, _, _ in serve.get('api', []))}+{ports['api']} "
          f"notify {ports['notify']}, "
          f"subcommands {sorted(subcommands)}: ok")


main()
