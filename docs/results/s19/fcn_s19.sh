#!/bin/bash
# session 19: FCN8s recovery at 384x512 (labels only; no held-out teacher exists now), then its 256x320 control.
# As run (a worktree of 16e6d91 at /work/wt19, the venv of the main checkout). The start, made first:
#   python -m training.models.onnx_import --onnx models/fcn8s_w0125_pruned_onnx_int8.onnx \
#       --calib-root ../shared/datasets/atwork --out runs/start_fcn_s17.pt
# and runs/synth/train_src as scripts/device/prepare.sh makes it.
set -x
. /work/main/.venv/bin/activate
cd /work/wt19
C="--root ../shared/datasets/atwork --set prune.steps=0 --set prune.recovery_epochs=12 --set train.max_iters_per_epoch=135 --set train.lr=1.0e-3 --set distill.teacher=null --set train.threads=2 --set data.num_workers=1"
python -m training.prune --checkpoint runs/start_fcn_s17.pt --config training/configs/prune_fcn8s.yaml --out runs/fcn_rec384 $C --set data.height=384 --set data.width=512
python -m training.prune --checkpoint runs/start_fcn_s17.pt --config training/configs/prune_fcn8s.yaml --out runs/fcn_rec256 $C
