"""Execute the homework notebooks in order with papermill, in place.

    python -m common.run_all                      # every homework, offline defaults
    python -m common.run_all --only hw1 hw3       # a subset
    python -m common.run_all -p EPOCHS 2 -p SEED 1  # papermill parameters, passed through
    python -m common.run_all --profile check       # make test's check rows (common.profiles)

Each notebook runs into a temporary file that replaces the committed one only on success,
so a failure never leaves a half-executed notebook behind; the failed copy is kept under
``artifacts/failed/`` and the failing cell is named. The results table is printed at the end and
``results/README.md`` (comparison tables, Pareto plots) is regenerated.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

from common.env import REPO_ROOT, artifacts_dir


def nbval_counts(root: Path = REPO_ROOT) -> str:
    """How many code cells ``make test`` compares exactly (tagged ``nbval-check-output``), in
    total and per notebook, as the sentence docs/testing.md carries (a test holds it to this)."""
    import json

    per, tagged, code = [], 0, 0
    for path in notebooks(root):
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        n = sum("nbval-check-output" in c.get("metadata", {}).get("tags", []) for c in cells)
        per.append(f"{path.stem.split('_')[0]} {n}")
        tagged, code = tagged + n, code + len(cells)
    return f"{tagged} of the {code} code cells ({', '.join(per)})"


def notebooks(root: Path = REPO_ROOT) -> list[Path]:
    """The homework notebooks ``hwN_*/hwN_*.ipynb`` in homework order, then the capstone
    (``results/capstone.ipynb``, which combines techniques of several homeworks)."""
    found = [p for p in sorted(root.glob("hw*_*/hw*_*.ipynb"))
             if p.stem == p.parent.name and ".ipynb_checkpoints" not in p.parts]
    found = sorted(found, key=lambda p: int(p.stem[2:].split("_")[0]))
    capstone = root / "results" / "capstone.ipynb"
    return found + ([capstone] if capstone.exists() else [])


def select(only: list[str] | None, root: Path = REPO_ROOT) -> list[Path]:
    """Notebooks named by ``only`` (``hw1`` or ``hw1_baseline``); unknown names raise."""
    books = notebooks(root)
    if not only:
        return books
    by_name = {}
    for p in books:
        by_name[p.stem] = p
        by_name[p.stem.split("_")[0]] = p  # "hw1" for hw1_baseline; "capstone" for itself
    unknown = [o for o in only if o not in by_name]
    if unknown:
        raise SystemExit(f"unknown homework(s) {unknown}; valid: "
                         f"{', '.join(p.stem.split('_')[0] for p in books)}")
    return [p for p in books if p in {by_name[o] for o in only}]


def parse_parameters(pairs: list[list[str]] | None) -> dict:
    """``-p NAME VALUE`` pairs; values are read as YAML literals (3, 0.5, true, [1, 2], text)."""
    return {name: yaml.safe_load(value) for name, value in (pairs or [])}


def declared_parameters(nb: Path) -> list[str]:
    """Names assigned in ``nb``'s cell tagged ``parameters`` (what papermill can override)."""
    import papermill as pm

    return list(pm.inspect_notebook(str(nb)))


def check_parameters(paths: list[Path], parameters: dict) -> None:
    """Refuse, before any notebook runs, a parameter that some selected notebook does not declare:
    papermill would only warn and inject it as a variable nothing reads."""
    problems = []
    for nb in paths:
        declared = declared_parameters(nb)
        unknown = sorted(set(parameters) - set(declared))
        if unknown:
            problems.append(f"{nb.name} does not take {', '.join(unknown)}; "
                            f"its parameters: {', '.join(declared)}")
    if problems:
        raise SystemExit("unknown parameter(s), nothing was run (--only selects the notebooks that "
                         "take them):\n  " + "\n  ".join(problems))


#: library warnings (``path/x.py:12: SomeWarning: ...``, followed by an indented source line): noise
_WARNING = re.compile(r"^\S+\.py:\d+: \w*Warning: ")
#: other library log lines: glog / absl (``W1201 11:58:45.490000 30367 file.py:630] ...``), Python
#: logging's default format below ERROR (``INFO:nncf:...``, ``WARNING:root:...``), TFLite's banner, the
#: AI Edge Quantizer's own progress bars (two per TFLite quantization)
_LOG = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]|(DEBUG|INFO|WARNING):[\w.]+:|"
                  # absl before its InitializeLog (TensorFlow's import), then its epoch-stamped lines, matched above
                  r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$|"
                  r"INFO: Created TensorFlow Lite XNNPACK delegate|"
                  r"(Generating Quantization Parameters|Applying Transformations to tensors):: |"
                  # the AI Edge Quantizer's summary after each quantization
                  r"(Model name|Original model size|Quantized model size|Quantization Ratio): |Total time: [\d.]+ ms$|"
                  # OpenVINO's converter naming a node it kept in float (ultralytics' int8 export)
                  r"\d+ __module\.\S+$)")
