"""deploy/kubernetes/ checked offline (issue 19, "the path past these machines"): every built-in resource
against Kubernetes' own JSON schemas (kubernetes-validate, strict: unknown fields refused, as
``kubectl apply`` refuses them), the DaskCluster against the Dask operator's CRD schema (the file shipped in
the dask-kubernetes wheel, read without importing the package: its runtime dependencies kopf and kr8s are
not installed) and its pod specs against Kubernetes' Pod and Service schemas; then what ties the pieces
together: the Job's ``--dask`` address is the Service the operator makes, the Job's command parses as a
citytwin command, every environment variable set is one citytwin (or what it runs on) reads, no secret
value is in the files, every pod sees the workspace at one path, the workers run one thread each, and
the Dockerfile's inputs exist. Broken copies of the manifests are refused (the checks can fail).

Nothing here talks to a cluster: what a real cluster would add (scheduling, the volume's ReadWriteMany
class, the image build) is not checked (docs/scaleout.md, "The path past these machines").
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import typer
import yaml

# typer >= 0.29 carries its own copy of Click (as cli/common.py says)
from typer._click import ClickException, Context

from citytwin.cli.main import app
from citytwin.foundation import scaleout

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "kubernetes"
#: Kubernetes versions the manifests are checked against (kubernetes-validate 1.37.0 ships 1.25-1.37)
VERSIONS = ("1.29", "1.37")
MOUNT = "/srv/citytwin"
WORKSPACE = "/srv/citytwin/ws"
CLAIM = "citytwin-workspace"


def _resources() -> list[dict[str, Any]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                doc["__file__"] = path.name
                out.append(doc)
    return out


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "__file__"}


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in _resources() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} in deploy/kubernetes"
    return _strip(found[0])


def _dask_kubernetes_dir() -> Path:
    spec = importlib.util.find_spec("dask_kubernetes")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("dask-kubernetes is not installed (scripts/setup.sh --test installs it with --no-deps)")
    return Path(next(iter(spec.submodule_search_locations)))


def _crd_schema(kind: str) -> dict[str, Any]:
    crds = _dask_kubernetes_dir() / "operator" / "deployment" / "helm" / "dask-kubernetes-operator" / "crds"
    crd = yaml.safe_load((crds / f"{kind.lower()}.yaml").read_text(encoding="utf-8"))
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v.get("served") and v.get("storage")]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return {"group_version": f"{crd['spec']['group']}/{version['name']}", "schema": schema}


def _closed(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it names the fields (the API server's strict field
    validation, ``kubectl apply``'s default, refuses what a CRD's structural schema does not name)."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _closed(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def validate_builtin(doc: dict[str, Any]) -> None:
    """Raise unless ``doc`` is valid in every Kubernetes version of :data:`VERSIONS` (strict)."""
    for v in VERSIONS:
        kubernetes_validate.validate(doc, v, strict=True)


def validate_daskcluster(doc: dict[str, Any]) -> None:
    """Raise unless ``doc`` is a valid DaskCluster: the operator's CRD schema (closed), and its scheduler
    and worker pod specs and scheduler Service spec as Kubernetes' own Pod and Service."""
    crd = _crd_schema("DaskCluster")
    assert doc["apiVersion"] == crd["group_version"], doc["apiVersion"]
    schema = _closed(crd["schema"])
    # the fields every object has, which a CRD's schema leaves to the API server
    schema["properties"] |= {"apiVersion": {"type": "string"}, "kind": {"type": "string", "enum": ["DaskCluster"]},
                             "metadata": {"type": "object"}}
    jsonschema.Draft7Validator(schema).validate(doc)
    meta = {"name": doc["metadata"]["name"]}
    validate_builtin({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": doc["spec"]["scheduler"]["spec"]})
    validate_builtin({"apiVersion": "v1", "kind": "Service", "metadata": meta,
                      "spec": doc["spec"]["scheduler"]["service"]})
    validate_builtin({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": doc["spec"]["worker"]["spec"]})


def validate(doc: dict[str, Any]) -> None:
    if doc["kind"] == "DaskCluster":
        validate_daskcluster(doc)
    else:
        validate_builtin(doc)


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in _resources():
        spec = doc.get("spec", {})
        if doc["kind"] == "DaskCluster":
            yield "DaskCluster scheduler", spec["scheduler"]["spec"]
            yield "DaskCluster worker", spec["worker"]["spec"]
        elif "template" in spec:
            yield f"{doc['kind']} {doc['metadata']['name']}", spec["template"]["spec"]


def _argv(container: dict[str, Any]) -> list[str]:
    return [*container.get("command", []), *container.get("args", [])]


def parse_citytwin(argv: list[str]) -> Context:
    """Parse ``citytwin ARGS`` with the CLI's own click commands, down to the leaf command, without
    running it: unknown commands or options, wrong types and missing required options raise."""
    assert argv[0] == "citytwin", argv
    cmd: Any = typer.main.get_command(app)
    ctx = cmd.make_context("citytwin", list(argv[1:]))
    while hasattr(cmd, "resolve_command"):  # a group: on to its subcommand
        rest = [*ctx._protected_args, *ctx.args]
        name, sub, rest = cmd.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        cmd = sub
    return ctx


# -- the resources are valid ------------------------------------------------------------------------

def test_the_manifests_are_there() -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in _resources())
    assert kinds == [("ConfigMap", "citytwin-config"), ("DaskCluster", "citytwin-dask"),
                     ("Deployment", "citytwin-serve"), ("Job", "citytwin-ingest-air"), ("Job", "citytwin-init"),
                     ("PersistentVolumeClaim", CLAIM), ("Service", "citytwin")]


@pytest.mark.parametrize("doc", _resources(), ids=lambda d: f"{d['__file__']}:{d['kind']}")
def test_each_resource_validates(doc: dict[str, Any]) -> None:
    validate(_strip(doc))


def test_the_crd_is_read_from_the_wheel_without_importing_it() -> None:
    import sys

    crd = _crd_schema("DaskCluster")
    assert crd["group_version"] == "kubernetes.dask.org/v1"
    assert "dask_kubernetes" not in sys.modules


def _broken(kind: str, *args: Any) -> dict[str, Any]:
    *name, change = args
    doc = copy.deepcopy(_one(kind, *name))
    change(doc)
    return doc


BROKEN = {
    # a typo in a field name: refused by the closed CRD schema
    "daskcluster field typo": lambda: _broken("DaskCluster", lambda d: d["spec"]["worker"].update(
        replica=d["spec"]["worker"].pop("replicas"))),
    # replicas must be an integer
    "daskcluster replicas text": lambda: _broken("DaskCluster", lambda d: d["spec"]["worker"].update(replicas="two")),
    # a container needs a name (the pod spec's own schema, not the CRD's copy)
    "daskcluster worker container without name": lambda: _broken(
        "DaskCluster", lambda d: d["spec"]["worker"]["spec"]["containers"][0].pop("name")),
    "deployment replicas text": lambda: _broken("Deployment", lambda d: d["spec"].update(replicas="one")),
    "deployment unknown field": lambda: _broken("Deployment", lambda d: d["spec"]["template"]["spec"].update(
        restart="Always")),
    "job without containers": lambda: _broken("Job", "citytwin-ingest-air", lambda d: d["spec"]["template"]["spec"].pop("containers")),
    "service port text": lambda: _broken("Service", lambda d: d["spec"]["ports"][0].update(port="http")),
    "pvc without resources": lambda: _broken("PersistentVolumeClaim", lambda d: d["spec"].update(
        accessModes="ReadWriteMany")),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_manifest_is_refused(case: str) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate(BROKEN[case]())


# -- the pieces fit ---------------------------------------------------------------------------------

def _scheduler_name_template() -> str:
    """``SCHEDULER_NAME_TEMPLATE`` of the operator (its constants module, read as source, not imported)."""
    tree = ast.parse((_dask_kubernetes_dir() / "constants.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "SCHEDULER_NAME_TEMPLATE" and isinstance(node.value, ast.Constant)):
            return str(node.value.value)
    raise AssertionError("SCHEDULER_NAME_TEMPLATE not found in dask_kubernetes/constants.py")


def test_the_job_reaches_the_scheduler_service_the_operator_makes() -> None:
    cluster = _one("DaskCluster")
    name = cluster["metadata"]["name"]
    service = _scheduler_name_template().format(cluster_name=name)
    assert service == "citytwin-dask-scheduler"
    # the operator labels the scheduler's pods with these (its controller, read as source); the Service
    # the operator makes from our spec must select them
    controller = (_dask_kubernetes_dir() / "operator" / "controller" / "controller.py").read_text(encoding="utf-8")
    assert '"dask.org/cluster-name": cluster_name' in controller and '"dask.org/component": "scheduler"' in controller
    svc = cluster["spec"]["scheduler"]["service"]
    assert svc["selector"] == {"dask.org/cluster-name": name, "dask.org/component": "scheduler"}
    # port 8786 of the Service goes to the scheduler container's port 8786, where `dask scheduler` listens
    (port,) = [p for p in svc["ports"] if p["port"] == 8786]
    (container,) = cluster["spec"]["scheduler"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[port["targetPort"]] == 8786
    assert str(_dask_cli(_argv(container)).params["port"]) == "8786"  # where `dask scheduler` listens
    # the Job's --dask is that Service's address, and citytwin's own parser takes it
    (job_container,) = _one("Job", "citytwin-ingest-air")["spec"]["template"]["spec"]["containers"]
    ctx = parse_citytwin(_argv(job_container))
    assert ctx.params["dask"] == f"tcp://{service}:8786"
    assert scaleout.parse_dask(ctx.params["dask"]).address == f"tcp://{service}:8786"


def test_every_citytwin_command_in_the_manifests_parses() -> None:
    commands = [(where, _argv(c)) for where, pod in _pod_specs() for c in pod["containers"]
                if _argv(c)[:1] == ["citytwin"]]
    assert {w for w, _ in commands} == {"Deployment citytwin-serve", "Job citytwin-ingest-air", "Job citytwin-init"}
    for where, argv in commands:
        ctx = parse_citytwin(argv)
        assert ctx.command.name in ("serve", "ingest", "init"), where
        if ctx.command.name == "ingest":
            assert str(ctx.params["workspace"]) == WORKSPACE
            assert list(ctx.params["files"]) == ["s3://city/air/"]
        elif ctx.command.name == "init":
            assert str(ctx.params["directory"]) == WORKSPACE and ctx.params["database"] is None  # URL from the env
        else:
            assert ctx.params["host"] == "0.0.0.0" and ctx.params["port"] == 8000
    # the alternative command the Job's comment shows parses too
    text = (K8S / "job-ingest.yaml").read_text(encoding="utf-8")
    shown = re.search(r'#\s+(\["citytwin", "economy".*?\])\n', text.replace("\n#    ", " "), re.S)
    assert shown is not None
    parse_citytwin(yaml.safe_load(shown.group(1)))
    # and so do the ones docs/deployment.md runs in the pods
    docs = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    section = docs[docs.index("## 8. Kubernetes"):docs.index("## 9.")]
    shown_in_docs = re.findall(r"^kubectl .* -- (citytwin [^#\n]+?)\s*(?:#.*)?$", section, re.M)
    assert len(shown_in_docs) == 2, shown_in_docs
    for line in shown_in_docs:
        parse_citytwin(shlex.split(line))


@pytest.mark.parametrize("argv", [
    ["citytwin", "ingest", "s3://city/air/", "--datasett", "x", "--schema", "poi"],      # no such option
    ["citytwin", "ingset", "s3://city/air/"],                                              # no such command
    ["citytwin", "ingest", "s3://city/air/", "--schema", "poi"],                          # --dataset missing
    ["citytwin", "serve", "--port", "eight"],                                             # not an integer
])
def test_a_wrong_command_is_refused(argv: list[str]) -> None:
    with pytest.raises(ClickException):
        parse_citytwin(argv)


def _source_strings() -> set[str]:
    found: set[str] = set()
    for path in (REPO / "src" / "citytwin").rglob("*.py"):
        found.update(re.findall(r"\b(?:CITYTWIN|AWS)_[A-Z0-9_]+\b", path.read_text(encoding="utf-8")))
    return found


def _env_names() -> dict[str, str]:
    """Every environment variable name the manifests set (env, ConfigMap data) -> where."""
    names: dict[str, str] = {}
    for key in _one("ConfigMap")["data"]:
        names[key] = "ConfigMap citytwin-config"
    for where, pod in _pod_specs():
        for c in pod["containers"]:
            for e in c.get("env", []):
                names.setdefault(e["name"], f"{where} container {c['name']}")
    return names


def test_every_environment_variable_is_one_that_is_read() -> None:
    in_src = _source_strings()
    import uvicorn.config

    uvicorn_src = Path(uvicorn.config.__file__).read_text(encoding="utf-8")
    import dask.config
    import distributed  # noqa: F401  (its settings join dask.config)

    for name, where in _env_names().items():
        if name.startswith("CITYTWIN_"):
            assert name in in_src, f"{name} ({where}) is read nowhere in src/citytwin"
        elif name.startswith("AWS_"):
            # botocore reads them; citytwin documents the ones it relies on (foundation.objectstore)
            doc = (REPO / "src" / "citytwin" / "foundation" / "objectstore.py").read_text(encoding="utf-8")
            assert f"``{name}``" in doc, f"{name} ({where}) is not among the names foundation.objectstore documents"
        elif name.startswith("DASK_"):
            # Dask's own setting of that name exists (DASK_A__B_C is a.b-c)
            key = name[len("DASK_"):].lower().replace("__", ".").replace("_", "-")
            parent, _, leaf = key.rpartition(".")
            assert leaf in dask.config.get(parent, default={}), f"{name} ({where}): no Dask setting {key}"
        elif name == "FORWARDED_ALLOW_IPS":
            assert '"FORWARDED_ALLOW_IPS"' in uvicorn_src
        else:
            assert name in scaleout.LOCAL_ENV, f"{name} ({where}): who reads it?"
    # what the workers need is there: one BLAS thread as the local clusters' workers have
    (worker,) = _one("DaskCluster")["spec"]["worker"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert {k: env.get(k) for k in scaleout.LOCAL_ENV} == scaleout.LOCAL_ENV
    for key, value in scaleout.LOCAL_CONFIG.items():
        if key == "distributed.worker.profile.enabled":  # the one that concerns a worker's own process
            name = "DASK_" + key.upper().replace(".", "__").replace("-", "_")
            config = dask.config.collect(paths=[], env={name: env[name]})
            assert dask.config.get(key, config=config) == value
    # and the worker process the nanny spawns has no MALLOC_TRIM_THRESHOLD_ (glibc's own settings, as the local
    # clusters' workers: LOCAL_CONFIG): what the nanny would set, asked of distributed itself in a process with
    # the manifest's variable; without it, Dask's 65536
    probe = ("from distributed.nanny import _get_env_variables; "
             "print(sorted(_get_env_variables('distributed.nanny.pre-spawn-environ')))")
    name = "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON"
    for extra, expect in (({name: env[name]}, False), ({}, True)):
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("DASK_", "MALLOC_"))}
        out = subprocess.run([sys.executable, "-c", probe], env={**clean, **extra}, capture_output=True, text=True,
                             check=True, timeout=120).stdout
        assert ("MALLOC_TRIM_THRESHOLD_" in out) is expect, out


def test_no_secret_is_in_the_files() -> None:
    assert not [d for d in _resources() if d["kind"] == "Secret"]
    secret_like = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|TOKEN|DATABASE")
    for where, pod in _pod_specs():
        for c in pod["containers"]:
            for e in c.get("env", []):
                if secret_like.search(e["name"]):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    assert ref and "value" not in e, f"{where}: {e['name']} must come from a Secret"
                    assert ref["key"] == e["name"]
            for src in c.get("envFrom", []):
                assert "secretRef" not in src, f"{where}: name the keys (secretKeyRef) so they can be checked"
    assert not [k for k in _one("ConfigMap")["data"] if secret_like.search(k)]
    # the workers get the object store's keys, never the records database
    (worker,) = _one("DaskCluster")["spec"]["worker"]["spec"]["containers"]
    assert "CITYTWIN_DATABASE" not in {e["name"] for e in worker["env"]}
    # the secrets the docs tell to create are the ones referenced
    refs = {(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for _, pod in _pod_specs() for c in pod["containers"] for e in c.get("env", []) if "valueFrom" in e}
    docs = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    for name, key in refs:
        assert re.search(rf"create secret generic {name}\b[^\n]*--from-literal={key}=", docs), (name, key)


def test_every_pod_sees_the_workspace_at_one_path() -> None:
    pvc = _one("PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert _one("ConfigMap")["data"]["CITYTWIN_WORKSPACE"] == WORKSPACE
    mounts = {}
    for where, pod in _pod_specs():
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes", [])
                  if "persistentVolumeClaim" in v}
        for c in pod["containers"]:
            for m in c.get("volumeMounts", []):
                mounts[where] = (claims[m["name"]], m["mountPath"])
    # the scheduler holds no data; the operations center, the job (the client) and the workers do
    assert mounts == {w: (CLAIM, MOUNT) for w in ("Deployment citytwin-serve", "Job citytwin-ingest-air",
                                                  "Job citytwin-init", "DaskCluster worker")}


def _dask_cli(argv: list[str]) -> Any:
    """``dask scheduler|worker ARGS`` parsed by distributed's own command (not run)."""
    from distributed.cli import dask_scheduler, dask_worker

    assert argv[0] == "dask" and argv[1] in ("scheduler", "worker"), argv
    main = dask_scheduler.main if argv[1] == "scheduler" else dask_worker.main
    return main.make_context(f"dask {argv[1]}", list(argv[2:]))


def test_workers_run_one_thread_each() -> None:
    import click

    worker = _one("DaskCluster")["spec"]["worker"]
    (container,) = worker["spec"]["containers"]
    ctx = _dask_cli(_argv(container))
    assert ctx.params["nthreads"] == 1 and str(ctx.params["n_workers"]) == "1"
    # no scheduler address on the command line: the operator gives it (DASK_SCHEDULER_ADDRESS)
    assert ctx.params["scheduler"] is None
    scheduler = _dask_cli(_argv(_one("DaskCluster")["spec"]["scheduler"]["spec"]["containers"][0]))
    assert str(scheduler.params["port"]) == "8786"
    with pytest.raises(click.ClickException):  # a misspelt option is refused by that parser
        _dask_cli(["dask", "worker", "--nthread", "1"])
    assert container["resources"]["limits"]["cpu"] == "1"
    # the same image everywhere: Dask needs the same versions on the client and the workers
    images = {c["image"] for _, pod in _pod_specs() for c in pod["containers"]}
    assert len(images) == 1


def test_the_dockerfile_builds_from_the_lock() -> None:
    text = (K8S / "Dockerfile").read_text(encoding="utf-8")
    lines = [ln for ln in re.sub(r"\\\n", " ", text).splitlines() if ln.strip() and not ln.startswith("#")]
    froms = [ln.split()[1] for ln in lines if ln.startswith("FROM ")]
    assert froms[-1].startswith("python:3.11"), froms  # citytwin needs Python 3.11 (pyproject)
    assert any("-r /tmp/requirements.txt" in ln and "requirements.lock" in ln for ln in lines)
    # what the build copies from the repository exists (paths relative to the root, the build context)
    for ln in lines:
        if ln.startswith("COPY ") and "--from=" not in ln:
            *sources, _dest = shlex.split(ln)[1:]
            for s in sources:
                assert (REPO / s).exists(), f"Dockerfile copies {s}, which the repository lacks"
    # the files it takes from the web stage are the ones scripts/setup.sh vendors
    setup = (REPO / "scripts" / "setup.sh").read_text(encoding="utf-8")
    for f in ("maplibre-gl/dist/maplibre-gl.js", "maplibre-gl/dist/maplibre-gl.css", "echarts/dist/echarts.min.js"):
        assert f"node_modules/{f}" in text and f"node_modules/{f}" in setup
    assert "src/citytwin/service/web/vendor" in text and "VENDOR=src/citytwin/service/web/vendor" in setup
    # the image runs as uid 1000, the pods' runAsUser
    assert "USER 1000" in lines
    assert {pod.get("securityContext", {}).get("runAsUser") for _, pod in _pod_specs()} == {1000}
