"""Repository rules that are easy to break by accident."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_notebooks_committed_without_outputs():
    nbs = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert nbs, "no notebooks found"
    for nb_path in nbs:
        nb = json.loads(nb_path.read_text())
        assert nb["metadata"].get("kernelspec", {}).get("name") == "python3", nb_path.name
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert code and "parameters" in code[0].get("metadata", {}).get("tags", []), \
            f"{nb_path.name}: first code cell must be tagged 'parameters'"
        for c in code:
            assert not c.get("outputs") and c.get("execution_count") is None, \
                f"{nb_path.name}: commit notebooks without outputs (make strip-notebooks)"


def test_ci_runs_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    cmds = re.findall(r"^\s*(make \w+)\s*(?:#.*)?$", readme, flags=re.M)
    assert cmds[:2] == ["make report", "make test"], cmds[:2]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_shared_data_not_committed():
    banned = ("alpaca_5000", "ShareGPT_V3", "AzureLLMInferenceTrace", "burstgpt_slice", "vocab.json", "merges.txt")
    for p in ROOT.rglob("*"):
        if ".venv" in p.parts or ".git" in p.parts or "outputs" in p.parts:
            continue
        assert not any(b in p.name for b in banned), f"data file copied into the repo: {p}"