#: what a reader should never see in a committed output: this machine's absolute paths
_MACHINE_PATH = re.compile(r"(?<![\w.])/(root|tmp|home|work)/")
#: a progress-bar frame that a library warning was printed into (no newline between): the frame goes,
#: the warning then starts its own line and is dropped with the rest
_FRAME_BEFORE_WARNING = re.compile(r"[^\n\r]*\](?=(?:/|<venv>)\S*\.py:\d+: \w*Warning: )")
#: ``rich`` console output (litert-torch's converter log) as Jupyter shows it
_RICH = '<pre style="white-space:pre;overflow-x:auto;line-height:normal;font-family:Menlo'


def _library_log(out: dict) -> bool:
    """Whether an output is a library's rich-console log line (a display_data of its own)."""
    html = out.get("data", {}).get("text/html", "")
    return out.get("output_type") == "display_data" and "".join(html).startswith(_RICH)


def _carriage_returns(text: str) -> str:
    """What a terminal shows: on each line, only the text after its last carriage return."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def noise(nb: dict) -> dict[str, int]:
    """Lines of a notebook's text outputs: ``lines`` in all, ``library`` lines that are library
    warnings or logs (:data:`_WARNING`, :data:`_LOG`), ``frames`` progress-bar frames overwritten
    by a carriage return, ``paths`` lines with an absolute machine path; and ``largest``, the most
    characters one cell's text outputs take (the longest representation of each output)."""
    counts = {"lines": 0, "library": 0, "frames": 0, "paths": 0, "largest": 0}
    for cell in nb.get("cells", []):
        size = 0
        for out in cell.get("outputs", []):
            texts = ["".join(out.get("text", ""))] + ["".join(v) for k, v in out.get("data", {}).items()
                                                     if k.startswith("text/")]
            size += max(len(t) for t in texts)
            shown = texts[0] if out.get("output_type") == "stream" else "".join(out.get("data", {}).get("text/plain", ""))
            lines = [line for line in shown.split("\n") if line.strip()]
            counts["lines"] += len(lines)
            counts["library"] += sum(bool(_WARNING.match(line) or _LOG.match(line)) for line in lines)
            counts["frames"] += sum(line.count("\r") for line in lines)
            counts["paths"] += sum(bool(_MACHINE_PATH.search(line)) for line in lines)
            counts["library"] += _library_log(out)
        counts["largest"] = max(counts["largest"], size)
    return counts


def tidy_outputs(nb: dict, removed: list[str] | None = None) -> dict:
    """The outputs as a reader sees them: each cell's stream outputs of one name merged into one
    (as nbval merges them before comparing; in cells nbval does not compare, only between two
    tables or plots, so that text stays where it was printed), a progress bar reduced to its final line, and in
    cells nbval does not compare, library warnings and log lines dropped (:data:`_WARNING`,
    :data:`_LOG`, ``rich`` console logs) and this machine's paths shortened (the repository to
    ``.``, the Python environment to ``<venv>``). What is dropped is appended to ``removed``, one
    ``cell N: line`` each, for the run's log."""
    venv = str(Path(sys.prefix))
    removed = [] if removed is None else removed
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code" or not cell.get("outputs"):
            continue
        compared = "nbval-check-output" in cell.get("metadata", {}).get("tags", [])
        merged, streams, every = [], {}, []
        for out in cell["outputs"]:
            if out.get("output_type") == "stream":
                text = "".join(out.get("text", ""))
                if out["name"] in streams:
                    streams[out["name"]]["text"] += text
                    continue
                out = {**out, "text": text}
                streams[out["name"]] = out
                every.append(out)
            elif not compared:      # text printed after a table or plot stays after it
                streams = {}
            merged.append(out)
        for out in every:
            text = _carriage_returns(out["text"])
            if not compared:
                text = _FRAME_BEFORE_WARNING.sub("", text)
                lines, keep, skip_next = text.split("\n"), [], False
                for line in lines:
                    if skip_next and line.startswith("  "):
                        skip_next = False
                        removed.append(f"cell {index}: {line}")
                        continue
                    skip_next = bool(_WARNING.match(line))
                    if not skip_next and not _LOG.match(line):
                        keep.append(line)
                    else:
                        removed.append(f"cell {index}: {line}")
                text = "\n".join(keep).replace(venv, "<venv>").replace(str(REPO_ROOT), ".")
            out["text"] = text
        removed += [f"cell {index}: (a rich-console log block)" for o in merged if not compared and _library_log(o)]
        cell["outputs"] = [o for o in merged if (o.get("output_type") != "stream" or o["text"].strip())
                           and (compared or not _library_log(o))]
    return nb


