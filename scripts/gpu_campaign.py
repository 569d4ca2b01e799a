#!/usr/bin/env python3
"""One lease of a GPU machine, planned as one call: a width-1.0 DeepLab teacher, then students.

Written for a lent GPU with many cores and a hard time limit (session 17: one H200, 16 cores,
about nine minutes of compute in one call). Every job is a plain ``training.train`` /
``training.prune`` command, so each result can be reproduced on the CPU from the commands this
script logs (``campaign.json``), only slower. The plan:

phase 1, side by side
  t10        DeepLabV3+ MNv2-1.0 (training/configs/deeplab_mnv2_1_0.yaml), validation runs held out
  t10_final  the same on all runs (data.train_on_val): the teacher of the final students
  base       the shipped default's recipe (four stages, 8 + 4 + 4 + 4 epochs), validation runs
             held out: the same-machine baseline the students are compared with
phase 2, once both teachers are done, side by side
  kd         the default's four stages with distillation from t10 (stages 1-2 held out; stages 3-4
             as a held-out twin from t10 and as a final run from t10_final, the shipped recipe's split)
  esp        ESPNet from the authors' Cityscapes start, one schedule distilled from t10 (twin)
  esp_final  the same on all runs, distilled from t10_final
  fcn        the shipped FCN8s file rebuilt as a checkpoint, recovery distilled from t10

``--plan replicate`` (a second, shorter lease) runs the default's recipe again with other seeds:
twice without a teacher (train.seed 1 and 2), once in the CPU runs' exact setting (seed 0, one
loader process) and once distilled from a 1.0 teacher trained with seed 1, held-out twins only,
to see how far runs of one recipe fall apart and whether the machine moves them.

``--plan res384`` follows session 18's CPU hint that a larger input pays: stage 1 of the default at
384x512 and at 256x320 with seeds 1 and 2 (held out), the 1.0 teacher at 384x512 and ESPNet at
384x512 distilled from it. (FCN8s is not in it: at 384x512 on labels alone it did not beat its
256x320 control on the CPU, session 19.)

``--plan res288`` is the default at 288x384, the largest input session 19 measured inside the speed
budget (pipeline 0.43 of the reference, against 0.38 at 256x320; stage 1 on the CPU 52.1 against
51.0 at 256x320, one pair): the 1.0 teachers at 288x384 (held out and final), the default's four
stages distilled from them at 288x384 (held-out twin and final run: the candidate to ship), and the
undistilled four stages at 288x384 and at 256x320 side by side (held out: the paired size comparison).

ESPNet's and FCN8s's epochs are sized from the teacher's measured epoch time so that their
schedules end before the deadline; jobs still running at the deadline are stopped (their
per-epoch last.pt / best.pt stay). The weights come back without optimiser state.

What travels is built here by ``scripts/device/prepare.sh`` (carry/atwork.tar, carry/pkgs.tar.xz,
carry/starts.tar.xz: 66 MB with the repository, under the 64 MiB limit); the command there was

    export PYTHONPATH=/tmp/site:$PWD NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 \
        OPENCV_FOR_THREADS_NUM=1
    python3 -c "import tarfile as t; t.open('carry/pkgs.tar.xz').extractall('/tmp/site'); \
        t.open('carry/starts.tar.xz').extractall('carry/starts'); t.open('carry/atwork.tar').extractall('carry')"
    python3 scripts/gpu_campaign.py --data carry/atwork --starts carry/starts --out $OUT --deadline 535 \
        2>&1 | tee $OUT/campaign.log
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

log = logging.getLogger("gpu_campaign")
PY = sys.executable
SIZE_384 = ("data.height=384", "data.width=512")  # --set values: the input of the res384 plan
SIZE_288 = ("data.height=288", "data.width=384")  # the res288 plan's


class Campaign:
    def __init__(self, args: argparse.Namespace):
        self.a = args
        self.t0 = time.monotonic()
        self.runs = Path(args.runs)
        self.runs.mkdir(parents=True, exist_ok=True)
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.procs: dict[str, subprocess.Popen] = {}
        self.record: dict = {"jobs": [], "deadline_s": args.deadline, "smoke": args.smoke}

    # ------------------------------------------------------------------ helpers
    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def left(self) -> float:
        return self.a.deadline - self.elapsed()

    def common(self, workers: int) -> list[str]:
        c = [
            "--set", f"data.root={self.a.data}",
            "--set", "train.threads=1",
            "--set", f"data.num_workers={workers}",
            "--set", "log.progress=false",
        ]  # fmt: skip
        if self.a.smoke:
            c += ["--set", "train.max_iters_per_epoch=2"]
        return c

    def epochs(self, n: int) -> int:
        return 1 if self.a.smoke else n

    def run(self, name: str, argv: list[str]) -> int:
        """One job to its end or the deadline; stdout and stderr to runs/<name>.log."""
        if self.left() < 5:
            log.warning("%s not started: %.0f s to the deadline", name, self.left())
            self._note(name, argv, None, 0.0, "not started")
            return -1
        start = self.elapsed()
        log.info("start %s (t=%.0f s): %s", name, start, shlex.join(argv))
        with open(self.runs / f"{name}.log", "w") as f:
            p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
            with self.lock:
                self.procs[name] = p
            try:
                rc = p.wait(timeout=max(1.0, self.left()))
                status = "done" if rc == 0 else f"failed rc {rc}"
            except subprocess.TimeoutExpired:
                _stop(p)
                rc, status = -2, "stopped at the deadline"
        with self.lock:
            self.procs.pop(name, None)
        took = self.elapsed() - start
        log.info("%s: %s after %.0f s", name, status, took)
        self._note(name, argv, rc, took, status)
        return rc

    def _note(self, name: str, argv: list[str], rc: int | None, took: float, status: str) -> None:
        with self.lock:
            self.record["jobs"].append(
                {"name": name, "command": shlex.join(argv), "rc": rc, "seconds": round(took, 1), "status": status}
            )

    def train(self, name: str, config: str, workers: int, *sets: str) -> int:
        argv = [PY, "-m", "training.train", "--config", config, "--out", str(self.runs / name)]
        argv += self.common(workers)
        for s in sets:
            argv += ["--set", s]
        return self.run(name, argv)

    # ------------------------------------------------------------------ jobs
    def synth(self) -> int:
        n = 16 if self.a.smoke else 1100
        argv = [PY, "-m", "training.data.synth", "--root", self.a.data, "--out", "runs/synth/train_src",
                "--num-images", str(n), "--split", "train", "--seed", "0", "--scale-mode", "source",
                "--workers", str(self.a.synth_workers)]  # fmt: skip
        return self.run("synth", argv)

    def fcn_start(self) -> int:
        argv = [PY, "-m", "training.models.onnx_import", "--onnx", "models/fcn8s_w0125_pruned_onnx_int8.onnx",
                "--calib-root", self.a.data, "--out", str(self.runs / "fcn_start.pt"), "--threads", "2"]  # fmt: skip
        return self.run("fcn_start", argv)

    def teacher(self, final: bool, seed: int = 0, workers: int = 4, size: tuple[str, ...] = ()) -> int:
        name = ("t10_final" if final else "t10") + _size_tag(size) + (f"_seed{seed}" if seed else "")
        return self.train(
            name, "training/configs/deeplab_mnv2_1_0.yaml", workers,
            "init.reference_tflite=null", f"init.checkpoint={self.a.starts}/start_dl10.pt",
            f"train.epochs={self.epochs(12)}", f"data.train_on_val={str(final).lower()}", *_seed(seed), *size,
        )  # fmt: skip

    def stage1(self, prefix: str, seed: int = 0, size: tuple[str, ...] = (), workers: int = 2, *sets: str) -> int:
        """Stage 1 of the default (ablation C's config, 8 epochs) into ``<prefix>_s1``; ``sets``: more
        ``--set`` values (distillation)."""
        return self.train(
            f"{prefix}_s1", "training/configs/deeplab_mnv2.yaml", workers,
            "init.reference_tflite=null", f"init.checkpoint={self.a.starts}/start_dl05.pt",
            *sets, *_seed(seed), f"train.epochs={self.epochs(8)}", *size,
        )  # fmt: skip

    def default_stages(
        self,
        prefix: str,
        teacher: str | None,
        teacher_final: str | None,
        seed: int = 0,
        workers: int = 0,
        size: tuple[str, ...] = (),
    ) -> None:
        """The shipped default's four stages; with teachers, stages 3-4 also as a final run. ``workers``
        (data loader processes per stage) 0: three for stages 1-2, two for 3-4; ``size``: the input of
        every stage (the stage configs' own when empty)."""
        w12, w34 = (workers, workers) if workers else (3, 2)
        kd = _distill(teacher) if teacher else []
        d = kd + _seed(seed)  # every stage of the chain draws its batches from this seed
        r = self.runs
        if self.stage1(prefix, seed, size, w12, *kd) != 0:
            return
        if self.train(f"{prefix}_s2", "training/configs/deeplab_mnv2_finetune.yaml", w12,
                      f"init.checkpoint={r}/{prefix}_s1/best.pt", *d, *size, f"train.epochs={self.epochs(4)}") != 0:  # fmt: skip
            return

        def s34(suffix: str, on_val: bool, dist: list[str]) -> None:
            if self.train(f"{prefix}_s3{suffix}", "training/configs/deeplab_mnv2_final.yaml", w34,
                          f"init.checkpoint={r}/{prefix}_s2/best.pt", f"data.train_on_val={str(on_val).lower()}",
                          *dist, *size, f"train.epochs={self.epochs(4)}") != 0:  # fmt: skip
                return
            self.train(f"{prefix}_s4{suffix}", "training/configs/deeplab_mnv2_s4_final.yaml", w34,
                       f"init.checkpoint={r}/{prefix}_s3{suffix}/last.pt", f"data.train_on_val={str(on_val).lower()}",
                       *dist, *size, f"train.epochs={self.epochs(4)}")  # fmt: skip

        if teacher_final is None:
            s34("", False, d)
            return
        df = _distill(teacher_final) + _seed(seed)
        _parallel([lambda: s34("", False, d), lambda: s34("_final", True, df)])

    def espnet(self, final: bool, teacher: str, epochs: int, size: tuple[str, ...] = ()) -> int:
        name = ("esp_final" if final else "esp") + _size_tag(size)
        return self.train(
            name, "training/configs/espnet.yaml", 2,
            "init.espnet_weights=null", f"init.checkpoint={self.a.starts}/start_espnet.pt",
            *_distill(teacher), f"train.epochs={epochs}", f"data.train_on_val={str(final).lower()}", *size,
        )  # fmt: skip

    def fcn(self, teacher: str, epochs: int) -> int:
        argv = [PY, "-m", "training.prune", "--checkpoint", str(self.runs / "fcn_start.pt"),
                "--config", "training/configs/prune_fcn8s.yaml", "--out", str(self.runs / "fcn"),
                "--set", "prune.steps=0", "--set", f"prune.recovery_epochs={epochs}",
                "--set", "train.max_iters_per_epoch=135", "--set", "train.lr=1.0e-3"]  # fmt: skip
        for s in _distill(teacher):
            argv += ["--set", s]
        return self.run("fcn", argv + self.common(2))

    # ------------------------------------------------------------------ plans
    def main(self) -> None:
        self.record["gpu"] = _capture(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv"])
        self.record["cpus"] = os.cpu_count()
        self.record["plan"] = self.a.plan
        if self.synth() != 0:
            return
        if self.a.plan == "replicate":
            self.replicate()
        elif self.a.plan == "res384":
            self.res384()
        elif self.a.plan == "res288":
            self.res288()
        else:
            self.distill()

    def replicate(self) -> None:
        """Other seeds of the default's recipe with and without the teacher (held-out twins only):
        how far runs of one recipe fall apart, against the gap between the two recipes. ``base_w1`` is
        the CPU runs' exact setting (seed 0, one loader process): session 17's GPU ``base`` (seed 0,
        three processes) ended stage 1 five points under the two CPU runs of that config."""
        arms = [(f"base_seed{k}", None, None, k, 0) for k in (1, 2)] + [("base_w1", None, None, 0, 1)]
        bases = [threading.Thread(target=self.default_stages, args=a) for a in arms]
        for b in bases:
            b.start()
        if self.teacher(False, seed=1, workers=6) == 0:
            self.default_stages("kd_seed1", str(self.runs / "t10_seed1" / "last.pt"), None, seed=1)
        for b in bases:
            b.join()

    def teacher_epoch_seconds(self, t_start: float) -> float:
        """Seconds per epoch of the teacher(s) started at ``t_start`` and just done (12 epochs), recorded."""
        per_epoch = (self.elapsed() - t_start) / 12.0
        self.record["teacher_seconds_per_epoch"] = round(per_epoch, 1)
        return per_epoch

    def student_epochs(self, teacher_epoch_s: float) -> int:
        """Epochs for the students started now that end before the deadline, recorded. Several students
        side by side share the cores: assume epochs twice as long as the teacher's."""
        budget = int((self.left() - 20) / (2.0 * teacher_epoch_s)) if teacher_epoch_s > 0 else 0
        n = self.epochs(max(4, min(self.a.max_student_epochs, budget)))
        self.record["student_epochs"] = n
        return n

    def res384(self) -> None:
        """Input 384x512 (session 18 on the CPU: stage 1 of the default at 384x512 beat its 256x320
        control by +2.4 [-0.8, +6.2], one pair of runs). That pair again with seeds 1 and 2, the 1.0
        teacher at 384x512 (held out; 57.4 at 256x320), then ESPNet at 384x512 distilled from it
        (held out; 53.1 at 256x320), its epochs sized from the teacher's as in :meth:`distill`."""
        arms = [(f"r{tag}_seed{k}", k, size) for k in (1, 2) for tag, size in (("384", SIZE_384), ("256", ()))]
        pairs = [threading.Thread(target=self.stage1, args=a) for a in arms]
        for p in pairs:
            p.start()
        t_start = self.elapsed()
        if self.teacher(False, workers=6, size=SIZE_384) == 0:
            n = self.student_epochs(self.teacher_epoch_seconds(t_start))
            self.espnet(False, str(self.runs / "t10_384" / "last.pt"), n, size=SIZE_384)
        for p in pairs:
            p.join()

    def res288(self) -> None:
        """The default at 288x384 (see the module docstring): the teachers and the two undistilled
        chains side by side, then the distilled chain (twin and final) from those teachers."""
        bases = [
            threading.Thread(target=self.default_stages, args=(name, None, None), kwargs={"size": size})
            for name, size in (("base288", SIZE_288), ("base256", ()))
        ]
        for b in bases:
            b.start()
        rc: dict[str, int] = {}
        _parallel([
            lambda: rc.__setitem__("t", self.teacher(False, workers=4, size=SIZE_288)),
            lambda: rc.__setitem__("tf", self.teacher(True, workers=4, size=SIZE_288)),
        ])  # fmt: skip
        if rc.get("t") == 0 and rc.get("tf") == 0:
            self.default_stages(
                "kd288", str(self.runs / "t10_288" / "last.pt"), str(self.runs / "t10_final_288" / "last.pt"),
                size=SIZE_288,
            )  # fmt: skip
        else:
            log.error("a 288x384 teacher failed (%s): no distilled chain", rc)
        for b in bases:
            b.join()

    def distill(self) -> None:
        t_start = self.elapsed()
        rc: dict[str, int] = {}
        phase1 = [
            lambda: rc.__setitem__("t10", self.teacher(False)),
            lambda: rc.__setitem__("t10_final", self.teacher(True)),
            lambda: rc.__setitem__("fcn_start", self.fcn_start()),
        ]
        base = threading.Thread(target=self.default_stages, args=("base", None, None))
        base.start()
        _parallel(phase1)
        per_epoch = self.teacher_epoch_seconds(t_start)
        teacher = str(self.runs / "t10" / "last.pt")
        teacher_final = str(self.runs / "t10_final" / "last.pt")
        if rc.get("t10") != 0 or rc.get("t10_final") != 0:
            log.error("a teacher failed (%s): no students", rc)
            base.join()
            return
        n = self.student_epochs(per_epoch)
        log.info("teacher epoch %.1f s, %.0f s left: ESPNet and FCN8s get %d epochs", per_epoch, self.left(), n)
        jobs = [
            lambda: self.default_stages("kd", teacher, teacher_final),
            lambda: self.espnet(False, teacher, n),
            lambda: self.espnet(True, teacher_final, n),
        ]
        if rc.get("fcn_start") == 0:
            jobs.append(lambda: self.fcn(teacher, n))
        _parallel(jobs)
        base.join()

    def stop_all(self) -> None:
        with self.lock:
            procs = list(self.procs.values())
        for p in procs:
            _stop(p)

    # ------------------------------------------------------------------ what comes back
    def pack(self) -> None:
        """Weights without optimiser state: the teachers alone, the default's most advanced stages in
        one tar, ESPNet and FCN8s in another; every log, curve and config in logs.tar.gz."""
        import torch

        slim = self.runs / "slim"
        slim.mkdir(exist_ok=True)

        def slimmed(src: Path) -> Path:
            doc = torch.load(src, map_location="cpu", weights_only=True)
            doc.pop("resume_state", None)
            for k in ("optimizer", "scheduler"):
                if k in doc:
                    doc[k] = None
            dst = slim / f"{src.parent.name}__{src.name}"
            torch.save(doc, dst)
            return dst

        def newest(*names: str) -> list[Path]:
            for n in names:  # most advanced stage first
                if (self.runs / n / "last.pt").exists():
                    return [self.runs / n / "last.pt"]
            return []

        for name in ("t10", "t10_final", "t10_seed1", "t10_384", "t10_288", "t10_final_288"):
            if (self.runs / name / "last.pt").exists():
                os.replace(slimmed(self.runs / name / "last.pt"), self.out / f"{name}.pt")
        deeplab: list[Path] = []
        for chain in sorted(p.name[: -len("_s1")] for p in self.runs.glob("*_s1") if p.is_dir()):
            deeplab += newest(*(f"{chain}_s{k}" for k in (4, 3, 2, 1)))
            deeplab += newest(f"{chain}_s4_final", f"{chain}_s3_final")
        small = [self.runs / r / f for r in ("esp", "esp_final", "esp_384") for f in ("last.pt", "best.pt")]
        small += [self.runs / "fcn" / f for f in ("final.pt", "recovery_best.pt", "recovery_last.pt")]
        for tar_name, files in (("deeplab.tar", deeplab), ("small.tar", [f for f in small if f.exists()])):
            if files:
                with tarfile.open(self.out / tar_name, "w") as tf:
                    for f in files:
                        s = slimmed(f)
                        tf.add(s, arcname=s.name)
        with tarfile.open(self.out / "logs.tar.gz", "w:gz") as tf:
            for p in sorted(self.runs.rglob("*")):
                if p.is_file() and p.suffix != ".pt" and "slim" not in p.parts:
                    tf.add(p, arcname=str(p.relative_to(self.runs)))
        self.record["elapsed_s"] = round(self.elapsed(), 1)
        (self.out / "campaign.json").write_text(json.dumps(self.record, indent=1))


def _distill(teacher: str) -> list[str]:
    """Soft targets from ``teacher`` as every distilled job here uses them (the project's weight and T)."""
    return [f"distill.teacher={teacher}", "distill.weight=0.5", "distill.temperature=2.0"]


def _size_tag(size: tuple[str, ...]) -> str:
    """Run-name suffix of an input size given as --set values: "" for the configs' own, else "_<height>"."""
    return "".join(f"_{s.split('=', 1)[1]}" for s in size if s.startswith("data.height="))


def _seed(seed: int) -> list[str]:
    """Seed 0 is the configs' own: its commands stay the plain ones."""
    return [f"train.seed={seed}"] if seed else []


def _parallel(fns: list) -> None:
    threads = [threading.Thread(target=f) for f in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _stop(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _capture(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable: {e}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="atWork dataset root")
    ap.add_argument("--starts", required=True, help="folder with start_dl05.pt, start_dl10.pt, start_espnet.pt")
    ap.add_argument("--out", required=True, help="where the weights, logs and campaign.json go")
    ap.add_argument("--runs", default="runs/gpu", help="training folders")
    ap.add_argument("--deadline", type=float, default=540.0, help="seconds from start: every job stops here")
    ap.add_argument("--max-student-epochs", type=int, default=40)
    ap.add_argument("--synth-workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--smoke", action="store_true", help="1 epoch of 2 iterations per job (checks the plan)")
    ap.add_argument(
        "--plan",
        choices=("distill", "replicate", "res384", "res288"),
        default="distill",
        help="see the module docstring",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    c = Campaign(args)
    try:
        c.main()
    finally:
        c.stop_all()
        c.pack()
    log.info("campaign over after %.0f s", c.elapsed())
    return 0


if __name__ == "__main__":
    sys.exit(main())
