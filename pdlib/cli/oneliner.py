"""One-liners for ``pdlib run``: one grid cell from flags, without writing a YAML.

    pdlib run --dataset alpaca --model qwen3-1.7b --engine vllm -p N=32 -p num_requests=500
    pdlib run --dataset sharegpt --model Qwen/Qwen2.5-7B-Instruct --engine native --notebook 02_kstar_vs_khat
    pdlib run --dataset alpaca --model ../shared/data/models/qwen3-1.7b -f params.yaml

``-p KEY=VALUE`` (repeatable) and ``-f FILE.yaml`` set notebook parameters as papermill's ``-p``
and ``-f`` do; a value is read as a YAML scalar (``32`` int, ``0.5`` float, ``true``/``True``
bool, ``null``/``None`` None, ``[1, 2]`` a list, anything else a string). ``-f`` comes first,
then each ``-p`` in order, then ``--dataset/--model/--engine``. The model is a
``params/models`` name, a Hugging Face id or a model folder (``pdlib.models.refs``).

The cell becomes a grid in memory (``pdlib.params.Grid``), checked against the notebooks'
parameter cells (``pdlib.grid.check_grid``: unknown parameters, wrong types) together with the
dataset, engine and model names: every problem one line, all at once, exit 2. The grid is then
written to ``<outputs>/run-<dataset>-<model>-<engine>/grid.yaml`` (a record of what ran;
``pdlib run --grid`` on it reruns it) and run by the same runner as any grid file.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import yaml

from .output import CLIError

ONELINER_FLAGS = ("dataset", "model", "engine", "params", "params_file", "notebook")
RESERVED = {"output_dir": "set by pdlib run (use --outputs)", "grid_name": "set by pdlib run (the run's name)"}


def add_arguments(p) -> None:
    """The one-liner's flags on the ``run`` parser."""
    g = p.add_argument_group("one-liner (instead of --grid: one cell, no YAML to write)")
    g.add_argument("--dataset", help="a params/datasets name (alpaca, sharegpt, azure-conv, ...)")
    g.add_argument("--model", help="a params/models name, a Hugging Face id (Qwen/Qwen2.5-7B-Instruct) or a "
                   "model folder with config.json (../shared/data/models/qwen3-1.7b)")
    g.add_argument("--engine", help="a params/engines name (sim, native, vllm, ...)")
    g.add_argument("-p", "--param", dest="params", action="append", default=[], metavar="KEY=VALUE",
                   help="a notebook parameter (repeatable; VALUE read as a YAML scalar, like papermill's -p)")
    g.add_argument("-f", "--parameters-file", dest="params_file", metavar="FILE.yaml",
                   help="notebook parameters from a YAML mapping (like papermill's -f); -p wins")
    g.add_argument("--notebook", action="append", default=[], metavar="NAME",
                   help="the notebook(s) to run (repeatable; a unique prefix such as 02 is enough; "
                        "default: 01_profiling, 02_kstar_vs_khat, 03_memory_validation)")


def requested(args) -> bool:
    return any(getattr(args, k, None) for k in ONELINER_FLAGS)


def parse_value(text: str):
    """A ``-p`` value as papermill reads it: a YAML scalar (or flow list/mapping); ``None`` as None."""
    if text.strip() == "None":
        return None
    try:
        v = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text
    if isinstance(v, str) and v == text.strip():   # YAML 1.1 leaves "1e-3" a string; papermill reads a float
        try:
            f = float(v)
        except ValueError:
            return v
        return f if math.isfinite(f) else v
    return v


def collect_params(args, problems: list[str]) -> dict:
    """``-f`` then every ``-p`` then the three flags, as one mapping of notebook parameters."""
    params: dict = {}
    if args.params_file:
        f = Path(args.params_file).expanduser()
        try:
            obj = yaml.safe_load(f.read_text())
        except OSError as e:
            problems.append(f"-f {args.params_file}: cannot read ({e.strerror or e})")
            obj = {}
        except yaml.YAMLError as e:
            problems.append(f"-f {args.params_file}: invalid YAML ({' '.join(str(e).split())})")
            obj = {}
        if obj is None:
            obj = {}
        if not isinstance(obj, dict):
            problems.append(f"-f {args.params_file}: must be a mapping of parameter: value, got {type(obj).__name__}")
            obj = {}
        params.update({str(k): v for k, v in obj.items()})
    for item in args.params:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"-p {item!r}: expected KEY=VALUE (e.g. -p N=32)")
            continue
        params[key.strip()] = parse_value(value)
    for k in ("dataset", "model", "engine"):
        if getattr(args, k):
            params[k] = getattr(args, k)
    for k, why in RESERVED.items():
        if k in params:
            problems.append(f"parameter {k!r} cannot be given: {why}")
            params.pop(k)
    return params


