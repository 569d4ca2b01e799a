#!/bin/bash
# session 19: stage 1 of the default recipe at 288x384 (session 18's res384_s0 / res256_s0 setting otherwise)
set -x
. /work/main/.venv/bin/activate
cd /work/wt19
python -m training.train --config training/configs/deeplab_mnv2.yaml --out runs/res288_s0 \
    --set data.height=288 --set data.width=384 --set train.threads=2 --set data.num_workers=1