def run(paths: list[Path], parameters: dict, kernel: str | None = None) -> float:
    """Run each notebook in place; returns total seconds. Exits non-zero on the first failure;
    a parameter some notebook does not declare stops the run before it starts."""
    import papermill as pm

    check_parameters(paths, parameters)
    total = 0.0
    for i, nb in enumerate(paths, 1):
        print(f"[{i}/{len(paths)}] {nb.parent.name}/{nb.name}", flush=True)
        fd, tmp = tempfile.mkstemp(suffix=".ipynb", dir=nb.parent, prefix=f".{nb.stem}-")
        os.close(fd)
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), tmp, parameters=parameters, kernel_name=kernel,
                                cwd=str(nb.parent), progress_bar=True, log_output=False)
        except pm.PapermillExecutionError as e:
            failed = artifacts_dir() / "failed" / nb.name
            failed.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(tmp, failed)
            print(f"\nFAILED {nb.name} in cell {e.cell_index} (execution count {e.exec_count}): "
                  f"{e.ename}: {e.evalue}\nthe executed copy is at {failed}; "
                  f"{nb.name} was left as it was", file=sys.stderr)
            raise SystemExit(1)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        import nbformat

        executed, removed = nbformat.read(tmp, as_version=4), []
        nbformat.write(nbformat.from_dict(tidy_outputs(executed, removed)), tmp)
        log = artifacts_dir() / "logs" / f"{nb.stem}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("\n".join(removed) + "\n")
        os.replace(tmp, nb)
        seconds = time.perf_counter() - t0
        total += seconds
        left = noise(json.loads(nb.read_text()))
        print(f"    done in {seconds:.0f} s; {len(removed)} library log line(s) kept out of the notebook, in "
              f"{log.relative_to(REPO_ROOT) if log.is_relative_to(REPO_ROOT) else log}; library noise left: "
              f"{left['library'] + left['frames']} of {left['lines']} output lines", flush=True)
    return total


def run_check(paths: list[Path], kernel: str | None = None) -> float:
    """Execute the check copy (:mod:`common.profiles`) of each selected notebook that has a check
    profile, with papermill, as ``make test`` does: rows go to ``results/check/experiments.csv``
    (rows of earlier settings of each homework replaced), timings are quick and the CPU is used.
    The committed notebooks are not touched; the executed copies are kept under
    ``artifacts/check/``. Returns total seconds; exits non-zero on the first failure."""
    import papermill as pm

    from common import compare, profiles

    books = [p for p in paths if profiles.homework(p) in profiles.CHECK]
    if not books:
        raise SystemExit(f"none of {[p.stem for p in paths]} has a check profile; profiled: {', '.join(profiles.CHECK)}")
    os.environ.update({"NNC_RESULTS": str(profiles.CHECK_DIR), "NNC_QUICK_TIMING": "1", "NNC_DEVICE": "cpu"})
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    out = artifacts_dir() / "check"
    out.mkdir(parents=True, exist_ok=True)
    total = 0.0
    for i, nb in enumerate(books, 1):
        print(f"[{i}/{len(books)}] {nb.parent.name}/{nb.name}, check profile {profiles.CHECK[profiles.homework(nb)]}", flush=True)
        copy, t0 = profiles.write_copy(nb), time.perf_counter()
        try:
            pm.execute_notebook(str(copy), str(out / nb.name), kernel_name=kernel, cwd=str(nb.parent),
                                progress_bar=True, log_output=False)
        except pm.PapermillExecutionError as e:
            print(f"\nFAILED {nb.name} (check profile) in cell {e.cell_index}: {e.ename}: {e.evalue}\n"
                  f"the executed copy is at {out / nb.name}", file=sys.stderr)
            raise SystemExit(1)
        finally:
            copy.unlink(missing_ok=True)
        seconds = time.perf_counter() - t0
        total += seconds
        print(f"    done in {seconds:.0f} s", flush=True)
    print(f"machine stamp written to {compare.write_machine(profiles.CHECK_DIR / 'experiments.csv')}")
    print(f"\ncheck rows of {len(books)} notebook(s) written in {total:.0f} s")
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="HW", help="homeworks to run, e.g. hw1 hw3")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                        help="papermill parameter passed to every selected notebook")
    parser.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    parser.add_argument("--profile", choices=("course", "check"), default="course",
                        help="course: run the notebooks in place (default); check: regenerate "
                             "results/check/experiments.csv from the check copies (common.profiles)")
    args = parser.parse_args(argv)
    paths = select(args.only)
    if not paths:
        raise SystemExit("no homework notebooks found")
    if args.profile == "check":
        if args.parameter:
            raise SystemExit("--profile check takes its parameters from common.profiles.CHECK; drop -p")
        run_check(paths, args.kernel)
        return 0
    total = run(paths, parse_parameters(args.parameter), args.kernel)
    print(f"\nall {len(paths)} notebook(s) ran in {total:.0f} s\n")
    from common import report, summary as results_summary

    print(report.markdown(report.load()))
    summary = results_summary.write_summary()
    print(f"\ncomparison tables and Pareto plots written to {summary}")
    for readme in results_summary.write_blocks(report.load()):
        print(f"results block rewritten in {readme.relative_to(REPO_ROOT)}")
    if args.only is None and not args.parameter:   # a complete default run: every default row is this machine's
        from common import compare   # the machine these rows were made on decides make test's tolerances

        print(f"machine stamp written to {compare.write_machine(report.registry_path())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