def resolve_notebooks(names: list[str], problems: list[str]) -> list[str]:
    from pdlib import paths
    from pdlib.params import DEFAULT_NOTEBOOKS
    if not names:
        return list(DEFAULT_NOTEBOOKS)
    have = sorted(p.stem for p in paths.notebooks_dir().glob("*.ipynb"))
    out = []
    for n in names:
        hits = [h for h in have if h == n] or [h for h in have if h.startswith(n)]
        if len(hits) == 1:
            out.append(hits[0])
        else:
            problems.append(f"--notebook {n!r}: {'matches ' + ', '.join(hits) if hits else 'no such notebook'} "
                            f"(notebooks: {', '.join(have)})")
    return list(dict.fromkeys(out))


def _name_problems(params: dict, declared_defaults: dict) -> list[str]:
    """Unknown dataset / engine / model names (or parameter files that do not load), one line each."""
    from pdlib import paths
    from pdlib.data.tokenizer import TOKENIZER_FILES
    from pdlib.params import load_spec, model_ref_problem, safe_component
    problems, specs = [], {}
    for kind in ("dataset", "model", "engine"):
        if params.get(kind) is None:
            params[kind] = declared_defaults.get(kind)
        v = params[kind]
        folder = paths.params_dir() / f"{kind}s"
        have = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        why = (model_ref_problem if kind == "model" else safe_component)(v, f"--{kind}")
        if why:
            problems.append(why)
        elif kind != "model" and not (folder / f"{v}.yaml").is_file():
            problems.append(f"--{kind} {v}: unknown {kind} (params/{kind}s has: {have})")
        else:
            try:
                specs[kind] = load_spec(kind, v)
            except (FileNotFoundError, ValueError) as e:
                problems.append(f"--{kind} {v}: {e}")
    tok = Path(str(specs.get("model", {}).get("tokenizer") or ""))
    if "dataset" in specs and tok.is_dir() and _needs_tokenizer(specs["dataset"]) and \
            not any((tok / f).is_file() for f in TOKENIZER_FILES[:3]):   # tokenizer.json, .model, vocab.json
        problems.append(f"--model {params['model']}: the folder has no tokenizer files, which the text dataset "
                        f"{params['dataset']!r} needs (use a folder with tokenizer.json or vocab.json + merges.txt, "
                        "or a length trace such as azure-conv)")
    return problems


def _needs_tokenizer(dataset_spec: dict) -> bool:
    from pdlib.data import DATASETS
    info = DATASETS.get(str(dataset_spec.get("spec", {}).get("dataset", dataset_spec.get("name"))))
    return info is not None and info.kind == "text"


def run_name(params: dict) -> str:
    from pdlib.models.refs import model_folder
    return f"run-{params['dataset']}-{model_folder(str(params['model']))}-{params['engine']}"


def build_grid(args, outputs: Path):
    """The one-liner's grid (``pdlib.params.Grid`` with one cell), checked; CLIError listing every
    problem (one line each) when something is wrong."""
    import ast

    from pdlib.grid import check_grid, notebook_parameters, notebook_path
    from pdlib.params import Grid, GridCell, GridError
    problems: list[str] = []
    params = collect_params(args, problems)
    notebooks = resolve_notebooks(args.notebook, problems)
    defaults = {}
    for nb in notebooks:
        try:
            for k, d in notebook_parameters(notebook_path(nb)).items():
                if k in ("dataset", "model", "engine") and k not in defaults:
                    defaults[k] = ast.literal_eval(d.get("default", "None"))
        except (FileNotFoundError, ValueError, SyntaxError):
            pass            # check_grid names the notebook
    if isinstance(params.get("model"), str) and Path(params["model"]).expanduser().is_dir():
        params["model"] = str(Path(params["model"]).expanduser().resolve())   # notebooks run from the project folder
    problems += _name_problems(params, defaults)
    grid = None
    if all(isinstance(params.get(k), str) for k in ("dataset", "model", "engine")):
        name = run_name(params)
        grid = Grid(name, Path(outputs) / name / "grid.yaml", notebooks, [], {}, [GridCell(dict(params))])
        try:
            check_grid(grid)
        except GridError as e:
            problems += [re.sub(r" \(in [^()]*\)$", "", p) for p in e.problems]   # one cell: no "(in CELL)"
    if problems:
        raise CLIError(f"{len(problems)} problem(s) with the one-liner:\n  - " + "\n  - ".join(problems))
    return grid


def write_grid(args, outputs: Path) -> Path:
    """Build and check the one-liner's grid, write it as ``<outputs>/<run name>/grid.yaml``
    (atomically) and return its path, for ``pdlib.grid.run_grid``."""
    from pdlib.records import atomic_write_text
    if args.grid:
        raise CLIError("give either --grid FILE or a one-liner (--dataset/--model/--engine/-p/-f/--notebook), not both")
    grid = build_grid(args, outputs)
    doc = {"name": grid.name, "notebooks": grid.notebooks, "once": [], "index_notebook": grid.index_notebook,
           "axes": [[grid.cells[0].params]]}
    head = ("# Written by a pdlib run one-liner; rerun it with: pdlib run --grid THIS_FILE\n")
    atomic_write_text(grid.path, head + yaml.safe_dump(doc, sort_keys=False))
    return grid.path
