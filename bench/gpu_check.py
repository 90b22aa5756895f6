"""One-GPU check of the real trainer: bf16 MFU, ZeRO-stage agreement, checkpoint/resume.

    DS_ACCELERATOR=cuda bash bench/gpu_check.sh        # on a GPU (about 2-4 min; at most ~7)
    bash bench/gpu_check.sh --dry-run                  # same code paths, tiny model, CPU (< 2 min)

Sections, each in its own subprocess under a timeout so one failure (a crash, a hang, a CUDA
error that poisons the context) cannot stop the others from running and printing:

  env     versions (python, torch, CUDA, DeepSpeed), GPU name, and that the trainer's import
          path pulls neither ray nor orchestrator/ (the GPU image has neither).
  mfu     a GPT-2-small-like model (768 x 12 layers x 12 heads, n_ctx 1024, vocab 50257) trained
          through the DeepSpeed engine (trainers/engine.py `build_engine`, bf16 params, fp32
          master weights) and through a plain torch AdamW loop (fp32 params, bf16 autocast),
          alternating timed blocks after a warm-up; tokens/s, TFLOP/s with the project's exact
          FLOPs per token (trainers/shapes.py `train_flops`), MFU against the data-sheet bf16 peak
          (trainers/runtime.py) and against a measured bf16 matmul, and engine/plain last; the
          noise-scale probe timed alone, as a % of step time at the default interval.
  zero    ZeRO stages 0-3 in one process (world of one), same seed and batches: the first steps'
          losses must agree within a stated tolerance (bf16 or fp32), and so must the gradient
          noise scale the probe (trainers/noise_probe.py) measures on the first batch (10 %).
  resume  three real `train` runs of a small model: uninterrupted; stopped after a few steps
          (a FLOP budget, so its last step is lost after the step-4 checkpoint, as in a kill);
          resumed from that checkpoint. The resumed run must repeat the uninterrupted run's
          steps and losses, with no step twice in the joined curve.

Prints a summary table and one PASS/FAIL line per check; exits 1 if any check failed. The
script never builds a DeepSpeed op (the trainer uses torch AdamW, not FusedAdam) and does not
torch.compile, so nothing waits on nvcc.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

SECTIONS = ("env", "mfu", "zero", "resume")
TIMEOUT_S = {"env": 60, "mfu": 150, "zero": 120, "resume": 120}  # GPU; 7.5 min in all at worst
RESULT_TAG = "GPU_CHECK_RESULT "


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny model on the CPU (also forced without CUDA)")
    parser.add_argument("--section", choices=SECTIONS, help="run one section in this process (internal)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    args = parser.parse_args()
    if args.section:
        return run_section(args.section, args.dry_run)
    return orchestrate(args.only, args.dry_run)


# ---------------------------------------------------------------------------------------------
# Orchestration: one subprocess per section, a summary table, the exit status
# ---------------------------------------------------------------------------------------------

def orchestrate(sections: list[str], dry_run: bool) -> int:
    started = time.monotonic()
    print(f"gpu_check {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}: {', '.join(sections)}"
          f"{' (dry-run)' if dry_run else ''}; DS_ACCELERATOR={os.environ.get('DS_ACCELERATOR')}", flush=True)
    results = []
    for name in sections:
        print(f"\n===== {name} =====", flush=True)
        results.append(_run_child(name, dry_run))
    print("\n===== summary =====")
    width = max(len(r["name"]) for r in results)
    for r in results:
        print(f"{r['name']:<{width}}  {'PASS' if r['ok'] else 'FAIL'}  {r['summary']}")
    for r in results:
        print(f"{'PASS' if r['ok'] else 'FAIL'}: {r['name']}")
    failed = [r["name"] for r in results if not r["ok"]]
    print(f"gpu_check: {'FAIL (' + ', '.join(failed) + ')' if failed else 'PASS'} "
          f"in {time.monotonic() - started:.0f} s", flush=True)
    return 1 if failed else 0


def _run_child(name: str, dry_run: bool) -> dict:
    """Run one section in a fresh interpreter, echo its output, return its result line."""
    cmd = [sys.executable, "-u", os.path.abspath(__file__), "--section", name] + (["--dry-run"] if dry_run else [])
    timeout = TIMEOUT_S[name]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # own process group: a timeout kills it whole
    try:
        out, _ = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        rc = None
    result = None
    for line in out.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
        else:
            print(line)
    elapsed = time.monotonic() - start
    if result is None:
        why = f"timed out after {timeout} s" if rc is None else f"exited {rc} without a result (crash?)"
        result = {"name": name, "ok": False, "summary": why}
    elif rc != 0 and result["ok"]:
        result = {**result, "ok": False, "summary": result["summary"] + f"; but exited {rc}"}
    result["summary"] += f"  [{elapsed:.0f} s]"
    print(f"--- {name}: {'PASS' if result['ok'] else 'FAIL'} ({elapsed:.0f} s)", flush=True)
    return result


def run_section(name: str, dry_run: bool) -> int:
    """In the child: set the accelerator before DeepSpeed is imported, run, print the result."""
    if dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # setup_runtime picks CUDA whenever torch sees it
        os.environ["DS_ACCELERATOR"] = "cpu"
    else:
        import torch

        if not torch.cuda.is_available():
            print("no CUDA device: running the dry-run (tiny model, CPU) instead", flush=True)
            return run_section(name, dry_run=True)
        os.environ.setdefault("DS_ACCELERATOR", "cuda")
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [here, os.path.dirname(here)]  # bench/ and the repo root
    import gpu_check_sections

    try:
        ok, summary = getattr(gpu_check_sections, f"check_{name}")(dry_run)
    except Exception as err:  # noqa: BLE001 -- report any failure as this check's FAIL
        import traceback

        traceback.print_exc()
        ok, summary = False, f"{type(err).__name__}: {str(err)[:300]}"
    print(RESULT_TAG + json.dumps({"name": name, "ok": bool(ok), "summary": summary}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
